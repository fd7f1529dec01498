//! What an application plugs into a namespace: authentication at connect, and callbacks for
//! connection, events and disconnection.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::disconnect::DisconnectReason;
use super::socket::{Extension, Socket};
use super::target::BroadcastTarget;
use super::BoxFuture;
use engineio::Session;

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
