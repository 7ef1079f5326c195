//! The holes hostile testing found, each pinned by a test that failed before it was closed:
//! unbounded input, the root account, limit and lifetime bypasses, path tricks, error details
//! that echo input, and management keys acting outside their environment or restrictions.

use std::time::Duration;

use keyward::proto::{self, VerifyCode, create_key_request};
use prost_types::FieldMask;
use tonic::Code;

use crate::both_backends;
use crate::helpers::{
    ABSENT_ID, Backend, TestServer, as_key, code, eventually, key_request, verify_request,
    violated_fields,
};

both_backends!(
    root_account_is_reserved,
    retiring_and_expired_keys_cannot_be_extended,
    max_ttl_holds_on_update,
    ids_are_validated_at_the_edge,
    management_keys_follow_their_environment_and_restrictions,
);

fn secs(seconds: i64) -> prost_types::Duration {
    prost_types::Duration { seconds, nanos: 0 }
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_before_any_work() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (key, _) = server.create(key_request("acme", &["videos:read"])).await;
    let mut verifier = server.verifier().await;

    // 60,000 distinct scopes (~0.5 MB): refused by size before a single one is decoded.
    let huge: Vec<String> = (0..60_000).map(|i| format!("s{i}:read")).collect();
    let mut request = verify_request(&key, &[]);
    request.required_scopes = huge.clone();
    let status = verifier.verify(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    // Within the size limit but past the count limit: one violation, no per-scope work.
    let mut request = verify_request(&key, &[]);
    request.required_scopes = huge[..201].to_vec();
    let status = verifier.verify(request).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["required_scopes"]);
    // Request-context fields are bounded.
    let mut request = verify_request(&key, &[]);
    request.context = Some(proto::RequestContext {
        method: "G".repeat(21),
        path: format!("/{}", "a".repeat(4096)),
        client_ip: "1".repeat(65),
        referrer: "r".repeat(4097),
    });
    let status = verifier.verify(request).await.unwrap_err();
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "context.client_ip",
            "context.method",
            "context.path",
            "context.referrer"
        ]
    );
    // Context fields are parsed once, at the edge: a bad one names itself.
    let mut request = verify_request(&key, &[]);
    request.context = Some(proto::RequestContext {
        method: "GE T".into(),
        client_ip: "not-an-ip".into(),
        ..Default::default()
    });
    let status = verifier.verify(request).await.unwrap_err();
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, vec!["context.client_ip", "context.method"]);
    // CreateKey with 40,000 scopes: over ManageService's size limit.
    let mut create = key_request("acme", &[]);
    create.scopes = huge[..40_000].to_vec();
    let status = server
        .manage()
        .await
        .create_key(server.root(create))
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    // An ordinary Verify still answers at once.
    assert_eq!(
        code(&server.verify(&key, &["videos:read"]).await),
        VerifyCode::Valid
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_details_are_capped_and_never_echo_a_key() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut manage = server.manage().await;
    // 40 bad scopes: at most 10 violations and a count of the rest, far below the 16 KiB
    // metadata limit of gRPC core clients.
    let mut create = key_request("acme", &[]);
    create.scopes = (0..40)
        .map(|i| format!("BAD-{i}-{}", "x".repeat(100)))
        .collect();
    let status = manage.create_key(server.root(create)).await.unwrap_err();
    let fields = violated_fields(&status);
    assert_eq!(fields.len(), 11, "{fields:?}");
    assert_eq!(fields.last().map(String::as_str), Some("request"));
    assert!(status.details().len() < 4096, "{}", status.details().len());
    assert!(status.message().len() < 4096);
    // A 100 kB CIDR is not echoed back whole.
    let mut create = key_request("acme", &["videos:read"]);
    create.restrictions = Some(proto::Restrictions {
        allowed_cidrs: vec!["1".repeat(100_000)],
        ..Default::default()
    });
    let status = manage.create_key(server.root(create)).await.unwrap_err();
    assert_eq!(
        violated_fields(&status),
        vec!["restrictions.allowed_cidrs[0]"]
    );
    assert!(status.message().len() < 300, "{}", status.message().len());
    // A raw key pasted where an id or a scope belongs is never quoted back.
    let (secret, _) = server.create(key_request("acme", &["videos:read"])).await;
    let status = manage
        .get_key(server.root(proto::GetKeyRequest { id: secret.clone() }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["id"]);
    let mut create = key_request("acme", &[]);
    create.scopes = vec![secret.clone()];
    let bad_scope = manage.create_key(server.root(create)).await.unwrap_err();
    let account = manage
        .get_account(server.root(proto::GetAccountRequest {
            account_id: secret.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(account.code(), Code::NotFound);
    for status in [&status, &bad_scope, &account] {
        let everything = format!("{} {:?}", status.message(), status.details());
        assert!(!everything.contains(&secret[8..]), "{everything}");
    }
    server.stop().await;
}

async fn ids_are_validated_at_the_edge(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut manage = server.manage().await;
    for id in [
        "key_\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        "key_x",
        "x",
    ] {
        let status = manage
            .get_key(server.root(proto::GetKeyRequest { id: id.into() }))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), vec!["id"], "{id:?}");
        let status = manage
            .revoke_key(server.root(proto::RevokeKeyRequest { id: id.into() }))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), vec!["id"], "{id:?}");
    }
    let status = manage
        .list_keys(server.root(proto::ListKeysRequest {
            account_id: "ac\0me".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["account_id"]);
    let status = manage
        .get_key(server.root(proto::GetKeyRequest {
            id: ABSENT_ID.into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    server.stop().await;
}

async fn root_account_is_reserved(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut manage = server.manage().await;
    // No customer key can be created in the root keys' account...
    let status = manage
        .create_key(server.root(key_request("root", &["keys:write", "videos:read"])))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["account_id"]);
    // ...nor can any create or update hand out the root scope.
    let status = manage
        .create_key(server.root(key_request("acme", &["root"])))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["scopes[0]"]);
    let (writer, writer_key) = server
        .create(key_request("acme", &["keys:write", "videos:read"]))
        .await;
    let status = manage
        .update_key(server.root(proto::UpdateKeyRequest {
            id: writer_key.id.clone(),
            scopes: vec!["root".into()],
            update_mask: mask(&["scopes"]),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["scopes[0]"]);
    // A customer's management key cannot reach the root account.
    let status = manage
        .list_keys(as_key(
            &writer,
            proto::ListKeysRequest {
                account_id: "root".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    // Root keys are listed for root callers, and the root account's policy does not change.
    let roots = manage
        .list_keys(server.root(proto::ListKeysRequest {
            account_id: "root".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(roots.api_keys.iter().all(|k| k.scopes == ["root"]));
    let status = manage
        .update_account(server.root(proto::UpdateAccountRequest {
            account_id: "root".into(),
            disabled: true,
            update_mask: mask(&["disabled"]),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    server.stop().await;
}

async fn retiring_and_expired_keys_cannot_be_extended(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut manage = server.manage().await;
    manage
        .update_account(server.root(proto::UpdateAccountRequest {
            account_id: "acme".into(),
            max_active_keys: 1,
            update_mask: mask(&["max_active_keys"]),
            ..Default::default()
        }))
        .await
        .unwrap();
    let (_, old) = server.create(key_request("acme", &["videos:read"])).await;
    let rotated = manage
        .rotate_key(server.root(proto::RotateKeyRequest {
            id: old.id.clone(),
            grace_period: Some(secs(3600)),
        }))
        .await
        .unwrap()
        .into_inner();
    let grace_end = rotated.previous_api_key.unwrap().expires_at.unwrap();
    // The old key, in its grace period, cannot be made to live on beside its replacement.
    let far = prost_types::Timestamp {
        seconds: grace_end.seconds + 86_400,
        nanos: 0,
    };
    for expires_at in [None, Some(far)] {
        let status = manage
            .update_key(server.root(proto::UpdateKeyRequest {
                id: old.id.clone(),
                expires_at,
                update_mask: mask(&["expires_at"]),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    }
    // Shortening the grace period is fine.
    let sooner = prost_types::Timestamp {
        seconds: grace_end.seconds - 60,
        nanos: 0,
    };
    manage
        .update_key(server.root(proto::UpdateKeyRequest {
            id: old.id.clone(),
            expires_at: Some(sooner),
            update_mask: mask(&["expires_at"]),
            ..Default::default()
        }))
        .await
        .expect("shortening a grace period");
    let account = manage
        .get_account(server.root(proto::GetAccountRequest {
            account_id: "acme".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!(account.active_keys, 1);

    // An expired key cannot be brought back to life past the limit.
    let mut other = key_request("beta", &["videos:read"]);
    other.expiry = Some(create_key_request::Expiry::Ttl(secs(1)));
    let (short_secret, short) = server.create(other).await;
    eventually(Duration::from_secs(5), "the key to expire", || {
        let server = &server;
        let secret = short_secret.clone();
        async move {
            (code(&server.verify(&secret, &[]).await) == VerifyCode::Expired).then_some(())
        }
    })
    .await;
    let status = manage
        .update_key(server.root(proto::UpdateKeyRequest {
            id: short.id.clone(),
            expires_at: None,
            update_mask: mask(&["expires_at"]),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        code(&server.verify(&short_secret, &[]).await),
        VerifyCode::Expired
    );
    server.stop().await;
}

async fn max_ttl_holds_on_update(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.max_ttl = Some(Duration::from_secs(30 * 86_400))
    })
    .await;
    let mut manage = server.manage().await;
    let mut request = key_request("acme", &["videos:read"]);
    request.expiry = Some(create_key_request::Expiry::Ttl(secs(10 * 86_400)));
    let (_, key) = server.create(request).await;
    let created = key.created_at.unwrap().seconds;
    let update = |expires_at: Option<prost_types::Timestamp>| proto::UpdateKeyRequest {
        id: key.id.clone(),
        expires_at,
        update_mask: mask(&["expires_at"]),
        ..Default::default()
    };
    let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
    for expires_at in [
        None,
        Some(at(created + 40 * 86_400)),
        Some(at(4_102_444_800)),
    ] {
        let status = manage
            .update_key(server.root(update(expires_at)))
            .await
            .unwrap_err();
        assert_eq!(
            violated_fields(&status),
            vec!["expires_at"],
            "{expires_at:?}"
        );
    }
    manage
        .update_key(server.root(update(Some(at(created + 20 * 86_400)))))
        .await
        .expect("within max_ttl");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_stay_within_what_protobuf_can_decode() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut manage = server.manage().await;
    let ten_thousand_years = 10_000 * 365 * 86_400;
    let mut request = key_request("acme", &["videos:read"]);
    request.expiry = Some(create_key_request::Expiry::Ttl(secs(ten_thousand_years)));
    let status = manage.create_key(server.root(request)).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["ttl"]);
    let mut request = key_request("acme", &["videos:read"]);
    request.expiry = Some(create_key_request::Expiry::ExpiresAt(
        prost_types::Timestamp {
            seconds: 317_400_000_000, // year 12027
            nanos: 0,
        },
    ));
    let status = manage.create_key(server.root(request)).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["expires_at"]);
    let (_, key) = server.create(key_request("acme", &["videos:read"])).await;
    let status = manage
        .rotate_key(server.root(proto::RotateKeyRequest {
            id: key.id,
            grace_period: Some(secs(ten_thousand_years)),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["grace_period"]);
    let mut request = key_request("acme", &["videos:read"]);
    request.rate_limit = Some(proto::RateLimit {
        limit: 1,
        window: Some(secs(ten_thousand_years)),
    });
    let status = manage.create_key(server.root(request)).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["rate_limit.window"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalised_and_mapped_addresses_match() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut request = key_request("acme", &["videos:read"]);
    request.restrictions = Some(proto::Restrictions {
        allowed_paths: vec!["/v1/videos/*".into()],
        allowed_cidrs: vec!["::ffff:10.0.0.0/104".into()],
        ..Default::default()
    });
    let (key, record) = server.create(request).await;
    assert_eq!(
        record.restrictions.unwrap().allowed_cidrs,
        vec!["10.0.0.0/8".to_owned()]
    );
    let verifier = server.verifier().await;
    let verify = |path: &str, ip: &str| {
        let mut request = verify_request(&key, &["videos:read"]);
        request.context = Some(proto::RequestContext {
            path: path.into(),
            client_ip: ip.into(),
            ..Default::default()
        });
        let mut verifier = verifier.clone();
        async move { code(&verifier.verify(request).await.expect("verify").into_inner()) }
    };
    for attack in [
        "/v1/videos/../admin",
        "/v1/videos/%2e%2e/admin",
        "/v1/videos/..%2f..%2fadmin",
        "/v1/videos/%2E%2E%2Fadmin",
        "/v1/videos//../admin",
        "/v1/videos/..;/admin",
        "/v1/videos/a%00",
    ] {
        assert_eq!(
            verify(attack, "10.1.2.3").await,
            VerifyCode::PathNotAllowed,
            "{attack}"
        );
    }
    assert_eq!(verify("/v1/videos/42", "10.1.2.3").await, VerifyCode::Valid);
    assert_eq!(
        verify("/v1/videos/%34%32?q=..", "::ffff:10.1.2.3").await,
        VerifyCode::Valid
    );
    assert_eq!(
        verify("/v1/videos/42", "11.1.2.3").await,
        VerifyCode::IpNotAllowed
    );
    server.stop().await;
}

async fn management_keys_follow_their_environment_and_restrictions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut manage = server.manage().await;
    // A test management key manages test keys only.
    let mut test_writer = key_request("acme", &["keys:write", "videos:read"]);
    test_writer.environment = proto::Environment::Test.into();
    let (test_writer, _) = server.create(test_writer).await;
    let status = manage
        .create_key(as_key(&test_writer, key_request("acme", &["videos:read"])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let mut test_key = key_request("acme", &["videos:read"]);
    test_key.environment = proto::Environment::Test.into();
    manage
        .create_key(as_key(&test_writer, test_key))
        .await
        .expect("a test key may create test keys");
    let (_, live) = server.create(key_request("acme", &["videos:read"])).await;
    let status = manage
        .revoke_key(as_key(
            &test_writer,
            proto::RevokeKeyRequest {
                id: live.id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);

    // A management key's own restrictions apply to its management calls: the caller's
    // address is the TCP peer (here 127.0.0.1), reads are GET and changes POST.
    let restricted = |cidr: &str, methods: &[&str]| {
        let mut r = key_request("acme", &["keys:write", "videos:read"]);
        r.restrictions = Some(proto::Restrictions {
            allowed_cidrs: vec![cidr.into()],
            allowed_methods: methods.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        });
        r
    };
    let (elsewhere, _) = server.create(restricted("203.0.113.0/24", &[])).await;
    let list = || proto::ListKeysRequest {
        account_id: "acme".into(),
        ..Default::default()
    };
    let status = manage
        .list_keys(as_key(&elsewhere, list()))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    let (local_reader, _) = server.create(restricted("127.0.0.0/8", &["GET"])).await;
    manage
        .list_keys(as_key(&local_reader, list()))
        .await
        .expect("a read from an allowed address");
    let status = manage
        .create_key(as_key(&local_reader, key_request("acme", &["videos:read"])))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "GET only: no changes"
    );
    server.stop().await;
}

/// Waits until the peer closes `stream` (a read returns end-of-file or an error).
async fn closed_by_server(mut stream: tokio::net::TcpStream, deadline: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // e.g. the server's HTTP/2 settings frame
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_on_both_ports() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    for _ in 0..50 {
        silent.push(
            tokio::net::TcpStream::connect(server.metrics_addr)
                .await
                .unwrap(),
        );
    }
    let closed = futures_join_all(
        silent
            .into_iter()
            .map(|s| closed_by_server(s, Duration::from_secs(15))),
    )
    .await;
    assert_eq!(closed.iter().filter(|c| **c).count(), 250);
    // The metrics endpoint (real HTTP) and the gRPC port still serve.
    let metrics = server.metrics().await;
    assert!(metrics.contains("keyward_connections_open{listener=\"grpc\"}"));
    let (key, _) = server.create(key_request("acme", &["videos:read"])).await;
    assert_eq!(code(&server.verify(&key, &[]).await), VerifyCode::Valid);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.max_connections = 8;
        c.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    let (grpc, _) = server.connection_gauges.clone();
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    // The kernel completes the handshakes, but the server holds at most 8 at a time, while
    // the silent ones time out in turn.
    let closers: Vec<_> = silent
        .into_iter()
        .map(|s| tokio::spawn(closed_by_server(s, Duration::from_secs(30))))
        .collect();
    let mut most = 0;
    eventually(
        Duration::from_secs(30),
        "the silent connections to close",
        || {
            most = most.max(grpc.open());
            let finished = closers.iter().all(|c| c.is_finished());
            async move { finished.then_some(()) }
        },
    )
    .await;
    for closer in closers {
        assert!(closer.await.unwrap(), "closed by the server");
    }
    assert!(most <= 8, "at most 8 connections open, saw {most}");
    let (key, _) = server.create(key_request("acme", &["videos:read"])).await;
    assert_eq!(code(&server.verify(&key, &[]).await), VerifyCode::Valid);
    server.stop().await;
}

/// Awaits every future, concurrently.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

/// With `verify_auth`, Verify answers only callers presenting a key that holds `keys:verify`
/// (or `root`); nobody else can read key metadata or spend a key's rate limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_can_require_an_authenticated_caller() {
    let server = TestServer::start_with(Backend::Sqlite, |c| c.verify_auth = true).await;
    let (key, _) = server.create(key_request("acme", &["videos:read"])).await;
    let (gateway, _) = server
        .create(key_request("gateway", &["keys:verify"]))
        .await;
    let mut verifier = server.verifier().await;
    let status = verifier
        .verify(verify_request(&key, &["videos:read"]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = verifier
        .verify(as_key(&key, verify_request(&key, &["videos:read"])))
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::PermissionDenied,
        "a key without keys:verify"
    );
    let answer = verifier
        .verify(as_key(&gateway, verify_request(&key, &["videos:read"])))
        .await
        .expect("the gateway's key may verify")
        .into_inner();
    assert_eq!(code(&answer), VerifyCode::Valid);
    // keys:verify is reserved: grant_all never implies it.
    let mut all = key_request("acme", &[]);
    all.grant_all = true;
    let (all, _) = server.create(all).await;
    let status = verifier
        .verify(as_key(&all, verify_request(&key, &[])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    server.stop().await;
    // Off by default: a gateway on a private network needs no credential.
    let open = TestServer::start(Backend::Sqlite).await;
    let (key, _) = open.create(key_request("acme", &["videos:read"])).await;
    assert_eq!(code(&open.verify(&key, &[]).await), VerifyCode::Valid);
    open.stop().await;
}
