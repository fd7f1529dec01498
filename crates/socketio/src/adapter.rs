//! The seams between a namespace and what carries its state beyond this instance.
//!
//! - [`Adapter`] carries broadcasts. Every broadcast of a namespace goes through it: the
//!   [`LocalAdapter`] (a single instance) delivers it to this instance's sockets; a relay
//!   also sends it to the other instances, and delivers theirs here. It also hears which
//!   rooms gained their first or lost their last local member, so a relay can subscribe only
//!   to the rooms this instance has an interest in, and says when those subscriptions are in
//!   place.
//!
//! Kept sessions for connection state recovery have their own seam: [`crate::recovery`].

use super::namespace::Namespace;
use super::packet::Packet;
use super::rooms::RoomChanges;
use super::target::BroadcastTarget;
use super::BoxFuture;

/// Carries a namespace's broadcasts (see the module docs).
pub trait Adapter: Send + Sync + 'static {
    /// Sends `packets` to the sockets of `target`, in order, here (through
    /// [`Namespace::deliver`]) and on every other instance. Runs on the broadcasting task:
    /// it must not block.
    fn broadcast(&self, ns: &Namespace, target: &BroadcastTarget, packets: Vec<Packet>);

    /// Rooms of `nsp` were created (first local member) or deleted (last one left).
    fn rooms_changed(&self, nsp: &str, changes: RoomChanges);

    /// Resolves once every room created so far is followed: a broadcast to it from any
    /// instance reaches this one. A CONNECT reply waits for it (a client told it is connected
    /// gets what is sent to its rooms from then on), and so does a restore before it reads
    /// what the socket missed.
    fn rooms_followed(&self) -> BoxFuture<()> {
        Box::pin(std::future::ready(()))
    }
}

/// A single instance: a broadcast reaches this instance's sockets, and nothing else.
pub struct LocalAdapter;

impl Adapter for LocalAdapter {
    fn broadcast(&self, ns: &Namespace, target: &BroadcastTarget, packets: Vec<Packet>) {
        ns.deliver(target, &packets);
    }

    fn rooms_changed(&self, _nsp: &str, _changes: RoomChanges) {}
}
