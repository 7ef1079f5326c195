//! ManageService request messages read into the request layer's inputs ([`crate::request`]),
//! which checks them; the only judgement here is what the proto's encoding says (an enum value
//! this build does not know).

use super::convert::{
    BAD_INTERVAL, credits_input, parse_environment, rate_limit_input, raw_duration, raw_time,
    restrictions_input,
};
use crate::proto::{self, create_key_request};
use crate::request::{
    CreateKeyInput, ExpiryInput, ImportedKeyInput, ListKeysInput, UpdateKeyInput, query_fingerprint,
};

/// A CreateKey message as the request layer takes it.
pub(crate) fn create_key(r: proto::CreateKeyRequest) -> CreateKeyInput {
    CreateKeyInput {
        environment: parse_environment(r.environment),
        expiry: match &r.expiry {
            None => ExpiryInput::Default,
            Some(create_key_request::Expiry::Ttl(ttl)) => ExpiryInput::Ttl(raw_duration(ttl)),
            Some(create_key_request::Expiry::ExpiresAt(at)) => ExpiryInput::At(raw_time(at)),
            Some(create_key_request::Expiry::NeverExpires(never)) => ExpiryInput::Never(*never),
        },
        rate_limit: r.rate_limit.as_ref().map(rate_limit_input),
        credits: r.credits.as_ref().map(credits_input),
        restrictions: r.restrictions.map(restrictions_input),
        account_id: r.account_id,
        name: r.name,
        scopes: r.scopes,
        preset: Some(r.preset),
        grant_all: r.grant_all,
        meta: r.meta,
        bad_interval: BAD_INTERVAL,
    }
}

/// A ListKeys message as the request layer takes it.
pub(crate) fn list_keys(r: &proto::ListKeysRequest) -> ListKeysInput {
    ListKeysInput {
        account_id: r.account_id.clone(),
        include_revoked: r.include_revoked,
        unused_since: r.unused_since.as_ref().map(raw_time),
        page_size: r.page_size,
        page_token: r.page_token.clone(),
        order_by: r.order_by.clone(),
        usage_since: r.usage_since.as_ref().map(raw_time),
    }
}

/// The query a ListKeys page token belongs to: its account and filters.
pub(crate) fn list_fingerprint(r: &proto::ListKeysRequest) -> u32 {
    let unused = r
        .unused_since
        .as_ref()
        .map(|t| format!("{}.{}", t.seconds, t.nanos))
        .unwrap_or_default();
    let revoked = if r.include_revoked { "1" } else { "0" };
    let usage_since = r
        .usage_since
        .as_ref()
        .map(|t| format!("{}.{}", t.seconds, t.nanos))
        .unwrap_or_default();
    query_fingerprint(&[
        "keys",
        &r.account_id,
        revoked,
        &unused,
        r.order_by.trim(),
        &usage_since,
    ])
}

/// An UpdateKey message as the request layer takes it.
pub(crate) fn update_key(r: proto::UpdateKeyRequest) -> UpdateKeyInput {
    UpdateKeyInput {
        paths: r.update_mask.map(|m| m.paths).unwrap_or_default(),
        name: r.name,
        scopes: r.scopes,
        grant_all: r.grant_all,
        restrictions: r.restrictions.map(restrictions_input),
        rate_limit: r.rate_limit.as_ref().map(rate_limit_input),
        meta: r.meta,
        expires_at: r.expires_at.as_ref().map(raw_time),
        credits: r.credits.as_ref().map(credits_input),
        add_credits: r.add_credits,
        bad_interval: BAD_INTERVAL,
    }
}

/// One ImportKeys record as the request layer takes it.
pub(crate) fn imported_key(r: &proto::ImportedKey) -> ImportedKeyInput {
    ImportedKeyInput {
        sha256: r.sha256.clone(),
        prefix: r.prefix.clone(),
        account_id: r.account_id.clone(),
        name: r.name.clone(),
        environment: parse_environment(r.environment),
        scopes: r.scopes.clone(),
        preset: Some(r.preset.clone()),
        grant_all: r.grant_all,
        expires_at: r.expires_at.as_ref().map(raw_time),
        created_at: r.created_at.as_ref().map(raw_time),
        last_used_at: r.last_used_at.as_ref().map(raw_time),
        rate_limit: r.rate_limit.as_ref().map(rate_limit_input),
    }
}

/// A GetUsage request's fields, as the request layer reads them (enum numbers as names; an
/// unknown number stays a number, which the request layer refuses).
pub(crate) fn usage(r: &proto::GetUsageRequest) -> crate::request::UsageInput {
    use proto::get_usage_request::Target;
    let (key_id, account_id, no_key) = match &r.target {
        Some(Target::KeyId(id)) => (id.clone(), String::new(), false),
        Some(Target::AccountId(id)) => (String::new(), id.clone(), false),
        Some(Target::NoKey(no_key)) => (String::new(), String::new(), *no_key),
        None => (String::new(), String::new(), false),
    };
    let granularity = match proto::UsageGranularity::try_from(r.granularity) {
        Ok(proto::UsageGranularity::Unspecified) => None,
        Ok(proto::UsageGranularity::Minute) => Some("minute".to_owned()),
        Ok(proto::UsageGranularity::Hour) => Some("hour".to_owned()),
        Ok(proto::UsageGranularity::Day) => Some("day".to_owned()),
        Err(_) => Some(r.granularity.to_string()),
    };
    crate::request::UsageInput {
        key_id,
        account_id,
        no_key,
        group_by_key: r.group_by_key,
        start_time: r.start_time.as_ref().map(raw_time),
        end_time: r.end_time.as_ref().map(raw_time),
        granularity,
        outcomes: r
            .outcomes
            .iter()
            .map(|n| match crate::verify::Code::from_number(*n) {
                Some(code) => code.as_str().to_owned(),
                None => n.to_string(),
            })
            .collect(),
        page_size: r.page_size,
    }
}

/// A CreatePortalSession message as the request layer takes it.
pub(crate) fn portal_session(
    r: proto::CreatePortalSessionRequest,
) -> crate::request::PortalSessionInput {
    let p = r.permissions.unwrap_or_default();
    let b = r.branding.unwrap_or_default();
    crate::request::PortalSessionInput {
        account_id: r.account_id,
        presets: p.presets,
        scopes: p.scopes,
        max_ttl: p.max_ttl.as_ref().map(super::convert::raw_duration),
        rotate: p.rotate,
        revoke: p.revoke,
        usage: p.usage,
        display_name: r.display_name,
        return_url: r.return_url,
        product_name: b.product_name,
        accent_color: b.accent_color,
        logo_url: b.logo_url,
    }
}
