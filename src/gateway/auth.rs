//! Authentication at connect: the browser's cookie goes to the app's session endpoint, then to
//! the memberships endpoint; the socket connects only with both answers, so it never has half
//! its rooms. Identical concurrent lookups are coalesced, and positive answers cached for
//! `app.session_cache_ttl_ms` (sessions by cookie digest, memberships by user id) unless a
//! revocation or membership-change signal forgets them first.

use std::sync::Arc;

use serde_json::json;

use super::rooms::rooms_from_memberships;
use super::state::SocketState;
use super::Gateway;
use crate::app::single_flight::Source;
use crate::app::{AppError, Credentials, Memberships, SessionInfo};
use crate::metrics::{self, ConnectResult};
use engineio::token_bucket::TokenBucket;
use engineio::Session;
use socketio::{BroadcastTarget, ConnectError, Room};

pub fn invalid_session() -> ConnectError {
    ConnectError::new(
        "Invalid session",
        Some(json!({ "code": "INVALID_SESSION" })),
    )
}

pub fn auth_unavailable() -> ConnectError {
    ConnectError::new(
        "Auth unavailable",
        Some(json!({ "code": "AUTH_UNAVAILABLE", "retryable": true })),
    )
}

impl Gateway {
    /// The cookie and client address of a handshake, as forwarded to the app (the address as
    /// [`super::client_ip`] resolves it).
    pub(crate) fn credentials(&self, session: &Session) -> Option<Credentials> {
        let hs = &session.handshake;
        let cookie = hs
            .header("cookie")
            .filter(|c| !c.trim().is_empty())?
            .to_owned();
        let client = self
            .trusted_proxies
            .client_ip(hs.remote_addr.map(|a| a.ip()), hs.header("x-forwarded-for"));
        Some(Credentials {
            cookie,
            forwarded_for: client.map(|ip| ip.to_string()),
        })
    }

    /// The session behind these credentials: cached when positive, coalesced always.
    pub async fn lookup_session(
        &self,
        creds: &Credentials,
        use_cache: bool,
    ) -> Result<Option<SessionInfo>, AppError> {
        let app = self.app.clone();
        let c = creds.clone();
        let (result, source) = self
            .sessions
            .get(
                creds.key(),
                use_cache,
                move || async move { app.session(&c).await },
                Option::is_some,
            )
            .await;
        match source {
            Source::Cache => metrics::session_cache_hit(),
            Source::Coalesced => metrics::app_call_coalesced(),
            Source::Call => {}
        }
        result
    }

    /// The memberships of `user_id` (whose session `creds` are): cached (unless `use_cache` is
    /// false) and coalesced per user, so a user's tabs and devices share one answer. The answer
    /// must name `user_id`.
    pub(super) async fn lookup_memberships(
        &self,
        creds: &Credentials,
        user_id: &str,
        use_cache: bool,
    ) -> Result<Memberships, AppError> {
        let app = self.app.clone();
        let c = creds.clone();
        let uid = user_id.to_owned();
        let (result, source) = self
            .memberships
            .get(
                user_id.to_owned(),
                use_cache,
                move || async move { app.memberships(&c).await },
                move |m| m.user_id == uid,
            )
            .await;
        // `session_cache_hits_total` stays about sessions; a coalesced call is counted as one.
        if source == Source::Coalesced {
            metrics::app_call_coalesced();
        }
        match result {
            // Joined another session's call and that cookie was refused: ask with our own.
            Err(AppError::Unauthenticated { .. }) if source != Source::Call => {
                self.app.memberships(creds).await
            }
            other => other,
        }
    }

    /// The app said these credentials are no longer valid (or revoked their sockets): the
    /// next connect with them asks the app again.
    pub(crate) fn forget_session(&self, creds: &Credentials) {
        self.sessions.forget(&creds.key());
    }

    /// A revocation (`disconnect`) or membership-change signal aimed at `target`, from the app
    /// through the emitter or another server. Aimed at `user:X` rooms only, it forgets those
    /// users' cached sessions (on revocation) and memberships; aimed at anything else, which
    /// may reach any user, it forgets every cached answer of that kind. These signals are rare,
    /// and a forgotten answer only costs one more app call.
    pub(crate) fn forget_targets(&self, target: &BroadcastTarget, revoked: bool) {
        let users = if target.rooms.is_empty() {
            None
        } else {
            super::rooms::user_ids(&target.rooms)
        };
        match users {
            Some(users) => {
                for user in &users {
                    self.memberships.forget(&(*user).to_owned());
                }
                if revoked {
                    self.sessions.forget_where(|_, v| {
                        v.as_ref()
                            .is_some_and(|s| users.contains(&s.user.id.as_str()))
                    });
                }
            }
            None => {
                self.memberships.clear();
                if revoked {
                    self.sessions.clear();
                }
            }
        }
    }

    /// [`Self::authenticate_session`], counted in `connects_total` when refused (a success is
    /// counted once the socket is connected).
    pub(super) async fn authenticate(
        self: Arc<Self>,
        session: Arc<Session>,
        cached: Cached,
    ) -> Result<Arc<SocketState>, ConnectError> {
        let result = self.authenticate_session(session, cached).await;
        if let Err(e) = &result {
            metrics::connect(match e {
                AuthFailure::InvalidSession => ConnectResult::InvalidSession,
                AuthFailure::Unavailable => ConnectResult::AuthUnavailable,
            });
        }
        result.map_err(AuthFailure::into_connect_error)
    }

    async fn authenticate_session(
        self: Arc<Self>,
        session: Arc<Session>,
        cached: Cached,
    ) -> Result<Arc<SocketState>, AuthFailure> {
        let Some(creds) = self.credentials(&session) else {
            return Err(AuthFailure::InvalidSession);
        };
        let info = match self.lookup_session(&creds, cached.session).await {
            Ok(Some(info)) => info,
            Ok(None) => return Err(AuthFailure::InvalidSession),
            Err(e) => {
                tracing::warn!(error = %e, "session lookup failed");
                return Err(AuthFailure::Unavailable);
            }
        };
        let memberships = match self
            .lookup_memberships(&creds, &info.user.id, cached.memberships)
            .await
        {
            Ok(m) if m.user_id == info.user.id => m,
            Ok(_) | Err(AppError::Unauthenticated { .. }) => {
                self.forget_session(&creds);
                return Err(AuthFailure::InvalidSession);
            }
            Err(e) => {
                tracing::warn!(error = %e, "memberships lookup failed");
                return Err(AuthFailure::Unavailable);
            }
        };
        Ok(Arc::new(SocketState {
            membership_rooms: std::sync::Mutex::new(
                rooms_from_memberships(&memberships)
                    .into_iter()
                    .map(Room::from)
                    .collect(),
            ),
            user: info.user,
            typing: Default::default(),
            queue: Default::default(),
            events: TokenBucket::new(self.events_per_s, self.events_burst),
            in_presence: Default::default(),
        }))
    }
}

/// Which cached answers a CONNECT may use. A recovery takes the memberships from the app, so
/// it never restores a room its user lost during the gap; the session too unless
/// `recovery.recheck_session` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cached {
    pub session: bool,
    pub memberships: bool,
}

/// Why a CONNECT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthFailure {
    /// No cookie, or the app says there is no valid session.
    InvalidSession,
    /// The app could not answer: the client may retry.
    Unavailable,
}

impl AuthFailure {
    fn into_connect_error(self) -> ConnectError {
        match self {
            AuthFailure::InvalidSession => invalid_session(),
            AuthFailure::Unavailable => auth_unavailable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::UserInfo;
    use crate::config::{AppSettings, LimitsSettings};

    fn session(user: &str) -> Option<SessionInfo> {
        Some(SessionInfo {
            user: UserInfo {
                id: user.into(),
                name: None,
            },
        })
    }

    fn memberships(user: &str) -> Memberships {
        Memberships {
            user_id: user.into(),
            workspaces: Vec::new(),
            channels: Vec::new(),
            conversations: Vec::new(),
        }
    }

    /// Caches a session for `key` and memberships for `user`, without the app.
    async fn cache(gw: &Gateway, key: u8, user: &str) {
        let s = session(user);
        gw.sessions
            .get(
                [key; 32],
                true,
                move || async move { Ok(s) },
                Option::is_some,
            )
            .await
            .0
            .ok();
        let m = memberships(user);
        gw.memberships
            .get(
                user.to_owned(),
                true,
                move || async move { Ok(m) },
                |_| true,
            )
            .await
            .0
            .ok();
    }

    #[tokio::test]
    async fn signals_forget_what_they_aim_at() {
        let gw = Gateway::new(
            &AppSettings::default(),
            &LimitsSettings::default(),
            true,
            Default::default(),
        )
        .expect("a client for the default config");
        cache(&gw, 1, "u1").await;
        cache(&gw, 2, "u1").await;
        cache(&gw, 3, "u2").await;
        assert_eq!((gw.sessions.len(), gw.memberships.len()), (3, 2));

        // socketsLeave aimed at user:u1: u1's memberships only; sessions stay.
        gw.forget_targets(&BroadcastTarget::room("user:u1"), false);
        assert_eq!((gw.sessions.len(), gw.memberships.len()), (3, 1));

        // disconnectSockets aimed at user:u1: both of u1's sessions go, u2's stays.
        cache(&gw, 1, "u1").await;
        gw.forget_targets(&BroadcastTarget::room("user:u1"), true);
        assert_eq!((gw.sessions.len(), gw.memberships.len()), (1, 1));

        // Aimed at anything else (it may reach any user): everything of that kind.
        cache(&gw, 1, "u1").await;
        gw.forget_targets(&BroadcastTarget::room("channel:c1"), false);
        assert_eq!((gw.sessions.len(), gw.memberships.len()), (2, 0));
        gw.forget_targets(&BroadcastTarget::default(), true);
        assert_eq!((gw.sessions.len(), gw.memberships.len()), (0, 0));
    }
}
