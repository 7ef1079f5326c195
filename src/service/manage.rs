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
use crate::scope::ROOT;
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

/// Scope names as a record stores them.
fn names(scopes: &[ScopeName]) -> Vec<String> {
    scopes.iter().map(|s| s.as_str().to_owned()).collect()
}

/// The `root` scope is held only by root keys, made by `keyward root-key create` (or at first
/// start) in the reserved root account: no create or update hands it out.
fn refuse_root_scope(field: &str, scopes: &[impl AsRef<str>]) -> Result<()> {
    match scopes.iter().position(|s| s.as_ref() == ROOT) {
        Some(i) => Err(Error::invalid(
            format!("{field}[{i}]"),
            "root is held only by root keys, which `keyward root-key create` makes",
        )),
        None => Ok(()),
    }
}

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

    /// The scopes, grant-all flag and restrictions a create request resolves to, with its
    /// preset applied: given scopes and methods must stay within the preset's.
    fn resolve_grant(&self, request: &CreateKey) -> Result<(Vec<String>, bool, Restrictions)> {
        self.check_scopes("scopes", &request.scopes)?;
        let Some(name) = &request.preset else {
            if request.scopes.is_empty() && !request.grant_all {
                return Err(Error::invalid(
                    "scopes",
                    "a key must be granted something: give scopes, a preset or grant_all",
                ));
            }
            return Ok((
                names(&request.scopes),
                request.grant_all,
                request.restrictions.clone(),
            ));
        };
        let preset = self.catalog.preset(name).ok_or_else(|| {
            let known: Vec<&str> = self
                .catalog
                .presets()
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            Error::invalid(
                "preset",
                format!(
                    "unknown preset {name:?}; the catalog has {}",
                    known.join(", ")
                ),
            )
        })?;
        if request.grant_all && !preset.grant_all {
            return Err(Error::invalid(
                "grant_all",
                format!("contradicts preset {name:?}, which does not grant all"),
            ));
        }
        if !preset.grant_all
            && let Some((i, scope)) = request
                .scopes
                .iter()
                .enumerate()
                .find(|(_, s)| !preset.scopes.iter().any(|p| p == s.as_str()))
        {
            return Err(Error::invalid(
                format!("scopes[{i}]"),
                format!("\"{scope}\" contradicts preset {name:?}, which does not include it"),
            ));
        }
        let preset_methods = &preset.restrictions.allowed_methods;
        let mut restrictions = request.restrictions.clone();
        if !preset_methods.is_empty() {
            if let Some((i, m)) = restrictions
                .allowed_methods
                .iter()
                .enumerate()
                .find(|(_, m)| !preset_methods.contains(m))
            {
                return Err(Error::invalid(
                    format!("restrictions.allowed_methods[{i}]"),
                    format!("{} contradicts preset {name:?}", m.as_str()),
                ));
            }
            if restrictions.allowed_methods.is_empty() {
                restrictions.allowed_methods = preset_methods.clone();
            }
        }
        let scopes = if request.scopes.is_empty() {
            preset.scopes.clone()
        } else {
            names(&request.scopes)
        };
        Ok((scopes, preset.grant_all, restrictions))
    }

    /// Refuses scopes the catalog does not have, naming the first one.
    fn check_scopes(&self, field: &str, scopes: &[ScopeName]) -> Result<()> {
        match scopes
            .iter()
            .enumerate()
            .find(|(_, s)| self.catalog.get(s.as_str()).is_none())
        {
            Some((i, s)) => Err(Error::invalid(
                format!("{field}[{i}]"),
                format!("unknown scope {s:?}; ListScopes shows the catalog"),
            )),
            None => Ok(()),
        }
    }

    /// Resolves an expiry request against the service's default and maximum TTL.
    fn expiry(&self, expiry: Expiry, now: Timestamp) -> Result<Option<Timestamp>> {
        let at = match expiry {
            Expiry::Default => self.policy.default_ttl.map(|ttl| now.saturating_add(ttl)),
            Expiry::Never => None,
            Expiry::Ttl(ttl) => Some(now.saturating_add(ttl)),
            Expiry::At(at) => Some(at),
        };
        if let Some(at) = at
            && at <= now
        {
            return Err(Error::invalid(
                "expires_at",
                "the expiry must be in the future",
            ));
        }
        let field = if matches!(expiry, Expiry::Ttl(_)) {
            "ttl"
        } else {
            "expires_at"
        };
        self.check_lifetime(field, now, at)?;
        Ok(at)
    }

    /// Refuses an expiry past what the service allows a key created at `created_at`:
    /// `max_ttl` bounds a key's whole life, however it is asked for.
    fn check_lifetime(
        &self,
        field: &str,
        created_at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> Result<()> {
        if let Some(max) = self.policy.max_ttl {
            let limit = created_at.saturating_add(max);
            if expires_at.is_none_or(|at| at > limit) {
                return Err(Error::invalid(
                    field,
                    format!("keys may live at most {} seconds (max_ttl)", max.as_secs()),
                ));
            }
        }
        Ok(())
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

    /// Creates the first root key if the store holds no key at all; returns its secret.
    pub async fn bootstrap_root_key(&self) -> Result<Option<SecretKey>> {
        let (secret, new) = self.root_key("root (created on first start)");
        let created = self.store.insert_first_key(&new).await?;
        if created {
            tracing::info!(key_id = %new.key.id, "created the first root key");
        }
        Ok(created.then_some(secret))
    }

    /// Mints another root key directly against the store, for recovery.
    pub async fn mint_root_key(&self, name: &str) -> Result<(SecretKey, ApiKey)> {
        let (secret, new) = self.root_key(name);
        // Root keys are not subject to the active-key limit of the root account.
        let stored = self
            .store
            .insert_key(&new, u32::MAX, new.key.created_at, None)
            .await?;
        tracing::info!(key_id = %stored.key.id, "minted a root key");
        Ok((secret, stored.key))
    }

    fn root_key(&self, name: &str) -> (SecretKey, NewKey) {
        let now = Timestamp::now();
        let generated = self.format.generate(Environment::Live);
        let new = NewKey {
            digest: generated.digest,
            key: ApiKey {
                scopes: vec![ROOT.to_owned()],
                ..ApiKey::issued(
                    ROOT_ACCOUNT,
                    name,
                    generated.display_prefix,
                    Environment::Live,
                    now,
                )
            },
        };
        (generated.secret, new)
    }

    async fn existing_key(&self, id: &KeyId) -> Result<ApiKey> {
        self.store
            .key_by_id(id.as_str())
            .await?
            .map(|stored| stored.key)
            .ok_or_else(|| Error::NotFound(format!("key {id:?}")))
    }
}
