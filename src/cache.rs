//! The moka cache of `sha256(key) → record` in front of the store, so the verify path normally
//! touches no database. Concurrent misses for one digest make one store query (single flight),
//! unknown digests are remembered briefly in a separate bounded cache (a flood of random keys
//! cannot evict real ones), and a load that raced a mutation is never served from the cache.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use moka::future::Cache;

use crate::error::{Error, Result};
use crate::key::KeyDigest;
use crate::model::KeyState;
use crate::time::Timestamp;

/// How big the caches are and how long entries live.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Most keys cached.
    pub capacity: u64,
    /// Backstop: a cached key is reloaded at least this often.
    pub ttl: Duration,
    /// Most unknown digests remembered.
    pub negative_capacity: u64,
    /// How long an unknown digest is remembered.
    pub negative_ttl: Duration,
}

/// Counters of what the cache did, for metrics and tests.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: AtomicU64,
    /// Lookups that had to ask the store (or wait for another caller's query).
    pub misses: AtomicU64,
    /// Lookups answered "unknown" from the negative cache.
    pub negative_hits: AtomicU64,
    /// Queries actually sent to the store.
    pub store_lookups: AtomicU64,
}

/// A cached key: what verify needs, plus when its last use was last reported.
#[derive(Debug)]
pub struct CachedKey {
    /// The key, its digest and its account's state.
    pub state: KeyState,
    /// Micros of the last use handed to the last-use tracker (0 = never).
    last_use_mark: AtomicI64,
}

impl CachedKey {
    /// Whether a use at `now` should be reported: at most once a second per key, so the
    /// tracker's lock is not taken on every verify.
    pub fn mark_use(&self, now: Timestamp) -> bool {
        let mark = self.last_use_mark.load(Ordering::Relaxed);
        now.micros() - mark >= 1_000_000
            && self
                .last_use_mark
                .compare_exchange(mark, now.micros(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[derive(Debug)]
struct Entry {
    key: Arc<CachedKey>,
    /// False when a mutation was invalidated while this entry was loading: it may be stale.
    clean: bool,
}

#[derive(Debug)]
enum LoadError {
    Absent,
    Store(Error),
}

/// The key cache.
#[derive(Debug)]
pub struct KeyCache {
    entries: Cache<KeyDigest, Arc<Entry>>,
    negative: Cache<KeyDigest, ()>,
    /// Bumped by every invalidation; a load that sees it move may have read stale data.
    epoch: AtomicU64,
    stats: CacheStats,
}

impl KeyCache {
    /// An empty cache.
    pub fn new(settings: CacheSettings) -> Self {
        KeyCache {
            entries: Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.ttl)
                .support_invalidation_closures()
                .build(),
            negative: Cache::builder()
                .max_capacity(settings.negative_capacity)
                .time_to_live(settings.negative_ttl)
                .build(),
            epoch: AtomicU64::new(0),
            stats: CacheStats::default(),
        }
    }

    /// What the cache has done so far.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Keys cached right now (approximate, as moka counts).
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    /// The record for `digest`, from the cache or, on a miss, from `load` (one call per digest
    /// however many callers miss at once). `None`: no such key.
    pub async fn get_or_load<F, Fut>(
        &self,
        digest: KeyDigest,
        load: F,
    ) -> Result<Option<Arc<CachedKey>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<KeyState>>>,
    {
        if let Some(entry) = self.entries.get(&digest).await {
            if entry.clean {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(entry.key.clone()));
            }
            self.entries.invalidate(&digest).await;
        }
        if self.negative.contains_key(&digest) {
            self.stats.negative_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let loaded = self
            .entries
            .try_get_with(digest, async {
                let before = self.epoch.load(Ordering::Acquire);
                self.stats.store_lookups.fetch_add(1, Ordering::Relaxed);
                let found = load().await;
                let clean = self.epoch.load(Ordering::Acquire) == before;
                match found {
                    Ok(Some(state)) => Ok(Arc::new(Entry {
                        key: Arc::new(CachedKey {
                            state,
                            last_use_mark: AtomicI64::new(0),
                        }),
                        clean,
                    })),
                    Ok(None) => {
                        if clean {
                            self.negative.insert(digest, ()).await;
                        }
                        Err(LoadError::Absent)
                    }
                    Err(e) => Err(LoadError::Store(e)),
                }
            })
            .await;
        match loaded {
            Ok(entry) => Ok(Some(entry.key.clone())),
            Err(e) => match &*e {
                LoadError::Absent => Ok(None),
                LoadError::Store(e) => Err(e.clone()),
            },
        }
    }

    /// Drops what is cached for `digest`, after a mutation of its key has been committed.
    pub async fn invalidate(&self, digest: &KeyDigest) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate(digest).await;
        self.negative.invalidate(digest).await;
    }

    /// Drops every cached key of an account, after its policy changed.
    pub fn invalidate_account(&self, account_id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let account_id = account_id.to_owned();
        let registered = self
            .entries
            .invalidate_entries_if(move |_, entry| entry.key.state.key.account_id == account_id);
        if registered.is_err() {
            // Only if closures were not enabled at build time; dropping everything is correct too.
            self.entries.invalidate_all();
        }
    }

    /// Drops everything (e.g. when change notifications may have been missed).
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
        self.negative.invalidate_all();
    }
}
