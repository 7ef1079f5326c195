//! The domain service: verification and key management, between the gRPC adapters and the
//! store. Holds the cache; every mutation goes through here so the cache is invalidated as soon
//! as the store has committed.

mod accounts;
mod auth;
mod grant;
mod last_used;
mod manage;
mod portal;
mod root;
mod usage;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cache::{AccountLimit, KeyState};
use crate::cache::{CacheSettings, Cached, KeyCache, Loader};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::key::{KeyDigest, KeyFormat, ParsedKey};
use crate::model::{Change, RateLimit};
use crate::ratelimit::credits::{self, CreditBlock, CreditBlocks, CreditCheck};
use crate::ratelimit::engine::{Engine, Reservation};
use crate::ratelimit::{AccountCounters, Ask, CreditStatus, Mode, Outcome, RateState, Short, Slot};
use crate::stats::VerifyMetrics;
use crate::store::Store;
use crate::time::Timestamp;
use crate::verify::{self, Code, Decision, Presented, RateBudget, VerifyQuery};

pub use auth::{Access, CallContext, Caller, PortalAction, PortalGrant};
pub use grant::{CreateKey, Expiry};
pub use last_used::LastUsed;
pub use manage::{ImportRecord, Imported, Leak, STATISTICS_AFTER_IMPORTED};
pub use portal::{NewPortalSession, PortalLink, PortalSettings};
pub use usage::UsageCounter;

/// The longest foreign key Verify hashes.
const MAX_FOREIGN_KEY_LEN: usize = 256;

/// Accounts whose shared-limit counters a replica keeps at once (only accounts with a limit
/// that are verified take room).
const ACCOUNT_COUNTERS: usize = 100_000;

/// Keys whose credit blocks a replica keeps at once (only keys with credits that are verified
/// take room; an evicted block's unspent units are lost, an undercount).
const CREDIT_BLOCKS: usize = 100_000;

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

/// keyward's domain service.
#[derive(Debug)]
pub struct Keyward {
    store: Arc<dyn Store>,
    loader: StoreLoader,
    cache: Arc<KeyCache>,
    format: KeyFormat,
    policy: Policy,
    catalog: Arc<Catalog>,
    last_used: LastUsed,
    usage: UsageCounter,
    feed_interruptions: AtomicU64,
    verify_metrics: VerifyMetrics,
    /// Prefixes of imported keys issued elsewhere, which Verify hashes and looks up.
    foreign_prefixes: Vec<String>,
    /// Seals and opens list page tokens (see [`Keyward::load_shared_secrets`]).
    page_tokens: crate::page_token::PageTokens,
    /// The shared rate-limit engine, when one is configured.
    engine: Option<Arc<Engine>>,
    /// This replica's counters of accounts' shared limits.
    account_counters: AccountCounters,
    /// This replica's blocks of keys' credits.
    credit_blocks: CreditBlocks,
    /// How portal sessions behave.
    portal: PortalSettings,
    /// Keys imported through this replica since it last refreshed the store's statistics.
    imported_since_statistics: AtomicU64,
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
            feed_interruptions: AtomicU64::new(0),
            verify_metrics: VerifyMetrics::default(),
            foreign_prefixes: Vec::new(),
            cache: Arc::new(KeyCache::new(cache, store.has_change_feed())),
            loader: StoreLoader(store.clone()),
            format,
            policy,
            catalog,
            last_used: LastUsed::default(),
            usage: UsageCounter::new(true),
            // This process's own until the store's shared one is loaded.
            page_tokens: crate::page_token::PageTokens::new(
                crate::page_token::PageTokens::random_secret(),
            ),
            store,
            engine: None,
            account_counters: AccountCounters::new(ACCOUNT_COUNTERS),
            credit_blocks: CreditBlocks::new(CREDIT_BLOCKS),
            portal: PortalSettings::default(),
            imported_since_statistics: AtomicU64::new(0),
        }
    }

    /// Counts usage per key over time (`true`, the default) or not.
    pub fn with_usage_counting(mut self, enabled: bool) -> Self {
        self.usage = UsageCounter::new(enabled);
        self
    }

    /// Counts rate limits in the shared `engine` instead of this replica's memory.
    pub fn with_rate_limit_engine(mut self, engine: Arc<Engine>) -> Self {
        self.engine = Some(engine);
        self
    }

    /// The shared rate-limit engine, when one is configured.
    pub fn rate_limit_engine(&self) -> Option<&Arc<Engine>> {
        self.engine.as_ref()
    }

    /// Loads the secrets the replicas share through the store (the page-token key), storing
    /// one if this is the first server: a page token from one replica opens on every other.
    pub async fn load_shared_secrets(&mut self) -> Result<()> {
        use crate::page_token::{PageTokens, SECRET_NAME};
        let stored = self
            .store
            .shared_secret(SECRET_NAME, &PageTokens::random_secret())
            .await?;
        let secret = <[u8; 32]>::try_from(stored.as_slice()).map_err(|_| {
            crate::error::Error::internal(format!(
                "the stored {SECRET_NAME} secret is {} bytes, not 32",
                stored.len()
            ))
        })?;
        self.page_tokens = PageTokens::new(secret);
        Ok(())
    }

    /// Seals and opens list page tokens.
    pub(crate) fn page_tokens(&self) -> &crate::page_token::PageTokens {
        &self.page_tokens
    }

    /// Loads the digests of every stored key into the set that bounds the store work of
    /// unknown keys; at start, and again when the change feed may have missed creations.
    /// Read a page at a time; until the first load finishes every digest is looked up.
    pub async fn load_known_keys(&self) -> Result<()> {
        const PAGE: u32 = 100_000;
        let started = std::time::Instant::now();
        let (mut count, mut after) = (0usize, 0);
        loop {
            let (digests, next) = self.store.key_digests(after, PAGE).await?;
            count += digests.len();
            self.cache.known().add_loaded(&digests);
            match next {
                Some(next) => after = next,
                None => break,
            }
        }
        self.cache.known().mark_complete();
        tracing::info!(
            keys = count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded the set of known key digests"
        );
        Ok(())
    }

    /// Keys starting with one of `prefixes` (imported keys issued elsewhere, without keyward's
    /// format or checksum) are hashed and looked up by Verify instead of answered MALFORMED.
    pub fn with_foreign_prefixes(mut self, prefixes: Vec<String>) -> Self {
        self.foreign_prefixes = prefixes;
        self
    }

    /// The digest and, for keyward's own format, the environment its text names, of a
    /// presented key; `None` when it is neither keyward's format nor a foreign prefix's.
    fn parse_presented(&self, raw: &str) -> Option<(KeyDigest, Option<crate::key::Environment>)> {
        if let Some(parsed) = self.format.parse(raw) {
            return Some((parsed.digest, Some(parsed.environment)));
        }
        let foreign = raw.len() <= MAX_FOREIGN_KEY_LEN
            && self
                .foreign_prefixes
                .iter()
                .any(|p| raw.starts_with(p.as_str()))
            && raw.bytes().all(|b| b.is_ascii_graphic());
        foreign.then(|| (KeyDigest::of(raw), None))
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
    /// in the metrics. Only I/O here: parse, look up, [`verify::decide`], record the use.
    ///
    /// A key the cache can answer for is decided without waiting on anything; only a miss
    /// awaits the store, in a boxed future, so a call's own future stays small (it is moved
    /// whole as each call starts).
    pub async fn verify(&self, raw: &str, query: &VerifyQuery<'_>) -> Result<Decision> {
        let start = std::time::Instant::now();
        let presented = match self.present(raw) {
            Presenting::Now(presented) => presented,
            Presenting::Load {
                digest,
                environment,
            } => Box::pin(self.present_loaded(digest, environment)).await,
        };
        let decision = match presented {
            Ok(presented) => match self.decide(presented, query, self.mode()) {
                Ok(decision) => Ok(decision),
                Err(topping) => Box::pin(self.decide_topped_up(query, topping)).await,
            },
            Err(e) => Err(e),
        };
        let code = decision.as_ref().ok().map(|d| d.code);
        if let Ok(d) = &decision {
            self.usage.record(d.key.as_ref(), d.code, d.decided_at);
        }
        self.verify_metrics.record(code, start.elapsed());
        decision
    }

    /// Verification counters and latencies.
    pub fn verify_metrics(&self) -> &VerifyMetrics {
        &self.verify_metrics
    }

    /// What `raw` is, as far as parsing and the cache can tell without the store.
    fn present(&self, raw: &str) -> Presenting {
        if raw.is_empty() {
            return Presenting::Now(Ok(Presented::Empty));
        }
        let Some((digest, environment)) = self.parse_presented(raw) else {
            return Presenting::Now(Ok(Presented::Malformed));
        };
        match self.cache.get(digest, &self.loader) {
            Ok(Cached::Answered(state)) => Presenting::Now(Ok(found(state, environment))),
            Ok(Cached::Missing) => Presenting::Load {
                digest,
                environment,
            },
            Err(e) => Presenting::Now(Err(e)),
        }
    }

    /// What a key the cache did not hold is, once the store has said.
    async fn present_loaded(
        &self,
        digest: KeyDigest,
        environment: Option<crate::key::Environment>,
    ) -> Result<Presented> {
        let state = self.cache.load_missing(digest, &self.loader).await?;
        Ok(found(state, environment))
    }

    /// [`verify::decide`] now, with the service's rate-limit budget; a valid key's use is
    /// recorded. `Err` when the shared engine must top up the key's blocks first.
    fn decide(
        &self,
        presented: Presented,
        query: &VerifyQuery<'_>,
        mode: Mode,
    ) -> std::result::Result<Decision, Topping> {
        let now = Timestamp::now();
        let mut budget = Budgets {
            catalog: &self.catalog,
            default: self.policy.rate_limit,
            accounts: &self.account_counters,
            credit_blocks: &self.credit_blocks,
            mode,
            shorts: Vec::new(),
            account: None,
            credit_short: None,
            credit_status: None,
        };
        let decision = verify::decide(presented, query, now, &mut budget);
        if (!budget.shorts.is_empty() || budget.credit_short.is_some())
            && let Some(state) = decision.key
        {
            return Err(Topping {
                state,
                shorts: budget.shorts,
                credits: budget.credit_short,
                account: budget.account,
            });
        }
        if matches!(mode, Mode::Fallback { .. })
            && let Some(engine) = &self.engine
        {
            engine
                .stats()
                .fallback_decisions
                .fetch_add(1, Ordering::Relaxed);
        }
        if decision.code == Code::Valid
            && let Some(state) = &decision.key
            && state.mark_use(now)
        {
            self.last_used.record(state, now);
        }
        Ok(decision)
    }

    /// How budgets are counted right now.
    fn mode(&self) -> Mode {
        match &self.engine {
            None => Mode::Local,
            Some(engine) if engine.is_up() => Mode::Shared {
                replicas: engine.replicas(),
            },
            Some(engine) => Mode::Fallback {
                replicas: engine.replicas(),
            },
        }
    }

    /// Decides, topping up the key's blocks first (rate limits from the shared engine, credits
    /// from the database) as often as the decision needs it (a few times at most: other calls
    /// may spend what was reserved meanwhile). An unreachable engine turns the decision over
    /// to the local counters; an unreachable database fails a credit-limited key's call.
    async fn decide_topped_up(
        &self,
        query: &VerifyQuery<'_>,
        mut topping: Topping,
    ) -> Result<Decision> {
        const ATTEMPTS: usize = 8;
        for _ in 0..ATTEMPTS {
            if let Some(engine) = &self.engine
                && !topping.shorts.is_empty()
            {
                self.reserve_blocks(engine, &topping).await;
            }
            if let Some(short) = &topping.credits {
                self.reserve_credits(&topping.state, short).await?;
            }
            // Only a key whose environment matched reaches the budget, so this is what was
            // presented.
            let presented = Presented::Found {
                environment: topping.state.key.environment(),
                state: topping.state.clone(),
            };
            match self.decide(presented, query, self.mode()) {
                Ok(decision) => return Ok(decision),
                Err(again) => topping = again,
            }
        }
        // Still short after every attempt: concurrent calls spent the reservations as fast
        // as they came. This one is refused like any other over the limit.
        Ok(Decision {
            code: Code::RateLimited,
            missing_scopes: Vec::new(),
            rate_limit: None,
            retry_after: Some(Duration::from_secs(1)),
            credits: None,
            key: Some(topping.state),
            decided_at: Timestamp::now(),
        })
    }

    /// Tops the key's rate-limit blocks up from the shared engine; an unreachable engine is
    /// marked down (the next decision uses the local counters).
    async fn reserve_blocks(&self, engine: &Engine, topping: &Topping) {
        let sent_at = Timestamp::now();
        let key = &topping.state.key;
        let reservations: Vec<Reservation> = topping
            .shorts
            .iter()
            .map(|short| Reservation {
                name: match &short.slot {
                    Slot::Own => format!("key:{}", key.id()),
                    Slot::Scope(scope) => format!("key:{}:scope:{scope}", key.id()),
                    Slot::Account => format!("account:{}", key.account_id()),
                },
                limit: short.limit.limit,
                window_ms: u64::try_from(short.limit.window().as_millis()).unwrap_or(u64::MAX),
                want: short.want,
                need: short.need,
            })
            .collect();
        if let Ok(grants) = engine.reserve(&reservations, sent_at.micros() / 1000).await {
            for (short, grant) in topping.shorts.iter().zip(&grants) {
                topping
                    .state
                    .rate
                    .apply_grant(short, topping.account.as_deref(), grant, sent_at);
            }
        }
    }

    /// Tops the key's credit block up from the database.
    async fn reserve_credits(&self, state: &KeyState, short: &CreditShort) -> Result<()> {
        let reserved = self
            .store
            .reserve_credits(
                &state.key.key_id(),
                short.need,
                short.want,
                Timestamp::now(),
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, key_id = state.key.id(), "could not reserve credits");
                crate::error::Error::Unavailable(
                    "the key's credit balance cannot be read right now".into(),
                )
            })?;
        let mut block = credits::lock(&short.block);
        match reserved {
            Some((balance, granted)) => block.apply(&balance, granted, short.need),
            // The key has no credits any more (its cached copy is about to be dropped): the
            // request is not held to a balance that no longer exists.
            None => block.allow_unlimited(short.need),
        }
        Ok(())
    }

    /// Gives every credit block's unspent units back to the database (at shutdown).
    pub async fn return_credits(&self) {
        for (key_id, units, period) in self.credit_blocks.drain_unspent() {
            let key_id = crate::ids::KeyId::trusted(key_id);
            if let Err(e) = self.store.return_credits(&key_id, units, period).await {
                tracing::warn!(error = %e, %key_id, units, "could not give unspent credits back");
            }
        }
    }

    /// The cached record of a digest (loading it on a miss); `None` if there is no such key.
    async fn cached(&self, digest: KeyDigest) -> Result<Option<Arc<KeyState>>> {
        self.cache.get_or_load(digest, &self.loader).await
    }

    /// The record of a well-formed key, through the cache, if its stored environment matches
    /// its text (for management credentials).
    async fn lookup(&self, parsed: &ParsedKey) -> Result<Option<Arc<KeyState>>> {
        let key = self.cached(parsed.digest).await?;
        Ok(key.filter(|k| k.key.environment() == parsed.environment))
    }

    /// Applies a change another replica made (from the store's change feed) to the cache.
    pub async fn apply_change(self: &Arc<Self>, change: Change) {
        match change {
            Change::Key(digest) => self.cache.invalidate(&digest).await,
            Change::KeysAdded(shorts) => self.cache.keys_added(&shorts),
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

/// A key whose blocks must be topped up from the shared engine before it can be decided.
struct Topping {
    state: Arc<KeyState>,
    shorts: Vec<Short>,
    /// The key's credit block, when it lacks units.
    credits: Option<CreditShort>,
    /// The counters of the key's account's shared limit, when it has one.
    account: Option<Arc<RateState>>,
}

/// A credit block that lacks units: what to reserve.
struct CreditShort {
    block: Arc<std::sync::Mutex<CreditBlock>>,
    need: u64,
    want: u64,
}

/// A presented key, or what is needed to ask the store for it.
enum Presenting {
    /// Known without the store (or the store is known to be down).
    Now(Result<Presented>),
    /// A well-formed key the cache does not hold.
    Load {
        digest: KeyDigest,
        environment: Option<crate::key::Environment>,
    },
}

/// A well-formed key's record (or its absence) as [`Presented`].
fn found(state: Option<Arc<KeyState>>, environment: Option<crate::key::Environment>) -> Presented {
    match state {
        None => Presented::Unknown,
        Some(state) => Presented::Found {
            // A foreign key's text names no environment: its record's stands.
            environment: environment.unwrap_or(state.key.environment()),
            state,
        },
    }
}

/// The service's rate-limit budget: the key's counters in its cache entry, with the key's own
/// limit (or the service default) and the catalog's guardrails of the required scopes,
/// counted as `mode` says. In the shared mode, blocks that must be topped up from the engine
/// first are left in `shorts` (the decision made meanwhile is not an answer).
struct Budgets<'a> {
    catalog: &'a Catalog,
    default: RateLimit,
    accounts: &'a AccountCounters,
    credit_blocks: &'a CreditBlocks,
    mode: Mode,
    shorts: Vec<Short>,
    /// The counters of the key's account's shared limit, when it has one.
    account: Option<Arc<RateState>>,
    /// The key's credit block, when it must be topped up from the database first.
    credit_short: Option<CreditShort>,
    /// The key's credits after an allowed request.
    credit_status: Option<CreditStatus>,
}

impl RateBudget for Budgets<'_> {
    fn take(
        &mut self,
        state: &KeyState,
        required_scopes: &[&str],
        cost: u32,
        now: Timestamp,
    ) -> Outcome {
        let own = state.key.rate_limit().unwrap_or(self.default);
        // Credits first (USAGE_EXCEEDED comes before RATE_LIMITED), held locked until the rate
        // limits have answered, so they are spent only if every limit has room.
        let credit_block = state
            .key
            .has_credits()
            .then(|| self.credit_blocks.get(state.key.id()));
        let mut credit = credit_block.as_deref().map(credits::lock);
        if let Some(block) = credit.as_mut() {
            match block.check(
                u64::from(cost),
                self.mode.replicas(),
                now,
                state.freshness.loaded_at,
            ) {
                CreditCheck::Room => {}
                CreditCheck::Short { need, want } => {
                    drop(credit);
                    self.credit_short = credit_block.map(|block| CreditShort { block, need, want });
                    return not_an_answer(&own, now);
                }
                CreditCheck::Exhausted {
                    status,
                    retry_after,
                } => {
                    return Outcome::UsageExceeded {
                        credits: status,
                        retry_after,
                    };
                }
            }
        }
        let guardrails: Vec<(&str, RateLimit)> = required_scopes
            .iter()
            .filter_map(|s| Some((*s, self.catalog.get(s)?.guardrail?)))
            .collect();
        self.account = state
            .account_limit
            .map(|_| self.accounts.get(state.key.account_id()));
        let account = self
            .account
            .as_deref()
            .zip(state.account_limit.map(AccountLimit::rate_limit));
        let ask = Ask {
            own,
            guardrails: &guardrails,
            account,
            cost,
            now,
        };
        let outcome = match self.mode {
            Mode::Local => state.rate.check_local(&ask),
            Mode::Fallback { replicas } => state.rate.check_fallback(&ask, replicas),
            Mode::Shared { replicas } => match state.rate.check_shared(&ask, replicas) {
                Ok(outcome) => outcome,
                Err(shorts) => {
                    self.shorts = shorts;
                    return not_an_answer(&own, now);
                }
            },
        };
        if let (Outcome::Allowed(_), Some(block)) = (&outcome, credit.as_mut()) {
            block.spend(u64::from(cost));
            self.credit_status = Some(block.status());
        }
        outcome
    }

    fn credits(&self) -> Option<CreditStatus> {
        self.credit_status
    }
}

/// What a budget answers while blocks must be topped up first: the service decides again
/// once they are, so this is never an answer.
fn not_an_answer(own: &RateLimit, now: Timestamp) -> Outcome {
    Outcome::Limited {
        status: crate::ratelimit::LimitStatus {
            limit: own.limit,
            remaining: 0,
            reset_at: now,
        },
        retry_after: Duration::ZERO,
        scope: None,
    }
}

/// The cache's way to the store: the verify path's one query.
#[derive(Debug, Clone)]
struct StoreLoader(Arc<dyn Store>);

impl Loader for StoreLoader {
    fn load(
        &self,
        digest: KeyDigest,
    ) -> impl std::future::Future<Output = Result<Option<KeyState>>> + Send + 'static {
        let store = self.0.clone();
        async move { store.key_by_digest(&digest).await }
    }
}
