//! One Engine.IO session: its outbound queue, its transport state and how it closes.
//!
//! The queue is shared by both transports. Producers (any task that emits) push encoded frames
//! and wake the consumer; the consumer is either the WebSocket task or the one pending polling
//! GET. A consumer registers for the wake-up *before* it looks at the queue, so a frame pushed
//! in between is never missed.
//!
//! A WebSocket session with nothing queued and no write in progress is written to directly by
//! the producer, under the session's lock: one non-blocking `write(2)` instead of a queue push,
//! a task wake-up (often on the other worker thread) and the write from there. Only what the
//! socket does not take at once is left for the connection task, so frames keep their order.
//! Inside a write batch ([`crate::WriteBatch`]) those frames wait for the batch's end and go out together.

use std::any::Any;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::SystemTime;

use bytes::BytesMut;
use http::HeaderMap;
use tokio::net::TcpStream;

use super::headers::HandshakeHeaders;
use tokio::sync::Notify;

use super::packet::Frame;
use super::sid::Sid;
use super::wsproto;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Polling,
    Websocket,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Polling => "polling",
            Transport::Websocket => "websocket",
        }
    }
}

/// Why a session ended. The names are the reference server's close reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the transport or sent a close packet.
    TransportClose,
    /// The transport failed (I/O error, WebSocket protocol error).
    TransportError,
    PingTimeout,
    /// The client sent something that is not a valid packet.
    ParseError,
    /// The server closed it (protocol layer decision, connect timeout...).
    ForcedServerClose,
    /// The protocol layer closed it after a protocol error (the reference's `conn.close()`).
    ForcedClose,
    /// The client could not keep up with its outbound queue.
    SlowConsumer,
    /// Two polling requests of the same kind at once.
    MultiplePolling,
    /// Bigger than `maxPayload`.
    PayloadTooLarge,
    ShuttingDown,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ForcedServerClose => "forced server close",
            CloseReason::ForcedClose => "forced close",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::MultiplePolling => "transport error",
            CloseReason::PayloadTooLarge => "transport error",
            CloseReason::ShuttingDown => "server shutting down",
        }
    }

    /// Closes the server decided on: the client is told with a close packet.
    fn tells_client(self) -> bool {
        matches!(
            self,
            CloseReason::ForcedServerClose
                | CloseReason::ForcedClose
                | CloseReason::ShuttingDown
                | CloseReason::SlowConsumer
                | CloseReason::MultiplePolling
        )
    }
}

/// What the client's handshake request carried, kept for the protocol layer (cookies for
/// authentication, `fetchSockets()` answers).
#[derive(Debug)]
pub struct Handshake {
    pub headers: HandshakeHeaders,
    pub remote_addr: Option<SocketAddr>,
    pub issued: SystemTime,
    /// Path and query, as the reference reports it; the query is read from it.
    url: Box<str>,
}

impl Handshake {
    /// Captures a handshake request (`path` and `query` form the URL the reference reports).
    pub fn new(
        headers: &HeaderMap,
        path: &str,
        query: &str,
        remote_addr: Option<SocketAddr>,
    ) -> Self {
        Handshake {
            headers: HandshakeHeaders::new(headers),
            remote_addr,
            issued: SystemTime::now(),
            url: format!("{path}?{query}").into_boxed_str(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The request's query string (without its `?`).
    pub fn query(&self) -> &str {
        self.url.split_once('?').map_or("", |(_, query)| query)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// Returned when a frame cannot be queued because the session is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session closed")]
pub struct SessionClosed;

pub(crate) struct State {
    pub transport: Transport,
    pub upgrading: bool,
    pub outbox: VecDeque<Frame>,
    /// The WebSocket connection, once its task runs: producers write to it directly when
    /// nothing is queued.
    pub direct: Option<Arc<TcpStream>>,
    /// Encoded bytes a direct write could not send; they go out before `outbox`.
    pub unsent: BytesMut,
    /// The connection task took frames and is writing them: producers must queue.
    pub writing: bool,
    /// Frames wait in `outbox` for the end of a write batch (see [`crate::WriteBatch`]).
    pub deferred: bool,
    pub poll_pending: bool,
    pub post_pending: bool,
    pub awaiting_pong: bool,
    /// The number of the last ping sent.
    pub ping_seq: u32,
    pub closed: Option<CloseReason>,
    /// Frames queued by [`Session::send_burst`] that do not count against a slow consumer
    /// until the queue is back within its bound.
    pub burst: usize,
}

/// How a session ended, as it tells the engine that opened it.
pub(crate) enum Ended {
    /// It closed; `keep_for_get`: a polling client must still fetch its close packet.
    Closed {
        reason: CloseReason,
        keep_for_get: bool,
    },
    /// Its last frames were delivered (the final GET was answered).
    Delivered,
}

/// Tells the engine that opened a session of its end (the session never names the engine).
pub(crate) type OnEnd = Box<dyn Fn(&Arc<Session>, Ended) + Send + Sync>;

pub struct Session {
    pub sid: Sid,
    pub handshake: Handshake,
    on_end: OnEnd,
    state: Mutex<State>,
    /// Wakes the consumer of the outbox (and anyone watching for close).
    wake: Notify,
    max_queued: usize,
    data: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl Session {
    pub(crate) fn new(
        sid: Sid,
        handshake: Handshake,
        transport: Transport,
        on_end: OnEnd,
        max_queued: usize,
    ) -> Self {
        Session {
            sid,
            handshake,
            on_end,
            state: Mutex::new(State {
                transport,
                upgrading: false,
                outbox: VecDeque::new(),
                direct: None,
                unsent: BytesMut::new(),
                writing: false,
                deferred: false,
                poll_pending: false,
                post_pending: false,
                awaiting_pong: false,
                ping_seq: 0,
                closed: None,
                burst: 0,
            }),
            wake: Notify::new(),
            max_queued,
            data: OnceLock::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state itself stays consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn transport(&self) -> Transport {
        self.lock().transport
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.lock().closed
    }

    /// Attaches the protocol layer's per-session state (set once).
    pub fn set_data<T: Any + Send + Sync>(&self, value: T) {
        let _ = self.data.set(Box::new(value));
    }

    pub fn data<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.data.get().and_then(|d| d.downcast_ref())
    }

    /// Queues one frame.
    pub fn send_frame(self: &Arc<Self>, frame: Frame) -> Result<(), SessionClosed> {
        self.send_all(std::iter::once(frame))
    }

    /// Sends frames that must stay together (a packet and its binary attachments): directly
    /// to an idle WebSocket, otherwise through the queue. A session whose queue is full is a
    /// slow consumer and is closed.
    pub fn send_all(
        self: &Arc<Self>,
        frames: impl IntoIterator<Item = Frame>,
    ) -> Result<(), SessionClosed> {
        self.send(frames, false, 0).map(|_| ())
    }

    /// Sends frames the server decided to send at once (a recovered client's missed packets):
    /// they may take the queue past its bound without making the client a slow consumer. The
    /// caller bounds them (see [`Session::max_queued`]).
    pub fn send_burst(self: &Arc<Self>, frames: Vec<Frame>) -> Result<(), SessionClosed> {
        let allowance = frames.len();
        self.send(frames, false, allowance).map(|_| ())
    }

    /// Frames that may wait for one socket before it is a slow consumer.
    pub fn max_queued(&self) -> usize {
        self.max_queued
    }

    /// [`Session::send_all`] for a write batch: frames for an idle WebSocket wait in the queue
    /// instead of being written now. `true` when this call started the wait: the caller then
    /// owes a [`Session::flush_deferred`] (see [`crate::WriteBatch`]).
    pub(crate) fn send_all_deferred(
        self: &Arc<Self>,
        frames: impl IntoIterator<Item = Frame>,
    ) -> Result<bool, SessionClosed> {
        self.send(frames, true, 0)
    }

    /// `defer`: leave frames for an idle WebSocket in the queue (returning `true` when this call
    /// made the session wait for a flush) instead of writing them now.
    fn send(
        self: &Arc<Self>,
        frames: impl IntoIterator<Item = Frame>,
        defer: bool,
        allowance: usize,
    ) -> Result<bool, SessionClosed> {
        let mut st = self.lock();
        if st.closed.is_some() {
            return Err(SessionClosed);
        }
        // A burst's allowance lasts until the queue is back within its bound.
        if st.outbox.len() <= self.max_queued {
            st.burst = 0;
        }
        st.burst += allowance;
        let mut started_deferral = false;
        let idle = st.outbox.is_empty() && st.unsent.is_empty() && !st.writing;
        if idle && !st.deferred {
            if let Some(stream) = st.direct.clone() {
                if !defer {
                    return self
                        .write_direct(st, &stream, wsproto::encode_frames(frames))
                        .map(|()| false);
                }
                st.deferred = true;
                started_deferral = true;
            }
        }
        let was_empty = st.outbox.is_empty();
        st.outbox.extend(frames);
        if st.outbox.len() > self.max_queued + st.burst {
            // A write batch holds more for this WebSocket than the bound, but the socket was idle
            // when the batch began: the client is not behind, so write what is held now (the
            // batch's flush writes the rest) rather than close a prompt reader.
            if st.deferred && st.unsent.is_empty() && !st.writing {
                if let Some(stream) = st.direct.clone() {
                    let out = wsproto::encode_frames(std::mem::take(&mut st.outbox));
                    return self
                        .write_direct(st, &stream, out)
                        .map(|()| started_deferral);
                }
            }
            drop(st);
            self.close(CloseReason::SlowConsumer);
            return Err(SessionClosed);
        }
        // Deferred frames are written when the batch ends, without waking the task.
        let wake = was_empty && !st.deferred;
        drop(st);
        if wake {
            self.wake.notify_waiters();
        }
        Ok(started_deferral)
    }

    /// Sends the frames deferred by a batch (see [`crate::WriteBatch`]): directly if `direct` and the
    /// socket is still idle, else by waking the connection task.
    pub(crate) fn flush_deferred(self: &Arc<Self>, direct: bool) {
        let mut st = self.lock();
        st.deferred = false;
        if st.closed.is_some() || st.outbox.is_empty() {
            return;
        }
        match st.direct.clone() {
            Some(stream) if direct && st.unsent.is_empty() && !st.writing => {
                let out = wsproto::encode_frames(std::mem::take(&mut st.outbox));
                let _ = self.write_direct(st, &stream, out);
            }
            _ => {
                drop(st);
                self.wake.notify_waiters();
            }
        }
    }

    /// Writes to the idle WebSocket without waiting; what the socket does not take now stays
    /// in `unsent` for the connection task. The lock is held throughout, so no other writer
    /// can come between our bytes.
    fn write_direct(
        self: &Arc<Self>,
        mut st: MutexGuard<'_, State>,
        stream: &TcpStream,
        mut out: BytesMut,
    ) -> Result<(), SessionClosed> {
        let written = match stream.try_write(&out) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => {
                drop(st);
                tracing::debug!(sid = %self.sid, error = %e, "websocket write failed");
                self.close(CloseReason::TransportError);
                return Err(SessionClosed);
            }
        };
        if written < out.len() {
            st.unsent = out.split_off(written);
            drop(st);
            self.wake.notify_waiters();
        }
        Ok(())
    }

    /// Sends WebSocket control bytes (a pong) of the connection task, in order with producers'
    /// direct writes: at once when the socket is idle, else ahead of the queued frames.
    pub(crate) fn send_ws_control(self: &Arc<Self>, bytes: BytesMut) -> Result<(), SessionClosed> {
        let mut st = self.lock();
        if st.closed.is_some() {
            return Err(SessionClosed);
        }
        if st.outbox.is_empty() && st.unsent.is_empty() && !st.writing {
            if let Some(stream) = st.direct.clone() {
                return self.write_direct(st, &stream, bytes);
            }
        }
        st.unsent.extend_from_slice(&bytes);
        drop(st);
        self.wake.notify_waiters();
        Ok(())
    }

    /// Lets producers write to this WebSocket directly (its connection task is running).
    pub(crate) fn attach_direct(&self, stream: Arc<TcpStream>) {
        let mut st = self.lock();
        if st.closed.is_none() {
            st.direct = Some(stream);
        }
    }

    /// Queues a control frame even past the queue bound (pings must not make a session slow).
    pub(crate) fn send_control(&self, frame: Frame) {
        let mut st = self.lock();
        if st.closed.is_none() {
            st.outbox.push_back(frame);
            drop(st);
            self.wake.notify_waiters();
        }
    }

    /// Waits until the queue may have changed. Call `notified().enable()` before checking.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// Wakes consumers so they re-read the state (upgrade progress, close).
    pub(crate) fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Resolves once the session is closed.
    pub async fn closed(&self) {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    /// Marks a ping as sent; `None` if the session is closed. The number identifies the ping
    /// for [`Session::pong_overdue`].
    pub(crate) fn ping_sent(&self) -> Option<u32> {
        let mut st = self.lock();
        if st.closed.is_some() {
            return None;
        }
        st.awaiting_pong = true;
        st.ping_seq = st.ping_seq.wrapping_add(1);
        Some(st.ping_seq)
    }

    /// True when ping number `seq` is still unanswered.
    pub(crate) fn pong_overdue(&self, seq: u32) -> bool {
        let st = self.lock();
        st.closed.is_none() && st.awaiting_pong && st.ping_seq == seq
    }

    /// A pong arrived; true if a ping was waiting for it.
    pub(crate) fn on_pong(&self) -> bool {
        std::mem::take(&mut self.lock().awaiting_pong)
    }

    /// Closes the session. The first call wins; it tells the client when the server decided,
    /// removes the session from the engine and notifies the protocol layer.
    pub fn close(self: &Arc<Self>, reason: CloseReason) {
        let keep_for_get = {
            let mut st = self.lock();
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(reason);
            st.direct = None;
            if reason.tells_client() {
                st.outbox.push_back(Frame::close());
            }
            // A polling client learns of a server close from its next GET: keep the session
            // reachable until that GET carries the close packet (it calls `finish`), or a grace.
            st.transport == Transport::Polling && reason.tells_client()
        };
        self.wake.notify_waiters();
        tracing::debug!(sid = %self.sid, reason = reason.as_str(), "session closed");
        (self.on_end)(
            self,
            Ended::Closed {
                reason,
                keep_for_get,
            },
        );
    }

    /// Removes a session that has delivered its last frames (its final GET was answered).
    pub(crate) fn finish(self: &Arc<Self>) {
        (self.on_end)(self, Ended::Delivered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::WriteBatch;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// A WebSocket session (bound `max_queued`) writing directly to one end of a loopback TCP
    /// connection, and the other end, as its client.
    async fn websocket_session(max_queued: usize) -> (Arc<Session>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let handshake = Handshake::new(&HeaderMap::new(), "/engine.io/", "", None);
        let on_end: OnEnd = Box::new(|_, _| {});
        let session = Arc::new(Session::new(
            Sid::generate(),
            handshake,
            Transport::Websocket,
            on_end,
            max_queued,
        ));
        session.attach_direct(Arc::new(accepted.expect("accept").0));
        (session, client.expect("connect"))
    }

    /// Reads until `count` text frames of `marker` arrived (or a second passed).
    async fn read_marked(client: &mut TcpStream, marker: &str, count: usize) -> usize {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut buf = [0_u8; 4096];
        let seen = |got: &[u8]| {
            got.windows(marker.len())
                .filter(|w| *w == marker.as_bytes())
                .count()
        };
        while seen(&got) < count {
            match tokio::time::timeout_at(deadline, client.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        seen(&got)
    }

    /// A burst of deliveries in one write batch (many broadcasts read from Valkey at once) can
    /// hold more frames for one socket than its queue bound before the batch is flushed. A
    /// client that reads promptly is not a slow consumer for that: it gets them all.
    #[tokio::test]
    async fn a_batch_bigger_than_the_queue_bound_reaches_an_idle_websocket() {
        let (session, mut client) = websocket_session(4).await;
        let mut batch = WriteBatch::new();
        for i in 0..20 {
            let frame = Frame::Text(format!("4m{i:02}!").into());
            assert!(
                batch.send_all(&session, [frame]).is_ok(),
                "frame {i} queued"
            );
        }
        batch.flush();
        assert_eq!(session.close_reason(), None, "not closed");
        assert_eq!(
            read_marked(&mut client, "!", 20).await,
            20,
            "every frame arrived"
        );
    }

    /// The bound still holds for a client that is behind: once its socket takes no more, a
    /// batch that queues past the bound closes it as a slow consumer.
    #[tokio::test]
    async fn a_batch_past_the_bound_of_a_client_that_stopped_reading_closes_it() {
        let (session, _client) = websocket_session(4).await;
        let big = "x".repeat(64 * 1024);
        for _ in 0..1000 {
            if !session.lock().unsent.is_empty() {
                break;
            }
            let _ = session.send_frame(Frame::Text(format!("4{big}").into()));
        }
        assert!(
            !session.lock().unsent.is_empty(),
            "the socket's buffers are full"
        );
        let mut batch = WriteBatch::new();
        for i in 0..6 {
            let _ = batch.send_all(&session, [Frame::Text(format!("4m{i}").into())]);
        }
        batch.flush();
        assert_eq!(session.close_reason(), Some(CloseReason::SlowConsumer));
    }
}
