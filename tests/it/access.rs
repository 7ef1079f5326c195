//! Who may manage keys and what they did: account-scoped management keys, no escalation,
//! the audit log, and root keys minted by the CLI.

use std::process::Command;

use keyward::key::KeyDigest;
use keyward::proto::{self, AuditAction, VerifyCode};
use prost::Message;
use prost_types::FieldMask;
use tonic::Code;

use crate::both_backends;
use crate::helpers::{Backend, TestServer, as_key, code, key_request, verify_request};

both_backends!(
    account_keys_read_and_write_their_own_account,
    escalation_is_refused_and_writes_nothing,
    audit_log_records_every_mutation,
);

async fn list_ids(server: &TestServer, account: &str) -> Vec<String> {
    server
        .manage()
        .await
        .list_keys(server.root(proto::ListKeysRequest {
            account_id: account.into(),
            include_revoked: true,
            page_size: 1000,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .api_keys
        .into_iter()
        .map(|k| k.id)
        .collect()
}

async fn events(server: &TestServer, account: &str) -> Vec<proto::AuditEvent> {
    server
        .manage()
        .await
        .list_audit_events(server.root(proto::ListAuditEventsRequest {
            account_id: account.into(),
            page_size: 1000,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .events
}

async fn account_keys_read_and_write_their_own_account(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (reader, _) = server.create(key_request("acme", &["keys:read"])).await;
    let (writer, writer_key) = server
        .create(key_request("acme", &["keys:write", "videos:read"]))
        .await;
    let (_, foreign) = server.create(key_request("globex", &["videos:read"])).await;
    let mut manage = server.manage().await;

    // keys:read reads its own account only.
    let listed = manage
        .list_keys(as_key(
            &reader,
            proto::ListKeysRequest {
                account_id: "acme".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("reader lists its account");
    assert_eq!(listed.into_inner().api_keys.len(), 2);
    let status = manage
        .list_keys(as_key(
            &reader,
            proto::ListKeysRequest {
                account_id: "globex".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = manage
        .get_key(as_key(
            &reader,
            proto::GetKeyRequest {
                id: foreign.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = manage
        .create_key(as_key(&reader, key_request("acme", &[])))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "keys:read cannot create"
    );

    // keys:write creates, updates, rotates and revokes in its own account.
    let created = manage
        .create_key(as_key(&writer, key_request("acme", &["videos:read"])))
        .await
        .expect("writer creates")
        .into_inner();
    let id = created.api_key.unwrap().id;
    manage
        .update_key(as_key(
            &writer,
            proto::UpdateKeyRequest {
                id: id.clone(),
                name: "renamed".into(),
                update_mask: Some(FieldMask {
                    paths: vec!["name".into()],
                }),
                ..Default::default()
            },
        ))
        .await
        .expect("writer updates");
    let rotated = manage
        .rotate_key(as_key(
            &writer,
            proto::RotateKeyRequest {
                id: id.clone(),
                grace_period: None,
            },
        ))
        .await
        .expect("writer rotates")
        .into_inner();
    manage
        .revoke_key(as_key(
            &writer,
            proto::RevokeKeyRequest {
                id: rotated.api_key.unwrap().id,
            },
        ))
        .await
        .expect("writer revokes");
    let status = manage
        .revoke_key(as_key(
            &writer,
            proto::RevokeKeyRequest {
                id: foreign.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "another account's key"
    );
    let status = manage
        .create_key(as_key(&writer, key_request("globex", &["videos:read"])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = manage
        .update_account(as_key(
            &writer,
            proto::UpdateAccountRequest {
                account_id: "acme".into(),
                disabled: true,
                update_mask: Some(FieldMask {
                    paths: vec!["disabled".into()],
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "only root changes accounts"
    );

    // A revoked management key stops working on its next call.
    manage
        .revoke_key(server.root(proto::RevokeKeyRequest { id: writer_key.id }))
        .await
        .unwrap();
    let status = manage
        .create_key(as_key(&writer, key_request("acme", &["videos:read"])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    server.stop().await;
}

async fn escalation_is_refused_and_writes_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (writer, _) = server
        .create(key_request("acme", &["keys:write", "videos:read"]))
        .await;
    let (_, target) = server.create(key_request("acme", &["videos:read"])).await;
    let mut manage = server.manage().await;
    let keys_before = list_ids(&server, "acme").await;
    let events_before = events(&server, "acme").await.len();

    let mut grant_all = key_request("acme", &[]);
    grant_all.grant_all = true;
    let mut full_preset = key_request("acme", &[]);
    full_preset.preset = "full_access".into();
    let attempts = [
        key_request("acme", &["videos:write"]),
        key_request("acme", &["videos:read", "billing:write"]),
        key_request("acme", &["root"]),
        key_request("acme", &["keys:read"]),
        grant_all,
        full_preset,
    ];
    for attempt in attempts {
        let status = manage
            .create_key(as_key(&writer, attempt.clone()))
            .await
            .expect_err("escalation");
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{:?}",
            attempt.scopes
        );
    }
    for (paths, scopes, grant_all) in [
        (vec!["scopes"], vec!["videos:write".to_owned()], false),
        (vec!["scopes"], vec!["root".to_owned()], false),
        (vec!["grant_all"], vec![], true),
    ] {
        let status = manage
            .update_key(as_key(
                &writer,
                proto::UpdateKeyRequest {
                    id: target.id.clone(),
                    scopes,
                    grant_all,
                    update_mask: Some(FieldMask {
                        paths: paths.into_iter().map(String::from).collect(),
                    }),
                    ..Default::default()
                },
            ))
            .await
            .expect_err("escalating update");
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    // A key holding more than the caller cannot be rotated into a fresh secret by it.
    let (_, stronger) = server.create(key_request("acme", &["billing:write"])).await;
    let status = manage
        .rotate_key(as_key(
            &writer,
            proto::RotateKeyRequest {
                id: stronger.id.clone(),
                grace_period: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    let mut keys_after = list_ids(&server, "acme").await;
    keys_after.retain(|k| *k != stronger.id);
    assert_eq!(keys_after, keys_before, "nothing was written");
    let got = manage
        .get_key(server.root(proto::GetKeyRequest {
            id: target.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(
        (got.scopes, got.grant_all),
        (vec!["videos:read".to_owned()], false)
    );
    assert_eq!(
        events(&server, "acme").await.len(),
        events_before + 1,
        "only the root's create"
    );

    // A grant_all management key may grant grant_all, but never root.
    let mut all_writer = key_request("acme", &["keys:write"]);
    all_writer.grant_all = true;
    let (all_writer, _) = server.create(all_writer).await;
    let mut all = key_request("acme", &[]);
    all.grant_all = true;
    manage
        .create_key(as_key(&all_writer, all))
        .await
        .expect("grant_all from grant_all");
    let status = manage
        .create_key(as_key(&all_writer, key_request("acme", &["root"])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    server.stop().await;
}

async fn audit_log_records_every_mutation(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut manage = server.manage().await;
    let (secret, key) = server.create(key_request("acme", &["videos:read"])).await;
    manage
        .update_key(server.root(proto::UpdateKeyRequest {
            id: key.id.clone(),
            scopes: vec!["videos:read".into(), "videos:write".into()],
            update_mask: Some(FieldMask {
                paths: vec!["scopes".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    let rotated = manage
        .rotate_key(server.root(proto::RotateKeyRequest {
            id: key.id.clone(),
            grace_period: Some(prost_types::Duration {
                seconds: 600,
                nanos: 0,
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    let new_id = rotated.api_key.as_ref().unwrap().id.clone();
    manage
        .revoke_key(server.root(proto::RevokeKeyRequest { id: new_id.clone() }))
        .await
        .unwrap();
    manage
        .update_account(server.root(proto::UpdateAccountRequest {
            account_id: "acme".into(),
            max_active_keys: 3,
            update_mask: Some(FieldMask {
                paths: vec!["max_active_keys".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    // A failed mutation writes no event.
    let failed = manage
        .update_key(server.root(proto::UpdateKeyRequest {
            id: new_id.clone(),
            name: "x".into(),
            update_mask: Some(FieldMask {
                paths: vec!["name".into()],
            }),
            ..Default::default()
        }))
        .await;
    assert_eq!(failed.unwrap_err().code(), Code::FailedPrecondition);

    let all = events(&server, "acme").await;
    let actions: Vec<_> = all.iter().map(|e| e.action()).collect();
    assert_eq!(
        actions,
        [
            AuditAction::AccountUpdated,
            AuditAction::KeyRevoked,
            AuditAction::KeyCreated,
            AuditAction::KeyRotated,
            AuditAction::KeyUpdated,
            AuditAction::KeyCreated,
        ],
        "newest first"
    );
    let root_id = all[0].actor_key_id.clone();
    assert!(root_id.starts_with("key_"));
    assert!(
        all.iter()
            .all(|e| e.actor_key_id == root_id && e.account_id == "acme" && e.time.is_some())
    );
    let update = &all[4];
    assert_eq!(update.target_key_id, key.id);
    assert_eq!(update.changes.len(), 1);
    assert_eq!(update.changes[0].field, "scopes");
    assert_eq!(update.changes[0].old_value, r#"["videos:read"]"#);
    assert_eq!(
        update.changes[0].new_value,
        r#"["videos:read","videos:write"]"#
    );
    let rotation = &all[3];
    assert_eq!(rotation.target_key_id, key.id);
    assert!(
        rotation
            .changes
            .iter()
            .any(|c| c.field == "replaced_by" && c.new_value.contains(&new_id))
    );
    assert!(rotation.changes.iter().any(|c| c.field == "expires_at"));
    assert_eq!(all[1].changes[0].field, "revoked_at");
    let account = &all[0];
    assert_eq!(account.target_key_id, "");
    assert_eq!(
        (
            account.changes[0].field.as_str(),
            account.changes[0].old_value.as_str(),
            account.changes[0].new_value.as_str()
        ),
        ("max_active_keys", "null", "3")
    );

    // Pages, newest first, cover every event once.
    let mut token = String::new();
    let mut paged = Vec::new();
    loop {
        let page = manage
            .list_audit_events(server.root(proto::ListAuditEventsRequest {
                account_id: "acme".into(),
                page_size: 4,
                page_token: token,
            }))
            .await
            .unwrap()
            .into_inner();
        paged.extend(page.events.into_iter().map(|e| e.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, all.iter().map(|e| e.id.clone()).collect::<Vec<_>>());

    // Account-scoped callers see their own account only.
    let (reader, _) = server.create(key_request("globex", &["keys:read"])).await;
    let status = manage
        .list_audit_events(as_key(
            &reader,
            proto::ListAuditEventsRequest {
                account_id: "acme".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    manage
        .list_audit_events(as_key(
            &reader,
            proto::ListAuditEventsRequest {
                account_id: "globex".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("own account");

    // No event contains a secret or a hash.
    let bytes: Vec<u8> = all.iter().flat_map(|e| e.encode_to_vec()).collect();
    let text = String::from_utf8_lossy(&bytes).to_string();
    for secret in [&secret, &rotated.key] {
        let digest = KeyDigest::of(secret);
        let hex: String = digest
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!text.contains(&secret[16..]), "a secret in the audit log");
        assert!(!text.contains(&hex), "a hash in the audit log");
        assert!(!bytes.windows(32).any(|w| w == digest.as_bytes()));
    }
    assert_eq!(
        code(&server.verify(&secret, &[]).await),
        VerifyCode::Valid,
        "old key in grace"
    );
    server.stop().await;
}

/// `keyward root-key create` mints a working root key against the store; the server then
/// finds a non-empty store and prints none of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_mints_a_root_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let output = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args([
            "root-key",
            "create",
            "--name",
            "recovery",
            "--database-url",
            &url,
        ])
        .output()
        .expect("run keyward");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let root = stdout
        .split_whitespace()
        .find(|w| w.starts_with("kw_live_"))
        .expect("the minted key is printed")
        .to_owned();
    assert!(
        !String::from_utf8_lossy(&output.stderr).contains(&root[16..]),
        "not in the logs"
    );

    let server = TestServer::start_on(crate::helpers::test_config(&url)).await;
    let created = server
        .manage()
        .await
        .create_key(as_key(&root, key_request("acme", &["videos:read"])))
        .await
        .expect("the minted root key manages keys")
        .into_inner();
    let response = server.verify(&created.key, &["videos:read"]).await;
    assert_eq!(code(&response), VerifyCode::Valid);
    let mut verifier = server.verifier().await;
    let denied = verifier
        .verify(verify_request(&created.key, &["root"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&denied), VerifyCode::InsufficientScope);
    server.stop().await;
}
