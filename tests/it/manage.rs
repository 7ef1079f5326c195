//! ManageService: credentials, validation, the active-key limit (also under concurrency),
//! listing without secrets, credentials, and errors that name the field.

use keyward::key::KeyDigest;
use keyward::proto;
use prost::Message;
use tonic::Code;

use crate::both_backends;
use crate::helpers::{ABSENT_ID, Backend, TestServer, as_key, key_request, violated_fields};

both_backends!(
    eleventh_key_is_refused,
    concurrent_creates_respect_the_limit,
    list_keys_pages_and_never_carries_secrets,
    management_needs_credentials,
    bad_input_names_the_field,
    get_and_update_errors,
    limit_error_names_the_count_and_the_limit,
);

async fn limit_error_names_the_count_and_the_limit(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut manage = server.manage().await;
    for _ in 0..5 {
        server.create(key_request("acme", &["videos:read"])).await;
    }
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
    let refused = manage
        .create_key(server.root(key_request("acme", &["videos:read"])))
        .await
        .expect_err("over the limit");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused
            .message()
            .contains("account \"acme\" has 5 active keys and may have at most 1"),
        "{}",
        refused.message()
    );
    server.stop().await;
}

async fn eleventh_key_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut manage = server.manage().await;
    let mut first = None;
    for _ in 0..10 {
        let r = manage
            .create_key(server.root(key_request("acme", &["videos:read"])))
            .await
            .expect("within the limit");
        first.get_or_insert(r.into_inner().api_key.unwrap().id);
    }
    let refused = manage
        .create_key(server.root(key_request("acme", &["videos:read"])))
        .await
        .expect_err("the 11th key");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("10"), "{}", refused.message());
    // Another account is not affected.
    manage
        .create_key(server.root(key_request("other", &["videos:read"])))
        .await
        .expect("other account");
    // Revoking one frees a slot.
    manage
        .revoke_key(server.root(proto::RevokeKeyRequest { id: first.unwrap() }))
        .await
        .expect("revoke");
    manage
        .create_key(server.root(key_request("acme", &["videos:read"])))
        .await
        .expect("a freed slot");
    server.stop().await;
}

async fn concurrent_creates_respect_the_limit(backend: Backend) {
    let server = TestServer::start(backend).await;
    let manage = server.manage().await;
    let calls = (0..20).map(|_| {
        let mut manage = manage.clone();
        let request = server.root(key_request("race", &["videos:read"]));
        tokio::spawn(async move { manage.create_key(request).await })
    });
    let results = futures_join_all(calls).await;
    let created = results.iter().filter(|r| r.is_ok()).count();
    let refused: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(created, 10, "exactly the limit is created");
    assert!(
        refused.iter().all(|s| s.code() == Code::FailedPrecondition),
        "{refused:?}"
    );
    let listed = server
        .manage()
        .await
        .list_keys(server.root(proto::ListKeysRequest {
            account_id: "race".into(),
            page_size: 100,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.api_keys.len(), 10);
    server.stop().await;
}

async fn futures_join_all<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        out.push(handle.await.expect("task"));
    }
    out
}

async fn list_keys_pages_and_never_carries_secrets(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut secrets = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (secret, key) = server.create(key_request("lister", &["videos:read"])).await;
        secrets.push(secret);
        ids.push(key.id);
    }
    let mut manage = server.manage().await;
    manage
        .revoke_key(server.root(proto::RevokeKeyRequest { id: ids[1].clone() }))
        .await
        .unwrap();

    let list = |token: String, include_revoked: bool| proto::ListKeysRequest {
        account_id: "lister".into(),
        include_revoked,
        page_size: 2,
        page_token: token,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut raw_pages = Vec::new();
    loop {
        let page = manage
            .list_keys(server.root(list(token, true)))
            .await
            .unwrap()
            .into_inner();
        assert!(page.api_keys.len() <= 2);
        raw_pages.extend(page.encode_to_vec());
        seen.extend(page.api_keys.iter().map(|k| k.id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids, "every key once, oldest first");

    let active = manage.list_keys(server.root(proto::ListKeysRequest {
        account_id: "lister".into(),
        page_size: 100,
        ..Default::default()
    }));
    let active: Vec<_> = active
        .await
        .unwrap()
        .into_inner()
        .api_keys
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(active.len(), 4);
    assert!(
        !active.contains(&ids[1]),
        "revoked keys are hidden by default"
    );

    // Neither a secret nor its digest (raw or hex) appears anywhere in the listing's bytes.
    let text = String::from_utf8_lossy(&raw_pages).to_string();
    for secret in &secrets {
        let digest = KeyDigest::of(secret);
        let hex: String = digest
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!text.contains(&secret[16..]), "a secret was listed");
        assert!(!text.contains(&hex), "a hash was listed");
        assert!(
            !raw_pages.windows(32).any(|w| w == digest.as_bytes()),
            "a raw hash was listed"
        );
    }

    let bad = manage
        .list_keys(server.root(list("garbage".into(), false)))
        .await
        .expect_err("bad token");
    assert_eq!(violated_fields(&bad), vec!["page_token"]);
    server.stop().await;
}

async fn management_needs_credentials(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut manage = server.manage().await;
    let get = || proto::GetKeyRequest {
        id: ABSENT_ID.into(),
    };

    let none = manage.get_key(get()).await.expect_err("no credentials");
    assert_eq!(none.code(), Code::Unauthenticated);
    for bad in ["garbage", "kw_live_notarealkeyatall", ""] {
        let status = manage
            .get_key(as_key(bad, get()))
            .await
            .expect_err("bad credentials");
        assert_eq!(status.code(), Code::Unauthenticated, "{bad:?}");
    }
    let unknown = keyward::key::KeyFormat::default().generate(keyward::key::Environment::Live);
    let status = manage
        .get_key(as_key(unknown.secret.expose(), get()))
        .await
        .expect_err("unknown key");
    assert_eq!(status.code(), Code::Unauthenticated);

    // A valid key without a management scope may verify but not manage.
    let (plain, _) = server.create(key_request("acme", &["videos:read"])).await;
    let status = manage
        .get_key(as_key(&plain, get()))
        .await
        .expect_err("plain key");
    assert_eq!(status.code(), Code::PermissionDenied);

    // A revoked root key stops working on its next call.
    let (second_root, second) = server
        .service
        .mint_root_key("second root")
        .await
        .expect("mint");
    let second_root = second_root.expose().to_owned();
    manage
        .get_key(as_key(
            &second_root,
            proto::GetKeyRequest {
                id: second.id.to_string(),
            },
        ))
        .await
        .expect("second root works");
    manage
        .revoke_key(server.root(proto::RevokeKeyRequest {
            id: second.id.to_string(),
        }))
        .await
        .unwrap();
    let status = manage
        .get_key(as_key(
            &second_root,
            proto::GetKeyRequest {
                id: second.id.to_string(),
            },
        ))
        .await
        .expect_err("revoked root");
    assert_eq!(status.code(), Code::Unauthenticated);
    server.stop().await;
}

async fn bad_input_names_the_field(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut manage = server.manage().await;
    let create = |f: &dyn Fn(&mut proto::CreateKeyRequest)| {
        let mut r = key_request("acme", &["videos:read"]);
        f(&mut r);
        server.root(r)
    };
    type Mutation = Box<dyn Fn(&mut proto::CreateKeyRequest)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("account_id", Box::new(|r| r.account_id.clear())),
        (
            "account_id",
            Box::new(|r| r.account_id = "has spaces".into()),
        ),
        ("name", Box::new(|r| r.name.clear())),
        ("environment", Box::new(|r| r.environment = 0)),
        ("environment", Box::new(|r| r.environment = 99)),
        ("scopes[1]", Box::new(|r| r.scopes.push("videos:*".into()))),
        ("scopes", Box::new(|r| r.scopes.clear())),
        (
            "ttl",
            Box::new(|r| {
                r.expiry = Some(proto::create_key_request::Expiry::Ttl(
                    prost_types::Duration {
                        seconds: -5,
                        nanos: 0,
                    },
                ))
            }),
        ),
        (
            "expires_at",
            Box::new(|r| {
                r.expiry = Some(proto::create_key_request::Expiry::ExpiresAt(
                    prost_types::Timestamp {
                        seconds: 1_000,
                        nanos: 0,
                    },
                ))
            }),
        ),
    ];
    for (field, mutate) in cases {
        let status = manage.create_key(create(&*mutate)).await.expect_err(field);
        assert_eq!(
            violated_fields(&status),
            vec![field.to_string()],
            "{status:?}"
        );
        assert!(status.message().contains(field), "{}", status.message());
    }
    // Several bad fields are all named at once.
    let status = manage
        .create_key(create(&|r| {
            r.account_id.clear();
            r.name.clear();
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["account_id", "name"]);

    // Nothing was written by the failed calls.
    let listed = manage
        .list_keys(server.root(proto::ListKeysRequest {
            account_id: "acme".into(),
            include_revoked: true,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.api_keys.is_empty());

    // Verify: a request that cannot be evaluated is INVALID_ARGUMENT.
    let mut verifier = server.verifier().await;
    let mut request = crate::helpers::verify_request("kw_live_x", &["Bad Scope"]);
    let status = verifier.verify(request.clone()).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["required_scopes[0]"]);
    request.required_scopes.clear();
    request.environment = 42;
    let status = verifier.verify(request).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["environment"]);
    server.stop().await;
}

async fn get_and_update_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut manage = server.manage().await;
    let (_, key) = server.create(key_request("acme", &["videos:read"])).await;
    let got = manage
        .get_key(server.root(proto::GetKeyRequest { id: key.id.clone() }))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(got, key);
    let missing = manage
        .get_key(server.root(proto::GetKeyRequest {
            id: ABSENT_ID.into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let empty_id = manage
        .get_key(server.root(proto::GetKeyRequest { id: String::new() }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&empty_id), vec!["id"]);

    let update = |paths: &[&str], f: &dyn Fn(&mut proto::UpdateKeyRequest)| {
        let mut r = proto::UpdateKeyRequest {
            id: key.id.clone(),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
            ..Default::default()
        };
        f(&mut r);
        server.root(r)
    };
    let no_mask = manage.update_key(update(&[], &|_| {})).await.unwrap_err();
    assert_eq!(violated_fields(&no_mask), vec!["update_mask"]);
    let unknown = manage
        .update_key(update(&["prefix"], &|_| {}))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&unknown), vec!["update_mask"]);
    let emptied = manage
        .update_key(update(&["scopes"], &|_| {}))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&emptied), vec!["scopes"]);

    // grant_all and meta and expiry can change; clearing the expiry means never.
    let changed = manage
        .update_key(update(&["grant_all", "meta", "expires_at"], &|r| {
            r.grant_all = true;
            r.meta.insert("tier".into(), "gold".into());
            r.expires_at = Some(prost_types::Timestamp {
                seconds: 4_000_000_000,
                nanos: 0,
            });
        }))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert!(changed.grant_all);
    assert_eq!(changed.meta.get("tier").map(String::as_str), Some("gold"));
    assert_eq!(changed.expires_at.map(|t| t.seconds), Some(4_000_000_000));
    let never = manage
        .update_key(update(&["expires_at"], &|_| {}))
        .await
        .unwrap()
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(never.expires_at, None);

    // A revoked key cannot be changed.
    manage
        .revoke_key(server.root(proto::RevokeKeyRequest { id: key.id.clone() }))
        .await
        .unwrap();
    let status = manage
        .update_key(update(&["name"], &|r| r.name = "x".into()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    server.stop().await;
}

/// Google's API conventions: an oversized page is clamped (AIP-158), a page token is bound to
/// its query, `*` replaces every updatable field (AIP-134), and errors carry `ErrorInfo`,
/// `QuotaFailure` for the active-key limit (AIP-193).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_follows_the_aip_conventions() {
    use tonic_types::StatusExt;
    let server = TestServer::start(Backend::Sqlite).await;
    let mut manage = server.manage().await;
    for _ in 0..3 {
        server.create(key_request("acme", &["videos:read"])).await;
    }
    let list = |account: &str, size: u32, token: &str| proto::ListKeysRequest {
        account_id: account.into(),
        page_size: size,
        page_token: token.into(),
        ..Default::default()
    };
    let all = manage
        .list_keys(server.root(list("acme", 5000, "")))
        .await
        .expect("an oversized page is clamped, not refused")
        .into_inner();
    assert_eq!(all.api_keys.len(), 3);
    let first = manage
        .list_keys(server.root(list("acme", 2, "")))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    let second = manage
        .list_keys(server.root(list("acme", 2, &first.next_page_token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.api_keys.len(), 1);
    let status = manage
        .list_keys(server.root(list("globex", 2, &first.next_page_token)))
        .await
        .expect_err("a token of another query");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["page_token"]);
    let status = manage
        .list_keys(server.root(proto::ListKeysRequest {
            include_revoked: true,
            ..list("acme", 2, &first.next_page_token)
        }))
        .await
        .expect_err("a token of another filter");
    assert_eq!(violated_fields(&status), ["page_token"]);

    // "*": every updatable field takes the request's value (unset ones are cleared).
    let (_, key) = server
        .create(proto::CreateKeyRequest {
            meta: [("team".to_owned(), "video".to_owned())].into(),
            ..key_request("acme", &["videos:read"])
        })
        .await;
    let updated = manage
        .update_key(server.root(proto::UpdateKeyRequest {
            id: key.id.clone(),
            name: "replaced".into(),
            scopes: vec!["videos:write".into()],
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["*".into()],
            }),
            ..Default::default()
        }))
        .await
        .expect("a full replacement")
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(updated.name, "replaced");
    assert_eq!(updated.scopes, ["videos:write"]);
    assert!(updated.meta.is_empty(), "unset fields are replaced too");
    let status = manage
        .update_key(server.root(proto::UpdateKeyRequest {
            id: key.id,
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["*".into(), "name".into()],
            }),
            ..Default::default()
        }))
        .await
        .expect_err("* stands alone");
    assert_eq!(violated_fields(&status), ["update_mask"]);

    // ErrorInfo on every error; QuotaFailure on the active-key limit.
    let status = manage
        .get_key(server.root(proto::GetKeyRequest {
            id: ABSENT_ID.into(),
        }))
        .await
        .expect_err("absent");
    let info = status.get_error_details();
    let info = info.error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "NOT_FOUND");
    assert_eq!(info.domain, "keyward.dev");
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
    let status = manage
        .create_key(server.root(key_request("acme", &["videos:read"])))
        .await
        .expect_err("over the limit");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let details = status.get_error_details();
    assert_eq!(details.error_info().unwrap().reason, "ACTIVE_KEY_LIMIT");
    assert_eq!(
        details.quota_failure().expect("QuotaFailure").violations[0].subject,
        "accounts/acme"
    );
    server.stop().await;
}
