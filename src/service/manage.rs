//! Key management: create, read, list, update, revoke, and the root keys that bootstrap
//! management. Authorization and policy (limits, expiry bounds, no escalation) are decided
//! here; input shape was checked at the edge.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Keyward;
use super::auth::{Access, Caller};
use crate::error::{Error, Result};
use crate::ids::{AccountId, KeyId};
use crate::key::{Environment, SecretKey};
use crate::model::{ApiKey, KeyListQuery, KeyPatch, NewKey, Page, RateLimit, Restrictions};
use crate::scope::ScopeName;
use crate::time::Timestamp;

/// When a new key expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The service default.
    Default,
    /// Never.
    Never,
    /// This long after creation.
    Ttl(Duration),
    /// At this time.
    At(Timestamp),
}

/// A well-formed request for a new key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateKey {
    /// The owning account.
    pub account_id: AccountId,
    /// Human-readable name.
    pub name: String,
    /// The key's environment.
    pub environment: Environment,
    /// Scopes to grant.
    pub scopes: Vec<ScopeName>,
    /// A catalog preset to take scopes and restrictions from.
    pub preset: Option<String>,
    /// Grant every scope.
    pub grant_all: bool,
    /// When it expires.
    pub expiry: Expiry,
    /// Where it may be used.
    pub restrictions: Restrictions,
    /// Its own rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Free-form metadata.
    pub meta: BTreeMap<String, String>,
}

pub use super::auth::ROOT_ACCOUNT;

use super::grant::refuse_root_scope;

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
        let generated = self.format.generate(request.environment);
        let new = NewKey {
            digest: generated.digest,
            key: ApiKey {
                scopes,
                grant_all,
                restrictions,
                rate_limit: request.rate_limit,
                meta: request.meta,
                expires_at,
                created_by: Some(caller.key_id().to_owned()),
                ..ApiKey::issued(
                    request.account_id.as_str(),
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
            .update_key(id.as_str(), patch, now, Some(caller.key_id()))
            .await?;
        self.invalidate(&stored.digest).await;
        tracing::debug!(key_id = %id, actor = caller.key_id(), "key updated");
        Ok(stored.key)
    }

    /// Revokes a key at once and for good.
    pub async fn revoke_key(&self, caller: &Caller, id: &KeyId) -> Result<ApiKey> {
        let current = self.existing_key(id).await?;
        caller.authorize(&current.account_id, Access::Write)?;
        caller.authorize_environment(current.environment)?;
        let stored = self
            .store
            .revoke_key(id.as_str(), Timestamp::now(), Some(caller.key_id()))
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
                .filter(|state| state.key.environment == parsed.environment);
            let Some(state) = found else {
                out.push(Leak::Unknown);
                continue;
            };
            let (stored, revoked_now) = self
                .store
                .revoke_key_because(
                    &state.key.id,
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
        let account_id = account_id.as_str();
        caller.authorize(account_id, Access::Write)?;
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
            account = account_id,
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
                created_by: Some(caller.key_id().to_owned()),
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
            .rotate_key(
                id.as_str(),
                &new,
                old_expires_at,
                now,
                Some(caller.key_id()),
            )
            .await?;
        self.invalidate(&old.digest).await;
        self.invalidate(&new.digest).await;
        tracing::debug!(key_id = %id, new_key_id = %new.key.id, actor = caller.key_id(), grace_secs = grace.as_secs(), "key rotated");
        Ok((generated.secret, new.key, old.key))
    }

    async fn existing_key(&self, id: &KeyId) -> Result<ApiKey> {
        self.store
            .key_by_id(id.as_str())
            .await?
            .map(|stored| stored.key)
            .ok_or_else(|| Error::NotFound(format!("key {id:?}")))
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
