//! Importing keys issued elsewhere by their SHA-256: idempotent, per-record errors, verified
//! through a configured foreign prefix, revocable, and rotated into keyward's own format.

use std::time::Duration;

use keyward::key::KeyDigest;
use keyward::proto::manage_service_client::ManageServiceClient;
use keyward::proto::{self, Environment, ImportOutcome, VerifyCode};
use tonic::Code;
use tonic::transport::Channel;

use crate::both_backends;
use crate::helpers::*;

both_backends!(imported_keys_verify_rotate_and_revoke);

fn record(raw: &str, account: &str) -> proto::ImportedKey {
    proto::ImportedKey {
        sha256: KeyDigest::of(raw).to_hex(),
        prefix: raw.chars().take(12).collect(),
        account_id: account.into(),
        name: "from the old system".into(),
        environment: Environment::Live.into(),
        scopes: vec!["videos:read".into()],
        created_at: Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        last_used_at: Some(prost_types::Timestamp {
            seconds: 1_750_000_000,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// Imports `keys` in one call through `server`; every one of them must be new.
async fn import_new(
    server: &TestServer,
    manage: &mut ManageServiceClient<Channel>,
    keys: Vec<proto::ImportedKey>,
) {
    let results = manage
        .import_keys(server.root(proto::ImportKeysRequest { keys }))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(
        results
            .iter()
            .all(|r| outcome(r) == ImportOutcome::Imported)
    );
}

fn outcome(r: &proto::ImportKeyResult) -> ImportOutcome {
    ImportOutcome::try_from(r.outcome).unwrap()
}

async fn imported_keys_verify_rotate_and_revoke(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.foreign_key_prefixes = vec!["sk_live_".into()];
    })
    .await;
    let mut manage = server.manage().await;
    // The account allows one active key: imports are not held to it (documented), creates are.
    manage
        .update_account(server.root(proto::UpdateAccountRequest {
            account_id: "acme".into(),
            max_active_keys: 1,
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["max_active_keys".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    let first = "sk_live_4f2a9c81e0b7d6a5f4e3c2b1";
    let second = "sk_live_0011223344556677889900aa";
    let bad_hash = proto::ImportedKey {
        sha256: "not-hex".into(),
        ..record(first, "acme")
    };
    let bad_scope = proto::ImportedKey {
        scopes: vec!["Not A Scope".into()],
        ..record("sk_live_other", "acme")
    };
    let results = manage
        .import_keys(server.root(proto::ImportKeysRequest {
            keys: vec![
                record(first, "acme"),
                record(first, "acme"),
                bad_hash,
                bad_scope,
                record(second, "acme"),
            ],
        }))
        .await
        .expect("import")
        .into_inner()
        .results;
    let outcomes: Vec<ImportOutcome> = results.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        [
            ImportOutcome::Imported,
            ImportOutcome::AlreadyPresent,
            ImportOutcome::Rejected,
            ImportOutcome::Rejected,
            ImportOutcome::Imported,
        ]
    );
    let first_id = results[0].key_id.clone();
    assert_eq!(results[1].key_id, first_id, "one key per hash");
    assert!(
        results[2].error.starts_with("keys[2].sha256"),
        "{}",
        results[2].error
    );
    assert!(
        results[3].error.starts_with("keys[3].scopes"),
        "{}",
        results[3].error
    );

    // Idempotent: the same records again change nothing.
    let again = manage
        .import_keys(server.root(proto::ImportKeysRequest {
            keys: vec![record(first, "acme")],
        }))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(outcome(&again[0]), ImportOutcome::AlreadyPresent);
    assert_eq!(again[0].key_id, first_id);

    // Verify hashes keys with a foreign prefix; anything else off-format is still MALFORMED.
    let answer = server.verify(first, &["videos:read"]).await;
    assert_eq!(code(&answer), VerifyCode::Valid);
    assert_eq!(answer.key.unwrap().key_id, first_id);
    assert_eq!(
        code(&server.verify("sk_live_never_issued", &[]).await),
        VerifyCode::NotFound
    );
    assert_eq!(
        code(&server.verify("pk_live_4f2a9c81e0b7d6a5f4e3c2b1", &[]).await),
        VerifyCode::Malformed
    );
    // The record kept its history and shows its prefix.
    let key = manage
        .get_key(server.root(proto::GetKeyRequest {
            id: first_id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(key.prefix, "sk_live_4f2a");
    assert_eq!(key.created_at.unwrap().seconds, 1_700_000_000);
    assert_eq!(key.last_used_at.unwrap().seconds, 1_750_000_000);

    // Imports passed the limit of one; a create does not.
    let status = manage
        .create_key(server.root(key_request("acme", &["videos:read"])))
        .await
        .expect_err("the account is over its limit");
    assert_eq!(status.code(), Code::FailedPrecondition);

    // Rotation issues a keyward key; the imported one works through the grace period.
    let rotated = manage
        .rotate_key(server.root(proto::RotateKeyRequest {
            id: first_id.clone(),
            grace_period: Some(prost_types::Duration {
                seconds: 3600,
                nanos: 0,
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(rotated.key.starts_with("kw_live_"), "keyward's own format");
    assert_eq!(
        code(&server.verify(&rotated.key, &[]).await),
        VerifyCode::Valid
    );
    assert_eq!(code(&server.verify(first, &[]).await), VerifyCode::Valid);

    // Revocation.
    let second_id = results[4].key_id.clone();
    manage
        .revoke_key(server.root(proto::RevokeKeyRequest {
            id: second_id.clone(),
        }))
        .await
        .unwrap();
    assert_eq!(code(&server.verify(second, &[]).await), VerifyCode::Revoked);

    // Audited: one event for the call that stored them, naming both keys (the idempotent
    // call stored none and wrote none); root only; bounded.
    let events = server.audit_events("acme").await;
    let imports: Vec<_> = events
        .iter()
        .filter(|e| e.action == proto::AuditAction::KeysImported as i32)
        .collect();
    assert_eq!(imports.len(), 1, "{events:?}");
    let change = |field: &str| {
        imports[0]
            .changes
            .iter()
            .find(|c| c.field == field)
            .map(|c| c.new_value.clone())
    };
    assert_eq!(change("count").as_deref(), Some("2"));
    assert_eq!(
        change("key_ids"),
        Some(serde_json::json!([first_id, second_id]).to_string())
    );
    assert!(imports[0].target_key_id.is_empty());
    let (writer, _) = server.create(key_request("globex", &["keys:write"])).await;
    let status = manage
        .import_keys(as_key(
            &writer,
            proto::ImportKeysRequest {
                keys: vec![record("sk_live_x", "globex")],
            },
        ))
        .await
        .expect_err("root only");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = manage
        .import_keys(server.root(proto::ImportKeysRequest {
            keys: vec![record("sk_live_x", "globex"); 1001],
        }))
        .await
        .expect_err("too many");
    assert_eq!(violated_fields(&status), ["keys"]);

    // An imported key keeps its own rate limit: two a minute, the third is refused.
    let limited = "sk_live_ratelimited000000000000";
    let answer = manage
        .import_keys(server.root(proto::ImportKeysRequest {
            keys: vec![proto::ImportedKey {
                rate_limit: Some(proto::RateLimit {
                    limit: 2,
                    window: Some(prost_types::Duration {
                        seconds: 60,
                        nanos: 0,
                    }),
                }),
                ..record(limited, "initech")
            }],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&answer.results[0]), ImportOutcome::Imported);
    let codes = [
        code(&server.verify(limited, &[]).await),
        code(&server.verify(limited, &[]).await),
        code(&server.verify(limited, &[]).await),
    ];
    assert_eq!(
        codes,
        [
            VerifyCode::Valid,
            VerifyCode::Valid,
            VerifyCode::RateLimited
        ]
    );
    let bad_limit = manage
        .import_keys(server.root(proto::ImportKeysRequest {
            keys: vec![proto::ImportedKey {
                rate_limit: Some(proto::RateLimit {
                    limit: 0,
                    window: None,
                }),
                ..record("sk_live_badlimit00000000000000", "initech")
            }],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcome(&bad_limit.results[0]), ImportOutcome::Rejected);
    assert!(
        bad_limit.results[0].error.contains("keys[0].rate_limit"),
        "{:?}",
        bad_limit.results[0]
    );
    server.stop().await;
}

/// A foreign prefix that would shadow keyward's own keys is refused at load.
#[test]
fn a_foreign_prefix_cannot_overlap_keywards_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyward.toml");
    std::fs::write(&path, "foreign_key_prefixes = [\"kw_\"]\n").unwrap();
    let error = keyward::config::Config::load(Some(&path), &Default::default())
        .expect_err("overlap")
        .to_string();
    assert!(error.contains("foreign_key_prefixes"), "{error}");
}

both_backends!(overlapping_imports_running_together_store_each_key_once);

/// Two imports of overlapping batches at once (a retried migration, two operators), one of
/// them in reverse order (without one lock order, PostgreSQL's unique-index waits deadlock):
/// neither fails, every key is stored exactly once, and each is reported imported by exactly
/// one of them and already present (with the same id) by the other; each stored key has its
/// audit event.
async fn overlapping_imports_running_together_store_each_key_once(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.foreign_key_prefixes = vec!["sk_live_".into()];
    })
    .await;
    let raws: Vec<String> = (0..600)
        .map(|i| format!("sk_live_overlap{i:08}aaaaaaaa"))
        .collect();
    let batch = |range: std::ops::Range<usize>| proto::ImportKeysRequest {
        keys: raws[range]
            .iter()
            .enumerate()
            .map(|(i, raw)| record(raw, &format!("acct-{}", i % 7)))
            .collect(),
    };
    let (mut a, mut b) = (server.manage().await, server.manage().await);
    // The accounts exist already (a first import can only wait for the other's new account
    // rows; then the keys themselves must not deadlock).
    let seed = a
        .import_keys(
            server.root(proto::ImportKeysRequest {
                keys: (0..7)
                    .map(|i| {
                        record(
                            &format!("sk_live_seed{i:08}aaaaaaaaaaa"),
                            &format!("acct-{i}"),
                        )
                    })
                    .collect(),
            }),
        )
        .await
        .expect("seed import")
        .into_inner()
        .results;
    assert!(seed.iter().all(|r| outcome(r) == ImportOutcome::Imported));
    let mut reversed = batch(200..600);
    reversed.keys.reverse();
    let (left, right) = tokio::join!(
        a.import_keys(server.root(batch(0..400))),
        b.import_keys(server.root(reversed)),
    );
    let (left, mut right) = (
        left.expect("left import").into_inner().results,
        right.expect("right import").into_inner().results,
    );
    right.reverse();
    let mut ids = std::collections::HashMap::new();
    let mut imported = 0;
    for (offset, results) in [(0, &left), (200, &right)] {
        for (i, r) in results.iter().enumerate() {
            match outcome(r) {
                ImportOutcome::Imported => imported += 1,
                ImportOutcome::AlreadyPresent => {}
                other => panic!("record {} answered {other:?}: {}", offset + i, r.error),
            }
            assert!(r.key_id.starts_with("key_"), "every record names its key");
            let previous = ids.insert((offset + i, r.outcome), r.key_id.clone());
            assert!(previous.is_none());
            // The same record in both batches names the same key.
            if (200..400).contains(&(offset + i)) {
                let other = if offset == 0 {
                    &right[i - 200]
                } else {
                    &left[i + 200]
                };
                assert_eq!(other.key_id, r.key_id, "record {}", offset + i);
            }
        }
    }
    assert_eq!(imported, 600, "each of the 600 keys imported exactly once");
    for raw in [&raws[0], &raws[300], &raws[599]] {
        assert_eq!(
            code(&server.verify(raw, &["videos:read"]).await),
            VerifyCode::Valid
        );
    }
    // Each stored key is named by the import event of the call that stored it, once.
    let mut manage = server.manage().await;
    let mut audited = std::collections::HashSet::new();
    let mut events = 0;
    for account in 0..7 {
        let mut token = String::new();
        loop {
            let page = manage
                .list_audit_events(server.root(proto::ListAuditEventsRequest {
                    account_id: format!("acct-{account}"),
                    page_size: 1000,
                    page_token: token.clone(),
                }))
                .await
                .unwrap()
                .into_inner();
            for event in page
                .events
                .iter()
                .filter(|e| e.action == proto::AuditAction::KeysImported as i32)
            {
                events += 1;
                let ids = event.changes.iter().find(|c| c.field == "key_ids").unwrap();
                let ids: Vec<String> = serde_json::from_str(&ids.new_value).unwrap();
                for id in ids {
                    assert!(audited.insert(id), "each key audited once");
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
    }
    let stored: std::collections::HashSet<String> = left
        .iter()
        .chain(&right)
        .map(|r| r.key_id.clone())
        .chain(seed.iter().map(|r| r.key_id.clone()))
        .collect();
    assert_eq!(audited.len(), 607);
    assert_eq!(audited, stored, "every stored key audited");
    // One event per call and account: the seed's 7, and each racing call's accounts that it
    // stored keys of (at most 7 each).
    assert!((8..=21).contains(&events), "{events} events");
    server.stop().await;
}

/// A bulk import tells the other replicas in a few notifications for the whole batch (not one a
/// key), and they learn of every key at once: one B remembered as unknown verifies on B right
/// after the import answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_reaches_the_other_replica_in_a_few_notifications() {
    let url = crate::pg::fresh_database().await;
    let prefixes = |c: &mut keyward::config::Config| {
        c.foreign_key_prefixes = vec!["sk_live_".into()];
    };
    let mut config = test_config(&url);
    prefixes(&mut config);
    let a = TestServer::start_on(config.clone()).await;
    let b = TestServer::start_on(config).await;
    let raws: Vec<String> = (0..2000)
        .map(|i| format!("sk_live_feed{i:08}bbbbbbbbbbbb"))
        .collect();
    // B answers two of them "unknown" (and remembers that) before they exist.
    for raw in [&raws[0], &raws[1999]] {
        assert_eq!(code(&b.verify(raw, &[]).await), VerifyCode::NotFound);
    }
    let mut feed = crate::pg::ChangeFeed::listen(&url).await;
    let mut manage = a.manage().await;
    for chunk in raws.chunks(1000) {
        let keys = chunk.iter().map(|raw| record(raw, "acme")).collect();
        import_new(&a, &mut manage, keys).await;
    }
    let carried = feed.drain().await;
    // 1000 keys a call, at most 700 a notification: two a call.
    assert_eq!(carried.len(), 4, "{} notifications", carried.len());
    assert!(carried.iter().all(|p| p.contains(" n:")), "{carried:?}");
    for raw in [&raws[0], &raws[1999], &raws[1000]] {
        eventually(
            Duration::from_secs(2),
            "VALID on the other replica",
            || async { (code(&b.verify(raw, &[]).await) == VerifyCode::Valid).then_some(()) },
        )
        .await;
    }
    a.stop().await;
    b.stop().await;
}

/// Rounds of two full-size imports at once over accounts that exist, overlapping by half, one
/// in reverse order: with rows not written in one order, PostgreSQL detects a deadlock between
/// their unique-index waits and fails one of the calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reversed_overlapping_imports_never_deadlock() {
    let url = crate::pg::fresh_database().await;
    let mut config = test_config(&url);
    config.foreign_key_prefixes = vec!["sk_live_".into()];
    let server = TestServer::start_on(config).await;
    let (mut a, mut b) = (server.manage().await, server.manage().await);
    let accounts = |i: usize| format!("acct-{}", i % 5);
    a.import_keys(
        server.root(proto::ImportKeysRequest {
            keys: (0..5)
                .map(|i| record(&format!("sk_live_seed{i:08}cccccccccc"), &accounts(i)))
                .collect(),
        }),
    )
    .await
    .expect("seed import");
    for round in 0..4 {
        let raws: Vec<String> = (0..1500)
            .map(|i| format!("sk_live_r{round}k{i:08}dddddddddd"))
            .collect();
        let forward = proto::ImportKeysRequest {
            keys: (0..1000).map(|i| record(&raws[i], &accounts(i))).collect(),
        };
        let backward = proto::ImportKeysRequest {
            keys: (500..1500)
                .rev()
                .map(|i| record(&raws[i], &accounts(i)))
                .collect(),
        };
        let (left, right) = tokio::join!(
            a.import_keys(server.root(forward)),
            b.import_keys(server.root(backward)),
        );
        let imported = [left, right]
            .into_iter()
            .map(|answer| {
                let results = answer
                    .unwrap_or_else(|s| panic!("round {round}: {s:?}"))
                    .into_inner()
                    .results;
                results
                    .iter()
                    .filter(|r| outcome(r) == ImportOutcome::Imported)
                    .count()
            })
            .sum::<usize>();
        assert_eq!(imported, 1500, "round {round}");
    }
    server.stop().await;
}

/// Bulk imports outrun PostgreSQL's own statistics (autovacuum looks once a minute, and on a
/// large table only after a tenth of it changed), and with stale ones an account's key list is
/// planned as a scan and sort of all its keys: after every 100,000 imported keys, keyward
/// refreshes them itself (`ANALYZE api_keys`; not before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_imports_refresh_the_databases_statistics() {
    let url = crate::pg::fresh_database().await;
    let mut config = test_config(&url);
    config.foreign_key_prefixes = vec!["sk_live_".into()];
    let server = TestServer::start_on(config).await;
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let analyzed = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'api_keys'",
        )
        .fetch_one(&db)
        .await
        .unwrap()
    };
    let mut manage = server.manage().await;
    let per_call = keyward::limits::MAX_IMPORT;
    let calls = keyward::service::STATISTICS_AFTER_IMPORTED as usize / per_call;
    for call in 0..calls {
        if call == calls - 1 {
            assert_eq!(analyzed().await, 0, "not before the 100,000th key");
        }
        let keys = (0..per_call)
            .map(|i| record(&format!("sk_live_stats{call:04}{i:04}cccccccc"), "big"))
            .collect();
        import_new(&server, &mut manage, keys).await;
    }
    eventually(Duration::from_secs(30), "ANALYZE api_keys", || async {
        (analyzed().await == 1).then_some(())
    })
    .await;
    server.stop().await;
}

/// A key's last use is written in place on PostgreSQL (a heap-only update: no index entry
/// added, the row stays on its page) even on a page an import filled: the keys table leaves a
/// tenth of each page free (migration `0011_keys_fillfactor`). Without that room every
/// last-use write of an imported key moves its row and adds an entry to each of the table's
/// four indexes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_use_of_an_imported_key_is_written_in_place() {
    use sqlx::Connection;

    let (url, _) = fresh_database(Backend::Postgres).await;
    let mut config = test_config(&url);
    config.foreign_key_prefixes = vec!["sk_live_".into()];
    config.last_used_interval = Duration::from_secs(3600);
    let server = TestServer::start_on(config).await;
    let mut manage = server.manage().await;
    // Enough keys in one statement to fill the table's first pages.
    let raws: Vec<String> = (0..200).map(|i| format!("sk_live_{i:024}")).collect();
    let records = raws
        .iter()
        .map(|raw| proto::ImportedKey {
            last_used_at: None,
            ..record(raw, "acme")
        })
        .collect();
    import_new(&server, &mut manage, records).await;

    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    let place = "SELECT ctid::text, last_used_at FROM api_keys WHERE digest = $1";
    let digest = KeyDigest::of(&raws[0]);
    let (before, never): (String, Option<i64>) = sqlx::query_as(place)
        .bind(&digest.as_bytes()[..])
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(never, None);
    let rows_on_page: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM api_keys WHERE split_part(ctid::text, ',', 1) = split_part($1, ',', 1)",
    )
    .bind(&before)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert!(
        rows_on_page > 10,
        "the first page holds {rows_on_page} rows: not filled"
    );

    let verify = proto::VerifyRequest {
        key: raws[0].clone(),
        ..Default::default()
    };
    let answer = server
        .verifier()
        .await
        .verify(verify)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&answer), VerifyCode::Valid);
    server.service.flush_last_used().await.unwrap();
    let (after, used): (String, Option<i64>) = sqlx::query_as(place)
        .bind(&digest.as_bytes()[..])
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert!(used.is_some(), "the last use was written");
    let page = |ctid: &str| ctid.split(',').next().unwrap().to_owned();
    assert_eq!(
        page(&after),
        page(&before),
        "the row stayed on its page ({before} → {after})"
    );
    server.stop().await;
}
