//! The Socket.IO server: it receives Engine.IO sessions and messages, decodes packets, runs
//! CONNECTs through their namespace's handler and dispatches events and acks to sockets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use super::client::Client;
use super::connect_timeout::ConnectTimeouts;
use super::disconnect::DisconnectReason;
use super::encode::encode;
use super::handler::{AckSender, ConnectRequest, Event, NamespaceHandler};
use super::namespace::Namespace;
use super::packet::{event_parts, Packet, PacketType};
use super::recovery::{Claim, Frontier, Restored, SessionStore};
use super::socket::Socket;
use engineio::{CloseReason, EngineHandler, Session, Sid, SidTag};

#[derive(Clone, Debug)]
pub struct SocketIoConfig {
    /// A session that has joined no namespace after this long is closed.
    pub connect_timeout: Duration,
    pub max_attachments: usize,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            connect_timeout: Duration::from_millis(45_000),
            max_attachments: super::packet::DEFAULT_MAX_ATTACHMENTS,
        }
    }
}

/// A recovered client gets at most this many times the outbound queue's bound of missed
/// packets (4,096 with the gateway's default `engine.outbound_queue` of 256); past it,
/// `recovered === false`.
const MAX_REPLAY_PER_QUEUED: usize = 16;

pub struct SocketIo {
    config: SocketIoConfig,
    namespaces: HashMap<String, Arc<Namespace>>,
    connect_timeouts: Arc<ConnectTimeouts>,
    /// Starts every socket id made here (a restored socket keeps the id it had).
    socket_ids: SidTag,
}

/// Builds a [`SocketIo`] with its namespaces (fixed at start: unknown ones are refused).
pub struct SocketIoBuilder {
    config: SocketIoConfig,
    namespaces: HashMap<String, Arc<Namespace>>,
}

impl SocketIoBuilder {
    pub fn namespace(mut self, name: &str, handler: Arc<dyn NamespaceHandler>) -> Self {
        self.namespaces
            .insert(name.to_owned(), Arc::new(Namespace::new(name, handler)));
        self
    }

    pub fn build(self) -> Arc<SocketIo> {
        Arc::new(SocketIo {
            connect_timeouts: ConnectTimeouts::new(self.config.connect_timeout, |session| {
                let idle = SocketIo::client(session).is_some_and(|c| !c.has_namespace());
                idle && !session.is_closed()
            }),
            config: self.config,
            namespaces: self.namespaces,
            socket_ids: SidTag::random(),
        })
    }
}

impl SocketIo {
    pub fn builder(config: SocketIoConfig) -> SocketIoBuilder {
        SocketIoBuilder {
            config,
            namespaces: HashMap::new(),
        }
    }

    pub fn namespace(&self, name: &str) -> Option<&Arc<Namespace>> {
        self.namespaces.get(name)
    }

    pub fn namespaces(&self) -> impl Iterator<Item = &Arc<Namespace>> {
        self.namespaces.values()
    }

    /// What the ids of the sockets made here start with (see [`SidTag`]).
    pub fn socket_id_tag(&self) -> SidTag {
        self.socket_ids
    }

    fn client(session: &Session) -> Option<&Client> {
        session.data::<Client>()
    }

    fn dispatch(&self, session: &Arc<Session>, client: &Client, packet: Packet) {
        if packet.kind == PacketType::Connect {
            return self.connect(session, client, packet);
        }
        let Some(socket) = client.socket(&packet.nsp) else {
            // A packet for a namespace this client has not joined: the reference closes.
            return session.close(CloseReason::ForcedClose);
        };
        match packet.kind {
            PacketType::Event | PacketType::BinaryEvent => {
                let Some((name, args)) = packet.data.and_then(event_parts) else {
                    return session.close(CloseReason::ForcedClose);
                };
                let ack = packet.id.map(|id| AckSender {
                    socket: socket.clone(),
                    id,
                });
                let event = Event {
                    name,
                    args,
                    attachments: packet.attachments,
                    ack,
                };
                socket.ns.handler.on_event(&socket, event);
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let args = match packet.data {
                    Some(Value::Array(a)) => a,
                    _ => Vec::new(),
                };
                if let Some(id) = packet.id {
                    socket.on_ack(id, args, packet.attachments);
                }
            }
            PacketType::Disconnect => {
                socket.on_disconnect(DisconnectReason::ClientNamespaceDisconnect)
            }
            PacketType::Connect | PacketType::ConnectError => {
                session.close(CloseReason::ForcedClose)
            }
        }
    }

    fn connect(&self, session: &Arc<Session>, client: &Client, packet: Packet) {
        let nsp = packet.nsp;
        let Some(ns) = self.namespaces.get(&nsp).cloned() else {
            let refusal = Packet::connect_error(&nsp, "Invalid namespace", None);
            let _ = session.send_all(encode(&refusal));
            return;
        };
        {
            let mut st = client.lock();
            let joined = st.sockets.iter().any(|s| s.ns.name == nsp) || st.pending.contains(&nsp);
            if joined {
                drop(st);
                // A second CONNECT for a namespace: a protocol error, never a second socket.
                return session.close(CloseReason::ForcedClose);
            }
            // Pending until the socket is attached (the end of `admit`), so a second CONNECT
            // during the authentication or the restore is refused too.
            st.pending.push(nsp.clone());
        }
        let auth = packet.data.unwrap_or_else(|| json!({}));
        let session = session.clone();
        let request = ConnectRequest {
            session: session.clone(),
            nsp: nsp.clone(),
            auth: auth.clone(),
        };
        let verdict = ns.handler.authenticate(request);
        let socket_ids = self.socket_ids;
        tokio::spawn(async move {
            let verdict = verdict.await;
            let Some(client) = Self::client(&session) else {
                return;
            };
            match verdict {
                _ if session.is_closed() => {}
                Ok(accepted) => {
                    Self::admit(ns, session.clone(), client, auth, accepted, socket_ids).await
                }
                Err(e) => {
                    let refusal = Packet::connect_error(&nsp, &e.message, e.data);
                    let _ = session.send_all(encode(&refusal));
                }
            }
            client.lock().pending.retain(|p| p != &nsp);
        });
    }

    /// Creates the socket of an accepted CONNECT: a fresh one, or, when its owner brought the
    /// `pid` and `offset` of a kept session of theirs, that session's id, the rooms it may
    /// still be in and the packets it missed in them, written before the CONNECT reply (as the
    /// reference does).
    ///
    /// The socket is attached to its client last: until then the session's close does not
    /// see it, so once attached, a session found closed is closed here (nothing is left in the
    /// namespace, its rooms or the kept sessions' refresh), and a socket closed in the middle
    /// of a restore keeps what it had for the next attempt.
    async fn admit(
        ns: Arc<Namespace>,
        session: Arc<Session>,
        client: &Client,
        auth: Value,
        accepted: super::Accepted,
        socket_ids: SidTag,
    ) {
        let store = ns.session_store().cloned();
        let holder: u64 = rand::random();
        let claim = match (&store, &accepted.owner, recovery_claim(&auth)) {
            (Some(_), Some(owner), Some((pid, offset))) => Some(Claim {
                nsp: ns.name.clone(),
                owner: owner.clone(),
                pid,
                offset,
                holder,
            }),
            _ => None,
        };
        let restored = match (&store, claim) {
            (Some(store), Some(claim)) => {
                let pid = claim.pid.clone();
                store.restore(claim).await.map(|r| (pid, r))
            }
            _ => None,
        };
        let sid = restored
            .as_ref()
            .map_or_else(|| socket_ids.generate(), |(_, r)| r.sid);
        if restored.is_some() {
            // One live socket per session: a stale one still here with this id (its connection
            // went silent) goes first.
            if let Some(old) = ns.socket(&sid) {
                old.replace();
            }
        }
        let socket = Arc::new(Socket::new(
            sid,
            ns.clone(),
            session.clone(),
            auth,
            accepted.extension,
            accepted.owner,
            holder,
        ));
        if restored.is_some() {
            socket.hold();
        }
        ns.add_socket(socket.clone());
        ns.handler.prepare(&socket);
        if restored.is_none() {
            // A client told it is connected gets every broadcast to its rooms from then on,
            // whichever instance sends it: the reply waits until they are followed.
            ns.adapter().rooms_followed().await;
        }
        if let Some(store) = &store {
            let mut pid = None;
            if let Some((old_pid, r)) = restored {
                let offset = r.offset.clone();
                match Self::replay(&ns, &socket, store, r).await {
                    Some(last) => {
                        socket.release(Some(last));
                        pid = Some(old_pid);
                    }
                    // The id is back but not every missed packet: a new pid tells the client
                    // it was not recovered, so it refetches.
                    None => socket.release(Some(offset)),
                }
            }
            socket.set_pid(pid.unwrap_or_else(|| Sid::generate().to_string()));
            if let Some(record) = socket.session_record() {
                store.session_opened(record);
            }
        }
        client.lock().sockets.push(socket.clone());
        if let Some(reason) = session.close_reason() {
            socket.on_disconnect(reason.into());
            return;
        }
        if !socket.connected() {
            return;
        }
        let mut reply = json!({ "sid": sid.as_str() });
        if let Some(pid) = socket.pid() {
            reply["pid"] = Value::String(pid.to_owned());
        }
        if socket
            .send_packet(&Packet::connect(&ns.name, Some(reply)))
            .is_ok()
        {
            ns.handler.on_connect(&socket);
        }
    }

    /// Rejoins the restored session's rooms that the socket may still be in and writes the
    /// packets it missed in them. Returns how far they went in each partition, or `None` when
    /// not all of them can be given back.
    async fn replay(
        ns: &Namespace,
        socket: &Arc<Socket>,
        store: &Arc<dyn SessionStore>,
        restored: Restored,
    ) -> Option<Frontier> {
        let joined: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
        let (rejoin, already): (Vec<String>, Vec<String>) = restored
            .rooms
            .into_iter()
            .partition(|r| !joined.contains(r));
        let mut rooms = ns.handler.restore_rooms(socket, rejoin).await.ok()?;
        rooms.extend(already);
        // Rooms are followed before the log is read: nothing falls in between.
        ns.adapter().rooms_followed().await;
        let missed = store
            .missed(&ns.name, rooms, restored.offset.clone())
            .await?;
        // Past this the client is better served refetching (and its replay would take that
        // much memory here until it reads it).
        let count = missed.packets.len();
        if count > MAX_REPLAY_PER_QUEUED * socket.session().max_queued() {
            tracing::debug!(missed = count, "too much missed to replay");
            return None;
        }
        // One burst: the replay may exceed the outbound queue's bound without the client
        // being taken for a slow consumer before it even has its CONNECT reply.
        let packets: Vec<&Packet> = missed.packets.iter().collect();
        let _ = socket.send_burst(&packets);
        tracing::debug!(missed = count, "session recovered");
        Some(missed.through)
    }

    /// A frame went through the session's decoder: dispatch a whole packet; a frame out of
    /// order or a malformed packet closes the session, as the reference does.
    fn on_decoded(
        &self,
        session: &Arc<Session>,
        client: &Client,
        decoded: Result<Option<Packet>, super::packet::ParseError>,
    ) {
        match decoded {
            Ok(Some(packet)) => self.dispatch(session, client, packet),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(sid = %session.sid, error = %e, "invalid socket.io packet");
                session.close(CloseReason::ForcedClose);
            }
        }
    }
}

/// `{pid, offset}` in a CONNECT payload: the client asks for its session back.
fn recovery_claim(auth: &Value) -> Option<(String, Frontier)> {
    let pid = auth.get("pid")?.as_str()?;
    let offset = auth.get("offset")?.as_str()?.parse().ok()?;
    Some((pid.to_owned(), offset))
}

impl EngineHandler for SocketIo {
    fn on_open(&self, session: &Arc<Session>) {
        session.set_data(Client::new(self.config.max_attachments));
        self.connect_timeouts.opened(session);
    }

    fn on_message(&self, session: &Arc<Session>, text: &str) {
        let Some(client) = Self::client(session) else {
            return;
        };
        let decoded = client.decode(|d| d.text(text));
        self.on_decoded(session, client, decoded);
    }

    fn on_binary(&self, session: &Arc<Session>, data: Bytes) {
        let Some(client) = Self::client(session) else {
            return;
        };
        let decoded = client.decode(|d| d.binary(data));
        self.on_decoded(session, client, decoded);
    }

    fn on_close(&self, session: &Arc<Session>, reason: CloseReason) {
        let Some(client) = Self::client(session) else {
            return;
        };
        let reason = DisconnectReason::from(reason);
        for socket in client.sockets() {
            socket.on_disconnect(reason);
        }
    }
}
