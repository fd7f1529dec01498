//! The seam between a namespace and whatever carries its broadcasts to other instances.
//!
//! The protocol layer delivers to its own sockets and tells the adapter two things: a
//! broadcast to forward, and rooms that gained their first or lost their last local member
//! (so a relay can subscribe only to the rooms this instance has an interest in).
//!
//! An adapter that records broadcasts for connection state recovery takes whole broadcasts
//! instead ([`Adapter::broadcast_recorded`]): it delivers them locally itself, once the
//! shared log has given each its offset, and it keeps sessions so a client coming back to any
//! instance can be restored.

use std::fmt;
use std::str::FromStr;

use super::handler::BoxFuture;
use super::namespace::BroadcastTarget;
use super::packet::Packet;
use super::rooms::RoomChanges;
use crate::engineio::Sid;

/// Where a recorded packet sits in the shared log: ordered, printed `ms-seq` (a Valkey
/// stream id). The client echoes the last one it received when it reconnects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(pub u64, pub u64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

impl FromStr for Offset {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (ms, seq) = s.split_once('-').ok_or(())?;
        Ok(Offset(
            ms.parse().map_err(|_| ())?,
            seq.parse().map_err(|_| ())?,
        ))
    }
}

/// A session as kept for recovery: enough to give the client back its id and rooms, and to
/// give it only to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The private id the client presents to get the session back (a secret: never logged).
    pub pid: String,
    pub sid: Sid,
    pub nsp: String,
    /// The user it belongs to ([`super::Accepted::owner`]).
    pub owner: String,
    /// The socket that holds it now (a random token of each socket). A restore hands the
    /// session to a new socket; writes from the one before are then ignored, so a stale
    /// connection (half-open, frozen, on another instance) can never overwrite or delete it.
    pub holder: u64,
    pub rooms: Vec<String>,
}

/// What other servers asked of every socket of some owners (`socketsJoin`, `socketsLeave`,
/// `disconnectSockets`), as it applies to their kept sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptChange {
    Join(Vec<String>),
    Leave(Vec<String>),
    /// Disconnected: the sessions are not to be recovered.
    Forget,
}

/// A CONNECT asking for a kept session back, from an authenticated owner.
#[derive(Debug, Clone)]
pub struct Claim {
    pub nsp: String,
    pub owner: String,
    pub pid: String,
    /// The last offset the client received.
    pub offset: Offset,
    /// The socket that will hold the session if it is restored ([`SessionRecord::holder`]).
    pub holder: u64,
}

/// A session found again and now held by the claiming connection: its id and rooms (the
/// missed packets come later, from [`Adapter::missed`], once the restored socket's rooms are
/// being followed).
#[derive(Debug, Clone)]
pub struct Restored {
    pub sid: Sid,
    pub rooms: Vec<String>,
    pub offset: Offset,
}

pub trait Adapter: Send + Sync + 'static {
    /// `packet` was just delivered to the local sockets of `target`: forward it to the other
    /// instances. Must not block: it runs on the broadcasting task.
    fn publish(&self, nsp: &str, target: &BroadcastTarget, packet: &Packet);

    /// Rooms of `nsp` were created (first local member) or deleted (last one left).
    fn rooms_changed(&self, nsp: &str, changes: RoomChanges);

    /// Whether broadcasts are recorded for recovery (then [`Adapter::broadcast_recorded`]
    /// is used instead of local delivery plus [`Adapter::publish`]).
    fn records(&self) -> bool {
        false
    }

    /// Records, publishes and delivers locally a broadcast, each copy carrying its offset.
    fn broadcast_recorded(&self, _nsp: &str, _target: BroadcastTarget, _packet: Packet) {}

    /// A socket joined or left a room (its kept session must follow).
    fn socket_rooms_changed(&self, _nsp: &str, _sid: Sid) {}

    /// A recoverable socket connected, or disconnected (`recoverable`: with a reason that
    /// allows recovery; otherwise its session is forgotten).
    fn session_opened(&self, _record: SessionRecord) {}
    fn session_closed(&self, _record: SessionRecord, _recoverable: bool) {}

    /// Hands the kept session of `claim` to the claiming connection if it exists, belongs to
    /// the claim's owner and namespace, and the claim's offset is still in the log. Any other
    /// connection still holding it, here or on another instance, is closed
    /// ([`super::DisconnectReason::Replaced`]). `None` for anything else, revealing nothing.
    fn restore(&self, _claim: Claim) -> BoxFuture<Option<Restored>> {
        Box::pin(async { None })
    }

    /// Other servers asked every socket of these owners to change: their kept sessions follow,
    /// so a reconnect never undoes what was asked.
    fn kept_sessions_changed(&self, _nsp: &str, _owners: &[String], _change: KeptChange) {}

    /// The packets after `offset` that a socket in `rooms` would have received, in order,
    /// each with its offset; `None` when they cannot all be given back.
    fn missed(
        &self,
        _nsp: &str,
        _rooms: Vec<String>,
        _offset: Offset,
    ) -> BoxFuture<Option<Vec<(Offset, Packet)>>> {
        Box::pin(async { None })
    }

    /// Resolves once every room joined so far is followed (its subscription is in place).
    fn settled(&self) -> BoxFuture<()> {
        Box::pin(async {})
    }
}
