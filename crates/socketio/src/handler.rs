//! What an application plugs into a namespace: authentication at connect, and callbacks for
//! connection, events and disconnection.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::namespace::BroadcastTarget;
use super::socket::Socket;
use engineio::Session;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Application state attached to a socket when it connects (the authenticated user...).
pub type Extension = Arc<dyn Any + Send + Sync>;

/// A CONNECT to authorise.
pub struct ConnectRequest {
    /// The Engine.IO session: the handshake headers (cookie, origin) live there.
    pub session: Arc<Session>,
    pub nsp: String,
    /// The CONNECT payload (`{}` when the client sent none).
    pub auth: Value,
}

/// An accepted CONNECT: what the application attaches to the socket, and whose socket it is.
#[derive(Default)]
pub struct Accepted {
    pub extension: Option<Extension>,
    /// The user the socket acts for. A kept session is given back only to a CONNECT of the same
    /// owner (connection state recovery); a socket without an owner is never restored.
    pub owner: Option<String>,
}

/// A refused connection: the client receives `connect_error` with this message and data.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    pub message: String,
    pub data: Option<Value>,
}

impl ConnectError {
    pub fn new(message: impl Into<String>, data: Option<Value>) -> Self {
        ConnectError {
            message: message.into(),
            data,
        }
    }
}

/// An event received from a client.
pub struct Event {
    pub name: String,
    pub args: Vec<Value>,
    /// Binary attachments referenced by placeholders in `args`.
    pub attachments: Vec<Bytes>,
    /// Present when the client asked for an acknowledgement.
    pub ack: Option<AckSender>,
}

/// Answers a client's acknowledgement request exactly once.
pub struct AckSender {
    pub(crate) socket: Arc<Socket>,
    pub(crate) id: u64,
}

impl AckSender {
    pub fn send(self, args: Vec<Value>) {
        self.send_binary(args, Vec::new());
    }

    pub fn send_binary(self, args: Vec<Value>, attachments: Vec<Bytes>) {
        self.socket.send_ack(self.id, args, attachments);
    }
}

/// Why a socket left its namespace. The strings are the reference's disconnect reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    ClientNamespaceDisconnect,
    ServerNamespaceDisconnect,
    TransportClose,
    TransportError,
    PingTimeout,
    ParseError,
    ForcedServerClose,
    ForcedClose,
    ServerShuttingDown,
    SlowConsumer,
    /// Another connection of the same client recovered this socket's session (its old
    /// connection went silent): one live socket per session.
    Replaced,
}

impl DisconnectReason {
    /// Every reason, for the metrics to start one series per reason at zero (a new variant
    /// must be added here too; the exhaustive match in this file's test is the reminder).
    pub const ALL: [DisconnectReason; 11] = [
        DisconnectReason::ClientNamespaceDisconnect,
        DisconnectReason::ServerNamespaceDisconnect,
        DisconnectReason::TransportClose,
        DisconnectReason::TransportError,
        DisconnectReason::PingTimeout,
        DisconnectReason::ParseError,
        DisconnectReason::ForcedServerClose,
        DisconnectReason::ForcedClose,
        DisconnectReason::ServerShuttingDown,
        DisconnectReason::SlowConsumer,
        DisconnectReason::Replaced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ForcedServerClose => "forced server close",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ServerShuttingDown => "server shutting down",
            DisconnectReason::SlowConsumer => "slow consumer",
            DisconnectReason::Replaced => "replaced",
        }
    }

    /// Whether the client may come back and expect its state (connection state recovery).
    pub fn is_recoverable(self) -> bool {
        !matches!(
            self,
            DisconnectReason::ClientNamespaceDisconnect
                | DisconnectReason::ServerNamespaceDisconnect
                | DisconnectReason::ParseError
                | DisconnectReason::Replaced
        )
    }
}

impl From<engineio::CloseReason> for DisconnectReason {
    fn from(r: engineio::CloseReason) -> Self {
        use engineio::CloseReason as C;
        match r {
            C::TransportClose => DisconnectReason::TransportClose,
            C::TransportError | C::MultiplePolling | C::PayloadTooLarge => {
                DisconnectReason::TransportError
            }
            C::PingTimeout => DisconnectReason::PingTimeout,
            C::ParseError => DisconnectReason::ParseError,
            C::ForcedServerClose => DisconnectReason::ForcedServerClose,
            C::ForcedClose => DisconnectReason::ForcedClose,
            C::SlowConsumer => DisconnectReason::SlowConsumer,
            C::ShuttingDown => DisconnectReason::ServerShuttingDown,
        }
    }
}

/// The callbacks of one namespace. All have defaults, so a handler implements what it needs.
/// Callbacks run on the transport's task: do slow work in a spawned task.
pub trait NamespaceHandler: Send + Sync + 'static {
    /// Decides whether a CONNECT succeeds; runs in its own task, so it may call out.
    fn authenticate(&self, _req: ConnectRequest) -> BoxFuture<Result<Accepted, ConnectError>> {
        Box::pin(async { Ok(Accepted::default()) })
    }
    /// Runs once the socket exists, before the client is told it is connected: join rooms
    /// here so no broadcast sent after the CONNECT reply can miss the socket.
    fn prepare(&self, _socket: &Arc<Socket>) {}
    /// A restored socket's kept rooms (other than those [`NamespaceHandler::prepare`] joined):
    /// join those it may still be in and return them; `Err` when that cannot be known now (the
    /// session is then not recovered). The default keeps them all, as the reference does.
    fn restore_rooms(
        &self,
        socket: &Arc<Socket>,
        kept: Vec<String>,
    ) -> BoxFuture<Result<Vec<String>, ()>> {
        socket.join(&kept);
        Box::pin(async move { Ok(kept) })
    }
    /// The owners ([`Accepted::owner`]) all of whose sockets `target` reaches, e.g. the users
    /// of `user:<id>` rooms; `None` when it cannot say. Requests from other servers aimed at
    /// them (joins, leaves, disconnects) also change their kept sessions, so a reconnect never
    /// undoes them.
    fn owners_of(&self, _target: &BroadcastTarget) -> Option<Vec<String>> {
        None
    }
    /// Runs after the CONNECT reply was queued (the reference's `connection` event).
    fn on_connect(&self, _socket: &Arc<Socket>) {}
    fn on_event(&self, _socket: &Arc<Socket>, _event: Event) {}
    /// `packet` was delivered to `recipients` sockets of this instance (a broadcast, this
    /// instance's or another's): for the metrics.
    fn on_delivered(&self, _packet: &super::packet::Packet, _recipients: usize) {}
    /// `socket` joined or left rooms (it is in its new rooms already), however that happened:
    /// its own event, a request from another server, the application.
    fn on_rooms_changed(&self, _socket: &Socket) {}
    fn on_disconnect(&self, _socket: &Arc<Socket>, _reason: DisconnectReason) {}
    /// Another server (Node's `disconnectSockets()`, the emitter) asked to disconnect the
    /// sockets of `target`, on every instance: how an app revokes a user. Runs before the
    /// local sockets are disconnected, whether or not any is here.
    fn on_disconnect_request(&self, _target: &BroadcastTarget) {}
    /// Another server asked the sockets of `target` to join or leave rooms (`socketsJoin`,
    /// `socketsLeave`): how an app signals a membership change. Runs whether or not any
    /// socket of `target` is here.
    fn on_rooms_request(&self, _target: &BroadcastTarget) {}
    /// What other servers see as this socket's `data` (Node's `fetchSockets()`); never
    /// credentials. `{}` by default, as Node's `socket.data`.
    fn socket_data(&self, _socket: &Socket) -> Value {
        Value::Object(serde_json::Map::new())
    }
}

#[cfg(test)]
mod tests {
    use super::DisconnectReason;

    #[test]
    fn all_lists_every_disconnect_reason_once() {
        for r in DisconnectReason::ALL {
            // Exhaustive on purpose: a new variant stops this from compiling; list it in ALL.
            match r {
                DisconnectReason::ClientNamespaceDisconnect
                | DisconnectReason::ServerNamespaceDisconnect
                | DisconnectReason::TransportClose
                | DisconnectReason::TransportError
                | DisconnectReason::PingTimeout
                | DisconnectReason::ParseError
                | DisconnectReason::ForcedServerClose
                | DisconnectReason::ForcedClose
                | DisconnectReason::ServerShuttingDown
                | DisconnectReason::SlowConsumer
                | DisconnectReason::Replaced => {}
            }
        }
        let names: std::collections::HashSet<_> =
            DisconnectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DisconnectReason::ALL.len());
    }
}
