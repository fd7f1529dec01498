//! Whether a new session may open: the instance's session cap, its handshake rate and its
//! drain state. Checked before the handshake is answered; live sessions are never touched.
//!
//! A refusal must not look like the instance failing: a proxy that reads it as a failure takes
//! the instance out (nginx's `proxy_next_upstream ... http_503` with `max_fails`), and during a
//! failover that is the only survivor. So shedding load (the rate, the cap) answers 429 with
//! `Retry-After`, which proxies pass on and socket.io-client retries with its backoff, and only
//! a draining instance answers 503: it is going away, and a proxy should try another one.
//!
//! Handshakes over the rate first wait in a short queue (`limits.connect_queue_ms`): a storm
//! is spread over time at the configured rate instead of being refused, so a failover's
//! reconnects reach the app at that rate and all get in.
//!
//! The cap is a reservation counter rather than a look at the session table, because a
//! WebSocket session is only created after the 101 has gone out: the slot is taken when the
//! request is admitted (before any wait) and given back when the session leaves the table (or
//! when the admitted request never becomes a session).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::config::HandshakeRate;
use crate::handler::{EngineObserver, Refused};
use crate::token_bucket::TokenBucket;

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `server.max_connections` sessions are open.
    OverCapacity,
    /// More handshakes than `limits.connect_rate_per_s` allows, even after the queue; a
    /// place in the queue frees up in `retry_after_s` seconds.
    RateLimited { retry_after_s: u64 },
    /// The instance is shutting down.
    Draining,
}

/// `Retry-After` of an instance at capacity: sessions leave slowly, so not at once.
const OVER_CAPACITY_RETRY_S: u64 = 5;

impl Refusal {
    fn code(self) -> &'static str {
        match self {
            Refusal::OverCapacity => "OVER_CAPACITY",
            Refusal::RateLimited { .. } => "RATE_LIMITED",
            Refusal::Draining => "SHUTTING_DOWN",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::OverCapacity => "the server is at capacity, retry later",
            Refusal::RateLimited { .. } => "too many new connections, retry later",
            Refusal::Draining => "the server is shutting down, reconnect to another instance",
        }
    }

    /// 429 while shedding load (healthy, busy), 503 while draining (going away).
    pub fn status(self) -> StatusCode {
        match self {
            Refusal::OverCapacity | Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Draining => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn retry_after_s(self) -> u64 {
        match self {
            Refusal::OverCapacity => OVER_CAPACITY_RETRY_S,
            Refusal::RateLimited { retry_after_s } => retry_after_s.max(1),
            Refusal::Draining => 1,
        }
    }

    /// The status with a JSON body `{code, message}` and `Retry-After`, plus the CORS headers
    /// so a browser's polling client can read it.
    pub fn response(self, cors: &[(header::HeaderName, HeaderValue)]) -> Response<Bytes> {
        let body = format!(
            r#"{{"code":"{}","message":"{}"}}"#,
            self.code(),
            self.message()
        );
        let mut res = super::request::json_response(self.status(), body, cors);
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(self.retry_after_s()));
        res
    }
}

/// The admission state of one engine.
pub(crate) struct Admission {
    max_sessions: usize,
    reserved: Arc<AtomicUsize>,
    handshakes: Option<(TokenBucket, Duration)>,
    draining: AtomicBool,
}

impl Admission {
    /// `rate`: `None` admits any rate.
    pub(crate) fn new(max_sessions: usize, rate: Option<HandshakeRate>) -> Self {
        Admission {
            max_sessions,
            reserved: Arc::new(AtomicUsize::new(0)),
            handshakes: rate.map(|r| (TokenBucket::new(r.per_s, r.per_s), r.queue)),
            draining: AtomicBool::new(false),
        }
    }

    /// Reserves a session slot, waiting for the rate if need be, or says why not (and tells
    /// `observer`).
    pub(crate) async fn admit(&self, observer: &dyn EngineObserver) -> Result<Slot, Refusal> {
        if self.draining.load(Ordering::Acquire) {
            observer.refused(Refused::Draining);
            return Err(Refusal::Draining);
        }
        let max = self.max_sessions;
        let reserved = self
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if reserved.is_err() {
            observer.refused(Refused::OverCapacity);
            return Err(Refusal::OverCapacity);
        }
        let slot = Slot {
            reserved: self.reserved.clone(),
            armed: true,
        };
        let Some((bucket, queue)) = &self.handshakes else {
            return Ok(slot);
        };
        match bucket.reserve(*queue) {
            Ok(wait) if wait.is_zero() => Ok(slot),
            Ok(wait) => {
                let queued = Queued::start(observer);
                tokio::time::sleep(wait).await;
                drop(queued);
                if self.draining.load(Ordering::Acquire) {
                    observer.refused(Refused::Draining);
                    return Err(Refusal::Draining);
                }
                Ok(slot)
            }
            // `slot` is dropped: the reservation is undone.
            Err(free_in) => {
                observer.refused(Refused::RateLimited);
                Err(Refusal::RateLimited {
                    retry_after_s: free_in.as_secs_f64().ceil() as u64,
                })
            }
        }
    }

    /// Gives back the slot of a session that left the table.
    pub(crate) fn release(&self) {
        let _ = self
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
}

/// A handshake waiting in the rate's queue, as the observer counts it: also when the wait is
/// abandoned (the client went away and its request future was dropped).
struct Queued<'a>(&'a dyn EngineObserver);

impl<'a> Queued<'a> {
    fn start(observer: &'a dyn EngineObserver) -> Self {
        observer.queued(true);
        Queued(observer)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queued(false);
    }
}

/// A reserved session slot. Dropped unused (the upgrade failed, the request was refused later)
/// it frees the reservation; [`Slot::commit`] hands it to a session in the table, whose removal
/// frees it through [`Admission::release`].
pub(crate) struct Slot {
    reserved: Arc<AtomicUsize>,
    armed: bool,
}

impl Slot {
    pub(crate) fn commit(mut self) {
        self.armed = false;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            let _ = self
                .reserved
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_s: u32, queue_ms: u64) -> Option<HandshakeRate> {
        Some(HandshakeRate {
            per_s,
            queue: Duration::from_millis(queue_ms),
        })
    }

    #[tokio::test]
    async fn cap_counts_reservations_and_releases() {
        let a = Admission::new(2, None);
        let s1 = a.admit(&()).await.expect("first");
        let s2 = a.admit(&()).await.expect("second");
        assert_eq!(a.admit(&()).await.err(), Some(Refusal::OverCapacity));
        drop(s1); // admitted, never became a session
        let s3 = a.admit(&()).await.expect("a dropped slot is free again");
        s2.commit();
        s3.commit();
        assert_eq!(a.admit(&()).await.err(), Some(Refusal::OverCapacity));
        a.release(); // a committed session left the table
        assert!(a.admit(&()).await.is_ok());
    }

    #[tokio::test]
    async fn rate_refusal_gives_the_slot_back() {
        let a = Admission::new(10, rate(2, 0));
        let mut s = Vec::new();
        for _ in 0..2 {
            s.push(a.admit(&()).await.expect("within the burst"));
        }
        assert!(matches!(
            a.admit(&()).await.err(),
            Some(Refusal::RateLimited { .. })
        ));
        assert_eq!(a.reserved.load(Ordering::Acquire), 2);
        drop(s);
        assert_eq!(a.reserved.load(Ordering::Acquire), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn over_the_rate_waits_in_the_queue_then_is_refused() {
        // 10/s with a bucket of 10 and 500 ms of queue: 10 at once, 5 more within 500 ms.
        let a = Arc::new(Admission::new(100, rate(10, 500)));
        let t0 = tokio::time::Instant::now();
        let mut waits = Vec::new();
        for _ in 0..16 {
            let a = a.clone();
            waits.push(tokio::spawn(async move {
                a.admit(&()).await.map(|s| (s, t0.elapsed()))
            }));
        }
        let mut admitted = Vec::new();
        let mut refused = Vec::new();
        for w in waits {
            match w.await.expect("task") {
                Ok((slot, took)) => admitted.push((slot, took)),
                Err(r) => refused.push(r),
            }
        }
        assert_eq!(admitted.len(), 15);
        let late: Vec<u128> = admitted
            .iter()
            .map(|(_, d)| d.as_millis())
            .filter(|ms| *ms > 0)
            .collect();
        assert_eq!(late, vec![100, 200, 300, 400, 500]);
        assert_eq!(refused, vec![Refusal::RateLimited { retry_after_s: 1 }]);
        // Waiting handshakes hold their slots; refused ones do not.
        assert_eq!(a.reserved.load(Ordering::Acquire), 15);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_during_the_wait_refuses() {
        let a = Arc::new(Admission::new(10, rate(1, 5000)));
        let _first = a.admit(&()).await.expect("the bucket's token");
        let waiting = tokio::spawn({
            let a = a.clone();
            async move { a.admit(&()).await.err() }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.start_draining();
        assert_eq!(waiting.await.expect("task"), Some(Refusal::Draining));
        assert_eq!(a.reserved.load(Ordering::Acquire), 1);
    }

    #[tokio::test]
    async fn draining_refuses_everything() {
        let a = Admission::new(10, None);
        a.start_draining();
        assert_eq!(a.admit(&()).await.err(), Some(Refusal::Draining));
    }

    #[test]
    fn shedding_load_is_a_429_draining_a_503() {
        let check = |r: Refusal, status: StatusCode, code: &str, retry: &str| {
            let res = r.response(&[]);
            assert_eq!(res.status(), status);
            let body: serde_json::Value = serde_json::from_slice(res.body()).expect("json");
            assert_eq!(body["code"], code);
            assert_eq!(res.headers()[header::RETRY_AFTER], retry);
        };
        check(
            Refusal::RateLimited { retry_after_s: 3 },
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "3",
        );
        check(
            Refusal::RateLimited { retry_after_s: 0 },
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "1",
        );
        check(
            Refusal::OverCapacity,
            StatusCode::TOO_MANY_REQUESTS,
            "OVER_CAPACITY",
            "5",
        );
        check(
            Refusal::Draining,
            StatusCode::SERVICE_UNAVAILABLE,
            "SHUTTING_DOWN",
            "1",
        );
    }
}
