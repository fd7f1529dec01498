//! Engine.IO v4: the transport layer. Sessions, heartbeats, HTTP long-polling, WebSocket and the
//! upgrade between them. It knows nothing of Socket.IO: the layer above receives messages
//! through [`EngineHandler`].

mod admission;
pub mod batch;
pub mod config;
pub mod engine;
pub mod handler;
pub mod headers;
mod heartbeat;
pub mod packet;
pub mod payload;
pub mod polling;
pub mod request;
pub mod session;
pub mod sid;
pub mod websocket;
pub(crate) mod wsproto;

pub use admission::Refusal;
pub use config::{EngineConfig, HandshakeRate, OriginPolicy};
pub use engine::Engine;
pub use handler::EngineHandler;
pub use packet::Frame;
pub use session::{CloseReason, Handshake, Session, SessionClosed, Transport};
pub use sid::Sid;
