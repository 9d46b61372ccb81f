//! The accept loops and the state they share. [`run`] takes already-bound listeners, so
//! tests bind port 0 and a service manager could hand sockets over.
//!
//! Everything runs on one `LocalExecutor` on the calling thread. Each accepted socket gets
//! its own task; TLS and the request head happen inside that task under
//! `--handshake-timeout`, never in the accept loop, so one slow client stalls no one.
//!
//! Each port keeps a [`Registry`] of its sockets: an accepted socket holds a `Slot` for
//! its whole life, and its task races everything it does against `Slot::evicted`, so a
//! socket evicted to make room closes at once, whatever state it is in.

use crate::config::Config;
use crate::http::{self, Head, HeadError, HttpCtx, Response, Route, Www};
use crate::peers::Peers;
use crate::session::{self, Link};
use crate::slots::{Registry, Slot};
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt, FutureExt};
use smol::channel::{self, Receiver, Sender};
use smol::net::{TcpListener, TcpStream};
use smol::{LocalExecutor, Timer};
use std::cell::{Cell, RefCell};
use std::io::Read;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long shutdown waits for connections to close before exiting anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1500);
/// Between two requests on one connection, the next must arrive within this long (and
/// within `--handshake-timeout`, if shorter).
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// Requests served on one connection; the last is answered with `Connection: close`.
pub const MAX_REQUESTS: u32 = 100;
/// How long one connection may keep asking for files; after that its next answer closes
/// it. A WebSocket, once upgraded, is not bound by this.
pub const KEEPALIVE_LIFETIME: Duration = Duration::from_secs(60);
/// How long writing one response (or the upgrade reply) may take: a client that does not
/// read cannot hold its task forever.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// `Some(value)` when `fut` finishes within `d`.
pub async fn timeout<T>(d: Duration, fut: impl Future<Output = T>) -> Option<T> {
    async { Some(fut.await) }
        .or(async {
            Timer::after(d).await;
            None
        })
        .await
}

/// State shared by every task. Only `peers` is mutable beyond counters, and its borrow
/// never crosses an `.await`.
pub struct Shared {
    pub cfg: Config,
    pub peers: RefCell<Peers<Link>>,
    pub www: Www,
    pub ca_pem: Option<Vec<u8>>,
    /// Swapped by a certificate renewal; each handshake uses the one current then.
    pub acceptor: crate::tls::Acceptor,
    /// Closed at shutdown: every session's `recv()` on it then returns at once.
    pub stop: Receiver<()>,
    /// Timers of rings started (ring id, task). Dropping a task cancels its timer; see
    /// `session::deliver`, which keeps only rings still ringing.
    pub rings: RefCell<Vec<(u64, smol::Task<()>)>>,
    /// Wrong access keys per source address, for rate-limited warnings.
    pub key_refusals: RefCell<session::KeyRefusals>,
    stop_tx: Sender<()>,
    websockets: Rc<Cell<usize>>,
    next_conn: Cell<u64>,
    started: Instant,
    urandom: RefCell<std::fs::File>,
    /// The plain-HTTP port, for `/healthz`.
    http_port: Cell<Option<u16>>,
}

/// Decrements a counter when dropped.
pub struct Open(Rc<Cell<usize>>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

impl Shared {
    pub fn new(cfg: Config, www: Www, tls: crate::tls::Tls) -> std::io::Result<Rc<Shared>> {
        let (stop_tx, stop) = channel::bounded(1);
        Ok(Rc::new(Shared {
            peers: RefCell::new(Peers::new(cfg.max_peers)),
            cfg,
            www,
            ca_pem: tls.ca_pem,
            acceptor: tls.acceptor,
            stop,
            rings: RefCell::new(Vec::new()),
            key_refusals: RefCell::new(session::KeyRefusals::default()),
            stop_tx,
            websockets: Rc::new(Cell::new(0)),
            next_conn: Cell::new(0),
            started: Instant::now(),
            urandom: RefCell::new(std::fs::File::open("/dev/urandom")?),
            http_port: Cell::new(None),
        }))
    }

    pub fn next_conn(&self) -> u64 {
        self.next_conn.set(self.next_conn.get() + 1);
        self.next_conn.get()
    }

    /// Count an open WebSocket until the returned guard drops.
    pub fn ws_opened(&self) -> Open {
        self.websockets.set(self.websockets.get() + 1);
        Open(self.websockets.clone())
    }

    pub fn websockets(&self) -> usize {
        self.websockets.get()
    }

    /// Fill `buf` from the OS random source.
    pub fn random(&self, buf: &mut [u8]) {
        if self.urandom.borrow_mut().read_exact(buf).is_err() {
            // /dev/urandom does not fail once open; fall back to OpenSSL's CSPRNG.
            let _ = openssl::rand::rand_bytes(buf);
        }
    }

    /// Begin shutdown: every session closes with 1001.
    pub fn stop(&self) {
        self.stop_tx.close();
    }

    pub fn health(&self) -> String {
        format!(
            r#"{{"status":"ok","peers":{},"connections":{},"uptime_s":{},"version":"{}","http_port":{}}}"#,
            self.peers.borrow().len(),
            self.websockets(),
            self.started.elapsed().as_secs(),
            env!("CARGO_PKG_VERSION"),
            self.http_port
                .get()
                .map_or("null".to_string(), |p| p.to_string()),
        )
    }
}

/// Serve until `stop` is called on `shared`, then give sessions [`SHUTDOWN_GRACE`] to
/// close and return.
pub async fn run<'ex>(
    ex: &'ex LocalExecutor<'ex>,
    shared: Rc<Shared>,
    listener: TcpListener,
    plain: Option<TcpListener>,
) {
    let https_port = listener.local_addr().map(|a| a.port()).unwrap_or(443);
    cap_kernel_buffers(&listener);
    if let Some(plain) = &plain {
        cap_kernel_buffers(plain);
        shared
            .http_port
            .set(plain.local_addr().ok().map(|a| a.port()));
    }
    if let Some(plain) = plain {
        ex.spawn(plain_loop(ex, shared.clone(), plain, https_port))
            .detach();
    }
    let accepting = accept_loop(ex, shared.clone(), listener);
    let stopped = async {
        let _ = shared.stop.recv().await;
    };
    accepting.or(stopped).await;
    log::info!("shutting down: closing {} connections", shared.websockets());
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while shared.websockets() > 0 && Instant::now() < deadline {
        Timer::after(Duration::from_millis(10)).await;
    }
}

/// Kernel socket buffer per direction, set on the listeners so every accepted socket
/// inherits it. The kernel doubles the figure for its bookkeeping and charges both
/// directions to the service's cgroup (`MemoryMax`); left alone, Linux grows them up to
/// `tcp_wmem`/`tcp_rmem` (4 and 6 MiB by default) for a client that stops reading, or
/// one the server stops reading from, so they would dwarf every other budget.
pub const SOCKET_BUFFER: usize = 16 * 1024;

fn cap_kernel_buffers(listener: &TcpListener) {
    use rustix::net::sockopt;
    let set = sockopt::set_socket_send_buffer_size(listener, SOCKET_BUFFER)
        .and_then(|()| sockopt::set_socket_recv_buffer_size(listener, SOCKET_BUFFER));
    if let Err(e) = set {
        log::warn!("socket buffers left at the kernel's defaults: {e}");
    }
}

/// Accept a socket and give it a slot in `sockets`, evicting or refusing as the registry
/// decides. `None` when this socket was refused (already closed) or accepting failed.
async fn accept_slot(
    listener: &TcpListener,
    sockets: &Registry,
    port: &str,
) -> Option<(TcpStream, Slot)> {
    let (stream, peer) = match listener.accept().await {
        Ok(s) => s,
        Err(e) => {
            // Out of file descriptors and the like: back off instead of spinning.
            log::warn!("accept failed on the {port} port: {e}");
            Timer::after(Duration::from_millis(100)).await;
            return None;
        }
    };
    let ip = peer.ip().to_canonical();
    // Let tasks whose sockets the client already closed see it and free their slots first:
    // a client that closes sockets and opens a new one must find them gone.
    futures_lite::future::yield_now().await;
    match sockets.admit(ip) {
        Ok(admitted) => {
            if let Some(e) = admitted.evicted {
                log::debug!(
                    "{port}: evicted unregistered socket from {} (held {:.1} s) for {ip}",
                    e.ip,
                    e.held.as_secs_f64()
                );
                // Let the evicted socket's task run and close before accepting more, so
                // evicted sockets never pile up.
                futures_lite::future::yield_now().await;
            }
            Some((stream, admitted.slot))
        }
        Err(refused) => {
            log::debug!("{port}: refused a socket from {ip}: {refused}");
            None
        }
    }
}

async fn accept_loop<'ex>(ex: &'ex LocalExecutor<'ex>, shared: Rc<Shared>, listener: TcpListener) {
    let sockets = Registry::new(shared.cfg.max_sockets(), shared.cfg.max_per_ip);
    loop {
        let Some((stream, slot)) = accept_slot(&listener, &sockets, "TLS").await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        ex.spawn(async move {
            connection(ex, shared, stream, &slot)
                .or(slot.evicted())
                .await;
        })
        .detach();
    }
}

/// One socket on the TLS port: TLS, then HTTP requests (keep-alive) until one upgrades
/// to a WebSocket or the connection ends.
async fn connection<'ex>(
    ex: &'ex LocalExecutor<'ex>,
    shared: Rc<Shared>,
    tcp: TcpStream,
    slot: &Slot,
) {
    let timeout = shared.cfg.handshake_timeout;
    let tls = async { shared.acceptor.accept(tcp).await.map_err(Some) }
        .or(async {
            Timer::after(timeout).await;
            Err(None)
        })
        .await;
    let tls = match tls {
        Ok(s) => s,
        Err(e) => {
            log::debug!(
                "TLS handshake failed: {}",
                e.map_or("timeout".into(), |e| e.to_string())
            );
            return;
        }
    };
    requests(ex, shared, tls, slot).await;
}

/// HTTP requests on one TLS connection, kept alive within [`KEEPALIVE_IDLE`],
/// [`MAX_REQUESTS`] and [`KEEPALIVE_LIFETIME`], until one upgrades to a WebSocket or the
/// connection ends. Every wait is bounded: the head by `--handshake-timeout`, each write
/// by [`WRITE_TIMEOUT`].
async fn requests<'ex, S>(ex: &'ex LocalExecutor<'ex>, shared: Rc<Shared>, mut tls: S, slot: &Slot)
where
    S: AsyncRead + AsyncWrite + Unpin + 'ex,
{
    let handshake = shared.cfg.handshake_timeout;
    let mut buf = Vec::with_capacity(1024);
    let end_of_life = Instant::now() + KEEPALIVE_LIFETIME;
    let mut served = 0;
    loop {
        if served > 0 && buf.is_empty() {
            // Keep-alive: the next request must start soon, and within the lifetime.
            let idle = KEEPALIVE_IDLE
                .min(handshake)
                .min(end_of_life.saturating_duration_since(Instant::now()));
            match timeout(idle, http::read_more(&mut tls, &mut buf)).await {
                Some(Ok(n)) if n > 0 => {}
                _ => {
                    log::debug!(
                        "{}: keep-alive connection closed after {served} requests",
                        slot.ip()
                    );
                    return;
                }
            }
        }
        let head = timeout(handshake, http::read_head(&mut tls, &mut buf))
            .await
            .unwrap_or(Err(HeadError::Closed));
        let (head, len) = match head {
            Ok(h) => h,
            Err(e) => {
                head_error(&mut tls, e).await;
                return;
            }
        };
        let health = || shared.health();
        let ctx = HttpCtx {
            www: &shared.www,
            ca_pem: shared.ca_pem.as_deref(),
            allowed_origins: &shared.cfg.allow_origin,
            health: &health,
        };
        match http::route(&head, &ctx) {
            Route::Upgrade(accept) => {
                let reply = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                let sent = async {
                    tls.write_all(reply.as_bytes()).await?;
                    tls.flush().await
                };
                if !matches!(timeout(WRITE_TIMEOUT, sent).await, Some(Ok(()))) {
                    return;
                }
                let part = buf.split_off(len);
                session::run(ex, shared, tls, part, slot).await;
                return;
            }
            Route::Respond(mut resp) => {
                served += 1;
                if served >= MAX_REQUESTS || Instant::now() >= end_of_life {
                    resp.close = true;
                }
                log_request(&head, &resp);
                let sent = timeout(WRITE_TIMEOUT, http::write_response(&mut tls, &resp)).await;
                match sent {
                    Some(Ok(())) if !resp.close => {}
                    Some(Ok(())) => {
                        let _ = timeout(WRITE_TIMEOUT, tls.close()).await;
                        return;
                    }
                    // A client that does not read gets no polite close either.
                    Some(Err(e)) => {
                        log::debug!(
                            "{}: {} {}: not written: {e}",
                            slot.ip(),
                            head.method,
                            head.target
                        );
                        return;
                    }
                    None => {
                        log::debug!(
                            "{}: {} {}: not written within {WRITE_TIMEOUT:?}: closing",
                            slot.ip(),
                            head.method,
                            head.target
                        );
                        return;
                    }
                }
                buf.drain(..len);
            }
        }
    }
}

fn log_request(head: &Head, resp: &Response) {
    log::debug!("{} {} -> {}", head.method, head.target, resp.status);
}

/// Answer a broken request head (431 or 400) where the client can still hear it.
async fn head_error<S: AsyncRead + AsyncWrite + Unpin>(io: &mut S, e: HeadError) {
    let status = match e {
        HeadError::TooLarge => 431,
        HeadError::Malformed => 400,
        HeadError::Closed => return,
    };
    let _ = timeout(
        WRITE_TIMEOUT,
        http::write_response(io, &Response::error(status)),
    )
    .await;
    let _ = timeout(WRITE_TIMEOUT, io.close()).await;
}

/// The optional plain-HTTP port: the CA, the install guide, redirects to HTTPS.
async fn plain_loop<'ex>(
    ex: &'ex LocalExecutor<'ex>,
    shared: Rc<Shared>,
    listener: TcpListener,
    https_port: u16,
) {
    // Nothing here ever registers: every socket is evictable, and one address may hold
    // at most `--max-per-ip` of them.
    let sockets = Registry::new(crate::config::EXTRA_SOCKETS, shared.cfg.max_per_ip);
    loop {
        let Some((mut tcp, slot)) = accept_slot(&listener, &sockets, "plain HTTP").await else {
            continue;
        };
        let shared = shared.clone();
        ex.spawn(async move {
            let handshake = shared.cfg.handshake_timeout;
            let mut buf = Vec::with_capacity(512);
            let work = async {
                match timeout(handshake, http::read_head(&mut tcp, &mut buf)).await {
                    Some(Ok((head, _))) => {
                        let mut r = http::route_plain(&head, shared.ca_pem.as_deref(), https_port);
                        r.close = true;
                        let _ = timeout(WRITE_TIMEOUT, http::write_response(&mut tcp, &r)).await;
                    }
                    Some(Err(e)) => head_error(&mut tcp, e).await,
                    None => {}
                }
            };
            work.or(slot.evicted()).await;
        })
        .detach();
    }
}
