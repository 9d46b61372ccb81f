//! The owner's view of the appliance, behind `--admin-key`: `/status.json` (what the
//! `/status` page shows: stations, calls and rings in progress, the last events, the
//! certificates, counters, calls per hour, memory, uptime, version) and `/metrics` (the
//! same counters in the Prometheus text format), and the key check for both.
//!
//! Reads the [`Hub`] (peer table, [`Metrics`](crate::metrics::Metrics)) and the event
//! ring; changes nothing. Its JSON is the owner's page's own interface, not the tablets'
//! protocol, so it lives here rather than in `protocol.rs`. Each answer is built per
//! request and bounded by the table's capacity and the ring's size.

use crate::events::EVENTS;
use crate::metrics::unix_now;
use crate::peers::Call;
use crate::protocol::Status;
use crate::session::Hub;
use serde::Serialize;
use std::fmt::Write;

/// Whether an `Authorization` header carries the admin key as a bearer token. Compared
/// in constant time (lengths are hashed away first); no key configured: never.
pub fn authorized(header: Option<&str>, admin_key: Option<&str>) -> bool {
    let (Some(header), Some(key)) = (header, admin_key) else {
        return false;
    };
    let given = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return false,
    };
    use openssl::sha::sha256;
    openssl::memcmp::eq(&sha256(given.as_bytes()), &sha256(key.as_bytes()))
}

/// What the owner's answers say about the certificates and this process, besides the hub.
pub struct Facts<'a> {
    pub hub: &'a Hub,
    /// The local CA's fingerprint and seconds to its expiry (`None` with `--cert`).
    pub ca: Option<(&'a str, i64)>,
    /// Seconds until the server certificate in use expires.
    pub cert_expires_in: Option<i64>,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    version: &'static str,
    uptime_s: u64,
    /// Resident memory in KiB (`VmRSS`).
    memory_kib: Option<u64>,
    now_ms: u64,
    /// `--access-key`, for the add-a-tablet form's kiosk address.
    access_key: Option<&'a str>,
    cert: Cert<'a>,
    stations: Vec<Station<'a>>,
    calls: Vec<CallJson<'a>>,
    counters: Counters,
    /// Calls started and missed per hour, oldest first; the last is the current hour.
    hours: Vec<[u32; 2]>,
    events: Vec<EventJson>,
}

#[derive(Serialize)]
struct Cert<'a> {
    ca_fingerprint: Option<&'a str>,
    ca_expires_in_s: Option<i64>,
    server_expires_in_s: Option<i64>,
}

#[derive(Serialize)]
struct Station<'a> {
    name: &'a str,
    status: Status,
    groups: &'a [crate::protocol::Name],
    address: Option<String>,
    /// Unix seconds when its connection opened.
    since: Option<u64>,
    /// Whom it is ringing, ringing with, talking or listening to, or the group it rings
    /// or pages.
    with: Option<&'a str>,
}

#[derive(Serialize)]
struct CallJson<'a> {
    from: &'a str,
    to: &'a str,
    /// `ringing`, `active`, `ringing_group` (`to` is the group) or `paging`.
    state: &'static str,
}

#[derive(Serialize)]
struct Counters {
    connections: u64,
    calls_started: u64,
    calls_answered: u64,
    calls_missed: u64,
    pages: u64,
    signals: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// TURN allocations in use, and bytes relayed through them.
    turn_allocations: u64,
    turn_relayed_bytes: u64,
}

#[derive(Serialize)]
struct EventJson {
    at_ms: u64,
    level: &'static str,
    text: String,
}

/// Resident memory of this process in KiB.
fn memory_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn level_name(level: u8) -> &'static str {
    match level {
        1 => "error",
        2 => "warn",
        _ => "info",
    }
}

/// The `/status.json` body.
pub fn status_json(f: &Facts) -> String {
    let hub = f.hub;
    let m = &hub.metrics;
    let health = hub.health(None);
    let now = unix_now();
    let events: Vec<EventJson> = match EVENTS.lock() {
        Ok(e) => e
            .iter()
            .map(|e| EventJson {
                at_ms: e.at_ms,
                level: level_name(e.level),
                text: e.text.to_string(),
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let hours = m.hourly.borrow().last_day(now / 3600);
    hub.with_peers(|peers| {
        let mut stations = Vec::with_capacity(peers.len());
        let mut calls = Vec::new();
        for p in peers.iter() {
            let conn = m.conn(p.conn);
            stations.push(Station {
                name: &p.name,
                status: p.status(),
                groups: &p.groups,
                address: conn.map(|c| c.0.to_string()),
                since: conn.map(|c| c.1),
                with: match &p.call {
                    Call::Idle => None,
                    Call::Outgoing { peer, .. }
                    | Call::Incoming { peer, .. }
                    | Call::Active { peer }
                    | Call::Listening { peer, .. } => Some(peer.as_str()),
                    Call::Ringing { group, .. } | Call::Paging { group, .. } => {
                        Some(group.as_str())
                    }
                },
            });
            match &p.call {
                Call::Outgoing { peer, .. } => calls.push(CallJson {
                    from: &p.name,
                    to: peer,
                    state: "ringing",
                }),
                Call::Ringing { group, .. } => calls.push(CallJson {
                    from: &p.name,
                    to: group,
                    state: "ringing_group",
                }),
                Call::Paging { group, .. } => calls.push(CallJson {
                    from: &p.name,
                    to: group,
                    state: "paging",
                }),
                // Each accepted call once, from the side whose name sorts first.
                Call::Active { peer } if p.name.as_str() < peer.as_str() => calls.push(CallJson {
                    from: &p.name,
                    to: peer,
                    state: "active",
                }),
                _ => {}
            }
        }
        stations.sort_by(|a, b| a.name.cmp(b.name));
        let s = StatusJson {
            version: health.version,
            uptime_s: health.uptime_s,
            memory_kib: memory_kib(),
            now_ms: now * 1000,
            access_key: hub.cfg.access_key.as_deref(),
            cert: Cert {
                ca_fingerprint: f.ca.map(|c| c.0),
                ca_expires_in_s: f.ca.map(|c| c.1),
                server_expires_in_s: f.cert_expires_in,
            },
            stations,
            calls,
            counters: Counters {
                connections: hub.websockets() as u64,
                calls_started: m.calls_started.get(),
                calls_answered: m.calls_answered.get(),
                calls_missed: m.calls_missed.get(),
                pages: m.pages.get(),
                signals: m.signals.get(),
                bytes_in: m.bytes_in.get(),
                bytes_out: m.bytes_out.get(),
                turn_allocations: hub.stations.allocations.get() as u64,
                turn_relayed_bytes: hub.stations.relayed_bytes.get(),
            },
            hours: hours.iter().map(|h| [h.calls, h.missed]).collect(),
            events,
        };
        serde_json::to_string(&s).unwrap_or_default()
    })
}

/// One metric family: `# HELP`, `# TYPE`, then its samples.
fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// What `/metrics` says of one figure.
struct Metric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
}

const fn counter(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: "counter",
        help,
    }
}

const fn gauge(name: &'static str, help: &'static str) -> Metric {
    Metric {
        name,
        kind: "gauge",
        help,
    }
}

const CONNECTIONS_TOTAL: Metric = counter(
    "intercomd_connections_total",
    "TLS connections that completed the handshake on the HTTPS port.",
);
const CALLS_STARTED_TOTAL: Metric = counter(
    "intercomd_calls_started_total",
    "Calls that started ringing.",
);
const CALLS_ANSWERED_TOTAL: Metric = counter("intercomd_calls_answered_total", "Calls answered.");
const CALLS_MISSED_TOTAL: Metric = counter(
    "intercomd_calls_missed_total",
    "Rings that ran out unanswered.",
);
const PAGES_TOTAL: Metric = counter("intercomd_pages_total", "Pages (announcements) started.");
const SIGNALS_RELAYED_TOTAL: Metric = counter(
    "intercomd_signals_relayed_total",
    "Signal messages (SDP, ICE) relayed between call partners.",
);
const RECEIVED_BYTES_TOTAL: Metric = counter(
    "intercomd_received_bytes_total",
    "Bytes received on the HTTPS port, inside TLS (HTTP and WebSocket).",
);
const SENT_BYTES_TOTAL: Metric = counter(
    "intercomd_sent_bytes_total",
    "Bytes sent on the HTTPS port, inside TLS (HTTP and WebSocket).",
);
const WEBSOCKETS: Metric = gauge("intercomd_websockets", "Open WebSocket connections.");
const STATIONS: Metric = gauge("intercomd_stations", "Registered stations.");
const UPTIME_SECONDS: Metric = gauge(
    "intercomd_uptime_seconds",
    "Seconds since the server started.",
);
const TURN_ALLOCATIONS: Metric = gauge(
    "intercomd_turn_allocations",
    "TURN relay allocations in use.",
);
const TURN_RELAYED_BYTES_TOTAL: Metric = counter(
    "intercomd_turn_relayed_bytes_total",
    "Bytes relayed by the TURN relay (data, both directions).",
);
const CERTIFICATE_EXPIRY_SECONDS: Metric = gauge(
    "intercomd_certificate_expiry_seconds",
    "Seconds until the server certificate in use expires.",
);
const CA_EXPIRY_SECONDS: Metric = gauge(
    "intercomd_ca_expiry_seconds",
    "Seconds until the local certificate authority expires.",
);
const RESIDENT_MEMORY_BYTES: Metric = gauge(
    "intercomd_resident_memory_bytes",
    "Resident memory of the process.",
);

/// The `/metrics` body, Prometheus text format 0.0.4.
pub fn prometheus(f: &Facts) -> String {
    let hub = f.hub;
    let m = &hub.metrics;
    let mut out = String::with_capacity(4096);
    // A figure with no value is left out.
    let scalars: [(Metric, Option<i128>); 16] = [
        (CONNECTIONS_TOTAL, Some(m.connections.get().into())),
        (CALLS_STARTED_TOTAL, Some(m.calls_started.get().into())),
        (CALLS_ANSWERED_TOTAL, Some(m.calls_answered.get().into())),
        (CALLS_MISSED_TOTAL, Some(m.calls_missed.get().into())),
        (PAGES_TOTAL, Some(m.pages.get().into())),
        (SIGNALS_RELAYED_TOTAL, Some(m.signals.get().into())),
        (RECEIVED_BYTES_TOTAL, Some(m.bytes_in.get().into())),
        (SENT_BYTES_TOTAL, Some(m.bytes_out.get().into())),
        (WEBSOCKETS, Some((hub.websockets() as u64).into())),
        (STATIONS, Some((hub.with_peers(|p| p.len()) as u64).into())),
        (UPTIME_SECONDS, Some(hub.health(None).uptime_s.into())),
        (
            TURN_ALLOCATIONS,
            Some((hub.stations.allocations.get() as u64).into()),
        ),
        (
            TURN_RELAYED_BYTES_TOTAL,
            Some(hub.stations.relayed_bytes.get().into()),
        ),
        (
            CERTIFICATE_EXPIRY_SECONDS,
            f.cert_expires_in.map(i128::from),
        ),
        (CA_EXPIRY_SECONDS, f.ca.map(|(_, s)| s.into())),
        (
            RESIDENT_MEMORY_BYTES,
            memory_kib().map(|kib| i128::from(kib) * 1024),
        ),
    ];
    for (Metric { name, kind, help }, value) in scalars {
        if let Some(v) = value {
            family(&mut out, name, help, kind);
            let _ = writeln!(out, "{name} {v}");
        }
    }
    family(
        &mut out,
        "intercomd_errors_total",
        "Error replies sent to stations, by protocol error code.",
        "counter",
    );
    m.errors.borrow().each(|code, n| {
        let _ = writeln!(out, "intercomd_errors_total{{code=\"{code}\"}} {n}");
    });
    family(
        &mut out,
        "intercomd_closes_total",
        "WebSocket connections ended, by the close code the server sent (none: no close frame).",
        "counter",
    );
    m.closes.borrow().each(|code, n| {
        let _ = writeln!(out, "intercomd_closes_total{{code=\"{code}\"}} {n}");
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bearer_key_opens() {
        let key = Some("0123456789abcdef");
        assert!(authorized(Some("Bearer 0123456789abcdef"), key));
        assert!(authorized(Some("bearer  0123456789abcdef "), key));
        assert!(!authorized(Some("Bearer 0123456789abcdeF"), key));
        assert!(!authorized(Some("Bearer 0123456789abcdef0"), key));
        assert!(!authorized(Some("Basic 0123456789abcdef"), key));
        assert!(!authorized(Some("0123456789abcdef"), key));
        assert!(!authorized(None, key));
        assert!(!authorized(Some("Bearer "), None));
        assert!(!authorized(Some("Bearer x"), None));
    }
}
