//! Conversions between proto messages and the request layer's inputs and domain types: a
//! request message is read into the plain inputs of [`crate::request`] (which checks them),
//! records are turned back into messages. Nothing here checks a field or decides policy.

use std::time::Duration;

use crate::key::Environment;
use crate::model::{ApiKey, Credits, RateLimit, RefillInterval, Restrictions};
use crate::proto;
use crate::request::{
    CreditsInput, RateLimitInput, RawDuration, RawTime, RefillInput, RestrictionsInput,
};
use crate::time::Timestamp;

pub(crate) fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    let (seconds, nanos) = t.to_parts();
    prost_types::Timestamp { seconds, nanos }
}

pub(crate) fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

pub(crate) fn environment(env: Environment) -> proto::Environment {
    match env {
        Environment::Live => proto::Environment::Live,
        Environment::Test => proto::Environment::Test,
    }
}

/// A proto environment; `Ok(None)` for unspecified.
pub(crate) fn parse_environment(value: i32) -> Result<Option<Environment>, String> {
    match proto::Environment::try_from(value) {
        Ok(proto::Environment::Unspecified) => Ok(None),
        Ok(proto::Environment::Live) => Ok(Some(Environment::Live)),
        Ok(proto::Environment::Test) => Ok(Some(Environment::Test)),
        Err(_) => Err(format!("unknown environment {value}")),
    }
}

pub(crate) fn restrictions(r: &Restrictions) -> proto::Restrictions {
    proto::Restrictions {
        allowed_cidrs: r.allowed_cidrs.iter().map(ToString::to_string).collect(),
        allowed_referrers: r
            .allowed_referrers
            .iter()
            .map(ToString::to_string)
            .collect(),
        allowed_paths: r.allowed_paths.iter().map(ToString::to_string).collect(),
        allowed_methods: r
            .allowed_methods
            .iter()
            .map(|m| m.as_str().to_owned())
            .collect(),
    }
}

/// A key's credits as the API shows them.
pub(crate) fn credits(c: &Credits) -> proto::Credits {
    proto::Credits {
        remaining: c.remaining,
        refill: c.refill.map(|r| proto::Refill {
            amount: r.amount,
            interval: match r.interval {
                RefillInterval::Daily => proto::RefillInterval::Daily,
                RefillInterval::Monthly => proto::RefillInterval::Monthly,
            }
            .into(),
            day_of_month: r.day_of_month.map_or(0, u32::from),
        }),
        refilled_at: Some(timestamp(c.refilled_at)),
    }
}

pub(crate) fn rate_limit(r: &RateLimit) -> proto::RateLimit {
    proto::RateLimit {
        limit: r.limit,
        window: Some(duration(r.window())),
    }
}

impl From<&ApiKey> for proto::ApiKey {
    fn from(k: &ApiKey) -> Self {
        proto::ApiKey {
            id: k.id.to_string(),
            account_id: k.account_id.to_string(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            environment: environment(k.environment).into(),
            scopes: k.scopes.clone(),
            grant_all: k.grant_all,
            restrictions: Some(restrictions(&k.restrictions)),
            rate_limit: k.rate_limit.as_ref().map(rate_limit),
            meta: k.meta.iter().map(|(a, b)| (a.clone(), b.clone())).collect(),
            created_at: Some(timestamp(k.created_at)),
            updated_at: Some(timestamp(k.updated_at)),
            expires_at: k.expires_at.map(timestamp),
            last_used_at: k.last_used_at.map(timestamp),
            revoked: k.is_revoked(),
            revoked_at: k.revoked_at.map(timestamp),
            previous_key_id: k.previous_key_id.as_deref().unwrap_or_default().to_owned(),
            created_by: k.created_by.as_deref().unwrap_or_default().to_owned(),
            credits: k.credits.as_ref().map(credits),
        }
    }
}

/// A proto duration as the request layer takes it.
pub(crate) fn raw_duration(d: &prost_types::Duration) -> RawDuration {
    RawDuration {
        seconds: d.seconds,
        nanos: d.nanos,
    }
}

/// A proto timestamp as the request layer takes it.
pub(crate) fn raw_time(t: &prost_types::Timestamp) -> RawTime {
    RawTime {
        seconds: t.seconds,
        nanos: t.nanos,
    }
}

/// Proto restrictions as the request layer takes them.
pub(crate) fn restrictions_input(r: proto::Restrictions) -> RestrictionsInput {
    RestrictionsInput {
        allowed_cidrs: r.allowed_cidrs,
        allowed_referrers: r.allowed_referrers,
        allowed_paths: r.allowed_paths,
        allowed_methods: r.allowed_methods,
    }
}

/// A proto rate limit as the request layer takes it.
pub(crate) fn rate_limit_input(r: &proto::RateLimit) -> RateLimitInput {
    RateLimitInput {
        limit: r.limit,
        window: r.window.as_ref().map(raw_duration),
    }
}

/// The refill interval's violation, in the proto's spelling.
pub(crate) const BAD_INTERVAL: &str = "must be REFILL_INTERVAL_DAILY or REFILL_INTERVAL_MONTHLY";

/// Proto credits as the request layer takes them (an unspecified or unknown interval: none).
pub(crate) fn credits_input(c: &proto::Credits) -> CreditsInput {
    CreditsInput {
        remaining: c.remaining,
        refill: c.refill.as_ref().map(|r| RefillInput {
            amount: r.amount,
            interval: match proto::RefillInterval::try_from(r.interval) {
                Ok(proto::RefillInterval::Daily) => Some(RefillInterval::Daily),
                Ok(proto::RefillInterval::Monthly) => Some(RefillInterval::Monthly),
                _ => None,
            },
            day_of_month: r.day_of_month,
        }),
    }
}

/// The offset of the next page of a grouped usage answer, when more keys follow.
pub(crate) fn next_usage_offset(usage: &crate::usage::Usage) -> Option<i64> {
    match &usage.query.target {
        crate::usage::Target::AccountByKey { offset, limit, .. } if usage.more => {
            Some(offset.saturating_add(*limit))
        }
        _ => None,
    }
}

fn outcome_counts(counts: &crate::usage::Counts) -> Vec<proto::OutcomeCount> {
    counts
        .iter()
        .map(|(code, count)| proto::OutcomeCount {
            code: code.number(),
            count: *count,
        })
        .collect()
}

fn seconds(secs: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

/// A usage answer as GetUsage returns it.
pub(crate) fn usage(
    usage: &crate::usage::Usage,
    next_page_token: String,
) -> proto::GetUsageResponse {
    use crate::usage::Granularity;
    let q = &usage.query;
    proto::GetUsageResponse {
        granularity: match q.granularity {
            Granularity::Minute => proto::UsageGranularity::Minute,
            Granularity::Hour => proto::UsageGranularity::Hour,
            Granularity::Day => proto::UsageGranularity::Day,
        }
        .into(),
        start_time: seconds(q.start),
        end_time: seconds(q.end),
        series: usage
            .series
            .iter()
            .map(|s| proto::UsageSeries {
                key_id: s.key_id.as_deref().unwrap_or("").to_owned(),
                total: s.total,
                counts: outcome_counts(&s.counts),
                buckets: s
                    .buckets
                    .iter()
                    .map(|b| proto::UsageBucket {
                        start_time: seconds(b.start),
                        total: b.total,
                        counts: outcome_counts(&b.counts),
                    })
                    .collect(),
            })
            .collect(),
        next_page_token,
    }
}

/// A portal session as ManageService answers it (never its secrets).
pub(crate) fn portal_session(
    s: &crate::portal::PortalSession,
    idle: Duration,
) -> proto::PortalSession {
    let p = &s.permissions;
    proto::PortalSession {
        id: s.id.clone(),
        account_id: s.account_id.as_str().to_owned(),
        display_name: s.display_name.clone(),
        return_url: s.return_url.clone(),
        permissions: Some(proto::PortalPermissions {
            presets: p.presets.clone(),
            scopes: p.scopes.clone(),
            max_ttl: p.max_ttl_secs.map(|s| duration(Duration::from_secs(s))),
            rotate: p.rotate,
            revoke: p.revoke,
            usage: p.usage,
        }),
        branding: Some(proto::PortalBranding {
            product_name: s.branding.product_name.clone(),
            accent_color: s.branding.accent_color.clone(),
            logo_url: s.branding.logo_url.clone(),
        }),
        status: s.status(Timestamp::now(), idle).to_owned(),
        created_by: s.created_by.clone(),
        created_at: Some(timestamp(s.created_at)),
        link_expires_at: Some(timestamp(s.link_expires_at)),
        opened_at: s.opened_at.map(timestamp),
        last_seen_at: s.last_seen_at.map(timestamp),
        expires_at: Some(timestamp(s.expires_at)),
        revoked_at: s.revoked_at.map(timestamp),
    }
}
