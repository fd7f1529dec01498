//! Room names of the contract, the rooms a socket gets from its memberships, and the
//! `room:join` / `room:leave` events (a join only after the app's `authorize` allows it).

use std::sync::Arc;

use serde_json::{json, Value};

use super::errors::ClientError;
use super::Gateway;
use futures_util::StreamExt;

use crate::app::{AppError, Authorization, Memberships};
use socketio::{AckSender, BroadcastTarget, Room, Socket};

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

/// At most this many `authorize` calls at once while a restored socket's rooms are checked.
const REAUTHORIZE_CONCURRENCY: usize = 8;

pub fn rooms_from_memberships(m: &Memberships) -> Vec<String> {
    let mut rooms = vec![user_room(&m.user_id)];
    rooms.extend(m.workspaces.iter().map(|w| format!("workspace:{w}")));
    rooms.extend(m.channels.iter().map(|c| format!("channel:{}", c.id)));
    rooms.extend(m.conversations.iter().map(|d| format!("dm:{}", d.id)));
    rooms
}

/// Joins `rooms` and returns their names as the room index keeps them, so the socket's own
/// list shares them instead of holding copies.
pub fn join_shared(socket: &Socket, rooms: &[Room]) -> Vec<Room> {
    socket.join(rooms);
    let joined = socket.rooms();
    rooms
        .iter()
        .map(|r| joined.iter().find(|j| *j == r).unwrap_or(r).clone())
        .collect()
}

/// The `{room}` argument of `room:join` / `room:leave`.
pub fn room_arg(args: &[Value]) -> Result<String, ClientError> {
    let room = args
        .first()
        .and_then(|a| a.get("room"))
        .and_then(Value::as_str)
        .ok_or_else(|| ClientError::bad_payload("expected {room: string}"))?;
    if !is_valid_room(room) {
        return Err(ClientError::bad_payload("unknown room name"));
    }
    Ok(room.to_owned())
}

impl Gateway {
    pub(super) async fn join_room(
        self: Arc<Self>,
        socket: Arc<Socket>,
        args: Vec<Value>,
        ack: Option<AckSender>,
    ) {
        let result = match room_arg(&args) {
            Err(e) => Err(e),
            Ok(room) => match self.authorize(&socket, &room).await {
                Ok(a) if a.allowed => {
                    socket.join(&[room.as_str()]);
                    Ok(())
                }
                Ok(a) => Err(ClientError::new(
                    "NOT_ALLOWED",
                    a.reason.unwrap_or_else(|| "not_allowed".into()),
                )),
                Err(AppError::Unauthenticated { .. }) => {
                    if let Some(creds) = self.credentials(socket.session()) {
                        self.forget_session(&creds);
                    }
                    Err(ClientError::new("UNAUTHENTICATED", "session gone"))
                }
                Err(AppError::Refused { error, .. }) => Err(ClientError::bad_payload(error)),
                Err(e @ AppError::Unavailable { .. }) => {
                    tracing::warn!(error = %e, "authorize failed");
                    Err(ClientError::unavailable())
                }
            },
        };
        reply(&socket, ack, result);
    }

    /// Which of a restored socket's `kept` rooms (those not among its current memberships) it
    /// may still be in: each one the app's `authorize` allows now. Joins them and returns
    /// them; `Err` when the app could not answer for one (the session is then not recovered,
    /// rather than recovered without a room's missed packets).
    pub(super) async fn reauthorize(
        self: Arc<Self>,
        socket: Arc<Socket>,
        kept: Vec<String>,
    ) -> Result<Vec<String>, ()> {
        let checks = kept
            .into_iter()
            .filter(|room| is_valid_room(room))
            .map(|room| {
                let (gw, socket) = (self.clone(), socket.clone());
                async move {
                    let verdict = gw.authorize(&socket, &room).await;
                    (room, verdict)
                }
            });
        let verdicts: Vec<_> = futures_util::stream::iter(checks)
            .buffer_unordered(REAUTHORIZE_CONCURRENCY)
            .collect()
            .await;
        let mut allowed = Vec::new();
        for (room, verdict) in verdicts {
            match verdict {
                Ok(a) if a.allowed => allowed.push(room),
                Err(e @ AppError::Unavailable { .. }) => {
                    tracing::warn!(error = %e, "authorize failed while restoring a session");
                    return Err(());
                }
                // Not allowed any more, or refused: the room stays behind.
                Ok(_) | Err(_) => {}
            }
        }
        socket.join(&allowed);
        Ok(allowed)
    }

    /// The app's `authorize` call with the socket's handshake credentials.
    async fn authorize(&self, socket: &Socket, room: &str) -> Result<Authorization, AppError> {
        match self.credentials(socket.session()) {
            Some(creds) => self.app.authorize(&creds, room).await,
            None => Err(AppError::Unauthenticated { call: "authorize" }),
        }
    }

    pub(super) fn leave_room(&self, socket: &Arc<Socket>, args: &[Value], ack: Option<AckSender>) {
        let result = room_arg(args).map(|room| socket.leave(&room));
        reply(socket, ack, result);
    }
}

/// Acks `{ok:true}` or `{ok:false, error}`; without an ack, a refusal becomes an `error` event.
fn reply(socket: &Arc<Socket>, ack: Option<AckSender>, result: Result<(), ClientError>) {
    match (result, ack) {
        (Ok(()), Some(ack)) => ack.send(vec![json!({ "ok": true })]),
        (Ok(()), None) => {}
        (Err(e), Some(ack)) => ack.send(vec![e.ack_value()]),
        (Err(e), None) => e.emit_to(socket),
    }
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
