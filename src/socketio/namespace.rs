//! A namespace: its sockets, its room index and broadcasting to them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde_json::Value;

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

/// Observes room membership changes (a relay subscribes to a room's channel while it has
/// local members).
pub trait RoomObserver: Send + Sync + 'static {
    fn rooms_changed(&self, nsp: &str, changes: RoomChanges);
}

pub struct Namespace {
    pub name: String,
    pub(crate) handler: Arc<dyn NamespaceHandler>,
    sockets: RwLock<HashMap<Sid, Arc<Socket>>>,
    pub rooms: RoomIndex,
    observer: RwLock<Option<Arc<dyn RoomObserver>>>,
}

impl Namespace {
    pub fn new(name: impl Into<String>, handler: Arc<dyn NamespaceHandler>) -> Self {
        Namespace {
            name: name.into(),
            handler,
            sockets: RwLock::new(HashMap::new()),
            rooms: RoomIndex::default(),
            observer: RwLock::new(None),
        }
    }

    pub fn set_room_observer(&self, observer: Arc<dyn RoomObserver>) {
        *self.observer.write().unwrap_or_else(|e| e.into_inner()) = Some(observer);
    }

    fn notify(&self, changes: RoomChanges) {
        if changes.created.is_empty() && changes.deleted.is_empty() {
            return;
        }
        let observer = self
            .observer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(o) = observer {
            o.rooms_changed(&self.name, changes);
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
            .insert(sid, socket);
        // Every socket is in the room named by its id, as in the reference.
        self.join(sid, &[sid.as_str()]);
    }

    pub(crate) fn remove_socket(&self, socket: &Socket) {
        self.sockets
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&socket.id);
        let changes = self.rooms.leave_all(socket.id);
        self.notify(changes);
    }

    pub fn join<S: AsRef<str>>(&self, sid: Sid, rooms: &[S]) {
        let changes = self.rooms.join(sid, rooms);
        self.notify(changes);
    }

    pub fn leave(&self, sid: Sid, room: &str) {
        let changes = self.rooms.leave(sid, room);
        self.notify(changes);
    }

    /// The local sockets a broadcast to `target` reaches.
    pub fn select(&self, target: &BroadcastTarget) -> Vec<Arc<Socket>> {
        let sids = self.rooms.select(&target.rooms, &target.except, || {
            self.sockets
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .keys()
                .copied()
                .collect()
        });
        let sockets = self.sockets.read().unwrap_or_else(|e| e.into_inner());
        sids.iter()
            .filter_map(|sid| sockets.get(sid).cloned())
            .collect()
    }

    /// Emits an event to the local sockets of `target`. The packet is encoded once and its
    /// frames are shared by every recipient's queue. Returns the number of recipients.
    pub fn broadcast_local(&self, target: &BroadcastTarget, packet: &Packet) -> usize {
        let frames = encode(packet);
        self.deliver(target, &frames)
    }

    /// Delivers already-encoded frames (a relay's decoded broadcast) to local sockets.
    pub fn deliver(&self, target: &BroadcastTarget, frames: &[Frame]) -> usize {
        // Collected first: a full queue closes its session, which removes its socket from
        // this namespace, so no lock of ours may be held while queueing.
        let recipients = self.select(target);
        let mut delivered = 0;
        for socket in &recipients {
            if socket.session().send_all(frames.iter().cloned()).is_ok() {
                delivered += 1;
            }
        }
        delivered
    }

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
        self.broadcast_local(
            target,
            &Packet::event(&self.name, event, args, attachments, None),
        )
    }
}
