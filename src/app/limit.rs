//! How many connect-path calls (session, memberships) the app gets at once from this instance:
//! a limit that adapts to how the app answers (additive increase, multiplicative decrease, as
//! TCP does with its window), with the calls beyond it waiting in line.
//!
//! An app has a concurrency past which it answers *fewer* calls per second, not more (the
//! fixture app here: 286 calls/s at 16 at once, 134/s at 64, with a 5 s tail past the 3 s call
//! timeout). A fixed limit is either too low for a big app or past the knee of a small one, and
//! past the knee a failover collapses: answers come after the timeout, every retry adds work.
//! So the limit grows by one per round of calls answered in good time, and shrinks by a
//! quarter when a call times out, is refused as overloaded (5xx, 429) or takes longer than
//! `slow`; a burst of slow answers to calls made before a decrease counts once.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

pub struct AdaptiveLimit {
    /// Holds `State::issued` permits in all: those of calls in flight and the free ones.
    slots: Semaphore,
    state: Mutex<State>,
    max: usize,
    /// A call answered slower than this means the app is saturated.
    slow: Duration,
}

struct State {
    limit: f64,
    issued: usize,
    last_decrease: Option<Instant>,
}

/// How a call went, for the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (whatever the answer) in `elapsed`.
    Answered(Duration),
    /// Timed out, or refused as overloaded (5xx, 429).
    Overloaded,
    /// Says nothing of the app's load (it could not be reached at all, the caller gave up).
    Neutral,
}

impl AdaptiveLimit {
    /// Starts at a quarter of `max` (at least one), between 1 and `max`.
    pub fn new(max: usize, slow: Duration) -> Self {
        let max = max.max(1);
        let start = (max / 4).max(1);
        AdaptiveLimit {
            slots: Semaphore::new(start),
            state: Mutex::new(State {
                limit: start as f64,
                issued: start,
                last_decrease: None,
            }),
            max,
            slow,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current limit (whole calls).
    pub fn limit(&self) -> usize {
        self.state().limit as usize
    }

    /// A slot now if one is free, else after waiting in line (first come, first served) for at
    /// most `wait`; `None` when the wait ran out.
    pub async fn acquire(&self, wait: Duration) -> Option<Slot<'_>> {
        let permit = match self.slots.try_acquire() {
            Ok(p) => p,
            Err(_) => tokio::time::timeout(wait, self.slots.acquire())
                .await
                .ok()?
                .ok()?,
        };
        Some(Slot {
            limit: self,
            permit: Some(permit),
        })
    }

    fn release(&self, permit: SemaphorePermit<'_>, outcome: Outcome) {
        let mut st = self.state();
        match outcome {
            Outcome::Answered(elapsed) if elapsed < self.slow => {
                // One more per round of `limit` calls answered in good time.
                st.limit = (st.limit + 1.0 / st.limit).min(self.max as f64);
            }
            Outcome::Answered(_) | Outcome::Overloaded => {
                let now = Instant::now();
                // Calls made before the last decrease were made at the old limit: one decrease
                // per `slow` period.
                if st
                    .last_decrease
                    .is_none_or(|t| now.duration_since(t) >= self.slow)
                {
                    st.limit = (st.limit * 0.75).max(1.0);
                    st.last_decrease = Some(now);
                }
            }
            Outcome::Neutral => {}
        }
        let target = st.limit as usize;
        if st.issued > target {
            // Taken out of circulation rather than handed to the next caller, and so are free
            // ones beyond the limit; those of calls still in flight go when they come back.
            permit.forget();
            st.issued -= 1;
            let excess = (st.issued - target.min(st.issued)) as u32;
            let free = excess.min(self.slots.available_permits() as u32);
            if free > 0 {
                if let Ok(p) = self.slots.try_acquire_many(free) {
                    p.forget();
                    st.issued -= free as usize;
                }
            }
        } else {
            drop(permit);
            let more = target - st.issued;
            if more > 0 {
                self.slots.add_permits(more);
                st.issued += more;
            }
        }
    }
}

/// A call's place among those in flight; give it back with [`Slot::done`]. Dropped without it
/// (the caller gave up), it is given back saying nothing of the app.
pub struct Slot<'a> {
    limit: &'a AdaptiveLimit,
    permit: Option<SemaphorePermit<'a>>,
}

impl Slot<'_> {
    pub fn done(mut self, outcome: Outcome) {
        if let Some(p) = self.permit.take() {
            self.limit.release(p, outcome);
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            self.limit.release(p, Outcome::Neutral);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Outcome = Outcome::Answered(Duration::from_millis(5));

    /// Permits in circulation: free ones plus `held`.
    fn issued(l: &AdaptiveLimit, held: usize) -> usize {
        l.slots.available_permits() + held
    }

    #[tokio::test]
    async fn grows_by_one_per_round_of_fast_answers_up_to_the_max() {
        let l = AdaptiveLimit::new(8, Duration::from_secs(1));
        assert_eq!(l.limit(), 2);
        for _ in 0..3 {
            l.acquire(Duration::ZERO).await.expect("free").done(FAST);
        }
        // 2 + 1/2 + 1/2.5 + 1/2.9: about one more per round of answers.
        assert_eq!(l.limit(), 3);
        for _ in 0..200 {
            l.acquire(Duration::ZERO).await.expect("free").done(FAST);
        }
        assert_eq!(l.limit(), 8);
        assert_eq!(issued(&l, 0), 8);
    }

    #[tokio::test]
    async fn an_overload_cuts_a_quarter_once_per_slow_period() {
        let l = AdaptiveLimit::new(64, Duration::from_secs(60));
        for _ in 0..2000 {
            l.acquire(Duration::ZERO).await.expect("free").done(FAST);
        }
        assert_eq!(l.limit(), 64);
        // Eight calls in flight time out together: one decrease, not eight.
        let mut held = Vec::new();
        for _ in 0..8 {
            held.push(l.acquire(Duration::ZERO).await.expect("free"));
        }
        for s in held {
            s.done(Outcome::Overloaded);
        }
        assert_eq!(l.limit(), 48);
        assert_eq!(
            issued(&l, 0),
            48,
            "permits above the limit left circulation"
        );
        // A slow answer is an overload too (once the period has passed: here it has not).
        l.acquire(Duration::ZERO)
            .await
            .expect("free")
            .done(Outcome::Answered(Duration::from_secs(61)));
        assert_eq!(l.limit(), 48);
    }

    #[tokio::test]
    async fn decreases_again_after_the_period_never_below_one() {
        let l = AdaptiveLimit::new(64, Duration::ZERO);
        for _ in 0..50 {
            l.acquire(Duration::ZERO)
                .await
                .expect("free")
                .done(Outcome::Overloaded);
        }
        assert_eq!(l.limit(), 1);
        assert_eq!(issued(&l, 0), 1);
    }

    #[tokio::test]
    async fn a_caller_giving_up_says_nothing_and_the_line_waits() {
        let l = AdaptiveLimit::new(4, Duration::from_secs(1));
        let held = l.acquire(Duration::ZERO).await.expect("the only slot");
        assert!(
            l.acquire(Duration::from_millis(20)).await.is_none(),
            "the line's wait runs out"
        );
        drop(held);
        assert_eq!(l.limit(), 1);
        assert!(l.acquire(Duration::ZERO).await.is_some(), "given back");
    }
}
