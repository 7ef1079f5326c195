//! ManageService requests parsed into domain values, every bad field named; nothing here
//! decides policy.

use super::convert::{
    MAX_TTL, Violations, check_name, mask_paths, parse_credits, parse_duration, parse_environment,
    parse_meta, parse_page_size, parse_rate_limit, parse_restrictions, parse_scopes,
    parse_timestamp,
};
use super::trace::record_target;
use crate::error::{Error, Result};
use crate::ids::{AccountId, KeyId};
use crate::key::Environment;
use crate::model::{KeyListQuery, KeyPatch};
use crate::page_token::PageTokens;
use crate::proto::{self, create_key_request};
use crate::service::{CreateKey, Expiry, ImportRecord};

pub(crate) fn required_id(id: &str) -> Result<KeyId> {
    let id = KeyId::parse(id).map_err(|e| Error::invalid("id", e))?;
    record_target(id.as_str());
    Ok(id)
}

/// A rotation's grace period: absent is none (the old key is revoked at once), at most a year.
pub(crate) fn parse_grace(grace: Option<&prost_types::Duration>) -> Result<std::time::Duration> {
    match grace.map(|g| parse_duration(g, super::convert::MAX_GRACE, "365 days")) {
        None => Ok(std::time::Duration::ZERO),
        Some(Ok(grace)) => Ok(grace),
        Some(Err(e)) => Err(Error::invalid("grace_period", e)),
    }
}

/// A required environment: unspecified or unknown is a violation.
fn required_environment(v: &mut Violations, value: i32) -> Option<Environment> {
    match parse_environment(value) {
        Ok(Some(env)) => Some(env),
        Ok(None) => {
            v.add(
                "environment",
                "is required: ENVIRONMENT_LIVE or ENVIRONMENT_TEST",
            );
            None
        }
        Err(e) => {
            v.add("environment", e);
            None
        }
    }
}

pub(crate) fn parse_create(r: proto::CreateKeyRequest) -> Result<CreateKey> {
    let mut v = Violations::default();
    let account_id = v.parse("account_id", &r.account_id, AccountId::parse);
    v.check("name", check_name(&r.name));
    let environment = required_environment(&mut v, r.environment);
    let scopes = parse_scopes(&mut v, "scopes", &r.scopes);
    let expiry = match &r.expiry {
        None => Expiry::Default,
        Some(create_key_request::Expiry::Ttl(ttl)) => {
            match parse_duration(ttl, MAX_TTL, "100 years") {
                Ok(ttl) if !ttl.is_zero() => Expiry::Ttl(ttl),
                Ok(_) => {
                    v.add("ttl", "must be positive");
                    Expiry::Default
                }
                Err(e) => {
                    v.add("ttl", e);
                    Expiry::Default
                }
            }
        }
        Some(create_key_request::Expiry::ExpiresAt(at)) => match parse_timestamp(at) {
            Ok(at) => Expiry::At(at),
            Err(e) => {
                v.add("expires_at", e);
                Expiry::Default
            }
        },
        Some(create_key_request::Expiry::NeverExpires(true)) => Expiry::Never,
        Some(create_key_request::Expiry::NeverExpires(false)) => {
            v.add("never_expires", "must be true when set");
            Expiry::Default
        }
    };
    let rate_limit = r
        .rate_limit
        .as_ref()
        .and_then(|rl| parse_rate_limit(&mut v, "rate_limit", rl));
    let meta = parse_meta(&mut v, &r.meta);
    let restrictions = parse_restrictions(&mut v, r.restrictions.as_ref());
    let credits = r
        .credits
        .as_ref()
        .and_then(|c| parse_credits(&mut v, "credits", c));
    v.finish_parsed(account_id.map(|account_id| CreateKey {
        credits,
        account_id,
        name: r.name,
        // A missing environment is already a violation, so this placeholder is never used.
        environment: environment.unwrap_or(Environment::Live),
        scopes,
        preset: (!r.preset.is_empty()).then(|| r.preset.clone()),
        grant_all: r.grant_all,
        expiry,
        restrictions,
        rate_limit,
        meta,
    }))
}

/// A ListKeys request of `caller` (its key id), whose page token must be one it was given.
pub(crate) fn parse_list(
    r: &proto::ListKeysRequest,
    tokens: &PageTokens,
    caller: &str,
) -> Result<KeyListQuery> {
    let mut v = Violations::default();
    let account_id = v.parse("account_id", &r.account_id, AccountId::parse);
    let page_size = parse_page_size(r.page_size);
    let after = (tokens.open(&r.page_token, caller, super::manage::list_fingerprint(r)))
        .unwrap_or_else(|e| {
            v.add("page_token", e);
            None
        });
    let unused_since = r.unused_since.as_ref().and_then(|t| {
        parse_timestamp(t)
            .map_err(|e| v.add("unused_since", e))
            .ok()
    });
    v.finish_parsed(account_id.map(|account_id| KeyListQuery {
        account_id,
        include_revoked: r.include_revoked,
        unused_since,
        page_size,
        after,
    }))
}

pub(crate) fn parse_patch(r: &proto::UpdateKeyRequest) -> Result<KeyPatch> {
    let mut v = Violations::default();
    let mut patch = KeyPatch::default();
    let paths = mask_paths(
        &mut v,
        r.update_mask.as_ref(),
        &[
            "name",
            "scopes",
            "grant_all",
            "restrictions",
            "rate_limit",
            "meta",
            "expires_at",
            // `add_credits` is an increment, not a field: never part of "*".
            "credits",
        ],
    );
    for path in paths {
        match path.as_str() {
            "name" => {
                v.check("name", check_name(&r.name));
                patch.name = Some(r.name.clone());
            }
            "scopes" => patch.scopes = Some(parse_scopes(&mut v, "scopes", &r.scopes)),
            "grant_all" => patch.grant_all = Some(r.grant_all),
            "restrictions" => {
                patch.restrictions = Some(parse_restrictions(&mut v, r.restrictions.as_ref()))
            }
            "rate_limit" => {
                patch.rate_limit = Some(
                    r.rate_limit
                        .as_ref()
                        .and_then(|rl| parse_rate_limit(&mut v, "rate_limit", rl)),
                )
            }
            "meta" => patch.meta = Some(parse_meta(&mut v, &r.meta)),
            "expires_at" => {
                let at = r.expires_at.as_ref().and_then(|t| {
                    parse_timestamp(t).map_err(|e| v.add("expires_at", e)).ok()
                });
                patch.expires_at = Some(at);
            }
            "credits" => {
                patch.credits = Some(
                    r.credits
                        .as_ref()
                        .and_then(|c| parse_credits(&mut v, "credits", c)),
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

/// Most records one ImportKeys call takes.
pub(crate) const MAX_IMPORT: usize = 1000;

/// One imported record, checked on its own: a refusal names the record's field and does not
/// stop the others.
pub(crate) fn parse_imported(r: &proto::ImportedKey) -> std::result::Result<ImportRecord, String> {
    let mut v = Violations::default();
    let digest = crate::key::KeyDigest::from_hex(r.sha256.trim());
    if digest.is_none() {
        v.add(
            "sha256",
            "must be 64 hexadecimal digits (the SHA-256 of the raw key)",
        );
    }
    let prefix_ok = !r.prefix.is_empty()
        && r.prefix.chars().count() <= 32
        && r.prefix.chars().all(|c| c.is_ascii_graphic());
    if !prefix_ok {
        v.add("prefix", "must be 1-32 printable characters without spaces");
    }
    let account_id = v.parse("account_id", &r.account_id, AccountId::parse);
    v.check("name", check_name(&r.name));
    let environment = required_environment(&mut v, r.environment);
    let scopes = parse_scopes(&mut v, "scopes", &r.scopes);
    let mut time = |field: &str, t: Option<&prost_types::Timestamp>| {
        t.and_then(|t| parse_timestamp(t).map_err(|e| v.add(field, e)).ok())
    };
    let expires_at = time("expires_at", r.expires_at.as_ref());
    let created_at = time("created_at", r.created_at.as_ref());
    let last_used_at = time("last_used_at", r.last_used_at.as_ref());
    let rate_limit = r
        .rate_limit
        .as_ref()
        .and_then(|rl| parse_rate_limit(&mut v, "rate_limit", rl));
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
                preset: (!r.preset.is_empty()).then(|| r.preset.clone()),
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
        Err(crate::error::Error::InvalidArgument(violations)) => Err(violations
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
            let request = proto::UpdateKeyRequest {
                id: "key_0000000000000000000000".into(),
                name: "n".into(),
                update_mask: Some(prost_types::FieldMask { paths: paths.clone() }),
                ..Default::default()
            };
            let valid = !paths.is_empty()
                && paths.len() <= 16
                && paths.iter().all(|p| KNOWN.contains(&p.as_str()) && p != "scopes");
            match parse_patch(&request) {
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
