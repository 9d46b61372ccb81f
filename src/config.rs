//! Command-line flags and their defaults. Parsed once in `main` into a plain [`Config`]
//! that is passed down explicitly; nothing reads flags or the environment after that.

use crate::peers::CAPACITY;
use crate::protocol::parse_ice_servers;
use serde_json::value::RawValue;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Sockets allowed beyond `max_peers` for handshakes and plain HTTP.
pub const EXTRA_SOCKETS: usize = 16;

/// The shortest `--admin-key`: it guards what every tablet is doing, from the whole LAN.
pub const MIN_ADMIN_KEY: usize = 16;

/// Everything the server needs to know, with the defaults documented in [`HELP`].
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub http_listen: Option<SocketAddr>,
    pub state_dir: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// How often the local CA's server certificate is checked for renewal.
    pub cert_check_interval: Duration,
    pub www: Option<PathBuf>,
    pub max_peers: usize,
    pub max_per_ip: usize,
    pub max_message: usize,
    pub handshake_timeout: Duration,
    pub register_timeout: Duration,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub ring_timeout: Duration,
    pub page_timeout: Duration,
    pub rate: f64,
    pub burst: f64,
    pub outbox: usize,
    pub outbox_bytes: usize,
    pub ice_servers: Box<RawValue>,
    pub allow_origin: Vec<String>,
    pub access_key: Option<String>,
    /// The owner's key for `/status`, `/status.json`, `/metrics` (none: they are off).
    pub admin_key: Option<String>,
    pub log_level: log::LevelFilter,
    /// The TURN relay's UDP and TCP address; `None` with `--turn off`.
    pub turn_listen: Option<SocketAddr>,
    /// The relay ports, inclusive.
    pub turn_ports: (u16, u16),
    /// Kilobits per second per allocation and direction.
    pub turn_kbps: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            http_listen: None,
            state_dir: PathBuf::from("state"),
            cert: None,
            key: None,
            cert_check_interval: Duration::from_secs(86400),
            www: None,
            max_peers: CAPACITY,
            max_per_ip: 8,
            max_message: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            register_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            ring_timeout: Duration::from_secs(30),
            page_timeout: Duration::from_secs(120),
            rate: 100.0,
            burst: 200.0,
            outbox: 64,
            outbox_bytes: 256 * 1024,
            ice_servers: parse_ice_servers("[]").unwrap_or_else(|_| unreachable!()),
            allow_origin: Vec::new(),
            access_key: None,
            admin_key: None,
            log_level: log::LevelFilter::Info,
            turn_listen: Some(SocketAddr::from(([0, 0, 0, 0], 3478))),
            turn_ports: (49160, 49199),
            turn_kbps: 8000,
        }
    }
}

impl Config {
    /// Open sockets allowed on the TLS port (handshaking, HTTP and WebSocket together).
    pub fn max_sockets(&self) -> usize {
        self.max_peers + EXTRA_SOCKETS
    }
}

/// What `--help` prints.
pub const HELP: &str = "\
intercomd - LAN intercom appliance: serves the web client over HTTPS and relays
WebRTC signaling between tablets over a WebSocket at /ws.

USAGE: intercomd [OPTIONS]

Network:
  --listen ADDR             HTTPS + WebSocket address        [default: 0.0.0.0:8443]
  --http-listen ADDR        plain HTTP: /ca.crt, an install guide, redirects to HTTPS
                                                             [default: off]
  --allow-origin ORIGIN     extra allowed WebSocket Origin, e.g. https://kiosk.lan:8443
                            (repeatable; the page's own origin is always allowed)
  --access-key KEY          require this key in every register [default: none]
  --admin-key KEY           the owner's key for /status and /metrics (sent as
                            'Authorization: Bearer KEY'; at least 16 characters;
                            also INTERCOMD_ADMIN_KEY)      [default: none, off]
  --ice-servers JSON        RTCIceServer array sent to clients, after the
                            built-in relay's entry          [default: []]

TURN relay (for tablets that cannot reach each other directly):
  --turn on|off             the built-in STUN/TURN relay     [default: on]
  --turn-listen ADDR        its UDP and TCP address          [default: 0.0.0.0:3478]
  --turn-ports LO-HI        UDP ports for relayed media      [default: 49160-49199]
  --turn-kbps N             kbit/s per allocation and direction; more is dropped
                                                             [default: 8000]

TLS:
  --state-dir DIR           where the local CA and server certificate live
                                                             [default: ./state]
  --cert FILE --key FILE    use these PEM files instead of the local CA
  --cert-check-interval S   check the local CA's server certificate (renewed
                            30 days before expiry or when names or addresses
                            change; those are also polled every minute)
                                                             [default: 86400]

Static files:
  --www DIR                 serve DIR instead of the embedded web client

Limits (durations in seconds, fractions allowed):
  --max-peers N             registered peers                 [default: CAPACITY]
  --max-per-ip N            unregistered sockets per address [default: 8]
  --max-message BYTES       largest WebSocket message        [default: 65536]
  --outbox N                queued messages per connection   [default: 64]
  --outbox-bytes BYTES      queued bytes per connection      [default: 262144]
  --rate N                  inbound messages/s per connection [default: 100]
  --burst N                 inbound burst per connection     [default: 200]
  --handshake-timeout S     TLS handshake + request head     [default: 10]
  --register-timeout S      register after WebSocket opens   [default: 30]
  --ping-interval S         server ping interval             [default: 15]
  --idle-timeout S          silence before a drop            [default: 45]
  --ring-timeout S          unanswered ring                  [default: 30]
  --page-timeout S          longest page (announcement)      [default: 120]

Other:
  --log-level LEVEL         off, error, warn, info, debug, trace [default: info]
  -h, --help                this text
  -V, --version             print the version
";

/// What parsing the command line asks for.
pub enum Command {
    Run(Box<Config>),
    Help,
    Version,
}

/// Parse flags from `args` (without the program name).
pub fn parse<I>(args: I) -> Result<Command, String>
where
    I: IntoIterator<Item = std::ffi::OsString>,
{
    use lexopt::prelude::*;
    let mut c = Config::default();
    let mut p = lexopt::Parser::from_args(args);
    let mut turn_on = true;
    let err = |e: lexopt::Error| e.to_string();
    while let Some(arg) = p.next().map_err(err)? {
        let flag = match &arg {
            Long(f) => f.to_string(),
            Short('h') => return Ok(Command::Help),
            Short('V') => return Ok(Command::Version),
            _ => return Err(arg.unexpected().to_string()),
        };
        let flag = flag.as_str();
        let mut value = || -> Result<String, String> {
            p.value()
                .map_err(err)?
                .into_string()
                .map_err(|_| format!("--{flag}: not UTF-8"))
        };
        match flag {
            "help" => return Ok(Command::Help),
            "version" => return Ok(Command::Version),
            "listen" => c.listen = addr(flag, &value()?)?,
            "http-listen" => c.http_listen = Some(addr(flag, &value()?)?),
            "allow-origin" => {
                let v = value()?;
                let o = crate::origin::normalize_origin(&v)
                    .ok_or_else(|| format!("--allow-origin {v}: expected https://host[:port]"))?;
                c.allow_origin.push(o);
            }
            "access-key" => c.access_key = Some(value()?).filter(|k| !k.is_empty()),
            "admin-key" => c.admin_key = Some(value()?).filter(|k| !k.is_empty()),
            "ice-servers" => c.ice_servers = parse_ice_servers(&value()?)?,
            "turn" => match value()?.as_str() {
                "on" => turn_on = true,
                "off" => turn_on = false,
                v => return Err(format!("--turn {v}: expected on or off")),
            },
            "turn-listen" => c.turn_listen = Some(addr(flag, &value()?)?),
            "turn-ports" => c.turn_ports = port_range(&value()?)?,
            "turn-kbps" => c.turn_kbps = positive(flag, &value()?)?,
            "state-dir" => c.state_dir = value()?.into(),
            "cert" => c.cert = Some(value()?.into()),
            "key" => c.key = Some(value()?.into()),
            "cert-check-interval" => c.cert_check_interval = secs(flag, &value()?)?,
            "www" => c.www = Some(value()?.into()),
            "max-peers" => {
                c.max_peers = number(flag, &value()?)?;
                if c.max_peers == 0 || c.max_peers > CAPACITY {
                    return Err(format!(
                        "--max-peers must be 1..={CAPACITY} (the table capacity; rebuild \
                         with INTERCOMD_CAPACITY for more)"
                    ));
                }
            }
            "max-per-ip" => c.max_per_ip = positive(flag, &value()?)?,
            "max-message" => c.max_message = positive(flag, &value()?)?,
            "outbox" => c.outbox = positive::<usize>(flag, &value()?)?.max(2),
            "outbox-bytes" => c.outbox_bytes = positive::<usize>(flag, &value()?)?,
            "rate" => c.rate = positive(flag, &value()?)?,
            "burst" => c.burst = positive(flag, &value()?)?,
            "handshake-timeout" => c.handshake_timeout = secs(flag, &value()?)?,
            "register-timeout" => c.register_timeout = secs(flag, &value()?)?,
            "ping-interval" => c.ping_interval = secs(flag, &value()?)?,
            "idle-timeout" => c.idle_timeout = secs(flag, &value()?)?,
            "ring-timeout" => c.ring_timeout = secs(flag, &value()?)?,
            "page-timeout" => c.page_timeout = secs(flag, &value()?)?,
            "log-level" => {
                let v = value()?;
                c.log_level = v
                    .parse()
                    .map_err(|_| format!("--log-level {v}: unknown level"))?;
            }
            _ => return Err(format!("unknown flag --{flag}")),
        }
    }
    if c.outbox_bytes < 2 * c.max_message {
        return Err("--outbox-bytes must hold at least two messages of --max-message".into());
    }
    if c.admin_key
        .as_ref()
        .is_some_and(|k| k.len() < MIN_ADMIN_KEY)
    {
        return Err(format!(
            "--admin-key must be at least {MIN_ADMIN_KEY} characters (e.g. openssl rand -hex 16)"
        ));
    }
    if c.cert.is_some() != c.key.is_some() {
        return Err("--cert and --key go together".into());
    }
    if !turn_on {
        c.turn_listen = None;
    }
    Ok(Command::Run(Box::new(c)))
}

fn addr(flag: &str, v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("--{flag} {v}: expected IP:PORT, e.g. 0.0.0.0:8443"))
}

fn port_range(v: &str) -> Result<(u16, u16), String> {
    let bad = || format!("--turn-ports {v}: expected LO-HI, e.g. 49160-49199");
    let (lo, hi) = v.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u16, u16) = (
        lo.parse().map_err(|_| bad())?,
        hi.parse().map_err(|_| bad())?,
    );
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse().map_err(|_| format!("--{flag} {v}: not a number"))
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(flag: &str, v: &str) -> Result<T, String> {
    let n: T = number(flag, v)?;
    if n > T::default() {
        Ok(n)
    } else {
        Err(format!("--{flag} {v}: must be positive"))
    }
}

fn secs(flag: &str, v: &str) -> Result<Duration, String> {
    let s: f64 = number(flag, v)?;
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("--{flag} {v}: expected a positive number of seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse(args.iter().map(Into::into))? {
            Command::Run(c) => Ok(*c),
            _ => Err("not run".into()),
        }
    }

    #[test]
    fn defaults_and_fractions() {
        let c = run(&[]).unwrap();
        assert_eq!(c.listen.port(), 8443);
        assert_eq!(c.ice_servers.get(), "[]");
        let c = run(&["--ring-timeout", "0.5", "--max-peers", "2"]).unwrap();
        assert_eq!(c.ring_timeout, Duration::from_millis(500));
        assert_eq!(c.max_sockets(), 18);
        assert_eq!(c.turn_listen, Some("0.0.0.0:3478".parse().unwrap()));
        assert_eq!((c.turn_ports, c.turn_kbps), ((49160, 49199), 8000));
        let c = run(&["--turn", "off", "--turn-ports", "50000-50001"]).unwrap();
        assert_eq!((c.turn_listen, c.turn_ports), (None, (50000, 50001)));
    }

    #[test]
    fn refuses_nonsense() {
        assert!(run(&["--max-peers", "0"]).is_err());
        assert!(run(&["--max-peers", "100000"]).is_err());
        assert!(run(&["--ring-timeout", "-1"]).is_err());
        assert!(run(&["--ice-servers", "{}"]).is_err());
        assert!(run(&["--cert", "x"]).is_err());
        assert!(run(&["--bogus"]).is_err());
        assert!(run(&["--turn", "maybe"]).is_err());
        assert!(run(&["--turn-ports", "5-4"]).is_err());
        assert!(run(&["--turn-ports", "0-4"]).is_err());
        assert!(run(&["--turn-kbps", "0"]).is_err());
        assert!(run(&["--outbox-bytes", "1000"]).is_err());
        assert!(run(&["--admin-key", "short"]).is_err());
        let c = run(&["--admin-key", "0123456789abcdef"]).unwrap();
        assert_eq!(c.admin_key.as_deref(), Some("0123456789abcdef"));
        assert!(run(&["--outbox-bytes", "1000", "--max-message", "500"]).is_ok());
    }
}
