//! Protocol v1 against the real server over TLS WebSockets: every row of the protocol
//! table, every error a message can earn (with the `id` echo rules), presence, resume,
//! ring timeout and call cleanup on disconnect.
//!
//! Nothing here looks at the server process itself (no /proc), so this file also proves
//! a cross-built server run under an emulator (see tests/support).

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::*;

/// Long enough for a message the server wrongly sent to arrive.
const QUIET: Duration = Duration::from_millis(150);

/// An entry of `registered.peers`, for a station in no group.
fn listed(name: &str, status: &str) -> Value {
    json!({"name": name, "status": status, "groups": []})
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|m| m.to_string());
    v
}

#[test]
fn register_reply_and_presence_broadcasts() {
    let ice = r#"[{"urls":"turn:10.0.0.1:3478","username":"u","credential":"c"}]"#;
    let server = start_server(&["--ice-servers", ice]);
    run(async {
        let mut door = server.client().await;
        door.name = "door".into();
        door.send(json!({"type": "register", "name": "door", "id": 7}))
            .await;
        let reg = door.recv().await;
        let token = reg["token"].as_str().expect("token").to_string();
        assert!(token.len() >= 22, "token too short: {token}");
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{token}"
        );
        let ice: Value = serde_json::from_str(ice).unwrap();
        assert_eq!(
            reg,
            json!({"type": "registered", "protocol": 1, "name": "door", "token": token,
                   "peers": [], "iceServers": ice, "keyed": false,
                   "features": ["groups", "dnd", "preview", "page"], "groups": [], "dnd": false,
                   "id": 7})
        );

        let (mut kitchen, reg) = server.register("kitchen").await;
        assert_eq!(reg["peers"], json!([listed("door", "online")]));
        assert!(reg.get("id").is_none(), "no id, none echoed: {reg}");
        assert_ne!(reg["token"], json!(token), "every peer gets its own token");
        assert_eq!(door.recv().await, peer("kitchen", "online"));

        let (mut hall, reg) = server.register("hall").await;
        assert_eq!(
            sorted(reg["peers"].as_array().unwrap().clone()),
            vec![listed("door", "online"), listed("kitchen", "online")]
        );
        assert_eq!(door.recv().await, peer("hall", "online"));
        assert_eq!(kitchen.recv().await, peer("hall", "online"));

        // Ringing makes both sides busy for everyone else, a late joiner included.
        door.acked(json!({"type": "call", "to": "kitchen"}), 1)
            .await;
        assert_eq!(
            sorted(vec![hall.recv().await, hall.recv().await]),
            vec![peer("door", "busy"), peer("kitchen", "busy")]
        );
        let (mut yard, reg) = server.register("yard").await;
        assert_eq!(
            sorted(reg["peers"].as_array().unwrap().clone()),
            vec![
                listed("door", "busy"),
                listed("hall", "online"),
                listed("kitchen", "busy")
            ]
        );
        assert_eq!(hall.recv().await, peer("yard", "online"));
        assert_eq!(door.recv().await, peer("yard", "online"));

        // Declining: the caller hears why, everyone sees both online again.
        kitchen
            .send(json!({"type": "hangup", "to": "door", "reason": "declined"}))
            .await;
        assert_eq!(
            door.recv_type("hangup").await,
            json!({"type": "hangup", "from": "kitchen", "reason": "declined"})
        );
        for c in [&mut hall, &mut yard] {
            assert_eq!(
                sorted(vec![c.recv().await, c.recv().await]),
                vec![peer("door", "online"), peer("kitchen", "online")]
            );
        }

        // Leaving: offline for everyone, and the name is free again.
        kitchen.close().await;
        for c in [&mut hall, &mut yard] {
            assert_eq!(c.recv().await, peer("kitchen", "offline"));
        }
        assert_eq!(door.recv().await, peer("kitchen", "online"));
        assert_eq!(door.recv().await, peer("kitchen", "offline"));
        let (_again, reg) = server.register("kitchen").await;
        assert_eq!(reg["name"], "kitchen");
        for c in [&mut door, &mut hall, &mut yard] {
            assert_eq!(c.recv().await, peer("kitchen", "online"));
            c.expect_silence(QUIET).await;
        }
    });
}

#[test]
fn two_korean_names_register_and_call() {
    let server = start_server(&[]);
    run(async {
        let (mut a, _) = server.register("주방").await;
        let (mut b, reg) = server.register("현관 문").await;
        assert_eq!(reg["name"], "현관 문");
        assert_eq!(reg["peers"], json!([listed("주방", "online")]));
        assert_eq!(a.recv().await, peer("현관 문", "online"));
        ring(&mut b, &mut a, 1).await;
        // 32 bytes of mixed Hangul and Latin is a valid name; 33 bytes is not.
        let name = format!("{}ab", "가".repeat(10));
        let (_c, reg) = server.register(&name).await;
        assert_eq!(reg["name"], name);
        let mut d = server.client().await;
        let name = format!("{}abc", "가".repeat(10));
        d.refused(json!({"type": "register", "name": name}), 2, "name_invalid")
            .await;
    });
}

#[test]
fn call_accept_signal_hangup() {
    let server = start_server(&[]);
    run(async {
        let [mut a, mut b] = server.stations(["door", "kitchen"]).await;
        a.recv().await;
        // A client-sent `from` is ignored: the server stamps the sender.
        a.send(json!({"type": "call", "to": "kitchen", "from": "evil"}))
            .await;
        assert_eq!(b.recv().await, json!({"type": "call", "from": "door"}));
        b.acked(json!({"type": "accept", "to": "door", "from": "evil"}), 5)
            .await;
        assert_eq!(
            a.recv_type("accept").await,
            json!({"type": "accept", "from": "kitchen"})
        );

        // `data` is relayed byte for byte as written, in both directions.
        let sdp = r#"{ "sdp" : "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n", "type":"offer", "n": 1.50e2, "u": "\u00e9" }"#;
        a.send_text(&format!(
            r#"{{"type":"signal","to":"kitchen","from":"evil","data":{sdp}}}"#
        ))
        .await;
        assert_eq!(
            b.recv_text().await,
            format!(r#"{{"type":"signal","from":"door","data":{sdp}}}"#)
        );
        for data in [
            r#""candidate:1 1 udp 2122260223 10.0.0.2 5000 typ host""#,
            "[1,2 , 3]",
            "false",
            "0",
        ] {
            b.send_text(&format!(
                r#"{{"type":"signal","to":"door","data":{data},"id":6}}"#
            ))
            .await;
            assert_eq!(b.recv().await, json!({"type": "ack", "id": 6}));
            assert_eq!(
                a.recv_text().await,
                format!(r#"{{"type":"signal","from":"kitchen","data":{data}}}"#)
            );
        }

        a.acked(
            json!({"type": "hangup", "to": "kitchen", "reason": null}),
            7,
        )
        .await;
        assert_eq!(
            b.recv_type("hangup").await,
            json!({"type": "hangup", "from": "door", "reason": "ended"})
        );
        // The call is over: signalling into it is refused, and a new call works.
        b.refused(
            json!({"type": "signal", "to": "door", "data": 1}),
            8,
            "no_call",
        )
        .await;
        ring(&mut b, &mut a, 9).await;
    });
}

#[test]
fn cancel_while_ringing_and_reason_limits() {
    let server = start_server(&[]);
    run(async {
        let [mut a, mut b] = server.stations(["a", "b"]).await;
        ring(&mut a, &mut b, 1).await;
        // A 32-byte reason is fine, 33 bytes is a bad message (and the call goes on).
        let long = "x".repeat(33);
        let err = a
            .request(json!({"type": "hangup", "to": "b", "reason": long}), 2)
            .await;
        assert_bad_message(&err, Some(2));
        let reason = "가".repeat(11); // 33 bytes
        let err = a
            .request(json!({"type": "hangup", "to": "b", "reason": reason}), 3)
            .await;
        assert_bad_message(&err, Some(3));
        let reason = "x".repeat(32);
        a.acked(json!({"type": "hangup", "to": "b", "reason": reason}), 4)
            .await;
        assert_eq!(
            b.recv_type("hangup").await,
            json!({"type": "hangup", "from": "a", "reason": reason})
        );
        // Neither is ringing any more.
        b.refused(json!({"type": "accept", "to": "a"}), 5, "no_call")
            .await;
    });
}

#[test]
fn call_errors() {
    let server = start_server(&[]);
    run(async {
        let [mut a, mut b, mut c] = server.stations(["a", "b", "c"]).await;
        let call = |to: &str| json!({"type": "call", "to": to});
        a.refused(call("nobody"), 1, "peer_not_found").await;
        let long = "n".repeat(40);
        a.refused(call(&long), 2, "peer_not_found").await;
        a.refused(call("a"), 3, "self_call").await;
        // Nothing to accept, hang up or signal yet.
        for (i, ty) in [(4, "accept"), (5, "hangup"), (6, "signal")] {
            let msg = json!({"type": ty, "to": "b", "data": {}});
            a.refused(msg, i, "no_call").await;
        }

        ring(&mut a, &mut b, 10).await;
        // Caller busy, callee busy, and a third party calling either.
        a.refused(call("c"), 11, "busy").await;
        b.refused(call("c"), 12, "busy").await;
        c.refused(call("a"), 13, "busy").await;
        c.refused(call("b"), 14, "busy").await;
        // Only the callee accepts, and only its caller.
        let accept = |to: &str| json!({"type": "accept", "to": to});
        a.refused(accept("b"), 15, "no_call").await;
        b.refused(accept("c"), 16, "no_call").await;
        b.refused(accept("zz"), 17, "no_call").await;
        c.refused(accept("a"), 18, "no_call").await;
        // Signals are refused while ringing: nobody can push SDP before an accept.
        let signal = |to: &str| json!({"type": "signal", "to": to, "data": "x"});
        a.refused(signal("b"), 19, "no_call").await;
        b.refused(signal("a"), 20, "no_call").await;
        // Hangup names only the partner.
        let hangup = |to: &str| json!({"type": "hangup", "to": to});
        a.refused(hangup("c"), 21, "no_call").await;
        c.refused(hangup("a"), 22, "no_call").await;

        answer(&mut b, &mut a, 23).await;
        // In a call: an outsider can neither signal nor hang up, nor ring either side.
        c.refused(signal("a"), 24, "no_call").await;
        c.refused(hangup("b"), 25, "no_call").await;
        c.refused(call("a"), 26, "busy").await;
        a.refused(signal("c"), 27, "no_call").await;
        b.refused(accept("a"), 28, "no_call").await;
        a.refused(call("b"), 29, "busy").await;
        // None of the refusals leaked to the partner.
        b.expect_silence(QUIET).await;
        // Errors without an id come without one.
        c.send(signal("a")).await;
        assert_eq!(c.recv().await, error(None, "no_call"));
    });
}

#[test]
fn ids_are_echoed_and_successes_without_id_are_silent() {
    let server = start_server(&[]);
    run(async {
        let [mut a, mut b] = server.stations(["a", "b"]).await;
        a.recv().await;
        // No id: no ack. The next message `a` sees is the answer to the next request.
        a.send(json!({"type": "call", "to": "b"})).await;
        assert_eq!(a.recv().await, peer("b", "busy"));
        a.refused(json!({"type": "call", "to": "b"}), 4_294_967_295, "busy")
            .await;
        b.recv_type("call").await;
        // `"id": null` counts as absent.
        b.send(json!({"type": "accept", "to": "a", "id": null}))
            .await;
        a.recv_type("accept").await;
        b.acked(json!({"type": "signal", "to": "a", "data": 1}), 0)
            .await;
        a.recv_type("signal").await;
        b.send(json!({"type": "hangup", "to": "a", "id": null}))
            .await;
        a.recv_type("hangup").await;
        b.send(json!({"type": "hangup", "to": "a", "id": null}))
            .await;
        assert_eq!(b.recv_type("error").await, error(None, "no_call"));
    });
}

#[test]
fn bad_messages_are_answered_and_the_connection_stays_open() {
    let server = start_server(&[]);
    run(async {
        let [mut a, _b] = server.stations(["a", "b"]).await;
        a.recv().await;
        use async_tungstenite::tungstenite::Message;
        let cases: &[(&str, Option<u32>)] = &[
            // Not JSON, not an object.
            ("{", None),
            ("", None),
            ("hello", None),
            (r#"{"type":"call","to":"b""#, None),
            ("[]", None),
            (r#"["call","b"]"#, None),
            ("1", None),
            (r#""call""#, None),
            ("null", None),
            // Type missing, mistyped or unknown.
            (r#"{"to":"b","id":1}"#, Some(1)),
            (r#"{"type":5,"to":"b","id":2}"#, Some(2)),
            (r#"{"type":null,"id":3}"#, Some(3)),
            (r#"{"type":"dance","id":4}"#, Some(4)),
            (r#"{"type":"Call","to":"b","id":5}"#, Some(5)),
            // Missing or mistyped fields.
            (r#"{"type":"call","id":6}"#, Some(6)),
            (r#"{"type":"call","to":null,"id":7}"#, Some(7)),
            (r#"{"type":"call","to":7,"id":8}"#, Some(8)),
            (r#"{"type":"accept","to":["b"],"id":9}"#, Some(9)),
            (r#"{"type":"hangup","id":10}"#, Some(10)),
            (r#"{"type":"hangup","to":"b","reason":5,"id":11}"#, Some(11)),
            (r#"{"type":"signal","to":"b","id":12}"#, Some(12)),
            (
                r#"{"type":"signal","to":"b","data":null,"id":13}"#,
                Some(13),
            ),
            (r#"{"type":"register","id":14}"#, Some(14)),
            (r#"{"type":"register","name":{"x":1},"id":15}"#, Some(15)),
            (
                r#"{"type":"register","name":"c","token":1,"id":16}"#,
                Some(16),
            ),
            (
                r#"{"type":"register","name":"c","key":false,"id":17}"#,
                Some(17),
            ),
            // An id that is not a u32 is not echoed.
            (r#"{"type":"call","to":"b","id":-1}"#, None),
            (r#"{"type":"call","to":"b","id":4294967296}"#, None),
            (r#"{"type":"call","to":"b","id":"7"}"#, None),
            (r#"{"type":"call","to":"b","id":1.5}"#, None),
            (r#"{"type":"call","to":"b","id":[1]}"#, None),
        ];
        for (text, id) in cases {
            a.send_text(text).await;
            let got = a.recv().await;
            assert_eq!(got["code"], "bad_message", "{text} -> {got}");
            assert_bad_message(&got, *id);
        }
        a.send_raw(Message::binary(
            b"{\"type\":\"call\",\"to\":\"b\",\"id\":1}".to_vec(),
        ))
        .await
        .unwrap();
        assert_bad_message(&a.recv().await, None);
        // Unknown fields are ignored and nulls count as absent: the call goes through.
        a.acked(
            json!({"type": "call", "to": "b", "v": 2, "extra": {"x": [1]}, "token": null,
                   "reason": null, "data": null}),
            40,
        )
        .await;
        // Still registered as itself.
        let health = server.health().await;
        assert_eq!(health["peers"], 2);
    });
}

#[test]
fn messages_before_register_are_refused() {
    let server = start_server(&[]);
    run(async {
        let (mut b, _) = server.register("b").await;
        let mut c = server.client().await;
        for (i, ty) in [(1, "call"), (2, "accept"), (3, "hangup"), (4, "signal")] {
            let msg = json!({"type": ty, "to": "b", "data": {}});
            c.refused(msg, i, "not_registered").await;
        }
        c.send(json!({"type": "call", "to": "b"})).await;
        assert_eq!(c.recv().await, error(None, "not_registered"));
        // Parsing comes first.
        c.send_text(r#"{"type":"call","id":5}"#).await;
        assert_bad_message(&c.recv().await, Some(5));
        use async_tungstenite::tungstenite::Message;
        c.send_raw(Message::binary(vec![1, 2, 3])).await.unwrap();
        assert_bad_message(&c.recv().await, None);
        // None of it reached b; the connection can still register.
        b.expect_silence(QUIET).await;
        let reg = c.request(json!({"type": "register", "name": "c"}), 6).await;
        assert_eq!(reg["type"], "registered");
        assert_eq!(b.recv().await, peer("c", "online"));
    });
}

#[test]
fn register_errors() {
    let server = start_server(&["--max-peers", "2"]);
    run(async {
        let (mut a, reg_a) = server.register("a").await;
        let token_a = reg_a["token"].as_str().unwrap().to_string();
        let mut c = server.client().await;
        let register = |name: &str| json!({"type": "register", "name": name});
        let invalid = [
            String::new(),
            " a".into(),
            "a ".into(),
            "\u{3000}a".into(),
            "a\tb".into(),
            "a\nb".into(),
            "a\u{7f}".into(),
            "x".repeat(33),
        ];
        for (i, name) in invalid.iter().enumerate() {
            let reply = c.request(register(name), i as u32).await;
            assert_eq!(reply, error(Some(i as u32), "name_invalid"), "{name:?}");
        }
        // Held names: no token or a wrong token.
        c.refused(register("a"), 20, "name_taken").await;
        let wrong = json!({"type": "register", "name": "a", "token": "x".repeat(32)});
        c.refused(wrong, 21, "name_taken").await;
        let other = json!({"type": "register", "name": "a", "token": format!("{token_a}x")});
        c.refused(other, 22, "name_taken").await;
        // A token for a name nobody holds is ignored; the peer gets a fresh one.
        let reply = c
            .request(
                json!({"type": "register", "name": "b", "token": token_a}),
                23,
            )
            .await;
        assert_eq!(reply["type"], "registered");
        assert_eq!(reply["id"], 23);
        assert_ne!(reply["token"], json!(token_a));
        assert_eq!(a.recv().await, peer("b", "online"));
        // This connection is registered now.
        c.refused(register("z"), 24, "already_registered").await;
        c.refused(register("b"), 25, "already_registered").await;
        c.refused(register(""), 26, "already_registered").await;

        // The table (max 2) is full: a new name is refused, but a taken name is reported
        // as taken first, an invalid one as invalid, and a resume still works.
        let mut d = server.client().await;
        d.refused(register("d"), 30, "full").await;
        d.refused(register("a"), 31, "name_taken").await;
        d.refused(register(" d"), 32, "name_invalid").await;
        d.send(register("d")).await;
        assert_eq!(d.recv().await, error(None, "full"));
        let resume = json!({"type": "register", "name": "a", "token": token_a});
        assert_eq!(d.request(resume, 33).await["type"], "registered");
        c.expect_silence(QUIET).await;
    });
}

#[test]
fn access_key() {
    let server = start_server(&["--access-key", "s3cret"]);
    run(async {
        let reg = |name: &str, key: Value| json!({"type": "register", "name": name, "key": key});
        // A connection may guess twice; the third wrong key closes it (tests/hostile.rs).
        for (i, key) in [
            json!(null),
            json!(""),
            json!("s3cre"),
            json!("s3cret "),
            json!("S3CRET"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut c = server.client().await;
            let reply = c.request(reg("a", key), i as u32).await;
            assert_eq!(reply, error(Some(i as u32), "unauthorized"));
        }
        let mut c = server.client().await;
        c.refused(json!({"type": "register", "name": "a"}), 9, "unauthorized")
            .await;
        // unauthorized comes before name_invalid.
        c.refused(reg(" bad", json!("nope")), 10, "unauthorized")
            .await;
        c.refused(reg(" bad", json!("s3cret")), 11, "name_invalid")
            .await;
        let reply = c.request(reg("a", json!("s3cret")), 12).await;
        assert_eq!(reply["type"], "registered");
        assert_eq!(reply["keyed"], true);
        // already_registered comes before unauthorized.
        c.refused(reg("b", json!("nope")), 13, "already_registered")
            .await;
        // A held name with the wrong key: unauthorized, not name_taken.
        let mut d = server.client().await;
        d.refused(reg("a", json!("nope")), 14, "unauthorized").await;
        d.refused(reg("a", json!("s3cret")), 15, "name_taken").await;
    });
}

#[test]
fn disconnect_while_ringing_hangs_up_and_frees_the_name() {
    let server = start_server(&[]);
    run(async {
        let [mut a, b, mut c] = server.stations(["a", "b", "c"]).await;
        a.request(json!({"type": "call", "to": "b"}), 1).await;
        assert_eq!(
            sorted(vec![c.recv().await, c.recv().await]),
            vec![peer("a", "busy"), peer("b", "busy")]
        );
        drop(b); // the socket just goes away
        assert_eq!(
            a.recv_type("hangup").await,
            json!({"type": "hangup", "from": "b", "reason": "disconnected"})
        );
        assert_eq!(a.recv().await, peer("b", "offline"));
        assert_eq!(c.recv().await, peer("a", "online"));
        assert_eq!(c.recv().await, peer("b", "offline"));
        // The caller is idle again and the name is free.
        let (mut b2, _) = server.register("b").await;
        assert_eq!(a.recv().await, peer("b", "online"));
        ring(&mut a, &mut b2, 2).await;
    });
}

#[test]
fn disconnect_in_a_call_hangs_up_the_partner() {
    let server = start_server(&[]);
    run(async {
        let (a, mut b) = call_pair(&server, "a", "b").await;
        let (mut c, _) = server.register("c").await;
        b.recv().await; // c online
        a.close().await; // the caller leaves politely
        assert_eq!(
            b.recv().await,
            json!({"type": "hangup", "from": "a", "reason": "disconnected"})
        );
        assert_eq!(b.recv().await, peer("a", "offline"));
        assert_eq!(c.recv().await, peer("b", "online"));
        assert_eq!(c.recv().await, peer("a", "offline"));
        b.refused(
            json!({"type": "signal", "to": "a", "data": 1}),
            3,
            "no_call",
        )
        .await;
        b.acked(json!({"type": "call", "to": "c"}), 4).await;
        server.wait_connections(2, 2).await;
    });
}

#[test]
fn resume_with_token_keeps_the_call_and_nobody_notices() {
    let server = start_server(&[]);
    run(async {
        let (mut a, reg_a) = server.register("a").await;
        let token = reg_a["token"].as_str().unwrap().to_string();
        let [mut b, mut c] = server.stations(["b", "c"]).await;
        a.recv().await;
        a.recv().await;
        b.recv().await;
        ring(&mut a, &mut b, 1).await;
        answer(&mut b, &mut a, 2).await;
        assert_eq!(c.recv().await, peer("a", "busy"));
        assert_eq!(c.recv().await, peer("b", "busy"));

        // Without the token the name is taken; the holder is undisturbed.
        let mut a2 = server.client().await;
        let plain = json!({"type": "register", "name": "a"});
        a2.refused(plain, 3, "name_taken").await;
        a.expect_silence(QUIET).await;

        // With it, the new connection takes over name, token, status and call.
        let resume = json!({"type": "register", "name": "a", "token": token});
        let reg = a2.request(resume, 4).await;
        let mut reg = reg;
        let peers = reg.as_object_mut().unwrap().remove("peers").unwrap();
        assert_eq!(
            reg,
            json!({"type": "registered", "protocol": 1, "name": "a", "token": token,
                   "iceServers": [], "keyed": false,
                   "features": ["groups", "dnd", "preview", "page"], "groups": [], "dnd": false,
                   "id": 4})
        );
        assert_eq!(
            sorted(peers.as_array().unwrap().clone()),
            vec![listed("b", "busy"), listed("c", "online")]
        );
        let (closed, seen) = a.closed().await;
        assert_eq!(closed, Closed::Frame(4001, "replaced".into()));
        assert!(seen.is_empty(), "{seen:?}");
        b.expect_silence(QUIET).await;
        c.expect_silence(Duration::ZERO).await; // already waited above

        // The call goes on, both ways.
        a2.acked(json!({"type": "signal", "to": "b", "data": {"ice": 1}}), 5)
            .await;
        assert_eq!(
            b.recv().await,
            json!({"type": "signal", "from": "a", "data": {"ice": 1}})
        );
        b.send(json!({"type": "signal", "to": "a", "data": 2}))
            .await;
        assert_eq!(
            a2.recv().await,
            json!({"type": "signal", "from": "b", "data": 2})
        );
        assert_eq!(server.health().await["peers"], 3);
        // The token still works for the next blip; the old connection owns nothing.
        let mut a3 = server.client().await;
        let again = json!({"type": "register", "name": "a", "token": token});
        assert_eq!(a3.request(again, 6).await["token"], json!(token));
        let (closed, _) = a2.closed().await;
        assert_eq!(closed, Closed::Frame(4001, "replaced".into()));
        a3.send(json!({"type": "hangup", "to": "b"})).await;
        assert_eq!(
            b.recv().await,
            json!({"type": "hangup", "from": "a", "reason": "ended"})
        );
        assert_eq!(
            sorted(vec![c.recv().await, c.recv().await]),
            vec![peer("a", "online"), peer("b", "online")]
        );
    });
}

#[test]
fn unanswered_ring_times_out_for_both() {
    let server = start_server(&["--ring-timeout", "0.3"]);
    run(async {
        let [mut a, mut b, mut c] = server.stations(["a", "b", "c"]).await;
        a.request(json!({"type": "call", "to": "b"}), 1).await;
        let started = std::time::Instant::now();
        b.recv_type("call").await;
        assert_eq!(
            a.recv_type("hangup").await,
            json!({"type": "hangup", "from": "b", "reason": "timeout"})
        );
        assert!(started.elapsed() >= Duration::from_millis(250));
        assert_eq!(
            b.recv_type("hangup").await,
            json!({"type": "hangup", "from": "a", "reason": "timeout"})
        );
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(c.recv().await);
        }
        assert_eq!(
            sorted(seen),
            vec![
                peer("a", "busy"),
                peer("a", "online"),
                peer("b", "busy"),
                peer("b", "online")
            ]
        );
        // An accepted call does not time out, nor does a second ring inherit the first's
        // timer.
        ring(&mut a, &mut b, 2).await;
        answer(&mut b, &mut a, 3).await;
        a.expect_silence(Duration::from_millis(500)).await;
        b.expect_silence(Duration::ZERO).await;
        a.acked(json!({"type": "signal", "to": "b", "data": 0}), 4)
            .await;
    });
}
