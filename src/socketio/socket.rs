//! A client's connection to one namespace: emitting, acknowledgements in both directions,
//! rooms and disconnection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

use super::encode::encode;
use super::handler::{DisconnectReason, Extension};
use super::namespace::Namespace;
use super::packet::Packet;
use super::rooms::Room;
use crate::engineio::{CloseReason, Session, SessionClosed, Sid};

/// A client's answer to an acknowledged emit.
#[derive(Debug, Clone, PartialEq)]
pub struct AckResponse {
    pub args: Vec<Value>,
    pub attachments: Vec<Bytes>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AckError {
    #[error("no acknowledgement within {0:?}")]
    Timeout(Duration),
    #[error("socket disconnected before acknowledging")]
    Disconnected,
}

pub struct Socket {
    pub id: Sid,
    pub ns: Arc<Namespace>,
    session: Arc<Session>,
    /// The CONNECT payload.
    pub auth: Value,
    extension: Option<Extension>,
    acks: Mutex<HashMap<u64, oneshot::Sender<AckResponse>>>,
    next_ack: AtomicU64,
    connected: AtomicBool,
}

impl Socket {
    pub(crate) fn new(
        id: Sid,
        ns: Arc<Namespace>,
        session: Arc<Session>,
        auth: Value,
        extension: Option<Extension>,
    ) -> Self {
        Socket {
            id,
            ns,
            session,
            auth,
            extension,
            acks: Mutex::new(HashMap::new()),
            next_ack: AtomicU64::new(0),
            connected: AtomicBool::new(true),
        }
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The application state attached at connect, if it has type `T`.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.extension.as_ref().and_then(|e| e.downcast_ref())
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Sends a packet to this socket only.
    pub fn send_packet(&self, packet: &Packet) -> Result<(), SessionClosed> {
        self.session.send_all(encode(packet))
    }

    pub fn emit(&self, event: &str, args: Vec<Value>) -> Result<(), SessionClosed> {
        self.emit_binary(event, args, Vec::new())
    }

    pub fn emit_binary(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
    ) -> Result<(), SessionClosed> {
        self.send_packet(&Packet::event(
            &self.ns.name,
            event,
            args,
            attachments,
            None,
        ))
    }

    /// Emits an event and waits for the client's acknowledgement.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
        timeout: Duration,
    ) -> Result<AckResponse, AckError> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock_acks().insert(id, tx);
        let packet = Packet::event(&self.ns.name, event, args, attachments, Some(id));
        if self.send_packet(&packet).is_err() {
            self.lock_acks().remove(&id);
            return Err(AckError::Disconnected);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                // Forget the id so a late answer is ignored and nothing leaks.
                self.lock_acks().remove(&id);
                Err(AckError::Timeout(timeout))
            }
        }
    }

    fn lock_acks(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<AckResponse>>> {
        self.acks.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn on_ack(&self, id: u64, args: Vec<Value>, attachments: Vec<Bytes>) {
        if let Some(tx) = self.lock_acks().remove(&id) {
            let _ = tx.send(AckResponse { args, attachments });
        }
    }

    pub(crate) fn send_ack(&self, id: u64, args: Vec<Value>, attachments: Vec<Bytes>) {
        let _ = self.send_packet(&Packet::ack(&self.ns.name, id, args, attachments));
    }

    pub fn join<S: AsRef<str>>(&self, rooms: &[S]) {
        self.ns.join(self.id, rooms);
    }

    pub fn leave(&self, room: &str) {
        self.ns.leave(self.id, room);
    }

    pub fn in_room(&self, room: &str) -> bool {
        self.ns.rooms.is_member(self.id, room)
    }

    pub fn rooms(&self) -> Vec<Room> {
        self.ns.rooms.rooms_of(self.id)
    }

    /// Disconnects this socket from its namespace (the client is told and does not reconnect).
    pub fn disconnect(self: &Arc<Self>) {
        if !self.connected() {
            return;
        }
        let _ = self.send_packet(&Packet::disconnect(&self.ns.name));
        self.on_disconnect(DisconnectReason::ServerNamespaceDisconnect);
    }

    /// Closes the whole underlying connection (every namespace of this client).
    pub fn close_connection(&self) {
        self.session.close(CloseReason::ForcedServerClose);
    }

    /// Leaves the namespace: rooms, pending acks, then the application's callback. Runs once.
    pub(crate) fn on_disconnect(self: &Arc<Self>, reason: DisconnectReason) {
        if self.connected.swap(false, Ordering::AcqRel) {
            self.ns.remove_socket(self);
            if let Some(client) = self.session.data::<super::client::Client>() {
                client.remove(&self.ns.name);
            }
            self.lock_acks().clear();
            self.ns.handler.on_disconnect(self, reason);
        }
    }
}
