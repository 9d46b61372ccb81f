//! The request-head parser and both routers never panic on any bytes, and a parsed head
//! never claims more bytes than it was given.
#![no_main]

use intercomd::http::{HttpCtx, Port, Www, parse_head, route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(Some((head, len))) = parse_head(data) else {
        return;
    };
    assert!(len <= data.len());
    let www = Www::Embedded(&[
        ("guide.html", b"<a href=\"{https}/\">go</a>", "\"1\""),
        ("index.html", b"<p>hi</p>", "\"0\""),
        ("status.html", b"<p>key?</p>", "\"2\""),
    ]);
    let health = || String::from("{}");
    let owner = |_| String::from("{}");
    let allowed = ["https://kiosk.lan:8443".to_string()];
    let ctx = HttpCtx {
        www: &www,
        ca_pem: Some(b"pem"),
        allowed_origins: &allowed,
        health: &health,
        fingerprint: Some("AB:CD"),
        plain_port: Some(80),
        admin_key: Some("0123456789abcdef"),
        owner: &owner,
    };
    for port in [
        Port::Tls,
        Port::Plain { https_port: 8443 },
        Port::Plain { https_port: 443 },
    ] {
        let _ = route(&head, &ctx, port);
    }
    let no_ca = HttpCtx {
        ca_pem: None,
        admin_key: None,
        plain_port: None,
        ..ctx
    };
    let _ = route(&head, &no_ca, Port::Plain { https_port: 443 });
    let _ = route(&head, &no_ca, Port::Tls);
});
