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
/// Longest hangup reason, in bytes.
pub const MAX_REASON_BYTES: usize = 32;

/// A peer name as it lives in the table: bounded, no heap.
pub type Name = heapless::String<MAX_NAME_BYTES>;

/// One decoded client message.
#[derive(Debug)]
pub enum ClientMsg<'a> {
    Register {
        name: Cow<'a, str>,
        token: Option<Cow<'a, str>>,
        key: Option<Cow<'a, str>>,
    },
    Call {
        to: Cow<'a, str>,
    },
    Accept {
        to: Cow<'a, str>,
    },
    Hangup {
        to: Cow<'a, str>,
        reason: Option<Cow<'a, str>>,
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
    let msg = match &*ty {
        "register" => ClientMsg::Register {
            name: string(env.name, "name must be a string")?,
            token: opt_string(env.token, "token must be a string")?,
            key: opt_string(env.key, "key must be a string")?,
        },
        "call" => ClientMsg::Call {
            to: string(env.to, "to must be a string")?,
        },
        "accept" => ClientMsg::Accept {
            to: string(env.to, "to must be a string")?,
        },
        "hangup" => {
            let reason = opt_string(env.reason, "reason must be a string")?;
            if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_BYTES) {
                return bad(id, "reason longer than 32 bytes");
            }
            ClientMsg::Hangup {
                to: string(env.to, "to must be a string")?,
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

/// Whether `name` is a valid peer name (1–32 bytes, no control characters, no leading or
/// trailing white space).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && !name.chars().any(char::is_control)
        && name.trim() == name
}

/// Presence status of a registered peer as others see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Online,
    Busy,
    Offline,
}

/// One entry of `registered.peers` and `peers.peers`.
#[derive(Debug, Serialize)]
pub struct PeerInfo<'a> {
    pub name: &'a str,
    pub status: Status,
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
    },
    Peer {
        name: &'a str,
        status: Status,
    },
    /// Everyone else and their status, replacing what the client knows: sent instead of
    /// `peer` updates that found the client's outbox full.
    Peers {
        peers: &'a [PeerInfo<'a>],
    },
    Call {
        from: &'a str,
    },
    Accept {
        from: &'a str,
    },
    Hangup {
        from: &'a str,
        reason: &'a str,
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
        }
    }

    /// Encode as one JSON text. Serializing these types cannot fail.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_type() {
        let (id, m) = decode(r#"{"type":"register","name":"주방","id":7}"#).unwrap();
        assert_eq!(id, Some(7));
        assert!(
            matches!(m, ClientMsg::Register { name, token: None, key: None } if name == "주방")
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
    }
}
