//! A real listener for the integration tests: the Engine.IO / Socket.IO stack on a free
//! loopback port, with a namespace `/` that echoes every event (`m` comes back as `echo`,
//! with the same arguments and attachments).

use std::sync::Arc;
use std::time::Duration;

use engineio::server;
use engineio::{Engine, EngineConfig, OriginPolicy};
use socketio::{Event, NamespaceHandler, Socket, SocketIo, SocketIoConfig};
use tokio::net::TcpListener;

struct Echo;

impl NamespaceHandler for Echo {
    fn on_event(&self, socket: &Arc<Socket>, event: Event) {
        let _ = socket.emit_binary("echo", event.args, event.attachments);
    }
}

/// A running echo server; it stops when this is dropped.
pub struct EchoServer {
    pub addr: std::net::SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Starts an echo server on `/socket.io/`, any origin, with `max_payload` and `ping_timeout`
/// (which is also how long a closing WebSocket waits for the client's close).
pub async fn start_echo(max_payload: usize, ping_timeout: Duration) -> EchoServer {
    start_echo_with(SocketIoConfig::default(), max_payload, ping_timeout).await
}

/// [`start_echo`] with this Socket.IO configuration.
pub async fn start_echo_with(
    config: SocketIoConfig,
    max_payload: usize,
    ping_timeout: Duration,
) -> EchoServer {
    let io = SocketIo::builder(config)
        .namespace("/", Arc::new(Echo))
        .build();
    let cfg = EngineConfig {
        path: "/socket.io/".into(),
        max_payload,
        ping_timeout,
        origins: OriginPolicy::Any,
        ..EngineConfig::default()
    };
    let engine = Engine::new(cfg, io);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = server::spawn_alone(listener, engine);
    EchoServer { addr, _stop: stop }
}
