//! Who may be in which room: the membership rooms a socket joins at connect (and the
//! bookkeeping re-validation needs to move it between them), `room:join` / `room:leave` (a join
//! only after the app's `authorize` allows it), and the re-authorization of a restored
//! socket's kept rooms.

use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::auth::Authenticator;
use super::errors::ClientError;
use super::room_names::{is_valid_room, rooms_from_memberships};
use super::warn_throttle::{WarnThrottle, WARN_EVERY};
use crate::app::{AppClient, AppError, Authorization, Memberships};
use socketio::{AckSender, Room, Socket};

/// At most this many `authorize` calls at once while a restored socket's rooms are checked.
const REAUTHORIZE_CONCURRENCY: usize = 8;

/// The rooms a socket has from its memberships call, joined before the CONNECT reply; kept
/// because re-validation replaces them with the app's current answer (leaving and joining the
/// difference) and must not touch rooms joined otherwise. Once joined, the names are the room
/// index's own (one allocation per room, not per socket and room).
pub struct MembershipRooms(Mutex<Vec<Room>>);

impl MembershipRooms {
    pub fn of(memberships: &Memberships) -> Self {
        let rooms = rooms_from_memberships(memberships);
        MembershipRooms(Mutex::new(rooms.into_iter().map(Room::from).collect()))
    }

    /// Joins them all.
    pub fn join(&self, socket: &Socket) {
        let mut rooms = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *rooms = join_shared(socket, &rooms);
    }

    /// Moves the socket from its previous membership rooms to `rooms`.
    pub fn replace(&self, socket: &Socket, rooms: &[String]) {
        let mut current = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let same =
            current.len() == rooms.len() && current.iter().zip(rooms).all(|(c, r)| **c == **r);
        if same {
            return;
        }
        for lost in current
            .iter()
            .filter(|c| !rooms.iter().any(|r| c.as_ref() == r.as_str()))
        {
            socket.leave(lost);
        }
        let rooms: Vec<Room> = rooms.iter().map(|r| Room::from(r.as_str())).collect();
        *current = join_shared(socket, &rooms);
    }
}

/// Joins `rooms` and returns their names as the room index keeps them, so the socket's own
/// list shares them instead of holding copies.
fn join_shared(socket: &Socket, rooms: &[Room]) -> Vec<Room> {
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

/// Joins and leaves on a client's request, each join asked of the app.
pub struct RoomPolicy {
    app: Arc<AppClient>,
    /// The socket's credentials for `authorize`, and forgetting its session on a 401.
    auth: Arc<Authenticator>,
}

impl RoomPolicy {
    pub fn new(app: Arc<AppClient>, auth: Arc<Authenticator>) -> Self {
        RoomPolicy { app, auth }
    }

    /// `room:join {room}`.
    pub async fn join(&self, socket: Arc<Socket>, args: Vec<Value>, ack: Option<AckSender>) {
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
                    self.auth.forget_socket(socket.session());
                    Err(ClientError::new("UNAUTHENTICATED", "session gone"))
                }
                Err(AppError::Refused { error, .. }) => Err(ClientError::bad_payload(error)),
                Err(e @ AppError::Unavailable { .. }) => {
                    static THROTTLE: WarnThrottle = WarnThrottle::new(WARN_EVERY);
                    crate::throttled_warn!(THROTTLE, error = %e, "authorize failed");
                    Err(ClientError::unavailable())
                }
            },
        };
        reply(&socket, ack, result);
    }

    /// `room:leave {room}`: no one needs asking.
    pub fn leave(&self, socket: &Arc<Socket>, args: &[Value], ack: Option<AckSender>) {
        let result = room_arg(args).map(|room| socket.leave(&room));
        reply(socket, ack, result);
    }

    /// Which of a restored socket's `kept` rooms (those not among its current memberships) it
    /// may still be in: each one the app's `authorize` allows now. Joins them and returns
    /// them; `Err` when the app could not answer for one (the session is then not recovered,
    /// rather than recovered without a room's missed packets).
    pub async fn reauthorize(
        &self,
        socket: Arc<Socket>,
        kept: Vec<String>,
    ) -> Result<Vec<String>, ()> {
        let checks = kept
            .into_iter()
            .filter(|room| is_valid_room(room))
            .map(|room| {
                let socket = &socket;
                async move {
                    let verdict = self.authorize(socket, &room).await;
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
                    static THROTTLE: WarnThrottle = WarnThrottle::new(WARN_EVERY);
                    crate::throttled_warn!(THROTTLE, error = %e, "authorize failed while restoring a session");
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
        match self.auth.credentials(socket.session()) {
            Some(creds) => self.app.authorize(&creds, room).await,
            None => Err(AppError::Unauthenticated { call: "authorize" }),
        }
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
