//! Usage counting: every decision is counted in memory per cached key, minute and outcome
//! (decisions without a stored key per service), and a flusher writes the counts in a few
//! batched statements every `usage_flush_interval` and once more at shutdown (`docs/usage.md`).
//! The verify path never writes to the database. A failed write keeps its counts for the next
//! try; the store adds counts to what is stored, so replicas sharing a database sum up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Keyward;
use super::auth::{Access, Caller};
use crate::cache::KeyState;
use crate::error::Result;
use crate::ids::{AccountId, KeyId};
use crate::time::Timestamp;
use crate::usage::{Counted, Granularity, Target, Usage, UsageQuery};
use crate::verify::Code;

/// Shards of the per-key counts, one per worker thread (up to this many): a thread counts into
/// its own shard, so calls on different cores do not wait on one another even for one hot key.
const SHARDS: usize = 16;

/// The next shard a thread takes.
static NEXT_SHARD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// This thread's shard.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

type Counts = [u64; Code::ALL.len()];

/// A cached key's counts by minute, keyed by the copy's address (the entry holds the copy, so
/// the address stays its own): a million keys in use cost no id allocation each.
type KeyedCounts = HashMap<(usize, i64), (Arc<KeyState>, Counts), foldhash::fast::RandomState>;

/// Counts being merged for writing: by key (and account), minute and outcome.
type Merged = HashMap<(Option<(KeyId, AccountId)>, i64, Code), u64>;

/// Decisions counted and not yet written.
#[derive(Debug)]
pub struct UsageCounter {
    enabled: bool,
    keyed: Box<[Mutex<KeyedCounts>]>,
    keyless: Mutex<HashMap<i64, Counts>>,
    retry: Mutex<Vec<Counted>>,
    statements: AtomicU64,
    counted: AtomicU64,
}

impl UsageCounter {
    /// A counter; a disabled one counts nothing.
    pub fn new(enabled: bool) -> Self {
        UsageCounter {
            enabled,
            keyed: (0..SHARDS).map(|_| Mutex::default()).collect(),
            keyless: Mutex::default(),
            retry: Mutex::default(),
            statements: AtomicU64::new(0),
            counted: AtomicU64::new(0),
        }
    }

    /// Counts one decision with `code` at `at`, for `key` when one was found.
    pub fn record(&self, key: Option<&Arc<KeyState>>, code: Code, at: Timestamp) {
        if !self.enabled {
            return;
        }
        let minute = Granularity::Minute.floor(at.micros().div_euclid(1_000_000));
        match key {
            Some(key) => {
                let address = Arc::as_ptr(key) as usize;
                let mut counts = self.keyed[SHARD.with(|s| *s)]
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                counts
                    .entry((address, minute))
                    .or_insert_with(|| (key.clone(), [0; Code::ALL.len()]))
                    .1[code as usize] += 1;
            }
            None => {
                let mut counts = self.keyless.lock().unwrap_or_else(|p| p.into_inner());
                counts.entry(minute).or_insert([0; Code::ALL.len()])[code as usize] += 1;
            }
        }
    }

    /// Everything counted so far (and any batch whose write failed), one row per key, minute
    /// and outcome.
    fn take(&self) -> Vec<Counted> {
        let mut merged: Merged = HashMap::new();
        for row in std::mem::take(&mut *self.retry.lock().unwrap_or_else(|p| p.into_inner())) {
            *merged.entry((row.key, row.minute, row.code)).or_default() += row.count;
        }
        for shard in self.keyed.iter() {
            let counts = std::mem::take(&mut *shard.lock().unwrap_or_else(|p| p.into_inner()));
            for ((_, minute), (key, counts)) in counts {
                let who = (
                    key.key.key_id(),
                    AccountId::trusted(key.key.account_id().to_owned()),
                );
                for (code, count) in Code::ALL.into_iter().zip(counts) {
                    if count > 0 {
                        *merged.entry((Some(who.clone()), minute, code)).or_default() += count;
                    }
                }
            }
        }
        let keyless = std::mem::take(&mut *self.keyless.lock().unwrap_or_else(|p| p.into_inner()));
        for (minute, counts) in keyless {
            for (code, count) in Code::ALL.into_iter().zip(counts) {
                if count > 0 {
                    *merged.entry((None, minute, code)).or_default() += count;
                }
            }
        }
        merged
            .into_iter()
            .map(|((key, minute, code), count)| Counted {
                key,
                minute,
                code,
                count,
            })
            .collect()
    }

    fn restore(&self, batch: Vec<Counted>) {
        self.retry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(batch);
    }

    /// Statements written to the store so far.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Decisions written to the store so far.
    pub fn written(&self) -> u64 {
        self.counted.load(Ordering::Relaxed)
    }
}

impl Keyward {
    /// Writes the decisions counted so far; returns how many decisions the write covered.
    pub async fn flush_usage(&self) -> Result<u64> {
        let batch = self.usage.take();
        if batch.is_empty() {
            return Ok(0);
        }
        let decisions: u64 = batch.iter().map(|c| c.count).sum();
        match self.store.record_usage(&batch).await {
            Ok(statements) => {
                self.usage
                    .statements
                    .fetch_add(statements, Ordering::Relaxed);
                self.usage.counted.fetch_add(decisions, Ordering::Relaxed);
                Ok(decisions)
            }
            Err(e) => {
                self.usage.restore(batch);
                Err(e)
            }
        }
    }

    /// Deletes usage rows older than each width's retention; returns how many.
    pub async fn prune_usage(
        &self,
        now: Timestamp,
        retention: &[(Granularity, std::time::Duration)],
    ) -> Result<u64> {
        let now = now.micros().div_euclid(1_000_000);
        let mut deleted = 0;
        for (granularity, keep) in retention {
            let before = now.saturating_sub(i64::try_from(keep.as_secs()).unwrap_or(i64::MAX));
            deleted += self.store.delete_usage_before(*granularity, before).await?;
        }
        Ok(deleted)
    }

    /// The usage counter, for its statistics.
    pub fn usage_counter(&self) -> &UsageCounter {
        &self.usage
    }

    /// Answers a usage question under the caller's rights (reading the key's or the
    /// account's keys).
    pub async fn get_usage(&self, caller: &Caller, query: UsageQuery) -> Result<Usage> {
        caller.authorize_portal(super::PortalAction::Usage)?;
        match &query.target {
            Target::Key(id) => {
                let key = self.key_record(id).await?;
                caller.authorize(&key.account_id, Access::Read)?;
            }
            Target::Account(account_id) | Target::AccountByKey { account_id, .. } => {
                caller.authorize(account_id.as_str(), Access::Read)?;
            }
            // Strings presented by anyone, to any account's gateway: the operator's to read.
            Target::NoKey => caller.require_root()?,
        }
        let rows = self.store.usage(&query).await?;
        let mut series = crate::usage::assemble(rows);
        let mut more = false;
        match &query.target {
            Target::AccountByKey { limit, .. } => {
                let limit = usize::try_from(*limit).unwrap_or(usize::MAX);
                if series.len() > limit {
                    series.truncate(limit);
                    more = true;
                }
            }
            // One series, even when empty.
            _ => {
                if series.is_empty() {
                    series.push(crate::usage::Series {
                        key_id: None,
                        total: 0,
                        counts: Vec::new(),
                        buckets: Vec::new(),
                    });
                }
                if let Target::Key(id) = &query.target {
                    series[0].key_id = Some(id.clone());
                }
            }
        }
        Ok(Usage {
            query,
            series,
            more,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, account: &str) -> Arc<KeyState> {
        let mut key = crate::model::test_key();
        key.id = KeyId::trusted(id.into());
        key.account_id = AccountId::trusted(account.into());
        Arc::new(KeyState::new(&key, false))
    }

    fn sorted(mut rows: Vec<Counted>) -> Vec<(Option<String>, i64, Code, u64)> {
        let mut out: Vec<_> = rows
            .drain(..)
            .map(|c| (c.key.map(|(k, _)| k.to_string()), c.minute, c.code, c.count))
            .collect();
        out.sort_by(|a, b| (&a.0, a.1, a.2 as usize).cmp(&(&b.0, b.1, b.2 as usize)));
        out
    }

    #[test]
    fn decisions_count_per_key_minute_and_outcome_and_failed_writes_are_kept() {
        let counter = UsageCounter::new(true);
        let (a, b) = (key("key_a", "acme"), key("key_b", "acme"));
        // A re-read copy of a counts under the same id.
        let a_again = key("key_a", "acme");
        let t = |s: i64| Timestamp::from_micros(s * 1_000_000);
        counter.record(Some(&a), Code::Valid, t(60));
        counter.record(Some(&a_again), Code::Valid, t(119));
        counter.record(Some(&a), Code::RateLimited, t(61));
        counter.record(Some(&b), Code::Valid, t(120));
        counter.record(None, Code::NotFound, t(70));
        counter.record(None, Code::Malformed, t(70));
        let batch = counter.take();
        assert_eq!(
            sorted(batch.clone()),
            vec![
                (None, 60, Code::Malformed, 1),
                (None, 60, Code::NotFound, 1),
                (Some("key_a".into()), 60, Code::Valid, 2),
                (Some("key_a".into()), 60, Code::RateLimited, 1),
                (Some("key_b".into()), 120, Code::Valid, 1),
            ]
        );
        assert!(counter.take().is_empty());
        counter.record(Some(&a), Code::Valid, t(60));
        counter.restore(batch);
        let again = sorted(counter.take());
        assert!(again.contains(&(Some("key_a".into()), 60, Code::Valid, 3)));
        assert_eq!(again.len(), 5);
    }

    #[test]
    fn a_disabled_counter_counts_nothing() {
        let counter = UsageCounter::new(false);
        counter.record(None, Code::Valid, Timestamp::from_micros(0));
        assert!(counter.take().is_empty());
    }
}
