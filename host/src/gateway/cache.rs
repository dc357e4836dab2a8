//! The result cache: results of cacheable functions by (module hash,
//! method, canonical params), in an LRU list bounded by bytes, each kept
//! for its function's time to live. Identical calls in flight share one
//! run. Errors are handed to the calls sharing the run but never stored.

use crate::rpc::{CacheOutcome, RpcError};
use bytes::Bytes;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Bytes an entry costs beyond its key and result (list links, map slot,
/// the allocations' headers), so that many tiny entries are bounded too.
const ENTRY_OVERHEAD: usize = 96;

/// What identifies a result: the module that computed it, the method and
/// the params with their object keys sorted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    module: String,
    method: String,
    params: Vec<u8>,
}

impl CacheKey {
    /// The key of a call of `method` with raw `params` on `module`. Params
    /// that are not JSON are keyed by their bytes (the node refuses them,
    /// and errors are not stored anyway).
    pub fn new(module: &str, method: &str, params: &[u8]) -> Self {
        // serde_json's maps are sorted (the `preserve_order` feature is
        // off), so parsing and writing back sorts every object's keys.
        let params = serde_json::from_slice::<serde_json::Value>(params)
            .ok()
            .and_then(|value| serde_json::to_vec(&value).ok())
            .unwrap_or_else(|| params.to_vec());
        Self {
            module: module.to_owned(),
            method: method.to_owned(),
            params,
        }
    }

    fn weight(&self) -> usize {
        self.module.len() + self.method.len() + self.params.len() + ENTRY_OVERHEAD
    }
}

struct Entry {
    result: Bytes,
    expires: Instant,
}

/// The outcome of one run, shared with the identical calls waiting on it.
type Shared = Option<Result<Bytes, RpcError>>;

struct Stored {
    entries: lru::LruCache<CacheKey, Entry>,
    bytes: usize,
}

/// A bounded LRU cache of call results with coalescing of identical calls.
pub struct ResultCache {
    max_bytes: usize,
    stored: Mutex<Stored>,
    in_flight: Mutex<HashMap<CacheKey, watch::Receiver<Shared>>>,
}

impl ResultCache {
    /// A cache holding at most `max_bytes` of keys and results.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            stored: Mutex::new(Stored {
                entries: lru::LruCache::unbounded(),
                bytes: 0,
            }),
            in_flight: Mutex::default(),
        }
    }

    /// The bytes held now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.lock_stored().bytes
    }

    /// The result for `key`: from the cache, from an identical call in
    /// flight, or from `run`, whose success is kept for `ttl`. With `bypass`
    /// it runs regardless and refreshes the entry.
    pub async fn get_or_run<F>(
        &self,
        key: CacheKey,
        ttl: Duration,
        bypass: bool,
        run: impl FnOnce() -> F,
    ) -> (Result<Bytes, RpcError>, CacheOutcome)
    where
        F: Future<Output = Result<Bytes, RpcError>>,
    {
        if bypass {
            let outcome = run().await;
            if let Ok(result) = &outcome {
                self.store(key, result.clone(), ttl);
            }
            return (outcome, CacheOutcome::Miss);
        }
        let mut run = Some(run);
        loop {
            if let Some(result) = self.lookup(&key) {
                return (Ok(result), CacheOutcome::Hit);
            }
            let (sender, waiting) = {
                let mut in_flight = self.lock_in_flight();
                match in_flight.get(&key) {
                    Some(receiver) => (None, Some(receiver.clone())),
                    None => {
                        let (sender, receiver) = watch::channel(None);
                        in_flight.insert(key.clone(), receiver);
                        (Some(sender), None)
                    }
                }
            };
            if let Some(mut receiver) = waiting {
                // An identical call is running: take its outcome. If it
                // was abandoned (its client went away), try again.
                if let Ok(shared) = receiver.wait_for(Option::is_some).await
                    && let Some(outcome) = shared.clone()
                {
                    return (outcome, CacheOutcome::Hit);
                }
                continue;
            }
            let Some(run) = run.take() else {
                // Unreachable: a call leads at most once, then returns.
                return (
                    Err(RpcError::internal("the result cache lost its call")),
                    CacheOutcome::Miss,
                );
            };
            let leader = Leader {
                cache: self,
                key: &key,
                sender,
            };
            let outcome = run().await;
            if let Ok(result) = &outcome {
                self.store(key.clone(), result.clone(), ttl);
            }
            leader.finish(outcome.clone());
            return (outcome, CacheOutcome::Miss);
        }
    }

    fn lookup(&self, key: &CacheKey) -> Option<Bytes> {
        let mut stored = self.lock_stored();
        let entry = stored.entries.get(key)?;
        if entry.expires > Instant::now() {
            return Some(entry.result.clone());
        }
        if let Some(entry) = stored.entries.pop(key) {
            stored.bytes -= key.weight() + entry.result.len();
        }
        None
    }

    fn store(&self, key: CacheKey, result: Bytes, ttl: Duration) {
        let weight = key.weight() + result.len();
        if weight > self.max_bytes {
            return;
        }
        // A time to live past what the clock can count (only a hand-made
        // manifest has one) keeps nothing rather than panicking.
        let Some(expires) = Instant::now().checked_add(ttl) else {
            return;
        };
        let mut stored = self.lock_stored();
        let entry = Entry { result, expires };
        if let Some((old_key, old)) = stored.entries.push(key, entry) {
            stored.bytes -= old_key.weight() + old.result.len();
        }
        stored.bytes += weight;
        while stored.bytes > self.max_bytes {
            let Some((old_key, old)) = stored.entries.pop_lru() else {
                break;
            };
            stored.bytes -= old_key.weight() + old.result.len();
        }
    }

    fn lock_stored(&self) -> std::sync::MutexGuard<'_, Stored> {
        self.stored.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_in_flight(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<CacheKey, watch::Receiver<Shared>>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The call that runs for all identical ones; when dropped (finished or
/// abandoned) it leaves the in-flight table, so waiters never hang.
struct Leader<'a> {
    cache: &'a ResultCache,
    key: &'a CacheKey,
    sender: Option<watch::Sender<Shared>>,
}

impl Leader<'_> {
    fn finish(mut self, outcome: Result<Bytes, RpcError>) {
        if let Some(sender) = self.sender.take() {
            self.cache.lock_in_flight().remove(self.key);
            sender.send_replace(Some(outcome));
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if self.sender.take().is_some() {
            self.cache.lock_in_flight().remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn key(module: &str, params: &str) -> CacheKey {
        CacheKey::new(module, "m", params.as_bytes())
    }

    #[test]
    fn params_are_keyed_with_sorted_object_keys() {
        assert_eq!(
            key("h", r#"{"a":1,"b":[{"y":2,"x":1}]}"#),
            key("h", r#"{ "b": [{"x":1,"y":2}], "a": 1 }"#)
        );
        assert_ne!(key("h", r#"{"a":1}"#), key("h", r#"{"a":2}"#));
    }

    #[test]
    fn two_modules_never_share_an_entry() {
        let cache = ResultCache::new(1 << 20);
        cache.store(
            key("one", "[]"),
            Bytes::from_static(b"1"),
            Duration::from_secs(60),
        );
        assert!(cache.lookup(&key("one", "[]")).is_some());
        assert!(cache.lookup(&key("two", "[]")).is_none());
    }

    #[test]
    fn the_least_recently_used_entry_goes_first_when_bytes_run_out() {
        let size = key("h", "[1]").weight() + 100;
        let cache = ResultCache::new(size * 2);
        let ttl = Duration::from_secs(60);
        cache.store(key("h", "[1]"), Bytes::from(vec![b'1'; 100]), ttl);
        cache.store(key("h", "[2]"), Bytes::from(vec![b'2'; 100]), ttl);
        assert!(cache.lookup(&key("h", "[1]")).is_some());
        cache.store(key("h", "[3]"), Bytes::from(vec![b'3'; 100]), ttl);
        assert!(cache.lookup(&key("h", "[2]")).is_none());
        assert!(cache.lookup(&key("h", "[1]")).is_some());
        assert!(cache.bytes() <= size * 2);
        // A result larger than the whole cache is not kept at all.
        cache.store(key("h", "[4]"), Bytes::from(vec![b'4'; size * 2]), ttl);
        assert!(cache.lookup(&key("h", "[4]")).is_none());
        assert!(cache.lookup(&key("h", "[1]")).is_some());
    }

    #[tokio::test]
    async fn errors_are_shared_with_waiters_but_never_stored() {
        let cache = ResultCache::new(1 << 20);
        let ttl = Duration::from_secs(60);
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let failing = || async {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Err(RpcError::internal("no"))
        };
        let (a, b) = tokio::join!(
            cache.get_or_run(key("h", "[]"), ttl, false, failing),
            cache.get_or_run(key("h", "[]"), ttl, false, failing),
        );
        assert!(a.0.is_err() && b.0.is_err());
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        let (again, how) = cache.get_or_run(key("h", "[]"), ttl, false, failing).await;
        assert!(again.is_err());
        assert_eq!(how, CacheOutcome::Miss);
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_waiter_runs_the_call_itself_when_the_leader_is_abandoned() {
        let cache = Arc::new(ResultCache::new(1 << 20));
        let ttl = Duration::from_secs(60);
        let (started, mut leading) = watch::channel(false);
        let leader = tokio::spawn({
            let cache = cache.clone();
            async move {
                cache
                    .get_or_run(key("h", "[]"), ttl, false, || async move {
                        started.send_replace(true);
                        std::future::pending::<Result<Bytes, RpcError>>().await
                    })
                    .await
            }
        });
        leading.wait_for(|started| *started).await.unwrap();
        let waiter = tokio::spawn({
            let cache = cache.clone();
            async move {
                cache
                    .get_or_run(key("h", "[]"), ttl, false, || async {
                        Ok(Bytes::from_static(b"2"))
                    })
                    .await
            }
        });
        leader.abort();
        let (outcome, how) = waiter.await.unwrap();
        assert_eq!(outcome.unwrap(), Bytes::from_static(b"2"));
        assert_eq!(how, CacheOutcome::Miss);
    }
}
