//! Warnings about a failure that repeats per connect or per event (the app down, Valkey gone)
//! would otherwise print one line per socket: tens of thousands in a reconnect storm, burying
//! everything else. A [`WarnThrottle`] lets one through per interval and counts the rest, so
//! the next line says how many were held back. Metrics still count every occurrence.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often one recurring warning may be printed.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

pub struct WarnThrottle {
    every: Duration,
    /// When the last line was printed, and how many occurrences were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl WarnThrottle {
    pub const fn new(every: Duration) -> Self {
        WarnThrottle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held_back)` when this occurrence should be printed (with how many were not since
    /// the last printed one), `None` when it is held back.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, held_back) = &mut *state;
        match last {
            Some(t) if now.saturating_duration_since(*t) < self.every => {
                *held_back += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(held_back))
            }
        }
    }
}

/// Prints a warning through `throttle` (a `static` [`WarnThrottle`]), adding `held_back`.
#[macro_export]
macro_rules! throttled_warn {
    ($throttle:expr, $($field:tt)+) => {
        if let Some(held_back) = $throttle.admit() {
            tracing::warn!(held_back, $($field)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_held_back() {
        let t = WarnThrottle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(t.admit_at(t0), Some(0));
        assert_eq!(t.admit_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.admit_at(t0 + Duration::from_secs(9)), None);
        assert_eq!(t.admit_at(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(t.admit_at(t0 + Duration::from_secs(11)), None);
        assert_eq!(t.admit_at(t0 + Duration::from_secs(30)), Some(1));
        assert_eq!(t.admit_at(t0 + Duration::from_secs(45)), Some(0));
    }
}
