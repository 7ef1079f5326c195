//! The moka cache of `sha256(key) → record` in front of the store, so the verify path normally
//! touches no database.
//!
//! - Single flight: concurrent misses for one digest make one store query.
//! - Negative cache: unknown digests are remembered briefly in a separate bounded cache, so a
//!   flood of random well-formed keys neither reaches the store nor evicts real keys.
//! - Consistency: mutations invalidate at once; a load that raced a mutation is never served
//!   again; when change notifications may have been missed, every entry is marked stale and
//!   re-read from the store before it is trusted again.
//! - Change feed down: an entry read while the feed is down (or any entry, while it is down)
//!   is trusted for [`UNCONFIRMED_TTL`] only, then re-read; when the feed reconnects, every
//!   entry is re-read before it is trusted again.
//! - A cached key never waits on the store: an entry that is due for a re-read is answered
//!   from the cache (up to `stale_limit` after it was loaded) while one background task per key
//!   re-reads it. While the store is known to be down, misses fail fast.
//! - Unknown-key floods: a miss is looked up only if the digest is known to exist or the
//!   per-second budget for unknown digests allows it (see [`crate::known`]).

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};

use crate::error::{Error, Result};
use crate::key::{DigestHashBuilder, KeyDigest};
use crate::known::KnownKeys;
use crate::model::KeyState;

/// How long, after the store answered "unavailable", misses fail fast without asking it.
const STORE_DOWN_BACKOFF: Duration = Duration::from_secs(1);

/// How long an entry is trusted when changes to it may not be reported: it was read while the
/// change feed was down, or the feed is down now.
pub const UNCONFIRMED_TTL: Duration = Duration::from_secs(1);

/// Reads a key's state from the store for the cache. Held by reference on the hot path and
/// cloned only when a background re-read starts, so a cache hit costs no reference count.
pub trait Loader: Clone + Send + Sync + 'static {
    /// The state of the key with this digest; `None` if there is no such key.
    fn load(
        &self,
        digest: KeyDigest,
    ) -> impl Future<Output = Result<Option<KeyState>>> + Send + 'static;
}

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
    /// Store look-ups per second for digests not known to exist.
    pub unknown_lookups_per_second: u32,
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
    /// Background re-reads started for entries answered from the cache.
    pub refreshes: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    key: Arc<KeyState>,
    loaded_at: Instant,
    /// The cache generation when loading started; an older one means "re-read before trusting".
    generation: u64,
    /// False when an invalidation happened while this entry was loading: it may be stale.
    clean: bool,
    /// Whether the change feed was connected for the whole load: changes to the key after it
    /// are reported.
    confirmed: bool,
    /// Set when the key changed after this entry was read: it is re-read before it is used
    /// again (kept rather than dropped, so the re-read carries its rate-limit counters over).
    dirty: AtomicBool,
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
    /// Whether the change feed is connected (always, for a store without one).
    feed_up: AtomicBool,
    /// Bumped whenever the feed goes down.
    feed_epoch: AtomicU64,
    /// Digests being re-read in the background.
    refreshing: Mutex<HashSet<KeyDigest, DigestHashBuilder>>,
    known: KnownKeys,
    started: Instant,
    stats: CacheStats,
}

impl KeyCache {
    /// An empty cache; `has_feed` says whether the store reports changes from other replicas
    /// (then entries are unconfirmed until the feed first connects).
    pub fn new(settings: CacheSettings, has_feed: bool) -> Self {
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
            feed_up: AtomicBool::new(!has_feed),
            feed_epoch: AtomicU64::new(0),
            refreshing: Mutex::default(),
            known: KnownKeys::new(settings.unknown_lookups_per_second),
            started: Instant::now(),
            stats: CacheStats::default(),
        }
    }

    /// What the cache has done so far.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Keys cached right now. moka counts lazily, so its pending bookkeeping is run first.
    pub async fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.entry_count()
    }

    fn micros_since_start(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    fn store_is_down(&self) -> bool {
        self.micros_since_start() < self.store_down_until.load(Ordering::Relaxed)
    }

    /// The digests known to exist, which bound the store work of unknown keys.
    pub fn known(&self) -> &KnownKeys {
        &self.known
    }

    fn is_fresh(&self, entry: &Entry) -> bool {
        let age = entry.loaded_at.elapsed();
        entry.clean
            && !entry.dirty.load(Ordering::Acquire)
            && entry.generation == self.generation.load(Ordering::Acquire)
            && age < self.settings.ttl
            && ((entry.confirmed && self.feed_up.load(Ordering::Acquire)) || age < UNCONFIRMED_TTL)
    }

    /// The record for `digest`, from the cache or, on a miss, from `load`. Callers missing on
    /// one digest at once are serialised on it, and all but the first find the entry the first
    /// one loaded: one store query. An entry due for a re-read is answered at once and re-read
    /// in the background. `None`: no such key.
    pub async fn get_or_load<L: Loader>(
        self: &Arc<Self>,
        digest: KeyDigest,
        loader: &L,
    ) -> Result<Option<Arc<KeyState>>> {
        if let Some(entry) = self.entries.get(&digest).await {
            if self.is_fresh(&entry) {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(entry.key.clone()));
            }
            if self.is_servable(&entry) {
                self.stats.stale_hits.fetch_add(1, Ordering::Relaxed);
                if !self.store_is_down() {
                    self.refresh_in_background(digest, loader);
                }
                return Ok(Some(entry.key.clone()));
            }
        } else if self.negative.contains_key(&digest) {
            self.stats.negative_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        } else if self.store_is_down() {
            return Err(unavailable());
        } else if !self.known.should_look_up(&digest) {
            return Ok(None);
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        self.load(digest, loader).await
    }

    /// Re-reads `digest` in a task of its own, unless one is already doing so.
    fn refresh_in_background<L: Loader>(self: &Arc<Self>, digest: KeyDigest, loader: &L) {
        let started = self
            .refreshing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest);
        if !started {
            return;
        }
        self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
        let cache = self.clone();
        let loader = loader.clone();
        tokio::spawn(async move {
            if let Err(e) = cache.load(digest, &loader).await {
                tracing::debug!(error = %e, "background re-read of a cached key failed");
            }
            cache
                .refreshing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&digest);
        });
    }

    /// Loads `digest` from the store into the cache, one query per digest at a time.
    async fn load<L: Loader>(
        &self,
        digest: KeyDigest,
        loader: &L,
    ) -> Result<Option<Arc<KeyState>>> {
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
                let feed_epoch = self.feed_epoch.load(Ordering::Acquire);
                let feed_up = self.feed_up.load(Ordering::Acquire);
                let loaded_at = Instant::now();
                self.stats.store_lookups.fetch_add(1, Ordering::Relaxed);
                let found = loader.load(digest).await;
                let clean = self.epoch.load(Ordering::Acquire) == before;
                let confirmed = feed_up
                    && self.feed_up.load(Ordering::Acquire)
                    && self.feed_epoch.load(Ordering::Acquire) == feed_epoch;
                match found {
                    Ok(Some(state)) => {
                        self.known.insert(&digest);
                        if let Some(previous) = &current {
                            state.carry_over(&previous.key);
                        }
                        Ok(Op::Put(Arc::new(Entry {
                            key: Arc::new(state),
                            loaded_at,
                            generation,
                            clean,
                            confirmed,
                            dirty: AtomicBool::new(false),
                        })))
                    }
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
        entry.clean
            && !entry.dirty.load(Ordering::Acquire)
            && entry.loaded_at.elapsed() < self.settings.stale_limit
    }

    /// Makes the next lookup of `digest` re-read it, after a mutation of its key (or its
    /// creation) has been committed. The entry is marked rather than dropped, so the re-read
    /// takes over its rate-limit counters: changing a key does not reset its limits.
    pub async fn invalidate(&self, digest: &KeyDigest) {
        // A key that changed (or was just created) exists.
        self.known.insert(digest);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(entry) = self.entries.get(digest).await {
            entry.dirty.store(true, Ordering::Release);
        }
        self.negative.invalidate(digest).await;
    }

    /// Drops every cached key of an account, after its policy changed.
    pub fn invalidate_account(&self, account_id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let account_id = account_id.to_owned();
        let registered = self
            .entries
            .invalidate_entries_if(move |_, entry| entry.key.key.account_id() == account_id);
        if registered.is_err() {
            // Only if closures were not enabled at build time; dropping everything is correct too.
            self.entries.invalidate_all();
        }
    }

    /// The change feed reconnected after changes may have been missed: every cached key is
    /// re-read from the store before it is fresh again, and unknown keys are forgotten.
    pub fn mark_all_stale(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.negative.invalidate_all();
        self.feed_up.store(true, Ordering::Release);
    }

    /// The change feed is down: until it is back, nothing is trusted for longer than
    /// [`UNCONFIRMED_TTL`] after it was read.
    pub fn feed_down(&self) {
        self.feed_epoch.fetch_add(1, Ordering::AcqRel);
        self.feed_up.store(false, Ordering::Release);
        self.negative.invalidate_all();
    }

    /// Whether the change feed is connected (always true for a store without one).
    pub fn feed_connected(&self) -> bool {
        self.feed_up.load(Ordering::Acquire)
    }
}

fn unavailable() -> Error {
    Error::Unavailable("the database is unavailable".into())
}

#[cfg(test)]
mod tests;
