//! The request layer: what a caller asked for, checked into domain requests, whichever
//! transport it came through. The gRPC adapter (`grpc`) and the JSON API (`http::api`) each
//! read their wire format into the plain inputs here; every field is checked once, here,
//! every bad one named (`update_mask`, `rate_limit.window`, `restrictions.allowed_cidrs[1]`)
//! and bounded by the constants in `limits`. Nothing here decides policy: that is the
//! service's.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::ids::{AccountId, KeyId};
use crate::key::{Environment, KeyDigest};
use crate::limits::{MAX_IMPORT, MAX_IMPORT_PREFIX_CHARS};
use crate::model::{AccountPatch, KeyListQuery, KeyPatch};
use crate::page_token::PageTokens;
use crate::service::{CreateKey, Expiry, ImportRecord};
use crate::time::Timestamp;

mod fields;
mod portal;
mod usage;
mod violations;

pub(crate) use fields::{
    CreditsInput, MAX_GRACE, RateLimitInput, RawDuration, RawTime, RefillInput, RestrictionsInput,
    check_name, credits, duration, mask_paths, meta, page_size, query_fingerprint, rate_limit,
    required_scopes, restrictions, scopes, timestamp,
};
pub(crate) use portal::{PortalSessionInput, portal_session};
pub(crate) use usage::{UsageInput, usage};
pub(crate) use violations::Violations;

/// A key id from a path or a field named `id`.
pub(crate) fn key_id(id: &str) -> Result<KeyId> {
    KeyId::parse(id).map_err(|e| Error::invalid("id", e))
}

/// A rotation's grace period: absent is none (the old key is revoked at once), at most a year.
pub(crate) fn grace(grace: Option<RawDuration>) -> Result<std::time::Duration> {
    match grace.map(|g| duration(g, MAX_GRACE, "365 days")) {
        None => Ok(std::time::Duration::ZERO),
        Some(Ok(grace)) => Ok(grace),
        Some(Err(e)) => Err(Error::invalid("grace_period", e)),
    }
}

/// A required environment: none given, or one the transport could not read (its error), is a
/// violation.
fn required_environment(
    v: &mut Violations,
    env: &std::result::Result<Option<Environment>, String>,
) -> Option<Environment> {
    match env {
        Ok(Some(env)) => Some(*env),
        Ok(None) => {
            v.add(
                "environment",
                "is required: ENVIRONMENT_LIVE or ENVIRONMENT_TEST",
            );
            None
        }
        Err(e) => {
            v.add("environment", e.clone());
            None
        }
    }
}

/// When a new key expires, as a caller asks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) enum ExpiryInput {
    /// Nothing said: the service's default.
    #[default]
    Default,
    /// After this long.
    Ttl(RawDuration),
    /// At this moment.
    At(RawTime),
    /// Never (`false` is a violation: the field is a flag that must be set when given).
    Never(bool),
}

/// A CreateKey request, as its transport read it.
#[derive(Debug, Clone)]
pub(crate) struct CreateKeyInput {
    /// The account the key is for.
    pub account_id: String,
    /// The key's name.
    pub name: String,
    /// Live or test; required (an error: the transport's reason it could not read one).
    pub environment: std::result::Result<Option<Environment>, String>,
    /// Scopes granted by name.
    pub scopes: Vec<String>,
    /// A preset of the catalog, if any.
    pub preset: Option<String>,
    /// Every current and future scope.
    pub grant_all: bool,
    /// When the key expires.
    pub expiry: ExpiryInput,
    /// Where the key may be used.
    pub restrictions: Option<RestrictionsInput>,
    /// The key's own rate limit.
    pub rate_limit: Option<RateLimitInput>,
    /// Free-form metadata.
    pub meta: HashMap<String, String>,
    /// Usage credits.
    pub credits: Option<CreditsInput>,
    /// The violation's text for a refill with no interval, in the caller's spelling.
    pub bad_interval: &'static str,
}

/// A CreateKey request, every field checked.
pub(crate) fn create_key(mut v: Violations, r: CreateKeyInput) -> Result<CreateKey> {
    let account_id = v.parse("account_id", &r.account_id, AccountId::parse);
    v.check("name", check_name(&r.name));
    let environment = required_environment(&mut v, &r.environment);
    let scopes = scopes(&mut v, "scopes", &r.scopes);
    let expiry = match r.expiry {
        ExpiryInput::Default => Expiry::Default,
        ExpiryInput::Ttl(ttl) => match duration(ttl, fields::MAX_TTL, "100 years") {
            Ok(ttl) if !ttl.is_zero() => Expiry::Ttl(ttl),
            Ok(_) => {
                v.add("ttl", "must be positive");
                Expiry::Default
            }
            Err(e) => {
                v.add("ttl", e);
                Expiry::Default
            }
        },
        ExpiryInput::At(at) => match timestamp(at) {
            Ok(at) => Expiry::At(at),
            Err(e) => {
                v.add("expires_at", e);
                Expiry::Default
            }
        },
        ExpiryInput::Never(true) => Expiry::Never,
        ExpiryInput::Never(false) => {
            v.add("never_expires", "must be true when set");
            Expiry::Default
        }
    };
    let rate_limit = r
        .rate_limit
        .and_then(|rl| rate_limit(&mut v, "rate_limit", &rl));
    let meta = meta(&mut v, &r.meta);
    let restrictions = restrictions(&mut v, r.restrictions.as_ref());
    let credits = r
        .credits
        .and_then(|c| credits(&mut v, "credits", &c, r.bad_interval));
    v.finish_parsed(account_id.map(|account_id| CreateKey {
        credits,
        account_id,
        name: r.name,
        // A missing environment is already a violation, so this placeholder is never used.
        environment: environment.unwrap_or(Environment::Live),
        scopes,
        preset: r.preset.filter(|p| !p.is_empty()),
        grant_all: r.grant_all,
        expiry,
        restrictions,
        rate_limit,
        meta,
    }))
}

/// A ListKeys request, as its transport read it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListKeysInput {
    /// The account whose keys to list.
    pub account_id: String,
    /// Include revoked keys.
    pub include_revoked: bool,
    /// Only keys not used since then.
    pub unused_since: Option<RawTime>,
    /// Keys per page; 0 for the default.
    pub page_size: u32,
    /// The previous page's token; empty for the first page.
    pub page_token: String,
    /// `usage desc` for the most used keys first; empty for oldest first.
    pub order_by: String,
    /// With `order_by`: count decisions since then (30 days ago when absent).
    pub usage_since: Option<RawTime>,
}

/// How long back `order_by: usage desc` counts unless told.
const USAGE_ORDER_DAYS: i64 = 30;

/// A ListKeys request of `caller` (its key id), whose page token must be one it was given for
/// the query `fingerprint` names.
pub(crate) fn list_keys(
    mut v: Violations,
    r: &ListKeysInput,
    tokens: &PageTokens,
    caller: &str,
    fingerprint: u32,
) -> Result<KeyListQuery> {
    let account_id = v.parse("account_id", &r.account_id, AccountId::parse);
    let page_size = page_size(r.page_size);
    let after = (tokens.open(&r.page_token, caller, fingerprint)).unwrap_or_else(|e| {
        v.add("page_token", e);
        None
    });
    let unused_since = r
        .unused_since
        .and_then(|t| timestamp(t).map_err(|e| v.add("unused_since", e)).ok());
    let by_usage = match r.order_by.trim() {
        "" => {
            if r.usage_since.is_some() {
                v.add("usage_since", "only with order_by \"usage desc\"");
            }
            None
        }
        order if order.split_whitespace().eq(["usage", "desc"]) => {
            let now = Timestamp::now().micros().div_euclid(1_000_000);
            match r.usage_since {
                None => Some(now - USAGE_ORDER_DAYS * 86_400),
                Some(t) => timestamp(t)
                    .map(|t| t.micros().div_euclid(1_000_000))
                    .map_err(|e| v.add("usage_since", e))
                    .ok(),
            }
        }
        _ => {
            v.add("order_by", "must be empty (oldest first) or \"usage desc\"");
            None
        }
    };
    v.finish_parsed(account_id.map(|account_id| KeyListQuery {
        account_id,
        include_revoked: r.include_revoked,
        unused_since,
        page_size,
        after,
        by_usage,
    }))
}

/// The fields an update mask may name, in the order `*` stands for them. `add_credits` is an
/// increment, not a field: never part of `*`.
const KEY_FIELDS: [&str; 8] = [
    "name",
    "scopes",
    "grant_all",
    "restrictions",
    "rate_limit",
    "meta",
    "expires_at",
    "credits",
];

/// An UpdateKey request, as its transport read it: the mask says which fields count.
#[derive(Debug, Clone, Default)]
pub(crate) struct UpdateKeyInput {
    /// The fields to change (`*` for all of [`KEY_FIELDS`]).
    pub paths: Vec<String>,
    /// The new name.
    pub name: String,
    /// The new scopes.
    pub scopes: Vec<String>,
    /// The new `grant_all`.
    pub grant_all: bool,
    /// The new restrictions (none: unrestricted).
    pub restrictions: Option<RestrictionsInput>,
    /// The new rate limit (none: the service default).
    pub rate_limit: Option<RateLimitInput>,
    /// The new metadata.
    pub meta: HashMap<String, String>,
    /// The new expiry (none: never).
    pub expires_at: Option<RawTime>,
    /// The new credits (none: unlimited).
    pub credits: Option<CreditsInput>,
    /// Units to add to (or, negative, take from) the balance.
    pub add_credits: i64,
    /// The violation's text for a refill with no interval, in the caller's spelling.
    pub bad_interval: &'static str,
}

/// An UpdateKey request, every named field checked.
pub(crate) fn update_key(mut v: Violations, r: &UpdateKeyInput) -> Result<KeyPatch> {
    let mut patch = KeyPatch::default();
    for path in mask_paths(&mut v, &r.paths, &KEY_FIELDS) {
        match path.as_str() {
            "name" => {
                v.check("name", check_name(&r.name));
                patch.name = Some(r.name.clone());
            }
            "scopes" => patch.scopes = Some(scopes(&mut v, "scopes", &r.scopes)),
            "grant_all" => patch.grant_all = Some(r.grant_all),
            "restrictions" => {
                patch.restrictions = Some(restrictions(&mut v, r.restrictions.as_ref()))
            }
            "rate_limit" => {
                patch.rate_limit = Some(
                    r.rate_limit
                        .and_then(|rl| rate_limit(&mut v, "rate_limit", &rl)),
                )
            }
            "meta" => patch.meta = Some(meta(&mut v, &r.meta)),
            "expires_at" => {
                let at = r
                    .expires_at
                    .and_then(|t| timestamp(t).map_err(|e| v.add("expires_at", e)).ok());
                patch.expires_at = Some(at);
            }
            "credits" => {
                patch.credits = Some(
                    r.credits
                        .and_then(|c| credits(&mut v, "credits", &c, r.bad_interval)),
                )
            }
            "add_credits" => patch.add_credits = Some(r.add_credits),
            other => v.add(
                "update_mask",
                format!(
                    "unknown field {other:?}; expected name, scopes, grant_all, restrictions, rate_limit, meta, expires_at, credits or add_credits"
                ),
            ),
        }
    }
    v.finish(patch)
}

/// An UpdateAccount request, as its transport read it: the mask says which fields count.
#[derive(Debug, Clone, Default)]
pub(crate) struct UpdateAccountInput {
    /// The fields to change (`*` for all).
    pub paths: Vec<String>,
    /// The new most active keys; 0 for no limit.
    pub max_active_keys: u32,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// The account's new shared rate limit (none: no limit).
    pub rate_limit: Option<RateLimitInput>,
}

/// An UpdateAccount request for `account_id`, every named field checked.
pub(crate) fn update_account(
    mut v: Violations,
    account_id: &str,
    r: &UpdateAccountInput,
) -> Result<(AccountId, AccountPatch)> {
    let account_id = v.parse("account_id", account_id, AccountId::parse);
    let mut patch = AccountPatch::default();
    let paths = mask_paths(
        &mut v,
        &r.paths,
        &["max_active_keys", "disabled", "rate_limit"],
    );
    for path in paths {
        match path.as_str() {
            "max_active_keys" => {
                patch.max_active_keys = Some((r.max_active_keys != 0).then_some(r.max_active_keys))
            }
            "disabled" => patch.disabled = Some(r.disabled),
            "rate_limit" => {
                patch.rate_limit = Some(
                    r.rate_limit
                        .and_then(|rl| rate_limit(&mut v, "rate_limit", &rl)),
                )
            }
            other => v.add(
                "update_mask",
                format!(
                    "unknown field {other:?}; expected max_active_keys, disabled or rate_limit"
                ),
            ),
        }
    }
    v.finish_parsed(account_id.map(|id| (id, patch)))
}

/// One record of an import, as its transport read it.
#[derive(Debug, Clone)]
pub(crate) struct ImportedKeyInput {
    /// The SHA-256 of the raw key, hexadecimal.
    pub sha256: String,
    /// The key's recognisable start.
    pub prefix: String,
    /// The account it belongs to.
    pub account_id: String,
    /// Its name.
    pub name: String,
    /// Live or test; required (an error: the transport's reason it could not read one).
    pub environment: std::result::Result<Option<Environment>, String>,
    /// Scopes it holds.
    pub scopes: Vec<String>,
    /// A preset it holds, if any.
    pub preset: Option<String>,
    /// Every scope.
    pub grant_all: bool,
    /// When it expires.
    pub expires_at: Option<RawTime>,
    /// When it was made.
    pub created_at: Option<RawTime>,
    /// When it was last used.
    pub last_used_at: Option<RawTime>,
    /// Its rate limit.
    pub rate_limit: Option<RateLimitInput>,
}

/// Checks the size of an import before any record is looked at.
pub(crate) fn import_size(records: usize) -> Result<()> {
    if records == 0 || records > MAX_IMPORT {
        return Err(Error::invalid(
            "keys",
            format!("give 1-{MAX_IMPORT} records a call"),
        ));
    }
    Ok(())
}

/// One imported record, checked on its own: a refusal names the record's field and does not
/// stop the others.
pub(crate) fn imported_key(r: &ImportedKeyInput) -> std::result::Result<ImportRecord, String> {
    let mut v = Violations::default();
    let digest = KeyDigest::from_hex(r.sha256.trim());
    if digest.is_none() {
        v.add(
            "sha256",
            "must be 64 hexadecimal digits (the SHA-256 of the raw key)",
        );
    }
    let prefix_ok = !r.prefix.is_empty()
        && r.prefix.chars().count() <= MAX_IMPORT_PREFIX_CHARS
        && r.prefix.chars().all(|c| c.is_ascii_graphic());
    if !prefix_ok {
        v.add(
            "prefix",
            format!("must be 1-{MAX_IMPORT_PREFIX_CHARS} printable characters without spaces"),
        );
    }
    let account_id = v.parse("account_id", &r.account_id, AccountId::parse);
    v.check("name", check_name(&r.name));
    let environment = required_environment(&mut v, &r.environment);
    let scopes = scopes(&mut v, "scopes", &r.scopes);
    let mut time = |field: &str, t: Option<RawTime>| {
        t.and_then(|t| timestamp(t).map_err(|e| v.add(field, e)).ok())
    };
    let expires_at = time("expires_at", r.expires_at);
    let created_at = time("created_at", r.created_at);
    let last_used_at = time("last_used_at", r.last_used_at);
    let rate_limit = r
        .rate_limit
        .and_then(|rl| rate_limit(&mut v, "rate_limit", &rl));
    let record = match (digest, account_id, environment) {
        (Some(digest), Some(account_id), Some(environment)) => Some(ImportRecord {
            digest,
            prefix: r.prefix.clone(),
            grant: CreateKey {
                credits: None,
                account_id,
                name: r.name.clone(),
                environment,
                scopes,
                preset: r.preset.clone().filter(|p| !p.is_empty()),
                grant_all: r.grant_all,
                expiry: Expiry::Default,
                restrictions: Default::default(),
                rate_limit,
                meta: Default::default(),
            },
            expires_at,
            created_at,
            last_used_at,
        }),
        _ => None,
    };
    match v.finish_parsed(record) {
        Ok(record) => Ok(record),
        Err(Error::InvalidArgument(violations)) => Err(violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect::<Vec<_>>()
            .join("; ")),
        Err(other) => Err(other.to_string()),
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    const KNOWN: [&str; 7] = [
        "name",
        "scopes",
        "grant_all",
        "restrictions",
        "rate_limit",
        "meta",
        "expires_at",
    ];

    proptest! {
        #[test]
        fn update_masks_name_known_fields_or_are_refused(
            paths in proptest::collection::vec("[a-z_.]{0,14}|name|scopes|meta|grant_all", 0..20),
        ) {
            let request = UpdateKeyInput {
                name: "n".into(),
                paths: paths.clone(),
                ..Default::default()
            };
            let valid = !paths.is_empty()
                && paths.len() <= crate::limits::MAX_MASK_PATHS
                && paths.iter().all(|p| KNOWN.contains(&p.as_str()) && p != "scopes");
            match update_key(Violations::default(), &request) {
                Ok(patch) => {
                    prop_assert!(valid || paths.iter().any(|p| p == "scopes"), "{paths:?}");
                    prop_assert_eq!(patch.name.is_some(), paths.iter().any(|p| p == "name"));
                }
                Err(Error::InvalidArgument(violations)) => {
                    prop_assert!(!valid, "{paths:?}");
                    prop_assert!(violations.len() <= 11);
                }
                Err(e) => prop_assert!(false, "{e:?}"),
            }
        }
    }
}
