//! A token bucket: the one rate-limiting primitive of the gateway. The instance-wide handshake
//! rate (`limits.connect_rate_per_s`) and each socket's event rate (`limits.events_per_s` with
//! `limits.events_burst`) are both buckets, so a short burst passes while a sustained flood is
//! cut to the configured rate, without timers or background tasks.

use std::sync::Mutex;
use std::time::Instant;

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

    /// Takes one token if there is one.
    pub fn try_take(&self) -> bool {
        self.try_take_at(Instant::now())
    }

    /// [`Self::try_take`] at a given time (tests drive the clock).
    pub fn try_take_at(&self, now: Instant) -> bool {
        // A poisoned lock only means a panic elsewhere; the two numbers stay meaningful.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(st.last).as_secs_f64();
        st.tokens = (st.tokens + elapsed * self.rate_per_s).min(self.capacity);
        st.last = now.max(st.last);
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
    use std::time::Duration;

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
    fn a_clock_going_backwards_refills_nothing() {
        let bucket = TokenBucket::new(1, 1);
        let t0 = Instant::now() + Duration::from_secs(5);
        assert!(bucket.try_take_at(t0));
        assert!(!bucket.try_take_at(t0 - Duration::from_secs(3)));
        assert!(!bucket.try_take_at(t0 + Duration::from_millis(500)));
        assert!(bucket.try_take_at(t0 + Duration::from_millis(1001)));
    }
}
