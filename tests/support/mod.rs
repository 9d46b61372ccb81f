//! Shared test helpers: start the real `intercomd` binary on 127.0.0.1:0 with a temporary
//! state directory, and talk to it over real TLS (trusting the CA it generated) with real
//! WebSocket clients.
//!
//! `INTERCOMD_BIN` overrides the binary (e.g. an ARM build) and `INTERCOMD_RUNNER` is a
//! command prefix to run it through (e.g. `qemu-arm-static`), so the same tests prove a
//! cross-built server.
#![allow(dead_code)]

use async_native_tls::{Certificate, TlsConnector, TlsStream};
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt, StreamExt};
use serde_json::{Value, json};
use smol::net::TcpStream;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many times slower than a quiet x86_64 machine this run may be: 4 under an emulator
/// (`INTERCOMD_RUNNER`), else 1; `INTERCOMD_SLACK` sets it (a loaded or slow machine).
pub fn slack() -> u32 {
    match std::env::var("INTERCOMD_SLACK")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(n) if n >= 1 => n,
        _ if std::env::var_os("INTERCOMD_RUNNER").is_some() => 4,
        _ => 1,
    }
}

/// How long a test waits for a message it expects: 5 s times [`slack`].
pub fn patience() -> Duration {
    Duration::from_secs(5) * slack()
}

/// An upper bound on how long something may take: `expected` plus `margin` times
/// [`slack`]. The lower bound, where there is one, stays `expected`.
pub fn at_most(expected: Duration, margin: Duration) -> Duration {
    expected + margin * slack()
}

/// A running server process.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The state directory when the server has one of its own (removed with it).
    state: Option<tempfile::TempDir>,
    state_dir: PathBuf,
    pub ca_pem: Vec<u8>,
    /// From spawning the process to its "listening on" line, as seen here.
    pub ready: Duration,
    /// The server's own start-up figure from that line, in ms.
    pub self_ms: Option<f64>,
    log: Arc<Mutex<String>>,
}

/// The binary under test: `INTERCOMD_BIN`, or the one cargo built.
pub fn binary() -> PathBuf {
    std::env::var_os("INTERCOMD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_intercomd")))
}

/// How to start a server: `Launch::new().args(..).spawn()`. By default the binary under
/// test on 127.0.0.1:0, run through `INTERCOMD_RUNNER` when set, with a fresh state
/// directory, `--log-level debug`, and the log kept for [`Server::log`].
pub struct Launch {
    bin: PathBuf,
    listen: String,
    state: Option<tempfile::TempDir>,
    state_dir: Option<PathBuf>,
    args: Vec<std::ffi::OsString>,
    env: Vec<(String, String)>,
    log_level: Option<String>,
    cpu: Option<usize>,
    echo: &'static [&'static str],
}

impl Default for Launch {
    fn default() -> Self {
        Self::new()
    }
}

impl Launch {
    pub fn new() -> Launch {
        Launch {
            bin: binary(),
            listen: "127.0.0.1:0".into(),
            state: None,
            state_dir: None,
            args: Vec::new(),
            env: Vec::new(),
            log_level: Some("debug".into()),
            cpu: None,
            echo: &[],
        }
    }

    /// Another binary (a second build), still through `INTERCOMD_RUNNER`.
    pub fn bin(mut self, bin: impl Into<PathBuf>) -> Launch {
        self.bin = bin.into();
        self
    }

    /// Flags after the defaults (later flags win).
    pub fn args<S: AsRef<std::ffi::OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Launch {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.push((key.into(), value.into()));
        self
    }

    /// `--listen` (default 127.0.0.1:0).
    pub fn listen(mut self, addr: SocketAddr) -> Launch {
        self.listen = addr.to_string();
        self
    }

    /// Run in this state directory, which the server then owns (e.g. a restart).
    pub fn state(mut self, dir: tempfile::TempDir) -> Launch {
        self.state = Some(dir);
        self
    }

    /// Run in a state directory the caller keeps (e.g. one certificate for many starts).
    pub fn state_dir(mut self, dir: &Path) -> Launch {
        self.state_dir = Some(dir.to_path_buf());
        self
    }

    /// `--log-level`; `None` leaves the server's default (a benchmark's figures).
    pub fn log_level(mut self, level: Option<&str>) -> Launch {
        self.log_level = level.map(str::to_string);
        self
    }

    /// Pin the server to this CPU with `taskset` (`None`: not pinned).
    pub fn pinned(mut self, cpu: Option<usize>) -> Launch {
        self.cpu = cpu;
        self
    }

    /// A benchmark's server: the server's default log level, and pinned to CPU 0 when
    /// this process is `pinned` to CPU 1 (see [`pin_self`]).
    pub fn bench(self, pinned: bool) -> Launch {
        self.log_level(None).pinned(pinned.then_some(0))
    }

    /// The TURN relay on, on 127.0.0.1 (a free port), relaying from the port range
    /// `ports` (e.g. "51000-51009").
    pub fn turn_relay(self, ports: &str) -> Launch {
        self.args([
            "--turn",
            "on",
            "--turn-listen",
            "127.0.0.1:0",
            "--turn-ports",
            ports,
        ])
    }

    /// Copy log lines containing any of these words to stderr (`INTERCOMD_TEST_LOG`
    /// copies every line).
    pub fn echo(mut self, words: &'static [&'static str]) -> Launch {
        self.echo = words;
        self
    }

    /// Start the server and wait for its "listening on" line (at most 3 × `patience()`).
    pub fn spawn(self) -> Server {
        let (state, state_dir) = match (self.state, self.state_dir) {
            (_, Some(dir)) => (None, dir),
            (Some(t), None) => {
                let dir = t.path().to_path_buf();
                (Some(t), dir)
            }
            (None, None) => {
                let t = tempfile::tempdir().expect("temp dir");
                let dir = t.path().to_path_buf();
                (Some(t), dir)
            }
        };
        let mut prefix: Vec<String> = Vec::new();
        if let Some(cpu) = self.cpu {
            prefix.extend(["taskset".into(), "-c".into(), cpu.to_string()]);
        }
        if let Ok(runner) = std::env::var("INTERCOMD_RUNNER") {
            prefix.extend(runner.split_whitespace().map(str::to_string));
        }
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        // The TURN relay's fixed port would collide between servers running side by side;
        // tests that want it ask for `--turn on` with `--turn-listen 127.0.0.1:0`.
        cmd.args(["--listen", &self.listen, "--turn", "off", "--state-dir"])
            .arg(&state_dir);
        if let Some(level) = &self.log_level {
            cmd.args(["--log-level", level]);
        }
        // The test's own service manager, if any, is not the server's.
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            cmd.env_remove(key);
        }
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn intercomd");
        LIVE.lock().unwrap().push(child.id());
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        let echo = self.echo;
        // Drain the log for the server's whole life, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let all = std::env::var_os("INTERCOMD_TEST_LOG").is_some();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if all || echo.iter().any(|w| line.contains(w)) {
                    eprintln!("server: {line}");
                }
                if let Some(at) = line.find("listening on ") {
                    let rest = &line[at + 13..];
                    let addr = rest.split_whitespace().next().unwrap_or("").parse();
                    // "... listening on <addr> (<ms> ms ...)"
                    let ms = rest
                        .split_once('(')
                        .and_then(|(_, r)| r.split_whitespace().next()?.parse().ok());
                    if let (Some(t), Ok(addr)) = (tx.take(), addr) {
                        let _ = t.send((addr, ms, started.elapsed()));
                    }
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let (addr, self_ms, ready) = match rx.recv_timeout(patience() * 3) {
            Ok(a) => a,
            Err(_) => {
                end(&mut child);
                panic!("server did not start; log:\n{}", log.lock().unwrap());
            }
        };
        let ca_pem = std::fs::read(state_dir.join("ca.crt")).unwrap_or_default();
        Server {
            child: Some(child),
            addr,
            state,
            state_dir,
            ca_pem,
            ready,
            self_ms,
            log,
        }
    }
}

/// Servers started and not yet ended, for [`watchdog`].
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kill `child` and forget it.
fn end(child: &mut Child) {
    LIVE.lock().unwrap().retain(|&p| p != child.id());
    let _ = child.kill();
    let _ = child.wait();
}

/// For benchmarks, which wait on the network without a deadline of their own: if this
/// process is still running after `limit`, say so, kill every server it started and exit
/// with status 3. A figure that cannot be taken fails; it never hangs the caller.
pub fn watchdog(limit: Duration, what: &'static str) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!(
            "{what}: still running after {} s; giving up",
            limit.as_secs()
        );
        for pid in LIVE.lock().unwrap().iter() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        std::process::exit(3);
    });
}

/// For benchmarks: pin this process (all threads to come) to CPU 1, leaving CPU 0 to the
/// server (`Launch::pinned(Some(0))`). False where there is one CPU or no `taskset`.
pub fn pin_self() -> bool {
    let two = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    two && Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Clock ticks per second, the unit of [`Server::cpu_ticks`].
pub fn clock_ticks_per_s() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A child process, killed (and reaped) when dropped.
pub struct Kill(pub Child);

/// `strace` attached to a running process and all its threads, logging the system calls
/// `calls` (e.g. `"accept4,recvfrom"`), only the failed ones when `failed` is set.
pub struct Strace {
    child: Kill,
    out: tempfile::NamedTempFile,
}

impl Strace {
    /// Attach to `pid`; resolves once every thread of it is traced.
    pub async fn attach(pid: u32, calls: &str, failed: bool) -> Strace {
        let out = tempfile::NamedTempFile::new().expect("temp file");
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-qq", "-e", &format!("trace={calls}")]);
        if failed {
            cmd.args(["-e", "status=failed"]);
        }
        let child = cmd
            .arg("-o")
            .arg(out.path())
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("strace (Debian: strace)");
        let traced = || {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                return false;
            };
            tasks.flatten().all(|t| {
                std::fs::read_to_string(t.path().join("status")).is_ok_and(|s| {
                    s.lines().any(|l| {
                        l.starts_with("TracerPid:") && l.split_whitespace().nth(1) != Some("0")
                    })
                })
            })
        };
        let deadline = Instant::now() + patience();
        while !traced() {
            assert!(Instant::now() < deadline, "strace did not attach to {pid}");
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        Strace {
            child: Kill(child),
            out,
        }
    }

    /// Detach and return the log, one line per call.
    pub fn finish(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.0.id().to_string()])
            .status();
        self.child.0.wait().expect("strace exits");
        std::fs::read_to_string(self.out.path()).expect("strace log")
    }
}

/// How many `EAGAIN` answers each file descriptor's `recvfrom` got in a [`Strace`] log,
/// most first.
pub fn eagain_reads_per_fd(log: &str) -> Vec<usize> {
    let mut reads: std::collections::HashMap<&str, usize> = Default::default();
    for line in log.lines().filter(|l| l.contains("EAGAIN")) {
        if let Some(rest) = line.split("recvfrom(").nth(1) {
            *reads
                .entry(rest.split(',').next().unwrap_or(""))
                .or_default() += 1;
        }
    }
    let mut per_fd: Vec<usize> = reads.into_values().collect();
    per_fd.sort_unstable_by(|a, b| b.cmp(a));
    per_fd
}

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// coturn's `turnutils_peer` on 127.0.0.1:`port`, echoing what a TURN client relays to it.
pub fn turn_echo_peer(port: u16) -> Kill {
    Kill(
        Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer (Debian package coturn; tests/all installs it)"),
    )
}

/// The figure after `label` in `turnutils_uclient`'s output, e.g. "Total lost packets 0
/// (0.000000%)".
pub fn uclient_figure(out: &str, label: &str) -> Option<u64> {
    let at = out.rfind(label)? + label.len();
    out[at..]
        .split(|c: char| !c.is_ascii_digit())
        .find(|s| !s.is_empty())?
        .parse()
        .ok()
}

/// The TURN entry of a `registered` message from a server relaying on 127.0.0.1 (see
/// [`Launch::turn_relay`]): (port, username, credential).
pub fn turn_entry(registered: &Value) -> (u16, String, String) {
    let e = &registered["iceServers"][0];
    let urls = e["urls"].as_array().expect("urls");
    let udp = urls[0].as_str().unwrap();
    let port = udp
        .strip_prefix("turn:127.0.0.1:")
        .and_then(|r| r.strip_suffix("?transport=udp"))
        .unwrap_or_else(|| panic!("not a UDP TURN url on 127.0.0.1: {udp}"))
        .parse()
        .unwrap();
    assert_eq!(urls[1], format!("turn:127.0.0.1:{port}?transport=tcp"));
    (
        port,
        e["username"].as_str().unwrap().to_string(),
        e["credential"].as_str().unwrap().to_string(),
    )
}

/// Start the server with short test intervals plus `args` (later flags win).
pub fn start_server(args: &[&str]) -> Server {
    Launch::new().args(args).spawn()
}

/// Start the server in an existing state directory (e.g. to restart with the same CA).
pub fn start_in(state: tempfile::TempDir, args: &[&str]) -> Server {
    Launch::new().state(state).args(args).spawn()
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The server's state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Wait until the log contains `needle`.
    pub fn wait_log(&self, needle: &str) {
        let until = Instant::now() + patience();
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < until,
                "log never said {needle:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A TLS connection to the server that trusts its CA.
    pub async fn tls(&self) -> TlsStream<TcpStream> {
        self.try_tls().await.expect("TLS handshake")
    }

    /// Connect and handshake; the error when the server refuses or the handshake fails.
    pub async fn try_tls(&self) -> Result<TlsStream<TcpStream>, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).unwrap();
        let connector = TlsConnector::new()
            .add_root_certificate(Certificate::from_pem(&self.ca_pem).expect("CA pem"));
        connector
            .connect("localhost", tcp)
            .await
            .map_err(|e| e.to_string())
    }

    /// Open a WebSocket at /ws (not registered yet).
    pub async fn client(&self) -> Client {
        self.client_with(&[]).await.expect("websocket upgrade")
    }

    /// Open a WebSocket with extra request headers.
    pub async fn client_with(&self, headers: &[(&str, &str)]) -> Result<Client, WsError> {
        let tls = self.tls().await;
        self.upgrade(tls, headers).await
    }

    /// Open a WebSocket at /ws; the error when any step fails (a load generator's
    /// connections, which the server may refuse).
    pub async fn try_client(&self) -> Result<Client, String> {
        let tls = self.try_tls().await?;
        self.upgrade(tls, &[]).await.map_err(|e| e.to_string())
    }

    /// The WebSocket upgrade over `tls`, with extra request headers.
    async fn upgrade(
        &self,
        tls: TlsStream<TcpStream>,
        headers: &[(&str, &str)],
    ) -> Result<Client, WsError> {
        use async_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("wss://localhost:{}/ws", self.addr.port())
            .into_client_request()
            .unwrap();
        for (k, v) in headers {
            use async_tungstenite::tungstenite::http::HeaderName;
            let name = HeaderName::from_bytes(k.as_bytes()).expect("header name");
            req.headers_mut()
                .insert(name, v.parse().expect("header value"));
        }
        let cfg = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let (ws, _) = async_tungstenite::client_async_with_config(req, tls, Some(cfg)).await?;
        Ok(Client {
            ws,
            name: String::new(),
        })
    }

    /// Open a WebSocket and register `name`; returns the client and the `registered` reply.
    pub async fn register(&self, name: &str) -> (Client, Value) {
        let mut c = self.client().await;
        c.send(json!({"type": "register", "name": name})).await;
        let reply = c.recv().await;
        assert_eq!(reply["type"], "registered", "register {name}: {reply}");
        c.name = name.to_string();
        (c, reply)
    }

    /// One HTTP/1.1 request over TLS; returns (status, head, body).
    pub async fn http(&self, request: &str) -> (u16, String, Vec<u8>) {
        let mut tls = self.tls().await;
        tls.write_all(request.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let mut raw = Vec::new();
        let _ = tls
            .read_to_end(&mut raw)
            .or(async {
                smol::Timer::after(patience()).await;
                Ok(0)
            })
            .await;
        parse_response(&raw)
    }

    /// GET `path` with a matching Host and `Connection: close`.
    pub async fn get(&self, path: &str) -> (u16, String, Vec<u8>) {
        let port = self.addr.port();
        self.http(&format!(
            "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
        ))
        .await
    }

    /// GET `path` and assert a 200 with this `Content-Type`; (head, body).
    pub async fn get_ok(&self, path: &str, content_type: &str) -> (String, Vec<u8>) {
        let (status, head, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {head}");
        assert_eq!(header(&head, "content-type"), Some(content_type), "{path}");
        (head, body)
    }

    /// Register each of `names` in turn, as [`Server::register`] does; their clients.
    /// The arrival of each is announced to those before it, left unread.
    pub async fn stations<const N: usize>(&self, names: [&str; N]) -> [Client; N] {
        let mut clients = Vec::with_capacity(N);
        for name in names {
            clients.push(self.register(name).await.0);
        }
        clients.try_into().unwrap_or_else(|_| unreachable!())
    }

    /// Wait until `/healthz` counts `connections` connections, then assert that `peers`
    /// of them are registered.
    pub async fn wait_connections(&self, connections: u64, peers: u64) {
        let h = self.wait_health(|h| h["connections"] == connections).await;
        assert_eq!(h["peers"], peers, "{h}");
    }

    /// `/healthz` as JSON.
    pub async fn health(&self) -> Value {
        let (status, _, body) = self.get("/healthz").await;
        assert_eq!(status, 200);
        serde_json::from_slice(&body).expect("healthz JSON")
    }

    /// Poll `/healthz` until `pred` holds.
    pub async fn wait_health(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + patience();
        loop {
            let h = self.health().await;
            if pred(&h) {
                return h;
            }
            assert!(Instant::now() < until, "health never matched: {h}");
            smol::Timer::after(Duration::from_millis(20)).await;
        }
    }

    /// Names of the server's threads, from /proc.
    pub fn threads(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .unwrap()
            .flatten()
            .map(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .collect();
        names.sort();
        names
    }

    /// Open file descriptors of the server.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// (utime, stime) in clock ticks, from `/proc/<pid>/stat`.
    pub fn cpu_ticks(&self) -> (u64, u64) {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        // Fields 14 and 15 of stat; `rest` starts at field 3.
        (
            f.get(11).copied().unwrap_or(0),
            f.get(12).copied().unwrap_or(0),
        )
    }

    /// A `/proc/<pid>/status` field in kB (e.g. "VmRSS"), or a count (`Threads`).
    pub fn status_kb(&self, field: &str) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        s.lines()
            .find(|l| l.starts_with(&format!("{field}:")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Send SIGTERM and wait for the exit (at most `patience()`).
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let started = Instant::now();
        self.send_sigterm();
        (self.wait_exit(), started.elapsed())
    }

    /// Send SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for the process to exit (at most `patience()`).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(st) = self.try_exit() {
                return st;
            }
            assert!(started.elapsed() < patience(), "server did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let st = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(st)
    }

    /// The plain-HTTP address (`--http-listen 127.0.0.1:0`), from the log.
    pub fn plain_addr(&self) -> SocketAddr {
        let needle = "plain HTTP (certificate and guide) on ";
        self.wait_log(needle);
        let log = self.log();
        let at = log.find(needle).unwrap() + needle.len();
        log[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Send a raw request over TLS and read only the response head (for upgrades, which
    /// keep the connection open). Returns (status, head).
    pub async fn head(&self, request: &str) -> (u16, String) {
        let mut tls = self.tls().await;
        tls.write_all(request.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        read_head(&mut tls).await
    }

    /// The status of a WebSocket upgrade request to /ws with these extra header lines
    /// (each "Name: value"); `Host` defaults to `localhost:<port>`.
    pub async fn upgrade_status(&self, host: Option<&str>, headers: &[&str]) -> u16 {
        let host = host
            .map(str::to_string)
            .unwrap_or_else(|| format!("localhost:{}", self.addr.port()));
        let mut req = format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.head(&req).await.0
    }

    /// Kill the server and hand back its state directory for a restart.
    pub fn kill(mut self) -> tempfile::TempDir {
        if let Some(mut c) = self.child.take() {
            end(&mut c);
        }
        self.state.take().expect("a state directory of its own")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            end(&mut c);
        }
    }
}

/// One request on a plain-HTTP port (`--http-listen`), read until the server closes;
/// (status, head, body).
pub fn plain_http(addr: SocketAddr, request: &str) -> (u16, String, Vec<u8>) {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(patience())).unwrap();
    std::io::Write::write_all(&mut tcp, request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = std::io::Read::read_to_end(&mut tcp, &mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, raw[split..].to_vec())
}

/// GET `target` on a plain-HTTP port with `Host: localhost:<port>` and these extra header
/// lines (each ending in CRLF); (status, head, body).
pub fn plain_get(addr: SocketAddr, target: &str, headers: &str) -> (u16, String, Vec<u8>) {
    let port = addr.port();
    plain_http(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: localhost:{port}\r\n{headers}\r\n"),
    )
}

/// Read a response head (up to the blank line) from `io`; (status, head).
pub async fn read_head<S: futures_lite::AsyncRead + Unpin>(io: &mut S) -> (u16, String) {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        while !raw.ends_with(b"\r\n\r\n") {
            match io.read(&mut byte).await {
                Ok(1) => raw.push(byte[0]),
                _ => break,
            }
        }
    };
    read.or(async {
        smol::Timer::after(patience()).await;
    })
    .await;
    let (status, head, _) = parse_response(&raw);
    (status, head)
}

fn parse_response(raw: &[u8]) -> (u16, String, Vec<u8>) {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, raw[split..].to_vec())
}

/// The value of a response header (case-insensitive name).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// A presence update as the server sends it, for a station in no group.
pub fn peer(name: &str, status: &str) -> Value {
    json!({"type": "peer", "name": name, "status": status, "groups": []})
}

/// The exact error the server answers with `code`, carrying `id` when given. Not for
/// `bad_message`, whose message names the problem: see [`assert_bad_message`].
pub fn error(id: Option<u32>, code: &str) -> Value {
    let message = match code {
        "not_registered" => "register first",
        "name_invalid" => "name must be 1-32 bytes, no control characters, no surrounding spaces",
        "name_taken" => "name is in use",
        "full" => "no room for more peers",
        "already_registered" => "this connection is already registered",
        "unauthorized" => "wrong access key",
        "peer_not_found" => "no such peer",
        "busy" => "busy",
        "self_call" => "cannot call yourself",
        "no_call" => "no call with that peer",
        "too_large" => "message too large",
        "rate_limited" => "too many messages",
        "group_invalid" => "groups: at most 8 distinct names, each a valid name other than \"*\"",
        "dnd" => "do not disturb",
        other => panic!("no fixed message for {other}"),
    };
    let mut e = json!({"type": "error", "code": code, "message": message});
    if let Some(id) = id {
        e["id"] = json!(id);
    }
    e
}

/// Assert `got` is a `bad_message` error with exactly this `id` (absent for `None`) and
/// a non-empty explanation.
pub fn assert_bad_message(got: &Value, id: Option<u32>) {
    let mut want = json!({"type": "error", "code": "bad_message"});
    if let Some(id) = id {
        want["id"] = json!(id);
    }
    let mut rest = got.clone();
    let message = rest.as_object_mut().and_then(|o| o.remove("message"));
    assert!(
        message
            .as_ref()
            .and_then(Value::as_str)
            .is_some_and(|m| !m.is_empty()),
        "bad_message without a message: {got}"
    );
    assert_eq!(rest, want, "{got}");
}

/// One WebSocket client.
pub struct Client {
    pub ws: WebSocketStream<TlsStream<TcpStream>>,
    pub name: String,
}

/// How a connection ended, seen from the client.
#[derive(Debug, PartialEq)]
pub enum Closed {
    /// A close frame with this code and reason.
    Frame(u16, String),
    /// The connection ended without a close frame.
    Dropped,
}

impl Client {
    pub async fn send(&mut self, msg: Value) {
        self.send_text(&msg.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send text frame");
    }

    pub async fn send_raw(&mut self, msg: Message) -> Result<(), WsError> {
        self.ws.send(msg).await
    }

    /// Next text message as sent; panics after `patience()` or on anything else.
    pub async fn recv_text(&mut self) -> String {
        let who = self.name.clone();
        match self.next().await {
            Some(Message::Text(t)) => t.to_string(),
            other => panic!("{who}: expected a text message, got {other:?}"),
        }
    }

    /// Close politely and wait for the server's side of the close handshake.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        while let Some(Ok(_)) = self.ws.next().await {}
    }

    /// Next text message as JSON; panics after `patience()` or on anything else.
    pub async fn recv(&mut self) -> Value {
        serde_json::from_str(&self.recv_text().await).expect("server sent JSON")
    }

    /// Next message of the given type, skipping presence updates on the way.
    pub async fn recv_type(&mut self, ty: &str) -> Value {
        loop {
            let m = self.recv().await;
            if m["type"] == ty {
                return m;
            }
            assert!(is_presence(&m), "{}: expected {ty}, got {m}", self.name);
        }
    }

    /// Next frame that is not a ping/pong, or `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Message> {
        let deadline = patience();
        let read = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(m)) => return Some(m),
                    _ => return None,
                }
            }
        };
        read.or(async {
            smol::Timer::after(deadline).await;
            panic!("no message within {deadline:?}");
        })
        .await
    }

    /// Read until the connection ends; returns how it ended. Text messages on the way are
    /// collected into the second value.
    pub async fn closed(&mut self) -> (Closed, Vec<Value>) {
        let mut seen = Vec::new();
        loop {
            match self.next().await {
                Some(Message::Text(t)) => seen.push(serde_json::from_str(&t).unwrap()),
                Some(Message::Close(Some(CloseFrame { code, reason }))) => {
                    return (Closed::Frame(code.into(), reason.to_string()), seen);
                }
                Some(Message::Close(None)) | None => return (Closed::Dropped, seen),
                Some(_) => {}
            }
        }
    }

    /// Assert nothing but pings arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        let got = async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => return Some(other),
                }
            }
        }
        .or(async {
            smol::Timer::after(d).await;
            None
        })
        .await;
        if let Some(m) = got {
            panic!("{}: expected silence, got {m:?}", self.name);
        }
    }

    /// Send `msg` with an `id` and return the server's answer to it.
    pub async fn request(&mut self, mut msg: Value, id: u32) -> Value {
        msg["id"] = json!(id);
        self.send(msg).await;
        loop {
            let m = self.recv().await;
            if m["id"] == json!(id) {
                return m;
            }
            assert!(is_presence(&m), "{}: unexpected {m}", self.name);
        }
    }

    /// Send `msg` as request `id` and assert the server acknowledges exactly it.
    pub async fn acked(&mut self, msg: Value, id: u32) {
        let got = self.request(msg, id).await;
        assert_eq!(got, json!({"type": "ack", "id": id}), "{}", self.name);
    }

    /// Send `msg` as request `id` and assert the server refuses it with exactly
    /// [`error`]`(Some(id), code)`.
    pub async fn refused(&mut self, msg: Value, id: u32, code: &str) {
        let got = self.request(msg, id).await;
        assert_eq!(got, error(Some(id), code), "{}", self.name);
    }
}

/// A presence update: one peer's status, or the whole list that replaces dropped ones.
pub fn is_presence(m: &Value) -> bool {
    m["type"] == "peer" || m["type"] == "peers"
}

/// Run an async test body on a fresh single-threaded executor.
pub fn run<F: std::future::Future<Output = ()>>(f: F) {
    smol::block_on(f)
}

/// `caller` calls `callee` as request `id`, which is acknowledged, and `callee` receives
/// exactly that call (presence noise skipped).
pub async fn ring(caller: &mut Client, callee: &mut Client, id: u32) {
    acked_and_delivered(caller, callee, "call", id).await;
}

/// `callee` accepts `caller`'s call as request `id`, which is acknowledged, and `caller`
/// receives exactly that accept (presence noise skipped).
pub async fn answer(callee: &mut Client, caller: &mut Client, id: u32) {
    acked_and_delivered(callee, caller, "accept", id).await;
}

/// `from` sends a `ty` message to `to` as request `id`, which is acknowledged, and `to`
/// receives exactly `{"type": ty, "from": ...}`.
async fn acked_and_delivered(from: &mut Client, to: &mut Client, ty: &str, id: u32) {
    from.acked(json!({"type": ty, "to": to.name}), id).await;
    assert_eq!(
        to.recv_type(ty).await,
        json!({"type": ty, "from": from.name}),
        "{}",
        to.name
    );
}

/// Register `a` and `b` and put them in an accepted call (presence noise drained).
pub async fn call_pair(server: &Server, a: &str, b: &str) -> (Client, Client) {
    let (mut ca, _) = server.register(a).await;
    let (mut cb, _) = server.register(b).await;
    ring(&mut ca, &mut cb, 1).await;
    answer(&mut cb, &mut ca, 2).await;
    (ca, cb)
}
