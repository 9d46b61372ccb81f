//! The request-head parser and both routers never panic on any bytes, and a parsed head
//! never claims more bytes than it was given.
#![no_main]

use intercomd::http::{HttpCtx, Www, parse_head, route, route_plain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Some((head, len))) = parse_head(data) else {
        return;
    };
    assert!(len <= data.len());
    let www = Www::Embedded(&[("index.html", b"<p>hi</p>", "\"0\"")]);
    let health = || String::from("{}");
    let allowed = ["https://kiosk.lan:8443".to_string()];
    let ctx = HttpCtx {
        www: &www,
        ca_pem: Some(b"pem"),
        allowed_origins: &allowed,
        health: &health,
    };
    let _ = route(&head, &ctx);
    let _ = route_plain(&head, Some(b"pem"), 8443);
    let _ = route_plain(&head, None, 443);
});
