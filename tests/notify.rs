//! The systemd notify protocol as systemd itself would see it: `READY=1` only once the
//! port accepts connections, `WATCHDOG=1` at least once per `WATCHDOG_USEC` (and not in a
//! busy loop), `STOPPING=1` and exit status 0 on SIGTERM; both a socket path and an
//! abstract `@name`, as systemd uses either.
//!
//! The server is started with `tests/support`'s `Launch`, honouring `INTERCOMD_BIN` and
//! `INTERCOMD_RUNNER`, so the same test runs against an ARM binary under qemu.

mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};
use support::{Launch, Server};

/// How long to wait for a datagram that must come: twice the usual patience, as a
/// starting (emulated) server may take long to say it is ready.
fn patience() -> Duration {
    support::patience() * 2
}

/// Start the server on `addr` with a fresh state directory and the given environment.
fn spawn(addr: SocketAddr, env: &[(&str, &str)]) -> Server {
    env.iter()
        .fold(Launch::new().listen(addr), |l, (k, v)| l.env(k, v))
        .spawn()
}

/// A loopback port nobody listens on right now.
fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// The next datagram as text, or `None` after `wait`.
fn recv(sock: &UnixDatagram, wait: Duration) -> Option<String> {
    sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("notify socket: {e}"),
    }
}

fn must_recv(sock: &UnixDatagram) -> String {
    recv(sock, patience()).expect("no notification within the time limit")
}

/// SIGTERM, then the datagrams sent until exit (watchdog pings dropped) and the exit status.
fn terminate(server: &mut Server, sock: &UnixDatagram) -> (Vec<String>, std::process::ExitStatus) {
    server.send_sigterm();
    let until = Instant::now() + patience();
    let mut seen = Vec::new();
    loop {
        if let Some(status) = server.try_exit() {
            while let Some(m) = recv(sock, Duration::from_millis(1)) {
                seen.push(m);
            }
            seen.retain(|m| m != "WATCHDOG=1");
            return (seen, status);
        }
        assert!(Instant::now() < until, "server did not exit after SIGTERM");
        if let Some(m) = recv(sock, Duration::from_millis(20)) {
            seen.push(m);
        }
    }
}

#[test]
fn ready_once_listening_then_watchdog_pings_then_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let sock = UnixDatagram::bind(&path).unwrap();
    let addr = free_port();
    // systemd kills a service that stays silent for WATCHDOG_USEC; 1 s here.
    let mut server = spawn(
        addr,
        &[
            ("NOTIFY_SOCKET", path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );

    assert_eq!(must_recv(&sock), "READY=1");
    // Told it is ready, systemd starts whatever depends on the port: it must accept now.
    TcpStream::connect(addr).expect("READY=1 came before the port accepted connections");

    let mut last = Instant::now();
    for ping in 1..=4 {
        let m = must_recv(&sock);
        let gap = last.elapsed();
        last = Instant::now();
        assert_eq!(m, "WATCHDOG=1", "ping {ping}");
        assert!(
            gap < Duration::from_secs(1),
            "ping {ping} came {gap:?} after the last; systemd would have killed the service"
        );
        if ping > 1 {
            assert!(
                gap > Duration::from_millis(100),
                "ping {ping} only {gap:?} after the last: pinging in a loop"
            );
        }
    }

    let (seen, status) = terminate(&mut server, &sock);
    assert_eq!(seen, ["STOPPING=1"]);
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
}

#[test]
fn abstract_socket_name_and_no_watchdog_unless_asked() {
    let name = format!("intercomd-notify-test-{}", std::process::id());
    use std::os::linux::net::SocketAddrExt;
    let sock = UnixDatagram::bind_addr(
        &std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap(),
    )
    .unwrap();
    let addr = free_port();
    let mut server = spawn(addr, &[("NOTIFY_SOCKET", &format!("@{name}"))]);

    assert_eq!(must_recv(&sock), "READY=1");
    TcpStream::connect(addr).expect("READY=1 came before the port accepted connections");
    // Without WATCHDOG_USEC the service must not ping.
    assert_eq!(recv(&sock, Duration::from_millis(500)), None);

    let (seen, status) = terminate(&mut server, &sock);
    assert_eq!(seen, ["STOPPING=1"]);
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
}
