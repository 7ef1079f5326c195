//! The active-key limit at any account size: the database keeps a count of each account's
//! keys that are neither revoked nor replaced, it follows every kind of change, and a create
//! counts the account's keys only when that count reaches the limit.

use keyward::key::KeyDigest;
use keyward::proto::{self, Environment, ImportOutcome};
use prost_types::FieldMask;
use tonic::Code;

use crate::both_backends;
use crate::helpers::{Backend, TestServer, db_i64, key_request};

both_backends!(
    the_count_follows_every_change,
    a_create_counts_the_keys_only_at_the_limit,
);

/// The database's count for `account`, and the keys it must equal.
async fn counted(server: &TestServer, account: &str) -> (i64, i64) {
    let url = &server.database_url;
    let sum = db_i64(
        url,
        &format!(
            "SELECT CAST(COALESCE(SUM(live), 0) AS BIGINT) FROM account_key_counts \
             WHERE account_id = '{account}'"
        ),
    )
    .await;
    let keys = db_i64(
        url,
        &format!(
            "SELECT COUNT(*) FROM api_keys WHERE account_id = '{account}' \
             AND revoked_at IS NULL AND replaced_by IS NULL"
        ),
    )
    .await;
    (sum, keys)
}

async fn set_limit(server: &TestServer, account: &str, max: u32) {
    server
        .manage()
        .await
        .update_account(server.root(proto::UpdateAccountRequest {
            account_id: account.into(),
            max_active_keys: max,
            update_mask: Some(FieldMask {
                paths: vec!["max_active_keys".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
}

fn imported(raw: &str, account: &str) -> proto::ImportedKey {
    proto::ImportedKey {
        sha256: KeyDigest::of(raw).to_hex(),
        prefix: raw.chars().take(12).collect(),
        account_id: account.into(),
        name: "imported".into(),
        environment: Environment::Live.into(),
        scopes: vec!["videos:read".into()],
        ..Default::default()
    }
}

async fn the_count_follows_every_change(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.foreign_key_prefixes = vec!["sk_live_".into()];
    })
    .await;
    let mut manage = server.manage().await;
    set_limit(&server, "acme", 100).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            server
                .create(key_request("acme", &["videos:read"]))
                .await
                .1
                .id,
        );
    }
    server.create(key_request("other", &["videos:read"])).await;
    assert_eq!(counted(&server, "acme").await, (5, 5), "creates");

    // Imports, a repeated one included (nothing stored twice, nothing counted twice).
    let keys: Vec<_> = (0..3)
        .map(|i| imported(&format!("sk_live_counted{i:020}"), "acme"))
        .collect();
    for expected in [ImportOutcome::Imported, ImportOutcome::AlreadyPresent] {
        let results = manage
            .import_keys(server.root(proto::ImportKeysRequest { keys: keys.clone() }))
            .await
            .unwrap()
            .into_inner()
            .results;
        assert!(results.iter().all(|r| r.outcome == expected as i32));
    }
    assert_eq!(counted(&server, "acme").await, (8, 8), "imports");

    // A rotation with a grace period: the new key counts, the replaced one no longer does.
    manage
        .rotate_key(server.root(proto::RotateKeyRequest {
            id: ids[0].clone(),
            grace_period: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
        }))
        .await
        .unwrap();
    // One without: the old key is revoked and replaced at once.
    manage
        .rotate_key(server.root(proto::RotateKeyRequest {
            id: ids[1].clone(),
            grace_period: Some(prost_types::Duration {
                seconds: 0,
                nanos: 0,
            }),
        }))
        .await
        .unwrap();
    assert_eq!(counted(&server, "acme").await, (8, 8), "rotations");

    // An update changes nothing; a revocation, once (revoking again is a no-op).
    manage
        .update_key(server.root(proto::UpdateKeyRequest {
            id: ids[2].clone(),
            name: "renamed".into(),
            update_mask: Some(FieldMask {
                paths: vec!["name".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    for _ in 0..2 {
        manage
            .revoke_key(server.root(proto::RevokeKeyRequest { id: ids[3].clone() }))
            .await
            .unwrap();
    }
    // A replaced key in its grace period, revoked: it no longer counted.
    manage
        .revoke_key(server.root(proto::RevokeKeyRequest { id: ids[0].clone() }))
        .await
        .unwrap();
    assert_eq!(
        counted(&server, "acme").await,
        (7, 7),
        "update and revocations"
    );

    // Many creates (PostgreSQL folds an account's rows as they pile up), then offboarding.
    for _ in 0..40 {
        server.create(key_request("acme", &["videos:read"])).await;
    }
    assert_eq!(counted(&server, "acme").await, (47, 47), "many creates");
    let rows = db_i64(
        &server.database_url,
        "SELECT COUNT(*) FROM account_key_counts WHERE account_id = 'acme'",
    )
    .await;
    assert!(rows <= 34, "{rows} rows: folded as they pile up");
    manage
        .revoke_account_keys(server.root(proto::RevokeAccountKeysRequest {
            account_id: "acme".into(),
        }))
        .await
        .unwrap();
    assert_eq!(counted(&server, "acme").await, (0, 0), "offboarding");
    assert_eq!(counted(&server, "other").await, (1, 1), "another account");
    server.stop().await;
}

/// Below the limit a create trusts the database's count and counts no keys; at it, the
/// account's active keys are counted, so expired keys free their places.
async fn a_create_counts_the_keys_only_at_the_limit(backend: Backend) {
    let server = TestServer::start(backend).await;
    let url = server.database_url.clone();
    set_limit(&server, "acme", 2).await;
    for _ in 0..2 {
        server.create(key_request("acme", &["videos:read"])).await;
    }
    // The count, made to say 0 behind the server's back: the next create takes its word
    // (were the keys counted, it would be refused).
    db_i64(
        &url,
        "DELETE FROM account_key_counts WHERE account_id = 'acme'",
    )
    .await;
    server.create(key_request("acme", &["videos:read"])).await;

    // The count told the truth again (3 keys; one row, the last create's): at the limit,
    // the keys are counted.
    db_i64(
        &url,
        "UPDATE account_key_counts SET live = live + 2 WHERE account_id = 'acme'",
    )
    .await;
    assert_eq!(counted(&server, "acme").await, (3, 3));
    let refused = server
        .manage()
        .await
        .create_key(server.root(key_request("acme", &["videos:read"])))
        .await
        .expect_err("at the limit");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("has 3 active keys and may have at most 2"),
        "{}",
        refused.message()
    );

    // Two keys expired (still counted, no longer active): a create counts and is accepted.
    db_i64(
        &url,
        "UPDATE api_keys SET expires_at = 1 WHERE seq IN \
         (SELECT seq FROM api_keys WHERE account_id = 'acme' ORDER BY seq LIMIT 2)",
    )
    .await;
    server.create(key_request("acme", &["videos:read"])).await;
    assert_eq!(counted(&server, "acme").await, (4, 4));
    server.stop().await;
}
