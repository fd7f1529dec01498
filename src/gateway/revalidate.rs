//! Periodic re-validation of live sockets: each distinct session is asked of the app again
//! (bypassing the positive cache). A session that is gone gets `error {code:
//! "SESSION_EXPIRED"}` and its sockets are disconnected; an app outage changes nothing.
//! A valid session's memberships are asked again too, and its sockets leave the membership
//! rooms it lost and join the ones it gained, so a change the app did not push through the
//! emitter (`socketsLeave`/`socketsJoin`) still takes effect within one interval. Rooms joined
//! otherwise (`room:join`, the emitter) are left alone.
//!
//! A pass is spread over the first half of the interval, at most
//! `app.revalidate_concurrency` sessions at once: 10,000 sessions are 10,000 paced checks,
//! not a burst at the app, and a slow app delays the pass rather than piling calls up.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;

use super::rooms::join_shared;
use super::state::SocketState;
use super::Gateway;
use crate::app::Credentials;
use socketio::{Namespace, Room, Socket};

pub async fn run(gateway: Weak<Gateway>, ns: Arc<Namespace>) {
    let Some(interval) = gateway.upgrade().map(|g| g.revalidate_interval) else {
        return;
    };
    if interval.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(gw) = gateway.upgrade() else { return };
        gw.revalidate(&ns, interval / 2).await;
    }
}

/// A session's credentials and its sockets here.
type SessionSockets = (Credentials, Vec<Arc<Socket>>);

impl Gateway {
    /// Re-validates every session with a socket here, their starts spread over `spread`.
    async fn revalidate(self: &Arc<Self>, ns: &Namespace, spread: Duration) {
        let mut by_session: HashMap<[u8; 32], (Credentials, Vec<Arc<Socket>>)> = HashMap::new();
        for socket in ns.sockets() {
            if socket.extension::<Arc<SocketState>>().is_none() {
                continue;
            }
            let Some(creds) = self.credentials(socket.session()) else {
                continue;
            };
            by_session
                .entry(creds.key())
                .or_insert_with(|| (creds, Vec::new()))
                .1
                .push(socket);
        }
        let gap = spread / u32::try_from(by_session.len().max(1)).unwrap_or(u32::MAX);
        futures_util::stream::iter(by_session)
            .then(|session| async move {
                tokio::time::sleep(gap).await;
                session
            })
            .map(|(key, session)| self.revalidate_session(key, session))
            .buffer_unordered(self.revalidate_concurrency)
            .for_each(|()| async {})
            .await;
    }

    async fn revalidate_session(&self, key: [u8; 32], (creds, sockets): SessionSockets) {
        let Some(state) = sockets
            .first()
            .and_then(|s| s.extension::<Arc<SocketState>>())
            .cloned()
        else {
            return;
        };
        match self.lookup_session(&creds, false).await {
            Ok(Some(info)) if info.user.id == state.user.id => {
                match self.lookup_memberships(&creds, &state.user.id, false).await {
                    Ok(m) if m.user_id == state.user.id => {
                        let rooms = super::rooms::rooms_from_memberships(&m);
                        for socket in &sockets {
                            refresh_rooms(socket, &rooms);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "memberships refresh skipped"),
                }
            }
            Ok(_) => {
                self.sessions.forget(&key);
                self.memberships.forget(&state.user.id);
                tracing::info!(sockets = sockets.len(), "session expired: disconnecting");
                for socket in sockets {
                    let sent = socket.emit(
                        "error",
                        vec![json!({ "code": "SESSION_EXPIRED", "message": "your session has ended" })],
                    );
                    if sent.is_ok() {
                        crate::metrics::events_out("error", 1);
                    }
                    socket.disconnect();
                }
            }
            Err(e) => tracing::debug!(error = %e, "revalidation skipped: app unavailable"),
        }
    }
}

/// Moves one socket from its previous membership rooms to `rooms`.
fn refresh_rooms(socket: &Arc<Socket>, rooms: &[String]) {
    let Some(state) = socket.extension::<Arc<SocketState>>() else {
        return;
    };
    let mut current = state
        .membership_rooms
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let same = current.len() == rooms.len() && current.iter().zip(rooms).all(|(c, r)| **c == **r);
    if same {
        return;
    }
    for lost in current
        .iter()
        .filter(|c| !rooms.iter().any(|r| c.as_ref() == r.as_str()))
    {
        socket.leave(lost);
    }
    let rooms: Vec<Room> = rooms.iter().map(|r| Room::from(r.as_str())).collect();
    *current = join_shared(socket, &rooms);
}
