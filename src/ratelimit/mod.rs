//! Rate limits: each key has a budget of units per window (its own or the service default) and
//! one per guardrailed scope it uses. A key's counters live in its cache entry ([`RateState`],
//! in [`crate::cache::KeyState`]), behind one lock, so a request is checked against every
//! applicable limit at once and consumes from all or none, with no second lookup. Windows are
//! fixed: one starts at the first request after the previous one ended. Counters go with the
//! cached key, so their memory is bounded by the cache's capacity; a re-read of the key
//! carries them over (see `KeyState::carry_over`).
//!
//! Two modes ([`Mode`]): without a shared engine, the counters are this replica's own
//! ([`RateState::check`]). With one ([`engine`]), every limit's window is counted in the
//! engine and each replica spends blocks it reserved there ([`RateState::check_shared`]);
//! while the engine is unreachable the replica's own counters stand in, at the limit divided
//! by the replicas last seen.

mod block;
pub mod credits;
pub mod engine;

pub use credits::CreditStatus;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::model::RateLimit;
use crate::time::Timestamp;
use block::{Block, Check};

/// The state of one limit after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitStatus {
    /// Units per window.
    pub limit: u32,
    /// Units left in the current window.
    pub remaining: u32,
    /// When the current window ends.
    pub reset_at: Timestamp,
}

/// The rate-limit answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every limit had room; the units were taken. The status is the key's own limit.
    Allowed(LimitStatus),
    /// The key's usage credits are spent; nothing was taken.
    UsageExceeded {
        /// The credits' state.
        credits: CreditStatus,
        /// Until the next refill, when there is one.
        retry_after: Option<Duration>,
    },
    /// A limit is exhausted; nothing was taken.
    Limited {
        /// The exhausted limit.
        status: LimitStatus,
        /// How long until it has room again.
        retry_after: Duration,
        /// The guardrailed scope whose limit refused, or `None` for the key's own limit.
        scope: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    start: i64,
    used: u32,
}

impl Window {
    /// The window current at `now`, starting a new one if the last has ended.
    fn current(&mut self, limit: &RateLimit, now: i64) -> &mut Self {
        let length = i64::try_from(limit.window_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        if now >= self.start.saturating_add(length) || self.used == 0 {
            *self = Window {
                start: now,
                used: 0,
            };
        }
        self
    }

    fn status(&self, limit: &RateLimit) -> LimitStatus {
        LimitStatus {
            limit: limit.limit,
            remaining: limit.limit.saturating_sub(self.used),
            reset_at: Timestamp::from_micros(self.start).saturating_add(limit.window()),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Counters {
    own: Window,
    /// Guardrail windows, by scope; most keys use none. Boxed on purpose: one pointer for
    /// them, not a map's 48 bytes.
    #[allow(clippy::box_collection)]
    scopes: Option<Box<HashMap<Box<str>, Window>>>,
    /// The blocks of the shared mode; one pointer when there are none. Shared, not copied,
    /// with a newer copy of the key ([`RateState::copy_from`]): units held or granted while
    /// a request still works on the older copy are the same units, spent once.
    shared: Option<Arc<Mutex<SharedBlocks>>>,
}

/// A key's blocks reserved from the shared engine: its own limit's and its guardrails'.
#[derive(Debug, Default, Clone)]
struct SharedBlocks {
    own: Block,
    scopes: HashMap<Box<str>, Block>,
}

impl SharedBlocks {
    fn block(&mut self, slot: &Slot) -> &mut Block {
        match slot {
            Slot::Own => &mut self.own,
            Slot::Scope(scope) => self.scopes.entry(scope.clone()).or_default(),
            // Kept in the account's own counters; never asked of a key's.
            Slot::Account => &mut self.own,
        }
    }
}

/// The counters of accounts' shared limits in this replica, by account id. Bounded: an
/// account evicted under pressure starts a fresh local window (shared windows live in the
/// engine and are not affected).
pub struct AccountCounters(quick_cache::sync::Cache<String, std::sync::Arc<RateState>>);

impl std::fmt::Debug for AccountCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountCounters")
            .field("accounts", &self.0.len())
            .finish()
    }
}

impl AccountCounters {
    /// Room for the counters of `capacity` accounts.
    pub fn new(capacity: usize) -> Self {
        AccountCounters(quick_cache::sync::Cache::new(capacity.max(1)))
    }

    /// The counters of `account_id`'s shared limit.
    pub fn get(&self, account_id: &str) -> std::sync::Arc<RateState> {
        match self.0.get_or_insert_with(account_id, || {
            Ok::<_, std::convert::Infallible>(Default::default())
        }) {
            Ok(counters) => counters,
            Err(never) => match never {},
        }
    }
}

/// How the budgets are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In this replica alone: no shared engine is configured.
    Local,
    /// In the shared engine, spent from blocks this replica reserved there.
    Shared {
        /// Replicas last seen, which bound a block's size.
        replicas: u32,
    },
    /// The shared engine is unreachable: this replica's own counters, at the limit divided by
    /// the replicas last seen.
    Fallback {
        /// Replicas last seen.
        replicas: u32,
    },
}

impl Mode {
    /// Replicas last seen (1 without a shared engine).
    pub fn replicas(self) -> u32 {
        match self {
            Mode::Local => 1,
            Mode::Shared { replicas } | Mode::Fallback { replicas } => replicas.max(1),
        }
    }
}

/// Which of a key's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    /// The key's own.
    Own,
    /// A guardrailed scope's.
    Scope(Box<str>),
    /// The key's account's, shared by all its keys.
    Account,
}

/// A limit whose block lacks the units a request needs: what to reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Short {
    /// Which limit.
    pub slot: Slot,
    /// The limit.
    pub limit: RateLimit,
    /// Units without which the request cannot pass.
    pub need: u32,
    /// Units to ask for.
    pub want: u32,
}

/// What one request asks of a key's limits: `cost` units at `now` from its own limit, the
/// guardrail of each required scope that has one, and its account's shared limit (the
/// account's counters in this replica, and the limit), all or nothing.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The key's own limit (or the service default).
    pub own: RateLimit,
    /// The guardrails of the required scopes, by scope.
    pub guardrails: &'a [(&'a str, RateLimit)],
    /// The account's counters and limit, when the account has one.
    pub account: Option<(&'a RateState, RateLimit)>,
    /// Units.
    pub cost: u32,
    /// When.
    pub now: Timestamp,
}

/// One key's rate-limit counters in this replica.
#[derive(Debug, Default)]
pub struct RateState(Mutex<Counters>);

impl Clone for RateState {
    /// A copy of a record starts with no units taken; [`RateState::copy_from`] carries them.
    fn clone(&self) -> Self {
        RateState::default()
    }
}

impl PartialEq for RateState {
    /// Counters are bookkeeping, not part of a key's identity.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for RateState {}

impl RateState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes over `other`'s windows (a newer copy of the same key replacing an older one).
    pub fn copy_from(&self, other: &RateState) {
        let counters = other.lock().clone();
        *self.lock() = counters;
    }

    /// Takes `cost` units from the key's own limit and from the guardrail of every scope
    /// given, or from none of them if any lacks room.
    pub fn check(
        &self,
        own: &RateLimit,
        guardrails: &[(&str, RateLimit)],
        cost: u32,
        now: Timestamp,
    ) -> Outcome {
        self.check_local(&Ask {
            own: *own,
            guardrails,
            account: None,
            cost,
            now,
        })
    }

    /// Takes what `ask` asks from this replica's own counters, all or nothing.
    pub fn check_local(&self, ask: &Ask<'_>) -> Outcome {
        let Ask {
            own,
            guardrails,
            account,
            cost,
            now,
        } = *ask;
        let own = &own;
        let mut counters = self.lock();
        let counters = &mut *counters;
        let now_us = now.micros();

        // First check every limit, then take from all of them.
        let own_window = *counters.own.current(own, now_us);
        if let Some(refused) = refuse(&own_window, own, cost, now, None) {
            return refused;
        }
        if !guardrails.is_empty() {
            let scopes = counters.scopes.get_or_insert_with(Box::default);
            for (scope, limit) in guardrails {
                let window = match scopes.get_mut(*scope) {
                    Some(window) => window,
                    None => scopes.entry((*scope).into()).or_default(),
                };
                let window = *window.current(limit, now_us);
                if let Some(refused) = refuse(&window, limit, cost, now, Some(scope)) {
                    return refused;
                }
            }
        }
        // The account's counters are locked after the key's, never the other way round.
        let mut account = account.map(|(state, limit)| (state.lock(), limit));
        if let Some((account_counters, limit)) = &mut account {
            let window = *account_counters.own.current(limit, now_us);
            if let Some(refused) = refuse(&window, limit, cost, now, None) {
                return refused;
            }
            account_counters.own.used += cost;
        }
        if let Some(scopes) = counters.scopes.as_mut() {
            for (scope, _) in guardrails {
                if let Some(window) = scopes.get_mut(*scope) {
                    window.used += cost;
                }
            }
        }
        counters.own.used += cost;
        Outcome::Allowed(counters.own.status(own))
    }

    /// The local counters standing in for the shared engine: every limit divided by the
    /// replicas last seen (at least 1 unit).
    pub fn check_fallback(&self, ask: &Ask<'_>, replicas: u32) -> Outcome {
        let share = |limit: &RateLimit| RateLimit {
            limit: (limit.limit / replicas.max(1)).max(1),
            window_secs: limit.window_secs,
        };
        let guardrails: Vec<(&str, RateLimit)> =
            ask.guardrails.iter().map(|(s, l)| (*s, share(l))).collect();
        self.check_local(&Ask {
            own: share(&ask.own),
            guardrails: &guardrails,
            account: ask.account.map(|(state, limit)| (state, share(&limit))),
            ..*ask
        })
    }

    /// Takes `cost` units from the blocks of the key's own limit, of every guardrail given and
    /// of its account's shared limit (`account`: the account's counters and limit), or from
    /// none of them: `Err` lists the blocks that must be topped up from the engine first (then
    /// ask again), unless a limit refuses outright.
    pub fn check_shared(&self, ask: &Ask<'_>, replicas: u32) -> Result<Outcome, Vec<Short>> {
        let Ask {
            own,
            guardrails,
            account,
            cost,
            now,
        } = *ask;
        let own = &own;
        let key_blocks = self.shared_blocks();
        let account_blocks = account.map(|(state, limit)| (state.shared_blocks(), limit));
        // The account's blocks are locked after the key's, never the other way round.
        let mut blocks = lock(&key_blocks);
        let mut account = account_blocks
            .as_ref()
            .map(|(shared, limit)| (lock(shared), *limit));
        let now_us = now.micros();
        let mut shorts = Vec::new();
        let limits = std::iter::once((Slot::Own, *own))
            .chain(
                guardrails
                    .iter()
                    .map(|(s, l)| (Slot::Scope((*s).into()), *l)),
            )
            .chain(account.as_ref().map(|(_, limit)| (Slot::Account, *limit)));
        for (slot, limit) in limits {
            let block = match (&slot, &mut account) {
                (Slot::Account, Some((account_blocks, _))) => &mut account_blocks.own,
                _ => blocks.block(&slot),
            };
            match block.check(&limit, cost, replicas, now_us) {
                Check::Room => {}
                Check::Short { need, want } => shorts.push(Short {
                    slot,
                    limit,
                    need,
                    want,
                }),
                Check::Refused {
                    status,
                    retry_after,
                } => {
                    return Ok(Outcome::Limited {
                        status,
                        retry_after,
                        scope: match slot {
                            Slot::Own | Slot::Account => None,
                            Slot::Scope(scope) => Some(scope.into()),
                        },
                    });
                }
            }
        }
        if !shorts.is_empty() {
            return Err(shorts);
        }
        blocks.own.spend(cost);
        for (scope, _) in guardrails {
            blocks.block(&Slot::Scope((*scope).into())).spend(cost);
        }
        if let Some((account_blocks, _)) = &mut account {
            account_blocks.own.spend(cost);
        }
        Ok(Outcome::Allowed(blocks.own.status(own, now_us)))
    }

    /// The blocks of the shared mode (made on first use).
    fn shared_blocks(&self) -> Arc<Mutex<SharedBlocks>> {
        self.lock().shared.get_or_insert_with(Arc::default).clone()
    }

    /// Adds what the engine answered to a reservation for `short`, sent at `sent_at`. An
    /// account's block goes to the account's counters (`account`).
    pub fn apply_grant(
        &self,
        short: &Short,
        account: Option<&RateState>,
        grant: &engine::Grant,
        sent_at: Timestamp,
    ) {
        let target = match (&short.slot, account) {
            (Slot::Account, Some(account)) => account,
            _ => self,
        };
        let shared = target.shared_blocks();
        let mut blocks = lock(&shared);
        let block = match short.slot {
            Slot::Account => &mut blocks.own,
            _ => blocks.block(&short.slot),
        };
        block.apply(grant, short.need, sent_at.micros());
    }
}

/// A lock of shared blocks; a panic elsewhere does not lose their counts.
fn lock(blocks: &Mutex<SharedBlocks>) -> std::sync::MutexGuard<'_, SharedBlocks> {
    blocks.lock().unwrap_or_else(|p| p.into_inner())
}

fn refuse(
    window: &Window,
    limit: &RateLimit,
    cost: u32,
    now: Timestamp,
    scope: Option<&str>,
) -> Option<Outcome> {
    if window.used.saturating_add(cost) <= limit.limit {
        return None;
    }
    let status = window.status(limit);
    let wait = status.reset_at.micros().saturating_sub(now.micros()).max(0);
    Some(Outcome::Limited {
        status,
        retry_after: Duration::from_micros(u64::try_from(wait).unwrap_or(0)),
        scope: scope.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000;

    fn limit(limit: u32, window_secs: u64) -> RateLimit {
        RateLimit { limit, window_secs }
    }

    /// One key's counters per name, as the cache holds them.
    #[derive(Default)]
    struct Keys(HashMap<&'static str, RateState>);

    impl Keys {
        fn check(
            &mut self,
            key: &'static str,
            own: &RateLimit,
            guardrails: &[(&str, RateLimit)],
            cost: u32,
            now: Timestamp,
        ) -> Outcome {
            self.0
                .entry(key)
                .or_default()
                .check(own, guardrails, cost, now)
        }
    }

    #[test]
    fn exactly_the_limit_per_window() {
        let mut limiter = Keys::default();
        let own = limit(3, 60);
        for remaining in [2, 1, 0] {
            match limiter.check("k", &own, &[], 1, Timestamp::from_micros(SEC)) {
                Outcome::Allowed(s) => assert_eq!(s.remaining, remaining),
                other => panic!("{other:?}"),
            }
        }
        match limiter.check("k", &own, &[], 1, Timestamp::from_micros(11 * SEC)) {
            Outcome::Limited {
                status,
                retry_after,
                scope,
            } => {
                assert_eq!(status.remaining, 0);
                assert_eq!(status.reset_at, Timestamp::from_micros(61 * SEC));
                assert_eq!(retry_after, Duration::from_secs(50));
                assert_eq!(scope, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            limiter.check("k", &own, &[], 1, Timestamp::from_micros(61 * SEC)),
            Outcome::Allowed(_)
        ));
        assert!(matches!(
            limiter.check("other", &own, &[], 1, Timestamp::from_micros(11 * SEC)),
            Outcome::Allowed(_)
        ));
    }

    #[test]
    fn cost_counts_units() {
        let mut limiter = Keys::default();
        let own = limit(10, 60);
        assert!(
            matches!(limiter.check("k", &own, &[], 7, Timestamp::from_micros(0)), Outcome::Allowed(s) if s.remaining == 3)
        );
        assert!(matches!(
            limiter.check("k", &own, &[], 4, Timestamp::from_micros(0)),
            Outcome::Limited { .. }
        ));
        assert!(
            matches!(limiter.check("k", &own, &[], 3, Timestamp::from_micros(0)), Outcome::Allowed(s) if s.remaining == 0)
        );
    }

    #[test]
    fn all_or_nothing_across_limits() {
        let mut limiter = Keys::default();
        let own = limit(100, 60);
        let email = [("members:email", limit(2, 86_400))];
        assert!(
            matches!(limiter.check("k", &own, &email, 1, Timestamp::from_micros(0)), Outcome::Allowed(s) if s.remaining == 99)
        );
        assert!(
            matches!(limiter.check("k", &own, &email, 1, Timestamp::from_micros(0)), Outcome::Allowed(s) if s.remaining == 98)
        );
        // The guardrail refuses: the key's own budget is not touched.
        match limiter.check("k", &own, &email, 1, Timestamp::from_micros(0)) {
            Outcome::Limited { scope, status, .. } => {
                assert_eq!(scope.as_deref(), Some("members:email"));
                assert_eq!(status.limit, 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(limiter.check("k", &own, &[], 1, Timestamp::from_micros(0)), Outcome::Allowed(s) if s.remaining == 97)
        );
        // The own limit refuses: the guardrail is not touched either.
        let tight = limit(3, 60);
        let fresh = [("members:invite", limit(5, 86_400))];
        assert!(matches!(
            limiter.check("j", &tight, &[], 3, Timestamp::from_micros(0)),
            Outcome::Allowed(_)
        ));
        assert!(matches!(
            limiter.check("j", &tight, &fresh, 1, Timestamp::from_micros(0)),
            Outcome::Limited { scope: None, .. }
        ));
        assert!(matches!(
            limiter.check("j", &limit(100, 60), &fresh, 5, Timestamp::from_micros(0)),
            Outcome::Allowed(_)
        ));
    }

    #[test]
    fn counters_carry_over_to_a_newer_copy() {
        let old = RateState::default();
        let own = limit(2, 60);
        let email = [("members:email", limit(1, 86_400))];
        assert!(matches!(
            old.check(&own, &email, 1, Timestamp::from_micros(0)),
            Outcome::Allowed(_)
        ));
        let new = RateState::default();
        new.copy_from(&old);
        assert!(matches!(
            new.check(&own, &[], 1, Timestamp::from_micros(0)),
            Outcome::Allowed(s) if s.remaining == 0
        ));
        assert!(matches!(
            new.check(&limit(10, 60), &email, 1, Timestamp::from_micros(0)),
            Outcome::Limited { scope: Some(_), .. }
        ));
        // A plain clone (a record copied elsewhere) starts afresh.
        assert!(matches!(
            old.clone().check(&own, &[], 1, Timestamp::from_micros(0)),
            Outcome::Allowed(s) if s.remaining == 1
        ));
    }

    #[test]
    fn a_newer_copy_shares_the_blocks_instead_of_copying_them() {
        let own = limit(100, 60);
        let ask = |now| Ask {
            own,
            guardrails: &[],
            account: None,
            cost: 1,
            now: Timestamp::from_micros(now),
        };
        let old = RateState::default();
        let Err(shorts) = old.check_shared(&ask(SEC), 1) else {
            panic!("an empty block is short")
        };
        let grant = engine::Grant {
            granted: 2,
            window_end_ms: 61_000,
            left_ms: 60_000,
            handed_out: 2,
        };
        old.apply_grant(&shorts[0], None, &grant, Timestamp::from_micros(SEC));
        let new = RateState::default();
        new.copy_from(&old);
        // A request still on the old copy spends one of the two units; the new copy has one.
        assert!(matches!(
            old.check_shared(&ask(SEC), 1),
            Ok(Outcome::Allowed(_))
        ));
        assert!(matches!(
            new.check_shared(&ask(SEC), 1),
            Ok(Outcome::Allowed(_))
        ));
        assert!(
            new.check_shared(&ask(SEC), 1).is_err(),
            "both units spent, once each"
        );
    }
}
