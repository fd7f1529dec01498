//! Refusals of client events: an `error` event `{code, message}`, or an error ack.

use std::sync::Arc;

use serde_json::{json, Value};

use socketio::Socket;

#[derive(Debug, Clone, PartialEq)]
pub struct ClientError {
    pub code: &'static str,
    pub message: String,
}

impl ClientError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ClientError {
            code,
            message: message.into(),
        }
    }
    pub fn bad_payload(message: impl Into<String>) -> Self {
        Self::new("BAD_PAYLOAD", message)
    }
    pub fn unavailable() -> Self {
        Self::new("APP_UNAVAILABLE", "the app is unavailable, retry later")
    }

    pub fn ack_value(&self) -> Value {
        json!({ "ok": false, "error": self.message, "code": self.code })
    }

    pub fn emit_to(&self, socket: &Arc<Socket>) {
        let sent = socket.emit(
            "error",
            vec![json!({ "code": self.code, "message": self.message })],
        );
        if sent.is_ok() {
            crate::metrics::events_out("error", 1);
        }
    }
}
