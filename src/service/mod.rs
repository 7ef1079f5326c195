//! The domain service: verification and key management, between the gRPC adapters and the
//! store. Holds the cache; every mutation goes through here so the cache is invalidated as soon
//! as the store has committed.

mod accounts;
mod auth;
mod last_used;
mod manage;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cache::{CacheSettings, CachedKey, KeyCache};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::key::{KeyDigest, KeyFormat, ParsedKey};
use crate::metrics::VerifyMetrics;
use crate::model::{Change, KeyState, RateLimit};
use crate::ratelimit::{LimitStatus, Outcome, RateLimiter};
use crate::store::Store;
use crate::time::Timestamp;
use crate::verify::{self, Code, VerifyQuery};

pub use auth::{Access, CallContext, Caller};
pub use last_used::LastUsed;
pub use manage::{CreateKey, Expiry};

/// Service-wide policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Active keys an account may have unless its own override says otherwise.
    pub max_active_keys: u32,
    /// TTL of keys created without an expiry; `None` means never.
    pub default_ttl: Option<Duration>,
    /// Longest TTL a key may be given; `None` means unlimited.
    pub max_ttl: Option<Duration>,
    /// Rate limit of keys without their own.
    pub rate_limit: RateLimit,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_active_keys: 10,
            default_ttl: None,
            max_ttl: None,
            rate_limit: RateLimit {
                limit: 100,
                window_secs: 120,
            },
        }
    }
}

/// The answer to a verify request.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The outcome.
    pub code: Code,
    /// Required scopes the key lacks.
    pub missing_scopes: Vec<String>,
    /// The key, whenever it was found.
    pub key: Option<Arc<CachedKey>>,
    /// The key's own limit after this request (VALID), or the limit that refused it.
    pub rate_limit: Option<LimitStatus>,
    /// How long to wait before retrying (RATE_LIMITED).
    pub retry_after: Option<Duration>,
}

impl Verdict {
    fn early(code: Code) -> Self {
        Verdict {
            code,
            missing_scopes: Vec::new(),
            key: None,
            rate_limit: None,
            retry_after: None,
        }
    }
}

/// keyward's domain service.
#[derive(Debug)]
pub struct Keyward {
    store: Arc<dyn Store>,
    cache: Arc<KeyCache>,
    format: KeyFormat,
    policy: Policy,
    catalog: Arc<Catalog>,
    last_used: LastUsed,
    limiter: RateLimiter,
    feed_interruptions: AtomicU64,
    verify_metrics: VerifyMetrics,
}

impl Keyward {
    /// A service over `store`.
    pub fn new(
        store: Arc<dyn Store>,
        catalog: Arc<Catalog>,
        format: KeyFormat,
        policy: Policy,
        cache: CacheSettings,
    ) -> Self {
        Keyward {
            limiter: RateLimiter::new(cache.capacity),
            feed_interruptions: AtomicU64::new(0),
            verify_metrics: VerifyMetrics::default(),
            cache: Arc::new(KeyCache::new(cache, store.has_change_feed())),
            format,
            policy,
            catalog,
            last_used: LastUsed::default(),
            store,
        }
    }

    /// Loads the digests of every stored key into the set that bounds the store work of
    /// unknown keys; at start, and again when the change feed may have missed creations.
    pub async fn load_known_keys(&self) -> Result<()> {
        let digests = self.store.key_digests().await?;
        let count = digests.len();
        self.cache.known().replace_all(digests);
        tracing::debug!(keys = count, "loaded the set of known key digests");
        Ok(())
    }

    /// The scope catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The cache, for its statistics.
    pub fn cache(&self) -> &KeyCache {
        &self.cache
    }

    /// The store, for shutdown.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Decides whether `raw` may make the request `query` describes, and records the answer
    /// in the metrics.
    pub async fn verify(&self, raw: &str, query: &VerifyQuery) -> Result<Verdict> {
        let start = std::time::Instant::now();
        let verdict = self.decide(raw, query).await;
        let code = verdict.as_ref().ok().map(|v| v.code);
        self.verify_metrics.record(code, start.elapsed());
        verdict
    }

    /// Verification counters and latencies.
    pub fn verify_metrics(&self) -> &VerifyMetrics {
        &self.verify_metrics
    }

    async fn decide(&self, raw: &str, query: &VerifyQuery) -> Result<Verdict> {
        if raw.is_empty() {
            return Ok(Verdict::early(Code::Missing));
        }
        let Some(parsed) = self.format.parse(raw) else {
            return Ok(Verdict::early(Code::Malformed));
        };
        let Some(key) = self.lookup(&parsed).await? else {
            return Ok(Verdict::early(Code::NotFound));
        };
        let now = Timestamp::now();
        let decision = verify::decide(&key.state, query, now);
        let mut verdict = Verdict {
            code: decision.code,
            missing_scopes: decision.missing_scopes,
            key: None,
            rate_limit: None,
            retry_after: None,
        };
        if verdict.code == Code::Valid {
            self.apply_rate_limits(&mut verdict, &key.state, query, now);
        }
        if verdict.code == Code::Valid && key.mark_use(now) {
            self.last_used.record(&key.state.key.id, now);
        }
        verdict.key = Some(key);
        Ok(verdict)
    }

    /// Takes the request's units from the key's limit and the guardrails of the scopes it
    /// requires, all or nothing; a refusal turns the verdict into `RATE_LIMITED`.
    fn apply_rate_limits(
        &self,
        verdict: &mut Verdict,
        state: &KeyState,
        query: &VerifyQuery,
        now: Timestamp,
    ) {
        let own = state.key.rate_limit.unwrap_or(self.policy.rate_limit);
        let guardrails: Vec<(&str, RateLimit)> = query
            .required_scopes
            .iter()
            .filter_map(|s| Some((s.as_str(), self.catalog.get(s)?.guardrail?)))
            .collect();
        match self
            .limiter
            .check(&state.digest, &own, &guardrails, query.cost, now)
        {
            Outcome::Allowed(status) => verdict.rate_limit = Some(status),
            Outcome::Limited {
                status,
                retry_after,
                ..
            } => {
                verdict.code = Code::RateLimited;
                verdict.rate_limit = Some(status);
                verdict.retry_after = Some(retry_after);
            }
        }
    }

    /// The record of a well-formed key, through the cache.
    async fn lookup(&self, parsed: &ParsedKey) -> Result<Option<Arc<CachedKey>>> {
        let digest = parsed.digest;
        let store = self.store.clone();
        let key = self
            .cache
            .get_or_load(
                digest,
                move || async move { store.key_by_digest(&digest).await },
            )
            .await?;
        // A key whose stored environment disagrees with its text was not made by this service.
        Ok(key.filter(|k| k.state.key.environment == parsed.environment))
    }

    /// Applies a change another replica made (from the store's change feed) to the cache.
    pub async fn apply_change(self: &Arc<Self>, change: Change) {
        match change {
            Change::Key(digest) => self.cache.invalidate(&digest).await,
            Change::Account(account_id) => self.cache.invalidate_account(&account_id),
            Change::Down => self.cache.feed_down(),
            Change::Lost => {
                self.feed_interruptions.fetch_add(1, Ordering::Relaxed);
                self.cache.mark_all_stale();
                // Keys created while the feed was away are not in the known set yet.
                let service = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = service.load_known_keys().await {
                        tracing::warn!(error = %e, "could not reload the known key digests");
                    }
                });
            }
        }
    }

    /// How often the change feed was (re)connected after possibly missing changes.
    pub fn feed_interruptions(&self) -> u64 {
        self.feed_interruptions.load(Ordering::Relaxed)
    }

    /// Drops a mutated key from the cache.
    async fn invalidate(&self, digest: &KeyDigest) {
        self.cache.invalidate(digest).await;
    }
}
