//! The accept loops and the state they share. [`run`] takes already-bound listeners, so
//! tests bind port 0 and a service manager could hand sockets over.
//!
//! Everything runs on one `LocalExecutor` on the calling thread. Each accepted socket gets
//! its own task; TLS and the request head happen inside that task under
//! `--handshake-timeout`, never in the accept loop, so one slow client stalls no one.

use crate::config::Config;
use crate::http::{self, Head, HeadError, HttpCtx, Response, Route, Www};
use crate::peers::Peers;
use crate::session::{self, Link};
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
            r#"{{"status":"ok","peers":{},"connections":{},"uptime_s":{},"version":"{}"}}"#,
            self.peers.borrow().len(),
            self.websockets(),
            self.started.elapsed().as_secs(),
            env!("CARGO_PKG_VERSION"),
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

async fn accept_loop<'ex>(ex: &'ex LocalExecutor<'ex>, shared: Rc<Shared>, listener: TcpListener) {
    let sockets = Rc::new(Cell::new(0usize));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("accept failed: {e}");
                Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        if sockets.get() >= shared.cfg.max_sockets() {
            log::debug!("socket cap reached: refusing a connection");
            drop(stream);
            continue;
        }
        sockets.set(sockets.get() + 1);
        let open = Open(sockets.clone());
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        ex.spawn(async move {
            connection(ex, shared, stream, peer.ip()).await;
            drop(open);
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
    peer: std::net::IpAddr,
) {
    let timeout = shared.cfg.handshake_timeout;
    let tls = async { shared.acceptor.accept(tcp).await.map_err(Some) }
        .or(async {
            Timer::after(timeout).await;
            Err(None)
        })
        .await;
    let mut tls = match tls {
        Ok(s) => s,
        Err(e) => {
            log::debug!(
                "TLS handshake failed: {}",
                e.map_or("timeout".into(), |e| e.to_string())
            );
            return;
        }
    };
    let mut buf = Vec::with_capacity(1024);
    loop {
        let head = http::read_head(&mut tls, &mut buf)
            .or(async {
                Timer::after(timeout).await;
                Err(HeadError::Closed)
            })
            .await;
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
                if tls.write_all(reply.as_bytes()).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
                let part = buf.split_off(len);
                session::run(ex, shared, tls, part, peer).await;
                return;
            }
            Route::Respond(resp) => {
                log_request(&head, &resp);
                if http::write_response(&mut tls, &resp).await.is_err() || resp.close {
                    let _ = tls.close().await;
                    return;
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
    let _ = http::write_response(io, &Response::error(status)).await;
    let _ = io.close().await;
}

/// The optional plain-HTTP port: the CA, the install guide, redirects to HTTPS.
async fn plain_loop<'ex>(
    ex: &'ex LocalExecutor<'ex>,
    shared: Rc<Shared>,
    listener: TcpListener,
    https_port: u16,
) {
    let sockets = Rc::new(Cell::new(0usize));
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            Timer::after(Duration::from_millis(100)).await;
            continue;
        };
        if sockets.get() >= crate::config::EXTRA_SOCKETS {
            continue;
        }
        sockets.set(sockets.get() + 1);
        let open = Open(sockets.clone());
        let shared = shared.clone();
        ex.spawn(async move {
            let timeout = shared.cfg.handshake_timeout;
            let mut buf = Vec::with_capacity(512);
            let work = async {
                match http::read_head(&mut tcp, &mut buf).await {
                    Ok((head, _)) => {
                        let mut r = http::route_plain(&head, shared.ca_pem.as_deref(), https_port);
                        r.close = true;
                        let _ = http::write_response(&mut tcp, &r).await;
                    }
                    Err(e) => head_error(&mut tcp, e).await,
                }
            };
            work.or(async {
                Timer::after(timeout).await;
            })
            .await;
            drop(open);
        })
        .detach();
    }
}
