//! socket-gateway: a Socket.IO server for a Next.js + better-auth chat app.
//!
//! Layers, bottom up: [`engineio`] (transport), [`socketio`] (protocol), then the product's
//! gateway logic and the server edges ([`server`], [`config`], [`shutdown`]).

pub mod app;
pub mod config;
pub mod engineio;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod limits;
pub mod metrics;
pub mod relay;
pub mod server;
pub mod shutdown;
pub mod socketio;
