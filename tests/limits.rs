//! Limits and timeouts, each shortened by its flag: message size, inbound rate, register
//! and idle timeouts, the handshake timeout, the peer table and socket caps, and a slow
//! consumer that must not stall anyone else, and presence that must never cut anyone.

mod support;

use async_tungstenite::tungstenite::Message;
use futures_lite::{AsyncReadExt, FutureExt, StreamExt};
use serde_json::{Value, json};
use smol::Timer;
use std::time::{Duration, Instant};
use support::*;

const QUIET: Duration = Duration::from_millis(150);

/// `{"type":"call","to":"nobody","id":ID,"pad":"xx…"}` padded to exactly `len` bytes.
fn padded_call(id: u32, len: usize) -> String {
    let bare = format!(r#"{{"type":"call","to":"nobody","id":{id},"pad":""}}"#);
    let pad = "x".repeat(len - bare.len());
    let text = format!(r#"{{"type":"call","to":"nobody","id":{id},"pad":"{pad}"}}"#);
    assert_eq!(text.len(), len);
    text
}

/// Read from a raw socket until it is closed; how long after `since` that was.
async fn until_closed<S: futures_lite::AsyncRead + Unpin>(io: &mut S, since: Instant) -> Duration {
    let mut buf = [0u8; 256];
    let closed = async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    }
    .or(async {
        Timer::after(patience()).await;
        false
    })
    .await;
    assert!(closed, "socket still open after {:?}", patience());
    since.elapsed()
}

/// Read `c` to its end: the server answered an oversized message with `too_large` and
/// closed with 1009.
async fn closed_too_large(c: &mut Client) {
    let (closed, seen) = c.closed().await;
    assert_eq!(seen, vec![error(None, "too_large")]);
    assert_eq!(closed, Closed::Frame(1009, "message too large".into()));
}

/// The registered `c` sends `msg`, over the size limit: the server takes all of it (the
/// write completes), answers as [`closed_too_large`], the connection ends cleanly, and
/// `watcher` sees `c` go offline.
async fn oversized_ends_cleanly(c: &mut Client, msg: Message, watcher: &mut Client) {
    c.send_raw(msg)
        .await
        .expect("the whole oversized message is taken");
    closed_too_large(c).await;
    assert!(c.ws.next().await.is_none(), "a clean end, not a reset");
    assert_eq!(watcher.recv().await, peer(&c.name, "offline"));
}

#[test]
fn message_size_limit() {
    let server = start_server(&[]);
    run(async {
        let [mut watcher, mut a] = server.stations(["watcher", "a"]).await;
        watcher.recv().await;
        // Exactly 65,536 bytes is allowed, text or binary.
        a.send_text(&padded_call(1, 65_536)).await;
        assert_eq!(a.recv().await, error(Some(1), "peer_not_found"));
        a.send_raw(Message::binary(vec![b'{'; 65_536]))
            .await
            .unwrap();
        assert_bad_message(&a.recv().await, None);
        // One byte more: too_large, then close 1009, and the peer is gone. The server
        // buffers none of it, but reads and drops the rest, so the client's write completes
        // and the connection ends cleanly (closing over unread bytes would reset it).
        oversized_ends_cleanly(&mut a, Message::text(padded_call(2, 65_537)), &mut watcher).await;

        let (mut b, _) = server.register("b").await;
        watcher.recv().await;
        oversized_ends_cleanly(&mut b, Message::binary(vec![0; 300_000]), &mut watcher).await;
    });
    // The flag moves the limit; unregistered connections are held to it too.
    let server = start_server(&["--max-message", "1000"]);
    run(async {
        let mut c = server.client().await;
        c.send_text(&padded_call(3, 1000)).await;
        assert_eq!(c.recv().await, error(Some(3), "not_registered"));
        let _ = c.send_raw(Message::text(padded_call(4, 1001))).await;
        closed_too_large(&mut c).await;
    });
}

#[test]
fn rate_limit_refuses_then_closes() {
    let server = start_server(&["--rate", "5", "--burst", "5"]);
    run(async {
        let (mut a, _) = server.register("a").await; // one token spent
        for id in 1..=10 {
            a.send_text(&format!(r#"{{"type":"call","to":"nobody","id":{id}}}"#))
                .await;
        }
        let mut passed = 0;
        let mut first_refusal = None;
        for id in 1..=10 {
            let got = a.recv().await;
            if got == error(Some(id), "peer_not_found") {
                assert_eq!(passed, id - 1, "a refusal came before this pass: {got}");
                passed += 1;
            } else {
                assert_eq!(got, error(Some(id), "rate_limited"));
                first_refusal.get_or_insert_with(Instant::now);
            }
        }
        let first_refusal = first_refusal.unwrap();
        // Four tokens were left after register; at most one more trickled in.
        assert!((4..=5).contains(&passed), "{passed} passed");
        // Invalid messages are refused with their id as well.
        a.send_text(r#"{"type":"dance","id":77}"#).await;
        assert_eq!(a.recv().await, error(Some(77), "rate_limited"));

        // Slowing down (5/s is one token per 200 ms) is enough to be served again...
        Timer::after(Duration::from_millis(250)).await;
        a.refused(
            json!({"type": "call", "to": "nobody"}),
            11,
            "peer_not_found",
        )
        .await;

        // ...but a pause that short does not end the run of refusals: flooding on at ten
        // times the rate is closed 5 s after the first refusal.
        let started = Instant::now();
        let mut id = 100;
        let (closed, refused) = loop {
            id += 1;
            a.send_text(&format!(r#"{{"type":"call","to":"nobody","id":{id}}}"#))
                .await;
            match a.next().await {
                Some(Message::Text(t)) => {
                    let got: Value = serde_json::from_str(&t).unwrap();
                    assert!(
                        got == error(Some(id), "rate_limited")
                            || got == error(Some(id), "peer_not_found"),
                        "{got}"
                    );
                }
                Some(Message::Close(frame)) => break (frame, id),
                other => panic!("{other:?}"),
            }
            assert!(
                started.elapsed() < at_most(Duration::from_secs(5), Duration::from_secs(3)),
                "still open after {:?} of flooding",
                started.elapsed()
            );
            Timer::after(Duration::from_millis(20)).await;
        };
        let took = first_refusal.elapsed();
        let frame = closed.expect("close frame");
        assert_eq!(u16::from(frame.code), 1008);
        assert_eq!(frame.reason.as_str(), "rate limit");
        assert!(
            took >= Duration::from_millis(4900)
                && took < at_most(Duration::from_secs(5), Duration::from_millis(1500)),
            "closed after {took:?} ({refused} messages)"
        );
    });
}

#[test]
fn register_timeout_closes_4000() {
    let server = start_server(&["--register-timeout", "0.3"]);
    run(async {
        let started = Instant::now();
        let mut late = server.client().await;
        let (mut on_time, _) = server.register("on-time").await;
        // Other messages do not count as registering.
        late.send(json!({"type": "call", "to": "on-time", "id": 1}))
            .await;
        assert_eq!(late.recv().await, error(Some(1), "not_registered"));
        let (closed, seen) = late.closed().await;
        assert_eq!(closed, Closed::Frame(4000, "register timeout".into()));
        assert!(seen.is_empty(), "{seen:?}");
        assert!(started.elapsed() >= Duration::from_millis(290));
        // A registered connection is not subject to it.
        on_time.expect_silence(Duration::from_millis(400)).await;
        on_time
            .refused(json!({"type": "call", "to": "x"}), 2, "peer_not_found")
            .await;
    });
}

#[test]
fn silent_client_is_dropped_as_a_disconnect() {
    let server = start_server(&["--ping-interval", "0.2", "--idle-timeout", "1"]);
    run(async {
        let (mut a, mut b) = call_pair(&server, "a", "b").await;
        let (mut c, _) = server.register("c").await;
        a.recv().await; // c online
        // b's last word; then it stops reading: it answers no ping and sends nothing.
        // a and c keep reading, which answers the server's pings.
        let started = Instant::now();
        b.send(json!({"type": "signal", "to": "a", "data": "bye"}))
            .await;
        assert_eq!(
            a.recv().await,
            json!({"type": "signal", "from": "b", "data": "bye"})
        );
        let partner = async {
            assert_eq!(
                a.recv().await,
                json!({"type": "hangup", "from": "b", "reason": "disconnected"})
            );
            let took = started.elapsed();
            assert_eq!(a.recv().await, peer("b", "offline"));
            took
        };
        let observer = async {
            assert_eq!(c.recv().await, peer("a", "online"));
            assert_eq!(c.recv().await, peer("b", "offline"));
        };
        let (took, ()) = futures_lite::future::zip(partner, observer).await;
        assert!(
            took >= Duration::from_millis(1000)
                && took < at_most(Duration::from_secs(1), Duration::from_secs(2)),
            "dropped after {took:?}"
        );
        // Readers stay well past the idle timeout.
        futures_lite::future::zip(
            a.expect_silence(Duration::from_millis(1200)),
            c.expect_silence(Duration::from_millis(1200)),
        )
        .await;
        a.acked(json!({"type": "call", "to": "c"}), 3).await;
        // The silent one finds its connection gone, without a close code.
        let (closed, _) = b.closed().await;
        assert_eq!(closed, Closed::Dropped);
        let h = server.health().await;
        assert_eq!(
            (h["peers"].clone(), h["connections"].clone()),
            (json!(2), json!(2))
        );
    });
}

#[test]
fn handshake_timeout_closes_idle_sockets() {
    let server = start_server(&["--handshake-timeout", "1"]);
    run(async {
        use futures_lite::AsyncWriteExt;
        let since = Instant::now();
        // A TCP client that never starts TLS; one that sends no request head after TLS;
        // one that stops half way through its head. All three wait at once.
        let mut tcp = smol::net::TcpStream::connect(server.addr).await.unwrap();
        let mut quiet = server.tls().await;
        let mut half = server.tls().await;
        half.write_all(b"GET / HTTP/1.1\r\nHost: loc")
            .await
            .unwrap();
        half.flush().await.unwrap();
        use futures_lite::future::zip;
        let (tcp, (quiet, half)) = zip(
            until_closed(&mut tcp, since),
            zip(
                until_closed(&mut quiet, since),
                until_closed(&mut half, since),
            ),
        )
        .await;
        for took in [tcp, quiet, half] {
            assert!(
                took >= Duration::from_millis(1000)
                    && took < at_most(Duration::from_secs(1), Duration::from_secs(2)),
                "closed after {took:?}"
            );
        }
        // An upgraded, registered connection is not bound by it.
        let (mut a, _) = server.register("a").await;
        a.expect_silence(Duration::from_millis(500)).await;
        a.refused(json!({"type": "call", "to": "x"}), 1, "peer_not_found")
            .await;
    });
}

#[test]
fn full_table_refuses_the_65th_and_nobody_else_notices() {
    let server = start_server(&[]);
    run(async {
        let mut peers = Vec::new();
        for i in 0..64 {
            let (c, reg) = server.register(&format!("p{i}")).await;
            assert_eq!(reg["peers"].as_array().unwrap().len(), i);
            peers.push(c);
        }
        for (i, c) in peers.iter_mut().enumerate() {
            for j in i + 1..64 {
                assert_eq!(c.recv().await, peer(&format!("p{j}"), "online"));
            }
        }
        let mut extra = server.client().await;
        let reg = json!({"type": "register", "name": "p64"});
        extra.refused(reg.clone(), 1, "full").await;
        for c in peers.iter_mut() {
            c.expect_silence(Duration::ZERO).await;
        }
        peers[0].expect_silence(QUIET).await;
        for c in peers.iter_mut() {
            c.expect_silence(Duration::ZERO).await;
        }
        let h = server.health().await;
        assert_eq!(
            (h["peers"].clone(), h["connections"].clone()),
            (json!(64), json!(65))
        );
        // The others still call each other.
        let got = peers[0]
            .request(json!({"type": "call", "to": "p63"}), 2)
            .await;
        assert_eq!(got, json!({"type": "ack", "id": 2}));
        assert_eq!(
            peers[63].recv_type("call").await,
            json!({"type": "call", "from": "p0"})
        );
        // When one leaves, the refused connection gets in.
        peers.remove(10).close().await;
        let reg = extra.request(reg, 3).await;
        assert_eq!(reg["type"], "registered");
        assert_eq!(reg["peers"].as_array().unwrap().len(), 63);
    });
}

#[test]
fn socket_cap_refuses_extra_sockets_before_tls() {
    // max-peers 2: 18 sockets in all.
    let server = start_server(&["--max-peers", "2"]);
    run(async {
        let [mut a, mut b] = server.stations(["a", "b"]).await;
        a.recv().await;
        let mut idle = Vec::new();
        for _ in 0..16 {
            idle.push(smol::net::TcpStream::connect(server.addr).await.unwrap());
        }
        // The 19th and 20th sockets are closed at once (the handshake timeout is 10 s).
        for _ in 0..2 {
            let since = Instant::now();
            let mut extra = smol::net::TcpStream::connect(server.addr).await.unwrap();
            let took = until_closed(&mut extra, since).await;
            // At most half the handshake timeout, however slow the machine, so "at once"
            // stays apart from "after the timeout".
            let bound = at_most(Duration::ZERO, Duration::from_secs(1)).min(Duration::from_secs(5));
            assert!(took < bound, "{took:?}");
        }
        // Registered peers notice nothing and work as before.
        a.expect_silence(QUIET).await;
        b.expect_silence(Duration::ZERO).await;
        a.acked(json!({"type": "call", "to": "b"}), 1).await;
        assert_eq!(b.recv().await, json!({"type": "call", "from": "a"}));
        // Freed sockets make room again.
        drop(idle);
        let until = Instant::now() + patience();
        loop {
            if server.try_tls().await.is_ok() {
                break;
            }
            assert!(
                Instant::now() < until,
                "no room after the idle sockets left"
            );
            Timer::after(Duration::from_millis(20)).await;
        }
        assert_eq!(server.health().await["peers"], 2);
    });
}

#[test]
fn slow_consumer_is_cut_and_the_sender_is_not() {
    let server = start_server(&["--outbox", "8", "--rate", "100000", "--burst", "100000"]);
    run(async {
        let (mut a, mut b) = call_pair(&server, "a", "b").await;
        let (mut c, _) = server.register("c").await;
        a.recv().await;
        b.recv().await;
        // b stops reading; a signals at it as fast as the server answers.
        let pad = "s".repeat(32 * 1024);
        let started = Instant::now();
        let mut sent = 0u32;
        let mut others = Vec::new();
        'flood: loop {
            assert!(sent < 5000, "b was never cut");
            let id = sent;
            a.send(json!({"type": "signal", "to": "b", "id": id, "data": {"n": id, "pad": pad}}))
                .await;
            loop {
                let got = a.recv().await;
                if got["id"] == json!(id) {
                    if got == error(Some(id), "no_call") {
                        break 'flood;
                    }
                    assert_eq!(got, json!({"type": "ack", "id": id}));
                    sent += 1;
                    break;
                }
                others.push(got);
            }
        }
        assert!(started.elapsed() < patience(), "the sender was held up");
        assert_eq!(
            others,
            vec![
                json!({"type": "hangup", "from": "b", "reason": "disconnected"}),
                peer("b", "offline")
            ]
        );
        assert_eq!(c.recv().await, peer("a", "online"));
        assert_eq!(c.recv().await, peer("b", "offline"));
        // The sender carries on.
        a.acked(json!({"type": "call", "to": "c"}), 99_999).await;
        // b got an unbroken prefix of the signals, then the end.
        let (closed, seen) = b.closed().await;
        assert!(
            closed == Closed::Frame(1008, "slow consumer".into()) || closed == Closed::Dropped,
            "{closed:?}"
        );
        assert!(
            (seen.len() as u32) < sent,
            "{} of {sent} delivered",
            seen.len()
        );
        for (n, m) in seen.iter().enumerate() {
            assert_eq!(
                (&m["type"], &m["from"], &m["data"]["n"]),
                (&json!("signal"), &json!("a"), &json!(n))
            );
        }
    });
}

#[test]
fn own_replies_never_cut_a_peer() {
    let server = start_server(&["--outbox", "4", "--rate", "100000", "--burst", "100000"]);
    run(async {
        let (a, _) = server.register("a").await;
        let (mut tx, mut rx) = a.ws.split();
        const N: u32 = 3000;
        let send = async {
            for id in 0..N {
                let text = format!(r#"{{"type":"call","to":"nobody","id":{id}}}"#);
                tx.send(Message::text(text)).await.unwrap();
            }
        };
        let read = async {
            // Start reading late, so the server's outbox for us fills up first.
            Timer::after(Duration::from_millis(300)).await;
            let mut id = 0;
            while id < N {
                match rx.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let got: Value = serde_json::from_str(&t).unwrap();
                        assert_eq!(got, error(Some(id), "peer_not_found"));
                        id += 1;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    other => panic!("after {id} replies: {other:?}"),
                }
            }
        };
        futures_lite::future::zip(send, read)
            .or(async {
                Timer::after(patience()).await;
                panic!("replies stalled");
            })
            .await;
        assert_eq!(server.health().await["peers"], 1);
    });
}

#[test]
fn presence_that_does_not_fit_is_resent_whole_and_nobody_is_cut() {
    let server = start_server(&["--outbox", "8", "--rate", "100000", "--burst", "100000"]);
    run(async {
        let [mut watcher, mut a, mut b] = server.stations(["watcher", "a", "b"]).await;
        // The watcher stops reading; a and b call and hang up until the presence updates
        // (4 a round) have filled its socket buffers and half its outbox.
        let mut id = 0;
        while !server.log().contains("presence dropped") {
            assert!(id < 40_000, "the watcher's outbox never filled");
            for _ in 0..20 {
                ring(&mut a, &mut b, id).await;
                let ack = a
                    .request(json!({"type": "hangup", "to": "b"}), id + 1)
                    .await;
                assert_eq!(ack, json!({"type": "ack", "id": id + 1}));
                b.recv_type("hangup").await;
                id += 2;
            }
        }
        // Changes the watcher cannot be told one by one: b leaves, c comes.
        b.close().await;
        let (_c, _) = server.register("c").await;
        // Reading again, it gets what was queued, then the whole list as it was when sent
        // (the kernel may let a list out before c registered, then c's update follows):
        // applied in order, what it was sent ends up as the list as it is now.
        let (mut updates, mut lists) = (0, 0);
        let mut list = std::collections::BTreeMap::new();
        loop {
            let m = watcher.recv().await;
            match m["type"].as_str() {
                Some("peers") => {
                    lists += 1;
                    list.clear();
                    for p in m["peers"].as_array().unwrap() {
                        list.insert(p["name"].to_string(), p["status"].to_string());
                    }
                }
                Some("peer") if m["status"] == "offline" => {
                    list.remove(&m["name"].to_string());
                    updates += 1;
                }
                Some("peer") => {
                    list.insert(m["name"].to_string(), m["status"].to_string());
                    updates += 1;
                }
                _ => panic!("{m}"),
            }
            let now: Vec<_> = list.iter().map(|(k, v)| format!("{k}={v}")).collect();
            if lists > 0 && now == [r#""a"="online""#, r#""c"="online""#] {
                break;
            }
        }
        assert!(lists > 0, "no list after {updates} updates");
        // ...and nothing older after it: the next message is the next change.
        let (_d, _) = server.register("d").await;
        assert_eq!(watcher.recv().await, peer("d", "online"));
        assert_eq!(server.health().await["peers"], 4);
    });
}

#[test]
fn a_registration_storm_cuts_no_one_and_every_list_converges() {
    const N: usize = 24;
    let n = N.to_string();
    // All N connect from 127.0.0.1 before any registers.
    let server = start_server(&["--outbox", "4", "--max-peers", &n, "--max-per-ip", &n]);
    run(async {
        // Everyone connected first, then every register sent at once, as after a restart.
        let mut clients = Vec::new();
        for _ in 0..N {
            clients.push(server.client().await);
        }
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(json!({"type": "register", "name": format!("t{i}")}))
                .await;
        }
        // Each one's list, built only from what it was sent, ends up with everyone else.
        for (i, c) in clients.iter_mut().enumerate() {
            let mut list = std::collections::BTreeMap::new();
            while list.len() < N - 1 {
                let m = c.recv().await;
                let set = |list: &mut std::collections::BTreeMap<_, _>, peers: &Value| {
                    list.clear();
                    for p in peers.as_array().unwrap() {
                        list.insert(p["name"].to_string(), p["status"].to_string());
                    }
                };
                match m["type"].as_str().unwrap() {
                    "registered" | "peers" => set(&mut list, &m["peers"]),
                    "peer" if m["status"] == "offline" => {
                        list.remove(&m["name"].to_string());
                    }
                    "peer" => {
                        list.insert(m["name"].to_string(), m["status"].to_string());
                    }
                    _ => panic!("t{i}: {m}"),
                }
            }
            assert!(!list.contains_key(&format!("\"t{i}\"")));
            assert!(list.values().all(|s| s == "\"online\""), "t{i}: {list:?}");
        }
        let health = server.health().await;
        assert_eq!(
            (health["peers"].clone(), health["connections"].clone()),
            (json!(N), json!(N))
        );
    });
}
