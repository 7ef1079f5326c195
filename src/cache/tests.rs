//! Unit tests of the parent module.

use std::sync::atomic::AtomicUsize;

use super::*;
use crate::model::test_key;

fn settings() -> CacheSettings {
    CacheSettings {
        capacity: 100,
        ttl: Duration::from_secs(300),
        stale_limit: Duration::from_secs(3600),
        negative_capacity: 100,
        negative_ttl: Duration::from_secs(5),
        unknown_lookups_per_second: 100,
    }
}

/// A store stand-in for the cache's loader: counts its calls and answers the key, revoked
/// from the `revoke_after`-th call on.
#[derive(Debug, Clone)]
struct Counting {
    calls: Arc<AtomicUsize>,
    revoke_after: usize,
}

impl Loader for Counting {
    fn load(
        &self,
        _digest: KeyDigest,
    ) -> impl Future<Output = Result<Option<KeyState>>> + Send + 'static {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let mut key = test_key();
        if n >= self.revoke_after {
            key.revoked_at = Some(crate::time::Timestamp::from_micros(1));
        }
        std::future::ready(Ok(Some(KeyState::new(&key, false))))
    }
}

/// A store that never answers (an outage not yet detected).
#[derive(Debug, Clone)]
struct Hanging;

impl Loader for Hanging {
    fn load(
        &self,
        _: KeyDigest,
    ) -> impl Future<Output = Result<Option<KeyState>>> + Send + 'static {
        std::future::pending()
    }
}

fn loader(_digest: KeyDigest, calls: Arc<AtomicUsize>, revoke_after: usize) -> Counting {
    Counting {
        calls,
        revoke_after,
    }
}

async fn poll_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn entries_read_while_the_feed_is_down_are_reread() {
    let cache = Arc::new(KeyCache::new(settings(), true));
    cache.mark_all_stale(); // the feed connects...
    cache.feed_down(); // ...and drops
    let digest = KeyDigest::of("kw_live_a");
    let calls = Arc::new(AtomicUsize::new(0));
    let first = cache
        .get_or_load(digest, &loader(digest, calls.clone(), 2))
        .await
        .unwrap()
        .unwrap();
    assert!(!first.key.is_revoked());
    // A revocation made elsewhere, unreported, is seen once the entry's short life ends.
    poll_until("the revocation to be read", async || {
        let got = cache
            .get_or_load(digest, &loader(digest, calls.clone(), 2))
            .await
            .unwrap()
            .unwrap();
        got.key.is_revoked()
    })
    .await;
    assert!(calls.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn a_reconnected_feed_rereads_everything() {
    let cache = Arc::new(KeyCache::new(settings(), false));
    let digest = KeyDigest::of("kw_live_b");
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load(digest, &loader(digest, calls.clone(), 2))
        .await
        .unwrap();
    cache.mark_all_stale();
    poll_until("the re-read after reconnecting", async || {
        let got = cache
            .get_or_load(digest, &loader(digest, calls.clone(), 2))
            .await
            .unwrap()
            .unwrap();
        got.key.is_revoked()
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one re-read");
}

#[tokio::test]
async fn a_cached_key_never_waits_on_the_store() {
    let cache = Arc::new(KeyCache::new(settings(), false));
    let digest = KeyDigest::of("kw_live_c");
    let calls = Arc::new(AtomicUsize::new(0));
    cache
        .get_or_load(digest, &loader(digest, calls.clone(), usize::MAX))
        .await
        .unwrap();
    cache.mark_all_stale();
    // The store now hangs (an outage not yet detected): every answer still comes at once,
    // from the cache, and one background re-read waits for the store.
    for _ in 0..100 {
        let answer =
            tokio::time::timeout(Duration::from_secs(5), cache.get_or_load(digest, &Hanging))
                .await
                .expect("answered without waiting for the store");
        assert!(answer.unwrap().is_some());
    }
    assert_eq!(cache.stats().refreshes.load(Ordering::Relaxed), 1);
    assert_eq!(cache.stats().stale_hits.load(Ordering::Relaxed), 100);
}

#[tokio::test]
async fn a_changed_key_is_reread_at_once_and_keeps_its_rate_limit_counters() {
    let cache = Arc::new(KeyCache::new(settings(), false));
    let digest = KeyDigest::of("kw_live_d");
    let calls = Arc::new(AtomicUsize::new(0));
    let first = cache
        .get_or_load(digest, &loader(digest, calls.clone(), 2))
        .await
        .unwrap()
        .unwrap();
    let limit = crate::model::RateLimit {
        limit: 2,
        window_secs: 60,
    };
    let now = crate::time::Timestamp::from_micros(1);
    assert!(matches!(
        first.rate.check(&limit, &[], 1, now),
        crate::ratelimit::Outcome::Allowed(s) if s.remaining == 1
    ));
    // The key is revoked and the cache told: the next lookup reads it again, at once...
    cache.invalidate(&digest).await;
    let second = cache
        .get_or_load(digest, &loader(digest, calls.clone(), 2))
        .await
        .unwrap()
        .unwrap();
    assert!(second.key.is_revoked());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // ...and the new copy has counted what the old one did.
    assert!(matches!(
        second.rate.check(&limit, &[], 1, now),
        crate::ratelimit::Outcome::Allowed(s) if s.remaining == 0
    ));
}
