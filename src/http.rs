//! HTTP/1.1 on the TLS port (and the optional plain port): the request head, routing,
//! static files (embedded or from `--www`), `/healthz`, `/ca.crt`, the Origin check for
//! the WebSocket upgrade (by the rules in `origin.rs`), and response encoding.
//!
//! Parsing and routing are plain functions over bytes, so they can be fuzzed; the only I/O
//! is [`read_head`] and [`write_response`]. A request path never leaves the web root.

use crate::origin::{origin_allowed, valid_host};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use std::borrow::Cow;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Largest request head, in bytes.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Largest number of headers accepted in one request head.
const MAX_HEADERS: usize = 48;
/// A `--www` file is sent in pieces of this size, so a large file never sits in memory.
const FILE_CHUNK: usize = 16 * 1024;

/// The parts of a request head the server looks at.
#[derive(Debug, Default, PartialEq)]
pub struct Head {
    pub method: String,
    pub target: String,
    pub host: Option<String>,
    pub origin: Option<String>,
    /// More than one `Origin` header: which one a browser meant is unknowable.
    pub duplicate_origin: bool,
    pub upgrade_websocket: bool,
    pub connection_upgrade: bool,
    pub ws_key: Option<String>,
    pub ws_version: Option<String>,
    pub if_none_match: Option<String>,
    /// `Authorization`: the owner's pages take the admin key as a bearer token.
    pub authorization: Option<String>,
    /// `Accept-Language`: the set-up page speaks Korean or English.
    pub accept_language: Option<String>,
    pub close: bool,
    /// A `Transfer-Encoding`, or a `Content-Length` other than exactly `0`. No request
    /// here has a body, so such a request is refused and the connection closed: its
    /// body must never be read as the next request.
    pub has_body: bool,
}

/// Why a request head could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// Longer than [`MAX_HEAD_BYTES`] (431).
    TooLarge,
    /// Not HTTP/1.x, or two `Host` headers (400).
    Malformed,
    /// The peer closed or the socket failed before a full head arrived.
    Closed,
}

/// Parse a request head from the start of `buf`. `Ok(None)`: not complete yet.
/// On success also returns the head's length, so bytes after it are kept.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    if len > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge);
    }
    let mut head = Head {
        method: req.method.unwrap_or_default().to_owned(),
        target: req.path.unwrap_or_default().to_owned(),
        close: req.version == Some(0),
        ..Head::default()
    };
    for h in req.headers.iter() {
        let name = h.name;
        // Framing, Host and Origin are judged whatever their bytes: a value that is not
        // UTF-8 must not slip past as "no body" or "no second Host".
        let raw = h.value.trim_ascii();
        if name.eq_ignore_ascii_case("content-length") {
            head.has_body |= raw != b"0";
            continue;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.has_body = true;
            continue;
        } else if name.eq_ignore_ascii_case("host") {
            if head.host.is_some() {
                return Err(HeadError::Malformed);
            }
            // Lossy: a replacement character fails `valid_host` (400).
            head.host = Some(String::from_utf8_lossy(raw).into_owned());
            continue;
        } else if name.eq_ignore_ascii_case("origin") {
            head.duplicate_origin |= head.origin.is_some();
            // Lossy: a replacement character fails `normalize_origin` (403).
            head.origin = Some(String::from_utf8_lossy(raw).into_owned());
            continue;
        }
        let Ok(value) = std::str::from_utf8(raw) else {
            continue;
        };
        let has_token = |t: &str| value.split(',').any(|v| v.trim().eq_ignore_ascii_case(t));
        if name.eq_ignore_ascii_case("upgrade") {
            head.upgrade_websocket = has_token("websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            head.connection_upgrade |= has_token("upgrade");
            head.close |= has_token("close");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            head.ws_key = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            head.ws_version = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("if-none-match") {
            head.if_none_match = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("authorization") {
            head.authorization = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("accept-language") {
            head.accept_language = Some(value.to_owned());
        }
    }
    Ok(Some((head, len)))
}

/// A `Sec-WebSocket-Key` as RFC 6455 requires: base64 of exactly 16 bytes, which is 22
/// characters, the last holding only two bits (so one of `AQgw`), then `==`.
pub fn valid_ws_key(key: &str) -> bool {
    let b = key.as_bytes();
    let base64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    b.len() == 24 && b[..21].iter().all(base64) && b"AQgw".contains(&b[21]) && &b[22..] == b"=="
}

/// Read one request head into `buf` (which may already hold bytes from the previous
/// request). Returns the head and its length; the caller drains the consumed bytes.
pub async fn read_head<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
) -> Result<(Head, usize), HeadError> {
    // On the heap: an array would sit in the state of every connection's task.
    let mut chunk = vec![0u8; 2048];
    loop {
        if let Some(done) = parse_head(buf)? {
            return Ok(done);
        }
        let room = (MAX_HEAD_BYTES + 1 - buf.len().min(MAX_HEAD_BYTES)).min(chunk.len());
        let n = io
            .read(&mut chunk[..room])
            .await
            .map_err(|_| HeadError::Closed)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Read what the client sends next (one read, at most 2 KiB) into `buf`, which the caller
/// keeps small. `Ok(0)`: the client closed.
pub async fn read_more<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut chunk = vec![0u8; 2048];
    let n = io.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Turn a request target into a path relative to the web root: percent-decoded, query
/// dropped, `/` → `index.html`. `None` for anything that could leave the root (`..`,
/// absolute or drive paths, backslashes, NUL, invalid UTF-8).
pub fn resolve_path(target: &str) -> Option<String> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') {
        return None;
    }
    let decoded = percent_decode(path)?;
    if decoded.contains(['\\', '\0']) {
        return None;
    }
    let mut out = String::with_capacity(decoded.len());
    for seg in decoded.split('/') {
        match seg {
            "" | "." => continue,
            // `..`, and every hidden file or folder (`.git`, `.env`, `.htpasswd`).
            s if s.starts_with('.') => return None,
            s if s.contains(':') => return None,
            s => {
                if !out.is_empty() {
                    out.push('/');
                }
                out.push_str(s);
            }
        }
    }
    if out.is_empty() || decoded.ends_with('/') {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str("index.html");
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Content-Type for a file name.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Where static files come from.
pub enum Www {
    /// The files compiled into the binary: (path, bytes, etag).
    Embedded(&'static [(&'static str, &'static [u8], &'static str)]),
    /// A directory, canonicalized at start.
    Dir(PathBuf),
}

impl Www {
    /// Look up a resolved relative path. A `--www` file is opened here and streamed by
    /// [`write_response`] with synchronous reads: files are local, and the single thread
    /// owns no blocking pool. Hidden names are refused here too, after symlinks resolve.
    pub fn get(&self, rel: &str) -> Option<(Body, Option<&'static str>)> {
        match self {
            Www::Embedded(files) => files
                .iter()
                .find(|(p, _, _)| *p == rel)
                .map(|(_, body, etag)| (Body::Bytes(Cow::Borrowed(*body)), Some(*etag))),
            Www::Dir(root) => {
                let full = root.join(rel).canonicalize().ok()?;
                let hidden = |c: Component| c.as_os_str().as_encoded_bytes().starts_with(b".");
                if full.strip_prefix(root).ok()?.components().any(hidden) {
                    return None;
                }
                // Checked before opening: opening a FIFO would block the one thread.
                if !full.is_file() {
                    return None;
                }
                let file = std::fs::File::open(full).ok()?;
                let meta = file.metadata().ok()?;
                meta.is_file().then(|| (Body::File(file, meta.len()), None))
            }
        }
    }

    /// Open a `--www` directory, canonicalized so symlinks out of it can be detected.
    pub fn dir(path: &Path) -> std::io::Result<Www> {
        let root = path.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::other("not a directory"));
        }
        Ok(Www::Dir(root))
    }
}

/// A response body.
#[derive(Debug)]
pub enum Body {
    Bytes(Cow<'static, [u8]>),
    /// A `--www` file and its length when opened, sent in `FILE_CHUNK` pieces.
    File(std::fs::File, u64),
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::File(_, len) => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Body {
        Body::Bytes(Cow::Owned(b))
    }
}

impl From<Cow<'static, [u8]>> for Body {
    fn from(b: Cow<'static, [u8]>) -> Body {
        Body::Bytes(b)
    }
}

/// One HTTP response, encoded by [`write_response`].
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Body,
    pub extra: Vec<(&'static str, String)>,
    pub close: bool,
    pub head_only: bool,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Body>) -> Self {
        Response {
            status,
            content_type,
            body: body.into(),
            extra: Vec::new(),
            close: false,
            head_only: false,
        }
    }

    /// A short plain-text answer for an error status; the connection then closes.
    pub fn error(status: u16) -> Self {
        let mut r = Response::new(
            status,
            "text/plain; charset=utf-8",
            format!("{} {}\n", status, reason(status)).into_bytes(),
        );
        r.close = true;
        r
    }

    /// `301 Moved Permanently` to `location`; the connection stays open.
    pub fn redirect(location: String) -> Self {
        Response::new(
            301,
            "text/plain; charset=utf-8",
            b"301 Moved Permanently\n".to_vec(),
        )
        .header("Location", location)
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((name, value.into()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The Content-Security-Policy for pages served to `host` (already validated).
pub fn csp(host: &str) -> String {
    format!(
        "default-src 'self'; connect-src 'self' wss://{host}; img-src 'self' data: blob:; \
         media-src 'self' blob: mediastream:; style-src 'self'; script-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// Encode and send a response. A file body is read as it is sent; a file that shrank
/// since it was opened is an error (the length was already promised). The caller bounds
/// the time this may take.
pub async fn write_response<S: AsyncWrite + Unpin>(
    io: &mut S,
    r: &Response,
) -> std::io::Result<()> {
    use std::fmt::Write;
    let mut head = String::with_capacity(256);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    for (k, v) in &r.extra {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    head.push_str(if r.close {
        "Connection: close\r\n\r\n"
    } else {
        "\r\n"
    });
    let mut out = head.into_bytes();
    let with_body = !r.head_only && r.status != 304;
    match &r.body {
        Body::Bytes(b) if with_body => out.extend_from_slice(b),
        Body::File(file, len) if with_body => {
            io.write_all(&out).await?;
            let mut chunk = vec![0u8; FILE_CHUNK];
            let mut left = *len;
            while left > 0 {
                let want = (left as usize).min(FILE_CHUNK);
                let n = (&*file).read(&mut chunk[..want])?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                io.write_all(&chunk[..n]).await?;
                left -= n as u64;
            }
            return io.flush().await;
        }
        _ => {}
    }
    io.write_all(&out).await?;
    io.flush().await
}

/// What the server knows when answering an HTTP request.
pub struct HttpCtx<'a> {
    pub www: &'a Www,
    /// The local CA in PEM, when the server made its own certificates.
    pub ca_pem: Option<&'a [u8]>,
    pub allowed_origins: &'a [String],
    /// `/healthz` body, computed lazily.
    pub health: &'a dyn Fn() -> String,
    /// The local CA's SHA-256 fingerprint, for the set-up page.
    pub fingerprint: Option<&'a str>,
    /// The plain-HTTP port, if any: the set-up page's QR code points there.
    pub plain_port: Option<u16>,
    /// `--admin-key`; without one the owner's pages are not served.
    pub admin_key: Option<&'a str>,
    /// The owner's `/status.json` or `/metrics` body, computed lazily once the key passed.
    pub owner: &'a dyn Fn(Owner) -> String,
}

/// What the owner asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Status,
    Metrics,
}

/// The routing decision for one request.
#[derive(Debug)]
pub enum Route {
    /// A valid WebSocket upgrade on `/ws`; the value is `Sec-WebSocket-Accept`.
    Upgrade(String),
    Respond(Response),
}

/// Which port a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// HTTPS: the web client, the WebSocket, `/healthz`.
    Tls,
    /// Plain HTTP: only what a tablet needs before it trusts the CA; everything else is
    /// redirected to the HTTPS origin.
    Plain { https_port: u16 },
}

/// The set-up guide, `www/guide.html`, is filled in per request and is not served as a
/// static file.
const GUIDE: &str = "guide.html";
/// The owner's page, served only at `/status` (with 401 and no data without the key).
const STATUS_PAGE: &str = "status.html";
/// What the plain port serves of `www/` besides the guide: its script and styles.
const PLAIN_FILES: [&str; 2] = ["/setup.js", "/setup.css"];
/// The most of a `--www` guide that is read.
const GUIDE_MAX_BYTES: u64 = 64 * 1024;

/// Decide what to do with one request. Both ports share the checks (no body, one valid
/// `Host`, GET or HEAD) and `/ca.crt` and the guide; then each has its own paths.
pub fn route(head: &Head, ctx: &HttpCtx, port: Port) -> Route {
    if head.has_body {
        return Route::Respond(Response::error(400));
    }
    let Some(host) = head.host.as_deref().filter(|h| valid_host(h)) else {
        return Route::Respond(Response::error(400));
    };
    let get = head.method == "GET";
    if !get && head.method != "HEAD" {
        return Route::Respond(Response::error(405).header("Allow", "GET, HEAD"));
    }
    let path = head.target.split('?').next().unwrap_or("");
    let https = match port {
        Port::Tls => format!("https://{host}"),
        Port::Plain { https_port: 443 } => format!("https://{}", strip_port(host)),
        Port::Plain { https_port } => format!("https://{}:{https_port}", strip_port(host)),
    };
    let mut resp = match (port, path) {
        (_, "/ca.crt") => match ctx.ca_pem {
            Some(pem) => Response::new(200, "application/x-x509-ca-cert", pem.to_vec()).header(
                "Content-Disposition",
                "attachment; filename=\"intercom-ca.crt\"",
            ),
            None => Response::error(404),
        },
        (_, "/intercom.mobileconfig") => match ctx.ca_pem.and_then(pem_to_der) {
            Some(der) => {
                let profile = crate::mobileconfig::profile(&der, strip_port(host));
                Response::new(200, crate::mobileconfig::CONTENT_TYPE, profile).header(
                    "Content-Disposition",
                    "attachment; filename=\"intercom.mobileconfig\"",
                )
            }
            None => Response::error(404),
        },
        (Port::Plain { .. }, "/") | (Port::Tls, "/setup") => match ctx.ca_pem {
            Some(_) => {
                let setup_url = match (port, ctx.plain_port) {
                    (Port::Plain { .. }, _) => format!("http://{host}/"),
                    (Port::Tls, Some(80)) => format!("http://{}/", strip_port(host)),
                    (Port::Tls, Some(p)) => format!("http://{}:{p}/", strip_port(host)),
                    (Port::Tls, None) => format!("{https}/setup"),
                };
                let page = crate::setup::Page {
                    https: &https,
                    setup_url: &setup_url,
                    fingerprint: ctx.fingerprint.unwrap_or(""),
                    lang: crate::setup::lang(head.accept_language.as_deref()),
                };
                guide(ctx.www, &page)
            }
            None => Response::error(404),
        },
        (Port::Plain { .. }, p) if PLAIN_FILES.contains(&p) => static_file(head, host, ctx.www),
        (Port::Plain { .. }, _) => {
            let target = if head.target.starts_with('/') {
                head.target.as_str()
            } else {
                "/"
            };
            Response::redirect(format!("{https}{target}"))
        }
        (Port::Tls, "/ws") => return upgrade(head, host, ctx),
        (Port::Tls, "/healthz") => {
            Response::new(200, "application/json", (ctx.health)().into_bytes())
                .header("Cache-Control", "no-store")
        }
        (Port::Tls, "/status" | "/status.json" | "/metrics" | "/qr.svg") => {
            owner_route(head, host, ctx, path)
        }
        (Port::Tls, _) => static_file(head, host, ctx.www),
    };
    if !resp.extra.iter().any(|(k, _)| *k == "Cache-Control") {
        resp.extra.push(("Cache-Control", "no-cache".into()));
    }
    resp.head_only = !get;
    resp.close |= head.close;
    Route::Respond(resp)
}

/// The CA's DER from its PEM.
fn pem_to_der(pem: &[u8]) -> Option<Vec<u8>> {
    openssl::x509::X509::from_pem(pem).ok()?.to_der().ok()
}

/// `/ws`: a valid upgrade from an allowed origin, or why not.
fn upgrade(head: &Head, host: &str, ctx: &HttpCtx) -> Route {
    if !(head.method == "GET" && head.upgrade_websocket && head.connection_upgrade) {
        return Route::Respond(Response::error(426).header("Upgrade", "websocket"));
    }
    let (Some(key), Some("13")) = (head.ws_key.as_deref(), head.ws_version.as_deref()) else {
        return Route::Respond(Response::error(400).header("Sec-WebSocket-Version", "13"));
    };
    if !valid_ws_key(key) {
        return Route::Respond(Response::error(400));
    }
    let origin_ok = origin_allowed(head.origin.as_deref(), Some(host), ctx.allowed_origins);
    if head.duplicate_origin || !origin_ok {
        return Route::Respond(Response::error(403));
    }
    Route::Upgrade(async_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// The `101 Switching Protocols` head for an accepted upgrade.
pub fn switching_protocols(accept: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
}

/// A file of the web client, with its ETag (304 when the client has it).
fn static_file(head: &Head, host: &str, www: &Www) -> Response {
    let found = resolve_path(&head.target)
        .filter(|rel| rel != GUIDE && rel != STATUS_PAGE)
        .and_then(|rel| Some((www.get(&rel)?, rel)));
    let Some(((body, etag), rel)) = found else {
        return Response::error(404);
    };
    let fresh = etag.is_some_and(|e| head.if_none_match.as_deref() == Some(e));
    let mut r = Response::new(if fresh { 304 } else { 200 }, content_type(&rel), body)
        .header("Content-Security-Policy", csp(host));
    if let Some(e) = etag {
        r = r.header("ETag", e);
    }
    r
}

/// The owner's endpoints: not served without `--admin-key`; 401 with nothing of the
/// appliance's state without the key (`/status` then is the page that asks for it).
fn owner_route(head: &Head, host: &str, ctx: &HttpCtx, path: &str) -> Response {
    let Some(key) = ctx.admin_key else {
        return Response::error(404);
    };
    let authorized = crate::owner::authorized(head.authorization.as_deref(), Some(key));
    let denied = || {
        Response::error(401)
            .header("WWW-Authenticate", "Bearer realm=\"intercomd\"")
            .header("Cache-Control", "no-store")
    };
    let resp = match path {
        "/status" => {
            let Some((body, _)) = ctx.www.get(STATUS_PAGE) else {
                return Response::error(404);
            };
            let status = if authorized { 200 } else { 401 };
            let r = Response::new(status, "text/html; charset=utf-8", body)
                .header("Content-Security-Policy", csp(host));
            if authorized {
                r
            } else {
                r.header("WWW-Authenticate", "Bearer realm=\"intercomd\"")
            }
        }
        _ if !authorized => return denied(),
        "/status.json" => Response::new(
            200,
            "application/json",
            (ctx.owner)(Owner::Status).into_bytes(),
        ),
        "/metrics" => Response::new(
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            (ctx.owner)(Owner::Metrics).into_bytes(),
        ),
        _ => {
            let text = query_param(&head.target, "text");
            match text.as_deref().and_then(crate::setup::qr_svg) {
                Some(svg) => Response::new(200, "image/svg+xml", svg.into_bytes()),
                None => Response::error(400),
            }
        }
    };
    resp.header("Cache-Control", "no-store")
}

/// The percent-decoded value of `name` in the target's query (`+` stays `+`: the page
/// encodes with `encodeURIComponent`).
fn query_param(target: &str, name: &str) -> Option<String> {
    let (_, query) = target.split_once('?')?;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(percent_decode)
}

/// The set-up guide filled in for this request (see `setup.rs`).
fn guide(www: &Www, p: &crate::setup::Page) -> Response {
    let page = match www.get(GUIDE) {
        Some((Body::Bytes(page), _)) => String::from_utf8_lossy(&page).into_owned(),
        Some((Body::File(file, _), _)) => {
            let mut page = String::new();
            match file.take(GUIDE_MAX_BYTES).read_to_string(&mut page) {
                Ok(_) => page,
                Err(_) => return Response::error(404),
            }
        }
        None => return Response::error(404),
    };
    let page = crate::setup::fill(&page, p);
    Response::new(200, "text/html; charset=utf-8", page.into_bytes())
        .header("Content-Security-Policy", crate::setup::csp(p.https))
}

/// `host:port` → `host`, keeping bracketed IPv6 literals whole.
fn strip_port(host: &str) -> &str {
    if let Some(end) = host.find(']') {
        return &host[..=end];
    }
    host.split(':').next().unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_and_refuses_escapes() {
        assert_eq!(resolve_path("/").as_deref(), Some("index.html"));
        assert_eq!(resolve_path("/app.js?v=1").as_deref(), Some("app.js"));
        assert_eq!(resolve_path("/a/").as_deref(), Some("a/index.html"));
        assert_eq!(resolve_path("/%61pp.js").as_deref(), Some("app.js"));
        for bad in [
            "/../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E%2Fetc",
            "/a/../../b",
            "//etc/passwd/..",
            "/..%5cwin",
            "/%00",
            "/%zz",
            "/c:/x",
            "http://x/",
            "*",
        ] {
            assert_eq!(resolve_path(bad), None, "{bad}");
        }
        // Leading slashes collapse: never an absolute path on disk.
        assert_eq!(resolve_path("//etc/passwd").as_deref(), Some("etc/passwd"));
    }

    #[test]
    fn heads() {
        let raw = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\nrest";
        let (h, len) = parse_head(raw).unwrap().unwrap();
        assert_eq!(&raw[len..], b"rest");
        assert!(h.upgrade_websocket && h.connection_upgrade);
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHo"), Ok(None));
        assert_eq!(
            parse_head(b"\x16\x03\x01garbage\r\n\r\n").err(),
            Some(HeadError::Malformed)
        );
        let long = vec![b'a'; MAX_HEAD_BYTES + 1];
        assert!(parse_head(&long).is_err());
        assert_eq!(strip_port("[::1]:8443"), "[::1]");
    }

    #[test]
    fn ambiguous_heads() {
        let dup_host = b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n";
        assert_eq!(parse_head(dup_host).err(), Some(HeadError::Malformed));
        let (h, _) = parse_head(b"GET / HTTP/1.1\r\nOrigin: x\r\nOrigin: y\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.duplicate_origin);
        for framing in [
            &b"Content-Length: 1"[..],
            b"Content-Length: 00",
            b"Content-Length: \xff",
            b"Content-Length: 0\xff",
            b"Transfer-Encoding: identity",
            b"Transfer-Encoding: \xff",
        ] {
            let raw = [&b"GET / HTTP/1.1\r\nHost: a\r\n"[..], framing, b"\r\n\r\n"].concat();
            let (h, _) = parse_head(&raw).unwrap().unwrap();
            assert!(h.has_body, "{}", String::from_utf8_lossy(framing));
        }
        let (h, _) = parse_head(b"GET / HTTP/1.1\r\nContent-Length:  0 \r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.has_body);
    }

    #[test]
    fn websocket_keys_are_16_bytes_of_base64() {
        assert!(valid_ws_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(valid_ws_key("AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(valid_ws_key("/+/+/+/+/+/+/+/+/+/+/w=="));
        for bad in [
            "",
            "x",
            "dGhlIHNhbXBsZSBub25jZQ=",
            "dGhlIHNhbXBsZSBub25jZR==",
            "dGhlIHNhbXBsZSBub25jZQ==A",
            "dGhlIHNhbXBsZSBub25j ZQ=",
            "dGhlIHNhbXBsZSBub25jZQAA",
            "dGhlIHNhbXBsZSBub25jZQ-_",
            "AAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(!valid_ws_key(bad), "{bad}");
        }
    }

    #[test]
    fn query_parameters_are_percent_decoded() {
        let t = "/qr.svg?x=1&text=https%3A%2F%2Fpi.local%2F%3Fname%3D%EC%A3%BC&y=2";
        assert_eq!(
            query_param(t, "text").as_deref(),
            Some("https://pi.local/?name=주")
        );
        assert_eq!(query_param("/qr.svg?texts=a", "text"), None);
        assert_eq!(query_param("/qr.svg?text=%zz", "text"), None);
        assert_eq!(query_param("/qr.svg", "text"), None);
        assert_eq!(
            query_param("/qr.svg?text=a+b", "text").as_deref(),
            Some("a+b")
        );
    }

    #[test]
    fn hidden_names_are_never_resolved() {
        for bad in [
            "/.env",
            "/.git/config",
            "/sub/.hidden",
            "/%2egit/HEAD",
            "/.well-known/x",
        ] {
            assert_eq!(resolve_path(bad), None, "{bad}");
        }
        assert_eq!(resolve_path("/./app.js").as_deref(), Some("app.js"));
        assert_eq!(resolve_path("/a.b/c.js").as_deref(), Some("a.b/c.js"));
        assert_eq!(strip_port("pi.local:80"), "pi.local");
    }
}
