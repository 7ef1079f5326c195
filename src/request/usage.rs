//! A usage question (`GetUsage`, `GET /v1/usage`), as either transport read it, checked into
//! a [`UsageQuery`]: one target, an aligned and bounded range, known outcomes.

use super::fields::{RawTime, timestamp};
use super::{Violations, query_fingerprint};
use crate::error::Result;
use crate::ids::{AccountId, KeyId};
use crate::time::Timestamp;
use crate::usage::{Granularity, MAX_BUCKETS, MAX_PAGE_BUCKETS, Target, UsageQuery};
use crate::verify::Code;

/// Keys a page of series grouped by key holds unless asked otherwise.
pub(crate) const DEFAULT_USAGE_PAGE: u32 = 100;
/// Most keys a page of series grouped by key holds.
pub(crate) const MAX_USAGE_PAGE: u32 = 1_000;
/// Most outcomes a filter names (there are fewer codes; repeats are refused before work).
const MAX_OUTCOMES: usize = Code::ALL.len();

/// A usage question as its transport read it.
#[derive(Debug, Clone, Default)]
pub(crate) struct UsageInput {
    /// One key's decisions; empty when absent.
    pub key_id: String,
    /// An account's keys' decisions; empty when absent.
    pub account_id: String,
    /// Decisions about no stored key.
    pub no_key: bool,
    /// One series per key of the account.
    pub group_by_key: bool,
    /// Start of the range; required.
    pub start_time: Option<RawTime>,
    /// End of the range; absent means now.
    pub end_time: Option<RawTime>,
    /// `minute`, `hour` or `day`; absent chooses from the range.
    pub granularity: Option<String>,
    /// Outcome names (`VALID`, `RATE_LIMITED`, …); empty means all.
    pub outcomes: Vec<String>,
    /// Keys per page (grouped); 0 for the default.
    pub page_size: u32,
}

impl UsageInput {
    /// What a page token of this question is bound to: the same question, another page
    /// (for times given as moments, as gRPC gives them).
    pub fn fingerprint(&self) -> u32 {
        let start = self
            .start_time
            .map(|t| t.seconds.to_string())
            .unwrap_or_default();
        let end = self
            .end_time
            .map(|t| t.seconds.to_string())
            .unwrap_or_default();
        let outcomes = self.outcomes.join(",");
        query_fingerprint(&[
            "usage",
            &self.key_id,
            &self.account_id,
            if self.no_key { "no_key" } else { "" },
            &start,
            &end,
            self.granularity.as_deref().unwrap_or(""),
            &outcomes,
        ])
    }
}

/// A usage question at `now`; `page` is the previous page's token as the adapter opened it
/// (bound to the caller and the question).
pub(crate) fn usage(
    mut v: Violations,
    r: &UsageInput,
    page: Result<Option<i64>, String>,
    now: Timestamp,
) -> Result<UsageQuery> {
    let target = match (r.key_id.is_empty(), r.account_id.is_empty(), r.no_key) {
        (false, false, _) | (false, _, true) | (_, false, true) => {
            v.add("key_id", "give one of key_id, account_id or no_key");
            None
        }
        (true, true, true) => {
            if r.group_by_key {
                v.add("group_by_key", "only with account_id");
            }
            Some(Target::NoKey)
        }
        (true, true, false) => {
            v.add("account_id", "give key_id, account_id or no_key");
            None
        }
        (false, true, false) => {
            if r.group_by_key {
                v.add("group_by_key", "only with account_id");
            }
            v.parse("key_id", &r.key_id, KeyId::parse).map(Target::Key)
        }
        (true, false, false) => v
            .parse("account_id", &r.account_id, AccountId::parse)
            .map(Target::Account),
    };
    let now_secs = now.micros().div_euclid(1_000_000);
    let seconds = |field: &str, t: RawTime, v: &mut Violations| {
        timestamp(t)
            .map(|t| t.micros().div_euclid(1_000_000))
            .map_err(|e| v.add(field, e))
            .ok()
    };
    let start = match r.start_time {
        Some(t) => seconds("start_time", t, &mut v),
        None => {
            v.add("start_time", "required");
            None
        }
    };
    let end = match r.end_time {
        Some(t) => seconds("end_time", t, &mut v),
        // Through the current second: the current bucket is always in.
        None => Some(now_secs.saturating_add(1)),
    };
    let granularity = match r.granularity.as_deref() {
        None => None,
        Some(name) => {
            let g = Granularity::parse(name);
            if g.is_none() {
                v.add("granularity", "must be minute, hour or day");
            }
            g
        }
    };
    let mut outcomes = Vec::new();
    if r.outcomes.len() > MAX_OUTCOMES {
        v.add("outcomes", format!("at most {MAX_OUTCOMES} outcomes"));
    } else {
        for name in &r.outcomes {
            match Code::from_name(name) {
                Some(code) if !outcomes.contains(&code) => outcomes.push(code),
                Some(_) => v.add("outcomes", format!("{name} given twice")),
                None => v.add(
                    "outcomes",
                    format!(
                        "{} is not an outcome code (VALID, RATE_LIMITED, …)",
                        crate::error::echo(name)
                    ),
                ),
            }
        }
    }
    let mut range = None;
    if let (Some(start), Some(end)) = (start, end) {
        if start >= end {
            v.add("end_time", "must be after start_time");
        } else {
            let granularity = granularity.unwrap_or(Granularity::for_range(end - start));
            let (start, end) = (granularity.floor(start), granularity.ceil(end));
            let buckets = (end - start) / granularity.seconds();
            if buckets > MAX_BUCKETS {
                v.add(
                    "start_time",
                    format!(
                        "the range holds {buckets} {} buckets, more than {MAX_BUCKETS}: \
                         shorten it or choose a wider granularity",
                        granularity.as_str()
                    ),
                );
            } else {
                range = Some((granularity, start, end, buckets));
            }
        }
    }
    let offset = page.unwrap_or_else(|e| {
        v.add("page_token", e);
        None
    });
    let query = match (target, range) {
        (Some(target), Some((granularity, start, end, buckets))) => {
            let target = match target {
                Target::Account(account_id) if r.group_by_key => {
                    let asked = match r.page_size {
                        0 => DEFAULT_USAGE_PAGE,
                        n => n.min(MAX_USAGE_PAGE),
                    };
                    let fits = (MAX_PAGE_BUCKETS / buckets.max(1)).max(1);
                    Target::AccountByKey {
                        account_id,
                        offset: offset.unwrap_or(0).max(0),
                        limit: i64::from(asked).min(fits),
                    }
                }
                other => other,
            };
            Some(UsageQuery {
                target,
                granularity,
                start,
                end,
                outcomes,
            })
        }
        _ => None,
    };
    v.finish_parsed(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(r: &UsageInput, now_secs: i64) -> Result<UsageQuery> {
        let now = Timestamp::from_micros(now_secs * 1_000_000);
        usage(Violations::default(), r, Ok(None), now)
    }

    #[test]
    fn without_an_end_the_current_bucket_is_in_even_on_its_first_second() {
        let r = UsageInput {
            key_id: "key_0000000000000000000000".into(),
            start_time: Some(RawTime {
                seconds: 3_000,
                nanos: 0,
            }),
            ..Default::default()
        };
        // Now is the first second of the minute starting at 3,600.
        let q = ask(&r, 3_600).unwrap();
        assert_eq!(q.granularity, Granularity::Minute);
        assert_eq!((q.start, q.end), (3_000, 3_660));
        let q = ask(&r, 3_601).unwrap();
        assert_eq!(q.end, 3_660);
    }

    #[test]
    fn grouped_pages_shrink_to_the_bucket_budget() {
        let r = UsageInput {
            account_id: "acme".into(),
            group_by_key: true,
            page_size: 1_000,
            start_time: Some(RawTime {
                seconds: 0,
                nanos: 0,
            }),
            granularity: Some("hour".into()),
            ..Default::default()
        };
        // 10,000 hours (through the current one): 20 keys fit 200,000 buckets.
        let q = ask(&r, 9_999 * 3_600).unwrap();
        assert_eq!(
            q.target,
            Target::AccountByKey {
                account_id: AccountId::parse("acme").unwrap(),
                offset: 0,
                limit: 20
            }
        );
    }
}
