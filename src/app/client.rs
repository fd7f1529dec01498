//! The four calls of the contract. Every call forwards the browser's `Cookie` (and
//! `X-Forwarded-For`), has a timeout, follows no redirect and uses no proxy. An outage is
//! reported as [`AppError::Unavailable`], never as a logout.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, COOKIE};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::Value;

use super::limit::{AdaptiveLimit, Outcome};
use super::strict_json;
use super::types::{Authorization, EventReply, Memberships, SessionBody, SessionInfo};
use super::Credentials;
use crate::config::AppSettings;
use crate::metrics::{self, AppCall, AppCallOutcome, AppCallTimer, AppCallWaiting};

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum AppError {
    /// Timeout, refused connection, 5xx, 429 or an unreadable answer: retryable.
    #[error("app unavailable during {call}: {detail}")]
    Unavailable { call: &'static str, detail: String },
    /// 401: the session is gone.
    #[error("app says unauthenticated during {call}")]
    Unauthenticated { call: &'static str },
    /// A 4xx refusal of an event or room, with the app's `error` text.
    #[error("app refused {call}: {error}")]
    Refused {
        call: &'static str,
        status: u16,
        error: String,
    },
}

/// The URLs are parsed once here: parsing them on every call showed in connect profiles.
pub struct AppClient {
    http: reqwest::Client,
    /// Session and memberships calls (the connect path) in flight at most, adapting to how
    /// the app answers; the rest wait in line (FIFO) for up to `auth_queue`. Unbounded, a
    /// failover's reconnects made the app's queue outgrow the call timeout: every answer came
    /// too late, and every retry added work.
    auth_limit: AdaptiveLimit,
    auth_queue: Duration,
    session_url: Url,
    memberships_url: Url,
    authorize_url: Url,
    /// An event's name is appended to it as one more path segment.
    events_url: Url,
}

/// Why the app client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AppClientError {
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("invalid app URL: {0}")]
    Url(String),
}

/// The metrics outcome of a request that got no usable answer.
fn failure(e: &reqwest::Error) -> AppCallOutcome {
    if e.is_timeout() {
        AppCallOutcome::Timeout
    } else {
        AppCallOutcome::Error
    }
}

fn parse(url: String) -> Result<Url, AppClientError> {
    // The message only: the URL is already checked by the config (and could hold a secret).
    Url::parse(&url).map_err(|e| AppClientError::Url(e.to_string()))
}

impl AppClient {
    pub fn new(cfg: &AppSettings) -> Result<Self, AppClientError> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout())
            .connect_timeout(cfg.timeout().min(Duration::from_secs(2)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(AppClient {
            http,
            // An answer taking a third of the timeout means the app queues calls.
            auth_limit: AdaptiveLimit::new(
                cfg.max_auth_calls_in_flight as usize,
                cfg.timeout() / 3,
            ),
            auth_queue: cfg.auth_queue(),
            session_url: parse(cfg.url_for(&cfg.session_path))?,
            memberships_url: parse(cfg.url_for(&cfg.memberships_path))?,
            authorize_url: parse(cfg.url_for(&cfg.authorize_path))?,
            events_url: parse(cfg.url_for(&cfg.events_path))?,
        })
    }

    fn headers(creds: &Credentials) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&creds.cookie) {
            h.insert(COOKIE, v);
        }
        if let Some(xff) = creds
            .forwarded_for
            .as_deref()
            .and_then(|x| HeaderValue::from_str(x).ok())
        {
            h.insert("x-forwarded-for", xff);
        }
        h
    }

    /// Sends a call. Transport failures, 5xx and 429 are an outage whatever the call.
    async fn send(&self, call: AppCall, req: reqwest::RequestBuilder) -> Result<Reply, AppError> {
        self.send_classified(call, req).await.0
    }

    /// [`Self::send`], and whether the app showed it is overloaded (a timeout, 5xx or 429).
    async fn send_classified(
        &self,
        call: AppCall,
        req: reqwest::RequestBuilder,
    ) -> (Result<Reply, AppError>, bool) {
        let timer = AppCallTimer::start(call);
        let call = call.as_str();
        let unavailable = |detail: String| AppError::Unavailable { call, detail };
        let res = match req.send().await {
            Ok(res) => res,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "request"
                };
                timer.finish(failure(&e));
                return (Err(unavailable(kind.to_owned())), e.is_timeout());
            }
        };
        let status = res.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            timer.finish(AppCallOutcome::Error);
            return (
                Err(unavailable(format!("status {}", status.as_u16()))),
                true,
            );
        }
        let body = match res.bytes().await {
            Ok(body) => body,
            Err(e) => {
                timer.finish(failure(&e));
                return (Err(unavailable("body".to_owned())), e.is_timeout());
            }
        };
        timer.finish(if status.is_client_error() {
            AppCallOutcome::Refused
        } else {
            AppCallOutcome::Ok
        });
        (Ok(Reply { call, status, body }), false)
    }

    /// Sends a connect-path call in its turn (see `auth_limit`), telling the limit how the
    /// app answered.
    async fn send_in_line(
        &self,
        call: AppCall,
        req: reqwest::RequestBuilder,
    ) -> Result<Reply, AppError> {
        let slot = {
            let _waiting = AppCallWaiting::start(call);
            self.auth_limit.acquire(self.auth_queue).await
        };
        let Some(slot) = slot else {
            return Err(AppError::Unavailable {
                call: call.as_str(),
                detail: "too many calls waiting".to_owned(),
            });
        };
        let start = std::time::Instant::now();
        let (result, overloaded) = self.send_classified(call, req).await;
        slot.done(match (&result, overloaded) {
            (_, true) => Outcome::Overloaded,
            (Ok(_), false) => Outcome::Answered(start.elapsed()),
            (Err(_), false) => Outcome::Neutral,
        });
        metrics::app_auth_limit(self.auth_limit.limit());
        result
    }

    fn get(&self, url: &Url, creds: &Credentials) -> reqwest::RequestBuilder {
        self.http.get(url.clone()).headers(Self::headers(creds))
    }

    /// `Ok(None)` only when the app answered that there is no valid session.
    pub async fn session(&self, creds: &Credentials) -> Result<Option<SessionInfo>, AppError> {
        self.send_in_line(AppCall::Session, self.get(&self.session_url, creds))
            .await?
            .session()
    }

    pub async fn memberships(&self, creds: &Credentials) -> Result<Memberships, AppError> {
        self.send_in_line(AppCall::Memberships, self.get(&self.memberships_url, creds))
            .await?
            .memberships()
    }

    pub async fn authorize(
        &self,
        creds: &Credentials,
        room: &str,
    ) -> Result<Authorization, AppError> {
        let req = self
            .get(&self.authorize_url, creds)
            .query(&[("room", room)]);
        self.send(AppCall::Authorize, req).await?.authorization()
    }

    pub async fn forward_event(
        &self,
        creds: &Credentials,
        event: &str,
        body: &EventForward<'_>,
    ) -> Result<EventReply, AppError> {
        let mut url = self.events_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push(event);
        }
        let req = self.http.post(url).headers(Self::headers(creds)).json(body);
        self.send(AppCall::Event, req).await?.event_reply()
    }
}

/// An answer that was not an outage (no 5xx, no 429), to be read as the call expects. Kept
/// apart from the HTTP exchange so the reading is a plain function of status and body (the
/// `app_answers` fuzz target feeds it arbitrary ones).
pub(crate) struct Reply {
    pub(crate) call: &'static str,
    pub(crate) status: StatusCode,
    pub(crate) body: bytes::Bytes,
}

impl Reply {
    /// `Ok(None)` only when the app answered that there is no valid session.
    pub(crate) fn session(&self) -> Result<Option<SessionInfo>, AppError> {
        match self.status {
            StatusCode::OK => Ok(self
                .json::<Option<SessionBody>>()?
                .map(|b| SessionInfo { user: b.user })),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(None),
            _ => Err(self.unexpected_status()),
        }
    }

    pub(crate) fn memberships(&self) -> Result<Memberships, AppError> {
        match self.status {
            StatusCode::OK => self.json(),
            StatusCode::UNAUTHORIZED => Err(self.unauthenticated()),
            _ => Err(self.unexpected_status()),
        }
    }

    pub(crate) fn authorization(&self) -> Result<Authorization, AppError> {
        match self.status {
            StatusCode::OK => self.json(),
            StatusCode::UNAUTHORIZED => Err(self.unauthenticated()),
            _ => Err(self.refused()),
        }
    }

    pub(crate) fn event_reply(&self) -> Result<EventReply, AppError> {
        match self.status {
            StatusCode::OK if self.body.is_empty() => Ok(EventReply::default()),
            StatusCode::OK => self.json(),
            StatusCode::UNAUTHORIZED => Err(self.unauthenticated()),
            _ => Err(self.refused()),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, AppError> {
        strict_json::from_slice(&self.body).map_err(|_| AppError::Unavailable {
            call: self.call,
            detail: "unexpected body".into(),
        })
    }

    fn unexpected_status(&self) -> AppError {
        AppError::Unavailable {
            call: self.call,
            detail: format!("status {}", self.status.as_u16()),
        }
    }

    fn unauthenticated(&self) -> AppError {
        AppError::Unauthenticated { call: self.call }
    }

    /// A 4xx refusal, with the `error` field of the app's body (kept short).
    fn refused(&self) -> AppError {
        let error = serde_json::from_slice::<Value>(&self.body)
            .ok()
            .and_then(|v| {
                v.get("error")
                    .and_then(|e| e.as_str())
                    .map(|s| s.chars().take(200).collect())
            })
            .unwrap_or_else(|| "refused".to_owned());
        AppError::Refused {
            call: self.call,
            status: self.status.as_u16(),
            error,
        }
    }
}

/// The body of an event forward.
#[derive(Serialize)]
pub struct EventForward<'a> {
    pub event: &'a str,
    pub args: &'a [Value],
    #[serde(rename = "socketId")]
    pub socket_id: &'a str,
    #[serde(rename = "userId")]
    pub user_id: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(call: &'static str, body: &str) -> Reply {
        Reply {
            call,
            status: StatusCode::OK,
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        }
    }

    fn unexpected<T: std::fmt::Debug>(r: Result<T, AppError>) -> bool {
        matches!(r, Err(AppError::Unavailable { ref detail, .. }) if detail == "unexpected body")
    }

    #[test]
    fn answers_in_the_contracts_shape_are_read() {
        let s = reply(
            "session",
            r#"{"user":{"id":"u1","name":"A"},"session":{"token":"t"}}"#,
        )
        .session();
        assert_eq!(s.ok().flatten().map(|s| s.user.id), Some("u1".to_owned()));
        let m = reply(
            "memberships",
            r#"{"userId":"u1","workspaces":["w"],"channels":[{"id":"c","workspaceId":"w"}]}"#,
        )
        .memberships();
        assert_eq!(m.map(|m| m.channels.len()).ok(), Some(1));
        let e = reply(
            "event",
            r#"{"ack":{"ok":true},"emit":[{"room":"r","event":"e"}]}"#,
        )
        .event_reply();
        assert_eq!(e.map(|e| e.emit.len()).ok(), Some(1));
    }

    /// serde's derived structs also read a JSON array of their fields in order; the fuzzer
    /// found a 200 `[["er"]]` read as a session of user "er". No app answers that way.
    #[test]
    fn a_struct_is_read_only_from_an_object() {
        assert!(unexpected(reply("session", r#"[["er"]]"#).session()));
        assert!(unexpected(reply("session", r#"{"user":["er"]}"#).session()));
        assert!(unexpected(
            reply("memberships", r#"["u1",["w"]]"#).memberships()
        ));
        assert!(unexpected(
            reply("memberships", r#"{"userId":"u1","channels":[["c","w"]]}"#).memberships()
        ));
        assert!(unexpected(reply("authorize", "[true]").authorization()));
        assert!(unexpected(
            reply("event", r#"{"emit":[["r","e",1]]}"#).event_reply()
        ));
    }
}
