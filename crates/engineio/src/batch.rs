//! Write batches: a burst of deliveries made together goes out as one write per socket.
//!
//! The rule, where deliveries are made: a delivery writes to an idle WebSocket at once
//! ([`Session::send_all`]), unless it goes through a [`WriteBatch`] ([`WriteBatch::send_all`]):
//! then its frames wait in the socket's queue, and the batch writes each socket it touched
//! once, when it is flushed or dropped (or earlier, when it holds more for one socket than the
//! socket's queue bound: a client that was idle is not a slow consumer). A batch marked
//! [`WriteBatch::busy`] (made under load) wakes the sockets' connection tasks instead of
//! writing from the caller's thread: those run on every worker thread, and while they catch up
//! each socket's frames merge into one write.
//!
//! A batch is a plain value on the caller's stack, so it cannot outlive an await by accident
//! (it is not `Send` across one unless the caller moves it), and who batches is visible at
//! every call site.

use std::sync::Arc;

use crate::packet::Frame;
use crate::session::{Session, SessionClosed};

/// The sockets with deferred frames in one burst of deliveries.
#[derive(Default)]
pub struct WriteBatch {
    sessions: Vec<Arc<Session>>,
    busy: bool,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    /// The burst was made under load: its sockets are written by their own tasks.
    pub fn busy(&mut self) {
        self.busy = true;
    }

    /// [`Session::send_all`] as part of this batch: frames for an idle WebSocket wait for the
    /// batch's flush instead of being written now.
    pub fn send_all(
        &mut self,
        session: &Arc<Session>,
        frames: impl IntoIterator<Item = Frame>,
    ) -> Result<(), SessionClosed> {
        if session.send_all_deferred(frames)? {
            self.sessions.push(session.clone());
        }
        Ok(())
    }

    /// Writes what the batch deferred (also done when it is dropped).
    pub fn flush(mut self) {
        self.write();
    }

    fn write(&mut self) {
        let direct = !self.busy;
        for session in self.sessions.drain(..) {
            session.flush_deferred(direct);
        }
    }
}

impl Drop for WriteBatch {
    fn drop(&mut self) {
        self.write();
    }
}
