//! Write batches: a burst of deliveries made together goes out as one write per socket.
//!
//! A producer normally writes to an idle WebSocket at once (see [`super::session`]). A task
//! that delivers many packets in a row (the relay, handling every Pub/Sub message that has
//! arrived) opens a batch instead: frames for idle sockets are queued without waking anyone,
//! and when the batch ends each touched socket gets all of them in one write. Under light load
//! a batch holds one message and nothing changes; under heavy load the frames merge, as they
//! would in a queue, without the wake-ups.

use std::cell::RefCell;
use std::sync::Arc;

use super::session::Session;

thread_local! {
    /// Sessions with deferred frames in the batch open on this thread.
    static OPEN: RefCell<Option<Vec<Arc<Session>>>> = const { RefCell::new(None) };
}

/// Runs `deliver` (synchronous: a batch never spans an await) with writes deferred, then
/// writes what it queued. A batch opened inside another one joins it.
pub fn batched<R>(deliver: impl FnOnce() -> R) -> R {
    let opened = OPEN.with(|open| {
        let mut open = open.borrow_mut();
        if open.is_some() {
            return false;
        }
        *open = Some(Vec::new());
        true
    });
    // Flushed on drop, so a panicking delivery cannot leave this thread's batch open.
    let _flush = opened.then_some(Flush);
    deliver()
}

/// Registers `session`'s deferred frames with the open batch; false if there is none.
pub(crate) fn defer(session: &Arc<Session>) -> bool {
    OPEN.with(|open| match open.borrow_mut().as_mut() {
        Some(sessions) => {
            sessions.push(session.clone());
            true
        }
        None => false,
    })
}

struct Flush;

impl Drop for Flush {
    fn drop(&mut self) {
        let sessions = OPEN
            .with(|open| open.borrow_mut().take())
            .unwrap_or_default();
        for session in sessions {
            session.flush_deferred();
        }
    }
}
