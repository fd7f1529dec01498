//! The product's policy on top of Socket.IO: cookie authentication through the app at
//! connect, rooms from memberships, authorised joins, the chat events and typing.

pub mod auth;
pub mod client_ip;
pub mod errors;
pub mod events;
pub mod presence;
pub mod revalidate;
pub mod rooms;
pub mod state;
pub mod typing;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::app::single_flight::SingleFlight;
use crate::app::{AppClient, AppClientError, AppError, Memberships, SessionInfo};
use crate::config::{AppSettings, LimitsSettings};
use crate::metrics::{self, ConnectResult};
use socketio::packet::Packet;
use socketio::{
    Accepted, BoxFuture, BroadcastTarget, ConnectError, ConnectRequest, DisconnectReason, Event,
    Extension, NamespaceHandler, Socket,
};

use events::QueuedEvent;
use state::SocketState;

pub struct Gateway {
    pub(crate) app: Arc<AppClient>,
    /// Positive session answers by cookie digest; forgotten on every revocation signal.
    pub(crate) sessions: SingleFlight<[u8; 32], Option<SessionInfo>, AppError>,
    /// Memberships by user id (the same for every session of a user); forgotten on every
    /// membership-change signal.
    pub(crate) memberships: SingleFlight<String, Memberships, AppError>,
    pub(crate) revalidate_interval: Duration,
    pub(crate) revalidate_concurrency: usize,
    /// Each socket's event bucket: sustained rate and burst.
    pub(crate) events_per_s: u32,
    pub(crate) events_burst: u32,
    /// Whether a CONNECT asking for its session back asks the app again, past the cache.
    pub(crate) recheck_on_recovery: bool,
    /// Set once at start, after the relay (see [`presence`]).
    pub(crate) presence: OnceLock<Arc<presence::Presence>>,
    /// Whose `X-Forwarded-For` is believed (`security.trusted_proxies`).
    pub(crate) trusted_proxies: client_ip::TrustedProxies,
}

impl Gateway {
    pub fn new(
        cfg: &AppSettings,
        limits: &LimitsSettings,
        recheck_on_recovery: bool,
        trusted_proxies: client_ip::TrustedProxies,
    ) -> Result<Arc<Self>, AppClientError> {
        Ok(Arc::new(Gateway {
            app: Arc::new(AppClient::new(cfg)?),
            sessions: SingleFlight::new(cfg.session_cache_ttl()),
            // Memberships share the session cache's TTL: a reconnect storm reuses one answer per
            // user; the emitter's socketsJoin/socketsLeave (how the app changes memberships)
            // forget it, see `on_rooms_request`.
            memberships: SingleFlight::new(cfg.session_cache_ttl()),
            revalidate_interval: cfg.revalidate_interval(),
            revalidate_concurrency: cfg.revalidate_concurrency.max(1),
            events_per_s: limits.events_per_s,
            events_burst: limits.events_burst,
            recheck_on_recovery,
            presence: OnceLock::new(),
            trusted_proxies,
        }))
    }

    /// The gateway as the handler of the main namespace.
    pub fn handler(self: &Arc<Self>) -> Arc<dyn NamespaceHandler> {
        Arc::new(MainNamespace(self.clone()))
    }
}

fn state_of(socket: &Socket) -> Option<Arc<SocketState>> {
    socket.extension::<Arc<SocketState>>().cloned()
}

struct MainNamespace(Arc<Gateway>);

impl NamespaceHandler for MainNamespace {
    fn authenticate(&self, req: ConnectRequest) -> BoxFuture<Result<Accepted, ConnectError>> {
        let gw = self.0.clone();
        Box::pin(async move {
            // A client asking for a kept session back: a session revoked or a membership
            // lost during the gap must not come back through a cached answer.
            let recovering = req.auth.get("pid").is_some() && req.auth.get("offset").is_some();
            let cached = auth::Cached {
                session: !(recovering && gw.recheck_on_recovery),
                memberships: !recovering,
            };
            let state = gw.authenticate(req.session, cached).await?;
            Ok(Accepted {
                owner: Some(state.user.id.clone()),
                extension: Some(Arc::new(state) as Extension),
            })
        })
    }

    fn prepare(&self, socket: &Arc<Socket>) {
        if let Some(state) = state_of(socket) {
            let mut rooms = state
                .membership_rooms
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *rooms = rooms::join_shared(socket, &rooms);
        }
    }

    /// A restored socket's kept rooms beyond its current memberships (joined by `prepare`):
    /// each stays only if the app's `authorize` still allows it.
    fn restore_rooms(
        &self,
        socket: &Arc<Socket>,
        kept: Vec<String>,
    ) -> BoxFuture<Result<Vec<String>, ()>> {
        Box::pin(self.0.clone().reauthorize(socket.clone(), kept))
    }

    fn on_rooms_changed(&self, socket: &Socket) {
        if let Some(state) = state_of(socket) {
            self.0.presence_rooms(socket, &state);
        }
    }

    fn owners_of(&self, target: &BroadcastTarget) -> Option<Vec<String>> {
        rooms::users_of(target)
    }

    fn on_event(&self, socket: &Arc<Socket>, event: Event) {
        let Some(state) = state_of(socket) else {
            return;
        };
        let Event {
            name, args, ack, ..
        } = event;
        metrics::event_in(&name);
        if !state.events.try_take() {
            // Dropped, not queued: a flood must not cost the app or the room anything.
            return events::refuse(
                socket,
                ack,
                errors::ClientError::new("RATE_LIMITED", "too many events, slow down"),
            );
        }
        if let Some(forwarded) = events::forwarded(&name) {
            return self.0.enqueue(
                socket,
                &state,
                QueuedEvent {
                    name: forwarded,
                    args,
                    ack,
                },
            );
        }
        match name.as_str() {
            "typing:start" => typing::on_typing(socket, &state, &args, true),
            "typing:stop" => typing::on_typing(socket, &state, &args, false),
            "room:join" => {
                tokio::spawn(self.0.clone().join_room(socket.clone(), args, ack));
            }
            "room:leave" => self.0.leave_room(socket, &args, ack),
            "presence:setAway" => self.0.presence_set(socket, true, ack),
            "presence:setActive" => self.0.presence_set(socket, false, ack),
            _ => events::refuse(
                socket,
                ack,
                errors::ClientError::new("UNKNOWN_EVENT", format!("unknown event {name:?}")),
            ),
        }
    }

    fn on_connect(&self, socket: &Arc<Socket>) {
        metrics::connect(ConnectResult::Ok);
        if let Some(state) = state_of(socket) {
            self.0.presence_connect(socket, &state);
        }
    }

    fn on_disconnect(&self, socket: &Arc<Socket>, reason: DisconnectReason) {
        metrics::disconnect(reason);
        // The server disconnecting a socket is how the app revokes it (a remote
        // `socket.disconnect()`, or re-validation): its session must be asked again.
        if matches!(
            reason,
            DisconnectReason::ServerNamespaceDisconnect | DisconnectReason::ForcedServerClose
        ) {
            if let Some(creds) = self.0.credentials(socket.session()) {
                self.0.forget_session(&creds);
            }
        }
        tracing::debug!(sid = %socket.id, reason = reason.as_str(), "socket disconnected");
        if let Some(state) = state_of(socket) {
            typing::on_disconnect(socket, &state);
            self.0.presence_disconnect(socket);
        }
    }

    fn on_disconnect_request(&self, target: &BroadcastTarget) {
        self.0.forget_targets(target, true);
    }

    fn on_rooms_request(&self, target: &BroadcastTarget) {
        self.0.forget_targets(target, false);
    }

    fn on_delivered(&self, packet: &Packet, recipients: usize) {
        metrics::broadcast(packet.event_name().unwrap_or_default(), recipients);
    }

    /// What Node peers' `fetchSockets()` see: the user id, never the credentials.
    fn socket_data(&self, socket: &Socket) -> serde_json::Value {
        match state_of(socket) {
            Some(state) => serde_json::json!({ "userId": state.user.id }),
            None => serde_json::json!({}),
        }
    }
}
