//! A client's connection to one namespace: emitting, acknowledgements in both directions,
//! rooms and disconnection.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

use super::disconnect::DisconnectReason;
use super::encode::encode;
use super::namespace::Namespace;
use super::packet::Packet;
use super::recovery::{restamped, Frontier, Recorded, SessionRecord};
use super::rooms::Room;
use engineio::{CloseReason, Frame, Session, SessionClosed, Sid, WriteBatch};

/// Application state attached to a socket when it connects (the authenticated user...).
pub type Extension = Arc<dyn Any + Send + Sync>;

/// A client's answer to an acknowledged emit.
#[derive(Debug, Clone, PartialEq)]
pub struct AckResponse {
    pub args: Vec<Value>,
    pub attachments: Vec<Bytes>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AckError {
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    #[error("socket disconnected before acknowledging")]
    Disconnected,
}

/// A broadcast held back while a session is restored: its frames and, when it is from the
/// recovery log, its place and stamp with the packet (to stamp it again, see
/// [`Socket::release`]).
struct HeldBroadcast {
    frames: Vec<Frame>,
    recorded: Option<(Recorded, Packet)>,
}

pub struct Socket {
    pub id: Sid,
    pub ns: Arc<Namespace>,
    session: Arc<Session>,
    /// The CONNECT payload, without a recovery claim's `pid` and `offset` (the pid is a
    /// secret: other servers see this in `fetchSockets()`).
    pub auth: Value,
    extension: Option<Extension>,
    /// Whose socket it is ([`crate::Accepted::owner`]); only an owned socket is recoverable.
    owner: Option<String>,
    /// This socket's token as the holder of its kept session ([`SessionRecord::holder`]).
    holder: u64,
    acks: Mutex<HashMap<u64, oneshot::Sender<AckResponse>>>,
    next_ack: AtomicU64,
    connected: AtomicBool,
    /// The private id of a recoverable session (connection state recovery), set once known.
    pid: OnceLock<String>,
    /// While a session is being restored, live broadcasts wait here with their offsets, so
    /// the missed packets go first and nothing is sent twice.
    held: Mutex<Option<Vec<HeldBroadcast>>>,
    holding: AtomicBool,
    /// How far the replay at restore went in each partition: a live copy of a packet at or
    /// before it that reaches the socket after `release` (the Pub/Sub task can lag behind the
    /// log read) was sent already and is dropped. Set once, so reading it on every delivery
    /// is one load.
    replayed: OnceLock<Frontier>,
}

impl Socket {
    pub(crate) fn new(
        id: Sid,
        ns: Arc<Namespace>,
        session: Arc<Session>,
        mut auth: Value,
        extension: Option<Extension>,
        owner: Option<String>,
        holder: u64,
    ) -> Self {
        if let Some(fields) = auth.as_object_mut() {
            fields.remove("pid");
            fields.remove("offset");
        }
        Socket {
            id,
            ns,
            session,
            auth,
            extension,
            owner,
            holder,
            acks: Mutex::new(HashMap::new()),
            next_ack: AtomicU64::new(0),
            connected: AtomicBool::new(true),
            pid: OnceLock::new(),
            held: Mutex::new(None),
            holding: AtomicBool::new(false),
            replayed: OnceLock::new(),
        }
    }

    pub fn pid(&self) -> Option<&str> {
        self.pid.get().map(String::as_str)
    }

    pub(crate) fn set_pid(&self, pid: String) {
        let _ = self.pid.set(pid);
    }

    /// Holds live broadcasts back until [`Socket::release`].
    pub(crate) fn hold(&self) {
        *self.lock_held() = Some(Vec::new());
        self.holding.store(true, Ordering::Release);
    }

    /// Sends what was held, except packets at or before `after` (already replayed).
    ///
    /// A held packet may have been stamped here before this instance had delivered as far as
    /// the replay went in every partition (the restore waits for that only after reading the
    /// log): it goes out with the later of its stamp and `after` in each partition, so the
    /// client's offset never moves back. The client has everything of its rooms up to there:
    /// the replay up to `after`, and what this instance delivered before the packet.
    ///
    /// The list is taken out of the lock before sending: a send can close the session (a full
    /// queue) and run the whole disconnect chain, which may broadcast to this socket again.
    /// What arrives meanwhile is still held, and sent by the next round, in order.
    pub(crate) fn release(&self, after: Option<Frontier>) {
        if let Some(after) = after {
            let _ = self.replayed.set(after);
        }
        let after = self.replayed.get();
        loop {
            let batch = {
                let mut held = self.lock_held();
                match held.as_mut() {
                    Some(list) if !list.is_empty() => std::mem::take(list),
                    _ => {
                        *held = None;
                        self.holding.store(false, Ordering::Release);
                        return;
                    }
                }
            };
            for held in batch {
                let frames = match (held.recorded, after) {
                    (Some((recorded, _)), Some(after)) if after.covers(recorded.at) => continue,
                    (Some((recorded, packet)), Some(after))
                        if !recorded.stamp.covers_all(after) =>
                    {
                        encode(&restamped(packet, &recorded.stamp.max(after)))
                    }
                    _ => held.frames,
                };
                let _ = self.session.send_all(frames);
            }
        }
    }

    /// Queues a broadcast's frames (or holds them while the session is being restored);
    /// `recorded` is the place and stamp of one from the recovery log, with its packet.
    pub(crate) fn deliver(
        &self,
        frames: &[Frame],
        recorded: Option<(&Recorded, &Packet)>,
        batch: Option<&mut WriteBatch>,
    ) -> Result<(), SessionClosed> {
        if let (Some((recorded, _)), Some(replayed)) = (recorded, self.replayed.get()) {
            if replayed.covers(recorded.at) {
                return Ok(());
            }
        }
        if self.holding.load(Ordering::Acquire) {
            let mut held = self.lock_held();
            if let Some(list) = held.as_mut() {
                list.push(HeldBroadcast {
                    frames: frames.to_vec(),
                    recorded: recorded.map(|(r, packet)| (r.clone(), packet.clone())),
                });
                return Ok(());
            }
        }
        match batch {
            Some(batch) => batch.send_all(&self.session, frames.iter().cloned()),
            None => self.session.send_all(frames.iter().cloned()),
        }
    }

    fn lock_held(&self) -> std::sync::MutexGuard<'_, Option<Vec<HeldBroadcast>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a recovery would restore of this socket (`None` unless it is recoverable: owned,
    /// with a pid).
    pub fn session_record(&self) -> Option<SessionRecord> {
        Some(SessionRecord {
            pid: self.pid.get()?.clone(),
            sid: self.id,
            nsp: self.ns.name.clone(),
            owner: self.owner.clone()?,
            holder: self.holder,
            rooms: self.rooms().iter().map(|r| r.to_string()).collect(),
        })
    }

    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    pub fn holder(&self) -> u64 {
        self.holder
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The application state attached at connect, if it has type `T`.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.extension.as_ref().and_then(|e| e.downcast_ref())
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Sends a packet to this socket only.
    pub fn send_packet(&self, packet: &Packet) -> Result<(), SessionClosed> {
        self.session.send_all(encode(packet))
    }

    /// Sends packets the server decided to send at once (a recovered client's missed ones):
    /// they may pass the outbound queue's bound; the caller bounds how many.
    pub(crate) fn send_burst(&self, packets: &[&Packet]) -> Result<(), SessionClosed> {
        let frames = packets.iter().flat_map(|p| encode(p)).collect();
        self.session.send_burst(frames)
    }

    pub fn emit(&self, event: &str, args: Vec<Value>) -> Result<(), SessionClosed> {
        self.emit_binary(event, args, Vec::new())
    }

    pub fn emit_binary(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
    ) -> Result<(), SessionClosed> {
        self.send_packet(&Packet::event(
            &self.ns.name,
            event,
            args,
            attachments,
            None,
        ))
    }

    /// Emits an event and waits for the client's acknowledgement.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
        timeout: Duration,
    ) -> Result<AckResponse, AckError> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock_acks().insert(id, tx);
        let packet = Packet::event(&self.ns.name, event, args, attachments, Some(id));
        if self.send_packet(&packet).is_err() {
            self.lock_acks().remove(&id);
            return Err(AckError::Disconnected);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                // Forget the id so a late answer is ignored and nothing leaks.
                self.lock_acks().remove(&id);
                Err(AckError::Timeout(timeout))
            }
        }
    }

    fn lock_acks(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<AckResponse>>> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn on_ack(&self, id: u64, args: Vec<Value>, attachments: Vec<Bytes>) {
        if let Some(tx) = self.lock_acks().remove(&id) {
            let _ = tx.send(AckResponse { args, attachments });
        }
    }

    pub(crate) fn send_ack(&self, id: u64, args: Vec<Value>, attachments: Vec<Bytes>) {
        let _ = self.send_packet(&Packet::ack(&self.ns.name, id, args, attachments));
    }

    pub fn join<S: AsRef<str>>(&self, rooms: &[S]) {
        self.ns.join(self, rooms);
    }

    pub fn leave(&self, room: &str) {
        self.ns.leave(self, room);
    }

    pub fn in_room(&self, room: &str) -> bool {
        self.ns.rooms.is_member(self.id, room)
    }

    pub fn rooms(&self) -> Vec<Room> {
        self.ns.rooms.rooms_of(self.id)
    }

    /// Disconnects this socket from its namespace (the client is told and does not reconnect).
    pub fn disconnect(self: &Arc<Self>) {
        if !self.connected() {
            return;
        }
        let _ = self.send_packet(&Packet::disconnect(&self.ns.name));
        self.on_disconnect(DisconnectReason::ServerNamespaceDisconnect);
    }

    /// Another connection recovered this socket's session: the client of this one is told (if
    /// it still listens) and the socket leaves; its connection closes when it has no other
    /// namespace. Nothing it does later reaches the new socket, which has the same id.
    pub fn replace(self: &Arc<Self>) {
        if !self.connected() {
            return;
        }
        let _ = self.send_packet(&Packet::disconnect(&self.ns.name));
        self.on_disconnect(DisconnectReason::Replaced);
        let idle = self
            .session
            .data::<super::client::Client>()
            .is_none_or(|c| !c.has_namespace());
        if idle {
            self.session.close(CloseReason::ForcedServerClose);
        }
    }

    /// Closes the whole underlying connection (every namespace of this client).
    pub fn close_connection(&self) {
        self.session.close(CloseReason::ForcedServerClose);
    }

    /// Leaves the namespace: rooms, pending acks, then the application's callback. Runs once.
    pub(crate) fn on_disconnect(self: &Arc<Self>, reason: DisconnectReason) {
        if self.connected.swap(false, Ordering::AcqRel) {
            // Kept before the socket leaves its rooms: the kept session needs them, and a store
            // that follows the kept sessions' rooms must know them before the rooms empty.
            if let Some(record) = self.session_record() {
                self.ns.session_closed(record, reason.is_recoverable());
            }
            self.ns.remove_socket(self);
            if let Some(client) = self.session.data::<super::client::Client>() {
                client.remove(&self.ns.name);
            }
            self.lock_acks().clear();
            self.ns.handler.on_disconnect(self, reason);
        }
    }
}

/// The room index finds a socket's handle by its id.
impl crate::rooms::Member for Arc<Socket> {
    fn sid(&self) -> &Sid {
        &self.id
    }
}
