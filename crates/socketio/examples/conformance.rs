//! The reference servers of the official protocol test suites (socketio/engine.io-protocol and
//! socketio/socket.io-protocol, folder `test-suite/`), built from the gateway's own transport
//! and protocol layers (the `engineio` and `socketio` crates alone: the proof that they know
//! nothing of the product) with echo handlers in place of the gateway logic.
//!
//! `PORT=3000 cargo run --release -p socketio --example conformance`
//!
//! - `/engine.io/`: an Engine.IO echo (every message, text or binary, is sent back);
//! - `/socket.io/`: Socket.IO with namespaces `/` and `/custom`; on connect both emit `auth`
//!   with the handshake auth; on `/`, `message` is re-emitted as `message-back` and
//!   `message-with-ack` is acknowledged with its arguments.
//!
//! A few extra events on `/` (unused by the suites) serve the socket.io-client interop tests:
//! `server-ack`, `disconnect-me`, `drop-transport`, `join` and `to-room`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use engineio::server::{self, Drain};
use engineio::{CloseReason, Engine, EngineConfig, EngineHandler, Frame, OriginPolicy, Session};
use serde_json::Value;
use socketio::{BroadcastTarget, Event, NamespaceHandler, Socket, SocketIo, SocketIoConfig};
use warp::Filter;

/// Echoes every Engine.IO message back (the engine.io suite's server).
struct Echo;

impl EngineHandler for Echo {
    fn on_open(&self, _session: &Arc<Session>) {}
    fn on_message(&self, session: &Arc<Session>, text: &str) {
        let _ = session.send_frame(Frame::message(format!("4{text}")));
    }
    fn on_binary(&self, session: &Arc<Session>, data: Bytes) {
        let _ = session.send_frame(Frame::binary(data));
    }
    fn on_close(&self, _session: &Arc<Session>, _reason: CloseReason) {}
}

/// Emits `auth` with the handshake auth on connect.
struct Custom;

impl NamespaceHandler for Custom {
    fn on_connect(&self, socket: &Arc<Socket>) {
        let _ = socket.emit("auth", vec![socket.auth.clone()]);
    }
}

/// The main namespace of the socket.io suite, plus the interop tests' extras.
struct Main;

impl NamespaceHandler for Main {
    fn on_connect(&self, socket: &Arc<Socket>) {
        let _ = socket.emit("auth", vec![socket.auth.clone()]);
    }

    fn on_event(&self, socket: &Arc<Socket>, event: Event) {
        let Event {
            name,
            args,
            attachments,
            ack,
        } = event;
        match name.as_str() {
            "message" => {
                let _ = socket.emit_binary("message-back", args, attachments);
            }
            "message-with-ack" => {
                if let Some(ack) = ack {
                    ack.send_binary(args, attachments);
                }
            }
            "server-ack" => {
                let socket = socket.clone();
                tokio::spawn(async move {
                    let reply = socket
                        .emit_with_ack(
                            "ack-request",
                            args,
                            attachments,
                            Duration::from_millis(2000),
                        )
                        .await;
                    let _ = match reply {
                        Ok(r) => socket.emit_binary("ack-result", r.args, r.attachments),
                        Err(_) => socket.emit("ack-timeout", vec![]),
                    };
                });
            }
            "disconnect-me" => socket.disconnect(),
            "drop-transport" => socket.session().close(CloseReason::ForcedClose),
            "join" => {
                if let Some(Value::String(room)) = args.first() {
                    socket.join(&[room.as_str()]);
                }
                if let Some(ack) = ack {
                    ack.send(vec![Value::Bool(true)]);
                }
            }
            "to-room" => {
                let mut args = args.into_iter();
                if let Some(Value::String(room)) = args.next() {
                    socket.ns.emit_binary_to(
                        &BroadcastTarget::room(room),
                        "room-message",
                        args.collect(),
                        attachments,
                    );
                }
                if let Some(ack) = ack {
                    ack.send(vec![Value::Bool(true)]);
                }
            }
            _ => {}
        }
    }
}

fn engine_config(path: &str) -> EngineConfig {
    EngineConfig {
        path: path.into(),
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        origins: OriginPolicy::Any,
        ..EngineConfig::default()
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);

    let io = SocketIo::builder(SocketIoConfig {
        connect_timeout: Duration::from_millis(1000),
        ..SocketIoConfig::default()
    })
    .namespace("/", Arc::new(Main))
    .namespace("/custom", Arc::new(Custom))
    .build();
    let sio_engine = Engine::new(engine_config("/socket.io/"), io);
    let echo_engine = Engine::new(engine_config("/engine.io/"), Arc::new(Echo));

    // What is not an engine's: `/healthz` (the test harness waits for it), else 404.
    let routes = warp::path!("healthz")
        .map(|| warp::reply::Reply::into_response("ok"))
        .boxed();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("conformance server listening on {}", listener.local_addr()?);
    server::serve_with(
        listener,
        vec![sio_engine, echo_engine],
        routes,
        stop_signal(),
        Drain {
            window: Duration::ZERO,
            timeout: Duration::from_secs(2),
        },
    )
    .await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (the harness stops the server with SIGTERM).
async fn stop_signal() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
