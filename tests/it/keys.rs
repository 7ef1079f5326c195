//! Creating and verifying keys: every verify code of the foundation, in the order docs/keys.md lists them.

use std::time::Duration;

use keyward::proto::{self, Environment, VerifyCode};

use crate::both_backends;
use crate::helpers::{
    Backend, TestServer, code, eventually, key_request, verify_request, violated_fields,
};

both_backends!(
    created_key_verifies,
    missing_scopes_are_listed,
    revocation_is_seen_by_the_next_verify,
    expired_keys_are_refused,
    wrong_environment_is_refused,
    malformed_keys_make_no_lookup,
    cached_keys_make_no_store_call,
    scope_changes_apply_to_the_next_verify,
);

async fn created_key_verifies(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut request = key_request("acme", &["videos:read", "videos:write"]);
    request.meta.insert("plan".into(), "pro".into());
    let (secret, api_key) = server.create(request).await;
    assert!(secret.starts_with("kw_live_"), "key format");
    assert!(secret.len() <= 55);
    assert_eq!(api_key.prefix, secret[..16]);
    assert!(api_key.id.starts_with("key_"));

    let response = server.verify(&secret, &["videos:read"]).await;
    assert_eq!(code(&response), VerifyCode::Valid);
    assert!(response.valid);
    assert_eq!(response.http_status, 200);
    let info = response.key.expect("key info on VALID");
    assert_eq!(info.key_id, api_key.id);
    assert_eq!(info.account_id, "acme");
    assert_eq!(info.environment, Environment::Live as i32);
    assert_eq!(info.scopes, vec!["videos:read", "videos:write"]);
    assert_eq!(info.meta.get("plan").map(String::as_str), Some("pro"));
    server.stop().await;
}

async fn missing_scopes_are_listed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (secret, _) = server.create(key_request("acme", &["videos:read"])).await;
    let response = server
        .verify(
            &secret,
            &["videos:read", "members:email", "collections:write"],
        )
        .await;
    assert_eq!(code(&response), VerifyCode::InsufficientScope);
    assert!(!response.valid);
    assert_eq!(response.http_status, 403);
    assert_eq!(
        response.missing_scopes,
        vec!["members:email", "collections:write"]
    );
    assert!(response.key.is_some(), "key info is present on a denial");
    server.stop().await;
}

async fn revocation_is_seen_by_the_next_verify(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (secret, api_key) = server.create(key_request("acme", &["videos:read"])).await;
    assert_eq!(code(&server.verify(&secret, &[]).await), VerifyCode::Valid);
    let revoked = server
        .manage()
        .await
        .revoke_key(server.root(proto::RevokeKeyRequest {
            id: api_key.id.clone(),
        }))
        .await
        .expect("revoke")
        .into_inner()
        .api_key
        .expect("api_key");
    assert!(revoked.revoked);
    assert!(revoked.revoked_at.is_some());
    let response = server.verify(&secret, &[]).await;
    assert_eq!(code(&response), VerifyCode::Revoked);
    assert_eq!(response.http_status, 401);
    server.stop().await;
}

async fn expired_keys_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut request = key_request("acme", &["videos:read"]);
    request.expiry = Some(proto::create_key_request::Expiry::Ttl(
        prost_types::Duration {
            seconds: 1,
            nanos: 0,
        },
    ));
    let (secret, api_key) = server.create(request).await;
    assert!(api_key.expires_at.is_some());
    assert_eq!(code(&server.verify(&secret, &[]).await), VerifyCode::Valid);
    let response = eventually(Duration::from_secs(5), "the key to expire", || async {
        let r = server.verify(&secret, &[]).await;
        (code(&r) != VerifyCode::Valid).then_some(r)
    })
    .await;
    assert_eq!(code(&response), VerifyCode::Expired);
    assert_eq!(response.http_status, 401);
    server.stop().await;
}

async fn wrong_environment_is_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut request = key_request("acme", &["videos:read"]);
    request.environment = Environment::Test.into();
    let (secret, _) = server.create(request).await;
    assert!(secret.starts_with("kw_test_"));
    let mut verifier = server.verifier().await;
    let ask = |env: Environment| {
        let mut r = verify_request(&secret, &[]);
        r.environment = env.into();
        r
    };
    let live = verifier
        .verify(ask(Environment::Live))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&live), VerifyCode::WrongEnvironment);
    assert_eq!(live.http_status, 401);
    let test = verifier
        .verify(ask(Environment::Test))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&test), VerifyCode::Valid);
    let any = verifier
        .verify(ask(Environment::Unspecified))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&any), VerifyCode::Valid);
    server.stop().await;
}

async fn malformed_keys_make_no_lookup(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (secret, _) = server.create(key_request("acme", &["videos:read"])).await;
    let before = server.store_lookups();

    let missing = server.verify("", &[]).await;
    assert_eq!(code(&missing), VerifyCode::Missing);
    assert_eq!(missing.http_status, 401);

    let last = secret.chars().last().unwrap();
    let bad_checksum = format!(
        "{}{}",
        &secret[..secret.len() - 1],
        if last == 'a' { 'b' } else { 'a' }
    );
    let mut typo = secret.clone().into_bytes();
    typo[20] = if typo[20] == b'x' { b'y' } else { b'x' };
    let typo = String::from_utf8(typo).unwrap();
    for bad in [
        bad_checksum.as_str(),
        typo.as_str(),
        "kw_live_short",
        "not a key at all",
        &secret.replacen("kw_", "sk_", 1),
        &secret.replacen("_live_", "_prod_", 1),
    ] {
        let response = server.verify(bad, &[]).await;
        assert_eq!(code(&response), VerifyCode::Malformed, "{bad}");
        assert_eq!(response.http_status, 401);
        assert!(response.key.is_none());
    }
    assert_eq!(
        server.store_lookups(),
        before,
        "malformed keys reached the store"
    );

    // A well-formed key nobody issued is looked up and not found.
    let format = keyward::key::KeyFormat::default();
    let unknown = format.generate(keyward::key::Environment::Live);
    let response = server.verify(unknown.secret.expose(), &[]).await;
    assert_eq!(code(&response), VerifyCode::NotFound);
    assert_eq!(response.http_status, 401);
    server.stop().await;
}

async fn cached_keys_make_no_store_call(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (secret, _) = server.create(key_request("acme", &["videos:read"])).await;
    assert_eq!(
        code(&server.verify(&secret, &["videos:read"]).await),
        VerifyCode::Valid
    );
    let after_first = server.store_lookups();
    for _ in 0..50 {
        assert_eq!(
            code(&server.verify(&secret, &["videos:read"]).await),
            VerifyCode::Valid
        );
    }
    assert_eq!(
        server.store_lookups(),
        after_first,
        "a cached key went to the store"
    );
    server.stop().await;
}

async fn scope_changes_apply_to_the_next_verify(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (secret, api_key) = server.create(key_request("acme", &["videos:read"])).await;
    assert_eq!(
        code(&server.verify(&secret, &["videos:write"]).await),
        VerifyCode::InsufficientScope
    );
    let updated = server
        .manage()
        .await
        .update_key(server.root(proto::UpdateKeyRequest {
            id: api_key.id.clone(),
            scopes: vec!["videos:read".into(), "videos:write".into()],
            name: "renamed".into(),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["scopes".into(), "name".into()],
            }),
            ..Default::default()
        }))
        .await
        .expect("update")
        .into_inner()
        .api_key
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(updated.scopes, vec!["videos:read", "videos:write"]);
    let response = server.verify(&secret, &["videos:write"]).await;
    assert_eq!(code(&response), VerifyCode::Valid);
    assert_eq!(response.key.unwrap().name, "renamed");
    server.stop().await;
}

/// The basic view (AIP-157) answers the same decision with only the key's identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_basic_view_carries_only_the_keys_identity() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (key, created) = server
        .create(keyward::proto::CreateKeyRequest {
            meta: [("team".to_owned(), "search".to_owned())].into(),
            ..key_request("acme", &["videos:read"])
        })
        .await;
    let mut verifier = server.verifier().await;
    let ask = |view: keyward::proto::VerifyView| keyward::proto::VerifyRequest {
        view: view.into(),
        ..verify_request(&key, &["videos:read"])
    };
    let full = verifier
        .verify(ask(keyward::proto::VerifyView::Unspecified))
        .await
        .unwrap()
        .into_inner();
    let basic = verifier
        .verify(ask(keyward::proto::VerifyView::Basic))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((full.code, full.valid), (basic.code, basic.valid));
    let (full_bytes, basic_bytes) = (
        prost::Message::encoded_len(&full),
        prost::Message::encoded_len(&basic),
    );
    let (full_key, basic_key) = (full.key.unwrap(), basic.key.unwrap());
    assert_eq!(full_key.scopes, ["videos:read"]);
    assert_eq!(
        full_key.meta.get("team").map(String::as_str),
        Some("search")
    );
    assert_eq!(basic_key.key_id, created.id);
    assert_eq!(basic_key.account_id, "acme");
    assert!(basic_key.name.is_empty() && basic_key.scopes.is_empty() && basic_key.meta.is_empty());
    assert!(basic_bytes < full_bytes, "fewer bytes on the wire");
    let bad = verifier
        .verify(keyward::proto::VerifyRequest {
            view: 9,
            ..verify_request(&key, &[])
        })
        .await
        .expect_err("an unknown view");
    assert_eq!(violated_fields(&bad), ["view"]);
    server.stop().await;
}
