//! Last use, coalesced: successful verifications record `key id → time` in memory; a flusher
//! writes the whole batch in one statement every interval (and once more at shutdown), so the
//! verify path never writes to the database. A failed write keeps the batch for the next try.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Keyward;
use crate::error::Result;
use crate::time::Timestamp;

/// Pending last-use times, by key id.
#[derive(Debug, Default)]
pub struct LastUsed {
    pending: Mutex<HashMap<String, Timestamp>>,
    writes: AtomicU64,
}

impl LastUsed {
    /// Records a use; the latest time per key wins.
    pub fn record(&self, key_id: &str, at: Timestamp) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.get_mut(key_id) {
            Some(t) => *t = (*t).max(at),
            None => {
                pending.insert(key_id.to_owned(), at);
            }
        }
    }

    fn take(&self) -> Vec<(String, Timestamp)> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.drain().collect()
    }

    fn restore(&self, batch: Vec<(String, Timestamp)>) {
        for (id, at) in batch {
            self.record(&id, at);
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

    #[test]
    fn latest_use_wins_and_failures_keep_the_batch() {
        let t = LastUsed::default();
        t.record("a", Timestamp(5));
        t.record("a", Timestamp(3));
        t.record("b", Timestamp(1));
        let mut batch = t.take();
        batch.sort();
        assert_eq!(
            batch,
            vec![("a".into(), Timestamp(5)), ("b".into(), Timestamp(1))]
        );
        assert!(t.take().is_empty());
        t.record("a", Timestamp(7));
        t.restore(batch);
        let mut again = t.take();
        again.sort();
        assert_eq!(
            again,
            vec![("a".into(), Timestamp(7)), ("b".into(), Timestamp(1))]
        );
    }
}
