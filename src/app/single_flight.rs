//! Coalesces concurrent identical lookups into one call, and optionally remembers a positive
//! answer for a short time. 200 sockets reconnecting with one cookie make one app call.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};

type Flight<V, E> = Shared<BoxFuture<'static, Result<V, E>>>;

pub struct SingleFlight<K, V, E> {
    inflight: Mutex<HashMap<K, Flight<V, E>>>,
    cache: Mutex<HashMap<K, (Instant, V)>>,
    ttl: Duration,
}

/// How a lookup was answered (for metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Cache,
    Coalesced,
    Call,
}

impl<K, V, E> SingleFlight<K, V, E>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// `ttl` zero disables the cache; coalescing stays.
    pub fn new(ttl: Duration) -> Self {
        SingleFlight {
            inflight: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// Answers from the cache, joins a call in flight, or starts `call`. `cacheable` says which
    /// answers may be remembered (positive ones only: a logout must be seen at once).
    pub async fn get<F>(
        &self,
        key: K,
        use_cache: bool,
        call: impl FnOnce() -> F,
        cacheable: impl Fn(&V) -> bool,
    ) -> (Result<V, E>, Source)
    where
        F: Future<Output = Result<V, E>> + Send + 'static,
    {
        if use_cache && !self.ttl.is_zero() {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            match cache.get(&key) {
                Some((at, v)) if at.elapsed() < self.ttl => return (Ok(v.clone()), Source::Cache),
                Some(_) => {
                    cache.remove(&key);
                }
                None => {}
            }
        }
        let (flight, source) = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match inflight.get(&key) {
                Some(f) => (f.clone(), Source::Coalesced),
                None => {
                    let f = call().boxed().shared();
                    inflight.insert(key.clone(), f.clone());
                    (f, Source::Call)
                }
            }
        };
        let result = flight.await;
        if source == Source::Call {
            self.inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            if let Ok(v) = &result {
                if !self.ttl.is_zero() && cacheable(v) {
                    let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                    // Bounded: drop expired entries when the map grows.
                    if cache.len() > 10_000 {
                        let ttl = self.ttl;
                        cache.retain(|_, (at, _)| at.elapsed() < ttl);
                    }
                    cache.insert(key, (Instant::now(), v.clone()));
                }
            }
        }
        (result, source)
    }

    /// Forgets a cached answer (the session was found gone).
    pub fn forget(&self, key: &K) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn concurrent_lookups_make_one_call() {
        let sf: Arc<SingleFlight<u8, u32, ()>> = Arc::new(SingleFlight::new(Duration::ZERO));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (sf, calls) = (sf.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                sf.get(
                    1,
                    true,
                    || {
                        let calls = calls.clone();
                        async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok(7)
                        }
                    },
                    |_| true,
                )
                .await
                .0
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(7));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn caches_only_cacheable_answers() {
        let sf: SingleFlight<u8, Option<u32>, ()> = SingleFlight::new(Duration::from_secs(60));
        let (_, s) = sf
            .get(1, true, || async { Ok(None) }, |v| v.is_some())
            .await;
        assert_eq!(s, Source::Call);
        let (_, s) = sf
            .get(1, true, || async { Ok(Some(1)) }, |v| v.is_some())
            .await;
        assert_eq!(s, Source::Call, "a negative answer is not cached");
        let (r, s) = sf
            .get(1, true, || async { Ok(Some(2)) }, |v| v.is_some())
            .await;
        assert_eq!((r, s), (Ok(Some(1)), Source::Cache));
        let (r, _) = sf
            .get(1, false, || async { Ok(Some(3)) }, |v| v.is_some())
            .await;
        assert_eq!(r, Ok(Some(3)), "bypassing the cache calls again");
    }
}
