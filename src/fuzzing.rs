//! What the fuzz targets in `fuzz/` need of the gateway's internals, behind the `fuzzing`
//! feature (off by default; only `fuzz/Cargo.toml` turns it on; it also exposes `engineio`'s
//! WebSocket decoder). The parsers that are public already (Engine.IO and Socket.IO packets,
//! the relay's wire format) are used directly from their crates.

use http::StatusCode;

use crate::app::client::Reply;
use crate::app::{AppError, Authorization, EventReply, Memberships, SessionInfo};

/// How the app client reads one answer, for each call of the contract.
#[derive(Debug)]
pub struct AppAnswers {
    pub session: Result<Option<SessionInfo>, AppError>,
    pub memberships: Result<Memberships, AppError>,
    pub authorization: Result<Authorization, AppError>,
    pub event: Result<EventReply, AppError>,
}

/// Reads `status` and `body` as the answer to each call; `None` for a status HTTP cannot
/// carry. (5xx and 429 never get here in the client: they are an outage before any reading.)
pub fn app_answers(status: u16, body: &[u8]) -> Option<AppAnswers> {
    let status = StatusCode::from_u16(status).ok()?;
    let reply = |call| Reply {
        call,
        status,
        body: bytes::Bytes::copy_from_slice(body),
    };
    Some(AppAnswers {
        session: reply("session").session(),
        memberships: reply("memberships").memberships(),
        authorization: reply("authorize").authorization(),
        event: reply("event").event_reply(),
    })
}
