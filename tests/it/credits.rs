//! Usage credits: a total budget per key, spent by valid verifies, refused with
//! USAGE_EXCEEDED at zero, all or nothing with the rate limits, topped up race-free, refilled,
//! moved by rotation, carried in every face's answer, and never overspent.

use keyward::proto::{self, VerifyCode};
use prost_types::FieldMask;

use crate::both_backends;
use crate::helpers::{
    Backend, TestServer, code, fresh_database, http, key_request, test_config, verify_request,
};

both_backends!(
    credits_are_spent_then_refused_and_topped_up,
    credits_and_rate_limits_are_all_or_nothing,
    a_due_refill_restores_the_balance,
    rotation_moves_the_balance,
    concurrent_spending_and_top_ups_never_overspend,
);

fn credits(remaining: u64) -> Option<proto::Credits> {
    Some(proto::Credits {
        remaining,
        refill: None,
        refilled_at: None,
    })
}

async fn create_with(
    server: &TestServer,
    credits: Option<proto::Credits>,
    limit: u32,
) -> (String, String) {
    let mut request = key_request("acme", &["videos:read"]);
    request.credits = credits;
    request.rate_limit = Some(proto::RateLimit {
        limit,
        window: Some(prost_types::Duration {
            seconds: 120,
            nanos: 0,
        }),
    });
    let (secret, key) = server.create(request).await;
    (secret, key.id)
}

async fn update(server: &TestServer, request: proto::UpdateKeyRequest) -> proto::ApiKey {
    server
        .manage()
        .await
        .update_key(server.root(request))
        .await
        .expect("update key")
        .into_inner()
        .api_key
        .expect("api_key")
}

async fn add_credits(server: &TestServer, id: &str, units: i64) -> proto::ApiKey {
    update(
        server,
        proto::UpdateKeyRequest {
            id: id.into(),
            add_credits: units,
            update_mask: Some(FieldMask {
                paths: vec!["add_credits".into()],
            }),
            ..Default::default()
        },
    )
    .await
}

async fn stored_credits(server: &TestServer, id: &str) -> Option<proto::Credits> {
    server
        .manage()
        .await
        .get_key(server.root(proto::GetKeyRequest { id: id.into() }))
        .await
        .expect("get key")
        .into_inner()
        .api_key
        .expect("api_key")
        .credits
}

async fn credits_are_spent_then_refused_and_topped_up(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (secret, id) = create_with(&server, credits(5), 100).await;
    assert_eq!(
        stored_credits(&server, &id)
            .await
            .expect("credits")
            .remaining,
        5
    );
    let mut left = Vec::new();
    for _ in 0..5 {
        let answer = server.verify(&secret, &[]).await;
        assert_eq!(code(&answer), VerifyCode::Valid);
        left.push(answer.credits.expect("credits on VALID").remaining);
    }
    assert_eq!(left, [4, 3, 2, 1, 0]);
    let refused = server.verify(&secret, &[]).await;
    assert_eq!(code(&refused), VerifyCode::UsageExceeded);
    assert_eq!(refused.http_status, 429);
    assert_eq!(refused.retry_after, None, "no refill: no retry_after");
    assert_eq!(refused.credits.expect("credits").remaining, 0);
    assert!(refused.key.is_some(), "the key is named on the denial");

    // Forward auth says the same, with the credits header.
    let auth = http(server.http_addr, "GET", "/auth", &[("x-api-key", &secret)]).await;
    assert_eq!(auth.status, 429);
    assert_eq!(auth.header("x-keyward-credits-remaining"), Some("0"));
    assert_eq!(auth.json()["code"], "USAGE_EXCEEDED");

    // A top-up is seen at once; taking more than is left is refused and changes nothing.
    assert_eq!(
        add_credits(&server, &id, 2)
            .await
            .credits
            .expect("credits")
            .remaining,
        2
    );
    let status = server
        .manage()
        .await
        .update_key(server.root(proto::UpdateKeyRequest {
            id: id.clone(),
            add_credits: -3,
            update_mask: Some(FieldMask {
                paths: vec!["add_credits".into()],
            }),
            ..Default::default()
        }))
        .await
        .expect_err("below zero is refused");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    let auth = http(server.http_addr, "GET", "/auth", &[("x-api-key", &secret)]).await;
    assert_eq!(auth.status, 200);
    assert_eq!(auth.header("x-keyward-credits-remaining"), Some("1"));
    assert_eq!(code(&server.verify(&secret, &[]).await), VerifyCode::Valid);
    assert_eq!(
        code(&server.verify(&secret, &[]).await),
        VerifyCode::UsageExceeded
    );
    // A key without credits is unlimited and says nothing of them.
    let (plain, _) = create_with(&server, None, 100).await;
    assert_eq!(server.verify(&plain, &[]).await.credits, None);
    server.stop().await;
}

/// A request one budget refuses takes nothing from the other; spent credits win over an
/// exhausted rate limit (USAGE_EXCEEDED is checked first).
async fn credits_and_rate_limits_are_all_or_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (secret, id) = create_with(&server, credits(10), 3).await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(code(&server.verify(&secret, &[]).await));
    }
    assert_eq!(
        codes,
        [
            VerifyCode::Valid,
            VerifyCode::Valid,
            VerifyCode::Valid,
            VerifyCode::RateLimited,
            VerifyCode::RateLimited
        ]
    );
    // Raise the rate limit: the two refusals took no credits (10 - 3 = 7 left).
    update(
        &server,
        proto::UpdateKeyRequest {
            id: id.clone(),
            rate_limit: Some(proto::RateLimit {
                limit: 100,
                window: Some(prost_types::Duration {
                    seconds: 120,
                    nanos: 0,
                }),
            }),
            update_mask: Some(FieldMask {
                paths: vec!["rate_limit".into()],
            }),
            ..Default::default()
        },
    )
    .await;
    let answer = server.verify(&secret, &[]).await;
    assert_eq!(code(&answer), VerifyCode::Valid);
    assert_eq!(answer.credits.expect("credits").remaining, 6);

    let (both, _) = create_with(&server, credits(2), 2).await;
    for _ in 0..2 {
        assert_eq!(code(&server.verify(&both, &[]).await), VerifyCode::Valid);
    }
    assert_eq!(
        code(&server.verify(&both, &[]).await),
        VerifyCode::UsageExceeded
    );
    server.stop().await;
}

/// A key whose daily refill fell due since its last refill gets the refill amount back, and
/// a spent key says when the next refill comes.
async fn a_due_refill_restores_the_balance(backend: Backend) {
    let server = TestServer::start(backend).await;
    let refill = |amount| proto::Credits {
        remaining: 0,
        refill: Some(proto::Refill {
            amount,
            interval: proto::RefillInterval::Daily.into(),
            day_of_month: 0,
        }),
        refilled_at: None,
    };
    let (secret, id) = create_with(&server, Some(refill(3)), 100).await;
    let refused = server.verify(&secret, &[]).await;
    assert_eq!(code(&refused), VerifyCode::UsageExceeded);
    let retry = refused.retry_after.expect("a refill is due: retry_after");
    assert!(retry.seconds > 0 && retry.seconds <= 86_400, "{retry:?}");
    assert!(refused.credits.expect("credits").refill_at.is_some());
    // Its last refill two days ago: the next verify refills.
    let two_days_ago = keyward::time::Timestamp::now().micros() - 2 * 86_400 * 1_000_000;
    sql(
        &server.database_url,
        &format!("UPDATE api_keys SET refilled_at = {two_days_ago} WHERE id = '{id}'"),
    )
    .await;
    // Read the key again (a change made behind keyward's back is not announced).
    add_credits(&server, &id, 0).await;
    let mut valid = 0;
    for _ in 0..5 {
        if code(&server.verify(&secret, &[]).await) == VerifyCode::Valid {
            valid += 1;
        }
    }
    assert_eq!(valid, 3, "refilled to 3");
    // Refill terms are checked.
    let mut bad = key_request("acme", &["videos:read"]);
    bad.credits = Some(proto::Credits {
        refill: Some(proto::Refill {
            amount: 0,
            interval: proto::RefillInterval::Monthly.into(),
            day_of_month: 40,
        }),
        ..refill(1)
    });
    let status = server
        .manage()
        .await
        .create_key(server.root(bad))
        .await
        .expect_err("bad refill");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("credits.refill"), "{status:?}");
    // A balance the database cannot hold is refused, not clamped.
    let mut huge = key_request("acme", &["videos:read"]);
    huge.credits = credits(u64::MAX);
    let status = server
        .manage()
        .await
        .create_key(server.root(huge))
        .await
        .expect_err("too large a balance");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("credits.remaining"), "{status:?}");
    server.stop().await;
}

async fn sql(database_url: &str, statement: &str) {
    use sqlx::Connection;
    if database_url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(database_url).await.unwrap();
        sqlx::query(statement).execute(&mut c).await.unwrap();
    } else {
        let mut c = sqlx::SqliteConnection::connect(database_url).await.unwrap();
        sqlx::query(statement).execute(&mut c).await.unwrap();
    }
}

/// Rotation moves the balance to the new key: the two keys together never spend more than
/// the one had.
async fn rotation_moves_the_balance(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (old, id) = create_with(&server, credits(10), 100).await;
    for _ in 0..2 {
        assert_eq!(code(&server.verify(&old, &[]).await), VerifyCode::Valid);
    }
    let rotated = server
        .manage()
        .await
        .rotate_key(server.root(proto::RotateKeyRequest {
            id: id.clone(),
            grace_period: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
        }))
        .await
        .expect("rotate")
        .into_inner();
    assert!(rotated.api_key.expect("new key").credits.is_some());
    let mut valid = 0;
    for _ in 0..10 {
        for secret in [&old, &rotated.key] {
            if code(&server.verify(secret, &[]).await) == VerifyCode::Valid {
                valid += 1;
            }
        }
    }
    assert_eq!(valid, 8, "10 credits, 2 spent before the rotation");
    server.stop().await;
}

/// Many verifies and top-ups at once, on two replicas where the backend has them: VALID
/// answers never exceed the credits given, and after a graceful stop the database holds
/// exactly what was not spent (unspent blocks are given back).
async fn concurrent_spending_and_top_ups_never_overspend(backend: Backend) {
    let (url, _dir) = fresh_database(backend).await;
    let mut replicas = vec![TestServer::start_on(test_config(&url)).await];
    if backend == Backend::Postgres {
        replicas.push(TestServer::start_on(test_config(&url)).await);
    }
    let (secret, id) = create_with(&replicas[0], credits(100), 1_000_000).await;
    // Verifies and top-ups interleaved: ten top-ups of 5 among 300 verifies.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..300 {
        let replica = &replicas[i % replicas.len()];
        if i % 30 == 15 {
            let mut manage = replica.manage().await;
            let request = replica.root(proto::UpdateKeyRequest {
                id: id.clone(),
                add_credits: 5,
                update_mask: Some(FieldMask {
                    paths: vec!["add_credits".into()],
                }),
                ..Default::default()
            });
            calls.spawn(async move {
                manage.update_key(request).await.expect("top-up");
                0
            });
        }
        let mut verifier = replica.verifier().await;
        let secret = secret.clone();
        calls.spawn(async move {
            let answer = verifier
                .verify(verify_request(&secret, &[]))
                .await
                .expect("verify answers")
                .into_inner();
            i32::from(code(&answer) == VerifyCode::Valid)
        });
    }
    let valid: i32 = calls.join_all().await.into_iter().sum();
    assert!(valid <= 150, "{valid} VALID with 150 credits given");
    assert!(
        valid >= 100,
        "{valid} VALID: the first 100 credits were there all along"
    );
    for replica in replicas {
        replica.stop().await;
    }
    let after = TestServer::start_on(test_config(&url)).await;
    let left = stored_credits(&after, &id)
        .await
        .expect("credits")
        .remaining;
    assert_eq!(
        left + u64::try_from(valid).unwrap(),
        150,
        "the database holds what was not spent"
    );
    after.stop().await;
}
