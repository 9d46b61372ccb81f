//! The fixed-capacity peer table and each peer's call state.
//!
//! The table is a `heapless::Vec` sized at build time ([`CAPACITY`]): registering a peer
//! never allocates, and "full" is a returned value. Peers are found by connection id or
//! by name with a linear scan over compact arrays kept beside the table (connection ids,
//! and 32-bit keys of the names: a few cache lines, where the entries themselves are
//! hundreds of bytes each); a name is compared only where its key matches. Methods are
//! synchronous; callers hold the `RefCell` borrow only for the duration of one call.

use crate::protocol::{Features, Groups, Name, Status};
use std::time::Instant;

/// Table capacity, a build-time setting: `INTERCOMD_CAPACITY=256 cargo build`.
pub const CAPACITY: usize = parse_capacity(option_env!("INTERCOMD_CAPACITY"));

const fn parse_capacity(v: Option<&str>) -> usize {
    let Some(v) = v else { return 64 };
    let b = v.as_bytes();
    let mut n = 0usize;
    let mut i = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "INTERCOMD_CAPACITY must be a number");
        n = n * 10 + (b[i] - b'0') as usize;
        i += 1;
    }
    assert!(n > 0 && n <= 4096, "INTERCOMD_CAPACITY must be 1..=4096");
    n
}

/// Identifies one connection for its whole life; never reused.
pub type ConnId = u64;

/// A resume token: 32 URL-safe base64 characters (192 random bits).
pub type Token = heapless::String<32>;

/// A new resume token from OpenSSL's CSPRNG (seeded by the kernel), URL-safe base64.
pub fn fresh_token() -> Token {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut raw = [0u8; 24];
    if openssl::rand::rand_bytes(&mut raw).is_err() {
        // OpenSSL refuses only when it cannot seed; the kernel's source then still works.
        let _ = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut raw));
    }
    let mut t = Token::new();
    for chunk in raw.chunks(3) {
        let n = (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8 | chunk[2] as u32;
        for shift in [18, 12, 6, 0] {
            let _ = t.push(ALPHABET[(n >> shift) as usize & 63] as char);
        }
    }
    t
}

/// Where a peer stands in the call state machine. Partners are named, not indexed, so
/// an entry may move in the table (swap-remove) or change connection (resume) freely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Idle,
    /// Ringing, we called `peer`; unanswered at `until`, the ring ends.
    Outgoing {
        peer: Name,
        until: Instant,
    },
    /// Ringing, `peer` called us: alone (`group` none), or as a member of `group`.
    Incoming {
        peer: Name,
        group: Option<Name>,
    },
    /// Accepted call with `peer`.
    Active {
        peer: Name,
    },
    /// We ring `group` (a group or `*`) until `until`; the ringing members are the
    /// peers whose call is `Incoming` from us with that group.
    Ringing {
        group: Name,
        until: Instant,
    },
    /// We page `group` until `until`; the listeners are the peers `Listening` to us.
    Paging {
        group: Name,
        until: Instant,
    },
    /// We hear a page from `peer` to `group`.
    Listening {
        peer: Name,
        group: Name,
    },
}

impl Call {
    /// When this ring or page runs out, if it can.
    pub fn deadline(&self) -> Option<Instant> {
        match self {
            Call::Outgoing { until, .. }
            | Call::Ringing { until, .. }
            | Call::Paging { until, .. } => Some(*until),
            _ => None,
        }
    }
}

/// One registered peer. `L` is the I/O side's handle for reaching its connection (outbox
/// and control channel); the table never looks inside it.
#[derive(Debug)]
pub struct Peer<L> {
    pub name: Name,
    pub token: Token,
    pub conn: ConnId,
    pub link: L,
    pub call: Call,
    pub groups: Groups,
    /// Do-not-disturb: looked at only when a call, group ring or page starts.
    pub dnd: bool,
    pub features: Features,
    /// Set by the relay on the receivers of one message for several peers (see
    /// `relay::To::Marked`); the next event that marks clears it.
    pub marked: bool,
    /// Group rings and pages this station may still start now (see [`FanOuts`]).
    pub fan_outs: FanOuts,
}

/// A token bucket for starting group rings and pages: each one costs every station a
/// `peers` list, so one station may start [`FanOuts::BURST`] in a row, then one every
/// [`FanOuts::EVERY`].
#[derive(Debug, Clone, Copy)]
pub struct FanOuts {
    tokens: f32,
    at: Instant,
}

impl FanOuts {
    pub const BURST: f32 = 5.0;
    pub const EVERY: std::time::Duration = std::time::Duration::from_secs(1);

    pub fn new(now: Instant) -> Self {
        FanOuts {
            tokens: Self::BURST,
            at: now,
        }
    }

    /// Whether one may start at `now` (nothing is spent: see [`FanOuts::spend`]).
    pub fn ready(&mut self, now: Instant) -> bool {
        let earned =
            now.saturating_duration_since(self.at).as_secs_f32() / Self::EVERY.as_secs_f32();
        self.tokens = (self.tokens + earned).min(Self::BURST);
        self.at = self.at.max(now);
        self.tokens >= 1.0
    }

    pub fn spend(&mut self) {
        self.tokens -= 1.0;
    }
}

impl<L> Peer<L> {
    /// Busy in any call, ring or page; otherwise idle: `dnd` or `online`.
    pub fn status(&self) -> Status {
        match (&self.call, self.dnd) {
            (Call::Idle, false) => Status::Online,
            (Call::Idle, true) => Status::Dnd,
            _ => Status::Busy,
        }
    }

    pub fn idle(&self) -> bool {
        self.call == Call::Idle
    }

    /// A member of `group` (`*`: everyone).
    pub fn in_group(&self, group: &str) -> bool {
        group == crate::protocol::EVERYONE || self.groups.iter().any(|g| g == group)
    }
}

/// The peer table. `N` is the capacity; `limit` (≤ N) is the runtime `--max-peers`.
/// A peer's name never changes while it is in the table (a new name is a new entry), and
/// its connection changes only through [`Peers::reconnect`].
#[derive(Debug)]
pub struct Peers<L, const N: usize = CAPACITY> {
    list: heapless::Vec<Peer<L>, N>,
    /// Each entry's connection, in the same order as `list`.
    conns: heapless::Vec<ConnId, N>,
    /// [`key`] of each entry's name, in the same order as `list`.
    keys: heapless::Vec<u32, N>,
    limit: usize,
}

/// A name's lookup key: FNV-1a, 32 bits.
fn key(name: &str) -> u32 {
    name.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

impl<L, const N: usize> Peers<L, N> {
    pub fn new(limit: usize) -> Self {
        Peers {
            list: heapless::Vec::new(),
            conns: heapless::Vec::new(),
            keys: heapless::Vec::new(),
            limit: limit.min(N),
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_full(&self) -> bool {
        self.list.len() >= self.limit
    }

    pub fn iter(&self) -> impl Iterator<Item = &Peer<L>> {
        self.list.iter()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Peer<L>> {
        self.list.iter_mut()
    }

    pub fn by_conn(&self, conn: ConnId) -> Option<&Peer<L>> {
        let i = self.conns.iter().position(|&c| c == conn)?;
        Some(&self.list[i])
    }

    pub fn by_name(&self, name: &str) -> Option<&Peer<L>> {
        self.position(name).map(|i| &self.list[i])
    }

    pub fn by_name_mut(&mut self, name: &str) -> Option<&mut Peer<L>> {
        self.position(name).map(|i| &mut self.list[i])
    }

    fn position(&self, name: &str) -> Option<usize> {
        let k = key(name);
        (0..self.keys.len()).find(|&i| self.keys[i] == k && self.list[i].name == name)
    }

    /// Add a peer; hands it back when the table is at its limit.
    #[allow(clippy::result_large_err)] // handing the item back is the heapless idiom
    pub fn insert(&mut self, peer: Peer<L>) -> Result<(), Peer<L>> {
        if self.is_full() {
            return Err(peer);
        }
        let (k, conn) = (key(&peer.name), peer.conn);
        self.list.push(peer)?;
        // As long as `list`, so they fit.
        let _ = self.keys.push(k);
        let _ = self.conns.push(conn);
        Ok(())
    }

    /// Remove the peer owned by `conn`, if that connection still owns one.
    pub fn remove(&mut self, conn: ConnId) -> Option<Peer<L>> {
        let i = self.conns.iter().position(|&c| c == conn)?;
        self.keys.swap_remove(i);
        self.conns.swap_remove(i);
        Some(self.list.swap_remove(i))
    }

    /// Move `name` to connection `conn` reached through `link` (a resume); hands back the
    /// link and connection it had.
    pub fn reconnect(&mut self, name: &str, conn: ConnId, link: L) -> Option<(L, ConnId)> {
        let i = self.position(name)?;
        self.conns[i] = conn;
        let p = &mut self.list[i];
        Some((
            std::mem::replace(&mut p.link, link),
            std::mem::replace(&mut p.conn, conn),
        ))
    }

    /// Set the call state of `name`, if present.
    pub fn set_call(&mut self, name: &str, call: Call) {
        if let Some(p) = self.by_name_mut(name) {
            p.call = call;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, conn: ConnId) -> Peer<()> {
        Peer {
            name: Name::try_from(name).unwrap(),
            token: Token::new(),
            conn,
            link: (),
            call: Call::Idle,
            groups: Groups::new(),
            dnd: false,
            features: Features::default(),
            marked: false,
            fan_outs: FanOuts::new(Instant::now()),
        }
    }

    #[test]
    fn tokens_are_fresh_and_url_safe() {
        let (a, b) = (fresh_token(), fresh_token());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn full_is_a_value_and_limit_applies() {
        let mut t: Peers<(), 4> = Peers::new(2);
        t.insert(peer("a", 1)).unwrap();
        t.insert(peer("b", 2)).unwrap();
        let back = t.insert(peer("c", 3)).unwrap_err();
        assert_eq!(back.name, "c");
        assert_eq!(t.remove(1).unwrap().name, "a");
        assert!(t.remove(1).is_none());
        assert_eq!(t.by_name("b").unwrap().conn, 2);
    }

    #[test]
    fn names_and_connections_are_found_after_removals_and_resumes() {
        let mut t: Peers<(), 8> = Peers::new(8);
        for (i, n) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            t.insert(peer(n, i as ConnId)).unwrap();
        }
        // "a" leaves: "e" moves into its place, and must still be found by name.
        t.remove(0).unwrap();
        t.remove(2).unwrap();
        for (n, conn) in [("b", 1), ("d", 3), ("e", 4)] {
            assert_eq!(t.by_name(n).unwrap().conn, conn, "{n}");
            assert_eq!(t.by_name_mut(n).unwrap().conn, conn, "{n}");
        }
        assert!(t.by_name("a").is_none() && t.by_name("c").is_none());
        assert!(t.by_name("").is_none() && t.by_name("bb").is_none());
        t.insert(peer("a", 9)).unwrap();
        assert_eq!(t.by_name("a").unwrap().conn, 9);
        assert_eq!(t.by_conn(4).unwrap().name, "e");
        // A resume moves "e" to connection 7: found by the new one only.
        assert_eq!(t.reconnect("e", 7, ()), Some(((), 4)));
        assert!(t.by_conn(4).is_none());
        assert_eq!(t.by_conn(7).unwrap().name, "e");
        assert!(t.remove(4).is_none());
        assert_eq!(t.remove(7).unwrap().name, "e");
        assert_eq!(t.reconnect("e", 8, ()), None);
    }
}
