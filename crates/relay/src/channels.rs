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
    /// `{prefix}-csr#{nsp}#` (sharded: `{prefix}-csr#{{nsp}}#`, in the recovery log's slot, so
    /// the record script may SPUBLISH there): with recovery on, broadcasts as recorded in the
    /// log, each with its offset, in log order. Gateways deliver what comes here.
    pub recorded: String,
    /// Set on sharded Pub/Sub.
    sharded: Option<SubscriptionMode>,
}

impl Channels {
    pub fn new(prefix: &str, nsp: &str) -> Self {
        Channels {
            broadcast: format!("{prefix}#{nsp}#"),
            request: format!("{prefix}-request#{nsp}#"),
            response: format!("{prefix}-response#{nsp}#"),
            recorded: format!("{prefix}-csr#{nsp}#"),
            sharded: None,
        }
    }

    pub fn sharded(prefix: &str, nsp: &str, mode: SubscriptionMode) -> Self {
        let broadcast = format!("{prefix}#{nsp}#");
        Channels {
            request: broadcast.clone(),
            response: broadcast.clone(),
            broadcast,
            recorded: format!("{prefix}-csr#{{{nsp}}}#"),
            sharded: Some(mode),
        }
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
        let c = Channels::new("socket.io", "/");
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
        let c = Channels::sharded("socket.io", "/", SubscriptionMode::Dynamic);
        assert_eq!(c.request, "socket.io#/#");
        assert_eq!(c.response_to(Some("f00d")), "socket.io#/#f00d#");
        assert_eq!(c.recorded, "socket.io-csr#{/}#");
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
        let private = Channels::sharded("socket.io", "/", SubscriptionMode::DynamicPrivate);
        assert_eq!(
            private.publish_channel(&rooms(&[sid]), false),
            format!("socket.io#/#{sid}#")
        );
        let fixed = Channels::sharded("socket.io", "/", SubscriptionMode::Static);
        assert_eq!(fixed.publish_channel(&rooms(&["a"]), false), "socket.io#/#");
    }
}
