//! The seam for connection state recovery: where a recorded packet sits in the shared log
//! ([`Offset`]), what is kept of a session ([`SessionRecord`]) and the [`SessionStore`] that
//! keeps it, so a client coming back to any instance can be restored. A namespace without a
//! store does not recover sessions.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::packet::Packet;
use super::BoxFuture;
use engineio::Sid;

/// An entry of the shared log: ordered, printed `ms-seq` (a Valkey stream id).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// Where a recorded packet sits: the log is split into partitions, each ordered by its own
/// entry ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub partition: usize,
    pub id: Offset,
}

/// Most partitions a frontier may name (a bound on what a client's offset may make us parse).
pub const MAX_PARTITIONS: usize = 64;

/// What a socket has received of the log: the last entry of each partition (`0-0` for none).
/// It is the offset a client holds and echoes when it reconnects. One partition prints as its
/// entry id (`ms-seq`, as a single log always did); several print compactly (see `Display`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frontier(Vec<Offset>);

impl Frontier {
    /// Nothing received, in each of `partitions`.
    pub fn empty(partitions: usize) -> Self {
        Frontier(vec![Offset::default(); partitions.max(1)])
    }

    pub fn partitions(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, partition: usize) -> Offset {
        self.0.get(partition).copied().unwrap_or_default()
    }

    /// Whether the entry at `at` is at or before this frontier.
    pub fn covers(&self, at: Position) -> bool {
        at.id <= self.get(at.partition)
    }

    /// Whether every partition is at or past `other`'s.
    pub fn covers_all(&self, other: &Frontier) -> bool {
        (0..other.partitions()).all(|p| other.get(p) <= self.get(p))
    }

    /// Moves the partition of `at` up to it; false when it was there already.
    pub fn advance(&mut self, at: Position) -> bool {
        match self.0.get_mut(at.partition) {
            Some(last) if *last < at.id => {
                *last = at.id;
                true
            }
            _ => false,
        }
    }

    /// Each partition at the later of this and `other`.
    pub fn max(&self, other: &Frontier) -> Frontier {
        Frontier(
            (0..self.partitions())
                .map(|p| self.get(p).max(other.get(p)))
                .collect(),
        )
    }
}

/// A recorded packet on its way to this instance's sockets: where it sits in the log, and the
/// offset it goes out with (the instance's frontier once it is delivered, see [`stamped`]).
#[derive(Clone, Debug)]
pub struct Recorded {
    pub at: Position,
    pub stamp: Frontier,
}

/// The packet as a client receives it with recovery on: its offset is its last argument
/// (Socket.IO's convention: the client keeps the last argument of each event it gets).
pub fn stamped(mut packet: Packet, stamp: &Frontier) -> Packet {
    if let Some(Value::Array(items)) = packet.data.as_mut() {
        items.push(Value::String(stamp.to_string()));
    }
    packet
}

/// A [`stamped`] packet with `stamp` in place of the offset it carried.
pub(crate) fn restamped(mut packet: Packet, stamp: &Frontier) -> Packet {
    if let Some(Value::Array(items)) = packet.data.as_mut() {
        if let Some(last) = items.last_mut() {
            *last = Value::String(stamp.to_string());
        }
    }
    packet
}

/// Several partitions: `{newest ms}~` then, per partition and separated by `_`, how many ms
/// older its entry is, and `.{seq}` when the sequence is not 0, all base 36; an empty field
/// is `0-0`. Active partitions sit close together in time, so a frontier of 8 stays short:
/// it is sent with every recorded packet.
impl fmt::Display for Frontier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [one] = self.0.as_slice() {
            return write!(f, "{one}");
        }
        let newest = self.0.iter().map(|o| o.0).max().unwrap_or(0);
        write!(f, "{}~", Base36(newest))?;
        for (p, at) in self.0.iter().enumerate() {
            if p > 0 {
                f.write_str("_")?;
            }
            if *at == Offset::default() {
                continue;
            }
            write!(f, "{}", Base36(newest - at.0))?;
            if at.1 != 0 {
                write!(f, ".{}", Base36(at.1))?;
            }
        }
        Ok(())
    }
}

impl FromStr for Frontier {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let Some((newest, rest)) = s.split_once('~') else {
            return Ok(Frontier(vec![s.parse()?]));
        };
        let newest = base36(newest)?;
        let mut parts = Vec::new();
        for field in rest.split('_') {
            if parts.len() == MAX_PARTITIONS {
                return Err(());
            }
            if field.is_empty() {
                parts.push(Offset::default());
                continue;
            }
            let (older, seq) = match field.split_once('.') {
                Some((older, seq)) => (base36(older)?, base36(seq)?),
                None => (base36(field)?, 0),
            };
            parts.push(Offset(newest.checked_sub(older).ok_or(())?, seq));
        }
        Ok(Frontier(parts))
    }
}

struct Base36(u64);

impl fmt::Display for Base36 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = [0u8; 13];
        let (mut n, mut i) = (self.0, digits.len());
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize];
            n /= 36;
            if n == 0 {
                break;
            }
        }
        f.write_str(std::str::from_utf8(&digits[i..]).map_err(|_| fmt::Error)?)
    }
}

fn base36(s: &str) -> Result<u64, ()> {
    // Lowercase only, as printed: one frontier has one spelling.
    if s.is_empty() || s.bytes().any(|b| b.is_ascii_uppercase() || b == b'+') {
        return Err(());
    }
    u64::from_str_radix(s, 36).map_err(|_| ())
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
    /// What the client received of the log (the last offset it got).
    pub offset: Frontier,
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
    pub offset: Frontier,
}

/// What a restored client missed: the packets in the order to send them, each carrying the
/// client's offset once it has it, and `through`, that offset after the last of them (the
/// claim's own offset when nothing was missed).
#[derive(Debug, Clone)]
pub struct Missed {
    pub packets: Vec<Packet>,
    pub through: Frontier,
}

/// Keeps sessions for connection state recovery (see the module docs). With a store, every
/// broadcast a socket receives carries its offset; restoring goes [`SessionStore::restore`],
/// then (once the restored rooms are joined and followed, [`crate::Adapter::rooms_followed`])
/// [`SessionStore::missed`].
pub trait SessionStore: Send + Sync + 'static {
    /// Hands the kept session of `claim` to the claiming socket if it exists, belongs to
    /// the claim's owner and namespace, and the claim's offset is still in the log. Any other
    /// socket still holding it, here or on another instance, is closed
    /// ([`crate::DisconnectReason::Replaced`]). `None` for anything else, revealing nothing.
    fn restore(&self, claim: Claim) -> BoxFuture<Option<Restored>>;

    /// The packets after `offset` that a socket in `rooms` would have received, in order
    /// within each partition; `None` when they cannot all be given back. Once it resolves,
    /// every live broadcast this instance stamps is at or past [`Missed::through`], so a
    /// client's offset never moves back.
    fn missed(&self, nsp: &str, rooms: Vec<String>, offset: Frontier) -> BoxFuture<Option<Missed>>;

    /// A recoverable socket connected (fresh, or restored: then it holds the session now).
    fn session_opened(&self, record: SessionRecord);

    /// A recoverable socket disconnected: its session is kept for the window when
    /// `recoverable` (the reason allows recovery), forgotten otherwise.
    fn session_closed(&self, record: SessionRecord, recoverable: bool);

    /// A socket's rooms changed: its kept session must follow.
    fn socket_rooms_changed(&self, nsp: &str, sid: Sid);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frontier(ids: &[(u64, u64)]) -> Frontier {
        Frontier(ids.iter().map(|&(ms, seq)| Offset(ms, seq)).collect())
    }

    #[test]
    fn a_stamp_is_the_last_argument_and_can_be_replaced() {
        let packet = Packet::event("/", "news", vec![Value::from("hi")], Vec::new(), None);
        let first = frontier(&[(5, 0), (9, 1)]);
        let later = first.max(&frontier(&[(7, 2), (3, 0)]));
        let sent = stamped(packet, &first);
        assert_eq!(
            sent.data,
            Some(serde_json::json!(["news", "hi", first.to_string()]))
        );
        let again = restamped(sent, &later);
        assert_eq!(
            again.data,
            Some(serde_json::json!(["news", "hi", later.to_string()]))
        );
        assert_eq!(later, frontier(&[(7, 2), (9, 1)]));
    }

    #[test]
    fn one_partition_prints_as_a_stream_id() {
        let f = frontier(&[(1_733_480_000_123, 4)]);
        assert_eq!(f.to_string(), "1733480000123-4");
        assert_eq!("1733480000123-4".parse::<Frontier>(), Ok(f));
    }

    #[test]
    fn several_partitions_print_short_and_read_back() {
        let f = frontier(&[
            (1_733_480_000_123, 0),
            (0, 0),
            (1_733_479_999_000, 37),
            (1_733_480_000_123, 1),
        ]);
        let s = f.to_string();
        assert_eq!(s, "m4cl8ghn~0__v7.11_0.1");
        assert_eq!(s.parse::<Frontier>(), Ok(f));
        let eight = Frontier::empty(8).to_string();
        assert_eq!(eight, "0~_______");
        assert_eq!(eight.parse::<Frontier>(), Ok(Frontier::empty(8)));
    }

    #[test]
    fn malformed_frontiers_are_refused() {
        for bad in [
            "", "~", "!~1", "x~y", "5~9", "5~1.", "5~A", "5~+1", "1-", "-1", "a-b", "5~1..2",
        ] {
            assert!(bad.parse::<Frontier>().is_err(), "{bad:?} was taken");
        }
        let too_many = format!("5~{}", "_".repeat(MAX_PARTITIONS));
        assert!(too_many.parse::<Frontier>().is_err());
    }

    #[test]
    fn advancing_moves_one_partition_forward_only() {
        let mut f = Frontier::empty(2);
        let at = |partition, ms| Position {
            partition,
            id: Offset(ms, 0),
        };
        assert!(f.advance(at(1, 5)));
        assert!(!f.advance(at(1, 5)));
        assert!(!f.advance(at(1, 4)));
        assert!(!f.advance(at(2, 9)), "no such partition");
        assert!(f.covers(at(1, 5)) && !f.covers(at(0, 1)));
        assert!(f.covers_all(&Frontier::empty(2)));
        assert_eq!(
            f.max(&frontier(&[(3, 0), (1, 0)])),
            frontier(&[(3, 0), (5, 0)])
        );
    }
}
