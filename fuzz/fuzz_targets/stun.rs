//! STUN/TURN input from a client never panics: the parser, every accessor the relay uses,
//! ChannelData and TCP framing, and the relay's decision on a request (with a registered
//! station, so authenticated paths are reached when the input carries the right bytes).
#![no_main]

use intercomd::stations::Stations;
use intercomd::stun::{self, ChannelData, Message, attr};
use intercomd::turn::{Client, Ctx, Table, Transport};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let _ = stun::tcp_frame_len([data[0], data[1], data[2], data[3]]);
    }
    let _ = ChannelData::parse(data);
    let Ok(m) = Message::parse(data) else {
        return;
    };
    for ty in [attr::XOR_PEER_ADDRESS, attr::XOR_MAPPED_ADDRESS, attr::XOR_RELAYED_ADDRESS] {
        let _ = m.xor_address(ty);
    }
    let _ = (m.channel_number(), m.requested_transport(), m.error_code());
    let _ = (m.text(attr::USERNAME), m.u32(attr::LIFETIME), m.unknown_required());
    let _ = m.check_integrity(b"key");
    let stations = Stations::default();
    stations.online(1, "door", IpAddr::from([127, 0, 0, 1]));
    let mut table = Table::new(4, [7; 32], 8000);
    let mut port = 40000u16;
    let mut bind = |ip: IpAddr, _even: bool| {
        port += 1;
        Some(SocketAddr::new(ip, port))
    };
    let client = Client {
        transport: Transport::Udp,
        addr: SocketAddr::from(([127, 0, 0, 1], 5000)),
    };
    let mut ctx = Ctx {
        now: Instant::now(),
        unix: 1_800_000_000,
        stations: &stations,
        local: IpAddr::from([127, 0, 0, 1]),
        bind: &mut bind,
    };
    let answer = table.request(&mut ctx, client, &m);
    if let Some(reply) = answer.reply.as_ref().and_then(|w| w.finish()) {
        assert!(Message::parse(reply).is_ok(), "every response parses");
    }
});
