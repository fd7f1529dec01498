//! Channel names, as `@socket.io/redis-adapter` derives them from its key prefix: those of
//! `createAdapter` (classic Pub/Sub) or of `createShardedAdapter` (sharded Pub/Sub).

use engineio::sid::{SID_LEN, TAG_LEN};
use serde::{Deserialize, Serialize};

/// The `redis.pubsub` setting: which Pub/Sub, and the wire format that goes with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PubSubKind {
    /// PUBLISH/SUBSCRIBE, `createAdapter` and `@socket.io/redis-emitter`.
    #[default]
    Classic,
    /// SPUBLISH/SSUBSCRIBE (Valkey Cluster), `createShardedAdapter`.
    Sharded,
}

/// The `redis.subscription_mode` setting: which rooms have a channel of their own on sharded
/// Pub/Sub, as `createShardedAdapter`'s `subscriptionMode` (every server must use the same).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SubscriptionMode {
    /// None: every broadcast goes through the namespace's channel.
    Static,
    /// Every room whose name does not look like a socket id.
    #[default]
    Dynamic,
    /// Every room, socket ids included.
    DynamicPrivate,
}

/// The channels of one namespace.
#[derive(Debug, Clone)]
pub struct Channels {
    /// `{prefix}#{nsp}#`: broadcasts to no room or to several rooms (sharded: also requests
    /// and every broadcast to a room without its own channel).
    pub broadcast: String,
    /// Classic `{prefix}-request#{nsp}#`: requests (socketsJoin, fetchSockets...). Sharded:
    /// the namespace's channel.
    pub request: String,
    /// Classic `{prefix}-response#{nsp}#`: the generic response channel. Sharded: the
    /// namespace's channel, under which each requester has its own.
    pub response: String,
    /// With recovery on, broadcasts as recorded in the log, each with its offset, in the order
    /// of its partition; gateways deliver what comes here. Classic: `{prefix}-csr#{nsp}#` for
    /// every partition. Sharded: one base per partition in the slot of that partition's log
    /// (`{prefix}-csr#{<log tag>}#`), so the record script may SPUBLISH there.
    recorded: Vec<String>,
    /// How many partitions the recovery log has (see [`Channels::partition_of`]).
    partitions: usize,
    /// Set on sharded Pub/Sub.
    sharded: Option<SubscriptionMode>,
}

impl Channels {
    pub fn new(prefix: &str, nsp: &str, partitions: usize) -> Self {
        Channels {
            broadcast: format!("{prefix}#{nsp}#"),
            request: format!("{prefix}-request#{nsp}#"),
            response: format!("{prefix}-response#{nsp}#"),
            recorded: vec![format!("{prefix}-csr#{nsp}#")],
            partitions: partitions.max(1),
            sharded: None,
        }
    }

    pub fn sharded(prefix: &str, nsp: &str, mode: SubscriptionMode, partitions: usize) -> Self {
        let broadcast = format!("{prefix}#{nsp}#");
        let partitions = partitions.max(1);
        Channels {
            request: broadcast.clone(),
            response: broadcast.clone(),
            broadcast,
            recorded: (0..partitions)
                .map(|p| format!("{prefix}-csr#{{{}}}#", log_tag(nsp, p)))
                .collect(),
            partitions,
            sharded: Some(mode),
        }
    }

    /// The recovery channels' bases (one per partition on sharded Pub/Sub, else one).
    pub fn recorded_bases(&self) -> &[String] {
        &self.recorded
    }

    /// The recovery channels' base of `partition`.
    pub fn recorded_base(&self, partition: usize) -> &str {
        let last = self.recorded.len() - 1;
        &self.recorded[partition.min(last)]
    }

    /// The partition of the log a broadcast to `rooms` is recorded in: its room's for one
    /// room, so a room's broadcasts keep their order; the first for none or several.
    pub fn partition_of(&self, rooms: &[String]) -> usize {
        match rooms {
            [room] => self.partition_of_room(room),
            _ => 0,
        }
    }

    /// The partition of broadcasts to `room` alone (FNV-1a of its name: stable across
    /// instances and versions).
    pub fn partition_of_room(&self, room: &str) -> usize {
        if self.partitions == 1 {
            return 0;
        }
        let hash = room.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        (hash % self.partitions as u64) as usize
    }

    /// The recovery channel of a broadcast to `rooms`.
    pub fn recorded_for(&self, rooms: &[String]) -> String {
        Self::target_in(self.recorded_base(self.partition_of(rooms)), rooms)
    }

    /// Whether a room's recovery channel is under `base` (a recorded base).
    pub fn recorded_under(&self, base: &str, room: &str) -> bool {
        self.recorded_base(self.partition_of_room(room)) == base
    }

    pub fn is_sharded(&self) -> bool {
        self.sharded.is_some()
    }

    /// Whether `room` has a channel of its own under `broadcast` (classic: every room).
    pub fn room_has_channel(&self, room: &str) -> bool {
        match self.sharded {
            None | Some(SubscriptionMode::DynamicPrivate) => true,
            Some(SubscriptionMode::Dynamic) => !looks_like_a_socket_id(room),
            Some(SubscriptionMode::Static) => false,
        }
    }

    /// Where a broadcast to `rooms` is published, as the Node adapter computes it. A sharded
    /// broadcast with acks always takes the namespace's channel: its requester counts every
    /// server subscribed there.
    pub fn publish_channel(&self, rooms: &[String], with_ack: bool) -> String {
        match rooms {
            [room] if !with_ack && self.room_has_channel(room) => room_in(&self.broadcast, room),
            _ => self.broadcast.clone(),
        }
    }

    /// The channel of a broadcast to `rooms` under `base`: the room's own for exactly one.
    pub fn target_in(base: &str, rooms: &[String]) -> String {
        match rooms {
            [room] => room_in(base, room),
            _ => base.to_owned(),
        }
    }

    /// Where a response to a requester goes: its own channel when it gave its uid (8.x
    /// requesters listen there and on the generic one), else the generic one.
    pub fn response_to(&self, uid: Option<&str>) -> String {
        match uid {
            Some(uid) => format!("{}{uid}#", self.response),
            None => self.response.clone(),
        }
    }
}

/// What `createShardedAdapter` takes for a socket id: 20 UTF-16 units, JavaScript's length.
fn looks_like_a_socket_id(room: &str) -> bool {
    room.encode_utf16().count() == 20
}

/// The hash tag of a partition of the recovery log of `nsp`: every key a record script writes
/// and, on sharded Pub/Sub, the channels it publishes to, share one slot. The first partition
/// keeps the tag a log of one partition always had.
pub fn log_tag(nsp: &str, partition: usize) -> String {
    match partition {
        0 => nsp.to_owned(),
        p => format!("{nsp}#{p}"),
    }
}

/// `{base}{room}#`.
pub fn room_in(base: &str, room: &str) -> String {
    let mut s = String::with_capacity(base.len() + room.len() + 1);
    s.push_str(base);
    s.push_str(room);
    s.push('#');
    s
}

/// The pattern matching the channel under `base` of every room named `tag` and then any
/// [`SID_LEN`]` - `[`TAG_LEN`] bytes: the own rooms of the sockets whose ids start with `tag`
/// (see [`engineio::SidTag::made`]). Glob characters in `base` match themselves.
pub fn ids_pattern(base: &str, tag: &str) -> String {
    let mut p = String::with_capacity(base.len() + SID_LEN + 2);
    for c in base.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push_str(tag);
    p.extend(std::iter::repeat_n('?', SID_LEN - TAG_LEN));
    p.push('#');
    p
}

/// The room a channel under `base` names (`""` for `base` itself).
pub fn room_of_in<'a>(base: &str, channel: &'a str) -> Option<&'a str> {
    let rest = channel.strip_prefix(base)?;
    if rest.is_empty() {
        return Some("");
    }
    rest.strip_suffix('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_node_adapter() {
        let c = Channels::new("socket.io", "/", 1);
        assert_eq!(c.broadcast, "socket.io#/#");
        assert_eq!(room_in(&c.broadcast, "channel:1"), "socket.io#/#channel:1#");
        assert_eq!(c.request, "socket.io-request#/#");
        assert_eq!(c.response_to(Some("abc")), "socket.io-response#/#abc#");
        assert_eq!(c.response_to(None), "socket.io-response#/#");
        assert_eq!(room_of_in(&c.broadcast, "socket.io#/#"), Some(""));
        assert_eq!(room_of_in(&c.broadcast, "socket.io#/#a#b#"), Some("a#b"));
        assert_eq!(room_of_in(&c.broadcast, "socket.io#/admin#x#"), None);
        assert_eq!(room_of_in(&c.broadcast, "socket.io-request#/#"), None);
    }

    #[test]
    fn the_ids_pattern_is_exact_and_escapes_the_base() {
        assert_eq!(
            ids_pattern("socket.io#/#", "AbC-"),
            "socket.io#/#AbC-????????????????#"
        );
        assert_eq!(
            ids_pattern("a*b?[c]\\#/#", "t_9z"),
            "a\\*b\\?\\[c\\]\\\\#/#t_9z????????????????#"
        );
    }

    #[test]
    fn sharded_names_and_rooms_match_the_sharded_adapter() {
        let rooms = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let sid = "abcdefghij0123456789";
        let c = Channels::sharded("socket.io", "/", SubscriptionMode::Dynamic, 1);
        assert_eq!(c.request, "socket.io#/#");
        assert_eq!(c.response_to(Some("f00d")), "socket.io#/#f00d#");
        assert_eq!(c.recorded_bases(), ["socket.io-csr#{/}#"]);
        assert_eq!(c.publish_channel(&rooms(&["a"]), false), "socket.io#/#a#");
        assert_eq!(c.publish_channel(&rooms(&["a"]), true), "socket.io#/#");
        assert_eq!(c.publish_channel(&rooms(&[sid]), false), "socket.io#/#");
        assert_eq!(
            c.publish_channel(&rooms(&["a", "b"]), false),
            "socket.io#/#"
        );
        // 20 UTF-16 units, not bytes.
        assert!(c.room_has_channel("é123456789012345678"));
        assert!(!c.room_has_channel("é1234567890123456789"));
        let private = Channels::sharded("socket.io", "/", SubscriptionMode::DynamicPrivate, 1);
        assert_eq!(
            private.publish_channel(&rooms(&[sid]), false),
            format!("socket.io#/#{sid}#")
        );
        let fixed = Channels::sharded("socket.io", "/", SubscriptionMode::Static, 1);
        assert_eq!(fixed.publish_channel(&rooms(&["a"]), false), "socket.io#/#");
    }

    #[test]
    fn a_room_keeps_one_partition_and_sharded_partitions_have_their_own_slot() {
        let rooms = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let c = Channels::sharded("socket.io", "/", SubscriptionMode::Dynamic, 8);
        assert_eq!(c.recorded_bases().len(), 8);
        assert_eq!(c.recorded_base(0), "socket.io-csr#{/}#");
        assert_eq!(c.recorded_base(3), "socket.io-csr#{/#3}#");
        let used: std::collections::HashSet<usize> = (0..200)
            .map(|i| c.partition_of_room(&format!("channel:{i}")))
            .collect();
        assert_eq!(used.len(), 8, "200 rooms spread over every partition");
        let p = c.partition_of(&rooms(&["channel:7"]));
        assert_eq!(p, c.partition_of_room("channel:7"));
        assert_eq!(
            c.recorded_for(&rooms(&["channel:7"])),
            format!("{}channel:7#", c.recorded_base(p))
        );
        assert!(c.recorded_under(c.recorded_base(p), "channel:7"));
        assert_eq!(c.partition_of(&rooms(&[])), 0);
        assert_eq!(c.partition_of(&rooms(&["a", "b"])), 0);
        assert_eq!(c.recorded_for(&rooms(&["a", "b"])), "socket.io-csr#{/}#");
        // Classic: partitions differ, the channels do not (PUBLISH reaches every node).
        let classic = Channels::new("socket.io", "/", 8);
        assert_eq!(classic.recorded_base(5), "socket.io-csr#/#");
        assert_eq!(classic.partition_of_room("channel:7"), p);
    }
}
