//! Gives memory back to the system after a peak of sockets.
//!
//! After 10,000 sockets close, what they used is free inside glibc's arenas (one per worker
//! thread), and the pages stay resident: the allocator reuses them for the next peak but never
//! returns them, so an operator (or a memory-based autoscaler or alert) sees the peak's RSS
//! for good. Two things make them returnable: what outlives the sockets is dropped (cached app
//! answers once expired; tables that followed the socket count shrink by themselves, see
//! `engineio::sparse`), so the free pages are not pinned by a few live bytes each; then
//! `malloc_trim(0)` hands the free pages of every arena back. It walks the arenas' free lists
//! (milliseconds, holding each arena's lock), so it runs only when much is free and something
//! changed since it last ran: more became free, or live memory shrank (what it freed may have
//! been the few bytes that kept whole pages resident, such as expired cached answers).

use std::time::Duration;

/// How often expired memories are dropped and the allocator looked at.
const CHECK_EVERY: Duration = Duration::from_secs(30);

/// Free memory worth a trim: at least this much, and this much more than right after the
/// last one...
const MIN_FREE: usize = 16 << 20;

/// ...or live memory smaller by this much.
const MIN_SHRINK: usize = 4 << 20;

/// Decides when to trim from the allocator's free and in-use bytes.
#[derive(Default)]
pub struct TrimPolicy {
    /// Free bytes right after the last trim (trimmed pages still count as free), lowered
    /// whenever free memory was reused, so only a new surplus triggers again.
    free_after_trim: usize,
    /// Bytes in use at the last trim, raised whenever more came into use.
    in_use_at_trim: usize,
}

impl TrimPolicy {
    /// `true` when memory should be trimmed now: much is free, at least half as much as is
    /// in use (a brief dip under load is left to be reused), and since the last trim more
    /// became free or live memory shrank.
    pub fn observe(&mut self, free: usize, in_use: usize) -> bool {
        self.free_after_trim = self.free_after_trim.min(free);
        self.in_use_at_trim = self.in_use_at_trim.max(in_use);
        let surplus = free - self.free_after_trim;
        let shrunk = self.in_use_at_trim - in_use;
        let worth_it = free >= MIN_FREE && free.saturating_mul(2) >= in_use;
        if worth_it && (surplus >= MIN_FREE || shrunk >= MIN_SHRINK) {
            self.free_after_trim = free;
            self.in_use_at_trim = in_use;
            return true;
        }
        false
    }
}

/// Runs for the life of the process: every check drops expired memories first
/// (`forget_expired`), then trims when the policy says so.
pub async fn give_back_after_peaks(forget_expired: impl Fn() + Send) {
    let mut policy = TrimPolicy::default();
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tick.tick().await;
        forget_expired();
        if let Some((free, in_use)) = allocator_bytes() {
            if policy.observe(free, in_use) {
                trim(free);
            }
        }
    }
}

/// Bytes the allocator holds free and bytes in use, over every arena.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn allocator_bytes() -> Option<(usize, usize)> {
    // SAFETY: mallinfo2 only reads the allocator's own bookkeeping (taking each arena's lock);
    // it has no preconditions.
    let info = unsafe { libc::mallinfo2() };
    Some((info.fordblks, info.uordblks + info.hblkhd))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn allocator_bytes() -> Option<(usize, usize)> {
    None
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim(free: usize) {
    // SAFETY: malloc_trim only walks and releases the allocator's own free memory; it is
    // thread-safe (it takes each arena's lock) and has no preconditions.
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(
        free_mib = free >> 20,
        released = released != 0,
        "memory: returned free pages after a peak"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim(_free: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    #[test]
    fn trims_once_a_peaks_memory_is_free() {
        let mut p = TrimPolicy::default();
        assert!(!p.observe(2 * MIB, 100 * MIB), "under load: little free");
        assert!(
            !p.observe(40 * MIB, 100 * MIB),
            "a dip: free is under half of in use"
        );
        assert!(p.observe(70 * MIB, 30 * MIB), "the peak is over");
        assert!(
            !p.observe(70 * MIB, 30 * MIB),
            "trimmed pages still count as free"
        );
        assert!(
            !p.observe(72 * MIB, 28 * MIB),
            "a little more free is not worth a walk"
        );
        assert!(
            p.observe(76 * MIB, 24 * MIB),
            "live memory shrank: what pinned pages may be gone"
        );
        assert!(!p.observe(76 * MIB, 24 * MIB), "nothing changed");
    }

    #[test]
    fn a_later_peak_trims_again_after_its_memory_was_reused() {
        let mut p = TrimPolicy::default();
        assert!(p.observe(70 * MIB, 10 * MIB));
        assert!(!p.observe(5 * MIB, 90 * MIB), "reused by the next peak");
        assert!(p.observe(75 * MIB, 20 * MIB), "and freed again");
    }

    #[test]
    fn small_heaps_never_trim() {
        let mut p = TrimPolicy::default();
        for free in [1, 8, 15, 3, 12] {
            assert!(!p.observe(free * MIB, MIB));
        }
    }
}
