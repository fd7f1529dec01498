//! A lock-free latency histogram: 1 µs buckets up to 100 ms, 100 µs buckets up to 10 s, and
//! one bucket above. Snapshots are subtracted to get the distribution of one time window.

use std::sync::atomic::{AtomicU64, Ordering};

const FINE_LIMIT: u64 = 100_000; // µs, 1 µs resolution below
const COARSE_STEP: u64 = 100; // µs
const COARSE_LIMIT: u64 = 10_000_000; // µs
const FINE: usize = FINE_LIMIT as usize;
const COARSE: usize = ((COARSE_LIMIT - FINE_LIMIT) / COARSE_STEP) as usize;

pub struct Hist {
    buckets: Box<[AtomicU64]>,
}

impl Default for Hist {
    fn default() -> Self {
        Hist {
            buckets: (0..FINE + COARSE + 1).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn index(us: u64) -> usize {
    if us < FINE_LIMIT {
        us as usize
    } else if us < COARSE_LIMIT {
        FINE + ((us - FINE_LIMIT) / COARSE_STEP) as usize
    } else {
        FINE + COARSE
    }
}

fn value(i: usize) -> u64 {
    if i < FINE {
        i as u64
    } else if i < FINE + COARSE {
        FINE_LIMIT + (i - FINE) as u64 * COARSE_STEP
    } else {
        COARSE_LIMIT
    }
}

impl Hist {
    pub fn record(&self, us: u64) {
        self.buckets[index(us)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot(
            self.buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        )
    }
}

/// Bucket counts at one instant.
#[derive(Clone)]
pub struct Snapshot(Vec<u64>);

impl Snapshot {
    /// No counts.
    pub fn empty() -> Snapshot {
        Snapshot(vec![0; FINE + COARSE + 1])
    }

    /// The non-empty buckets as (index, count) pairs (to send between processes).
    pub fn to_sparse(&self) -> Vec<(usize, u64)> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i, *c))
            .collect()
    }

    /// Adds (index, count) pairs; pairs out of range are ignored.
    pub fn add_sparse(&mut self, pairs: impl IntoIterator<Item = (usize, u64)>) {
        for (i, c) in pairs {
            if let Some(b) = self.0.get_mut(i) {
                *b += c;
            }
        }
    }

    /// The counts recorded between `earlier` and `self`.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot(
            self.0
                .iter()
                .zip(&earlier.0)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        )
    }

    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The latency (µs) at quantile `q` in [0, 1]; None when empty. Values at or above 10 s
    /// report 10 s.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.0.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(value(i));
            }
        }
        Some(COARSE_LIMIT)
    }

    pub fn mean(&self) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let sum: f64 = self
            .0
            .iter()
            .enumerate()
            .map(|(i, c)| value(i) as f64 * *c as f64)
            .sum();
        Some(sum / n as f64)
    }

    pub fn max(&self) -> Option<u64> {
        self.0.iter().rposition(|c| *c > 0).map(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        let h = Hist::default();
        let before = h.snapshot();
        for us in 1..=1000 {
            h.record(us);
        }
        h.record(250_000);
        let s = h.snapshot().since(&before);
        assert_eq!(s.count(), 1001);
        assert_eq!(s.quantile(0.5), Some(501));
        assert_eq!(s.quantile(0.99), Some(991));
        assert_eq!(s.max(), Some(250_000));
        let mut merged = Snapshot::empty();
        merged.add_sparse(s.to_sparse());
        merged.add_sparse(s.to_sparse());
        assert_eq!(merged.count(), 2002);
        assert_eq!(merged.quantile(0.5), Some(501));
        h.record(20_000_000);
        assert_eq!(h.snapshot().max(), Some(COARSE_LIMIT));
    }
}
