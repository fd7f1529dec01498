//! The seam for connection state recovery: where a recorded packet sits in the shared log
//! ([`Offset`]), what is kept of a session ([`SessionRecord`]) and the [`SessionStore`] that
//! keeps it, so a client coming back to any instance can be restored. A namespace without a
//! store does not recover sessions.

use std::fmt;
use std::str::FromStr;

use super::packet::Packet;
use super::BoxFuture;
use engineio::Sid;

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
    /// The user it belongs to ([`crate::Accepted::owner`]).
    pub owner: String,
    /// The socket that holds it now (a random token of each socket). A restore hands the
    /// session to a new socket; writes from the one before are then ignored, so a stale
    /// connection (half-open, frozen, on another instance) can never overwrite or delete it.
    pub holder: u64,
    pub rooms: Vec<String>,
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

/// Keeps sessions for connection state recovery (see the module docs). With a store, every
/// broadcast a socket receives carries its offset; restoring goes [`SessionStore::restore`],
/// then (once the restored rooms are joined) [`SessionStore::settled`], then
/// [`SessionStore::missed`].
pub trait SessionStore: Send + Sync + 'static {
    /// Hands the kept session of `claim` to the claiming socket if it exists, belongs to
    /// the claim's owner and namespace, and the claim's offset is still in the log. Any other
    /// socket still holding it, here or on another instance, is closed
    /// ([`crate::DisconnectReason::Replaced`]). `None` for anything else, revealing nothing.
    fn restore(&self, claim: Claim) -> BoxFuture<Option<Restored>>;

    /// Resolves once every room joined so far is followed (its broadcasts reach this
    /// instance), so reading the log after it misses nothing.
    fn settled(&self) -> BoxFuture<()>;

    /// The packets after `offset` that a socket in `rooms` would have received, in order,
    /// each with its offset; `None` when they cannot all be given back.
    fn missed(
        &self,
        nsp: &str,
        rooms: Vec<String>,
        offset: Offset,
    ) -> BoxFuture<Option<Vec<(Offset, Packet)>>>;

    /// A recoverable socket connected (fresh, or restored: then it holds the session now).
    fn session_opened(&self, record: SessionRecord);

    /// A recoverable socket disconnected: its session is kept for the window when
    /// `recoverable` (the reason allows recovery), forgotten otherwise.
    fn session_closed(&self, record: SessionRecord, recoverable: bool);

    /// A socket's rooms changed: its kept session must follow.
    fn socket_rooms_changed(&self, nsp: &str, sid: Sid);
}
