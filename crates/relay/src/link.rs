//! Whether the relay is connected to Valkey, as the publisher, `/readyz` and the metrics see it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How long the relay waits for a lost link before it goes local-only. A failover (about 2 s
/// with Sentinel, 3 s on a Cluster, measured) or a restart then delays what is sent meanwhile
/// instead of losing it: it waits in the publisher's bounded queue.
pub const HOLD: Duration = Duration::from_secs(5);

pub struct ValkeyLink {
    up: AtomicBool,
    /// Counts reconnections, so connections made before an outage are not reused after it.
    generation: AtomicU64,
    /// The same state for whoever watches it from outside (the gateway's `/readyz`).
    watch: watch::Sender<bool>,
    /// When a link that was up went down (none before the first connection: nothing to hold).
    down_since: Mutex<Option<Instant>>,
}

impl ValkeyLink {
    /// Starts degraded: nothing is relayed until the subscriber has subscribed.
    pub fn new() -> Self {
        crate::metrics::valkey_connected(false);
        ValkeyLink {
            up: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            watch: watch::Sender::new(false),
            down_since: Mutex::new(None),
        }
    }

    /// Whether messages may still be queued for Valkey: the link is up, or went down less
    /// than [`HOLD`] ago.
    pub fn accepts(&self) -> bool {
        self.is_up() || self.hold_until().is_some_and(|t| Instant::now() < t)
    }

    /// Resolves `true` once the link is up, or `false` when it stays down past [`HOLD`].
    pub async fn wait_up(&self) -> bool {
        if self.is_up() {
            return true;
        }
        let Some(deadline) = self.hold_until() else {
            return false;
        };
        let mut rx = self.watch.subscribe();
        tokio::time::timeout_at(deadline, rx.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn hold_until(&self) -> Option<Instant> {
        let since = *self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        since.map(|t| t + HOLD)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// `true` while the relay is up; changes as it goes down and comes back.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.watch.subscribe()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn set_up(&self, channels: usize) {
        *self.down_since.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.up.store(true, Ordering::Release);
        self.watch.send_replace(true);
        crate::metrics::valkey_connected(true);
        tracing::info!(channels, "relay connected");
    }

    /// Marks the relay degraded (local-only); logs only on the transition.
    pub fn set_down(&self, why: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            *self.down_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            tracing::warn!(
                reason = why,
                "relay degraded: serving local-only until Valkey is back"
            );
        }
        self.watch.send_replace(false);
        crate::metrics::valkey_connected(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lost_link_is_waited_for_until_the_hold_ends() {
        let link = ValkeyLink::new();
        // Never connected: nothing to wait for.
        assert!(!link.accepts());
        assert!(!link.wait_up().await);

        link.set_up(1);
        link.set_down("test");
        assert!(link.accepts());
        let back = tokio::time::sleep(HOLD / 2);
        let (up, ()) = tokio::join!(link.wait_up(), async {
            back.await;
            link.set_up(1);
        });
        assert!(up, "back within the hold");

        link.set_down("test");
        tokio::time::sleep(HOLD).await;
        assert!(!link.accepts(), "down past the hold: local-only");
        assert!(!link.wait_up().await);
    }
}
