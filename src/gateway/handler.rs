//! The main namespace's handler: it builds the gateway's services from the configuration and
//! hands each socket callback to the one that owns it.

use std::future::Future;
use std::sync::Arc;

use super::auth::Authenticator;
use super::client_ip::TrustedProxies;
use super::credentials::CredentialSource;
use super::errors::ClientError;
use super::event_queue::QueuedEvent;
use super::events::{self, EventForwarder};
use super::presence::{Presence, PresenceHooks};
use super::revalidate::{self, Revalidator};
use super::room_names;
use super::rooms::{MembershipRooms, RoomPolicy};
use super::state::SocketState;
use super::typing;
use crate::app::{AppClient, AppClientError};
use crate::config::{AppSettings, LimitsSettings};
use crate::metrics::{self, ConnectResult};
use socketio::packet::Packet;
use socketio::{
    Accepted, BoxFuture, BroadcastTarget, ConnectError, ConnectRequest, DisconnectReason, Event,
    Extension, Namespace, NamespaceHandler, Socket,
};

pub struct Gateway {
    auth: Arc<Authenticator>,
    rooms: Arc<RoomPolicy>,
    events: Arc<EventForwarder>,
    /// Held here only: its loop ends with the gateway.
    revalidator: Arc<Revalidator>,
    presence: PresenceHooks,
}

impl Gateway {
    pub fn new(
        cfg: &AppSettings,
        limits: &LimitsSettings,
        recheck_on_recovery: bool,
        trusted_proxies: TrustedProxies,
    ) -> Result<Arc<Self>, AppClientError> {
        let app = Arc::new(AppClient::new(cfg)?);
        let credentials = Arc::new(CredentialSource::new(trusted_proxies));
        let auth = Arc::new(Authenticator::new(
            app.clone(),
            credentials.clone(),
            cfg,
            recheck_on_recovery,
        ));
        Ok(Arc::new(Gateway {
            rooms: Arc::new(RoomPolicy::new(app.clone(), auth.clone())),
            events: Arc::new(EventForwarder::new(app, credentials, limits)),
            revalidator: Arc::new(Revalidator::new(auth.clone(), cfg)),
            auth,
            presence: PresenceHooks::default(),
        }))
    }

    /// The gateway as the handler of the main namespace.
    pub fn handler(self: &Arc<Self>) -> Arc<dyn NamespaceHandler> {
        self.clone()
    }

    /// The periodic re-validation of `ns`'s sockets, to be spawned; it ends with the gateway.
    pub fn revalidation(&self, ns: Arc<Namespace>) -> impl Future<Output = ()> {
        revalidate::run(Arc::downgrade(&self.revalidator), ns)
    }

    /// What drops the gateway's memories of sockets that are gone once their time is past
    /// (cached app answers), to be called now and then so a peak's leftovers do not stay.
    pub fn expired_forgetter(&self) -> impl Fn() + Send + 'static {
        let auth = self.auth.clone();
        move || auth.forget_expired()
    }

    /// Wires presence in (once, at start, after the relay): until then the hooks do nothing.
    pub fn attach_presence(&self, presence: Arc<Presence>) -> bool {
        self.presence.attach(presence)
    }
}

fn state_of(socket: &Socket) -> Option<Arc<SocketState>> {
    socket.extension::<Arc<SocketState>>().cloned()
}

impl NamespaceHandler for Gateway {
    fn authenticate(&self, req: ConnectRequest) -> BoxFuture<Result<Accepted, ConnectError>> {
        let (auth, events) = (self.auth.clone(), self.events.clone());
        Box::pin(async move {
            let cached = auth.cached_for(&req.auth);
            let identity = auth.authenticate(&req.session, cached).await?;
            let state = SocketState {
                membership_rooms: MembershipRooms::of(&identity.memberships),
                user: identity.user,
                typing: Default::default(),
                queue: Default::default(),
                events: events.bucket(),
                in_presence: Default::default(),
            };
            Ok(Accepted {
                owner: Some(state.user.id.clone()),
                extension: Some(Arc::new(Arc::new(state)) as Extension),
            })
        })
    }

    fn prepare(&self, socket: &Arc<Socket>) {
        if let Some(state) = state_of(socket) {
            state.membership_rooms.join(socket);
        }
    }

    /// A restored socket's kept rooms beyond its current memberships (joined by `prepare`):
    /// each stays only if the app's `authorize` still allows it.
    fn restore_rooms(
        &self,
        socket: &Arc<Socket>,
        kept: Vec<String>,
    ) -> BoxFuture<Result<Vec<String>, ()>> {
        let (rooms, socket) = (self.rooms.clone(), socket.clone());
        Box::pin(async move { rooms.reauthorize(socket, kept).await })
    }

    fn on_rooms_changed(&self, socket: &Socket) {
        if let Some(state) = state_of(socket) {
            self.presence.rooms_changed(socket, &state);
        }
    }

    fn owners_of(&self, target: &BroadcastTarget) -> Option<Vec<String>> {
        room_names::users_of(target)
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
                ClientError::new("RATE_LIMITED", "too many events, slow down"),
            );
        }
        if let Some(forwarded) = events::forwarded(&name) {
            return self.events.enqueue(
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
                let (rooms, socket) = (self.rooms.clone(), socket.clone());
                tokio::spawn(async move { rooms.join(socket, args, ack).await });
            }
            "room:leave" => self.rooms.leave(socket, &args, ack),
            "presence:setAway" => self.presence.set_away(socket, true, ack),
            "presence:setActive" => self.presence.set_away(socket, false, ack),
            _ => events::refuse(
                socket,
                ack,
                ClientError::new("UNKNOWN_EVENT", format!("unknown event {name:?}")),
            ),
        }
    }

    fn on_connect(&self, socket: &Arc<Socket>) {
        metrics::connect(ConnectResult::Ok);
        if let Some(state) = state_of(socket) {
            self.presence.connected(socket, &state);
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
            self.auth.forget_socket(socket.session());
        }
        tracing::debug!(sid = %socket.id, reason = reason.as_str(), "socket disconnected");
        if let Some(state) = state_of(socket) {
            typing::on_disconnect(socket, &state);
            self.presence.disconnected(socket);
        }
    }

    fn on_disconnect_request(&self, target: &BroadcastTarget) {
        self.auth.forget_targets(target, true);
    }

    fn on_rooms_request(&self, target: &BroadcastTarget) {
        self.auth.forget_targets(target, false);
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
