//! One checker per kind of field, shared by every request: each takes the plain value an
//! adapter read and either returns the domain value or records a violation naming the field.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::Violations;
use crate::error::echo;
use crate::limits::{
    DEFAULT_PAGE_SIZE, MAX_MASK_PATHS, MAX_META_ENTRIES, MAX_META_KEY_LEN, MAX_META_VALUE_LEN,
    MAX_NAME_CHARS, MAX_PAGE_SIZE, MAX_RESTRICTION_ENTRIES, MAX_SCOPES,
};
use crate::model::{CreditTerms, RateLimit, Refill, RefillInterval, Restrictions};
use crate::restriction::{self, Method, Pattern};
use crate::scope::ScopeName;
use crate::time::Timestamp;
use crate::verify::RequiredScopes;

pub(crate) use crate::duration::MAX_TTL;
/// The longest grace period of a rotation.
pub(crate) const MAX_GRACE: Duration = Duration::from_secs(365 * 86_400);
/// The longest rate-limit window.
pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(366 * 86_400);
/// The largest credit balance (the database's 64-bit signed integer).
pub(crate) const MAX_CREDITS: u64 = i64::MAX as u64;

/// A span of time as a caller gave it, seconds and nanoseconds (gRPC's `Duration`, or a JSON
/// `30d` counted out): not yet checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RawDuration {
    /// Whole seconds.
    pub seconds: i64,
    /// Nanoseconds past them.
    pub nanos: i32,
}

impl RawDuration {
    /// A whole number of seconds.
    pub fn from_secs(seconds: u64) -> Self {
        RawDuration {
            seconds: i64::try_from(seconds).unwrap_or(i64::MAX),
            nanos: 0,
        }
    }
}

/// A moment as a caller gave it, seconds and nanoseconds since the epoch: not yet checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RawTime {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Nanoseconds past them.
    pub nanos: i32,
}

impl From<Timestamp> for RawTime {
    fn from(t: Timestamp) -> Self {
        let (seconds, nanos) = t.to_parts();
        RawTime { seconds, nanos }
    }
}

/// A moment between the years 1 and 9999.
pub(crate) fn timestamp(t: RawTime) -> Result<Timestamp, String> {
    Timestamp::from_parts(t.seconds, t.nanos)
        .ok_or_else(|| "not a valid timestamp between the years 1 and 9999".to_owned())
}

/// A duration of at most `max` (named in the error as `max_text`).
pub(crate) fn duration(d: RawDuration, max: Duration, max_text: &str) -> Result<Duration, String> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err("must not be negative".to_owned());
    }
    // Nanoseconds past a whole second carry over, as protobuf's own conversion does.
    let nanos = d.nanos.unsigned_abs();
    let seconds = d
        .seconds
        .unsigned_abs()
        .checked_add(u64::from(nanos / 1_000_000_000))
        .ok_or_else(|| "not a valid duration".to_owned())?;
    let d = Duration::new(seconds, nanos % 1_000_000_000);
    if d > max {
        return Err(format!("must be at most {max_text}"));
    }
    Ok(d)
}

/// A key name: 1–[`MAX_NAME_CHARS`] characters, no control characters.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        Err("is required".to_owned())
    } else if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        Err(format!(
            "must be at most {MAX_NAME_CHARS} characters without control characters"
        ))
    } else {
        Ok(())
    }
}

/// Scope names, each well-formed, duplicates dropped, at most [`MAX_SCOPES`]. A longer list is
/// refused before any of its entries is looked at.
pub(crate) fn scopes(v: &mut Violations, field: &str, scopes: &[String]) -> Vec<ScopeName> {
    let names = scopes.iter().take(MAX_SCOPES + 1).map(String::as_str);
    required_scopes(v, field, names.collect())
        .into_iter()
        // Every name is well-formed by now: none is dropped here.
        .filter_map(|s| ScopeName::parse(s).ok())
        .collect()
}

/// Like [`scopes`], borrowing the names (the verify path: no copies): the well-formed ones,
/// each once; each other one is a violation.
pub(crate) fn required_scopes<'a>(
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

/// Metadata: at most [`MAX_META_ENTRIES`] entries, keys 1–[`MAX_META_KEY_LEN`] and values up
/// to [`MAX_META_VALUE_LEN`] bytes.
pub(crate) fn meta(v: &mut Violations, meta: &HashMap<String, String>) -> BTreeMap<String, String> {
    if meta.len() > MAX_META_ENTRIES {
        v.add("meta", format!("at most {MAX_META_ENTRIES} entries"));
        return BTreeMap::new();
    }
    for (k, value) in meta {
        if k.is_empty() || k.len() > MAX_META_KEY_LEN {
            v.add(
                format!("meta[{}]", echo(k)),
                format!("keys must be 1-{MAX_META_KEY_LEN} characters"),
            );
        }
        if value.len() > MAX_META_VALUE_LEN {
            v.add(
                format!("meta[{}]", echo(k)),
                format!("values must be at most {MAX_META_VALUE_LEN} characters"),
            );
        }
    }
    meta.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A key's restrictions as a caller gives them: lists of text, unparsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct RestrictionsInput {
    /// CIDRs.
    pub allowed_cidrs: Vec<String>,
    /// Referrer patterns.
    pub allowed_referrers: Vec<String>,
    /// Path patterns.
    pub allowed_paths: Vec<String>,
    /// HTTP methods.
    pub allowed_methods: Vec<String>,
}

/// Restrictions, each entry parsed; bad entries are named like `restrictions.allowed_cidrs[1]`.
pub(crate) fn restrictions(v: &mut Violations, r: Option<&RestrictionsInput>) -> Restrictions {
    let Some(r) = r else {
        return Restrictions::default();
    };
    fn each<T>(
        v: &mut Violations,
        field: &str,
        items: &[String],
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        if items.len() > MAX_RESTRICTION_ENTRIES {
            v.add(
                format!("restrictions.{field}"),
                format!("at most {MAX_RESTRICTION_ENTRIES} entries"),
            );
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

/// A rate limit as a caller gives it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RateLimitInput {
    /// Units per window.
    pub limit: u32,
    /// The window; absent is a violation.
    pub window: Option<RawDuration>,
}

/// A rate limit: at least 1 unit in a window of 1 second to [`MAX_WINDOW`].
pub(crate) fn rate_limit(v: &mut Violations, field: &str, r: &RateLimitInput) -> Option<RateLimit> {
    let window = match r.window.map(|w| duration(w, MAX_WINDOW, "366 days")) {
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

/// Credits as a caller gives them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CreditsInput {
    /// The balance.
    pub remaining: u64,
    /// The refill, if any.
    pub refill: Option<RefillInput>,
}

/// A refill as a caller gives it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RefillInput {
    /// The balance after a refill.
    pub amount: u64,
    /// Daily or monthly; `None` when the caller named neither (a violation, which the
    /// adapter words in its own spelling as `invalid_interval`).
    pub interval: Option<RefillInterval>,
    /// For monthly refills, the day of the month; 0 for none.
    pub day_of_month: u32,
}

/// Credits: a balance and an optional refill, each at most [`MAX_CREDITS`]. `bad_interval` is
/// the violation's text when the refill names no interval, in the caller's spelling.
pub(crate) fn credits(
    v: &mut Violations,
    field: &str,
    c: &CreditsInput,
    bad_interval: &str,
) -> Option<CreditTerms> {
    let refill = match &c.refill {
        None => None,
        Some(r) => {
            let Some(interval) = r.interval else {
                v.add(format!("{field}.refill.interval"), bad_interval);
                return None;
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

/// A fingerprint of the query a page token belongs to: the request's filters, so a token is
/// refused when reused with another account or filter (AIP-158; see `page_token`).
pub(crate) fn query_fingerprint(parts: &[&str]) -> u32 {
    crc32fast::hash(parts.join("\u{1f}").as_bytes())
}

/// The paths of a required update mask: `*` alone stands for every path in `all` (AIP-134);
/// an empty or oversized mask is a violation.
pub(crate) fn mask_paths(v: &mut Violations, paths: &[String], all: &[&str]) -> Vec<String> {
    if paths.is_empty() {
        v.add("update_mask", "name the fields to change, or \"*\" for all");
        return Vec::new();
    }
    if paths.len() > MAX_MASK_PATHS {
        v.add("update_mask", format!("at most {MAX_MASK_PATHS} paths"));
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

/// A page size: 0 means [`DEFAULT_PAGE_SIZE`]; above [`MAX_PAGE_SIZE`] it is clamped, not
/// refused (AIP-158).
pub(crate) fn page_size(size: u32) -> u32 {
    match size {
        0 => DEFAULT_PAGE_SIZE,
        _ => size.min(MAX_PAGE_SIZE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn oversized_lists_are_refused_before_any_entry_is_read() {
        let mut v = Violations::default();
        let many: Vec<String> = (0..60_000).map(|i| format!("s{i}:read")).collect();
        assert!(scopes(&mut v, "scopes", &many).is_empty());
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
        let scopes_given: Vec<String> = (0..200).map(|i| format!("s{}:read", i % 7)).collect();
        assert_eq!(scopes(&mut v, "scopes", &scopes_given).len(), 7);
    }

    #[test]
    fn durations_are_checked_like_grpcs() {
        let max = Duration::from_secs(10);
        let d = |seconds, nanos| duration(RawDuration { seconds, nanos }, max, "10 s");
        assert_eq!(d(3, 500), Ok(Duration::new(3, 500)));
        assert_eq!(d(-1, 0), Err("must not be negative".to_owned()));
        assert_eq!(d(1, 1_000_000_000), Ok(Duration::from_secs(2)));
        assert_eq!(
            d(i64::MAX, 999_999_999),
            Err("must be at most 10 s".to_owned())
        );
        assert_eq!(d(11, 0), Err("must be at most 10 s".to_owned()));
    }
}
