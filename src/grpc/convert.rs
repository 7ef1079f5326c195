//! Conversions between proto messages and domain types, at the edge: requests are parsed into
//! well-formed domain values (every bad field collected and named), records are turned back
//! into messages. Nothing here decides policy.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::error::{Error, FieldViolation, Result, echo};
use crate::key::Environment;
use crate::model::{ApiKey, CreditTerms, Credits, RateLimit, Refill, RefillInterval, Restrictions};
use crate::proto;
use crate::restriction::{self, Method, Pattern};
use crate::scope::ScopeName;
use crate::time::Timestamp;
use crate::verify::RequiredScopes;

/// Most field violations reported for one request: enough to fix a request, small enough that
/// the details stay far below the 16 KiB metadata limit of gRPC clients.
const MAX_VIOLATIONS: usize = 10;

/// Longest description of one violation.
const MAX_DESCRIPTION: usize = 300;

/// Collects the bad fields of a request before answering: the first [`MAX_VIOLATIONS`], and
/// how many more there were.
#[derive(Debug, Default)]
pub(crate) struct Violations {
    reported: Vec<FieldViolation>,
    more: usize,
}

impl Violations {
    /// Records a bad field.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        if self.reported.len() >= MAX_VIOLATIONS {
            self.more += 1;
            return;
        }
        let mut description: String = description.into();
        if description.len() > MAX_DESCRIPTION {
            let cut = (0..=MAX_DESCRIPTION)
                .rev()
                .find(|&i| description.is_char_boundary(i))
                .unwrap_or(0);
            description.truncate(cut);
            description.push('…');
        }
        self.reported.push(FieldViolation {
            field: field.into(),
            description,
        });
    }

    /// Records the error of a check, if any.
    pub fn check(&mut self, field: impl Into<String>, result: Result<(), String>) {
        if let Err(description) = result {
            self.add(field, description);
        }
    }

    /// Parses `text` with `parse`, recording the error as a violation of `field`.
    pub fn parse<T>(
        &mut self,
        field: &str,
        text: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        parse(text).map_err(|e| self.add(field, e)).ok()
    }

    /// Like [`finish`](Self::finish), for a value that exists only if its parses succeeded
    /// (a failed parse is always a violation, so `None` is never returned as success).
    pub fn finish_parsed<T>(self, value: Option<T>) -> Result<T> {
        self.finish(value)?
            .ok_or_else(|| Error::internal("a failed parse left no violation"))
    }

    /// `Ok(value)` if nothing was wrong, else every violation.
    pub fn finish<T>(mut self, value: T) -> Result<T> {
        if self.reported.is_empty() {
            return Ok(value);
        }
        if self.more > 0 {
            self.reported.push(FieldViolation {
                field: "request".into(),
                description: format!("{} more problems not listed", self.more),
            });
        }
        Err(Error::InvalidArgument(self.reported))
    }
}

pub(crate) fn timestamp(t: Timestamp) -> prost_types::Timestamp {
    let (seconds, nanos) = t.to_parts();
    prost_types::Timestamp { seconds, nanos }
}

pub(crate) fn parse_timestamp(t: &prost_types::Timestamp) -> Result<Timestamp, String> {
    Timestamp::from_parts(t.seconds, t.nanos)
        .ok_or_else(|| "not a valid timestamp between the years 1 and 9999".to_owned())
}

pub(crate) fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A duration of at most `max` (named in the error as `max_text`).
pub(crate) fn parse_duration(
    d: &prost_types::Duration,
    max: Duration,
    max_text: &str,
) -> Result<Duration, String> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err("must not be negative".to_owned());
    }
    let d = Duration::try_from(*d).map_err(|_| "not a valid duration".to_owned())?;
    if d > max {
        return Err(format!("must be at most {max_text}"));
    }
    Ok(d)
}

pub(crate) use crate::duration::MAX_TTL;
/// The longest grace period of a rotation.
pub(crate) const MAX_GRACE: Duration = Duration::from_secs(365 * 86_400);
/// The longest rate-limit window.
pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(366 * 86_400);

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

/// A key name: 1–200 characters, no control characters.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        Err("is required".to_owned())
    } else if name.chars().count() > 200 || name.chars().any(char::is_control) {
        Err("must be at most 200 characters without control characters".to_owned())
    } else {
        Ok(())
    }
}

pub(crate) use crate::limits::MAX_SCOPES;

/// Scope names, each well-formed, duplicates dropped, at most [`MAX_SCOPES`]. A longer list is
/// refused before any of its entries is looked at.
pub(crate) fn parse_scopes(v: &mut Violations, field: &str, scopes: &[String]) -> Vec<ScopeName> {
    let names = scopes.iter().take(MAX_SCOPES + 1).map(String::as_str);
    parse_required_scopes(v, field, names.collect())
        .into_iter()
        // Every name is well-formed by now: none is dropped here.
        .filter_map(|s| ScopeName::parse(s).ok())
        .collect()
}

/// Like [`parse_scopes`], borrowing the names (the verify path: no copies): the well-formed
/// ones, each once; each other one is a violation.
pub(crate) fn parse_required_scopes<'a>(
    v: &mut Violations,
    field: &str,
    mut scopes: RequiredScopes<'a>,
) -> RequiredScopes<'a> {
    if scopes.len() > MAX_SCOPES {
        v.add(field, format!("at most {MAX_SCOPES} scopes"));
        return RequiredScopes::new();
    }
    let mut i = 0;
    scopes.retain(|s| {
        let checked = crate::scope::check_name(s).map_err(|e| v.add(format!("{field}[{i}]"), e));
        i += 1;
        checked.is_ok()
    });
    crate::scope::dedup(&mut scopes);
    scopes
}

/// Metadata: at most 32 entries, keys 1–64 and values up to 512 characters.
pub(crate) fn parse_meta(
    v: &mut Violations,
    meta: &HashMap<String, String>,
) -> BTreeMap<String, String> {
    if meta.len() > 32 {
        v.add("meta", "at most 32 entries");
        return BTreeMap::new();
    }
    for (k, value) in meta {
        if k.is_empty() || k.len() > 64 {
            v.add(format!("meta[{}]", echo(k)), "keys must be 1-64 characters");
        }
        if value.len() > 512 {
            v.add(
                format!("meta[{}]", echo(k)),
                "values must be at most 512 characters",
            );
        }
    }
    meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Restrictions, each entry parsed; bad entries are named like `restrictions.allowed_cidrs[1]`.
pub(crate) fn parse_restrictions(
    v: &mut Violations,
    r: Option<&proto::Restrictions>,
) -> Restrictions {
    let Some(r) = r else {
        return Restrictions::default();
    };
    fn each<T>(
        v: &mut Violations,
        field: &str,
        items: &[String],
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        if items.len() > 100 {
            v.add(format!("restrictions.{field}"), "at most 100 entries");
            return Vec::new();
        }
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                parse(item)
                    .map_err(|e| v.add(format!("restrictions.{field}[{i}]"), e))
                    .ok()
            })
            .collect()
    }
    Restrictions {
        allowed_cidrs: each(
            v,
            "allowed_cidrs",
            &r.allowed_cidrs,
            restriction::parse_cidr,
        ),
        allowed_referrers: each(v, "allowed_referrers", &r.allowed_referrers, Pattern::parse),
        allowed_paths: each(v, "allowed_paths", &r.allowed_paths, Pattern::parse),
        allowed_methods: each(v, "allowed_methods", &r.allowed_methods, Method::parse),
    }
}

pub(crate) fn parse_rate_limit(
    v: &mut Violations,
    field: &str,
    r: &proto::RateLimit,
) -> Option<RateLimit> {
    let window = match r
        .window
        .as_ref()
        .map(|w| parse_duration(w, MAX_WINDOW, "366 days"))
    {
        Some(Ok(w)) if w.as_secs() >= 1 => w.as_secs(),
        Some(Err(e)) => {
            v.add(format!("{field}.window"), e);
            return None;
        }
        _ => {
            v.add(format!("{field}.window"), "must be at least one second");
            return None;
        }
    };
    if r.limit == 0 {
        v.add(format!("{field}.limit"), "must be at least 1");
        return None;
    }
    Some(RateLimit {
        limit: r.limit,
        window_secs: window,
    })
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

/// The largest credit balance (the database's 64-bit signed integer).
pub(crate) const MAX_CREDITS: u64 = i64::MAX as u64;

/// Credits as a caller gives them (`remaining` and an optional `refill`).
pub(crate) fn parse_credits(
    v: &mut Violations,
    field: &str,
    c: &proto::Credits,
) -> Option<CreditTerms> {
    let refill = match &c.refill {
        None => None,
        Some(r) => {
            let interval = match proto::RefillInterval::try_from(r.interval) {
                Ok(proto::RefillInterval::Daily) => RefillInterval::Daily,
                Ok(proto::RefillInterval::Monthly) => RefillInterval::Monthly,
                _ => {
                    v.add(
                        format!("{field}.refill.interval"),
                        "must be REFILL_INTERVAL_DAILY or REFILL_INTERVAL_MONTHLY",
                    );
                    return None;
                }
            };
            if r.amount == 0 {
                v.add(format!("{field}.refill.amount"), "must be at least 1");
                return None;
            }
            let refill = Refill {
                amount: r.amount,
                interval,
                day_of_month: match u8::try_from(r.day_of_month) {
                    Ok(0) => None,
                    Ok(day) => Some(day),
                    Err(_) => Some(u8::MAX),
                },
            };
            if let Some(problem) = refill.problem() {
                v.add(format!("{field}.refill.day_of_month"), problem);
                return None;
            }
            Some(refill)
        }
    };
    // Balances are stored as 64-bit signed integers: a larger one is refused, not clamped.
    if c.remaining > MAX_CREDITS {
        v.add(
            format!("{field}.remaining"),
            format!("must be at most {MAX_CREDITS}"),
        );
        return None;
    }
    if refill.is_some_and(|r| r.amount > MAX_CREDITS) {
        v.add(
            format!("{field}.refill.amount"),
            format!("must be at most {MAX_CREDITS}"),
        );
        return None;
    }
    Some(CreditTerms {
        remaining: c.remaining,
        refill,
    })
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
            id: k.id.clone(),
            account_id: k.account_id.clone(),
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
            previous_key_id: k.previous_key_id.clone().unwrap_or_default(),
            created_by: k.created_by.clone().unwrap_or_default(),
            credits: k.credits.as_ref().map(credits),
        }
    }
}

/// A fingerprint of the query a page token belongs to: the request's filters, so a token is
/// refused when reused with another account or filter (AIP-158; see `page_token`).
pub(crate) fn query_fingerprint(parts: &[&str]) -> u32 {
    crc32fast::hash(parts.join("\u{1f}").as_bytes())
}

/// The paths of a required `update_mask`: `*` alone stands for every path in `all` (AIP-134);
/// an empty, missing or oversized mask is a violation.
pub(crate) fn mask_paths(
    v: &mut Violations,
    mask: Option<&prost_types::FieldMask>,
    all: &[&str],
) -> Vec<String> {
    let paths = mask.map(|m| m.paths.as_slice()).unwrap_or(&[]);
    if paths.is_empty() {
        v.add("update_mask", "name the fields to change, or \"*\" for all");
        return Vec::new();
    }
    if paths.len() > 16 {
        v.add("update_mask", "at most 16 paths");
        return Vec::new();
    }
    if paths.iter().any(|p| p == "*") {
        if paths.len() > 1 {
            v.add("update_mask", "\"*\" stands alone");
            return Vec::new();
        }
        return all.iter().map(|p| (*p).to_owned()).collect();
    }
    paths.to_vec()
}

/// A page size: 0 means 50; above the maximum of 1000 it is clamped, not refused (AIP-158).
pub(crate) fn parse_page_size(size: u32) -> u32 {
    match size {
        0 => 50,
        _ => size.min(1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_lists_are_refused_before_any_entry_is_read() {
        let mut v = Violations::default();
        let many: Vec<String> = (0..60_000).map(|i| format!("s{i}:read")).collect();
        assert!(parse_scopes(&mut v, "scopes", &many).is_empty());
        let err = v.finish(()).unwrap_err();
        let Error::InvalidArgument(violations) = err else {
            panic!("{err:?}")
        };
        assert_eq!(
            violations.len(),
            1,
            "one violation for the list, none per entry"
        );
    }

    #[test]
    fn duplicates_are_dropped_in_linear_time() {
        let mut v = Violations::default();
        let scopes: Vec<String> = (0..200).map(|i| format!("s{}:read", i % 7)).collect();
        assert_eq!(parse_scopes(&mut v, "scopes", &scopes).len(), 7);
    }

    #[test]
    fn violations_are_capped() {
        let mut v = Violations::default();
        for i in 0..40 {
            v.add(format!("scopes[{i}]"), "x".repeat(10_000));
        }
        let Err(Error::InvalidArgument(violations)) = v.finish(()) else {
            panic!()
        };
        assert_eq!(violations.len(), MAX_VIOLATIONS + 1);
        assert!(
            violations
                .iter()
                .all(|v| v.description.len() <= MAX_DESCRIPTION + 3)
        );
        assert!(violations.last().unwrap().description.contains("30 more"));
    }
}
