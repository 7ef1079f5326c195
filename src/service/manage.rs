//! Key management: create, read, list, update, revoke, and the root keys that bootstrap
//! management. Authorization and policy (limits, expiry bounds, no escalation) are decided
//! here; input shape was checked at the edge.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Keyward;
use super::auth::{Access, Caller, PortalAction, PortalGrant};
use crate::error::{Error, Result};
use crate::ids::KeyId;
use crate::key::SecretKey;
use crate::model::{ApiKey, KeyListQuery, KeyPatch, NewKey, Page};
use crate::time::Timestamp;

pub use super::auth::ROOT_ACCOUNT;

/// Keys imported through one replica between refreshes of the store's statistics. A count
/// over all accounts, not each account's own growth: as other accounts grow, an account that
/// stopped growing holds a shrinking share of the table, and statistics that still show its
/// old share mislead PostgreSQL's plan of its pages just as a grown account's do.
pub const STATISTICS_AFTER_IMPORTED: u64 = 100_000;

use super::grant::{CreateKey, refuse_root_scope};

impl Keyward {
    /// Creates a key for `caller` and returns its secret, the one time it is ever shown.
    pub async fn create_key(
        &self,
        caller: &Caller,
        request: CreateKey,
    ) -> Result<(SecretKey, ApiKey)> {
        caller.authorize(request.account_id.as_str(), Access::Write)?;
        caller.authorize_environment(request.environment)?;
        if request.account_id.as_str() == ROOT_ACCOUNT {
            return Err(Error::invalid(
                "account_id",
                "\"root\" is reserved for root keys, which `keyward root-key create` makes",
            ));
        }
        let (scopes, grant_all, restrictions) = self.resolve_grant(&request)?;
        caller.authorize_grant(&scopes, grant_all)?;
        refuse_root_scope("scopes", &scopes)?;
        let now = Timestamp::now();
        let expires_at = self.expiry(request.expiry, now)?;
        if let Some(grant) = caller.portal() {
            // A customer names, grants and times keys; billing terms are the product's.
            for (field, set) in [
                ("rate_limit", request.rate_limit.is_some()),
                ("credits", request.credits.is_some()),
                ("meta", !request.meta.is_empty()),
            ] {
                if set {
                    return Err(Error::PermissionDenied(format!(
                        "a portal session cannot set {field}"
                    )));
                }
            }
            portal_lifetime(grant, now, expires_at)?;
        }
        let generated = self.format.generate(request.environment);
        let new = NewKey {
            digest: generated.digest,
            key: ApiKey {
                scopes,
                grant_all,
                restrictions,
                rate_limit: request.rate_limit,
                credits: request.credits.map(|terms| terms.at(now)),
                meta: request.meta,
                expires_at,
                created_by: Some(caller.key_id_owned()),
                ..ApiKey::issued(
                    request.account_id,
                    request.name,
                    generated.display_prefix,
                    request.environment,
                    now,
                )
            },
        };
        let stored = self
            .store
            .insert_key(
                &new,
                self.policy.max_active_keys,
                now,
                Some(caller.key_id()),
            )
            .await?;
        self.invalidate(&stored.digest).await;
        tracing::debug!(key_id = %stored.key.id, account_id = %stored.key.account_id, actor = caller.key_id(), "key created");
        Ok((generated.secret, stored.key))
    }

    /// One key's record.
    pub async fn get_key(&self, caller: &Caller, id: &KeyId) -> Result<ApiKey> {
        let key = self.existing_key(id).await?;
        caller.authorize(&key.account_id, Access::Read)?;
        Ok(key)
    }

    /// One page of an account's keys.
    pub async fn list_keys(&self, caller: &Caller, query: &KeyListQuery) -> Result<Page<ApiKey>> {
        caller.authorize(query.account_id.as_str(), Access::Read)?;
        self.store.list_keys(query).await
    }

    /// Lists an account's keys most used first, each with its count (`query.by_usage`).
    pub async fn list_keys_by_usage(
        &self,
        caller: &Caller,
        query: &KeyListQuery,
    ) -> Result<Page<(ApiKey, u64)>> {
        caller.authorize(query.account_id.as_str(), Access::Read)?;
        caller.authorize_portal(PortalAction::Usage)?;
        self.store.list_keys_by_usage(query).await
    }

    /// Changes a key; the next verify sees the change.
    pub async fn update_key(
        &self,
        caller: &Caller,
        id: &KeyId,
        patch: &KeyPatch,
    ) -> Result<ApiKey> {
        let current = self.existing_key(id).await?;
        caller.authorize(&current.account_id, Access::Write)?;
        caller.authorize_environment(current.environment)?;
        if let Some(grant) = caller.portal() {
            // A customer renames, regrants and re-times keys; billing terms are the product's.
            for (field, set) in [
                ("restrictions", patch.restrictions.is_some()),
                ("rate_limit", patch.rate_limit.is_some()),
                ("meta", patch.meta.is_some()),
                (
                    "credits",
                    patch.credits.is_some() || patch.add_credits.is_some(),
                ),
            ] {
                if set {
                    return Err(Error::PermissionDenied(format!(
                        "a portal session cannot change {field}"
                    )));
                }
            }
            if let Some(expires_at) = patch.expires_at {
                portal_lifetime(grant, Timestamp::now(), expires_at)?;
            }
        }
        if current.account_id == ROOT_ACCOUNT
            && (patch.scopes.is_some() || patch.grant_all.is_some())
        {
            return Err(Error::FailedPrecondition(
                "root keys hold exactly the root scope; their scopes do not change".into(),
            ));
        }
        let scopes = patch.scopes.as_deref().unwrap_or(&[]);
        self.check_scopes("scopes", scopes)?;
        caller.authorize_grant(scopes, patch.grant_all.unwrap_or(false))?;
        refuse_root_scope("scopes", scopes)?;
        let grants_nothing = !patch.grant_all.unwrap_or(current.grant_all)
            && patch
                .scopes
                .as_ref()
                .map_or(current.scopes.is_empty(), Vec::is_empty);
        if grants_nothing {
            return Err(Error::invalid(
                "scopes",
                "a key must keep some grant: give scopes or grant_all",
            ));
        }
        let now = Timestamp::now();
        if let Some(Some(at)) = patch.expires_at
            && at <= now
        {
            return Err(Error::invalid(
                "expires_at",
                "the expiry must be in the future",
            ));
        }
        if let Some(expires_at) = patch.expires_at {
            self.check_lifetime("expires_at", current.created_at, expires_at)?;
        }
        let stored = self
            .store
            .update_key(id, patch, now, Some(caller.key_id()))
            .await?;
        self.invalidate(&stored.digest).await;
        tracing::debug!(key_id = %id, actor = caller.key_id(), "key updated");
        Ok(stored.key)
    }

    /// Revokes a key at once and for good.
    pub async fn revoke_key(&self, caller: &Caller, id: &KeyId) -> Result<ApiKey> {
        let current = self.existing_key(id).await?;
        caller.authorize(&current.account_id, Access::Write)?;
        caller.authorize_portal(PortalAction::Revoke)?;
        caller.authorize_environment(current.environment)?;
        let stored = self
            .store
            .revoke_key(id, Timestamp::now(), Some(caller.key_id()))
            .await?;
        self.invalidate(&stored.digest).await;
        tracing::debug!(key_id = %id, actor = caller.key_id(), "key revoked");
        Ok(stored.key)
    }

    /// Checks strings found in public: each is not a key, an unknown key, or a key keyward
    /// knows, which is revoked now (the source recorded in its audit event) or was already.
    /// The caller needs `root` or `keys:write` (of any account): holding a key's secret is
    /// enough to use it, so revoking a key whose secret one presents takes nothing from anyone.
    /// Answers in the order given; the raw strings are never stored, logged or echoed.
    pub async fn report_leaked_keys(
        &self,
        caller: &Caller,
        raw: &[String],
        source: &str,
    ) -> Result<Vec<Leak>> {
        if !caller.may_write_somewhere() {
            return Err(Error::PermissionDenied(
                "reporting leaked keys needs root or keys:write".into(),
            ));
        }
        let reason = format!("leaked: {source}");
        let mut out = Vec::with_capacity(raw.len());
        for text in raw {
            let Some(parsed) = self.format.parse(text.trim()) else {
                out.push(Leak::NotAKey);
                continue;
            };
            // The store, not the cache: the answer must be current.
            let found = self
                .store
                .key_by_digest(&parsed.digest)
                .await?
                .filter(|state| state.key.environment() == parsed.environment);
            let Some(state) = found else {
                out.push(Leak::Unknown);
                continue;
            };
            let (stored, revoked_now) = self
                .store
                .revoke_key_because(
                    &state.key.key_id(),
                    Some(&reason),
                    Timestamp::now(),
                    Some(caller.key_id()),
                )
                .await?;
            self.invalidate(&stored.digest).await;
            out.push(if revoked_now {
                tracing::warn!(key_id = %stored.key.id, account = %stored.key.account_id, %source, "leaked key revoked");
                Leak::RevokedNow(stored.key)
            } else {
                Leak::AlreadyRevoked(stored.key)
            });
        }
        Ok(out)
    }

    /// Offboards an account: revokes every key of it that still works (keys in a rotation's
    /// grace period too), one audit event per key, and drops them from the cache; other
    /// replicas hear of each through the change feed. A test caller revokes only test keys.
    /// Not the root account: revoking every root key would lock every operator out.
    pub async fn revoke_account_keys(
        &self,
        caller: &Caller,
        account_id: &crate::ids::AccountId,
    ) -> Result<Vec<ApiKey>> {
        caller.authorize(account_id, Access::Write)?;
        if caller.portal().is_some() {
            return Err(Error::PermissionDenied(
                "a portal session revokes keys one by one".into(),
            ));
        }
        if account_id == super::auth::ROOT_ACCOUNT {
            return Err(Error::FailedPrecondition(
                "the root account's keys are revoked one by one (RevokeKey), so that one is left"
                    .into(),
            ));
        }
        // A test key manages only test keys.
        let only = caller
            .authorize_environment(crate::key::Environment::Live)
            .is_err()
            .then_some(crate::key::Environment::Test);
        let revoked = self
            .store
            .revoke_account_keys(account_id, only, Timestamp::now(), Some(caller.key_id()))
            .await?;
        for stored in &revoked {
            self.invalidate(&stored.digest).await;
        }
        tracing::debug!(
            account = %account_id,
            keys = revoked.len(),
            actor = caller.key_id(),
            "account keys revoked"
        );
        Ok(revoked.into_iter().map(|s| s.key).collect())
    }

    /// Replaces a key by a new one with the same name, scopes, restrictions, limits and meta.
    /// The old key keeps working for `grace` (zero: it is revoked at once), then expires.
    /// Returns the new secret, the new record and the old record.
    pub async fn rotate_key(
        &self,
        caller: &Caller,
        id: &KeyId,
        grace: Duration,
    ) -> Result<(SecretKey, ApiKey, ApiKey)> {
        let old = self.existing_key(id).await?;
        caller.authorize(&old.account_id, Access::Write)?;
        caller.authorize_portal(PortalAction::Rotate)?;
        caller.authorize_environment(old.environment)?;
        // A fresh secret for a key is as good as the key: no rotating what one could not grant.
        caller.authorize_grant(&old.scopes, old.grant_all)?;
        let now = Timestamp::now();
        // The replacement keeps the old key's lifetime, counted from now, within max_ttl.
        let lifetime = old.expires_at.map(|e| {
            Duration::from_micros(u64::try_from(e.micros() - old.created_at.micros()).unwrap_or(0))
        });
        let lifetime = match (lifetime, self.policy.max_ttl) {
            (Some(l), Some(max)) => Some(l.min(max)),
            (None, max) => max,
            (l, None) => l,
        };
        let generated = self.format.generate(old.environment);
        let new = NewKey {
            digest: generated.digest,
            // The old key's grant, restrictions, limit and meta on a freshly issued record.
            key: ApiKey {
                scopes: old.scopes.clone(),
                grant_all: old.grant_all,
                restrictions: old.restrictions.clone(),
                rate_limit: old.rate_limit,
                meta: old.meta.clone(),
                expires_at: lifetime.map(|l| now.saturating_add(l)),
                previous_key_id: Some(old.id.clone()),
                created_by: Some(caller.key_id_owned()),
                ..ApiKey::issued(
                    old.account_id.clone(),
                    old.name.clone(),
                    generated.display_prefix,
                    old.environment,
                    now,
                )
            },
        };
        let old_expires_at = (!grace.is_zero()).then(|| now.saturating_add(grace));
        let (old, new) = self
            .store
            .rotate_key(id, &new, old_expires_at, now, Some(caller.key_id()))
            .await?;
        self.invalidate(&old.digest).await;
        self.invalidate(&new.digest).await;
        tracing::debug!(key_id = %id, new_key_id = %new.key.id, actor = caller.key_id(), grace_secs = grace.as_secs(), "key rotated");
        Ok((generated.secret, new.key, old.key))
    }

    /// A key's full record, read from the store (no authorization: for a caller that holds the
    /// key itself, e.g. `GET /v1/usage`).
    pub async fn key_record(&self, id: &KeyId) -> Result<ApiKey> {
        self.store
            .key_by_id(id)
            .await?
            .map(|stored| stored.key)
            .ok_or_else(|| Error::NotFound(format!("key {id}")))
    }

    async fn existing_key(&self, id: &KeyId) -> Result<ApiKey> {
        self.store
            .key_by_id(id)
            .await?
            .map(|stored| stored.key)
            .ok_or_else(|| Error::NotFound(format!("key {id}")))
    }
}

/// What a string reported as leaked turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leak {
    /// Not the key format, or the checksum fails.
    NotAKey,
    /// Well-formed, but no such key.
    Unknown,
    /// A live key, revoked by this report.
    RevokedNow(ApiKey),
    /// A key revoked before.
    AlreadyRevoked(ApiKey),
}

/// One key issued elsewhere, parsed: its digest, what people see of it, and its grant.
#[derive(Debug, Clone)]
pub struct ImportRecord {
    /// The SHA-256 of the raw key.
    pub digest: crate::key::KeyDigest,
    /// The display prefix.
    pub prefix: String,
    /// Account, name, environment, scopes or preset, grant_all, rate limit (expiry and
    /// restrictions unused).
    pub grant: CreateKey,
    /// When it expires; `None`: never.
    pub expires_at: Option<Timestamp>,
    /// When it was issued; `None`: now.
    pub created_at: Option<Timestamp>,
    /// When it was last used, if known.
    pub last_used_at: Option<Timestamp>,
}

/// What an import did with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// Stored now, with this id.
    Stored(String),
    /// A key with this digest exists already, with this id.
    AlreadyPresent(String),
    /// Refused, with the reason.
    Rejected(String),
}

impl Keyward {
    /// Imports keys issued elsewhere by their digests (root only). Records are checked one by
    /// one (a refused record does not stop the others); the accepted ones are stored in one
    /// transaction. A digest already stored, or twice in the batch, is `AlreadyPresent`:
    /// importing the same file twice gives the same keys.
    pub async fn import_keys(
        &self,
        caller: &Caller,
        records: Vec<Result<ImportRecord, String>>,
    ) -> Result<Vec<Imported>> {
        caller.require_root()?;
        let now = Timestamp::now();
        let mut results = Vec::with_capacity(records.len());
        // The accepted records: their result slots and the keys to store.
        let (mut slots, mut keys) = (Vec::new(), Vec::new());
        // Duplicates within the batch: (result slot, slot of the first with that digest).
        let mut dupes = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for (i, record) in records.into_iter().enumerate() {
            let record = match record {
                Ok(record) => record,
                Err(why) => {
                    results.push(Imported::Rejected(why));
                    continue;
                }
            };
            if let Some(&first) = seen.get(&record.digest) {
                dupes.push((i, first));
                results.push(Imported::AlreadyPresent(String::new()));
                continue;
            }
            let digest = record.digest;
            match self.import_one(caller, record, now) {
                Ok(new) => {
                    seen.insert(digest, i);
                    slots.push(i);
                    keys.push(new);
                    results.push(Imported::Stored(String::new()));
                }
                Err(Error::InvalidArgument(v)) => results.push(Imported::Rejected(
                    v.iter()
                        .map(|v| format!("{}: {}", v.field, v.description))
                        .collect::<Vec<_>>()
                        .join("; "),
                )),
                Err(other) => results.push(Imported::Rejected(other.to_string())),
            }
        }
        let batch = self
            .store
            .insert_imported(&keys, now, Some(caller.key_id()))
            .await?;
        for (slot, key) in slots.iter().zip(&keys) {
            results[*slot] = if batch.stored.contains(&key.digest) {
                self.invalidate(&key.digest).await;
                Imported::Stored(key.key.id.to_string())
            } else if let Some(id) = batch.present.get(&key.digest) {
                Imported::AlreadyPresent(id.to_string())
            } else {
                // Skipped by the insert yet not found: not possible (keys are never deleted),
                // but never answered as stored.
                Imported::Rejected("could not be stored; import it again".into())
            };
        }
        for (slot, first) in dupes {
            if let Imported::Stored(id) = &results[first] {
                results[slot] = Imported::AlreadyPresent(id.clone());
            }
        }
        tracing::info!(
            imported = batch.stored.len(),
            already_present = batch.present.len(),
            actor = caller.key_id(),
            "keys imported"
        );
        self.count_imported(batch.stored.len());
        Ok(results)
    }

    /// Counts imported keys; after every [`STATISTICS_AFTER_IMPORTED`] of them, refreshes the
    /// store's statistics in the background (see [`Store::refresh_statistics`]).
    ///
    /// [`Store::refresh_statistics`]: crate::store::Store::refresh_statistics
    fn count_imported(&self, stored: usize) {
        let stored = u64::try_from(stored).unwrap_or(u64::MAX);
        let counter = &self.imported_since_statistics;
        let due = counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                let n = n.saturating_add(stored);
                Some(if n >= STATISTICS_AFTER_IMPORTED { 0 } else { n })
            })
            .is_ok_and(|before| before.saturating_add(stored) >= STATISTICS_AFTER_IMPORTED);
        if due {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.refresh_statistics().await {
                    tracing::warn!(error = %e, "refreshing the store's statistics failed");
                }
            });
        }
    }

    fn import_one(&self, caller: &Caller, record: ImportRecord, now: Timestamp) -> Result<NewKey> {
        if record.grant.account_id.as_str() == ROOT_ACCOUNT {
            return Err(Error::invalid(
                "account_id",
                "\"root\" is reserved for root keys",
            ));
        }
        let (scopes, grant_all, restrictions) = self.resolve_grant(&record.grant)?;
        refuse_root_scope("scopes", &scopes)?;
        let created_at = record.created_at.unwrap_or(now);
        Ok(NewKey {
            digest: record.digest,
            key: ApiKey {
                scopes,
                grant_all,
                restrictions,
                rate_limit: record.grant.rate_limit,
                expires_at: record.expires_at,
                last_used_at: record.last_used_at,
                created_by: Some(caller.key_id_owned()),
                updated_at: now,
                ..ApiKey::issued(
                    record.grant.account_id,
                    record.grant.name,
                    record.prefix,
                    record.grant.environment,
                    created_at,
                )
            },
        })
    }
}

/// Refuses a lifetime longer than a portal session's `max_ttl` allows (never-expiring keys
/// included).
fn portal_lifetime(
    grant: &PortalGrant,
    now: Timestamp,
    expires_at: Option<Timestamp>,
) -> Result<()> {
    let Some(max) = grant.permissions.max_ttl_secs else {
        return Ok(());
    };
    let limit = now.saturating_add(Duration::from_secs(max));
    match expires_at {
        Some(at) if at <= limit => Ok(()),
        _ => Err(Error::invalid(
            "expires_at",
            format!("this portal session's keys live at most {max} seconds"),
        )),
    }
}
