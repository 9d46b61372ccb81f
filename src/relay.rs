//! Relay decisions, as pure functions over the peer table: "connection C sent frame F"
//! becomes an [`Outcome`]: at most one reply to C, and a short list of [`Effect`]s
//! (deliver to B, tell everyone, cut a replaced connection). Every protocol rule lives
//! here — the order of checks, the rate and binary-frame refusals, registration, calls,
//! ring deadlines — so each is unit-testable without sockets; `session.rs` decodes
//! nothing and decides nothing, it carries outcomes out.

use crate::peers::{Call, ConnId, Peer, Peers, Token};
use crate::protocol::{ClientMsg, ErrorCode, Name, PeerInfo, ServerMsg, Status, decode, peek_id};
use serde_json::value::RawValue;
use std::time::{Duration, Instant};

/// Who an encoded message goes to (replies to the sender travel in [`Outcome::reply`]).
#[derive(Debug, PartialEq)]
pub enum To {
    /// One registered peer.
    Peer(Name),
    /// Every registered peer but this one: presence, which a full outbox may drop
    /// (the receiver then gets a [`roster`]).
    AllExcept(Name),
}

/// One thing the I/O side must do for someone other than the sender.
#[derive(Debug)]
pub enum Effect<L> {
    /// Queue `text` for `to`.
    Send { to: To, text: String },
    /// Close a connection that a resume replaced (4001 "replaced").
    Replace(L),
}

/// At most: delivery, two presence broadcasts per side of a call, a replacement.
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
    pub now: Instant,
    /// Makes a resume token; called only when a new name registers.
    pub fresh_token: &'a dyn Fn() -> Token,
}

/// The answer to one frame.
#[derive(Debug)]
pub struct Outcome<L> {
    /// At most one message back to the sender (`ack`, `error`, `registered`).
    pub reply: Option<String>,
    /// Everything for others.
    pub effects: Effects<L>,
    /// The frame was a `register` with a wrong or missing access key.
    pub wrong_key: bool,
    /// A ring started: the deadline clock must look again.
    pub ring_started: bool,
}

impl<L> Outcome<L> {
    fn new() -> Self {
        Outcome {
            reply: None,
            effects: Effects::new(),
            wrong_key: false,
            ring_started: false,
        }
    }

    fn answer(mut self, id: Option<u32>, result: Result<(), ErrorCode>) -> Self {
        self.reply = match (result, id) {
            (Ok(()), Some(id)) => Some(ServerMsg::Ack { id }.encode()),
            (Ok(()), None) => None,
            (Err(code), id) => Some(ServerMsg::error(id, code).encode()),
        };
        self
    }
}

/// Compare secrets in constant time (lengths are hashed away first).
fn secret_eq(a: &str, b: &str) -> bool {
    use openssl::sha::sha256;
    openssl::memcmp::eq(&sha256(a.as_bytes()), &sha256(b.as_bytes()))
}

fn push<L>(effects: &mut Effects<L>, effect: Effect<L>) {
    // Capacity covers the largest case above; a miss would be a bug in this file.
    let pushed = effects.push(effect);
    debug_assert!(pushed.is_ok(), "effect list too short");
}

fn send<L>(effects: &mut Effects<L>, to: To, msg: &ServerMsg) {
    push(
        effects,
        Effect::Send {
            to,
            text: msg.encode(),
        },
    );
}

fn presence<L>(effects: &mut Effects<L>, name: &Name, status: Status) {
    let msg = ServerMsg::Peer { name, status };
    send(effects, To::AllExcept(name.clone()), &msg);
}

/// A message with a name that cannot be in the table (too long) matches no one.
fn name_of(s: &str) -> Option<Name> {
    Name::try_from(s).ok()
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
    match &msg {
        ClientMsg::Register { name, token, key } => {
            let msg = (name.as_ref(), token.as_deref(), key.as_deref());
            register(peers, ctx, conn, link, id, msg)
        }
        _ => match peers.by_conn(conn) {
            None => out.answer(id, Err(ErrorCode::NotRegistered)),
            Some(me) => {
                let (me, my_call) = (me.name.clone(), me.call.clone());
                let mut out = out;
                let result = act(&mut out, peers, ctx, &me, &my_call, &msg);
                out.answer(id, result)
            }
        },
    }
}

impl<L> Outcome<L> {
    /// `bad_message` with what was wrong.
    fn refuse(mut self, id: Option<u32>, detail: &str) -> Self {
        let err = ServerMsg::Error {
            id,
            code: ErrorCode::BadMessage.as_str(),
            message: detail,
        };
        self.reply = Some(err.encode());
        self
    }
}

/// `register` from connection `conn`: check order `already_registered`, `unauthorized`,
/// `name_invalid`, `name_taken`, `full`. A held name with its token is a resume.
fn register<L: Clone, const N: usize>(
    peers: &mut Peers<L, N>,
    ctx: &Ctx,
    conn: ConnId,
    link: &L,
    id: Option<u32>,
    (name, token, key): (&str, Option<&str>, Option<&str>),
) -> Outcome<L> {
    let mut out = Outcome::new();
    if peers.by_conn(conn).is_some() {
        return out.answer(id, Err(ErrorCode::AlreadyRegistered));
    }
    if ctx
        .access_key
        .is_some_and(|want| !key.is_some_and(|k| secret_eq(k, want)))
    {
        out.wrong_key = true;
        return out.answer(id, Err(ErrorCode::Unauthorized));
    }
    let Some(name) = name_of(name).filter(|_| crate::protocol::valid_name(name)) else {
        return out.answer(id, Err(ErrorCode::NameInvalid));
    };

    if let Some(held) = peers.by_name_mut(&name) {
        // Resume: the same device takes its name back; nobody else sees a change.
        if !token.is_some_and(|t| secret_eq(t, &held.token)) {
            return out.answer(id, Err(ErrorCode::NameTaken));
        }
        let old = std::mem::replace(&mut held.link, link.clone());
        let old_conn = std::mem::replace(&mut held.conn, conn);
        log::info!("{name} resumed (connection {old_conn} -> {conn})");
        push(&mut out.effects, Effect::Replace(old));
        out.reply = registered(peers, ctx, &name, id);
        return out;
    }
    // `Door` while `door` is online: taken (resumes use the name exactly as registered).
    if peers
        .iter()
        .any(|p| crate::protocol::same_name(&p.name, &name))
    {
        return out.answer(id, Err(ErrorCode::NameTaken));
    }
    let peer = Peer {
        name: name.clone(),
        token: (ctx.fresh_token)(),
        conn,
        link: link.clone(),
        call: Call::Idle,
    };
    if peers.insert(peer).is_err() {
        return out.answer(id, Err(ErrorCode::Full));
    }
    log::info!("{name} registered ({} online)", peers.len());
    out.reply = registered(peers, ctx, &name, id);
    presence(&mut out.effects, &name, Status::Online);
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
        protocol: crate::protocol::PROTOCOL_VERSION,
        name,
        token: &me.token,
        peers: &others(peers, name),
        ice_servers: ctx.ice_servers,
        keyed: ctx.access_key.is_some(),
        id,
    };
    Some(msg.encode())
}

/// Everyone but `name`, with their status.
fn others<'a, L, const N: usize>(
    peers: &'a Peers<L, N>,
    name: &str,
) -> heapless::Vec<PeerInfo<'a>, N> {
    peers
        .iter()
        .filter(|p| p.name != name)
        .map(|p| PeerInfo {
            name: &p.name,
            status: p.call.status(),
        })
        .collect()
}

/// The `peers` message for connection `conn`, whose outbox had no room for some
/// presence update: the whole list, current as of now. `None` when `conn` holds no name.
pub fn roster<L, const N: usize>(peers: &Peers<L, N>, conn: ConnId) -> Option<String> {
    let me = peers.by_conn(conn)?;
    let others = others(peers, &me.name);
    Some(ServerMsg::Peers { peers: &others }.encode())
}

/// A message other than `register` from registered peer `me`.
fn act<L, const N: usize>(
    out: &mut Outcome<L>,
    peers: &mut Peers<L, N>,
    ctx: &Ctx,
    me: &Name,
    my_call: &Call,
    msg: &ClientMsg,
) -> Result<(), ErrorCode> {
    let effects = &mut out.effects;
    match msg {
        ClientMsg::Register { .. } => Err(ErrorCode::AlreadyRegistered),
        ClientMsg::Call { to } => {
            call(effects, peers, me, my_call, to, ctx.now + ctx.ring_timeout)?;
            out.ring_started = true;
            Ok(())
        }
        ClientMsg::Accept { to } => match my_call {
            Call::Incoming { peer } if peer.as_str() == to.as_ref() => {
                peers.set_call(me, Call::Active { peer: peer.clone() });
                peers.set_call(peer, Call::Active { peer: me.clone() });
                log::info!("{me} -> accept {peer}");
                send(
                    effects,
                    To::Peer(peer.clone()),
                    &ServerMsg::Accept { from: me },
                );
                Ok(())
            }
            _ => Err(ErrorCode::NoCall),
        },
        ClientMsg::Hangup { to, reason } => match my_call.partner() {
            Some(peer) if peer.as_str() == to.as_ref() => {
                let reason = reason.as_deref().unwrap_or("ended");
                log::info!("{me} -> hangup {peer} ({reason})");
                let msg = ServerMsg::Hangup { from: me, reason };
                send(effects, To::Peer(peer.clone()), &msg);
                end_call(effects, peers, me, peer);
                Ok(())
            }
            _ => Err(ErrorCode::NoCall),
        },
        ClientMsg::Signal { to, data } => match my_call {
            Call::Active { peer } if peer.as_str() == to.as_ref() => {
                log::debug!("{me} -> signal {peer}: {}", data.get());
                let msg = ServerMsg::Signal { from: me, data };
                send(effects, To::Peer(peer.clone()), &msg);
                Ok(())
            }
            _ => Err(ErrorCode::NoCall),
        },
    }
}

fn call<L, const N: usize>(
    effects: &mut Effects<L>,
    peers: &mut Peers<L, N>,
    me: &Name,
    my_call: &Call,
    to: &str,
    until: Instant,
) -> Result<(), ErrorCode> {
    let callee = name_of(to)
        .filter(|n| peers.by_name(n).is_some())
        .ok_or(ErrorCode::PeerNotFound)?;
    if callee == *me {
        return Err(ErrorCode::SelfCall);
    }
    let callee_idle = peers.by_name(&callee).is_some_and(|p| p.call == Call::Idle);
    if *my_call != Call::Idle || !callee_idle {
        return Err(ErrorCode::Busy);
    }
    let outgoing = Call::Outgoing {
        peer: callee.clone(),
        until,
    };
    peers.set_call(me, outgoing);
    peers.set_call(&callee, Call::Incoming { peer: me.clone() });
    log::info!("{me} -> call {callee}");
    send(
        effects,
        To::Peer(callee.clone()),
        &ServerMsg::Call { from: me },
    );
    presence(effects, me, Status::Busy);
    presence(effects, &callee, Status::Busy);
    Ok(())
}

/// Both sides back to idle, and everyone told they are online again.
fn end_call<L, const N: usize>(
    effects: &mut Effects<L>,
    peers: &mut Peers<L, N>,
    a: &Name,
    b: &Name,
) {
    for name in [a, b] {
        if peers.by_name(name).is_some() {
            peers.set_call(name, Call::Idle);
            presence(effects, name, Status::Online);
        }
    }
}

/// When the next unanswered ring runs out, if any is ringing.
pub fn next_deadline<L, const N: usize>(peers: &Peers<L, N>) -> Option<Instant> {
    peers
        .iter()
        .filter_map(|p| match p.call {
            Call::Outgoing { until, .. } => Some(until),
            _ => None,
        })
        .min()
}

/// End every ring whose deadline has passed by `now`: `hangup` with reason `timeout` to
/// both sides. Returns the effects and whether more rings remain to expire later.
pub fn expire<L, const N: usize>(peers: &mut Peers<L, N>, now: Instant) -> Effects<L> {
    let mut effects = Effects::new();
    // One ring per pass keeps the effect list bounded; the clock calls again at once.
    let due = peers.iter().find_map(|p| match &p.call {
        Call::Outgoing { peer, until } if *until <= now => Some((p.name.clone(), peer.clone())),
        _ => None,
    });
    let Some((caller, callee)) = due else {
        return effects;
    };
    log::info!("{caller} -> call {callee}: no answer");
    for (to, from) in [(&caller, &callee), (&callee, &caller)] {
        let msg = ServerMsg::Hangup {
            from,
            reason: "timeout",
        };
        send(&mut effects, To::Peer(to.clone()), &msg);
    }
    end_call(&mut effects, peers, &caller, &callee);
    effects
}

/// Connection `conn` ended (not by replacement). Frees its name, hangs up its call.
pub fn disconnect<L, const N: usize>(peers: &mut Peers<L, N>, conn: ConnId) -> Effects<L> {
    let mut effects = Effects::new();
    let Some(gone) = peers.remove(conn) else {
        return effects;
    };
    if let Some(partner) = gone.call.partner()
        && peers.by_name(partner).is_some()
    {
        peers.set_call(partner, Call::Idle);
        let msg = ServerMsg::Hangup {
            from: &gone.name,
            reason: "disconnected",
        };
        send(&mut effects, To::Peer(partner.clone()), &msg);
        presence(&mut effects, partner, Status::Online);
    }
    log::info!("{} disconnected ({} online)", gone.name, peers.len());
    presence(&mut effects, &gone.name, Status::Offline);
    effects
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
            now: Instant::now(),
            fresh_token: &test_token,
        }
    }

    /// `json` from connection `conn` (whose link is `conn as u8`).
    fn frame_from(t: &mut T, c: &Ctx, conn: ConnId, json: &str) -> Outcome<u8> {
        let inbound = Inbound {
            text: Some(json),
            over_rate: false,
        };
        handle(t, c, conn, &(conn as u8), inbound)
    }

    fn msg(t: &mut T, conn: ConnId, json: &str) -> Outcome<u8> {
        frame_from(t, &ctx(None), conn, json)
    }

    fn reg(t: &mut T, conn: ConnId, name: &str) -> Outcome<u8> {
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
        assert!(reply(&out).contains(r#""peers":[{"name":"door","status":"online"}]"#));
        assert!(reply(&out).contains(r#""keyed":false"#));
        let effects = texts(&out.effects);
        assert_eq!(effects[0].0, r#"AllExcept("kitchen")"#);
        assert_eq!(
            effects[0].1,
            r#"{"type":"peer","name":"kitchen","status":"online"}"#
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
            r#"{"type":"peers","peers":[{"name":"door","status":"busy"},{"name":"hall","status":"busy"}]}"#
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
        assert!(out.ring_started);
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
        assert!(expire(&mut t, until - Duration::from_millis(1)).is_empty());
        let out = texts(&expire(&mut t, until));
        assert!(out.iter().any(|(to, m)| to == r#"Peer("a")"#
            && m == r#"{"type":"hangup","from":"b","reason":"timeout"}"#));
        assert!(out.iter().any(|(to, m)| to == r#"Peer("b")"#
            && m == r#"{"type":"hangup","from":"a","reason":"timeout"}"#));
        assert_eq!(next_deadline(&t), None);
        // An answered ring has no deadline any more.
        frame_from(&mut t, &c, 1, r#"{"type":"call","to":"b"}"#);
        msg(&mut t, 2, r#"{"type":"accept","to":"a"}"#);
        assert_eq!(next_deadline(&t), None);
        assert!(expire(&mut t, until + c.ring_timeout).is_empty());
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
            r#"{"type":"peer","name":"b","status":"offline"}"#
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
}
