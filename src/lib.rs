//! `intercomd`: a LAN intercom appliance. Serves the web client over HTTPS and relays
//! WebRTC signaling over a WebSocket, on one thread, with a fixed-capacity peer table.
//! See ARCHITECTURE.md for the map and the invariants.

#![forbid(unsafe_code)]

pub(crate) mod clock;
pub mod config;
pub(crate) mod events;
pub mod http;
pub mod logging;
pub(crate) mod metrics;
pub(crate) mod mobileconfig;
pub mod notify;
pub mod origin;
pub(crate) mod owner;
pub(crate) mod peers;
pub mod protocol;
pub(crate) mod relay;
pub mod server;
pub mod session;
pub(crate) mod setup;
pub(crate) mod slots;
pub(crate) mod socket;
pub mod stations;
pub mod stun;
pub mod tls;
pub(crate) mod tlsio;
pub mod turn;
pub mod turnio;

/// The peer table's capacity, fixed at build time (`INTERCOMD_CAPACITY`).
pub use peers::CAPACITY;

/// The web client, compiled in from `www/` by `build.rs`.
pub mod www {
    include!(concat!(env!("OUT_DIR"), "/www_files.rs"));
}
