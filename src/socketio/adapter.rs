//! The seam between a namespace and whatever carries its broadcasts to other instances.
//!
//! The protocol layer delivers to its own sockets and tells the adapter two things: a
//! broadcast to forward, and rooms that gained their first or lost their last local member
//! (so a relay can subscribe only to the rooms this instance has an interest in).

use super::namespace::BroadcastTarget;
use super::packet::Packet;
use super::rooms::RoomChanges;

pub trait Adapter: Send + Sync + 'static {
    /// `packet` was just delivered to the local sockets of `target`: forward it to the other
    /// instances. Must not block: it runs on the broadcasting task.
    fn publish(&self, nsp: &str, target: &BroadcastTarget, packet: &Packet);

    /// Rooms of `nsp` were created (first local member) or deleted (last one left).
    fn rooms_changed(&self, nsp: &str, changes: RoomChanges);
}
