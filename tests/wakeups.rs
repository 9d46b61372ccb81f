//! System calls the relay does not need are not made. Counted with `strace` on the real
//! server while one station signals another, one message at a time:
//! - the accept loop is not polled by relay traffic (async-io's `accept` takes every poll
//!   after the first for readiness, so a loop polled at every turn of the executor calls
//!   `accept4` and re-arms the listener each time);
//! - a connection woken only to write what others sent does not read its socket, which
//!   could only answer `EAGAIN`.

mod support;

use serde_json::json;
use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Instant;
use support::*;

/// Signals relayed one at a time, each waited for at the receiver.
const SIGNALS: usize = 400;

/// Failed `accept4` calls, and failed `recvfrom` calls per file descriptor, in an
/// `strace -f -e status=failed` log.
fn failed_calls(log: &str) -> (usize, Vec<usize>) {
    let mut accepts = 0;
    let mut reads: HashMap<&str, usize> = HashMap::new();
    for line in log.lines().filter(|l| l.contains("EAGAIN")) {
        if line.contains("accept4(") {
            accepts += 1;
        } else if let Some(rest) = line.split("recvfrom(").nth(1) {
            let fd = rest.split(',').next().unwrap_or("");
            *reads.entry(fd).or_default() += 1;
        }
    }
    let mut per_fd: Vec<usize> = reads.into_values().collect();
    per_fd.sort_unstable_by(|a, b| b.cmp(a));
    (accepts, per_fd)
}

/// Whether every thread of `pid` is being traced.
fn traced(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("status")).is_ok_and(|s| {
            s.lines()
                .any(|l| l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0"))
        })
    })
}

#[test]
fn relaying_retries_neither_accept_nor_reads_of_an_empty_socket() {
    let server = start_server(&["--rate", "100000", "--burst", "100000"]);
    smol::block_on(async {
        let (mut door, mut kitchen) = call_pair(&server, "door", "kitchen").await;
        let out = tempfile::NamedTempFile::new().expect("temp file");
        let mut strace = Kill(
            Command::new("strace")
                .args([
                    "-f",
                    "-qq",
                    "-e",
                    "trace=accept4,recvfrom",
                    "-e",
                    "status=failed",
                ])
                .arg("-o")
                .arg(out.path())
                .args(["-p", &server.pid().to_string()])
                .stdout(Stdio::null())
                .spawn()
                .expect("strace (Debian: strace)"),
        );
        let deadline = Instant::now() + patience();
        while !traced(server.pid()) {
            assert!(Instant::now() < deadline, "strace did not attach");
            smol::Timer::after(std::time::Duration::from_millis(10)).await;
        }
        // The kitchen only receives: its socket never has anything to read.
        for seq in 0..SIGNALS {
            door.send(json!({"type": "signal", "to": "kitchen", "data": {"seq": seq}}))
                .await;
            let got = kitchen.recv_type("signal").await;
            assert_eq!(got["data"]["seq"], seq, "{got}");
        }
        let _ = Command::new("kill")
            .args(["-INT", &strace.0.id().to_string()])
            .status();
        strace.0.wait().expect("strace exits");
        let log = std::fs::read_to_string(out.path()).expect("strace log");
        let (accepts, per_fd) = failed_calls(&log);
        // Before: one failed accept4 at every turn of the executor, hundreds here.
        assert!(
            accepts <= 2,
            "{accepts} failed accept4 calls while relaying"
        );
        // The door's socket is read until empty after each of its signals: up to one
        // EAGAIN a signal. Before, the kitchen's socket was read at every delivery too.
        assert!(
            per_fd.get(1).copied().unwrap_or(0) <= SIGNALS / 20,
            "EAGAIN reads per socket: {per_fd:?} for {SIGNALS} signals"
        );
        assert!(
            per_fd.first().copied().unwrap_or(0) <= SIGNALS + 2,
            "EAGAIN reads per socket: {per_fd:?} for {SIGNALS} signals"
        );
    });
}
