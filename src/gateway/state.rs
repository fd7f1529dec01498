//! What the gateway keeps on each socket: one part per service that needs one.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use super::event_queue::EventQueue;
use super::rooms::MembershipRooms;
use crate::app::UserInfo;
use engineio::token_bucket::TokenBucket;

/// Attached to a socket at connect (as its Socket.IO extension). The cookie is not kept here:
/// app calls read it from the handshake ([`super::credentials`]), its one copy.
pub struct SocketState {
    pub user: UserInfo,
    /// Rooms from the memberships call (see [`MembershipRooms`]).
    pub membership_rooms: MembershipRooms,
    /// Per-room typing: when the current "typing" expires.
    pub typing: Mutex<HashMap<String, Instant>>,
    /// Client events waiting for the app, processed one at a time in arrival order.
    pub queue: Mutex<EventQueue>,
    /// The socket's event rate (`limits.events_per_s`, `limits.events_burst`).
    pub events: TokenBucket,
    /// Presence knows the socket (its connect was sent): its room changes are sent too.
    pub in_presence: AtomicBool,
}

impl SocketState {
    pub fn user_json(&self) -> Value {
        serde_json::json!({ "id": self.user.id, "name": self.user.name })
    }
}
