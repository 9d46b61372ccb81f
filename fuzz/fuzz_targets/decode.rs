//! The client-message decoder never panics, and a decoded `signal` re-encoded as the
//! server relays it carries `data` byte for byte; when `data` is JSON that serde_json
//! accepts (lone UTF-16 surrogate escapes are valid JSON grammar that it refuses), so is
//! the relayed message. A `register`'s group list, checked as the relay checks it, is
//! either refused or at most 8 distinct valid names, none of them `*`.
#![no_main]

use intercomd::protocol::{ClientMsg, MAX_GROUPS, ServerMsg, decode, groups, valid_name};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((_, msg)) = decode(text) else {
        return;
    };
    if let ClientMsg::Register { groups: raw, .. } = &msg
        && let Some(list) = groups(*raw)
    {
        assert!(list.len() <= MAX_GROUPS);
        for (i, g) in list.iter().enumerate() {
            assert!(valid_name(g) && g != "*", "{g:?}");
            assert!(!list[..i].contains(g), "duplicate {g:?}");
        }
    }
    if let ClientMsg::Signal { data, .. } = msg {
        let out = ServerMsg::Signal { from: "x", data }.encode();
        assert_eq!(
            out,
            format!(r#"{{"type":"signal","from":"x","data":{}}}"#, data.get())
        );
        if let Ok(want) = serde_json::from_str::<serde_json::Value>(data.get()) {
            let v: serde_json::Value = serde_json::from_str(&out).expect("relayed signal is JSON");
            assert_eq!(v["data"], want);
        }
    }
});
