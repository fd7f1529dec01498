//! Typing indicators: `typing:start` / `typing:stop` for a room the socket is in, relayed as
//! `typing:update` to the room except the sender. Repeated starts only extend the current one
//! (a burst gives one update), and a start without a stop expires by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::errors::ClientError;
use super::state::SocketState;
use socketio::{BroadcastTarget, Socket};

/// How long a `typing:start` lasts without another start or a stop.
pub const TYPING_TTL: Duration = Duration::from_secs(5);

/// The room of a typing payload: `{channelId}` or `{conversationId}`.
fn typing_room(args: &[Value]) -> Result<String, ClientError> {
    let obj = args.first().and_then(Value::as_object);
    let channel = obj.and_then(|o| o.get("channelId")).and_then(Value::as_str);
    let dm = obj
        .and_then(|o| o.get("conversationId"))
        .and_then(Value::as_str);
    let room = match (channel, dm) {
        (Some(c), None) => format!("channel:{c}"),
        (None, Some(d)) => format!("dm:{d}"),
        _ => {
            return Err(ClientError::bad_payload(
                "expected {channelId} or {conversationId}",
            ))
        }
    };
    if !super::room_names::is_valid_room(&room) {
        return Err(ClientError::bad_payload("invalid id"));
    }
    Ok(room)
}

fn broadcast(socket: &Arc<Socket>, state: &SocketState, room: &str, typing: bool) {
    let target = BroadcastTarget::room(room).except(socket.id.as_str());
    let update = json!({ "room": room, "userId": state.user.id, "user": state.user_json(), "isTyping": typing });
    socket.ns.emit_to(&target, "typing:update", vec![update]);
}

pub fn on_typing(socket: &Arc<Socket>, state: &Arc<SocketState>, args: &[Value], start: bool) {
    let room = match typing_room(args) {
        Ok(r) => r,
        Err(e) => return e.emit_to(socket),
    };
    if !socket.in_room(&room) {
        return ClientError::new("NOT_MEMBER", "not in this room").emit_to(socket);
    }
    let was_typing = {
        let mut typing = state.typing.lock().unwrap_or_else(|e| e.into_inner());
        if start {
            typing
                .insert(room.clone(), Instant::now() + TYPING_TTL)
                .is_some()
        } else {
            typing.remove(&room).is_some()
        }
    };
    if start && !was_typing {
        broadcast(socket, state, &room, true);
        spawn_expiry(socket.clone(), state.clone(), room);
    } else if !start && was_typing {
        broadcast(socket, state, &room, false);
    }
}

/// Ends a typing state whose deadline passed (deadlines move forward on repeated starts).
fn spawn_expiry(socket: Arc<Socket>, state: Arc<SocketState>, room: String) {
    tokio::spawn(async move {
        loop {
            let deadline = state
                .typing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&room)
                .copied();
            let Some(deadline) = deadline else { return };
            if Instant::now() >= deadline {
                let expired = {
                    let mut typing = state.typing.lock().unwrap_or_else(|e| e.into_inner());
                    match typing.get(&room) {
                        Some(d) if Instant::now() >= *d => typing.remove(&room).is_some(),
                        _ => false,
                    }
                };
                if expired && socket.connected() {
                    broadcast(&socket, &state, &room, false);
                }
                if expired {
                    return;
                }
                continue;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    });
}

/// A leaving socket stops typing everywhere.
pub fn on_disconnect(socket: &Arc<Socket>, state: &SocketState) {
    let rooms: Vec<String> = state
        .typing
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .map(|(r, _)| r)
        .collect();
    for room in rooms {
        broadcast(socket, state, &room, false);
    }
}
