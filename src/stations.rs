//! What the TURN relay needs to know of the signaling side, and the one place the two
//! meet: which stations are registered, from which address, and when those that left
//! went. The session reports register/resume and disconnect (one line each); the relay
//! asks. It also holds what a `registered` message needs to offer the relay: its port,
//! the credential secret; and the relay's counters (allocations in use, bytes relayed).
//!
//! Bounded: one entry per registered station plus those that left within
//! [`LEFT_GRACE`], in a fixed table; when it is full the oldest departure is forgotten
//! early (that station's credentials then end before their 60 s).

use crate::peers::{CAPACITY, ConnId};
use crate::protocol::Name;
use std::cell::{Cell, OnceCell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How far in the future the timestamp in a TURN username is put.
pub const CREDENTIAL_TTL: u64 = 86400;

/// The TURN username and password a station is given at `unix` (the TURN REST form:
/// `expiry:station`, and the HMAC-SHA1 of it under the relay's secret).
pub fn credentials(secret: &[u8], station: &str, unix: u64) -> (String, String) {
    let user = format!("{}:{station}", unix + CREDENTIAL_TTL);
    let pass = password(secret, &user);
    (user, pass)
}

/// The password that goes with a TURN `user` under `secret`.
pub(crate) fn password(secret: &[u8], user: &str) -> String {
    let mac = crate::stun::hmac_sha1(secret, &[user.as_bytes()]).unwrap_or([0; 20]);
    openssl::base64::encode_block(&mac)
}

/// How long a station's relay credentials outlive its connection.
pub const LEFT_GRACE: Duration = Duration::from_secs(60);

const ENTRIES: usize = 2 * CAPACITY;

#[derive(Debug, Clone)]
struct Station {
    conn: ConnId,
    name: Name,
    ip: IpAddr,
    /// When its connection closed; `None` while registered.
    left: Option<Instant>,
}

/// Where a station stands, as far as its relay credentials are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Registered,
    /// Left this long ago (at most [`LEFT_GRACE`]).
    Left(Duration),
    /// Never seen, or gone for longer than [`LEFT_GRACE`].
    Gone,
}

/// The relay's listening address and credential secret, set once it is bound.
#[derive(Debug, Clone)]
pub struct RelayInfo {
    pub listen: SocketAddr,
    pub secret: [u8; 32],
}

/// Shared between the sessions and the relay; every borrow ends inside one call.
#[derive(Default)]
pub struct Stations {
    list: RefCell<heapless::Vec<Station, ENTRIES>>,
    pub relay: OnceCell<RelayInfo>,
    /// Allocations in use, for `/healthz` and `/metrics`.
    pub allocations: Cell<usize>,
    /// Application data relayed, both directions, for `/metrics`.
    pub relayed_bytes: Cell<u64>,
}

/// The canonical form of an address: an IPv4-mapped IPv6 address as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl Stations {
    /// `conn` registered (or resumed) as `name` from `ip`. A resume replaces the entry
    /// of the name, so the old connection's later disconnect changes nothing.
    pub fn online(&self, conn: ConnId, name: &str, ip: IpAddr) {
        let Ok(name) = Name::try_from(name) else {
            return;
        };
        let mut list = self.list.borrow_mut();
        list.retain(|s| s.name != name);
        let entry = Station {
            conn,
            name,
            ip: canonical(ip),
            left: None,
        };
        if let Err(entry) = list.push(entry) {
            // Full of departures: forget the oldest one (registered ones are at most
            // CAPACITY, so there is always one).
            if let Some(oldest) = list
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.left.map(|at| (i, at)))
                .min_by_key(|(_, at)| *at)
                .map(|(i, _)| i)
            {
                list.swap_remove(oldest);
                let _ = list.push(entry);
            }
        }
    }

    /// `conn` closed at `now`.
    pub fn offline(&self, conn: ConnId, now: Instant) {
        let mut list = self.list.borrow_mut();
        list.retain(|s| s.left.is_none_or(|at| now.duration_since(at) <= LEFT_GRACE));
        if let Some(s) = list.iter_mut().find(|s| s.conn == conn && s.left.is_none()) {
            s.left = Some(now);
        }
    }

    /// Whether `name` may still use its credentials at `now`.
    pub fn presence(&self, name: &str, now: Instant) -> Presence {
        let list = self.list.borrow();
        match list.iter().find(|s| s.name.as_str() == name) {
            Some(Station { left: None, .. }) => Presence::Registered,
            Some(Station { left: Some(at), .. }) => {
                let ago = now.saturating_duration_since(*at);
                if ago <= LEFT_GRACE {
                    Presence::Left(ago)
                } else {
                    Presence::Gone
                }
            }
            None => Presence::Gone,
        }
    }

    /// The `iceServers` for a connection whose frame `text` registers a station: the
    /// relay on the address the tablet reached this appliance at (`local`), over UDP and
    /// TCP, with that station's credentials, then `base` (`--ice-servers`). `None` when
    /// the relay is off, the frame is no `register`, or the address is unknown.
    pub fn offer(
        &self,
        base: &serde_json::value::RawValue,
        local: Option<IpAddr>,
        text: &str,
    ) -> Option<Box<serde_json::value::RawValue>> {
        let relay = self.relay.get()?;
        let Ok((_, crate::protocol::ClientMsg::Register { name, .. })) =
            crate::protocol::decode(text)
        else {
            return None;
        };
        let ip = match relay.listen.ip() {
            // A wildcard IPv4 listener cannot be reached at an IPv6 address: no offer
            // rather than one that cannot work.
            ip if ip.is_unspecified() => match canonical(local?) {
                local if local.is_ipv6() && ip.is_ipv4() => return None,
                local => local,
            },
            ip => ip,
        };
        let host = SocketAddr::new(ip, relay.listen.port());
        let udp = format!("turn:{host}?transport=udp");
        let tcp = format!("turn:{host}?transport=tcp");
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (user, pass) = credentials(&relay.secret, &name, unix);
        crate::protocol::with_turn(base, &[&udp, &tcp], &user, &pass)
    }

    /// Whether `ip` is the source address of a registered station's WebSocket.
    pub fn is_station_address(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.list
            .borrow()
            .iter()
            .any(|s| s.left.is_none() && s.ip == ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_then_left_then_gone() {
        let s = Stations::default();
        let t0 = Instant::now();
        let ip: IpAddr = "192.168.1.20".parse().unwrap();
        assert_eq!(s.presence("door", t0), Presence::Gone);
        s.online(1, "door", ip);
        assert_eq!(s.presence("door", t0), Presence::Registered);
        assert!(s.is_station_address(ip));
        assert!(s.is_station_address("::ffff:192.168.1.20".parse().unwrap()));
        assert!(!s.is_station_address("192.168.1.1".parse().unwrap()));
        s.offline(1, t0);
        assert!(!s.is_station_address(ip));
        let later = t0 + Duration::from_secs(30);
        assert_eq!(
            s.presence("door", later),
            Presence::Left(Duration::from_secs(30))
        );
        assert_eq!(
            s.presence("door", t0 + Duration::from_secs(61)),
            Presence::Gone
        );
    }

    #[test]
    fn a_resume_replaces_and_the_old_connection_closing_changes_nothing() {
        let s = Stations::default();
        let now = Instant::now();
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        s.online(1, "door", ip);
        s.online(2, "door", ip); // resumed on connection 2
        s.offline(1, now); // the replaced connection ends
        assert_eq!(s.presence("door", now), Presence::Registered);
        s.offline(2, now);
        assert_eq!(s.presence("door", now), Presence::Left(Duration::ZERO));
        s.online(3, "door", ip); // back within the grace: registered again
        assert_eq!(s.presence("door", now), Presence::Registered);
    }

    #[test]
    fn full_of_departures_forgets_the_oldest() {
        let s = Stations::default();
        let t0 = Instant::now();
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        for i in 0..ENTRIES as u64 {
            s.online(i, &format!("s{i}"), ip);
            s.offline(i, t0 + Duration::from_millis(i));
        }
        s.online(9999, "new", ip);
        assert_eq!(s.presence("new", t0), Presence::Registered);
        assert_eq!(s.presence("s0", t0), Presence::Gone);
        assert!(matches!(s.presence("s1", t0), Presence::Left(_)));
    }
}
