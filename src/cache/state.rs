//! What the verify path keeps about a cached key: the compact record, its account's state and
//! the bookkeeping of this copy (last use reported, rate-limit counters, freshness).

use std::sync::atomic::{AtomicI64, Ordering};

use crate::model::{ApiKey, CachedKey, RateLimit};
use crate::ratelimit::RateState;
use crate::time::Timestamp;

/// What the verify path keeps about a key: the compact record, its account's state, when its
/// last use was last reported (so a cached key reports at most once a second), and its
/// rate-limit counters, which live and go with the cached key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// The key's record, as much as verification reads.
    pub key: CachedKey,
    /// Whether the key's account is disabled.
    pub account_disabled: bool,
    /// The rate limit the key's account shares among its keys, if it has one.
    pub account_limit: Option<AccountLimit>,
    /// The last use handed to the last-use tracker; not part of the key's identity.
    pub use_mark: UseMark,
    /// The key's rate-limit counters in this replica; not part of the key's identity.
    pub rate: RateState,
    /// How fresh this copy is, stamped by the cache when it stores it (one allocation per
    /// cached key, not two).
    pub freshness: Freshness,
}

/// An account's shared rate limit as a cached key carries it: 8 bytes, not a [`RateLimit`]'s 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountLimit {
    limit: std::num::NonZeroU32,
    window_secs: u32,
}

impl AccountLimit {
    /// The compact form; `None` for a limit of 0 units.
    pub fn new(limit: RateLimit) -> Option<Self> {
        Some(AccountLimit {
            limit: std::num::NonZeroU32::new(limit.limit)?,
            window_secs: u32::try_from(limit.window_secs).unwrap_or(u32::MAX),
        })
    }

    /// The limit.
    pub fn rate_limit(self) -> RateLimit {
        RateLimit {
            limit: self.limit.get(),
            window_secs: u64::from(self.window_secs),
        }
    }
}

/// How fresh a cached copy of a key is. Bookkeeping of one copy, like [`UseMark`]: copies
/// start afresh and compare equal.
#[derive(Debug)]
pub struct Freshness {
    /// When the copy was read from the store.
    pub loaded_at: std::time::Instant,
    /// The cache generation when the read started; an older one means "re-read first".
    pub generation: u64,
    /// False when an invalidation happened during the read: the copy may be stale.
    pub clean: bool,
    /// Whether the change feed was connected for the whole read.
    pub confirmed: bool,
    /// Set when the key changed after the read: re-read before use.
    pub dirty: std::sync::atomic::AtomicBool,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness {
            loaded_at: std::time::Instant::now(),
            generation: 0,
            clean: true,
            confirmed: true,
            dirty: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl Clone for Freshness {
    fn clone(&self) -> Self {
        Freshness::default()
    }
}

impl PartialEq for Freshness {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Freshness {}

impl KeyState {
    /// What the store knows about a key; no use reported, no units taken yet.
    pub fn new(key: &ApiKey, account_disabled: bool) -> Self {
        KeyState {
            key: CachedKey::from(key),
            account_disabled,
            account_limit: None,
            use_mark: UseMark::default(),
            rate: RateState::default(),
            freshness: Freshness::default(),
        }
    }

    /// With the rate limit its account shares among its keys.
    pub fn with_account_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.account_limit = limit.and_then(AccountLimit::new);
        self
    }

    /// Whether a use at `now` should be reported: at most once a second per key, so the
    /// tracker's lock is not taken on every verify.
    pub fn mark_use(&self, now: Timestamp) -> bool {
        let marked = &self.use_mark.0;
        let mark = marked.load(Ordering::Relaxed);
        now.micros() - mark >= 1_000_000
            && marked
                .compare_exchange(mark, now.micros(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Takes over what `previous`, an older copy of the same key, counted: its rate-limit
    /// windows and its last reported use, so re-reading a key neither resets its limits nor
    /// reports its use again.
    pub fn carry_over(&self, previous: &KeyState) {
        self.rate.copy_from(&previous.rate);
        self.use_mark.0.store(
            previous.use_mark.0.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
    }
}

/// Micros of the last use reported for a key (0 = none). Copies and compares as "no use
/// reported": it is bookkeeping of one cached copy, not part of the record.
#[derive(Debug, Default)]
pub struct UseMark(AtomicI64);

impl Clone for UseMark {
    fn clone(&self) -> Self {
        UseMark::default()
    }
}

impl PartialEq for UseMark {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for UseMark {}
