//! Access policy: the scope catalog and presets, restrictions, expiry bounds, rotation,
//! account controls and last use — through the gRPC client, on both backends.

use keyward::ids::KeyId;
use std::time::Duration;

use keyward::proto::{self, VerifyCode, create_key_request::Expiry};
use prost_types::FieldMask;
use tonic::Code;

use crate::both_backends;
use crate::helpers::{
    ABSENT_ID, Backend, TestServer, as_key, code, eventually, fresh_database, key_request,
    test_config, verify_request, violated_fields,
};

both_backends!(
    list_scopes_returns_catalog_and_presets,
    unknown_scopes_and_contradicting_presets_are_refused,
    presets_resolve_to_stored_scopes,
    grant_all_covers_scopes_added_later,
    restrictions_are_stored_and_enforced,
    bad_restrictions_name_the_entry,
    expiry_defaults_and_max_ttl,
    rotation_keeps_both_keys_during_grace,
    rotation_with_zero_grace_revokes_at_once,
    rotation_and_the_active_key_limit,
    accounts_limit_and_disable,
    last_use_is_coalesced_and_listed,
    last_use_is_flushed_at_shutdown,
);

fn secs(seconds: i64) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos: 0 }
}

async fn create_err(server: &TestServer, request: proto::CreateKeyRequest) -> tonic::Status {
    server
        .manage()
        .await
        .create_key(server.root(request))
        .await
        .expect_err("create must fail")
}

async fn list_scopes_returns_catalog_and_presets(backend: Backend) {
    let server = TestServer::start(backend).await;
    let catalog = server
        .manage()
        .await
        .list_scopes(server.root(proto::ListScopesRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(
        catalog.scopes.len() >= 38,
        "{} scopes",
        catalog.scopes.len()
    );
    let find = |name: &str| catalog.scopes.iter().find(|s| s.name == name).cloned();
    let read = find("videos:read").unwrap();
    assert_eq!(read.access(), proto::ScopeAccess::Read);
    assert_eq!(read.risk(), proto::ScopeRisk::Low);
    assert!(!read.description.is_empty());
    let email = find("members:email").unwrap();
    assert_eq!(
        (email.access(), email.risk()),
        (proto::ScopeAccess::Write, proto::ScopeRisk::High)
    );
    assert_eq!(email.guardrail.map(|g| g.limit), Some(50));
    for reserved in ["keys:read", "keys:write", "root"] {
        assert_eq!(
            find(reserved).map(|s| s.risk()),
            Some(proto::ScopeRisk::High),
            "{reserved}"
        );
    }
    let presets: Vec<_> = catalog.presets.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(presets, ["read_only", "content_agent", "full_access"]);
    let read_only = &catalog.presets[0];
    assert!(
        read_only
            .scopes
            .iter()
            .all(|s| find(s).unwrap().access() == proto::ScopeAccess::Read)
    );
    assert_eq!(
        read_only.restrictions.as_ref().unwrap().allowed_methods,
        ["GET", "HEAD", "OPTIONS"]
    );
    assert!(catalog.presets[2].grant_all);
    // Any key without a management scope may not read it.
    let (plain, _) = server.create(key_request("acme", &["videos:read"])).await;
    let status = server
        .manage()
        .await
        .list_scopes(as_key(&plain, proto::ListScopesRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    server.stop().await;
}

async fn unknown_scopes_and_contradicting_presets_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let status = create_err(
        &server,
        key_request("acme", &["videos:read", "videos:teleport"]),
    )
    .await;
    assert_eq!(violated_fields(&status), ["scopes[1]"]);
    assert!(
        status.message().contains("videos:teleport"),
        "{}",
        status.message()
    );

    let with_preset = |preset: &str, scopes: &[&str], grant_all: bool| {
        let mut r = key_request("acme", scopes);
        r.preset = preset.into();
        r.grant_all = grant_all;
        r
    };
    let status = create_err(&server, with_preset("read_only", &["videos:write"], false)).await;
    assert_eq!(violated_fields(&status), ["scopes[0]"]);
    assert!(status.message().contains("read_only"));
    let status = create_err(&server, with_preset("read_only", &[], true)).await;
    assert_eq!(violated_fields(&status), ["grant_all"]);
    let status = create_err(&server, with_preset("nope", &[], false)).await;
    assert_eq!(violated_fields(&status), ["preset"]);
    let mut post = with_preset("read_only", &[], false);
    post.restrictions = Some(proto::Restrictions {
        allowed_methods: vec!["POST".into()],
        ..Default::default()
    });
    let status = create_err(&server, post).await;
    assert_eq!(
        violated_fields(&status),
        ["restrictions.allowed_methods[0]"]
    );
    // No grant at all, and no wildcard scope to pick by accident.
    assert_eq!(
        violated_fields(&create_err(&server, key_request("acme", &[])).await),
        ["scopes"]
    );
    assert_eq!(
        violated_fields(&create_err(&server, key_request("acme", &["*"])).await),
        ["scopes[0]"]
    );

    // UpdateKey refuses unknown scopes too, and the key is unchanged.
    let (secret, key) = server.create(key_request("acme", &["videos:read"])).await;
    let status = server
        .manage()
        .await
        .update_key(server.root(proto::UpdateKeyRequest {
            id: key.id.clone(),
            scopes: vec!["videos:teleport".into()],
            update_mask: Some(FieldMask {
                paths: vec!["scopes".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["scopes[0]"]);
    assert_eq!(
        code(&server.verify(&secret, &["videos:read"]).await),
        VerifyCode::Valid
    );
    server.stop().await;
}

async fn presets_resolve_to_stored_scopes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut request = key_request("acme", &[]);
    request.preset = "read_only".into();
    let (secret, key) = server.create(request).await;
    assert!(key.scopes.contains(&"videos:read".to_owned()));
    assert!(key.scopes.contains(&"analytics:read".to_owned()));
    assert!(!key.scopes.iter().any(|s| s.ends_with(":write")));
    assert!(!key.grant_all);
    assert_eq!(
        key.restrictions.unwrap().allowed_methods,
        ["GET", "HEAD", "OPTIONS"]
    );
    let verify = |method: &str| {
        let mut r = verify_request(&secret, &["videos:read"]);
        r.context = Some(proto::RequestContext {
            method: method.into(),
            ..Default::default()
        });
        r
    };
    let mut verifier = server.verifier().await;
    for (method, expected) in [
        ("GET", VerifyCode::Valid),
        ("HEAD", VerifyCode::Valid),
        ("OPTIONS", VerifyCode::Valid),
        ("POST", VerifyCode::MethodNotAllowed),
        ("DELETE", VerifyCode::MethodNotAllowed),
        ("", VerifyCode::MethodNotAllowed),
    ] {
        let response = verifier.verify(verify(method)).await.unwrap().into_inner();
        assert_eq!(code(&response), expected, "{method}");
    }

    let mut agent = key_request("acme", &["videos:read"]);
    agent.preset = "content_agent".into();
    let (_, key) = server.create(agent).await;
    assert_eq!(
        key.scopes,
        ["videos:read"],
        "given scopes narrow the preset"
    );

    let mut full = key_request("acme", &[]);
    full.preset = "full_access".into();
    let (secret, key) = server.create(full).await;
    assert!(key.grant_all);
    assert_eq!(
        code(&server.verify(&secret, &["billing:write"]).await),
        VerifyCode::Valid
    );
    server.stop().await;
}

const SMALL_CATALOG: &str = r#"
[[scope]]
name = "videos:read"
description = "Watch videos"
access = "read"
risk = "low"
"#;

async fn grant_all_covers_scopes_added_later(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.toml");
    let large = dir.path().join("large.toml");
    std::fs::write(&small, SMALL_CATALOG).unwrap();
    let added = "\n[[scope]]\nname = \"livestreams:write\"\ndescription = \"Go live\"\naccess = \"write\"\nrisk = \"medium\"\n";
    std::fs::write(&large, format!("{SMALL_CATALOG}{added}")).unwrap();
    let (url, _db_dir) = fresh_database(backend).await;

    let mut config = test_config(&url);
    config.scopes_file = Some(small);
    let server = TestServer::start_on(config.clone()).await;
    let status = create_err(&server, key_request("acme", &["livestreams:write"])).await;
    assert_eq!(
        violated_fields(&status),
        ["scopes[0]"],
        "not in the small catalog"
    );
    let mut all = key_request("acme", &[]);
    all.grant_all = true;
    let (secret, _) = server.create(all).await;
    let (narrow, _) = server.create(key_request("acme", &["videos:read"])).await;
    server.stop().await;

    config.scopes_file = Some(large);
    let server = TestServer::start_on(config).await;
    assert_eq!(
        code(&server.verify(&secret, &["livestreams:write"]).await),
        VerifyCode::Valid
    );
    assert_eq!(
        code(&server.verify(&narrow, &["livestreams:write"]).await),
        VerifyCode::InsufficientScope
    );
    // grant_all never implies the reserved management scopes.
    assert_eq!(
        code(&server.verify(&secret, &["keys:write"]).await),
        VerifyCode::InsufficientScope
    );
    server.stop().await;
}

async fn restrictions_are_stored_and_enforced(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut request = key_request("acme", &["videos:read"]);
    request.restrictions = Some(proto::Restrictions {
        allowed_cidrs: vec!["203.0.113.0/24".into(), "2001:db8::/32".into()],
        allowed_referrers: vec!["https://*.example.com/*".into()],
        allowed_paths: vec!["/v1/videos/*".into()],
        allowed_methods: vec!["get".into()],
    });
    let (secret, key) = server.create(request).await;
    let stored = key.restrictions.unwrap();
    assert_eq!(stored.allowed_cidrs, ["203.0.113.0/24", "2001:db8::/32"]);
    assert_eq!(stored.allowed_methods, ["GET"]);

    let good = proto::RequestContext {
        method: "GET".into(),
        path: "/v1/videos/42".into(),
        client_ip: "203.0.113.7".into(),
        referrer: "https://app.example.com/watch".into(),
    };
    let mut verifier = server.verifier().await;
    let mut check = async |change: &dyn Fn(&mut proto::RequestContext), expected: VerifyCode| {
        let mut context = good.clone();
        change(&mut context);
        let mut request = verify_request(&secret, &["videos:read"]);
        request.context = Some(context.clone());
        let response = verifier.verify(request).await.unwrap().into_inner();
        assert_eq!(code(&response), expected, "{context:?}");
        if expected != VerifyCode::Valid {
            assert_eq!(response.http_status, 403);
        }
    };
    check(&|_| {}, VerifyCode::Valid).await;
    check(&|c| c.client_ip = "2001:db8::9".into(), VerifyCode::Valid).await;
    check(
        &|c| c.client_ip = "198.51.100.1".into(),
        VerifyCode::IpNotAllowed,
    )
    .await;
    check(&|c| c.client_ip.clear(), VerifyCode::IpNotAllowed).await;
    check(
        &|c| c.referrer = "https://evil.com/x".into(),
        VerifyCode::ReferrerNotAllowed,
    )
    .await;
    check(&|c| c.referrer.clear(), VerifyCode::ReferrerNotAllowed).await;
    check(&|c| c.method = "PUT".into(), VerifyCode::MethodNotAllowed).await;
    check(
        &|c| c.path = "/v1/billing".into(),
        VerifyCode::PathNotAllowed,
    )
    .await;
    check(&|c| c.path.clear(), VerifyCode::PathNotAllowed).await;
    // The order of docs/keys.md: IP before referrer before method before path.
    check(
        &|c| {
            c.client_ip = "198.51.100.1".into();
            c.method = "PUT".into();
        },
        VerifyCode::IpNotAllowed,
    )
    .await;
    check(
        &|c| {
            c.method = "PUT".into();
            c.path = "/x".into();
        },
        VerifyCode::MethodNotAllowed,
    )
    .await;
    // No context at all: every restriction denies, the IP first.
    let response = verifier
        .verify(verify_request(&secret, &["videos:read"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&response), VerifyCode::IpNotAllowed);

    // Clearing the restrictions applies to the next verify.
    server
        .manage()
        .await
        .update_key(server.root(proto::UpdateKeyRequest {
            id: key.id.clone(),
            update_mask: Some(FieldMask {
                paths: vec!["restrictions".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    let response = verifier
        .verify(verify_request(&secret, &["videos:read"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&response), VerifyCode::Valid);
    // Setting new restrictions applies to the next verify too.
    server
        .manage()
        .await
        .update_key(server.root(proto::UpdateKeyRequest {
            id: key.id,
            restrictions: Some(proto::Restrictions {
                allowed_methods: vec!["POST".into()],
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["restrictions".into()],
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    let mut request = verify_request(&secret, &["videos:read"]);
    request.context = Some(good.clone());
    let response = verifier.verify(request).await.unwrap().into_inner();
    assert_eq!(code(&response), VerifyCode::MethodNotAllowed);
    server.stop().await;
}

async fn bad_restrictions_name_the_entry(backend: Backend) {
    let server = TestServer::start(backend).await;
    let cases: [(&str, proto::Restrictions); 4] = [
        (
            "restrictions.allowed_cidrs[1]",
            proto::Restrictions {
                allowed_cidrs: vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()],
                ..Default::default()
            },
        ),
        (
            "restrictions.allowed_referrers[0]",
            proto::Restrictions {
                allowed_referrers: vec!["has space".into()],
                ..Default::default()
            },
        ),
        (
            "restrictions.allowed_paths[0]",
            proto::Restrictions {
                allowed_paths: vec![String::new()],
                ..Default::default()
            },
        ),
        (
            "restrictions.allowed_methods[0]",
            proto::Restrictions {
                allowed_methods: vec!["GE T".into()],
                ..Default::default()
            },
        ),
    ];
    for (field, restrictions) in cases {
        let mut request = key_request("acme", &["videos:read"]);
        request.restrictions = Some(restrictions);
        let status = create_err(&server, request).await;
        assert_eq!(violated_fields(&status), [field]);
    }
    server.stop().await;
}

async fn expiry_defaults_and_max_ttl(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.default_ttl = Some(Duration::from_secs(30 * 86_400));
        c.max_ttl = Some(Duration::from_secs(90 * 86_400));
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (_, key) = server.create(key_request("acme", &["videos:read"])).await;
    let expires = key.expires_at.unwrap().seconds;
    assert!(
        (expires - (now + 30 * 86_400)).abs() < 60,
        "default TTL applies"
    );

    let mut long = key_request("acme", &["videos:read"]);
    long.expiry = Some(Expiry::Ttl(secs(365 * 86_400)));
    let status = create_err(&server, long).await;
    assert_eq!(violated_fields(&status), ["ttl"]);
    assert!(status.message().contains("max_ttl"), "{}", status.message());

    let mut far = key_request("acme", &["videos:read"]);
    far.expiry = Some(Expiry::ExpiresAt(prost_types::Timestamp {
        seconds: now + 400 * 86_400,
        nanos: 0,
    }));
    assert_eq!(
        violated_fields(&create_err(&server, far).await),
        ["expires_at"]
    );

    let mut ok = key_request("acme", &["videos:read"]);
    ok.expiry = Some(Expiry::Ttl(secs(60 * 86_400)));
    let (_, key) = server.create(ok).await;
    assert!((key.expires_at.unwrap().seconds - (now + 60 * 86_400)).abs() < 60);
    server.stop().await;
}

async fn rotate(server: &TestServer, id: &str, grace: i64) -> proto::RotateKeyResponse {
    server
        .manage()
        .await
        .rotate_key(server.root(proto::RotateKeyRequest {
            id: id.into(),
            grace_period: Some(secs(grace)),
        }))
        .await
        .expect("rotate")
        .into_inner()
}

async fn rotation_keeps_both_keys_during_grace(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut request = key_request("acme", &["videos:read", "collections:write"]);
    request.meta.insert("team".into(), "video".into());
    request.restrictions = Some(proto::Restrictions {
        allowed_methods: vec!["GET".into()],
        ..Default::default()
    });
    let (old_secret, old) = server.create(request).await;
    assert_eq!(
        code(&server.verify(&old_secret, &[]).await),
        VerifyCode::MethodNotAllowed
    );

    let rotated = rotate(&server, &old.id, 1).await;
    let new = rotated.api_key.unwrap();
    let previous = rotated.previous_api_key.unwrap();
    assert_ne!(rotated.key, old_secret);
    assert!(rotated.key.starts_with("kw_live_"));
    assert_eq!(new.previous_key_id, old.id);
    assert_eq!(
        (new.name.as_str(), &new.scopes, &new.meta),
        (old.name.as_str(), &old.scopes, &old.meta)
    );
    assert_eq!(new.restrictions, old.restrictions);
    assert_eq!(previous.id, old.id);
    assert!(previous.expires_at.is_some(), "the old key now expires");
    assert!(!previous.revoked);

    let get = |secret: String| {
        let mut r = verify_request(&secret, &["videos:read"]);
        r.context = Some(proto::RequestContext {
            method: "GET".into(),
            ..Default::default()
        });
        r
    };
    let mut verifier = server.verifier().await;
    let both = [old_secret.clone(), rotated.key.clone()];
    for secret in &both {
        let response = verifier
            .verify(get(secret.clone()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            code(&response),
            VerifyCode::Valid,
            "both keys work during the grace period"
        );
    }
    let expired = eventually(Duration::from_secs(5), "the old key to expire", || {
        let mut verifier = verifier.clone();
        let request = get(old_secret.clone());
        async move {
            let r = verifier.verify(request).await.unwrap().into_inner();
            (code(&r) != VerifyCode::Valid).then_some(r)
        }
    })
    .await;
    assert_eq!(code(&expired), VerifyCode::Expired);
    let response = verifier
        .verify(get(rotated.key.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        code(&response),
        VerifyCode::Valid,
        "the new key keeps working"
    );
    server.stop().await;
}

async fn rotation_with_zero_grace_revokes_at_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (old_secret, old) = server.create(key_request("acme", &["videos:read"])).await;
    assert_eq!(
        code(&server.verify(&old_secret, &[]).await),
        VerifyCode::Valid
    );
    let rotated = rotate(&server, &old.id, 0).await;
    assert!(rotated.previous_api_key.unwrap().revoked);
    assert_eq!(
        code(&server.verify(&old_secret, &[]).await),
        VerifyCode::Revoked
    );
    assert_eq!(
        code(&server.verify(&rotated.key, &[]).await),
        VerifyCode::Valid
    );
    server.stop().await;
}

async fn rotation_and_the_active_key_limit(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(
            server
                .create(key_request("full", &["videos:read"]))
                .await
                .1
                .id,
        );
    }
    // At the limit, rotating still works: the replacement takes the old key's slot.
    let rotated = rotate(&server, &ids[0], 3600).await;
    let new_id = rotated.api_key.unwrap().id;
    let status = create_err(&server, key_request("full", &["videos:read"])).await;
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "still 10 active keys"
    );
    // A replaced key cannot be rotated again; its replacement can.
    let mut manage = server.manage().await;
    let again = manage
        .rotate_key(server.root(proto::RotateKeyRequest {
            id: ids[0].clone(),
            grace_period: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(
        again.message(),
        format!(
            "key \"{}\" was already rotated; rotate its replacement instead",
            ids[0]
        )
    );
    rotate(&server, &new_id, 0).await;
    let missing = manage
        .rotate_key(server.root(proto::RotateKeyRequest {
            id: ABSENT_ID.into(),
            grace_period: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    server.stop().await;
}

async fn accounts_limit_and_disable(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut manage = server.manage().await;
    let missing = manage
        .get_account(server.root(proto::GetAccountRequest {
            account_id: "acme".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let (secret, _) = server.create(key_request("acme", &["videos:read"])).await;
    let (other, _) = server.create(key_request("other", &["videos:read"])).await;
    let account = manage
        .get_account(server.root(proto::GetAccountRequest {
            account_id: "acme".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(
        (
            account.max_active_keys,
            account.active_keys,
            account.disabled
        ),
        (10, 1, false)
    );

    let update = |mask: &[&str], max: u32, disabled: bool| {
        server.root(proto::UpdateAccountRequest {
            account_id: "acme".into(),
            max_active_keys: max,
            disabled,
            update_mask: Some(FieldMask {
                paths: mask.iter().map(|p| p.to_string()).collect(),
            }),
            rate_limit: None,
        })
    };
    let account = manage
        .update_account(update(&["max_active_keys"], 2, false))
        .await
        .unwrap();
    assert_eq!(account.into_inner().account.unwrap().max_active_keys, 2);
    server.create(key_request("acme", &["videos:read"])).await;
    let status = create_err(&server, key_request("acme", &["videos:read"])).await;
    assert_eq!(
        status.code(),
        Code::FailedPrecondition,
        "the override applies"
    );

    // Disabling: the cached key is refused on the very next verify; other accounts are not.
    assert_eq!(code(&server.verify(&secret, &[]).await), VerifyCode::Valid);
    manage
        .update_account(update(&["disabled"], 0, true))
        .await
        .unwrap();
    let response = server.verify(&secret, &[]).await;
    assert_eq!(code(&response), VerifyCode::AccountDisabled);
    assert_eq!(response.http_status, 403);
    assert_eq!(code(&server.verify(&other, &[]).await), VerifyCode::Valid);
    manage
        .update_account(update(&["disabled"], 0, false))
        .await
        .unwrap();
    assert_eq!(code(&server.verify(&secret, &[]).await), VerifyCode::Valid);

    let bad = manage
        .update_account(update(&["colour"], 0, false))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["update_mask"]);
    // Only root may change account policy.
    let (writer, _) = server.create(key_request("other", &["keys:write"])).await;
    let mut request = update(&["disabled"], 0, true);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {writer}").parse().unwrap());
    let denied = manage.update_account(request).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    server.stop().await;
}

async fn last_use_is_coalesced_and_listed(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.last_used_interval = Duration::from_secs(1);
        c.rate_limit = 10_000;
    })
    .await;
    let (used, used_key) = server.create(key_request("acme", &["videos:read"])).await;
    let (_, idle_key) = server.create(key_request("acme", &["videos:read"])).await;
    let before = keyward::time::Timestamp::now();
    let writes_before = server.service.last_used().writes();
    let mut verifier = server.verifier().await;
    for _ in 0..1000 {
        let response = verifier
            .verify(verify_request(&used, &[]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(code(&response), VerifyCode::Valid);
    }
    let mut manage = server.manage().await;
    let last_used = eventually(
        Duration::from_secs(10),
        "last_used_at to be written",
        || {
            let request = server.root(proto::GetKeyRequest {
                id: used_key.id.clone(),
            });
            let mut manage = manage.clone();
            async move {
                manage
                    .get_key(request)
                    .await
                    .unwrap()
                    .into_inner()
                    .api_key
                    .unwrap()
                    .last_used_at
            }
        },
    )
    .await;
    let (secs_part, nanos) = before.to_parts();
    assert!((last_used.seconds, last_used.nanos) >= (secs_part - 1, nanos));
    let writes = server.service.last_used().writes() - writes_before;
    assert!(writes <= 3, "1000 verifies caused {writes} store writes");

    let unused = manage
        .list_keys(server.root(proto::ListKeysRequest {
            account_id: "acme".into(),
            unused_since: Some(prost_types::Timestamp {
                seconds: last_used.seconds - 60,
                nanos: 0,
            }),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<_> = unused.api_keys.iter().map(|k| k.id.clone()).collect();
    assert_eq!(ids, [idle_key.id], "only the never-used key is idle");
    server.stop().await;
}

async fn last_use_is_flushed_at_shutdown(backend: Backend) {
    let (url, _dir) = fresh_database(backend).await;
    let mut config = test_config(&url);
    config.last_used_interval = Duration::from_secs(3600);
    let server = TestServer::start_on(config).await;
    let (secret, key) = server.create(key_request("acme", &["videos:read"])).await;
    assert_eq!(code(&server.verify(&secret, &[]).await), VerifyCode::Valid);
    server.stop().await;
    let store = keyward::store::connect(&keyward::store::DatabaseUrl::new(url))
        .await
        .unwrap();
    let stored = store
        .key_by_id(&KeyId::parse(&key.id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.key.last_used_at.is_some(),
        "pending last use written at shutdown"
    );
    store.close().await;
}
