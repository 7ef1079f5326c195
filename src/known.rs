//! Bounding the store work a flood of distinct unknown keys can cause. The negative cache only
//! stops repeats; this stops the rest: an in-memory set of the digests that exist (8 bytes
//! each, loaded at start, kept current by local creates and the change feed), and a budget of
//! store look-ups per second for digests the set does not hold. Normal traffic keeps exact
//! answers: a key created on another replica a moment ago, before its notification arrived,
//! is still looked up while the budget lasts. Only a flood exhausts it, and then an unknown
//! digest is answered "not found" without a query.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use crate::key::{DigestHasher, KeyDigest};

/// The digests that exist, as their first 8 bytes (uniformly distributed already).
#[derive(Debug)]
pub struct KnownKeys {
    digests: RwLock<HashSet<u64, BuildHasherDefault<DigestHasher>>>,
    /// Whether the set holds every stored digest (a first load has finished). Until then
    /// every digest is looked up: answers stay exact while a large store loads.
    complete: AtomicBool,
    budget: LookupBudget,
    /// Look-ups the budget refused.
    shed: AtomicU64,
}

/// The first 8 bytes of a digest, as the set holds it.
pub fn short(digest: &KeyDigest) -> u64 {
    let bytes = digest.as_bytes();
    u64::from_le_bytes([
        bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7],
    ])
}

impl KnownKeys {
    /// An empty set with a budget of `per_second` look-ups for digests it does not hold.
    pub fn new(per_second: u32) -> Self {
        KnownKeys {
            digests: RwLock::default(),
            complete: AtomicBool::new(false),
            budget: LookupBudget::new(per_second),
            shed: AtomicU64::new(0),
        }
    }

    /// Adds digests read from the store (one page of a load). Nothing is ever removed: keys
    /// are never deleted, and a key created while a load runs is added by its creator or the
    /// change feed, whichever page it falls in.
    pub fn add_loaded(&self, digests: &[KeyDigest]) {
        let shorts: Vec<u64> = digests.iter().map(short).collect();
        self.insert_shorts(&shorts);
    }

    /// A load of every stored digest has finished: unknown digests are held to the budget.
    pub fn mark_complete(&self) {
        self.complete.store(true, Ordering::Release);
    }

    /// Whether a load of every stored digest has finished.
    pub fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    /// Adds a digest that now exists.
    pub fn insert(&self, digest: &KeyDigest) {
        self.insert_shorts(&[short(digest)]);
    }

    /// Adds digests that now exist, by their [`short`] forms.
    pub fn insert_shorts(&self, shorts: &[u64]) {
        // A poisoned lock only means a panic elsewhere mid-insert; the set is still usable.
        self.digests
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(shorts.iter().copied());
    }

    /// Whether the store should be asked about `digest`: always before the first load has
    /// finished and for a digest in the set, and otherwise while this second's budget lasts.
    pub fn should_look_up(&self, digest: &KeyDigest) -> bool {
        if !self.is_complete() {
            return true;
        }
        let known = self
            .digests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&short(digest));
        if known || self.budget.try_take() {
            return true;
        }
        self.shed.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Digests in the set.
    pub fn len(&self) -> usize {
        self.digests.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Look-ups of unknown digests refused by the budget so far.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}

/// A fixed window of `per_second` takes per wall-clock second since the budget was made.
#[derive(Debug)]
struct LookupBudget {
    per_second: u32,
    started: Instant,
    /// (second, takes used in it).
    window: Mutex<(u64, u32)>,
}

impl LookupBudget {
    fn new(per_second: u32) -> Self {
        LookupBudget {
            per_second,
            started: Instant::now(),
            window: Mutex::new((0, 0)),
        }
    }

    fn try_take(&self) -> bool {
        let second = self.started.elapsed().as_secs();
        let mut window = self.window.lock().unwrap_or_else(|e| e.into_inner());
        if window.0 != second {
            *window = (second, 0);
        }
        if window.1 < self.per_second {
            window.1 += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests_always_pass_unknown_ones_within_the_budget() {
        let known = KnownKeys::new(5);
        let real = KeyDigest::of("kw_live_real");
        known.add_loaded(&[real]);
        let unknown: Vec<KeyDigest> = (0..1000)
            .map(|i| KeyDigest::of(&format!("kw_live_{i}")))
            .collect();
        // Loading: every digest is looked up, none shed.
        assert!(unknown.iter().all(|d| known.should_look_up(d)));
        assert_eq!(known.shed(), 0);
        known.mark_complete();
        let asked = unknown.iter().filter(|d| known.should_look_up(d)).count();
        // Within one or two seconds of wall clock: at most two windows' worth.
        assert!(asked <= 10, "{asked} look-ups for 1000 unknown digests");
        assert!(known.shed() >= 990);
        assert!((0..100).all(|_| known.should_look_up(&real)));
        let new = KeyDigest::of("kw_live_new");
        known.insert(&new);
        assert!(known.should_look_up(&new));
        assert_eq!(known.len(), 2);
    }
}
