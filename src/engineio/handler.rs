//! The interface between the transport and the protocol above it.

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
