//! Reads of the whole table that every request of a CO scope may share
//! for a moment: the job counts (by CO, type and status) and the last
//! hour's activity. The event streams, `/api/v1/stats`, the overview, the
//! plugins and COs pages and `/metrics` all read them through a
//! [`ScopeCache`], so however many pages and pollers are open, each is
//! read at most once per [`MAX_AGE`] per CO scope (20 open pages each
//! counting the table once a second starved the API's list requests:
//! docs/performance.md).
//!
//! A change this server makes (queue, cancel, retry, pause...) empties
//! the caches ([`super::Inner::forget_counts`]), so whoever made it sees
//! it at once; a change made elsewhere (a runner, the CLI) shows within
//! [`MAX_AGE`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// How old a shared read may be: the event streams' tick.
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// A value and when it was read, per CO scope (`None` = every CO).
type Slots<T> = HashMap<Option<i64>, (Instant, Arc<T>)>;

/// One value per CO scope (`None` = every CO), with when it was read.
pub struct ScopeCache<T> {
    max_age: Duration,
    /// A tokio mutex, held across the read on a miss: requests that miss
    /// together wait for the one read instead of each making their own
    /// (the read is what is expensive; waiting for it is not).
    slots: tokio::sync::Mutex<Slots<T>>,
}

impl<T> ScopeCache<T> {
    pub fn new(max_age: Duration) -> ScopeCache<T> {
        ScopeCache {
            max_age,
            slots: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Scope `scope`'s value if it is younger than the max age, else what
    /// `read` returns now (kept for the next callers). An error is not
    /// kept.
    pub async fn get<E, F, Fut>(&self, scope: Option<i64>, read: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut slots = self.slots.lock().await;
        if let Some((at, value)) = slots.get(&scope)
            && at.elapsed() < self.max_age
        {
            return Ok(Arc::clone(value));
        }
        let value = Arc::new(read().await?);
        slots.insert(scope, (Instant::now(), Arc::clone(&value)));
        Ok(value)
    }

    /// Drop every scope's value: the next caller reads afresh.
    pub async fn forget(&self) {
        self.slots.lock().await.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    async fn read(cache: &ScopeCache<usize>, scope: Option<i64>, reads: &AtomicUsize) -> usize {
        let v = cache
            .get(scope, || async {
                Ok::<_, ()>(reads.fetch_add(1, Ordering::SeqCst).saturating_add(1))
            })
            .await
            .expect("read");
        *v
    }

    #[tokio::test]
    async fn one_read_per_scope_until_old_or_forgotten() {
        let reads = AtomicUsize::new(0);
        let cache = ScopeCache::new(Duration::from_secs(3600));
        assert_eq!(read(&cache, None, &reads).await, 1);
        assert_eq!(read(&cache, None, &reads).await, 1, "shared");
        assert_eq!(read(&cache, Some(2), &reads).await, 2, "per scope");
        cache.forget().await;
        assert_eq!(read(&cache, None, &reads).await, 3, "forgotten");
        let fresh = ScopeCache::new(Duration::ZERO);
        assert_eq!(read(&fresh, None, &reads).await, 4);
        assert_eq!(read(&fresh, None, &reads).await, 5, "too old at once");
    }

    #[tokio::test]
    async fn errors_are_not_kept() {
        let cache: ScopeCache<u8> = ScopeCache::new(Duration::from_secs(3600));
        let e = cache.get(None, || async { Err::<u8, _>("down") }).await;
        assert_eq!(e.err(), Some("down"));
        let v = cache.get(None, || async { Ok::<_, &str>(7) }).await;
        assert_eq!(v.ok().as_deref(), Some(&7));
    }
}
