//! Whether a new session may open: the instance's session cap, its handshake rate and its
//! drain state. Checked before the handshake is answered, so a refused client gets a plain
//! HTTP 503 (polling and WebSocket alike) and can retry elsewhere; live sessions are never
//! touched by a refusal.
//!
//! The cap is a reservation counter rather than a look at the session table, because a
//! WebSocket session is only created after the 101 has gone out: the slot is taken when the
//! request is admitted and given back when the session leaves the table (or when the admitted
//! request never becomes a session).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::limits::TokenBucket;
use crate::metrics::{self, ConnectResult};

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `server.max_connections` sessions are open.
    OverCapacity,
    /// More handshakes than `limits.connect_rate_per_s` allows.
    RateLimited,
    /// The instance is shutting down.
    Draining,
}

impl Refusal {
    fn code(self) -> &'static str {
        match self {
            Refusal::OverCapacity => "OVER_CAPACITY",
            Refusal::RateLimited => "RATE_LIMITED",
            Refusal::Draining => "SHUTTING_DOWN",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::OverCapacity => "the server is at capacity, retry later",
            Refusal::RateLimited => "too many new connections, retry later",
            Refusal::Draining => "the server is shutting down, reconnect to another instance",
        }
    }

    /// 503 with a JSON body `{code, message}` and `Retry-After: 1`, plus the CORS headers so a
    /// browser's polling client can read it.
    pub fn response(self, cors: &[(header::HeaderName, HeaderValue)]) -> Response<Bytes> {
        let body = format!(
            r#"{{"code":"{}","message":"{}"}}"#,
            self.code(),
            self.message()
        );
        let mut res = super::request::json_response(StatusCode::SERVICE_UNAVAILABLE, body, cors);
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        res
    }
}

/// The admission state of one engine.
pub(crate) struct Admission {
    max_sessions: usize,
    reserved: Arc<AtomicUsize>,
    handshakes: Option<TokenBucket>,
    draining: AtomicBool,
}

impl Admission {
    /// `handshakes_per_s`: `None` admits any rate; the bucket holds one second's worth.
    pub(crate) fn new(max_sessions: usize, handshakes_per_s: Option<u32>) -> Self {
        Admission {
            max_sessions,
            reserved: Arc::new(AtomicUsize::new(0)),
            handshakes: handshakes_per_s.map(|r| TokenBucket::new(r, r)),
            draining: AtomicBool::new(false),
        }
    }

    /// Reserves a session slot, or says why not (and counts the refusal).
    pub(crate) fn admit(&self) -> Result<Slot, Refusal> {
        if self.draining.load(Ordering::Acquire) {
            return Err(Refusal::Draining);
        }
        let max = self.max_sessions;
        let reserved = self
            .reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        if reserved.is_err() {
            metrics::connect(ConnectResult::OverCapacity);
            return Err(Refusal::OverCapacity);
        }
        let slot = Slot {
            reserved: self.reserved.clone(),
            armed: true,
        };
        if self.handshakes.as_ref().is_some_and(|b| !b.try_take()) {
            metrics::connect(ConnectResult::RateLimited);
            return Err(Refusal::RateLimited); // `slot` is dropped: the reservation is undone
        }
        Ok(slot)
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

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
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

    #[test]
    fn cap_counts_reservations_and_releases() {
        let a = Admission::new(2, None);
        let s1 = a.admit().expect("first");
        let s2 = a.admit().expect("second");
        assert_eq!(a.admit().err(), Some(Refusal::OverCapacity));
        drop(s1); // admitted, never became a session
        let s3 = a.admit().expect("a dropped slot is free again");
        s2.commit();
        s3.commit();
        assert_eq!(a.admit().err(), Some(Refusal::OverCapacity));
        a.release(); // a committed session left the table
        assert!(a.admit().is_ok());
    }

    #[test]
    fn rate_refusal_gives_the_slot_back() {
        let a = Admission::new(10, Some(2));
        let s: Vec<_> = (0..2)
            .map(|_| a.admit().expect("within the burst"))
            .collect();
        assert_eq!(a.admit().err(), Some(Refusal::RateLimited));
        assert_eq!(a.reserved.load(Ordering::Acquire), 2);
        drop(s);
        assert_eq!(a.reserved.load(Ordering::Acquire), 0);
    }

    #[test]
    fn draining_refuses_everything() {
        let a = Admission::new(10, None);
        a.start_draining();
        assert!(a.is_draining());
        assert_eq!(a.admit().err(), Some(Refusal::Draining));
    }

    #[test]
    fn refusal_is_a_503_json() {
        let res = Refusal::OverCapacity.response(&[]);
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_slice(res.body()).expect("json");
        assert_eq!(body["code"], "OVER_CAPACITY");
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    }
}
