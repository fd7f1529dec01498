//! The WebSocket transport. The server's accept loop hands upgrade requests here instead of to
//! warp, because warp's WebSocket filter cannot size tungstenite's buffers (128 KiB read buffer
//! per socket by default, allocated up front). One task per connection reads frames and writes
//! the session's queue, merging all queued frames into one flush.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::admission::Slot;
use super::engine::Engine;
use super::packet::{Frame, Packet};
use super::polling::matches_path;
use super::request::{self, EngineError, EngineQuery, Verified};
use super::session::{CloseReason, Handshake, Session, Transport};
use super::sid::Sid;

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// True for a WebSocket upgrade request on the engine's path.
pub fn is_upgrade<B>(engine: &Engine, req: &Request<B>) -> bool {
    req.method() == Method::GET
        && matches_path(req.uri().path(), &engine.config().path)
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Answers an upgrade request: 101 and a spawned connection task, or a refusal the way the
/// reference refuses one (plain text, connection closed).
pub fn upgrade<B: Send + 'static>(
    engine: &Engine,
    mut req: Request<B>,
    addr: Option<SocketAddr>,
) -> Response<Bytes> {
    let cfg = engine.config();
    let query = req.uri().query().unwrap_or("").to_owned();
    let q = EngineQuery::parse(&query);
    let verified = request::verify(cfg, req.method(), req.headers(), &q, true, |sid| {
        engine.session(sid).map(|s| s.transport())
    });
    let verified = match verified {
        Ok(v) => v,
        Err(e) => return refuse(e.status(), e.message()),
    };
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let Some(key) = key.filter(|_| version_ok) else {
        return refuse(StatusCode::BAD_REQUEST, EngineError::BadRequest.message());
    };
    // A new session needs a slot (capacity, handshake rate, drain) before the 101 goes out.
    let target = match verified {
        Verified::Handshake(_) => match engine.admit() {
            Ok(slot) => Target::New(slot),
            Err(refusal) => {
                let mut res = refusal.response(&[]);
                res.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return res;
            }
        },
        Verified::Existing(sid, _) => Target::Existing(sid),
    };
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(cfg.ws_read_buffer)
        .write_buffer_size(cfg.ws_write_buffer)
        .max_write_buffer_size(cfg.max_payload.saturating_mul(4).max(1 << 20))
        .max_message_size(Some(cfg.max_payload))
        .max_frame_size(Some(cfg.max_payload));
    let handshake = Handshake::new(req.headers().clone(), req.uri().path(), &query, addr);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let engine = engine.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config))
                .await;
        match target {
            Target::New(slot) => {
                let session = engine.open(handshake, Transport::Websocket, slot);
                run(&engine, &session, ws).await;
            }
            Target::Existing(sid) => match engine.session(&sid) {
                Some(session) => upgrade_session(&engine, &session, ws).await,
                None => close_quietly(ws).await,
            },
        }
    });
    let mut res = Response::new(Bytes::new());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    res
}

/// What an accepted upgrade request becomes.
enum Target {
    /// A new session, in this admitted slot.
    New(Slot),
    /// The upgrade of this polling session.
    Existing(Sid),
}

fn refuse(status: StatusCode, message: &'static str) -> Response<Bytes> {
    let mut res = Response::new(Bytes::from_static(message.as_bytes()));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    res
}

async fn close_quietly(mut ws: Ws) {
    let _ = ws.close(None).await;
}

/// The upgrade of a polling session: `2probe` → `3probe`, then `5` switches the transport.
/// Anything else, or no `5` within the upgrade timeout, abandons the upgrade and keeps polling.
async fn upgrade_session(engine: &Engine, session: &Arc<Session>, mut ws: Ws) {
    let claimed = {
        let mut st = session.lock();
        // Already upgraded, upgrading or closed: accept and close, as the reference does.
        let free = st.transport == Transport::Polling && !st.upgrading && st.closed.is_none();
        if free {
            st.upgrading = true;
        }
        free
    };
    if !claimed {
        return close_quietly(ws).await;
    }
    // A held GET answers `6` now so the client can pause polling.
    session.wake();
    let probe = async {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "2probe" => {}
            _ => return false,
        }
        if ws.send(to_message(Frame::pong_probe())).await.is_err() {
            return false;
        }
        matches!(ws.next().await, Some(Ok(Message::Text(t))) if t.as_str() == "5")
    };
    let upgraded = tokio::time::timeout(engine.config().upgrade_timeout, probe)
        .await
        .unwrap_or(false);
    {
        let mut st = session.lock();
        st.upgrading = false;
        if upgraded && st.closed.is_none() {
            st.transport = Transport::Websocket;
        }
    }
    session.wake();
    if upgraded {
        tracing::debug!(sid = %session.sid, "upgraded to websocket");
        run(engine, session, ws).await;
    } else {
        close_quietly(ws).await;
    }
}

fn to_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(t) => Message::Text(t),
        Frame::Binary(b) => Message::Binary(b),
    }
}

/// The connection loop of a WebSocket session.
async fn run(engine: &Engine, session: &Arc<Session>, mut ws: Ws) {
    let _task = engine.track_websocket_task();
    loop {
        let notified = session.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (frames, closed) = {
            let mut st = session.lock();
            let frames: Vec<Frame> = st.outbox.drain(..).collect();
            (frames, st.closed)
        };
        if !frames.is_empty() {
            // All queued frames go out in one flush: fewer syscalls and TCP segments under load.
            let write = async {
                for f in frames {
                    ws.feed(to_message(f)).await?;
                }
                ws.flush().await
            };
            let written = tokio::select! {
                r = write => r.is_ok(),
                // A peer that stopped reading must not pin this task once the session closed.
                _ = session.closed(), if closed.is_none() => false,
            };
            if !written {
                session.close(CloseReason::TransportError);
                return;
            }
        }
        if let Some(reason) = closed {
            // An oversized message gets the WebSocket code for it (1009), as the reference's.
            let frame = (reason == CloseReason::PayloadTooLarge).then(|| CloseFrame {
                code: CloseCode::Size,
                reason: "message too big".into(),
            });
            let _ = tokio::time::timeout(engine.config().ping_timeout, ws.close(frame)).await;
            return;
        }
        tokio::select! {
            msg = ws.next() => {
                let outcome = match msg {
                    Some(Ok(Message::Text(t))) => match Packet::decode_text(&t) {
                        Ok(p) => engine.on_packet(session, p),
                        Err(_) => Err(CloseReason::ParseError),
                    },
                    Some(Ok(Message::Binary(b))) => engine.on_packet(session, Packet::Binary(b)),
                    Some(Ok(Message::Close(_))) | None => Err(CloseReason::TransportClose),
                    Some(Ok(_)) => Ok(()),
                    Some(Err(tungstenite::Error::Capacity(_))) => Err(CloseReason::PayloadTooLarge),
                    Some(Err(e)) => {
                        tracing::debug!(sid = %session.sid, error = %e, "websocket error");
                        Err(CloseReason::TransportError)
                    }
                };
                if let Err(reason) = outcome {
                    session.close(reason);
                }
            }
            _ = &mut notified => {}
        }
    }
}
