//! A namespace: its sockets, its room index and broadcasting to them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use serde_json::Value;

use super::adapter::{Adapter, LocalAdapter};
use super::encode::encode;
use super::handler::NamespaceHandler;
use super::packet::Packet;
use super::recovery::{stamped, Recorded, SessionRecord, SessionStore};
use super::rooms::{RoomChanges, RoomIndex};
use super::socket::Socket;
use super::target::BroadcastTarget;
use engineio::sparse::ShrinkWhenSparse;
use engineio::{Frame, Sid, WriteBatch};

pub struct Namespace {
    pub name: String,
    pub(crate) handler: Arc<dyn NamespaceHandler>,
    sockets: RwLock<HashMap<Sid, Arc<Socket>>>,
    /// Rooms with their members' sockets (see [`RoomIndex`]): a socket is in it only while it
    /// is in `sockets`, so the `Arc` cycle (a socket holds its namespace) ends when it leaves.
    pub rooms: RoomIndex<Arc<Socket>>,
    /// Carries broadcasts: [`LocalAdapter`] until a relay is wired in at start. Read on every
    /// broadcast, hence set once and no lock.
    adapter: OnceLock<Arc<dyn Adapter>>,
    /// Kept sessions for connection state recovery, when it is on (set once at start).
    store: OnceLock<Arc<dyn SessionStore>>,
}

impl Namespace {
    pub fn new(name: impl Into<String>, handler: Arc<dyn NamespaceHandler>) -> Self {
        Namespace {
            name: name.into(),
            handler,
            sockets: RwLock::new(HashMap::new()),
            rooms: RoomIndex::default(),
            adapter: OnceLock::new(),
            store: OnceLock::new(),
        }
    }

    /// Attaches the adapter that relays this namespace's broadcasts. Only the first call
    /// counts: an adapter is wired once, before sockets arrive.
    pub fn set_adapter(&self, adapter: Arc<dyn Adapter>) -> bool {
        self.adapter.set(adapter).is_ok()
    }

    /// Turns connection state recovery on with `store`. Only the first call counts.
    pub fn set_session_store(&self, store: Arc<dyn SessionStore>) -> bool {
        self.store.set(store).is_ok()
    }

    /// The kept sessions, when recovery is on.
    pub fn session_store(&self) -> Option<&Arc<dyn SessionStore>> {
        self.store.get()
    }

    /// What the application plugged into this namespace (an adapter tells it of requests from
    /// other servers through it).
    pub fn handler(&self) -> &dyn NamespaceHandler {
        &*self.handler
    }

    pub(crate) fn adapter(&self) -> &dyn Adapter {
        match self.adapter.get() {
            Some(adapter) => &**adapter,
            None => &LocalAdapter,
        }
    }

    fn notify(&self, changes: RoomChanges) {
        if changes.created.is_empty() && changes.deleted.is_empty() {
            return;
        }
        self.adapter().rooms_changed(&self.name, changes);
    }

    pub fn socket(&self, sid: &Sid) -> Option<Arc<Socket>> {
        self.sockets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(sid)
            .cloned()
    }

    pub fn sockets(&self) -> Vec<Arc<Socket>> {
        self.sockets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn socket_count(&self) -> usize {
        self.sockets.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub(crate) fn add_socket(&self, socket: Arc<Socket>) {
        let sid = socket.id;
        self.sockets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sid, socket.clone());
        // Every socket is in the room named by its id, as in the reference.
        self.join(&socket, &[sid.as_str()]);
    }

    /// Removes `socket` and takes it out of every room. Only that very socket: a socket that
    /// was replaced by another with the same id (a recovered session) removes nothing.
    pub(crate) fn remove_socket(&self, socket: &Socket) {
        {
            let mut sockets = self.sockets.write().unwrap_or_else(|e| e.into_inner());
            match sockets.get(&socket.id) {
                Some(current) if std::ptr::eq(&**current, socket) => {
                    sockets.remove(&socket.id);
                    sockets.shrink_when_sparse();
                }
                _ => return,
            }
        }
        let changes = self.rooms.leave_all(socket.id);
        self.notify(changes);
    }

    /// Puts `socket` in `rooms`; a socket that left (or was replaced) joins nothing.
    pub fn join<S: AsRef<str>>(&self, socket: &Socket, rooms: &[S]) {
        let changes = {
            // Held while joining: `remove_socket` takes it (write) before its `leave_all`, so a
            // join racing a disconnect cannot leave the socket in the index after it.
            let sockets = self.sockets.read().unwrap_or_else(|e| e.into_inner());
            let Some(member) = sockets
                .get(&socket.id)
                .filter(|m| std::ptr::eq(&***m, socket))
            else {
                return;
            };
            self.rooms.join(socket.id, member, rooms)
        };
        self.notify(changes);
        self.socket_rooms_changed(socket);
    }

    /// Takes `socket` out of `room`; for a socket that left (or was replaced), nothing.
    pub fn leave(&self, socket: &Socket, room: &str) {
        let changes = {
            let sockets = self.sockets.read().unwrap_or_else(|e| e.into_inner());
            if !sockets
                .get(&socket.id)
                .is_some_and(|m| std::ptr::eq(&**m, socket))
            {
                return;
            }
            self.rooms.leave(socket.id, room)
        };
        self.notify(changes);
        self.socket_rooms_changed(socket);
    }

    fn socket_rooms_changed(&self, socket: &Socket) {
        if let Some(store) = self.store.get() {
            store.socket_rooms_changed(&self.name, socket.id);
        }
        self.handler.on_rooms_changed(socket);
    }

    pub(crate) fn session_closed(&self, record: SessionRecord, recoverable: bool) {
        if let Some(store) = self.store.get() {
            store.session_closed(record, recoverable);
        }
    }

    /// The local sockets a broadcast to `target` reaches, in one pass over its rooms.
    pub fn select(&self, target: &BroadcastTarget) -> Vec<Arc<Socket>> {
        self.rooms
            .select(&target.rooms, &target.except, |excluded| {
                let sockets = self.sockets.read().unwrap_or_else(|e| e.into_inner());
                sockets
                    .iter()
                    .filter(|(sid, _)| !excluded.contains(sid))
                    .map(|(_, socket)| socket.clone())
                    .collect()
            })
    }

    /// Sends `packet` to every socket of `target`, here and on the other instances, through
    /// the adapter: the one path of every broadcast.
    pub fn broadcast(&self, target: &BroadcastTarget, packet: Packet) {
        self.broadcast_many(target, vec![packet]);
    }

    /// Sends several packets to every socket of `target`, in order, like as many
    /// [`Namespace::broadcast`]s; a local recipient gets all those delivered together in one
    /// queueing (see [`Namespace::deliver`]).
    pub fn broadcast_many(&self, target: &BroadcastTarget, packets: Vec<Packet>) {
        self.adapter().broadcast(self, target, packets);
    }

    /// Delivers packets to this instance's sockets of `target` (what an adapter does with a
    /// broadcast, its own or another instance's). Each packet is encoded once and its frames
    /// are shared by every recipient; each recipient gets all of them in one queueing.
    /// Returns the number of recipients.
    pub fn deliver(&self, target: &BroadcastTarget, packets: &[Packet]) -> usize {
        self.deliver_to(target, packets, None, None)
    }

    /// [`Namespace::deliver`] as part of a burst: frames for idle sockets wait for `batch`
    /// (see [`WriteBatch`]).
    pub fn deliver_in(
        &self,
        target: &BroadcastTarget,
        packets: &[Packet],
        batch: &mut WriteBatch,
    ) -> usize {
        self.deliver_to(target, packets, None, Some(batch))
    }

    /// [`Namespace::deliver`] for a packet from the recovery log: it goes out [`stamped`] with
    /// `recorded.stamp`, and a socket that was replayed it already does not get it again.
    pub fn deliver_recorded(
        &self,
        target: &BroadcastTarget,
        packet: Packet,
        recorded: &Recorded,
        batch: Option<&mut WriteBatch>,
    ) -> usize {
        let packet = stamped(packet, &recorded.stamp);
        self.deliver_to(target, std::slice::from_ref(&packet), Some(recorded), batch)
    }

    /// `recorded`, when given, is the place and stamp of the one packet.
    fn deliver_to(
        &self,
        target: &BroadcastTarget,
        packets: &[Packet],
        recorded: Option<&Recorded>,
        mut batch: Option<&mut WriteBatch>,
    ) -> usize {
        let frames: Vec<Frame> = packets.iter().flat_map(encode).collect();
        if frames.is_empty() {
            return 0;
        }
        // Collected first (one pass, see `select`): a full queue closes its session, which
        // removes its socket from this namespace, so no lock of ours may be held while queueing.
        let recipients = self.select(target);
        let mut delivered = 0;
        for socket in &recipients {
            if socket
                .deliver(&frames, recorded.zip(packets.first()), batch.as_deref_mut())
                .is_ok()
            {
                delivered += 1;
            }
        }
        for packet in packets {
            self.handler.on_delivered(packet, delivered);
        }
        delivered
    }

    /// Emits an event to every socket of `target`, on every instance.
    pub fn emit_to(&self, target: &BroadcastTarget, event: &str, args: Vec<Value>) {
        self.emit_binary_to(target, event, args, Vec::new())
    }

    pub fn emit_binary_to(
        &self,
        target: &BroadcastTarget,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
    ) {
        self.broadcast(
            target,
            Packet::event(&self.name, event, args, attachments, None),
        )
    }
}
