//! A `log` backend writing one line per record to stderr. Under systemd (`JOURNAL_STREAM`
//! set) each line starts with its syslog priority (`<6>`) and has no timestamp, since the
//! journal adds its own; otherwise lines carry a UTC timestamp.
//!
//! Every line is one line: control characters (C0, DEL, C1) in a message, wherever they
//! came from, are written as `\u{..}` escapes, so a peer-supplied string can never start
//! a forged journal entry. Other crates' records (the WebSocket library logs whole
//! frames, access keys and tokens included, at trace) are dropped below warn.
//!
//! This program's lines at info and above also go to the owner's page (`events.rs`),
//! whatever `--log-level` says: a quieter journal does not empty the page.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What `--log-level` asked for: lines above it are not written (`LevelFilter as usize`).
static WRITTEN: AtomicUsize = AtomicUsize::new(LevelFilter::Info as usize);

struct Logger {
    journal: bool,
}

static JOURNAL: Logger = Logger { journal: true };
static PLAIN: Logger = Logger { journal: false };

/// Install the logger at `level`.
pub fn init(level: LevelFilter) {
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let _ = log::set_logger(if journal { &JOURNAL } else { &PLAIN });
    WRITTEN.store(level as usize, Ordering::Relaxed);
    log::set_max_level(level.max(LevelFilter::Info));
}

/// `text` with every control character escaped.
fn one_line(text: String) -> String {
    if !text.chars().any(char::is_control) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` from the system clock, without a date crate.
fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

impl Log for Logger {
    fn enabled(&self, meta: &Metadata) -> bool {
        meta.level() <= log::max_level()
            && (meta.level() <= Level::Warn || meta.target().starts_with("intercomd"))
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = one_line(record.args().to_string());
        let ours = record.target().starts_with("intercomd");
        if ours && record.level() <= Level::Info {
            crate::events::record(record.level(), &text);
        }
        if record.level() as usize > WRITTEN.load(Ordering::Relaxed) {
            return;
        }
        let line = if self.journal {
            format!("<{}>{text}\n", priority(record.level()))
        } else {
            format!("{} {:5} {text}\n", timestamp(), record.level())
        };
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_leave_the_line() {
        let forged = one_line("hangup reason: x\n<0>EMERG: \u{1b}[2J\r\u{7f}\u{85}".into());
        assert_eq!(
            forged,
            "hangup reason: x\\u{a}<0>EMERG: \\u{1b}[2J\\u{d}\\u{7f}\\u{85}"
        );
        assert_eq!(one_line("주방 -> call door".into()), "주방 -> call door");
    }
}
