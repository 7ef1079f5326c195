//! The cache under load and across replicas: negative cache, single flight, invalidation
//! through PostgreSQL LISTEN/NOTIFY, a dropped listener, and a database outage.

use std::sync::atomic::Ordering;
use std::time::Duration;

use keyward::key::{Environment, KeyFormat};
use keyward::proto::{self, VerifyCode};
use prost_types::FieldMask;
use sqlx::Connection;
use tonic::Code;

use crate::both_backends;
use crate::helpers::{
    Backend, TestServer, code, eventually, fresh_database, key_request, test_config, verify_request,
};
use crate::pg::Cluster;

both_backends!(
    negative_cache_absorbs_unknown_keys,
    concurrent_misses_make_one_lookup,
    distinct_unknown_keys_cost_bounded_store_work,
);

/// 3,000 distinct well-formed unknown keys (the negative cache cannot help) make at most the
/// configured budget of store look-ups per second; keys that exist keep exact answers.
async fn distinct_unknown_keys_cost_bounded_store_work(backend: Backend) {
    let server = TestServer::start_with(backend, |c| c.unknown_key_lookups_per_second = 5).await;
    // The known set loads while the server answers; until then every key is looked up.
    eventually(Duration::from_secs(10), "the known set loaded", || async {
        server
            .metrics()
            .await
            .contains("keyward_known_keys_loaded 1")
            .then_some(())
    })
    .await;
    let (real, _) = server.create(key_request("acme", &["videos:read"])).await;
    let unknown: Vec<String> = (0..3000)
        .map(|_| {
            KeyFormat::default()
                .generate(Environment::Live)
                .secret
                .expose()
                .to_owned()
        })
        .collect();
    let before = server.store_lookups();
    let start = std::time::Instant::now();
    let verifier = server.verifier().await;
    let calls = unknown.chunks(300).map(|chunk| {
        let mut verifier = verifier.clone();
        let chunk = chunk.to_vec();
        tokio::spawn(async move {
            for key in chunk {
                let r = verifier.verify(verify_request(&key, &[])).await.unwrap();
                assert_eq!(code(&r.into_inner()), VerifyCode::NotFound);
            }
        })
    });
    for call in calls.collect::<Vec<_>>() {
        call.await.unwrap();
    }
    // The budget is per wall-clock second: count the seconds the flood touched.
    let windows = start.elapsed().as_secs() + 2;
    let lookups = server.store_lookups() - before;
    assert!(
        lookups <= 5 * windows,
        "{lookups} store look-ups for 3000 unknown keys over {windows} budget windows"
    );
    let metrics = server.metrics().await;
    let shed: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix("keyward_unknown_keys_shed_total ")?
                .parse()
                .ok()
        })
        .expect("shed counter");
    assert!(shed + lookups >= 3000, "{shed} shed + {lookups} looked up");
    // A key this server created verifies at once, budget or not.
    assert_eq!(code(&server.verify(&real, &[]).await), VerifyCode::Valid);
    // A key another process put in the store (not in the known set yet) is still found.
    let other = keyward::server::App::open(&test_config(&server.database_url))
        .await
        .unwrap();
    let (minted, _) = other.service().mint_root_key("elsewhere").await.unwrap();
    let minted = minted.expose().to_owned();
    eventually(
        Duration::from_secs(5),
        "the minted key to verify",
        || async { (code(&server.verify(&minted, &[]).await) == VerifyCode::Valid).then_some(()) },
    )
    .await;
    other.service().store().close().await;
    server.stop().await;
}

async fn negative_cache_absorbs_unknown_keys(backend: Backend) {
    let server = TestServer::start(backend).await;
    let unknown = KeyFormat::default().generate(Environment::Live);
    let before = server.store_lookups();
    let mut verifier = server.verifier().await;
    for _ in 0..1000 {
        let r = verifier
            .verify(verify_request(unknown.secret.expose(), &[]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r), VerifyCode::NotFound);
    }
    let lookups = server.store_lookups() - before;
    assert!(
        lookups <= 2,
        "1000 verifies of one unknown key made {lookups} store lookups"
    );
    server.stop().await;
}

async fn concurrent_misses_make_one_lookup(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (secret, _) = server.create(key_request("acme", &["videos:read"])).await;
    let before = server.store_lookups();
    let verifier = server.verifier().await;
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let mut v = verifier.clone();
            let request = verify_request(&secret, &["videos:read"]);
            tokio::spawn(async move { v.verify(request).await })
        })
        .collect();
    for call in calls {
        assert_eq!(
            code(&call.await.unwrap().unwrap().into_inner()),
            VerifyCode::Valid
        );
    }
    assert_eq!(
        server.store_lookups() - before,
        1,
        "100 concurrent misses, one store lookup"
    );
    server.stop().await;
}

/// Two servers sharing one PostgreSQL database (each starts with its change feed connected).
async fn two_replicas() -> (TestServer, TestServer) {
    let (url, _) = fresh_database(Backend::Postgres).await;
    let a = TestServer::start_on(test_config(&url)).await;
    let b = TestServer::start_on(test_config(&url)).await;
    (a, b)
}

async fn until_code(server: &TestServer, secret: &str, scopes: &[&str], expected: VerifyCode) {
    let what = format!("{expected:?} on the other replica");
    eventually(Duration::from_secs(2), &what, || async {
        (code(&server.verify(secret, scopes).await) == expected).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_reach_the_other_replica() {
    let (a, b) = two_replicas().await;
    let (revoked, revoked_key) = a.create(key_request("acme", &["videos:read"])).await;
    let (rescoped, rescoped_key) = a.create(key_request("acme", &["videos:read"])).await;
    let (disabled, _) = a.create(key_request("globex", &["videos:read"])).await;
    // B caches all three.
    for secret in [&revoked, &rescoped, &disabled] {
        assert_eq!(
            code(&b.verify(secret, &["videos:read"]).await),
            VerifyCode::Valid
        );
    }
    // The notification of A's create may reach B after B cached the key and drop it once;
    // from then on B answers from its cache.
    eventually(
        Duration::from_secs(2),
        "B to answer from its cache",
        || async {
            let lookups = b.store_lookups();
            assert_eq!(code(&b.verify(&revoked, &[]).await), VerifyCode::Valid);
            (b.store_lookups() == lookups).then_some(())
        },
    )
    .await;

    let mut manage = a.manage().await;
    manage
        .revoke_key(a.root(proto::RevokeKeyRequest { id: revoked_key.id }))
        .await
        .unwrap();
    until_code(&b, &revoked, &[], VerifyCode::Revoked).await;

    manage
        .update_key(a.root(proto::UpdateKeyRequest {
            id: rescoped_key.id,
            scopes: vec!["videos:write".into()],
            update_mask: Some(FieldMask {
                paths: vec!["scopes".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    until_code(
        &b,
        &rescoped,
        &["videos:read"],
        VerifyCode::InsufficientScope,
    )
    .await;

    manage
        .update_account(a.root(proto::UpdateAccountRequest {
            account_id: "globex".into(),
            disabled: true,
            update_mask: Some(FieldMask {
                paths: vec!["disabled".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    until_code(&b, &disabled, &[], VerifyCode::AccountDisabled).await;
    a.stop().await;
    b.stop().await;
}

/// A change made while the listener is away is not notified; dropping the listener makes the
/// replica re-read its cached keys, so the change is seen anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_listener_makes_the_cache_reread() {
    let (url, _) = fresh_database(Backend::Postgres).await;
    let server = TestServer::start_on(test_config(&url)).await;
    let service = server.service.clone();
    let (secret, key) = server.create(key_request("acme", &["videos:read"])).await;
    assert_eq!(code(&server.verify(&secret, &[]).await), VerifyCode::Valid);

    // Revoke behind keyward's back: no notification is sent.
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("UPDATE api_keys SET revoked_at = 1 WHERE id = $1")
        .bind(&key.id)
        .execute(&mut db)
        .await
        .unwrap();
    assert_eq!(
        code(&server.verify(&secret, &[]).await),
        VerifyCode::Valid,
        "still cached"
    );

    let terminated: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(terminated, 1, "the listener connection");
    eventually(Duration::from_secs(10), "the listener to reconnect", || {
        let n = service.feed_interruptions();
        async move { (n >= 2).then_some(()) }
    })
    .await;
    until_code(&server, &secret, &[], VerifyCode::Revoked).await;
    server.stop().await;
}

/// End to end, after an 8-second outage: a revocation made through another replica as soon as
/// the database returns is seen within 3 seconds. (The unit tests in `src/cache.rs` pin the
/// mechanism: entries read while the feed is down are trusted for one second only.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_right_after_an_outage_is_not_lost() {
    let cluster = Cluster::start().expect("a cluster of our own");
    let config = || {
        let mut config = test_config(&cluster.url("postgres"));
        config.rate_limit = 1_000_000;
        config
    };
    let a = TestServer::start_on(config()).await;
    let b = TestServer::start_on(config()).await;
    let (secret, key) = a.create(key_request("acme", &["videos:read"])).await;
    assert_eq!(code(&a.verify(&secret, &[]).await), VerifyCode::Valid);

    cluster.stop_server().expect("stop PostgreSQL");
    // An 8-second outage, with A answering its cached key throughout.
    let outage = std::time::Instant::now();
    while outage.elapsed() < Duration::from_secs(8) {
        assert_eq!(code(&a.verify(&secret, &[]).await), VerifyCode::Valid);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.restart().expect("restart PostgreSQL");
    // B revokes the key as soon as the database is back.
    let revoked_at = eventually(Duration::from_secs(30), "B to revoke", || async {
        let mut manage = b.manage().await;
        manage
            .revoke_key(b.root(proto::RevokeKeyRequest { id: key.id.clone() }))
            .await
            .ok()
            .map(|_| std::time::Instant::now())
    })
    .await;
    eventually(
        Duration::from_secs(3),
        "A to see the revocation",
        || async { (code(&a.verify(&secret, &[]).await) == VerifyCode::Revoked).then_some(()) },
    )
    .await;
    assert!(revoked_at.elapsed() < Duration::from_secs(3));
    a.stop().await;
    b.stop().await;
}

/// Stops the database under a running server: cached keys keep verifying until the stale
/// limit, unknown keys and management calls get UNAVAILABLE, and the server recovers by itself
/// when the database returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_and_recovery() {
    let cluster = Cluster::start().expect("a cluster of our own");
    let mut config = test_config(&cluster.url("postgres"));
    config.cache_ttl = Duration::from_secs(1);
    config.stale_limit = Duration::from_secs(8);
    // The test polls one key for many seconds; its rate limit is not what is tested here.
    config.rate_limit = 1_000_000;
    let server = TestServer::start_on(config).await;
    let (secret, _) = server.create(key_request("acme", &["videos:read"])).await;
    assert_eq!(code(&server.verify(&secret, &[]).await), VerifyCode::Valid);
    let unknown = KeyFormat::default().generate(Environment::Live);

    cluster.stop_server().expect("stop PostgreSQL");
    // Health tells the truth: ManageService cannot work without the database, Verify can.
    eventually(
        Duration::from_secs(10),
        "ManageService NOT_SERVING",
        || async { (health_of(&server, "keyward.v1.ManageService").await == 2).then_some(()) },
    )
    .await;
    assert_eq!(health_of(&server, "keyward.v1.VerifyService").await, 1);
    // Past the cache TTL the key is re-read, fails, and is served stale.
    let stats = server.service.clone();
    eventually(Duration::from_secs(10), "a stale answer", || async {
        assert_eq!(code(&server.verify(&secret, &[]).await), VerifyCode::Valid);
        let stale = stats.cache().stats().stale_hits.load(Ordering::Relaxed);
        (stale >= 1).then_some(())
    })
    .await;
    let mut verifier = server.verifier().await;
    let status = verifier
        .verify(verify_request(unknown.secret.expose(), &[]))
        .await
        .expect_err("unknown key during the outage");
    assert_eq!(status.code(), Code::Unavailable);
    let status = server
        .manage()
        .await
        .create_key(server.root(key_request("acme", &["videos:read"])))
        .await
        .expect_err("management during the outage");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("database is unavailable"),
        "{}",
        status.message()
    );

    // Past the stale limit, the cached key is no longer vouched for.
    let status = eventually(Duration::from_secs(20), "the stale limit", || {
        let mut verifier = verifier.clone();
        let request = verify_request(&secret, &[]);
        async move { verifier.verify(request).await.err() }
    })
    .await;
    assert_eq!(status.code(), Code::Unavailable);

    cluster.restart().expect("restart PostgreSQL");
    eventually(Duration::from_secs(30), "recovery", || async {
        let mut verifier = server.verifier().await;
        let r = verifier.verify(verify_request(&secret, &[])).await.ok()?;
        (code(&r.into_inner()) == VerifyCode::Valid).then_some(())
    })
    .await;
    server.create(key_request("acme", &["videos:read"])).await;
    eventually(
        Duration::from_secs(10),
        "ManageService SERVING again",
        || async { (health_of(&server, "keyward.v1.ManageService").await == 1).then_some(()) },
    )
    .await;
    server.stop().await;
}

/// The health status of `service` (1 = SERVING, 2 = NOT_SERVING).
async fn health_of(server: &TestServer, service: &str) -> i32 {
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status
}
