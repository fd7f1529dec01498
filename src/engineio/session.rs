//! One Engine.IO session: its outbound queue, its transport state and how it closes.
//!
//! The queue is shared by both transports. Producers (any task that emits) push encoded frames
//! and wake the consumer; the consumer is either the WebSocket task or the one pending polling
//! GET. A consumer registers for the wake-up *before* it looks at the queue, so a frame pushed
//! in between is never missed.

use std::any::Any;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::SystemTime;

use http::HeaderMap;
use tokio::sync::Notify;

use super::engine::EngineInner;
use super::packet::Frame;
use super::sid::Sid;

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
    pub headers: HeaderMap,
    pub query: String,
    pub remote_addr: Option<SocketAddr>,
    pub issued: SystemTime,
    pub url: String,
}

impl Handshake {
    /// Captures a handshake request (`path` and `query` form the URL the reference reports).
    pub fn new(
        headers: HeaderMap,
        path: &str,
        query: &str,
        remote_addr: Option<SocketAddr>,
    ) -> Self {
        Handshake {
            headers,
            query: query.to_owned(),
            remote_addr,
            issued: SystemTime::now(),
            url: format!("{path}?{query}"),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
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
    pub poll_pending: bool,
    pub post_pending: bool,
    pub awaiting_pong: bool,
    pub closed: Option<CloseReason>,
}

pub struct Session {
    pub sid: Sid,
    pub handshake: Handshake,
    engine: Weak<EngineInner>,
    state: Mutex<State>,
    /// Wakes the consumer of the outbox (and anyone watching for close).
    wake: Notify,
    pub(crate) pong: Notify,
    max_queued: usize,
    data: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl Session {
    pub(crate) fn new(
        sid: Sid,
        handshake: Handshake,
        transport: Transport,
        engine: Weak<EngineInner>,
        max_queued: usize,
    ) -> Self {
        Session {
            sid,
            handshake,
            engine,
            state: Mutex::new(State {
                transport,
                upgrading: false,
                outbox: VecDeque::new(),
                poll_pending: false,
                post_pending: false,
                awaiting_pong: false,
                closed: None,
            }),
            wake: Notify::new(),
            pong: Notify::new(),
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

    /// Attaches the protocol layer's per-session state (set once).
    pub fn set_data<T: Any + Send + Sync>(&self, value: T) {
        let _ = self.data.set(Box::new(value));
    }

    pub fn data<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.data.get().and_then(|d| d.downcast_ref())
    }

    /// Queues one frame.
    pub fn send(self: &Arc<Self>, frame: Frame) -> Result<(), SessionClosed> {
        self.send_all(std::iter::once(frame))
    }

    /// Queues frames that must stay together (a packet and its binary attachments).
    /// A session whose queue is full is a slow consumer and is closed.
    pub fn send_all(
        self: &Arc<Self>,
        frames: impl IntoIterator<Item = Frame>,
    ) -> Result<(), SessionClosed> {
        let mut st = self.lock();
        if st.closed.is_some() {
            return Err(SessionClosed);
        }
        let was_empty = st.outbox.is_empty();
        st.outbox.extend(frames);
        if st.outbox.len() > self.max_queued {
            drop(st);
            self.close(CloseReason::SlowConsumer);
            return Err(SessionClosed);
        }
        drop(st);
        if was_empty {
            self.wake.notify_waiters();
        }
        Ok(())
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

    pub(crate) fn on_pong(&self) {
        let mut st = self.lock();
        if st.awaiting_pong {
            st.awaiting_pong = false;
            drop(st);
            self.pong.notify_one();
        }
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
            if reason.tells_client() {
                st.outbox.push_back(Frame::close());
            }
            // A polling client learns of a server close from its next GET: keep the session
            // reachable until that GET carries the close packet (it calls `finish`), or a grace.
            st.transport == Transport::Polling && reason.tells_client()
        };
        self.wake.notify_waiters();
        tracing::debug!(sid = %self.sid, reason = reason.as_str(), "session closed");
        if reason == CloseReason::SlowConsumer {
            crate::metrics::slow_consumer();
        }
        let Some(engine) = self.engine.upgrade() else {
            return;
        };
        if keep_for_get {
            // At shutdown a live poller is waiting in a GET already: do not hold the drain.
            let grace = if reason == CloseReason::ShuttingDown {
                engine
                    .config
                    .ping_timeout
                    .min(std::time::Duration::from_secs(1))
            } else {
                engine.config.ping_timeout
            };
            let sid = self.sid;
            let weak = Arc::downgrade(&engine);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                if let Some(engine) = weak.upgrade() {
                    engine.remove(&sid);
                }
            });
        } else {
            engine.remove(&self.sid);
        }
        engine.handler.on_close(self, reason);
    }

    /// Removes a session that has delivered its last frames (its final GET was answered).
    pub(crate) fn finish(&self) {
        if let Some(engine) = self.engine.upgrade() {
            engine.remove(&self.sid);
        }
    }
}
