//! A namespace: its sockets, its room index and broadcasting to them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use serde_json::Value;

use super::adapter::{Adapter, Offset, SessionRecord};
use super::encode::encode;
use super::handler::NamespaceHandler;
use super::packet::Packet;
use super::rooms::{RoomChanges, RoomIndex};
use super::socket::Socket;
use crate::engineio::{Frame, Sid};

/// Who a broadcast goes to: sockets in any of `rooms` (all when empty) and in none of `except`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastTarget {
    pub rooms: Vec<String>,
    pub except: Vec<String>,
}

impl BroadcastTarget {
    pub fn room(room: impl Into<String>) -> Self {
        BroadcastTarget {
            rooms: vec![room.into()],
            except: Vec::new(),
        }
    }
    pub fn except(mut self, room: impl Into<String>) -> Self {
        self.except.push(room.into());
        self
    }
}

pub struct Namespace {
    pub name: String,
    pub(crate) handler: Arc<dyn NamespaceHandler>,
    sockets: RwLock<HashMap<Sid, Arc<Socket>>>,
    /// Rooms with their members' sockets (see [`RoomIndex`]): a socket is in it only while it
    /// is in `sockets`, so the `Arc` cycle (a socket holds its namespace) ends when it leaves.
    pub rooms: RoomIndex<Arc<Socket>>,
    /// Set once at start when a relay runs; read on every broadcast, hence no lock.
    adapter: OnceLock<Arc<dyn Adapter>>,
}

impl Namespace {
    pub fn new(name: impl Into<String>, handler: Arc<dyn NamespaceHandler>) -> Self {
        Namespace {
            name: name.into(),
            handler,
            sockets: RwLock::new(HashMap::new()),
            rooms: RoomIndex::default(),
            adapter: OnceLock::new(),
        }
    }

    /// Attaches the adapter that relays this namespace's broadcasts. Only the first call
    /// counts: an adapter is wired once, before sockets arrive.
    pub fn set_adapter(&self, adapter: Arc<dyn Adapter>) -> bool {
        self.adapter.set(adapter).is_ok()
    }

    fn notify(&self, changes: RoomChanges) {
        if changes.created.is_empty() && changes.deleted.is_empty() {
            return;
        }
        if let Some(adapter) = self.adapter.get() {
            adapter.rooms_changed(&self.name, changes);
        }
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
        if let Some(adapter) = self.adapter.get().filter(|a| a.records()) {
            adapter.socket_rooms_changed(&self.name, socket.id);
        }
        self.handler.on_rooms_changed(socket);
    }

    /// The adapter, when it records broadcasts for connection state recovery.
    pub fn recorder(&self) -> Option<&Arc<dyn Adapter>> {
        self.adapter.get().filter(|a| a.records())
    }

    pub(crate) fn session_closed(&self, record: SessionRecord, recoverable: bool) {
        if let Some(adapter) = self.recorder() {
            adapter.session_closed(record, recoverable);
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

    /// Sends `packet` to every socket of `target`, here and (through the adapter) on the
    /// other instances. Returns the number of local recipients.
    /// With recovery on, the adapter delivers locally itself once the packet has its offset,
    /// and the count returned is 0.
    pub fn broadcast(&self, target: &BroadcastTarget, packet: Packet) -> usize {
        self.broadcast_many(target, vec![packet])
    }

    /// Sends several packets to every socket of `target`, in order, like as many
    /// [`Namespace::broadcast`]s, except that each local recipient gets them all in one
    /// queueing (one wake, one flush) instead of one per packet. Through the adapter they
    /// remain one message each (the wire format has one packet per message); with recovery
    /// on, each is recorded with its own offset and delivered as it comes back.
    pub fn broadcast_many(&self, target: &BroadcastTarget, packets: Vec<Packet>) -> usize {
        match self.adapter.get() {
            Some(adapter) if adapter.records() => {
                for packet in packets {
                    adapter.broadcast_recorded(&self.name, target.clone(), packet);
                }
                0
            }
            Some(adapter) => {
                let delivered = self.broadcast_local_many(target, &packets);
                for packet in &packets {
                    adapter.publish(&self.name, target, packet);
                }
                delivered
            }
            None => self.broadcast_local_many(target, &packets),
        }
    }

    /// [`Namespace::broadcast_local`] of several packets, each recipient getting all their
    /// frames in one queueing. Returns the number of local recipients.
    pub fn broadcast_local_many(&self, target: &BroadcastTarget, packets: &[Packet]) -> usize {
        if let [packet] = packets {
            return self.broadcast_local(target, packet);
        }
        let frames: Vec<Frame> = packets.iter().flat_map(encode).collect();
        if frames.is_empty() {
            return 0;
        }
        let recipients = self.deliver(target, &frames, None);
        for packet in packets {
            crate::metrics::broadcast(event_name(packet), recipients);
        }
        recipients
    }

    /// Sends `packet` to the local sockets of `target` only (a relayed broadcast). It is
    /// encoded once and its frames are shared by every recipient's queue.
    pub fn broadcast_local(&self, target: &BroadcastTarget, packet: &Packet) -> usize {
        self.deliver_event(target, packet, None)
    }

    /// Encodes and delivers an event to the local sockets of `target`, with its place in the
    /// recovery log when it has one, and counts it (`events_out_total`, fan-out histogram).
    pub fn deliver_event(
        &self,
        target: &BroadcastTarget,
        packet: &Packet,
        offset: Option<Offset>,
    ) -> usize {
        let recipients = self.deliver(target, &encode(packet), offset);
        crate::metrics::broadcast(event_name(packet), recipients);
        recipients
    }

    /// Delivers already-encoded frames to local sockets; `offset` is the packet's place in
    /// the recovery log, when it has one.
    pub fn deliver(
        &self,
        target: &BroadcastTarget,
        frames: &[Frame],
        offset: Option<Offset>,
    ) -> usize {
        // Collected first (one pass, see `select`): a full queue closes its session, which
        // removes its socket from this namespace, so no lock of ours may be held while queueing.
        let recipients = self.select(target);
        let mut delivered = 0;
        for socket in &recipients {
            if socket.deliver(frames, offset).is_ok() {
                delivered += 1;
            }
        }
        delivered
    }

    /// Emits an event to every socket of `target`, on every instance.
    pub fn emit_to(&self, target: &BroadcastTarget, event: &str, args: Vec<Value>) -> usize {
        self.emit_binary_to(target, event, args, Vec::new())
    }

    pub fn emit_binary_to(
        &self,
        target: &BroadcastTarget,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
    ) -> usize {
        self.broadcast(
            target,
            Packet::event(&self.name, event, args, attachments, None),
        )
    }
}

/// An event packet's name, for the metrics ("" for other packets).
fn event_name(packet: &Packet) -> &str {
    packet
        .data
        .as_ref()
        .and_then(|d| d.get(0))
        .and_then(Value::as_str)
        .unwrap_or_default()
}
