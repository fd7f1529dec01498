//! Engine.IO v4: the transport layer. Sessions, heartbeats, HTTP long-polling, WebSocket and the
//! upgrade between them, admission of new sessions, and serving it all over HTTP ([`server`]).
//! It knows nothing of Socket.IO: the layer above receives messages through [`EngineHandler`],
//! and figures go to an [`EngineObserver`].

mod admission;
pub mod batch;
pub mod config;
pub mod deadlines;
pub mod engine;
pub mod handler;
pub mod headers;
mod heartbeat;
pub mod packet;
pub mod payload;
pub mod polling;
pub mod request;
pub mod server;
pub mod session;
pub mod sid;
pub mod sparse;
pub mod token_bucket;
pub mod websocket;
#[cfg(not(feature = "fuzzing"))]
pub(crate) mod wsproto;
/// The WebSocket frame decoder, for the fuzz targets only.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod wsproto;

pub use admission::Refusal;
pub use batch::WriteBatch;
pub use config::{EngineConfig, HandshakeRate, OriginPolicy};
pub use engine::Engine;
pub use handler::{EngineHandler, EngineObserver, Refused};
pub use packet::Frame;
pub use session::{CloseReason, Handshake, Session, SessionClosed, Transport};
pub use sid::{Sid, SidTag};
