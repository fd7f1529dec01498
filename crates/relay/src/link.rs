//! Whether the relay is connected to Valkey, as the publisher, `/readyz` and the metrics see it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::watch;

pub struct ValkeyLink {
    up: AtomicBool,
    /// Counts reconnections, so connections made before an outage are not reused after it.
    generation: AtomicU64,
    /// The same state for whoever watches it from outside (the gateway's `/readyz`).
    watch: watch::Sender<bool>,
}

impl ValkeyLink {
    /// Starts degraded: nothing is relayed until the subscriber has subscribed.
    pub fn new() -> Self {
        crate::metrics::valkey_connected(false);
        ValkeyLink {
            up: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            watch: watch::Sender::new(false),
        }
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
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.up.store(true, Ordering::Release);
        self.watch.send_replace(true);
        crate::metrics::valkey_connected(true);
        tracing::info!(channels, "relay connected");
    }

    /// Marks the relay degraded (local-only); logs only on the transition.
    pub fn set_down(&self, why: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                reason = why,
                "relay degraded: serving local-only until Valkey is back"
            );
        }
        self.watch.send_replace(false);
        crate::metrics::valkey_connected(false);
    }
}
