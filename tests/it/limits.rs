//! Rate limits: a key's own budget, the service default, scope guardrails (also for grant_all
//! keys), cost, and units taken only when everything else passes, all or nothing.

use keyward::proto::{self, VerifyCode};
use prost_types::FieldMask;

use crate::both_backends;
use crate::helpers::{Backend, TestServer, code, key_request, verify_request};

both_backends!(
    exactly_n_valid_then_429,
    default_limit_applies,
    guardrails_apply_to_grant_all_keys_all_or_nothing,
    cost_and_denials_consume_correctly,
);

fn limited(limit: u32, seconds: i64) -> Option<proto::RateLimit> {
    Some(proto::RateLimit {
        limit,
        window: Some(prost_types::Duration { seconds, nanos: 0 }),
    })
}

async fn exactly_n_valid_then_429(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut request = key_request("acme", &["videos:read"]);
    request.rate_limit = limited(5, 60);
    let (secret, key) = server.create(request).await;
    assert_eq!(key.rate_limit.unwrap().limit, 5);
    let mut verifier = server.verifier().await;
    let mut valid = 0;
    let mut remaining_seen = Vec::new();
    for _ in 0..8 {
        let r = verifier
            .verify(verify_request(&secret, &["videos:read"]))
            .await
            .unwrap()
            .into_inner();
        match code(&r) {
            VerifyCode::Valid => {
                valid += 1;
                remaining_seen.push(r.rate_limit.expect("rate_limit on VALID").remaining);
            }
            VerifyCode::RateLimited => {
                assert_eq!(r.http_status, 429);
                assert!(!r.valid);
                let status = r.rate_limit.expect("rate_limit on 429");
                assert_eq!((status.limit, status.remaining), (5, 0));
                assert!(status.reset_at.is_some());
                let retry = r.retry_after.expect("retry_after on 429");
                assert!(retry.seconds > 0 && retry.seconds <= 60, "{retry:?}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(valid, 5, "exactly the limit is VALID in the window");
    assert_eq!(remaining_seen, [4, 3, 2, 1, 0]);

    // Raising the key's limit applies at once.
    server
        .manage()
        .await
        .update_key(server.root(proto::UpdateKeyRequest {
            id: key.id,
            rate_limit: limited(7, 60),
            update_mask: Some(FieldMask {
                paths: vec!["rate_limit".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    let r = verifier
        .verify(verify_request(&secret, &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&r), VerifyCode::Valid);
    assert_eq!(r.rate_limit.unwrap().remaining, 1);
    server.stop().await;
}

async fn default_limit_applies(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (secret, _) = server.create(key_request("acme", &["videos:read"])).await;
    let mut verifier = server.verifier().await;
    let mut codes = Vec::new();
    for _ in 0..101 {
        let r = verifier
            .verify(verify_request(&secret, &[]))
            .await
            .unwrap()
            .into_inner();
        codes.push(code(&r));
    }
    assert!(codes[..100].iter().all(|c| *c == VerifyCode::Valid));
    assert_eq!(
        codes[100],
        VerifyCode::RateLimited,
        "service default: 100 per 2 minutes"
    );
    server.stop().await;
}

async fn guardrails_apply_to_grant_all_keys_all_or_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut request = key_request("acme", &[]);
    request.grant_all = true;
    request.rate_limit = limited(60, 3600);
    let (secret, _) = server.create(request).await;
    let mut verifier = server.verifier().await;
    let mut verify = async |scopes: &[&str]| {
        verifier
            .verify(verify_request(&secret, scopes))
            .await
            .unwrap()
            .into_inner()
    };
    for i in 0..50 {
        assert_eq!(
            code(&verify(&["members:email"]).await),
            VerifyCode::Valid,
            "email {i}"
        );
    }
    // members:email allows 50 per day, whatever the key's own limit.
    for _ in 0..5 {
        let r = verify(&["members:email"]).await;
        assert_eq!(code(&r), VerifyCode::RateLimited);
        assert_eq!(
            r.rate_limit.unwrap().limit,
            50,
            "the refusing limit is reported"
        );
    }
    // Those refusals took nothing from the key's own budget: 10 of 60 are left.
    for i in 0..10 {
        let r = verify(&["videos:read"]).await;
        assert_eq!(code(&r), VerifyCode::Valid, "plain {i}");
        assert_eq!(r.rate_limit.unwrap().remaining, 9 - i);
    }
    assert_eq!(
        code(&verify(&["videos:read"]).await),
        VerifyCode::RateLimited
    );
    server.stop().await;
}

async fn cost_and_denials_consume_correctly(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut request = key_request("acme", &["videos:read"]);
    request.rate_limit = limited(5, 60);
    let (secret, _) = server.create(request).await;
    let mut verifier = server.verifier().await;
    // Denied for another reason: no units taken.
    for _ in 0..10 {
        let r = verifier
            .verify(verify_request(&secret, &["billing:write"]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&r), VerifyCode::InsufficientScope);
    }
    let mut costly = verify_request(&secret, &[]);
    costly.cost = 3;
    let r = verifier.verify(costly.clone()).await.unwrap().into_inner();
    assert_eq!(
        (code(&r), r.rate_limit.unwrap().remaining),
        (VerifyCode::Valid, 2)
    );
    let r = verifier.verify(costly).await.unwrap().into_inner();
    assert_eq!(code(&r), VerifyCode::RateLimited, "3 more do not fit in 2");
    let r = verifier
        .verify(verify_request(&secret, &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (code(&r), r.rate_limit.unwrap().remaining),
        (VerifyCode::Valid, 1),
        "cost 0 means 1"
    );
    server.stop().await;
}
