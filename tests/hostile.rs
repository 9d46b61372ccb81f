//! A hostile device on the LAN, against the real binary over real TLS: the memory budget
//! under stalled receivers, floods of pings and of maximum-size messages, strict input,
//! the close handshake, access-key guessing and secrets in the log. Time bounds are
//! generous; figures belong in BENCHMARKS.md, not here.

mod support;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use serde_json::{Value, json};
use smol::Timer;
use std::time::{Duration, Instant};
use support::{Closed, Server, assert_bad_message, call_pair, error, patience, run, start_server};

/// Half of the unit's `MemoryMax=64M`.
const RSS_BUDGET_KB: u64 = 32 * 1024;

/// A signal whose whole message is just under the default 64 KiB limit.
fn big_signal(to: &str) -> String {
    let pad = "x".repeat(65_536 - 100);
    json!({"type": "signal", "to": to, "data": {"pad": pad}}).to_string()
}

#[test]
fn stalled_receivers_and_flooding_senders_stay_within_the_memory_budget() {
    let server = start_server(&[]);
    run(async {
        let mut senders = Vec::new();
        let mut stalled = Vec::new();
        for i in 0..32 {
            let (a, b) = call_pair(&server, &format!("send{i}"), &format!("stall{i}")).await;
            senders.push(a);
            stalled.push(b); // never read again
        }
        let rest_kb = server.status_kb("VmRSS");
        let ex = smol::LocalExecutor::new();
        let until = Instant::now() + Duration::from_secs(8);
        let mut floods = Vec::new();
        for (i, a) in senders.into_iter().enumerate() {
            let (mut tx, mut rx) = a.ws.split();
            let text = big_signal(&format!("stall{i}"));
            // Answers (no_call, rate_limited) are read and dropped so the sender never stalls.
            ex.spawn(async move { while let Some(Ok(_)) = rx.next().await {} })
                .detach();
            floods.push(ex.spawn(async move {
                while Instant::now() < until {
                    if tx.send(Message::text(text.clone())).await.is_err() {
                        break;
                    }
                    futures_lite::future::yield_now().await;
                }
            }));
        }
        ex.run(async {
            // Meanwhile the appliance keeps answering, and once the stalled receivers are
            // cut, a new pair calls and relays while the senders still flood.
            server
                .wait_health(|h| h["peers"].as_u64().is_some_and(|p| p <= 62))
                .await;
            let (mut a, mut b) = call_pair(&server, "fresh-a", "fresh-b").await;
            a.send(json!({"type": "signal", "to": "fresh-b", "data": {"n": 1}}))
                .await;
            assert_eq!(
                b.recv_type("signal").await,
                json!({"type": "signal", "from": "fresh-a", "data": {"n": 1}})
            );
            for f in floods {
                f.await;
            }
        })
        .await;
        let peak_kb = server.status_kb("VmHWM");
        eprintln!("RSS at rest with 64 peers {rest_kb} kB, peak under the flood {peak_kb} kB");
        assert!(
            peak_kb <= RSS_BUDGET_KB,
            "peak RSS {peak_kb} kB over the {RSS_BUDGET_KB} kB budget"
        );
        assert!(server.log().contains("SlowConsumer"), "no receiver was cut");
        drop(stalled);
        server.wait_health(|h| h["status"] == "ok").await;
    });
}

/// Send `msg` in a loop until the server closes; returns the close and how long it took.
async fn flood_until_closed(client: support::Client, msg: Message) -> (Closed, Duration) {
    let (mut tx, mut rx) = client.ws.split();
    let started = Instant::now();
    let flood = async {
        loop {
            if tx.send(msg.clone()).await.is_err() {
                // The server closed: wait for the reader to see the frame.
                Timer::after(Duration::from_secs(30)).await;
            }
            futures_lite::future::yield_now().await;
        }
    };
    let watch = async {
        loop {
            match rx.next().await {
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return Closed::Frame(code.into(), reason.to_string());
                }
                Some(Ok(_)) => {}
                _ => return Closed::Dropped,
            }
        }
    };
    let end = watch
        .or(flood)
        .or(async {
            Timer::after(patience() * 4).await;
            panic!("flood never cut");
        })
        .await;
    (end, started.elapsed())
}

#[test]
fn a_ping_flood_is_cut_like_any_other_flood() {
    let server = start_server(&[]);
    run(async {
        let (bystander_a, mut bystander_b) = call_pair(&server, "a", "b").await;
        let (flooder, _) = server.register("pinger").await;
        let (end, took) = flood_until_closed(flooder, Message::Ping(vec![7; 8].into())).await;
        eprintln!("ping flood cut after {took:?}");
        assert_eq!(end, Closed::Frame(1008, "rate limit".into()));
        assert!(took >= Duration::from_secs(4), "cut after {took:?}");
        // The call next to it kept working.
        let mut a = bystander_a;
        a.send(json!({"type": "signal", "to": "b", "data": 1}))
            .await;
        assert_eq!(bystander_b.recv_type("signal").await["data"], 1);
    });
}

#[test]
fn a_flood_of_maximum_size_messages_is_cut_and_refused_by_id() {
    let server = start_server(&[]);
    run(async {
        let (mut flooder, _) = server.register("flood").await;
        // A refused message still carries its id, found without decoding the message.
        let text = format!(
            r#"{{"type":"signal","to":"nobody","data":"{}","id":4242}}"#,
            "y".repeat(60_000)
        );
        for _ in 0..250 {
            flooder.send_text(&text).await;
        }
        let mut refused = 0;
        while refused == 0 {
            let m = flooder.recv().await;
            if m["code"] == "rate_limited" {
                assert_eq!(m, error(Some(4242), "rate_limited"));
                refused += 1;
            }
        }
        let (end, took) = flood_until_closed(flooder, Message::text(text)).await;
        eprintln!("message flood cut after {took:?}");
        assert_eq!(end, Closed::Frame(1008, "rate limit".into()));
        server.wait_health(|h| h["peers"] == 0).await;
    });
}

#[test]
fn hangup_reasons_with_control_characters_are_refused_and_the_call_stays_up() {
    let server = start_server(&[]);
    run(async {
        let (mut a, mut b) = call_pair(&server, "kitchen", "door").await;
        for (i, reason) in ["x\n<0>EMERG: owned", "\r", "\u{1b}[2J", "\u{7f}", "\u{85}"]
            .iter()
            .enumerate()
        {
            let id = 10 + i as u32;
            let got = a
                .request(
                    json!({"type": "hangup", "to": "door", "reason": reason}),
                    id,
                )
                .await;
            assert_bad_message(&got, Some(id));
        }
        // Still in the call: signals flow, and a clean hang-up ends it.
        a.send(json!({"type": "signal", "to": "door", "data": "\u{1b}[31m\n<0>EMERG: x"}))
            .await;
        assert_eq!(b.recv_type("signal").await["from"], "kitchen");
        a.acked(
            json!({"type": "hangup", "to": "door", "reason": "ended"}),
            20,
        )
        .await;
        let log = server.log();
        for line in log.lines() {
            assert!(
                !line.chars().any(char::is_control),
                "raw control character in a log line: {line:?}"
            );
            assert!(!line.starts_with("<0>"), "forged entry: {line:?}");
        }
    });
}

#[test]
fn look_alike_names_are_refused() {
    let server = start_server(&[]);
    run(async {
        let (_door, _) = server.register("door").await;
        for name in [
            "door\u{200b}",
            "\u{202e}rood",
            "\u{feff}door",
            "\u{3164}",
            "do\u{ad}or",
        ] {
            let mut c = server.client().await;
            let got = c
                .request(json!({"type": "register", "name": name}), 1)
                .await;
            assert_eq!(got, error(Some(1), "name_invalid"), "{name:?}");
        }
        for name in ["Door", "DOOR", "door"] {
            let mut c = server.client().await;
            let got = c
                .request(json!({"type": "register", "name": name}), 2)
                .await;
            assert_eq!(got, error(Some(2), "name_taken"), "{name:?}");
        }
        // The same name composed differently is the same name.
        let (_cafe, _) = server.register("caf\u{e9}").await;
        let mut c = server.client().await;
        c.refused(
            json!({"type": "register", "name": "Cafe\u{301}"}),
            3,
            "name_taken",
        )
        .await;
        // Once `door` is gone, `Door` registers and is shown as typed.
        _door.close().await;
        server.wait_health(|h| h["peers"] == 1).await;
        let (_, reply) = server.register("Door").await;
        assert_eq!(reply["name"], "Door");
    });
}

/// Upgrade a raw TLS connection to a WebSocket without any client library.
async fn raw_websocket(server: &Server) -> async_native_tls::TlsStream<smol::net::TcpStream> {
    let mut tls = server.tls().await;
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.addr.port()
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let (status, _) = support::read_head(&mut tls).await;
    assert_eq!(status, 101);
    tls
}

/// Send one masked close frame with this raw payload; returns the payload of the close
/// frame the server answers with (`None` if the connection ended without one).
async fn close_with(server: &Server, payload: &[u8]) -> Option<Vec<u8>> {
    let mut tls = raw_websocket(server).await;
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut frame = vec![0x88, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tls.write_all(&frame).await.unwrap();
    tls.flush().await.unwrap();
    let mut got = Vec::new();
    let _ = tls
        .read_to_end(&mut got)
        .or(async {
            Timer::after(patience()).await;
            Ok(0)
        })
        .await;
    // The first server frame (unmasked, short): opcode byte, length, payload.
    (got.len() >= 2 && got[0] == 0x88).then(|| got[2..2 + got[1] as usize].to_vec())
}

#[test]
fn a_client_close_is_answered_with_a_close_frame() {
    let server = start_server(&[]);
    run(async {
        // Registered: the close frame comes back with the client's code, not a dropped
        // connection (1006 on the client's side).
        let (mut c, _) = server.register("leaving").await;
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        c.send_raw(Message::Close(Some(frame))).await.unwrap();
        assert_eq!(c.closed().await.0, Closed::Frame(1000, "bye".into()));
        // Unregistered, an application code: echoed.
        let code = close_with(&server, &4321u16.to_be_bytes()).await;
        assert_eq!(code.as_deref(), Some(&4321u16.to_be_bytes()[..]));
        let code = close_with(&server, &1001u16.to_be_bytes()).await;
        assert_eq!(code.as_deref(), Some(&1001u16.to_be_bytes()[..]));
        server.wait_health(|h| h["peers"] == 0).await;
    });
}

#[test]
fn close_codes_a_client_may_not_send_are_answered_with_1002() {
    let server = start_server(&[]);
    run(async {
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let got = close_with(&server, &code.to_be_bytes()).await;
            let answered = got.as_ref().map(|p| u16::from_be_bytes([p[0], p[1]]));
            assert_eq!(answered, Some(1002), "close code {code}");
        }
        // A payload of one byte cannot hold a code.
        let got = close_with(&server, &[3]).await;
        let answered = got.as_ref().map(|p| u16::from_be_bytes([p[0], p[1]]));
        assert_eq!(answered, Some(1002), "one-byte close payload");
        // The server still serves.
        let (_c, _) = server.register("after").await;
    });
}

#[test]
fn the_third_wrong_key_closes_the_connection_and_guesses_are_counted_not_logged() {
    let key = "3b7f1c9e-wall-unit-key-81d2";
    let server = start_server(&["--access-key", key]);
    run(async {
        let mut c = server.client().await;
        for (id, guess) in [(1, "guess-one"), (2, "guess-two")] {
            c.refused(
                json!({"type": "register", "name": "m", "key": guess}),
                id,
                "unauthorized",
            )
            .await;
        }
        c.send(json!({"type": "register", "name": "m", "key": "guess-three", "id": 3}))
            .await;
        let (end, seen) = c.closed().await;
        assert_eq!(seen, vec![error(Some(3), "unauthorized")]);
        assert_eq!(end, Closed::Frame(1008, "unauthorized".into()));
        // More guesses from new connections: counted, one warning line per address a minute.
        for _ in 0..4 {
            let mut c = server.client().await;
            c.refused(
                json!({"type": "register", "name": "m", "key": "nope"}),
                9,
                "unauthorized",
            )
            .await;
        }
        let (_ok, _) = {
            let mut c = server.client().await;
            let got = c
                .request(json!({"type": "register", "name": "m", "key": key}), 1)
                .await;
            assert_eq!(got["type"], "registered");
            (c, got)
        };
        let log = server.log();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("wrong access key from 127.0.0.1"))
            .collect();
        assert_eq!(warnings.len(), 1, "{log}");
        assert!(warnings[0].contains("WARN"), "{log}");
        for secret in [key, "guess-one", "guess-two", "guess-three", "nope"] {
            assert!(!log.contains(secret), "{secret} in the log");
        }
    });
}

#[test]
fn no_secret_reaches_the_log_even_at_trace() {
    let key = "c0ffee-9a8b-7c6d-access";
    let server = start_server(&["--access-key", key, "--log-level", "trace"]);
    run(async {
        let mut c = server.client().await;
        let reg = c
            .request(json!({"type": "register", "name": "den", "key": key}), 1)
            .await;
        let token = reg["token"].as_str().unwrap().to_string();
        // Resume on a second connection with the token.
        let mut again = server.client().await;
        let back = again
            .request(
                json!({"type": "register", "name": "den", "key": key, "token": token}),
                2,
            )
            .await;
        assert_eq!(back["type"], "registered");
        let (_b, _) = {
            let mut b = server.client().await;
            let r = b
                .request(json!({"type": "register", "name": "hall", "key": key}), 3)
                .await;
            (b, r)
        };
        again
            .send(json!({"type": "call", "to": "hall", "id": 4}))
            .await;
        let _: Value = again.recv_type("ack").await;
        server.wait_log("den -> call hall");
        let log = server.log();
        assert!(!log.contains(key), "access key in the log");
        assert!(!log.contains(&token), "resume token in the log");
    });
}
