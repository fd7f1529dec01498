//! Chat events that go through the app (`message:send`, `message:delete`): forwarded with the
//! socket's cookie, the app's `ack` returned to the client and its `emit` list broadcast.
//! A socket's forwarded events are processed one at a time, in the order they arrived
//! ([`super::event_queue`]). Every event a socket sends, forwarded or not, first takes a token
//! of the bucket made here (`limits.events_per_s`, `limits.events_burst`; the handler takes it
//! before routing).

use std::sync::Arc;

use serde_json::Value;

use super::credentials::CredentialSource;
use super::errors::ClientError;
use super::event_queue::{Queued, QueuedEvent};
use super::state::SocketState;
use super::warn_throttle::{WarnThrottle, WARN_EVERY};
use crate::app::client::EventForward;
use crate::app::{AppClient, AppError};
use crate::config::LimitsSettings;
use engineio::token_bucket::TokenBucket;
use socketio::{AckSender, BroadcastTarget, Socket};

/// Events forwarded to the app, and the check each payload passes first.
pub fn forwarded(name: &str) -> Option<&'static str> {
    match name {
        "message:send" => Some("message:send"),
        "message:delete" => Some("message:delete"),
        _ => None,
    }
}

fn validate(name: &str, args: &[Value]) -> Result<(), ClientError> {
    let Some(Value::Object(obj)) = args.first() else {
        return Err(ClientError::bad_payload(format!(
            "{name} expects an object"
        )));
    };
    match name {
        "message:send" => {
            let targets = ["channelId", "conversationId"]
                .iter()
                .filter(|k| obj.get(**k).is_some_and(Value::is_string))
                .count();
            if targets != 1 {
                return Err(ClientError::bad_payload(
                    "exactly one of channelId or conversationId",
                ));
            }
            if !obj.get("content").is_some_and(Value::is_string) {
                return Err(ClientError::bad_payload("content must be a string"));
            }
        }
        "message:delete"
            if !obj
                .get("messageId")
                .is_some_and(|v| v.is_string() || v.is_number()) =>
        {
            return Err(ClientError::bad_payload("messageId is required"));
        }
        _ => {}
    }
    Ok(())
}

/// Forwards a socket's chat events to the app, in order, and its answers to the rooms.
pub struct EventForwarder {
    app: Arc<AppClient>,
    credentials: Arc<CredentialSource>,
    /// Each socket's event bucket: sustained rate and burst.
    events_per_s: u32,
    events_burst: u32,
}

impl EventForwarder {
    pub fn new(
        app: Arc<AppClient>,
        credentials: Arc<CredentialSource>,
        limits: &LimitsSettings,
    ) -> Self {
        EventForwarder {
            app,
            credentials,
            events_per_s: limits.events_per_s,
            events_burst: limits.events_burst,
        }
    }

    /// A new socket's event rate.
    pub fn bucket(&self) -> TokenBucket {
        TokenBucket::new(self.events_per_s, self.events_burst)
    }

    /// Queues a forwarded event; starts the socket's worker when it is idle.
    pub fn enqueue(
        self: &Arc<Self>,
        socket: &Arc<Socket>,
        state: &Arc<SocketState>,
        job: QueuedEvent,
    ) {
        if let Err(e) = validate(job.name, &job.args) {
            return refuse(socket, job.ack, e);
        }
        let queued = state
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(job);
        match queued {
            Queued::Behind => {}
            Queued::Full(job) => refuse(
                socket,
                job.ack,
                ClientError::new("RATE_LIMITED", "too many pending events"),
            ),
            Queued::StartWorker => {
                let (forwarder, socket, state) = (self.clone(), socket.clone(), state.clone());
                tokio::spawn(async move {
                    loop {
                        let next = state
                            .queue
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .take_next();
                        let Some(job) = next else { return };
                        forwarder.forward(&socket, &state, job).await;
                    }
                });
            }
        }
    }

    async fn forward(&self, socket: &Arc<Socket>, state: &SocketState, job: QueuedEvent) {
        let body = EventForward {
            event: job.name,
            args: &job.args,
            socket_id: socket.id.as_str(),
            user_id: &state.user.id,
        };
        // Read from the handshake per call: the socket keeps its cookie in one place.
        let result = match self.credentials.of(socket.session()) {
            Some(creds) => self.app.forward_event(&creds, job.name, &body).await,
            None => Err(AppError::Unauthenticated { call: "event" }),
        };
        match result {
            Ok(reply) => {
                if let Some(ack) = job.ack {
                    ack.send(reply.ack.into_iter().collect());
                }
                for emit in reply.emit {
                    socket.ns.emit_to(
                        &BroadcastTarget::room(emit.room),
                        &emit.event,
                        vec![emit.data],
                    );
                }
            }
            Err(AppError::Refused { error, .. }) => {
                refuse(socket, job.ack, ClientError::new("APP_REFUSED", error))
            }
            Err(AppError::Unauthenticated { .. }) => {
                refuse(
                    socket,
                    job.ack,
                    ClientError::new("SESSION_EXPIRED", "session expired"),
                );
                socket.disconnect();
            }
            Err(e @ AppError::Unavailable { .. }) => {
                static THROTTLE: WarnThrottle = WarnThrottle::new(WARN_EVERY);
                crate::throttled_warn!(THROTTLE, error = %e, event = job.name, "event forward failed");
                refuse(socket, job.ack, ClientError::unavailable());
            }
        }
    }
}

/// Tells the client: an error ack when it asked for one, and always an `error` event.
pub fn refuse(socket: &Arc<Socket>, ack: Option<AckSender>, e: ClientError) {
    if let Some(ack) = ack {
        ack.send(vec![e.ack_value()]);
    }
    e.emit_to(socket);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payload_checks() {
        assert!(validate(
            "message:send",
            &[json!({"channelId": "c1", "content": "hi"})]
        )
        .is_ok());
        assert!(validate(
            "message:send",
            &[json!({"conversationId": "d1", "content": ""})]
        )
        .is_ok());
        assert!(validate("message:send", &[json!("hi")]).is_err());
        assert!(validate("message:send", &[]).is_err());
        assert!(validate(
            "message:send",
            &[json!({"channelId": "c1", "conversationId": "d1", "content": "x"})]
        )
        .is_err());
        assert!(validate("message:send", &[json!({"channelId": "c1", "content": 3})]).is_err());
        assert!(validate("message:delete", &[json!({"messageId": "m1"})]).is_ok());
        assert!(validate("message:delete", &[json!({})]).is_err());
    }
}
