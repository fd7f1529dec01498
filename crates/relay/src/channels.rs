//! Channel names, as `@socket.io/redis-adapter` derives them from its key prefix.

/// The channels of one namespace.
#[derive(Debug, Clone)]
pub struct Channels {
    /// `{prefix}#{nsp}#`: broadcasts to no room or to several rooms.
    pub broadcast: String,
    /// `{prefix}-request#{nsp}#`: requests (socketsJoin, fetchSockets...).
    pub request: String,
    /// `{prefix}-response#{nsp}#`: the generic response channel.
    pub response: String,
    /// `{prefix}-csr#{nsp}#`: with recovery on, broadcasts as recorded in the log, each with
    /// its offset, in log order. Gateways listen here instead of on `broadcast`.
    pub recorded: String,
}

impl Channels {
    pub fn new(prefix: &str, nsp: &str) -> Self {
        Channels {
            broadcast: format!("{prefix}#{nsp}#"),
            request: format!("{prefix}-request#{nsp}#"),
            response: format!("{prefix}-response#{nsp}#"),
            recorded: format!("{prefix}-csr#{nsp}#"),
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

/// `{base}{room}#`.
pub fn room_in(base: &str, room: &str) -> String {
    let mut s = String::with_capacity(base.len() + room.len() + 1);
    s.push_str(base);
    s.push_str(room);
    s.push('#');
    s
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
}
