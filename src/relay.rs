//! Relay decisions, as pure functions over the peer table: "connection C sent message M"
//! becomes a short list of [`Effect`]s (answer C, deliver to B, tell everyone, start a
//! ring timer, cut a replaced connection). No I/O happens here, so every rule of the
//! protocol is unit-testable without sockets; `session.rs` carries the effects out.

use crate::peers::{Call, ConnId, Peer, Peers, Token};
use crate::protocol::{ClientMsg, ErrorCode, Name, PeerInfo, ServerMsg, Status};
use serde_json::value::RawValue;

/// Who an encoded message goes to.
#[derive(Debug, PartialEq)]
pub enum To {
    /// The connection that sent the message being handled.
    Me,
    /// One registered peer.
    Peer(Name),
    /// Every registered peer but this one: presence, which a full outbox may drop
    /// (the receiver then gets a [`roster`]).
    AllExcept(Name),
}

/// One thing the I/O side must do.
#[derive(Debug)]
pub enum Effect<L> {
    /// Queue `text` for `to`.
    Send { to: To, text: String },
    /// Close a connection that a resume replaced (4001 "replaced").
    Replace(L),
    /// The acting connection gave a wrong or missing access key (counted by the session,
    /// which closes the connection after [`crate::protocol::MAX_WRONG_KEYS`]).
    WrongKey,
    /// Start the unanswered-ring timer for this ring.
    Ring {
        caller: Name,
        callee: Name,
        ring: u64,
    },
}

/// At most: ack, delivery, two presence broadcasts, ring timer.
pub type Effects<L> = heapless::Vec<Effect<L>, 8>;

/// What the server knows that a `register` is checked against.
pub struct RegisterCtx<'a> {
    pub access_key: Option<&'a str>,
    pub ice_servers: &'a RawValue,
}

/// Compare secrets in constant time (lengths are hashed away first).
fn secret_eq(a: &str, b: &str) -> bool {
    use openssl::sha::sha256;
    openssl::memcmp::eq(&sha256(a.as_bytes()), &sha256(b.as_bytes()))
}

fn push<L>(fx: &mut Effects<L>, effect: Effect<L>) {
    // Capacity covers the largest case above; a miss would be a bug in this file.
    let pushed = fx.push(effect);
    debug_assert!(pushed.is_ok(), "effect list too short");
}

fn send<L>(fx: &mut Effects<L>, to: To, msg: &ServerMsg) {
    push(
        fx,
        Effect::Send {
            to,
            text: msg.encode(),
        },
    );
}

fn reply<L>(fx: &mut Effects<L>, id: Option<u32>, result: Result<(), ErrorCode>) {
    match (result, id) {
        (Ok(()), Some(id)) => send(fx, To::Me, &ServerMsg::Ack { id }),
        (Ok(()), None) => {}
        (Err(code), id) => send(fx, To::Me, &ServerMsg::error(id, code)),
    }
}

fn presence<L>(fx: &mut Effects<L>, name: &Name, status: Status) {
    let msg = ServerMsg::Peer { name, status };
    send(fx, To::AllExcept(name.clone()), &msg);
}

/// A message with a name that cannot be in the table (too long) matches no one.
fn name_of(s: &str) -> Option<Name> {
    Name::try_from(s).ok()
}

/// `register` from connection `conn`. `already` says whether this connection registered
/// before; `fresh` is a new random token, used only when the name is new.
#[allow(clippy::too_many_arguments)]
pub fn register<L: Clone, const N: usize>(
    peers: &mut Peers<L, N>,
    ctx: &RegisterCtx,
    conn: ConnId,
    link: L,
    already: bool,
    id: Option<u32>,
    msg: (&str, Option<&str>, Option<&str>),
    fresh: Token,
) -> Effects<L> {
    let (name, token, key) = msg;
    let mut fx = Effects::new();
    let check = if already {
        Err(ErrorCode::AlreadyRegistered)
    } else if ctx
        .access_key
        .is_some_and(|want| !key.is_some_and(|k| secret_eq(k, want)))
    {
        Err(ErrorCode::Unauthorized)
    } else if !crate::protocol::valid_name(name) {
        Err(ErrorCode::NameInvalid)
    } else {
        Ok(())
    };
    if let Err(code) = check {
        reply(&mut fx, id, Err(code));
        if code == ErrorCode::Unauthorized {
            push(&mut fx, Effect::WrongKey);
        }
        return fx;
    }
    let Some(name) = name_of(name) else {
        reply(&mut fx, id, Err(ErrorCode::NameInvalid));
        return fx;
    };

    if let Some(held) = peers.by_name_mut(&name) {
        // Resume: the same device takes its name back; nobody else sees a change.
        if !token.is_some_and(|t| secret_eq(t, &held.token)) {
            reply(&mut fx, id, Err(ErrorCode::NameTaken));
            return fx;
        }
        let old = std::mem::replace(&mut held.link, link);
        let old_conn = std::mem::replace(&mut held.conn, conn);
        log::info!("{name} resumed (connection {old_conn} -> {conn})");
        push(&mut fx, Effect::Replace(old));
        registered(&mut fx, peers, ctx, &name, id);
        return fx;
    }

    // `Door` while `door` is online: taken (resumes use the name exactly as registered).
    if peers
        .iter()
        .any(|p| crate::protocol::same_name(&p.name, &name))
    {
        reply(&mut fx, id, Err(ErrorCode::NameTaken));
        return fx;
    }
    let peer = Peer {
        name: name.clone(),
        token: fresh,
        conn,
        link,
        call: Call::Idle,
    };
    if peers.insert(peer).is_err() {
        reply(&mut fx, id, Err(ErrorCode::Full));
        return fx;
    }
    log::info!("{name} registered ({} online)", peers.len());
    registered(&mut fx, peers, ctx, &name, id);
    presence(&mut fx, &name, Status::Online);
    fx
}

fn registered<L, const N: usize>(
    fx: &mut Effects<L>,
    peers: &Peers<L, N>,
    ctx: &RegisterCtx,
    name: &Name,
    id: Option<u32>,
) {
    let Some(me) = peers.by_name(name) else {
        return;
    };
    let msg = ServerMsg::Registered {
        protocol: crate::protocol::PROTOCOL_VERSION,
        name,
        token: &me.token,
        peers: &others(peers, name),
        ice_servers: ctx.ice_servers,
        keyed: ctx.access_key.is_some(),
        id,
    };
    send(fx, To::Me, &msg);
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

/// Any message but `register`, from registered connection `conn`.
pub fn handle<L, const N: usize>(
    peers: &mut Peers<L, N>,
    conn: ConnId,
    id: Option<u32>,
    msg: &ClientMsg,
) -> Effects<L> {
    let mut fx = Effects::new();
    let Some(me) = peers.by_conn(conn) else {
        reply(&mut fx, id, Err(ErrorCode::NotRegistered));
        return fx;
    };
    let me_name = me.name.clone();
    let my_call = me.call.clone();
    let result = match msg {
        ClientMsg::Register { .. } => Err(ErrorCode::AlreadyRegistered),
        ClientMsg::Call { to } => call(&mut fx, peers, &me_name, &my_call, to),
        ClientMsg::Accept { to } => match &my_call {
            Call::Incoming { peer, .. } if peer.as_str() == to.as_ref() => {
                let peer = peer.clone();
                peers.set_call(&me_name, Call::Active { peer: peer.clone() });
                peers.set_call(
                    &peer,
                    Call::Active {
                        peer: me_name.clone(),
                    },
                );
                log::info!("{me_name} -> accept {peer}");
                send(
                    &mut fx,
                    To::Peer(peer),
                    &ServerMsg::Accept { from: &me_name },
                );
                Ok(())
            }
            _ => Err(ErrorCode::NoCall),
        },
        ClientMsg::Hangup { to, reason } => match my_call.partner() {
            Some(peer) if peer.as_str() == to.as_ref() => {
                let reason = reason.as_deref().unwrap_or("ended");
                log::info!("{me_name} -> hangup {peer} ({reason})");
                let msg = ServerMsg::Hangup {
                    from: &me_name,
                    reason,
                };
                send(&mut fx, To::Peer(peer.clone()), &msg);
                end_call(&mut fx, peers, &me_name, peer);
                Ok(())
            }
            _ => Err(ErrorCode::NoCall),
        },
        ClientMsg::Signal { to, data } => match &my_call {
            Call::Active { peer } if peer.as_str() == to.as_ref() => {
                log::debug!("{me_name} -> signal {peer}: {}", data.get());
                let msg = ServerMsg::Signal {
                    from: &me_name,
                    data,
                };
                send(&mut fx, To::Peer(peer.clone()), &msg);
                Ok(())
            }
            _ => Err(ErrorCode::NoCall),
        },
    };
    reply(&mut fx, id, result);
    fx
}

fn call<L, const N: usize>(
    fx: &mut Effects<L>,
    peers: &mut Peers<L, N>,
    me: &Name,
    my_call: &Call,
    to: &str,
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
    let ring = peers.next_ring();
    peers.set_call(
        me,
        Call::Outgoing {
            peer: callee.clone(),
            ring,
        },
    );
    peers.set_call(
        &callee,
        Call::Incoming {
            peer: me.clone(),
            ring,
        },
    );
    log::info!("{me} -> call {callee}");
    send(fx, To::Peer(callee.clone()), &ServerMsg::Call { from: me });
    presence(fx, me, Status::Busy);
    presence(fx, &callee, Status::Busy);
    push(
        fx,
        Effect::Ring {
            caller: me.clone(),
            callee,
            ring,
        },
    );
    Ok(())
}

/// Both sides back to idle, and everyone told they are online again.
fn end_call<L, const N: usize>(fx: &mut Effects<L>, peers: &mut Peers<L, N>, a: &Name, b: &Name) {
    for name in [a, b] {
        if peers.by_name(name).is_some() {
            peers.set_call(name, Call::Idle);
            presence(fx, name, Status::Online);
        }
    }
}

/// The ring timer fired. If the same ring is still unanswered, end it for both sides.
pub fn ring_timeout<L, const N: usize>(
    peers: &mut Peers<L, N>,
    caller: &Name,
    callee: &Name,
    ring: u64,
) -> Effects<L> {
    let mut fx = Effects::new();
    let still = |who: &Name, want: Call| peers.by_name(who).is_some_and(|p| p.call == want);
    let ringing = still(
        caller,
        Call::Outgoing {
            peer: callee.clone(),
            ring,
        },
    ) && still(
        callee,
        Call::Incoming {
            peer: caller.clone(),
            ring,
        },
    );
    if !ringing {
        return fx;
    }
    log::info!("{caller} -> call {callee}: no answer");
    for (to, from) in [(caller, callee), (callee, caller)] {
        let msg = ServerMsg::Hangup {
            from,
            reason: "timeout",
        };
        send(&mut fx, To::Peer(to.clone()), &msg);
    }
    end_call(&mut fx, peers, caller, callee);
    fx
}

/// Connection `conn` ended (not by replacement). Frees its name, hangs up its call.
pub fn disconnect<L, const N: usize>(peers: &mut Peers<L, N>, conn: ConnId) -> Effects<L> {
    let mut fx = Effects::new();
    let Some(gone) = peers.remove(conn) else {
        return fx;
    };
    if let Some(partner) = gone.call.partner()
        && peers.by_name(partner).is_some()
    {
        peers.set_call(partner, Call::Idle);
        let msg = ServerMsg::Hangup {
            from: &gone.name,
            reason: "disconnected",
        };
        send(&mut fx, To::Peer(partner.clone()), &msg);
        presence(&mut fx, partner, Status::Online);
    }
    log::info!("{} disconnected ({} online)", gone.name, peers.len());
    presence(&mut fx, &gone.name, Status::Offline);
    fx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::decode;

    type T = Peers<u8, 4>;

    fn ctx() -> RegisterCtx<'static> {
        RegisterCtx {
            access_key: None,
            ice_servers: Box::leak(RawValue::from_string("[]".into()).unwrap()),
        }
    }

    fn token(s: &str) -> Token {
        Token::try_from(s).unwrap()
    }

    fn reg(t: &mut T, conn: ConnId, name: &str) -> Effects<u8> {
        register(
            t,
            &ctx(),
            conn,
            conn as u8,
            false,
            None,
            (name, None, None),
            token(&format!("tok-{name}")),
        )
    }

    fn texts(fx: &Effects<u8>) -> Vec<(String, String)> {
        fx.iter()
            .filter_map(|e| match e {
                Effect::Send { to, text } => Some((format!("{to:?}"), text.clone())),
                _ => None,
            })
            .collect()
    }

    fn msg(t: &mut T, conn: ConnId, json: &str) -> Effects<u8> {
        let (id, m) = decode(json).unwrap();
        handle(t, conn, id, &m)
    }

    #[test]
    fn register_announces_and_lists_others() {
        let mut t = T::new(4);
        reg(&mut t, 1, "door");
        let fx = reg(&mut t, 2, "kitchen");
        let out = texts(&fx);
        assert!(
            out[0]
                .1
                .contains(r#""peers":[{"name":"door","status":"online"}]"#)
        );
        assert_eq!(out[1].0, r#"AllExcept("kitchen")"#);
        assert_eq!(
            out[1].1,
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
        let fx = msg(&mut t, 1, r#"{"type":"signal","to":"b","data":1,"id":3}"#);
        assert!(texts(&fx)[0].1.contains("no_call"));
        let fx = msg(&mut t, 1, r#"{"type":"call","to":"b","id":4}"#);
        let out = texts(&fx);
        assert_eq!(out[0].1, r#"{"type":"call","from":"a"}"#);
        assert!(fx.iter().any(|e| matches!(e, Effect::Ring { ring: 1, .. })));
        assert_eq!(out.last().unwrap().1, r#"{"type":"ack","id":4}"#);
        let fx = msg(&mut t, 2, r#"{"type":"accept","to":"a"}"#);
        assert_eq!(texts(&fx)[0].1, r#"{"type":"accept","from":"b"}"#);
        let fx = msg(&mut t, 2, r#"{"type":"signal","to":"a","data":{"x" : 1}}"#);
        assert_eq!(
            texts(&fx)[0].1,
            r#"{"type":"signal","from":"b","data":{"x" : 1}}"#
        );
        let fx = msg(&mut t, 1, r#"{"type":"hangup","to":"b"}"#);
        assert_eq!(
            texts(&fx)[0].1,
            r#"{"type":"hangup","from":"a","reason":"ended"}"#
        );
        assert_eq!(t.by_name("a").unwrap().call, Call::Idle);
        assert_eq!(t.by_name("b").unwrap().call, Call::Idle);
    }

    #[test]
    fn ring_timeout_only_for_the_same_ring() {
        let mut t = T::new(4);
        reg(&mut t, 1, "a");
        reg(&mut t, 2, "b");
        msg(&mut t, 1, r#"{"type":"call","to":"b"}"#);
        let (a, b) = (Name::try_from("a").unwrap(), Name::try_from("b").unwrap());
        assert!(ring_timeout(&mut t, &a, &b, 99).is_empty());
        let fx = ring_timeout(&mut t, &a, &b, 1);
        let out = texts(&fx);
        assert!(out.iter().any(|(to, m)| to == r#"Peer("a")"#
            && m == r#"{"type":"hangup","from":"b","reason":"timeout"}"#));
        assert!(out.iter().any(|(to, m)| to == r#"Peer("b")"#
            && m == r#"{"type":"hangup","from":"a","reason":"timeout"}"#));
    }

    #[test]
    fn resume_needs_the_token_and_keeps_the_call() {
        let mut t = T::new(4);
        reg(&mut t, 1, "a");
        reg(&mut t, 2, "b");
        msg(&mut t, 1, r#"{"type":"call","to":"b"}"#);
        let c = ctx();
        let fx = register(
            &mut t,
            &c,
            3,
            3,
            false,
            None,
            ("a", Some("x"), None),
            token("n"),
        );
        assert!(texts(&fx)[0].1.contains("name_taken"));
        let fx = register(
            &mut t,
            &c,
            3,
            3,
            false,
            None,
            ("a", Some("tok-a"), None),
            token("n"),
        );
        assert!(matches!(fx[0], Effect::Replace(1)));
        assert_eq!(texts(&fx).len(), 1, "nobody else hears of a resume");
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
    fn errors_in_order() {
        let mut t = T::new(1);
        let c = RegisterCtx {
            access_key: Some("k"),
            ..ctx()
        };
        let r = |t: &mut T, already, name: &str, key| {
            let fx = register(t, &c, 9, 9, already, Some(1), (name, None, key), token("z"));
            texts(&fx)[0].1.clone()
        };
        assert!(r(&mut t, true, "", None).contains("already_registered"));
        assert!(r(&mut t, false, "", Some("bad")).contains("unauthorized"));
        assert!(r(&mut t, false, " x", Some("k")).contains("name_invalid"));
        assert!(r(&mut t, false, "x", Some("k")).contains("registered"));
        assert!(r(&mut t, false, "x", Some("k")).contains("name_taken"));
        assert!(r(&mut t, false, "X", Some("k")).contains("name_taken"));
        assert!(r(&mut t, false, "y", Some("k")).contains(r#""code":"full""#));
        // A wrong key is marked for the session to count.
        let fx = register(
            &mut t,
            &c,
            8,
            8,
            false,
            None,
            ("y", None, Some("no")),
            token("z"),
        );
        assert!(fx.iter().any(|e| matches!(e, Effect::WrongKey)));
        let fx = register(
            &mut t,
            &c,
            8,
            8,
            false,
            None,
            ("y", None, Some("k")),
            token("z"),
        );
        assert!(!fx.iter().any(|e| matches!(e, Effect::WrongKey)));
        let e = texts(&msg(&mut t, 9, r#"{"type":"call","to":"x"}"#));
        assert!(e[0].1.contains("self_call"));
        let e = texts(&msg(&mut t, 9, r#"{"type":"call","to":"nobody","id":5}"#));
        assert!(e[0].1.contains(r#""id":5,"code":"peer_not_found""#));
    }
}
