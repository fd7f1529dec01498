//! A token bucket: the one rate-limiting primitive of the gateway. The instance-wide handshake
//! rate (`limits.connect_rate_per_s`) and each socket's event rate (`limits.events_per_s` with
//! `limits.events_burst`) are both buckets, so a short burst passes while a sustained flood is
//! cut to the configured rate, without timers or background tasks.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `capacity` tokens at most, refilled continuously at `rate_per_s`; each admitted action takes
/// one. Lazily refilled on each call, so an idle bucket costs nothing.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    rate_per_s: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. A zero capacity is raised to one, so the bucket can ever admit anything.
    pub fn new(rate_per_s: u32, capacity: u32) -> Self {
        TokenBucket {
            capacity: f64::from(capacity.max(1)),
            rate_per_s: f64::from(rate_per_s),
            state: Mutex::new(State {
                tokens: f64::from(capacity.max(1)),
                last: Instant::now(),
            }),
        }
    }

    /// Takes one token now if there is one; otherwise takes one from the future when it will
    /// exist within `max_wait`, and says how long to wait for it (a queue: the bucket goes into
    /// debt, and later callers wait longer). `Err(d)`: no room in the queue before `d` passes.
    pub fn reserve(&self, max_wait: Duration) -> Result<Duration, Duration> {
        self.reserve_at(Instant::now(), max_wait)
    }

    /// [`Self::reserve`] at a given time (tests drive the clock).
    pub fn reserve_at(&self, now: Instant, max_wait: Duration) -> Result<Duration, Duration> {
        let mut st = self.refill(now);
        if st.tokens >= 1.0 {
            st.tokens -= 1.0;
            return Ok(Duration::ZERO);
        }
        if self.rate_per_s <= 0.0 {
            return Err(Duration::MAX);
        }
        // This caller's token exists once the debt and its own token are refilled.
        let wait = (1.0 - st.tokens) / self.rate_per_s;
        let max = max_wait.as_secs_f64();
        if wait <= max {
            st.tokens -= 1.0;
            Ok(Duration::from_secs_f64(wait))
        } else {
            Err(Duration::from_secs_f64(wait - max))
        }
    }

    /// The state, refilled up to `now`.
    fn refill(&self, now: Instant) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the two numbers stay meaningful.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(st.last).as_secs_f64();
        st.tokens = (st.tokens + elapsed * self.rate_per_s).min(self.capacity);
        st.last = now.max(st.last);
        st
    }

    /// Takes one token if there is one.
    pub fn try_take(&self) -> bool {
        self.try_take_at(Instant::now())
    }

    /// [`Self::try_take`] at a given time (tests drive the clock).
    pub fn try_take_at(&self, now: Instant) -> bool {
        let mut st = self.refill(now);
        if st.tokens >= 1.0 {
            st.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let bucket = TokenBucket::new(10, 5);
        let t0 = Instant::now();
        let burst = (0..20).filter(|_| bucket.try_take_at(t0)).count();
        assert_eq!(burst, 5, "a full bucket admits its capacity at once");
        // 10/s: one token every 100 ms.
        assert!(!bucket.try_take_at(t0 + Duration::from_millis(50)));
        assert!(bucket.try_take_at(t0 + Duration::from_millis(110)));
        assert!(!bucket.try_take_at(t0 + Duration::from_millis(120)));
        // Over one second of steady asks, about `rate` are admitted.
        let admitted = (1..=100)
            .filter(|i| bucket.try_take_at(t0 + Duration::from_millis(120 + i * 10)))
            .count();
        assert!((9..=11).contains(&admitted), "admitted {admitted}");
    }

    #[test]
    fn refill_is_capped_at_capacity() {
        let bucket = TokenBucket::new(1000, 3);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(60);
        let n = (0..10).filter(|_| bucket.try_take_at(later)).count();
        assert_eq!(n, 3);
    }

    #[test]
    fn reserve_queues_within_the_wait_then_refuses() {
        // 10/s, a bucket of 2, at most 300 ms of queue: 2 now, 3 queued (100, 200, 300 ms).
        let bucket = TokenBucket::new(10, 2);
        let t0 = Instant::now();
        let max = Duration::from_millis(300);
        let got: Vec<_> = (0..7).map(|_| bucket.reserve_at(t0, max)).collect();
        let waits: Vec<u128> = got
            .iter()
            .filter_map(|r| r.ok())
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(waits, vec![0, 0, 100, 200, 300]);
        // The refused learn when the queue has room again: after the 4th queued token's place.
        let refused: Vec<u128> = got
            .iter()
            .filter_map(|r| r.err())
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(refused, vec![100, 100]);
        // 250 ms later the debt is 0.5 token: two more fit (150 and 250 ms), then none.
        let later = t0 + Duration::from_millis(250);
        assert_eq!(
            bucket.reserve_at(later, max).map(|d| d.as_millis()),
            Ok(150)
        );
        assert_eq!(
            bucket.reserve_at(later, max).map(|d| d.as_millis()),
            Ok(250)
        );
        assert!(bucket.reserve_at(later, max).is_err());
        // The queue drains at the rate: a second later tokens are back and nobody waits.
        let much_later = t0 + Duration::from_millis(1600);
        assert_eq!(bucket.reserve_at(much_later, max), Ok(Duration::ZERO));
    }

    #[test]
    fn reserve_without_wait_is_try_take() {
        let bucket = TokenBucket::new(1, 1);
        let t0 = Instant::now();
        assert_eq!(bucket.reserve_at(t0, Duration::ZERO), Ok(Duration::ZERO));
        let refused = bucket.reserve_at(t0, Duration::ZERO).expect_err("empty");
        assert_eq!(refused.as_millis(), 1000);
        assert!(!bucket.try_take_at(t0));
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let bucket = TokenBucket::new(1, 1);
        let t0 = Instant::now() + Duration::from_secs(5);
        assert!(bucket.try_take_at(t0));
        assert!(!bucket.try_take_at(t0 - Duration::from_secs(3)));
        assert!(!bucket.try_take_at(t0 + Duration::from_millis(500)));
        assert!(bucket.try_take_at(t0 + Duration::from_millis(1001)));
    }
}
