//! What the socket callbacks tell presence: connects, away/active, room changes, disconnects.
//! Presence starts after the relay, so until it is attached the hooks do nothing.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::queue::Change;
use super::{workspaces_of, Presence};
use crate::gateway::state::SocketState;
use socketio::{AckSender, Socket};

#[derive(Default)]
pub struct PresenceHooks {
    /// Set once at start, after the relay.
    presence: OnceLock<Arc<Presence>>,
}

impl PresenceHooks {
    /// Wires presence in (once): `false` when it already was.
    pub fn attach(&self, presence: Arc<Presence>) -> bool {
        self.presence.set(presence).is_ok()
    }

    pub fn connected(&self, socket: &Arc<Socket>, state: &SocketState) {
        if let Some(p) = self.presence.get() {
            state.in_presence.store(true, Ordering::Release);
            let socket_ref = Arc::downgrade(socket);
            let user = state.user.id.clone();
            p.queue.push(
                socket.id,
                Change::Connected {
                    socket: socket_ref,
                    user,
                },
            );
        }
    }

    /// `presence:setAway` (`away`) / `presence:setActive`. Any payload is ignored.
    pub fn set_away(&self, socket: &Arc<Socket>, away: bool, ack: Option<AckSender>) {
        if let Some(p) = self.presence.get() {
            p.queue.push(socket.id, Change::Away(away));
        }
        if let Some(ack) = ack {
            ack.send(vec![json!({ "ok": true })]);
        }
    }

    /// A socket's rooms changed: its workspaces, where its user's updates go, follow (a live
    /// membership change through the app's emitter, or re-validation).
    pub fn rooms_changed(&self, socket: &Socket, state: &SocketState) {
        if let Some(p) = self.presence.get() {
            if state.in_presence.load(Ordering::Acquire) {
                p.queue
                    .push(socket.id, Change::Rooms(workspaces_of(socket)));
            }
        }
    }

    pub fn disconnected(&self, socket: &Arc<Socket>) {
        if let Some(p) = self.presence.get() {
            let since_epoch = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let at = Change::Disconnected(Instant::now(), since_epoch.as_millis() as u64);
            p.queue.push(socket.id, at);
        }
    }
}
