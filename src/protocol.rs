//! Wire types of protocol v1, named by direction: [`ClientMsg`] (peer → server) and
//! [`ServerMsg`] (server → peer). This is the only module that knows JSON.
//!
//! Decoding never panics on client input and always recovers the message `id` when it is
//! a valid u32, so an error can carry it. `signal` payloads are kept as borrowed
//! [`RawValue`]s and written back byte for byte.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Protocol version announced in `registered`.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest peer name, in bytes.
pub const MAX_NAME_BYTES: usize = 32;
/// Wrong access keys one connection may try; the last is answered, then the connection
/// is closed (1008 `unauthorized`).
pub const MAX_WRONG_KEYS: u32 = 3;
/// Longest hangup reason, in bytes.
pub const MAX_REASON_BYTES: usize = 32;

/// A peer name as it lives in the table: bounded, no heap.
pub type Name = heapless::String<MAX_NAME_BYTES>;
/// Groups one station may belong to.
pub const MAX_GROUPS: usize = 8;
/// A station's groups, distinct, in the order first given. Group names follow the name
/// rules, are compared byte for byte, and are never `*` (which means every station).
pub type Groups = heapless::Vec<Name, MAX_GROUPS>;
/// The group that means every station.
pub const EVERYONE: &str = "*";
/// What this server offers beyond v1, announced in `registered.features`.
pub const FEATURES: [&str; 4] = ["groups", "dnd", "preview", "page"];

/// What a client declared it handles (`register.features`); unknown words are ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// It plays pages: only such stations are ever paged.
    pub page: bool,
    /// It shows the caller before answering: only such callees get signals while ringing.
    pub preview: bool,
}

/// Who a `call` or `hangup` is for.
#[derive(Debug)]
pub enum Target<'a> {
    /// One station, by name.
    Peer(Cow<'a, str>),
    /// A group name or `*`, not yet checked (an invalid one is `group_invalid`).
    Group(Cow<'a, str>),
}

/// One decoded client message.
#[derive(Debug)]
pub enum ClientMsg<'a> {
    Register {
        name: Cow<'a, str>,
        token: Option<Cow<'a, str>>,
        key: Option<Cow<'a, str>>,
        /// Still raw: an invalid list is `group_invalid`, checked after the key and name.
        groups: Option<&'a RawValue>,
        dnd: bool,
        features: Features,
    },
    Call {
        target: Target<'a>,
    },
    Accept {
        to: Cow<'a, str>,
    },
    Hangup {
        target: Target<'a>,
        reason: Option<Cow<'a, str>>,
    },
    /// Do-not-disturb on or off.
    Status {
        dnd: bool,
    },
    /// Start a page to a group (or `*`).
    Page {
        group: Cow<'a, str>,
    },
    Signal {
        to: Cow<'a, str>,
        data: &'a RawValue,
    },
}

/// Error codes sent in `{"type":"error"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Not JSON, not an object, unknown type, missing or mistyped field, binary frame.
    BadMessage,
    /// Anything but `register` before registering.
    NotRegistered,
    /// Name empty, too long, control characters or surrounding white space.
    NameInvalid,
    /// Name held by a live connection and no matching token.
    NameTaken,
    /// The peer table is full.
    Full,
    /// This connection already registered.
    AlreadyRegistered,
    /// Wrong or missing access key.
    Unauthorized,
    /// `call` to a name nobody holds.
    PeerNotFound,
    /// Caller or callee is already ringing or in a call.
    Busy,
    /// `call` to oneself.
    SelfCall,
    /// `accept`/`hangup`/`signal` to someone who is not this peer's call partner.
    NoCall,
    /// Message over the size limit (the connection is then closed with 1009).
    TooLarge,
    /// Over the inbound message rate.
    RateLimited,
    /// `groups` in `register`, or a `group` in `call`/`page`/`hangup`, is not valid.
    GroupInvalid,
    /// `call` to an idle station in do-not-disturb.
    Dnd,
    /// A group `call` or `page` found nobody to ring or page (the error lists why).
    NoOneAvailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::NotRegistered => "not_registered",
            ErrorCode::NameInvalid => "name_invalid",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::Full => "full",
            ErrorCode::AlreadyRegistered => "already_registered",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::PeerNotFound => "peer_not_found",
            ErrorCode::Busy => "busy",
            ErrorCode::SelfCall => "self_call",
            ErrorCode::NoCall => "no_call",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::GroupInvalid => "group_invalid",
            ErrorCode::Dnd => "dnd",
            ErrorCode::NoOneAvailable => "no_one_available",
        }
    }

    /// The human-readable default message for this code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "malformed message",
            ErrorCode::NotRegistered => "register first",
            ErrorCode::NameInvalid => {
                "name must be 1-32 bytes, no control characters, no surrounding spaces"
            }
            ErrorCode::NameTaken => "name is in use",
            ErrorCode::Full => "no room for more peers",
            ErrorCode::AlreadyRegistered => "this connection is already registered",
            ErrorCode::Unauthorized => "wrong access key",
            ErrorCode::PeerNotFound => "no such peer",
            ErrorCode::Busy => "busy",
            ErrorCode::SelfCall => "cannot call yourself",
            ErrorCode::NoCall => "no call with that peer",
            ErrorCode::TooLarge => "message too large",
            ErrorCode::RateLimited => "too many messages",
            ErrorCode::GroupInvalid => {
                "groups: at most 8 distinct names, each a valid name other than \"*\""
            }
            ErrorCode::Dnd => "do not disturb",
            ErrorCode::NoOneAvailable => "no one in the group is available",
        }
    }
}

/// A decoding failure: the code (always `bad_message` today) and the message `id`
/// when one could be read.
#[derive(Debug, PartialEq)]
pub struct DecodeError {
    pub id: Option<u32>,
    pub detail: &'static str,
}

/// Every field any client message may carry, each still raw. Unknown fields are ignored.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    ty: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    token: Option<&'a RawValue>,
    #[serde(borrow)]
    key: Option<&'a RawValue>,
    #[serde(borrow)]
    to: Option<&'a RawValue>,
    #[serde(borrow)]
    reason: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    group: Option<&'a RawValue>,
    #[serde(borrow)]
    groups: Option<&'a RawValue>,
    #[serde(borrow)]
    dnd: Option<&'a RawValue>,
    #[serde(borrow)]
    features: Option<&'a RawValue>,
}

/// Decode one text frame. On failure the error carries the `id` if it was a valid u32.
pub fn decode(text: &str) -> Result<(Option<u32>, ClientMsg<'_>), DecodeError> {
    let bad = |id, detail| Err(DecodeError { id, detail });
    // serde would accept a JSON array for a struct; the protocol wants objects only.
    if !text.trim_start().starts_with('{') {
        return bad(None, "not a JSON object");
    }
    let env: Envelope = match serde_json::from_str(text) {
        Ok(env) => env,
        Err(_) => return bad(None, "not a JSON object"),
    };
    let id = match opt::<u32>(env.id) {
        Ok(id) => id,
        Err(()) => return bad(None, "id must be an integer 0..=4294967295"),
    };
    let Ok(Some(ty)) = opt_str(env.ty, id, "type must be a string") else {
        return bad(id, "type must be a string");
    };
    let string = |raw, detail| req_str(raw, id, detail);
    let opt_string = |raw, detail| opt_str(raw, id, detail);
    // Exactly one of `to` and `group`.
    let target = || -> Result<Target, DecodeError> {
        let to = opt_string(env.to, "to must be a string")?;
        let group = opt_string(env.group, "group must be a string")?;
        match (to, group) {
            (Some(to), None) => Ok(Target::Peer(to)),
            (None, Some(group)) => Ok(Target::Group(group)),
            _ => Err(DecodeError {
                id,
                detail: "exactly one of to and group is required",
            }),
        }
    };
    let msg = match &*ty {
        "register" => ClientMsg::Register {
            name: string(env.name, "name must be a string")?,
            token: opt_string(env.token, "token must be a string")?,
            key: opt_string(env.key, "key must be a string")?,
            groups: env.groups.filter(|g| g.get() != "null"),
            dnd: opt::<bool>(env.dnd)
                .map_err(|()| DecodeError {
                    id,
                    detail: "dnd must be a boolean",
                })?
                .unwrap_or(false),
            features: features(env.features).map_err(|()| DecodeError {
                id,
                detail: "features must be an array of strings",
            })?,
        },
        "call" => ClientMsg::Call { target: target()? },
        "status" => ClientMsg::Status {
            dnd: opt::<bool>(env.dnd).ok().flatten().ok_or(DecodeError {
                id,
                detail: "dnd must be a boolean",
            })?,
        },
        "page" => ClientMsg::Page {
            group: string(env.group, "group must be a string")?,
        },
        "accept" => ClientMsg::Accept {
            to: string(env.to, "to must be a string")?,
        },
        "hangup" => {
            let reason = opt_string(env.reason, "reason must be a string")?;
            if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_BYTES) {
                return bad(id, "reason longer than 32 bytes");
            }
            if reason
                .as_ref()
                .is_some_and(|r| r.chars().any(char::is_control))
            {
                return bad(id, "reason must not contain control characters");
            }
            ClientMsg::Hangup {
                target: target()?,
                reason,
            }
        }
        "signal" => {
            let to = string(env.to, "to must be a string")?;
            // `"data": null` counts as absent, and data is required.
            match env.data {
                Some(data) if data.get() != "null" => ClientMsg::Signal { to, data },
                _ => return bad(id, "data is required"),
            }
        }
        _ => return bad(id, "unknown type"),
    };
    Ok((id, msg))
}

/// `register.features`: absent, `null`, or an array of strings (unknown words ignored).
/// Reads the array element by element: nothing is kept but the words it knows.
fn features(raw: Option<&RawValue>) -> Result<Features, ()> {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    struct Words;
    impl<'de> Visitor<'de> for Words {
        type Value = Features;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of strings")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Features, A::Error> {
            let mut f = Features::default();
            while let Some(word) = seq.next_element::<Cow<'de, str>>()? {
                match &*word {
                    "page" => f.page = true,
                    "preview" => f.preview = true,
                    _ => {}
                }
            }
            Ok(f)
        }
    }
    match raw {
        None => Ok(Features::default()),
        Some(raw) if raw.get() == "null" => Ok(Features::default()),
        Some(raw) => {
            let mut de = serde_json::Deserializer::from_str(raw.get());
            de.deserialize_seq(Words).map_err(|_| ())
        }
    }
}

/// Whether `group` may be called or paged: a valid name, or `*`.
pub fn valid_group_target(group: &str) -> bool {
    group == EVERYONE || valid_name(group)
}

/// `register.groups`: an array of at most [`MAX_GROUPS`] distinct valid names other
/// than `*` (duplicates collapse, first occurrence kept). `None` is `group_invalid`.
/// Stops reading at the first entry that makes the list invalid.
pub fn groups(raw: Option<&RawValue>) -> Option<Groups> {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    struct List;
    impl<'de> Visitor<'de> for List {
        type Value = Option<Groups>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array of group names")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut list = Groups::new();
            while let Some(entry) = seq.next_element::<Cow<'de, str>>()? {
                let Some(name) = Name::try_from(&*entry)
                    .ok()
                    .filter(|n| valid_name(n) && n != EVERYONE)
                else {
                    return Ok(None);
                };
                if !list.contains(&name) && list.push(name).is_err() {
                    return Ok(None);
                }
            }
            Ok(Some(list))
        }
    }
    let Some(raw) = raw else {
        return Some(Groups::new());
    };
    let mut de = serde_json::Deserializer::from_str(raw.get());
    de.deserialize_seq(List).ok().flatten()
}

fn req_str<'a>(
    raw: Option<&'a RawValue>,
    id: Option<u32>,
    detail: &'static str,
) -> Result<Cow<'a, str>, DecodeError> {
    match opt_str(raw, id, detail)? {
        Some(s) => Ok(s),
        None => Err(DecodeError { id, detail }),
    }
}

fn opt_str<'a>(
    raw: Option<&'a RawValue>,
    id: Option<u32>,
    detail: &'static str,
) -> Result<Option<Cow<'a, str>>, DecodeError> {
    // Borrow when the string has no escapes (the usual case); copy only when it does.
    match opt::<&str>(raw) {
        Ok(s) => Ok(s.map(Cow::Borrowed)),
        Err(()) => opt::<String>(raw)
            .map(|s| s.map(Cow::Owned))
            .map_err(|()| DecodeError { id, detail }),
    }
}

/// Parse an optional raw field: absent or `null` → `Ok(None)`; wrong type → `Err`.
fn opt<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>) -> Result<Option<T>, ()> {
    match raw {
        None => Ok(None),
        Some(raw) => serde_json::from_str::<Option<T>>(raw.get()).map_err(|_| ()),
    }
}

/// Whether `name` is a valid peer name: 1–32 bytes, no leading or trailing white space,
/// no control characters (C0, DEL, C1), and nothing invisible: no Unicode
/// default-ignorable code point (zero-width characters, BOM, Hangul fillers, variation
/// selectors) and no bidi control, so two entries in a list never look alike.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.chars().any(|c| c.is_control() || invisible(c))
        && name.trim() == name
}

/// Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties, Unicode 16), which
/// includes every Bidi_Control character.
fn invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFF8 | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// Whether two names are the same for uniqueness: equal after NFC normalisation and
/// case folding (Unicode lowercase mapping), so `Door` is taken while `door` is online.
/// Compares lazily, without allocating.
pub fn same_name(a: &str, b: &str) -> bool {
    use unicode_normalization::UnicodeNormalization;
    fn fold(s: &str) -> impl Iterator<Item = char> + '_ {
        s.nfc().flat_map(char::to_lowercase).nfc()
    }
    a == b || fold(a).eq(fold(b))
}

/// The `id` of a message without decoding it, for refusing a flood cheaply: found when
/// it is among the first keys (within [`PEEK_BYTES`]) or is the last key, where clients
/// put it. Looks at a bounded number of bytes whatever the message size.
pub fn peek_id(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    head_id(&b[..b.len().min(PEEK_BYTES)]).or_else(|| tail_id(b))
}

/// How far [`peek_id`] reads from the start of a message.
pub const PEEK_BYTES: usize = 256;

fn digits(b: &[u8]) -> Option<u32> {
    let end = b
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(b.len());
    std::str::from_utf8(&b[..end]).ok()?.parse().ok()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// A forward scan of the top-level keys in `b`.
fn head_id(b: &[u8]) -> Option<u32> {
    let (mut depth, mut key_next, mut i) = (0u32, false, 0);
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                let (key, end) = (b.get(start..j)?, j + 1);
                if depth == 1 && key_next {
                    key_next = false;
                    let colon = skip_ws(b, end);
                    if key == b"id" && b.get(colon) == Some(&b':') {
                        return digits(&b[skip_ws(b, colon + 1)..]);
                    }
                }
                i = end;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                key_next = depth == 1 && b[i] == b'{';
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => key_next = true,
            _ => {}
        }
        i += 1;
    }
    None
}

/// `…,"id":N}` at the very end of `b`, read backwards.
fn tail_id(b: &[u8]) -> Option<u32> {
    let b = b.trim_ascii_end().strip_suffix(b"}")?.trim_ascii_end();
    let start = b.iter().rposition(|c| !c.is_ascii_digit())? + 1;
    let n = digits(&b[start..])?;
    let rest = b[..start]
        .trim_ascii_end()
        .strip_suffix(b":")?
        .trim_ascii_end();
    let rest = rest.strip_suffix(b"\"id\"")?.trim_ascii_end();
    matches!(rest.last(), Some(b',' | b'{')).then_some(n)
}

/// Presence status of a registered peer as others see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Busy,
    /// Idle, in do-not-disturb.
    Dnd,
    Offline,
}

/// One entry of `registered.peers` and `peers.peers`.
#[derive(Debug, Serialize)]
pub struct PeerInfo<'a> {
    pub name: &'a str,
    pub status: Status,
    pub groups: &'a [Name],
}

/// One server message. Serialized once, then shared by every recipient.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMsg<'a> {
    Registered {
        protocol: u32,
        name: &'a str,
        token: &'a str,
        peers: &'a [PeerInfo<'a>],
        #[serde(rename = "iceServers")]
        ice_servers: &'a RawValue,
        /// Whether registering needs an access key (`--access-key`): a web kiosk
        /// auto-answers only on a keyed appliance.
        keyed: bool,
        features: &'a [&'a str],
        /// The station's own groups and do-not-disturb, as the server keeps them (a
        /// resume keeps the earlier ones).
        groups: &'a [Name],
        dnd: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
    },
    Ack {
        id: u32,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
        code: &'static str,
        message: &'a str,
        /// `no_one_available`: the other members that are busy, and those in DND.
        #[serde(skip_serializing_if = "Option::is_none")]
        busy: Option<&'a [&'a str]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        dnd: Option<&'a [&'a str]>,
    },
    Peer {
        name: &'a str,
        status: Status,
        groups: &'a [Name],
    },
    /// Everyone else and their status, replacing what the client knows: sent instead of
    /// `peer` updates that found the client's outbox full.
    Peers {
        peers: &'a [PeerInfo<'a>],
    },
    Call {
        from: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<&'a str>,
    },
    Accept {
        from: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<&'a str>,
    },
    /// To a station: `from` set. To the caller of a group ring or a pager whose ring or
    /// page ended: `group` set instead.
    Hangup {
        #[serde(skip_serializing_if = "Option::is_none")]
        from: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<&'a str>,
        reason: &'a str,
    },
    /// To the caller of a group ring: who is ringing (carries the call's `id` once).
    Ringing {
        group: &'a str,
        to: &'a [&'a str],
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
    },
    /// To a pager: who is listening (carries the page's `id` once).
    Paging {
        group: &'a str,
        to: &'a [&'a str],
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
    },
    /// To a listener: a page from `from` to `group` started.
    Page {
        from: &'a str,
        group: &'a str,
    },
    Signal {
        from: &'a str,
        data: &'a RawValue,
    },
}

impl ServerMsg<'_> {
    /// The error message for `code`, with the refused message's `id`.
    pub fn error(id: Option<u32>, code: ErrorCode) -> ServerMsg<'static> {
        ServerMsg::Error {
            id,
            code: code.as_str(),
            message: code.message(),
            busy: None,
            dnd: None,
        }
    }

    /// Encode as one JSON text. Serializing these types cannot fail.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What `GET /healthz` answers.
#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub peers: usize,
    /// Open WebSockets.
    pub connections: usize,
    pub uptime_s: u64,
    pub version: &'static str,
    /// The plain-HTTP port (certificate, set-up guide), `null` when there is none: a
    /// page that cannot open its WebSocket links to the guide there.
    pub http_port: Option<u16>,
    /// TURN allocations in use.
    pub turn_allocations: usize,
}

impl Health {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Parse and validate the `--ice-servers` flag: a JSON array (of RTCIceServer objects).
pub fn parse_ice_servers(json: &str) -> Result<Box<RawValue>, String> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("--ice-servers is not JSON: {e}"))?;
    let serde_json::Value::Array(servers) = &value else {
        return Err("--ice-servers must be a JSON array".into());
    };
    if let Some(bad) = servers.iter().find(|s| s.get("urls").is_none()) {
        return Err(format!("--ice-servers entry without \"urls\": {bad}"));
    }
    RawValue::from_string(value.to_string()).map_err(|e| e.to_string())
}

/// The ICE servers a station is offered: this appliance's TURN relay (`urls`, with the
/// station's ephemeral `username` and `credential`) first, then `--ice-servers`.
pub fn with_turn(
    base: &RawValue,
    urls: &[&str],
    username: &str,
    credential: &str,
) -> Option<Box<RawValue>> {
    #[derive(Serialize)]
    struct Turn<'a> {
        urls: &'a [&'a str],
        username: &'a str,
        credential: &'a str,
    }
    let turn = serde_json::to_string(&Turn {
        urls,
        username,
        credential,
    })
    .ok()?;
    let rest = base
        .get()
        .trim()
        .strip_prefix('[')?
        .strip_suffix(']')?
        .trim();
    let json = match rest {
        "" => format!("[{turn}]"),
        rest => format!("[{turn},{rest}]"),
    };
    RawValue::from_string(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_type() {
        let (id, m) = decode(r#"{"type":"register","name":"주방","id":7}"#).unwrap();
        assert_eq!(id, Some(7));
        assert!(
            matches!(m, ClientMsg::Register { name, token: None, key: None, .. } if name == "주방")
        );
        let (_, m) =
            decode(r#"{"type":"signal","to":"a","data":{"sdp":"x\ny"},"from":"z"}"#).unwrap();
        match m {
            ClientMsg::Signal { to, data } => {
                assert_eq!(to, "a");
                assert_eq!(data.get(), r#"{"sdp":"x\ny"}"#);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn groups_features_and_targets() {
        let g = |json: &str| groups(Some(&*RawValue::from_string(json.into()).unwrap()));
        let list = g(r#"["b","a","b","주방"]"#).unwrap();
        assert_eq!(list.as_slice(), ["b", "a", "주방"]);
        assert_eq!(
            g(r#"["1","2","3","4","5","6","7","8","8","1"]"#)
                .unwrap()
                .len(),
            8
        );
        for bad in [
            r#"["1","2","3","4","5","6","7","8","9"]"#,
            r#"["*"]"#,
            r#"[" a"]"#,
            r#"[""]"#,
            r#"[1]"#,
            r#"["a",null]"#,
            r#""a""#,
            r#"{"a":1}"#,
            "true",
        ] {
            assert!(g(bad).is_none(), "{bad}");
        }
        assert!(groups(None).unwrap().is_empty());

        let (_, m) = decode(
            r#"{"type":"register","name":"a","groups":["x"],"dnd":true,"features":["page","later",
            "preview"]}"#,
        )
        .unwrap();
        let ClientMsg::Register {
            groups: Some(raw),
            dnd: true,
            features,
            ..
        } = m
        else {
            panic!("{m:?}")
        };
        assert_eq!(raw.get(), r#"["x"]"#);
        assert_eq!(
            features,
            Features {
                page: true,
                preview: true
            }
        );
        // Mistyped dnd or features are bad messages; a bad group list is not (yet).
        for bad in [
            r#"{"type":"register","name":"a","dnd":1,"id":4}"#,
            r#"{"type":"register","name":"a","features":"page","id":4}"#,
            r#"{"type":"register","name":"a","features":[1],"id":4}"#,
            r#"{"type":"status","id":4}"#,
            r#"{"type":"status","dnd":"on","id":4}"#,
            r#"{"type":"call","id":4}"#,
            r#"{"type":"call","to":"a","group":"b","id":4}"#,
            r#"{"type":"call","group":7,"id":4}"#,
            r#"{"type":"hangup","id":4}"#,
            r#"{"type":"page","id":4}"#,
        ] {
            assert_eq!(decode(bad).unwrap_err().id, Some(4), "{bad}");
        }
        assert!(decode(r#"{"type":"register","name":"a","groups":7}"#).is_ok());
        let (_, m) = decode(r#"{"type":"call","group":" x"}"#).unwrap();
        assert!(matches!(m, ClientMsg::Call { target: Target::Group(g) } if g == " x"));
        let (_, m) = decode(r#"{"type":"hangup","group":"*","reason":"r"}"#).unwrap();
        assert!(matches!(m, ClientMsg::Hangup { target: Target::Group(g), .. } if g == "*"));
        let (_, m) = decode(r#"{"type":"status","dnd":false}"#).unwrap();
        assert!(matches!(m, ClientMsg::Status { dnd: false }));
    }

    #[test]
    fn recovers_id_of_invalid_message() {
        let e = decode(r#"{"type":"call","id":9}"#).unwrap_err();
        assert_eq!(e.id, Some(9));
        let e = decode(r#"{"type":"nope","id":1}"#).unwrap_err();
        assert_eq!(e.id, Some(1));
        let e = decode(r#"{"type":"call","to":"a","id":-1}"#).unwrap_err();
        assert_eq!(e.id, None);
        let e = decode(r#"{"type":"call","to":"a","id":4294967296}"#).unwrap_err();
        assert_eq!(e.id, None);
    }

    #[test]
    fn null_counts_as_absent() {
        let (id, m) = decode(r#"{"type":"hangup","to":"a","reason":null,"id":null}"#).unwrap();
        assert_eq!(id, None);
        assert!(matches!(m, ClientMsg::Hangup { reason: None, .. }));
        assert!(decode(r#"{"type":"signal","to":"a","data":null}"#).is_err());
    }

    #[test]
    fn rejects_non_objects_and_long_reasons() {
        for bad in ["[]", "[\"register\",\"x\"]", "1", "\"s\"", "", "{", "null"] {
            assert!(decode(bad).is_err(), "{bad}");
        }
        let long = format!(
            r#"{{"type":"hangup","to":"a","reason":"{}"}}"#,
            "x".repeat(33)
        );
        assert!(decode(&long).is_err());
    }

    #[test]
    fn names() {
        assert!(valid_name("주방"));
        assert!(valid_name("front door"));
        assert!(!valid_name(""));
        assert!(!valid_name(" a"));
        assert!(!valid_name("a\u{7}"));
        assert!(!valid_name(&"x".repeat(33)));
        assert!(valid_name(&"x".repeat(32)));
        for invisible in [
            "door\u{200b}",
            "\u{202e}rood",
            "\u{feff}door",
            "\u{3164}",
            "a\u{85}",
        ] {
            assert!(!valid_name(invisible), "{invisible:?}");
        }
    }

    #[test]
    fn names_compare_folded() {
        assert!(same_name("Door", "door"));
        assert!(same_name("DOOR", "door"));
        // é precomposed and decomposed.
        assert!(same_name("caf\u{e9}", "cafe\u{301}"));
        assert!(same_name("Caf\u{e9}", "CAFE\u{301}"));
        assert!(same_name("주방", "주방"));
        assert!(!same_name("door", "doors"));
        assert!(!same_name("kitchen", "door"));
    }

    #[test]
    fn reasons_have_no_control_characters() {
        for bad in [
            "a\\nb",
            "\\r",
            "\\u001b[2J",
            "\\u007f",
            "\\u0085",
            "x\\u0000",
        ] {
            let msg = format!(r#"{{"type":"hangup","to":"a","reason":"{bad}","id":3}}"#);
            let e = decode(&msg).unwrap_err();
            assert_eq!(e.id, Some(3), "{bad}");
        }
        assert!(decode(r#"{"type":"hangup","to":"a","reason":"꺼짐 ok"}"#).is_ok());
    }

    #[test]
    fn peeks_the_id_at_either_end() {
        assert_eq!(peek_id(r#"{"type":"call","id":7,"to":"x"}"#), Some(7));
        assert_eq!(peek_id(r#"{"id": 12 ,"type":"x"}"#), Some(12));
        assert_eq!(
            peek_id(r#"{"type":"signal","data":{"id":5},"id":9}"#),
            Some(9)
        );
        assert_eq!(peek_id(r#"{"data":{"id":5}}"#), None);
        assert_eq!(peek_id(r#"{"reason":"\"id\":4","x":1}"#), None);
        let big = format!(
            r#"{{"type":"signal","data":"{}","id":42}}"#,
            "x".repeat(70_000)
        );
        assert_eq!(peek_id(&big), Some(42));
        let lost = format!(r#"{{"data":"{}","id":42,"z":0}}"#, "x".repeat(70_000));
        assert_eq!(peek_id(&lost), None);
        assert_eq!(peek_id("[1,2]"), None);
        assert_eq!(peek_id(""), None);
    }
}
