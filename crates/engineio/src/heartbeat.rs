//! Server-sent heartbeats (Engine.IO v4): a ping every `ping_interval`, and the session closes
//! when the pong does not arrive within `ping_timeout` of the ping being due.
//!
//! Deadlines are absolute, counted from the moment the session opened (before the handshake
//! response left), so task scheduling delays never push them later: a client that stops
//! answering is dropped at `interval + timeout`, as by the reference.
//!
//! One task serves every session of an engine, instead of a task and two timers per session
//! (640 bytes each, idle most of the time). Every session has the same interval and timeout,
//! and a deadline is always "now + a constant" when it is set, so deadlines are set in the
//! order they fall due: two FIFO queues are a complete timer wheel.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::deadlines::{self, Deadlines};
use super::packet::Frame;
use super::session::{CloseReason, Session};

pub(crate) struct Heartbeats {
    interval: Duration,
    timeout: Duration,
    queues: Mutex<Queues>,
    /// Wakes the task when a queue was empty (a push never moves the earliest deadline).
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Queues {
    /// When each session's next ping is due.
    pings: VecDeque<(Instant, Weak<Session>)>,
    /// When each ping sent goes unanswered, with the ping's number.
    timeouts: VecDeque<(Instant, Weak<Session>, u32)>,
    running: bool,
}

/// Pushes keeping the queue in deadline order: a deadline computed a moment before another
/// one was pushed waits for it (microseconds) rather than be passed over.
fn push<T>(queue: &mut VecDeque<(Instant, T)>, due: Instant, item: T) {
    let due = queue.back().map_or(due, |(last, _)| due.max(*last));
    queue.push_back((due, item));
}

impl Heartbeats {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Arc<Self> {
        Arc::new(Heartbeats {
            interval,
            timeout,
            queues: Mutex::new(Queues::default()),
            wake: Arc::new(Notify::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Schedules the first ping of a session opened at `start`.
    pub(crate) fn opened(self: &Arc<Self>, session: &Arc<Session>, start: Instant) {
        let mut q = self.lock();
        let was_empty = q.pings.is_empty();
        push(&mut q.pings, start + self.interval, Arc::downgrade(session));
        if !q.running {
            q.running = true;
            tokio::spawn(deadlines::serve(Arc::downgrade(self), self.wake.clone()));
        } else if was_empty {
            self.wake.notify_one();
        }
    }

    /// The session answered its ping: the next one is due an interval from now.
    pub(crate) fn answered(&self, session: &Arc<Session>) {
        let mut q = self.lock();
        let was_empty = q.pings.is_empty();
        push(
            &mut q.pings,
            Instant::now() + self.interval,
            Arc::downgrade(session),
        );
        drop(q);
        if was_empty {
            self.wake.notify_one();
        }
    }
}

impl Deadlines for Heartbeats {
    /// Sends the pings and closes the sessions that are due; returns the next deadline.
    fn fire(&self, now: Instant) -> Option<Instant> {
        loop {
            let mut q = self.lock();
            let ping = q.pings.front().is_some_and(|(due, _)| *due <= now);
            let timeout = q.timeouts.front().is_some_and(|(due, ..)| *due <= now);
            if ping {
                let Some((due, weak)) = q.pings.pop_front() else {
                    continue;
                };
                drop(q);
                if let Some(session) = weak.upgrade() {
                    if let Some(seq) = session.ping_sent() {
                        session.send_control(Frame::ping());
                        let mut q = self.lock();
                        q.timeouts.push_back((due + self.timeout, weak, seq));
                    }
                }
            } else if timeout {
                let Some((_, weak, seq)) = q.timeouts.pop_front() else {
                    continue;
                };
                drop(q);
                if let Some(session) = weak.upgrade() {
                    if session.pong_overdue(seq) {
                        session.close(CloseReason::PingTimeout);
                    }
                }
            } else {
                let next_ping = q.pings.front().map(|(due, _)| *due);
                let next_timeout = q.timeouts.front().map(|(due, ..)| *due);
                return next_ping.into_iter().chain(next_timeout).min();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_keep_deadline_order() {
        let start = Instant::now();
        let mut q = VecDeque::new();
        push(&mut q, start + Duration::from_millis(10), 1);
        push(&mut q, start + Duration::from_millis(5), 2);
        push(&mut q, start + Duration::from_millis(20), 3);
        let dues: Vec<_> = q.iter().map(|(d, _)| *d - start).collect();
        assert_eq!(
            dues,
            [10, 10, 20].map(Duration::from_millis),
            "an earlier deadline pushed later waits for the one before it"
        );
    }
}
