//! Relay benchmark: starts the release `intercomd` as a child process on 127.0.0.1 and
//! drives it over real TLS WebSockets from a multi-threaded client (std threads, each with
//! its own smol executor). Prints a results table and one JSON line.
//!
//!   cargo bench --bench relay               N = 16, 64, 256 (builds a 256-peer server into
//!                                           target/cap256 with INTERCOMD_CAPACITY=256)
//!   cargo bench --bench relay -- --quick    N = 16, 64, short phases (CI, under a minute)
//!   cargo bench --bench relay -- --peers 64 --light-rate 50000
//!                                           only N = 64, the paced phase at 50,000 msgs/s
//!
//! Per N: connect + TLS + register time for all peers; `signal` relay latency (one way,
//! sender's clock to receiver's clock, both in this process) and server CPU per message
//! at light load (1,000 messages/s offered in total, or `--light-rate`: every sender on
//! its own fixed schedule, so two servers are compared at the same offered load) and at
//! full load (every peer sends to its call partner as
//! fast as a window of 16 unanswered messages allows); throughput and server CPU per
//! relayed message (utime+stime from /proc/<pid>/stat) over the full-load window; server
//! RSS idle, with N peers and peak, and its threads. Also: time to listening with an
//! existing certificate, and the binary sizes. The message mix is one 3 KB SDP offer per
//! five 200-byte ICE candidates. The server runs with `--rate`/`--burst` raised so the
//! figures are the relay's, not the rate limiter's. Where `taskset` exists the server is
//! pinned to CPU 0 and this client to CPU 1.

#[path = "../tests/support/mod.rs"]
mod support;

use support::{Launch, Server};

use async_native_tls::{Certificate, TlsConnector, TlsStream};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures_lite::{FutureExt, StreamExt};
use serde_json::{Value, json};
use smol::channel::{Receiver, Sender};
use smol::net::TcpStream;
use smol::{LocalExecutor, Timer};
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Unanswered messages a sender may have in flight at full load.
const WINDOW: u64 = 16;
/// Messages per second offered in total at light load.
const LIGHT_RATE: f64 = 1000.0;
/// Every sixth message is an SDP offer, the rest ICE candidates.
const SDP_EVERY: u64 = 6;

struct Plan {
    quick: bool,
    sizes: Vec<usize>,
    light: Duration,
    /// Messages per second offered in total at light load (`--light-rate`).
    light_rate: f64,
    warmup: Duration,
    window: Duration,
    starts: usize,
    threads: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                sizes: vec![16, 64],
                light: Duration::from_secs(2),
                light_rate: LIGHT_RATE,
                warmup: Duration::from_millis(300),
                window: Duration::from_millis(1500),
                starts: 3,
                threads: 2,
            }
        } else {
            Plan {
                quick,
                sizes: vec![16, 64, 256],
                light: Duration::from_secs(5),
                light_rate: LIGHT_RATE,
                warmup: Duration::from_millis(500),
                window: Duration::from_secs(5),
                starts: 7,
                threads: 2,
            }
        }
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick")
        || std::env::var_os("INTERCOMD_BENCH_QUICK").is_some_and(|v| v != "0");
    let mut plan = Plan::new(quick);
    // Clients wait on the network without deadlines; this process ends regardless.
    support::watchdog(Duration::from_secs(if quick { 300 } else { 3600 }), "relay");
    // `--peers 16,64` runs only those sizes.
    let args: Vec<String> = std::env::args().collect();
    if let Some(list) = args
        .iter()
        .position(|a| a == "--peers")
        .and_then(|i| args.get(i + 1))
    {
        plan.sizes = list.split(',').filter_map(|n| n.parse().ok()).collect();
    }
    // `--light-rate 50000`: a paced load to compare servers' CPU at the same offered
    // load (at full load the figure also moves with how the client's sends cluster).
    if let Some(rate) = args
        .iter()
        .position(|a| a == "--light-rate")
        .and_then(|i| args.get(i + 1))
    {
        plan.light_rate = rate.parse().expect("--light-rate: messages per second");
    }
    // native-tls loads the system CA bundle for every client connection, which would
    // dominate the connect figures; only the server's own CA is trusted here anyway.
    // SAFETY: no other thread exists yet.
    unsafe { std::env::set_var("SSL_CERT_FILE", "/dev/null") };

    let machine = machine();
    let pinned = support::pin_self();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let bin64 = support::binary();
    let bin256 = if plan.sizes.iter().any(|&n| n > 64) {
        Some(build_cap256(&root))
    } else {
        None
    };
    let state = tempfile::tempdir().expect("temp dir");

    // First start makes the CA and certificate; later starts reuse them.
    drop(start(&bin64, state.path(), &[], pinned));
    let startup = startup_ms(&bin64, state.path(), plan.starts, pinned);
    let ca_pem = std::fs::read(state.path().join("ca.crt")).expect("ca.crt");

    let mut runs = Vec::new();
    for &n in &plan.sizes {
        let bin = if n > 64 {
            bin256.as_deref().unwrap_or(&bin64)
        } else {
            &bin64
        };
        eprintln!("relay: N = {n} ...");
        runs.push(run_n(&plan, bin, state.path(), &ca_pem, n, pinned));
    }
    let mut sizes = vec![(target_name("x86_64"), file_size(&bin64))];
    if let Some(b) = &bin256 {
        sizes.push(("x86_64, capacity 256".into(), file_size(b)));
    }
    for (triple, path) in cross_binaries(&root) {
        sizes.push((triple, file_size(&path)));
    }

    print_table(&plan, &machine, pinned, &startup, &sizes, &runs);
    let report = json!({
        "bench": "relay",
        "quick": plan.quick,
        "machine": machine,
        "pinned": pinned,
        "startup_ms": startup,
        "binary_bytes": sizes.iter().map(|(t, s)| json!({"target": t, "bytes": s})).collect::<Vec<_>>(),
        "runs": runs,
    });
    println!("{report}");
}

/// nproc, CPU model, kernel, memory.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    json!({
        "nproc": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": model,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "mem_gib": (mem_kb as f64 / 1048576.0 * 10.0).round() / 10.0,
    })
}

/// Build the server with a 256-peer table into its own target directory.
fn build_cap256(root: &Path) -> PathBuf {
    let dir = root.join("target").join("cap256");
    eprintln!(
        "relay: building intercomd with INTERCOMD_CAPACITY=256 into {}",
        dir.display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "--bin", "intercomd"])
        .env("CARGO_TARGET_DIR", &dir)
        .env("INTERCOMD_CAPACITY", "256")
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "building the 256-peer server failed");
    dir.join("release").join("intercomd")
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map_or(0, |m| m.len())
}

fn target_name(arch: &str) -> String {
    format!("{arch}-unknown-linux-gnu")
}

/// Release binaries already built for other targets (e.g. by `cross/`).
fn cross_binaries(root: &Path) -> Vec<(String, PathBuf)> {
    let Ok(dirs) = std::fs::read_dir(root.join("target")) else {
        return Vec::new();
    };
    let mut out: Vec<_> = dirs
        .flatten()
        .filter_map(|d| {
            let name = d.file_name().to_string_lossy().to_string();
            let bin = d.path().join("release").join("intercomd");
            (name.contains("-linux-") && bin.is_file()).then_some((name, bin))
        })
        .collect();
    out.sort();
    out
}

/// The server for one run: the default log level, pinned to CPU 0 when this process is
/// pinned to CPU 1, and the `ERROR`/`WARN` lines and cuts copied to stderr.
fn start(bin: &Path, state: &Path, args: &[&str], pinned: bool) -> Server {
    Launch::new()
        .bin(bin)
        .state_dir(state)
        .bench(pinned)
        .echo(&["ERROR", "WARN", "SlowConsumer", "RateLimit"])
        .args(args)
        .spawn()
}

/// Median and range of time to listening over `n` starts with an existing certificate.
fn startup_ms(bin: &Path, state: &Path, n: usize, pinned: bool) -> Value {
    let mut seen = Vec::new();
    let mut own = Vec::new();
    for _ in 0..n {
        let s = start(bin, state, &[], pinned);
        seen.push(s.ready.as_secs_f64() * 1e3);
        own.extend(s.self_ms);
    }
    seen.sort_by(f64::total_cmp);
    own.sort_by(f64::total_cmp);
    json!({
        "median": round2(seen[seen.len() / 2]),
        "min": round2(seen[0]),
        "max": round2(seen[seen.len() - 1]),
        "server_reported_median": own.get(own.len() / 2).copied(),
    })
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// What the client threads share.
struct Ctl {
    addr: SocketAddr,
    ca_pem: Vec<u8>,
    base: Instant,
    barrier: Barrier,
    /// Full load: stop sending.
    stop: AtomicBool,
    /// Full load: inside the measured window.
    record: AtomicBool,
    /// Signals received, all threads.
    received: AtomicU64,
}

impl Ctl {
    fn nanos(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

/// What one client thread measured.
#[derive(Default)]
struct Measured {
    connect_ns: Vec<u64>,
    light_ns: Vec<u64>,
    full_ns: Vec<u64>,
    /// Signals that arrived out of order, twice, or never.
    lost_or_reordered: u64,
}

type Ws = WebSocketStream<TlsStream<TcpStream>>;
type Tx = async_tungstenite::WebSocketSender<TlsStream<TcpStream>>;
type Rx = async_tungstenite::WebSocketReceiver<TlsStream<TcpStream>>;

/// One direction of a call: what A sent and B got.
struct Flow {
    to: String,
    sent: Cell<u64>,
    got: Cell<u64>,
    wake: (Sender<()>, Receiver<()>),
}

impl Flow {
    fn new(to: String) -> Rc<Flow> {
        Rc::new(Flow {
            to,
            sent: Cell::new(0),
            got: Cell::new(0),
            wake: smol::channel::bounded(1),
        })
    }

    fn in_flight(&self) -> u64 {
        self.sent.get() - self.got.get()
    }
}

/// Which latency list the readers fill.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Light,
    Full,
}

fn run_n(plan: &Plan, bin: &Path, state: &Path, ca_pem: &[u8], n: usize, pinned: bool) -> Value {
    let max_peers = n.to_string();
    // The default outbox (64) at every N: the connect storm's presence updates that do not
    // fit are replaced by one `peers` list per peer.
    // All N connect at once from one address: allow them all to be unregistered at once.
    let args = [
        "--max-peers",
        &max_peers,
        "--max-per-ip",
        &max_peers,
        "--rate",
        "1000000",
        "--burst",
        "1000000",
    ];
    let server = start(bin, state, &args, pinned);
    let rss_idle = server.status_kb("VmRSS");
    let anon_idle = server.status_kb("RssAnon");
    let threads = plan.threads.min(n / 2).max(1);
    let ctl = Arc::new(Ctl {
        addr: server.addr,
        ca_pem: ca_pem.to_vec(),
        base: Instant::now(),
        barrier: Barrier::new(threads + 1),
        stop: AtomicBool::new(false),
        record: AtomicBool::new(false),
        received: AtomicU64::new(0),
    });
    let pairs = n / 2;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let mine: Vec<usize> = (0..pairs).filter(|p| p % threads == t).collect();
            let ctl = ctl.clone();
            let light_gap = Duration::from_secs_f64(n as f64 / plan.light_rate);
            let light = plan.light;
            std::thread::spawn(move || client_thread(&ctl, &mine, light_gap, light))
        })
        .collect();

    // A → B: connect, register.
    ctl.barrier.wait();
    let t0 = Instant::now();
    ctl.barrier.wait();
    let connect_all = t0.elapsed();
    let rss_at_n = server.status_kb("VmRSS");
    let anon_at_n = server.status_kb("RssAnon");
    let server_threads = server.status_kb("Threads");
    // C: calls set up. D: light load done.
    ctl.barrier.wait();
    let light_c0 = server.cpu_ticks();
    ctl.barrier.wait();
    let light_c1 = server.cpu_ticks();
    // Full load: warm up, then measure a window.
    std::thread::sleep(plan.warmup);
    let tick = support::clock_ticks_per_s();
    let (c0, r0, w0) = (
        server.cpu_ticks(),
        ctl.received.load(Ordering::Relaxed),
        Instant::now(),
    );
    ctl.record.store(true, Ordering::Relaxed);
    std::thread::sleep(plan.window);
    ctl.record.store(false, Ordering::Relaxed);
    let (c1, r1, w1) = (
        server.cpu_ticks(),
        ctl.received.load(Ordering::Relaxed),
        Instant::now(),
    );
    ctl.stop.store(true, Ordering::Relaxed);
    ctl.barrier.wait();
    let rss_peak = server.status_kb("VmHWM");
    let rss_end = server.status_kb("VmRSS");

    let mut all = Measured::default();
    for w in workers {
        let m = w.join().expect("client thread");
        all.connect_ns.extend(m.connect_ns);
        all.light_ns.extend(m.light_ns);
        all.full_ns.extend(m.full_ns);
        all.lost_or_reordered += m.lost_or_reordered;
    }
    let secs = (w1 - w0).as_secs_f64();
    let msgs = r1 - r0;
    let (user_s, sys_s) = ((c1.0 - c0.0) as f64 / tick, (c1.1 - c0.1) as f64 / tick);
    let cpu_s = user_s + sys_s;
    let per_msg = |s: f64| round2(s * 1e6 / msgs.max(1) as f64);
    let light_msgs = all.light_ns.len().max(1) as f64;
    let light_us = |c0: u64, c1: u64| round2((c1 - c0) as f64 / tick * 1e6 / light_msgs);
    json!({
        "peers": n,
        "server_args": args,
        "client_threads": threads,
        "connect_all_ms": round2(connect_all.as_secs_f64() * 1e3),
        "connect_each_ms": percentiles_ms(&mut all.connect_ns),
        "light": {
            "offered_per_s": plan.light_rate,
            "server_cpu_us_per_msg": light_us(light_c0.0 + light_c0.1, light_c1.0 + light_c1.1),
            "server_user_us_per_msg": light_us(light_c0.0, light_c1.0),
            "server_sys_us_per_msg": light_us(light_c0.1, light_c1.1),
            "latency_us": percentiles_us(&mut all.light_ns),
        },
        "full": {
            "window_s": round2(secs),
            "msgs_per_s": (msgs as f64 / secs).round(),
            "server_cpu_us_per_msg": per_msg(cpu_s),
            "server_user_us_per_msg": per_msg(user_s),
            "server_sys_us_per_msg": per_msg(sys_s),
            "server_cpu_pct": (cpu_s / secs * 100.0).round(),
            "latency_us": percentiles_us(&mut all.full_ns),
        },
        "lost_or_reordered": all.lost_or_reordered,
        "rss_kib": {"idle": rss_idle, "at_n": rss_at_n, "after_load": rss_end, "peak": rss_peak},
        "anon_kib": {"idle": anon_idle, "at_n": anon_at_n},
        "threads": server_threads,
    })
}

fn pick(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn percentiles_us(ns: &mut [u64]) -> Value {
    ns.sort_unstable();
    let us = |q| round2(pick(ns, q) as f64 / 1e3);
    json!({"n": ns.len(), "p50": us(0.5), "p90": us(0.9), "p99": us(0.99), "max": us(1.0)})
}

fn percentiles_ms(ns: &mut [u64]) -> Value {
    ns.sort_unstable();
    let ms = |q| round2(pick(ns, q) as f64 / 1e6);
    json!({"p50": ms(0.5), "p99": ms(0.99), "max": ms(1.0)})
}

/// One client thread: its pairs' connections, calls and senders, on its own executor.
fn client_thread(ctl: &Ctl, pairs: &[usize], light_gap: Duration, light: Duration) -> Measured {
    let ex = LocalExecutor::new();
    smol::block_on(ex.run(async {
        let mut m = Measured::default();
        ctl.barrier.wait();
        let conns: Vec<_> = pairs
            .iter()
            .flat_map(|&p| [format!("bench-{p}a"), format!("bench-{p}b")])
            .map(|name| ex.spawn(connect(ctl, name)))
            .collect();
        let mut clients = Vec::new();
        for c in conns {
            let (ws, name, took) = c.await;
            m.connect_ns.push(took.as_nanos() as u64);
            clients.push((ws, name));
        }
        ctl.barrier.wait();

        let mut calls = Vec::new();
        let mut it = clients.into_iter();
        while let (Some(a), Some(b)) = (it.next(), it.next()) {
            calls.push(ex.spawn(call(a, b)));
        }
        let mut ends = Vec::new();
        for c in calls {
            ends.push(c.await);
        }
        ctl.barrier.wait();

        // Readers run through both phases; senders are spawned per phase.
        let phase = Rc::new(Cell::new(Phase::Light));
        let latencies = Rc::new(RefCell::new((Vec::new(), Vec::new())));
        let errors = Rc::new(Cell::new(0u64));
        let mut senders = Vec::new();
        let mut readers = Vec::new();
        for ((a_tx, a_rx, an), (b_tx, b_rx, bn)) in ends {
            let (ab, ba) = (Flow::new(bn), Flow::new(an));
            for (rx, flow) in [(b_rx, ab.clone()), (a_rx, ba.clone())] {
                let (phase, latencies, errors) = (phase.clone(), latencies.clone(), errors.clone());
                readers.push(ex.spawn(read(ctl, rx, flow, phase, latencies, errors)));
            }
            senders.push((a_tx, ab));
            senders.push((b_tx, ba));
        }
        let count = senders.len() as u32;

        // Light load: each sender on its own fixed schedule, staggered.
        let until = Instant::now() + light;
        let tasks: Vec<_> = senders
            .into_iter()
            .enumerate()
            .map(|(i, (tx, flow))| {
                let first = Instant::now() + light_gap * (i as u32) / count.max(1);
                ex.spawn(send_light(ctl, tx, flow, first, light_gap, until))
            })
            .collect();
        let mut senders = Vec::new();
        for t in tasks {
            senders.push(t.await);
        }
        drain(&senders).await;
        phase.set(Phase::Full);
        ctl.barrier.wait();

        // Full load: a window of 16 per sender, until told to stop.
        let tasks: Vec<_> = senders
            .into_iter()
            .map(|(tx, flow)| ex.spawn(send_full(ctl, tx, flow)))
            .collect();
        let mut senders = Vec::new();
        for t in tasks {
            senders.push(t.await);
        }
        drain(&senders).await;
        for (_, flow) in &senders {
            m.lost_or_reordered += flow.in_flight();
        }
        ctl.barrier.wait();
        drop(readers);
        m.lost_or_reordered += errors.get();
        let (light_ns, full_ns) = latencies.take();
        m.light_ns = light_ns;
        m.full_ns = full_ns;
        m
    }))
}

/// Wait (bounded) until everything sent has arrived.
async fn drain(senders: &[(Tx, Rc<Flow>)]) {
    let until = Instant::now() + Duration::from_secs(10);
    while senders.iter().any(|(_, f)| f.in_flight() > 0) && Instant::now() < until {
        Timer::after(Duration::from_millis(5)).await;
    }
}

/// TLS, WebSocket upgrade, register; returns the open socket and how long it all took.
async fn connect(ctl: &Ctl, name: String) -> (Ws, String, Duration) {
    let started = Instant::now();
    let tcp = TcpStream::connect(ctl.addr).await.expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let tls = TlsConnector::new()
        .add_root_certificate(Certificate::from_pem(&ctl.ca_pem).expect("CA"))
        .connect("localhost", tcp)
        .await
        .expect("TLS handshake");
    let url = format!("wss://localhost:{}/ws", ctl.addr.port());
    let cfg = WebSocketConfig::default().write_buffer_size(0);
    let (mut ws, _) = async_tungstenite::client_async_with_config(url, tls, Some(cfg))
        .await
        .expect("WebSocket upgrade");
    let reg = json!({"type": "register", "name": name}).to_string();
    ws.send(Message::text(reg)).await.expect("register");
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["type"], "registered", "{reply}");
    (ws, name, started.elapsed())
}

/// Next text message as JSON.
async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("JSON"),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
}

/// Next message of type `ty`, skipping presence updates.
async fn expect(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let m = next_json(ws).await;
        if m["type"] == ty {
            return m;
        }
        assert!(
            m["type"] == "peer" || m["type"] == "peers",
            "expected {ty}, got {m}"
        );
    }
}

/// Put `a` and `b` in an accepted call and split both for relaying.
async fn call(a: (Ws, String), b: (Ws, String)) -> ((Tx, Rx, String), (Tx, Rx, String)) {
    let ((mut a, an), (mut b, bn)) = (a, b);
    let msg = json!({"type": "call", "to": bn}).to_string();
    a.send(Message::text(msg)).await.expect("call");
    expect(&mut b, "call").await;
    let msg = json!({"type": "accept", "to": an}).to_string();
    b.send(Message::text(msg)).await.expect("accept");
    expect(&mut a, "accept").await;
    let (a_tx, a_rx) = a.split();
    let (b_tx, b_rx) = b.split();
    ((a_tx, a_rx, an), (b_tx, b_rx, bn))
}

/// A realistic SDP offer body of about 3 KB (JSON-escaped), and an ICE candidate.
fn payloads() -> (String, String) {
    let mut sdp = String::from(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE 0 1\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS stream\r\n\
         m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\n\
         a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:EsAw\r\na=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\n\
         a=ice-options:trickle\r\na=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:\
         92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F\r\n\
         a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\n\
         a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n\
         a=fmtp:111 minptime=10;useinbandfec=1\r\n",
    );
    let video = "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\n\
                 a=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n";
    sdp.push_str("m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101\r\nc=IN IP4 0.0.0.0\r\n");
    while sdp.len() < 2900 {
        sdp.push_str(video);
    }
    let sdp = serde_json::to_string(&sdp).expect("string");
    let candidate = serde_json::to_string(
        "candidate:842163049 1 udp 1677729535 192.168.1.20 61000 typ srflx raddr 10.0.0.5 \
         rport 61000 generation 0 ufrag EsAw network-id 1",
    )
    .expect("string");
    (
        format!(r#""type":"offer","sdp":{sdp}"#),
        format!(r#""candidate":{candidate},"sdpMid":"0","sdpMLineIndex":0"#),
    )
}

thread_local! {
    static PAYLOADS: (String, String) = payloads();
}

/// One `signal` with the sequence number and send time first in `data`.
fn signal(to: &str, seq: u64, t: u64) -> String {
    PAYLOADS.with(|(sdp, cand)| {
        let body = if seq.is_multiple_of(SDP_EVERY) {
            sdp
        } else {
            cand
        };
        format!(r#"{{"type":"signal","to":"{to}","data":{{"s":{seq},"t":{t},{body}}}}}"#)
    })
}

/// The number after `key` in `text`.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits = text[at..].split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

async fn read(
    ctl: &Ctl,
    mut rx: Rx,
    flow: Rc<Flow>,
    phase: Rc<Cell<Phase>>,
    latencies: Rc<RefCell<(Vec<u64>, Vec<u64>)>>,
    errors: Rc<Cell<u64>>,
) -> Rx {
    while let Some(Ok(msg)) = rx.next().await {
        let Message::Text(text) = msg else { continue };
        if !text.starts_with(r#"{"type":"signal""#) {
            continue;
        }
        let now = ctl.nanos();
        let (Some(seq), Some(t)) = (
            number_after(&text, r#""s":"#),
            number_after(&text, r#""t":"#),
        ) else {
            errors.set(errors.get() + 1);
            continue;
        };
        if seq != flow.got.get() {
            errors.set(errors.get() + 1);
        }
        flow.got.set(seq + 1);
        let _ = flow.wake.0.try_send(());
        ctl.received.fetch_add(1, Ordering::Relaxed);
        let mut l = latencies.borrow_mut();
        match phase.get() {
            Phase::Light => l.0.push(now.saturating_sub(t)),
            Phase::Full if ctl.record.load(Ordering::Relaxed) => l.1.push(now.saturating_sub(t)),
            Phase::Full => {}
        }
    }
    rx
}

async fn send_light(
    ctl: &Ctl,
    mut tx: Tx,
    flow: Rc<Flow>,
    first: Instant,
    gap: Duration,
    until: Instant,
) -> (Tx, Rc<Flow>) {
    let mut at = first;
    while at < until {
        Timer::at(at).await;
        let seq = flow.sent.get();
        flow.sent.set(seq + 1);
        let text = signal(&flow.to, seq, ctl.nanos());
        tx.send(Message::text(text)).await.expect("send");
        at += gap;
    }
    (tx, flow)
}

async fn send_full(ctl: &Ctl, mut tx: Tx, flow: Rc<Flow>) -> (Tx, Rc<Flow>) {
    while !ctl.stop.load(Ordering::Relaxed) {
        if flow.in_flight() >= WINDOW {
            // Woken by the partner's reader; the timer only re-checks `stop`.
            let _ = async { flow.wake.1.recv().await.ok() }
                .or(async {
                    Timer::after(Duration::from_millis(50)).await;
                    None
                })
                .await;
            continue;
        }
        let seq = flow.sent.get();
        flow.sent.set(seq + 1);
        let text = signal(&flow.to, seq, ctl.nanos());
        tx.send(Message::text(text)).await.expect("send");
    }
    (tx, flow)
}

fn print_table(
    plan: &Plan,
    machine: &Value,
    pinned: bool,
    startup: &Value,
    sizes: &[(String, u64)],
    runs: &[Value],
) {
    println!();
    println!(
        "intercomd relay benchmark{} - {} x {}, {}",
        if plan.quick { " (quick)" } else { "" },
        machine["nproc"],
        machine["cpu"].as_str().unwrap_or("?"),
        if pinned {
            "server on CPU 0, client on CPU 1"
        } else {
            "not pinned"
        }
    );
    println!(
        "startup to listening (existing certificate): median {} ms (min {}, max {}; server's own figure {} ms)",
        startup["median"], startup["min"], startup["max"], startup["server_reported_median"]
    );
    for (target, bytes) in sizes {
        println!(
            "binary {target}: {bytes} bytes ({:.2} MB)",
            *bytes as f64 / 1e6
        );
    }
    println!();
    println!(
        "{:>5} {:>10} {:>26} {:>8} {:>20} {:>26} {:>16} {:>7} {:>5}",
        "peers",
        "connect",
        "light p50/p90/p99/max ms",
        "msgs/s",
        "us/msg (user+sys)",
        "full p50/p90/p99/max ms",
        "RSS idle/N/peak",
        "threads",
        "lost"
    );
    for r in runs {
        let lat = |v: &Value| {
            let ms = |k: &str| format!("{:.2}", v[k].as_f64().unwrap_or(0.0) / 1e3);
            format!("{}/{}/{}/{}", ms("p50"), ms("p90"), ms("p99"), ms("max"))
        };
        let text = |v: &Value| v.to_string();
        let rss = &r["rss_kib"];
        println!(
            "{:>5} {:>8}ms {:>26} {:>8} {:>20} {:>26} {:>16} {:>7} {:>5}",
            text(&r["peers"]),
            text(&r["connect_all_ms"]),
            lat(&r["light"]["latency_us"]),
            text(&r["full"]["msgs_per_s"]),
            format!(
                "{} ({}+{})",
                r["full"]["server_cpu_us_per_msg"],
                r["full"]["server_user_us_per_msg"],
                r["full"]["server_sys_us_per_msg"]
            ),
            lat(&r["full"]["latency_us"]),
            format!(
                "{:.1}/{:.1}/{:.1} MiB",
                rss["idle"].as_f64().unwrap_or(0.0) / 1024.0,
                rss["at_n"].as_f64().unwrap_or(0.0) / 1024.0,
                rss["peak"].as_f64().unwrap_or(0.0) / 1024.0
            ),
            text(&r["threads"]),
            text(&r["lost_or_reordered"])
        );
    }
    println!(
        "(connect: all N peers concurrently, TLS + upgrade + register; us/msg: server utime+stime \
         per relayed signal at full load, server CPU busy {})",
        runs.iter()
            .map(|r| format!("{}%", r["full"]["server_cpu_pct"]))
            .collect::<Vec<_>>()
            .join("/")
    );
    println!();
}
