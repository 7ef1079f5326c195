//! Offboarding an account: every key of it that still works revoked in one call, audited per
//! key, seen by every replica.

use std::time::Duration;

use keyward::proto::{self, Environment, VerifyCode};
use tonic::Code;

use crate::both_backends;
use crate::helpers::*;

both_backends!(revoke_account_keys_offboards_an_account);

async fn revoke_account_keys_offboards_an_account(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut manage = server.manage().await;
    let (k1, _) = server.create(key_request("acme", &["videos:read"])).await;
    let (k2, _) = server.create(key_request("acme", &["videos:read"])).await;
    let (k3, k3_record) = server.create(key_request("acme", &["videos:read"])).await;
    let (t1, _) = server
        .create(proto::CreateKeyRequest {
            environment: Environment::Test.into(),
            ..key_request("acme", &["videos:read"])
        })
        .await;
    // k3 replaced, still working in its grace period: offboarding must stop it too.
    let rotated = manage
        .rotate_key(server.root(proto::RotateKeyRequest {
            id: k3_record.id,
            grace_period: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let k4 = rotated.key;
    let (other, _) = server.create(key_request("globex", &["videos:read"])).await;
    let keys = [&k1, &k2, &k3, &k4, &t1];
    for key in keys {
        assert_eq!(code(&server.verify(key, &[]).await), VerifyCode::Valid);
    }

    let revoked = manage
        .revoke_account_keys(server.root(proto::RevokeAccountKeysRequest {
            account_id: "acme".into(),
        }))
        .await
        .expect("offboard")
        .into_inner()
        .api_keys;
    assert_eq!(revoked.len(), 5, "{revoked:?}");
    assert!(revoked.iter().all(|k| k.revoked && k.account_id == "acme"));
    for key in keys {
        assert_eq!(
            code(&server.verify(key, &[]).await),
            VerifyCode::Revoked,
            "revoked at once"
        );
    }
    assert_eq!(code(&server.verify(&other, &[]).await), VerifyCode::Valid);
    // Audited per key.
    let events = server.audit_events("acme").await;
    let revocations = events
        .iter()
        .filter(|e| e.action == proto::AuditAction::KeyRevoked as i32)
        .count();
    assert_eq!(revocations, 5);
    // Again: nothing left to revoke.
    let again = manage
        .revoke_account_keys(server.root(proto::RevokeAccountKeysRequest {
            account_id: "acme".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert!(again.is_empty());

    // Never the root account; a bad account id names the field.
    let status = manage
        .revoke_account_keys(server.root(proto::RevokeAccountKeysRequest {
            account_id: "root".into(),
        }))
        .await
        .expect_err("root is revoked one by one");
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = manage
        .revoke_account_keys(server.root(proto::RevokeAccountKeysRequest {
            account_id: String::new(),
        }))
        .await
        .expect_err("an account is required");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["account_id"]);

    // A test key with keys:write revokes only its account's test keys; not other accounts'.
    let (live, _) = server
        .create(key_request("initech", &["videos:read"]))
        .await;
    let (test_writer, _) = server
        .create(proto::CreateKeyRequest {
            environment: Environment::Test.into(),
            ..key_request("initech", &["keys:write", "keys:read"])
        })
        .await;
    let revoked = manage
        .revoke_account_keys(as_key(
            &test_writer,
            proto::RevokeAccountKeysRequest {
                account_id: "initech".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .api_keys;
    assert_eq!(revoked.len(), 1, "the test writer itself: {revoked:?}");
    assert_eq!(revoked.len(), 1, "the test writer itself: {revoked:?}");
    assert!(
        revoked
            .iter()
            .all(|k| k.environment == Environment::Test as i32)
    );
    assert_eq!(code(&server.verify(&live, &[]).await), VerifyCode::Valid);
    let status = manage
        .revoke_account_keys(as_key(
            &live,
            proto::RevokeAccountKeysRequest {
                account_id: "globex".into(),
            },
        ))
        .await
        .expect_err("not another account");
    assert!(matches!(
        status.code(),
        Code::PermissionDenied | Code::Unauthenticated
    ));
    server.stop().await;
}

/// Every replica stops the offboarded keys within the usual bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offboarding_reaches_the_other_replica() {
    let url = crate::pg::fresh_database().await;
    let a = TestServer::start_on(test_config(&url)).await;
    let b = TestServer::start_on(test_config(&url)).await;
    let (k1, _) = a.create(key_request("acme", &["videos:read"])).await;
    let (k2, _) = a.create(key_request("acme", &["videos:read"])).await;
    for key in [&k1, &k2] {
        assert_eq!(
            code(&b.verify(key, &[]).await),
            VerifyCode::Valid,
            "B caches it"
        );
    }
    // What the change feed carries for the whole offboarding.
    let mut feed = crate::pg::ChangeFeed::listen(&url).await;
    a.manage()
        .await
        .revoke_account_keys(a.root(proto::RevokeAccountKeysRequest {
            account_id: "acme".into(),
        }))
        .await
        .unwrap();
    let carried = feed.drain().await;
    assert_eq!(
        carried.len(),
        1,
        "one notification for the account: {carried:?}"
    );
    assert!(carried[0].ends_with(" a:acme"), "{carried:?}");
    for key in [&k1, &k2] {
        eventually(
            Duration::from_secs(2),
            "REVOKED on the other replica",
            || async { (code(&b.verify(key, &[]).await) == VerifyCode::Revoked).then_some(()) },
        )
        .await;
    }
    a.stop().await;
    b.stop().await;
}
