//! One WebSocket's life, served by one task from start to end: open, serve until
//! something ends it, close. The task owns the stream and waits on the next frame, its
//! outbox, a kick, shutdown, an eviction and its next deadline together, so there is no
//! writer task, no lock between halves of the stream and no extra wake-up per message.
//!
//! All protocol decisions are `relay.rs`'s: this file moves bytes, keeps time and carries
//! outcomes out. The [`Hub`] is what every session shares (the peer table, the
//! configuration, shutdown, the ring clock); its borrows never cross an `.await`.

use crate::clock::timeout;
use crate::config::Config;
use crate::peers::{ConnId, Peer, Peers, fresh_token};
use crate::protocol::{ErrorCode, Health, MAX_WRONG_KEYS, ServerMsg};
use crate::relay::{self, Ctx, Effect, Effects, Inbound, Outcome, To};
use crate::slots::Slot;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, FutureExt, StreamExt, future};
use futures_util::SinkExt;
use smol::Timer;
use smol::channel::{self, Receiver, Sender};
use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// How long a closing connection may take to flush its last frames and close handshake.
const CLOSE_GRACE: Duration = Duration::from_millis(1000);
/// After a frame that broke the protocol, the client's remaining bytes are read and
/// dropped until it has been quiet this long...
const LINGER_QUIET: Duration = Duration::from_millis(100);
/// ...or has sent this much.
const LINGER_BYTES: usize = 1 << 20;
/// Over the rate limit for this long without a break → the connection is closed.
const RATE_GRACE: Duration = Duration::from_secs(5);
/// This long without a refused message is a break: the client came back under the limit.
const RATE_CALM: Duration = Duration::from_secs(1);
/// At most one warning line per source address per this long about wrong access keys.
const KEY_REPORT_EVERY: Duration = Duration::from_secs(60);
/// Source addresses whose wrong keys are being counted between warning lines.
const KEY_REPORT_ADDRESSES: usize = 32;
/// Bytes queued for every connection together may reach this many outboxes' worth: past
/// that, the connection holding the most is cut, so the worst case of the whole server
/// does not grow with the number of stalled receivers.
pub const QUEUED_TOTAL_OUTBOXES: usize = 16;
/// Events handled back to back before the session flushes and lets other tasks run.
const READY_BEFORE_YIELD: u32 = 32;
/// Messages found queued together are written as one TLS record of up to this many bytes
/// (one `sendto`), instead of one record and one send each.
pub const WRITE_BATCH: usize = 16 * 1024;

/// WebSocket limits sized for small signaling messages: a 4 KiB read buffer; writes
/// gathered up to [`WRITE_BATCH`] until the session flushes.
pub fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(WRITE_BATCH)
        .max_write_buffer_size(WRITE_BATCH + max_message + 1024)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Why someone else ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// A resume with the right token took over the name (4001).
    Replaced,
    /// A relay found the outbox full (1008).
    SlowConsumer,
}

/// How the peer table reaches a connection: its outbox (bounded by count and by bytes),
/// its kick channel, and the mark that a presence update found the outbox half full.
#[derive(Debug, Clone)]
pub struct Link {
    outbox: Sender<Utf8Bytes>,
    kick: Sender<Kick>,
    stale: Rc<Cell<bool>>,
    /// Bytes queued for the connection and not yet flushed into TLS: the outbox, and
    /// what waits in the WebSocket write buffer of a client that stopped reading.
    queued: Rc<Cell<usize>>,
    budget: usize,
    /// Bytes queued for every connection together (shared by all links).
    total: Rc<Cell<usize>>,
}

impl Link {
    /// Whether the outbox is at least half full, by count or by bytes: presence no
    /// longer fits.
    fn half_full(&self) -> bool {
        let count = self.outbox.len() >= (self.outbox.capacity().unwrap_or(2) / 2).max(1);
        count || self.queued.get() >= self.budget / 2
    }

    /// Queue without waiting; `false` when the message does not fit `limit` bytes or
    /// the outbox is full.
    fn try_queue(&self, text: Utf8Bytes, limit: usize) -> bool {
        let len = text.len();
        if self.queued.get() + len > limit || self.outbox.try_send(text).is_err() {
            return false;
        }
        self.add(len as isize);
        true
    }

    /// Count bytes in (positive) or out (negative) of this outbox and of the total.
    fn add(&self, n: isize) {
        for c in [&self.queued, &self.total] {
            c.set(c.get().saturating_add_signed(n));
        }
    }

    /// Cut this connection: it is not keeping up.
    fn cut(&self) {
        let _ = self.kick.try_send(Kick::SlowConsumer);
    }
}

/// Wrong access keys per source address, so refusals are logged as a count at most once
/// a minute per address, never as one line per guess. Bounded: the address reported
/// longest ago makes room for a new one.
#[derive(Debug, Default)]
pub struct KeyRefusals {
    seen: heapless::Vec<(IpAddr, Instant, u32), KEY_REPORT_ADDRESSES>,
}

impl KeyRefusals {
    /// Count a refusal from `ip`; returns the count to report when a line is due.
    pub fn count(&mut self, ip: IpAddr, now: Instant) -> Option<u32> {
        if let Some(e) = self.seen.iter_mut().find(|e| e.0 == ip) {
            e.2 += 1;
            if now.duration_since(e.1) < KEY_REPORT_EVERY {
                return None;
            }
            let n = e.2;
            (e.1, e.2) = (now, 0);
            return Some(n);
        }
        if self.seen.is_full() {
            let oldest = (0..self.seen.len()).min_by_key(|&i| self.seen[i].1);
            if let Some(i) = oldest {
                self.seen.swap_remove(i);
            }
        }
        let _ = self.seen.push((ip, now, 0));
        Some(1)
    }
}

/// What every session shares: the configuration, the peer table, shutdown and the ring
/// clock. Built once in `main`; the HTTP side (`server.rs`) holds one and knows nothing of
/// its inside.
pub struct Hub {
    pub cfg: Config,
    peers: RefCell<Peers<Link>>,
    /// Closed at shutdown: every session's `recv()` on it then returns at once.
    stop: (Sender<()>, Receiver<()>),
    /// Told when a ring starts, so the ring clock looks at the deadlines again.
    rings: (Sender<()>, Receiver<()>),
    /// Told when the last WebSocket closes.
    idle: (Sender<()>, Receiver<()>),
    key_refusals: RefCell<KeyRefusals>,
    /// Bytes queued for every connection together.
    queued_total: Rc<Cell<usize>>,
    websockets: Cell<usize>,
    next_conn: Cell<ConnId>,
    started: Instant,
    /// Registered stations, for the TURN relay (stations.rs).
    pub stations: crate::stations::Stations,
    /// Counters for the owner's page and `/metrics` (fed by the `metrics.` lines below).
    pub metrics: crate::metrics::Metrics,
}

/// Counts an open WebSocket until dropped.
struct Counted<'h>(&'h Hub);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        let left = self.0.websockets.get() - 1;
        self.0.websockets.set(left);
        if left == 0 {
            let _ = self.0.idle.0.try_send(());
        }
    }
}

impl Hub {
    pub fn new(cfg: Config) -> Hub {
        Hub {
            peers: RefCell::new(Peers::new(cfg.max_peers)),
            cfg,
            stop: channel::bounded(1),
            rings: channel::bounded(1),
            idle: channel::bounded(1),
            key_refusals: RefCell::default(),
            queued_total: Rc::default(),
            websockets: Cell::new(0),
            next_conn: Cell::new(0),
            started: Instant::now(),
            stations: Default::default(),
            metrics: Default::default(),
        }
    }

    /// Begin shutdown: every session closes with 1001.
    pub fn stop(&self) {
        self.stop.0.close();
    }

    /// Resolves once [`Hub::stop`] was called.
    pub async fn stopped(&self) {
        let _ = self.stop.1.recv().await;
    }

    /// Open WebSockets.
    pub fn websockets(&self) -> usize {
        self.websockets.get()
    }

    /// Resolves when no WebSocket is open.
    pub async fn all_closed(&self) {
        while self.websockets.get() > 0 {
            let _ = self.idle.1.recv().await;
        }
    }

    /// What `/healthz` reports; `http_port` is the plain-HTTP port, if any.
    pub fn health(&self, http_port: Option<u16>) -> Health {
        Health {
            http_port,
            status: "ok",
            peers: self.peers.borrow().len(),
            connections: self.websockets(),
            uptime_s: self.started.elapsed().as_secs(),
            version: env!("CARGO_PKG_VERSION"),
            turn_allocations: self.stations.allocations.get(),
        }
    }

    /// The peer table, read by the owner's page; the borrow ends with `f`.
    pub(crate) fn with_peers<T>(&self, f: impl FnOnce(&Peers<Link>) -> T) -> T {
        f(&self.peers.borrow())
    }

    /// Ends unanswered rings at their deadlines. One task for every ring, spawned once;
    /// it sleeps until the earliest deadline or until a new ring starts.
    pub async fn ring_clock(&self) {
        loop {
            let next = relay::next_deadline(&self.peers.borrow());
            let started = async {
                let _ = self.rings.1.recv().await;
            };
            match next {
                Some(at) => {
                    let due = async {
                        Timer::at(at).await;
                    };
                    started.or(due).await
                }
                None => started.await,
            }
            loop {
                let ended = relay::expire(&mut self.peers.borrow_mut(), Instant::now());
                if ended.effects.is_empty() {
                    break;
                }
                if ended.missed {
                    self.metrics.missed();
                }
                self.deliver(ended.effects);
            }
        }
    }

    /// Bytes all outboxes together may hold.
    fn queued_budget(&self) -> usize {
        self.cfg.outbox_bytes * QUEUED_TOTAL_OUTBOXES
    }

    /// Carry out effects for others: queued without waiting; a relay that does not fit
    /// its receiver's outbox cuts that receiver, never the sender; one that does not fit
    /// the total cuts whoever holds the most. Presence takes at most half an outbox, and
    /// where it does not fit, the receiver gets the whole list once its outbox has drained.
    fn deliver(&self, effects: Effects<Link>) {
        let peers = self.peers.borrow();
        for effect in effects {
            match effect {
                Effect::Send {
                    to: To::Peer(name),
                    text,
                } => {
                    if let Some(p) = peers.by_name(&name) {
                        self.relay_to(&peers, p, text.into());
                    }
                }
                Effect::Send {
                    to: To::Marked,
                    text,
                } => {
                    let text = Utf8Bytes::from(text);
                    for p in peers.iter().filter(|p| p.marked) {
                        self.relay_to(&peers, p, text.clone());
                    }
                }
                Effect::Send {
                    to: To::AllExcept(name),
                    text,
                } => {
                    let text = Utf8Bytes::from(text);
                    for p in peers.iter().filter(|p| p.name != name) {
                        self.presence_to(p, text.clone());
                    }
                }
                Effect::Rosters => {
                    for p in peers.iter() {
                        if let Some(text) = relay::roster(&peers, p.conn) {
                            self.presence_to(p, text.into());
                        }
                    }
                }
                Effect::Replace(old) => {
                    let _ = old.kick.try_send(Kick::Replaced);
                }
            }
        }
    }

    /// Queue a relayed message for `p`: one that does not fit its outbox cuts `p`, one
    /// that does not fit the total cuts whoever holds the most.
    fn relay_to(&self, peers: &Peers<Link>, p: &Peer<Link>, text: Utf8Bytes) {
        let link = &p.link;
        if self.queued_total.get() + text.len() > self.queued_budget() {
            // Everyone together holds too much: the largest queue belongs to the
            // connection that reads least; a tablet that keeps up holds next to nothing.
            let largest = peers.iter().max_by_key(|p| p.link.queued.get());
            if let Some(laggard) = largest {
                log::debug!(
                    "queued bytes over the total: cutting connection {}",
                    laggard.conn
                );
                laggard.link.cut();
                if laggard.conn == p.conn {
                    return;
                }
            }
        }
        if !link.outbox.is_closed() && !link.try_queue(text, link.budget) {
            link.cut();
        }
    }

    /// Queue presence for `p` in at most half its outbox; where it does not fit, `p`
    /// gets the whole list once its outbox has drained.
    fn presence_to(&self, p: &Peer<Link>, text: Utf8Bytes) {
        let link = &p.link;
        let room = self.queued_total.get() + text.len() <= self.queued_budget();
        let fits = room && !link.half_full() && link.try_queue(text, link.budget / 2);
        if !fits && !link.stale.replace(true) {
            log::debug!("connection {}: outbox half full, presence dropped", p.conn);
        }
    }

    /// A connection is gone: free its name, tell its partner and everyone else.
    fn disconnect(&self, conn: ConnId) {
        self.stations.offline(conn, Instant::now()); // TURN credentials: 60 s more
        let effects = relay::disconnect(&mut self.peers.borrow_mut(), conn);
        self.deliver(effects);
    }
}

/// Why a session ended; decides the close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The socket died or ended without a close frame.
    Gone,
    /// The client sent a close frame: answered with its code (or 1002 for a code it may
    /// not send) by the WebSocket library.
    Closed,
    /// Nothing received within `--idle-timeout`: dropped.
    Idle,
    /// No `register` within `--register-timeout` (4000).
    RegisterTimeout,
    /// The socket's slot was taken for a newcomer while unregistered: dropped.
    Evicted,
    /// The third wrong access key on this connection (1008).
    Unauthorized,
    Kicked(Kick),
    /// A message over `--max-message` (1009).
    TooLarge,
    /// Still over the rate limit after [`RATE_GRACE`] (1008).
    RateLimit,
    /// Broken framing (1002) or invalid UTF-8 in a text frame (1007).
    Protocol(CloseCode),
    /// The server is stopping (1001).
    Shutdown,
}

impl End {
    /// The close frame to send, if any.
    fn close_frame(self) -> Option<CloseFrame> {
        let (code, reason) = match self {
            End::Gone | End::Closed | End::Idle | End::Evicted => return None,
            End::Unauthorized => (CloseCode::Policy, "unauthorized"),
            End::Kicked(Kick::Replaced) => (CloseCode::Library(4001), "replaced"),
            End::Kicked(Kick::SlowConsumer) => (CloseCode::Policy, "slow consumer"),
            End::RegisterTimeout => (CloseCode::Library(4000), "register timeout"),
            End::TooLarge => (CloseCode::Size, "message too large"),
            End::RateLimit => (CloseCode::Policy, "rate limit"),
            End::Protocol(code) => (code, "protocol error"),
            End::Shutdown => (CloseCode::Away, "server shutting down"),
        };
        Some(CloseFrame {
            code,
            reason: reason.into(),
        })
    }
}

/// Map a read error to how the session ends.
fn read_error(e: &WsError) -> End {
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => End::TooLarge,
        WsError::Utf8(_) => End::Protocol(CloseCode::Invalid),
        // The TCP connection ended without a close frame: a tablet that slept or left.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => End::Gone,
        WsError::Protocol(_) | WsError::Capacity(_) => End::Protocol(CloseCode::Protocol),
        _ => End::Gone,
    }
}

/// A token bucket per connection.
struct RateLimit {
    tokens: f64,
    last: Instant,
    /// The first and the latest refusal of the current run of refusals. Tokens trickle
    /// in while a client floods, so some of its messages pass: only a pause in refusals
    /// ends the run, not a message that got through.
    over: Option<(Instant, Instant)>,
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Pass,
    Refuse,
    Close,
}

impl RateLimit {
    fn new(burst: f64) -> Self {
        RateLimit {
            tokens: burst,
            last: Instant::now(),
            over: None,
        }
    }

    fn check(&mut self, now: Instant, rate: f64, burst: f64) -> Verdict {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Pass;
        }
        let since = match self.over {
            Some((since, latest)) if now.duration_since(latest) < RATE_CALM => since,
            _ => now,
        };
        self.over = Some((since, now));
        if now.duration_since(since) >= RATE_GRACE {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }
}

/// The session's one timer and the deadline it is set for.
struct Clock {
    timer: Timer,
    /// `None` once the timer has fired: it must be set again.
    at: Option<Instant>,
}

impl Clock {
    fn new(at: Instant) -> Clock {
        Clock {
            timer: Timer::at(at),
            at: Some(at),
        }
    }

    /// Move the timer to `at`, unless it is set there already.
    fn set(&mut self, at: Instant) {
        if self.at != Some(at) {
            self.timer.set_at(at);
            self.at = Some(at);
        }
    }
}

/// What woke the session.
enum Event {
    Frame(Option<Result<Message, WsError>>),
    Queued(Utf8Bytes),
    Ended(End),
    Tick,
}

/// One connection's own state: what the table reaches it by, what it receives, its
/// clocks and counters.
struct Session<'a> {
    hub: &'a Hub,
    slot: &'a Slot,
    conn: ConnId,
    peer: IpAddr,
    link: Link,
    /// Pinned: it is polled as a stream, whose listener lives inside it.
    outbox: Pin<Box<Receiver<Utf8Bytes>>>,
    kicks: Receiver<Kick>,
    /// Outbox bytes fed to the WebSocket since the last flush.
    unflushed: usize,
    /// Anything at all fed since the last flush.
    unflushed_any: bool,
    rate: RateLimit,
    wrong_keys: u32,
    registered: bool,
    opened: Instant,
    last_rx: Instant,
    next_ping: Instant,
}

/// Run one WebSocket connection to completion. `read_ahead` holds bytes read past the request
/// head, if any; `slot` (which knows the source address) learns whether the connection
/// is registered, and may evict it while it is not.
pub async fn run<S>(hub: &Hub, stream: S, read_ahead: Vec<u8>, slot: &Slot)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let cfg = &hub.cfg;
    let config = Some(ws_config(cfg.max_message));
    let mut ws =
        WebSocketStream::from_partially_read(stream, read_ahead, Role::Server, config).await;
    hub.websockets.set(hub.websockets.get() + 1);
    let _counted = Counted(hub);
    let mut s = Session::open(hub, slot);
    hub.metrics.opened(s.conn, s.peer);
    let end = s.serve(&mut ws).await;
    hub.metrics
        .ended(s.conn, end.close_frame().map(|f| f.code.into()));
    // What is still queued is dropped now, not after the close grace.
    while s.outbox.try_recv().is_ok() {}
    s.link.add(-(s.link.queued.get() as isize));

    // Cleanup always runs: free the name and tell the partner and everyone else.
    hub.disconnect(s.conn);
    let conn = s.conn;
    match end {
        End::Kicked(Kick::Replaced) => log::info!("connection {conn} replaced by a resume"),
        End::Gone | End::Closed | End::Shutdown => log::debug!("connection {conn} closed: {end:?}"),
        other => log::info!("connection {conn} closed: {other:?}"),
    }
    let grace = match end {
        End::Kicked(Kick::SlowConsumer) => CLOSE_GRACE / 4,
        _ => CLOSE_GRACE,
    };
    let _ = timeout(grace, close(&mut ws, end)).await;
}

impl<'a> Session<'a> {
    fn open(hub: &'a Hub, slot: &'a Slot) -> Session<'a> {
        let cfg = &hub.cfg;
        let conn = hub.next_conn.get() + 1;
        hub.next_conn.set(conn);
        let (outbox_tx, outbox) = channel::bounded(cfg.outbox);
        let (kick, kicks) = channel::bounded(1);
        let now = Instant::now();
        Session {
            hub,
            slot,
            conn,
            peer: slot.ip(),
            link: Link {
                outbox: outbox_tx,
                kick,
                stale: Rc::new(Cell::new(false)),
                queued: Rc::new(Cell::new(0)),
                budget: cfg.outbox_bytes,
                total: hub.queued_total.clone(),
            },
            outbox: Box::pin(outbox),
            kicks,
            unflushed: 0,
            unflushed_any: false,
            rate: RateLimit::new(cfg.burst),
            wrong_keys: 0,
            registered: false,
            opened: now,
            last_rx: now,
            next_ping: now + cfg.ping_interval,
        }
    }

    /// Serve frames, the outbox and the clocks until something ends the connection.
    async fn serve<S>(&mut self, ws: &mut WebSocketStream<S>) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut ready_in_a_row = 0;
        // One timer for the session's deadlines, moved only when the next one changes:
        // registering a timer with the reactor on every wait would cost more than the
        // message it waits for.
        let mut clock = Clock::new(self.next_wake());
        // Made once for the whole session, so its listeners stay registered.
        let kicks = self.kicks.clone();
        let mut interrupted = pin!(interrupted(&kicks, self.hub, self.slot));
        loop {
            // What is ready now is handled before anything is flushed, so replies and
            // relays that pile up leave together: one TLS record, one send. A connection
            // that always has something ready still lets the other tasks run.
            ready_in_a_row += 1;
            if ready_in_a_row > READY_BEFORE_YIELD {
                ready_in_a_row = 0;
                if let Err(end) = self.flush(ws).await {
                    return end;
                }
                future::yield_now().await;
            }
            clock.set(self.next_wake());
            if self.unflushed_any {
                ready_in_a_row = 0;
                if let Err(end) = self.flush(ws).await {
                    return end;
                }
            }
            let event = self.next_event(ws, &mut clock, interrupted.as_mut()).await;
            let step = match event {
                Event::Ended(end) => Err(end),
                Event::Frame(None) => Err(End::Gone),
                Event::Frame(Some(Err(e))) => Err(read_error(&e)),
                Event::Frame(Some(Ok(msg))) => self.on_frame(ws, msg).await,
                Event::Queued(text) => self.write_queued(ws, text).await,
                Event::Tick => self.tick(ws).await,
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// The next thing to happen. Queued messages come first, so what others sent is
    /// written before the next frame is read. Polls what it waits on in place: the
    /// outbox's listener and `interrupted` stay registered from one wait to the next, so
    /// a wait costs no allocation and no trip through a shared listener list.
    fn next_event<'w, S>(
        &'w mut self,
        ws: &'w mut WebSocketStream<S>,
        clock: &'w mut Clock,
        mut interrupted: Pin<&'w mut impl Future<Output = End>>,
    ) -> impl Future<Output = Event> + 'w
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        future::poll_fn(move |cx| {
            if let Poll::Ready(queued) = self.outbox.as_mut().poll_next(cx) {
                return Poll::Ready(queued.map_or(Event::Ended(End::Shutdown), Event::Queued));
            }
            if let Poll::Ready(end) = interrupted.as_mut().poll(cx) {
                return Poll::Ready(Event::Ended(end));
            }
            if let Poll::Ready(frame) = ws.poll_next(cx) {
                return Poll::Ready(Event::Frame(frame));
            }
            if Pin::new(&mut clock.timer).poll(cx).is_ready() {
                clock.at = None;
                return Poll::Ready(Event::Tick);
            }
            Poll::Pending
        })
    }

    /// The earliest of the next ping, the idle deadline and the register deadline.
    fn next_wake(&self) -> Instant {
        let cfg = &self.hub.cfg;
        let mut wake = self.next_ping.min(self.last_rx + cfg.idle_timeout);
        if !self.registered {
            wake = wake.min(self.opened + cfg.register_timeout);
        }
        wake
    }

    /// Pings on schedule; ends the session on silence or a missing `register`.
    async fn tick<S>(&mut self, ws: &mut WebSocketStream<S>) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let cfg = &self.hub.cfg;
        let now = Instant::now();
        if !self.registered && now >= self.opened + cfg.register_timeout {
            return Err(End::RegisterTimeout);
        }
        if now >= self.last_rx + cfg.idle_timeout {
            return Err(End::Idle);
        }
        if now >= self.next_ping {
            self.next_ping = now + cfg.ping_interval;
            self.write(ws, Message::Ping(Default::default())).await?;
        }
        Ok(())
    }

    /// One frame from the client: counted, then decided by relay, then carried out.
    async fn on_frame<S>(&mut self, ws: &mut WebSocketStream<S>, msg: Message) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let hub = self.hub;
        let cfg = &hub.cfg;
        let now = Instant::now();
        self.last_rx = now;
        if let Message::Close(_) = msg {
            return Err(End::Closed);
        }
        // Every frame counts, pings included, before anything is decoded: refusing a
        // flood costs a token check and a peek at the id, whatever the message size.
        let over_rate = match self.rate.check(now, cfg.rate, cfg.burst) {
            Verdict::Close => return Err(End::RateLimit),
            verdict => verdict == Verdict::Refuse,
        };
        let text = match &msg {
            Message::Text(t) => Some(t.as_str()),
            Message::Binary(_) => None,
            _ => return Ok(()), // ping/pong: liveness only (the library answers pings)
        };
        // TURN: a `register` is offered the relay with this station's credentials.
        let local = self.slot.local();
        let offer = (!self.registered)
            .then(|| text.and_then(|t| hub.stations.offer(&cfg.ice_servers, local, t)))
            .flatten();
        let ctx = Ctx {
            access_key: cfg.access_key.as_deref(),
            ice_servers: offer.as_deref().unwrap_or(&cfg.ice_servers),
            ring_timeout: cfg.ring_timeout,
            page_timeout: cfg.page_timeout,
            now,
            fresh_token: &fresh_token,
        };
        let inbound = Inbound { text, over_rate };
        // Taken apart at once: only what is used after an `.await` is kept in the session's
        // state, not the whole outcome with its effects.
        let Outcome {
            reply,
            effects,
            wrong_key,
            happened,
        } = relay::handle(
            &mut hub.peers.borrow_mut(),
            &ctx,
            self.conn,
            &self.link,
            inbound,
        );
        hub.metrics.happened(happened);
        let was_registered = self.registered;
        self.registered = hub.peers.borrow().by_conn(self.conn).is_some();
        if self.registered != was_registered {
            self.slot.set_registered(self.registered);
        }
        if let (false, Some(p)) = (was_registered, hub.peers.borrow().by_conn(self.conn)) {
            hub.stations.online(self.conn, &p.name, self.peer); // TURN: a station's address
        }
        if happened.starts_ring() {
            let _ = hub.rings.0.try_send(());
        }
        hub.deliver(effects);
        if let Some(reply) = reply {
            // What was queued for this connection, by this message too (a presence
            // update about its own call), leaves before the answer, as it was decided.
            if let Ok(queued) = self.outbox.try_recv() {
                self.write_queued(ws, queued).await?;
            }
            self.feed(ws, Message::text(reply)).await?;
        }
        if wrong_key {
            self.wrong_keys += 1;
            if let Some(n) = hub.key_refusals.borrow_mut().count(self.peer, now) {
                log::warn!(
                    "wrong access key from {} ({n} refused since the last report)",
                    self.peer
                );
            }
            if self.wrong_keys >= MAX_WRONG_KEYS {
                self.flush(ws).await?;
                return Err(End::Unauthorized);
            }
        }
        Ok(())
    }

    /// `first`, and whatever else others queued (at most an outbox's worth, so the task
    /// still yields), fed to the WebSocket to leave with the next flush.
    async fn write_queued<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        first: Utf8Bytes,
    ) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut next = Some(first);
        for _ in 0..self.outbox.capacity().unwrap_or(1) {
            let Some(text) = next.take().or_else(|| self.outbox.try_recv().ok()) else {
                break;
            };
            self.unflushed += text.len();
            self.feed(ws, Message::Text(text)).await?;
        }
        Ok(())
    }

    /// Feed one message; a client that stops reading cannot hold the session here past a
    /// kick, shutdown, an eviction or its idle deadline.
    async fn feed<S>(&mut self, ws: &mut WebSocketStream<S>, msg: Message) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.unflushed_any = true;
        let fed = async { ws.feed(msg).await.map_err(|_| End::Gone) };
        fed.or(self.stalled()).await
    }

    /// Write and flush one message at once.
    async fn write<S>(&mut self, ws: &mut WebSocketStream<S>, msg: Message) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.feed(ws, msg).await?;
        self.flush(ws).await
    }

    /// Flush what was fed; the outbox bytes leave the budget once they are in TLS. When
    /// presence was dropped and nothing older is still queued, the whole list follows.
    async fn flush<S>(&mut self, ws: &mut WebSocketStream<S>) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let flushed = async { ws.flush().await.map_err(|_| End::Gone) };
        flushed.or(self.stalled()).await?;
        self.link.add(-(self.unflushed as isize));
        self.unflushed = 0;
        self.unflushed_any = false;
        if self.link.stale.get() && self.outbox.is_empty() {
            self.link.stale.set(false);
            let roster = relay::roster(&self.hub.peers.borrow(), self.conn);
            if let Some(text) = roster {
                log::debug!("connection {}: presence resent whole", self.conn);
                let sent = async { ws.send(Message::text(text)).await.map_err(|_| End::Gone) };
                sent.or(self.stalled()).await?;
            }
        }
        Ok(())
    }

    /// Resolves with how the session ends while a write is stuck: interrupted, or idle.
    async fn stalled(&self) -> Result<(), End> {
        let idle_at = self.last_rx + self.hub.cfg.idle_timeout;
        let end = interrupted(&self.kicks, self.hub, self.slot)
            .or(async {
                Timer::at(idle_at).await;
                End::Idle
            })
            .await;
        Err(end)
    }
}

/// What ends a session from outside: a kick, shutdown or an eviction.
async fn interrupted(kicks: &Receiver<Kick>, hub: &Hub, slot: &Slot) -> End {
    async {
        match kicks.recv().await {
            Ok(k) => End::Kicked(k),
            Err(_) => End::Shutdown,
        }
    }
    .or(async {
        hub.stopped().await;
        End::Shutdown
    })
    .or(async {
        slot.evicted().await;
        End::Evicted
    })
    .await
}

/// Say goodbye with the close frame `end` calls for (or flush the answer the library
/// queued to the client's own close), then wait for the client's side of the handshake.
async fn close<S>(ws: &mut WebSocketStream<S>, end: End)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if end == End::TooLarge {
        let err = ServerMsg::error(None, ErrorCode::TooLarge).encode();
        let _ = ws.feed(Message::text(err)).await;
    }
    let frame = end.close_frame();
    let polite = frame.is_some() && end != End::Kicked(Kick::SlowConsumer);
    let sent = match frame {
        Some(frame) => ws.close(Some(frame)).await,
        None => ws.flush().await,
    };
    if sent.is_err() || !polite {
        return;
    }
    if matches!(end, End::TooLarge | End::Protocol(_)) {
        // The frames can no longer be parsed, but what the client still sends must be
        // read: closing over unread bytes sends a reset that can overtake the close frame.
        linger(ws.get_mut()).await;
    } else {
        while let Some(Ok(_)) = ws.next().await {}
    }
}

/// Read and drop what a client that broke the protocol still sends, until it closes, goes
/// quiet for [`LINGER_QUIET`] or has sent [`LINGER_BYTES`] (all within the close grace).
async fn linger<S: AsyncRead + Unpin>(io: &mut S) {
    // On the heap: an array here would sit in every session's state, lingering or not.
    let mut buf = vec![0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        match timeout(LINGER_QUIET, io.read(&mut buf)).await {
            Some(Ok(n)) if n > 0 => total += n,
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_flood_is_closed_after_the_grace() {
        let (rate, burst) = (5.0, 5.0);
        let start = Instant::now();
        let mut r = RateLimit::new(burst);
        let mut verdicts = Vec::new();
        // Ten times the rate: a few messages still pass as tokens trickle in.
        for i in 0..=300 {
            let now = start + Duration::from_millis(20 * i);
            verdicts.push((i, r.check(now, rate, burst)));
        }
        let closed_at = verdicts
            .iter()
            .find(|(_, v)| *v == Verdict::Close)
            .unwrap()
            .0;
        assert!(
            (250..=260).contains(&closed_at),
            "closed at message {closed_at}"
        );
        assert!(verdicts.iter().any(|(i, v)| *i > 20 && *v == Verdict::Pass));
    }

    #[test]
    fn wrong_keys_are_reported_once_a_minute_per_address() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let mut r = KeyRefusals::default();
        assert_eq!(r.count(a, at(0)), Some(1));
        assert_eq!(r.count(a, at(1)), None);
        assert_eq!(r.count(b, at(2)), Some(1));
        for s in 3..59 {
            assert_eq!(r.count(a, at(s)), None);
        }
        // The line a minute later counts every refusal since the last one.
        assert_eq!(r.count(a, at(61)), Some(58));
        // The table is bounded: new addresses push out the one reported longest ago.
        for i in 0..100u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a01_0000 + i));
            assert_eq!(r.count(ip, at(100 + u64::from(i))), Some(1));
        }
        assert_eq!(r.seen.len(), KEY_REPORT_ADDRESSES);
    }

    #[test]
    fn a_pause_ends_the_run_of_refusals() {
        let start = Instant::now();
        let mut r = RateLimit::new(1.0);
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(r.check(at(0), 0.5, 1.0), Verdict::Pass);
        assert_eq!(r.check(at(10), 0.5, 1.0), Verdict::Refuse);
        // Bursts every 3 s, each over the limit, never add up to the grace.
        for burst in 1..5 {
            let t = 3000 * burst;
            assert_eq!(r.check(at(t), 0.5, 1.0), Verdict::Pass);
            assert_eq!(r.check(at(t + 10), 0.5, 1.0), Verdict::Refuse);
        }
    }
}
