//! Write batches: a burst of deliveries made together goes out as one write per socket.
//!
//! A producer normally writes to an idle WebSocket at once (see [`super::session`]). A task
//! that delivers many packets in a row (the relay, handling every Pub/Sub message that has
//! arrived) opens a batch instead: frames for idle sockets are queued without waking anyone,
//! and when the batch ends each touched socket gets all of them in one write.
//!
//! A batch marked [`busy`] (the relay is behind: several messages were waiting) hands its
//! sockets to their connection tasks instead. Those run on every worker thread rather than on
//! the relay's one, and while they catch up each socket's frames pile up and go out in one
//! write: under load the cost per delivery falls instead of the backlog growing.

use std::cell::RefCell;
use std::sync::Arc;

use super::session::Session;

thread_local! {
    /// The batch open on this thread.
    static OPEN: RefCell<Option<Open>> = const { RefCell::new(None) };
}

struct Open {
    /// Sessions with deferred frames.
    sessions: Vec<Arc<Session>>,
    busy: bool,
}

/// Runs `deliver` (synchronous: a batch never spans an await) with writes deferred, then
/// writes what it queued. A batch opened inside another one joins it.
pub fn batched<R>(deliver: impl FnOnce() -> R) -> R {
    let opened = OPEN.with(|open| {
        let mut open = open.borrow_mut();
        if open.is_some() {
            return false;
        }
        *open = Some(Open {
            sessions: Vec::new(),
            busy: false,
        });
        true
    });
    // Flushed on drop, so a panicking delivery cannot leave this thread's batch open.
    let _flush = opened.then_some(Flush);
    deliver()
}

/// Registers `session`'s deferred frames with the open batch; false if there is none.
pub(crate) fn defer(session: &Arc<Session>) -> bool {
    OPEN.with(|open| match open.borrow_mut().as_mut() {
        Some(open) => {
            open.sessions.push(session.clone());
            true
        }
        None => false,
    })
}

/// Marks the open batch as made under load: its sockets are written by their own tasks.
pub fn busy() {
    OPEN.with(|open| {
        if let Some(open) = open.borrow_mut().as_mut() {
            open.busy = true;
        }
    });
}

struct Flush;

impl Drop for Flush {
    fn drop(&mut self) {
        let Some(open) = OPEN.with(|open| open.borrow_mut().take()) else {
            return;
        };
        for session in open.sessions {
            session.flush_deferred(!open.busy);
        }
    }
}
