//! A key's credit block in one replica: units reserved from the balance in the database and
//! spent locally, like a rate limit's block in the shared engine ([`super::Block`]). The
//! database stays the source of truth: a block is taken from it atomically, the unspent rest
//! goes back at shutdown ([`CreditBlocks::drain_unspent`]), and a crash loses at most the block
//! (an undercount, never an overspend).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::model::Credits;
use crate::time::Timestamp;

/// The largest block of credits a replica reserves at once.
const MAX_BLOCK: u64 = 1000;

/// The first block of a key, before anything is known of its use.
const FIRST_BLOCK: u64 = 4;

/// A key's credits as an answer reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditStatus {
    /// Units left: the balance at the last reservation plus this replica's unspent block.
    pub remaining: u64,
    /// When the balance is next refilled, if it is.
    pub refill_at: Option<Timestamp>,
}

/// What a credit block says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreditCheck {
    /// The block holds the units.
    Room,
    /// The block lacks `need` units: ask the database for `want`.
    Short {
        /// Units without which the request cannot pass.
        need: u64,
        /// Units to ask for.
        want: u64,
    },
    /// The balance is spent.
    Exhausted {
        /// The credits' state.
        status: CreditStatus,
        /// Until the next refill, if there is one.
        retry_after: Option<Duration>,
    },
}

/// A key's credit block in this replica.
#[derive(Debug, Default)]
pub struct CreditBlock {
    /// The period (when the balance was last set or refilled, µs) the block's units belong to.
    period: i64,
    granted: u64,
    spent: u64,
    /// The balance in the database at the last reservation.
    balance: u64,
    /// When the balance is next refilled (µs), if it is.
    next_refill: Option<i64>,
    /// The database had fewer units than needed at the last reservation.
    exhausted: bool,
    last_grant: u64,
    /// When the cached copy of the key the block last served was read: a newer copy (the key
    /// changed, e.g. a top-up) asks the database again.
    key_read_at: Option<std::time::Instant>,
}

impl CreditBlock {
    /// Whether `cost` units can be spent at `now`, with `replicas` sharing the balance, for
    /// the copy of the key read at `key_read_at`.
    pub fn check(
        &mut self,
        cost: u64,
        replicas: u32,
        now: Timestamp,
        key_read_at: std::time::Instant,
    ) -> CreditCheck {
        if self.key_read_at != Some(key_read_at) {
            // The key was read again (it changed, or its cached copy aged): a top-up may
            // have come.
            self.key_read_at = Some(key_read_at);
            self.exhausted = false;
        }
        if self.next_refill.is_some_and(|at| now.micros() >= at) {
            // A refill is due: the database will say how much there is now.
            self.exhausted = false;
        }
        let available = self.granted - self.spent;
        if available >= cost {
            return CreditCheck::Room;
        }
        let need = cost - available;
        if self.exhausted && need > self.balance {
            let retry_after = self
                .next_refill
                .map(|at| Duration::from_micros(u64::try_from(at - now.micros()).unwrap_or(0)));
            return CreditCheck::Exhausted {
                status: self.status(),
                retry_after,
            };
        }
        let share = if self.last_grant == 0 {
            MAX_BLOCK
        } else {
            // At most half of this replica's share of what the database had left.
            (self.balance / u64::from(replicas.max(1)) / 2).max(1)
        };
        let want = self
            .last_grant
            .saturating_mul(2)
            .clamp(FIRST_BLOCK, MAX_BLOCK)
            .min(share)
            .max(need);
        CreditCheck::Short { need, want }
    }

    /// Takes the database's answer to a reservation for `need` units: the balance after it
    /// and the units granted.
    pub fn apply(&mut self, credits: &Credits, granted: u64, need: u64) {
        let period = credits.refilled_at.micros();
        if period != self.period {
            // The balance was set or refilled: units of the old period are not spent in the new.
            *self = CreditBlock {
                last_grant: self.last_grant,
                ..CreditBlock::default()
            };
            self.period = period;
        }
        self.granted += granted;
        self.balance = credits.remaining;
        self.next_refill = credits.next_refill().map(Timestamp::micros);
        self.exhausted = granted < need;
        if granted > 0 {
            self.last_grant = granted;
        }
    }

    /// Lets `units` through without a balance: the key no longer has credits (its cached copy
    /// is stale and about to be replaced).
    pub fn allow_unlimited(&mut self, units: u64) {
        self.granted += units;
        self.exhausted = false;
    }

    /// Spends `cost` units, which [`CreditBlock::check`] said the block holds.
    pub fn spend(&mut self, cost: u64) {
        self.spent = (self.spent + cost).min(self.granted);
    }

    /// The credits' state as this replica knows it.
    pub fn status(&self) -> CreditStatus {
        CreditStatus {
            remaining: self.balance + (self.granted - self.spent),
            refill_at: self.next_refill.map(Timestamp::from_micros),
        }
    }

    /// Takes the unspent units and the period they belong to, leaving none.
    fn take_unspent(&mut self) -> (u64, i64) {
        let unspent = self.granted - self.spent;
        self.granted = self.spent;
        (unspent, self.period)
    }
}

/// The credit blocks of this replica, by key id. Bounded: a block evicted under pressure is
/// lost (an undercount, as a crash would be).
pub struct CreditBlocks(quick_cache::sync::Cache<String, Arc<Mutex<CreditBlock>>>);

impl std::fmt::Debug for CreditBlocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreditBlocks")
            .field("keys", &self.0.len())
            .finish()
    }
}

impl CreditBlocks {
    /// Room for the blocks of `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        CreditBlocks(quick_cache::sync::Cache::new(capacity.max(1)))
    }

    /// The block of key `key_id`.
    pub fn get(&self, key_id: &str) -> Arc<Mutex<CreditBlock>> {
        match self
            .0
            .get_or_insert_with(key_id, || Ok::<_, std::convert::Infallible>(Arc::default()))
        {
            Ok(block) => block,
            Err(never) => match never {},
        }
    }

    /// Every block's unspent units, taken out: (key id, units, period) to give back.
    pub fn drain_unspent(&self) -> Vec<(String, u64, Timestamp)> {
        self.0
            .iter()
            .filter_map(|(key_id, block)| {
                let (unspent, period) = lock(&block).take_unspent();
                (unspent > 0).then(|| (key_id, unspent, Timestamp::from_micros(period)))
            })
            .collect()
    }
}

/// A block's lock; a panic elsewhere does not lose its counts.
pub fn lock(block: &Mutex<CreditBlock>) -> std::sync::MutexGuard<'_, CreditBlock> {
    block.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Refill, RefillInterval};

    fn credits(remaining: u64, refilled_at: i64) -> Credits {
        Credits {
            remaining,
            refill: None,
            refilled_at: Timestamp::from_micros(refilled_at),
        }
    }

    #[test]
    fn blocks_are_spent_locally_and_never_past_the_balance() {
        let now = Timestamp::from_micros(5);
        let read = std::time::Instant::now();
        let mut block = CreditBlock::default();
        let CreditCheck::Short { need, want } = block.check(1, 1, now, read) else {
            panic!("an empty block is short")
        };
        assert_eq!((need, want), (1, FIRST_BLOCK));
        block.apply(&credits(6, 1), 4, need);
        for _ in 0..4 {
            assert_eq!(block.check(1, 1, now, read), CreditCheck::Room);
            block.spend(1);
        }
        assert_eq!(block.status().remaining, 6);
        // Half of what is left (6) for one replica: 3.
        assert_eq!(
            block.check(1, 1, now, read),
            CreditCheck::Short { need: 1, want: 3 }
        );
        block.apply(&credits(0, 1), 0, 1);
        match block.check(1, 1, now, read) {
            CreditCheck::Exhausted {
                status,
                retry_after,
            } => {
                assert_eq!(status.remaining, 0);
                assert_eq!(retry_after, None, "no refill, no retry_after");
            }
            other => panic!("{other:?}"),
        }
        // A newer copy of the key (a top-up changed it) asks the database again.
        let reread = read + Duration::from_millis(1);
        assert!(matches!(
            block.check(1, 1, now, reread),
            CreditCheck::Short { need: 1, .. }
        ));
    }

    #[test]
    fn a_due_refill_asks_the_database_again_and_a_new_period_starts_afresh() {
        let read = std::time::Instant::now();
        let mut block = CreditBlock::default();
        let refilled = Credits {
            refill: Some(Refill {
                amount: 10,
                interval: RefillInterval::Daily,
                day_of_month: None,
            }),
            ..credits(0, 0)
        };
        assert!(matches!(
            block.check(1, 1, Timestamp::from_micros(1), read),
            CreditCheck::Short { .. }
        ));
        block.apply(&refilled, 0, 1);
        let day = 86_400_000_000;
        match block.check(1, 1, Timestamp::from_micros(day / 2), read) {
            CreditCheck::Exhausted { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(43_200)));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            block.check(1, 1, Timestamp::from_micros(day), read),
            CreditCheck::Short { .. }
        ));
        block.apply(
            &Credits {
                remaining: 6,
                refilled_at: Timestamp::from_micros(day),
                ..refilled
            },
            4,
            1,
        );
        assert_eq!(block.status().remaining, 10);
        let blocks = CreditBlocks::new(10);
        *lock(&blocks.get("key_a")) = block;
        assert_eq!(
            blocks.drain_unspent(),
            vec![("key_a".to_owned(), 4, Timestamp::from_micros(day))]
        );
        assert_eq!(blocks.drain_unspent(), vec![], "given back once");
    }
}
