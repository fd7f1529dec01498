//! The connect timeout: a session that has joined no namespace `connect_timeout` after it
//! opened is closed, as the reference's `connectTimeout` does.
//!
//! One task serves every session of the server, instead of a task and a timer per session
//! (256 bytes each for the first 45 s, and a spawn per connect). Every session has the same
//! timeout and its deadline is set when it opens, so deadlines arrive in the order they fall
//! due: a FIFO queue is a complete timer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use engineio::deadlines::{self, Deadlines};
use engineio::Session;

pub(crate) struct ConnectTimeouts {
    timeout: Duration,
    /// Whether a session whose time is up is to be closed (it joined no namespace).
    expired: fn(&Arc<Session>) -> bool,
    queue: Mutex<Queue>,
    /// Wakes the task when the queue was empty (a push never moves the earliest deadline).
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Queue {
    due: VecDeque<(Instant, Weak<Session>)>,
    running: bool,
}

impl ConnectTimeouts {
    pub(crate) fn new(timeout: Duration, expired: fn(&Arc<Session>) -> bool) -> Arc<Self> {
        Arc::new(ConnectTimeouts {
            timeout,
            expired,
            queue: Mutex::default(),
            wake: Arc::new(Notify::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `session`'s timeout.
    pub(crate) fn opened(self: &Arc<Self>, session: &Arc<Session>) {
        let mut q = self.lock();
        let was_empty = q.due.is_empty();
        // A deadline computed a moment before the last one pushed waits for it (microseconds).
        let due = Instant::now() + self.timeout;
        let due = q.due.back().map_or(due, |(last, _)| due.max(*last));
        q.due.push_back((due, Arc::downgrade(session)));
        if !q.running {
            q.running = true;
            tokio::spawn(deadlines::serve(Arc::downgrade(self), self.wake.clone()));
        } else if was_empty {
            self.wake.notify_one();
        }
    }
}

impl Deadlines for ConnectTimeouts {
    /// Closes the sessions whose time is up and still idle; returns the next deadline.
    fn fire(&self, now: Instant) -> Option<Instant> {
        loop {
            let mut q = self.lock();
            match q.due.front() {
                Some((due, _)) if *due <= now => {}
                next => return next.map(|(due, _)| *due),
            }
            let Some((_, weak)) = q.due.pop_front() else {
                continue;
            };
            drop(q);
            if let Some(session) = weak.upgrade() {
                if (self.expired)(&session) {
                    session.close(engineio::CloseReason::ForcedServerClose);
                }
            }
        }
    }
}
