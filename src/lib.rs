//! socket-gateway: a Socket.IO server for a Next.js + better-auth chat app.
//!
//! The layers below are crates of their own ([`engineio`], transport; [`socketio`], protocol;
//! [`relay`], Valkey), so none of them can name this one. This crate is the gateway itself:
//! the app's contract ([`app`]), the product's policy ([`gateway`]), and the edges that wire
//! it all together ([`config`], [`metrics`], [`health`], [`shutdown`], and the binary).
//! `ARCHITECTURE.md` walks through it.

pub mod app;
pub mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod health;
pub mod memory;
pub mod metrics;
pub mod shutdown;
