//! The fixed-capacity peer table and each peer's call state.
//!
//! The table is a `heapless::Vec` sized at build time ([`CAPACITY`]): registering a peer
//! never allocates, and "full" is a returned value. Peers are found by connection id or
//! by name with a linear scan, which at these sizes costs less than hashing. Methods are
//! synchronous; callers hold the `RefCell` borrow only for the duration of one call.

use crate::protocol::{Name, Status};

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

/// Where a peer stands in the call state machine. Partners are named, not indexed, so
/// an entry may move in the table (swap-remove) or change connection (resume) freely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Idle,
    /// Ringing, we called `peer`. `ring` identifies this ring for its timeout.
    Outgoing {
        peer: Name,
        ring: u64,
    },
    /// Ringing, `peer` called us.
    Incoming {
        peer: Name,
        ring: u64,
    },
    /// Accepted call with `peer`.
    Active {
        peer: Name,
    },
}

impl Call {
    /// The partner of a ringing or active call.
    pub fn partner(&self) -> Option<&Name> {
        match self {
            Call::Idle => None,
            Call::Outgoing { peer, .. } | Call::Incoming { peer, .. } | Call::Active { peer } => {
                Some(peer)
            }
        }
    }

    pub fn status(&self) -> Status {
        match self {
            Call::Idle => Status::Online,
            _ => Status::Busy,
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
}

/// The peer table. `N` is the capacity; `limit` (≤ N) is the runtime `--max-peers`.
#[derive(Debug)]
pub struct Peers<L, const N: usize = CAPACITY> {
    list: heapless::Vec<Peer<L>, N>,
    limit: usize,
    next_ring: u64,
}

impl<L, const N: usize> Peers<L, N> {
    pub fn new(limit: usize) -> Self {
        Peers {
            list: heapless::Vec::new(),
            limit: limit.min(N),
            next_ring: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.list.len() >= self.limit
    }

    pub fn iter(&self) -> impl Iterator<Item = &Peer<L>> {
        self.list.iter()
    }

    pub fn by_conn(&self, conn: ConnId) -> Option<&Peer<L>> {
        self.list.iter().find(|p| p.conn == conn)
    }

    pub fn by_conn_mut(&mut self, conn: ConnId) -> Option<&mut Peer<L>> {
        self.list.iter_mut().find(|p| p.conn == conn)
    }

    pub fn by_name(&self, name: &str) -> Option<&Peer<L>> {
        self.list.iter().find(|p| p.name == name)
    }

    pub fn by_name_mut(&mut self, name: &str) -> Option<&mut Peer<L>> {
        self.list.iter_mut().find(|p| p.name == name)
    }

    /// Add a peer; hands it back when the table is at its limit.
    #[allow(clippy::result_large_err)] // handing the item back is the heapless idiom
    pub fn insert(&mut self, peer: Peer<L>) -> Result<(), Peer<L>> {
        if self.is_full() {
            return Err(peer);
        }
        self.list.push(peer)
    }

    /// Remove the peer owned by `conn`, if that connection still owns one.
    pub fn remove(&mut self, conn: ConnId) -> Option<Peer<L>> {
        let i = self.list.iter().position(|p| p.conn == conn)?;
        Some(self.list.swap_remove(i))
    }

    /// A fresh ring identifier.
    pub fn next_ring(&mut self) -> u64 {
        self.next_ring += 1;
        self.next_ring
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
        }
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
}
