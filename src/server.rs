//! The two ports: accept loops, TLS and HTTP per socket, and the hand-over of an upgraded
//! socket to `session.rs`. [`run`] takes already-bound listeners, so tests bind port 0 and
//! a service manager could hand sockets over.
//!
//! Everything runs on one `LocalExecutor` on the calling thread. Each accepted socket gets
//! its own task; TLS and the request head happen inside that task under
//! `--handshake-timeout`, never in the accept loop, so one slow client stalls no one.
//!
//! Each port keeps a [`Registry`] of its sockets: an accepted socket holds a `Slot` for
//! its whole life, and its task races everything it does against `Slot::evicted`, so a
//! socket evicted to make room closes at once, whatever state it is in.

use crate::clock::timeout;
use crate::http::{self, Head, HeadError, HttpCtx, Response, Route, Www};
use crate::session::{self, Hub};
use crate::slots::{Registry, Slot};
use crate::socket::Socket;
use crate::tls::Acceptor;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt, FutureExt};
use smol::net::{TcpListener, TcpStream};
use smol::{LocalExecutor, Timer};
use std::cell::Cell;
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

/// What the HTTP side serves besides the [`Hub`]: the web client, the CA, the TLS
/// acceptor (swapped by a certificate renewal; each handshake uses the one current then).
pub struct Server {
    pub hub: Rc<Hub>,
    pub acceptor: Acceptor,
    www: Www,
    ca_pem: Option<Vec<u8>>,
    /// The local CA's SHA-256 fingerprint, as the journal shows it.
    fingerprint: Option<String>,
    /// The plain-HTTP port, once bound: `/healthz` tells pages where the guide is.
    http_port: Cell<Option<u16>>,
}

impl Server {
    pub fn new(hub: Rc<Hub>, www: Www, tls: crate::tls::Tls) -> Rc<Server> {
        let ca = tls.ca_pem.as_deref().and_then(crate::tls::ca_summary);
        Rc::new(Server {
            fingerprint: ca.map(|c| c.0),
            hub,
            acceptor: tls.acceptor,
            www,
            ca_pem: tls.ca_pem,
            http_port: Cell::new(None),
        })
    }

    fn http_ctx<'a>(
        &'a self,
        health: &'a dyn Fn() -> String,
        owner: &'a dyn Fn(http::Owner) -> String,
    ) -> HttpCtx<'a> {
        HttpCtx {
            www: &self.www,
            ca_pem: self.ca_pem.as_deref(),
            allowed_origins: &self.hub.cfg.allow_origin,
            health,
            fingerprint: self.fingerprint.as_deref(),
            plain_port: self.http_port.get(),
            admin_key: self.hub.cfg.admin_key.as_deref(),
            owner,
        }
    }

    /// The owner's `/status.json` or `/metrics` body.
    fn owner(&self, what: http::Owner) -> String {
        let ca = self.ca_pem.as_deref().and_then(crate::tls::ca_summary);
        let facts = crate::owner::Facts {
            hub: &self.hub,
            ca: ca.as_ref().map(|(f, s)| (f.as_str(), *s)),
            cert_expires_in: self.acceptor.expires_in(),
        };
        match what {
            http::Owner::Status => crate::owner::status_json(&facts),
            http::Owner::Metrics => crate::owner::prometheus(&facts),
        }
    }
}

/// Serve until the hub is stopped, then give sessions [`SHUTDOWN_GRACE`] to close.
pub async fn run<'ex>(
    ex: &'ex LocalExecutor<'ex>,
    server: Rc<Server>,
    listener: TcpListener,
    plain: Option<TcpListener>,
) {
    let https_port = listener.local_addr().map(|a| a.port()).unwrap_or(443);
    if let Some(plain) = plain {
        server
            .http_port
            .set(plain.local_addr().ok().map(|a| a.port()));
        ex.spawn(plain_loop(ex, server.clone(), plain, https_port))
            .detach();
    }
    let hub = server.hub.clone();
    ex.spawn(async move { hub.ring_clock().await }).detach();
    let hub = &server.hub;
    // Its own task, polled only when the listener or a slot wakes it. `block_on` polls
    // the future it runs at every wake-up of the executor, and async-io's `accept`
    // takes any poll after the first for readiness: a loop in here would call `accept4`
    // and re-arm the listener at every turn of the relay.
    let accepting = ex.spawn(accept_loop(ex, server.clone(), listener));
    hub.stopped().await;
    accepting.cancel().await;
    log::info!("shutting down: closing {} connections", hub.websockets());
    let _ = timeout(SHUTDOWN_GRACE, hub.all_closed()).await;
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

async fn accept_loop<'ex>(ex: &'ex LocalExecutor<'ex>, server: Rc<Server>, listener: TcpListener) {
    let cfg = &server.hub.cfg;
    let sockets = Registry::new(cfg.max_sockets(), cfg.max_per_ip);
    loop {
        let Some((stream, slot)) = accept_slot(&listener, &sockets, "TLS").await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        slot.set_local(stream.local_addr().ok().map(|a| a.ip())); // for the TURN offer
        let server = server.clone();
        ex.spawn(async move {
            connection(&server, stream, &slot).or(slot.evicted()).await;
        })
        .detach();
    }
}

/// One socket on the TLS port: TLS, then HTTP requests (keep-alive) until one upgrades
/// to a WebSocket or the connection ends.
async fn connection(server: &Server, tcp: TcpStream, slot: &Slot) {
    let handshake = server.hub.cfg.handshake_timeout;
    let tls = match timeout(handshake, server.acceptor.accept(Socket::from(tcp))).await {
        Some(Ok(tls)) => tls,
        Some(Err(e)) => return log::debug!("{}: TLS handshake failed: {e}", slot.ip()),
        None => return log::debug!("{}: TLS handshake timed out", slot.ip()),
    };
    requests(server, server.hub.metrics.count(tls), slot).await;
}

/// HTTP requests on one TLS connection, kept alive within [`KEEPALIVE_IDLE`],
/// [`MAX_REQUESTS`] and [`KEEPALIVE_LIFETIME`], until one upgrades to a WebSocket or the
/// connection ends. Every wait is bounded: the head by `--handshake-timeout`, each write
/// by [`WRITE_TIMEOUT`].
async fn requests<S>(server: &Server, mut tls: S, slot: &Slot)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = server.hub.cfg.handshake_timeout;
    let mut buf = Vec::with_capacity(1024);
    let end_of_life = Instant::now() + KEEPALIVE_LIFETIME;
    let mut served = 0;
    loop {
        if served > 0 && buf.is_empty() {
            // Keep-alive: the next request must start soon, and within the lifetime.
            let idle = KEEPALIVE_IDLE
                .min(handshake)
                .min(end_of_life.saturating_duration_since(Instant::now()));
            if !matches!(
                timeout(idle, http::read_more(&mut tls, &mut buf)).await,
                Some(Ok(1..))
            ) {
                log::debug!(
                    "{}: keep-alive connection closed after {served} requests",
                    slot.ip()
                );
                return;
            }
        }
        let head = timeout(handshake, http::read_head(&mut tls, &mut buf))
            .await
            .unwrap_or(Err(HeadError::Closed));
        let (head, len) = match head {
            Ok(h) => h,
            Err(e) => return head_error(&mut tls, e).await,
        };
        let health = || server.hub.health(server.http_port.get()).encode();
        let owner = |what| server.owner(what);
        match http::route(&head, &server.http_ctx(&health, &owner), http::Port::Tls) {
            Route::Upgrade(accept) => {
                let reply = http::switching_protocols(&accept);
                let sent = async {
                    tls.write_all(reply.as_bytes()).await?;
                    tls.flush().await
                };
                if !matches!(timeout(WRITE_TIMEOUT, sent).await, Some(Ok(()))) {
                    return;
                }
                let read_ahead = buf.split_off(len);
                return session::run(&server.hub, tls, read_ahead, slot).await;
            }
            Route::Respond(mut resp) => {
                served += 1;
                if served >= MAX_REQUESTS || Instant::now() >= end_of_life {
                    resp.close = true;
                }
                if !respond(&mut tls, &head, &resp, slot).await || resp.close {
                    return;
                }
                buf.drain(..len);
            }
        }
    }
}

/// Write one response within [`WRITE_TIMEOUT`]; `false` when the connection must end (a
/// client that does not read gets no polite close either). Closes after a response that
/// says so.
async fn respond<S>(io: &mut S, head: &Head, resp: &Response, slot: &Slot) -> bool
where
    S: AsyncWrite + Unpin,
{
    log::debug!("{} {} -> {}", head.method, head.target, resp.status);
    match timeout(WRITE_TIMEOUT, http::write_response(io, resp)).await {
        Some(Ok(())) => {
            if resp.close {
                let _ = timeout(WRITE_TIMEOUT, io.close()).await;
            }
            true
        }
        Some(Err(e)) => {
            let (method, target) = (&head.method, &head.target);
            log::debug!("{}: {method} {target}: not written: {e}", slot.ip());
            false
        }
        None => {
            let (method, target) = (&head.method, &head.target);
            log::debug!(
                "{}: {method} {target}: not written within {WRITE_TIMEOUT:?}",
                slot.ip()
            );
            false
        }
    }
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

/// The optional plain-HTTP port: the CA, the set-up guide, redirects to HTTPS. One
/// request per connection.
async fn plain_loop<'ex>(
    ex: &'ex LocalExecutor<'ex>,
    server: Rc<Server>,
    listener: TcpListener,
    https_port: u16,
) {
    // Nothing here ever registers: every socket is evictable, and one address may hold
    // at most `--max-per-ip` of them.
    let cfg = &server.hub.cfg;
    let sockets = Registry::new(crate::config::EXTRA_SOCKETS, cfg.max_per_ip);
    loop {
        let Some((mut tcp, slot)) = accept_slot(&listener, &sockets, "plain HTTP").await else {
            continue;
        };
        let server = server.clone();
        ex.spawn(async move {
            let handshake = server.hub.cfg.handshake_timeout;
            let mut buf = Vec::with_capacity(512);
            let work = async {
                match timeout(handshake, http::read_head(&mut tcp, &mut buf)).await {
                    Some(Ok((head, _))) => {
                        let health = || String::new();
                        let owner = |_| String::new();
                        let port = http::Port::Plain { https_port };
                        if let Route::Respond(mut r) =
                            http::route(&head, &server.http_ctx(&health, &owner), port)
                        {
                            r.close = true;
                            respond(&mut tcp, &head, &r, &slot).await;
                        }
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
