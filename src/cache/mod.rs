//! The cache of `sha256(key) → record` in front of the store, so the verify path normally
//! touches no database. Keys live in a `quick_cache` (CLOCK-Pro, about 60 bytes of bookkeeping
//! per entry where moka took about 330: measured, see docs/benchmarks.md); unknown digests in a small
//! moka cache with a time to live.
//!
//! - Single flight: concurrent misses for one digest make one store query (a lock per digest
//!   being loaded, held across the query; the entry is re-checked under it).
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

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;

use crate::error::{Error, Result};
use crate::key::{DigestHashBuilder, KeyDigest};
use crate::known::KnownKeys;
mod state;

pub use state::{AccountLimit, Freshness, KeyState, UseMark};

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

/// What the cache says of a digest before any store query.
#[derive(Debug)]
pub enum Cached {
    /// Answered without the store: the key's state, or `None` when there is no such key (or
    /// an unknown digest's lookup budget is spent).
    Answered(Option<Arc<KeyState>>),
    /// Only the store can say: [`KeyCache::load_missing`].
    Missing,
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

/// The key cache's map: digest → entry, bounded by count.
type Entries = quick_cache::sync::Cache<
    KeyDigest,
    Arc<KeyState>,
    quick_cache::UnitWeighter,
    DigestHashBuilder,
>;

/// The key cache.
pub struct KeyCache {
    entries: Entries,
    /// One lock per digest being loaded: concurrent misses wait for the first one's query.
    loading: Mutex<HashMap<KeyDigest, Arc<tokio::sync::Mutex<()>>, DigestHashBuilder>>,
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

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("entries", &self.entries.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl KeyCache {
    /// An empty cache; `has_feed` says whether the store reports changes from other replicas
    /// (then entries are unconfirmed until the feed first connects).
    pub fn new(settings: CacheSettings, has_feed: bool) -> Self {
        let capacity = settings.capacity.max(1);
        KeyCache {
            // Sized for a small start: the map grows with what is cached, not with capacity.
            entries: Entries::with(
                usize::try_from(capacity.min(1024)).unwrap_or(1024),
                capacity,
                quick_cache::UnitWeighter,
                DigestHashBuilder::default(),
                quick_cache::sync::DefaultLifecycle::default(),
            ),
            loading: Mutex::default(),
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

    /// Keys cached right now.
    pub fn entry_count(&self) -> u64 {
        self.entries.len() as u64
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

    fn is_fresh(&self, entry: &KeyState) -> bool {
        let entry = &entry.freshness;
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
        match self.get(digest, loader)? {
            Cached::Answered(state) => Ok(state),
            // Boxed: the store's future is large, and every call's future (hit or not) would be
            // as large, copied whole each time a call starts.
            Cached::Missing => Box::pin(self.load_missing(digest, loader)).await,
        }
    }

    /// What the cache alone says of `digest`, without waiting: [`get_or_load`](Self::get_or_load)
    /// up to the store query, for callers that keep the store's future out of their own.
    pub fn get<L: Loader>(self: &Arc<Self>, digest: KeyDigest, loader: &L) -> Result<Cached> {
        if let Some(entry) = self.entries.get(&digest) {
            if self.is_fresh(&entry) {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Cached::Answered(Some(entry.clone())));
            }
            if self.is_servable(&entry) {
                self.stats.stale_hits.fetch_add(1, Ordering::Relaxed);
                if !self.store_is_down() {
                    self.refresh_in_background(digest, loader);
                }
                return Ok(Cached::Answered(Some(entry.clone())));
            }
        } else if self.negative.contains_key(&digest) {
            self.stats.negative_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Cached::Answered(None));
        } else if self.store_is_down() {
            return Err(unavailable());
        } else if !self.known.should_look_up(&digest) {
            return Ok(Cached::Answered(None));
        }
        Ok(Cached::Missing)
    }

    /// Asks the store for a digest [`get`](Self::get) found [`Cached::Missing`].
    pub async fn load_missing<L: Loader>(
        &self,
        digest: KeyDigest,
        loader: &L,
    ) -> Result<Option<Arc<KeyState>>> {
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
        let lock = {
            let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
            loading.entry(digest).or_default().clone()
        };
        let loaded = {
            let _turn = lock.lock().await;
            self.load_in_turn(digest, loader).await
        };
        let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
        // The map's reference and ours: nobody else waits on this digest.
        if Arc::strong_count(&lock) <= 2 {
            loading.remove(&digest);
        }
        loaded
    }

    /// [`load`](Self::load)'s work, with the digest's lock held: a caller before us may have
    /// refreshed the entry already.
    async fn load_in_turn<L: Loader>(
        &self,
        digest: KeyDigest,
        loader: &L,
    ) -> Result<Option<Arc<KeyState>>> {
        let current = self.entries.get(&digest);
        if let Some(entry) = &current
            && self.is_fresh(entry)
        {
            return Ok(Some(entry.clone()));
        }
        if current.is_none() && self.negative.contains_key(&digest) {
            return Ok(None);
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
            Ok(Some(mut state)) => {
                self.known.insert(&digest);
                if let Some(previous) = &current {
                    state.carry_over(previous);
                }
                state.freshness = state::Freshness {
                    loaded_at,
                    generation,
                    clean,
                    confirmed,
                    dirty: AtomicBool::new(false),
                };
                let state = Arc::new(state);
                self.entries.insert(digest, state.clone());
                Ok(Some(state))
            }
            Ok(None) => {
                if clean {
                    self.negative.insert(digest, ()).await;
                }
                self.entries.remove(&digest);
                Ok(None)
            }
            Err(e) => {
                self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                if !matches!(e, Error::Unavailable(_)) {
                    return Err(e);
                }
                let until = self.micros_since_start()
                    + i64::try_from(STORE_DOWN_BACKOFF.as_micros()).unwrap_or(i64::MAX);
                self.store_down_until.store(until, Ordering::Relaxed);
                match current {
                    // Keep what we had and serve it stale.
                    Some(entry) if self.is_servable(&entry) => {
                        self.stats.stale_hits.fetch_add(1, Ordering::Relaxed);
                        Ok(Some(entry.clone()))
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// Whether a not-fresh entry may still be served while the store is unreachable.
    fn is_servable(&self, entry: &KeyState) -> bool {
        let entry = &entry.freshness;
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
        if let Some(entry) = self.entries.peek(digest) {
            entry.freshness.dirty.store(true, Ordering::Release);
        }
        self.negative.invalidate(digest).await;
    }

    /// Keys were created in bulk (named by the first 8 bytes of their digests): they join the
    /// known set, and every "unknown" answer is forgotten (one of them may be about one of
    /// these keys; repeats of truly unknown keys are then bounded by the known set's look-up
    /// budget until they are remembered again).
    pub fn keys_added(&self, shorts: &[u64]) {
        self.known.insert_shorts(shorts);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.negative.invalidate_all();
    }

    /// Makes every cached key of an account be re-read, after its policy changed (one pass
    /// over the cache; account changes are rare). Their counters carry over, as for a key.
    pub fn invalidate_account(&self, account_id: &str) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.retain(|_, entry| {
            if entry.key.account_id() == account_id {
                entry.freshness.dirty.store(true, Ordering::Release);
            }
            true
        });
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
