//! The session table and the parts shared by both transports: opening a session, dispatching
//! received packets, heartbeats and closing everything at shutdown.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::config::EngineConfig;
use super::handler::EngineHandler;
use super::packet::{Frame, Packet};
use super::session::{CloseReason, Handshake, Session, Transport};
use super::sid::Sid;

pub struct EngineInner {
    pub config: EngineConfig,
    pub(crate) handler: Arc<dyn EngineHandler>,
    sessions: RwLock<HashMap<Sid, Arc<Session>>>,
}

/// A cheap handle on the Engine.IO server.
#[derive(Clone)]
pub struct Engine(pub(crate) Arc<EngineInner>);

impl Engine {
    pub fn new(config: EngineConfig, handler: Arc<dyn EngineHandler>) -> Self {
        Engine(Arc::new(EngineInner {
            config,
            handler,
            sessions: RwLock::new(HashMap::new()),
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

    /// Closes every session (shutdown). Clients are told, so they reconnect elsewhere.
    pub fn close_all(&self, reason: CloseReason) {
        let sessions: Vec<_> = self.0.read().values().cloned().collect();
        for s in sessions {
            s.close(reason);
        }
    }

    /// Creates a session, queues its open packet and starts its heartbeat.
    pub(crate) fn open(&self, handshake: Handshake, transport: Transport) -> Arc<Session> {
        let cfg = &self.0.config;
        let start = tokio::time::Instant::now();
        let sid = Sid::generate();
        let session = Arc::new(Session::new(
            sid,
            handshake,
            transport,
            Arc::downgrade(&self.0),
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
        // The heartbeat clock starts now, before the handshake response leaves, as the
        // reference's does: the ping-timeout deadline is measured from here.
        tokio::spawn(super::heartbeat::run(
            session.clone(),
            start,
            cfg.ping_interval,
            cfg.ping_timeout,
        ));
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
            Packet::Pong { probe: false } => session.on_pong(),
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

impl EngineInner {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Sid, Arc<Session>>> {
        self.sessions.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn session(&self, sid: &Sid) -> Option<Arc<Session>> {
        self.read().get(sid).cloned()
    }

    pub(crate) fn remove(&self, sid: &Sid) {
        self.sessions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(sid);
    }
}
