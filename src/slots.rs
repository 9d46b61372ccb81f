//! Who holds the open sockets of one port. Every accepted socket holds a [`Slot`] until it
//! closes; the [`Registry`] decides whether a new socket may open and, when the port is
//! full, which unregistered socket makes room for it.
//!
//! The rules, so that holding sockets costs a device constant work and a tablet always
//! gets in:
//! - one source address may hold at most `per_ip` *unregistered* sockets; a new one over
//!   that is refused (closed at once);
//! - when `cap` sockets are open, an unregistered socket is evicted and the new one
//!   admitted: the oldest one of the address that holds the most. Only when every open
//!   socket is registered is a new one refused;
//! - registered sockets are never evicted and never count toward the per-address cap, so
//!   any number of tablets behind one address can register.
//!
//! Why not simply the oldest socket overall: each eviction lets its owner open a socket,
//! which evicts the next oldest, so hoarders that re-open at once evict each other in a
//! cycle that reaches any newcomer after `cap - 1` re-opens, often before a tablet's TLS
//! handshake and `register` are done. Taking from the address that holds the most, a
//! device with one socket is only evicted once every address holds just one.
//!
//! Pure bookkeeping: no I/O, no timers. An evicted socket's task learns of it through
//! [`Slot::evicted`], which it races against everything it does.

use futures_lite::future;
use smol::channel::{self, Receiver, Sender};
use std::cell::RefCell;
use std::fmt;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// The open sockets of one port.
pub struct Registry(Rc<RefCell<Table>>);

struct Table {
    cap: usize,
    per_ip: usize,
    next_id: u64,
    /// In the order they opened, so the first unregistered entry is the oldest.
    open: Vec<Entry>,
}

struct Entry {
    id: u64,
    ip: IpAddr,
    opened: Instant,
    registered: bool,
    /// Chosen to make room; it no longer counts and closes as soon as its task runs.
    evicted: bool,
    notify: Sender<()>,
}

impl Entry {
    /// Counts toward the cap (an evicted socket is on its way out).
    fn live(&self) -> bool {
        !self.evicted
    }

    /// May be evicted, and counts toward its address's cap.
    fn unregistered(&self) -> bool {
        !self.evicted && !self.registered
    }
}

/// Why a new socket was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its address already holds `per_ip` unregistered sockets.
    PerIp,
    /// Every open socket belongs to a registered peer.
    Full,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Refused::PerIp => "too many unregistered sockets from this address",
            Refused::Full => "every socket is registered",
        })
    }
}

/// An unregistered socket closed to make room for a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evicted {
    pub ip: IpAddr,
    /// How long it had been open.
    pub held: Duration,
}

/// A socket let in, and the one that made room for it, if any.
pub struct Admitted {
    pub slot: Slot,
    pub evicted: Option<Evicted>,
}

impl Registry {
    /// A port that holds at most `cap` sockets, at most `per_ip` of them unregistered
    /// from one address.
    pub fn new(cap: usize, per_ip: usize) -> Registry {
        Registry(Rc::new(RefCell::new(Table {
            cap: cap.max(1),
            per_ip: per_ip.max(1),
            next_id: 0,
            open: Vec::with_capacity(cap),
        })))
    }

    /// Let a new socket from `ip` in; when the port is full, evict an unregistered socket
    /// to make room (which one: see `victim`).
    pub fn admit(&self, ip: IpAddr) -> Result<Admitted, Refused> {
        let mut t = self.0.borrow_mut();
        let from_ip = t
            .open
            .iter()
            .filter(|e| e.ip == ip && e.unregistered())
            .count();
        if from_ip >= t.per_ip {
            return Err(Refused::PerIp);
        }
        let live = t.open.iter().filter(|e| e.live()).count();
        let evicted = if live >= t.cap {
            let victim = victim(&t.open).ok_or(Refused::Full)?;
            let victim = &mut t.open[victim];
            victim.evicted = true;
            let _ = victim.notify.try_send(());
            Some(Evicted {
                ip: victim.ip,
                held: victim.opened.elapsed(),
            })
        } else {
            None
        };
        t.next_id += 1;
        let id = t.next_id;
        let opened = Instant::now();
        let (notify, evict_rx) = channel::bounded(1);
        t.open.push(Entry {
            id,
            ip,
            opened,
            registered: false,
            evicted: false,
            notify,
        });
        let slot = Slot {
            table: self.0.clone(),
            id,
            ip,
            opened,
            evict_rx,
            local: Default::default(),
        };
        Ok(Admitted { slot, evicted })
    }

    /// Sockets open and not evicted.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.0.borrow().open.iter().filter(|e| e.live()).count()
    }
}

/// Which socket makes room: among the unregistered ones, the oldest of the address that
/// holds the most (of two addresses holding as many, the one with the older socket).
fn victim(open: &[Entry]) -> Option<usize> {
    let held = |ip| {
        open.iter()
            .filter(|e| e.ip == ip && e.unregistered())
            .count()
    };
    let mut best: Option<(usize, usize)> = None;
    for (i, e) in open.iter().enumerate() {
        if !e.unregistered() {
            continue;
        }
        let n = held(e.ip);
        if best.is_none_or(|(most, _)| n > most) {
            best = Some((n, i));
        }
    }
    best.map(|(_, i)| i)
}

/// One open socket's place in its [`Registry`]; freed when dropped.
pub struct Slot {
    table: Rc<RefCell<Table>>,
    id: u64,
    ip: IpAddr,
    opened: Instant,
    evict_rx: Receiver<()>,
    /// The local address the socket was accepted on (set by the server).
    local: std::cell::Cell<Option<IpAddr>>,
}

impl Slot {
    /// The source address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The local address the socket was accepted on, when known.
    pub fn local(&self) -> Option<IpAddr> {
        self.local.get()
    }

    pub fn set_local(&self, ip: Option<IpAddr>) {
        self.local.set(ip);
    }

    /// How long the socket has been open.
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// Mark the socket as belonging to a registered peer (or not). A registered socket is
    /// never evicted; one that registers after it was chosen keeps its place, and the
    /// eviction is forgotten.
    pub fn set_registered(&self, registered: bool) {
        let mut t = self.table.borrow_mut();
        if let Some(e) = t.open.iter_mut().find(|e| e.id == self.id) {
            e.registered = registered;
            if registered && e.evicted {
                e.evicted = false;
                while self.evict_rx.try_recv().is_ok() {}
            }
        }
    }

    pub fn is_registered(&self) -> bool {
        let t = self.table.borrow();
        t.open.iter().any(|e| e.id == self.id && e.registered)
    }

    /// Resolves when the registry evicts this socket while it is unregistered; never
    /// resolves for a registered one.
    pub async fn evicted(&self) {
        loop {
            if self.evict_rx.recv().await.is_err() {
                future::pending::<()>().await;
            }
            if !self.is_registered() {
                return;
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.table.borrow_mut();
        if let Some(i) = t.open.iter().position(|e| e.id == self.id) {
            t.open.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn evicted_now(slot: &Slot) -> bool {
        block_on(poll_once(slot.evicted())).is_some()
    }

    #[test]
    fn one_address_holds_at_most_per_ip_unregistered_sockets() {
        let r = Registry::new(100, 3);
        let held: Vec<Slot> = (0..3).map(|_| r.admit(ip(2)).unwrap().slot).collect();
        assert_eq!(r.admit(ip(2)).err(), Some(Refused::PerIp));
        // Other addresses are not affected.
        let other = r.admit(ip(3)).unwrap();
        assert_eq!(other.evicted, None);
        // A registered socket no longer counts; a closed one frees its place.
        held[0].set_registered(true);
        let fourth = r.admit(ip(2)).unwrap().slot;
        assert_eq!(r.admit(ip(2)).err(), Some(Refused::PerIp));
        drop(fourth);
        assert!(r.admit(ip(2)).is_ok());
    }

    #[test]
    fn registered_sockets_from_one_address_are_unlimited() {
        let r = Registry::new(100, 2);
        let mut tablets = Vec::new();
        for _ in 0..20 {
            let s = r.admit(ip(9)).unwrap().slot;
            s.set_registered(true);
            tablets.push(s);
        }
        assert_eq!(r.open(), 20);
    }

    #[test]
    fn a_full_port_evicts_the_oldest_unregistered_socket() {
        let r = Registry::new(3, 8);
        let a = r.admit(ip(2)).unwrap().slot;
        let b = r.admit(ip(3)).unwrap().slot;
        let c = r.admit(ip(4)).unwrap().slot;
        a.set_registered(true);
        let d = r.admit(ip(5)).unwrap();
        let evicted = d.evicted.unwrap();
        assert_eq!(evicted.ip, ip(3), "b is the oldest unregistered");
        assert!(evicted_now(&b));
        assert!(!evicted_now(&a) && !evicted_now(&c) && !evicted_now(&d.slot));
        assert_eq!(r.open(), 3);
        // The evicted socket's task ends and drops its slot; nothing changes.
        drop(b);
        assert_eq!(r.open(), 3);
        let e = r.admit(ip(5)).unwrap();
        assert_eq!(e.evicted.map(|e| e.ip), Some(ip(4)));
        assert!(evicted_now(&c));
    }

    #[test]
    fn the_address_holding_the_most_gives_way() {
        let r = Registry::new(6, 8);
        let tablet = r.admit(ip(9)).unwrap().slot;
        let mut hoard = Vec::new();
        for last in [2, 3, 2, 3, 2] {
            hoard.push(r.admit(ip(last)).unwrap().slot);
        }
        // The tablet's socket is the oldest, but .2 holds three: its oldest goes.
        let a = r.admit(ip(4)).unwrap();
        assert_eq!(a.evicted.map(|e| e.ip), Some(ip(2)));
        assert!(evicted_now(&hoard[0]));
        drop(hoard.remove(0));
        // Hoarders re-opening at once evict each other, never the lone tablet.
        for round in 0..50 {
            let last = [2, 3, 4][round % 3];
            match r.admit(ip(last)) {
                Ok(new) => {
                    let gone = new.evicted.expect("the port is full");
                    assert_ne!(gone.ip, ip(9), "round {round}");
                    hoard.retain(|s| !evicted_now(s));
                    hoard.push(new.slot);
                }
                Err(refused) => assert_eq!(refused, Refused::PerIp),
            }
        }
        assert!(!evicted_now(&tablet));
        // Once every address holds one, age decides: the tablet's is the oldest.
        let r = Registry::new(3, 8);
        let tablet = r.admit(ip(9)).unwrap().slot;
        let _b = r.admit(ip(2)).unwrap();
        let _c = r.admit(ip(3)).unwrap();
        assert_eq!(r.admit(ip(4)).unwrap().evicted.map(|e| e.ip), Some(ip(9)));
        assert!(evicted_now(&tablet));
    }

    #[test]
    fn only_a_port_of_registered_sockets_refuses() {
        let r = Registry::new(2, 8);
        let a = r.admit(ip(2)).unwrap().slot;
        let b = r.admit(ip(3)).unwrap().slot;
        a.set_registered(true);
        b.set_registered(true);
        assert_eq!(r.admit(ip(4)).err(), Some(Refused::Full));
        assert!(!evicted_now(&a) && !evicted_now(&b));
        drop(b);
        assert!(r.admit(ip(4)).is_ok());
    }

    #[test]
    fn registering_after_being_chosen_cancels_the_eviction() {
        let r = Registry::new(1, 8);
        let a = r.admit(ip(2)).unwrap().slot;
        let b = r.admit(ip(3)).unwrap();
        assert_eq!(b.evicted.map(|e| e.ip), Some(ip(2)));
        // `a` registers before its task saw the eviction: it stays, and counts again.
        a.set_registered(true);
        assert!(!evicted_now(&a));
        assert!(a.is_registered());
        assert_eq!(r.open(), 2);
        // Now `b` is the only unregistered socket, so it is the one to go.
        let c = r.admit(ip(4)).unwrap();
        assert_eq!(c.evicted.map(|e| e.ip), Some(ip(3)));
        assert!(evicted_now(&b.slot));
        assert!(!evicted_now(&a));
    }
}
