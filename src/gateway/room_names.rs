//! The room names of the contract: `user:`, `workspace:`, `channel:` and `dm:` rooms, and the
//! rooms a user's memberships put their sockets in.

use crate::app::Memberships;
use socketio::BroadcastTarget;

const PREFIXES: [&str; 4] = ["user:", "workspace:", "channel:", "dm:"];
const MAX_ROOM_LEN: usize = 256;

/// A room name of the contract: a known prefix, a non-empty id, no control characters.
pub fn is_valid_room(room: &str) -> bool {
    room.len() <= MAX_ROOM_LEN
        && !room.chars().any(char::is_control)
        && PREFIXES
            .iter()
            .any(|p| room.strip_prefix(p).is_some_and(|id| !id.is_empty()))
}

pub fn user_room(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// The user ids of `rooms` when every one of them is a `user:<id>` room.
pub fn user_ids(rooms: &[String]) -> Option<Vec<&str>> {
    rooms
        .iter()
        .map(|r| r.strip_prefix("user:").filter(|id| !id.is_empty()))
        .collect()
}

/// The users all of whose sockets `target` reaches: it names only `user:<id>` rooms and
/// excludes none.
pub fn users_of(target: &BroadcastTarget) -> Option<Vec<String>> {
    if target.rooms.is_empty() || !target.except.is_empty() {
        return None;
    }
    user_ids(&target.rooms).map(|ids| ids.into_iter().map(str::to_owned).collect())
}

pub fn rooms_from_memberships(m: &Memberships) -> Vec<String> {
    let mut rooms = vec![user_room(&m.user_id)];
    rooms.extend(m.workspaces.iter().map(|w| format!("workspace:{w}")));
    rooms.extend(m.channels.iter().map(|c| format!("channel:{}", c.id)));
    rooms.extend(m.conversations.iter().map(|d| format!("dm:{}", d.id)));
    rooms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        for ok in ["user:1", "workspace:w1", "channel:c1", "dm:d1"] {
            assert!(is_valid_room(ok), "{ok}");
        }
        for bad in [
            "",
            "channel:",
            "room:x",
            "conversation:d1",
            "channel:\n",
            &format!("dm:{}", "x".repeat(300)),
        ] {
            assert!(!is_valid_room(bad), "{bad}");
        }
    }
}
