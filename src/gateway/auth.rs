//! Authentication at connect: the browser's cookie goes to the app's session endpoint, then to
//! the memberships endpoint; the socket connects only with both answers, so it never has half
//! its rooms. Identical concurrent lookups are coalesced, and positive answers cached for
//! `app.session_cache_ttl_ms` (sessions by cookie digest, memberships by user id) unless a
//! revocation or membership-change signal forgets them first.

use std::sync::Arc;

use serde_json::{json, Value};

use super::credentials::CredentialSource;
use super::room_names::user_ids;
use super::warn_throttle::{WarnThrottle, WARN_EVERY};
use crate::app::single_flight::{SingleFlight, Source};
use crate::app::{AppClient, AppError, Credentials, Memberships, SessionInfo, UserInfo};
use crate::config::AppSettings;
use crate::metrics::{self, ConnectResult};
use engineio::Session;
use socketio::{BroadcastTarget, ConnectError};

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

/// Who a CONNECT is: the app's answers for its cookie.
pub struct Identity {
    pub user: UserInfo,
    pub memberships: Arc<Memberships>,
}

/// Cookie to user, user to memberships, and what is remembered of both.
pub struct Authenticator {
    app: Arc<AppClient>,
    credentials: Arc<CredentialSource>,
    /// Positive session answers by cookie digest; forgotten on every revocation signal.
    sessions: SingleFlight<[u8; 32], Option<SessionInfo>, AppError>,
    /// Memberships by user id (the same for every session of a user); forgotten on every
    /// membership-change signal. Shared, not copied: a cache entry stays a few words, and a
    /// hit hands out a pointer rather than a copy of every id.
    memberships: SingleFlight<String, Arc<Memberships>, AppError>,
    /// Whether a CONNECT asking for its session back asks the app again, past the cache.
    recheck_on_recovery: bool,
}

impl Authenticator {
    pub fn new(
        app: Arc<AppClient>,
        credentials: Arc<CredentialSource>,
        cfg: &AppSettings,
        recheck_on_recovery: bool,
    ) -> Self {
        Authenticator {
            app,
            credentials,
            sessions: SingleFlight::new(cfg.session_cache_ttl()),
            // Memberships share the session cache's TTL: a reconnect storm reuses one answer per
            // user; the emitter's socketsJoin/socketsLeave (how the app changes memberships)
            // forget it, see `forget_targets`.
            memberships: SingleFlight::new(cfg.session_cache_ttl()),
            recheck_on_recovery,
        }
    }

    /// The cookie and client address of a handshake, as forwarded to the app.
    pub fn credentials(&self, session: &Session) -> Option<Credentials> {
        self.credentials.of(session)
    }

    /// Which cached answers a CONNECT with this `auth` payload may use. A client asking for a
    /// kept session back: a session revoked or a membership lost during the gap must not come
    /// back through a cached answer.
    pub fn cached_for(&self, auth: &Value) -> Cached {
        let recovering = auth.get("pid").is_some() && auth.get("offset").is_some();
        Cached {
            session: !(recovering && self.recheck_on_recovery),
            memberships: !recovering,
        }
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
    pub async fn lookup_memberships(
        &self,
        creds: &Credentials,
        user_id: &str,
        use_cache: bool,
    ) -> Result<Arc<Memberships>, AppError> {
        let app = self.app.clone();
        let c = creds.clone();
        let uid = user_id.to_owned();
        let (result, source) = self
            .memberships
            .get(
                user_id.to_owned(),
                use_cache,
                move || async move { app.memberships(&c).await.map(Arc::new) },
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
                self.app.memberships(creds).await.map(Arc::new)
            }
            other => other,
        }
    }

    /// The app said these credentials are no longer valid (or revoked their sockets): the
    /// next connect with them asks the app again.
    pub fn forget_session(&self, creds: &Credentials) {
        self.sessions.forget(&creds.key());
    }

    /// [`Self::forget_session`] for the credentials of a socket's handshake.
    pub fn forget_socket(&self, session: &Session) {
        if let Some(creds) = self.credentials(session) {
            self.forget_session(&creds);
        }
    }

    /// Drops cached answers past their time (see [`SingleFlight::forget_expired`]).
    pub fn forget_expired(&self) {
        self.sessions.forget_expired();
        self.memberships.forget_expired();
    }

    /// The next lookup of `user_id`'s memberships asks the app.
    pub fn forget_memberships(&self, user_id: &str) {
        self.memberships.forget(&user_id.to_owned());
    }

    /// A revocation (`disconnect`) or membership-change signal aimed at `target`, from the app
    /// through the emitter or another server. Aimed at `user:X` rooms only, it forgets those
    /// users' cached sessions (on revocation) and memberships; aimed at anything else, which
    /// may reach any user, it forgets every cached answer of that kind. These signals are rare,
    /// and a forgotten answer only costs one more app call.
    pub fn forget_targets(&self, target: &BroadcastTarget, revoked: bool) {
        let users = if target.rooms.is_empty() {
            None
        } else {
            user_ids(&target.rooms)
        };
        match users {
            Some(users) => {
                for user in &users {
                    self.forget_memberships(user);
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

    /// [`Self::identify`], counted in `connects_total` when refused (a success is counted once
    /// the socket is connected).
    pub async fn authenticate(
        &self,
        session: &Session,
        cached: Cached,
    ) -> Result<Identity, ConnectError> {
        let result = self.identify(session, cached).await;
        if let Err(e) = &result {
            metrics::connect(match e {
                AuthFailure::InvalidSession => ConnectResult::InvalidSession,
                AuthFailure::Unavailable => ConnectResult::AuthUnavailable,
            });
        }
        result.map_err(AuthFailure::into_connect_error)
    }

    async fn identify(&self, session: &Session, cached: Cached) -> Result<Identity, AuthFailure> {
        let Some(creds) = self.credentials(session) else {
            return Err(AuthFailure::InvalidSession);
        };
        let info = match self.lookup_session(&creds, cached.session).await {
            Ok(Some(info)) => info,
            Ok(None) => return Err(AuthFailure::InvalidSession),
            Err(e) => {
                static THROTTLE: WarnThrottle = WarnThrottle::new(WARN_EVERY);
                crate::throttled_warn!(THROTTLE, error = %e, "session lookup failed");
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
                static THROTTLE: WarnThrottle = WarnThrottle::new(WARN_EVERY);
                crate::throttled_warn!(THROTTLE, error = %e, "memberships lookup failed");
                return Err(AuthFailure::Unavailable);
            }
        };
        Ok(Identity {
            user: info.user,
            memberships,
        })
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
    async fn cache(auth: &Authenticator, key: u8, user: &str) {
        let s = session(user);
        auth.sessions
            .get(
                [key; 32],
                true,
                move || async move { Ok(s) },
                Option::is_some,
            )
            .await
            .0
            .ok();
        let m = Arc::new(memberships(user));
        auth.memberships
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
        let cfg = AppSettings::default();
        let app = AppClient::new(&cfg).expect("a client for the default config");
        let auth = Authenticator::new(Arc::new(app), Default::default(), &cfg, true);
        cache(&auth, 1, "u1").await;
        cache(&auth, 2, "u1").await;
        cache(&auth, 3, "u2").await;
        assert_eq!((auth.sessions.len(), auth.memberships.len()), (3, 2));

        // socketsLeave aimed at user:u1: u1's memberships only; sessions stay.
        auth.forget_targets(&BroadcastTarget::room("user:u1"), false);
        assert_eq!((auth.sessions.len(), auth.memberships.len()), (3, 1));

        // disconnectSockets aimed at user:u1: both of u1's sessions go, u2's stays.
        cache(&auth, 1, "u1").await;
        auth.forget_targets(&BroadcastTarget::room("user:u1"), true);
        assert_eq!((auth.sessions.len(), auth.memberships.len()), (1, 1));

        // Aimed at anything else (it may reach any user): everything of that kind.
        cache(&auth, 1, "u1").await;
        auth.forget_targets(&BroadcastTarget::room("channel:c1"), false);
        assert_eq!((auth.sessions.len(), auth.memberships.len()), (2, 0));
        auth.forget_targets(&BroadcastTarget::default(), true);
        assert_eq!((auth.sessions.len(), auth.memberships.len()), (0, 0));
    }
}
