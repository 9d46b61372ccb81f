//! TURN decisions (RFC 8656 with the long-term credentials of RFC 8489 §9.2), as pure
//! functions over a fixed-capacity allocation table: a request becomes one [`Answer`]
//! (the response to send, the relay socket to close); a relayed packet becomes a route or
//! a drop. No sockets and no clock of its own: time comes in, and so does the binding of
//! a relay port ([`Ctx::bind`]), so every rule is unit-tested here.
//!
//! The rules that make this relay safe inside a home or office network:
//! - credentials are ephemeral ("TURN REST" form): username `<unix expiry>:<station>`,
//!   password base64(HMAC-SHA1(secret, username)), made by [`credentials`] for a
//!   registered station; accepted while that station is registered and at most 60 s after
//!   it left; while it is registered an expired timestamp does not matter, so a long call
//!   is never cut;
//! - permissions and channels only towards registered stations' addresses and this
//!   relay's own addresses (403 otherwise): never a way into the rest of the LAN;
//! - at most [`PER_STATION`] allocations per station (486) and the table's limit in all
//!   (508), lifetimes cut to [`MAX_LIFETIME`], a byte rate per allocation and direction.

use crate::peers::ConnId;
use crate::stations::{Presence, Stations, canonical, password};
use crate::stun::{self, Class, Message, Writer, attr, method};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The realm of the long-term credentials.
pub const REALM: &str = "intercom";
/// Allocations one station may hold (a Chromium caller holds 4 at its peak).
pub const PER_STATION: usize = 8;
/// The table's build-time capacity: twice the peer table's.
pub const CAPACITY: usize = 2 * crate::peers::CAPACITY;
/// The longest allocation lifetime granted, in seconds; longer requests are cut to it.
pub const MAX_LIFETIME: u32 = 600;
/// Permissions last 300 s (RFC 8656 §9).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// Channel bindings last 600 s (RFC 8656 §12).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// How long a NONCE is accepted, in seconds; after that, 438 and a fresh one.
pub const NONCE_LIFETIME: u64 = 600;
/// Permissions (peer addresses) per allocation.
pub const MAX_PERMISSIONS: usize = 16;
/// Channels per allocation.
pub const MAX_CHANNELS: usize = 16;

/// A byte bucket holds a quarter second of the cap (and one packet at least).
const BURST_DIV: u64 = 4;

/// How a client reached the relay. TCP connections are told apart by their id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp(ConnId),
}

/// The client side of an allocation's 5-tuple (the server side is the listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Why a request is refused; each is one STUN error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 400: a required attribute missing or malformed, or an unknown method.
    BadRequest,
    /// 401: no or wrong credentials (REALM and a NONCE go with it).
    Unauthorized,
    /// 403: a peer that is neither a registered station nor this relay.
    Forbidden,
    /// 420: a comprehension-required attribute this server does not know.
    UnknownAttribute,
    /// 437: no allocation for this 5-tuple, or already one with another request.
    Mismatch,
    /// 438: the NONCE is not (or no longer) one this server gave.
    StaleNonce,
    /// 440: a relay address family other than the one the client reached us by.
    FamilyNotSupported,
    /// 441: the request is not signed by the allocation's own username.
    WrongCredentials,
    /// 442: a relay transport other than UDP.
    UnsupportedTransport,
    /// 443: a peer address of another family than the relay address.
    PeerFamilyMismatch,
    /// 486: the station holds [`PER_STATION`] allocations.
    Quota,
    /// 508: the table, a relay port, or an allocation's permissions or channels are full.
    Capacity,
}

impl Refusal {
    pub fn code(self) -> u16 {
        match self {
            Refusal::BadRequest => 400,
            Refusal::Unauthorized => 401,
            Refusal::Forbidden => 403,
            Refusal::UnknownAttribute => 420,
            Refusal::Mismatch => 437,
            Refusal::StaleNonce => 438,
            Refusal::FamilyNotSupported => 440,
            Refusal::WrongCredentials => 441,
            Refusal::UnsupportedTransport => 442,
            Refusal::PeerFamilyMismatch => 443,
            Refusal::Quota => 486,
            Refusal::Capacity => 508,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Refusal::BadRequest => "Bad Request",
            Refusal::Unauthorized => "Unauthorized",
            Refusal::Forbidden => "Forbidden",
            Refusal::UnknownAttribute => "Unknown Attribute",
            Refusal::Mismatch => "Allocation Mismatch",
            Refusal::StaleNonce => "Stale Nonce",
            Refusal::FamilyNotSupported => "Address Family not Supported",
            Refusal::WrongCredentials => "Wrong Credentials",
            Refusal::UnsupportedTransport => "Unsupported Transport Protocol",
            Refusal::PeerFamilyMismatch => "Peer Address Family Mismatch",
            Refusal::Quota => "Allocation Quota Reached",
            Refusal::Capacity => "Insufficient Capacity",
        }
    }
}

/// Bytes per second allowed, refilled continuously; what exceeds it is dropped.
#[derive(Debug, Clone)]
struct Bucket {
    bytes: u64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, len: usize, rate: u64, now: Instant) -> bool {
        let cap = (rate / BURST_DIV).max(stun::MAX_MESSAGE as u64);
        let us = now.saturating_duration_since(self.at).as_micros() as u64;
        if us > 0 {
            self.bytes = (self.bytes + us.saturating_mul(rate) / 1_000_000).min(cap);
            self.at = now;
        }
        match self.bytes.checked_sub(len as u64) {
            Some(left) => {
                self.bytes = left;
                true
            }
            None => false,
        }
    }
}

#[derive(Debug, Clone)]
struct Channel {
    number: u16,
    peer: SocketAddr,
    until: Instant,
}

type Username = heapless::String<64>;

#[derive(Debug, Clone)]
struct Allocation {
    client: Client,
    relay: SocketAddr,
    /// The Allocate request's transaction, so a retransmission gets the same answer.
    tid: [u8; 12],
    user: Username,
    station: crate::protocol::Name,
    until: Instant,
    permissions: heapless::Vec<(IpAddr, Instant), MAX_PERMISSIONS>,
    channels: heapless::Vec<Channel, MAX_CHANNELS>,
    to_peer: Bucket,
    to_client: Bucket,
}

impl Allocation {
    fn permits(&self, ip: IpAddr, now: Instant) -> bool {
        let ip = canonical(ip);
        self.permissions
            .iter()
            .any(|(p, until)| *p == ip && *until > now)
    }
}

/// What a request needs from outside: the time, who is registered, where the client
/// reached us, and a way to open a relay socket there.
pub struct Ctx<'a> {
    pub now: Instant,
    /// Seconds since the Unix epoch (credentials and nonces carry wall-clock times).
    pub unix: u64,
    pub stations: &'a Stations,
    /// The local address the client's packets arrived at: the relay address is made there.
    pub local: IpAddr,
    /// Opens a relay socket on that address (on an even port when asked), returning its
    /// address, or `None` when no port of the range is free.
    pub bind: &'a mut dyn FnMut(IpAddr, bool) -> Option<SocketAddr>,
}

/// The outcome of one request.
pub struct Answer {
    /// The response, when there is one (requests always get one).
    pub reply: Option<Writer>,
    /// A relay socket to close (its allocation was deleted).
    pub freed: Option<SocketAddr>,
}

/// Where a packet from a peer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub client: Client,
    /// Framed as ChannelData on this channel, or else as a Data indication.
    pub channel: Option<u16>,
}

/// Every allocation, in a fixed table.
pub struct Table {
    allocs: heapless::Vec<Allocation, CAPACITY>,
    /// At most this many allocations (2 × `--max-peers`).
    limit: usize,
    secret: [u8; 32],
    /// Bytes per second per allocation and direction (`--turn-kbps`).
    rate: u64,
    /// The distinct addresses relay sockets are on (this host's), so the per-packet
    /// check of a peer on this host costs a compare or two; `None` when there are more
    /// than fit, and then the table is scanned.
    relay_ips: Option<heapless::Vec<IpAddr, 4>>,
}

/// A username's expiry and station name.
fn parse_username(user: &str) -> Option<(u64, &str)> {
    let (expiry, name) = user.split_once(':')?;
    if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return None;
    }
    Some((expiry.parse().ok()?, name))
}

/// Appends `n` as lowercase hex.
fn push_hex(s: &mut heapless::String<64>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        let _ = s.push(HEX[(b >> 4) as usize] as char);
        let _ = s.push(HEX[(b & 15) as usize] as char);
    }
}

impl Table {
    /// A table of at most `limit` allocations, credentials under `secret`, `kbps` per
    /// allocation and direction.
    pub fn new(limit: usize, secret: [u8; 32], kbps: u32) -> Table {
        Table {
            allocs: heapless::Vec::new(),
            limit: limit.min(CAPACITY),
            secret,
            rate: kbps as u64 * 1000 / 8,
            relay_ips: Some(heapless::Vec::new()),
        }
    }

    /// Allocations in use.
    pub fn len(&self) -> usize {
        self.allocs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.allocs.is_empty()
    }

    /// A fresh NONCE for `client`: its expiry and a MAC over it and the client's address,
    /// so nothing is stored per nonce.
    pub fn nonce(&self, client: SocketAddr, unix: u64) -> heapless::String<64> {
        self.nonce_until(client, unix + NONCE_LIFETIME)
    }

    fn nonce_until(&self, client: SocketAddr, until: u64) -> heapless::String<64> {
        let mut s = heapless::String::new();
        push_hex(&mut s, &until.to_be_bytes());
        let mut addr = [0u8; 18];
        let (ip, port) = match canonical(client.ip()) {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), client.port()),
            IpAddr::V6(v6) => (v6.octets(), client.port()),
        };
        addr[..16].copy_from_slice(&ip);
        addr[16..].copy_from_slice(&port.to_be_bytes());
        let mac = stun::hmac_sha1(&self.secret, &[b"nonce", &until.to_be_bytes(), &addr])
            .unwrap_or([0; 20]);
        push_hex(&mut s, &mac[..10]);
        s
    }

    fn nonce_valid(&self, nonce: &str, client: SocketAddr, unix: u64) -> bool {
        let Some(until) = nonce
            .get(..16)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        else {
            return false;
        };
        let expected = self.nonce_until(client, until);
        until > unix
            && expected.len() == nonce.len()
            && openssl::memcmp::eq(expected.as_bytes(), nonce.as_bytes())
    }

    fn find(&self, client: &Client) -> Option<usize> {
        self.allocs.iter().position(|a| a.client == *client)
    }

    /// Whether `peer` may be one: any port of a registered station's address, or exactly
    /// one of this relay's own addresses (two tablets both behind the relay) — never any
    /// other port of this host, which would reach its services from its own address.
    fn allowed_peer(&self, peer: SocketAddr, stations: &Stations) -> bool {
        let peer = SocketAddr::new(canonical(peer.ip()), peer.port());
        stations.is_station_address(peer.ip()) || self.allocs.iter().any(|a| a.relay == peer)
    }

    /// A permission is per address; towards this host's own address it covers only the
    /// relay addresses themselves (unless a station registered from this host).
    fn host_port_allowed(&self, peer: SocketAddr, stations: &Stations) -> bool {
        let ip = canonical(peer.ip());
        let on_this_host = match &self.relay_ips {
            Some(ips) => ips.contains(&ip),
            None => self.allocs.iter().any(|a| a.relay.ip() == ip),
        };
        !on_this_host || self.allowed_peer(peer, stations)
    }

    /// Recount the relay addresses after allocations came or went.
    fn recount_relay_ips(&mut self) {
        let mut ips = heapless::Vec::new();
        for a in &self.allocs {
            if !ips.contains(&a.relay.ip()) && ips.push(a.relay.ip()).is_err() {
                self.relay_ips = None;
                return;
            }
        }
        self.relay_ips = Some(ips);
    }

    /// One STUN request (or indication other than Send, which is ignored) from `client`.
    pub fn request(&mut self, ctx: &mut Ctx, client: Client, m: &Message) -> Answer {
        let mut answer = Answer {
            reply: None,
            freed: None,
        };
        if m.class != Class::Request {
            return answer;
        }
        if m.method == method::BINDING {
            let mut w = Writer::new(method::BINDING, Class::Success, m.tid);
            w.xor_address(attr::XOR_MAPPED_ADDRESS, client.addr)
                .fingerprint();
            answer.reply = Some(w);
            return answer;
        }
        if !matches!(
            m.method,
            method::ALLOCATE | method::REFRESH | method::CREATE_PERMISSION | method::CHANNEL_BIND
        ) {
            answer.reply = Some(self.refuse(m, client, ctx.unix, Refusal::BadRequest, None));
            return answer;
        }
        let auth = match self.authenticate(ctx, client, m) {
            Ok(auth) => auth,
            Err(r) => {
                answer.reply = Some(self.refuse(m, client, ctx.unix, r, None));
                return answer;
            }
        };
        let unknown = m.unknown_required();
        if !unknown.is_empty() {
            let mut w = Writer::new(m.method, Class::Error, m.tid);
            w.error(420, Refusal::UnknownAttribute.reason())
                .unknown(&unknown)
                .integrity(&auth.key)
                .fingerprint();
            answer.reply = Some(w);
            return answer;
        }
        // The other methods act on the client's own allocation.
        let result = match m.method {
            method::ALLOCATE => self.allocate(ctx, client, m, &auth),
            method => self.own(&client, &auth).and_then(|i| match method {
                method::REFRESH => Ok(self.refresh(ctx, i, m, &mut answer.freed)),
                method::CREATE_PERMISSION => self.permit(ctx, i, m),
                _ => self.channel_bind(ctx, i, m),
            }),
        };
        answer.reply = Some(match result {
            Ok(mut w) => {
                w.integrity(&auth.key).fingerprint();
                w
            }
            Err(r) => self.refuse(m, client, ctx.unix, r, Some(&auth.key)),
        });
        answer
    }

    /// An error response: 401 and 438 carry REALM and a fresh NONCE and no integrity
    /// (the client has no valid key yet); the rest are signed when the request was.
    fn refuse(
        &self,
        m: &Message,
        client: Client,
        unix: u64,
        r: Refusal,
        key: Option<&[u8; 16]>,
    ) -> Writer {
        let mut w = Writer::new(m.method, Class::Error, m.tid);
        w.error(r.code(), r.reason());
        if matches!(r, Refusal::Unauthorized | Refusal::StaleNonce) {
            w.attr(attr::REALM, REALM.as_bytes())
                .attr(attr::NONCE, self.nonce(client.addr, unix).as_bytes());
        }
        if let Some(key) = key {
            w.integrity(key);
        }
        w.fingerprint();
        w
    }

    /// RFC 8489 §9.2.4, in its order: integrity present, the attributes it needs, the
    /// nonce, the user, then the integrity itself.
    fn authenticate(&self, ctx: &Ctx, client: Client, m: &Message) -> Result<Auth, Refusal> {
        if !m.has_integrity() {
            return Err(Refusal::Unauthorized);
        }
        let (Some(user), Some(realm), Some(nonce)) = (
            m.text(attr::USERNAME),
            m.text(attr::REALM),
            m.text(attr::NONCE),
        ) else {
            return Err(Refusal::BadRequest);
        };
        if !self.nonce_valid(nonce, client.addr, ctx.unix) {
            return Err(Refusal::StaleNonce);
        }
        let (expiry, name) = parse_username(user).ok_or(Refusal::Unauthorized)?;
        let usable = match ctx.stations.presence(name, ctx.now) {
            Presence::Registered => true,
            Presence::Left(_) => expiry > ctx.unix,
            Presence::Gone => false,
        };
        if !usable || realm != REALM {
            return Err(Refusal::Unauthorized);
        }
        let key = stun::long_term_key(user, REALM, &password(&self.secret, user));
        if !m.check_integrity(&key) {
            return Err(Refusal::Unauthorized);
        }
        Ok(Auth {
            user: Username::try_from(user).map_err(|_| Refusal::Unauthorized)?,
            station: crate::protocol::Name::try_from(name).map_err(|_| Refusal::Unauthorized)?,
            key,
        })
    }

    /// A success response to `m`; `request` signs it once the handler has added its
    /// attributes.
    fn success(&self, m: &Message) -> Writer {
        Writer::new(m.method, Class::Success, m.tid)
    }

    fn allocate(
        &mut self,
        ctx: &mut Ctx,
        client: Client,
        m: &Message,
        auth: &Auth,
    ) -> Result<Writer, Refusal> {
        if let Some(i) = self.find(&client) {
            let a = &self.allocs[i];
            if a.tid != m.tid || a.user != auth.user {
                return Err(Refusal::Mismatch);
            }
            // A retransmission: the same answer again.
            let left = a.until.saturating_duration_since(ctx.now).as_secs() as u32;
            let mut w = self.success(m);
            w.xor_address(attr::XOR_RELAYED_ADDRESS, a.relay)
                .u32(attr::LIFETIME, left)
                .xor_address(attr::XOR_MAPPED_ADDRESS, client.addr);
            return Ok(w);
        }
        match m.requested_transport() {
            None => return Err(Refusal::BadRequest),
            Some(17) => {}
            Some(_) => return Err(Refusal::UnsupportedTransport),
        }
        if let Some(family) = m.get(attr::REQUESTED_ADDRESS_FAMILY) {
            let want_v4 = match family.first() {
                Some(0x01) => true,
                Some(0x02) => false,
                _ => return Err(Refusal::BadRequest),
            };
            if want_v4 != canonical(ctx.local).is_ipv4() {
                return Err(Refusal::FamilyNotSupported);
            }
        }
        // EVEN-PORT (RFC 8656 §14.6): an even port is easy; reserving the next one (the R
        // bit) is not offered, so that is insufficient capacity.
        let even = match m.get(attr::EVEN_PORT) {
            None => false,
            Some([r, ..]) if r & 0x80 == 0 => true,
            Some([_, ..]) => return Err(Refusal::Capacity),
            Some([]) => return Err(Refusal::BadRequest),
        };
        let held = self
            .allocs
            .iter()
            .filter(|a| a.station == auth.station)
            .count();
        if held >= PER_STATION {
            return Err(Refusal::Quota);
        }
        if self.allocs.len() >= self.limit {
            return Err(Refusal::Capacity);
        }
        let relay = (ctx.bind)(canonical(ctx.local), even).ok_or(Refusal::Capacity)?;
        let lifetime = MAX_LIFETIME;
        let full = Bucket {
            bytes: (self.rate / BURST_DIV).max(stun::MAX_MESSAGE as u64),
            at: ctx.now,
        };
        let alloc = Allocation {
            client,
            relay,
            tid: m.tid,
            user: auth.user.clone(),
            station: auth.station.clone(),
            until: ctx.now + Duration::from_secs(lifetime as u64),
            permissions: heapless::Vec::new(),
            channels: heapless::Vec::new(),
            to_peer: full.clone(),
            to_client: full,
        };
        if self.allocs.push(alloc).is_err() {
            return Err(Refusal::Capacity);
        }
        self.recount_relay_ips();
        let mut w = self.success(m);
        w.xor_address(attr::XOR_RELAYED_ADDRESS, relay)
            .u32(attr::LIFETIME, lifetime)
            .xor_address(attr::XOR_MAPPED_ADDRESS, client.addr);
        Ok(w)
    }

    /// The allocation of `client`, which must be the requesting user's.
    fn own(&mut self, client: &Client, auth: &Auth) -> Result<usize, Refusal> {
        let i = self.find(client).ok_or(Refusal::Mismatch)?;
        if self.allocs[i].user != auth.user {
            return Err(Refusal::WrongCredentials);
        }
        Ok(i)
    }

    fn refresh(
        &mut self,
        ctx: &Ctx,
        i: usize,
        m: &Message,
        freed: &mut Option<SocketAddr>,
    ) -> Writer {
        let lifetime = match m.u32(attr::LIFETIME) {
            Some(0) => 0,
            _ => MAX_LIFETIME,
        };
        if lifetime == 0 {
            *freed = Some(self.allocs.swap_remove(i).relay);
            self.recount_relay_ips();
        } else {
            self.allocs[i].until = ctx.now + Duration::from_secs(lifetime as u64);
        }
        let mut w = self.success(m);
        w.u32(attr::LIFETIME, lifetime);
        w
    }

    /// Checks one XOR-PEER-ADDRESS for allocation `i`.
    fn check_peer(&self, i: usize, peer: SocketAddr, stations: &Stations) -> Result<(), Refusal> {
        if canonical(peer.ip()).is_ipv4() != canonical(self.allocs[i].relay.ip()).is_ipv4() {
            return Err(Refusal::PeerFamilyMismatch);
        }
        if !self.allowed_peer(peer, stations) {
            return Err(Refusal::Forbidden);
        }
        Ok(())
    }

    fn permit(&mut self, ctx: &Ctx, i: usize, m: &Message) -> Result<Writer, Refusal> {
        let mut peers: heapless::Vec<IpAddr, MAX_PERMISSIONS> = heapless::Vec::new();
        for v in m.get_all(attr::XOR_PEER_ADDRESS) {
            let peer = stun::xor_address(v, &m.tid).ok_or(Refusal::BadRequest)?;
            self.check_peer(i, peer, ctx.stations)?;
            let ip = canonical(peer.ip());
            if !peers.contains(&ip) && peers.push(ip).is_err() {
                return Err(Refusal::Capacity);
            }
        }
        if peers.is_empty() {
            return Err(Refusal::BadRequest);
        }
        let a = &mut self.allocs[i];
        a.permissions.retain(|(_, until)| *until > ctx.now);
        let new = peers
            .iter()
            .filter(|ip| !a.permissions.iter().any(|(p, _)| p == *ip))
            .count();
        if a.permissions.len() + new > MAX_PERMISSIONS {
            return Err(Refusal::Capacity);
        }
        for ip in peers {
            install(a, ip, ctx.now);
        }
        Ok(self.success(m))
    }

    fn channel_bind(&mut self, ctx: &Ctx, i: usize, m: &Message) -> Result<Writer, Refusal> {
        let number = m
            .channel_number()
            .filter(|n| stun::valid_channel(*n))
            .ok_or(Refusal::BadRequest)?;
        let peer = m
            .xor_address(attr::XOR_PEER_ADDRESS)
            .ok_or(Refusal::BadRequest)?;
        let peer = SocketAddr::new(canonical(peer.ip()), peer.port());
        self.check_peer(i, peer, ctx.stations)?;
        let a = &mut self.allocs[i];
        a.channels.retain(|c| c.until > ctx.now);
        a.permissions.retain(|(_, until)| *until > ctx.now);
        let by_number = a.channels.iter().position(|c| c.number == number);
        let by_peer = a.channels.iter().position(|c| c.peer == peer);
        let until = ctx.now + CHANNEL_LIFETIME;
        match (by_number, by_peer) {
            (Some(x), Some(y)) if x == y => a.channels[x].until = until,
            (None, None) => {
                let has_permission = a.permissions.iter().any(|(p, _)| *p == peer.ip());
                if a.channels.is_full()
                    || (!has_permission && a.permissions.len() >= MAX_PERMISSIONS)
                {
                    return Err(Refusal::Capacity);
                }
                let _ = a.channels.push(Channel {
                    number,
                    peer,
                    until,
                });
            }
            // The number is bound to another peer, or the peer to another number.
            _ => return Err(Refusal::BadRequest),
        }
        install(a, peer.ip(), ctx.now);
        Ok(self.success(m))
    }

    /// A Send indication's or ChannelData's data from `client` to `peer`, of `len` bytes:
    /// the relay address to send it from, or `None` to drop it (no allocation, no
    /// permission, over the rate).
    pub fn to_peer(
        &mut self,
        client: &Client,
        peer: SocketAddr,
        len: usize,
        now: Instant,
        stations: &Stations,
    ) -> Option<SocketAddr> {
        let i = self.find(client)?;
        self.send_via(i, peer, len, now, stations)
    }

    /// Allocation `i` sends `len` bytes to `peer`, if its permission and rate allow.
    fn send_via(
        &mut self,
        i: usize,
        peer: SocketAddr,
        len: usize,
        now: Instant,
        stations: &Stations,
    ) -> Option<SocketAddr> {
        let rate = self.rate;
        if !self.allocs[i].permits(peer.ip(), now) || !self.host_port_allowed(peer, stations) {
            return None;
        }
        let a = &mut self.allocs[i];
        a.to_peer.take(len, rate, now).then_some(a.relay)
    }

    /// ChannelData from `client`: the relay address and the peer, or `None` to drop it.
    pub fn channel_to_peer(
        &mut self,
        client: &Client,
        channel: u16,
        len: usize,
        now: Instant,
        stations: &Stations,
    ) -> Option<(SocketAddr, SocketAddr)> {
        let i = self.find(client)?;
        let peer = self.allocs[i]
            .channels
            .iter()
            .find(|c| c.number == channel && c.until > now)?
            .peer;
        self.send_via(i, peer, len, now, stations)
            .map(|r| (r, peer))
    }

    /// A datagram from `peer` arrived on `relay`: where it goes, or `None` to drop it.
    pub fn from_peer(
        &mut self,
        relay: SocketAddr,
        peer: SocketAddr,
        len: usize,
        now: Instant,
    ) -> Option<Delivery> {
        let rate = self.rate;
        let a = self.allocs.iter_mut().find(|a| a.relay == relay)?;
        if !a.permits(peer.ip(), now) || !a.to_client.take(len, rate, now) {
            return None;
        }
        let peer = SocketAddr::new(canonical(peer.ip()), peer.port());
        let channel = a
            .channels
            .iter()
            .find(|c| c.peer == peer && c.until > now)
            .map(|c| c.number);
        Some(Delivery {
            client: a.client,
            channel,
        })
    }

    /// Delete what has expired: allocations past their lifetime, and those of stations
    /// gone for longer than their credentials last. Returns the relay sockets to close.
    pub fn expire(
        &mut self,
        now: Instant,
        stations: &Stations,
    ) -> heapless::Vec<SocketAddr, CAPACITY> {
        self.remove(|a| a.until <= now || stations.presence(&a.station, now) == Presence::Gone)
    }

    /// A TCP connection closed: its allocations go with it.
    pub fn closed(&mut self, conn: ConnId) -> heapless::Vec<SocketAddr, CAPACITY> {
        self.remove(|a| a.client.transport == Transport::Tcp(conn))
    }

    fn remove(
        &mut self,
        mut gone: impl FnMut(&Allocation) -> bool,
    ) -> heapless::Vec<SocketAddr, CAPACITY> {
        let mut freed = heapless::Vec::new();
        let mut i = 0;
        while i < self.allocs.len() {
            if gone(&self.allocs[i]) {
                let _ = freed.push(self.allocs.swap_remove(i).relay);
            } else {
                i += 1;
            }
        }
        if !freed.is_empty() {
            self.recount_relay_ips();
        }
        freed
    }
}

/// Install or refresh a permission (room was checked by the caller).
fn install(a: &mut Allocation, ip: IpAddr, now: Instant) {
    let until = now + PERMISSION_LIFETIME;
    match a.permissions.iter_mut().find(|(p, _)| *p == ip) {
        Some(p) => p.1 = until,
        None => {
            let _ = a.permissions.push((ip, until));
        }
    }
}

/// A request's verified credentials.
struct Auth {
    user: Username,
    station: crate::protocol::Name,
    key: [u8; 16],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stations::{CREDENTIAL_TTL, credentials};

    const SECRET: [u8; 32] = [9; 32];
    const UNIX: u64 = 1_800_000_000;

    struct T {
        table: Table,
        stations: Stations,
        now: Instant,
        unix: u64,
        next_port: u16,
        ports_left: usize,
        local: IpAddr,
    }

    fn client(port: u16) -> Client {
        Client {
            transport: Transport::Udp,
            addr: SocketAddr::from(([192, 168, 1, 20], port)),
        }
    }

    fn peer(last: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([192, 168, 1, last], port))
    }

    impl T {
        fn new(limit: usize) -> T {
            let stations = Stations::default();
            stations.online(1, "door", "192.168.1.20".parse().unwrap());
            stations.online(2, "kitchen", "192.168.1.30".parse().unwrap());
            T {
                table: Table::new(limit, SECRET, 8000),
                stations,
                now: Instant::now(),
                unix: UNIX,
                next_port: 49160,
                ports_left: 1000,
                local: "192.168.1.2".parse().unwrap(),
            }
        }

        fn send(&mut self, from: Client, req: &[u8]) -> (Option<Vec<u8>>, Option<SocketAddr>) {
            let m = Message::parse(req).unwrap();
            let (next, left) = (&mut self.next_port, &mut self.ports_left);
            let mut bind = |ip: IpAddr, even: bool| {
                if *left == 0 {
                    return None;
                }
                *left -= 1;
                *next += if even { 2 - *next % 2 } else { 1 };
                Some(SocketAddr::new(ip, *next))
            };
            let mut ctx = Ctx {
                now: self.now,
                unix: self.unix,
                stations: &self.stations,
                local: self.local,
                bind: &mut bind,
            };
            let a = self.table.request(&mut ctx, from, &m);
            (
                a.reply.and_then(|w| w.finish().map(<[u8]>::to_vec)),
                a.freed,
            )
        }

        fn nonce(&self, from: Client) -> String {
            self.table.nonce(from.addr, self.unix).to_string()
        }
    }

    /// A request signed with `station`'s credentials (or `pass` when given).
    fn req(
        t: &T,
        from: Client,
        method: u16,
        station: &str,
        pass: Option<&str>,
        build: impl FnOnce(&mut Writer),
    ) -> Vec<u8> {
        let (user, good) = credentials(&SECRET, station, t.unix);
        let pass = pass.map(str::to_string).unwrap_or(good);
        signed(t, from, method, &user, &pass, &t.nonce(from), build)
    }

    fn signed(
        _t: &T,
        _from: Client,
        method: u16,
        user: &str,
        pass: &str,
        nonce: &str,
        build: impl FnOnce(&mut Writer),
    ) -> Vec<u8> {
        let mut w = Writer::new(method, Class::Request, [method as u8; 12]);
        build(&mut w);
        w.attr(attr::USERNAME, user.as_bytes())
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, nonce.as_bytes())
            .integrity(&stun::long_term_key(user, REALM, pass))
            .fingerprint();
        w.finish().unwrap().to_vec()
    }

    fn udp(w: &mut Writer) {
        w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
    }

    fn code(reply: &[u8]) -> Option<u16> {
        Message::parse(reply).unwrap().error_code()
    }

    fn allocate(t: &mut T, from: Client, station: &str) -> Result<SocketAddr, u16> {
        let r = req(t, from, method::ALLOCATE, station, None, udp);
        let (reply, _) = t.send(from, &r);
        let reply = reply.unwrap();
        let m = Message::parse(&reply).unwrap();
        match m.class {
            Class::Success => Ok(m.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap()),
            _ => Err(m.error_code().unwrap()),
        }
    }

    /// A table of 8 in which the door's client (port 5000) holds an allocation: the
    /// table, the client and its relay address.
    fn door_allocated() -> (T, Client, SocketAddr) {
        let mut t = T::new(8);
        let from = client(5000);
        let relay = allocate(&mut t, from, "door").unwrap();
        (t, from, relay)
    }

    fn permit(t: &mut T, from: Client, to: SocketAddr) -> Option<u16> {
        let r = req(t, from, method::CREATE_PERMISSION, "door", None, |w| {
            w.xor_address(attr::XOR_PEER_ADDRESS, to);
        });
        code(&t.send(from, &r).0.unwrap())
    }

    #[test]
    fn binding_answers_the_mapped_address_without_credentials() {
        let mut t = T::new(8);
        let mut w = Writer::new(method::BINDING, Class::Request, [1; 12]);
        w.fingerprint();
        let (reply, _) = t.send(client(5000), w.finish().unwrap());
        let reply = reply.unwrap();
        let m = Message::parse(&reply).unwrap();
        assert_eq!(m.class, Class::Success);
        assert_eq!(
            m.xor_address(attr::XOR_MAPPED_ADDRESS),
            Some(client(5000).addr)
        );
    }

    #[test]
    fn unauthenticated_gets_401_with_realm_and_nonce_and_no_allocation() {
        let mut t = T::new(8);
        let mut w = Writer::new(method::ALLOCATE, Class::Request, [1; 12]);
        udp(&mut w);
        let (reply, _) = t.send(client(5000), w.finish().unwrap());
        let reply = reply.unwrap();
        let m = Message::parse(&reply).unwrap();
        assert_eq!(m.error_code(), Some(401));
        assert_eq!(m.text(attr::REALM), Some(REALM));
        let nonce = m.text(attr::NONCE).unwrap();
        assert!(t.table.nonce_valid(nonce, client(5000).addr, t.unix));
        assert!(!m.has_integrity());
        assert_eq!(t.table.len(), 0);
    }

    #[test]
    fn allocate_then_retransmit_then_mismatch() {
        let (mut t, from, relay) = door_allocated();
        assert_eq!(relay.ip(), "192.168.1.2".parse::<IpAddr>().unwrap());
        // The same request again (a lost response): the same relay address.
        assert_eq!(allocate(&mut t, from, "door"), Ok(relay));
        assert_eq!(t.table.len(), 1);
        // Another Allocate on the same 5-tuple: 437.
        let r = req(&t, from, method::ALLOCATE, "door", None, |w| {
            udp(w);
            w.attr(attr::DONT_FRAGMENT, &[]);
        });
        let r2 = with_tid(&t, from, [99; 12]);
        assert_eq!(code(&t.send(from, &r2).0.unwrap()), Some(437));
        // Success responses are signed with the user's key.
        let reply = t.send(from, &r).0.unwrap();
        let m = Message::parse(&reply).unwrap();
        let (user, pass) = credentials(&SECRET, "door", t.unix);
        assert!(m.check_integrity(&stun::long_term_key(&user, REALM, &pass)));
    }

    /// An Allocate by "door" in transaction `tid`.
    fn with_tid(t: &T, from: Client, tid: [u8; 12]) -> Vec<u8> {
        let mut w = Writer::new(method::ALLOCATE, Class::Request, tid);
        udp(&mut w);
        let (user, pass) = credentials(&SECRET, "door", t.unix);
        w.attr(attr::USERNAME, user.as_bytes())
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, t.nonce(from).as_bytes())
            .integrity(&stun::long_term_key(&user, REALM, &pass))
            .fingerprint();
        w.finish().unwrap().to_vec()
    }

    #[test]
    fn wrong_password_unknown_station_and_bad_realm_get_401() {
        let mut t = T::new(8);
        let from = client(5000);
        let r = req(&t, from, method::ALLOCATE, "door", Some("guess"), udp);
        assert_eq!(code(&t.send(from, &r).0.unwrap()), Some(401));
        let r = req(&t, from, method::ALLOCATE, "nobody", None, udp);
        assert_eq!(code(&t.send(from, &r).0.unwrap()), Some(401));
        let r = signed(&t, from, method::ALLOCATE, "door", "x", &t.nonce(from), udp);
        assert_eq!(code(&t.send(from, &r).0.unwrap()), Some(401));
        // Integrity without a username: 400.
        let mut w = Writer::new(method::ALLOCATE, Class::Request, [1; 12]);
        udp(&mut w);
        w.integrity(b"k");
        assert_eq!(
            code(&t.send(from, w.finish().unwrap()).0.unwrap()),
            Some(400)
        );
        assert_eq!(t.table.len(), 0);
    }

    #[test]
    fn stale_or_foreign_nonce_gets_438_with_a_fresh_one() {
        let mut t = T::new(8);
        let from = client(5000);
        let (user, pass) = credentials(&SECRET, "door", t.unix);
        let old = t.nonce(from);
        t.unix += NONCE_LIFETIME + 1;
        let r = signed(&t, from, method::ALLOCATE, &user, &pass, &old, udp);
        let reply = t.send(from, &r).0.unwrap();
        let m = Message::parse(&reply).unwrap();
        assert_eq!(m.error_code(), Some(438));
        let fresh = m.text(attr::NONCE).unwrap().to_string();
        assert_ne!(fresh, old);
        // A nonce made for another client address is not valid here either.
        let theirs = t.table.nonce(client(6000).addr, t.unix).to_string();
        let r = signed(&t, from, method::ALLOCATE, &user, &pass, &theirs, udp);
        assert_eq!(code(&t.send(from, &r).0.unwrap()), Some(438));
        let r = signed(&t, from, method::ALLOCATE, &user, &pass, "garbage", udp);
        assert_eq!(code(&t.send(from, &r).0.unwrap()), Some(438));
        // The fresh one works.
        let r = signed(&t, from, method::ALLOCATE, &user, &pass, &fresh, udp);
        assert_eq!(code(&t.send(from, &r).0.unwrap()), None);
    }

    #[test]
    fn credentials_last_while_registered_and_60_s_after() {
        let mut t = T::new(8);
        let from = client(5000);
        let (user, pass) = credentials(&SECRET, "door", t.unix);
        let alloc = |t: &mut T, from: Client| {
            let r = signed(t, from, method::ALLOCATE, &user, &pass, &t.nonce(from), udp);
            code(&t.send(from, &r).0.unwrap())
        };
        // Long past the timestamp: still accepted while registered.
        t.unix += 10 * CREDENTIAL_TTL;
        assert_eq!(alloc(&mut t, from), None);
        t.unix -= 10 * CREDENTIAL_TTL;
        t.stations.offline(1, t.now);
        t.now += Duration::from_secs(59);
        assert_eq!(alloc(&mut t, client(5001)), None);
        // Left, and the timestamp passed: refused.
        t.unix += CREDENTIAL_TTL;
        assert_eq!(alloc(&mut t, client(5002)), Some(401));
        t.unix -= CREDENTIAL_TTL;
        t.now += Duration::from_secs(2);
        assert_eq!(alloc(&mut t, client(5003)), Some(401));
        // Its allocations go at the next sweep.
        assert_eq!(t.table.expire(t.now, &t.stations).len(), 2);
        assert!(t.table.is_empty());
        // Back (a resume): accepted again.
        t.stations
            .online(7, "door", "192.168.1.20".parse().unwrap());
        assert_eq!(alloc(&mut t, client(5004)), None);
    }

    #[test]
    fn refresh_keeps_and_deletes_lifetime_is_cut_to_600() {
        let (mut t, from, relay) = door_allocated();
        let r = req(&t, from, method::REFRESH, "door", None, |w| {
            w.u32(attr::LIFETIME, 3600);
        });
        let reply = t.send(from, &r).0.unwrap();
        let m = Message::parse(&reply).unwrap();
        assert_eq!(m.class, Class::Success);
        assert_eq!(m.u32(attr::LIFETIME), Some(600));
        // Just before the lifetime ends nothing expires; after it, the allocation goes.
        t.now += Duration::from_secs(599);
        assert!(t.table.expire(t.now, &t.stations).is_empty());
        let r = req(&t, from, method::REFRESH, "door", None, |_| {});
        assert_eq!(code(&t.send(from, &r).0.unwrap()), None);
        t.now += Duration::from_secs(599);
        assert!(t.table.expire(t.now, &t.stations).is_empty());
        // Lifetime 0 deletes, and frees the relay socket.
        let r = req(&t, from, method::REFRESH, "door", None, |w| {
            w.u32(attr::LIFETIME, 0);
        });
        let (reply, freed) = t.send(from, &r);
        assert_eq!(freed, Some(relay));
        let m = Message::parse(reply.as_deref().unwrap()).unwrap();
        assert_eq!(m.u32(attr::LIFETIME), Some(0));
        // Now there is none: 437.
        let r = req(&t, from, method::REFRESH, "door", None, |_| {});
        assert_eq!(code(&t.send(from, &r).0.unwrap()), Some(437));
        allocate(&mut t, from, "door").unwrap();
        t.now += Duration::from_secs(600);
        assert_eq!(t.table.expire(t.now, &t.stations).len(), 1);
    }

    #[test]
    fn another_station_cannot_touch_an_allocation() {
        let mut t = T::new(8);
        let from = client(5000);
        allocate(&mut t, from, "door").unwrap();
        let r = req(&t, from, method::REFRESH, "kitchen", None, |_| {});
        assert_eq!(code(&t.send(from, &r).0.unwrap()), Some(441));
    }

    #[test]
    fn permissions_only_towards_stations_and_our_relays() {
        let (mut t, from, relay) = door_allocated();
        // The kitchen tablet's address: fine. The router, the printer: 403.
        assert_eq!(permit(&mut t, from, peer(30, 40000)), None);
        assert_eq!(permit(&mut t, from, peer(1, 80)), Some(403));
        assert_eq!(permit(&mut t, from, peer(99, 9100)), Some(403));
        // This relay's own address (the other side also behind the relay): fine; another
        // port of this host: 403, and data towards one is dropped.
        assert_eq!(permit(&mut t, from, relay), None);
        assert_eq!(
            permit(&mut t, from, SocketAddr::new(relay.ip(), 22)),
            Some(403)
        );
        let ssh = SocketAddr::new(relay.ip(), 22);
        assert_eq!(t.table.to_peer(&from, ssh, 10, t.now, &t.stations), None);
        assert_eq!(
            t.table.to_peer(&from, relay, 10, t.now, &t.stations),
            Some(relay)
        );
        // IPv6 towards an IPv4 relay: 443.
        assert_eq!(
            permit(&mut t, from, "[fd00::1]:5".parse().unwrap()),
            Some(443)
        );
        // Without any peer: 400. Without an allocation: 437.
        let r = req(&t, from, method::CREATE_PERMISSION, "door", None, |_| {});
        assert_eq!(code(&t.send(from, &r).0.unwrap()), Some(400));
        assert_eq!(permit(&mut t, client(5999), peer(30, 1)), Some(437));
        // A station that left is no longer a permitted peer.
        t.stations.offline(2, t.now);
        assert_eq!(permit(&mut t, from, peer(30, 40000)), Some(403));
    }

    #[test]
    fn other_ports_of_this_host_stay_closed_on_many_addresses() {
        // Relay sockets on more addresses than the quick list holds: the check falls
        // back to scanning the table and still refuses this host's other ports.
        let mut t = T::new(8);
        let mut relays = Vec::new();
        for i in 0..6u8 {
            t.local = IpAddr::from([192, 168, 1, 200 + i]);
            relays.push(allocate(&mut t, client(6000 + i as u16), "door").unwrap());
        }
        assert!(t.table.relay_ips.is_none());
        let from = client(6000);
        let other = relays[5];
        assert_eq!(permit(&mut t, from, other), None);
        let ssh = SocketAddr::new(other.ip(), 22);
        assert_eq!(permit(&mut t, from, ssh), Some(403));
        assert_eq!(t.table.to_peer(&from, ssh, 10, t.now, &t.stations), None);
        assert_eq!(
            t.table.to_peer(&from, other, 10, t.now, &t.stations),
            Some(relays[0])
        );
        // Back under the limit, the quick list again.
        for c in 6001..6006 {
            let r = req(&t, client(c), method::REFRESH, "door", None, |w| {
                w.u32(attr::LIFETIME, 0);
            });
            t.send(client(c), &r);
        }
        assert_eq!(t.table.relay_ips.as_deref(), Some(&[relays[0].ip()][..]));
    }

    #[test]
    fn data_flows_only_with_a_permission() {
        let (mut t, from, relay) = door_allocated();
        let kitchen = peer(30, 40000);
        assert_eq!(
            t.table.to_peer(&from, kitchen, 100, t.now, &t.stations),
            None
        );
        assert_eq!(t.table.from_peer(relay, kitchen, 100, t.now), None);
        permit(&mut t, from, kitchen);
        assert_eq!(
            t.table.to_peer(&from, kitchen, 100, t.now, &t.stations),
            Some(relay)
        );
        // Permissions are per address: any port of it.
        assert_eq!(
            t.table.from_peer(relay, peer(30, 1234), 100, t.now),
            Some(Delivery {
                client: from,
                channel: None
            })
        );
        // Not from another address, not from an unknown client, not to an unknown relay.
        assert_eq!(t.table.from_peer(relay, peer(31, 1), 100, t.now), None);
        assert_eq!(
            t.table
                .to_peer(&client(1), kitchen, 100, t.now, &t.stations),
            None
        );
        assert_eq!(t.table.from_peer(kitchen, kitchen, 100, t.now), None);
        // Permissions expire after 300 s.
        t.now += PERMISSION_LIFETIME;
        assert_eq!(
            t.table.to_peer(&from, kitchen, 100, t.now, &t.stations),
            None
        );
    }

    #[test]
    fn channel_bind_rules() {
        let (mut t, from, relay) = door_allocated();
        let kitchen = peer(30, 40000);
        let bind = |t: &mut T, number: u16, to: SocketAddr| {
            let r = req(t, from, method::CHANNEL_BIND, "door", None, |w| {
                w.u32(attr::CHANNEL_NUMBER, (number as u32) << 16)
                    .xor_address(attr::XOR_PEER_ADDRESS, to);
            });
            code(&t.send(from, &r).0.unwrap())
        };
        assert_eq!(bind(&mut t, 0x4000, kitchen), None);
        // Binding installs the permission.
        assert_eq!(
            t.table
                .channel_to_peer(&from, 0x4000, 10, t.now, &t.stations),
            Some((relay, kitchen))
        );
        assert_eq!(
            t.table
                .from_peer(relay, kitchen, 10, t.now)
                .unwrap()
                .channel,
            Some(0x4000)
        );
        // Refreshing the same binding is fine; rebinding either side elsewhere is 400.
        assert_eq!(bind(&mut t, 0x4000, kitchen), None);
        assert_eq!(bind(&mut t, 0x4001, kitchen), Some(400));
        assert_eq!(bind(&mut t, 0x4000, peer(30, 40001)), Some(400));
        assert_eq!(bind(&mut t, 0x3FFF, peer(30, 40001)), Some(400));
        assert_eq!(bind(&mut t, 0x4002, peer(1, 53)), Some(403));
        assert_eq!(
            t.table
                .channel_to_peer(&from, 0x4001, 10, t.now, &t.stations),
            None
        );
        // Full of channels: 508.
        for n in 1..MAX_CHANNELS as u16 {
            assert_eq!(bind(&mut t, 0x4000 + n, peer(30, 41000 + n)), None);
        }
        assert_eq!(bind(&mut t, 0x4FFF, peer(30, 42000)), Some(508));
    }

    #[test]
    fn permissions_are_bounded() {
        let (mut t, from, relay) = door_allocated();
        for i in 0..MAX_PERMISSIONS as u8 {
            let ip: IpAddr = format!("192.168.1.{}", 100 + i).parse().unwrap();
            t.stations.online(100 + i as u64, &format!("s{i}"), ip);
        }
        for i in 0..MAX_PERMISSIONS as u8 - 1 {
            assert_eq!(permit(&mut t, from, peer(100 + i, 1)), None);
        }
        assert_eq!(permit(&mut t, from, relay), None);
        assert_eq!(permit(&mut t, from, peer(114, 1)), None); // a refresh: fine
        assert_eq!(permit(&mut t, from, peer(30, 1)), Some(508));
    }

    #[test]
    fn quota_per_station_and_capacity_in_all() {
        let mut t = T::new(10);
        for port in 0..PER_STATION as u16 {
            allocate(&mut t, client(6000 + port), "door").unwrap();
        }
        assert_eq!(allocate(&mut t, client(7000), "door"), Err(486));
        allocate(&mut t, client(7001), "kitchen").unwrap();
        allocate(&mut t, client(7002), "kitchen").unwrap();
        assert_eq!(allocate(&mut t, client(7003), "kitchen"), Err(508));
        assert_eq!(t.table.len(), 10);
        // No free relay port: 508 as well, and nothing allocated.
        let mut t = T::new(10);
        t.ports_left = 0;
        assert_eq!(allocate(&mut t, client(7004), "kitchen"), Err(508));
        assert!(t.table.is_empty());
    }

    #[test]
    fn refuses_other_transports_families_and_unknown_attributes() {
        let mut t = T::new(8);
        let from = client(5000);
        let r = req(&t, from, method::ALLOCATE, "door", None, |w| {
            w.u32(attr::REQUESTED_TRANSPORT, 6 << 24);
        });
        assert_eq!(code(&t.send(from, &r).0.unwrap()), Some(442));
        let r = req(&t, from, method::ALLOCATE, "door", None, |_| {});
        assert_eq!(code(&t.send(from, &r).0.unwrap()), Some(400));
        let r = req(&t, from, method::ALLOCATE, "door", None, |w| {
            udp(w);
            w.attr(attr::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
        });
        assert_eq!(code(&t.send(from, &r).0.unwrap()), Some(440));
        let r = req(&t, from, method::ALLOCATE, "door", None, |w| {
            udp(w);
            w.attr(attr::RESERVATION_TOKEN, &[0; 8]);
        });
        let reply = t.send(from, &r).0.unwrap();
        let m = Message::parse(&reply).unwrap();
        assert_eq!(m.error_code(), Some(420));
        assert_eq!(m.get(attr::UNKNOWN_ATTRIBUTES), Some(&[0, 0x22][..]));
        // EVEN-PORT: reserving the next port is not offered; an even port is.
        let r = req(&t, from, method::ALLOCATE, "door", None, |w| {
            udp(w);
            w.attr(attr::EVEN_PORT, &[0x80]);
        });
        assert_eq!(code(&t.send(from, &r).0.unwrap()), Some(508));
        assert!(t.table.is_empty());
        let r = req(&t, from, method::ALLOCATE, "door", None, |w| {
            udp(w);
            w.attr(attr::EVEN_PORT, &[0]);
        });
        let reply = t.send(from, &r).0.unwrap();
        let relay = Message::parse(&reply)
            .unwrap()
            .xor_address(attr::XOR_RELAYED_ADDRESS)
            .unwrap();
        assert_eq!(relay.port() % 2, 0);
        // An unknown method: 400.
        let r = req(&t, from, 0x00A, "door", None, |_| {});
        assert_eq!(code(&t.send(from, &r).0.unwrap()), Some(400));
    }

    #[test]
    fn the_byte_rate_drops_what_exceeds_it() {
        let mut t = T::new(8);
        t.table.rate = 100_000; // bytes per second: a 25,000-byte bucket
        let from = client(5000);
        allocate(&mut t, from, "door").unwrap();
        let kitchen = peer(30, 40000);
        permit(&mut t, from, kitchen);
        // How many of 100 datagrams of 1,000 bytes pass now.
        let burst = |t: &mut T| {
            (0..100)
                .filter(|_| {
                    t.table
                        .to_peer(&from, kitchen, 1000, t.now, &t.stations)
                        .is_some()
                })
                .count()
        };
        let sent = burst(&mut t);
        assert_eq!(sent, 25);
        // A tenth of a second refills 10,000 bytes.
        t.now += Duration::from_millis(100);
        let sent = burst(&mut t);
        assert_eq!(sent, 10);
    }

    #[test]
    fn tcp_allocations_go_with_their_connection() {
        let mut t = T::new(8);
        let tcp = Client {
            transport: Transport::Tcp(42),
            addr: client(5000).addr,
        };
        let relay = allocate(&mut t, tcp, "door").unwrap();
        allocate(&mut t, client(5000), "door").unwrap();
        assert_eq!(&t.table.closed(41)[..], &[]);
        assert_eq!(&t.table.closed(42)[..], &[relay]);
        assert_eq!(t.table.len(), 1);
    }

    #[test]
    fn usernames() {
        assert_eq!(
            parse_username("1800000000:door"),
            Some((1_800_000_000, "door"))
        );
        assert_eq!(parse_username("1:a:b"), Some((1, "a:b")));
        assert_eq!(parse_username("door"), None);
        assert_eq!(parse_username(":door"), None);
        assert_eq!(parse_username("12x:door"), None);
        assert_eq!(parse_username("1:"), None);
        let (user, pass) = credentials(&SECRET, "door", UNIX);
        assert_eq!(user, format!("{}:door", UNIX + CREDENTIAL_TTL));
        assert_eq!(pass.len(), 28);
        assert_ne!(pass, credentials(&[1; 32], "door", UNIX).1);
    }
}
