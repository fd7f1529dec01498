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

use super::auth::Authenticator;
use super::errors::ClientError;
use super::room_names::rooms_from_memberships;
use super::state::SocketState;
use crate::app::Credentials;
use crate::config::AppSettings;
use socketio::{Namespace, Socket};

/// Asks the app again about every session with a socket here, once an interval.
pub struct Revalidator {
    auth: Arc<Authenticator>,
    /// Zero: never.
    interval: Duration,
    /// Sessions re-validated at once.
    concurrency: usize,
}

/// Re-validates `ns`'s sockets every interval while `revalidator` lives.
pub async fn run(revalidator: Weak<Revalidator>, ns: Arc<Namespace>) {
    let Some(interval) = revalidator.upgrade().map(|r| r.interval) else {
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
        let Some(revalidator) = revalidator.upgrade() else {
            return;
        };
        revalidator.revalidate(&ns, interval / 2).await;
    }
}

/// A session's credentials and its sockets here. Held weakly: a pass spreads over half the
/// interval, and a socket that closes meanwhile is neither kept in memory nor re-validated.
type SessionSockets = (Credentials, Vec<Weak<Socket>>);

impl Revalidator {
    pub fn new(auth: Arc<Authenticator>, cfg: &AppSettings) -> Self {
        Revalidator {
            auth,
            interval: cfg.revalidate_interval(),
            concurrency: cfg.revalidate_concurrency.max(1),
        }
    }

    /// Re-validates every session with a socket here, their starts spread over `spread`.
    async fn revalidate(&self, ns: &Namespace, spread: Duration) {
        let mut by_session: HashMap<[u8; 32], SessionSockets> = HashMap::new();
        for socket in ns.sockets() {
            if socket.extension::<Arc<SocketState>>().is_none() {
                continue;
            }
            let Some(creds) = self.auth.credentials(socket.session()) else {
                continue;
            };
            by_session
                .entry(creds.key())
                .or_insert_with(|| (creds, Vec::new()))
                .1
                .push(Arc::downgrade(&socket));
        }
        let gap = spread / u32::try_from(by_session.len().max(1)).unwrap_or(u32::MAX);
        futures_util::stream::iter(by_session.into_values())
            .then(|session| async move {
                tokio::time::sleep(gap).await;
                session
            })
            .map(|session| self.revalidate_session(session))
            .buffer_unordered(self.concurrency)
            .for_each(|()| async {})
            .await;
    }

    async fn revalidate_session(&self, (creds, sockets): SessionSockets) {
        let sockets: Vec<Arc<Socket>> = sockets
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| s.connected())
            .collect();
        let Some(state) = sockets
            .first()
            .and_then(|s| s.extension::<Arc<SocketState>>())
            .cloned()
        else {
            return;
        };
        match self.auth.lookup_session(&creds, false).await {
            Ok(Some(info)) if info.user.id == state.user.id => {
                match self
                    .auth
                    .lookup_memberships(&creds, &state.user.id, false)
                    .await
                {
                    Ok(m) if m.user_id == state.user.id => {
                        let rooms = rooms_from_memberships(&m);
                        for socket in &sockets {
                            if let Some(state) = socket.extension::<Arc<SocketState>>() {
                                state.membership_rooms.replace(socket, &rooms);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "memberships refresh skipped"),
                }
            }
            Ok(_) => {
                self.auth.forget_session(&creds);
                self.auth.forget_memberships(&state.user.id);
                tracing::info!(sockets = sockets.len(), "session expired: disconnecting");
                let expired = ClientError::new("SESSION_EXPIRED", "your session has ended");
                for socket in sockets {
                    expired.emit_to(&socket);
                    socket.disconnect();
                }
            }
            Err(e) => tracing::debug!(error = %e, "revalidation skipped: app unavailable"),
        }
    }
}
