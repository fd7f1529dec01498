//! Socket.IO v5: the protocol layer over [`engineio`]. Packets, namespaces, sockets,
//! acknowledgements and rooms. It knows nothing of the app, Valkey or chat events.

pub mod adapter;
mod client;
mod connect_timeout;
pub mod disconnect;
pub mod encode;
pub mod handler;
pub mod namespace;
pub mod packet;
pub mod recovery;
pub mod rooms;
pub mod server;
pub mod socket;
pub mod target;

use std::future::Future;
use std::pin::Pin;

/// A boxed future, the return type of the async callbacks of [`NamespaceHandler`],
/// [`Adapter`] and [`SessionStore`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

pub use adapter::{Adapter, LocalAdapter};
pub use disconnect::DisconnectReason;
pub use handler::{Accepted, AckSender, ConnectError, ConnectRequest, Event, NamespaceHandler};
pub use namespace::Namespace;
pub use recovery::{Frontier, Missed, Offset, Position, Recorded, SessionRecord, SessionStore};
pub use rooms::Room;
pub use server::{SocketIo, SocketIoConfig};
pub use socket::{AckError, AckResponse, Extension, Socket};
pub use target::BroadcastTarget;
