//! Devices on the LAN that hoard sockets: every state a socket can be held in (idle TCP,
//! TLS without a request, HTTP keep-alive, a WebSocket that never registers), from several
//! source addresses at once, while a tablet keeps registering. Attackers use 127.0.0.2-4
//! and tablets 127.0.0.5 and up: the whole of 127.0.0.0/8 is local.

mod support;

use async_native_tls::{Certificate, TlsConnector, TlsStream};
use async_tungstenite::tungstenite::Message;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use serde_json::{Value, json};
use smol::Timer;
use smol::net::TcpStream;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{Server, patience, run, start_server};

/// `127.0.0.<last>`.
fn local(last: u8) -> [u8; 4] {
    [127, 0, 0, last]
}

/// A TCP connection to `to` from the source address `from`.
async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    sock.bind(&SocketAddr::from((from, 0)).into())?;
    // Loopback connects at once; the timeout only bounds a full accept queue.
    sock.connect_timeout(&to.into(), Duration::from_secs(1))?;
    sock.set_nonblocking(true)?;
    let tcp = TcpStream::try_from(std::net::TcpStream::from(sock))?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// A TLS connection from `from`, trusting the server's CA.
async fn tls_from(server: &Server, from: [u8; 4]) -> Result<TlsStream<TcpStream>, String> {
    let tcp = connect_from(from, server.addr)
        .await
        .map_err(|e| e.to_string())?;
    let ca = Certificate::from_pem(&server.ca_pem).map_err(|e| e.to_string())?;
    TlsConnector::new()
        .add_root_certificate(ca)
        .connect("localhost", tcp)
        .await
        .map_err(|e| e.to_string())
}

/// Wait until the server closes `io`; how long that took. `None` when it stays open
/// for `within`.
async fn closed_within<S: AsyncRead + Unpin>(io: &mut S, within: Duration) -> Option<Duration> {
    let since = Instant::now();
    let mut buf = [0u8; 4096];
    let closed = async {
        loop {
            if matches!(io.read(&mut buf).await, Ok(0) | Err(_)) {
                return true;
            }
        }
    }
    .or(async {
        Timer::after(within).await;
        false
    })
    .await;
    closed.then(|| since.elapsed())
}

/// Read one response head; its status, or 0 when the connection ended first.
async fn response_status<S: AsyncRead + Unpin>(io: &mut S) -> u16 {
    support::read_head(io).await.0
}

fn upgrade_request(port: u16) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Open a WebSocket from `from` and register `name`; the error says which step failed.
async fn register_from(server: &Server, from: [u8; 4], name: &str) -> Result<Tablet, String> {
    let tls = tls_from(server, from).await?;
    register_on(server, tls, name).await
}

/// Upgrade `tls` to a WebSocket and register `name`.
async fn register_on(
    server: &Server,
    tls: TlsStream<TcpStream>,
    name: &str,
) -> Result<Tablet, String> {
    let url = format!("wss://localhost:{}/ws", server.addr.port());
    let (mut ws, _) = async_tungstenite::client_async(url, tls)
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    let register = json!({"type": "register", "name": name}).to_string();
    ws.send(Message::text(register))
        .await
        .map_err(|e| format!("send: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                let m: Value = serde_json::from_str(&t).map_err(|e| e.to_string())?;
                if m["type"] == "registered" {
                    return Ok(Tablet { ws });
                }
                if m["type"] != "peer" && m["type"] != "peers" {
                    return Err(format!("register: {m}"));
                }
            }
            Some(Ok(_)) => {}
            other => return Err(format!("register: connection ended: {other:?}")),
        }
    }
}

/// A registered WebSocket.
struct Tablet {
    ws: async_tungstenite::WebSocketStream<TlsStream<TcpStream>>,
}

impl Tablet {
    async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let drained = async { while let Some(Ok(_)) = self.ws.next().await {} };
        drained
            .or(async {
                Timer::after(patience()).await;
            })
            .await;
    }
}

/// The ways an attacker holds a socket.
#[derive(Debug, Clone, Copy)]
enum Hold {
    /// Connect and send nothing.
    Tcp,
    /// Finish TLS and send nothing.
    Tls,
    /// HTTP keep-alive: a request now and then, never closing.
    KeepAlive,
    /// Upgrade to a WebSocket and never register.
    WebSocket,
}

const HOLDS: [Hold; 4] = [Hold::Tcp, Hold::Tls, Hold::KeepAlive, Hold::WebSocket];

/// Open one socket from `from` and hold it in the state `hold` until the server closes
/// it (or `stop`). Returns whether the socket got as far as its holding state.
async fn hold_one(server: &Server, from: [u8; 4], hold: Hold, stop: &AtomicBool) -> bool {
    let port = server.addr.port();
    match hold {
        Hold::Tcp => {
            let Ok(mut tcp) = connect_from(from, server.addr).await else {
                return false;
            };
            until_closed(&mut tcp, stop).await;
        }
        Hold::Tls => {
            let Ok(mut tls) = tls_from(server, from).await else {
                return false;
            };
            until_closed(&mut tls, stop).await;
        }
        Hold::KeepAlive => {
            let Ok(mut tls) = tls_from(server, from).await else {
                return false;
            };
            let request = format!("HEAD / HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n");
            // A request every 4 s: under the keep-alive idle timeout, forever.
            while !stop.load(Ordering::Relaxed) {
                if tls.write_all(request.as_bytes()).await.is_err()
                    || tls.flush().await.is_err()
                    || response_status(&mut tls).await != 200
                {
                    return true;
                }
                let quiet = Instant::now() + Duration::from_secs(4);
                while Instant::now() < quiet && !stop.load(Ordering::Relaxed) {
                    if closed_within(&mut tls, Duration::from_millis(200))
                        .await
                        .is_some()
                    {
                        return true;
                    }
                }
            }
        }
        Hold::WebSocket => {
            let Ok(mut tls) = tls_from(server, from).await else {
                return false;
            };
            let upgrade = upgrade_request(port);
            if tls.write_all(upgrade.as_bytes()).await.is_err() || tls.flush().await.is_err() {
                return false;
            }
            if response_status(&mut tls).await != 101 {
                return false;
            }
            until_closed(&mut tls, stop).await;
        }
    }
    true
}

/// Read and drop whatever arrives until the server closes `io` or `stop` is set.
async fn until_closed<S: AsyncRead + Unpin>(io: &mut S, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let read = async { Some(io.read(&mut buf).await) }.or(async {
            Timer::after(Duration::from_millis(200)).await;
            None
        });
        if let Some(Ok(0) | Err(_)) = read.await {
            return;
        }
    }
}

/// One attacker address: `workers` sockets at a time, each re-opened 1 ms after the
/// server closes it (the pause only keeps a refused socket from spinning the CPU). Returns (sockets that reached their state, attempts).
fn attacker(server: &Server, from: [u8; 4], workers: usize, stop: &AtomicBool) -> (u64, u64) {
    let held = AtomicU64::new(0);
    let tried = AtomicU64::new(0);
    smol::block_on(async {
        let ex = smol::LocalExecutor::new();
        let tasks: Vec<_> = (0..workers)
            .map(|w| {
                let (held, tried) = (&held, &tried);
                ex.spawn(async move {
                    let mut n = w;
                    while !stop.load(Ordering::Relaxed) {
                        let hold = HOLDS[n % HOLDS.len()];
                        n += 1;
                        tried.fetch_add(1, Ordering::Relaxed);
                        if hold_one(server, from, hold, stop).await {
                            held.fetch_add(1, Ordering::Relaxed);
                        }
                        Timer::after(Duration::from_millis(1)).await;
                    }
                })
            })
            .collect();
        ex.run(async {
            for t in tasks {
                t.await;
            }
        })
        .await;
    });
    (held.into_inner(), tried.into_inner())
}

#[test]
fn hoarded_sockets_never_keep_a_tablet_out() {
    // max-peers 8: 24 sockets; three addresses may hold 8 unregistered sockets each.
    let server = start_server(&["--max-peers", "8"]);
    let stop = Arc::new(AtomicBool::new(false));
    const ATTACK: Duration = Duration::from_secs(20);
    std::thread::scope(|s| {
        let attackers: Vec<_> = [2, 3, 4]
            .map(|last| {
                let (server, stop) = (&server, &stop);
                s.spawn(move || attacker(server, local(last), 12, stop))
            })
            .into_iter()
            .collect();
        // Let the attackers fill the port first.
        std::thread::sleep(Duration::from_secs(2));
        let mut latencies = Vec::new();
        let mut failures = Vec::new();
        run(async {
            let started = Instant::now();
            let mut next = Instant::now();
            let mut i = 0;
            while started.elapsed() < ATTACK {
                i += 1;
                let since = Instant::now();
                let mut tries = 0;
                // One attempt: keep trying for up to 2 s.
                let result = loop {
                    tries += 1;
                    let name = format!("tablet-{i}");
                    let left = Duration::from_secs(2).saturating_sub(since.elapsed());
                    let attempt =
                        async { Some(register_from(&server, local(9), &name).await) }.or(async {
                            Timer::after(left).await;
                            None
                        });
                    match attempt.await {
                        Some(Ok(tablet)) => break Ok(tablet),
                        Some(Err(e)) if since.elapsed() < Duration::from_secs(2) => {
                            eprintln!("attempt {i}, try {tries}: {e}");
                        }
                        Some(Err(e)) => break Err(e),
                        None => break Err("no registration within 2 s".into()),
                    }
                };
                let took = since.elapsed();
                match result {
                    Ok(tablet) => {
                        latencies.push((took, tries));
                        tablet.close().await;
                    }
                    Err(e) => failures.push(format!("attempt {i} ({tries} tries): {e}")),
                }
                next += Duration::from_secs(1);
                Timer::at(next).await;
            }
        });
        stop.store(true, Ordering::Relaxed);
        let totals: Vec<(u64, u64)> = attackers
            .into_iter()
            .map(|a| a.join().expect("attacker thread"))
            .collect();
        let worst = latencies.iter().map(|(t, _)| *t).max().unwrap_or_default();
        let retried = latencies.iter().filter(|(_, n)| *n > 1).count();
        let mut sorted: Vec<Duration> = latencies.iter().map(|(t, _)| *t).collect();
        sorted.sort();
        eprintln!("hoarding: latencies {sorted:?}");
        eprintln!(
            "hoarding: {} attempts registered, {} failed, {retried} needed a second try, \
             worst {worst:?}; attackers (sockets held, opened): {totals:?}",
            latencies.len(),
            failures.len(),
        );
        assert!(failures.is_empty(), "{failures:#?}");
        assert!(latencies.len() >= 15, "only {} attempts", latencies.len());
        for (held, _) in &totals {
            assert!(
                *held > 8,
                "an attacker held only {held} sockets: {totals:?}"
            );
        }
    });
    let log = server.log();
    assert!(
        log.contains("evicted unregistered socket from 127.0.0."),
        "no eviction was logged"
    );
}

#[test]
fn one_address_holds_at_most_8_unregistered_sockets() {
    let server = start_server(&["--max-peers", "8"]);
    run(async {
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(tls_from(&server, local(2)).await.expect("TLS from .2"));
        }
        // The 9th is closed at once, long before the 10 s handshake timeout.
        let mut ninth = connect_from(local(2), server.addr).await.unwrap();
        let took = closed_within(&mut ninth, patience()).await;
        assert!(
            took.is_some_and(|t| t < Duration::from_secs(2)),
            "the 9th socket was held: {took:?}"
        );
        server.wait_log("refused a socket from 127.0.0.2");
        // Other addresses are not affected, and every held socket is still open.
        let (status, _, _) = server.get("/healthz").await;
        assert_eq!(status, 200);
        let mut other = tls_from(&server, local(3)).await.expect("TLS from .3");
        let port = server.addr.port();
        let request = format!("HEAD / HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n");
        other.write_all(request.as_bytes()).await.unwrap();
        other.flush().await.unwrap();
        assert_eq!(response_status(&mut other).await, 200);
        for tls in &mut held {
            assert_eq!(closed_within(tls, Duration::from_millis(20)).await, None);
        }
        // A socket that registers no longer counts: .2 may open one more.
        let tablet = register_on(&server, held.remove(0), "door").await.unwrap();
        let _another = tls_from(&server, local(2))
            .await
            .expect("room after one registered");
        let mut over = connect_from(local(2), server.addr).await.unwrap();
        assert!(closed_within(&mut over, patience()).await.is_some());
        tablet.close().await;
    });
}

#[test]
fn many_tablets_behind_one_address_all_register() {
    let server = start_server(&["--max-peers", "16", "--max-per-ip", "2"]);
    run(async {
        let mut tablets = Vec::new();
        for i in 0..12 {
            let t = register_from(&server, local(5), &format!("tablet-{i}"))
                .await
                .unwrap_or_else(|e| panic!("tablet {i}: {e}"));
            tablets.push(t);
        }
        assert_eq!(server.health().await["peers"], 12);
        // And their address may still open its unregistered sockets.
        let _a = tls_from(&server, local(5)).await.expect("first");
        let _b = tls_from(&server, local(5)).await.expect("second");
        for t in tablets {
            t.close().await;
        }
    });
}

#[test]
fn tablets_evict_from_the_address_holding_the_most() {
    // max-peers 2, 8 per address: 18 sockets, all held unregistered by three addresses.
    let server = start_server(&["--max-peers", "2"]);
    run(async {
        let mut idle = Vec::new();
        for (last, n) in [(2, 8), (3, 8), (4, 2)] {
            for _ in 0..n {
                idle.push(tls_from(&server, local(last)).await.expect("TLS"));
            }
        }
        // Each tablet evicts one socket, and only one: the oldest of the address holding
        // the most (.2 and .3 hold 8 each, the oldest is .2's first; then .3 holds more).
        let a = register_from(&server, local(5), "a").await.expect("a");
        let b = register_from(&server, local(6), "b").await.expect("b");
        for (i, tls) in idle.iter_mut().enumerate() {
            let gone = i == 0 || i == 8;
            let closed = closed_within(tls, Duration::from_millis(if gone { 1000 } else { 20 }));
            assert_eq!(closed.await.is_some(), gone, "socket {i}");
        }
        server.wait_log("evicted unregistered socket from 127.0.0.2");
        server.wait_log("evicted unregistered socket from 127.0.0.3");
        // Registered peers are never evicted: a third tablet gets in (evicting .2's
        // oldest remaining socket) and is told the table is full; a and b stay.
        let c = register_from(&server, local(7), "c").await;
        assert!(matches!(&c, Err(e) if e.contains("full")), "{:?}", c.err());
        assert!(closed_within(&mut idle[1], patience()).await.is_some());
        assert_eq!(server.health().await["peers"], 2);
        a.close().await;
        b.close().await;
    });
}

#[test]
fn keep_alive_is_cut_when_idle_and_after_100_requests() {
    let server = start_server(&[]);
    let port = server.addr.port();
    run(async {
        let request = format!("HEAD / HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n");
        // Idle: a second request 1 s after the first is served; then silence is cut
        // about 5 s later (well before the 10 s handshake timeout).
        let mut tls = tls_from(&server, local(6)).await.unwrap();
        for _ in 0..2 {
            tls.write_all(request.as_bytes()).await.unwrap();
            tls.flush().await.unwrap();
            assert_eq!(response_status(&mut tls).await, 200);
            assert_eq!(closed_within(&mut tls, Duration::from_secs(1)).await, None);
        }
        let took = closed_within(&mut tls, Duration::from_secs(15))
            .await
            .expect("idle keep-alive never closed");
        assert!(
            (Duration::from_secs(3)..Duration::from_secs(8)).contains(&took),
            "closed after {took:?} (+1 s)"
        );

        // 101 requests in one go: 100 answers, the last saying close, then the end.
        let mut tls = tls_from(&server, local(6)).await.unwrap();
        tls.write_all(request.repeat(101).as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let mut raw = Vec::new();
        let read = tls.read_to_end(&mut raw).or(async {
            Timer::after(patience()).await;
            Err(std::io::ErrorKind::TimedOut.into())
        });
        read.await.expect("the connection closes after 100 answers");
        let text = String::from_utf8_lossy(&raw);
        let answers: Vec<&str> = text.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 100);
        assert!(answers[..99].iter().all(|a| a.starts_with("200 ")));
        assert!(
            !answers[98]
                .to_ascii_lowercase()
                .contains("connection: close")
        );
        assert!(
            answers[99]
                .to_ascii_lowercase()
                .contains("connection: close")
        );
    });
}

#[test]
fn plain_http_hoarding_does_not_block_a_fresh_client() {
    let server = start_server(&["--http-listen", "127.0.0.1:0"]);
    let plain = server.plain_addr();
    run(async {
        // Three addresses try to hold 10 idle sockets each: 24 get in, 16 stay.
        let mut idle = Vec::new();
        for last in [2, 3, 4] {
            for _ in 0..10 {
                idle.push(connect_from(local(last), plain).await.unwrap());
            }
        }
        for round in 0..3 {
            let since = Instant::now();
            let mut tcp = connect_from(local(9), plain).await.unwrap();
            tcp.write_all(b"GET /ca.crt HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await
                .unwrap();
            let mut raw = Vec::new();
            let read = tcp.read_to_end(&mut raw).or(async {
                Timer::after(patience()).await;
                Err(std::io::ErrorKind::TimedOut.into())
            });
            read.await.expect("a fresh client is answered");
            let took = since.elapsed();
            assert!(
                raw.starts_with(b"HTTP/1.1 200 "),
                "round {round}: {}",
                String::from_utf8_lossy(&raw)
            );
            assert!(raw.ends_with(&server.ca_pem), "round {round}");
            assert!(took < Duration::from_secs(2), "round {round}: {took:?}");
        }
        server.wait_log("plain HTTP: evicted unregistered socket from 127.0.0.");
    });
}
