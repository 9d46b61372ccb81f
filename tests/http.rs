//! HTTP on the TLS port and the plain port: static files and their headers, path
//! traversal, the Origin check on the WebSocket upgrade, `/healthz`, `/ca.crt`, request
//! head limits, and the plain-HTTP install guide and redirects.

mod support;

use serde_json::json;
use std::path::Path;
use support::*;

/// A `--www` directory with one file of each kind, inside a parent holding a secret.
struct Site {
    root: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let root = tempfile::tempdir().unwrap();
        let www = root.path().join("www");
        std::fs::create_dir_all(www.join("sub")).unwrap();
        for (name, body) in [
            ("index.html", "<!doctype html><p>home</p>"),
            ("app.js", "console.log(1)"),
            ("style.css", "p{}"),
            ("icon.svg", "<svg/>"),
            ("icon.png", "PNG"),
            ("manifest.webmanifest", "{}"),
            ("data.json", "{}"),
            ("notes.txt", "hi"),
            ("blob.bin", "??"),
            ("sub/index.html", "<p>sub</p>"),
        ] {
            std::fs::write(www.join(name), body).unwrap();
        }
        std::fs::write(root.path().join("secret.txt"), "TOPSECRET").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret.txt"), www.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(root.path(), www.join("up")).unwrap();
        std::os::unix::fs::symlink(www.join("notes.txt"), www.join("inside.txt")).unwrap();
        Site { root }
    }

    fn www(&self) -> String {
        self.root.path().join("www").display().to_string()
    }
}

fn get_request(target: &str, port: u16) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n")
}

#[test]
fn embedded_index_and_headers() {
    let server = start_server(&[]);
    let port = server.addr.port();
    run(async {
        let (head, body) = server.get_ok("/", "text/html; charset=utf-8").await;
        assert_eq!(header(&head, "cache-control"), Some("no-cache"));
        assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
        let csp = header(&head, "content-security-policy").expect("CSP");
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(
            csp.contains(&format!("connect-src 'self' wss://localhost:{port};")),
            "{csp}"
        );
        assert_eq!(
            header(&head, "content-length"),
            Some(body.len().to_string().as_str())
        );
        assert!(
            String::from_utf8_lossy(&body[..15]).eq_ignore_ascii_case("<!doctype html>"),
            "{}",
            String::from_utf8_lossy(&body)
        );
        let (status, _, same) = server.get("/index.html").await;
        assert_eq!((status, same), (200, body.clone()));

        // Revalidation, HEAD, and the CSP following the Host the page was loaded from.
        let etag = header(&head, "etag").expect("ETag").to_string();
        let (status, head304, body304) = server
            .http(&format!(
                "GET / HTTP/1.1\r\nHost: localhost:{port}\r\nIf-None-Match: {etag}\r\n\
                 Connection: close\r\n\r\n"
            ))
            .await;
        assert_eq!((status, body304.len()), (304, 0), "{head304}");
        let (status, head_only, none) = server
            .http("HEAD / HTTP/1.1\r\nHost: pi.local:8443\r\nConnection: close\r\n\r\n")
            .await;
        assert_eq!((status, none.len()), (200, 0));
        assert_eq!(
            header(&head_only, "content-length"),
            Some(body.len().to_string().as_str())
        );
        let csp = header(&head_only, "content-security-policy").unwrap();
        assert!(
            csp.contains("connect-src 'self' wss://pi.local:8443;"),
            "{csp}"
        );

        // Errors carry nosniff too.
        let (status, head, _) = server.get("/no-such-file.js").await;
        assert_eq!(status, 404);
        assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
        let (status, head, _) = server
            .http(&format!(
                "POST / HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Length: 0\r\n\r\n"
            ))
            .await;
        assert_eq!(status, 405);
        assert_eq!(header(&head, "allow"), Some("GET, HEAD"));
        let (status, _, _) = server.get("/ws").await;
        assert_eq!(status, 426, "/ws without an upgrade");
        for bad_host in ["", "Host: a b\r\n", "Host: x\"><script>\r\n"] {
            let (status, _, _) = server
                .http(&format!(
                    "GET / HTTP/1.1\r\n{bad_host}Connection: close\r\n\r\n"
                ))
                .await;
            assert_eq!(status, 400, "{bad_host:?}");
        }
    });
}

#[test]
fn www_dir_content_types() {
    let site = Site::new();
    let server = start_server(&["--www", &site.www()]);
    run(async {
        for (path, ty, body) in [
            (
                "/",
                "text/html; charset=utf-8",
                "<!doctype html><p>home</p>",
            ),
            (
                "/app.js",
                "text/javascript; charset=utf-8",
                "console.log(1)",
            ),
            ("/style.css", "text/css; charset=utf-8", "p{}"),
            ("/icon.svg", "image/svg+xml", "<svg/>"),
            ("/icon.png", "image/png", "PNG"),
            ("/manifest.webmanifest", "application/manifest+json", "{}"),
            ("/data.json", "application/json", "{}"),
            ("/notes.txt", "text/plain; charset=utf-8", "hi"),
            ("/inside.txt", "text/plain; charset=utf-8", "hi"),
            ("/blob.bin", "application/octet-stream", "??"),
            ("/sub/", "text/html; charset=utf-8", "<p>sub</p>"),
            (
                "/app.js?v=2",
                "text/javascript; charset=utf-8",
                "console.log(1)",
            ),
            (
                "/%61pp.js",
                "text/javascript; charset=utf-8",
                "console.log(1)",
            ),
        ] {
            let (head, got) = server.get_ok(path, ty).await;
            assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
            assert_eq!(header(&head, "cache-control"), Some("no-cache"), "{path}");
            assert!(header(&head, "content-security-policy").is_some(), "{path}");
            assert_eq!(got, body.as_bytes(), "{path}");
        }
    });
}

#[test]
fn path_traversal_never_leaves_the_web_root() {
    let site = Site::new();
    let secret = site.root.path().join("secret.txt");
    let secret = secret.display();
    let attempts = [
        "/../secret.txt".to_string(),
        "/%2e%2e/secret.txt".into(),
        "/%2E%2E/secret.txt".into(),
        "/.%2e/secret.txt".into(),
        "/..%2fsecret.txt".into(),
        "/%2e%2e%2fsecret.txt".into(),
        "/sub/../../secret.txt".into(),
        "/sub/%2e%2e/%2e%2e/secret.txt".into(),
        "/./../secret.txt".into(),
        "//../secret.txt".into(),
        "/..%5csecret.txt".into(),
        "/..\\secret.txt".into(),
        "/%252e%252e/secret.txt".into(),
        "/link.txt".into(),
        "/up/secret.txt".into(),
        "/up/www/../secret.txt".into(),
        format!("{secret}"),
        format!("/{secret}"),
        format!("/%2f{}", secret.to_string().trim_start_matches('/')),
        "http://localhost/../secret.txt".into(),
        "../secret.txt".into(),
        "/etc/passwd".into(),
        "/../../../../../../etc/passwd".into(),
        "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd".into(),
        "/secret.txt%00.html".into(),
        "/C:/secret.txt".into(),
    ];
    for args in [vec!["--www", &site.www()], vec![]] {
        let server = start_server(&args);
        let port = server.addr.port();
        run(async {
            for target in &attempts {
                let (status, head, body) = server.http(&get_request(target, port)).await;
                let body = String::from_utf8_lossy(&body);
                assert!(
                    status == 404 || status == 400,
                    "{target} ({args:?}) -> {status}\n{head}{body}"
                );
                assert!(
                    !body.contains("TOPSECRET") && !body.contains("root:"),
                    "{target}: {body}"
                );
            }
        });
    }
}

#[test]
fn healthz_reports_peers_and_connections() {
    let server = start_server(&[]);
    run(async {
        let (head, body) = server.get_ok("/healthz", "application/json").await;
        assert_eq!(header(&head, "cache-control"), Some("no-store"));
        let h: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(h["uptime_s"].is_u64(), "{h}");
        assert_eq!(
            h,
            json!({"status": "ok", "peers": 0, "connections": 0,
                   "uptime_s": h["uptime_s"], "version": env!("CARGO_PKG_VERSION"),
                   "http_port": null, "turn_allocations": 0})
        );
        let [_a, b] = server.stations(["a", "b"]).await;
        let _unregistered = server.client().await;
        server.wait_connections(3, 2).await;
        b.close().await;
        server.wait_connections(2, 1).await;
    });
}

#[test]
fn ca_certificate_download() {
    let server = start_server(&[]);
    run(async {
        let (head, body) = server.get_ok("/ca.crt", "application/x-x509-ca-cert").await;
        assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
        let on_disk = std::fs::read(server.state_dir().join("ca.crt")).unwrap();
        assert!(body.starts_with(b"-----BEGIN CERTIFICATE-----"));
        assert_eq!(body, on_disk);
    });
}

/// A CA and a server certificate for localhost, made here (the operator's own PKI).
fn own_certificates(dir: &Path) -> Vec<u8> {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl CLI");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let genkey = |file: &str| {
        run(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            file,
        ]);
    };
    genkey("ca.key");
    run(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=Own CA",
        "-days",
        "30",
        "-out",
        "ca.pem",
    ]);
    genkey("srv.key");
    run(&[
        "req",
        "-new",
        "-key",
        "srv.key",
        "-subj",
        "/CN=localhost",
        "-out",
        "srv.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "ext.cnf",
        "-out",
        "srv.pem",
    ]);
    std::fs::read(dir.join("ca.pem")).unwrap()
}

#[test]
fn own_certificate_serves_no_ca_download() {
    let pki = tempfile::tempdir().unwrap();
    let ca = own_certificates(pki.path());
    let cert = pki.path().join("srv.pem").display().to_string();
    let key = pki.path().join("srv.key").display().to_string();
    let mut server = start_server(&["--cert", &cert, "--key", &key]);
    assert!(!server.state_dir().join("ca.crt").exists());
    server.ca_pem = ca;
    run(async {
        let (status, _, _) = server.get("/ca.crt").await;
        assert_eq!(status, 404);
        let (_a, reg) = server.register("a").await;
        assert_eq!(reg["name"], "a");
    });
}

#[test]
fn oversized_request_head_gets_431() {
    let server = start_server(&[]);
    let port = server.addr.port();
    run(async {
        let request = |pad: usize| {
            format!(
                "GET / HTTP/1.1\r\nHost: localhost:{port}\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
                "p".repeat(pad)
            )
        };
        let (status, _, _) = server.http(&request(7 * 1024)).await;
        assert_eq!(status, 200);
        let (status, head, _) = server.http(&request(9 * 1024)).await;
        assert_eq!(status, 431, "{head}");
        assert_eq!(header(&head, "connection"), Some("close"));
        let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
        let (status, _, _) = server
            .http(&format!(
                "GET / HTTP/1.1\r\nHost: localhost:{port}\r\n{many}\r\n"
            ))
            .await;
        assert_eq!(status, 431);
    });
}

#[test]
fn origin_check_on_upgrade() {
    let server = start_server(&["--allow-origin", "https://kiosk.lan:8443"]);
    let port = server.addr.port();
    run(async {
        let own = format!("https://localhost:{port}");
        let allowed = [
            (None, vec![]),
            (None, vec![format!("Origin: {own}")]),
            (None, vec![format!("Origin: HTTPS://LocalHost:{port}")]),
            (
                Some(format!("LOCALHOST:{port}")),
                vec![format!("Origin: {own}")],
            ),
            (
                Some("localhost:443".into()),
                vec!["Origin: https://localhost".into()],
            ),
            (
                Some("localhost".into()),
                vec!["Origin: https://localhost:443".into()],
            ),
            (
                Some("localhost".into()),
                vec!["Origin: https://localhost".into()],
            ),
            (None, vec!["Origin: https://kiosk.lan:8443".into()]),
            (None, vec!["Origin: https://KIOSK.lan:8443".into()]),
        ];
        for (host, headers) in allowed {
            let h: Vec<&str> = headers.iter().map(String::as_str).collect();
            let status = server.upgrade_status(host.as_deref(), &h).await;
            assert_eq!(status, 101, "{host:?} {headers:?}");
        }
        let refused = [
            (None::<String>, "Origin: https://evil.example".to_string()),
            (None, format!("Origin: http://localhost:{port}")),
            (None, format!("Origin: https://localhost:{}", port + 1)),
            (None, "Origin: https://localhost".into()),
            (None, format!("Origin: https://localhost.evil:{port}")),
            (None, "Origin: null".into()),
            (None, "Origin: https://kiosk.lan".into()),
            (None, "Origin: https://kiosk.lan:8443.evil".into()),
            (
                Some("localhost".into()),
                "Origin: https://localhost:8443".into(),
            ),
            (
                Some("localhost:443".into()),
                "Origin: https://localhost:4430".into(),
            ),
        ];
        for (host, origin) in refused {
            let status = server.upgrade_status(host.as_deref(), &[&origin]).await;
            assert_eq!(status, 403, "{host:?} {origin}");
        }
        // A real client: refused with a foreign Origin, served with its own.
        match server
            .client_with(&[("Origin", "https://evil.example")])
            .await
        {
            Err(async_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 403)
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("foreign origin was let in"),
        }
        let mut c = server.client_with(&[("Origin", &own)]).await.unwrap();
        let reg = c.request(json!({"type": "register", "name": "a"}), 1).await;
        assert_eq!(reg["type"], "registered");
    });
}

#[test]
fn plain_http_port_serves_ca_and_guide_and_redirects() {
    let server = start_server(&["--http-listen", "127.0.0.1:0"]);
    let addr = server.plain_addr();
    let tls_port = server.addr.port();
    let get = |target: &str| plain_get(addr, target, "");
    let (status, head, body) = get("/ca.crt");
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "content-type"),
        Some("application/x-x509-ca-cert")
    );
    assert_eq!(body, server.ca_pem);

    let (status, head, body) = get("/");
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&head, "x-content-type-options"), Some("nosniff"));
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("href=\"/ca.crt\""), "{page}");
    assert!(
        page.contains(&format!("href=\"https://localhost:{tls_port}/\"")),
        "{page}"
    );

    // The profile is served here directly, never by a redirect.
    let (status, head, body) = get("/intercom.mobileconfig");
    assert_eq!(status, 200);
    assert_eq!(
        header(&head, "content-type"),
        Some("application/x-apple-aspen-config")
    );
    assert!(String::from_utf8_lossy(&body).contains("com.apple.security.root"));

    for target in ["/index.html", "/ws", "/healthz?x=1", "/a/b"] {
        let (status, head, _) = get(target);
        assert_eq!(status, 301, "{target}");
        assert_eq!(
            header(&head, "location"),
            Some(format!("https://localhost:{tls_port}{target}").as_str())
        );
    }
    // Only GET and HEAD.
    let (status, _, _) = plain_http(
        addr,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status, 405);
    // The HTTPS side tells pages where the guide is, and serves it at /setup; the guide's
    // template itself is not a static file.
    run(async {
        let h = server.health().await;
        assert_eq!(h["http_port"], addr.port(), "{h}");
        let (status, _, body) = server.get("/setup").await;
        assert_eq!(status, 200);
        let page = String::from_utf8(body).unwrap();
        assert!(
            page.contains(&format!("href=\"https://localhost:{tls_port}/\"")),
            "{page}"
        );
        assert!(!page.contains("{https}"), "{page}");
        assert_eq!(server.get("/guide.html").await.0, 404);
        server
            .get_ok("/intercom.mobileconfig", "application/x-apple-aspen-config")
            .await;
    });
}

/// Send raw bytes over TLS and read until the server closes; the whole answer as text.
async fn exchange(server: &Server, request: &[u8]) -> String {
    use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
    let mut tls = server.tls().await;
    tls.write_all(request).await.unwrap();
    tls.flush().await.unwrap();
    let mut raw = Vec::new();
    let read = tls.read_to_end(&mut raw).or(async {
        smol::Timer::after(patience()).await;
        Err(std::io::ErrorKind::TimedOut.into())
    });
    read.await.expect("the server closes the connection");
    String::from_utf8_lossy(&raw).into_owned()
}

/// The statuses of every response in `answer`, in order.
fn statuses(answer: &str) -> Vec<u16> {
    answer
        .split("HTTP/1.1 ")
        .skip(1)
        .filter_map(|r| r.get(..3)?.parse().ok())
        .collect()
}

#[test]
fn duplicate_host_is_refused() {
    let server = start_server(&[]);
    let port = server.addr.port();
    run(async {
        for hosts in [
            format!("Host: localhost:{port}\r\nHost: evil.example"),
            format!("Host: evil.example\r\nHost: localhost:{port}"),
            format!("Host: localhost:{port}\r\nhost: localhost:{port}"),
            format!("Host: localhost:{port}\r\nHost: \u{ff}"),
        ] {
            let (status, head, _) = server
                .http(&format!("GET / HTTP/1.1\r\n{hosts}\r\n\r\n"))
                .await;
            assert_eq!(status, 400, "{hosts:?}");
            assert_eq!(header(&head, "connection"), Some("close"));
        }
        let request = b"GET / HTTP/1.1\r\nHost: localhost\r\nHost: \xff\r\n\r\n";
        assert_eq!(statuses(&exchange(&server, request).await), [400]);
    });
}

#[test]
fn duplicate_origin_on_an_upgrade_is_forbidden() {
    let server = start_server(&["--allow-origin", "https://kiosk.lan:8443"]);
    let port = server.addr.port();
    run(async {
        let own = format!("Origin: https://localhost:{port}");
        let evil = "Origin: https://evil.example".to_string();
        let kiosk = "Origin: https://kiosk.lan:8443".to_string();
        for pair in [
            [own.clone(), evil.clone()],
            [evil.clone(), own.clone()],
            [own.clone(), own.clone()],
            [own.clone(), kiosk.clone()],
            [kiosk, "origin: null".into()],
        ] {
            let h = [pair[0].as_str(), pair[1].as_str()];
            assert_eq!(server.upgrade_status(None, &h).await, 403, "{pair:?}");
        }
        // One Origin is still judged as before.
        assert_eq!(server.upgrade_status(None, &[&own]).await, 101);
        assert_eq!(server.upgrade_status(None, &[&evil]).await, 403);
    });
}

#[test]
fn a_request_with_a_body_is_refused_and_the_connection_closes() {
    let server = start_server(&[]);
    let port = server.addr.port();
    run(async {
        // What follows the head would be a second request if the body were skipped.
        let next = format!("GET /healthz HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n");
        let framings: [&[u8]; 12] = [
            b"Transfer-Encoding: chunked",
            b"Transfer-Encoding: identity",
            b"Transfer-Encoding: \xff",
            b"Content-Length: 1",
            b"Content-Length: 00",
            b"Content-Length: +0",
            b"Content-Length: 0, 0",
            b"Content-Length: 0x",
            b"Content-Length: \xff",
            b"Content-Length: 4\xff",
            b"Content-Length: 0\r\nContent-Length: 5",
            b"Content-Length: 0\r\nTransfer-Encoding: chunked",
        ];
        for framing in framings {
            for method in ["GET / ", "GET /ws ", "HEAD /healthz ", "POST / "] {
                let request = [
                    format!("{method}HTTP/1.1\r\nHost: localhost:{port}\r\n").as_bytes(),
                    framing,
                    b"\r\n\r\n0\r\n\r\n",
                    next.as_bytes(),
                ]
                .concat();
                let answer = exchange(&server, &request).await;
                assert_eq!(
                    statuses(&answer),
                    [400],
                    "{method}{}: {answer}",
                    String::from_utf8_lossy(framing)
                );
                assert_eq!(header(&answer, "connection"), Some("close"));
            }
        }
        // `Content-Length: 0` is no body: keep-alive goes on to the next request.
        let request = format!(
            "GET /healthz HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Length: 0\r\n\r\n\
             GET /healthz HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            statuses(&exchange(&server, request.as_bytes()).await),
            [200, 200]
        );
    });
}

#[test]
fn websocket_key_must_be_16_bytes_of_base64() {
    let server = start_server(&[]);
    let port = server.addr.port();
    run(async {
        let upgrade = |key: &str| {
            format!(
                "GET /ws HTTP/1.1\r\nHost: localhost:{port}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\n{key}Sec-WebSocket-Version: 13\r\n\r\n"
            )
        };
        for key in [
            "Sec-WebSocket-Key: \r\n",
            "Sec-WebSocket-Key: x\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ===\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQAA\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!!==\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSE=\r\n",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZSEh\r\n",
            "",
        ] {
            let (status, _) = server.head(&upgrade(key)).await;
            assert_eq!(status, 400, "{key:?}");
        }
        let (status, _) = server
            .head(&upgrade("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"))
            .await;
        assert_eq!(status, 101);
    });
}

#[test]
fn hidden_files_and_folders_are_never_served() {
    let site = Site::new();
    let www = std::path::PathBuf::from(site.www());
    std::fs::create_dir_all(www.join(".git")).unwrap();
    std::fs::create_dir_all(www.join(".well-known")).unwrap();
    std::fs::write(www.join(".env"), "KEY=secret").unwrap();
    std::fs::write(www.join(".git/config"), "[core]").unwrap();
    std::fs::write(www.join(".git/index.html"), "git").unwrap();
    std::fs::write(www.join(".well-known/x.txt"), "x").unwrap();
    std::fs::write(www.join("sub/.hidden"), "hidden").unwrap();
    std::os::unix::fs::symlink(www.join(".env"), www.join("env.txt")).unwrap();
    std::os::unix::fs::symlink(www.join(".git"), www.join("git")).unwrap();
    let server = start_server(&["--www", &site.www()]);
    run(async {
        for path in [
            "/.env",
            "/%2eenv",
            "/.git/config",
            "/.git/",
            "/.git",
            "/.well-known/x.txt",
            "/sub/.hidden",
            "/sub/%2Ehidden",
            "/env.txt",
            "/git/config",
            "/git/",
        ] {
            let (status, _, body) = server.get(path).await;
            assert_eq!(status, 404, "{path}: {}", String::from_utf8_lossy(&body));
        }
        let (status, _, body) = server.get("/notes.txt").await;
        assert_eq!((status, body.as_slice()), (200, &b"hi"[..]));
    });
}

#[test]
fn large_www_files_are_streamed_whole() {
    let site = Site::new();
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
    std::fs::write(Path::new(&site.www()).join("big.bin"), &big).unwrap();
    let server = start_server(&["--www", &site.www()]);
    run(async {
        let (status, head, body) = server.get("/big.bin").await;
        assert_eq!(status, 200);
        assert_eq!(
            header(&head, "content-length"),
            Some(big.len().to_string().as_str())
        );
        assert!(body == big, "{} bytes arrived", body.len());
    });
}

#[test]
fn a_client_that_never_reads_is_cut_after_the_write_timeout() {
    use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
    let site = Site::new();
    let big = vec![b'x'; 64 * 1024 * 1024];
    std::fs::write(Path::new(&site.www()).join("big.bin"), &big).unwrap();
    let server = start_server(&["--www", &site.www()]);
    let port = server.addr.port();
    run(async {
        let mut tls = server.tls().await;
        let since = std::time::Instant::now();
        tls.write_all(get_request("/big.bin", port).as_bytes())
            .await
            .unwrap();
        tls.flush().await.unwrap();
        // Read nothing: the server gives up on the write, not the other clients.
        let needle = "GET /big.bin: not written within";
        while !server.log().contains(needle) {
            assert!(
                since.elapsed() < std::time::Duration::from_secs(30),
                "the write never timed out"
            );
            let (status, _, _) = server.get("/notes.txt").await;
            assert_eq!(status, 200);
            smol::Timer::after(std::time::Duration::from_millis(500)).await;
        }
        let took = since.elapsed();
        assert!(
            took >= std::time::Duration::from_secs(9),
            "cut after {took:?}"
        );
        let mut raw = Vec::new();
        let _ = tls
            .read_to_end(&mut raw)
            .or(async {
                smol::Timer::after(patience()).await;
                Err(std::io::ErrorKind::TimedOut.into())
            })
            .await;
        assert!(raw.len() < big.len(), "{} bytes arrived", raw.len());
    });
}
