//! The last [`KEPT`] things that happened, for the owner's page: the lines the journal
//! gets at info and above from this program (registrations, calls and how they ended,
//! hang-up reasons, connections cut and why, refused keys, certificate renewals). The
//! logger (`logging.rs`) hands each such line here as well, so the page and the journal
//! always tell the same story and no protocol code needs a hook of its own.
//!
//! A fixed ring: the oldest line makes room for the newest, and each line is cut to
//! [`LINE`] bytes. It never allocates after start.

use std::sync::Mutex;

/// Lines kept.
pub const KEPT: usize = 200;
/// Longest line kept, in bytes (cut at a character boundary).
pub const LINE: usize = 160;

/// One line: when (Unix milliseconds), how serious (`log::Level` as a number: 1 error ..
/// 3 info), what.
#[derive(Debug, Clone)]
pub struct Event {
    pub at_ms: u64,
    pub level: u8,
    pub text: heapless::String<LINE>,
}

/// The ring of the last [`KEPT`] events.
#[derive(Debug)]
pub struct Events {
    ring: heapless::Deque<Event, KEPT>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    pub const fn new() -> Events {
        Events {
            ring: heapless::Deque::new(),
        }
    }

    pub fn record(&mut self, at_ms: u64, level: u8, text: &str) {
        let mut cut = LINE.min(text.len());
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut line = heapless::String::new();
        let _ = line.push_str(&text[..cut]);
        if self.ring.is_full() {
            self.ring.pop_front();
        }
        let _ = self.ring.push_back(Event {
            at_ms,
            level,
            text: line,
        });
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Event> {
        self.ring.iter()
    }
}

/// The process's ring, filled by the logger. A `Mutex` only because a logger must be
/// `Sync`: everything that logs runs on the one thread, so it is never contended.
pub static EVENTS: Mutex<Events> = Mutex::new(Events::new());

/// Record one line in [`EVENTS`].
pub fn record(level: log::Level, text: &str) {
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if let Ok(mut e) = EVENTS.lock() {
        e.record(at_ms, level as u8, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_and_cuts_long_lines() {
        let mut e = Events::new();
        for i in 0..(KEPT + 50) {
            e.record(i as u64, 3, &format!("line {i}"));
        }
        assert_eq!(e.iter().count(), KEPT);
        assert_eq!(e.iter().next().unwrap().text, "line 50");
        assert_eq!(
            e.iter().last().unwrap().text.as_str(),
            format!("line {}", KEPT + 49)
        );
        // 3-byte characters: the cut lands on a boundary below LINE.
        let long = "주".repeat(100);
        e.record(0, 2, &long);
        let kept = &e.iter().last().unwrap().text;
        assert_eq!(kept.len(), LINE / 3 * 3);
        assert!(long.starts_with(kept.as_str()));
    }
}
