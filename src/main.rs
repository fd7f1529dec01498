//! The socket-gateway binary: load the config, wire the layers, serve until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use engineio::server::{self, Drain};
use engineio::{Engine, EngineConfig, HandshakeRate, OriginPolicy};
use relay::subscriber::Timing;
use relay::{Relay, RelayConfig};
use socket_gateway::config::{self, CliAction, Config, LogFormat, Transport};
use socket_gateway::gateway::presence::Presence;
use socket_gateway::gateway::{self, Gateway};
use socket_gateway::health::{self, Readiness};
use socket_gateway::metrics;
use socket_gateway::shutdown;
use socketio::{SocketIo, SocketIoConfig};
use warp::Filter;

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

fn engine_config(cfg: &Config) -> EngineConfig {
    EngineConfig {
        path: cfg.server.path.clone(),
        ping_interval: cfg.engine.ping_interval(),
        ping_timeout: cfg.engine.ping_timeout(),
        upgrade_timeout: cfg.engine.upgrade_timeout(),
        max_payload: cfg.engine.max_payload,
        allow_polling: cfg.engine.allows(Transport::Polling),
        allow_websocket: cfg.engine.allows(Transport::Websocket),
        origins: OriginPolicy::List(cfg.security.allowed_origins.clone()),
        cors_max_age_s: cfg.security.cors_max_age_s,
        ws_read_buffer: cfg.engine.ws_read_buffer,
        ws_write_buffer: cfg.engine.ws_write_buffer,
        max_queued_frames: cfg.engine.outbound_queue,
        max_sessions: cfg.server.max_connections,
        handshake_rate: Some(HandshakeRate {
            per_s: cfg.limits.connect_rate_per_s,
            queue: cfg.limits.connect_queue(),
        }),
    }
}

async fn run(cfg: Config) -> Result<(), String> {
    // Validated with the configuration.
    let trusted = gateway::client_ip::TrustedProxies::parse(&cfg.security.trusted_proxies)?;
    let gateway = Gateway::new(&cfg.app, &cfg.limits, cfg.recovery.recheck_session, trusted)
        .map_err(|e| format!("cannot build the app client: {e}"))?;
    let io = SocketIo::builder(SocketIoConfig {
        connect_timeout: cfg.socketio.connect_timeout(),
        max_attachments: cfg.socketio.max_attachments,
    })
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
        engine_config(&cfg),
        io.clone(),
        Arc::new(metrics::EngineFigures),
    );
    // Metrics before the relay: it records its Valkey state from the first attempt on.
    let sources = metrics::exporter::Sources {
        engine: engine.clone(),
        io: io.clone(),
    };
    let metrics_route = metrics::exporter::start(&cfg.metrics, config::VERSION, sources)
        .await
        .map_err(|e| e.to_string())?;
    let relay = if cfg.redis.enabled {
        let config = RelayConfig {
            url: cfg.redis.url.clone(),
            prefix: cfg.redis.prefix.clone(),
            ack_timeout: cfg.socketio.ack_timeout(),
            timing: Timing::default(),
            recovery: cfg
                .recovery
                .enabled
                .then(|| cfg.recovery.max_disconnection()),
        };
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
    server::serve(
        listener,
        engine,
        routes,
        stop,
        Drain {
            window: cfg.server.drain_window(),
            timeout: cfg.server.shutdown_timeout(),
        },
    )
    .await;
    if let Some(presence) = presence {
        presence.stop().await;
    }
    if let Some(relay) = relay {
        relay.stop().await;
    }
    tracing::info!("stopped");
    Ok(())
}
