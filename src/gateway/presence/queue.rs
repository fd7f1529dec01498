//! The presence task's input: socket changes, queued by socket.
//!
//! Socket callbacks cannot wait, and the task may be waiting for Valkey (up to its call
//! timeout), so the queue holds at most one entry per socket: a change to a socket that
//! already has one waiting is merged into it (counted in `presence_changes_merged_total`).
//! Nothing is dropped and the order within a socket is kept: a merged entry applies as its
//! changes would have, in order (connect, then state and rooms, then disconnect), and only
//! states nobody could have seen in between are skipped (`setAway` then `setActive` is no
//! change). So the queue never holds more entries than sockets that changed since the task
//! last took it, and a disconnect (hence an `offline`) is never lost.

use std::collections::HashMap;
use std::sync::{Mutex, Weak};
use std::time::Instant;

use tokio::sync::{oneshot, Notify};

use engineio::Sid;
use socketio::Socket;

use super::local::Workspaces;

/// One change of a socket, as its callback reports it.
pub enum Change {
    /// Connected, or recovered with the same id (its rooms are read when applied).
    Connected {
        socket: Weak<Socket>,
        user: String,
    },
    Away(bool),
    Rooms(Workspaces),
    /// Disconnected, at this instant and this time (ms since the epoch).
    Disconnected(Instant, u64),
}

/// The changes of one socket since the task last took the queue, merged.
#[derive(Default)]
pub struct SocketChanges {
    pub connected: Option<(Weak<Socket>, String)>,
    pub away: Option<bool>,
    pub workspaces: Option<Workspaces>,
    pub disconnected: Option<(Instant, u64)>,
}

impl SocketChanges {
    fn merge(&mut self, change: Change) {
        match change {
            Change::Connected { socket, user } => {
                // A reconnect within the grace period cancels the disconnect before it.
                self.connected = Some((socket, user));
                self.disconnected = None;
            }
            Change::Away(away) => self.away = Some(away),
            Change::Rooms(workspaces) => self.workspaces = Some(workspaces),
            Change::Disconnected(at, at_ms) => self.disconnected = Some((at, at_ms)),
        }
    }
}

#[derive(Default)]
struct Queued {
    sockets: HashMap<Sid, SocketChanges>,
    stop: Option<oneshot::Sender<()>>,
    closed: bool,
}

#[derive(Default)]
pub struct ChangeQueue {
    queued: Mutex<Queued>,
    wake: Notify,
}

impl ChangeQueue {
    pub fn push(&self, sid: Sid, change: Change) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        if q.closed {
            return;
        }
        let merged = q.sockets.contains_key(&sid);
        q.sockets.entry(sid).or_default().merge(change);
        drop(q);
        if merged {
            metrics::counter!(crate::metrics::names::PRESENCE_CHANGES_MERGED).increment(1);
        }
        self.wake.notify_one();
    }

    /// Asks the task to stop once it has applied what is queued; `done` is told when it has.
    pub fn stop(&self, done: oneshot::Sender<()>) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        q.stop = Some(done);
        q.closed = true;
        drop(q);
        self.wake.notify_one();
    }

    /// Waits until something is queued (a push since the last take is never missed).
    pub async fn ready(&self) {
        self.wake.notified().await
    }

    /// Everything queued, and the stop request if there is one.
    pub fn take(&self) -> (HashMap<Sid, SocketChanges>, Option<oneshot::Sender<()>>) {
        let mut q = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut q.sockets), q.stop.take())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected() -> Change {
        Change::Connected {
            socket: Weak::new(),
            user: "u".into(),
        }
    }

    #[test]
    fn changes_of_one_socket_merge_into_one_entry_in_order() {
        let q = ChangeQueue::default();
        let (a, b) = (Sid::generate(), Sid::generate());
        let t = Instant::now();
        q.push(a, connected());
        q.push(a, Change::Away(true));
        q.push(a, Change::Rooms(["w1".to_owned()].into_iter().collect()));
        q.push(a, Change::Away(false));
        q.push(b, Change::Disconnected(t, 5));
        let (mut sockets, stop) = q.take();
        assert!(stop.is_none());
        assert_eq!(sockets.len(), 2);
        let sa = sockets.remove(&a).unwrap_or_default();
        assert!(sa.connected.is_some() && sa.disconnected.is_none());
        assert_eq!(sa.away, Some(false));
        assert_eq!(sa.workspaces, Some(["w1".to_owned()].into_iter().collect()));
        let sb = sockets.remove(&b).unwrap_or_default();
        assert_eq!(sb.disconnected, Some((t, 5)));
        assert!(q.take().0.is_empty());
    }

    #[test]
    fn a_reconnect_cancels_the_disconnect_before_it_but_not_after() {
        let q = ChangeQueue::default();
        let a = Sid::generate();
        let t = Instant::now();
        q.push(a, Change::Disconnected(t, 1));
        q.push(a, connected());
        let s = q.take().0.remove(&a).unwrap_or_default();
        assert!(s.connected.is_some() && s.disconnected.is_none());
        q.push(a, connected());
        q.push(a, Change::Disconnected(t, 2));
        let s = q.take().0.remove(&a).unwrap_or_default();
        assert!(s.connected.is_some() && s.disconnected == Some((t, 2)));
    }

    #[test]
    fn after_stop_nothing_more_is_queued() {
        let q = ChangeQueue::default();
        let (done, _wait) = oneshot::channel();
        q.stop(done);
        q.push(Sid::generate(), connected());
        let (sockets, stop) = q.take();
        assert!(sockets.is_empty() && stop.is_some());
    }
}
