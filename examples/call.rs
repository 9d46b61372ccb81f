//! A complete call against a running intercomd, the way two tablets would make it:
//! fetch the CA from the plain-HTTP port, trust it, open two TLS WebSockets, register,
//! call, accept, relay a signal each way, hang up, and read `/healthz`.
//!
//! `cross/ci` runs it against the installed package. By hand:
//!
//! ```sh
//! cargo run --release --example call -- 127.0.0.1:8443 127.0.0.1:8080
//! ```
//!
//! The first address is `--listen` (HTTPS), the second `--http-listen`. Prints one line
//! per step and exits non-zero at the first thing that is not as a tablet expects.

use async_native_tls::{Certificate, TlsConnector, TlsStream};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use serde_json::{Value, json};
use smol::net::TcpStream;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// How long any one answer may take.
const PATIENCE: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<TlsStream<TcpStream>>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [https, http] = args.as_slice() else {
        eprintln!("usage: call HTTPS_ADDR HTTP_ADDR   (e.g. 127.0.0.1:8443 127.0.0.1:8080)");
        return ExitCode::from(2);
    };
    let parsed = (https.parse::<SocketAddr>(), http.parse::<SocketAddr>());
    let (Ok(https), Ok(http)) = parsed else {
        eprintln!("call: addresses must be IP:PORT");
        return ExitCode::from(2);
    };
    match smol::block_on(within(PATIENCE * 6, call(https, http))) {
        Ok(()) => {
            println!("call: complete");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("call: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn call(https: SocketAddr, http: SocketAddr) -> Result<(), String> {
    let (status, head, ca) = plain_get(http, "/ca.crt").await?;
    check(
        status == 200,
        format!("GET /ca.crt on {http}: status {status}"),
    )?;
    check(
        head.to_ascii_lowercase()
            .contains("content-type: application/x-x509-ca-cert"),
        format!("GET /ca.crt: wrong content type in\n{head}"),
    )?;
    let ca =
        Certificate::from_pem(&ca).map_err(|e| format!("/ca.crt is no PEM certificate: {e}"))?;
    println!("call: CA fetched from http://{http}/ca.crt");

    let mut door = register(https, &ca, "door").await?;
    let mut kitchen = register(https, &ca, "kitchen").await?;
    expect(
        &mut door,
        json!({"type": "peer", "name": "kitchen", "status": "online", "groups": []}),
    )
    .await?;
    println!(
        "call: door and kitchen registered over wss://localhost:{}/ws",
        https.port()
    );

    send(&mut door, json!({"type": "call", "to": "kitchen", "id": 1})).await?;
    expect(&mut door, json!({"type": "ack", "id": 1})).await?;
    expect(&mut kitchen, json!({"type": "call", "from": "door"})).await?;
    send(
        &mut kitchen,
        json!({"type": "accept", "to": "door", "id": 2}),
    )
    .await?;
    expect(&mut kitchen, json!({"type": "ack", "id": 2})).await?;
    expect(&mut door, json!({"type": "accept", "from": "kitchen"})).await?;
    println!("call: door called kitchen, kitchen accepted");

    let offer = json!({"sdp": {"type": "offer", "sdp": "v=0\r\n"}});
    signal((&mut door, "door"), (&mut kitchen, "kitchen"), offer).await?;
    let answer = json!({"sdp": {"type": "answer", "sdp": "v=0\r\n"}});
    signal((&mut kitchen, "kitchen"), (&mut door, "door"), answer).await?;
    println!("call: offer and answer relayed");

    let health = health(https, &ca).await?;
    check(
        health["status"] == "ok" && health["peers"] == 2 && health["connections"] == 2,
        format!("/healthz during the call: {health}"),
    )?;
    println!("call: /healthz {health}");

    send(&mut door, json!({"type": "hangup", "to": "kitchen"})).await?;
    expect(
        &mut kitchen,
        json!({"type": "hangup", "from": "door", "reason": "ended"}),
    )
    .await?;
    println!("call: door hung up");
    for ws in [&mut door, &mut kitchen] {
        let _ = ws.close(None).await;
    }
    Ok(())
}

fn check(ok: bool, what: String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what) }
}

async fn within<T>(d: Duration, f: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    f.or(async {
        smol::Timer::after(d).await;
        Err(format!("no answer within {d:?}"))
    })
    .await
}

/// One plain-HTTP GET; returns (status, head, body).
async fn plain_get(addr: SocketAddr, path: &str) -> Result<(u16, String, Vec<u8>), String> {
    let mut tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    read_response(&mut tcp, &req).await
}

async fn read_response<S>(s: &mut S, req: &str) -> Result<(u16, String, Vec<u8>), String>
where
    S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin,
{
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    within(PATIENCE, async {
        s.read_to_end(&mut raw).await.map_err(|e| e.to_string())
    })
    .await?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response without a complete head")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, head, raw[split + 4..].to_vec()))
}

/// TLS to `addr`, verified against `ca` for the name `localhost`.
async fn tls(addr: SocketAddr, ca: &Certificate) -> Result<TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    TlsConnector::new()
        .add_root_certificate(ca.clone())
        .connect("localhost", tcp)
        .await
        .map_err(|e| format!("TLS to {addr} trusting the served CA: {e}"))
}

async fn health(addr: SocketAddr, ca: &Certificate) -> Result<Value, String> {
    let mut s = tls(addr, ca).await?;
    let req = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (status, _, body) = read_response(&mut s, req).await?;
    check(status == 200, format!("GET /healthz: status {status}"))?;
    serde_json::from_slice(&body).map_err(|e| format!("/healthz is not JSON: {e}"))
}

async fn register(addr: SocketAddr, ca: &Certificate, name: &str) -> Result<Ws, String> {
    let stream = tls(addr, ca).await?;
    let url = format!("wss://localhost:{}/ws", addr.port());
    let (mut ws, _) = async_tungstenite::client_async(url, stream)
        .await
        .map_err(|e| format!("WebSocket upgrade: {e}"))?;
    send(&mut ws, json!({"type": "register", "name": name})).await?;
    let reply = recv(&mut ws).await?;
    check(
        reply["type"] == "registered" && reply["name"] == name,
        format!("register {name}: {reply}"),
    )?;
    Ok(ws)
}

async fn send(ws: &mut Ws, msg: Value) -> Result<(), String> {
    ws.send(Message::text(msg.to_string()))
        .await
        .map_err(|e| format!("send {msg}: {e}"))
}

/// The next JSON text message, skipping pings.
async fn recv(ws: &mut Ws) -> Result<Value, String> {
    within(PATIENCE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(&t).map_err(|e| format!("not JSON: {t}: {e}"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => return Err(format!("expected a text message, got {other:?}")),
            }
        }
    })
    .await
}

/// The next message must be `want`; presence updates about others are skipped.
/// `from` signals `data` to `to`, which must receive it stamped and unchanged.
async fn signal(from: (&mut Ws, &str), to: (&mut Ws, &str), data: Value) -> Result<(), String> {
    send(from.0, json!({"type": "signal", "to": to.1, "data": data})).await?;
    expect(
        to.0,
        json!({"type": "signal", "from": from.1, "data": data}),
    )
    .await
}

async fn expect(ws: &mut Ws, want: Value) -> Result<(), String> {
    loop {
        let got = recv(ws).await?;
        if got == want {
            return Ok(());
        }
        if got["type"] != "peer" && got["type"] != "peers" {
            return Err(format!("expected {want}, got {got}"));
        }
    }
}
