//! When a replica refreshes the store's statistics after imports (docs/cli.md, importing
//! keys). PostgreSQL plans an account's key list from what its statistics say the account
//! holds; an account that grew by a bulk import since they were gathered is planned as a few
//! rows (a scan and sort of all its keys for every page). Autovacuum gathers them again only
//! after a tenth of the table changed, so on a large table the replica asks itself: when an
//! account has had at least [`STATISTICS_AFTER_IMPORTED`] keys imported through it since the
//! last refresh, and at least as many as before it. Each account's statistics are then never
//! more than half its size behind, and an import of N keys refreshes about log₂(N) times, not
//! in proportion to the keys.

use std::collections::HashMap;

use crate::ids::AccountId;

/// Keys imported into one account (through one replica) before its growth can call for a
/// refresh of the store's statistics.
pub const STATISTICS_AFTER_IMPORTED: u64 = 10_000;

/// Accounts tracked before the smallest are forgotten (see [`ImportGrowth::add`]).
const TRACKED_ACCOUNTS: usize = 50_000;

/// Accounts below this many imported keys are forgotten when too many are tracked.
const FORGET_BELOW: u64 = 1_000;

/// Keys imported per account through this replica, and as of the last refresh.
#[derive(Debug, Default)]
pub(crate) struct ImportGrowth {
    accounts: HashMap<AccountId, Grown>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Grown {
    imported: u64,
    at_refresh: u64,
}

impl ImportGrowth {
    /// Counts keys stored by one import call, per account; true when the store's statistics
    /// are due a refresh, which the caller then runs (the counts as of now are taken as
    /// refreshed). Memory stays bounded: past [`TRACKED_ACCOUNTS`] accounts, those with fewer
    /// than [`FORGET_BELOW`] keys imported are forgotten (small accounts plan well either way).
    pub fn add<'a>(&mut self, stored: impl IntoIterator<Item = (&'a AccountId, u64)>) -> bool {
        let mut due = false;
        for (account, keys) in stored {
            let grown = self.accounts.entry(account.clone()).or_default();
            grown.imported = grown.imported.saturating_add(keys);
            let since = grown.imported - grown.at_refresh;
            due |= since >= STATISTICS_AFTER_IMPORTED && since >= grown.at_refresh;
        }
        if due {
            for grown in self.accounts.values_mut() {
                grown.at_refresh = grown.imported;
            }
        }
        if self.accounts.len() > TRACKED_ACCOUNTS {
            self.accounts
                .retain(|_, grown| grown.imported >= FORGET_BELOW);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str) -> AccountId {
        AccountId::parse(name).unwrap()
    }

    #[test]
    fn an_account_refreshes_each_time_it_doubles_past_the_threshold() {
        let (big, small) = (account("big"), account("small"));
        let mut growth = ImportGrowth::default();
        let mut refreshed_at = Vec::new();
        let mut total = 0;
        for _ in 0..100 {
            total += 1_000;
            // Small accounts alongside never call for one.
            assert!(!growth.add([(&small, 50)]));
            if growth.add([(&big, 1_000)]) {
                refreshed_at.push(total);
            }
        }
        assert_eq!(refreshed_at, [10_000, 20_000, 40_000, 80_000]);
    }

    #[test]
    fn many_small_accounts_are_forgotten_and_never_call_for_a_refresh() {
        let mut growth = ImportGrowth::default();
        let big = account("big");
        assert!(!growth.add([(&big, 5_000)]));
        for i in 0..(TRACKED_ACCOUNTS + 10) {
            assert!(!growth.add([(&account(&format!("a{i}")), 50)]));
        }
        assert!(growth.accounts.len() <= TRACKED_ACCOUNTS);
        // The big account is still tracked: 5,000 more make its 10,000.
        assert!(growth.add([(&big, 5_000)]));
    }
}
