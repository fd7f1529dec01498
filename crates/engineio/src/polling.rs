//! HTTP long-polling, served by warp: the handshake GET, the held GET that carries queued
//! packets, and the POST that carries the client's packets.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use warp::filters::BoxedFilter;
use warp::{Filter, Reply};

use super::engine::Engine;
use super::packet::Frame;
use super::payload;
use super::request::{self, EngineError, EngineQuery, Verified};
use super::session::{CloseReason, Handshake, Session, Transport};

/// The peer address, put into request extensions by the server's accept loop.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub SocketAddr);

/// The warp filter answering every Engine.IO HTTP request on the engine's path (polling and
/// CORS preflight). WebSocket upgrades never get here: the accept loop takes them first.
pub fn filter(engine: Engine) -> BoxedFilter<(warp::reply::Response,)> {
    let path = engine.config().path.clone();
    let on_path = warp::path::full()
        .and_then(move |full: warp::path::FullPath| {
            let ok = matches_path(full.as_str(), &path);
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(warp::reject::not_found())
                }
            }
        })
        .untuple_one();
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    on_path
        .and(warp::method())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<ClientAddr>())
        .and(warp::body::stream())
        .then(
            move |method: Method,
                  query: String,
                  headers: HeaderMap,
                  addr: Option<ClientAddr>,
                  body| {
                let engine = engine.clone();
                async move { handle(engine, method, query, headers, addr, body).await }
            },
        )
        .boxed()
}

/// `/socket.io/` and `/socket.io` both match, as in the reference; nothing else does.
pub fn matches_path(path: &str, engine_path: &str) -> bool {
    path == engine_path || path == engine_path.trim_end_matches('/')
}

async fn handle<S, B>(
    engine: Engine,
    method: Method,
    query: String,
    headers: HeaderMap,
    addr: Option<ClientAddr>,
    body: S,
) -> warp::reply::Response
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin + Send,
    B: Buf,
{
    let cfg = engine.config();
    if method == Method::OPTIONS {
        return request::preflight(cfg, &headers).into_response();
    }
    let cors = request::cors_headers(&cfg.origins, &headers);
    let q = EngineQuery::parse(&query);
    let verified = engine.verify(&method, &headers, &q, false);
    let mut res = match verified {
        Err(e) => e.response(&cors),
        Ok(Verified::Handshake(Transport::Polling)) => match engine.admit().await {
            Err(refusal) => refusal.response(&cors),
            Ok(slot) => {
                let hs = Handshake::new(&headers, &cfg.path, &query, addr.map(|a| a.0));
                let session = engine.open(hs, Transport::Polling, slot);
                poll(&session).await
            }
        },
        Ok(Verified::Existing(sid, Transport::Polling)) => match engine.session(&sid) {
            None => EngineError::UnknownSid.response(&cors),
            Some(session) if method == Method::GET => poll(&session).await,
            Some(session) if method == Method::POST => {
                post(&engine, &session, &headers, body).await
            }
            // The reference answers other methods on a known session with 500.
            Some(_) => status(StatusCode::INTERNAL_SERVER_ERROR, ""),
        },
        Ok(_) => EngineError::BadRequest.response(&cors),
    };
    for (k, v) in cors {
        res.headers_mut().insert(k, v);
    }
    res.into_response()
}

fn status(code: StatusCode, body: &'static str) -> Response<Bytes> {
    let mut res = Response::new(Bytes::from_static(body.as_bytes()));
    *res.status_mut() = code;
    res
}

/// Resets the "request in flight" flag however the request ends (hyper drops the handler's
/// future when the client goes away).
struct InFlight<'a> {
    session: &'a Session,
    post: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut st = self.session.lock();
        if self.post {
            st.post_pending = false;
        } else {
            st.poll_pending = false;
        }
    }
}

fn claim<'a>(session: &'a Arc<Session>, post: bool) -> Option<InFlight<'a>> {
    let mut st = session.lock();
    let busy = if post {
        &mut st.post_pending
    } else {
        &mut st.poll_pending
    };
    if *busy {
        drop(st);
        // Two requests of a kind at once: the reference closes the session.
        session.close(CloseReason::MultiplePolling);
        return None;
    }
    *busy = true;
    Some(InFlight { session, post })
}

/// A held GET: answers with everything queued, or waits until something is. Taking frames off
/// the queue and building the response happen without an await in between, so a GET dropped
/// by hyper never loses a frame.
async fn poll(session: &Arc<Session>) -> Response<Bytes> {
    let Some(_in_flight) = claim(session, false) else {
        return EngineError::BadRequest.response(&[]);
    };
    loop {
        let notified = session.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let ready = {
            let mut st = session.lock();
            if !st.outbox.is_empty() {
                let frames: Vec<Frame> = std::mem::take(&mut st.outbox).into();
                Some((frames, st.closed.is_some()))
            } else if st.closed.is_some() || st.upgrading || st.transport != Transport::Polling {
                Some((vec![Frame::noop()], st.closed.is_some()))
            } else {
                None
            }
        };
        if let Some((frames, closed)) = ready {
            if closed {
                session.finish();
            }
            let mut res = Response::new(Bytes::from(payload::encode(&frames)));
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=UTF-8"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return res;
        }
        notified.await;
    }
}

async fn post<S, B>(
    engine: &Engine,
    session: &Arc<Session>,
    headers: &HeaderMap,
    body: S,
) -> Response<Bytes>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin + Send,
    B: Buf,
{
    let Some(_in_flight) = claim(session, true) else {
        return EngineError::BadRequest.response(&[]);
    };
    // v4 polling bodies are text; a binary content type is a v3 client or garbage.
    if headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"))
    {
        session.close(CloseReason::ParseError);
        return EngineError::BadRequest.response(&[]);
    }
    let max = engine.config().max_payload;
    let body = match read_limited(body, max).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            session.close(CloseReason::PayloadTooLarge);
            return status(StatusCode::PAYLOAD_TOO_LARGE, "");
        }
        Err(BodyError::Io) => {
            session.close(CloseReason::TransportError);
            return status(StatusCode::BAD_REQUEST, "");
        }
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        session.close(CloseReason::ParseError);
        return EngineError::BadRequest.response(&[]);
    };
    for packet in payload::decode(text) {
        let outcome = match packet {
            Ok(p) => engine.on_packet(session, p),
            Err(_) => Err(CloseReason::ParseError),
        };
        if let Err(reason) = outcome {
            session.close(reason);
            if reason != CloseReason::TransportClose {
                return EngineError::BadRequest.response(&[]);
            }
            break;
        }
    }
    let mut res = Response::new(Bytes::from_static(b"ok"));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    res
}

enum BodyError {
    TooLarge,
    Io,
}

async fn read_limited<S, B>(mut body: S, max: usize) -> Result<BytesMut, BodyError>
where
    S: Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| BodyError::Io)?;
        if out.len() + chunk.remaining() > max {
            return Err(BodyError::TooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out)
}
