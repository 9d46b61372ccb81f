//! `intercomd`: a LAN intercom appliance. Serves the web client over HTTPS and relays
//! WebRTC signaling over a WebSocket, on one thread, with a fixed-capacity peer table.
//! See ARCHITECTURE.md for the map and the invariants.

#![forbid(unsafe_code)]

pub mod config;
pub mod http;
pub mod logging;
pub mod mobileconfig;
pub mod notify;
pub mod peers;
pub mod protocol;
pub mod relay;
pub mod server;
pub mod session;
pub mod slots;
pub mod tls;
pub mod tlsio;

/// The web client, compiled in from `www/` by `build.rs`.
pub mod www {
    include!(concat!(env!("OUT_DIR"), "/www_files.rs"));
}
