//! One WebSocket's life, run to completion: set up its outbox and writer, read frames
//! until something ends it, then clean up (free the name, hang up its call, say goodbye
//! with the right close code). All protocol decisions are delegated to `relay.rs`; this
//! file only moves bytes and keeps time.
//!
//! Tasks per connection, all on the one thread: the session (reads), a writer (drains
//! the bounded outbox into the socket) and a ticker (pings, idle and register timeouts).
//! The peer table is borrowed only inside the synchronous `deliver`/`relay` calls, never
//! across an `.await`.

use crate::peers::{Call, ConnId, Token};
use crate::protocol::{ClientMsg, ErrorCode, MAX_WRONG_KEYS, Name, ServerMsg, decode, peek_id};
use crate::relay::{self, Effect, Effects, RegisterCtx, To};
use crate::server::Shared;
use crate::slots::Slot;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, FutureExt, StreamExt};
use futures_util::SinkExt;
use smol::channel::{self, Receiver, Sender};
use smol::{LocalExecutor, Timer};
use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
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

/// Something queued for a connection's writer.
#[derive(Debug)]
pub enum Out {
    Text(Utf8Bytes),
    Ping,
}

/// Why someone else ends a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// A resume with the right token took over the name (4001).
    Replaced,
    /// A relay found the outbox full (1008).
    SlowConsumer,
    /// No `register` within `--register-timeout` (4000).
    RegisterTimeout,
    /// No frame within `--idle-timeout`: dropped.
    Idle,
}

/// Half an outbox (at least one message): where a connection's reader pauses, and all that
/// presence updates may fill.
fn half(capacity: Option<usize>) -> usize {
    (capacity.unwrap_or(2) / 2).max(1)
}

/// How the peer table reaches a connection: its outbox, its kick channel, and the mark
/// that a presence update found the outbox half full.
#[derive(Debug, Clone)]
pub struct Link {
    outbox: Sender<Out>,
    kick: Sender<Kick>,
    stale: Rc<Cell<bool>>,
    /// Bytes waiting in `outbox`: the outbox is bounded by `--outbox-bytes` as well as
    /// by count, so the worst case of every connection has a fixed memory budget.
    queued: Rc<Cell<usize>>,
    budget: usize,
}

impl Link {
    /// Whether the outbox is at least half full, by count or by bytes: the owner's reader
    /// pauses, and presence no longer fits.
    fn half_full(&self) -> bool {
        self.outbox.len() >= half(self.outbox.capacity()) || self.queued.get() >= self.budget / 2
    }

    /// Queue without waiting; `false` when the message does not fit (count or bytes).
    fn try_queue(&self, text: Utf8Bytes, limit: usize) -> bool {
        let len = text.len();
        if self.queued.get() + len > limit {
            return false;
        }
        match self.outbox.try_send(Out::Text(text)) {
            Ok(()) => {
                self.queued.set(self.queued.get() + len);
                true
            }
            Err(_) => false,
        }
    }

    /// Queue a reply to the connection's own message, waiting for room by count (the
    /// reader pauses at half an outbox, so its own replies always fit the byte budget).
    async fn queue_own(&self, text: Utf8Bytes) -> bool {
        let len = text.len();
        self.queued.set(self.queued.get() + len);
        let sent = self.outbox.send(Out::Text(text)).await.is_ok();
        if !sent {
            self.queued.set(self.queued.get() - len);
        }
        sent
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

/// The writer's side of a connection.
struct WriterEnds {
    outbox: Receiver<Out>,
    close: Receiver<Option<CloseFrame>>,
    /// Told when the outbox falls below half, so a paused reader resumes.
    drained: Sender<()>,
    /// Set by [`deliver`] when a presence update was dropped: once the outbox is empty,
    /// the writer sends the whole list ([`relay::roster`]) instead.
    stale: Rc<Cell<bool>>,
    /// Bytes in the outbox, decremented as the writer takes them.
    queued: Rc<Cell<usize>>,
    budget: usize,
    conn: ConnId,
}

/// Why a session ended; decides the close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The socket died or ended without a close frame.
    Gone,
    /// The client sent a close frame: answered with its code (or 1002 for a code it may
    /// not send) by the WebSocket library, flushed by the writer.
    Closed,
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
            End::Gone | End::Closed | End::Kicked(Kick::Idle) => return None,
            End::Unauthorized => (CloseCode::Policy, "unauthorized"),
            End::Kicked(Kick::Replaced) => (CloseCode::Library(4001), "replaced"),
            End::Kicked(Kick::SlowConsumer) => (CloseCode::Policy, "slow consumer"),
            End::Kicked(Kick::RegisterTimeout) => (CloseCode::Library(4000), "register timeout"),
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

/// Messages the writer finds queued together are written as one TLS record of up to
/// this many bytes (one `sendto`), instead of one record and one send each.
pub const WRITE_BATCH: usize = 16 * 1024;

/// WebSocket limits sized for small signaling messages: a 4 KiB read buffer; writes
/// gathered up to [`WRITE_BATCH`] until the writer flushes.
pub fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(WRITE_BATCH)
        .max_write_buffer_size(WRITE_BATCH + max_message * 2 + 1024)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
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

/// Read a 192-bit resume token from the OS random source, URL-safe base64 (32 chars).
fn fresh_token(shared: &Shared) -> Token {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut raw = [0u8; 24];
    shared.random(&mut raw);
    let mut t = Token::new();
    for chunk in raw.chunks(3) {
        let n = (chunk[0] as u32) << 16 | (chunk[1] as u32) << 8 | chunk[2] as u32;
        for shift in [18, 12, 6, 0] {
            let _ = t.push(ALPHABET[(n >> shift) as usize & 63] as char);
        }
    }
    t
}

/// Carry out relay effects. Replies to the acting connection are returned for the caller
/// to queue (it may wait on its own outbox); everything else is queued without waiting,
/// and a full outbox cuts that receiver, never the sender.
pub fn deliver<'ex>(
    ex: &'ex LocalExecutor<'ex>,
    shared: &Rc<Shared>,
    fx: Effects<Link>,
    mine: &mut heapless::Vec<String, 4>,
) {
    let peers = shared.peers.borrow();
    for effect in fx {
        match effect {
            Effect::Send { to: To::Me, text } => {
                let _ = mine.push(text);
            }
            Effect::WrongKey => {}
            Effect::Send {
                to: To::Peer(name),
                text,
            } => {
                if let Some(p) = peers.by_name(&name) {
                    offer(&p.link, text.into());
                }
            }
            Effect::Send {
                to: To::AllExcept(name),
                text,
            } => {
                // Presence takes at most half an outbox, keeping the rest for relays;
                // where it does not fit, the writer sends the whole list later.
                let text = Utf8Bytes::from(text);
                for p in peers.iter().filter(|p| p.name != name) {
                    let link = &p.link;
                    let full = link.half_full() || !link.try_queue(text.clone(), link.budget / 2);
                    if full && !link.stale.replace(true) {
                        log::debug!("connection {}: outbox half full, presence dropped", p.conn);
                    }
                }
            }
            Effect::Replace(old) => {
                let _ = old.kick.try_send(Kick::Replaced);
            }
            Effect::Ring {
                caller,
                callee,
                ring,
            } => {
                let timer = ex.spawn(ring_timer(ex, shared.clone(), caller, callee, ring));
                // A timer outlives its ring when the call is answered or hung up first;
                // drop (cancel) those now, so live timers never outnumber ringing calls
                // however fast clients call and hang up.
                let mut rings = shared.rings.borrow_mut();
                rings.retain(|(r, _)| {
                    peers
                        .iter()
                        .any(|p| matches!(p.call, Call::Outgoing { ring, .. } if ring == *r))
                });
                rings.push((ring, timer));
            }
        }
    }
}

/// Queue for another connection; a full outbox (by count or bytes) means it is not
/// keeping up: cut it.
fn offer(link: &Link, text: Utf8Bytes) {
    if !link.outbox.is_closed() && !link.try_queue(text, link.budget) {
        let _ = link.kick.try_send(Kick::SlowConsumer);
    }
}

async fn ring_timer<'ex>(
    ex: &'ex LocalExecutor<'ex>,
    shared: Rc<Shared>,
    caller: Name,
    callee: Name,
    ring: u64,
) {
    Timer::after(shared.cfg.ring_timeout).await;
    let fx = relay::ring_timeout(&mut shared.peers.borrow_mut(), &caller, &callee, ring);
    deliver(ex, &shared, fx, &mut heapless::Vec::new());
}

/// The writer: drains the outbox into the socket. On a close request it writes what is
/// still queued, then the close frame, and hands the socket back.
async fn writer<S>(
    shared: Rc<Shared>,
    mut ws: async_tungstenite::WebSocketSender<S>,
    q: WriterEnds,
) -> Option<async_tungstenite::WebSocketSender<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Bytes leave the outbox's budget only once flushed into TLS, so the budget also
    // covers what waits in the WebSocket write buffer of a client that stopped reading.
    let send = |out| match out {
        Out::Text(t) => (t.len(), Message::Text(t)),
        Out::Ping => (0, Message::Ping(Default::default())),
    };
    loop {
        let next = async { q.outbox.recv().await.ok().map(Ok) }
            .or(async { q.close.recv().await.ok().map(Err) })
            .await;
        match next {
            Some(Ok(out)) => {
                // Whatever else is queued already leaves with it in one flush (one TLS
                // record, one send); at most an outbox's worth, so the task still yields.
                let (mut fed, first) = send(out);
                if ws.feed(first).await.is_err() {
                    return None;
                }
                for _ in 1..q.outbox.capacity().unwrap_or(1) {
                    let Ok(out) = q.outbox.try_recv() else { break };
                    let (bytes, msg) = send(out);
                    fed += bytes;
                    if ws.feed(msg).await.is_err() {
                        return None;
                    }
                }
                if ws.flush().await.is_err() {
                    return None;
                }
                q.queued.set(q.queued.get().saturating_sub(fed));
                if q.outbox.len() < half(q.outbox.capacity()) && q.queued.get() < q.budget / 2 {
                    let _ = q.drained.try_send(());
                }
                // Presence was dropped: once everything queued before has gone (so
                // nothing older can follow it), send the list as it is now.
                if q.stale.get() && q.outbox.is_empty() {
                    q.stale.set(false);
                    let roster = relay::roster(&shared.peers.borrow(), q.conn);
                    if let Some(text) = roster {
                        log::debug!("connection {}: presence resent whole", q.conn);
                        if ws.send(Message::text(text)).await.is_err() {
                            return None;
                        }
                    }
                }
            }
            Some(Err(frame)) => {
                // After the client's close frame nothing more may be sent but the answer
                // the library queued, which `close` flushes.
                while let Ok(out) = q.outbox.try_recv() {
                    if ws.feed(send(out).1).await.is_err() {
                        break;
                    }
                }
                // No frame of our own (the socket died, or the client closed first and
                // the library queued the answer): flush what is queued, if anything.
                let done = match frame {
                    Some(frame) => ws.close(Some(frame)).await,
                    None => ws.flush().await,
                };
                return done.is_ok().then_some(ws);
            }
            None => return None,
        }
    }
}

/// Pings on schedule and ends the session on silence or a missing `register`.
async fn ticker(
    shared: Rc<Shared>,
    outbox: Sender<Out>,
    kick: Sender<Kick>,
    last_rx: Rc<Cell<Instant>>,
    registered: Rc<Cell<bool>>,
) {
    let cfg = &shared.cfg;
    let register_by = Instant::now() + cfg.register_timeout;
    let mut next_ping = Instant::now() + cfg.ping_interval;
    loop {
        let idle_at = last_rx.get() + cfg.idle_timeout;
        let mut wake = idle_at.min(next_ping);
        if !registered.get() {
            wake = wake.min(register_by);
        }
        Timer::at(wake).await;
        let now = Instant::now();
        if !registered.get() && now >= register_by {
            let _ = kick.try_send(Kick::RegisterTimeout);
            return;
        }
        if now >= last_rx.get() + cfg.idle_timeout {
            let _ = kick.try_send(Kick::Idle);
            return;
        }
        if now >= next_ping {
            // A full outbox already keeps the socket busy; skipping a ping is harmless.
            let _ = outbox.try_send(Out::Ping);
            next_ping = now + cfg.ping_interval;
        }
    }
}

/// What woke the read loop.
enum Event {
    Frame(Option<Result<Message, WsError>>),
    Kicked(Kick),
    Stop,
    Drained,
}

/// Run one WebSocket connection to completion. `part` holds bytes read past the request
/// head, if any. `slot` is told whether the connection is registered: an unregistered
/// one may be evicted, which the caller carries out by dropping this future (nothing in
/// the peer table refers to an unregistered connection, so there is nothing to clean up).
pub async fn run<'ex, S>(
    ex: &'ex LocalExecutor<'ex>,
    shared: Rc<Shared>,
    stream: S,
    part: Vec<u8>,
    slot: &Slot,
) where
    S: AsyncRead + AsyncWrite + Unpin + 'ex,
{
    let cfg = &shared.cfg;
    let peer = slot.ip();
    let ws = WebSocketStream::from_partially_read(
        stream,
        part,
        Role::Server,
        Some(ws_config(cfg.max_message)),
    )
    .await;
    let conn = shared.next_conn();
    let _open = shared.ws_opened();
    let (sink, mut frames) = ws.split();
    let (out_tx, out_rx) = channel::bounded(cfg.outbox);
    let (kick_tx, kick_rx) = channel::bounded(1);
    let (close_tx, close_rx) = channel::bounded(1);
    let (drained_tx, drained_rx) = channel::bounded(1);
    let stale = Rc::new(Cell::new(false));
    let queued = Rc::new(Cell::new(0));
    let ends = WriterEnds {
        outbox: out_rx,
        close: close_rx,
        drained: drained_tx,
        stale: stale.clone(),
        queued: queued.clone(),
        budget: cfg.outbox_bytes,
        conn,
    };
    let writer = ex.spawn(writer(shared.clone(), sink, ends));
    let last_rx = Rc::new(Cell::new(Instant::now()));
    let registered = Rc::new(Cell::new(false));
    let ticker = ex.spawn(ticker(
        shared.clone(),
        out_tx.clone(),
        kick_tx.clone(),
        last_rx.clone(),
        registered.clone(),
    ));
    let link = Link {
        outbox: out_tx.clone(),
        kick: kick_tx,
        stale,
        queued,
        budget: cfg.outbox_bytes,
    };
    let mut rate = RateLimit::new(cfg.burst);
    let mut wrong_keys = 0;
    let stop = shared.stop.clone();

    let end = loop {
        // Backpressure: stop reading while our own outbox is half full.
        let reading = !link.half_full();
        let event = async {
            if reading {
                Event::Frame(frames.next().await)
            } else {
                let _ = drained_rx.recv().await;
                Event::Drained
            }
        }
        .or(async {
            match kick_rx.recv().await {
                Ok(k) => Event::Kicked(k),
                Err(_) => Event::Stop,
            }
        })
        .or(async {
            let _ = stop.recv().await;
            Event::Stop
        })
        .await;
        let msg = match event {
            Event::Drained => continue,
            Event::Kicked(k) => break End::Kicked(k),
            Event::Stop => break End::Shutdown,
            Event::Frame(None) => break End::Gone,
            Event::Frame(Some(Err(e))) => break read_error(&e),
            Event::Frame(Some(Ok(msg))) => msg,
        };
        let now = Instant::now();
        last_rx.set(now);
        if let Message::Close(_) = msg {
            break End::Closed;
        }
        // Every frame counts, pings included, before anything is decoded: refusing a
        // flood costs a token check and a peek at the id, whatever the message size.
        let verdict = rate.check(now, cfg.rate, cfg.burst);
        if verdict == Verdict::Close {
            break End::RateLimit;
        }
        let text = match &msg {
            Message::Text(t) => Some(t.as_str()),
            Message::Binary(_) => None,
            _ => continue, // ping/pong: liveness only (tungstenite answers pings itself)
        };
        let mut mine: heapless::Vec<String, 4> = heapless::Vec::new();
        let mut unauthorized = false;
        let decoded = match verdict {
            Verdict::Refuse => None,
            _ => Some(text.map(decode)),
        };
        match decoded {
            None => {
                let id = text.and_then(peek_id);
                let _ = mine.push(ServerMsg::error(id, ErrorCode::RateLimited).encode());
            }
            Some(None) => {
                let err = ServerMsg::Error {
                    id: None,
                    code: ErrorCode::BadMessage.as_str(),
                    message: "binary frames are not part of the protocol",
                };
                let _ = mine.push(err.encode());
            }
            Some(Some(Err(e))) => {
                log::debug!("connection {conn}: bad message: {}", e.detail);
                let err = ServerMsg::Error {
                    id: e.id,
                    code: ErrorCode::BadMessage.as_str(),
                    message: e.detail,
                };
                let _ = mine.push(err.encode());
            }
            Some(Some(Ok((id, msg)))) => {
                let fx = handle(&shared, conn, &link, registered.get(), id, &msg);
                if fx.iter().any(|e| matches!(e, Effect::WrongKey)) {
                    wrong_keys += 1;
                    unauthorized = wrong_keys >= MAX_WRONG_KEYS;
                    let count = shared.key_refusals.borrow_mut().count(peer, now);
                    if let Some(n) = count {
                        log::warn!(
                            "wrong access key from {peer} ({n} refused since the last report)"
                        );
                    }
                }
                registered.set(shared.peers.borrow().by_conn(conn).is_some());
                slot.set_registered(registered.get());
                deliver(ex, &shared, fx, &mut mine);
            }
        }
        for text in mine {
            if !link.queue_own(text.into()).await {
                break;
            }
        }
        if unauthorized {
            break End::Unauthorized;
        }
    };

    // Cleanup always runs: free the name and tell the partner and everyone else.
    drop(ticker);
    let fx = relay::disconnect(&mut shared.peers.borrow_mut(), conn);
    deliver(ex, &shared, fx, &mut heapless::Vec::new());
    match end {
        End::Kicked(Kick::Replaced) => log::info!("connection {conn} replaced by a resume"),
        End::Kicked(k) => log::info!("connection {conn} closed: {k:?}"),
        End::Gone | End::Closed | End::Shutdown => log::debug!("connection {conn} closed: {end:?}"),
        other => log::info!("connection {conn} closed: {other:?}"),
    }
    if end == End::TooLarge {
        let err = ServerMsg::error(None, ErrorCode::TooLarge).encode();
        let _ = out_tx.try_send(Out::Text(err.into()));
    }
    let frame = end.close_frame();
    let polite = frame.is_some() && end != End::Kicked(Kick::SlowConsumer);
    let _ = close_tx.try_send(frame);
    let grace = if end == End::Kicked(Kick::SlowConsumer) {
        CLOSE_GRACE / 4
    } else {
        CLOSE_GRACE
    };
    let finish = async {
        let sink = writer.await;
        if !polite {
            return;
        }
        // Wait for the client's side of the close handshake, then drop the socket.
        if !matches!(end, End::TooLarge | End::Protocol(_)) {
            while let Some(Ok(_)) = frames.next().await {}
        } else if let Some(sink) = sink {
            // The frames can no longer be parsed, but what the client still sends must be
            // read: closing over unread bytes sends a reset that can overtake the close frame.
            if let Ok(ws) = WebSocketStream::reunite(sink, frames) {
                linger(ws.into_inner()).await;
            }
        }
    };
    finish
        .or(async {
            Timer::after(grace).await;
        })
        .await;
}

/// Read and drop what a client that broke the protocol still sends, until it closes, goes
/// quiet for [`LINGER_QUIET`] or has sent [`LINGER_BYTES`] (all within the close grace).
async fn linger<S: AsyncRead + Unpin>(mut io: S) {
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        let read = io.read(&mut buf).or(async {
            Timer::after(LINGER_QUIET).await;
            Ok(0)
        });
        match read.await {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
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

/// One decoded message from connection `conn`, turned into effects.
fn handle(
    shared: &Rc<Shared>,
    conn: ConnId,
    link: &Link,
    registered: bool,
    id: Option<u32>,
    msg: &ClientMsg,
) -> Effects<Link> {
    let cfg = &shared.cfg;
    match msg {
        ClientMsg::Register { name, token, key } => {
            let ctx = RegisterCtx {
                access_key: cfg.access_key.as_deref(),
                ice_servers: &cfg.ice_servers,
            };
            let fresh = fresh_token(shared);
            relay::register(
                &mut shared.peers.borrow_mut(),
                &ctx,
                conn,
                link.clone(),
                registered,
                id,
                (name, token.as_deref(), key.as_deref()),
                fresh,
            )
        }
        _ if !registered => {
            let mut fx = Effects::new();
            let text = ServerMsg::error(id, ErrorCode::NotRegistered).encode();
            let _ = fx.push(Effect::Send { to: To::Me, text });
            fx
        }
        _ => relay::handle(&mut shared.peers.borrow_mut(), conn, id, msg),
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
