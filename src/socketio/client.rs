//! The Socket.IO state of one Engine.IO session: its namespace sockets, the CONNECTs being
//! authorised, and a binary packet waiting for its attachments.

use std::sync::{Arc, Mutex, MutexGuard};

use super::packet::PartialPacket;
use super::socket::Socket;

#[derive(Default)]
pub(crate) struct ClientState {
    pub sockets: Vec<Arc<Socket>>,
    /// Namespaces whose CONNECT is being authorised.
    pub pending: Vec<String>,
    pub partial: Option<PartialPacket>,
}

#[derive(Default)]
pub struct Client {
    state: Mutex<ClientState>,
}

impl Client {
    pub(crate) fn lock(&self) -> MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn socket(&self, nsp: &str) -> Option<Arc<Socket>> {
        self.lock()
            .sockets
            .iter()
            .find(|s| s.ns.name == nsp)
            .cloned()
    }

    pub fn sockets(&self) -> Vec<Arc<Socket>> {
        self.lock().sockets.clone()
    }

    pub(crate) fn remove(&self, nsp: &str) {
        self.lock().sockets.retain(|s| s.ns.name != nsp);
    }

    pub(crate) fn has_namespace(&self) -> bool {
        !self.lock().sockets.is_empty()
    }
}
