//! What may change about keys and accounts, how lists are asked for, and the changes other
//! replicas report.

use std::collections::BTreeMap;

use super::{ApiKey, Credits, RateLimit, Refill, Restrictions};
use crate::ids::AccountId;
use crate::key::KeyDigest;
use crate::scope::ScopeName;
use crate::time::Timestamp;

/// Changes to a key; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPatch {
    /// New name.
    pub name: Option<String>,
    /// New scopes.
    pub scopes: Option<Vec<ScopeName>>,
    /// New grant-all flag.
    pub grant_all: Option<bool>,
    /// New restrictions.
    pub restrictions: Option<Restrictions>,
    /// New rate limit (`Some(None)` = service default).
    pub rate_limit: Option<Option<RateLimit>>,
    /// New metadata.
    pub meta: Option<BTreeMap<String, String>>,
    /// New expiry (`Some(None)` = never).
    pub expires_at: Option<Option<Timestamp>>,
    /// New credits: balance and refill (`Some(None)` = unlimited); a new period starts.
    pub credits: Option<Option<CreditTerms>>,
    /// Units added to (negative: taken from) the credits, with the row locked.
    pub add_credits: Option<i64>,
}

/// Credits as a caller sets them: a balance and an optional refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditTerms {
    /// The balance.
    pub remaining: u64,
    /// The refill, if any.
    pub refill: Option<Refill>,
}

impl CreditTerms {
    /// The credits these terms give a key at `now` (a new period).
    pub fn at(self, now: Timestamp) -> Credits {
        Credits {
            remaining: self.remaining,
            refill: self.refill,
            refilled_at: now,
        }
    }
}

impl KeyPatch {
    /// Applies the patch to a record, returning the names of the fields that changed.
    pub fn apply(&self, key: &mut ApiKey) -> Vec<&'static str> {
        let mut changed = Vec::new();
        fn set<T: PartialEq + Clone>(
            changed: &mut Vec<&'static str>,
            name: &'static str,
            field: &mut T,
            new: &Option<T>,
        ) {
            if let Some(new) = new
                && field != new
            {
                *field = new.clone();
                changed.push(name);
            }
        }
        set(&mut changed, "name", &mut key.name, &self.name);
        let scopes: Option<Vec<String>> = self
            .scopes
            .as_ref()
            .map(|names| names.iter().map(|n| n.as_str().to_owned()).collect());
        set(&mut changed, "scopes", &mut key.scopes, &scopes);
        set(
            &mut changed,
            "grant_all",
            &mut key.grant_all,
            &self.grant_all,
        );
        set(
            &mut changed,
            "restrictions",
            &mut key.restrictions,
            &self.restrictions,
        );
        set(
            &mut changed,
            "rate_limit",
            &mut key.rate_limit,
            &self.rate_limit,
        );
        set(&mut changed, "meta", &mut key.meta, &self.meta);
        set(
            &mut changed,
            "expires_at",
            &mut key.expires_at,
            &self.expires_at,
        );
        changed
    }
}

/// Which keys of an account to list, and where the page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyListQuery {
    /// The account.
    pub account_id: crate::ids::AccountId,
    /// Include revoked keys.
    pub include_revoked: bool,
    /// Only keys not used since then (never-used keys included).
    pub unused_since: Option<Timestamp>,
    /// Largest page.
    pub page_size: u32,
    /// Position after which the page starts (from the previous page); with `by_usage`, the
    /// keys skipped.
    pub after: Option<i64>,
    /// Most used first: decisions counted since this second (hour buckets).
    pub by_usage: Option<i64>,
}

/// One page of a list and the position the next page starts after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor for the next page; `None` on the last page.
    pub next: Option<i64>,
}

/// An account's policy as stored; `max_active_keys` `None` means the service default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The account's id.
    pub account_id: AccountId,
    /// Per-account override of the active-key limit.
    pub max_active_keys: Option<u32>,
    /// Whether every key of the account is refused.
    pub disabled: bool,
    /// A rate limit all the account's keys share; `None`: none.
    pub rate_limit: Option<RateLimit>,
    /// Active keys right now.
    pub active_keys: u32,
}

/// Changes to an account's policy; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountPatch {
    /// New active-key limit (`Some(None)` = the service default).
    pub max_active_keys: Option<Option<u32>>,
    /// Disable or re-enable the account.
    pub disabled: Option<bool>,
    /// New shared rate limit (`Some(None)` = none).
    pub rate_limit: Option<Option<RateLimit>>,
}

/// A change another replica made, as the store's change feed reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The key with this digest changed.
    Key(KeyDigest),
    /// Keys were created in bulk (an import): the first 8 bytes of each one's digest, as
    /// [`crate::known::short`] reads them. Nothing cached about them can be stale except
    /// "unknown" answers, so the receiver adds them to its known set and forgets its unknown
    /// keys.
    KeysAdded(Vec<u64>),
    /// The account's policy changed.
    Account(AccountId),
    /// The feed (re)connected after changes may have been missed: re-read everything.
    Lost,
    /// The feed is down: changes are not being reported until it is back.
    Down,
}
