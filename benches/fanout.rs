//! Fan-out benchmark: how long one message to many stations takes. Starts the server
//! (`INTERCOMD_BIN`, or the one cargo built) on 127.0.0.1 with 64 stations: one sender
//! and 63 others, all in group `all`, all declaring `page`. Then, round after round:
//! a `page` to `*` and the time until the **last** of the 63 listeners has received its
//! `page`; the pager ends it and waits until all 63 heard the `hangup`. The same for a
//! group `call` to `all` (until the last member's `call`), cancelled by the caller.
//! Prints p50/p90/max over the rounds and one JSON line. Nothing is asserted. Rounds
//! start a second apart: one station may start five rings or pages in a row, then one a
//! second.
//!
//!   cargo bench --bench fanout                 100 rounds each (about 3.5 minutes)
//!   cargo bench --bench fanout -- --quick      20 rounds each (CI)
//!
//! The listeners run on two threads of their own; where `taskset` exists the server is
//! pinned to CPU 0 and this process to CPU 1.

#[path = "../tests/support/mod.rs"]
mod support;

use futures_lite::StreamExt;
use serde_json::{Value, json};
use smol::LocalExecutor;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::{Client, Launch, Server};

/// Stations besides the sender.
const LISTENERS: usize = 63;
/// Threads the listeners are spread over.
const THREADS: usize = 2;
/// Between the starts of two rounds: the rate at which one station may keep starting
/// group rings and pages.
const ROUND_GAP: Duration = Duration::from_secs(1);

/// What a listener saw, and when.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    Page,
    Call,
    Hangup,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var_os("INTERCOMD_BENCH_QUICK").is_some_and(|v| v != "0");
    let rounds = if quick { 20 } else { 100 };
    support::watchdog(Duration::from_secs(if quick { 240 } else { 900 }), "fanout");
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("SSL_CERT_FILE", "/dev/null") };
    let pinned = support::pin_self();
    let bin = support::binary();
    let server = Launch::new()
        .bench(pinned)
        .args([
            "--rate",
            "1000000",
            "--burst",
            "1000000",
            "--max-per-ip",
            "64",
            "--max-peers",
            "64",
        ])
        .spawn();
    eprintln!(
        "fanout: {} ({rounds} rounds, {LISTENERS} listeners, server {})",
        bin.display(),
        if pinned { "on CPU 0" } else { "not pinned" }
    );

    let (mut sender, listeners) = smol::block_on(async {
        let sender = station(&server, "sender").await;
        let mut all = Vec::new();
        for i in 0..LISTENERS {
            all.push(station(&server, &format!("listener{i}")).await);
        }
        (sender, all)
    });

    let (tx, rx) = mpsc::channel::<(Seen, Instant)>();
    let mut chunks: Vec<Vec<Client>> = (0..THREADS).map(|_| Vec::new()).collect();
    for (i, c) in listeners.into_iter().enumerate() {
        chunks[i % THREADS].push(c);
    }
    for chunk in chunks {
        let tx = tx.clone();
        std::thread::spawn(move || listen(chunk, tx));
    }

    let page = run_rounds(&mut sender, &rx, rounds, Seen::Page);
    let ring = run_rounds(&mut sender, &rx, rounds, Seen::Call);

    println!();
    println!("fanout: {}", bin.display());
    println!("| from the sender's message to the last of {LISTENERS} stations | p50 | p90 | max |");
    println!("|---|---:|---:|---:|");
    for (what, f) in [("`page` to `*`", &page), ("group `call`", &ring)] {
        println!(
            "| {what} | {} ms | {} ms | {} ms |",
            f["p50"], f["p90"], f["max"]
        );
    }
    println!(
        "{}",
        json!({
            "bench": "fanout",
            "quick": quick,
            "binary": bin.display().to_string(),
            "pinned": pinned,
            "listeners": LISTENERS,
            "rounds": rounds,
            "page_to_last_ms": page,
            "call_to_last_ms": ring,
        })
    );
}

/// Register `name` in group `all`, declaring pages and preview.
async fn station(server: &Server, name: &str) -> Client {
    let mut c = server.client().await;
    c.name = name.to_string();
    let msg = json!({"type": "register", "name": name, "groups": ["all"],
                     "features": ["page", "preview"]});
    let reply = c.request(msg, 1).await;
    assert_eq!(reply["type"], "registered", "{reply}");
    c
}

/// Read every listener's messages on this thread, reporting pages, calls and hangups.
fn listen(clients: Vec<Client>, tx: mpsc::Sender<(Seen, Instant)>) {
    let ex = LocalExecutor::new();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            let tx = tx.clone();
            ex.spawn(async move {
                while let Some(Ok(m)) = c.ws.next().await {
                    let at = Instant::now();
                    let Ok(text) = m.to_text() else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(text) else {
                        continue;
                    };
                    let seen = match v["type"].as_str() {
                        Some("page") => Seen::Page,
                        Some("call") => Seen::Call,
                        Some("hangup") => Seen::Hangup,
                        _ => continue,
                    };
                    if tx.send((seen, at)).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    smol::block_on(ex.run(async {
        for t in tasks {
            t.await;
        }
    }));
}

/// `rounds` of: start (`page` or group `call`), time until every listener has it, end
/// it and wait until every listener heard the `hangup`. Milliseconds, summarised.
fn run_rounds(
    sender: &mut Client,
    rx: &mpsc::Receiver<(Seen, Instant)>,
    rounds: u32,
    kind: Seen,
) -> Value {
    let mut took = Vec::new();
    let mut last_start = Instant::now() - ROUND_GAP;
    for round in 0..rounds {
        let id = 10 + round * 2;
        std::thread::sleep(ROUND_GAP.saturating_sub(last_start.elapsed()));
        last_start = Instant::now();
        let start = match kind {
            Seen::Page => json!({"type": "page", "group": "*", "id": id}),
            _ => json!({"type": "call", "group": "all", "id": id}),
        };
        let sent = Instant::now();
        smol::block_on(sender.send(start));
        let last = wait_for(rx, kind);
        took.push(last.duration_since(sent));
        let reply = smol::block_on(sender.recv_type(match kind {
            Seen::Page => "paging",
            _ => "ringing",
        }));
        assert_eq!(
            reply["to"].as_array().map(Vec::len),
            Some(LISTENERS),
            "{reply}"
        );
        let group = if kind == Seen::Page { "*" } else { "all" };
        let end = json!({"type": "hangup", "group": group});
        let ack = smol::block_on(sender.request(end, id + 1));
        assert_eq!(ack["type"], "ack", "{ack}");
        wait_for(rx, Seen::Hangup);
    }
    took.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    let pick =
        |q: f64| ms(took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1]);
    json!({"p50": pick(0.5), "p90": pick(0.9), "max": pick(1.0), "n": took.len()})
}

/// Wait until all listeners reported `kind`; the latest arrival.
fn wait_for(rx: &mpsc::Receiver<(Seen, Instant)>, kind: Seen) -> Instant {
    let mut n = 0;
    let mut last = None;
    while n < LISTENERS {
        let (seen, at) = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("only {n} of {LISTENERS} listeners saw {kind:?}"));
        if seen == kind {
            n += 1;
            last = Some(last.map_or(at, |l: Instant| l.max(at)));
        }
    }
    last.expect("at least one listener")
}
