//! The built-in STUN/TURN relay against the real server: the offer in `registered`,
//! allocations over UDP and TCP with the credentials a tablet is given, relaying between
//! two stations (Send/Data indications and ChannelData), the rules that keep it from
//! being an open relay, and a third-party client (coturn's `turnutils_uclient`).

mod support;

use intercomd::stun::{self, Class, Message, Writer, attr, method};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{
    Client, Launch, Server, Strace, eagain_reads_per_fd, free_udp_port, patience, run,
    turn_echo_peer, turn_entry, uclient_figure,
};

/// The owner's key where a test reads `/metrics`.
const ADMIN: &str = "owner-key-0123456789abcdef";

/// A server with the relay on 127.0.0.1 (a free port) and its own relay port range.
fn relay_server(ports: &str, extra: &[&str]) -> Server {
    Launch::new().turn_relay(ports).args(extra).spawn()
}

/// Register `name` as a tablet does: its WebSocket (its address is a permitted peer while
/// it stays open) and the TURN entry it was offered, as [`turn_entry`].
async fn station(server: &Server, name: &str) -> (Client, (u16, String, String)) {
    let (ws, reg) = server.register(name).await;
    (ws, turn_entry(&reg))
}

/// A door reaching the relay over UDP and a kitchen over TCP, each with its allocation
/// and relay address. Their WebSockets come back too: they must stay open.
async fn door_udp_kitchen_tcp(
    server: &Server,
) -> (
    [Client; 2],
    (TurnClient, SocketAddr),
    (TurnClient, SocketAddr),
) {
    let (door_ws, (port, user, pass)) = station(server, "door").await;
    let (kitchen_ws, (_, kuser, kpass)) = station(server, "kitchen").await;
    let mut door = TurnClient::udp(port, &user, &pass);
    let mut kitchen = TurnClient::tcp(port, &kuser, &kpass);
    let door_relay = door.allocate().unwrap();
    let kitchen_relay = kitchen.allocate().unwrap();
    (
        [door_ws, kitchen_ws],
        (door, door_relay),
        (kitchen, kitchen_relay),
    )
}

/// How a test client reaches the relay.
enum Wire {
    Udp(UdpSocket, SocketAddr),
    Tcp(TcpStream),
}

/// A minimal TURN client: long-term credentials, one outstanding request at a time.
struct TurnClient {
    wire: Wire,
    user: String,
    pass: String,
    nonce: Option<String>,
    next_tid: u8,
}

impl TurnClient {
    fn udp(port: u16, user: &str, pass: &str) -> TurnClient {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(patience())).unwrap();
        TurnClient::new(
            Wire::Udp(s, SocketAddr::from(([127, 0, 0, 1], port))),
            user,
            pass,
        )
    }

    fn tcp(port: u16, user: &str, pass: &str) -> TurnClient {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(patience())).unwrap();
        TurnClient::new(Wire::Tcp(s), user, pass)
    }

    fn new(wire: Wire, user: &str, pass: &str) -> TurnClient {
        TurnClient {
            wire,
            user: user.into(),
            pass: pass.into(),
            nonce: None,
            next_tid: 0,
        }
    }

    fn send_raw(&mut self, b: &[u8]) {
        match &mut self.wire {
            Wire::Udp(s, to) => {
                s.send_to(b, *to).unwrap();
            }
            Wire::Tcp(s) => s.write_all(b).unwrap(),
        }
    }

    /// The next message or ChannelData from the relay, `None` on timeout.
    fn recv_raw(&mut self, wait: Duration) -> Option<Vec<u8>> {
        match &mut self.wire {
            Wire::Udp(s, _) => {
                s.set_read_timeout(Some(wait)).unwrap();
                let mut buf = [0u8; 4096];
                let n = s.recv(&mut buf).ok()?;
                Some(buf[..n].to_vec())
            }
            Wire::Tcp(s) => {
                s.set_read_timeout(Some(wait)).unwrap();
                let mut head = [0u8; 4];
                s.read_exact(&mut head).ok()?;
                let len = stun::tcp_frame_len(head).expect("TURN framing");
                let mut b = head.to_vec();
                b.resize(len, 0);
                s.read_exact(&mut b[4..]).ok()?;
                Some(b)
            }
        }
    }

    fn key(&self) -> [u8; 16] {
        stun::long_term_key(&self.user, "intercom", &self.pass)
    }

    /// Send a request signed with the credentials (unsigned until a NONCE is known);
    /// after 401 or 438 with a fresh NONCE, once more. Returns the final response.
    fn request(&mut self, m: u16, build: impl Fn(&mut Writer)) -> Vec<u8> {
        for _ in 0..3 {
            self.next_tid += 1;
            let mut w = Writer::new(m, Class::Request, [self.next_tid; 12]);
            build(&mut w);
            if let Some(nonce) = &self.nonce {
                w.attr(attr::USERNAME, self.user.as_bytes())
                    .attr(attr::REALM, b"intercom")
                    .attr(attr::NONCE, nonce.as_bytes())
                    .integrity(&self.key());
            }
            w.fingerprint();
            self.send_raw(w.finish().unwrap());
            let reply = loop {
                let b = self.recv_raw(patience()).expect("a response");
                if stun::is_stun(&b) && Message::parse(&b).unwrap().tid == [self.next_tid; 12] {
                    break b;
                }
            };
            let r = Message::parse(&reply).unwrap();
            match r.error_code() {
                Some(401 | 438) if r.text(attr::NONCE) != self.nonce.as_deref() => {
                    assert_eq!(r.text(attr::REALM), Some("intercom"));
                    self.nonce = r.text(attr::NONCE).map(str::to_string);
                }
                _ => return reply,
            }
        }
        panic!("no answer but 401/438");
    }

    /// Allocate: the relayed address, or the error code.
    fn allocate(&mut self) -> Result<SocketAddr, u16> {
        let reply = self.request(method::ALLOCATE, |w| {
            w.u32(attr::REQUESTED_TRANSPORT, 17 << 24);
        });
        let r = Message::parse(&reply).unwrap();
        match r.class {
            Class::Success => {
                assert!(r.check_integrity(&self.key()), "responses are signed");
                assert_eq!(r.u32(attr::LIFETIME), Some(600));
                Ok(r.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap())
            }
            _ => Err(r.error_code().unwrap()),
        }
    }

    fn code_of(&mut self, m: u16, build: impl Fn(&mut Writer)) -> Option<u16> {
        let reply = self.request(m, build);
        Message::parse(&reply).unwrap().error_code()
    }

    fn permit(&mut self, peer: SocketAddr) -> Option<u16> {
        self.code_of(method::CREATE_PERMISSION, |w| {
            w.xor_address(attr::XOR_PEER_ADDRESS, peer);
        })
    }

    fn bind_channel(&mut self, channel: u16, peer: SocketAddr) -> Option<u16> {
        self.code_of(method::CHANNEL_BIND, |w| {
            w.u32(attr::CHANNEL_NUMBER, (channel as u32) << 16)
                .xor_address(attr::XOR_PEER_ADDRESS, peer);
        })
    }

    fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) {
        let mut w = Writer::new(method::SEND, Class::Indication, [0xAB; 12]);
        w.xor_address(attr::XOR_PEER_ADDRESS, peer)
            .attr(attr::DATA, data);
        self.send_raw(w.finish().unwrap());
    }

    fn send_channel(&mut self, channel: u16, data: &[u8]) {
        let mut b = stun::channel_header(channel, data.len()).to_vec();
        b.extend_from_slice(data);
        if matches!(self.wire, Wire::Tcp(_)) {
            b.resize(b.len().div_ceil(4) * 4, 0);
        }
        self.send_raw(&b);
    }

    /// The next relayed datagram: (peer, channel if any, data).
    fn relayed(&mut self) -> (Option<SocketAddr>, Option<u16>, Vec<u8>) {
        let b = self.recv_raw(patience()).expect("relayed data");
        if let Some(cd) = stun::ChannelData::parse(&b) {
            return (None, Some(cd.channel), cd.data.to_vec());
        }
        let m = Message::parse(&b).unwrap();
        assert_eq!((m.method, m.class), (method::DATA, Class::Indication));
        (
            m.xor_address(attr::XOR_PEER_ADDRESS),
            None,
            m.get(attr::DATA).unwrap().to_vec(),
        )
    }

    fn silent(&mut self, wait: Duration) -> bool {
        self.recv_raw(wait).is_none()
    }
}

#[test]
fn registered_offers_the_relay_and_a_tablet_allocates_with_it() {
    let server = relay_server(
        "51000-51009",
        &["--ice-servers", r#"[{"urls":"stun:stun.example.org"}]"#],
    );
    run(async {
        let (_door, reg) = server.register("door").await;
        let (port, user, pass) = turn_entry(&reg);
        let (expiry, name) = user.split_once(':').unwrap();
        assert_eq!(name, "door");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(expiry.parse::<u64>().unwrap() > now);
        assert_eq!(pass.len(), 28, "base64 of a SHA-1 HMAC");
        assert_eq!(
            reg["iceServers"][1],
            json!({"urls": "stun:stun.example.org"})
        );
        assert_eq!(reg["iceServers"].as_array().unwrap().len(), 2);

        // STUN Binding needs no credentials.
        let mut c = TurnClient::udp(port, &user, &pass);
        let mut w = Writer::new(method::BINDING, Class::Request, [1; 12]);
        w.fingerprint();
        c.send_raw(w.finish().unwrap());
        let b = c.recv_raw(patience()).unwrap();
        let m = Message::parse(&b).unwrap();
        let Wire::Udp(s, _) = &c.wire else {
            unreachable!()
        };
        assert_eq!(
            m.xor_address(attr::XOR_MAPPED_ADDRESS),
            Some(s.local_addr().unwrap())
        );

        let relay = c.allocate().unwrap();
        assert_eq!(relay.ip(), IpAddr::from([127, 0, 0, 1]));
        assert!((51000..=51009).contains(&relay.port()), "{relay}");
        server.wait_health(|h| h["turn_allocations"] == 1).await;
        // Refresh with lifetime 0 deletes it.
        let reply = c.request(method::REFRESH, |w| {
            w.u32(attr::LIFETIME, 0);
        });
        assert_eq!(Message::parse(&reply).unwrap().class, Class::Success);
        server.wait_health(|h| h["turn_allocations"] == 0).await;
    });
}

#[test]
fn two_stations_relay_to_each_other_over_udp_and_tcp() {
    let server = relay_server("51010-51019", &["--admin-key", ADMIN]);
    run(async {
        let (_stations, (mut door, door_relay), (mut kitchen, kitchen_relay)) =
            door_udp_kitchen_tcp(&server).await;
        server.wait_health(|h| h["turn_allocations"] == 2).await;

        // Nothing passes before a permission.
        door.send_indication(kitchen_relay, b"too early");
        assert!(kitchen.silent(Duration::from_millis(300)));

        assert_eq!(door.permit(kitchen_relay), None);
        assert_eq!(kitchen.permit(door_relay), None);
        // UDP client -> Send indication -> TCP client's Data indication.
        door.send_indication(kitchen_relay, b"hello kitchen");
        assert_eq!(
            kitchen.relayed(),
            (Some(door_relay), None, b"hello kitchen".to_vec())
        );
        // Channels both ways; odd lengths exercise the padding over TCP.
        assert_eq!(kitchen.bind_channel(0x4000, door_relay), None);
        kitchen.send_channel(0x4000, b"hi door!!");
        assert_eq!(
            door.relayed(),
            (Some(kitchen_relay), None, b"hi door!!".to_vec())
        );
        assert_eq!(door.bind_channel(0x4abc, kitchen_relay), None);
        for len in [1usize, 2, 3, 4, 1200] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            door.send_channel(0x4abc, &data);
            assert_eq!(kitchen.relayed(), (None, Some(0x4000), data.clone()));
            kitchen.send_channel(0x4000, &data);
            assert_eq!(door.relayed(), (None, Some(0x4abc), data));
        }
        // All of it on the one thread (plus smol's idle reactor helper).
        assert_eq!(server.threads(), vec!["async-io", "intercomd"]);
        // The owner's metrics count it: 2 allocations; every datagram here leaves one
        // allocation and arrives at the other, so it counts twice (13 + 9 bytes, then
        // 1 + 2 + 3 + 4 + 1200 bytes each way; the one sent before the permission, none).
        let (status, _, body) = server
            .http(&format!(
                "GET /metrics HTTP/1.1\r\nHost: localhost:{}\r\nAuthorization: Bearer {ADMIN}\r\n\
                 Connection: close\r\n\r\n",
                server.addr.port()
            ))
            .await;
        assert_eq!(status, 200);
        let text = String::from_utf8(body).unwrap();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{name} in\n{text}"))
        };
        assert_eq!(value("intercomd_turn_allocations"), 2);
        assert_eq!(
            value("intercomd_turn_relayed_bytes_total"),
            2 * (13 + 9 + 2 * 1210)
        );
    });
}

#[test]
fn not_an_open_relay() {
    let server = relay_server("51020-51029", &[]);
    run(async {
        let (_door_ws, (port, user, pass)) = station(&server, "door").await;
        // A wrong password gets no allocation.
        let mut bad = TurnClient::udp(port, &user, "d3JvbmcgcGFzc3dvcmQgZ3Vlc3M=");
        assert_eq!(bad.allocate(), Err(401));
        // Nor does a made-up station.
        let mut bad = TurnClient::udp(port, "4102444800:ghost", &pass);
        assert_eq!(bad.allocate(), Err(401));
        assert_eq!(server.health().await["turn_allocations"], 0);

        let mut door = TurnClient::udp(port, &user, &pass);
        let relay = door.allocate().unwrap();
        // Towards an address that no station registered from: 403, for permissions
        // and channels alike. 127.0.0.1 itself is a station (this test's WebSocket).
        for ip in ["10.0.0.1", "192.168.1.1", "127.0.0.2"] {
            let peer = SocketAddr::new(ip.parse().unwrap(), 80);
            assert_eq!(door.permit(peer), Some(403), "{ip}");
            assert_eq!(door.bind_channel(0x4001, peer), Some(403), "{ip}");
        }
        assert_eq!(door.permit(SocketAddr::from(([127, 0, 0, 1], 9))), None);
        assert_eq!(door.permit(relay), None);
        // Another Allocate on the same 5-tuple: 437.
        door.next_tid += 10;
        assert_eq!(door.allocate(), Err(437));
    });
}

/// A TCP client's task waits on its socket, the data relayed to it and its idle timer
/// in place: a packet to it costs no timer (whose registration wrote to the reactor's
/// eventfd at every packet) and no read of its socket, which has nothing to read.
#[test]
fn relaying_to_a_tcp_client_sets_no_timer_and_reads_no_empty_socket() {
    const PACKETS: usize = 200;
    let server = relay_server("51080-51089", &[]);
    run(async {
        let (_stations, (mut door, door_relay), (mut kitchen, kitchen_relay)) =
            door_udp_kitchen_tcp(&server).await;
        assert_eq!(kitchen.permit(door_relay), None);
        assert_eq!(door.bind_channel(0x4abc, kitchen_relay), None);
        let strace = Strace::attach(server.pid(), "write,recvfrom", false).await;
        for i in 0..PACKETS {
            let data = (i as u32).to_be_bytes();
            door.send_channel(0x4abc, &data);
            assert_eq!(kitchen.relayed().2, data);
        }
        let log = strace.finish();
        // The reactor is woken through its eventfd with an 8-byte write of 1.
        let wakes = log
            .lines()
            .filter(|l| l.contains(r#"write("#) && l.contains(r#""\1\0\0\0\0\0\0\0", 8)"#))
            .count();
        assert!(wakes <= 5, "{wakes} eventfd writes for {PACKETS} packets");
        // Two UDP sockets are read until empty after each datagram: the listener the
        // door sends to, and the kitchen's relay socket the door's relay sends to. The
        // kitchen's TCP socket, which the kitchen never writes to, is not read at all.
        let per_fd = eagain_reads_per_fd(&log);
        assert!(
            per_fd.get(2).copied().unwrap_or(0) <= PACKETS / 20,
            "EAGAIN reads per socket: {per_fd:?} for {PACKETS} packets"
        );
    });
}

#[test]
fn a_tcp_allocation_ends_with_its_connection_and_credentials_outlive_a_disconnect() {
    let server = relay_server("51030-51039", &[]);
    run(async {
        let (door_ws, (port, user, pass)) = station(&server, "door").await;
        let mut door = TurnClient::tcp(port, &user, &pass);
        door.allocate().unwrap();
        server.wait_health(|h| h["turn_allocations"] == 1).await;
        drop(door);
        server.wait_health(|h| h["turn_allocations"] == 0).await;
        // The station's WebSocket closes: its credentials still work for a while (a
        // page reload), though its address is no longer a permitted peer.
        door_ws.close().await;
        server.wait_health(|h| h["peers"] == 0).await;
        let mut door = TurnClient::udp(port, &user, &pass);
        let relay = door.allocate().unwrap();
        assert_eq!(
            door.permit(SocketAddr::from(([127, 0, 0, 1], 9))),
            Some(403)
        );
        assert_eq!(door.permit(relay), None);
    });
}

#[test]
fn turn_off_offers_only_the_configured_servers() {
    let ice = r#"[{"urls":"stun:stun.example.org"}]"#;
    let server = Launch::new().args(["--ice-servers", ice]).spawn();
    run(async {
        let (_c, reg) = server.register("door").await;
        assert_eq!(
            reg["iceServers"],
            json!([{"urls": "stun:stun.example.org"}])
        );
        assert_eq!(server.health().await["turn_allocations"], 0);
    });
}

// ------------------------------------------------------------- coturn's test client

/// Run `turnutils_uclient` with `args` to completion (bounded); its exit status and output.
fn uclient(args: &[&str]) -> (bool, String) {
    let mut child = Command::new("turnutils_uclient")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("turnutils_uclient (Debian package coturn; tests/all installs it)");
    let until = Instant::now() + patience() * 6;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            return (status.success(), out);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let mut out = String::new();
            let _ = child.stdout.take().unwrap().read_to_string(&mut out);
            let _ = child.stderr.take().unwrap().read_to_string(&mut out);
            panic!("turnutils_uclient did not finish:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Where a `turnutils_uclient` run goes: the relay on 127.0.0.1:`port`, as `user` with
/// `pass`, towards the peer at `peer`:`peer_port`.
#[derive(Clone, Copy)]
struct Route<'a> {
    port: &'a str,
    user: &'a str,
    pass: &'a str,
    peer: &'a str,
    peer_port: &'a str,
}

impl Route<'_> {
    /// [`uclient`] sending `messages` messages along this route, with `extra` flags.
    fn uclient(&self, messages: &str, extra: &[&str]) -> (bool, String) {
        let mut args = vec![
            "-u",
            self.user,
            "-w",
            self.pass,
            "-p",
            self.port,
            "-e",
            self.peer,
            "-r",
            self.peer_port,
            "-n",
            messages,
        ];
        args.extend_from_slice(extra);
        args.push("127.0.0.1");
        uclient(&args)
    }
}

#[test]
fn coturn_uclient_relays_through_intercomd_over_udp_and_tcp() {
    let server = relay_server("51040-51059", &[]);
    let peer_port = free_udp_port();
    let _peer = turn_echo_peer(peer_port);
    let peer_port = peer_port.to_string();
    run(async {
        // Credentials as a tablet gets them; the WebSocket stays open, so 127.0.0.1
        // (where turnutils_peer listens) is a registered station's address.
        let (_door, (port, user, pass)) = station(&server, "door").await;
        let port = port.to_string();
        let to_peer = Route {
            port: &port,
            user: &user,
            pass: &pass,
            peer: "127.0.0.1",
            peer_port: &peer_port,
        };
        for tcp in [false, true] {
            let mut extra = vec!["-l", "400", "-z", "5", "-c", "-v"];
            if tcp {
                extra.push("-t");
            }
            let (ok, out) = to_peer.uclient("50", &extra);
            let what = if tcp { "TCP" } else { "UDP" };
            assert!(ok, "uclient over {what} failed:\n{out}");
            let sent = uclient_figure(&out, "tot_send_msgs=").unwrap_or(0);
            let recv = uclient_figure(&out, "tot_recv_msgs=").unwrap_or(0);
            assert_eq!(
                (sent, recv),
                (50, 50),
                "over {what}, all messages back:\n{out}"
            );
            assert_eq!(
                uclient_figure(&out, "Total lost packets"),
                Some(0),
                "{what}:\n{out}"
            );
        }
        // A wrong password: no allocation, nothing relayed. (The UDP run's allocation
        // stays until its lifetime ends; the TCP run's went with its connection.)
        let before = server.health().await["turn_allocations"].clone();
        let wrong = Route {
            pass: "wrong",
            ..to_peer
        };
        let (ok, out) = wrong.uclient("5", &["-c"]);
        assert!(
            !ok || uclient_figure(&out, "tot_recv_msgs=").unwrap_or(0) == 0,
            "wrong password relayed:\n{out}"
        );
        assert_eq!(server.health().await["turn_allocations"], before);
        // A peer address with no station behind it: the permission is refused (403).
        let nobody = Route {
            peer: "10.9.8.7",
            ..to_peer
        };
        let (ok, out) = nobody.uclient("5", &["-c"]);
        assert!(!ok, "a permission towards 10.9.8.7 was granted:\n{out}");
        assert!(out.contains("403"), "no 403 in:\n{out}");
    });
}

#[test]
fn one_address_holds_at_most_16_tcp_clients() {
    let server = relay_server("51060-51069", &[]);
    run(async {
        let (_door, (port, user, pass)) = station(&server, "door").await;
        let binding = |c: &mut TurnClient| {
            let mut w = Writer::new(method::BINDING, Class::Request, [3; 12]);
            w.fingerprint();
            c.send_raw(w.finish().unwrap());
            c.recv_raw(patience())
        };
        let mut held: Vec<TurnClient> = (0..16)
            .map(|_| TurnClient::tcp(port, &user, &pass))
            .collect();
        for c in &mut held {
            assert!(
                binding(c).is_some(),
                "a TCP client within the cap is answered"
            );
        }
        let mut over = TurnClient::tcp(port, &user, &pass);
        let Wire::Tcp(s) = &mut over.wire else {
            unreachable!()
        };
        let _ = s.write_all(&[0; 20]);
        let mut b = [0u8; 1];
        assert!(
            matches!(s.read(&mut b), Ok(0) | Err(_)),
            "the 17th connection from one address is closed"
        );
        // Closing one makes room again.
        drop(held.pop());
        let until = Instant::now() + patience();
        loop {
            let mut c = TurnClient::tcp(port, &user, &pass);
            let mut w = Writer::new(method::BINDING, Class::Request, [4; 12]);
            w.fingerprint();
            let Wire::Tcp(s) = &mut c.wire else {
                unreachable!()
            };
            if s.write_all(w.finish().unwrap()).is_ok() && c.recv_raw(patience()).is_some() {
                break;
            }
            assert!(Instant::now() < until, "no room after a client left");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

#[test]
fn a_resume_is_offered_the_relay_with_working_credentials() {
    let server = relay_server("51070-51079", &[]);
    run(async {
        let (_old, reg) = server.register("door").await;
        let token = reg["token"].as_str().unwrap().to_string();
        let mut resumed = server.client().await;
        resumed
            .send(json!({"type": "register", "name": "door", "token": token}))
            .await;
        let reg = resumed.recv_type("registered").await;
        let (port, user, pass) = turn_entry(&reg);
        assert!(user.ends_with(":door"), "{user}");
        let mut door = TurnClient::udp(port, &user, &pass);
        door.allocate().unwrap();
        // The resumed connection's address is a station's: a permission towards it is fine.
        assert_eq!(door.permit(SocketAddr::from(([127, 0, 0, 1], 9))), None);
    });
}
