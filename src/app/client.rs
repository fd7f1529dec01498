//! The four calls of the contract. Every call forwards the browser's `Cookie` (and
//! `X-Forwarded-For`), has a timeout, follows no redirect and uses no proxy. An outage is
//! reported as [`AppError::Unavailable`], never as a logout.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, COOKIE};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::types::{Authorization, EventReply, Memberships, SessionBody, SessionInfo};
use super::Credentials;
use crate::config::AppConfig;

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

pub struct AppClient {
    http: reqwest::Client,
    session_url: String,
    memberships_url: String,
    authorize_url: String,
    events_url: String,
}

impl AppClient {
    pub fn new(cfg: &AppConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout())
            .connect_timeout(cfg.timeout().min(Duration::from_secs(2)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()?;
        Ok(AppClient {
            http,
            session_url: cfg.url_for(&cfg.session_path),
            memberships_url: cfg.url_for(&cfg.memberships_path),
            authorize_url: cfg.url_for(&cfg.authorize_path),
            events_url: cfg.url_for(&cfg.events_path),
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

    async fn send(
        &self,
        call: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, bytes::Bytes), AppError> {
        let unavailable = |detail: String| AppError::Unavailable { call, detail };
        let res = req.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "request"
            };
            unavailable(kind.to_owned())
        })?;
        let status = res.status();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            return Err(unavailable(format!("status {}", status.as_u16())));
        }
        let body = res
            .bytes()
            .await
            .map_err(|_| unavailable("body".to_owned()))?;
        Ok((status, body))
    }

    /// `Ok(None)` only when the app answered that there is no valid session.
    pub async fn session(&self, creds: &Credentials) -> Result<Option<SessionInfo>, AppError> {
        const CALL: &str = "session";
        let (status, body) = self
            .send(
                CALL,
                self.http
                    .get(&self.session_url)
                    .headers(Self::headers(creds)),
            )
            .await?;
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Ok(None),
            s => {
                return Err(AppError::Unavailable {
                    call: CALL,
                    detail: format!("status {}", s.as_u16()),
                })
            }
        }
        let parsed: Option<SessionBody> =
            serde_json::from_slice(&body).map_err(|_| AppError::Unavailable {
                call: CALL,
                detail: "unexpected body".into(),
            })?;
        Ok(parsed.map(|b| SessionInfo { user: b.user }))
    }

    pub async fn memberships(&self, creds: &Credentials) -> Result<Memberships, AppError> {
        const CALL: &str = "memberships";
        let (status, body) = self
            .send(
                CALL,
                self.http
                    .get(&self.memberships_url)
                    .headers(Self::headers(creds)),
            )
            .await?;
        match status {
            StatusCode::OK => serde_json::from_slice(&body).map_err(|_| AppError::Unavailable {
                call: CALL,
                detail: "unexpected body".into(),
            }),
            StatusCode::UNAUTHORIZED => Err(AppError::Unauthenticated { call: CALL }),
            s => Err(AppError::Unavailable {
                call: CALL,
                detail: format!("status {}", s.as_u16()),
            }),
        }
    }

    pub async fn authorize(
        &self,
        creds: &Credentials,
        room: &str,
    ) -> Result<Authorization, AppError> {
        const CALL: &str = "authorize";
        let req = self
            .http
            .get(&self.authorize_url)
            .query(&[("room", room)])
            .headers(Self::headers(creds));
        let (status, body) = self.send(CALL, req).await?;
        match status {
            StatusCode::OK => serde_json::from_slice(&body).map_err(|_| AppError::Unavailable {
                call: CALL,
                detail: "unexpected body".into(),
            }),
            StatusCode::UNAUTHORIZED => Err(AppError::Unauthenticated { call: CALL }),
            s => Err(AppError::Refused {
                call: CALL,
                status: s.as_u16(),
                error: error_text(&body),
            }),
        }
    }

    pub async fn forward_event(
        &self,
        creds: &Credentials,
        event: &str,
        body: &EventForward<'_>,
    ) -> Result<EventReply, AppError> {
        const CALL: &str = "event";
        let url = format!("{}/{}", self.events_url.trim_end_matches('/'), event);
        let req = self.http.post(url).headers(Self::headers(creds)).json(body);
        let (status, bytes) = self.send(CALL, req).await?;
        match status {
            StatusCode::OK => {
                if bytes.is_empty() {
                    return Ok(EventReply::default());
                }
                serde_json::from_slice(&bytes).map_err(|_| AppError::Unavailable {
                    call: CALL,
                    detail: "unexpected body".into(),
                })
            }
            StatusCode::UNAUTHORIZED => Err(AppError::Unauthenticated { call: CALL }),
            s => Err(AppError::Refused {
                call: CALL,
                status: s.as_u16(),
                error: error_text(&bytes),
            }),
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

/// The `error` field of a refusal, or a generic word (the body is the app's, keep it short).
fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| e.as_str())
                .map(|s| s.chars().take(200).collect())
        })
        .unwrap_or_else(|| "refused".to_owned())
}
