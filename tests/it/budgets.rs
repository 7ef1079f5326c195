//! Rate limits shared across replicas through a real Valkey/Redis: never over the limit, close
//! to it under excess demand, windows kept across restarts, few engine commands per Verify,
//! and local counters while the engine is away.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keyward::config::Config;
use keyward::proto::{self, VerifyCode};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::both_backends;
use crate::helpers::{
    Backend, TestServer, code, eventually, fresh_database, key_request, test_config, verify_request,
};
use crate::valkey::{self, Engine};

both_backends!(an_account_limit_is_shared_by_its_keys_all_or_nothing);

/// Sets `account`'s shared rate limit through UpdateAccount.
async fn limit_account(server: &TestServer, account: &str, limit: u32, seconds: i64) {
    let account = server
        .manage()
        .await
        .update_account(server.root(proto::UpdateAccountRequest {
            account_id: account.into(),
            rate_limit: limited(limit, seconds),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["rate_limit".into()],
            }),
            ..Default::default()
        }))
        .await
        .expect("update account")
        .into_inner()
        .account
        .expect("account");
    assert_eq!(account.rate_limit.expect("rate_limit").limit, limit);
}

/// One replica, its own counters: the account's limit caps its keys together; a request one
/// limit refuses takes nothing from the others.
async fn an_account_limit_is_shared_by_its_keys_all_or_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut one = key_request("acme", &["videos:read"]);
    one.rate_limit = limited(2, 120);
    let (one, _) = server.create(one).await;
    let mut two = key_request("acme", &["videos:read"]);
    two.rate_limit = limited(100, 120);
    let (two, _) = server.create(two).await;
    // Verified before the account had a limit: cached, then re-read when the account changes.
    assert_eq!(code(&server.verify(&two, &[]).await), VerifyCode::Valid);
    limit_account(&server, "acme", 5, 120).await;

    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(code(&server.verify(&one, &[]).await));
    }
    // The key's own limit refused the third: the account's units were not taken.
    assert_eq!(
        codes,
        [
            VerifyCode::Valid,
            VerifyCode::Valid,
            VerifyCode::RateLimited
        ]
    );
    let mut valid = 0;
    let mut refusal = None;
    for _ in 0..4 {
        let answer = server.verify(&two, &[]).await;
        match code(&answer) {
            VerifyCode::Valid => valid += 1,
            VerifyCode::RateLimited => refusal = Some(answer),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        valid, 3,
        "5 for the account, 2 of them spent by the other key"
    );
    // The refusal names the account's limit.
    let status = refusal.expect("a refusal").rate_limit.expect("status");
    assert_eq!((status.limit, status.remaining), (5, 0));
    // Another account is not affected.
    let (other, _) = server.create(key_request("globex", &["videos:read"])).await;
    assert_eq!(code(&server.verify(&other, &[]).await), VerifyCode::Valid);
    server.stop().await;
}

fn limited(limit: u32, seconds: i64) -> Option<proto::RateLimit> {
    Some(proto::RateLimit {
        limit,
        window: Some(prost_types::Duration { seconds, nanos: 0 }),
    })
}

fn shared(database_url: &str, engine_url: &str) -> Config {
    let mut config = test_config(database_url);
    config.rate_limit_store = Some(keyward::ratelimit::engine::EngineUrl::new(engine_url));
    config
}

/// Three replicas on one PostgreSQL and one engine.
async fn three_replicas(engine_url: &str) -> Vec<TestServer> {
    let (url, _) = fresh_database(Backend::Postgres).await;
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(TestServer::start_on(shared(&url, engine_url)).await);
    }
    replicas
}

/// The metric's value in the server's Prometheus text.
async fn metric(server: &TestServer, line_start: &str) -> Option<f64> {
    server
        .metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(line_start)?.trim().parse().ok())
}

/// Sends `count` verifies of `secret`, round-robin over `replicas`, eight at a time; returns
/// the VALID answers' window ends (µs) and how many were RATE_LIMITED.
async fn round_robin(
    replicas: &[TestServer],
    secret: &str,
    scopes: &[&str],
    count: usize,
) -> (Vec<i64>, usize) {
    let mut clients = Vec::new();
    for replica in replicas {
        clients.push(replica.verifier().await);
    }
    let mut valid = Vec::new();
    let mut limited = 0;
    for round in (0..count).collect::<Vec<_>>().chunks(8) {
        let mut calls = tokio::task::JoinSet::new();
        for i in round {
            let mut client = clients[i % clients.len()].clone();
            let request = verify_request(secret, scopes);
            calls.spawn(async move {
                client
                    .verify(request)
                    .await
                    .expect("verify answers")
                    .into_inner()
            });
        }
        for answer in calls.join_all().await {
            match code(&answer) {
                VerifyCode::Valid => {
                    let reset = answer.rate_limit.expect("status").reset_at.expect("reset");
                    valid.push(reset.seconds * 1_000_000 + i64::from(reset.nanos / 1000));
                }
                VerifyCode::RateLimited => limited += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    (valid, limited)
}

/// Counts of VALID answers per window (by the window end every replica reports).
fn per_window(valid: &[i64]) -> BTreeMap<i64, usize> {
    let mut windows = BTreeMap::new();
    for reset in valid {
        *windows.entry(*reset).or_insert(0) += 1;
    }
    windows
}

/// Three replicas behind round-robin, demand three times the limit: at most the limit is
/// VALID in the window, and at least 95 % of it, for 100 per 2 minutes and 1000 per minute;
/// a scope guardrail is shared the same way.
#[tokio::test]
async fn three_replicas_admit_the_limit_and_no_more() {
    let replicas = three_replicas(&valkey::fresh_url()).await;
    for (limit, seconds) in [(100u32, 120i64), (1000, 60)] {
        let mut request = key_request("acme", &["videos:read"]);
        request.rate_limit = limited(limit, seconds);
        let (secret, _) = replicas[0].create(request).await;
        let (valid, refused) =
            round_robin(&replicas, &secret, &["videos:read"], 3 * limit as usize).await;
        let windows = per_window(&valid);
        assert_eq!(windows.len(), 1, "one window: {windows:?}");
        let admitted = valid.len();
        assert!(
            admitted <= limit as usize && admitted * 100 >= 95 * limit as usize,
            "{admitted} VALID of a limit of {limit} (3 × {limit} asked, {refused} refused)"
        );
    }
    // The guardrail of members:email is 50 a day, per key, over every replica.
    let (secret, _) = replicas[0]
        .create(key_request("acme", &["members:email"]))
        .await;
    let (valid, _) = round_robin(&replicas, &secret, &["members:email"], 150).await;
    assert!(
        valid.len() <= 50 && valid.len() >= 48,
        "{} VALID of a guardrail of 50",
        valid.len()
    );
    for replica in replicas {
        replica.stop().await;
    }
}

/// An account's limit, shared by its keys, holds across three replicas too.
#[tokio::test]
async fn an_account_limit_holds_across_replicas() {
    let replicas = three_replicas(&valkey::fresh_url()).await;
    let mut secrets = Vec::new();
    for _ in 0..3 {
        let mut request = key_request("acme", &["videos:read"]);
        request.rate_limit = limited(1000, 120);
        secrets.push(replicas[0].create(request).await.0);
    }
    limit_account(&replicas[0], "acme", 90, 120).await;
    let mut admitted = 0;
    for secret in &secrets {
        admitted += round_robin(&replicas, secret, &[], 90).await.0.len();
    }
    assert!(
        (86..=90).contains(&admitted),
        "{admitted} VALID for an account limit of 90 (270 asked over three keys)"
    );
    for replica in replicas {
        replica.stop().await;
    }
}

/// 10 per second, asked for as fast as three replicas answer for 2.5 s: every window admits
/// at most 10, and every window the run covered whole admits at least 9.5 (so: 10).
#[tokio::test]
async fn short_windows_hold_across_replicas() {
    let replicas = three_replicas(&valkey::fresh_url()).await;
    let mut request = key_request("acme", &["videos:read"]);
    request.rate_limit = limited(10, 1);
    let (secret, _) = replicas[0].create(request).await;
    let start = Instant::now();
    let mut valid = Vec::new();
    while start.elapsed() < Duration::from_millis(2500) {
        let (more, _) = round_robin(&replicas, &secret, &["videos:read"], 24).await;
        valid.extend(more);
    }
    let windows = per_window(&valid);
    assert!(windows.len() >= 2, "{windows:?}");
    for (end, admitted) in &windows {
        assert!(
            *admitted <= 10,
            "window ending {end}: {admitted} VALID: {windows:?}"
        );
    }
    // The first and the last window may be cut by the run's start and end.
    let whole: Vec<usize> = windows.values().copied().collect();
    for admitted in &whole[1..whole.len() - 1] {
        assert_eq!(*admitted, 10, "{windows:?}");
    }
    for replica in replicas {
        replica.stop().await;
    }
}

/// A restarted replica does not hand a key a fresh window: the count lives in the engine.
#[tokio::test]
async fn a_restart_keeps_the_window() {
    let engine_url = valkey::fresh_url();
    let (url, _dir) = fresh_database(Backend::Sqlite).await;
    let server = TestServer::start_on(shared(&url, &engine_url)).await;
    let mut request = key_request("acme", &["videos:read"]);
    request.rate_limit = limited(5, 120);
    let (secret, _) = server.create(request).await;
    for _ in 0..5 {
        assert_eq!(code(&server.verify(&secret, &[]).await), VerifyCode::Valid);
    }
    assert_eq!(
        code(&server.verify(&secret, &[]).await),
        VerifyCode::RateLimited
    );
    server.stop().await;

    let restarted = TestServer::start_on(shared(&url, &engine_url)).await;
    let answer = restarted.verify(&secret, &[]).await;
    assert_eq!(code(&answer), VerifyCode::RateLimited);
    assert!(answer.retry_after.expect("retry_after").seconds > 60);
    restarted.stop().await;

    // Without the engine, the same restart would have started afresh.
    let alone = TestServer::start_on(test_config(&url)).await;
    assert_eq!(code(&alone.verify(&secret, &[]).await), VerifyCode::Valid);
    alone.stop().await;
}

/// At saturation over keys that use less than half their limit, the engine sees at most one
/// command per 20 Verifies once blocks have grown (commands its scripts run included).
#[tokio::test]
async fn verifies_rarely_reach_the_engine() {
    let engine = Engine::start().expect("an engine");
    let (url, _dir) = fresh_database(Backend::Sqlite).await;
    let server = TestServer::start_on(shared(&url, &engine.url())).await;
    let mut secrets = Vec::new();
    for i in 0..20 {
        let mut request = key_request(&format!("acct{i}"), &["videos:read"]);
        request.rate_limit = limited(1_000_000, 60);
        secrets.push(server.create(request).await.0);
    }
    let mut verifier = server.verifier().await;
    let mut verify_all = async |times: usize| {
        for _ in 0..times {
            for secret in &secrets {
                let answer = verifier
                    .verify(verify_request(secret, &[]))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(code(&answer), VerifyCode::Valid);
            }
        }
    };
    verify_all(100).await;
    let before = engine.commands();
    verify_all(500).await;
    let commands = engine.commands() - before;
    let verifies = 20 * 500;
    assert!(
        commands * 20 <= verifies,
        "{commands} engine commands for {verifies} Verifies"
    );
    // And they did go through the engine: the count is there.
    assert!(engine.commands() > 0);
    server.stop().await;
}

/// The engine stops mid-load: Verify keeps answering (never an error), on local counters at
/// the limit divided by the replicas last seen; health stays SERVING; a metric says so; when
/// the engine is back, the shared mode resumes by itself.
#[tokio::test]
async fn an_engine_outage_falls_back_to_local_counters_and_recovers() {
    let engine = Engine::start().expect("an engine");
    let (url, _) = fresh_database(Backend::Postgres).await;
    let a = TestServer::start_on(shared(&url, &engine.url())).await;
    let b = TestServer::start_on(shared(&url, &engine.url())).await;
    eventually(Duration::from_secs(15), "both replicas seen", || async {
        (metric(&a, "keyward_rate_limit_store_replicas ").await == Some(2.0)).then_some(())
    })
    .await;
    assert_eq!(metric(&a, "keyward_rate_limit_store_up ").await, Some(1.0));
    let mut request = key_request("acme", &["videos:read"]);
    request.rate_limit = limited(10, 120);
    let (secret, _) = a.create(request).await;
    // Two replicas: a's blocks are of 10 ÷ (2 × 2) = 2 units; these two spend the first.
    for _ in 0..2 {
        assert_eq!(code(&a.verify(&secret, &[]).await), VerifyCode::Valid);
    }

    engine.stop();
    // Every call answers; on replica a, half the limit (two replicas) in a fresh local window.
    let mut valid = 0;
    for _ in 0..8 {
        match code(&a.verify(&secret, &[]).await) {
            VerifyCode::Valid => valid += 1,
            VerifyCode::RateLimited => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(valid, 5, "10 ÷ 2 replicas on local counters");
    assert_eq!(metric(&a, "keyward_rate_limit_store_up ").await, Some(0.0));
    assert!(
        metric(&a, "keyward_rate_limit_fallback_decisions_total ")
            .await
            .unwrap_or(0.0)
            >= 8.0
    );
    let mut health = HealthClient::new(a.channel().await);
    let status = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);

    engine.restart().expect("the engine restarts");
    // Both replicas back in shared mode (each reconnects on its own).
    for server in [&a, &b] {
        eventually(
            Duration::from_secs(15),
            "the shared mode to resume",
            || async {
                (metric(server, "keyward_rate_limit_store_up ").await == Some(1.0)).then_some(())
            },
        )
        .await;
    }
    // Shared again: the engine (empty after its restart) counts the key's new window.
    let granted = |server| async move {
        metric(
            server,
            "keyward_rate_limit_reservations_total{result=\"granted\"} ",
        )
        .await
        .unwrap_or(0.0)
    };
    let before = granted(&b).await;
    assert_eq!(code(&b.verify(&secret, &[]).await), VerifyCode::Valid);
    assert!(
        granted(&b).await > before,
        "b reserved from the engine again"
    );
    a.stop().await;
    b.stop().await;
}
