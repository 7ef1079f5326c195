//! Rate limits, in this replica's memory: each key has a budget of units per window (its own or
//! the service default) and one per guardrailed scope it uses. All of a key's counters sit
//! behind one lock, so a request is checked against every applicable limit at once and
//! consumes from all or none. Windows are fixed: one starts at the first request after the
//! previous one ended. State of idle keys expires (moka, per entry: after its longest window)
//! and the number of keys tracked is bounded, so memory does not grow without bound.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::sync::Cache;

use crate::key::{DigestHashBuilder, KeyDigest};
use crate::model::RateLimit;
use crate::time::Timestamp;

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
            reset_at: Timestamp(self.start).saturating_add(limit.window()),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    own: Window,
    scopes: HashMap<String, Window>,
}

#[derive(Debug)]
struct Entry {
    counters: Mutex<Counters>,
    /// Seconds of idleness after which the state may go: the longest window in use.
    idle_secs: AtomicU64,
}

struct IdleExpiry;

impl Expiry<KeyDigest, Arc<Entry>> for IdleExpiry {
    fn expire_after_create(
        &self,
        _: &KeyDigest,
        entry: &Arc<Entry>,
        _: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(entry.idle_secs.load(Ordering::Relaxed)))
    }

    fn expire_after_read(
        &self,
        _: &KeyDigest,
        entry: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(entry.idle_secs.load(Ordering::Relaxed)))
    }
}

/// Per-key counters for every key this replica has seen recently.
pub struct RateLimiter {
    keys: Cache<KeyDigest, Arc<Entry>, DigestHashBuilder>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("keys", &self.keys.entry_count())
            .finish()
    }
}

impl RateLimiter {
    /// A limiter tracking at most `capacity` keys.
    pub fn new(capacity: u64) -> Self {
        RateLimiter {
            keys: Cache::builder()
                .max_capacity(capacity)
                .expire_after(IdleExpiry)
                .build_with_hasher(DigestHashBuilder::default()),
        }
    }

    /// Keys with live state (approximate; expired entries leave on moka's maintenance).
    pub fn tracked_keys(&self) -> u64 {
        self.keys.run_pending_tasks();
        self.keys.entry_count()
    }

    /// Takes `cost` units from the key's own limit (the key named by its digest) and from the guardrail of every scope given,
    /// or from none of them if any lacks room.
    pub fn check(
        &self,
        key: &KeyDigest,
        own: &RateLimit,
        guardrails: &[(&str, RateLimit)],
        cost: u32,
        now: Timestamp,
    ) -> Outcome {
        let longest = guardrails
            .iter()
            .map(|(_, g)| g.window_secs)
            .chain([own.window_secs])
            .max()
            .unwrap_or(1);
        let entry = self.keys.get_with_by_ref(key, || {
            Arc::new(Entry {
                counters: Mutex::new(Counters::default()),
                idle_secs: AtomicU64::new(longest),
            })
        });
        entry.idle_secs.fetch_max(longest, Ordering::Relaxed);
        let mut counters = entry.counters.lock().unwrap_or_else(|p| p.into_inner());
        let now_us = now.micros();

        // First check every limit, then take from all of them.
        let own_window = *counters.own.current(own, now_us);
        if let Some(refused) = refuse(&own_window, own, cost, now, None) {
            return refused;
        }
        for (scope, limit) in guardrails {
            let window = *counters
                .scopes
                .entry((*scope).to_owned())
                .or_default()
                .current(limit, now_us);
            if let Some(refused) = refuse(&window, limit, cost, now, Some(scope)) {
                return refused;
            }
        }
        counters.own.used += cost;
        for (scope, _) in guardrails {
            if let Some(window) = counters.scopes.get_mut(*scope) {
                window.used += cost;
            }
        }
        Outcome::Allowed(counters.own.status(own))
    }
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

    #[test]
    fn exactly_the_limit_per_window() {
        let limiter = RateLimiter::new(1000);
        let own = limit(3, 60);
        for remaining in [2, 1, 0] {
            match limiter.check(&KeyDigest::of("k"), &own, &[], 1, Timestamp(SEC)) {
                Outcome::Allowed(s) => assert_eq!(s.remaining, remaining),
                other => panic!("{other:?}"),
            }
        }
        match limiter.check(&KeyDigest::of("k"), &own, &[], 1, Timestamp(11 * SEC)) {
            Outcome::Limited {
                status,
                retry_after,
                scope,
            } => {
                assert_eq!(status.remaining, 0);
                assert_eq!(status.reset_at, Timestamp(61 * SEC));
                assert_eq!(retry_after, Duration::from_secs(50));
                assert_eq!(scope, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            limiter.check(&KeyDigest::of("k"), &own, &[], 1, Timestamp(61 * SEC)),
            Outcome::Allowed(_)
        ));
        assert!(matches!(
            limiter.check(&KeyDigest::of("other"), &own, &[], 1, Timestamp(11 * SEC)),
            Outcome::Allowed(_)
        ));
    }

    #[test]
    fn cost_counts_units() {
        let limiter = RateLimiter::new(1000);
        let own = limit(10, 60);
        assert!(
            matches!(limiter.check(&KeyDigest::of("k"), &own, &[], 7, Timestamp(0)), Outcome::Allowed(s) if s.remaining == 3)
        );
        assert!(matches!(
            limiter.check(&KeyDigest::of("k"), &own, &[], 4, Timestamp(0)),
            Outcome::Limited { .. }
        ));
        assert!(
            matches!(limiter.check(&KeyDigest::of("k"), &own, &[], 3, Timestamp(0)), Outcome::Allowed(s) if s.remaining == 0)
        );
    }

    #[test]
    fn all_or_nothing_across_limits() {
        let limiter = RateLimiter::new(1000);
        let own = limit(100, 60);
        let email = [("members:email", limit(2, 86_400))];
        assert!(
            matches!(limiter.check(&KeyDigest::of("k"), &own, &email, 1, Timestamp(0)), Outcome::Allowed(s) if s.remaining == 99)
        );
        assert!(
            matches!(limiter.check(&KeyDigest::of("k"), &own, &email, 1, Timestamp(0)), Outcome::Allowed(s) if s.remaining == 98)
        );
        // The guardrail refuses: the key's own budget is not touched.
        match limiter.check(&KeyDigest::of("k"), &own, &email, 1, Timestamp(0)) {
            Outcome::Limited { scope, status, .. } => {
                assert_eq!(scope.as_deref(), Some("members:email"));
                assert_eq!(status.limit, 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(limiter.check(&KeyDigest::of("k"), &own, &[], 1, Timestamp(0)), Outcome::Allowed(s) if s.remaining == 97)
        );
        // The own limit refuses: the guardrail is not touched either.
        let tight = limit(3, 60);
        let fresh = [("members:invite", limit(5, 86_400))];
        assert!(matches!(
            limiter.check(&KeyDigest::of("j"), &tight, &[], 3, Timestamp(0)),
            Outcome::Allowed(_)
        ));
        assert!(matches!(
            limiter.check(&KeyDigest::of("j"), &tight, &fresh, 1, Timestamp(0)),
            Outcome::Limited { scope: None, .. }
        ));
        assert!(matches!(
            limiter.check(
                &KeyDigest::of("j"),
                &limit(100, 60),
                &fresh,
                5,
                Timestamp(0)
            ),
            Outcome::Allowed(_)
        ));
    }

    #[test]
    fn idle_keys_do_not_accumulate() {
        let limiter = RateLimiter::new(1_000_000);
        let own = limit(100, 2);
        for i in 0..100_000 {
            limiter.check(
                &KeyDigest::of(&format!("key_{i}")),
                &own,
                &[],
                1,
                Timestamp(0),
            );
        }
        assert!(
            limiter.tracked_keys() > 0,
            "state is kept while keys are active"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while limiter.tracked_keys() > 0 {
            assert!(
                Instant::now() < deadline,
                "{} keys still tracked",
                limiter.tracked_keys()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn tracked_keys_are_bounded() {
        let limiter = RateLimiter::new(1_000);
        let own = limit(100, 3600);
        for i in 0..20_000 {
            limiter.check(
                &KeyDigest::of(&format!("key_{i}")),
                &own,
                &[],
                1,
                Timestamp(0),
            );
        }
        assert!(
            limiter.tracked_keys() <= 1_000,
            "{}",
            limiter.tracked_keys()
        );
    }
}
