//! Soak: 64 concurrent clients (32 pairs) run call cycles against one server: connect,
//! register, call, accept, 20 sequence-numbered signals each way, hangup, disconnect.
//! Every signal arrives exactly once and in order; afterwards `/healthz` reports nobody,
//! and the server's RSS is no more than 10 % (times `slack()`) above its value after the first 10 % of
//! cycles (no leak).
//!
//! 2,000 cycles by default; `INTERCOMD_SOAK_CYCLES=50000` for the long version.

mod support;

use serde_json::json;
use std::cell::Cell;
use std::time::Instant;
use support::{Client, Server, call_pair, run, slack, start_server};

/// Concurrent pairs: 64 clients.
const PAIRS: usize = 32;
/// Signals each side sends per call.
const SIGNALS: u64 = 20;

fn cycles() -> usize {
    std::env::var("INTERCOMD_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Every client handshake would otherwise load the system's whole CA bundle (native-tls
/// does, per connection), costing the client far more than the server's side of a cycle.
/// Only the test CA is trusted anyway. Each test calls this first thing.
fn trust_only_the_test_ca() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: runs before any test of this binary has started a server, a client or
    // anything else that reads the environment; the other test waits on the `Once`.
    ONCE.call_once(|| unsafe { std::env::set_var("SSL_CERT_FILE", "/dev/null") });
}

/// Read `SIGNALS` signals from `from`, skipping presence updates; each exactly once, in order.
async fn expect_signals(c: &mut Client, from: &str) {
    for seq in 0..SIGNALS {
        let m = c.recv_type("signal").await;
        assert_eq!(m["from"], from, "{}: {m}", c.name);
        assert_eq!(m["data"]["seq"], seq, "{}: {m}", c.name);
    }
}

async fn send_signals(c: &mut Client, to: &str) {
    for seq in 0..SIGNALS {
        c.send(json!({"type": "signal", "to": to, "data": {"seq": seq,
            "candidate": "candidate:842163049 1 udp 1677729535 192.168.1.20 61000 typ srflx"}}))
            .await;
    }
}

/// Close the WebSocket politely and wait for the server's side of the close.
async fn bye(mut c: Client) {
    c.ws.close(None).await.expect("send close");
    c.closed().await;
}

/// One full cycle for pair `p`, cycle `n`.
async fn cycle(server: &Server, p: usize, n: usize) {
    let (an, bn) = (format!("soak-{p}a{n}"), format!("soak-{p}b{n}"));
    let (mut a, mut b) = call_pair(server, &an, &bn).await;
    send_signals(&mut a, &bn).await;
    send_signals(&mut b, &an).await;
    expect_signals(&mut b, &an).await;
    expect_signals(&mut a, &bn).await;
    a.acked(json!({"type": "hangup", "to": bn}), 3).await;
    // Nothing but presence may come between the last signal and the hangup: no duplicates.
    assert_eq!(
        b.recv_type("hangup").await,
        json!({"type": "hangup", "from": an, "reason": "ended"})
    );
    bye(a).await;
    bye(b).await;
}

#[test]
fn soak_call_cycles_leak_nothing() {
    trust_only_the_test_ca();
    let total = cycles();
    // 64 clients at once, all from 127.0.0.1.
    let server = start_server(&["--rate", "100000", "--burst", "100000", "--max-per-ip=64"]);
    let started = Instant::now();
    let next = Cell::new(0usize);
    let done = Cell::new(0usize);
    let rss_early = Cell::new(0u64);
    run(async {
        let ex = smol::LocalExecutor::new();
        let workers: Vec<_> = (0..PAIRS)
            .map(|p| {
                let (server, next, done, rss_early) = (&server, &next, &done, &rss_early);
                ex.spawn(async move {
                    loop {
                        let n = next.get();
                        if n >= total {
                            return;
                        }
                        next.set(n + 1);
                        cycle(server, p, n).await;
                        done.set(done.get() + 1);
                        if done.get() == total.div_ceil(10) {
                            rss_early.set(server.status_kb("VmRSS"));
                        }
                    }
                })
            })
            .collect();
        ex.run(async {
            for w in workers {
                w.await;
            }
        })
        .await;
        let h = server
            .wait_health(|h| h["peers"] == 0 && h["connections"] == 0)
            .await;
        assert_eq!(h["status"], "ok");
    });
    assert_eq!(done.get(), total);
    let (early, end) = (rss_early.get(), server.status_kb("VmRSS"));
    eprintln!(
        "soak: {total} cycles of 64 clients in {:.1?}; RSS {early} kB after 10 %, {end} kB at the end, \
         peak {} kB",
        started.elapsed(),
        server.status_kb("VmHWM")
    );
    assert!(
        end * 10 <= early * (10 + u64::from(slack())),
        "RSS grew from {early} kB to {end} kB over {total} cycles"
    );
}

/// Calling and cancelling as fast as the rate limit allows must not pile up ring timers:
/// a timer whose ring ended is cancelled, so memory stays flat (it used to keep every
/// timer alive for the whole `--ring-timeout`: some 470 bytes per call).
#[test]
fn call_and_cancel_churn_keeps_memory_flat() {
    trust_only_the_test_ca();
    let server = start_server(&[
        "--rate",
        "100000",
        "--burst",
        "100000",
        "--log-level",
        "info",
    ]);
    let calls = 10_000u32;
    run(async {
        let [mut a, b] = server.stations(["caller", "callee"]).await;
        // The callee only listens, on a thread of its own, and counts the rings; the
        // caller stays within 8 rings of it. Without that window a callee thread the OS
        // leaves waiting falls an outbox behind and is cut as a slow consumer, which is
        // another test: this one is about the server's memory under churn.
        let rung = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let heard = rung.clone();
        let (_b_tx, mut b_rx) = b.ws.split();
        let listener = std::thread::spawn(move || {
            smol::block_on(async {
                use futures_lite::StreamExt;
                while let Some(Ok(m)) = b_rx.next().await {
                    if m.to_text()
                        .is_ok_and(|t| t.starts_with(r#"{"type":"call""#))
                    {
                        heard.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        });
        let mut early = 0;
        for i in 0..calls {
            while i > rung.load(std::sync::atomic::Ordering::Relaxed) + 8 {
                assert!(!listener.is_finished(), "callee was disconnected");
                smol::Timer::after(std::time::Duration::from_micros(200)).await;
            }
            let ack = a
                .request(json!({"type": "call", "to": "callee"}), 2 * i)
                .await;
            assert_eq!(ack["type"], "ack", "{ack}");
            let ack = a
                .request(
                    json!({"type": "hangup", "to": "callee", "reason": "cancel"}),
                    2 * i + 1,
                )
                .await;
            assert_eq!(ack["type"], "ack", "{ack}");
            if i == calls / 10 {
                early = server.status_kb("RssAnon");
            }
        }
        assert!(!listener.is_finished(), "callee was disconnected");
        let end = server.status_kb("RssAnon");
        eprintln!("churn: {calls} calls, anonymous RSS {early} kB after 10 %, {end} kB at the end");
        assert!(
            end <= early + 256 * u64::from(slack()),
            "anonymous memory grew from {early} kB to {end} kB over {calls} calls"
        );
    });
}
