//! Flood benchmark: what four flooding connections cost a normal peer. Starts the server
//! (`INTERCOMD_BIN`, or the one cargo built) with its default limits on 127.0.0.1, puts
//! two normal peers `a` and `b` in a call, and measures `a`'s relay round trip
//! (a → server → b → server → a, one signal at a time, paced to stay under the rate limit)
//! at rest, then again while four other registered connections send maximum-size
//! (64 KiB) messages as fast as they can: when the server cuts one, it reconnects and
//! floods again. Prints p50/p99/max of both, server CPU over the flooded phase (`utime +
//! stime` from `/proc/<pid>/stat`, as a share of one core), how the flooders' connections
//! ended, and one JSON line. Nothing is asserted.
//!
//!   cargo bench --bench flood                  2,000 signals a phase (at most 60 s)
//!   cargo bench --bench flood -- --quick       500 signals a phase (at most 10 s; CI)
//!   INTERCOMD_BIN=/path/to/intercomd cargo bench --bench flood    another build
//!
//! Where `taskset` exists the server is pinned to CPU 0 and this process to CPU 1; the
//! normal peers and the flooders run on separate threads, so `a`'s figures are not
//! queued behind the flooders' encryption on the client side.

#[path = "../tests/support/mod.rs"]
mod support;

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use futures_lite::{FutureExt, StreamExt};
use serde_json::{Value, json};
use smol::{LocalExecutor, Timer};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{Client, Launch, Server, call_pair};

/// Flooding connections.
const FLOODERS: usize = 4;
/// The server's default `--max-message`: every flood message is exactly this long.
const FLOOD_BYTES: usize = 64 * 1024;
/// Between two of `a`'s signals: about 83 a second each way, under the default rate
/// limit of 100 messages/s, so only the flooders are limited.
const GAP: Duration = Duration::from_millis(12);
/// Flooding before the flooded phase is measured.
const WARMUP: Duration = Duration::from_secs(1);

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var_os("INTERCOMD_BENCH_QUICK").is_some_and(|v| v != "0");
    let (signals, limit) = if quick {
        (500, Duration::from_secs(10))
    } else {
        (2000, Duration::from_secs(60))
    };
    // Only the server's own CA is trusted; skip loading the system bundle on every connect.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("SSL_CERT_FILE", "/dev/null") };
    let pinned = support::pin_self();
    let bin = support::binary();
    let server = Launch::new().bench(pinned).spawn();
    eprintln!(
        "flood: {} ({} signals a phase, server {})",
        bin.display(),
        signals,
        if pinned { "on CPU 0" } else { "not pinned" }
    );

    // Whatever happens to the network, this process ends: a phase takes at most `limit`,
    // connecting and the flooders' wind-down a few seconds more.
    support::watchdog(limit * 2 + Duration::from_secs(60), "flood");
    let (mut a, mut b) = smol::block_on(call_pair(&server, "a", "b"));
    eprintln!("flood: at rest ...");
    let mut rest = smol::block_on(round_trips(&mut a, &mut b, signals, limit));

    eprintln!("flood: with {FLOODERS} flooders ...");
    let stats = Arc::new(FloodStats::default());
    let stop = AtomicBool::new(false);
    let (mut flooded, cpu, wall) = std::thread::scope(|s| {
        let flooders = s.spawn(|| flood(&server, &stop, &stats));
        // Stops the flooders however this closure ends, a panic included: the scope
        // joins them before it returns.
        let _stop = StopOnDrop(&stop);
        std::thread::sleep(WARMUP);
        let (ticks0, t0) = (busy_ticks(&server), Instant::now());
        let flooded = smol::block_on(round_trips(&mut a, &mut b, signals, limit));
        let (ticks1, wall) = (busy_ticks(&server), t0.elapsed());
        stop.store(true, Ordering::Relaxed);
        flooders.join().expect("flood thread");
        let cpu = (ticks1 - ticks0) as f64 / support::clock_ticks_per_s();
        (flooded, cpu, wall)
    });

    let cpu_pct = cpu / wall.as_secs_f64() * 100.0;
    let rest_f = percentiles(&mut rest);
    let flood_f = percentiles(&mut flooded);
    let lost = rest.lost + flooded.lost;
    let errors = rest.errors + flooded.errors;
    let sent = stats.sent.load(Ordering::Relaxed);
    let by = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!();
    println!("flood: {}", bin.display());
    println!(
        "| phase | a's round trip p50 / p99 / max | server CPU | flood messages (64 KiB) | flood connections: cut 1008 / other end / refused |"
    );
    println!("|---|---|---:|---:|---|");
    println!("| at rest | {} | | | |", fmt_ms(&rest_f));
    println!(
        "| {FLOODERS} flooders | {} | {:.0} % | {} | {} / {} / {} |",
        fmt_ms(&flood_f),
        cpu_pct,
        sent,
        by(&stats.cut_rate),
        by(&stats.ended_other),
        by(&stats.refused),
    );
    if lost + errors > 0 {
        println!("a's signals lost: {lost}; error replies to a or b: {errors} (both should be 0)");
    }
    println!(
        "{}",
        json!({
            "bench": "flood",
            "quick": quick,
            "binary": bin.display().to_string(),
            "pinned": pinned,
            "signals": signals,
            "lost": lost,
            "errors": errors,
            "rest_ms": rest_f,
            "flooded_ms": flood_f,
            "server_cpu_pct": (cpu_pct * 10.0).round() / 10.0,
            "flood_window_s": (wall.as_secs_f64() * 10.0).round() / 10.0,
            "flood_messages": sent,
            "flood_connections": by(&stats.connections),
            "cut_rate_limit": by(&stats.cut_rate),
            "ended_other": by(&stats.ended_other),
            "refused": by(&stats.refused),
        })
    );
}

/// utime + stime of the server, in clock ticks.
fn busy_ticks(server: &Server) -> u64 {
    let (user, sys) = server.cpu_ticks();
    user + sys
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// One phase's round trips.
#[derive(Default)]
struct Trips {
    /// Each completed round trip, in ns.
    ns: Vec<u64>,
    /// Signals whose echo did not come back within [`LOST_AFTER`] (the phase ends there).
    lost: u64,
    /// Error replies `a` or `b` received (e.g. `rate_limited`): none are expected.
    errors: u64,
}

/// A round trip longer than this counts as lost and ends the phase.
const LOST_AFTER: Duration = Duration::from_secs(5);

/// Up to `n` round trips a → b → a, one at a time, at least [`GAP`] apart, until `limit`
/// runs out (a slow server) or one is lost.
async fn round_trips(a: &mut Client, b: &mut Client, n: u64, limit: Duration) -> Trips {
    let errors = std::cell::Cell::new(0);
    let echo = async {
        loop {
            let data = next_signal(b, &errors).await;
            b.send(json!({"type": "signal", "to": "a", "data": data}))
                .await;
        }
    };
    let measure = async {
        let pad = "x".repeat(150);
        let start = Instant::now();
        let mut trips = Trips {
            ns: Vec::with_capacity(n as usize),
            ..Trips::default()
        };
        let mut last = start;
        for seq in 0..n {
            if start.elapsed() > limit {
                break;
            }
            // Paced from the last send, never catching up: a burst after a stall would
            // run into the rate limit and measure that instead.
            if let Some(wait) = (last + GAP).checked_duration_since(Instant::now()) {
                Timer::after(wait).await;
            }
            let sent = Instant::now();
            last = sent;
            a.send(json!({"type": "signal", "to": "b", "data": {"seq": seq, "pad": pad}}))
                .await;
            let back = async { Some(next_signal(a, &errors).await) }
                .or(async {
                    Timer::after(LOST_AFTER).await;
                    None
                })
                .await;
            let Some(data) = back else {
                trips.lost += 1;
                eprintln!("flood: signal {seq} not back within {LOST_AFTER:?}; phase ends");
                break;
            };
            trips.ns.push(sent.elapsed().as_nanos() as u64);
            assert_eq!(data["seq"], seq, "signals out of order");
        }
        trips.errors = errors.get();
        trips
    };
    measure.or(echo).await
}

/// The `data` of the next signal, skipping presence and counting error replies; no time
/// limit of its own (the caller has one).
async fn next_signal(c: &mut Client, errors: &std::cell::Cell<u64>) -> Value {
    loop {
        match c.ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let m: Value = serde_json::from_str(&t).expect("server sent JSON");
                if m["type"] == "signal" {
                    return m["data"].clone();
                }
                if m["type"] == "error" {
                    errors.set(errors.get() + 1);
                    eprintln!("flood: a normal peer got {t}");
                }
            }
            Some(Ok(_)) => {}
            other => panic!("the server cut a normal peer: {other:?}"),
        }
    }
}

/// What the flooders saw.
#[derive(Default)]
struct FloodStats {
    /// 64 KiB messages written.
    sent: AtomicU64,
    /// WebSocket connections opened.
    connections: AtomicU64,
    /// Connections the server closed with 1008 (the rate limit).
    cut_rate: AtomicU64,
    /// Connections that ended any other way.
    ended_other: AtomicU64,
    /// Attempts the server refused (TCP, TLS or the upgrade).
    refused: AtomicU64,
}

/// Run [`FLOODERS`] flooders on one executor until `stop`.
fn flood(server: &Server, stop: &AtomicBool, stats: &FloodStats) {
    let ex = LocalExecutor::new();
    let tasks: Vec<_> = (0..FLOODERS)
        .map(|i| ex.spawn(flooder(server, i, stop, stats)))
        .collect();
    smol::block_on(ex.run(async {
        for t in tasks {
            t.await;
        }
    }));
}

/// One flooding connection after another: register, then send maximum-size messages as
/// fast as the socket takes them while reading what comes back, until the server ends it.
async fn flooder(server: &Server, i: usize, stop: &AtomicBool, stats: &FloodStats) {
    // `{"type":"signal","to":"nobody","data":"xxx…"}`, exactly FLOOD_BYTES long.
    let head = r#"{"type":"signal","to":"nobody","data":""#;
    let text = format!("{head}{}\"}}", "x".repeat(FLOOD_BYTES - head.len() - 2));
    debug_assert_eq!(text.len(), FLOOD_BYTES);
    let mut attempt = 0;
    while !stop.load(Ordering::Relaxed) {
        attempt += 1;
        let connect = async { server.try_client().await.ok() }.or(async {
            Timer::after(Duration::from_secs(5)).await;
            None
        });
        let Some(client) = connect.await else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            Timer::after(Duration::from_millis(20)).await;
            continue;
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let (mut tx, mut rx) = client.ws.split();
        let name = format!("flood{i}-{attempt}");
        let register = Message::text(json!({"type": "register", "name": name}).to_string());
        let sent = async { tx.send(register).await.is_ok() }.or(async {
            Timer::after(Duration::from_secs(5)).await;
            false
        });
        if !sent.await {
            stats.ended_other.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let write = async {
            while !stop.load(Ordering::Relaxed) {
                if tx.send(Message::text(text.as_str())).await.is_err() {
                    break;
                }
                stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            // Stopped, or the socket is closing: the close frame, if any, is still to read.
            Timer::after(Duration::from_secs(1)).await;
            None
        };
        let read = async {
            loop {
                match rx.next().await {
                    Some(Ok(Message::Close(frame))) => return Some(frame),
                    Some(Ok(_)) => {}
                    _ => return Some(None),
                }
            }
        };
        // The writer may be blocked on a socket the server no longer reads.
        let stopped = async {
            while !stop.load(Ordering::Relaxed) {
                Timer::after(Duration::from_millis(50)).await;
            }
            None
        };
        let ended = read.or(write).or(stopped).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match ended {
            Some(Some(CloseFrame { code, .. })) if u16::from(code) == 1008 => {
                stats.cut_rate.fetch_add(1, Ordering::Relaxed)
            }
            _ => stats.ended_other.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// p50, p99 and max in ms.
fn percentiles(trips: &mut Trips) -> Value {
    let ns = &mut trips.ns;
    if ns.is_empty() {
        return json!({"p50": null, "p99": null, "max": null, "n": 0});
    }
    ns.sort_unstable();
    let pick = |q: f64| {
        let i = ((ns.len() as f64 * q).ceil() as usize).clamp(1, ns.len()) - 1;
        (ns[i] as f64 / 1e4).round() / 100.0
    };
    json!({"p50": pick(0.50), "p99": pick(0.99), "max": pick(1.0), "n": ns.len()})
}

fn fmt_ms(p: &Value) -> String {
    format!("{} / {} / {} ms", p["p50"], p["p99"], p["max"])
}
