//! What a key may be granted and how long it may live: presets resolved, scopes checked
//! against the catalog, the `root` scope kept to root keys, expiry bounded by `max_ttl`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Keyward;
use crate::error::{Error, Result};
use crate::ids::AccountId;
use crate::key::Environment;
use crate::model::{RateLimit, Restrictions};
use crate::scope::{ROOT, ScopeName};
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
    /// Usage credits; `None`: unlimited.
    pub credits: Option<crate::model::CreditTerms>,
}

/// Scope names as a record stores them.
pub(super) fn names(scopes: &[ScopeName]) -> Vec<String> {
    scopes.iter().map(|s| s.as_str().to_owned()).collect()
}

/// The `root` scope is held only by root keys, made by `keyward root-key create` (or at first
/// start) in the reserved root account: no create or update hands it out.
pub(super) fn refuse_root_scope(field: &str, scopes: &[impl AsRef<str>]) -> Result<()> {
    match scopes.iter().position(|s| s.as_ref() == ROOT) {
        Some(i) => Err(Error::invalid(
            format!("{field}[{i}]"),
            "root is held only by root keys, which `keyward root-key create` makes",
        )),
        None => Ok(()),
    }
}

impl Keyward {
    /// The scopes, grant-all flag and restrictions a create request resolves to, with its
    /// preset applied: given scopes and methods must stay within the preset's.
    pub(super) fn resolve_grant(
        &self,
        request: &CreateKey,
    ) -> Result<(Vec<String>, bool, Restrictions)> {
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
                    "unknown preset {}; the catalog has {}",
                    crate::error::echo(name),
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
    pub(super) fn check_scopes(&self, field: &str, scopes: &[ScopeName]) -> Result<()> {
        match scopes
            .iter()
            .enumerate()
            .find(|(_, s)| self.catalog.get(s.as_str()).is_none())
        {
            Some((i, s)) => Err(Error::invalid(
                format!("{field}[{i}]"),
                format!(
                    "unknown scope {:?}; ListScopes shows the catalog",
                    s.as_str()
                ),
            )),
            None => Ok(()),
        }
    }

    /// Resolves an expiry request against the service's default and maximum TTL.
    pub(super) fn expiry(&self, expiry: Expiry, now: Timestamp) -> Result<Option<Timestamp>> {
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
    pub(super) fn check_lifetime(
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
}
