//! Coalesces concurrent identical lookups into one call, and optionally remembers a positive
//! answer for a while. 200 sockets reconnecting with one cookie make one app call.
//!
//! A remembered answer can be forgotten at once (a revocation signal); an answer that was in
//! flight when something was forgotten is neither remembered nor handed to later lookups, so a
//! call racing a revocation cannot put a stale positive answer back. A lookup after the forget
//! starts its own call once the old one has ended: the app never has two calls for one key.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engineio::sparse::ShrinkWhenSparse;
use futures_util::future::{BoxFuture, FutureExt, Shared};

type Flight<V, E> = Shared<BoxFuture<'static, Result<V, E>>>;

/// A call in flight, and the forget generation it started in (a later lookup joins it only if
/// nothing was forgotten since).
struct InFlight<V, E> {
    generation: u64,
    flight: Flight<V, E>,
}

/// Most answers remembered at once: a storm of this many distinct keys is fully cached; past
/// it new answers are not remembered until entries expire (memory stays bounded).
pub const MAX_ENTRIES: usize = 50_000;

pub struct SingleFlight<K, V, E> {
    inflight: Mutex<HashMap<K, InFlight<V, E>>>,
    cache: Mutex<Cache<K, V>>,
    ttl: Duration,
    max_entries: usize,
}

struct Cache<K, V> {
    entries: HashMap<K, (Instant, V)>,
    /// Bumped by every forget: an answer whose call started before it is not remembered.
    generation: u64,
    /// When expired entries were last swept because the cache was full (at most once a second,
    /// so a full cache does not cost a scan per insert).
    last_sweep: Option<Instant>,
}

impl<K: Hash + Eq, V> Cache<K, V> {
    fn drop_expired(&mut self, ttl: Duration) {
        self.entries.retain(|_, (at, _)| at.elapsed() < ttl);
        self.entries.shrink_when_sparse();
    }
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
        Self::with_capacity(ttl, MAX_ENTRIES)
    }

    /// As [`Self::new`], remembering at most `max_entries` answers.
    pub fn with_capacity(ttl: Duration, max_entries: usize) -> Self {
        SingleFlight {
            inflight: Mutex::new(HashMap::new()),
            cache: Mutex::new(Cache {
                entries: HashMap::new(),
                generation: 0,
                last_sweep: None,
            }),
            ttl,
            max_entries,
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache<K, V>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn inflight(&self) -> std::sync::MutexGuard<'_, HashMap<K, InFlight<V, E>>> {
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
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
        let generation = {
            let mut cache = self.cache();
            if use_cache && !self.ttl.is_zero() {
                match cache.entries.get(&key) {
                    Some((at, v)) if at.elapsed() < self.ttl => {
                        return (Ok(v.clone()), Source::Cache)
                    }
                    Some(_) => {
                        cache.entries.remove(&key);
                    }
                    None => {}
                }
            }
            cache.generation
        };
        let (flight, source) = {
            let mut inflight = self.inflight();
            match inflight.get(&key) {
                // Joined only while running (a finished one whose caller went away would hand
                // out its answer forever) and only if nothing was forgotten since it started.
                Some(f) if f.generation == generation && f.flight.peek().is_none() => {
                    (f.flight.clone(), Source::Coalesced)
                }
                previous => {
                    let previous = previous.map(|f| f.flight.clone());
                    let call = call();
                    let flight = async move {
                        if let Some(previous) = previous {
                            let _ = previous.await;
                        }
                        call.await
                    }
                    .boxed()
                    .shared();
                    let entry = InFlight {
                        generation,
                        flight: flight.clone(),
                    };
                    inflight.insert(key.clone(), entry);
                    (flight, Source::Call)
                }
            }
        };
        let result = flight.clone().await;
        if source == Source::Call {
            {
                // Only our own flight: a forget may have let a newer one in under this key.
                let mut inflight = self.inflight();
                if inflight.get(&key).is_some_and(|f| f.flight.ptr_eq(&flight)) {
                    inflight.remove(&key);
                }
            }
            if let Ok(v) = &result {
                if !self.ttl.is_zero() && cacheable(v) {
                    self.remember(key, v.clone(), generation);
                }
            }
        }
        (result, source)
    }

    fn remember(&self, key: K, v: V, generation: u64) {
        let mut cache = self.cache();
        if cache.generation != generation {
            return;
        }
        if cache.entries.len() >= self.max_entries && !cache.entries.contains_key(&key) {
            let now = Instant::now();
            if cache
                .last_sweep
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                cache.last_sweep = Some(now);
                cache.drop_expired(self.ttl);
            }
            if cache.entries.len() >= self.max_entries {
                return;
            }
        }
        cache.entries.insert(key, (Instant::now(), v));
    }

    /// Drops the answers that have expired (and the table's room for them). Lookups drop what
    /// they find expired, but after a peak most keys are never looked up again: without this
    /// their answers stay in memory for good.
    pub fn forget_expired(&self) {
        self.cache().drop_expired(self.ttl);
    }

    /// Forgets a cached answer; the next lookup makes a fresh call (the session was found
    /// gone, or the app signalled a change).
    pub fn forget(&self, key: &K) {
        self.forget_where(|k, _| k == key);
    }

    /// Forgets every cached answer `pred` picks. Calls in flight are not joined any more (their
    /// answers may predate the signal, and their keys say nothing of their answers); finished
    /// ones whose callers went away are dropped.
    pub fn forget_where(&self, pred: impl Fn(&K, &V) -> bool) {
        {
            let mut cache = self.cache();
            cache.generation += 1;
            cache.entries.retain(|k, (_, v)| !pred(k, v));
        }
        self.inflight().retain(|_, f| f.flight.peek().is_none());
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.forget_where(|_, _| true);
    }

    /// How many answers are remembered (tests, and to see the bound hold).
    pub fn len(&self) -> usize {
        self.cache().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    #[tokio::test]
    async fn expired_answers_nobody_asks_for_again_are_dropped() {
        let sf: SingleFlight<u32, u32, ()> = SingleFlight::new(Duration::from_millis(50));
        for k in 0..1000 {
            let _ = sf.get(k, true, || async move { Ok(k) }, |_| true).await;
        }
        sf.forget_expired();
        assert_eq!(sf.len(), 1000, "none expired yet");
        tokio::time::sleep(Duration::from_millis(80)).await;
        let _ = sf.get(5000, true, || async { Ok(1) }, |_| true).await;
        sf.forget_expired();
        assert_eq!(sf.len(), 1, "only the fresh answer is left");
    }

    #[tokio::test]
    async fn forget_drops_the_answer_and_a_racing_call() {
        let sf: Arc<SingleFlight<u8, u32, ()>> =
            Arc::new(SingleFlight::new(Duration::from_secs(60)));
        let (_, s) = sf.get(1, true, || async { Ok(1) }, |_| true).await;
        assert_eq!(s, Source::Call);
        sf.forget(&1);
        let (r, s) = sf.get(1, true, || async { Ok(2) }, |_| true).await;
        assert_eq!(
            (r, s),
            (Ok(2), Source::Call),
            "forgotten: the app is asked again"
        );

        // A call in flight when its key is forgotten is not remembered.
        sf.clear();
        let slow = {
            let sf = sf.clone();
            tokio::spawn(async move {
                sf.get(
                    1,
                    true,
                    || async {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(3)
                    },
                    |_| true,
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        sf.forget_where(|_, _| true);
        let (r, s) = sf.get(1, true, || async { Ok(4) }, |_| true).await;
        assert_eq!(
            (r, s),
            (Ok(4), Source::Call),
            "a forget does not join the old flight"
        );
        assert_eq!(slow.await.unwrap().0, Ok(3));
        let (r, s) = sf.get(1, true, || async { Ok(5) }, |_| true).await;
        assert_eq!(
            (r, s),
            (Ok(4), Source::Cache),
            "the fresh answer is remembered, not the stale one"
        );
    }

    #[tokio::test]
    async fn forget_where_picks_by_value_and_the_size_is_bounded() {
        let sf: SingleFlight<u8, u32, ()> = SingleFlight::with_capacity(Duration::from_secs(60), 3);
        for k in 0..5u8 {
            let (r, _) = sf
                .get(k, true, || async move { Ok(u32::from(k) % 2) }, |_| true)
                .await;
            assert!(r.is_ok());
        }
        assert_eq!(sf.len(), 3, "full: later answers are not remembered");
        sf.forget_where(|_, v| *v == 1);
        assert_eq!(sf.len(), 2);
        let (_, s) = sf.get(0, true, || async { Ok(9) }, |_| true).await;
        assert_eq!(s, Source::Cache);
    }
    #[tokio::test]
    async fn a_call_after_a_forget_waits_for_the_one_in_flight() {
        let sf: Arc<SingleFlight<u8, u32, ()>> =
            Arc::new(SingleFlight::new(Duration::from_secs(60)));
        let (active, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let lookup = |answer: u32| {
            let (sf, active, most) = (sf.clone(), active.clone(), most.clone());
            tokio::spawn(async move {
                sf.get(
                    1,
                    true,
                    move || async move {
                        let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        active.fetch_sub(1, Ordering::SeqCst);
                        Ok(answer)
                    },
                    |_| true,
                )
                .await
            })
        };
        let stale = lookup(1);
        tokio::time::sleep(Duration::from_millis(10)).await;
        sf.forget_where(|_, _| true);
        let fresh = lookup(2);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let joined = lookup(3);
        assert_eq!(stale.await.unwrap(), (Ok(1), Source::Call));
        assert_eq!(
            fresh.await.unwrap(),
            (Ok(2), Source::Call),
            "not the old answer"
        );
        assert_eq!(joined.await.unwrap(), (Ok(2), Source::Coalesced));
        assert_eq!(
            most.load(Ordering::SeqCst),
            1,
            "one call in flight per key at a time"
        );
        let (r, s) = sf.get(1, true, || async { Ok(9) }, |_| true).await;
        assert_eq!(
            (r, s),
            (Ok(2), Source::Cache),
            "the fresh answer is remembered"
        );
    }

    #[tokio::test]
    async fn a_finished_call_is_never_joined() {
        let sf: SingleFlight<u8, u32, ()> = SingleFlight::new(Duration::ZERO);
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Ok(1)
        };
        // The caller that started the call gives up (its client went away)...
        let abandoned =
            tokio::time::timeout(Duration::from_millis(5), sf.get(1, true, slow, |_| true)).await;
        assert!(abandoned.is_err());
        // ...another lookup joins it and sees it finish...
        let (r, s) = sf.get(1, true, || async { Ok(2) }, |_| true).await;
        assert_eq!((r, s), (Ok(1), Source::Coalesced));
        // ...and its answer is not handed out again later.
        let (r, s) = sf.get(1, true, || async { Ok(3) }, |_| true).await;
        assert_eq!((r, s), (Ok(3), Source::Call));
    }
}
