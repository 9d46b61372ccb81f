//! The server as a process: the certificates it makes and keeps, real TLS, its threads
//! under full load, and a graceful stop on SIGTERM. Reads /proc of the server, so these
//! run only against a native binary.

mod support;

use openssl::nid::Nid;
use openssl::x509::X509;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

fn cert(path: &Path) -> X509 {
    X509::from_pem(&std::fs::read(path).unwrap()).unwrap()
}

fn text(c: &X509) -> String {
    String::from_utf8(c.to_text().unwrap()).unwrap()
}

/// The value lines printed under an extension's heading, e.g. "X509v3 Key Usage".
fn extension<'a>(text: &'a str, name: &str) -> Option<(bool, &'a str)> {
    let mut lines = text.lines();
    let heading = lines.find(|l| l.trim_start().starts_with(&format!("{name}:")))?;
    Some((
        heading.trim_end().ends_with("critical"),
        lines.next()?.trim(),
    ))
}

/// Seconds from not-before to not-after.
fn lifetime(c: &X509) -> i64 {
    let d = c.not_before().diff(c.not_after()).unwrap();
    d.days as i64 * 86_400 + d.secs as i64
}

fn is_p256(c: &X509) -> bool {
    let key = c.public_key().unwrap();
    let ec = key.ec_key().expect("an EC key");
    ec.group().curve_name() == Some(Nid::X9_62_PRIME256V1)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn generated_certificates() {
    let server = start_server(&[]);
    let dir = server.state_dir();
    let ca = cert(&dir.join("ca.crt"));
    let ca_text = text(&ca);
    assert!(is_p256(&ca), "{ca_text}");
    assert_eq!(
        extension(&ca_text, "X509v3 Basic Constraints"),
        Some((true, "CA:TRUE, pathlen:0")),
        "{ca_text}"
    );
    let (critical, usage) = extension(&ca_text, "X509v3 Key Usage").unwrap();
    assert!(critical && usage.contains("Certificate Sign"), "{ca_text}");
    assert!(ca.verify(&ca.public_key().unwrap()).unwrap(), "self-signed");
    let ten_years = 3650 * 86_400 + 3600;
    assert!((lifetime(&ca) - ten_years).abs() < 60, "{ca_text}");

    let srv = cert(&dir.join("server.crt"));
    let srv_text = text(&srv);
    assert!(is_p256(&srv), "{srv_text}");
    assert!(
        srv.verify(&ca.public_key().unwrap()).unwrap(),
        "signed by the CA"
    );
    let (critical, bc) = extension(&srv_text, "X509v3 Basic Constraints").unwrap();
    assert_eq!(bc, "CA:FALSE", "{srv_text}");
    assert!(critical);
    assert_eq!(
        extension(&srv_text, "X509v3 Extended Key Usage"),
        Some((false, "TLS Web Server Authentication")),
        "{srv_text}"
    );
    assert!(extension(&srv_text, "X509v3 Subject Key Identifier").is_some());
    assert!(extension(&srv_text, "X509v3 Authority Key Identifier").is_some());
    let sans = srv.subject_alt_names().expect("SANs");
    let dns: Vec<&str> = sans.iter().filter_map(|n| n.dnsname()).collect();
    let ips: Vec<&[u8]> = sans.iter().filter_map(|n| n.ipaddress()).collect();
    assert!(dns.contains(&"localhost"), "{dns:?}");
    assert!(ips.contains(&&[127, 0, 0, 1][..]), "{ips:?}");
    let v6_loopback = std::net::Ipv6Addr::LOCALHOST.octets();
    assert!(ips.contains(&&v6_loopback[..]), "{ips:?}");
    // 397 days from now (plus the hour it is backdated); iPads refuse longer.
    let days = 397 * 86_400 + 3600;
    assert!((lifetime(&srv) - days).abs() < 60, "{srv_text}");
    let now = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
    let left = now.diff(srv.not_after()).unwrap();
    let left = left.days as i64 * 86_400 + left.secs as i64;
    assert!((left - 397 * 86_400).abs() < 120, "{srv_text}");

    for key in ["ca.key", "server.key"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }
    // The CA's fingerprint is logged for comparing with what a tablet shows.
    let fp = ca.digest(openssl::hash::MessageDigest::sha256()).unwrap();
    let fp: Vec<String> = fp.iter().map(|b| format!("{b:02X}")).collect();
    server.wait_log(&format!("CA fingerprint (SHA-256): {}", fp.join(":")));
}

#[test]
fn certificates_are_kept_and_reissued_when_names_change() {
    let server = start_server(&[]);
    let files = [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "server.names",
    ];
    let read = |dir: &Path| -> Vec<Vec<u8>> {
        files
            .iter()
            .map(|f| std::fs::read(dir.join(f)).unwrap())
            .collect()
    };
    let first = read(server.state_dir());
    let state = server.kill();

    // Same names: everything is reused, and clients trusting the CA still connect.
    let server = start_in(state, &[]);
    assert_eq!(read(server.state_dir()), first);
    run(async {
        server.register("a").await;
    });
    let state = server.kill();

    // A different name set on record: only the server certificate is issued again.
    let names = state.path().join("server.names");
    std::fs::write(&names, "DNS:old-name.local\n").unwrap();
    let server = start_in(state, &[]);
    let now = read(server.state_dir());
    assert_eq!(now[0..2], first[0..2], "the CA is kept");
    assert_ne!(now[2], first[2], "server certificate re-issued");
    assert_ne!(now[3], first[3], "with a new key");
    assert_eq!(now[4], first[4], "for the current names");
    assert_eq!(mode(&server.state_dir().join("server.key")), 0o600);
    let ca = cert(&server.state_dir().join("ca.crt"));
    let srv = cert(&server.state_dir().join("server.crt"));
    assert!(srv.verify(&ca.public_key().unwrap()).unwrap());
    run(async {
        server.register("a").await;
    });
}

#[test]
fn tls_is_real() {
    let server = start_server(&[]);
    run(async {
        // A client that does not trust the generated CA is refused.
        let tcp = smol::net::TcpStream::connect(server.addr).await.unwrap();
        let refused = async_native_tls::TlsConnector::new()
            .connect("localhost", tcp)
            .await;
        assert!(refused.is_err(), "handshake without trusting the CA");
        // Trusting it, both names work: localhost and 127.0.0.1 are in the certificate.
        let tcp = smol::net::TcpStream::connect(server.addr).await.unwrap();
        let ca = async_native_tls::Certificate::from_pem(&server.ca_pem).unwrap();
        let ok = async_native_tls::TlsConnector::new()
            .add_root_certificate(ca)
            .connect("127.0.0.1", tcp)
            .await;
        assert!(ok.is_ok(), "{:?}", ok.err());
    });
}

#[test]
fn one_thread_plus_the_reactor_with_64_peers() {
    let server = start_server(&["--ring-timeout", "0.2"]);
    run(async {
        let mut peers = Vec::new();
        for i in 0..64 {
            peers.push(server.register(&format!("p{i}")).await.0);
        }
        // Calls ringing and timing out, too.
        for (i, caller) in peers.iter_mut().take(32).enumerate() {
            let call = serde_json::json!({"type": "call", "to": format!("p{}", 63 - i)});
            caller.send(call).await;
        }
        peers[0].recv_type("hangup").await;
        let h = server.health().await;
        assert_eq!(
            (h["peers"].as_u64(), h["connections"].as_u64()),
            (Some(64), Some(64))
        );
        assert_eq!(server.threads(), vec!["async-io", "intercomd"]);
    });
}

#[test]
fn sigterm_closes_every_websocket_with_1001_and_exits_0() {
    let mut server = start_server(&[]);
    run(async {
        let (mut a, mut b) = call_pair(&server, "a", "b").await;
        let (mut c, _) = server.register("c").await;
        let mut d = server.client().await; // not registered
        let _http = server.tls().await; // an idle socket on the TLS port
        let started = Instant::now();
        server.send_sigterm();
        use futures_lite::future::zip;
        let ((a, b), (c, d)) = zip(zip(a.closed(), b.closed()), zip(c.closed(), d.closed())).await;
        for (closed, _) in [a, b, c, d] {
            match closed {
                Closed::Frame(1001, _) => {}
                other => panic!("expected close 1001, got {other:?}"),
            }
        }
        let status = server.wait_exit();
        assert!(status.success(), "{status:?}");
        let took = started.elapsed();
        // Every socket closed, so well inside the server's 1.5 s shutdown grace.
        let bound = at_most(Duration::from_millis(1500), Duration::from_millis(500));
        assert!(took < bound, "exit took {took:?}");
    });
}
