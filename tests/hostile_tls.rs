//! TLS as a LAN device sees it, against the real binary: TLS 1.3 by default, TLS 1.2 only
//! with ECDHE + AEAD, X25519 and P-256; the local CA's name constraints; an existing CA
//! kept as it is; and the server certificate renewed while the server runs, with open
//! connections untouched. The clients are plain blocking OpenSSL clients, so each test
//! says exactly which versions, suites and groups it offers.

mod support;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslConnectorBuilder, SslMethod, SslStream, SslVersion};
use openssl::stack::Stack;
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName, SubjectKeyIdentifier};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509NameBuilder, X509StoreContext};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{Server, ring, start_in, start_server};

/// A client that trusts the server's CA; `f` narrows what it offers.
fn connect_with(
    server: &Server,
    f: impl FnOnce(&mut openssl::ssl::SslConnectorBuilder),
) -> Result<SslStream<TcpStream>, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.cert_store_mut()
        .add_cert(X509::from_pem(&server.ca_pem).unwrap())
        .unwrap();
    f(&mut b);
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(support::patience())).unwrap();
    b.build()
        .connect("localhost", tcp)
        .map_err(|e| e.to_string())
}

fn connect(server: &Server) -> SslStream<TcpStream> {
    connect_with(server, |_| {}).expect("TLS handshake")
}

/// One keep-alive GET /healthz on an open connection: the status code.
fn healthz(tls: &mut SslStream<TcpStream>) -> u16 {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let (head_end, length) = loop {
        let n = tls.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed mid-response");
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (end + 4, length);
        }
    };
    while raw.len() < head_end + length {
        let n = tls.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed mid-body");
        raw.extend_from_slice(&buf[..n]);
    }
    let status = String::from_utf8_lossy(&raw[9..12]).to_string();
    status.parse().unwrap()
}

#[test]
fn a_default_client_gets_tls_1_3() {
    let server = start_server(&[]);
    let mut tls = connect(&server);
    assert_eq!(tls.ssl().version_str(), "TLSv1.3");
    assert_eq!(healthz(&mut tls), 200);
    // Keep-alive over the same session.
    assert_eq!(healthz(&mut tls), 200);
}

#[test]
fn tls_1_2_only_with_ecdhe_and_aead() {
    let server = start_server(&[]);
    let tls12 = |suites: &'static str| {
        move |b: &mut openssl::ssl::SslConnectorBuilder| {
            b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
            b.set_cipher_list(suites).unwrap();
        }
    };
    let cbc = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-ECDSA-AES128-SHA256:\
               ECDHE-ECDSA-AES256-SHA384:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA";
    let refused = connect_with(&server, tls12(cbc));
    assert!(refused.is_err(), "CBC suites were accepted");

    let mut tls = connect_with(&server, tls12("ECDHE-ECDSA-AES128-GCM-SHA256")).unwrap();
    assert_eq!(tls.ssl().version_str(), "TLSv1.2");
    assert_eq!(
        tls.ssl().current_cipher().map(|c| c.name()),
        Some("ECDHE-ECDSA-AES128-GCM-SHA256")
    );
    assert_eq!(healthz(&mut tls), 200);
    let tls = connect_with(&server, tls12("ECDHE-ECDSA-CHACHA20-POLY1305")).unwrap();
    assert_eq!(tls.ssl().version_str(), "TLSv1.2");

    // TLS 1.0 and 1.1 are gone whatever the suite.
    let old = connect_with(&server, |b| {
        b.set_min_proto_version(Some(SslVersion::TLS1)).unwrap();
        b.set_max_proto_version(Some(SslVersion::TLS1_1)).unwrap();
        b.set_cipher_list("ALL:@SECLEVEL=0").unwrap();
    });
    assert!(old.is_err(), "TLS 1.1 was accepted");
}

#[test]
fn x25519_and_p256_are_the_groups() {
    let server = start_server(&[]);
    // Under TLS 1.2 the client's groups also name the curves it accepts for an ECDSA
    // certificate, so there a client offering X25519 offers P-256 too.
    let cases = [
        (SslVersion::TLS1_3, "X25519", true),
        (SslVersion::TLS1_3, "P-256", true),
        (SslVersion::TLS1_3, "P-384:P-521", false),
        (SslVersion::TLS1_2, "X25519:P-256", true),
        (SslVersion::TLS1_2, "P-384:P-521", false),
    ];
    for (version, groups, ok) in cases {
        let r = connect_with(&server, |b| {
            b.set_min_proto_version(Some(version)).unwrap();
            b.set_max_proto_version(Some(version)).unwrap();
            b.set_groups_list(groups).unwrap();
        });
        assert_eq!(r.is_ok(), ok, "{version:?} offering {groups}: {r:?}");
    }
}

fn p256() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A certificate for the name `cn` (and 127.0.0.1) signed by `issuer`, or self-signed (a
/// CA without name constraints) when `issuer` is `None`.
fn certificate(
    cn: &str,
    not_after: i64,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(64, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(unix_now() - 3600).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(not_after).unwrap())
        .unwrap();
    match issuer {
        Some((ca, ca_key)) => {
            b.set_issuer_name(ca.subject_name()).unwrap();
            let mut san = SubjectAlternativeName::new();
            san.dns(cn);
            san.ip("127.0.0.1");
            let san = san.build(&b.x509v3_context(Some(ca), None)).unwrap();
            b.append_extension(san).unwrap();
            b.sign(ca_key, MessageDigest::sha256()).unwrap();
        }
        None => {
            b.set_issuer_name(&name).unwrap();
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            let ski = SubjectKeyIdentifier::new()
                .build(&b.x509v3_context(None, None))
                .unwrap();
            b.append_extension(ski).unwrap();
            b.sign(key, MessageDigest::sha256()).unwrap();
        }
    }
    b.build()
}

fn load_ca(dir: &Path) -> (X509, PKey<Private>) {
    let ca = X509::from_pem(&std::fs::read(dir.join("ca.crt")).unwrap()).unwrap();
    let key = PKey::private_key_from_pem(&std::fs::read(dir.join("ca.key")).unwrap()).unwrap();
    (ca, key)
}

/// Whether `cert` verifies under `ca` alone (signature, dates, name constraints).
fn verifies(ca: &X509, cert: &X509) -> Result<(), String> {
    let mut store = X509StoreBuilder::new().unwrap();
    store.add_cert(ca.clone()).unwrap();
    let store = store.build();
    let mut ctx = X509StoreContext::new().unwrap();
    let chain = Stack::new().unwrap();
    ctx.init(&store, cert, &chain, |c| {
        Ok(if c.verify_cert()? {
            Ok(())
        } else {
            Err(c.error().to_string())
        })
    })
    .unwrap()
}

#[test]
fn a_new_ca_is_limited_to_lan_names() {
    let server = start_server(&[]);
    let (ca, ca_key) = load_ca(server.state_dir());
    let text = String::from_utf8(ca.to_text().unwrap()).unwrap();
    assert!(text.contains("X509v3 Name Constraints: critical"), "{text}");
    for permitted in [
        "DNS:localhost",
        "DNS:local\n",
        "DNS:lan\n",
        "DNS:home.arpa",
        "DNS:internal",
        "IP:127.0.0.0/255.0.0.0",
        "IP:10.0.0.0/255.0.0.0",
        "IP:172.16.0.0/255.240.0.0",
        "IP:192.168.0.0/255.255.0.0",
        "IP:169.254.0.0/255.255.0.0",
        "IP:0:0:0:0:0:0:0:1/FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF",
        "IP:FE80:0:0:0:0:0:0:0/FFC0:0:0:0:0:0:0:0",
        "IP:FC00:0:0:0:0:0:0:0/FE00:0:0:0:0:0:0:0",
    ] {
        assert!(text.contains(permitted), "{permitted} missing:\n{text}");
    }
    assert!(!text.contains("Excluded"), "{text}");

    // The server certificate it issued verifies under the constraints, by itself and in
    // a real handshake (which checks the host name too).
    let server_crt =
        X509::from_pem(&std::fs::read(server.state_dir().join("server.crt")).unwrap()).unwrap();
    assert_eq!(verifies(&ca, &server_crt), Ok(()));
    connect(&server);

    // A certificate the leaked key might mint for someone else's site does not.
    let far = unix_now() + 86400;
    let key = p256();
    let lan = certificate("door.local", far, &key, Some((&ca, &ca_key)));
    assert_eq!(verifies(&ca, &lan), Ok(()));
    let bank = certificate("bank.example", far, &key, Some((&ca, &ca_key)));
    let refused = verifies(&ca, &bank).expect_err("a certificate for bank.example verified");
    assert!(refused.contains("permitted"), "{refused}");
}

#[test]
fn an_existing_ca_is_kept_as_it_is() {
    let state = tempfile::tempdir().unwrap();
    let key = p256();
    let old = certificate("old CA", unix_now() + 86400 * 3650, &key, None);
    let ca_pem = old.to_pem().unwrap();
    std::fs::write(state.path().join("ca.crt"), &ca_pem).unwrap();
    std::fs::write(
        state.path().join("ca.key"),
        key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    let server = start_in(state, &[]);
    assert_eq!(server.ca_pem, ca_pem);
    assert_eq!(
        std::fs::read(server.state_dir().join("ca.crt")).unwrap(),
        ca_pem
    );
    let tls = connect(&server);
    let leaf = tls.ssl().peer_certificate().unwrap();
    assert_eq!(verifies(&old, &leaf), Ok(()));
}

#[test]
fn the_server_certificate_renews_itself_while_running() {
    // A first run makes the CA; then the server certificate is replaced by one that
    // enters the 30-day renewal window a few seconds after the second start.
    let first = start_server(&[]);
    let state = first.kill();
    let (ca, ca_key) = load_ca(state.path());
    let key = p256();
    let margin = 10;
    let expires = unix_now() + 30 * 86400 + margin;
    let near = certificate("localhost", expires, &key, Some((&ca, &ca_key)));
    std::fs::write(state.path().join("server.crt"), near.to_pem().unwrap()).unwrap();
    std::fs::write(
        state.path().join("server.key"),
        key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();

    let server = start_in(state, &["--cert-check-interval", "1"]);
    // A tablet registered before the renewal: a WebSocket, the connection that lives long.
    let (mut door, door_cert) = smol::block_on(async {
        let (door, _) = server.register("door").await;
        let cert = door.ws.get_ref().peer_certificate().unwrap().unwrap();
        (door, X509::from_der(&cert.to_der().unwrap()).unwrap())
    });
    let seconds = |cert: &X509| {
        Asn1Time::from_unix(0)
            .unwrap()
            .diff(cert.not_after())
            .map(|d| i64::from(d.days) * 86400 + i64::from(d.secs))
            .unwrap()
    };
    assert_eq!(
        seconds(&door_cert),
        expires,
        "the near-expiry certificate was replaced at start (a start slower than {margin} s?)"
    );

    let until = Instant::now() + Duration::from_secs(margin as u64 + 30);
    let renewed = loop {
        let tls = connect(&server);
        let leaf = tls.ssl().peer_certificate().unwrap();
        if seconds(&leaf) > expires + 300 * 86400 {
            break leaf;
        }
        assert!(
            Instant::now() < until,
            "no renewed certificate; log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(server.log().contains("renewing the server certificate"));
    assert_eq!(verifies(&ca, &renewed), Ok(()));
    let on_disk =
        X509::from_pem(&std::fs::read(server.state_dir().join("server.crt")).unwrap()).unwrap();
    assert_eq!(on_disk.to_der().unwrap(), renewed.to_der().unwrap());

    // The tablet registered before the renewal calls one registered after it.
    smol::block_on(async {
        let (mut kitchen, _) = server.register("kitchen").await;
        ring(&mut door, &mut kitchen, 1).await;
    });
}

/// The suite the server chose for a client configured by `configure`.
fn chosen(server: &Server, configure: impl FnOnce(&mut SslConnectorBuilder)) -> String {
    let tls = connect_with(server, configure).unwrap();
    let cipher = tls.ssl().current_cipher().map(|c| c.name());
    cipher.unwrap_or_default().to_string()
}

#[test]
fn the_server_chooses_the_cipher_not_the_client() {
    let server = start_server(&[]);
    // The client puts AES-256-GCM first, as OpenSSL's own default does; the server
    // answers with the one of AES-128-GCM and ChaCha20-Poly1305 its CPU seals faster.
    let tls13 = chosen(&server, |b| {
        let suites = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256";
        b.set_ciphersuites(suites).unwrap();
    });
    assert!(
        ["TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"].contains(&tls13.as_str()),
        "TLS 1.3 suite {tls13}"
    );
    // The same under TLS 1.2.
    let tls12 = chosen(&server, |b| {
        b.set_max_proto_version(Some(SslVersion::TLS1_2)).unwrap();
        let suites = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:\
                      ECDHE-ECDSA-AES128-GCM-SHA256";
        b.set_cipher_list(suites).unwrap();
    });
    assert!(
        [
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        ]
        .contains(&tls12.as_str()),
        "TLS 1.2 suite {tls12}"
    );
}
