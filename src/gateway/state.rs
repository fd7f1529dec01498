//! What the gateway keeps on each socket.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use super::events::QueuedEvent;
use crate::app::UserInfo;
use engineio::token_bucket::TokenBucket;
use socketio::Room;

/// Attached to a socket at connect (as its Socket.IO extension).
pub struct SocketState {
    pub user: UserInfo,
    /// Rooms from the memberships call, joined before the CONNECT reply; kept because
    /// re-validation replaces them with the app's current answer (leaving and joining the
    /// difference) and must not touch rooms joined otherwise. The cookie is not kept here:
    /// app calls read it from the handshake ([`super::auth::credentials`]), its one copy.
    /// Once joined, the names are the room index's own (one allocation per room, not per
    /// socket and room).
    pub membership_rooms: Mutex<Vec<Room>>,
    /// Per-room typing: when the current "typing" expires.
    pub typing: Mutex<HashMap<String, Instant>>,
    /// Client events waiting for the app, processed one at a time in arrival order.
    pub queue: Mutex<EventQueue>,
    /// The socket's event rate (`limits.events_per_s`, `limits.events_burst`).
    pub events: TokenBucket,
    /// Presence knows the socket (its connect was sent): its room changes are sent too.
    pub in_presence: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
pub struct EventQueue {
    pub jobs: VecDeque<QueuedEvent>,
    pub running: bool,
}

impl SocketState {
    pub fn user_json(&self) -> Value {
        serde_json::json!({ "id": self.user.id, "name": self.user.name })
    }
}
