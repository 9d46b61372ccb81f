//! The TURN relay's I/O, on the one `LocalExecutor`: the UDP and TCP listeners on
//! `--turn-listen`, one task per relay socket (ports from `--turn-ports`), one task per
//! TCP client, and a once-a-second sweep of what expired. Every decision is
//! `turn::Table`'s; this module only moves datagrams.
//!
//! Bounded: the table holds at most 2 × `--max-peers` allocations, so as many relay
//! sockets; TCP clients are at most that many plus 16, and 16 from one address (more are
//! closed at once); a relayed
//! datagram waits in at most one buffer on its way: while it waits, its relay socket is
//! not read (the kernel's receive buffer holds or drops what comes), so a TCP client that
//! does not read stalls only its own allocation.

use crate::peers::ConnId;
use crate::session::Hub;
use crate::socket::Socket;
use crate::stations::{RelayInfo, canonical};
use crate::stun::{self, ChannelData, Class, Message, Writer, attr, method};
use crate::turn::{Client, Ctx, Delivery, Table, Transport};
use futures_lite::{AsyncRead, AsyncWriteExt, StreamExt};
use smol::channel::{self, Sender};
use smol::net::{TcpListener, TcpStream, UdpSocket};
use smol::{LocalExecutor, Task, Timer};
use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The UDP listener's receive buffer: every client's packets arrive on this one socket,
/// and this one thread may be off the CPU for a while on a busy board; the kernel's
/// default (208 KiB, about 200 small datagrams) overflowed under the benchmark's load.
/// Capped by `net.core.rmem_max`.
const LISTENER_RCVBUF: usize = 1 << 20;

/// TCP clients beyond one per allocation.
const EXTRA_TCP: usize = 16;
/// TCP clients from one address (a Chromium caller holds at most 4 allocations over TCP),
/// so one device cannot hold every TCP slot.
const TCP_PER_IP: usize = 16;
/// A TCP client that sends nothing for this long is closed (its allocations would have
/// expired by then anyway).
const TCP_IDLE: Duration = Duration::from_secs(crate::turn::MAX_LIFETIME as u64 + 60);
/// Room in front of a relayed datagram for a Data indication's header and attributes.
const HEADROOM: usize = 48;
/// Datagrams a socket's task handles in a row before it lets the others run: a ready
/// socket never waits, so without this one busy socket would starve the rest (and
/// their kernel buffers overflow).
const READY_BEFORE_YIELD: u32 = 16;

/// One more datagram in a row for a socket's task; past [`READY_BEFORE_YIELD`], the
/// task yields first and the count starts again.
async fn take_turn(in_a_row: &mut u32) {
    *in_a_row += 1;
    if *in_a_row > READY_BEFORE_YIELD {
        *in_a_row = 0;
        futures_lite::future::yield_now().await;
    }
}

/// The bound listeners, before the executor runs.
pub struct Listeners {
    udp: UdpSocket,
    tcp: TcpListener,
    pub addr: SocketAddr,
}

/// Bind UDP and TCP on `addr`; with port 0, the same free port for both.
pub async fn bind(addr: SocketAddr) -> Result<Listeners, String> {
    let mut last = String::new();
    for _ in 0..16 {
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}/udp: {e}"))?;
        let bound = udp.local_addr().map_err(|e| e.to_string())?;
        if let Err(e) = rustix::net::sockopt::set_socket_recv_buffer_size(&udp, LISTENER_RCVBUF) {
            log::debug!("TURN: SO_RCVBUF: {e}");
        }
        match TcpListener::bind(bound).await {
            Ok(tcp) => {
                return Ok(Listeners {
                    udp,
                    tcp,
                    addr: bound,
                });
            }
            Err(e) if addr.port() == 0 => last = e.to_string(),
            Err(e) => return Err(format!("cannot listen on {addr}/tcp: {e}")),
        }
    }
    Err(format!("cannot listen on {addr}/tcp: {last}"))
}

/// A random credential secret, made at start.
pub fn secret() -> [u8; 32] {
    let mut s = [0u8; 32];
    if openssl::rand::rand_bytes(&mut s).is_err() {
        let _ = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut s));
    }
    s
}

/// An open TCP client: its id, address, and the one-datagram way to it.
type TcpClient = (ConnId, IpAddr, Sender<Vec<u8>>);

struct RelaySocket {
    addr: SocketAddr,
    sock: UdpSocket,
    _task: Task<()>,
}

struct Relay {
    hub: Rc<Hub>,
    /// At most this many allocations, so as many relay sockets.
    limit: usize,
    ex: &'static LocalExecutor<'static>,
    table: RefCell<Table>,
    udp: UdpSocket,
    listen: SocketAddr,
    ports: (u16, u16),
    next_port: Cell<u16>,
    sockets: RefCell<Vec<RelaySocket>>,
    tcp: RefCell<Vec<TcpClient>>,
    next_conn: Cell<ConnId>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Serve the relay until the process ends.
pub async fn run(
    ex: &'static LocalExecutor<'static>,
    hub: Rc<Hub>,
    l: Listeners,
    secret: [u8; 32],
) {
    let cfg = &hub.cfg;
    let limit = 2 * cfg.max_peers;
    let _ = hub.stations.relay.set(RelayInfo {
        listen: l.addr,
        secret,
    });
    let relay = Rc::new(Relay {
        table: RefCell::new(Table::new(limit, secret, cfg.turn_kbps)),
        udp: l.udp,
        listen: l.addr,
        ports: cfg.turn_ports,
        next_port: Cell::new(cfg.turn_ports.0),
        sockets: RefCell::new(Vec::with_capacity(limit)),
        tcp: RefCell::new(Vec::with_capacity(limit + EXTRA_TCP)),
        next_conn: Cell::new(0),
        hub: hub.clone(),
        limit,
        ex,
    });
    log::info!(
        "TURN relay on {} (UDP and TCP), relay ports {}-{}",
        l.addr,
        cfg.turn_ports.0,
        cfg.turn_ports.1
    );
    let sweep = {
        let relay = relay.clone();
        ex.spawn(async move {
            loop {
                Timer::after(Duration::from_secs(1)).await;
                let freed = relay
                    .table
                    .borrow_mut()
                    .expire(Instant::now(), &relay.hub.stations);
                relay.free(&freed);
            }
        })
    };
    let tcp = {
        let relay = relay.clone();
        let listener = l.tcp;
        ex.spawn(async move { relay.accept_loop(listener).await })
    };
    relay.udp_loop().await;
    drop((sweep, tcp));
}

impl Relay {
    fn count(&self) {
        self.hub.stations.allocations.set(self.table.borrow().len());
    }

    /// Close the relay sockets of deleted allocations.
    fn free(&self, freed: &[SocketAddr]) {
        if !freed.is_empty() {
            self.sockets
                .borrow_mut()
                .retain(|s| !freed.contains(&s.addr));
            log::debug!("TURN: {} allocation(s) ended", freed.len());
        }
        self.count();
    }

    /// Bind a relay socket on `ip`, the next free (even, when asked) port of the range.
    fn bind_relay(self: &Rc<Self>, ip: IpAddr, even: bool) -> Option<SocketAddr> {
        let (lo, hi) = self.ports;
        let span = (hi - lo) as usize + 1;
        for _ in 0..span {
            let port = self.next_port.get();
            self.next_port.set(if port >= hi { lo } else { port + 1 });
            if even && port % 2 == 1 {
                continue;
            }
            let Ok(std_sock) = std::net::UdpSocket::bind((ip, port)) else {
                continue;
            };
            let Ok(sock) = UdpSocket::try_from(std_sock) else {
                continue;
            };
            let addr = SocketAddr::new(ip, port);
            let task = {
                let relay = self.clone();
                let sock = sock.clone();
                self.ex
                    .spawn(async move { relay.from_peers(sock, addr).await })
            };
            self.sockets.borrow_mut().push(RelaySocket {
                addr,
                sock,
                _task: task,
            });
            return Some(addr);
        }
        None
    }

    fn relay_socket(&self, addr: SocketAddr) -> Option<UdpSocket> {
        self.sockets
            .borrow()
            .iter()
            .find(|s| s.addr == addr)
            .map(|s| s.sock.clone())
    }

    /// The address a UDP client reaches this host at: the listener's, or, on a wildcard
    /// listener, the source address the kernel picks for replies to it.
    fn local_for(&self, client: SocketAddr) -> IpAddr {
        let ip = self.listen.ip();
        if !ip.is_unspecified() {
            return ip;
        }
        let any: SocketAddr = match client {
            SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        std::net::UdpSocket::bind(any)
            .and_then(|s| s.connect(client).and_then(|_| s.local_addr()))
            .map(|a| canonical(a.ip()))
            .unwrap_or(ip)
    }

    /// One STUN message or ChannelData from a client. Returns the response to send back.
    async fn on_client(
        self: &Rc<Self>,
        client: Client,
        local: Option<IpAddr>,
        b: &[u8],
    ) -> Option<Vec<u8>> {
        let now = Instant::now();
        if stun::is_channel_data(b) {
            let cd = ChannelData::parse(b)?;
            let route = self.table.borrow_mut().channel_to_peer(
                &client,
                cd.channel,
                cd.data.len(),
                now,
                &self.hub.stations,
            );
            if let Some((relay, peer)) = route {
                self.send_from(relay, cd.data, peer).await;
            }
            return None;
        }
        let m = Message::parse(b).ok()?;
        if m.method == method::SEND && m.class == Class::Indication {
            let (Some(peer), Some(data)) =
                (m.xor_address(attr::XOR_PEER_ADDRESS), m.get(attr::DATA))
            else {
                return None;
            };
            let relay =
                self.table
                    .borrow_mut()
                    .to_peer(&client, peer, data.len(), now, &self.hub.stations);
            if let Some(relay) = relay {
                self.send_from(relay, data, peer).await;
            }
            return None;
        }
        let local = match (local, m.method) {
            (Some(ip), _) => ip,
            // Only a signed Allocate may get a relay address (the first try gets 401).
            (None, method::ALLOCATE) if m.has_integrity() => self.local_for(client.addr),
            (None, _) => self.listen.ip(),
        };
        let mut bind = |ip: IpAddr, even: bool| self.bind_relay(ip, even);
        let mut ctx = Ctx {
            now,
            unix: unix_now(),
            stations: &self.hub.stations,
            local,
            bind: &mut bind,
        };
        let answer = self.table.borrow_mut().request(&mut ctx, client, &m);
        if let Some(freed) = answer.freed {
            self.free(&[freed]);
        }
        self.count();
        if let Some(code) = answer
            .reply
            .as_ref()
            .and_then(|w| w.finish())
            .and_then(|b| Message::parse(b).ok())
            .and_then(|r| r.error_code())
            .filter(|c| *c != 401)
        {
            let unknown = m.unknown_required();
            log::debug!(
                "TURN: method {:#x} from {} refused: {code} {unknown:x?}",
                m.method,
                client.addr
            );
        }
        answer.reply.and_then(|w| w.finish().map(<[u8]>::to_vec))
    }

    async fn send_from(&self, relay: SocketAddr, data: &[u8], peer: SocketAddr) {
        if let Some(sock) = self.relay_socket(relay) {
            self.relayed(data.len());
            let _ = sock.send_to(data, peer).await;
        }
    }

    fn relayed(&self, n: usize) {
        let c = &self.hub.stations.relayed_bytes;
        c.set(c.get() + n as u64);
    }

    async fn udp_loop(self: &Rc<Self>) {
        let mut buf = vec![0u8; stun::MAX_MESSAGE + 1];
        let mut in_a_row = 0;
        loop {
            take_turn(&mut in_a_row).await;
            let (n, from) = match self.udp.recv_from(&mut buf).await {
                Ok(x) => x,
                Err(e) => {
                    log::debug!("TURN udp: {e}");
                    continue;
                }
            };
            if n > stun::MAX_MESSAGE {
                continue;
            }
            let client = Client {
                transport: Transport::Udp,
                addr: from,
            };
            if let Some(reply) = self.on_client(client, None, &buf[..n]).await {
                let _ = self.udp.send_to(&reply, from).await;
            }
        }
    }

    /// Datagrams arriving at one relay socket, to its allocation's client.
    async fn from_peers(self: Rc<Self>, sock: UdpSocket, addr: SocketAddr) {
        let mut buf = vec![0u8; HEADROOM + stun::MAX_DATA + 4];
        let mut in_a_row = 0;
        loop {
            take_turn(&mut in_a_row).await;
            let (n, peer) = match sock
                .recv_from(&mut buf[HEADROOM..HEADROOM + stun::MAX_DATA + 1])
                .await
            {
                Ok(x) => x,
                Err(_) => continue,
            };
            if n > stun::MAX_DATA {
                continue;
            }
            let route = self
                .table
                .borrow_mut()
                .from_peer(addr, peer, n, Instant::now());
            let Some(Delivery { client, channel }) = route else {
                continue;
            };
            self.relayed(n);
            let tcp = matches!(client.transport, Transport::Tcp(_));
            let data_indication;
            let frame: &[u8] = match channel {
                Some(ch) => {
                    buf[HEADROOM - 4..HEADROOM].copy_from_slice(&stun::channel_header(ch, n));
                    // Over TCP, ChannelData is padded to 4 bytes.
                    let pad = if tcp { (4 - n % 4) % 4 } else { 0 };
                    buf[HEADROOM + n..HEADROOM + n + pad].fill(0);
                    &buf[HEADROOM - 4..HEADROOM + n + pad]
                }
                None => {
                    let mut w = Writer::new(method::DATA, Class::Indication, tid());
                    w.xor_address(attr::XOR_PEER_ADDRESS, peer)
                        .attr(attr::DATA, &buf[HEADROOM..HEADROOM + n]);
                    // Boxed: it lives across the send below, and 2 KiB of writer in
                    // this task's state would cost every allocation that much, always.
                    data_indication = Box::new(w);
                    match data_indication.finish() {
                        Some(b) => b,
                        None => continue,
                    }
                }
            };
            match client.transport {
                Transport::Udp => {
                    let _ = self.udp.send_to(frame, client.addr).await;
                }
                Transport::Tcp(conn) => {
                    let tx = self
                        .tcp
                        .borrow()
                        .iter()
                        .find(|(c, _, _)| *c == conn)
                        .map(|(_, _, tx)| tx.clone());
                    // One datagram waits here at most; while it does, this relay socket
                    // reads nothing more (the kernel's socket buffer, then drops, take
                    // over), and a client that does not read stalls only its own relay.
                    if let Some(tx) = tx {
                        let _ = tx.send(frame.to_vec()).await;
                    }
                }
            }
        }
    }

    async fn accept_loop(self: Rc<Self>, listener: TcpListener) {
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    log::debug!("TURN tcp accept: {e}");
                    Timer::after(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let cap = self.limit + EXTRA_TCP;
            let ip = canonical(from.ip());
            let (all, same) = {
                let tcp = self.tcp.borrow();
                (tcp.len(), tcp.iter().filter(|(_, i, _)| *i == ip).count())
            };
            if all >= cap || same >= TCP_PER_IP {
                log::debug!("TURN: {from} refused: {all} TCP clients, {same} from its address");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let conn = self.next_conn.get() + 1;
            self.next_conn.set(conn);
            let (tx, rx) = channel::bounded(1);
            self.tcp.borrow_mut().push((conn, ip, tx));
            let relay = self.clone();
            self.ex
                .spawn(async move {
                    relay.tcp_client(stream, from, conn, rx).await;
                    relay.tcp.borrow_mut().retain(|(c, _, _)| *c != conn);
                    let freed = relay.table.borrow_mut().closed(conn);
                    relay.free(&freed);
                })
                .detach();
        }
    }

    /// One TCP client: frames in (RFC 8656 §12.5), responses and relayed data out. What it
    /// waits on is polled in place, so a packet costs no timer, listener or empty read.
    async fn tcp_client(
        self: &Rc<Self>,
        stream: TcpStream,
        from: SocketAddr,
        conn: ConnId,
        rx: channel::Receiver<Vec<u8>>,
    ) {
        let local = stream.local_addr().ok().map(|a| canonical(a.ip()));
        let client = Client {
            transport: Transport::Tcp(conn),
            addr: from,
        };
        let mut stream = Socket::from(stream);
        let mut rx = pin!(rx);
        let mut buf = vec![0u8; stun::MAX_MESSAGE];
        let mut have = 0;
        enum Ev {
            Read(std::io::Result<usize>),
            Out(Vec<u8>),
            Closed,
            Clock,
        }
        // Idle: nothing either way for TCP_IDLE. The timer is set once and moved only when
        // it fires early, not at every packet.
        let mut last = Instant::now();
        let mut idle = Timer::at(last + TCP_IDLE);
        loop {
            let ev = poll_fn(|cx| {
                if let Poll::Ready(r) = Pin::new(&mut stream).poll_read(cx, &mut buf[have..]) {
                    return Poll::Ready(Ev::Read(r));
                }
                if let Poll::Ready(out) = rx.as_mut().poll_next(cx) {
                    return Poll::Ready(out.map_or(Ev::Closed, Ev::Out));
                }
                if Pin::new(&mut idle).poll(cx).is_ready() {
                    return Poll::Ready(Ev::Clock);
                }
                Poll::Pending
            })
            .await;
            match ev {
                Ev::Read(Ok(0)) | Ev::Read(Err(_)) | Ev::Closed => return,
                Ev::Clock if last.elapsed() >= TCP_IDLE => return,
                Ev::Clock => {
                    idle.set_at(last + TCP_IDLE);
                    continue;
                }
                Ev::Read(Ok(n)) => {
                    have += n;
                    last = Instant::now();
                }
                Ev::Out(frame) => {
                    if stream.write_all(&frame).await.is_err() {
                        return;
                    }
                    last = Instant::now();
                    continue;
                }
            }
            // Every complete frame in the buffer.
            loop {
                if have < 4 {
                    break;
                }
                let Some(len) = stun::tcp_frame_len([buf[0], buf[1], buf[2], buf[3]]) else {
                    log::debug!("TURN: {from} sent bytes that are not TURN framing");
                    return;
                };
                if have < len {
                    break;
                }
                let reply = self.on_client(client, local, &buf[..len]).await;
                if let Some(reply) = reply
                    && stream.write_all(&reply).await.is_err()
                {
                    return;
                }
                buf.copy_within(len..have, 0);
                have -= len;
            }
        }
    }
}

/// A transaction id for a Data indication (no answer is expected; unique enough).
fn tid() -> [u8; 12] {
    let mut t = [0u8; 12];
    let _ = openssl::rand::rand_bytes(&mut t);
    t
}
