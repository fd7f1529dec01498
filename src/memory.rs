//! Gives memory back to the system after a peak of sockets.
//!
//! glibc's allocator keeps what a peak freed in its arenas (one per worker thread, and freed
//! chunks below live ones cannot shrink the heap), so a gateway that once held 10,000 sockets
//! keeps that RSS after they are gone: it is reused by the next peak, not leaked, but an
//! operator (or a memory-based autoscaler or alert) cannot tell. `malloc_trim(0)` hands the
//! free pages of every arena back. It walks the heaps (milliseconds), so it runs only after
//! the session count has fallen well below its peak, at most once per check.

use std::time::Duration;

use engineio::Engine;

/// How often the session count is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(30);

/// When to trim: after the sessions fell by a quarter and at least this many from the peak
/// seen since the last trim (a small instance's ups and downs are not worth a walk).
const MIN_DROP: usize = 1000;

/// The peak since the last trim, and whether the count has now fallen far enough from it.
#[derive(Default)]
pub struct TrimPolicy {
    peak: usize,
}

impl TrimPolicy {
    /// Records `sessions`; `true` when memory should be trimmed now.
    pub fn observe(&mut self, sessions: usize) -> bool {
        self.peak = self.peak.max(sessions);
        let dropped = self.peak - sessions;
        if dropped >= MIN_DROP && dropped * 4 >= self.peak {
            self.peak = sessions;
            return true;
        }
        false
    }
}

/// Runs for the life of the process.
pub async fn trim_after_peaks(engine: Engine) {
    let mut policy = TrimPolicy::default();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tick.tick().await;
        if policy.observe(engine.session_count()) {
            trim();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks and releases the allocator's own free memory; it is
    // thread-safe (it takes each arena's lock) and has no preconditions.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        "memory: returned free pages after a peak"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_the_sessions_fell_well_below_their_peak() {
        let mut p = TrimPolicy::default();
        assert!(!p.observe(10_000));
        assert!(!p.observe(9_000), "a tenth down: not yet");
        assert!(p.observe(7_000), "3,000 and 30 % down");
        assert!(!p.observe(7_000), "the peak is now where it trimmed");
        assert!(!p.observe(20_000));
        assert!(p.observe(0));
    }

    #[test]
    fn small_swings_never_trim() {
        let mut p = TrimPolicy::default();
        for n in [800, 0, 900, 10, 999, 0] {
            assert!(!p.observe(n));
        }
    }
}
