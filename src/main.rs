//! `intercomd` entry point: parse flags, prepare certificates, bind, then run everything
//! on one `LocalExecutor` driven by `block_on` on this thread. Only wiring lives here.

#![forbid(unsafe_code)]

use intercomd::config::{self, Command, Config};
use intercomd::http::Www;
use intercomd::notify::Notifier;
use intercomd::server::{self, Server};
use intercomd::session::Hub;
use intercomd::{logging, tls};
use smol::{LocalExecutor, Timer};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let started = Instant::now();
    // INTERCOMD_ADMIN_KEY (the package's key file, through the unit) is an --admin-key
    // that a flag on the command line overrides.
    let env_key = std::env::var_os("INTERCOMD_ADMIN_KEY").filter(|k| !k.is_empty());
    let from_env = env_key.into_iter().flat_map(|k| ["--admin-key".into(), k]);
    let cfg = match config::parse(from_env.chain(std::env::args_os().skip(1))) {
        Ok(Command::Run(cfg)) => *cfg,
        Ok(Command::Help) => {
            let cap = intercomd::CAPACITY.to_string();
            print!("{}", config::HELP.replace("CAPACITY", &cap));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("intercomd {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("intercomd: {e}\nTry 'intercomd --help'.");
            return ExitCode::from(2);
        }
    };
    logging::init(cfg.log_level);
    match serve(cfg, started) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cfg: Config, started: Instant) -> Result<(), String> {
    let mut tls = match (&cfg.cert, &cfg.key) {
        (Some(cert), Some(key)) => tls::from_files(cert, key),
        _ => tls::local_ca(&cfg.state_dir, &tls::Names::of_this_machine()),
    }
    .map_err(|e| e.to_string())?;
    let local_ca = tls.local.take();
    let cert_check = cfg.cert_check_interval;
    let www = match &cfg.www {
        Some(dir) => Www::dir(dir).map_err(|e| format!("--www {}: {e}", dir.display()))?,
        None => Www::Embedded(intercomd::www::FILES),
    };
    let (listen, http_listen, turn_listen) = (cfg.listen, cfg.http_listen, cfg.turn_listen);
    let hub = std::rc::Rc::new(Hub::new(cfg));
    let server = Server::new(hub.clone(), www, tls);
    let notifier = std::rc::Rc::new(Notifier::from_env());

    // The one executor lives as long as the process; tasks borrow it to spawn more.
    let ex: &'static LocalExecutor<'static> = Box::leak(Box::new(LocalExecutor::new()));
    smol::block_on(ex.run(async {
        let listener = smol::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let plain = match http_listen {
            Some(addr) => Some(
                smol::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))?,
            ),
            None => None,
        };
        // The relay is a fallback: without its port, calls that connect directly still do.
        match turn_listen {
            Some(addr) => match intercomd::turnio::bind(addr).await {
                Ok(turn) => {
                    let (hub, secret) = (hub.clone(), intercomd::turnio::secret());
                    ex.spawn(intercomd::turnio::run(ex, hub, turn, secret))
                        .detach();
                }
                Err(e) => log::error!("{e}: running without the TURN relay"),
            },
            None => log::info!("TURN relay off"),
        }
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        log::info!(
            "listening on {addr} ({} ms after start), max {} peers",
            started.elapsed().as_millis(),
            hub.cfg.max_peers
        );
        if let Some(p) = plain.as_ref().and_then(|p| p.local_addr().ok()) {
            log::info!("plain HTTP (certificate and guide) on {p}");
        }
        log::info!("open {}", open_url(&addr));
        notifier.notify("READY=1");
        if let Some(every) = notifier.watchdog {
            let notifier = notifier.clone();
            ex.spawn(async move {
                loop {
                    Timer::after(every).await;
                    notifier.notify("WATCHDOG=1");
                }
            })
            .detach();
        }
        if let Some(ca) = local_ca {
            let server = server.clone();
            ex.spawn(async move { ca.keep_renewed(&server.acceptor, cert_check).await })
                .detach();
        }
        let stopper = hub.clone();
        let signals =
            async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])
                .map_err(|e| format!("signals: {e}"))?;
        ex.spawn(async move {
            use futures_lite::StreamExt;
            let mut signals = signals;
            if let Some(Ok(sig)) = signals.next().await {
                log::info!("{sig:?}: stopping");
                stopper.stop();
            }
        })
        .detach();
        server::run(ex, server.clone(), listener, plain).await;
        notifier.notify("STOPPING=1");
        Ok(())
    }))
}

/// The address a person should open: the host's `.local` name when listening on every
/// interface, the literal address otherwise.
fn open_url(addr: &std::net::SocketAddr) -> String {
    let port = match addr.port() {
        443 => String::new(),
        p => format!(":{p}"),
    };
    if addr.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        format!(
            "https://localhost{port}/ on this machine, https://{host}.local{port}/ from a tablet"
        )
    } else {
        match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("https://[{ip}]{port}/"),
            ip => format!("https://{ip}{port}/"),
        }
    }
}
