//! The task behind a queue of deadlines (the heartbeats, and any queue a layer above keeps
//! with one fixed delay): it acts on what is due, sleeps until the next deadline or a
//! wake-up, and ends once the queue's owner is gone.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{sleep_until, Instant};

pub trait Deadlines: Send + Sync + 'static {
    /// Acts on everything due at `now`; returns the next deadline, if any.
    fn fire(&self, now: Instant) -> Option<Instant>;
}

/// Serves `queue` until it is dropped. `wake` is notified when a push may have moved the next
/// deadline (the queue was empty).
pub async fn serve<D: Deadlines>(queue: Weak<D>, wake: Arc<Notify>) {
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = match queue.upgrade() {
            Some(q) => q.fire(Instant::now()),
            None => return,
        };
        match next {
            Some(deadline) => {
                tokio::select! {
                    _ = sleep_until(deadline) => {}
                    _ = &mut notified => {}
                }
            }
            // Nothing scheduled: wait for a push, checking now and then for the owner.
            None => {
                let _ = tokio::time::timeout(Duration::from_secs(30), notified).await;
            }
        }
    }
}
