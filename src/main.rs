//! The socket-gateway binary: load the config, wire the layers, serve until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use engineio::server::{self, Drain};
use engineio::{Engine, EngineConfig};
use relay::{Relay, RelayConfig};
use socket_gateway::config::{self, CliAction, Config, LogFormat};
use socket_gateway::gateway::presence::Presence;
use socket_gateway::gateway::{self, Gateway};
use socket_gateway::health::{self, Readiness};
use socket_gateway::metrics;
use socket_gateway::shutdown;
use socketio::{SocketIo, SocketIoConfig};
use warp::Filter;

/// jemalloc rather than glibc's malloc: about a tenth less CPU per delivery in chat-shaped rooms
/// and less memory per socket (BENCHMARKS.md), and it returns free pages by itself
/// ([`socket_gateway::memory`]). Without the `jemalloc` feature, the system allocator (for heap
/// profilers).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = match config::parse_cli(std::env::args().skip(1)) {
        Ok(CliAction::Run(cli)) => cli,
        Ok(CliAction::Help(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Ok(CliAction::Version) => {
            println!("socket-gateway {}", config::VERSION);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{}", config::usage());
            return ExitCode::from(2);
        }
    };
    let cfg = match cli.source().load() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&cfg.log.level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: invalid configuration: log.level: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    // Colours only on a terminal: log collectors get plain lines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: Config) -> Result<(), String> {
    // Validated with the configuration.
    let trusted = gateway::client_ip::TrustedProxies::parse(&cfg.security.trusted_proxies)?;
    let gateway = Gateway::new(&cfg.app, &cfg.limits, cfg.recovery.recheck_session, trusted)
        .map_err(|e| format!("cannot build the app client: {e}"))?;
    let io = SocketIo::builder(SocketIoConfig::from(&cfg.socketio))
        .namespace("/", gateway.handler())
        .build();
    if let Some(ns) = io.namespace("/") {
        tokio::spawn(gateway.revalidation(ns.clone()));
    }
    if cfg.security.allowed_origins.is_empty() {
        tracing::warn!("security.allowed_origins is empty: every browser Origin is refused (set NEXT_PUBLIC_APP_URL)");
    }
    let readiness = Readiness::default();
    if cfg.recovery.enabled && !cfg.redis.enabled {
        tracing::warn!(
            "recovery.enabled needs the relay (redis.enabled): connection state recovery is off"
        );
    }
    let engine = Engine::observed(
        EngineConfig::from(&cfg),
        io.clone(),
        Arc::new(metrics::EngineFigures),
    );
    if let Err(e) = socket_gateway::memory::purge_in_background() {
        tracing::warn!(error = %e, "memory: free pages are returned only while allocating");
    }
    tokio::spawn(socket_gateway::memory::forget_expired_periodically(
        gateway.expired_forgetter(),
    ));
    // Metrics before the relay: it records its Valkey state from the first attempt on.
    let sources = metrics::exporter::Sources {
        engine: engine.clone(),
        io: io.clone(),
    };
    let metrics_route = metrics::exporter::start(&cfg.metrics, config::VERSION, sources)
        .await
        .map_err(|e| e.to_string())?;
    let relay = if cfg.redis.enabled {
        let config = RelayConfig::from(&cfg);
        relay::metrics::init_series(config.recovery.is_some());
        let relay = Relay::start(config, &io).map_err(|e| e.to_string())?;
        readiness.watch_relay(relay.link_state());
        Some(relay)
    } else {
        None
    };
    let presence = io.namespace("/").map(|ns| {
        let p = Presence::start(&cfg.presence, ns, relay.as_ref(), &cfg.redis.prefix);
        gateway.attach_presence(p.clone());
        p
    });
    let listener = tokio::net::TcpListener::bind((cfg.server.host.as_str(), cfg.server.port))
        .await
        .map_err(|e| {
            format!(
                "cannot listen on {}:{}: {e}",
                cfg.server.host, cfg.server.port
            )
        })?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    readiness.set(true);
    tracing::info!(%addr, path = %cfg.server.path, app = %cfg.app.url, "listening on {addr}");
    let stop = {
        let readiness = readiness.clone();
        async move {
            shutdown::signal().await;
            readiness.set(false);
        }
    };
    let routes = match metrics_route {
        Some(m) => health::routes(readiness).or(m).unify().boxed(),
        None => health::routes(readiness),
    };
    server::serve(listener, engine, routes, stop, Drain::from(&cfg.server)).await;
    if let Some(presence) = presence {
        presence.stop().await;
    }
    if let Some(relay) = relay {
        relay.stop().await;
    }
    tracing::info!("stopped");
    Ok(())
}
