//! Socket.IO v5: the protocol layer over [`engineio`]. Packets, namespaces, sockets,
//! acknowledgements and rooms. It knows nothing of the app, Valkey or chat events.

pub mod adapter;
mod client;
pub mod encode;
pub mod handler;
pub mod namespace;
pub mod packet;
pub mod rooms;
pub mod server;
pub mod socket;

pub use adapter::{Adapter, LocalAdapter, SessionStore};
pub use handler::{
    Accepted, AckSender, BoxFuture, ConnectError, ConnectRequest, DisconnectReason, Event,
    Extension, NamespaceHandler,
};
pub use namespace::{BroadcastTarget, Namespace};
pub use rooms::Room;
pub use server::{SocketIo, SocketIoConfig};
pub use socket::{AckError, AckResponse, Socket};
