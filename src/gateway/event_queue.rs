//! A socket's client events waiting for the app: processed one at a time, in arrival order,
//! by one worker at most, and never more than [`MAX_QUEUED`] waiting.

use std::collections::VecDeque;

use serde_json::Value;
use socketio::AckSender;

/// At most this many forwarded events wait for the app per socket.
pub const MAX_QUEUED: usize = 64;

/// A client event waiting for the app.
pub struct QueuedEvent {
    pub name: &'static str,
    pub args: Vec<Value>,
    pub ack: Option<AckSender>,
}

/// What [`EventQueue::push`] did with an event.
pub enum Queued {
    /// Queued; no worker was running, so the caller starts one.
    StartWorker,
    /// Queued behind the running worker.
    Behind,
    /// The queue is full: the event is handed back to be refused.
    Full(QueuedEvent),
}

#[derive(Default)]
pub struct EventQueue {
    jobs: VecDeque<QueuedEvent>,
    /// A worker is draining `jobs`.
    running: bool,
}

impl EventQueue {
    pub fn push(&mut self, job: QueuedEvent) -> Queued {
        if self.jobs.len() >= MAX_QUEUED {
            return Queued::Full(job);
        }
        self.jobs.push_back(job);
        if std::mem::replace(&mut self.running, true) {
            Queued::Behind
        } else {
            Queued::StartWorker
        }
    }

    /// The worker's next event; `None` ends the worker (the next push starts another).
    pub fn take_next(&mut self) -> Option<QueuedEvent> {
        let job = self.jobs.pop_front();
        if job.is_none() {
            self.running = false;
        }
        job
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> QueuedEvent {
        QueuedEvent {
            name: "message:send",
            args: Vec::new(),
            ack: None,
        }
    }

    #[test]
    fn one_worker_until_the_queue_runs_dry() {
        let mut q = EventQueue::default();
        assert!(matches!(q.push(job()), Queued::StartWorker));
        assert!(matches!(q.push(job()), Queued::Behind));
        assert!(q.take_next().is_some());
        assert!(q.take_next().is_some());
        assert!(q.take_next().is_none());
        assert!(matches!(q.push(job()), Queued::StartWorker));
    }

    #[test]
    fn a_full_queue_hands_the_event_back() {
        let mut q = EventQueue::default();
        for _ in 0..MAX_QUEUED {
            assert!(!matches!(q.push(job()), Queued::Full(_)));
        }
        assert!(matches!(q.push(job()), Queued::Full(_)));
    }
}
