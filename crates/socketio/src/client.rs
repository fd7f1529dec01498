//! The Socket.IO state of one Engine.IO session: its namespace sockets, the CONNECTs being
//! authorised, and the packet decoder (which holds a binary packet waiting for its attachments).

use std::sync::{Arc, Mutex, MutexGuard};

use super::packet::Decoder;
use super::socket::Socket;

#[derive(Default)]
pub(crate) struct ClientState {
    pub sockets: Vec<Arc<Socket>>,
    /// Namespaces whose CONNECT is being authorised.
    pub pending: Vec<String>,
    pub decoder: Decoder,
}

#[derive(Default)]
pub struct Client {
    state: Mutex<ClientState>,
}

impl Client {
    pub fn new(max_attachments: usize) -> Self {
        let state = ClientState {
            decoder: Decoder::new(max_attachments),
            ..ClientState::default()
        };
        Client {
            state: Mutex::new(state),
        }
    }

    /// Runs the packet decoder outside the lock: parsing a large JSON payload must not hold
    /// up the session's other users. The session's frames arrive one at a time.
    pub(crate) fn decode<T>(&self, f: impl FnOnce(&mut Decoder) -> T) -> T {
        let mut decoder = std::mem::take(&mut self.lock().decoder);
        let out = f(&mut decoder);
        self.lock().decoder = decoder;
        out
    }

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
