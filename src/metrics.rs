//! What the appliance has done, counted: calls started, answered and missed (in total and
//! per hour over the last day), signals relayed, errors by code, closes by code, bytes in
//! and out, and which address each WebSocket came from and since when. Fed by one-line
//! hooks in `session.rs` and `server.rs`; read by the owner's page (`owner.rs`) as
//! `/status.json` and `/metrics`.
//!
//! Everything is a `Cell` or a fixed-size table: counting never allocates, and a label
//! that does not fit its table is counted under `other`. It never decides anything.

use crate::config::EXTRA_SOCKETS;
use crate::peers::{CAPACITY, ConnId};
use crate::relay::Happened;
use futures_lite::{AsyncRead, AsyncWrite};
use std::cell::{Cell, RefCell};
use std::fmt::Write;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Hours kept for the calls chart.
pub const HOURS: usize = 24;
/// Distinct error codes and close codes counted by name; more go under `other`.
const LABELS: usize = 24;
/// Open WebSockets whose address and start are kept: every socket the TLS port holds.
const CONNS: usize = CAPACITY + EXTRA_SOCKETS;

/// Calls started and rings that ran out unanswered in one hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hour {
    /// Hours since the Unix epoch this slot holds; a slot from an older day reads as 0.
    pub hour: u64,
    pub calls: u32,
    pub missed: u32,
}

/// Calls per hour for the last [`HOURS`] hours, one slot per hour of the day, reused
/// when the same hour comes round the next day.
#[derive(Debug, Default)]
pub struct Hourly {
    slots: [Hour; HOURS],
}

impl Hourly {
    /// The slot for `hour`, emptied when it held an older hour; `None` when it holds a
    /// later one (the clock was set back): that count is dropped, not mixed in.
    fn slot(&mut self, hour: u64) -> Option<&mut Hour> {
        let s = &mut self.slots[(hour % HOURS as u64) as usize];
        if s.hour > hour {
            return None;
        }
        if s.hour < hour {
            *s = Hour {
                hour,
                ..Hour::default()
            };
        }
        Some(s)
    }

    pub fn call(&mut self, hour: u64) {
        if let Some(s) = self.slot(hour) {
            s.calls += 1;
        }
    }

    pub fn missed(&mut self, hour: u64) {
        if let Some(s) = self.slot(hour) {
            s.missed += 1;
        }
    }

    /// The last [`HOURS`] hours up to `now_hour`, oldest first; hours with nothing are 0.
    pub fn last_day(&self, now_hour: u64) -> [Hour; HOURS] {
        let mut out = [Hour::default(); HOURS];
        for (i, o) in out.iter_mut().enumerate() {
            let hour = (now_hour + 1 + i as u64).wrapping_sub(HOURS as u64);
            let s = self.slots[(hour % HOURS as u64) as usize];
            *o = if s.hour == hour {
                s
            } else {
                Hour {
                    hour,
                    ..Hour::default()
                }
            };
        }
        out
    }
}

/// Counts by label in a fixed table; a label that finds no room counts as `other`.
#[derive(Debug, Default)]
pub struct ByLabel {
    seen: heapless::Vec<(heapless::String<24>, u64), LABELS>,
    other: u64,
}

impl ByLabel {
    pub fn add(&mut self, label: &str) {
        if let Some(e) = self.seen.iter_mut().find(|e| e.0 == label) {
            e.1 += 1;
            return;
        }
        let room = heapless::String::try_from(label)
            .ok()
            .filter(|_| !self.seen.is_full());
        match room {
            Some(l) => {
                let _ = self.seen.push((l, 1));
            }
            None => self.other += 1,
        }
    }

    /// Every label with its count, `other` last when anything went there.
    pub fn each(&self, mut f: impl FnMut(&str, u64)) {
        for (l, n) in &self.seen {
            f(l, *n);
        }
        if self.other > 0 {
            f("other", self.other);
        }
    }
}

/// The appliance's counters. One per [`Hub`](crate::session::Hub).
#[derive(Debug, Default)]
pub struct Metrics {
    pub calls_started: Cell<u64>,
    pub calls_answered: Cell<u64>,
    /// Rings that ran out (`--ring-timeout`) unanswered.
    pub calls_missed: Cell<u64>,
    /// Pages started.
    pub pages: Cell<u64>,
    pub signals: Cell<u64>,
    /// TLS connections that completed the handshake on the HTTPS port.
    pub connections: Cell<u64>,
    /// Bytes through TLS on the HTTPS port (HTTP and WebSocket, not TLS overhead).
    pub bytes_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
    pub errors: RefCell<ByLabel>,
    pub closes: RefCell<ByLabel>,
    pub hourly: RefCell<Hourly>,
    /// Open WebSockets: connection, source address, opened (Unix seconds).
    conns: RefCell<heapless::Vec<(ConnId, IpAddr, u64), CONNS>>,
}

fn bump(c: &Cell<u64>, n: u64) {
    c.set(c.get().wrapping_add(n));
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Metrics {
    /// What one message did, as the relay decided it.
    pub fn happened(&self, h: Happened) {
        match h {
            Happened::RingStarted => {
                bump(&self.calls_started, 1);
                self.hourly.borrow_mut().call(unix_now() / 3600);
            }
            Happened::PageStarted => bump(&self.pages, 1),
            Happened::Answered => bump(&self.calls_answered, 1),
            Happened::Signal => bump(&self.signals, 1),
            Happened::Refused(code) => self.errors.borrow_mut().add(code.as_str()),
            Happened::Other => {}
        }
    }

    /// A ring ran out unanswered.
    pub fn missed(&self) {
        bump(&self.calls_missed, 1);
        self.hourly.borrow_mut().missed(unix_now() / 3600);
    }

    /// A WebSocket opened from `ip`.
    pub fn opened(&self, conn: ConnId, ip: IpAddr) {
        let mut conns = self.conns.borrow_mut();
        // Room for every socket the port may hold; a miss only loses the address shown.
        let _ = conns.push((conn, ip, unix_now()));
    }

    /// A WebSocket ended with this close code (`None`: without a close frame).
    pub fn ended(&self, conn: ConnId, code: Option<u16>) {
        let mut conns = self.conns.borrow_mut();
        if let Some(i) = conns.iter().position(|c| c.0 == conn) {
            conns.swap_remove(i);
        }
        let mut label = heapless::String::<8>::new();
        match code {
            Some(c) => {
                let _ = write!(label, "{c}");
            }
            None => {
                let _ = label.push_str("none");
            }
        }
        self.closes.borrow_mut().add(&label);
    }

    /// Where connection `conn` came from and since when (Unix seconds).
    pub fn conn(&self, conn: ConnId) -> Option<(IpAddr, u64)> {
        let conns = self.conns.borrow();
        conns.iter().find(|c| c.0 == conn).map(|c| (c.1, c.2))
    }

    /// Wrap a connection's stream so its bytes are counted.
    pub fn count<S>(&self, io: S) -> Counted<'_, S> {
        bump(&self.connections, 1);
        Counted { io, m: self }
    }
}

/// A stream whose bytes read and written are added to [`Metrics`].
pub struct Counted<'m, S> {
    io: S,
    m: &'m Metrics,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            bump(&self.m.bytes_in, n as u64);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            bump(&self.m.bytes_out, n as u64);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    #[test]
    fn what_happened_is_counted() {
        let m = Metrics::default();
        for h in [
            Happened::RingStarted,
            Happened::Answered,
            Happened::PageStarted,
            Happened::Signal,
            Happened::Signal,
            Happened::Refused(ErrorCode::Busy),
            Happened::Other,
        ] {
            m.happened(h);
        }
        let counted = [&m.calls_started, &m.calls_answered, &m.pages, &m.signals];
        assert_eq!(counted.map(|c| c.get()), [1, 1, 1, 2]);
        let mut errors = Vec::new();
        m.errors
            .borrow()
            .each(|l, n| errors.push((l.to_string(), n)));
        assert_eq!(errors, [("busy".to_string(), 1)]);
    }

    #[test]
    fn hours_roll_over_and_old_days_read_as_zero() {
        let mut h = Hourly::default();
        let now = 500_000;
        h.call(now);
        h.call(now);
        h.missed(now);
        h.call(now - 3);
        h.call(now - HOURS as u64); // a day ago, after a clock step back: dropped
        let day = h.last_day(now);
        assert_eq!(
            day[HOURS - 1],
            Hour {
                hour: now,
                calls: 2,
                missed: 1
            }
        );
        assert_eq!(day[HOURS - 4].calls, 1);
        assert_eq!(day[0].hour, now - HOURS as u64 + 1);
        assert_eq!(day.iter().map(|h| h.calls).sum::<u32>(), 3);
        // The same slot a day later starts again from zero.
        h.call(now + HOURS as u64);
        let later = h.last_day(now + HOURS as u64);
        assert_eq!(later[HOURS - 1].calls, 1);
        assert_eq!(later.iter().map(|h| h.calls).sum::<u32>(), 1);
    }

    #[test]
    fn labels_are_bounded() {
        let mut b = ByLabel::default();
        for i in 0..100 {
            b.add(&format!("code{i}"));
        }
        b.add("code0");
        b.add("a label far longer than twenty-four bytes");
        let mut seen = Vec::new();
        b.each(|l, n| seen.push((l.to_string(), n)));
        assert_eq!(seen.len(), LABELS + 1);
        assert_eq!(seen[0], ("code0".to_string(), 2));
        assert_eq!(seen[LABELS], ("other".to_string(), 100 - LABELS as u64 + 1));
    }

    #[test]
    fn connections_are_kept_until_they_end() {
        let m = Metrics::default();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        m.opened(1, ip);
        m.opened(2, ip);
        assert_eq!(m.conn(2).map(|c| c.0), Some(ip));
        m.ended(2, Some(1008));
        m.ended(1, None);
        assert_eq!(m.conn(2), None);
        let mut closes = Vec::new();
        m.closes
            .borrow()
            .each(|l, n| closes.push((l.to_string(), n)));
        assert_eq!(closes, [("1008".into(), 1), ("none".into(), 1)]);
    }
}
