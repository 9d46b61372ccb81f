//! STUN and TURN wire types (RFC 8489, RFC 8656): the message header, the attributes the
//! relay reads and writes, MESSAGE-INTEGRITY (HMAC-SHA1 under the long-term key),
//! FINGERPRINT, ChannelData, and the framing of both on a TCP stream.
//!
//! Only this module knows the byte layout. Parsing borrows the datagram and never
//! allocates; writing fills a fixed buffer ([`MAX_MESSAGE`]). Nothing here panics on
//! input: every length is checked before it is used, and what does not fit is refused.

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The fixed value in every STUN header (RFC 8489 §5).
pub const MAGIC: u32 = 0x2112_A442;
/// Header bytes: type, length, magic cookie, transaction id.
pub const HEADER: usize = 20;
/// The largest application datagram relayed (a WebRTC packet is at most about 1,200).
pub const MAX_DATA: usize = 2048;
/// The largest STUN message or ChannelData frame read or written, with room for a Data
/// indication carrying [`MAX_DATA`].
pub const MAX_MESSAGE: usize = MAX_DATA + 128;
/// FINGERPRINT is CRC-32 of the message XOR this (RFC 8489 §14.7).
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// Methods (RFC 8489 §18.2, RFC 8656 §17).
pub mod method {
    pub const BINDING: u16 = 0x001;
    pub const ALLOCATE: u16 = 0x003;
    pub const REFRESH: u16 = 0x004;
    pub const SEND: u16 = 0x006;
    pub const DATA: u16 = 0x007;
    pub const CREATE_PERMISSION: u16 = 0x008;
    pub const CHANNEL_BIND: u16 = 0x009;
}

/// Attribute types (RFC 8489 §18.3, RFC 8656 §18).
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001A;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
}

/// The four message classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }
}

/// The message type field: method bits interleaved with the two class bits.
pub fn message_type(method: u16, class: Class) -> u16 {
    let c = class.bits();
    (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((c & 1) << 4)
        | ((c & 2) << 7)
}

fn split_type(t: u16) -> (u16, Class) {
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = match ((t >> 4) & 1) | ((t >> 7) & 2) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    (method, class)
}

/// Why bytes are not a STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than its header or its stated length, or over [`MAX_MESSAGE`].
    Length,
    /// Not a STUN message: top bits, magic cookie, or a length that is not a multiple of 4.
    NotStun,
    /// An attribute runs past the end, or FINGERPRINT is wrong or not last.
    Malformed,
}

/// One STUN message, borrowed from the bytes it came in.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub method: u16,
    pub class: Class,
    pub tid: [u8; 12],
    /// The whole message, header included (exactly its stated length).
    pub raw: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn padded(n: usize) -> usize {
    (n + 3) & !3
}

/// Whether bytes look like STUN (first two bits 00 and the magic cookie): how a datagram
/// is told from ChannelData on the same port.
pub fn is_stun(b: &[u8]) -> bool {
    b.len() >= HEADER && b[0] & 0xC0 == 0 && be32(b, 4) == MAGIC
}

impl<'a> Message<'a> {
    /// Parse one message; `b` must hold exactly the message (a datagram, or one TCP frame).
    /// A FINGERPRINT, when present, must be last and correct.
    pub fn parse(b: &'a [u8]) -> Result<Message<'a>, ParseError> {
        if b.len() < HEADER || b.len() > MAX_MESSAGE {
            return Err(ParseError::Length);
        }
        if !is_stun(b) {
            return Err(ParseError::NotStun);
        }
        let len = be16(b, 2) as usize;
        if !len.is_multiple_of(4) {
            return Err(ParseError::NotStun);
        }
        if HEADER + len != b.len() {
            return Err(ParseError::Length);
        }
        let (method, class) = split_type(be16(b, 0));
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&b[8..20]);
        let m = Message {
            method,
            class,
            tid,
            raw: b,
        };
        // Walk every attribute once so that later lookups can trust the lengths.
        let mut at = HEADER;
        while at < b.len() {
            if at + 4 > b.len() {
                return Err(ParseError::Malformed);
            }
            let (ty, vlen) = (be16(b, at), be16(b, at + 2) as usize);
            let next = at + 4 + padded(vlen);
            if at + 4 + vlen > b.len() || next > b.len() {
                return Err(ParseError::Malformed);
            }
            if ty == attr::FINGERPRINT
                && (vlen != 4 || next != b.len() || be32(b, at + 4) != fingerprint_of(b, at))
            {
                return Err(ParseError::Malformed);
            }
            at = next;
        }
        Ok(m)
    }

    /// Every attribute in order, as (type, value, offset of its header).
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            b: self.raw,
            at: HEADER,
        }
    }

    /// The first attribute of type `ty` before MESSAGE-INTEGRITY (attributes after it,
    /// except FINGERPRINT, are ignored as RFC 8489 §14.5 says).
    pub fn get(&self, ty: u16) -> Option<&'a [u8]> {
        for (t, v, _) in self.attributes() {
            if t == ty {
                return Some(v);
            }
            if t == attr::MESSAGE_INTEGRITY {
                return None;
            }
        }
        None
    }

    /// Every attribute of type `ty` before MESSAGE-INTEGRITY.
    pub fn get_all(&self, ty: u16) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.attributes()
            .take_while(|(t, _, _)| *t != attr::MESSAGE_INTEGRITY)
            .filter(move |(t, _, _)| *t == ty)
            .map(|(_, v, _)| v)
    }

    /// A UTF-8 text attribute (USERNAME, REALM, NONCE, SOFTWARE).
    pub fn text(&self, ty: u16) -> Option<&'a str> {
        self.get(ty).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// A 32-bit attribute (LIFETIME).
    pub fn u32(&self, ty: u16) -> Option<u32> {
        self.get(ty).filter(|v| v.len() == 4).map(|v| be32(v, 0))
    }

    /// An XOR-…-ADDRESS attribute, decoded.
    pub fn xor_address(&self, ty: u16) -> Option<SocketAddr> {
        self.get(ty).and_then(|v| xor_address(v, &self.tid))
    }

    /// CHANNEL-NUMBER (the first 16 bits; the rest is reserved).
    pub fn channel_number(&self) -> Option<u16> {
        self.get(attr::CHANNEL_NUMBER)
            .filter(|v| v.len() == 4)
            .map(|v| be16(v, 0))
    }

    /// REQUESTED-TRANSPORT's protocol number (17 is UDP).
    pub fn requested_transport(&self) -> Option<u8> {
        self.get(attr::REQUESTED_TRANSPORT)
            .filter(|v| v.len() == 4)
            .map(|v| v[0])
    }

    /// ERROR-CODE as a number (class × 100 + number).
    pub fn error_code(&self) -> Option<u16> {
        self.get(attr::ERROR_CODE)
            .filter(|v| v.len() >= 4)
            .map(|v| (v[2] & 0x7) as u16 * 100 + v[3] as u16)
    }

    /// Comprehension-required attributes (type below 0x8000) this server does not know,
    /// at most four of them (that is enough to answer 420).
    pub fn unknown_required(&self) -> heapless::Vec<u16, 4> {
        let mut out = heapless::Vec::new();
        for (t, _, _) in self.attributes() {
            let known = matches!(
                t,
                attr::MAPPED_ADDRESS
                    | attr::USERNAME
                    | attr::MESSAGE_INTEGRITY
                    | attr::ERROR_CODE
                    | attr::UNKNOWN_ATTRIBUTES
                    | attr::CHANNEL_NUMBER
                    | attr::LIFETIME
                    | attr::XOR_PEER_ADDRESS
                    | attr::DATA
                    | attr::REALM
                    | attr::NONCE
                    | attr::XOR_RELAYED_ADDRESS
                    | attr::REQUESTED_ADDRESS_FAMILY
                    | attr::EVEN_PORT
                    | attr::REQUESTED_TRANSPORT
                    | attr::DONT_FRAGMENT
                    | attr::MESSAGE_INTEGRITY_SHA256
                    | attr::XOR_MAPPED_ADDRESS
                    | attr::PRIORITY
                    | attr::USE_CANDIDATE
            );
            if t < 0x8000 && !known && !out.contains(&t) {
                let _ = out.push(t);
            }
        }
        out
    }

    /// Check MESSAGE-INTEGRITY under `key` (RFC 8489 §14.5): HMAC-SHA1 over the message up
    /// to the attribute, with the header's length covering it. False when it is absent.
    pub fn check_integrity(&self, key: &[u8]) -> bool {
        let Some(at) = self
            .attributes()
            .find(|(t, _, _)| *t == attr::MESSAGE_INTEGRITY)
            .filter(|(_, v, _)| v.len() == 20)
            .map(|(_, _, at)| at)
        else {
            return false;
        };
        let Some(mac) = hmac_sha1_over(key, self.raw, at) else {
            return false;
        };
        openssl::memcmp::eq(&mac, &self.raw[at + 4..at + 24])
    }

    /// Whether MESSAGE-INTEGRITY is present.
    pub fn has_integrity(&self) -> bool {
        self.attributes()
            .any(|(t, _, _)| t == attr::MESSAGE_INTEGRITY)
    }
}

/// Iterator over attributes; [`Message::parse`] already checked every length.
pub struct Attributes<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = (u16, &'a [u8], usize);
    fn next(&mut self) -> Option<Self::Item> {
        let b = self.b;
        if self.at + 4 > b.len() {
            return None;
        }
        let at = self.at;
        let (ty, len) = (be16(b, at), be16(b, at + 2) as usize);
        let value = b.get(at + 4..at + 4 + len)?;
        self.at = at + 4 + padded(len);
        Some((ty, value, at))
    }
}

/// Decode the value of an XOR-…-ADDRESS attribute of the message with transaction `tid`.
pub fn xor_address(v: &[u8], tid: &[u8; 12]) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let port = be16(v, 2) ^ (MAGIC >> 16) as u16;
    match (v[1], v.len()) {
        (0x01, 8) => {
            let ip = be32(v, 4) ^ MAGIC;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        (0x02, 20) => {
            let mut ip = [0u8; 16];
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&MAGIC.to_be_bytes());
            key[4..].copy_from_slice(tid);
            for i in 0..16 {
                ip[i] = v[4 + i] ^ key[i];
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// The long-term credential key (RFC 8489 §9.2.2): MD5(username ":" realm ":" password).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = match openssl::hash::Hasher::new(MessageDigest::md5()) {
        Ok(h) => h,
        Err(_) => return [0; 16],
    };
    let mut key = [0u8; 16];
    let ok = h.update(username.as_bytes()).is_ok()
        && h.update(b":").is_ok()
        && h.update(realm.as_bytes()).is_ok()
        && h.update(b":").is_ok()
        && h.update(password.as_bytes()).is_ok();
    if let (true, Ok(d)) = (ok, h.finish()) {
        key.copy_from_slice(&d);
    }
    key
}

/// HMAC-SHA1 of `data` under `key`.
pub fn hmac_sha1(key: &[u8], data: &[&[u8]]) -> Option<[u8; 20]> {
    let pkey = PKey::hmac(key).ok()?;
    let mut s = Signer::new(MessageDigest::sha1(), &pkey).ok()?;
    for d in data {
        s.update(d).ok()?;
    }
    let mut out = [0u8; 20];
    s.sign(&mut out).ok()?;
    Some(out)
}

/// HMAC-SHA1 over `b[..at]` with the header's length set to end after a 24-byte
/// MESSAGE-INTEGRITY at `at`.
fn hmac_sha1_over(key: &[u8], b: &[u8], at: usize) -> Option<[u8; 20]> {
    let mut head = [0u8; HEADER];
    head.copy_from_slice(&b[..HEADER]);
    let len = (at + 24 - HEADER) as u16;
    head[2..4].copy_from_slice(&len.to_be_bytes());
    hmac_sha1(key, &[&head, &b[HEADER..at]])
}

/// The FINGERPRINT value for a message whose FINGERPRINT attribute starts at `at`.
fn fingerprint_of(b: &[u8], at: usize) -> u32 {
    let len = (at + 8 - HEADER) as u16;
    let mut crc = crc32_update(!0, &b[..2]);
    crc = crc32_update(crc, &len.to_be_bytes());
    crc = crc32_update(crc, &b[4..at]);
    !crc ^ FINGERPRINT_XOR
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), table-driven.
fn crc32_update(mut crc: u32, data: &[u8]) -> u32 {
    for &byte in data {
        crc = CRC_TABLE[((crc ^ byte as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Builds one message in a fixed buffer. Adding what does not fit marks the message
/// overflowed and [`Writer::finish`] returns `None`: a reply is never sent truncated.
pub struct Writer {
    buf: [u8; MAX_MESSAGE],
    len: usize,
    tid: [u8; 12],
    overflow: bool,
}

impl Writer {
    pub fn new(method: u16, class: Class, tid: [u8; 12]) -> Writer {
        let mut w = Writer {
            buf: [0; MAX_MESSAGE],
            len: HEADER,
            tid,
            overflow: false,
        };
        w.buf[..2].copy_from_slice(&message_type(method, class).to_be_bytes());
        w.buf[4..8].copy_from_slice(&MAGIC.to_be_bytes());
        w.buf[8..20].copy_from_slice(&tid);
        w
    }

    fn set_len(&mut self) {
        let len = (self.len - HEADER) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// Append one attribute (padded with zeros to 4 bytes).
    pub fn attr(&mut self, ty: u16, value: &[u8]) -> &mut Writer {
        let end = self.len + 4 + padded(value.len());
        if self.overflow || end > MAX_MESSAGE || value.len() > u16::MAX as usize {
            self.overflow = true;
            return self;
        }
        let at = self.len;
        self.buf[at..at + 2].copy_from_slice(&ty.to_be_bytes());
        self.buf[at + 2..at + 4].copy_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf[at + 4..at + 4 + value.len()].copy_from_slice(value);
        self.buf[at + 4 + value.len()..end].fill(0);
        self.len = end;
        self.set_len();
        self
    }

    pub fn u32(&mut self, ty: u16, v: u32) -> &mut Writer {
        self.attr(ty, &v.to_be_bytes())
    }

    /// An XOR-…-ADDRESS attribute.
    pub fn xor_address(&mut self, ty: u16, addr: SocketAddr) -> &mut Writer {
        let port = addr.port() ^ (MAGIC >> 16) as u16;
        match addr.ip() {
            IpAddr::V4(ip) => {
                let mut v = [0u8; 8];
                v[1] = 0x01;
                v[2..4].copy_from_slice(&port.to_be_bytes());
                v[4..].copy_from_slice(&(u32::from(ip) ^ MAGIC).to_be_bytes());
                self.attr(ty, &v)
            }
            IpAddr::V6(ip) => {
                let mut v = [0u8; 20];
                v[1] = 0x02;
                v[2..4].copy_from_slice(&port.to_be_bytes());
                let mut key = [0u8; 16];
                key[..4].copy_from_slice(&MAGIC.to_be_bytes());
                key[4..].copy_from_slice(&self.tid);
                for (i, o) in ip.octets().iter().enumerate() {
                    v[4 + i] = o ^ key[i];
                }
                self.attr(ty, &v)
            }
        }
    }

    /// ERROR-CODE with its reason phrase.
    pub fn error(&mut self, code: u16, reason: &str) -> &mut Writer {
        let mut v = [0u8; 4 + 64];
        let r = &reason.as_bytes()[..reason.len().min(64)];
        v[2] = (code / 100) as u8;
        v[3] = (code % 100) as u8;
        v[4..4 + r.len()].copy_from_slice(r);
        self.attr(attr::ERROR_CODE, &v[..4 + r.len()])
    }

    /// UNKNOWN-ATTRIBUTES listing `types`.
    pub fn unknown(&mut self, types: &[u16]) -> &mut Writer {
        let mut v = [0u8; 8];
        for (i, t) in types.iter().take(4).enumerate() {
            v[2 * i..2 * i + 2].copy_from_slice(&t.to_be_bytes());
        }
        self.attr(attr::UNKNOWN_ATTRIBUTES, &v[..2 * types.len().min(4)])
    }

    /// MESSAGE-INTEGRITY under `key`; add it after every other attribute but FINGERPRINT.
    pub fn integrity(&mut self, key: &[u8]) -> &mut Writer {
        let at = self.len;
        match hmac_sha1_over(key, &self.buf[..at], at) {
            Some(mac) => self.attr(attr::MESSAGE_INTEGRITY, &mac),
            None => {
                self.overflow = true;
                self
            }
        }
    }

    /// FINGERPRINT; add it last.
    pub fn fingerprint(&mut self) -> &mut Writer {
        let at = self.len;
        if at + 8 > MAX_MESSAGE {
            self.overflow = true;
            return self;
        }
        let fp = fingerprint_of(&self.buf[..at], at);
        self.u32(attr::FINGERPRINT, fp)
    }

    /// The message, unless something did not fit.
    pub fn finish(&self) -> Option<&[u8]> {
        (!self.overflow).then(|| &self.buf[..self.len])
    }
}

/// A ChannelData message (RFC 8656 §12.4): a channel number ([`valid_channel`]), then data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    pub channel: u16,
    pub data: &'a [u8],
}

/// Valid channel numbers: RFC 8656 §12 narrowed them to 0x4000..=0x4FFF, RFC 5766 allowed
/// up to 0x7FFF and clients still pick from there (coturn's), so both are taken.
pub fn valid_channel(n: u16) -> bool {
    (0x4000..=0x7FFF).contains(&n)
}

/// Whether bytes start like ChannelData (first two bits 01).
pub fn is_channel_data(b: &[u8]) -> bool {
    b.first().is_some_and(|b| b & 0xC0 == 0x40)
}

impl<'a> ChannelData<'a> {
    /// Parse a ChannelData datagram or frame; padding after the data is allowed.
    pub fn parse(b: &'a [u8]) -> Option<ChannelData<'a>> {
        if b.len() < 4 || !is_channel_data(b) {
            return None;
        }
        let (channel, len) = (be16(b, 0), be16(b, 2) as usize);
        if !valid_channel(channel) || len > MAX_DATA {
            return None;
        }
        let data = b.get(4..4 + len)?;
        Some(ChannelData { channel, data })
    }
}

/// The 4-byte ChannelData header for `len` bytes of data on `channel`.
pub fn channel_header(channel: u16, len: usize) -> [u8; 4] {
    let mut h = [0u8; 4];
    h[..2].copy_from_slice(&channel.to_be_bytes());
    h[2..].copy_from_slice(&(len as u16).to_be_bytes());
    h
}

/// Framing on a TCP stream (RFC 8656 §12.5): given the first 4 bytes of the next frame,
/// how many bytes the whole frame takes, its padding included (ChannelData is padded to
/// 4 over TCP; a STUN message's length already is a multiple of 4). `None` for bytes that
/// are neither, or a frame over [`MAX_MESSAGE`]: the stream cannot be resynchronized.
pub fn tcp_frame_len(head: [u8; 4]) -> Option<usize> {
    let len = u16::from_be_bytes([head[2], head[3]]) as usize;
    let total = match head[0] & 0xC0 {
        0x00 if len.is_multiple_of(4) => HEADER + len,
        0x40 => 4 + padded(len),
        _ => return None,
    };
    (total <= MAX_MESSAGE).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // RFC 5769 §2.1: a Binding request with short-term credentials.
    const SAMPLE_REQUEST: &str = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e20746573
        7420636c69656e74002400046e0001ff80290008932ff9b151263b36000600096576746a3a6836
        7659202020000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";
    // RFC 5769 §2.2 and §2.3: Binding responses, IPv4 and IPv6.
    const SAMPLE_IPV4: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563
        746f7220002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7
        80280004c07d4c96";
    const SAMPLE_IPV6: &str = "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563
        746f7220002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf1
        1784c97c8292c275bfe3ed4180280004c8fb0b4c";
    // RFC 5769 §2.4: long-term credentials.
    const SAMPLE_LONG_TERM: &str = "00010060 2112a442 78ad3433 c6ad72c0 29da412e
        00060012 e3839ee3 8388e383 aae38383 e382afe3 82b90000
        0015001c 662f2f34 39396b39 35346436 4f4c3334 6f4c3946 53547679 36347341
        0014000b 6578616d 706c652e 6f726700
        00080014 f6702465 6dd64a3e 02b8e071 2e85c9a2 8ca89666";
    const SHORT_TERM_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

    #[test]
    fn rfc5769_request() {
        let b = hex(SAMPLE_REQUEST);
        let m = Message::parse(&b).unwrap();
        assert_eq!((m.method, m.class), (method::BINDING, Class::Request));
        assert_eq!(m.text(attr::USERNAME), Some("evtj:h6vY"));
        assert_eq!(m.text(attr::SOFTWARE), Some("STUN test client"));
        assert!(m.check_integrity(SHORT_TERM_PASSWORD));
        assert!(!m.check_integrity(b"wrong"));
        assert!(m.unknown_required().is_empty());
        // One flipped bit anywhere breaks the fingerprint.
        let mut bad = b.clone();
        bad[30] ^= 1;
        assert_eq!(Message::parse(&bad).unwrap_err(), ParseError::Malformed);
    }

    #[test]
    fn rfc5769_responses_decode_and_reencode() {
        for (sample, addr) in [
            (SAMPLE_IPV4, "192.0.2.1:32853"),
            (SAMPLE_IPV6, "[2001:db8:1234:5678:11:2233:4455:6677]:32853"),
        ] {
            let b = hex(sample);
            let m = Message::parse(&b).unwrap();
            assert_eq!(m.class, Class::Success);
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(m.xor_address(attr::XOR_MAPPED_ADDRESS), Some(addr));
            assert!(m.check_integrity(SHORT_TERM_PASSWORD));
            // Our writer produces the same bytes, integrity and fingerprint included.
            let mut w = Writer::new(method::BINDING, Class::Success, m.tid);
            w.attr(attr::SOFTWARE, b"test vector ")
                .xor_address(attr::XOR_MAPPED_ADDRESS, addr)
                .integrity(SHORT_TERM_PASSWORD)
                .fingerprint();
            // The RFC pads SOFTWARE ("test vector", 11 bytes) with a space; we pad with
            // zero, so compare after writing the same 11 bytes plus its padding byte.
            let mut w2 = Writer::new(method::BINDING, Class::Success, m.tid);
            let mut software = [0u8; 11];
            software.copy_from_slice(&b[24..35]);
            w2.attr(attr::SOFTWARE, &software);
            w2.buf[35] = b[35]; // the RFC's padding byte
            w2.xor_address(attr::XOR_MAPPED_ADDRESS, addr)
                .integrity(SHORT_TERM_PASSWORD)
                .fingerprint();
            assert_eq!(w2.finish().unwrap(), &b[..]);
            let ours = w.finish().unwrap().to_vec();
            assert!(
                Message::parse(&ours)
                    .unwrap()
                    .check_integrity(SHORT_TERM_PASSWORD)
            );
        }
    }

    #[test]
    fn rfc5769_long_term() {
        let b = hex(SAMPLE_LONG_TERM);
        let m = Message::parse(&b).unwrap();
        let user = m.text(attr::USERNAME).unwrap();
        assert_eq!(user, "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}");
        assert_eq!(m.text(attr::NONCE), Some("f//499k954d6OL34oL9FSTvy64sA"));
        assert_eq!(m.text(attr::REALM), Some("example.org"));
        let key = long_term_key(user, "example.org", "TheMatrIX");
        assert!(m.check_integrity(&key));
        assert!(!m.check_integrity(&long_term_key(user, "example.org", "TheMatrix")));
    }

    #[test]
    fn types_round_trip() {
        for method in [1, 3, 4, 6, 7, 8, 9, 0xFFF] {
            for class in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                assert_eq!(split_type(message_type(method, class)), (method, class));
            }
        }
        assert_eq!(message_type(method::ALLOCATE, Class::Request), 0x0003);
        assert_eq!(message_type(method::ALLOCATE, Class::Error), 0x0113);
        assert_eq!(message_type(method::DATA, Class::Indication), 0x0017);
        assert_eq!(message_type(method::BINDING, Class::Success), 0x0101);
    }

    #[test]
    fn writes_and_reads_every_attribute_the_relay_uses() {
        let tid = [7u8; 12];
        let peer: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let peer6: SocketAddr = "[fd00::1]:6000".parse().unwrap();
        let mut w = Writer::new(method::CHANNEL_BIND, Class::Request, tid);
        w.u32(attr::CHANNEL_NUMBER, 0x4001 << 16)
            .xor_address(attr::XOR_PEER_ADDRESS, peer)
            .xor_address(attr::XOR_PEER_ADDRESS, peer6)
            .xor_address(attr::XOR_RELAYED_ADDRESS, peer6)
            .u32(attr::LIFETIME, 600)
            .u32(attr::REQUESTED_TRANSPORT, 17 << 24)
            .attr(attr::USERNAME, b"1:door")
            .attr(attr::REALM, b"intercom")
            .attr(attr::NONCE, b"abc")
            .attr(attr::DATA, b"hello")
            .error(438, "Stale Nonce")
            .unknown(&[0x0018, 0x0022])
            .integrity(b"key")
            .fingerprint();
        let b = w.finish().unwrap().to_vec();
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.tid, tid);
        assert_eq!(m.channel_number(), Some(0x4001));
        assert_eq!(m.xor_address(attr::XOR_PEER_ADDRESS), Some(peer));
        let peers: Vec<_> = m.get_all(attr::XOR_PEER_ADDRESS).collect();
        assert_eq!(peers.len(), 2);
        assert_eq!(xor_address(peers[1], &tid), Some(peer6));
        assert_eq!(m.xor_address(attr::XOR_RELAYED_ADDRESS), Some(peer6));
        assert_eq!(m.u32(attr::LIFETIME), Some(600));
        assert_eq!(m.requested_transport(), Some(17));
        assert_eq!(m.text(attr::USERNAME), Some("1:door"));
        assert_eq!(m.get(attr::DATA), Some(&b"hello"[..]));
        assert_eq!(m.error_code(), Some(438));
        assert_eq!(
            m.get(attr::UNKNOWN_ATTRIBUTES),
            Some(&[0, 0x18, 0, 0x22][..])
        );
        assert!(m.check_integrity(b"key"));
        assert!(m.has_integrity());
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        let mut w = Writer::new(method::REFRESH, Class::Request, [1; 12]);
        w.integrity(b"k").u32(attr::LIFETIME, 0);
        let b = w.finish().unwrap().to_vec();
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.u32(attr::LIFETIME), None);
        // The integrity covers what came before it, so it still holds.
        assert!(m.check_integrity(b"k"));
    }

    #[test]
    fn unknown_comprehension_required_attributes_are_listed() {
        let mut w = Writer::new(method::ALLOCATE, Class::Request, [1; 12]);
        w.attr(attr::RESERVATION_TOKEN, &[0; 8])
            .attr(0x7777, b"x")
            .attr(0x8777, b"optional");
        let b = w.finish().unwrap().to_vec();
        let m = Message::parse(&b).unwrap();
        assert_eq!(
            &m.unknown_required()[..],
            &[attr::RESERVATION_TOKEN, 0x7777]
        );
    }

    #[test]
    fn garbage_never_panics_and_is_refused() {
        assert_eq!(Message::parse(&[]).unwrap_err(), ParseError::Length);
        let mut b = hex(SAMPLE_REQUEST);
        b[5] = 0; // magic cookie
        assert_eq!(Message::parse(&b).unwrap_err(), ParseError::NotStun);
        let b = hex(SAMPLE_REQUEST);
        assert_eq!(
            Message::parse(&b[..b.len() - 4]).unwrap_err(),
            ParseError::Length
        );
        // An attribute claiming more than the message holds.
        let mut b = hex(SAMPLE_REQUEST);
        b[22] = 0xff;
        assert_eq!(Message::parse(&b).unwrap_err(), ParseError::Malformed);
        // Every prefix and every single-byte corruption of a valid message.
        let b = hex(SAMPLE_IPV6);
        for n in 0..b.len() {
            let _ = Message::parse(&b[..n]);
            let _ = ChannelData::parse(&b[..n]);
            for x in [0x00, 0xff, 0x40, 0x80] {
                let mut c = b.clone();
                c[n] = x;
                if let Ok(m) = Message::parse(&c) {
                    let _ = m.xor_address(attr::XOR_MAPPED_ADDRESS);
                    let _ = m.check_integrity(b"x");
                    let _ = m.unknown_required();
                }
            }
        }
        // Pseudo-random bytes.
        let mut x = 0x1234_5678u32;
        for len in 0..200 {
            let mut b = vec![0u8; len];
            for byte in b.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *byte = x as u8;
            }
            if len >= 8 {
                b[4..8].copy_from_slice(&MAGIC.to_be_bytes());
                b[0] &= 0x3f;
            }
            let _ = Message::parse(&b);
            let _ = ChannelData::parse(&b);
        }
    }

    #[test]
    fn channel_data_and_tcp_framing() {
        let mut frame = channel_header(0x4001, 5).to_vec();
        frame.extend_from_slice(b"hello\0\0\0");
        let cd = ChannelData::parse(&frame).unwrap();
        assert_eq!((cd.channel, cd.data), (0x4001, &b"hello"[..]));
        assert_eq!(tcp_frame_len([0x40, 0x01, 0, 5]), Some(12));
        assert_eq!(tcp_frame_len([0x40, 0x01, 0, 8]), Some(12));
        assert_eq!(tcp_frame_len([0x00, 0x01, 0, 8]), Some(28));
        assert_eq!(tcp_frame_len([0x00, 0x01, 0, 7]), None);
        assert_eq!(tcp_frame_len([0x80, 0, 0, 0]), None);
        assert_eq!(tcp_frame_len([0x40, 0x01, 0xff, 0xff]), None);
        assert!(ChannelData::parse(&channel_header(0x3fff, 0)).is_none());
        assert!(ChannelData::parse(&channel_header(0x8000, 0)).is_none());
        assert!(ChannelData::parse(&channel_header(0x4000, 9)[..]).is_none());
        assert!(valid_channel(0x4000) && valid_channel(0x4fff) && valid_channel(0x7fff));
    }

    #[test]
    fn crc32_is_the_ieee_one() {
        assert_eq!(!crc32_update(!0, b"123456789"), 0xCBF4_3926);
    }
}
