//! The WebSocket transport. The server's accept loop hands upgrade requests here instead of to
//! warp; after the 101 the connection is a plain `TcpStream` spoken to with our own framing
//! ([`super::wsproto`]), so an idle socket holds no read or write buffer and no part of
//! hyper's request buffer. One task per connection reads frames and writes the session's
//! queue, merging all queued frames into one write.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::admission::Slot;
use super::engine::Engine;
use super::packet::{Frame, Packet};
use super::polling::matches_path;
use super::request::{EngineError, EngineQuery, Verified};
use super::session::{CloseReason, Handshake, Session, Transport};
use super::sid::Sid;
use super::wsproto::{self, Decoder, Incoming, Opcode, WsError};

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
/// reference refuses one (plain text, connection closed). A new session may first wait in the
/// handshake rate's queue.
pub async fn upgrade<B: Send + 'static>(
    engine: Engine,
    mut req: Request<B>,
    addr: Option<SocketAddr>,
) -> Response<Bytes> {
    let cfg = engine.config();
    let query = req.uri().query().unwrap_or("").to_owned();
    let q = EngineQuery::parse(&query);
    let verified = engine.verify(req.method(), req.headers(), &q, true);
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
        let mut res = refuse(StatusCode::BAD_REQUEST, EngineError::BadRequest.message());
        // RFC 6455 §4.4: a refused version is answered with the one this server speaks.
        res.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return res;
    };
    // A new session needs a slot (capacity, handshake rate, drain) before the 101 goes out.
    let target = match verified {
        Verified::Handshake(_) => match engine.admit().await {
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
    let limits = Limits {
        max_message: cfg.max_payload,
        read_chunk: cfg.ws_read_buffer,
        write_chunk: cfg.ws_write_buffer,
    };
    let handshake = Handshake::new(req.headers(), req.uri().path(), &query, addr);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let engine = engine.clone();
    tokio::spawn(async move {
        let conn = match on_upgrade.await.map(|u| Conn::from_upgraded(u, limits)) {
            Ok(Some(conn)) => conn,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        match target {
            Target::New(slot) => {
                let session = engine.open(handshake, Transport::Websocket, slot);
                // A task of its own: this one's captures (the handshake, the slot...) would
                // otherwise stay in every connection's future for its whole life.
                tokio::spawn(run(engine, session, conn));
            }
            Target::Existing(sid) => match engine.session(&sid) {
                Some(session) => {
                    if let Some(conn) = upgrade_session(&engine, &session, conn).await {
                        tokio::spawn(run(engine, session, conn));
                    }
                }
                None => conn.close(None, engine.config().ping_timeout).await,
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

/// Buffer and message sizes of a connection.
#[derive(Clone, Copy)]
struct Limits {
    max_message: usize,
    /// Bytes asked of each read (the read buffer exists only while a read is parsed).
    read_chunk: usize,
    /// Queued bytes merged into one write.
    write_chunk: usize,
}

/// An upgraded connection: the socket, and the bytes of a frame not yet complete.
struct Conn {
    /// Shared with the session while the connection runs, for producers' direct writes.
    stream: Arc<TcpStream>,
    read_buf: BytesMut,
    decoder: Decoder,
    limits: Limits,
}

impl Conn {
    /// Takes the TCP stream back from hyper, with any bytes it read past the request.
    fn from_upgraded(upgraded: hyper::upgrade::Upgraded, limits: Limits) -> Option<Conn> {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => Some(Conn {
                stream: Arc::new(parts.io.into_inner()),
                read_buf: BytesMut::from(&parts.read_buf[..]),
                decoder: Decoder::new(limits.max_message),
                limits,
            }),
            Err(_) => {
                tracing::error!("websocket upgrade on a connection that is not TCP");
                None
            }
        }
    }

    /// The next message or control frame; `Ok(None)` at end of stream. Cancel-safe: it only
    /// awaits readiness, and what was read stays in the buffer.
    async fn next(&mut self) -> Result<Option<Incoming>, ReadError> {
        loop {
            if let Some(message) = self.decoder.decode(&mut self.read_buf)? {
                return Ok(Some(message));
            }
            if self.read_buf.is_empty() {
                // Nothing half-read: an idle connection keeps no buffer while it waits.
                self.read_buf = BytesMut::new();
            }
            self.stream.readable().await?;
            self.read_buf.reserve(self.limits.read_chunk);
            match self.stream.try_read_buf(&mut self.read_buf) {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn write(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            self.stream.writable().await?;
            match self.stream.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn send(&mut self, frame: &Frame) -> io::Result<()> {
        let mut out = BytesMut::new();
        wsproto::encode_frame(&mut out, frame);
        self.write(&out).await
    }

    /// Sends a close frame (`code` and reason, or none), then waits up to `linger` for the
    /// peer to close, so our last frames are not lost to a reset caused by unread input.
    /// Boxed: this rarely-used state should not grow every connection task.
    fn close(
        self,
        code: Option<(u16, &'static str)>,
        linger: Duration,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let closing = async move {
            let mut out = BytesMut::new();
            match code {
                Some((code, reason)) => wsproto::encode_close(&mut out, code, reason),
                None => wsproto::encode(&mut out, Opcode::Close, &[]),
            }
            self.write(&out).await?;
            socket2::SockRef::from(&*self.stream).shutdown(std::net::Shutdown::Write)?;
            let mut sink = vec![0; 512];
            loop {
                self.stream.readable().await?;
                match self.stream.try_read(&mut sink) {
                    Ok(0) => return io::Result::Ok(()),
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        };
        Box::pin(async move {
            let _ = tokio::time::timeout(linger, closing).await;
        })
    }
}

#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Protocol(#[from] WsError),
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// The upgrade of a polling session: `2probe` → `3probe`, then `5` switches the transport and
/// the connection is returned for its loop. Anything else, or no `5` within the upgrade
/// timeout, abandons the upgrade and keeps polling.
async fn upgrade_session(engine: &Engine, session: &Arc<Session>, mut conn: Conn) -> Option<Conn> {
    let linger = engine.config().ping_timeout;
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
        conn.close(None, linger).await;
        return None;
    }
    // A held GET answers `6` now so the client can pause polling.
    session.wake();
    let probe = async {
        match text_message(&mut conn).await {
            Some(t) if t == "2probe" => {}
            _ => return false,
        }
        if conn.send(&Frame::pong_probe()).await.is_err() {
            return false;
        }
        text_message(&mut conn).await.is_some_and(|t| t == "5")
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
        Some(conn)
    } else {
        conn.close(None, linger).await;
        None
    }
}

/// The next data message during the upgrade, answering pings; `None` on anything else.
async fn text_message(conn: &mut Conn) -> Option<Utf8Bytes> {
    loop {
        match conn.next().await {
            Ok(Some(Incoming::Text(t))) => return Some(t),
            Ok(Some(Incoming::Ping(p))) => {
                let mut out = BytesMut::new();
                wsproto::encode(&mut out, Opcode::Pong, &p);
                conn.write(&out).await.ok()?;
            }
            Ok(Some(Incoming::Pong)) => {}
            _ => return None,
        }
    }
}

/// What the connection loop takes from the session's queue.
struct Queued {
    /// Encoded frames for one write.
    out: BytesMut,
    /// The session is closed and everything queued before the close is in `out`.
    closed: Option<CloseReason>,
    /// The session is closed (possibly with frames still queued after `out`).
    closing: bool,
}

/// Moves what a direct write left and then queued frames into one write buffer, up to about
/// `limit` bytes (at least one frame); what does not fit stays queued for the next write.
/// While that buffer is being written, producers queue instead of writing directly.
fn take_queued(session: &Session, limit: usize) -> Queued {
    let mut st = session.lock();
    let mut out = std::mem::take(&mut st.unsent);
    while out.len() < limit {
        let Some(frame) = st.outbox.pop_front() else {
            break;
        };
        wsproto::encode_frame(&mut out, &frame);
    }
    if st.outbox.is_empty() {
        // An idle session keeps no queue storage.
        st.outbox = VecDeque::new();
    }
    st.writing = !out.is_empty();
    Queued {
        out,
        closed: st.closed.filter(|_| st.outbox.is_empty()),
        closing: st.closed.is_some(),
    }
}

/// The connection loop of a WebSocket session, the connection task's whole future. A plain
/// function returning a block: an `async fn` keeps its arguments twice in its future
/// (rust-lang/rust#62958), and this future lives as long as the connection.
#[allow(clippy::manual_async_fn)]
fn run(engine: Engine, session: Arc<Session>, mut conn: Conn) -> impl Future<Output = ()> + Send {
    async move {
        let _task = engine.track_websocket_task();
        let linger = engine.config().ping_timeout;
        let mut peer_close = None;
        session.attach_direct(conn.stream.clone());
        loop {
            let notified = session.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Queued {
                out,
                closed,
                closing,
            } = take_queued(&session, conn.limits.write_chunk);
            if !out.is_empty() {
                // The last frames before a close: a peer that stopped reading gets `linger`.
                let deadline = closing.then(|| tokio::time::Instant::now() + linger);
                let mut rest = &out[..];
                let written = loop {
                    match conn.stream.try_write(rest) {
                        Ok(n) if n == rest.len() => break true,
                        Ok(0) => break false,
                        Ok(n) => rest = &rest[n..],
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => break false,
                    }
                    // Waits for room on the socket. The session's wake-up doubles as the close
                    // watcher: a peer that stopped reading must not pin this task once the
                    // session closed.
                    let room = match deadline {
                        Some(deadline) => {
                            // Boxed: a rare wait, whose timer would grow every connection.
                            let ready = tokio::time::timeout_at(deadline, conn.stream.writable());
                            matches!(Box::pin(ready).await, Ok(Ok(())))
                        }
                        None => tokio::select! {
                            ready = conn.stream.writable() => ready.is_ok(),
                            _ = &mut notified => {
                                notified.set(session.notified());
                                notified.as_mut().enable();
                                !session.is_closed()
                            }
                        },
                    };
                    if !room {
                        break false;
                    }
                };
                drop(out);
                if !written {
                    session.close(CloseReason::TransportError);
                    return;
                }
                if closed.is_none() {
                    continue;
                }
            }
            if let Some(reason) = closed {
                let code = match (reason, peer_close) {
                    // An oversized message gets the WebSocket code for it, as the reference's.
                    (CloseReason::PayloadTooLarge, _) => Some((1009, "message too big")),
                    (_, Some(WsClose::Error(e))) => Some((e.close_code(), "protocol error")),
                    // The peer's own code back, as RFC 6455 §5.5.1 suggests and `ws` does.
                    (_, Some(WsClose::Peer(Some(code)))) => Some((code, "")),
                    _ => None,
                };
                conn.close(code, linger).await;
                return;
            }
            tokio::select! {
                msg = conn.next() => {
                    let outcome = match msg {
                        Ok(Some(Incoming::Text(t))) => match Packet::decode_text(t.as_str()) {
                            Ok(p) => engine.on_packet(&session, p),
                            Err(_) => Err(CloseReason::ParseError),
                        },
                        Ok(Some(Incoming::Binary(b))) => engine.on_packet(&session, Packet::Binary(b)),
                        Ok(Some(Incoming::Ping(p))) => {
                            let mut out = BytesMut::new();
                            wsproto::encode(&mut out, Opcode::Pong, &p);
                            // Through the session: a direct write may be half-way through a frame.
                            session.send_ws_control(out).map_err(|_| CloseReason::TransportError)
                        }
                        Ok(Some(Incoming::Pong)) => Ok(()),
                        Ok(Some(Incoming::Close(code))) => {
                            peer_close = Some(WsClose::Peer(code));
                            Err(CloseReason::TransportClose)
                        }
                        Ok(None) => Err(CloseReason::TransportClose),
                        Err(ReadError::Protocol(WsError::TooBig(_))) => Err(CloseReason::PayloadTooLarge),
                        Err(ReadError::Protocol(e)) => {
                            tracing::debug!(sid = %session.sid, error = %e, "websocket error");
                            peer_close = Some(WsClose::Error(e));
                            Err(CloseReason::TransportError)
                        }
                        Err(ReadError::Io(e)) => {
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
}

/// How the WebSocket side ended, for the close frame we answer with.
#[derive(Clone, Copy)]
enum WsClose {
    /// The peer sent a close frame, with this code.
    Peer(Option<u16>),
    /// The peer broke the WebSocket protocol.
    Error(WsError),
}
