//! The moka cache of `sha256(key) → record` in front of the store, so the verify path normally
//! touches no database.
//!
//! - Single flight: concurrent misses for one digest make one store query.
//! - Negative cache: unknown digests are remembered briefly in a separate bounded cache, so a
//!   flood of random well-formed keys neither reaches the store nor evicts real keys.
//! - Consistency: mutations invalidate at once; a load that raced a mutation is never served
//!   again; when change notifications may have been missed, every entry is marked stale and
//!   re-read from the store before it is trusted again.
//! - Outages: a stale entry whose refresh fails because the store is unavailable keeps being
//!   served up to `stale_limit` after it was loaded; while the store is known to be down, misses
//!   fail fast instead of waiting for a connection.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};

use crate::error::{Error, Result};
use crate::key::{DigestHashBuilder, KeyDigest};
use crate::model::KeyState;
use crate::time::Timestamp;

/// How long, after the store answered "unavailable", misses fail fast without asking it.
const STORE_DOWN_BACKOFF: Duration = Duration::from_secs(1);

/// How big the caches are and how long entries live.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Most keys cached.
    pub capacity: u64,
    /// Backstop: a cached key is re-read from the store at least this often.
    pub ttl: Duration,
    /// How long after loading a key may still be served when the store cannot be reached.
    pub stale_limit: Duration,
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
    /// Lookups answered from a stale entry because the store was unavailable.
    pub stale_hits: AtomicU64,
    /// Queries actually sent to the store.
    pub store_lookups: AtomicU64,
    /// Store queries that failed.
    pub store_errors: AtomicU64,
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
    loaded_at: Instant,
    /// The cache generation when loading started; an older one means "re-read before trusting".
    generation: u64,
    /// False when an invalidation happened while this entry was loading: it may be stale.
    clean: bool,
}

/// The key cache.
#[derive(Debug)]
pub struct KeyCache {
    entries: Cache<KeyDigest, Arc<Entry>, DigestHashBuilder>,
    negative: Cache<KeyDigest, (), DigestHashBuilder>,
    settings: CacheSettings,
    /// Bumped by every invalidation; a load that sees it move may have read stale data.
    epoch: AtomicU64,
    /// Bumped when notifications may have been missed: older entries must be re-read.
    generation: AtomicU64,
    /// Until when (micros) the store is assumed down.
    store_down_until: AtomicI64,
    started: Instant,
    stats: CacheStats,
}

impl KeyCache {
    /// An empty cache.
    pub fn new(settings: CacheSettings) -> Self {
        KeyCache {
            entries: Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.stale_limit.max(settings.ttl))
                .support_invalidation_closures()
                .build_with_hasher(DigestHashBuilder::default()),
            negative: Cache::builder()
                .max_capacity(settings.negative_capacity)
                .time_to_live(settings.negative_ttl)
                .build_with_hasher(DigestHashBuilder::default()),
            settings,
            epoch: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            store_down_until: AtomicI64::new(0),
            started: Instant::now(),
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

    fn micros_since_start(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    fn store_is_down(&self) -> bool {
        self.micros_since_start() < self.store_down_until.load(Ordering::Relaxed)
    }

    fn is_fresh(&self, entry: &Entry) -> bool {
        entry.clean
            && entry.generation == self.generation.load(Ordering::Acquire)
            && entry.loaded_at.elapsed() < self.settings.ttl
    }

    /// The record for `digest`, from the cache or, on a miss, from `load`. Callers missing on
    /// one digest at once are serialised on it, and all but the first find the entry the first
    /// one loaded: one store query. `None`: no such key.
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
            if self.is_fresh(&entry) {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(entry.key.clone()));
            }
            if self.is_servable(&entry) && self.store_is_down() {
                self.stats.stale_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(entry.key.clone()));
            }
        } else if self.negative.contains_key(&digest) {
            self.stats.negative_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        } else if self.store_is_down() {
            return Err(unavailable());
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let computed = self
            .entries
            .entry(digest)
            .and_try_compute_with(|current| async move {
                let current = current.map(|e| e.into_value());
                if let Some(entry) = &current
                    && self.is_fresh(entry)
                {
                    return Ok(Op::Nop); // a caller before us refreshed it
                }
                if current.is_none() && self.negative.contains_key(&digest) {
                    return Ok(Op::Nop);
                }
                let before = self.epoch.load(Ordering::Acquire);
                let generation = self.generation.load(Ordering::Acquire);
                let loaded_at = Instant::now();
                self.stats.store_lookups.fetch_add(1, Ordering::Relaxed);
                let found = load().await;
                let clean = self.epoch.load(Ordering::Acquire) == before;
                match found {
                    Ok(Some(state)) => Ok(Op::Put(Arc::new(Entry {
                        key: Arc::new(CachedKey {
                            state,
                            last_use_mark: AtomicI64::new(0),
                        }),
                        loaded_at,
                        generation,
                        clean,
                    }))),
                    Ok(None) => {
                        if clean {
                            self.negative.insert(digest, ()).await;
                        }
                        Ok(Op::Remove)
                    }
                    Err(e) => {
                        self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                        if !matches!(e, Error::Unavailable(_)) {
                            return Err(e);
                        }
                        let until = self.micros_since_start()
                            + i64::try_from(STORE_DOWN_BACKOFF.as_micros()).unwrap_or(i64::MAX);
                        self.store_down_until.store(until, Ordering::Relaxed);
                        match &current {
                            // Keep what we had; it is served stale below.
                            Some(entry) if self.is_servable(entry) => Ok(Op::Nop),
                            _ => Err(e),
                        }
                    }
                }
            })
            .await?;
        match computed {
            CompResult::Inserted(entry) | CompResult::ReplacedWith(entry) => {
                Ok(Some(entry.into_value().key.clone()))
            }
            CompResult::Unchanged(entry) => {
                let entry = entry.into_value();
                if !self.is_fresh(&entry) {
                    self.stats.stale_hits.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(entry.key.clone()))
            }
            CompResult::Removed(_) | CompResult::StillNone(_) => Ok(None),
        }
    }

    /// Whether a not-fresh entry may still be served while the store is unreachable.
    fn is_servable(&self, entry: &Entry) -> bool {
        entry.clean && entry.loaded_at.elapsed() < self.settings.stale_limit
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

    /// Change notifications may have been missed: every cached key is re-read from the store
    /// before it is trusted again (or served stale while the store is unreachable), and unknown
    /// keys are forgotten.
    pub fn mark_all_stale(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.negative.invalidate_all();
    }
}

fn unavailable() -> Error {
    Error::Unavailable("the database is unavailable".into())
}
