//! Faults, the way a flaky LAN and a hostile device produce them, each while 16 peers keep
//! calls relaying sequence-numbered signals. After every fault the server still answers
//! `/healthz`, no relayed signal was lost or reordered, and no file descriptor leaked.

mod support;

use async_native_tls::{Certificate, TlsConnector, TlsStream};
use async_tungstenite::tungstenite::Message;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt, StreamExt};
use serde_json::{Value, json};
use smol::Timer;
use smol::net::TcpStream;
use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use support::{Client, Closed, Server, call_pair, is_presence, patience, run, start_server};

/// Relaying pairs kept busy during every fault (16 peers).
const PAIRS: usize = 8;
/// Each relaying peer sends one signal this often (50 msg/s, well under the rate limit).
const RELAY_EVERY: Duration = Duration::from_millis(20);

/// What one relaying direction saw.
#[derive(Debug, Default)]
struct Tally {
    sent: Cell<u64>,
    got: Cell<u64>,
    done: Cell<bool>,
}

/// Keep `PAIRS` calls relaying until `stop`; returns the problems seen (empty when every
/// signal arrived once and in order) and the number of signals relayed.
fn relay_until(
    server: &Server,
    stop: &AtomicBool,
    ready: std::sync::mpsc::Sender<()>,
) -> (Vec<String>, u64) {
    smol::block_on(async {
        let ex = smol::LocalExecutor::new();
        let (mut senders, mut checkers) = (Vec::new(), Vec::new());
        let mut tallies = Vec::new();
        for i in 0..PAIRS {
            let (a, b) = call_pair(server, &format!("relay-a{i}"), &format!("relay-b{i}")).await;
            let (ab, ba) = (Rc::new(Tally::default()), Rc::new(Tally::default()));
            tallies.push(ab.clone());
            tallies.push(ba.clone());
            let (a_tx, a_rx) = a.ws.split();
            let (b_tx, b_rx) = b.ws.split();
            let (an, bn) = (a.name.clone(), b.name.clone());
            senders.push(ex.spawn(send_signals(a_tx, bn.clone(), ab.clone(), stop)));
            senders.push(ex.spawn(send_signals(b_tx, an.clone(), ba.clone(), stop)));
            checkers.push(ex.spawn(check_signals(b_rx, an, ab)));
            checkers.push(ex.spawn(check_signals(a_rx, bn, ba)));
        }
        let _ = ready.send(());
        let mut problems = Vec::new();
        // Every half is kept until all are done: a connection dropped early would hang
        // up its partner's call.
        let mut halves = Vec::new();
        ex.run(async {
            for t in senders {
                let (result, tx) = t.await;
                problems.extend(result.err());
                halves.push(Box::new(tx) as Box<dyn std::any::Any>);
            }
            for t in checkers {
                let (result, rx) = t.await;
                problems.extend(result.err());
                halves.push(Box::new(rx));
            }
        })
        .await;
        for t in &tallies {
            if t.got.get() != t.sent.get() || t.sent.get() == 0 {
                problems.push(format!(
                    "sent {} signals, {} arrived",
                    t.sent.get(),
                    t.got.get()
                ));
            }
        }
        (problems, tallies.iter().map(|t| t.got.get()).sum())
    })
}

type Tx = async_tungstenite::WebSocketSender<TlsStream<TcpStream>>;
type Rx = async_tungstenite::WebSocketReceiver<TlsStream<TcpStream>>;

async fn send_signals(
    mut tx: Tx,
    to: String,
    tally: Rc<Tally>,
    stop: &AtomicBool,
) -> (Result<(), String>, Tx) {
    let result = send_until(&mut tx, &to, &tally, stop).await;
    tally.done.set(true);
    (result, tx)
}

async fn send_until(tx: &mut Tx, to: &str, tally: &Tally, stop: &AtomicBool) -> Result<(), String> {
    let mut at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let seq = tally.sent.get();
        let msg = json!({"type": "signal", "to": to, "data": {"seq": seq,
            "candidate": "candidate:1 1 udp 2122260223 192.168.1.20 54321 typ host"}});
        tx.send(Message::text(msg.to_string()))
            .await
            .map_err(|e| format!("to {to}: send failed after {seq}: {e}"))?;
        tally.sent.set(seq + 1);
        at += RELAY_EVERY;
        Timer::at(at).await;
    }
    Ok(())
}

async fn check_signals(mut rx: Rx, from: String, tally: Rc<Tally>) -> (Result<(), String>, Rx) {
    let result = check_until_done(&mut rx, &from, &tally).await;
    (result, rx)
}

async fn check_until_done(rx: &mut Rx, from: &str, tally: &Tally) -> Result<(), String> {
    let mut last = Instant::now();
    loop {
        if tally.done.get() && tally.got.get() == tally.sent.get() {
            return Ok(());
        }
        if last.elapsed() > patience() {
            return Err(format!("from {from}: nothing for {:?}", patience()));
        }
        let next = async { Some(rx.next().await) }
            .or(async {
                Timer::after(Duration::from_millis(50)).await;
                None
            })
            .await;
        let text = match next {
            None => continue,
            Some(Some(Ok(Message::Text(t)))) => t,
            Some(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Some(other) => return Err(format!("from {from}: connection ended: {other:?}")),
        };
        last = Instant::now();
        let m: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        match m["type"].as_str() {
            _ if is_presence(&m) => {}
            Some("signal") if m["from"] == from => {
                let want = tally.got.get();
                if m["data"]["seq"] != json!(want) {
                    return Err(format!("from {from}: expected seq {want}, got {m}"));
                }
                tally.got.set(want + 1);
            }
            _ => return Err(format!("from {from}: unexpected {m}")),
        }
    }
}

/// Start a server with `args`, keep 16 peers relaying, run `fault`, then check that the
/// server answers, the relays lost nothing and every descriptor the fault used is closed.
fn with_relaying(args: &[&str], fault: impl AsyncFnOnce(&Server)) {
    // Every client here is 127.0.0.1: no per-address cap (later flags win).
    let server = start_server(&[&["--max-per-ip", "1000"], args].concat());
    let stop = AtomicBool::new(false);
    let (problems, relayed) = std::thread::scope(|s| {
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let relays = s.spawn(|| relay_until(&server, &stop, ready_tx));
        ready
            .recv_timeout(patience())
            .expect("relaying pairs set up");
        // A failing fault must still stop the relays, or the scope would wait forever.
        let _stop = StopOnDrop(&stop);
        run(async {
            let peers = PAIRS * 2;
            server
                .wait_health(|h| h["connections"] == peers && h["peers"] == peers)
                .await;
            let fds = settled_fds(&server, None).await;
            fault(&server).await;
            // Sockets the fault opened may still be closing: wait for the counts, not a clock.
            server
                .wait_health(|h| h["connections"] == peers && h["peers"] == peers)
                .await;
            settled_fds(&server, Some(fds)).await;
        });
        stop.store(true, Ordering::Relaxed);
        relays.join().expect("relay thread")
    });
    assert!(
        problems.is_empty(),
        "relaying calls were disturbed: {problems:#?}"
    );
    assert!(relayed > 0);
}

/// Sets the flag when dropped, also while unwinding.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Wait until the server's descriptor count stops changing (or reaches `want`).
async fn settled_fds(server: &Server, want: Option<usize>) -> usize {
    let until = Instant::now() + patience() * 2;
    let mut last = server.fd_count();
    let mut stable_since = Instant::now();
    loop {
        Timer::after(Duration::from_millis(20)).await;
        let now = server.fd_count();
        match want {
            Some(w) if now == w => return now,
            None if now == last && stable_since.elapsed() > Duration::from_millis(200) => {
                return now;
            }
            _ => {}
        }
        if now != last {
            stable_since = Instant::now();
            last = now;
        }
        assert!(
            Instant::now() < until,
            "file descriptors did not settle: {now} open, expected {want:?}"
        );
    }
}

fn connector(server: &Server) -> TlsConnector {
    TlsConnector::new().add_root_certificate(Certificate::from_pem(&server.ca_pem).unwrap())
}

async fn tcp(server: &Server) -> TcpStream {
    let s = TcpStream::connect(server.addr).await.expect("tcp connect");
    s.set_nodelay(true).unwrap();
    s
}

/// Read until the server closes the connection; panics if it is still open after `within`.
async fn server_closes<S: AsyncRead + Unpin>(io: &mut S, within: Duration) {
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    read_all
        .or(async {
            Timer::after(within).await;
            panic!("server kept the connection open for {within:?}");
        })
        .await;
}

/// A client WebSocket frame (masked), FIN set, with this opcode and payload.
fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut f = vec![opcode | if fin { 0x80 } else { 0 }];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Write raw bytes under the WebSocket layer of `c`.
async fn write_raw(c: &mut Client, bytes: &[u8]) {
    let io = c.ws.get_mut();
    io.write_all(bytes).await.unwrap();
    io.flush().await.unwrap();
}

/// Reads from the inner stream stop after `left` bytes: the client then drops the
/// connection in the middle of whatever it was doing.
struct Cut<S> {
    inner: S,
    left: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for Cut<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.left == 0 {
            return Poll::Ready(Err(std::io::ErrorKind::ConnectionAborted.into()));
        }
        let n = buf.len().min(self.left);
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, &mut buf[..n]);
        if let Poll::Ready(Ok(got)) = r {
            this.left -= got;
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Cut<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Reset a TCP connection instead of closing it: SO_LINGER 0, then drop.
fn reset(tcp: &TcpStream) {
    socket2::SockRef::from(tcp)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER");
}

#[test]
fn disconnect_mid_tls_handshake() {
    with_relaying(&["--handshake-timeout", "1"], async |server| {
        let tls = connector(server);
        // Cut after every few bytes of the server's first flight.
        for left in [1, 5, 40, 100, 300, 600, 1000] {
            for _ in 0..4 {
                let cut = Cut {
                    inner: tcp(server).await,
                    left,
                };
                assert!(tls.connect("localhost", cut).await.is_err());
            }
        }
        // A ClientHello that stops short, and a socket that never speaks.
        for _ in 0..10 {
            let mut s = tcp(server).await;
            s.write_all(&[
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ])
            .await
            .unwrap();
            drop(s);
            drop(tcp(server).await);
        }
    });
}

#[test]
fn disconnect_mid_request_head() {
    with_relaying(&[], async |server| {
        let port = server.addr.port();
        let head = format!(
            "GET /ws HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        for cut in (1..head.len() - 1).step_by(7) {
            let mut tls = server.tls().await;
            tls.write_all(&head.as_bytes()[..cut]).await.unwrap();
            tls.flush().await.unwrap();
        }
    });
}

#[test]
fn disconnect_mid_frame() {
    with_relaying(&[], async |server| {
        let text = json!({"type": "signal", "to": "nobody", "data": "x".repeat(3000)}).to_string();
        let whole = frame(0x1, true, text.as_bytes());
        for (i, cut) in [1, 2, 4, 8, 100, whole.len() - 1].into_iter().enumerate() {
            // Unregistered, registered, and in a call whose partner must hear of it.
            let mut c = server.client().await;
            write_raw(&mut c, &whole[..cut]).await;
            drop(c);
            let (mut c, _) = server.register(&format!("mid-{i}")).await;
            write_raw(&mut c, &whole[..cut]).await;
            drop(c);
            let (mut a, mut b) =
                call_pair(server, &format!("mid-a{i}"), &format!("mid-b{i}")).await;
            write_raw(&mut a, &whole[..cut]).await;
            drop(a);
            let hangup = b.recv_type("hangup").await;
            assert_eq!(
                hangup,
                json!({"type": "hangup", "from": format!("mid-a{i}"), "reason": "disconnected"})
            );
        }
    });
}

#[test]
fn tcp_resets() {
    with_relaying(&[], async |server| {
        for i in 0..8 {
            // After connect, after TLS, after the upgrade, after register.
            reset(&tcp(server).await);
            let tls = server.tls().await;
            reset(tls.get_ref());
            let c = server.client().await;
            reset(c.ws.get_ref().get_ref());
            let (c, _) = server.register(&format!("rst-{i}")).await;
            reset(c.ws.get_ref().get_ref());
            // In a call, with the server still writing to it.
            let (mut a, b) = call_pair(server, &format!("rst-a{i}"), &format!("rst-b{i}")).await;
            for n in 0..20 {
                a.send(json!({"type": "signal", "to": format!("rst-b{i}"), "data": {"n": n}}))
                    .await;
            }
            reset(b.ws.get_ref().get_ref());
            drop(b);
            assert_eq!(
                a.recv_type("hangup").await,
                json!({"type": "hangup", "from": format!("rst-b{i}"), "reason": "disconnected"})
            );
        }
        // A vanished client is an ordinary disconnect, not a protocol error.
        let log = server.log();
        assert!(!log.contains("closed: Protocol"), "{log}");
    });
}

#[test]
fn slow_consumer_is_cut_and_nobody_else_loses() {
    with_relaying(&["--rate", "100000", "--burst", "100000"], async |server| {
        let (x, y) = call_pair(server, "fast", "stalled").await;
        // `stalled` never reads again; its receive window is all the server can fill.
        let (mut x_tx, mut x_rx) = x.ws.split();
        let big =
            json!({"type": "signal", "to": "stalled", "data": "s".repeat(32 * 1024)}).to_string();
        let flood = async {
            for _ in 0..4000 {
                if x_tx.send(Message::text(big.clone())).await.is_err() {
                    break;
                }
            }
            Timer::after(patience()).await;
            panic!("stalled consumer was never cut");
        };
        let cut = async {
            loop {
                let Some(Ok(Message::Text(t))) = x_rx.next().await else {
                    panic!("fast lost its connection");
                };
                let m: Value = serde_json::from_str(&t).unwrap();
                if m["type"] == "hangup" {
                    return m;
                }
            }
        };
        let hangup = cut.or(flood).await;
        assert_eq!(
            hangup,
            json!({"type": "hangup", "from": "stalled", "reason": "disconnected"})
        );
        drop(y);
    });
}

#[test]
fn connection_burst_beyond_the_cap() {
    // max-peers 64: 80 sockets; 16 are the relaying peers. One address: 8 unregistered.
    let args = ["--handshake-timeout", "1", "--max-per-ip", "8"];
    with_relaying(&args, async |server| {
        let ex = smol::LocalExecutor::new();
        let attempts: Vec<_> = (0..2000)
            .map(|_| {
                ex.spawn(async {
                    let tcp = TcpStream::connect(server.addr)
                        .or(async {
                            Timer::after(patience()).await;
                            Err(std::io::ErrorKind::TimedOut.into())
                        })
                        .await
                        .ok()?;
                    // Refused sockets are closed at once, before TLS.
                    let mut probe = [0u8; 1];
                    let mut tcp = tcp;
                    let open = async { !matches!(tcp.read(&mut probe).await, Ok(0) | Err(_)) }
                        .or(async {
                            Timer::after(Duration::from_millis(300)).await;
                            true
                        })
                        .await;
                    Some((tcp, open))
                })
            })
            .collect();
        // The server's own view: it never holds more sockets than the cap allows.
        let base = server.fd_count();
        let peak = Cell::new(base);
        let results = ex
            .run(async {
                let mut out = Vec::new();
                let sample = async {
                    loop {
                        peak.set(peak.get().max(server.fd_count()));
                        Timer::after(Duration::from_millis(2)).await;
                    }
                };
                let collect = async {
                    for a in attempts {
                        out.push(a.await);
                    }
                };
                collect.or(sample).await;
                out
            })
            .await;
        let connected = results.iter().flatten().count();
        let refused = results.iter().flatten().filter(|(_, open)| !*open).count();
        // 64 free slots, plus one socket accepted and being closed at the moment of a sample.
        assert!(
            peak.get() <= base + 64 + 1,
            "server held {} descriptors, {base} before the burst",
            peak.get()
        );
        assert!(
            refused > 1000,
            "only {refused} of {connected} refused at once"
        );
        drop(results);
        // Freed slots are usable again at once.
        let (_c, reply) = server.register("after-burst").await;
        assert_eq!(reply["name"], "after-burst");
    });
}

#[test]
fn slowloris_heads_are_dropped() {
    with_relaying(&["--handshake-timeout", "1"], async |server| {
        let ex = smol::LocalExecutor::new();
        let mut lorises = Vec::new();
        for i in 0..40 {
            let mut tls = server.tls().await;
            lorises.push(ex.spawn(async move {
                let head = format!("GET /index.html HTTP/1.1\r\nHost: localhost\r\nX-Slow-{i}: ");
                let started = Instant::now();
                for b in head.bytes().chain(std::iter::repeat(b'z')) {
                    if tls.write_all(&[b]).await.is_err() || tls.flush().await.is_err() {
                        break;
                    }
                    let mut probe = [0u8; 64];
                    let closed = async { matches!(tls.read(&mut probe).await, Ok(0) | Err(_)) }
                        .or(async {
                            Timer::after(Duration::from_millis(100)).await;
                            false
                        })
                        .await;
                    if closed || started.elapsed() > patience() {
                        break;
                    }
                }
                started.elapsed()
            }));
        }
        // And sockets that never even start TLS.
        let mut silent: Vec<TcpStream> = Vec::new();
        for _ in 0..10 {
            silent.push(tcp(server).await);
        }
        let held = ex
            .run(async {
                let mut held = Vec::new();
                for l in lorises {
                    held.push(l.await);
                }
                held
            })
            .await;
        for h in held {
            assert!(h < Duration::from_secs(3), "a slow head was held for {h:?}");
        }
        for mut s in silent {
            server_closes(&mut s, Duration::from_secs(2)).await;
        }
    });
}

#[test]
fn non_tls_bytes_on_the_tls_port() {
    with_relaying(&[], async |server| {
        let junk: [&[u8]; 5] = [
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x16\x03\x01\xff\xff",
            &[0u8; 4096],
            b"SSH-2.0-OpenSSH_9.2\r\n",
        ];
        for bytes in junk.iter().cycle().take(25) {
            let mut s = tcp(server).await;
            s.write_all(bytes).await.unwrap();
            server_closes(&mut s, Duration::from_secs(2)).await;
        }
    });
}

#[test]
fn frame_claiming_2_pow_63_bytes() {
    with_relaying(&[], async |server| {
        for (i, len) in [1u64 << 63, (1u64 << 63) - 1, u64::MAX]
            .into_iter()
            .enumerate()
        {
            let (mut a, mut b) =
                call_pair(server, &format!("huge-a{i}"), &format!("huge-b{i}")).await;
            let mut head = vec![0x81, 0x80 | 127];
            head.extend_from_slice(&len.to_be_bytes());
            head.extend_from_slice(&[1, 2, 3, 4]);
            write_raw(&mut a, &head).await;
            write_raw(&mut a, &[b'x'; 512]).await;
            let (end, seen) = a.closed().await;
            assert!(
                matches!(end, Closed::Frame(1009 | 1002, _)),
                "length {len}: {end:?} after {seen:?}"
            );
            assert_eq!(
                b.recv_type("hangup").await,
                json!({"type": "hangup", "from": format!("huge-a{i}"), "reason": "disconnected"})
            );
        }
    });
}

#[test]
fn invalid_utf8_in_text_frames() {
    with_relaying(&[], async |server| {
        let bad: [&[&[u8]]; 3] = [
            &[&frame(0x1, true, b"{\"type\":\"\xc3\x28\"}")],
            &[&frame(0x1, true, &[0xff, 0xfe, 0xfd])],
            // Split across a fragment boundary: the first half is a valid prefix.
            &[
                &frame(0x1, false, b"{\"a\":\"\xe2\x82"),
                &frame(0x0, true, b"\x28\"}"),
            ],
        ];
        for (i, frames) in bad.iter().enumerate() {
            let (mut c, _) = server.register(&format!("utf8-{i}")).await;
            for f in frames.iter() {
                write_raw(&mut c, f).await;
            }
            let (end, _) = c.closed().await;
            assert_eq!(end, Closed::Frame(1007, "protocol error".into()));
        }
    });
}

#[test]
fn flood_of_10000_messages_per_second_is_rate_limited() {
    // Default limits: 100 msg/s, burst 200.
    with_relaying(&[], async |server| {
        let (flooder, mut partner) = call_pair(server, "flood", "victim").await;
        let (mut tx, mut rx) = flooder.ws.split();
        let started = Instant::now();
        let flood = async {
            let mut id = 0u32;
            let mut at = Instant::now();
            loop {
                for _ in 0..10 {
                    id += 1;
                    let m =
                        json!({"type": "signal", "to": "victim", "data": {"seq": id}, "id": id});
                    if tx.send(Message::text(m.to_string())).await.is_err() {
                        return id;
                    }
                }
                at += Duration::from_millis(1);
                Timer::at(at).await;
                if started.elapsed() > Duration::from_secs(15) {
                    return id;
                }
            }
        };
        let replies = async {
            let (mut acks, mut limited) = (0u32, 0u32);
            loop {
                match rx.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let m: Value = serde_json::from_str(&t).unwrap();
                        match m["type"].as_str() {
                            Some("ack") => acks += 1,
                            Some("error") => {
                                assert_eq!(m["code"], "rate_limited", "{m}");
                                assert!(m["id"].as_u64().is_some(), "{m}");
                                limited += 1;
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(Some(f)))) => return (acks, limited, Some(f)),
                    Some(Ok(_)) => {}
                    _ => return (acks, limited, None),
                }
            }
        };
        // The partner reads as the signals come (a partner that did not read would be
        // cut as a slow consumer, which is another test): every seq, until the hangup.
        let partner_reads = async {
            let mut seqs = Vec::new();
            loop {
                let m = partner.recv().await;
                match m["type"].as_str() {
                    Some("signal") => seqs.push(m["data"]["seq"].as_u64().unwrap()),
                    Some("hangup") => {
                        assert_eq!(
                            m,
                            json!({"type": "hangup", "from": "flood", "reason": "disconnected"})
                        );
                        return seqs;
                    }
                    _ => {}
                }
            }
        };
        let flooded = async {
            replies
                .race(async {
                    flood.await;
                    Timer::after(patience()).await;
                    panic!("flooder was never closed");
                })
                .await
        };
        let ((acks, limited, close), seqs) =
            futures_lite::future::zip(flooded, partner_reads).await;
        let lasted = started.elapsed();
        let close = close.expect("a close frame");
        assert_eq!(
            (u16::from(close.code), close.reason.as_str()),
            (1008, "rate limit")
        );
        assert!(limited > 1000, "{limited} refused");
        // Burst plus the refill rate over the flood, with slack for timing.
        let allowed = 200.0 + 100.0 * lasted.as_secs_f64() * 1.2;
        assert!(f64::from(acks) <= allowed, "{acks} accepted in {lasted:?}");
        // What was accepted reached the partner, all of it, in order.
        assert_eq!(seqs.len(), acks as usize);
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "out of order: {seqs:?}"
        );
    });
}
