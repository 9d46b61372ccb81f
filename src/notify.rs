//! The systemd notify protocol, spoken directly: `READY=1`, `STOPPING=1` and watchdog
//! pings as datagrams to `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
//! No libsystemd. Without `NOTIFY_SOCKET` every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go, read once from the environment at start.
pub struct Notifier {
    target: Option<std::os::unix::net::SocketAddr>,
    /// Half the watchdog period, when `WATCHDOG_USEC` asks for pings.
    pub watchdog: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let target = std::env::var("NOTIFY_SOCKET")
            .ok()
            .and_then(|p| address(&p));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&us| us > 0)
            .map(|us| Duration::from_micros(us / 2));
        Notifier { target, watchdog }
    }

    /// Send one notification; failures are logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some(addr) = &self.target else { return };
        let sent = UnixDatagram::unbound().and_then(|s| s.send_to_addr(state.as_bytes(), addr));
        if let Err(e) = sent {
            log::warn!("sd_notify {state:?} failed: {e}");
        }
    }
}

fn address(path: &str) -> Option<std::os::unix::net::SocketAddr> {
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        return std::os::unix::net::SocketAddr::from_abstract_name(name).ok();
    }
    if path.starts_with('/') {
        return std::os::unix::net::SocketAddr::from_pathname(path).ok();
    }
    None
}
