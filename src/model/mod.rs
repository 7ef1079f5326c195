//! The domain's records: what a key is, what may change about it, and how lists are asked for.
//! No proto or SQL types here; the gRPC adapter and the stores convert at their edges.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::{AccountId, KeyId};
use crate::key::{Environment, KeyDigest};
pub use crate::restriction::Restrictions;

mod cached;
mod changes;
mod credits;

use crate::time::Timestamp;
pub use cached::CachedKey;
pub use credits::{Credits, Refill, RefillInterval};

pub use changes::{Account, AccountPatch, Change, CreditTerms, KeyListQuery, KeyPatch, Page};

/// A budget of units per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Units allowed per window.
    pub limit: u32,
    /// The window's length in seconds.
    pub window_secs: u64,
}

impl RateLimit {
    /// The window as a duration.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }
}

/// A key's record: everything known about a key except its secret and hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Public id, `key_…`.
    pub id: KeyId,
    /// The owning account.
    pub account_id: AccountId,
    /// Human-readable name.
    pub name: String,
    /// First characters of the key, for identification.
    pub prefix: String,
    /// The key's environment.
    pub environment: Environment,
    /// Scopes held.
    pub scopes: Vec<String>,
    /// Holds every current and future scope.
    pub grant_all: bool,
    /// Where the key may be used.
    pub restrictions: Restrictions,
    /// The key's own rate limit; `None` means the service default.
    pub rate_limit: Option<RateLimit>,
    /// The key's usage credits; `None`: unlimited.
    pub credits: Option<Credits>,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// Expiry; `None` means never.
    pub expires_at: Option<Timestamp>,
    /// Last successful use, coalesced.
    pub last_used_at: Option<Timestamp>,
    /// Revocation time; `Some` means revoked.
    pub revoked_at: Option<Timestamp>,
    /// On a key made by rotation, the key it replaced.
    pub previous_key_id: Option<KeyId>,
    /// The key that created this one.
    pub created_by: Option<KeyId>,
    /// The key that replaced this one by rotation; a replaced key no longer counts as active
    /// and cannot be rotated again.
    pub replaced_by: Option<KeyId>,
}

impl ApiKey {
    /// The record of a key issued at `now`: a fresh id, the display prefix of its secret, and
    /// nothing granted, restricted, used or revoked yet. Callers add the grant with struct
    /// update syntax, so a record is built one way.
    pub fn issued(
        account_id: AccountId,
        name: impl Into<String>,
        display_prefix: impl Into<String>,
        environment: Environment,
        now: Timestamp,
    ) -> Self {
        ApiKey {
            id: KeyId::generate(),
            account_id,
            name: name.into(),
            prefix: display_prefix.into(),
            environment,
            scopes: Vec::new(),
            grant_all: false,
            restrictions: Restrictions::default(),
            rate_limit: None,
            credits: None,
            meta: BTreeMap::new(),
            created_at: now,
            updated_at: now,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
            previous_key_id: None,
            created_by: None,
            replaced_by: None,
        }
    }

    /// Whether the key has been revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    /// Whether the key holds a place under its account's active-key limit until it expires:
    /// neither revoked nor replaced by a rotation.
    pub fn is_counted(&self) -> bool {
        self.revoked_at.is_none() && self.replaced_by.is_none()
    }

    /// Whether the key is past its expiry at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether the key can be used (neither revoked nor expired).
    pub fn is_active(&self, now: Timestamp) -> bool {
        !self.is_revoked() && !self.is_expired(now)
    }

    /// Marks this key as replaced by `replacement` at `now`: revoked at once when
    /// `expires_at` is `None`, else expiring then (or earlier, if it already did).
    /// Fails if the key is revoked, expired or already replaced.
    pub fn retire(
        &mut self,
        replacement: &KeyId,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> crate::error::Result<()> {
        let why = if self.is_revoked() {
            "is revoked"
        } else if self.is_expired(now) {
            "has expired"
        } else if self.replaced_by.is_some() {
            "was already rotated; rotate its replacement instead"
        } else {
            match expires_at {
                None => self.revoked_at = Some(now),
                Some(at) => self.expires_at = Some(self.expires_at.map_or(at, |e| e.min(at))),
            }
            self.replaced_by = Some(replacement.clone());
            self.updated_at = now;
            return Ok(());
        };
        Err(crate::error::Error::FailedPrecondition(format!(
            "key \"{}\" {why}",
            self.id
        )))
    }

    /// Applies `patch` at `now`, returning the names of the fields that changed. Refuses what
    /// would let a key outlive the rules that limit live keys: a revoked key does not change;
    /// a key that has expired cannot be given a new expiry (it would come back to life past
    /// its account's active-key limit); and a key replaced by rotation, whose grace period is
    /// running, does not count as active, so its expiry may only move earlier.
    pub fn update(
        &mut self,
        patch: &KeyPatch,
        now: Timestamp,
    ) -> crate::error::Result<Vec<&'static str>> {
        let refuse = |why: &str| {
            Err(crate::error::Error::FailedPrecondition(format!(
                "key \"{}\" {why}",
                self.id
            )))
        };
        if self.is_revoked() {
            return refuse("is revoked");
        }
        if let Some(expires_at) = patch.expires_at
            && expires_at != self.expires_at
        {
            if self.is_expired(now) {
                return refuse("has expired and cannot be given a new expiry; create a new key");
            }
            let earlier =
                matches!((expires_at, self.expires_at), (Some(new), Some(old)) if new < old);
            if self.replaced_by.is_some() && !earlier {
                return refuse(
                    "was replaced by rotation; its grace period can be shortened, never extended",
                );
            }
        }
        // Checked before anything changes, so a refused patch changes nothing.
        let credits_after = match (patch.credits, patch.add_credits) {
            (Some(terms), delta) => add_credits(terms.map(|t| t.at(now)), delta),
            (None, Some(delta)) => add_credits(self.credits, Some(delta)),
            (None, None) => Ok(self.credits),
        };
        let credits_after = match credits_after {
            Ok(credits) => credits,
            Err(why) => return refuse(&why),
        };
        let mut changed = patch.apply(self);
        if patch.credits.is_some() || patch.add_credits.is_some() {
            self.credits = credits_after;
            changed.push("credits");
        }
        if !changed.is_empty() {
            self.updated_at = now;
        }
        Ok(changed)
    }

    /// Whether the key holds `scope`, by name or through `grant_all`. `grant_all` covers every
    /// catalog scope but the reserved system scopes, which are only ever granted by name.
    pub fn holds(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
            || (self.grant_all && !crate::scope::is_reserved(scope))
    }
}

/// `credits` with `delta` units added (or taken); why not, when the key has no credits or the
/// balance would go below zero.
fn add_credits(
    credits: Option<Credits>,
    delta: Option<i64>,
) -> std::result::Result<Option<Credits>, String> {
    let Some(delta) = delta else {
        return Ok(credits);
    };
    let Some(mut credits) = credits else {
        return Err("has no credits to add to; set credits first".into());
    };
    let balance = i128::from(credits.remaining) + i128::from(delta);
    if balance > i128::from(i64::MAX) {
        return Err(format!(
            "has {} credits left; adding {delta} would pass the largest balance, {}",
            credits.remaining,
            i64::MAX
        ));
    }
    if balance < 0 {
        return Err(format!(
            "has {} credits left; taking {} would go below zero",
            credits.remaining,
            delta.unsigned_abs()
        ));
    }
    credits.remaining = u64::try_from(balance).unwrap_or(u64::MAX);
    Ok(Some(credits))
}

/// A key as the store keeps it: the record plus the digest it is looked up by. The digest
/// never leaves the service; it is what cache invalidation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The key's hash.
    pub digest: KeyDigest,
    /// The key's record.
    pub key: ApiKey,
}

/// A key to insert: a complete record whose secret has already been hashed.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The digest to store.
    pub digest: KeyDigest,
    /// The record to store (`last_used_at` and `revoked_at` are `None`).
    pub key: ApiKey,
}

pub use crate::ids::new_id;

/// A plain live key of account `acme` holding `videos:read`, for unit tests.
#[cfg(test)]
pub(crate) fn test_key() -> ApiKey {
    ApiKey {
        scopes: vec!["videos:read".into()],
        ..ApiKey::issued(
            AccountId::trusted("acme".into()),
            "n",
            "kw_live_abcdefgh",
            Environment::Live,
            Timestamp::from_micros(1),
        )
    }
}

#[cfg(test)]
mod tests;
