//! One limit's block in one replica, in the shared mode: the units this replica reserved from
//! the engine's current window, and how many it spent. Pure bookkeeping: the service asks the
//! engine when [`Block::check`] says the block is short, and hands the answer to
//! [`Block::apply`].

use std::time::Duration;

use super::LimitStatus;
use super::engine::Grant;
use crate::model::RateLimit;
use crate::time::Timestamp;

/// The first block of a key's window, before anything is known of its rate.
const FIRST_BLOCK: u32 = 4;

/// The shortest stretch of time a rate is measured over.
const RATE_SAMPLE_US: i64 = 100_000;

/// How many seconds of the observed rate a block holds: a key comes back to the engine about
/// this often, whatever its rate.
const HORIZON_S: u64 = 10;

/// What a block says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// The block holds the units.
    Room,
    /// The block lacks `need` units: ask the engine for `want`.
    Short {
        /// Units without which the request cannot pass.
        need: u32,
        /// Units to ask for.
        want: u32,
    },
    /// The engine said the window has no room for this much: refused until it ends.
    Refused {
        /// The limit's state.
        status: LimitStatus,
        /// Until the window ends.
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Block {
    /// Until when (µs, this replica's clock) the block's window surely lasts; 0: no block.
    valid_until: i64,
    /// When the window ends (µs), as the engine has it: the same on every replica.
    reset_at: i64,
    /// Units reserved in this window.
    granted: u32,
    /// Units spent of them.
    spent: u32,
    /// Units the engine had handed out in the window, at its last answer.
    handed_out: u32,
    /// The smallest need the engine refused in this window (0: none).
    refused_need: u32,
    /// The last block's size, which the next one doubles while no rate is known.
    last_grant: u32,
    /// Units this replica ever spent of the limit, across windows.
    total_spent: u64,
    /// The observed rate, in units per 1000 s (0: not known yet), kept across windows.
    rate_per_ks: u64,
    /// When the rate was last sampled (µs; 0: never), and `total_spent` then.
    sampled_at: i64,
    sampled_spent: u64,
}

impl Block {
    /// The block for `now`: one whose window has ended is emptied (its size is remembered).
    fn current(&mut self, now: i64) -> &mut Self {
        if now >= self.valid_until {
            *self = self.emptied();
        }
        self
    }

    /// No units and no window, the rate kept.
    fn emptied(&self) -> Block {
        Block {
            last_grant: self.last_grant,
            total_spent: self.total_spent,
            rate_per_ks: self.rate_per_ks,
            sampled_at: self.sampled_at,
            sampled_spent: self.sampled_spent,
            ..Block::default()
        }
    }

    /// Updates the rate from what was spent since the last sample (a moving average of the
    /// samples, each over at least [`RATE_SAMPLE_US`]).
    fn sample(&mut self, now: i64) {
        if self.sampled_at == 0 {
            (self.sampled_at, self.sampled_spent) = (now, self.total_spent);
            return;
        }
        let elapsed = now - self.sampled_at;
        if elapsed < RATE_SAMPLE_US {
            return;
        }
        let spent = u128::from(self.total_spent - self.sampled_spent);
        let sample = u64::try_from(spent * 1_000_000_000 / elapsed.unsigned_abs() as u128)
            .unwrap_or(u64::MAX);
        self.rate_per_ks = match self.rate_per_ks {
            0 => sample,
            rate => rate / 2 + sample / 2,
        };
        (self.sampled_at, self.sampled_spent) = (now, self.total_spent);
    }

    /// Whether `cost` units can be spent now, with `replicas` sharing the limit.
    pub(crate) fn check(&mut self, limit: &RateLimit, cost: u32, replicas: u32, now: i64) -> Check {
        let block = self.current(now);
        let available = block.granted - block.spent;
        if available >= cost && cost <= limit.limit {
            return Check::Room;
        }
        if cost > limit.limit || (block.refused_need > 0 && cost - available >= block.refused_need)
        {
            return Check::Refused {
                status: block.status(limit, now),
                retry_after: Duration::from_micros(
                    u64::try_from(block.valid_until.max(block.reset_at) - now).unwrap_or(0),
                ),
            };
        }
        let need = cost - available;
        block.sample(now);
        Check::Short {
            need,
            want: block.want(limit, replicas, need, now),
        }
    }

    /// The next block's size: [`HORIZON_S`] of the observed rate (while none is known, double
    /// the last block, the first being [`FIRST_BLOCK`]); at most half of this replica's share
    /// of the limit, and no more than the rate would spend in what is left of the window (so
    /// blocks shrink as the window runs out); never less than `need`.
    fn want(&self, limit: &RateLimit, replicas: u32, need: u32, now: i64) -> u32 {
        let cap = (limit.limit / replicas.max(1).saturating_mul(2)).max(1);
        let floor = FIRST_BLOCK.min(cap);
        let mut want = match self.rate_per_ks {
            0 => self.last_grant.saturating_mul(2).clamp(floor, cap),
            rate => u32::try_from(rate.saturating_mul(HORIZON_S) / 1000)
                .unwrap_or(u32::MAX)
                .clamp(floor, cap),
        };
        if self.rate_per_ks > 0 && self.valid_until > now {
            let left = u128::from((self.valid_until - now).unsigned_abs());
            // A quarter more than the rate predicts for what is left.
            let expected = u128::from(self.rate_per_ks) * left * 5 / 4 / 1_000_000_000 + 1;
            want = want.min(u32::try_from(expected).unwrap_or(u32::MAX));
        }
        want.max(need)
    }

    /// Takes the engine's answer to a reservation sent at `sent_at` (µs) for `need` units.
    pub(crate) fn apply(&mut self, grant: &Grant, need: u32, sent_at: i64) {
        let reset_at = grant.window_end_ms.saturating_mul(1000);
        // Counted from when the request left: the window surely lasts at least this long.
        let valid_until = sent_at.saturating_add(grant.left_ms.saturating_mul(1000));
        if reset_at < self.reset_at {
            // An answer for a window the block has left (it overtook a newer one): those
            // units are the ended window's, and lost with it.
            return;
        }
        if reset_at != self.reset_at || sent_at >= self.valid_until {
            // Another window than the block's: start over in it.
            *self = self.emptied();
        }
        self.reset_at = reset_at;
        self.valid_until = valid_until;
        self.handed_out = grant.handed_out;
        if grant.granted == 0 {
            self.refused_need = match self.refused_need {
                0 => need,
                refused => refused.min(need),
            };
        } else {
            self.granted = self.granted.saturating_add(grant.granted);
            self.last_grant = grant.granted;
        }
    }

    /// Spends `cost` units, which [`Block::check`] said the block holds.
    pub(crate) fn spend(&mut self, cost: u32) {
        self.spent = (self.spent + cost).min(self.granted);
        self.total_spent += u64::from(cost);
    }

    /// The limit's state as this replica knows it: what the engine had not handed out at its
    /// last answer, plus what this replica holds unspent.
    pub(crate) fn status(&self, limit: &RateLimit, now: i64) -> LimitStatus {
        let reset_at = if self.reset_at > 0 {
            self.reset_at
        } else {
            now.saturating_add(i64::try_from(limit.window().as_micros()).unwrap_or(i64::MAX))
        };
        LimitStatus {
            limit: limit.limit,
            remaining: limit
                .limit
                .saturating_sub(self.handed_out)
                .saturating_add(self.granted - self.spent)
                .min(limit.limit),
            reset_at: Timestamp::from_micros(reset_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000;

    fn limit(limit: u32, window_secs: u64) -> RateLimit {
        RateLimit { limit, window_secs }
    }

    fn grant(granted: u32, handed_out: u32, window_end_s: i64, left_s: i64) -> Grant {
        Grant {
            granted,
            window_end_ms: window_end_s * 1000,
            left_ms: left_s * 1000,
            handed_out,
        }
    }

    #[test]
    fn a_block_is_spent_locally_then_topped_up() {
        let l = limit(1000, 60);
        let mut block = Block::default();
        let Check::Short { need, want } = block.check(&l, 1, 1, SEC) else {
            panic!("an empty block is short")
        };
        assert_eq!((need, want), (1, FIRST_BLOCK));
        block.apply(&grant(want, want, 61, 60), need, SEC);
        for _ in 0..FIRST_BLOCK {
            assert_eq!(block.check(&l, 1, 1, SEC), Check::Room);
            block.spend(1);
        }
        // Spent: the next block doubles the last.
        assert_eq!(
            block.check(&l, 1, 1, SEC),
            Check::Short {
                need: 1,
                want: 2 * FIRST_BLOCK
            }
        );
        assert_eq!(block.status(&l, SEC).remaining, 1000 - FIRST_BLOCK);
    }

    #[test]
    fn blocks_follow_the_rate_within_a_share_of_the_limit_and_shrink_as_the_window_ends() {
        let l = limit(6000, 600);
        let mut block = Block {
            last_grant: 10_000,
            ..Block::default()
        };
        // Three replicas: at most half of a third, 1000.
        assert!(matches!(
            block.check(&l, 1, 3, SEC),
            Check::Short { want: 1000, .. }
        ));
        block.apply(&grant(40, 40, 601, 600), 1, SEC);
        // 40 units in 2 s: 20/s, so ten seconds' worth, 200 (the window has 598 s left).
        for _ in 0..40 {
            block.spend(1);
        }
        assert!(matches!(
            block.check(&l, 1, 3, 3 * SEC),
            Check::Short { want: 200, .. }
        ));
        // With 2 s of the window left: a quarter more than 2 s at 20/s, about 51.
        let mut late = block;
        late.valid_until = 5 * SEC;
        assert!(matches!(
            late.check(&l, 1, 3, 3 * SEC),
            Check::Short { want: 51, .. }
        ));
        // Never less than the request needs.
        assert!(matches!(
            late.check(&l, 80, 3, 3 * SEC),
            Check::Short { need: 80, want: 80 }
        ));
        // The rate is kept into the next window.
        let mut next = block;
        next.valid_until = 0;
        assert!(matches!(
            next.check(&l, 1, 3, 601 * SEC),
            Check::Short { .. }
        ));
        assert!(next.rate_per_ks > 0);
    }

    #[test]
    fn a_refusal_holds_until_the_window_ends() {
        let l = limit(10, 60);
        let mut block = Block::default();
        block.apply(&grant(0, 10, 61, 60), 1, SEC);
        match block.check(&l, 1, 1, 2 * SEC) {
            Check::Refused {
                status,
                retry_after,
            } => {
                assert_eq!(status.remaining, 0);
                assert_eq!(status.reset_at, Timestamp::from_micros(61 * SEC));
                assert_eq!(retry_after, Duration::from_secs(59));
            }
            other => panic!("{other:?}"),
        }
        // The window over, the block asks again.
        assert!(matches!(
            block.check(&l, 1, 1, 61 * SEC),
            Check::Short { need: 1, .. }
        ));
        // A cost over the limit never passes.
        assert!(matches!(
            Block::default().check(&l, 11, 1, SEC),
            Check::Refused { .. }
        ));
    }

    #[test]
    fn a_grant_of_a_new_window_replaces_the_old_block() {
        let l = limit(10, 60);
        let mut block = Block::default();
        block.apply(&grant(5, 5, 61, 60), 1, SEC);
        block.spend(5);
        // The engine's window ended and another replica started the next one.
        block.apply(&grant(3, 8, 130, 59), 1, 71 * SEC);
        assert_eq!(block.granted, 3);
        assert_eq!(block.spent, 0);
        assert_eq!(block.status(&l, 71 * SEC).remaining, 5);
        assert_eq!(block.check(&l, 3, 1, 71 * SEC), Check::Room);
    }
}
