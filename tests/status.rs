//! The owner's pages against the real server over real TLS: `/status`, `/status.json`,
//! `/metrics` and `/qr.svg` refuse anyone without the admin key (401) and say nothing
//! then; with the key they show stations, calls, rings, events and counters; `/metrics`
//! is read by a real Prometheus parser (Debian's `python3-prometheus-client`); QR codes
//! decoded by `zbarimg` (Debian's `zbar-tools`, the SVG drawn by `rsvg-convert`) equal
//! the addresses they stand for.

mod support;

use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};
use support::*;

const ADMIN: &str = "owner-key-0123456789abcdef";
const ACCESS: &str = "tablet-key-42";

/// GET `path` over TLS with an optional `Authorization` value.
async fn owner_get(server: &Server, path: &str, auth: Option<&str>) -> (u16, String, Vec<u8>) {
    let port = server.addr.port();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    server
        .http(&format!(
            "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n{auth}Connection: close\r\n\r\n"
        ))
        .await
}

async fn status(server: &Server) -> Value {
    let (code, head, body) =
        owner_get(server, "/status.json", Some(&format!("Bearer {ADMIN}"))).await;
    assert_eq!(code, 200, "{head}");
    assert_eq!(header(&head, "cache-control"), Some("no-store"));
    serde_json::from_slice(&body).expect("status JSON")
}

/// The string `field` of every item of the array `list`, in order.
fn strings<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].as_str().unwrap())
        .collect()
}

/// Register `name` with the access key.
async fn register(server: &Server, name: &str) -> Client {
    let mut c = server.client().await;
    c.send(json!({"type": "register", "name": name, "key": ACCESS}))
        .await;
    let reply = c.recv().await;
    assert_eq!(reply["type"], "registered", "{reply}");
    c.name = name.to_string();
    c
}

fn start() -> Server {
    start_server(&[
        "--admin-key",
        ADMIN,
        "--access-key",
        ACCESS,
        "--ring-timeout",
        "0.5",
        "--http-listen",
        "127.0.0.1:0",
    ])
}

#[test]
fn owner_pages_refuse_without_the_admin_key_and_reveal_nothing() {
    let server = start();
    run(async {
        let _kitchen = register(&server, "kitchen-7f3a").await;
        let fingerprint = status(&server).await["cert"]["ca_fingerprint"]
            .as_str()
            .unwrap()
            .to_string();
        let wrong = [
            None,
            Some("Bearer owner-key-0123456789abcdeF".to_string()),
            Some(format!("Bearer {ADMIN}x")),
            Some(format!("Basic {ADMIN}")),
            Some(ADMIN.to_string()),
            Some("Bearer".to_string()),
        ];
        for path in ["/status", "/status.json", "/metrics", "/qr.svg?text=hello"] {
            for auth in &wrong {
                let (code, head, body) = owner_get(&server, path, auth.as_deref()).await;
                assert_eq!(code, 401, "{path} with {auth:?}");
                assert_eq!(
                    header(&head, "www-authenticate"),
                    Some("Bearer realm=\"intercomd\"")
                );
                let text = String::from_utf8_lossy(&body);
                for secret in [
                    "kitchen-7f3a",
                    &fingerprint,
                    ACCESS,
                    "intercomd_",
                    "127.0.0.1",
                ] {
                    assert!(!text.contains(secret), "{path} {auth:?} shows {secret}");
                }
                assert!(!head.contains("kitchen"), "{head}");
            }
            let (code, _, _) = owner_get(&server, path, Some(&format!("Bearer {ADMIN}"))).await;
            assert_eq!(code, 200, "{path}");
        }
        // The page served without the key is only the key prompt.
        let (_, _, page) = owner_get(&server, "/status", None).await;
        let page = String::from_utf8(page).unwrap();
        assert!(page.contains("id=\"key-form\""), "{page}");
        // The template is not a static file beside it.
        assert_eq!(server.get("/status.html").await.0, 404);
    });
}

#[test]
fn without_an_admin_key_the_owner_pages_do_not_exist() {
    let server = start_server(&[]);
    run(async {
        for path in ["/status", "/status.json", "/metrics", "/qr.svg?text=x"] {
            let (code, _, body) = owner_get(&server, path, Some("Bearer anything-at-all")).await;
            assert_eq!(code, 404, "{path}");
            assert_eq!(body, b"404 Not Found\n");
        }
    });
}

#[test]
fn a_short_admin_key_is_refused_at_start() {
    let out = Command::new(binary())
        .args(["--admin-key", "short"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 16"));
}

#[test]
fn status_shows_stations_calls_rings_and_events() {
    let server = start();
    run(async {
        let mut a = register(&server, "kitchen").await;
        let mut b = register(&server, "door").await;
        let mut c = register(&server, "주방").await;
        let mut d = register(&server, "hall").await;
        // kitchen and door talk; 주방 rings hall.
        ring(&mut a, &mut b, 1).await;
        answer(&mut b, &mut a, 2).await;
        ring(&mut c, &mut d, 3).await;
        // A refused key.
        let mut e = server.client().await;
        e.send(json!({"type": "register", "name": "x", "key": "guess"}))
            .await;
        assert_eq!(e.recv().await["code"], "unauthorized");

        let s = status(&server).await;
        let names = strings(&s["stations"], "name");
        assert_eq!(names, ["door", "hall", "kitchen", "주방"]);
        for st in s["stations"].as_array().unwrap() {
            assert_eq!(st["address"], "127.0.0.1", "{st}");
            assert_eq!(st["status"], "busy", "{st}");
            assert!(st["since"].as_u64().unwrap() > 1_700_000_000, "{st}");
        }
        let calls = s["calls"].as_array().unwrap();
        assert!(calls.contains(&json!({"from": "door", "to": "kitchen", "state": "active"})));
        assert!(calls.contains(&json!({"from": "주방", "to": "hall", "state": "ringing"})));
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert_eq!(s["counters"]["calls_started"], 2);
        assert_eq!(s["counters"]["calls_answered"], 1);
        assert_eq!(s["access_key"], ACCESS);
        assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
        assert!(s["memory_kib"].as_u64().unwrap() > 100);
        let fp = s["cert"]["ca_fingerprint"].as_str().unwrap();
        assert!(
            server
                .log()
                .contains(&format!("CA fingerprint (SHA-256): {fp}"))
        );
        assert!(s["cert"]["server_expires_in_s"].as_i64().unwrap() > 86_400);
        let hours = s["hours"].as_array().unwrap();
        assert_eq!(hours.len(), 24);
        assert_eq!(hours[23], json!([2, 0]));

        // The ring runs out: a missed call, in the counters, the chart and the events.
        assert_eq!(c.recv_type("hangup").await["reason"], "timeout");
        let s = status(&server).await;
        assert_eq!(s["counters"]["calls_missed"], 1);
        assert_eq!(s["hours"][23], json!([2, 1]));
        assert_eq!(s["calls"].as_array().unwrap().len(), 1);
        let events = strings(&s["events"], "text");
        for want in [
            "kitchen registered (1 online)",
            "kitchen -> call door",
            "door -> accept kitchen",
            "주방 -> call hall: no answer",
            "wrong access key from 127.0.0.1",
        ] {
            assert!(
                events.iter().any(|e| e.starts_with(want)),
                "{want} not in {events:#?}"
            );
        }
        assert!(events.len() <= 200);
    });
}

#[test]
fn status_shows_groups_do_not_disturb_group_rings_and_pages() {
    let server = start();
    run(async {
        let join = |name: &'static str, extra: Value| {
            let server = &server;
            async move {
                let mut c = server.client().await;
                let mut msg = json!({"type": "register", "name": name, "key": ACCESS,
                                     "features": ["page", "preview"]});
                for (k, v) in extra.as_object().unwrap() {
                    msg[k] = v.clone();
                }
                let reply = c.request(msg, 1).await;
                assert_eq!(reply["type"], "registered", "{reply}");
                c
            }
        };
        let mut door = join("door", json!({})).await;
        let mut a = join("a", json!({"groups": ["home"]})).await;
        let _night = join("night", json!({"groups": ["home"], "dnd": true})).await;
        let mut pager = join("pager", json!({})).await;
        let mut l = join("l", json!({"groups": ["up"]})).await;
        let r = door
            .request(json!({"type": "call", "group": "home"}), 2)
            .await;
        assert_eq!(r["type"], "ringing", "{r}");
        a.recv_type("call").await;
        let r = pager
            .request(json!({"type": "page", "group": "up"}), 3)
            .await;
        assert_eq!(r["type"], "paging", "{r}");
        l.recv_type("page").await;

        let s = status(&server).await;
        let station = |name: &str| {
            s["stations"]
                .as_array()
                .unwrap()
                .iter()
                .find(|st| st["name"] == name)
                .unwrap()
                .clone()
        };
        assert_eq!(station("night")["status"], "dnd");
        assert_eq!(station("night")["groups"], json!(["home"]));
        assert_eq!(station("a")["with"], "door");
        assert_eq!(station("door")["with"], "home");
        assert_eq!(station("l")["with"], "pager");
        let calls = s["calls"].as_array().unwrap();
        assert!(calls.contains(&json!({"from": "door", "to": "home", "state": "ringing_group"})));
        assert!(calls.contains(&json!({"from": "pager", "to": "up", "state": "paging"})));
        assert_eq!(s["counters"]["calls_started"], 1);
        assert_eq!(s["counters"]["pages"], 1);
        assert_eq!(s["counters"]["turn_allocations"], 0);
        assert_eq!(s["counters"]["turn_relayed_bytes"], 0);
        // The group ring runs out: a missed call; the page is not one.
        assert_eq!(door.recv_type("hangup").await["reason"], "timeout");
        let s = status(&server).await;
        assert_eq!(s["counters"]["calls_missed"], 1);
    });
}

/// `/metrics` after some traffic, as `prometheus_client` reads it: [family, type, sample
/// name, labels, value] per sample.
fn parse_metrics(text: &str) -> Vec<Value> {
    let script = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for f in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in f.samples:\n\
        \x20       out.append([f.name, f.type, s.name, s.labels, s.value])\n\
        print(json.dumps(out))\n";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("/usr/bin/python3 (tests/all installs python3-prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_are_prometheus_text_with_the_expected_series() {
    let server = start();
    run(async {
        let (mut a, mut b) = {
            let mut a = register(&server, "kitchen").await;
            let mut b = register(&server, "door").await;
            ring(&mut a, &mut b, 1).await;
            answer(&mut b, &mut a, 2).await;
            (a, b)
        };
        for i in 0..3 {
            let sig = json!({"type": "signal", "to": "door", "data": {"candidate": i}});
            assert_eq!(a.request(sig, 10 + i).await["type"], "ack");
            b.recv_type("signal").await;
        }
        // Two errors by code, and a connection cut for a wrong key three times.
        assert_eq!(
            a.request(json!({"type": "call", "to": "nobody"}), 20).await["code"],
            "peer_not_found"
        );
        assert_eq!(
            a.request(json!({"type": "accept", "to": "nobody"}), 21)
                .await["code"],
            "no_call"
        );
        let mut e = server.client().await;
        for _ in 0..3 {
            e.send(json!({"type": "register", "name": "x", "key": "guess"}))
                .await;
        }
        let (closed, _) = e.closed().await;
        assert!(matches!(closed, Closed::Frame(1008, _)), "{closed:?}");
        // The close is counted once that session has ended.
        server.wait_health(|h| h["connections"] == 2).await;

        let (code, head, body) =
            owner_get(&server, "/metrics", Some(&format!("Bearer {ADMIN}"))).await;
        assert_eq!(code, 200);
        assert_eq!(
            header(&head, "content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let text = String::from_utf8(body).unwrap();
        let samples = parse_metrics(&text);
        let value = |name: &str, labels: Value| -> Option<f64> {
            samples
                .iter()
                .find(|s| s[2] == name && s[3] == labels)
                .map(|s| s[4].as_f64().unwrap())
        };
        let v = |name: &str| value(name, json!({})).unwrap_or_else(|| panic!("{name}\n{text}"));
        assert_eq!(v("intercomd_calls_started_total"), 1.0);
        assert_eq!(v("intercomd_calls_answered_total"), 1.0);
        assert_eq!(v("intercomd_calls_missed_total"), 0.0);
        assert_eq!(v("intercomd_signals_relayed_total"), 3.0);
        assert_eq!(v("intercomd_pages_total"), 0.0);
        assert_eq!(v("intercomd_stations"), 2.0);
        assert_eq!(v("intercomd_websockets"), 2.0);
        assert_eq!(v("intercomd_turn_allocations"), 0.0);
        assert_eq!(v("intercomd_turn_relayed_bytes_total"), 0.0);
        assert!(v("intercomd_connections_total") >= 4.0);
        assert!(v("intercomd_received_bytes_total") > 1000.0);
        assert!(v("intercomd_sent_bytes_total") > 1000.0);
        assert!(v("intercomd_certificate_expiry_seconds") > 86_400.0);
        assert!(v("intercomd_ca_expiry_seconds") > v("intercomd_certificate_expiry_seconds"));
        assert!(v("intercomd_resident_memory_bytes") > 1e6);
        let err = |code: &str| value("intercomd_errors_total", json!({ "code": code }));
        assert_eq!(err("peer_not_found"), Some(1.0));
        assert_eq!(err("no_call"), Some(1.0));
        assert_eq!(err("unauthorized"), Some(3.0));
        assert_eq!(
            value("intercomd_closes_total", json!({"code": "1008"})),
            Some(1.0)
        );
        // Families come with their types.
        let family = |name: &str| samples.iter().find(|s| s[0] == name).map(|s| s[1].clone());
        assert_eq!(family("intercomd_calls_started"), Some(json!("counter")));
        assert_eq!(family("intercomd_stations"), Some(json!("gauge")));
    });
}

/// Decode the one QR code in an SVG with `zbarimg` (drawn to PNG by `rsvg-convert`).
fn decode_qr(svg: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (svg_file, png) = (dir.path().join("qr.svg"), dir.path().join("qr.png"));
    std::fs::write(&svg_file, svg).unwrap();
    let st = Command::new("rsvg-convert")
        .args(["-w", "400", "-o"])
        .arg(&png)
        .arg(&svg_file)
        .status()
        .expect("rsvg-convert (tests/all installs librsvg2-bin)");
    assert!(st.success());
    let out = Command::new("zbarimg")
        .args(["--raw", "-q", "-Sbinary"])
        .arg(&png)
        .output()
        .expect("zbarimg (tests/all installs zbar-tools)");
    assert!(out.status.success(), "zbarimg found no code");
    let mut text = String::from_utf8(out.stdout).unwrap();
    if text.ends_with('\n') {
        text.pop();
    }
    text
}

#[test]
fn qr_codes_decode_to_the_addresses_they_stand_for() {
    let server = start();
    run(async {
        let url = format!(
            "https://localhost:{}/?name=%EC%A3%BC%EB%B0%A9&kiosk=1&groups=up,down&autoanswer=1&key={ACCESS}",
            server.addr.port()
        );
        let encoded: String = url
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (code, head, svg) = owner_get(
            &server,
            &format!("/qr.svg?text={encoded}"),
            Some(&format!("Bearer {ADMIN}")),
        )
        .await;
        assert_eq!(code, 200);
        assert_eq!(header(&head, "content-type"), Some("image/svg+xml"));
        assert_eq!(decode_qr(&svg), url);
        // Nothing to encode, or too much: refused.
        let too_long = "a".repeat(1025);
        for bad in [
            "/qr.svg",
            "/qr.svg?text=",
            &format!("/qr.svg?text={too_long}"),
        ] {
            let (code, _, _) = owner_get(&server, bad, Some(&format!("Bearer {ADMIN}"))).await;
            assert_eq!(code, 400, "{bad}");
        }
    });
    // The set-up page's code opens the set-up page.
    let plain = server.plain_addr();
    let (status, _, body) = plain_get(plain, "/", "");
    assert_eq!(status, 200);
    let page = String::from_utf8(body).unwrap();
    let start = page.find("<svg").unwrap();
    let end = page[start..].find("</svg>").unwrap() + start + 6;
    assert_eq!(
        decode_qr(&page.as_bytes()[start..end]),
        format!("http://localhost:{}/", plain.port())
    );
    let fp = server
        .log()
        .split("CA fingerprint (SHA-256): ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(page.contains(&format!(
        "<code id=\"fingerprint\" class=\"fingerprint\">{fp}</code>"
    )));
}

#[test]
fn the_set_up_page_speaks_the_browsers_language_and_loads_only_its_own_files() {
    let server = start();
    let plain = server.plain_addr();
    let get = |target: &str, lang: &str| {
        plain_get(plain, target, &format!("Accept-Language: {lang}\r\n"))
    };
    let (_, _, ko) = get("/", "ko-KR,ko;q=0.9,en;q=0.5");
    assert!(
        String::from_utf8(ko)
            .unwrap()
            .contains("<html lang=\"ko\">")
    );
    let (_, en, body) = get("/", "en-GB,ko;q=0.5");
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("<html lang=\"en\">")
    );
    let https = format!("https://localhost:{}", server.addr.port());
    let wss = format!("wss://localhost:{}", server.addr.port());
    assert_eq!(
        header(&en, "content-security-policy"),
        Some(
            format!(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' {https}; \
                 connect-src {wss}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            )
            .as_str()
        )
    );
    // Its script and styles come from the plain port too; the web client does not.
    for file in ["/setup.js", "/setup.css"] {
        assert!(get(file, "en").1.starts_with("HTTP/1.1 200"), "{file}");
    }
    assert!(get("/status.js", "en").1.starts_with("HTTP/1.1 301"));
}
