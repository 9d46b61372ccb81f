//! Relay decisions, as pure functions over the peer table: "connection C sent frame F"
//! becomes an [`Outcome`]: at most one reply to C, and a short list of [`Effect`]s
//! (deliver to B, to the members of a ring, tell everyone, cut a replaced connection).
//! Every protocol rule lives here — the order of checks, the rate and binary-frame
//! refusals, registration, calls, group rings, pages, do-not-disturb, presence, ring and
//! page deadlines — so each is unit-testable without sockets; `session.rs` decodes
//! nothing and decides nothing, it carries outcomes out.
//!
//! Every state lives in the table: a group ring is the caller's `Ringing` plus each
//! member's `Incoming` naming the caller, a page the pager's `Paging` plus each
//! listener's `Listening`. Nothing is allocated per ring or page beyond its messages.

use crate::peers::{Call, ConnId, FanOuts, Peer, Peers, Token};
use crate::protocol::{
    self, ClientMsg, ErrorCode, Name, PeerInfo, ServerMsg, Status, Target, decode, peek_id,
};
use serde_json::value::RawValue;
use std::time::{Duration, Instant};

/// Who an encoded message goes to (replies to the sender travel in [`Outcome::reply`]).
#[derive(Debug, PartialEq)]
pub enum To {
    /// One registered peer.
    Peer(Name),
    /// Every peer whose `marked` flag is set: the members of a ring or the listeners of
    /// a page, marked by the event that produced this effect (one such message per
    /// event; the next event that marks clears the flags first).
    Marked,
    /// Every registered peer but this one: presence, which a full outbox may drop
    /// (the receiver then gets a [`roster`]).
    AllExcept(Name),
}

/// One thing the I/O side must do for someone other than the sender.
#[derive(Debug)]
pub enum Effect<L> {
    /// Queue `text` for `to`.
    Send { to: To, text: String },
    /// Presence for an event that changed three or more statuses: every registered
    /// peer gets its own [`roster`] (with the same drop rule as `AllExcept`).
    Rosters,
    /// Close a connection that a resume replaced (4001 "replaced").
    Replace(L),
}

/// At most: a reply-like message to a partner, one to the marked, presence (two `peer`
/// messages or one `Rosters`), a replacement.
pub type Effects<L> = heapless::Vec<Effect<L>, 8>;

/// One frame as it arrived, with the session's rate verdict.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The text of a text frame; `None` for a binary frame.
    pub text: Option<&'a str>,
    /// Over `--rate`/`--burst`: refused before anything is decoded.
    pub over_rate: bool,
}

/// What relay needs besides the table, for one decision.
pub struct Ctx<'a> {
    pub access_key: Option<&'a str>,
    pub ice_servers: &'a RawValue,
    pub ring_timeout: Duration,
    pub page_timeout: Duration,
    pub now: Instant,
    /// Makes a resume token; called only when a new name registers.
    pub fresh_token: &'a dyn Fn() -> Token,
}

/// The answer to one frame.
#[derive(Debug)]
pub struct Outcome<L> {
    /// At most one message back to the sender (`ack`, `error`, `registered`,
    /// `ringing`, `paging`).
    pub reply: Option<String>,
    /// Everything for others.
    pub effects: Effects<L>,
    /// The frame was a `register` with a wrong or missing access key.
    pub wrong_key: bool,
    /// What the message did, for the owner's counters and the ring clock.
    pub happened: Happened,
}

/// What one message did, as the owner's counters (metrics.rs) and the ring clock need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happened {
    /// Nothing counted (`register`, `hangup`, `status`, a resume...).
    Other,
    /// A 1:1 call or a group ring started: the deadline clock must look again.
    RingStarted,
    /// A page started: the deadline clock must look again.
    PageStarted,
    /// A call was answered (its `accept` went to the caller).
    Answered,
    /// A `signal` went to its partner.
    Signal,
    /// The sender was answered with this error.
    Refused(ErrorCode),
}

impl Happened {
    /// A ring or page started, so the ring clock has a new deadline.
    pub fn starts_ring(self) -> bool {
        matches!(self, Happened::RingStarted | Happened::PageStarted)
    }
}

impl<L> Outcome<L> {
    fn new() -> Self {
        Outcome {
            reply: None,
            effects: Effects::new(),
            wrong_key: false,
            happened: Happened::Other,
        }
    }

    fn answer(mut self, id: Option<u32>, result: Result<(), ErrorCode>) -> Self {
        if let Err(code) = result {
            self.happened = Happened::Refused(code);
        }
        self.reply = match (result, id) {
            (Ok(()), Some(id)) => Some(ServerMsg::Ack { id }.encode()),
            (Ok(()), None) => None,
            (Err(code), id) => Some(ServerMsg::error(id, code).encode()),
        };
        self
    }

    /// `bad_message` with what was wrong.
    fn refuse(mut self, id: Option<u32>, detail: &str) -> Self {
        self.happened = Happened::Refused(ErrorCode::BadMessage);
        let err = ServerMsg::Error {
            id,
            code: ErrorCode::BadMessage.as_str(),
            message: detail,
            busy: None,
            dnd: None,
        };
        self.reply = Some(err.encode());
        self
    }
}

/// Compare secrets in constant time (lengths are hashed away first).
fn secret_eq(a: &str, b: &str) -> bool {
    use openssl::sha::sha256;
    openssl::memcmp::eq(&sha256(a.as_bytes()), &sha256(b.as_bytes()))
}

/// A message with a name that cannot be in the table (too long) matches no one.
fn name_of(s: &str) -> Option<Name> {
    Name::try_from(s).ok()
}

/// Changed statuses from which an event's presence is one `peers` list per station
/// ([`Effect::Rosters`]) rather than a `peer` message each.
const ROSTERS_AT: usize = 3;

/// `name`'s status in `peers` (`Offline` when it holds no such name).
fn status_in<L, const N: usize>(peers: &Peers<L, N>, name: &str) -> Status {
    peers.by_name(name).map_or(Status::Offline, Peer::status)
}

/// One event (a frame, a deadline, a disconnect) in progress: the table, the effects so
/// far, and the status touched stations had before, so presence announces exactly what
/// changed when the event is over.
struct Event<'a, L, const N: usize> {
    peers: &'a mut Peers<L, N>,
    effects: Effects<L>,
    /// Touched stations and their status before, as few as presence needs whatever the
    /// table's size: a station whose status is what it was gives its entry up when
    /// room is needed (touched again, it is noted again with the same status).
    before: heapless::Vec<(Name, Status), ROSTERS_AT>,
    /// [`ROSTERS_AT`] noted stations had changed when another was touched: presence is
    /// rosters, which state every status anyway, and nothing more is noted.
    many: bool,
    /// A station that left during this event, for the groups in its `offline`.
    gone: Option<Peer<L>>,
}

impl<'a, L, const N: usize> Event<'a, L, N> {
    fn new(peers: &'a mut Peers<L, N>) -> Self {
        Event {
            peers,
            effects: Effects::new(),
            before: heapless::Vec::new(),
            many: false,
            gone: None,
        }
    }

    fn status_of(&self, name: &str) -> Status {
        status_in(self.peers, name)
    }

    /// Remember `name`'s status before this event touches it (once).
    fn note(&mut self, name: &str) {
        if self.many || self.before.iter().any(|(n, _)| n == name) {
            return;
        }
        let Some(n) = name_of(name) else { return };
        if self.before.is_full() {
            let peers = &*self.peers;
            self.before.retain(|(n, was)| status_in(peers, n) != *was);
        }
        let status = self.status_of(name);
        self.many = self.before.push((n, status)).is_err();
    }

    fn set_call(&mut self, name: &str, call: Call) {
        self.note(name);
        self.peers.set_call(name, call);
    }

    fn push(&mut self, effect: Effect<L>) {
        // Capacity covers the largest case above; a miss would be a bug in this file.
        let pushed = self.effects.push(effect);
        debug_assert!(pushed.is_ok(), "effect list too short");
    }

    fn send(&mut self, to: To, msg: &ServerMsg) {
        let text = msg.encode();
        self.push(Effect::Send { to, text });
    }

    /// Mark exactly the peers `pick` chooses and make each of them idle; whether any was.
    fn take_marked(&mut self, pick: impl Fn(&Peer<L>) -> bool) -> bool {
        let mut any = false;
        for p in self.peers.iter_mut() {
            p.marked = pick(p);
            any |= p.marked;
        }
        // One at a time, each noted before it changes (one already idle does not), so
        // nothing here is as long as the table.
        while let Some(name) = self.find_marked(|p| !p.idle()) {
            self.set_call(&name, Call::Idle);
        }
        any
    }

    /// The first marked peer that `also` accepts.
    fn find_marked(&self, also: impl Fn(&Peer<L>) -> bool) -> Option<Name> {
        let mut marked = self.peers.iter().filter(|p| p.marked);
        marked.find(|p| also(p)).map(|p| p.name.clone())
    }

    /// Presence for everything this event changed: nothing, a `peer` message per
    /// changed station (one or two), or everyone's roster (three or more).
    fn finish(mut self) -> Effects<L> {
        let changed = self
            .before
            .iter()
            .filter(|(n, was)| self.status_of(n) != *was)
            .count();
        if self.many || changed >= ROSTERS_AT {
            self.push(Effect::Rosters);
        } else if changed > 0 {
            let before = std::mem::take(&mut self.before);
            for (name, was) in &before {
                let status = self.status_of(name);
                if status == *was {
                    continue;
                }
                let groups = match (self.peers.by_name(name), &self.gone) {
                    (Some(p), _) => &p.groups,
                    (None, Some(g)) if g.name == *name => &g.groups,
                    _ => continue,
                };
                let text = ServerMsg::Peer {
                    name,
                    status,
                    groups,
                }
                .encode();
                self.push(Effect::Send {
                    to: To::AllExcept(name.clone()),
                    text,
                });
            }
        }
        self.effects
    }
}

/// Connection `conn` (reached through `link`) sent `inbound`. Checks run in the order
/// of docs/protocol.md: rate, frame kind, validity, registration, the message's own.
pub fn handle<L: Clone, const N: usize>(
    peers: &mut Peers<L, N>,
    ctx: &Ctx,
    conn: ConnId,
    link: &L,
    inbound: Inbound,
) -> Outcome<L> {
    let out = Outcome::new();
    if inbound.over_rate {
        let id = inbound.text.and_then(peek_id);
        return out.answer(id, Err(ErrorCode::RateLimited));
    }
    let Some(text) = inbound.text else {
        return out.refuse(None, "binary frames are not part of the protocol");
    };
    let (id, msg) = match decode(text) {
        Ok(decoded) => decoded,
        Err(e) => {
            log::debug!("connection {conn}: bad message: {}", e.detail);
            return out.refuse(e.id, e.detail);
        }
    };
    if let ClientMsg::Register { .. } = msg {
        return register(peers, ctx, conn, link, id, &msg);
    }
    let Some(me) = peers.by_conn(conn).map(|p| p.name.clone()) else {
        return out.answer(id, Err(ErrorCode::NotRegistered));
    };
    let mut out = out;
    let mut ev = Event::new(peers);
    let result = act(&mut ev, ctx, &me, &msg, id);
    let rings = || {
        ev.peers
            .by_name(&me)
            .is_some_and(|p| p.call.deadline().is_some())
    };
    out.happened = match (&msg, &result) {
        (ClientMsg::Call { .. }, Ok(_)) if rings() => Happened::RingStarted,
        (ClientMsg::Page { .. }, Ok(_)) if rings() => Happened::PageStarted,
        // The one answer of a call or page that starts nothing (see `fan_out`).
        (ClientMsg::Call { .. } | ClientMsg::Page { .. }, Ok(_)) => {
            Happened::Refused(ErrorCode::NoOneAvailable)
        }
        (ClientMsg::Accept { .. }, Ok(_)) => Happened::Answered,
        (ClientMsg::Signal { .. }, Ok(_)) => Happened::Signal,
        _ => Happened::Other, // an error is counted by `answer`
    };
    out.effects = ev.finish();
    match result {
        Ok(Some(text)) => {
            out.reply = Some(text);
            out
        }
        Ok(None) => out.answer(id, Ok(())),
        Err(code) => out.answer(id, Err(code)),
    }
}

/// `register` from connection `conn`: check order `already_registered`, `unauthorized`,
/// `name_invalid`, `group_invalid`, `name_taken`, `full`. A held name with its token is
/// a resume, which keeps the station's groups, do-not-disturb and features.
fn register<L: Clone, const N: usize>(
    peers: &mut Peers<L, N>,
    ctx: &Ctx,
    conn: ConnId,
    link: &L,
    id: Option<u32>,
    msg: &ClientMsg,
) -> Outcome<L> {
    let ClientMsg::Register {
        name,
        token,
        key,
        groups,
        dnd,
        features,
    } = msg
    else {
        unreachable!("register() is called for register messages")
    };
    let mut out = Outcome::new();
    if peers.by_conn(conn).is_some() {
        return out.answer(id, Err(ErrorCode::AlreadyRegistered));
    }
    if ctx
        .access_key
        .is_some_and(|want| !key.as_deref().is_some_and(|k| secret_eq(k, want)))
    {
        out.wrong_key = true;
        return out.answer(id, Err(ErrorCode::Unauthorized));
    }
    let Some(name) = name_of(name).filter(|_| protocol::valid_name(name)) else {
        return out.answer(id, Err(ErrorCode::NameInvalid));
    };
    let Some(groups) = protocol::groups(*groups) else {
        return out.answer(id, Err(ErrorCode::GroupInvalid));
    };

    // Resume: the same device takes its name back; nobody else sees a change.
    if let Some(held) = peers.by_name(&name)
        && !token.as_deref().is_some_and(|t| secret_eq(t, &held.token))
    {
        return out.answer(id, Err(ErrorCode::NameTaken));
    }
    if let Some((old, old_conn)) = peers.reconnect(&name, conn, link.clone()) {
        log::info!("{name} resumed (connection {old_conn} -> {conn})");
        let _ = out.effects.push(Effect::Replace(old));
        out.reply = registered(peers, ctx, &name, id);
        return out;
    }
    // `Door` while `door` is online: taken (resumes use the name exactly as registered).
    if peers.iter().any(|p| protocol::same_name(&p.name, &name)) {
        return out.answer(id, Err(ErrorCode::NameTaken));
    }
    let peer = Peer {
        name: name.clone(),
        token: (ctx.fresh_token)(),
        conn,
        link: link.clone(),
        call: Call::Idle,
        groups,
        dnd: *dnd,
        features: *features,
        marked: false,
        fan_outs: FanOuts::new(ctx.now),
    };
    let mut ev = Event::new(peers);
    ev.note(&name);
    if ev.peers.insert(peer).is_err() {
        return out.answer(id, Err(ErrorCode::Full));
    }
    log::info!("{name} registered ({} online)", ev.peers.len());
    out.effects = ev.finish();
    out.reply = registered(peers, ctx, &name, id);
    out
}

/// The `registered` message for `name`.
fn registered<L, const N: usize>(
    peers: &Peers<L, N>,
    ctx: &Ctx,
    name: &Name,
    id: Option<u32>,
) -> Option<String> {
    let me = peers.by_name(name)?;
    let msg = ServerMsg::Registered {
        protocol: protocol::PROTOCOL_VERSION,
        name,
        token: &me.token,
        peers: &others(peers, name),
        ice_servers: ctx.ice_servers,
        keyed: ctx.access_key.is_some(),
        features: &protocol::FEATURES,
        groups: &me.groups,
        dnd: me.dnd,
        id,
    };
    Some(msg.encode())
}

/// Everyone but `name`, with their status and groups.
fn others<'a, L, const N: usize>(
    peers: &'a Peers<L, N>,
    name: &str,
) -> heapless::Vec<PeerInfo<'a>, N> {
    peers
        .iter()
        .filter(|p| p.name != name)
        .map(|p| PeerInfo {
            name: &p.name,
            status: p.status(),
            groups: &p.groups,
        })
        .collect()
}

/// The `peers` message for connection `conn`: the whole list without its receiver,
/// current as of now. `None` when `conn` holds no name.
pub fn roster<L, const N: usize>(peers: &Peers<L, N>, conn: ConnId) -> Option<String> {
    let me = peers.by_conn(conn)?;
    let others = others(peers, &me.name);
    Some(ServerMsg::Peers { peers: &others }.encode())
}

/// A message other than `register` from registered peer `me`. `Ok(Some(text))` is a
/// reply of its own in place of the `ack` (`ringing`, `paging`, or `no_one_available`
/// with its lists).
fn act<L, const N: usize>(
    ev: &mut Event<L, N>,
    ctx: &Ctx,
    me: &Name,
    msg: &ClientMsg,
    id: Option<u32>,
) -> Result<Option<String>, ErrorCode> {
    match msg {
        ClientMsg::Register { .. } => Err(ErrorCode::AlreadyRegistered),
        ClientMsg::Status { dnd } => {
            ev.note(me);
            if let Some(p) = ev.peers.by_name_mut(me) {
                p.dnd = *dnd;
            }
            log::info!("{me} do-not-disturb {}", if *dnd { "on" } else { "off" });
            Ok(None)
        }
        ClientMsg::Call {
            target: Target::Peer(to),
        } => call(ev, me, to, ctx.now + ctx.ring_timeout).map(|()| None),
        ClientMsg::Call {
            target: Target::Group(group),
        } => fan_out(ev, ctx, me, group, Fan::Ring, id).map(Some),
        ClientMsg::Page { group } => fan_out(ev, ctx, me, group, Fan::Page, id).map(Some),
        ClientMsg::Accept { to } => accept(ev, me, to).map(|()| None),
        ClientMsg::Hangup { target, reason } => {
            hangup(ev, me, target, reason.as_deref()).map(|()| None)
        }
        ClientMsg::Signal { to, data } => {
            if !may_signal(ev.peers, me, to) {
                return Err(ErrorCode::NoCall);
            }
            log::debug!("{me} -> signal {to}: {}", data.get());
            let msg = ServerMsg::Signal { from: me, data };
            ev.send(To::Peer(name_of(to).ok_or(ErrorCode::NoCall)?), &msg);
            Ok(None)
        }
    }
}

/// Whether `me` may send a `signal` to `to`: call partners; a caller and each ringing
/// callee that declared `preview` (1:1 and group); a pager and each listener.
fn may_signal<L, const N: usize>(peers: &Peers<L, N>, me: &str, to: &str) -> bool {
    let (Some(mine), Some(theirs)) = (peers.by_name(me), peers.by_name(to)) else {
        return false;
    };
    match (&mine.call, &theirs.call) {
        (Call::Active { peer }, _) => peer == to,
        (Call::Outgoing { peer, .. }, _) => peer == to && theirs.features.preview,
        (Call::Incoming { peer, .. }, _) => peer == to && mine.features.preview,
        (Call::Ringing { .. }, Call::Incoming { peer, .. }) => {
            peer == me && theirs.features.preview
        }
        (Call::Paging { .. }, Call::Listening { peer, .. }) => peer == me,
        (Call::Listening { peer, .. }, _) => peer == to,
        _ => false,
    }
}

/// A 1:1 `call`: `peer_not_found`, `self_call`, the caller's `busy`, the callee's
/// `busy`, then `dnd`.
fn call<L, const N: usize>(
    ev: &mut Event<L, N>,
    me: &Name,
    to: &str,
    until: Instant,
) -> Result<(), ErrorCode> {
    let callee = name_of(to)
        .filter(|n| ev.peers.by_name(n).is_some())
        .ok_or(ErrorCode::PeerNotFound)?;
    if callee == *me {
        return Err(ErrorCode::SelfCall);
    }
    if ev.peers.by_name(me).is_none_or(|p| !p.idle()) {
        return Err(ErrorCode::Busy);
    }
    match ev.peers.by_name(&callee) {
        Some(p) if !p.idle() => return Err(ErrorCode::Busy),
        Some(p) if p.dnd => return Err(ErrorCode::Dnd),
        _ => {}
    }
    let outgoing = Call::Outgoing {
        peer: callee.clone(),
        until,
    };
    ev.set_call(me, outgoing);
    let incoming = Call::Incoming {
        peer: me.clone(),
        group: None,
    };
    ev.set_call(&callee, incoming);
    log::info!("{me} -> call {callee}");
    let msg = ServerMsg::Call {
        from: me,
        group: None,
    };
    ev.send(To::Peer(callee), &msg);
    Ok(())
}

/// A group ring or a page.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fan {
    Ring,
    Page,
}

impl Fan {
    /// Whether `p` counts for this kind at all (a page only reaches stations that
    /// declared `page`, and only they appear in `no_one_available`).
    fn counts<L>(self, p: &Peer<L>) -> bool {
        self == Fan::Ring || p.features.page
    }
}

/// Whether `p` rings for or listens to `from`'s ring or page of this kind.
fn joined<L>(p: &Peer<L>, from: &str, kind: Fan) -> bool {
    match (&p.call, kind) {
        (
            Call::Incoming {
                peer,
                group: Some(_),
            },
            Fan::Ring,
        ) => peer == from,
        (Call::Listening { peer, .. }, Fan::Page) => peer == from,
        _ => false,
    }
}

/// Who rings for or listens to `from` now.
fn joined_names<'p, L, const N: usize>(
    peers: &'p Peers<L, N>,
    from: &str,
    kind: Fan,
) -> heapless::Vec<&'p str, N> {
    peers
        .iter()
        .filter(|p| joined(p, from, kind))
        .map(|p| p.name.as_str())
        .collect()
}

/// The `ringing` or `paging` message for `from`'s ring or page of `group`.
fn fan_update<L, const N: usize>(
    peers: &Peers<L, N>,
    from: &str,
    group: &str,
    kind: Fan,
    id: Option<u32>,
) -> String {
    let to = &joined_names(peers, from, kind);
    match kind {
        Fan::Ring => ServerMsg::Ringing { group, to, id },
        Fan::Page => ServerMsg::Paging { group, to, id },
    }
    .encode()
}

/// A group `call` or a `page` to `group`: `rate_limited` past the station's
/// [`FanOuts`], `group_invalid`, the sender's `busy`, then `no_one_available`. The set
/// is fixed now: every member but `me` that is idle, not in DND (and for a page,
/// declared `page`). `no_one_available` is the one refusal that comes back as the reply
/// text rather than a code: it carries who is busy and who is in DND.
fn fan_out<L, const N: usize>(
    ev: &mut Event<L, N>,
    ctx: &Ctx,
    me: &Name,
    group: &str,
    kind: Fan,
    id: Option<u32>,
) -> Result<String, ErrorCode> {
    let ready = ev
        .peers
        .by_name_mut(me)
        .is_some_and(|p| p.fan_outs.ready(ctx.now));
    if !ready {
        return Err(ErrorCode::RateLimited);
    }
    let group = name_of(group)
        .filter(|g| protocol::valid_group_target(g))
        .ok_or(ErrorCode::GroupInvalid)?;
    if ev.peers.by_name(me).is_none_or(|p| !p.idle()) {
        return Err(ErrorCode::Busy);
    }
    let until = ctx.now
        + match kind {
            Fan::Ring => ctx.ring_timeout,
            Fan::Page => ctx.page_timeout,
        };
    let member = |p: &Peer<_>| p.name != *me && p.in_group(&group) && kind.counts(p);
    let any = ev.take_marked(|p| member(p) && p.idle() && !p.dnd);
    if !any {
        let pick = |status| -> heapless::Vec<&str, N> {
            ev.peers
                .iter()
                .filter(|p| member(p) && p.status() == status)
                .map(|p| p.name.as_str())
                .collect()
        };
        let (busy, dnd) = (pick(Status::Busy), pick(Status::Dnd));
        let err = ServerMsg::Error {
            id,
            code: ErrorCode::NoOneAvailable.as_str(),
            message: ErrorCode::NoOneAvailable.message(),
            busy: Some(&busy),
            dnd: Some(&dnd),
        };
        return Ok(err.encode());
    }
    // The chosen are marked and idle; now they join, one at a time.
    let mut chosen = 0;
    while let Some(name) = ev.find_marked(Peer::idle) {
        chosen += 1;
        let call = match kind {
            Fan::Ring => Call::Incoming {
                peer: me.clone(),
                group: Some(group.clone()),
            },
            Fan::Page => Call::Listening {
                peer: me.clone(),
                group: group.clone(),
            },
        };
        ev.set_call(&name, call);
    }
    let (mine, msg) = match kind {
        Fan::Ring => (
            Call::Ringing {
                group: group.clone(),
                until,
            },
            ServerMsg::Call {
                from: me,
                group: Some(&group),
            },
        ),
        Fan::Page => (
            Call::Paging {
                group: group.clone(),
                until,
            },
            ServerMsg::Page {
                from: me,
                group: &group,
            },
        ),
    };
    ev.set_call(me, mine);
    if let Some(p) = ev.peers.by_name_mut(me) {
        p.fan_outs.spend();
    }
    log::info!(
        "{me} -> {} {group}: {} station(s)",
        if kind == Fan::Ring { "ring" } else { "page" },
        chosen
    );
    ev.send(To::Marked, &msg);
    Ok(fan_update(ev.peers, me, &group, kind, id))
}

/// `accept` from `me` to `to`: a 1:1 ring becomes a call; the first member to answer a
/// group ring gets it, and every other member hears `answered_elsewhere`.
fn accept<L, const N: usize>(ev: &mut Event<L, N>, me: &Name, to: &str) -> Result<(), ErrorCode> {
    let Some(Call::Incoming { peer, group }) = ev.peers.by_name(me).map(|p| p.call.clone()) else {
        return Err(ErrorCode::NoCall);
    };
    if peer != to {
        return Err(ErrorCode::NoCall);
    }
    ev.set_call(me, Call::Active { peer: peer.clone() });
    ev.set_call(&peer, Call::Active { peer: me.clone() });
    let msg = ServerMsg::Accept {
        from: me,
        group: group.as_deref(),
    };
    ev.send(To::Peer(peer.clone()), &msg);
    match &group {
        None => log::info!("{me} -> accept {peer}"),
        Some(group) => {
            log::info!("{me} -> accept {peer} (ring to {group})");
            let others = ev.take_marked(|p| joined(p, &peer, Fan::Ring));
            if others {
                let msg = ServerMsg::Hangup {
                    from: Some(&peer),
                    group: None,
                    reason: "answered_elsewhere",
                };
                ev.send(To::Marked, &msg);
            }
        }
    }
    Ok(())
}

/// `hangup` from `me`: with `to`, ends a 1:1 ring or call, declines a group ring, or
/// leaves a page; with `group`, the caller cancels its ring or the pager ends its page.
fn hangup<L, const N: usize>(
    ev: &mut Event<L, N>,
    me: &Name,
    target: &Target,
    reason: Option<&str>,
) -> Result<(), ErrorCode> {
    let mine = ev.peers.by_name(me).map(|p| p.call.clone());
    let reason = reason.unwrap_or("ended");
    match (target, mine) {
        (
            Target::Peer(to),
            Some(
                Call::Outgoing { peer, .. }
                | Call::Incoming { peer, group: None }
                | Call::Active { peer },
            ),
        ) if peer == to.as_ref() => {
            log::info!("{me} -> hangup {peer} ({reason})");
            let msg = ServerMsg::Hangup {
                from: Some(me),
                group: None,
                reason,
            };
            ev.send(To::Peer(peer.clone()), &msg);
            ev.set_call(me, Call::Idle);
            ev.set_call(&peer, Call::Idle);
            Ok(())
        }
        (
            Target::Peer(to),
            Some(Call::Incoming {
                peer,
                group: Some(group),
            }),
        ) if peer == to.as_ref() => {
            log::info!("{me} -> decline {peer} (ring to {group}, {reason})");
            ev.set_call(me, Call::Idle);
            leave(ev, &peer, &group, Fan::Ring, reason);
            Ok(())
        }
        (Target::Peer(to), Some(Call::Listening { peer, group })) if peer == to.as_ref() => {
            log::info!("{me} -> leave page from {peer} ({reason})");
            ev.set_call(me, Call::Idle);
            leave(ev, &peer, &group, Fan::Page, reason);
            Ok(())
        }
        (Target::Group(g), Some(Call::Ringing { group, .. })) if group == g.as_ref() => {
            log::info!("{me} -> cancel ring to {group} ({reason})");
            end_fan(ev, me, Fan::Ring, reason);
            Ok(())
        }
        (Target::Group(g), Some(Call::Paging { group, .. })) if group == g.as_ref() => {
            log::info!("{me} -> end page to {group} ({reason})");
            end_fan(ev, me, Fan::Page, reason);
            Ok(())
        }
        _ => Err(ErrorCode::NoCall),
    }
}

/// A member or listener left `from`'s ring or page of `group` with `reason`: `from`
/// hears who remains, or, when nobody does, that it is over.
fn leave<L, const N: usize>(
    ev: &mut Event<L, N>,
    from: &Name,
    group: &str,
    kind: Fan,
    reason: &str,
) {
    if ev.peers.iter().any(|p| joined(p, from, kind)) {
        let text = fan_update(ev.peers, from, group, kind, None);
        ev.push(Effect::Send {
            to: To::Peer(from.clone()),
            text,
        });
        return;
    }
    log::info!("{from}: {group} is over ({reason})");
    ev.set_call(from, Call::Idle);
    let msg = ServerMsg::Hangup {
        from: None,
        group: Some(group),
        reason,
    };
    ev.send(To::Peer(from.clone()), &msg);
}

/// `from` ends its ring or page: every member or listener hears `hangup` from it with
/// `reason`; all become idle.
fn end_fan<L, const N: usize>(ev: &mut Event<L, N>, from: &Name, kind: Fan, reason: &str) {
    if ev.take_marked(|p| joined(p, from, kind)) {
        let msg = ServerMsg::Hangup {
            from: Some(from),
            group: None,
            reason,
        };
        ev.send(To::Marked, &msg);
    }
    ev.set_call(from, Call::Idle);
}

/// When the next unanswered ring or page runs out, if any.
pub fn next_deadline<L, const N: usize>(peers: &Peers<L, N>) -> Option<Instant> {
    peers.iter().filter_map(|p| p.call.deadline()).min()
}

/// What [`expire`] ended.
#[derive(Debug)]
pub struct Expired<L> {
    pub effects: Effects<L>,
    /// A ring (1:1 or group) ran out unanswered: a missed call. Pages are not.
    pub missed: bool,
}

/// End the first ring or page whose deadline has passed by `now`, with reason `timeout`
/// to everyone in it. Empty effects when none is due; the clock calls again until it is.
pub fn expire<L, const N: usize>(peers: &mut Peers<L, N>, now: Instant) -> Expired<L> {
    let due = peers
        .iter()
        .find(|p| p.call.deadline().is_some_and(|at| at <= now))
        .map(|p| (p.name.clone(), p.call.clone()));
    let mut ev = Event::new(peers);
    let Some((from, call)) = due else {
        return Expired {
            effects: ev.finish(),
            missed: false,
        };
    };
    let missed = matches!(call, Call::Outgoing { .. } | Call::Ringing { .. });
    let timeout = "timeout";
    match call {
        Call::Outgoing { peer: callee, .. } => {
            log::info!("{from} -> call {callee}: no answer");
            for (to, from) in [(&from, &callee), (&callee, &from)] {
                let msg = ServerMsg::Hangup {
                    from: Some(from),
                    group: None,
                    reason: timeout,
                };
                ev.send(To::Peer(to.clone()), &msg);
            }
            ev.set_call(&from, Call::Idle);
            ev.set_call(&callee, Call::Idle);
        }
        Call::Ringing { ref group, .. } | Call::Paging { ref group, .. } => {
            let kind = match call {
                Call::Ringing { .. } => Fan::Ring,
                _ => Fan::Page,
            };
            log::info!("{from} -> {group}: timed out");
            end_fan(&mut ev, &from, kind, timeout);
            let msg = ServerMsg::Hangup {
                from: None,
                group: Some(group),
                reason: timeout,
            };
            ev.send(To::Peer(from.clone()), &msg);
        }
        _ => {}
    }
    Expired {
        effects: ev.finish(),
        missed,
    }
}

/// Connection `conn` ended (not by replacement). Frees its name and ends whatever it was
/// in: its partner, members or listeners hear `disconnected`.
pub fn disconnect<L, const N: usize>(peers: &mut Peers<L, N>, conn: ConnId) -> Effects<L> {
    let gone = peers
        .by_conn(conn)
        .map(|p| (p.name.clone(), p.call.clone()));
    let mut ev = Event::new(peers);
    let Some((name, call)) = gone else {
        return ev.finish();
    };
    let reason = "disconnected";
    let from = Some(name.as_str());
    match &call {
        Call::Outgoing { peer, .. }
        | Call::Incoming { peer, group: None }
        | Call::Active { peer } => {
            let msg = ServerMsg::Hangup {
                from,
                group: None,
                reason,
            };
            ev.send(To::Peer(peer.clone()), &msg);
            ev.set_call(peer, Call::Idle);
        }
        Call::Ringing { .. } => end_fan(&mut ev, &name, Fan::Ring, reason),
        Call::Paging { .. } => end_fan(&mut ev, &name, Fan::Page, reason),
        Call::Incoming { .. } | Call::Listening { .. } | Call::Idle => {}
    }
    ev.note(&name);
    ev.gone = ev.peers.remove(conn);
    match &call {
        Call::Incoming {
            peer,
            group: Some(group),
        } => leave(&mut ev, peer, group, Fan::Ring, reason),
        Call::Listening { peer, group } => leave(&mut ev, peer, group, Fan::Page, reason),
        _ => {}
    }
    log::info!("{name} disconnected ({} online)", ev.peers.len());
    ev.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    type T = Peers<u8, 4>;

    /// Every test peer gets this token.
    fn test_token() -> Token {
        Token::try_from("tok").unwrap()
    }

    fn ctx(key: Option<&'static str>) -> Ctx<'static> {
        Ctx {
            access_key: key,
            ice_servers: Box::leak(RawValue::from_string("[]".into()).unwrap()),
            ring_timeout: Duration::from_secs(30),
            page_timeout: Duration::from_secs(120),
            now: Instant::now(),
            fresh_token: &test_token,
        }
    }

    /// `json` from connection `conn` (whose link is `conn as u8`), in a table of any
    /// capacity.
    fn frame_from<const N: usize>(
        t: &mut Peers<u8, N>,
        c: &Ctx,
        conn: ConnId,
        json: &str,
    ) -> Outcome<u8> {
        let inbound = Inbound {
            text: Some(json),
            over_rate: false,
        };
        handle(t, c, conn, &(conn as u8), inbound)
    }

    fn msg<const N: usize>(t: &mut Peers<u8, N>, conn: ConnId, json: &str) -> Outcome<u8> {
        frame_from(t, &ctx(None), conn, json)
    }

    fn reg<const N: usize>(t: &mut Peers<u8, N>, conn: ConnId, name: &str) -> Outcome<u8> {
        msg(
            t,
            conn,
            &format!(r#"{{"type":"register","name":"{name}"}}"#),
        )
    }

    fn texts(effects: &Effects<u8>) -> Vec<(String, String)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { to, text } => Some((format!("{to:?}"), text.clone())),
                _ => None,
            })
            .collect()
    }

    fn reply(out: &Outcome<u8>) -> &str {
        out.reply.as_deref().unwrap_or("")
    }

    #[test]
    fn register_announces_and_lists_others() {
        let mut t = T::new(4);
        reg(&mut t, 1, "door");
        let out = reg(&mut t, 2, "kitchen");
        assert!(reply(&out).contains(r#""peers":[{"name":"door","status":"online","groups":[]}]"#));
        assert!(reply(&out).contains(r#""keyed":false"#));
        let effects = texts(&out.effects);
        assert_eq!(effects[0].0, r#"AllExcept("kitchen")"#);
        assert_eq!(
            effects[0].1,
            r#"{"type":"peer","name":"kitchen","status":"online","groups":[]}"#
        );
    }

    #[test]
    fn roster_lists_everyone_else_as_of_now() {
        let mut t = T::new(4);
        reg(&mut t, 1, "door");
        reg(&mut t, 2, "kitchen");
        reg(&mut t, 3, "hall");
        msg(&mut t, 1, r#"{"type":"call","to":"hall"}"#);
        assert_eq!(
            roster(&t, 2).unwrap(),
            r#"{"type":"peers","peers":[{"name":"door","status":"busy","groups":[]},{"name":"hall","status":"busy","groups":[]}]}"#
        );
        assert_eq!(roster(&t, 9), None);
    }

    #[test]
    fn call_accept_signal_hangup() {
        let mut t = T::new(4);
        reg(&mut t, 1, "a");
        reg(&mut t, 2, "b");
        let out = msg(&mut t, 1, r#"{"type":"signal","to":"b","data":1,"id":3}"#);
        assert!(reply(&out).contains("no_call"));
        let out = msg(&mut t, 1, r#"{"type":"call","to":"b","id":4}"#);
        assert_eq!(texts(&out.effects)[0].1, r#"{"type":"call","from":"a"}"#);
        assert!(out.happened.starts_ring());
        assert_eq!(reply(&out), r#"{"type":"ack","id":4}"#);
        let out = msg(&mut t, 2, r#"{"type":"accept","to":"a"}"#);
        assert_eq!(texts(&out.effects)[0].1, r#"{"type":"accept","from":"b"}"#);
        assert_eq!(out.reply, None, "no id, no ack");
        let out = msg(&mut t, 2, r#"{"type":"signal","to":"a","data":{"x" : 1}}"#);
        assert_eq!(
            texts(&out.effects)[0].1,
            r#"{"type":"signal","from":"b","data":{"x" : 1}}"#
        );
        let out = msg(&mut t, 1, r#"{"type":"hangup","to":"b"}"#);
        assert_eq!(
            texts(&out.effects)[0].1,
            r#"{"type":"hangup","from":"a","reason":"ended"}"#
        );
        assert_eq!(t.by_name("a").unwrap().call, Call::Idle);
        assert_eq!(t.by_name("b").unwrap().call, Call::Idle);
    }

    #[test]
    fn rings_expire_at_their_deadline() {
        let mut t = T::new(4);
        reg(&mut t, 1, "a");
        reg(&mut t, 2, "b");
        let c = ctx(None);
        frame_from(&mut t, &c, 1, r#"{"type":"call","to":"b"}"#);
        let until = c.now + c.ring_timeout;
        assert_eq!(next_deadline(&t), Some(until));
        assert!(
            expire(&mut t, until - Duration::from_millis(1))
                .effects
                .is_empty()
        );
        let out = texts(&expire(&mut t, until).effects);
        assert!(out.iter().any(|(to, m)| to == r#"Peer("a")"#
            && m == r#"{"type":"hangup","from":"b","reason":"timeout"}"#));
        assert!(out.iter().any(|(to, m)| to == r#"Peer("b")"#
            && m == r#"{"type":"hangup","from":"a","reason":"timeout"}"#));
        assert_eq!(next_deadline(&t), None);
        // An answered ring has no deadline any more.
        frame_from(&mut t, &c, 1, r#"{"type":"call","to":"b"}"#);
        msg(&mut t, 2, r#"{"type":"accept","to":"a"}"#);
        assert_eq!(next_deadline(&t), None);
        assert!(expire(&mut t, until + c.ring_timeout).effects.is_empty());
    }

    #[test]
    fn resume_needs_the_token_and_keeps_the_call() {
        let mut t = T::new(4);
        reg(&mut t, 1, "a");
        reg(&mut t, 2, "b");
        msg(&mut t, 1, r#"{"type":"call","to":"b"}"#);
        let out = msg(&mut t, 3, r#"{"type":"register","name":"a","token":"x"}"#);
        assert!(reply(&out).contains("name_taken"));
        let out = msg(&mut t, 3, r#"{"type":"register","name":"a","token":"tok"}"#);
        assert!(matches!(out.effects[0], Effect::Replace(1)));
        assert_eq!(out.effects.len(), 1, "nobody else hears of a resume");
        assert!(reply(&out).contains(r#""type":"registered""#));
        assert!(matches!(t.by_conn(3).unwrap().call, Call::Outgoing { .. }));
        assert!(
            disconnect(&mut t, 1).is_empty(),
            "old connection owns nothing"
        );
    }

    #[test]
    fn disconnect_hangs_up_partner() {
        let mut t = T::new(4);
        reg(&mut t, 1, "a");
        reg(&mut t, 2, "b");
        msg(&mut t, 1, r#"{"type":"call","to":"b"}"#);
        let out = texts(&disconnect(&mut t, 2));
        assert_eq!(
            out[0],
            (
                r#"Peer("a")"#.into(),
                r#"{"type":"hangup","from":"b","reason":"disconnected"}"#.into()
            )
        );
        assert_eq!(t.by_name("a").unwrap().call, Call::Idle);
        assert_eq!(
            out.last().unwrap().1,
            r#"{"type":"peer","name":"b","status":"offline","groups":[]}"#
        );
    }

    #[test]
    fn frames_are_checked_in_order() {
        let mut t = T::new(4);
        let c = ctx(None);
        // Over the rate: refused by id, never decoded (this is not even JSON).
        let over = Inbound {
            text: Some(r#"{"type":"call","id":8,"#),
            over_rate: true,
        };
        let out = handle(&mut t, &c, 1, &1, over);
        assert!(reply(&out).contains(r#""id":8,"code":"rate_limited""#));
        let binary = Inbound {
            text: None,
            over_rate: false,
        };
        let out = handle(&mut t, &c, 1, &1, binary);
        assert!(reply(&out).contains(r#""code":"bad_message""#));
        let out = msg(&mut t, 1, r#"{"type":"dance","id":2}"#);
        assert!(reply(&out).contains(r#""id":2,"code":"bad_message""#));
        let out = msg(&mut t, 1, r#"{"type":"call","to":"x","id":3}"#);
        assert!(reply(&out).contains(r#""id":3,"code":"not_registered""#));
        reg(&mut t, 1, "a");
        let out = msg(&mut t, 1, r#"{"type":"call","to":"a","id":4}"#);
        assert!(reply(&out).contains(r#""id":4,"code":"self_call""#));
        let out = msg(&mut t, 1, r#"{"type":"call","to":"nobody","id":5}"#);
        assert!(reply(&out).contains(r#""id":5,"code":"peer_not_found""#));
    }

    #[test]
    fn register_errors_in_order() {
        let mut t = T::new(1);
        let c = ctx(Some("k"));
        let r = |t: &mut T, conn, name: &str, key: &str| {
            let json = format!(r#"{{"type":"register","name":"{name}","key":"{key}","id":1}}"#);
            frame_from(t, &c, conn, &json)
        };
        assert!(reply(&r(&mut t, 9, "", "bad")).contains("unauthorized"));
        assert!(r(&mut t, 9, "", "bad").wrong_key);
        assert!(reply(&r(&mut t, 9, " x", "k")).contains("name_invalid"));
        assert!(!r(&mut t, 9, " x", "k").wrong_key);
        let ok = r(&mut t, 9, "x", "k");
        assert!(reply(&ok).contains(r#""keyed":true"#));
        assert!(reply(&r(&mut t, 9, "x", "bad")).contains("already_registered"));
        assert!(reply(&r(&mut t, 8, "x", "k")).contains("name_taken"));
        assert!(reply(&r(&mut t, 8, "X", "k")).contains("name_taken"));
        assert!(reply(&r(&mut t, 8, "y", "k")).contains(r#""code":"full""#));
    }

    /// Register `name` on `conn` with extra fields, e.g. `"groups":["home"]`.
    fn reg_with<const N: usize>(
        t: &mut Peers<u8, N>,
        conn: ConnId,
        name: &str,
        extra: &str,
    ) -> Outcome<u8> {
        let json = format!(r#"{{"type":"register","name":"{name}",{extra}}}"#);
        msg(t, conn, &json)
    }

    /// Presence effects: `peer` messages (as text) and whether a roster went out.
    fn presence_of(out: &Effects<u8>) -> (Vec<String>, bool) {
        let peers = out
            .iter()
            .filter_map(|e| match e {
                Effect::Send {
                    to: To::AllExcept(_),
                    text,
                } => Some(text.clone()),
                _ => None,
            })
            .collect();
        (peers, out.iter().any(|e| matches!(e, Effect::Rosters)))
    }

    fn status<const N: usize>(t: &Peers<u8, N>, name: &str) -> Status {
        t.by_name(name).unwrap().status()
    }

    /// door (1) and three members of `home`: a (2), b (3), c (4, in DND) — capacity 8.
    fn household() -> Peers<u8, 8> {
        let mut t = Peers::new(8);
        let f = r#""features":["preview","page"]"#;
        reg_with(&mut t, 1, "door", f);
        reg_with(&mut t, 2, "a", &format!(r#""groups":["home"],{f}"#));
        reg_with(&mut t, 3, "b", &format!(r#""groups":["home","up"],{f}"#));
        reg_with(
            &mut t,
            4,
            "c",
            &format!(r#""groups":["home"],"dnd":true,{f}"#),
        );
        t
    }

    /// Every message an outcome sends, as (receiver, text), with `Marked` resolved
    /// against the table and presence left out.
    fn sent<const N: usize>(t: &Peers<u8, N>, out: &Effects<u8>) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for e in out {
            match e {
                Effect::Send {
                    to: To::Peer(n),
                    text,
                } => v.push((n.to_string(), text.clone())),
                Effect::Send {
                    to: To::Marked,
                    text,
                } => {
                    for p in t.iter().filter(|p| p.marked) {
                        v.push((p.name.to_string(), text.clone()));
                    }
                }
                _ => {}
            }
        }
        v.sort();
        v
    }

    /// The one message an outcome sends, as for [`sent`].
    fn one_sent<const N: usize>(t: &Peers<u8, N>, out: &Effects<u8>) -> (String, String) {
        let mut all = sent(t, out);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    fn pair(to: &str, text: &str) -> (String, String) {
        (to.to_string(), text.to_string())
    }

    #[test]
    fn register_with_groups_dnd_and_the_check_order() {
        let mut t = T::new(2);
        let out = reg_with(
            &mut t,
            1,
            "a",
            r#""groups":["x","y","x"],"dnd":true,"id":1"#,
        );
        assert!(reply(&out).contains(r#""features":["groups","dnd","preview","page"]"#));
        assert!(reply(&out).contains(r#""groups":["x","y"],"dnd":true"#));
        assert_eq!(
            presence_of(&out.effects).0,
            [r#"{"type":"peer","name":"a","status":"dnd","groups":["x","y"]}"#]
        );
        // name_invalid before group_invalid before name_taken before full.
        let out = reg_with(&mut t, 2, " a", r#""groups":["*"],"id":2"#);
        assert!(reply(&out).contains("name_invalid"));
        let out = reg_with(&mut t, 2, "a", r#""groups":["*"],"id":2"#);
        assert!(reply(&out).contains(r#""code":"group_invalid""#));
        let out = reg_with(&mut t, 2, "a", r#""groups":7,"id":2"#);
        assert!(reply(&out).contains("group_invalid"));
        let out = reg_with(&mut t, 2, "a", r#""groups":["z"],"id":2"#);
        assert!(reply(&out).contains("name_taken"));
        reg_with(&mut t, 2, "b", "\"id\":2");
        let out = reg_with(&mut t, 3, "c", r#""groups":[""],"id":3"#);
        assert!(reply(&out).contains("group_invalid"), "before full");
        assert!(reply(&reg_with(&mut t, 3, "c", "\"id\":3")).contains("full"));
        // A resume keeps groups and DND; the new ones are checked, then ignored.
        let out = reg_with(&mut t, 5, "a", r#""token":"tok","groups":[" "]"#);
        assert!(reply(&out).contains("group_invalid"));
        let out = reg_with(
            &mut t,
            5,
            "a",
            r#""token":"tok","groups":["q"],"dnd":false"#,
        );
        assert!(reply(&out).contains(r#""groups":["x","y"],"dnd":true"#));
        assert_eq!(status(&t, "a"), Status::Dnd);
    }

    #[test]
    fn dnd_refuses_calls_and_is_announced_only_when_idle_changes() {
        let mut t = T::new(4);
        reg(&mut t, 1, "a");
        reg(&mut t, 2, "b");
        let out = msg(&mut t, 2, r#"{"type":"status","dnd":true,"id":1}"#);
        assert_eq!(reply(&out), r#"{"type":"ack","id":1}"#);
        assert_eq!(
            presence_of(&out.effects).0,
            [r#"{"type":"peer","name":"b","status":"dnd","groups":[]}"#]
        );
        let out = msg(&mut t, 1, r#"{"type":"call","to":"b","id":2}"#);
        assert!(reply(&out).contains(r#""id":2,"code":"dnd""#));
        // Calling out in DND is allowed; DND on during a call changes no status.
        let out = msg(&mut t, 2, r#"{"type":"call","to":"a","id":3}"#);
        assert_eq!(reply(&out), r#"{"type":"ack","id":3}"#);
        let out = msg(&mut t, 1, r#"{"type":"status","dnd":true}"#);
        assert!(out.effects.is_empty());
        msg(&mut t, 1, r#"{"type":"status","dnd":false}"#);
        // The call ends: b is idle again, in DND.
        let out = msg(&mut t, 2, r#"{"type":"hangup","to":"a"}"#);
        let (peers, _) = presence_of(&out.effects);
        assert!(
            peers
                .iter()
                .any(|p| p.contains(r#""name":"b","status":"dnd""#))
        );
        assert!(
            peers
                .iter()
                .any(|p| p.contains(r#""name":"a","status":"online""#))
        );
        // Busy comes before dnd.
        msg(&mut t, 1, r#"{"type":"status","dnd":true}"#);
        reg(&mut t, 3, "c");
        msg(&mut t, 2, r#"{"type":"call","to":"c"}"#);
        let out = msg(&mut t, 3, r#"{"type":"call","to":"b","id":4}"#);
        assert!(reply(&out).contains(r#""code":"busy""#));
    }

    #[test]
    fn a_group_ring_rings_idle_members_and_the_first_answer_wins() {
        let mut t = household();
        let out = msg(&mut t, 1, r#"{"type":"call","group":"home","id":9}"#);
        assert!(out.happened.starts_ring());
        let r = reply(&out);
        assert!(
            r.starts_with(r#"{"type":"ringing","group":"home","to":["#),
            "{r}"
        );
        assert!(r.contains(r#""a""#) && r.contains(r#""b""#) && !r.contains(r#""c""#));
        assert!(r.ends_with(r#""id":9}"#));
        assert_eq!(
            sent(&t, &out.effects),
            [
                pair("a", r#"{"type":"call","from":"door","group":"home"}"#),
                pair("b", r#"{"type":"call","from":"door","group":"home"}"#),
            ]
        );
        // door, a, b: three changes, one roster for everyone.
        assert_eq!(presence_of(&out.effects), (vec![], true));
        assert_eq!(status(&t, "c"), Status::Dnd);
        // Busy while ringing.
        let out = msg(&mut t, 4, r#"{"type":"call","to":"a","id":1}"#);
        assert!(reply(&out).contains("busy"));
        // b answers: door gets accept with the group, a hears answered_elsewhere.
        let out = msg(&mut t, 3, r#"{"type":"accept","to":"door","id":2}"#);
        assert_eq!(reply(&out), r#"{"type":"ack","id":2}"#);
        assert_eq!(
            sent(&t, &out.effects),
            [
                pair(
                    "a",
                    r#"{"type":"hangup","from":"door","reason":"answered_elsewhere"}"#
                ),
                pair("door", r#"{"type":"accept","from":"b","group":"home"}"#),
            ]
        );
        assert_eq!(
            presence_of(&out.effects).0,
            [r#"{"type":"peer","name":"a","status":"online","groups":["home"]}"#]
        );
        assert_eq!(next_deadline(&t), None);
        // Now an ordinary 1:1 call.
        let out = msg(&mut t, 1, r#"{"type":"hangup","group":"home","id":3}"#);
        assert!(reply(&out).contains("no_call"));
        let out = msg(&mut t, 2, r#"{"type":"accept","to":"door","id":4}"#);
        assert!(reply(&out).contains("no_call"));
        let out = msg(&mut t, 1, r#"{"type":"hangup","to":"b"}"#);
        assert_eq!(
            one_sent(&t, &out.effects),
            pair("b", r#"{"type":"hangup","from":"door","reason":"ended"}"#)
        );
    }

    #[test]
    fn declines_shrink_the_ring_and_the_last_one_ends_it() {
        let mut t = household();
        msg(&mut t, 1, r#"{"type":"call","group":"home"}"#);
        let out = msg(&mut t, 2, r#"{"type":"hangup","to":"door","reason":"no"}"#);
        assert_eq!(
            one_sent(&t, &out.effects),
            pair("door", r#"{"type":"ringing","group":"home","to":["b"]}"#)
        );
        assert_eq!(status(&t, "a"), Status::Online);
        // The caller may not end the group ring with `to`.
        let out = msg(&mut t, 1, r#"{"type":"hangup","to":"b","id":5}"#);
        assert!(reply(&out).contains("no_call"));
        let out = msg(
            &mut t,
            3,
            r#"{"type":"hangup","to":"door","reason":"away"}"#,
        );
        assert_eq!(
            one_sent(&t, &out.effects),
            pair(
                "door",
                r#"{"type":"hangup","group":"home","reason":"away"}"#
            )
        );
        assert_eq!(status(&t, "door"), Status::Online);
        assert_eq!(next_deadline(&t), None);
        // Without a reason the last decline says "ended".
        msg(&mut t, 1, r#"{"type":"call","group":"up"}"#);
        let out = msg(&mut t, 3, r#"{"type":"hangup","to":"door"}"#);
        assert!(sent(&t, &out.effects)[0].1.contains(r#""reason":"ended""#));
    }

    #[test]
    fn the_caller_cancels_times_out_or_disconnects() {
        let mut t = household();
        msg(&mut t, 1, r#"{"type":"call","group":"home"}"#);
        let out = msg(&mut t, 1, r#"{"type":"hangup","group":"nope","id":1}"#);
        assert!(reply(&out).contains("no_call"));
        let out = msg(
            &mut t,
            1,
            r#"{"type":"hangup","group":"home","reason":"gone","id":2}"#,
        );
        assert_eq!(reply(&out), r#"{"type":"ack","id":2}"#);
        let hung = r#"{"type":"hangup","from":"door","reason":"gone"}"#;
        assert_eq!(sent(&t, &out.effects), [pair("a", hung), pair("b", hung)]);
        assert!(t.iter().all(|p| p.idle()));

        let c = ctx(None);
        frame_from(&mut t, &c, 1, r#"{"type":"call","group":"home"}"#);
        let until = c.now + c.ring_timeout;
        assert_eq!(next_deadline(&t), Some(until));
        // A decline does not move the deadline.
        msg(&mut t, 2, r#"{"type":"hangup","to":"door"}"#);
        assert_eq!(next_deadline(&t), Some(until));
        assert!(
            expire(&mut t, until - Duration::from_millis(1))
                .effects
                .is_empty()
        );
        let out = expire(&mut t, until).effects;
        assert_eq!(
            sent(&t, &out),
            [
                pair("b", r#"{"type":"hangup","from":"door","reason":"timeout"}"#),
                pair(
                    "door",
                    r#"{"type":"hangup","group":"home","reason":"timeout"}"#
                ),
            ]
        );
        assert!(t.iter().all(|p| p.idle()));

        msg(&mut t, 1, r#"{"type":"call","group":"home"}"#);
        let out = disconnect(&mut t, 1);
        let gone = r#"{"type":"hangup","from":"door","reason":"disconnected"}"#;
        assert_eq!(sent(&t, &out), [pair("a", gone), pair("b", gone)]);
        assert!(t.iter().all(|p| p.idle()));
    }

    #[test]
    fn a_member_that_disconnects_leaves_the_ring() {
        let mut t = household();
        msg(&mut t, 1, r#"{"type":"call","group":"home"}"#);
        let out = disconnect(&mut t, 2);
        assert_eq!(
            one_sent(&t, &out),
            pair("door", r#"{"type":"ringing","group":"home","to":["b"]}"#)
        );
        let out = disconnect(&mut t, 3);
        assert_eq!(
            one_sent(&t, &out),
            pair(
                "door",
                r#"{"type":"hangup","group":"home","reason":"disconnected"}"#
            )
        );
        // door idle, b offline: two changes, two peer messages, offline with its groups.
        let (peers, roster) = presence_of(&out);
        assert!(!roster);
        assert!(peers.contains(
            &r#"{"type":"peer","name":"b","status":"offline","groups":["home","up"]}"#.into()
        ));
        assert!(
            peers
                .contains(&r#"{"type":"peer","name":"door","status":"online","groups":[]}"#.into())
        );
    }

    #[test]
    fn no_one_available_says_who_is_busy_and_who_is_in_dnd() {
        let mut t = household();
        msg(&mut t, 2, r#"{"type":"call","to":"b"}"#);
        let out = msg(&mut t, 1, r#"{"type":"call","group":"home","id":3}"#);
        assert_eq!(
            reply(&out),
            r#"{"type":"error","id":3,"code":"no_one_available","message":"no one in the group is available","busy":["a","b"],"dnd":["c"]}"#
        );
        assert!(out.effects.is_empty() && !out.happened.starts_ring());
        assert!(t.iter().all(|p| !p.marked), "nothing marked for nobody");
        // A group with no other member: both lists empty.
        let out = msg(&mut t, 1, r#"{"type":"call","group":"nobody","id":4}"#);
        assert!(reply(&out).contains(r#""busy":[],"dnd":[]"#));
        // The caller's busy comes first; group_invalid before that.
        let out = msg(&mut t, 2, r#"{"type":"call","group":"home","id":5}"#);
        assert!(reply(&out).contains(r#""code":"busy""#));
        let out = msg(&mut t, 2, r#"{"type":"call","group":" x","id":6}"#);
        assert!(reply(&out).contains("group_invalid"));
        // "*" is everyone.
        let out = msg(&mut t, 4, r#"{"type":"call","group":"*","id":7}"#);
        assert!(reply(&out).contains(r#""to":["door"]"#), "{}", reply(&out));
    }

    #[test]
    fn preview_signals_flow_only_to_callees_that_declared_it() {
        let mut t = household();
        reg_with(&mut t, 5, "old", r#""groups":["home"]"#);
        msg(&mut t, 1, r#"{"type":"call","group":"home"}"#);
        let sig = |to: &str| format!(r#"{{"type":"signal","to":"{to}","data":1,"id":1}}"#);
        assert_eq!(
            reply(&msg(&mut t, 1, &sig("a"))),
            r#"{"type":"ack","id":1}"#
        );
        assert_eq!(
            reply(&msg(&mut t, 2, &sig("door"))),
            r#"{"type":"ack","id":1}"#
        );
        assert!(reply(&msg(&mut t, 1, &sig("old"))).contains("no_call"));
        assert!(reply(&msg(&mut t, 5, &sig("door"))).contains("no_call"));
        assert!(reply(&msg(&mut t, 2, &sig("b"))).contains("no_call"));
        assert!(reply(&msg(&mut t, 1, &sig("c"))).contains("no_call"));
        // Answered: only door and the one who answered.
        msg(&mut t, 3, r#"{"type":"accept","to":"door"}"#);
        assert!(reply(&msg(&mut t, 1, &sig("a"))).contains("no_call"));
        assert!(reply(&msg(&mut t, 1, &sig("b"))).contains("ack"));
        // 1:1: the same rule.
        msg(&mut t, 1, r#"{"type":"hangup","to":"b"}"#);
        msg(&mut t, 1, r#"{"type":"call","to":"a"}"#);
        assert!(reply(&msg(&mut t, 1, &sig("a"))).contains("ack"));
        msg(&mut t, 1, r#"{"type":"hangup","to":"a"}"#);
        msg(&mut t, 1, r#"{"type":"call","to":"old"}"#);
        assert!(reply(&msg(&mut t, 1, &sig("old"))).contains("no_call"));
    }

    #[test]
    fn pages_reach_idle_listeners_that_declared_page() {
        let mut t = household();
        reg_with(&mut t, 5, "old", r#""groups":["home"]"#);
        reg_with(&mut t, 6, "e", r#""features":["page"]"#);
        msg(&mut t, 6, r#"{"type":"call","to":"b"}"#);
        let out = msg(&mut t, 1, r#"{"type":"page","group":"*","id":2}"#);
        assert!(out.happened.starts_ring());
        assert_eq!(
            reply(&out),
            r#"{"type":"paging","group":"*","to":["a"],"id":2}"#
        );
        assert_eq!(
            one_sent(&t, &out.effects),
            pair("a", r#"{"type":"page","from":"door","group":"*"}"#)
        );
        // Listener to listener: no_call; listener to pager and back: fine.
        msg(&mut t, 6, r#"{"type":"hangup","to":"b"}"#);
        let sig = |to: &str| format!(r#"{{"type":"signal","to":"{to}","data":1,"id":1}}"#);
        assert!(reply(&msg(&mut t, 2, &sig("door"))).contains("ack"));
        assert!(reply(&msg(&mut t, 1, &sig("a"))).contains("ack"));
        // Pages never interrupt: a busy pager cannot page, the paged are busy.
        let out = msg(&mut t, 6, r#"{"type":"call","to":"a","id":3}"#);
        assert!(reply(&out).contains("busy"));
        let out = msg(&mut t, 1, r#"{"type":"hangup","to":"a","id":4}"#);
        assert!(reply(&out).contains("no_call"));
        // The listener leaves: the page is over for the pager.
        let out = msg(&mut t, 2, r#"{"type":"hangup","to":"door"}"#);
        assert_eq!(
            one_sent(&t, &out.effects),
            pair("door", r#"{"type":"hangup","group":"*","reason":"ended"}"#)
        );
        // No page listeners: no_one_available counts only page stations.
        msg(&mut t, 2, r#"{"type":"status","dnd":true}"#);
        msg(&mut t, 3, r#"{"type":"status","dnd":true}"#);
        msg(&mut t, 6, r#"{"type":"status","dnd":true}"#);
        let out = msg(&mut t, 1, r#"{"type":"page","group":"home","id":5}"#);
        assert!(
            reply(&out).contains(r#""busy":[],"dnd":["a","b","c"]"#),
            "{}",
            reply(&out)
        );
    }

    #[test]
    fn the_pager_ends_the_page_or_it_times_out() {
        let mut t = household();
        msg(&mut t, 4, r#"{"type":"status","dnd":false}"#);
        let c = ctx(None);
        frame_from(&mut t, &c, 1, r#"{"type":"page","group":"home"}"#);
        assert_eq!(next_deadline(&t), Some(c.now + c.page_timeout));
        let sig = r#"{"type":"signal","to":"b","data":1,"id":1}"#;
        assert!(reply(&msg(&mut t, 2, sig)).contains("no_call"));
        // A listener leaves with a reason: the pager hears who remains.
        let out = msg(&mut t, 2, r#"{"type":"hangup","to":"door","reason":"x"}"#);
        let update = &sent(&t, &out.effects)[0].1;
        assert!(update.starts_with(r#"{"type":"paging","group":"home","to":["#));
        assert!(!update.contains(r#""a""#));
        let out = expire(&mut t, c.now + c.page_timeout).effects;
        assert_eq!(
            sent(&t, &out),
            [
                pair("b", r#"{"type":"hangup","from":"door","reason":"timeout"}"#),
                pair("c", r#"{"type":"hangup","from":"door","reason":"timeout"}"#),
                pair(
                    "door",
                    r#"{"type":"hangup","group":"home","reason":"timeout"}"#
                ),
            ]
        );
        msg(&mut t, 1, r#"{"type":"page","group":"home"}"#);
        let out = msg(&mut t, 1, r#"{"type":"hangup","group":"home","id":6}"#);
        assert_eq!(reply(&out), r#"{"type":"ack","id":6}"#);
        assert_eq!(sent(&t, &out.effects).len(), 3);
        assert!(t.iter().all(|p| p.idle()));
        msg(&mut t, 1, r#"{"type":"page","group":"home"}"#);
        let out = disconnect(&mut t, 1);
        assert!(
            sent(&t, &out)
                .iter()
                .all(|(_, m)| m.ends_with(r#""reason":"disconnected"}"#))
        );
        // A listener disconnecting from a page with others left: an update.
        msg(&mut t, 2, r#"{"type":"page","group":"home"}"#);
        let out = disconnect(&mut t, 3);
        assert!(sent(&t, &out)[0].1.starts_with(r#"{"type":"paging""#));
    }

    #[test]
    fn a_resume_inherits_a_ring_or_page_and_nobody_hears_of_it() {
        let mut t = household();
        msg(&mut t, 1, r#"{"type":"page","group":"home"}"#);
        let out = reg_with(&mut t, 9, "a", r#""token":"tok","groups":["other"]"#);
        assert_eq!(out.effects.len(), 1, "only the replacement");
        assert!(matches!(t.by_conn(9).unwrap().call, Call::Listening { .. }));
        assert_eq!(t.by_conn(9).unwrap().groups.as_slice(), ["home"]);
        let sig = r#"{"type":"signal","to":"door","data":1,"id":1}"#;
        assert!(reply(&msg(&mut t, 9, sig)).contains("ack"));
    }

    #[test]
    fn presence_counts_changed_statuses_not_events() {
        let mut t = household();
        // c goes from dnd to online: one change.
        let out = msg(&mut t, 4, r#"{"type":"status","dnd":false}"#);
        assert_eq!(presence_of(&out.effects).0.len(), 1);
        // Same value again: nothing.
        let out = msg(&mut t, 4, r#"{"type":"status","dnd":false}"#);
        assert_eq!(presence_of(&out.effects), (vec![], false));
        // A group ring of door + 3: roster; cancelling it: roster again.
        let out = msg(&mut t, 1, r#"{"type":"call","group":"home"}"#);
        assert_eq!(presence_of(&out.effects), (vec![], true));
        let out = msg(&mut t, 1, r#"{"type":"hangup","group":"home"}"#);
        assert_eq!(presence_of(&out.effects), (vec![], true));
    }

    #[test]
    fn presence_stays_exact_past_the_entries_an_event_keeps() {
        let mut t: Peers<u8, 8> = Peers::new(8);
        for i in 1..=8 {
            reg_with(&mut t, i, &format!("s{i}"), r#""groups":["all"]"#);
        }
        // Eight changes, more than an event keeps entries for: rosters.
        let out = msg(&mut t, 1, r#"{"type":"call","group":"all"}"#);
        assert_eq!(presence_of(&out.effects), (vec![], true));
        let out = msg(&mut t, 8, r#"{"type":"accept","to":"s1"}"#);
        assert_eq!(presence_of(&out.effects), (vec![], true));
        // Six stations touched but left as they were, then two that change: two `peer`
        // messages, in the order they changed.
        let mut ev = Event::new(&mut t);
        for i in 2..=7 {
            ev.set_call(&format!("s{i}"), Call::Idle);
        }
        ev.set_call("s8", Call::Idle);
        ev.set_call("s1", Call::Idle);
        let online = |n: &str| {
            format!(r#"{{"type":"peer","name":"{n}","status":"online","groups":["all"]}}"#)
        };
        assert_eq!(
            presence_of(&ev.finish()),
            (vec![online("s8"), online("s1")], false)
        );
    }

    #[test]
    fn a_station_starts_five_fan_outs_in_a_row_then_one_a_second() {
        let mut t = household();
        let mut c = ctx(None);
        for i in 0..5 {
            let out = frame_from(&mut t, &c, 1, r#"{"type":"page","group":"home","id":1}"#);
            assert!(reply(&out).starts_with(r#"{"type":"paging""#), "page {i}");
            frame_from(&mut t, &c, 1, r#"{"type":"hangup","group":"home"}"#);
        }
        // Refused ones cost nothing, and neither do pages that found no one.
        let out = frame_from(&mut t, &c, 1, r#"{"type":"call","group":"home","id":2}"#);
        assert_eq!(
            reply(&out),
            r#"{"type":"error","id":2,"code":"rate_limited","message":"too many messages"}"#
        );
        assert!(out.effects.is_empty());
        c.now += FanOuts::EVERY;
        let out = frame_from(&mut t, &c, 1, r#"{"type":"call","group":"nobody","id":3}"#);
        assert!(reply(&out).contains("no_one_available"));
        let out = frame_from(&mut t, &c, 1, r#"{"type":"call","group":"home","id":4}"#);
        assert!(reply(&out).starts_with(r#"{"type":"ringing""#));
        frame_from(&mut t, &c, 1, r#"{"type":"hangup","group":"home"}"#);
        let out = frame_from(&mut t, &c, 1, r#"{"type":"call","group":"home","id":5}"#);
        assert!(reply(&out).contains("rate_limited"));
        // 1:1 calls are not fan-outs.
        let out = frame_from(&mut t, &c, 1, r#"{"type":"call","to":"a","id":6}"#);
        assert_eq!(reply(&out), r#"{"type":"ack","id":6}"#);
    }
}
