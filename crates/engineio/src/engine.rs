//! The session table and the parts shared by both transports: opening a session, dispatching
//! received packets, heartbeats and closing everything at shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use http::{HeaderMap, Method};

use super::admission::{Admission, Refusal, Slot};
use super::config::EngineConfig;
use super::handler::{EngineHandler, EngineObserver, Refused};
use super::heartbeat::Heartbeats;
use super::packet::{Frame, Packet};
use super::request::{self, EngineError, EngineQuery, Verified};
use super::session::{CloseReason, Ended, Handshake, Session, Transport};
use super::sid::Sid;
use super::sparse::ShrinkWhenSparse;

pub struct EngineInner {
    pub config: EngineConfig,
    pub(crate) handler: Arc<dyn EngineHandler>,
    observer: Arc<dyn EngineObserver>,
    sessions: RwLock<HashMap<Sid, Arc<Session>>>,
    admission: Admission,
    heartbeats: Arc<Heartbeats>,
    /// WebSocket connection tasks alive: a drain waits for them to write their close frames.
    ws_tasks: AtomicUsize,
}

/// A cheap handle on the Engine.IO server.
#[derive(Clone)]
pub struct Engine(pub(crate) Arc<EngineInner>);

impl Engine {
    pub fn new(config: EngineConfig, handler: Arc<dyn EngineHandler>) -> Self {
        Self::observed(config, handler, Arc::new(()))
    }

    /// An engine that reports refusals and slow consumers to `observer`.
    pub fn observed(
        config: EngineConfig,
        handler: Arc<dyn EngineHandler>,
        observer: Arc<dyn EngineObserver>,
    ) -> Self {
        let admission = Admission::new(config.max_sessions, config.handshake_rate);
        let heartbeats = Heartbeats::new(config.ping_interval, config.ping_timeout);
        Engine(Arc::new(EngineInner {
            heartbeats,
            config,
            handler,
            observer,
            sessions: RwLock::new(HashMap::new()),
            admission,
            ws_tasks: AtomicUsize::new(0),
        }))
    }

    pub fn config(&self) -> &EngineConfig {
        &self.0.config
    }

    pub fn session(&self, sid: &Sid) -> Option<Arc<Session>> {
        self.0.session(sid)
    }

    pub fn session_count(&self) -> usize {
        self.0.read().len()
    }

    /// Every session in the table (including closed ones still delivering their close packet).
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.0.read().values().cloned().collect()
    }

    /// Open sessions by transport: `(polling, websocket)`.
    pub fn transport_counts(&self) -> (usize, usize) {
        let (mut polling, mut websocket) = (0, 0);
        for s in self.0.read().values() {
            let st = s.lock();
            match (st.closed.is_some(), st.transport) {
                (true, _) => {}
                (false, Transport::Polling) => polling += 1,
                (false, Transport::Websocket) => websocket += 1,
            }
        }
        (polling, websocket)
    }

    /// WebSocket connections still being served (possibly writing a closed session's last frames).
    pub fn websocket_tasks(&self) -> usize {
        self.0.ws_tasks.load(Ordering::Acquire)
    }

    /// Counts a WebSocket connection task for as long as the guard lives.
    pub(crate) fn track_websocket_task(&self) -> WsTaskGuard {
        self.0.ws_tasks.fetch_add(1, Ordering::AcqRel);
        WsTaskGuard(self.0.clone())
    }

    /// Refuses every new handshake from now on (503); live sessions are not touched.
    pub fn start_draining(&self) {
        self.0.admission.start_draining();
    }

    /// Reserves room for a new session (capacity, handshake rate, drain), waiting in the
    /// rate's queue if need be.
    pub(crate) async fn admit(&self) -> Result<Slot, Refusal> {
        self.0.admission.admit(&*self.0.observer).await
    }

    /// [`request::verify`] against this engine's sessions; a new session refused for its
    /// `Origin` is reported to the observer.
    pub(crate) fn verify(
        &self,
        method: &Method,
        headers: &HeaderMap,
        query: &EngineQuery<'_>,
        is_upgrade: bool,
    ) -> Result<Verified, EngineError> {
        let verified = request::verify(&self.0.config, method, headers, query, is_upgrade, |sid| {
            self.session(sid).map(|s| s.transport())
        });
        if verified.as_ref().err() == Some(&EngineError::Forbidden) && query.sid.is_none() {
            self.0.observer.refused(Refused::Origin);
        }
        verified
    }

    /// Creates a session in an admitted slot, queues its open packet and starts its heartbeat.
    pub(crate) fn open(
        &self,
        handshake: Handshake,
        transport: Transport,
        slot: Slot,
    ) -> Arc<Session> {
        let cfg = &self.0.config;
        let start = tokio::time::Instant::now();
        let sid = Sid::generate();
        // The session tells the engine of its end through this, without knowing the engine.
        let engine = Arc::downgrade(&self.0);
        let on_end = Box::new(move |session: &Arc<Session>, end: Ended| {
            if let Some(engine) = engine.upgrade() {
                engine.ended(session, end);
            }
        });
        let session = Arc::new(Session::new(
            sid,
            handshake,
            transport,
            on_end,
            cfg.max_queued_frames,
        ));
        let upgrades = if transport == Transport::Polling && cfg.allow_websocket {
            r#"["websocket"]"#
        } else {
            "[]"
        };
        let open = format!(
            r#"{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
            cfg.ping_interval.as_millis(),
            cfg.ping_timeout.as_millis(),
            cfg.max_payload
        );
        session.send_control(Frame::open(&open));
        self.0
            .sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sid, session.clone());
        // The table holds the slot from now on; `remove` gives it back.
        slot.commit();
        // The heartbeat clock starts now, before the handshake response leaves, as the
        // reference's does: the ping-timeout deadline is measured from here.
        self.0.heartbeats.opened(&session, start);
        self.0.handler.on_open(&session);
        session
    }

    /// Handles one packet received on the session's active transport. An error means the
    /// session must close with that reason.
    pub(crate) fn on_packet(
        &self,
        session: &Arc<Session>,
        packet: Packet<'_>,
    ) -> Result<(), CloseReason> {
        match packet {
            Packet::Message(text) => self.0.handler.on_message(session, text),
            Packet::Binary(data) => self.0.handler.on_binary(session, data),
            Packet::Pong { probe: false } => {
                if session.on_pong() {
                    self.0.heartbeats.answered(session);
                }
            }
            Packet::Close => return Err(CloseReason::TransportClose),
            // v4 clients never ping; probes are only valid on an upgrading WebSocket.
            Packet::Ping { .. } | Packet::Pong { probe: true } => {
                return Err(CloseReason::ParseError)
            }
            Packet::Upgrade | Packet::Noop => {}
        }
        Ok(())
    }
}

/// Keeps a WebSocket connection task counted in [`Engine::websocket_tasks`].
pub(crate) struct WsTaskGuard(Arc<EngineInner>);

impl Drop for WsTaskGuard {
    fn drop(&mut self) {
        self.0.ws_tasks.fetch_sub(1, Ordering::AcqRel);
    }
}

impl EngineInner {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Sid, Arc<Session>>> {
        self.sessions.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn session(&self, sid: &Sid) -> Option<Arc<Session>> {
        self.read().get(sid).cloned()
    }

    /// Takes a session out of the table (at most once per session) and frees its slot.
    pub(crate) fn remove(&self, sid: &Sid) {
        let removed = {
            let mut sessions = self.sessions.write().unwrap_or_else(|e| e.into_inner());
            let removed = sessions.remove(sid);
            sessions.shrink_when_sparse();
            removed
        };
        if removed.is_some() {
            self.admission.release();
        }
    }

    /// A session closed, or delivered its last frames after closing (see [`Ended`]).
    fn ended(self: Arc<Self>, session: &Arc<Session>, end: Ended) {
        let (reason, keep_for_get) = match end {
            Ended::Delivered => return self.remove(&session.sid),
            Ended::Closed {
                reason,
                keep_for_get,
            } => (reason, keep_for_get),
        };
        if reason == CloseReason::SlowConsumer {
            self.observer.slow_consumer();
        }
        if keep_for_get {
            // A polling client learns of a server close from its next GET: the session stays
            // reachable until that GET has its close packet, or for a grace. At shutdown a live
            // poller is waiting in a GET already: do not hold the drain.
            let grace = if reason == CloseReason::ShuttingDown {
                self.config
                    .ping_timeout
                    .min(std::time::Duration::from_secs(1))
            } else {
                self.config.ping_timeout
            };
            let sid = session.sid;
            let weak = Arc::downgrade(&self);
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                if let Some(engine) = weak.upgrade() {
                    engine.remove(&sid);
                }
            });
        } else {
            self.remove(&session.sid);
        }
        self.handler.on_close(session, reason);
    }
}
