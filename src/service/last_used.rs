//! Last use, coalesced: successful verifications record `key id → time` in memory; a flusher
//! writes the whole batch in one statement every interval (and once more at shutdown), so the
//! verify path never writes to the database. A failed write keeps the batch for the next try.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Keyward;
use crate::cache::KeyState;
use crate::error::Result;
use crate::time::Timestamp;

/// A cached key, hashed and compared by address: the tracker holds the cached copy itself
/// (a pointer) rather than a copy of its id, so a million keys in use cost 16 bytes each here,
/// not an allocation each.
#[derive(Debug, Clone)]
struct Used(Arc<KeyState>);

impl PartialEq for Used {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Used {}

impl std::hash::Hash for Used {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(Arc::as_ptr(&self.0), state);
    }
}

/// Pending last-use times.
#[derive(Debug, Default)]
pub struct LastUsed {
    pending: Mutex<Pending>,
    writes: AtomicU64,
}

#[derive(Debug, Default)]
struct Pending {
    /// Uses of cached keys.
    used: HashMap<Used, Timestamp>,
    /// A batch whose write failed, by key id, for the next try.
    retry: HashMap<String, Timestamp>,
}

impl LastUsed {
    /// Records a use of a cached key; the latest time per key wins.
    pub fn record(&self, key: &Arc<KeyState>, at: Timestamp) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let time = pending.used.entry(Used(key.clone())).or_insert(at);
        *time = (*time).max(at);
    }

    /// Everything pending, one time per key id (the latest).
    fn take(&self) -> Vec<(String, Timestamp)> {
        let (used, retry) = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            (
                std::mem::take(&mut pending.used),
                std::mem::take(&mut pending.retry),
            )
        };
        let mut batch = retry;
        for (Used(key), at) in used {
            let time = batch.entry(key.key.id().to_owned()).or_insert(at);
            *time = (*time).max(at);
        }
        batch.into_iter().collect()
    }

    fn restore(&self, batch: Vec<(String, Timestamp)>) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        for (id, at) in batch {
            let time = pending.retry.entry(id).or_insert(at);
            *time = (*time).max(at);
        }
    }

    /// Batches written to the store so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

impl Keyward {
    /// Writes pending last-use times in one statement; returns how many keys it covered.
    pub async fn flush_last_used(&self) -> Result<usize> {
        let batch = self.last_used.take();
        if batch.is_empty() {
            return Ok(0);
        }
        match self.store.record_last_used(&batch).await {
            Ok(()) => {
                self.last_used.writes.fetch_add(1, Ordering::Relaxed);
                Ok(batch.len())
            }
            Err(e) => {
                self.last_used.restore(batch);
                Err(e)
            }
        }
    }

    /// The last-use tracker, for its statistics.
    pub fn last_used(&self) -> &LastUsed {
        &self.last_used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> Arc<KeyState> {
        let mut key = crate::model::test_key();
        key.id = crate::ids::KeyId::trusted(id.into());
        Arc::new(KeyState::new(&key, false))
    }

    #[test]
    fn latest_use_wins_and_failures_keep_the_batch() {
        let t = LastUsed::default();
        let (a, b) = (key("a"), key("b"));
        // A re-read copy of a is another entry, with the same id.
        let a_again = key("a");
        t.record(&a, Timestamp::from_micros(5));
        t.record(&a, Timestamp::from_micros(3));
        t.record(&a_again, Timestamp::from_micros(4));
        t.record(&b, Timestamp::from_micros(1));
        let mut batch = t.take();
        batch.sort();
        assert_eq!(
            batch,
            vec![
                ("a".into(), Timestamp::from_micros(5)),
                ("b".into(), Timestamp::from_micros(1))
            ]
        );
        assert!(t.take().is_empty());
        t.record(&a, Timestamp::from_micros(7));
        t.restore(batch);
        let mut again = t.take();
        again.sort();
        assert_eq!(
            again,
            vec![
                ("a".into(), Timestamp::from_micros(7)),
                ("b".into(), Timestamp::from_micros(1))
            ]
        );
    }
}
