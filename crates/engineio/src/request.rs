//! Checks every Engine.IO HTTP request the way the reference server does, in the same order,
//! with the same error codes: transport, origin, session id, then handshake rules.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::config::{EngineConfig, OriginPolicy};
use super::session::Transport;
use super::sid::Sid;

/// The reference server's error codes (`Server.errors`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineError {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl EngineError {
    pub fn message(self) -> &'static str {
        match self {
            EngineError::UnknownTransport => "Transport unknown",
            EngineError::UnknownSid => "Session ID unknown",
            EngineError::BadHandshakeMethod => "Bad handshake method",
            EngineError::BadRequest => "Bad request",
            EngineError::Forbidden => "Forbidden",
            EngineError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            EngineError::Forbidden => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The JSON error answer of a polling request.
    pub fn response(self, cors: &[(header::HeaderName, HeaderValue)]) -> Response<Bytes> {
        let body = format!(
            r#"{{"code":{},"message":"{}"}}"#,
            self as u8,
            self.message()
        );
        json_response(self.status(), body, cors)
    }
}

/// A JSON answer with the CORS headers, so a browser's polling client can read it.
pub fn json_response(
    status: StatusCode,
    body: String,
    cors: &[(header::HeaderName, HeaderValue)],
) -> Response<Bytes> {
    let mut res = Response::new(Bytes::from(body));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (k, v) in cors {
        h.insert(k.clone(), v.clone());
    }
    res
}

/// The Engine.IO query parameters of a request.
#[derive(Debug, Default)]
pub struct EngineQuery<'a> {
    pub eio: Option<&'a str>,
    pub transport: Option<&'a str>,
    pub sid: Option<&'a str>,
}

impl<'a> EngineQuery<'a> {
    pub fn parse(query: &'a str) -> Self {
        let mut q = EngineQuery::default();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "EIO" => q.eio = Some(v),
                "transport" => q.transport = Some(v),
                "sid" => q.sid = Some(v),
                _ => {}
            }
        }
        q
    }
}

/// A request that passed the checks.
#[derive(Debug)]
pub enum Verified {
    /// No `sid`: open a new session on this transport.
    Handshake(Transport),
    /// An existing session, addressed on this transport.
    Existing(Sid, Transport),
}

/// Validates a request. `session_transport` looks up the transport of an existing session
/// (None when the sid is unknown). `is_upgrade` is true for a WebSocket upgrade request.
pub fn verify(
    cfg: &EngineConfig,
    method: &Method,
    headers: &HeaderMap,
    query: &EngineQuery<'_>,
    is_upgrade: bool,
    session_transport: impl FnOnce(&Sid) -> Option<Transport>,
) -> Result<Verified, EngineError> {
    let transport = match query.transport {
        Some("polling") if cfg.allow_polling => Transport::Polling,
        Some("websocket") if cfg.allow_websocket => Transport::Websocket,
        _ => return Err(EngineError::UnknownTransport),
    };
    check_origin(&cfg.origins, headers)?;
    if let Some(raw_sid) = query.sid {
        let sid = Sid::parse(raw_sid).ok_or(EngineError::UnknownSid)?;
        let current = session_transport(&sid).ok_or(EngineError::UnknownSid)?;
        if !is_upgrade && current != transport {
            return Err(EngineError::BadRequest);
        }
        return Ok(Verified::Existing(sid, transport));
    }
    if method != Method::GET {
        return Err(EngineError::BadHandshakeMethod);
    }
    if transport == Transport::Websocket && !is_upgrade {
        return Err(EngineError::BadRequest);
    }
    // Only revision 4 is spoken; anything else (3, missing, garbage) is refused like a v3
    // client on a server without `allowEIO3`.
    if query.eio != Some("4") {
        return Err(EngineError::UnsupportedProtocolVersion);
    }
    Ok(Verified::Handshake(transport))
}

/// A present `Origin` must be allowed; an absent one is a non-browser client.
pub fn check_origin(policy: &OriginPolicy, headers: &HeaderMap) -> Result<(), EngineError> {
    match headers.get(header::ORIGIN) {
        None => Ok(()),
        Some(v) => match v.to_str() {
            Ok(origin) if policy.allows(origin) => Ok(()),
            Ok(_) => Err(EngineError::Forbidden),
            Err(_) => Err(EngineError::BadRequest),
        },
    }
}

/// CORS headers for a response to an allowed origin: the exact origin with credentials, as a
/// browser needs for `withCredentials` polling.
pub fn cors_headers(
    policy: &OriginPolicy,
    headers: &HeaderMap,
) -> Vec<(header::HeaderName, HeaderValue)> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Vec::new();
    };
    match origin.to_str() {
        Ok(o) if policy.allows(o) => vec![
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone()),
            (
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ),
            (header::VARY, HeaderValue::from_static("Origin")),
        ],
        _ => Vec::new(),
    }
}

/// Answers a CORS preflight: 204 with the allowed methods for an allowed origin, 403 otherwise.
pub fn preflight(cfg: &EngineConfig, headers: &HeaderMap) -> Response<Bytes> {
    if check_origin(&cfg.origins, headers).is_err() || headers.get(header::ORIGIN).is_none() {
        return EngineError::Forbidden.response(&[]);
    }
    let mut res = Response::new(Bytes::new());
    *res.status_mut() = StatusCode::NO_CONTENT;
    let h = res.headers_mut();
    for (k, v) in cors_headers(&cfg.origins, headers) {
        h.insert(k, v);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    if let Some(req_headers) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, req_headers.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&cfg.cors_max_age_s.to_string()) {
        h.insert(header::ACCESS_CONTROL_MAX_AGE, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EngineConfig {
        EngineConfig {
            origins: OriginPolicy::List(vec!["https://app.example".into()]),
            ..EngineConfig::default()
        }
    }

    fn run(
        method: Method,
        q: &str,
        origin: Option<&str>,
        upgrade: bool,
    ) -> Result<Verified, EngineError> {
        let mut headers = HeaderMap::new();
        if let Some(o) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        verify(
            &cfg(),
            &method,
            &headers,
            &EngineQuery::parse(q),
            upgrade,
            |_| Some(Transport::Polling),
        )
    }

    #[test]
    fn reference_error_codes() {
        use EngineError::*;
        assert!(matches!(
            run(Method::GET, "EIO=4&transport=polling", None, false),
            Ok(Verified::Handshake(Transport::Polling))
        ));
        assert_eq!(
            run(Method::GET, "EIO=4", None, false).unwrap_err(),
            UnknownTransport
        );
        assert_eq!(
            run(Method::GET, "EIO=4&transport=abc", None, false).unwrap_err(),
            UnknownTransport
        );
        assert_eq!(
            run(Method::GET, "transport=polling", None, false).unwrap_err(),
            UnsupportedProtocolVersion
        );
        assert_eq!(
            run(Method::GET, "EIO=abc&transport=polling", None, false).unwrap_err(),
            UnsupportedProtocolVersion
        );
        assert_eq!(
            run(Method::GET, "EIO=3&transport=polling", None, false).unwrap_err(),
            UnsupportedProtocolVersion
        );
        assert_eq!(
            run(Method::POST, "EIO=4&transport=polling", None, false).unwrap_err(),
            BadHandshakeMethod
        );
        assert_eq!(
            run(Method::PUT, "EIO=4&transport=polling", None, false).unwrap_err(),
            BadHandshakeMethod
        );
        assert_eq!(
            run(Method::GET, "EIO=4&transport=websocket", None, false).unwrap_err(),
            BadRequest
        );
        assert_eq!(
            run(Method::GET, "EIO=4&transport=polling&sid=nope", None, false).unwrap_err(),
            UnknownSid
        );
        assert_eq!(
            run(
                Method::GET,
                "EIO=4&transport=polling",
                Some("https://evil.example"),
                false
            )
            .unwrap_err(),
            Forbidden
        );
        assert!(run(
            Method::GET,
            "EIO=4&transport=polling",
            Some("https://app.example"),
            false
        )
        .is_ok());
        let sid = super::super::sid::Sid::generate();
        assert_eq!(
            run(
                Method::GET,
                &format!("EIO=4&transport=websocket&sid={sid}"),
                None,
                false
            )
            .unwrap_err(),
            BadRequest
        );
        assert!(run(
            Method::GET,
            &format!("EIO=4&transport=websocket&sid={sid}"),
            None,
            true
        )
        .is_ok());
    }

    #[test]
    fn foreign_origin_gets_no_cors_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(cors_headers(&cfg().origins, &headers).is_empty());
        assert_eq!(preflight(&cfg(), &headers).status(), StatusCode::FORBIDDEN);
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://app.example"),
        );
        assert_eq!(cors_headers(&cfg().origins, &headers).len(), 3);
        assert_eq!(preflight(&cfg(), &headers).status(), StatusCode::NO_CONTENT);
    }
}
