//! TURN relay benchmark, intercomd against coturn in one run, driven by the same load
//! generator: coturn's `turnutils_uclient` (UDP, ChannelData), echoed by
//! `turnutils_peer` on 127.0.0.1. Four stations' worth of clients (`-m 8` each, the
//! per-station limit) send `-n` messages of 200 bytes every 2 ms per allocation; every
//! message crosses the relay twice (to the peer and back). Prints, for each server:
//! relayed packets per second, server CPU µs per relayed packet (`utime + stime` of the
//! whole process from `/proc/<pid>/stat`, every thread), RSS at rest before the load, at
//! the end and its peak (`VmHWM`), threads, lost packets, and one JSON line. Nothing is asserted.
//!
//!   cargo bench --bench turn                 3,000 messages per allocation
//!   cargo bench --bench turn -- --quick      500 (CI)
//!   cargo bench --bench turn -- --tcp        the clients reach the relay over TCP (`-t`)
//!
//! Where `taskset` exists each server runs alone on CPU 0 and the load on CPU 1.
//! coturn runs with the same authentication (TURN REST secret, realm `intercom`), the
//! same kind of relay port range, loopback peers allowed, no TLS/DTLS, no CLI, its
//! default number of relay threads; `turnserver` and the `turnutils_*` tools come from
//! Debian's `coturn` package.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Kill, Launch, free_udp_port, patience, turn_echo_peer, turn_entry, uclient_figure};

const STATIONS: usize = 8;
const PER_STATION: &str = "4";
const LENGTH: &str = "200";
const INTERVAL_MS: &str = "2";

fn proc_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn status(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The figure after `label` in uclient's output, 0 where there is none.
fn figure(out: &str, label: &str) -> u64 {
    uclient_figure(out, label).unwrap_or(0)
}

#[derive(Debug)]
struct Run {
    relayed: u64,
    lost: u64,
    wall: Duration,
    cpu_s: f64,
    rss_kb: u64,
    /// Before the load: the server at rest (intercomd with its stations registered).
    rest_kb: u64,
    hwm_kb: u64,
    threads: u64,
}

/// `--tcp`: clients reach the relay over TCP.
fn tcp() -> bool {
    std::env::args().any(|a| a == "--tcp")
}

/// Allocations per station: over TCP one, since the relay takes at most 16 TCP clients
/// from one address and `turnutils_uclient -t` fills them with 8 × 1.
fn per_station() -> &'static str {
    if tcp() { "1" } else { PER_STATION }
}

/// Run one uclient per credential against `port` at once; the server is `pid`.
fn load(pid: u32, port: u16, peer_port: u16, creds: &[(String, String)], messages: &str) -> Run {
    let ticks = support::clock_ticks_per_s();
    let (port, peer_port) = (port.to_string(), peer_port.to_string());
    let rest_kb = status(pid, "VmRSS");
    let cpu0 = proc_ticks(pid);
    let start = Instant::now();
    let children: Vec<Child> = creds
        .iter()
        .map(|(user, pass)| {
            Command::new("turnutils_uclient")
                .args([
                    "-u",
                    user,
                    "-w",
                    pass,
                    "-p",
                    &port,
                    "-e",
                    "127.0.0.1",
                    "-r",
                    &peer_port,
                ])
                .args([
                    "-m",
                    per_station(),
                    "-n",
                    messages,
                    "-l",
                    LENGTH,
                    "-z",
                    INTERVAL_MS,
                ])
                .args(["-c", "127.0.0.1"])
                .args(tcp().then_some("-t"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("turnutils_uclient (Debian package coturn)")
        })
        .collect();
    let (mut relayed, mut lost) = (0, 0);
    let until = Instant::now() + patience() * 24;
    for mut c in children {
        while c.try_wait().unwrap().is_none() {
            if Instant::now() > until {
                let _ = c.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        let _ = c.stdout.take().unwrap().read_to_string(&mut out);
        if std::env::var_os("TURN_BENCH_DEBUG").is_some() {
            eprintln!("{out}");
        }
        relayed += figure(&out, "tot_send_msgs=") + figure(&out, "tot_recv_msgs=");
        lost += figure(&out, "Total lost packets");
    }
    let wall = start.elapsed();
    Run {
        relayed,
        lost,
        wall,
        cpu_s: (proc_ticks(pid) - cpu0) as f64 / ticks,
        rss_kb: status(pid, "VmRSS"),
        rest_kb,
        hwm_kb: status(pid, "VmHWM"),
        threads: status(pid, "Threads"),
    }
}

fn print(name: &str, r: &Run) -> Value {
    let pps = r.relayed as f64 / r.wall.as_secs_f64();
    let us = r.cpu_s * 1e6 / r.relayed.max(1) as f64;
    println!(
        "{name:<10} {:>9} {:>9.0} {:>10.2} {:>9.1} {:>9.1} {:>9.1} {:>7} {:>7}",
        r.relayed,
        pps,
        us,
        r.rest_kb as f64 / 1024.0,
        r.rss_kb as f64 / 1024.0,
        r.hwm_kb as f64 / 1024.0,
        r.threads,
        r.lost
    );
    serde_json::json!({"server": name, "relayed": r.relayed, "pps": pps.round(),
        "cpu_us_per_packet": (us * 100.0).round() / 100.0, "rest_rss_kib": r.rest_kb,
        "rss_kib": r.rss_kb,
        "peak_rss_kib": r.hwm_kb, "threads": r.threads, "lost": r.lost})
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // Each server alone on CPU 0 (every coturn thread too), the load generators and the
    // peer (children of this process) on CPU 1: otherwise the scheduler's share per
    // thread, not the relay, decides who keeps up.
    let pinned = support::pin_self();
    let messages = if quick { "500" } else { "3000" };
    let peer_port = free_udp_port();
    let _peer = turn_echo_peer(peer_port);
    let ours = intercomd_run(pinned, peer_port, messages);
    let theirs = coturn_run(pinned, peer_port, messages);
    report(messages, &ours, &theirs);
}

/// intercomd under the load: stations register as tablets do and their WebSockets stay
/// open while it runs.
fn intercomd_run(pinned: bool, peer_port: u16, messages: &str) -> Run {
    let server = Launch::new()
        .bench(pinned)
        .turn_relay("52100-52199")
        .spawn();
    smol::block_on(async {
        let mut creds = Vec::new();
        let mut clients = Vec::new();
        let mut port = 0;
        for i in 0..STATIONS {
            let (c, reg) = server.register(&format!("bench{i}")).await;
            let (p, user, pass) = turn_entry(&reg);
            port = p;
            creds.push((user, pass));
            clients.push(c);
        }
        eprintln!("turn: intercomd on 127.0.0.1:{port}, turnutils_peer on {peer_port}");
        load(server.pid(), port, peer_port, &creds, messages)
    })
}

/// coturn under the same load, with the same secret form and realm.
fn coturn_run(pinned: bool, peer_port: u16, messages: &str) -> Run {
    let secret = "benchsecret";
    let port = free_udp_port();
    let db = tempfile::tempdir().unwrap();
    let coturn = coturn(pinned, port, secret, db.path());
    std::thread::sleep(Duration::from_millis(500));
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let creds: Vec<_> = (0..STATIONS)
        .map(|i| intercomd::stations::credentials(secret.as_bytes(), &format!("bench{i}"), unix))
        .collect();
    load(coturn.0.id(), port, peer_port, &creds, messages)
}

/// `turnserver` on 127.0.0.1:`port` with TURN REST credentials from `secret`, its
/// database and pid file in `db`; on CPU 0 when `pinned`.
fn coturn(pinned: bool, port: u16, secret: &str, db: &Path) -> Kill {
    let mut cmd = if pinned {
        let mut c = Command::new("taskset");
        c.args(["-c", "0", "turnserver"]);
        c
    } else {
        Command::new("turnserver")
    };
    Kill(
        cmd.args([
            "-n",
            "--listening-ip",
            "127.0.0.1",
            "--relay-ip",
            "127.0.0.1",
        ])
        .args(["--listening-port", &port.to_string()])
        .args(["--min-port", "52200", "--max-port", "52299"])
        .args([
            "--use-auth-secret",
            "--static-auth-secret",
            secret,
            "--realm",
            "intercom",
        ])
        .args([
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--allow-loopback-peers",
        ])
        .args(["--no-stdout-log", "--log-file", "/dev/null"])
        .arg("--userdb")
        .arg(db.join("turndb"))
        .arg("--pidfile")
        .arg(db.join("pid"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnserver (Debian package coturn)"),
    )
}

/// The table of both runs and one JSON line.
fn report(messages: &str, ours: &Run, theirs: &Run) {
    println!(
        "turn: {STATIONS} × {} allocations, {messages} messages of {LENGTH} B every \
         {INTERVAL_MS} ms each, echoed by turnutils_peer{}",
        per_station(),
        if tcp() { ", over TCP" } else { "" }
    );
    println!(
        "{:<10} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "server",
        "relayed",
        "pkt/s",
        "CPU µs/pkt",
        "rest MiB",
        "RSS MiB",
        "peak MiB",
        "threads",
        "lost"
    );
    let a = print("intercomd", ours);
    let b = print("coturn", theirs);
    println!(
        "{}",
        serde_json::json!({"bench": "turn", "messages": messages, "results": [a, b]})
    );
}
