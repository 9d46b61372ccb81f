//! System calls the relay does not need are not made. Counted with `strace` on the real
//! server while one station signals another, one message at a time:
//! - the accept loop is not polled by relay traffic (async-io's `accept` takes every poll
//!   after the first for readiness, so a loop polled at every turn of the executor calls
//!   `accept4` and re-arms the listener each time);
//! - a connection woken only to write what others sent does not read its socket, which
//!   could only answer `EAGAIN`.
//!
//! `tests/turn.rs` checks the same of the TURN relay's TCP clients.

mod support;

use serde_json::json;
use support::*;

/// Signals relayed one at a time, each waited for at the receiver.
const SIGNALS: usize = 400;

#[test]
fn relaying_retries_neither_accept_nor_reads_of_an_empty_socket() {
    let server = start_server(&["--rate", "100000", "--burst", "100000"]);
    smol::block_on(async {
        let (mut door, mut kitchen) = call_pair(&server, "door", "kitchen").await;
        let strace = Strace::attach(server.pid(), "accept4,recvfrom", true).await;
        // The kitchen only receives: its socket never has anything to read.
        for seq in 0..SIGNALS {
            door.send(json!({"type": "signal", "to": "kitchen", "data": {"seq": seq}}))
                .await;
            let got = kitchen.recv_type("signal").await;
            assert_eq!(got["data"]["seq"], seq, "{got}");
        }
        let log = strace.finish();
        let accepts = log.lines().filter(|l| l.contains("accept4(")).count();
        let per_fd = eagain_reads_per_fd(&log);
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
