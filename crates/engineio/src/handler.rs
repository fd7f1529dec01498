//! The interfaces between the transport and what runs above it: the protocol layer
//! ([`EngineHandler`]) and whoever keeps the figures ([`EngineObserver`]).

use std::sync::Arc;

use bytes::Bytes;

use super::session::{CloseReason, Session};

/// Receives a session's lifecycle and messages. Called from the transport's tasks in the
/// order the packets arrived; implementations must not block (spawn for slow work).
pub trait EngineHandler: Send + Sync + 'static {
    fn on_open(&self, session: &Arc<Session>);
    /// A text message packet (without the `4` type digit).
    fn on_message(&self, session: &Arc<Session>, text: &str);
    fn on_binary(&self, session: &Arc<Session>, data: Bytes);
    /// Called exactly once per session.
    fn on_close(&self, session: &Arc<Session>, reason: CloseReason);
}

/// A handshake the engine refused, as its observer hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its `Origin` is not allowed (403).
    Origin,
    /// The session cap is reached (429).
    OverCapacity,
    /// Over the handshake rate, even after the queue (429).
    RateLimited,
    /// The engine is draining (503).
    Draining,
}

/// What the engine reports for metrics. Every method does nothing by default; `()` observes
/// nothing.
pub trait EngineObserver: Send + Sync + 'static {
    fn refused(&self, _why: Refused) {}
    /// A handshake starts (`true`) or stops (`false`) waiting in the handshake rate's queue.
    fn queued(&self, _waiting: bool) {}
    /// A session was closed because its client could not keep up with its outbound queue.
    fn slow_consumer(&self) {}
}

impl EngineObserver for () {}
