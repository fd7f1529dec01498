//! Gives memory back to the system after a peak of sockets.
//!
//! After 10,000 sockets close, what they used is free inside the allocator; if its pages stayed
//! resident, an operator (or a memory-based autoscaler or alert) would see the peak's RSS for
//! good. Two things return them. What outlives the sockets is dropped: cached app answers once
//! expired (every [`CHECK_EVERY`] here), tables that followed the socket count by themselves
//! (`engineio::sparse`), so the free pages are not pinned by a few live bytes each. Then the
//! allocator, jemalloc, purges the pages that stayed free past its decay time (10 s). It does
//! so as it allocates, and with its background threads on, also while the process is idle,
//! which is exactly after a peak.

use std::time::Duration;

/// How often expired memories are dropped.
const CHECK_EVERY: Duration = Duration::from_secs(30);

/// Turns on jemalloc's background threads, which purge decayed free pages while the process
/// is idle.
#[cfg(feature = "jemalloc")]
pub fn purge_in_background() -> Result<(), tikv_jemalloc_ctl::Error> {
    tikv_jemalloc_ctl::background_thread::write(true)
}

/// Built without jemalloc (for a heap profiler): the system allocator keeps what it keeps.
#[cfg(not(feature = "jemalloc"))]
pub fn purge_in_background() -> Result<(), std::convert::Infallible> {
    Ok(())
}

/// Runs for the life of the process: drops expired memories (`forget_expired`) every
/// [`CHECK_EVERY`].
pub async fn forget_expired_periodically(forget_expired: impl Fn() + Send) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tick.tick().await;
        forget_expired();
    }
}
