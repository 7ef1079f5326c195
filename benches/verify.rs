//! The in-process verify path on a cache hit: parse (format + CRC32) → SHA-256 → moka lookup →
//! decision → rate limiter. No network, no database on the measured path.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use keyward::cache::CacheSettings;
use keyward::catalog::Catalog;
use keyward::key::KeyFormat;
use keyward::service::{Keyward, Policy};
use keyward::verify::{Code, RequestContext, VerifyQuery};

fn bench_verify(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (service, raw) = runtime.block_on(async {
        let store = keyward::store::connect(&keyward::store::DatabaseUrl::new(url))
            .await
            .expect("store");
        store.migrate().await.expect("migrate");
        let mut policy = Policy::default();
        policy.rate_limit.limit = u32::MAX;
        let service = Keyward::new(
            store,
            Arc::new(Catalog::builtin()),
            KeyFormat::default(),
            policy,
            CacheSettings {
                capacity: 100_000,
                ttl: std::time::Duration::from_secs(3600),
                stale_limit: std::time::Duration::from_secs(3600),
                negative_capacity: 1000,
                negative_ttl: std::time::Duration::from_secs(5),
                unknown_lookups_per_second: 100,
            },
        );
        let (secret, _) = service.mint_root_key("bench").await.expect("key");
        (service, secret.expose().to_owned())
    });
    let query = VerifyQuery {
        required_scopes: keyward::verify::RequiredScopes::from_slice(&["root"]),
        context: RequestContext::default(),
        environment: None,
        cost: 1,
    };
    runtime.block_on(async {
        let verdict = service.verify(&raw, &query).await.expect("verify");
        assert_eq!(verdict.code, Code::Valid, "warm the cache");
    });
    c.bench_function("verify_cache_hit", |b| {
        b.to_async(&runtime).iter(|| async {
            let verdict = service.verify(&raw, &query).await.expect("verify");
            debug_assert_eq!(verdict.code, Code::Valid);
            verdict
        })
    });
    let format = KeyFormat::default();
    c.bench_function("parse_and_hash", |b| b.iter(|| format.parse(&raw)));
}

criterion_group!(benches, bench_verify);
criterion_main!(benches);
