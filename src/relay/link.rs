//! Whether the relay is connected to Valkey, as `/readyz`, the metrics and the publisher see it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::server::{Readiness, RelayState};

pub struct Link {
    up: AtomicBool,
    /// Counts reconnections, so connections made before an outage are not reused after it.
    generation: AtomicU64,
    readiness: Readiness,
}

impl Link {
    /// Starts degraded: nothing is relayed until the subscriber has subscribed.
    pub fn new(readiness: Readiness) -> Self {
        readiness.set_relay(RelayState::Down);
        crate::metrics::valkey_connected(false);
        Link {
            up: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            readiness,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn set_up(&self, channels: usize) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.up.store(true, Ordering::Release);
        self.readiness.set_relay(RelayState::Up);
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
        self.readiness.set_relay(RelayState::Down);
        crate::metrics::valkey_connected(false);
    }
}
