//! Usage over time: how many decisions a key (or an account's keys) got, per time bucket and
//! outcome code. The service counts decisions in memory and writes them in batches
//! (`service/usage.rs`); the store keeps one row per key, bucket width, bucket and outcome,
//! in minute, hour and day buckets, each kept for its own retention (`docs/usage.md`).
//!
//! This module holds the pure parts: bucket arithmetic, the question asked, and assembling the
//! rows the store answers into series.

use std::collections::BTreeMap;

use crate::ids::{AccountId, KeyId};
use crate::verify::Code;

/// Most buckets in one series.
pub const MAX_BUCKETS: i64 = 10_000;
/// Most buckets in one page of series grouped by key.
pub const MAX_PAGE_BUCKETS: i64 = 200_000;

/// The width of a usage bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    /// One minute.
    Minute,
    /// One hour.
    Hour,
    /// One day (UTC).
    Day,
}

impl Granularity {
    /// Every width, finest first.
    pub const ALL: [Granularity; 3] = [Granularity::Minute, Granularity::Hour, Granularity::Day];

    /// The width in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Granularity::Minute => 60,
            Granularity::Hour => 3_600,
            Granularity::Day => 86_400,
        }
    }

    /// What the store keeps in its `span` column.
    pub fn number(self) -> i32 {
        match self {
            Granularity::Minute => 1,
            Granularity::Hour => 2,
            Granularity::Day => 3,
        }
    }

    /// The name users write (`minute`, `hour`, `day`).
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Minute => "minute",
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    /// The width named `name`, if any.
    pub fn parse(name: &str) -> Option<Granularity> {
        Granularity::ALL.into_iter().find(|g| g.as_str() == name)
    }

    /// The start of the bucket holding second `secs`.
    pub fn floor(self, secs: i64) -> i64 {
        secs.div_euclid(self.seconds()) * self.seconds()
    }

    /// The start of the first bucket at or after second `secs`.
    pub fn ceil(self, secs: i64) -> i64 {
        let floor = self.floor(secs);
        if floor == secs {
            secs
        } else {
            floor.saturating_add(self.seconds())
        }
    }

    /// The width a range of `seconds` is shown in when none is asked for: minutes up to six
    /// hours, hours up to fourteen days, days beyond.
    pub fn for_range(seconds: i64) -> Granularity {
        if seconds <= 6 * 3_600 {
            Granularity::Minute
        } else if seconds <= 14 * 86_400 {
            Granularity::Hour
        } else {
            Granularity::Day
        }
    }
}

/// Decisions counted for one key (or, without a key, for the service: unknown, malformed and
/// missing keys), in one minute, with one outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// The key and its account; `None` for decisions without a stored key.
    pub key: Option<(KeyId, AccountId)>,
    /// Start of the minute, seconds since the epoch.
    pub minute: i64,
    /// The outcome.
    pub code: Code,
    /// How many decisions.
    pub count: u64,
}

/// One row as stored: key id (`""` for decisions without a stored key), account id (`""`
/// likewise), bucket start, outcome number and the count to add.
pub type StoredRow<'a> = (&'a str, &'a str, i64, i32, i64);

/// `counted` rolled up into buckets of `granularity`, one row per key, bucket and outcome.
pub fn roll_up(counted: &[Counted], granularity: Granularity) -> Vec<StoredRow<'_>> {
    let mut rows: BTreeMap<(&str, i64, i32), (&str, i64)> = BTreeMap::new();
    for c in counted {
        let (key, account) = match &c.key {
            Some((key, account)) => (key.as_str(), account.as_str()),
            None => ("", ""),
        };
        let count = i64::try_from(c.count).unwrap_or(i64::MAX);
        let row = rows
            .entry((key, granularity.floor(c.minute), c.code.number()))
            .or_insert((account, 0));
        row.1 = row.1.saturating_add(count);
    }
    rows.into_iter()
        .map(|((key, bucket, outcome), (account, count))| (key, account, bucket, outcome, count))
        .collect()
}

/// Whose decisions a usage question counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One key.
    Key(KeyId),
    /// An account's keys together.
    Account(AccountId),
    /// Decisions about no stored key (missing, malformed, unknown), the whole service's.
    NoKey,
    /// An account's keys, one series per key, a page of keys at a time.
    AccountByKey {
        /// The account.
        account_id: AccountId,
        /// Keys skipped (earlier pages).
        offset: i64,
        /// Most keys on this page.
        limit: i64,
    },
}

/// A usage question, checked: buckets aligned, range bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// Whose decisions.
    pub target: Target,
    /// Bucket width.
    pub granularity: Granularity,
    /// Start of the first bucket, seconds since the epoch.
    pub start: i64,
    /// End of the last bucket (exclusive).
    pub end: i64,
    /// Only these outcomes; empty means all.
    pub outcomes: Vec<Code>,
}

impl UsageQuery {
    /// The outcome filter as the store applies it: bit `number` set per outcome kept.
    pub fn outcome_mask(&self) -> i64 {
        if self.outcomes.is_empty() {
            return i64::MAX;
        }
        self.outcomes.iter().fold(0, |m, c| m | (1 << c.number()))
    }

    /// Buckets in the range.
    pub fn buckets(&self) -> i64 {
        (self.end - self.start) / self.granularity.seconds()
    }
}

/// A stored count, as the store answers a question: the key (grouped questions only), the
/// bucket's start, the outcome's number and the count.
pub type UsageRow = (Option<KeyId>, i64, i32, i64);

/// Decisions by outcome, in code order (only outcomes that occurred).
pub type Counts = Vec<(Code, u64)>;

/// One bucket of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Start, seconds since the epoch.
    pub start: i64,
    /// Decisions in it.
    pub total: u64,
    /// By outcome.
    pub counts: Counts,
}

/// One key's decisions over time (or an account's keys together: `key_id` `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// The key.
    pub key_id: Option<KeyId>,
    /// Decisions over the range.
    pub total: u64,
    /// Over the range, by outcome.
    pub counts: Counts,
    /// Buckets with decisions, oldest first.
    pub buckets: Vec<Bucket>,
}

/// The answer to a usage question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The question, as answered.
    pub query: UsageQuery,
    /// The series.
    pub series: Vec<Series>,
    /// Whether more keys follow (grouped questions).
    pub more: bool,
}

/// Assembles the store's rows into series: one per key for grouped rows (in key order), one
/// for the rest. Rows of unknown outcome numbers (written by a newer version) are skipped.
pub fn assemble(rows: Vec<UsageRow>) -> Vec<Series> {
    let mut by_key: BTreeMap<Option<KeyId>, BTreeMap<i64, BTreeMap<i32, u64>>> = BTreeMap::new();
    for (key, bucket, outcome, count) in rows {
        if Code::from_number(outcome).is_none() || count <= 0 {
            continue;
        }
        *by_key
            .entry(key)
            .or_default()
            .entry(bucket)
            .or_default()
            .entry(outcome)
            .or_default() += count.unsigned_abs();
    }
    by_key
        .into_iter()
        .map(|(key_id, buckets)| {
            let mut totals: BTreeMap<i32, u64> = BTreeMap::new();
            let buckets: Vec<Bucket> = buckets
                .into_iter()
                .map(|(start, outcomes)| {
                    for (outcome, count) in &outcomes {
                        *totals.entry(*outcome).or_default() += count;
                    }
                    let counts = counts(outcomes);
                    Bucket {
                        start,
                        total: counts.iter().map(|(_, n)| n).sum(),
                        counts,
                    }
                })
                .collect();
            let counts = counts(totals);
            Series {
                key_id,
                total: counts.iter().map(|(_, n)| n).sum(),
                counts,
                buckets,
            }
        })
        .collect()
}

fn counts(by_number: BTreeMap<i32, u64>) -> Counts {
    by_number
        .into_iter()
        .filter_map(|(n, count)| Code::from_number(n).map(|c| (c, count)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_align_to_their_width() {
        assert_eq!(Granularity::Minute.floor(125), 120);
        assert_eq!(Granularity::Minute.ceil(125), 180);
        assert_eq!(Granularity::Minute.ceil(120), 120);
        assert_eq!(Granularity::Hour.floor(-1), -3_600);
        assert_eq!(Granularity::Day.floor(86_400 * 3 + 5), 86_400 * 3);
        assert_eq!(Granularity::for_range(3_600), Granularity::Minute);
        assert_eq!(Granularity::for_range(7 * 86_400), Granularity::Hour);
        assert_eq!(Granularity::for_range(30 * 86_400), Granularity::Day);
        for g in Granularity::ALL {
            assert_eq!(Granularity::parse(g.as_str()), Some(g));
        }
    }

    #[test]
    fn outcome_numbers_round_trip_and_filter() {
        for code in Code::ALL {
            assert_eq!(Code::from_number(code.number()), Some(code));
            assert_eq!(Code::from_name(code.as_str()), Some(code));
        }
        let q = UsageQuery {
            target: Target::Key(KeyId::trusted("key_a".into())),
            granularity: Granularity::Hour,
            start: 0,
            end: 7_200,
            outcomes: vec![Code::Valid, Code::RateLimited],
        };
        assert_eq!(q.outcome_mask(), (1 << 1) | (1 << 14));
        assert_eq!(q.buckets(), 2);
    }

    #[test]
    fn counts_roll_up_into_wider_buckets() {
        let who = Some((
            KeyId::trusted("key_a".into()),
            AccountId::trusted("acme".into()),
        ));
        let counted = vec![
            Counted {
                key: who.clone(),
                minute: 3_600,
                code: Code::Valid,
                count: 2,
            },
            Counted {
                key: who.clone(),
                minute: 3_660,
                code: Code::Valid,
                count: 3,
            },
            Counted {
                key: None,
                minute: 3_660,
                code: Code::NotFound,
                count: 1,
            },
        ];
        assert_eq!(
            roll_up(&counted, Granularity::Minute),
            vec![
                ("", "", 3_660, Code::NotFound.number(), 1),
                ("key_a", "acme", 3_600, 1, 2),
                ("key_a", "acme", 3_660, 1, 3),
            ]
        );
        assert_eq!(
            roll_up(&counted, Granularity::Hour),
            vec![
                ("", "", 3_600, Code::NotFound.number(), 1),
                ("key_a", "acme", 3_600, 1, 5)
            ]
        );
    }

    #[test]
    fn rows_assemble_into_series_in_key_and_time_order() {
        let a = Some(KeyId::trusted("key_a".into()));
        let b = Some(KeyId::trusted("key_b".into()));
        let valid = Code::Valid.number();
        let limited = Code::RateLimited.number();
        let series = assemble(vec![
            (b.clone(), 60, valid, 2),
            (a.clone(), 120, limited, 1),
            (a.clone(), 60, valid, 3),
            (a.clone(), 120, valid, 4),
            (a.clone(), 120, 999, 7),
        ]);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].key_id, a);
        assert_eq!(series[0].total, 8);
        assert_eq!(
            series[0].counts,
            vec![(Code::Valid, 7), (Code::RateLimited, 1)]
        );
        assert_eq!(series[0].buckets[0].start, 60);
        assert_eq!(
            series[0].buckets[1],
            Bucket {
                start: 120,
                total: 5,
                counts: vec![(Code::Valid, 4), (Code::RateLimited, 1)]
            }
        );
        assert_eq!(series[1].key_id, b);
        assert_eq!(series[1].total, 2);
    }
}
