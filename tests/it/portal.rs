//! Portal sessions: a product's backend asks for a one-time link for one account; opened, it
//! becomes a cookie session that manages that account's keys through the JSON API with a CSRF
//! header, within the session's permissions, audited as the session.

use std::time::Duration;

use keyward::proto::{self, VerifyCode};

use crate::both_backends;
use crate::helpers::*;

both_backends!(
    a_customer_manages_keys_in_a_portal_session,
    portal_links_and_sessions_end
);

/// A browser of one: the cookie it was given and the CSRF token its page read.
struct Browser {
    addr: std::net::SocketAddr,
    cookie: String,
    csrf: String,
}

impl Browser {
    /// Follows the link: the answer sets the cookie and sends the browser to `/portal`.
    async fn open(addr: std::net::SocketAddr, path: &str) -> Browser {
        let opened = http(addr, "GET", path, &[]).await;
        assert_eq!(opened.status, 303, "{}", opened.body);
        assert_eq!(opened.header("location"), Some("/portal"));
        let set = opened.header("set-cookie").expect("a cookie").to_owned();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(!set.contains("Secure"), "plain HTTP here: {set}");
        let cookie = set.split(';').next().unwrap().to_owned();
        assert!(cookie.starts_with("keyward_portal=kwps_"), "{cookie}");
        let session = http(addr, "GET", "/portal/session", &[("cookie", &cookie)]).await;
        assert_eq!(session.status, 200, "{}", session.body);
        let csrf = session.json()["csrfToken"].as_str().unwrap().to_owned();
        Browser { addr, cookie, csrf }
    }

    async fn call(&self, method: &str, target: &str, body: &str) -> HttpAnswer {
        http_with_body(
            self.addr,
            method,
            target,
            &[
                ("cookie", &self.cookie),
                ("x-csrf-token", &self.csrf),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }
}

async fn create_session(server: &TestServer, key: &str, body: serde_json::Value) -> HttpAnswer {
    create_portal_session(server, key, &body).await
}

/// The flow of the reference pages, by a customer in a portal session: create with a preset
/// (the key verifies), edit scopes (seen at once), revoke (refused next); everything outside
/// the session's permissions or account refused; audited as the session.
async fn a_customer_manages_keys_in_a_portal_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    // The product's backend: an account key of acme that may grant videos.
    let (backend_key, _) = server
        .create(key_request(
            "acme",
            &["keys:write", "keys:read", "videos:read", "videos:write"],
        ))
        .await;
    let (_, globex_key) = server.create(key_request("globex", &["videos:read"])).await;
    let answer = create_session(
        &server,
        &backend_key,
        serde_json::json!({
            "permissions": {"scopes": ["videos:read", "videos:write"], "maxTtl": "90d",
                            "revoke": true, "usage": true},
            "displayName": "Ada at Acme",
            "returnUrl": "https://app.acme.example/settings",
            "branding": {"productName": "Acme Video", "accentColor": "#0a7aff"}
        }),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let created = answer.json();
    assert_eq!(created["data"]["session"]["accountId"], "acme");
    assert_eq!(created["data"]["session"]["status"], "pending");
    let session_id = created["data"]["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = portal_link_path(&created);

    let browser = Browser::open(server.http_addr, &path).await;
    // The link works once.
    let replay = http(server.http_addr, "GET", &path, &[]).await;
    assert_eq!(replay.status, 401);
    assert!(
        replay.body.contains("This link does not work"),
        "{}",
        replay.body
    );
    // The page itself: the admin page in portal mode, framed by no one by default.
    let page = http(server.http_addr, "GET", "/portal", &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-mode=\"portal\""));
    assert!(page.body.contains("/portal/app.js"));
    let policy = page.header("content-security-policy").unwrap();
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(policy.contains("script-src 'self'"), "{policy}");

    // Create with custom scopes within the session's; the key verifies.
    let made = browser
        .call(
            "POST",
            "/v1/api-keys",
            r#"{"name": "CI", "scopes": ["videos:read"], "expiresIn": "30d"}"#,
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let made = made.json();
    let key = made["data"]["key"].as_str().unwrap().to_owned();
    let id = made["data"]["apiKey"]["id"].as_str().unwrap().to_owned();
    assert_eq!(made["data"]["apiKey"]["accountId"], "acme");
    assert_eq!(
        code(&server.verify(&key, &["videos:read"]).await),
        VerifyCode::Valid
    );
    // Edit: the next Verify sees the new scopes.
    let edited = browser
        .call(
            "PATCH",
            &format!("/v1/api-keys/{id}"),
            r#"{"scopes": ["videos:write"]}"#,
        )
        .await;
    assert_eq!(edited.status, 200, "{}", edited.body);
    assert_eq!(
        code(&server.verify(&key, &["videos:read"]).await),
        VerifyCode::InsufficientScope
    );

    // Refused: no CSRF header, a wrong one; beyond the grant; billing terms; a longer life;
    // another account's key or account; rotating (not given).
    let no_csrf = http_with_body(
        server.http_addr,
        "POST",
        "/v1/api-keys",
        &[
            ("cookie", &browser.cookie),
            ("content-type", "application/json"),
        ],
        r#"{"name": "x", "scopes": ["videos:read"], "expiresIn": "30d"}"#,
    )
    .await;
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    let wrong_csrf = http_with_body(
        server.http_addr,
        "GET",
        "/v1/api-keys",
        &[("cookie", &browser.cookie), ("x-csrf-token", "00")],
        "",
    )
    .await;
    assert_eq!(wrong_csrf.status, 403, "{}", wrong_csrf.body);
    for (body, status) in [
        (
            r#"{"name": "x", "scopes": ["keys:write"], "expiresIn": "30d"}"#,
            403,
        ),
        (
            r#"{"name": "x", "scopes": ["analytics:read"], "expiresIn": "30d"}"#,
            403,
        ),
        (
            r#"{"name": "x", "grantAll": true, "expiresIn": "30d"}"#,
            403,
        ),
        (
            r#"{"name": "x", "scopes": ["videos:read"], "expiresIn": "30d", "credits": {"remaining": 5}}"#,
            403,
        ),
        (
            r#"{"name": "x", "scopes": ["videos:read"], "expiresIn": "1y"}"#,
            422,
        ),
        (
            r#"{"name": "x", "scopes": ["videos:read"], "expiresIn": "never"}"#,
            422,
        ),
        (
            r#"{"name": "x", "scopes": ["videos:read"], "expiresIn": "30d", "accountId": "globex"}"#,
            403,
        ),
    ] {
        let refused = browser.call("POST", "/v1/api-keys", body).await;
        assert_eq!(refused.status, status, "{body}: {}", refused.body);
    }
    let other = browser
        .call("DELETE", &format!("/v1/api-keys/{}", globex_key.id), "")
        .await;
    assert_eq!(other.status, 403, "{}", other.body);
    let others = browser
        .call("GET", "/v1/api-keys?accountId=globex", "")
        .await;
    assert_eq!(others.status, 403, "{}", others.body);
    let rotate = browser
        .call("POST", &format!("/v1/api-keys/{id}/rotate"), "{}")
        .await;
    assert_eq!(rotate.status, 403, "{}", rotate.body);
    let sessions = browser.call("GET", "/v1/portal-sessions", "").await;
    assert_eq!(sessions.status, 403, "{}", sessions.body);

    // Its own list and usage; then revoke, and the key is refused.
    let list = browser.call("GET", "/v1/api-keys", "").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains(&id));
    let revoked = browser
        .call("DELETE", &format!("/v1/api-keys/{id}"), "")
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(
        code(&server.verify(&key, &["videos:write"]).await),
        VerifyCode::Revoked
    );

    // Audited as the session, in the account.
    let events = server
        .manage()
        .await
        .list_audit_events(server.root(proto::ListAuditEventsRequest {
            account_id: "acme".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .events;
    let by_session: Vec<_> = events
        .iter()
        .filter(|e| e.actor_key_id == session_id && e.target_key_id == id)
        .collect();
    assert_eq!(by_session.len(), 3, "create, update, revoke: {events:?}");

    // The backend's key cannot give more than it holds, nor reserved scopes, nor bad URLs.
    for (body, status, field) in [
        (
            serde_json::json!({"permissions": {"scopes": ["analytics:read"]}, "returnUrl": "https://a.example/"}),
            403,
            "",
        ),
        (
            serde_json::json!({"permissions": {"scopes": ["keys:write"]}, "returnUrl": "https://a.example/"}),
            422,
            "permissions.scopes[0]",
        ),
        (
            serde_json::json!({"permissions": {"scopes": ["videos:read"]}, "returnUrl": "javascript:alert(1)"}),
            422,
            "returnUrl",
        ),
        (
            serde_json::json!({"permissions": {"scopes": ["videos:read"]}, "returnUrl": "https://a.example/",
                               "branding": {"logoUrl": "https://evil.example/x.png"}}),
            422,
            "branding.logoUrl",
        ),
        (
            serde_json::json!({"accountId": "globex", "permissions": {"scopes": ["videos:read"]},
                               "returnUrl": "https://a.example/"}),
            403,
            "",
        ),
    ] {
        let refused = create_session(&server, &backend_key, body.clone()).await;
        assert_eq!(refused.status, status, "{body}: {}", refused.body);
        if !field.is_empty() {
            let fields: Vec<String> = refused.json()["fieldViolations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["field"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(fields, vec![field.to_owned()], "{body}");
        }
    }

    // A disabled account: its customer can do nothing until it is enabled again.
    let mut manage = server.manage().await;
    let set_disabled = |disabled: bool| proto::UpdateAccountRequest {
        account_id: "acme".into(),
        disabled,
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["disabled".into()],
        }),
        ..Default::default()
    };
    manage
        .update_account(server.root(set_disabled(true)))
        .await
        .unwrap();
    assert_eq!(browser.call("GET", "/v1/api-keys", "").await.status, 403);
    manage
        .update_account(server.root(set_disabled(false)))
        .await
        .unwrap();
    assert_eq!(browser.call("GET", "/v1/api-keys", "").await.status, 200);

    // Operators see the session and end it; its next call is refused.
    let root = format!("Bearer {}", server.root_key);
    let listed = http(
        server.http_addr,
        "GET",
        "/v1/portal-sessions?accountId=acme",
        &[("authorization", &root)],
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json()["data"][0]["id"], session_id.as_str());
    assert_eq!(listed.json()["data"][0]["status"], "active");
    let ended = http(
        server.http_addr,
        "DELETE",
        &format!("/v1/portal-sessions/{session_id}?accountId=acme"),
        &[("authorization", &root)],
    )
    .await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    assert_eq!(ended.json()["data"]["status"], "revoked");
    let after = browser.call("GET", "/v1/api-keys", "").await;
    assert_eq!(after.status, 401, "{}", after.body);
    server.stop().await;
}

/// A link works for a short while and once; a tampered one never; a session ends at its
/// lifetime; signing out ends it at once.
async fn portal_links_and_sessions_end(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        // Long enough for the calls before it ends on a loaded machine.
        c.portal_session_lifetime = Duration::from_secs(4);
        c.portal_frame_ancestors = vec!["https://app.acme.example".into()];
    })
    .await;
    // The product's dashboard may frame the page; nothing else may.
    let page = http(server.http_addr, "GET", "/portal", &[]).await;
    let policy = page.header("content-security-policy").unwrap();
    assert!(
        policy.contains("frame-ancestors https://app.acme.example;"),
        "{policy}"
    );
    assert_eq!(page.header("x-frame-options"), None);
    let root = server.root_key.clone();
    let body = serde_json::json!({
        "accountId": "acme",
        "permissions": {"presets": ["read_only"]},
        "returnUrl": "https://app.acme.example/"
    });
    // Made first, so it ends no later than the session opened below.
    let unopened = portal_link_path(&create_session(&server, &root, body.clone()).await.json());
    let first = portal_link_path(&create_session(&server, &root, body.clone()).await.json());
    // Tampered: one character changed.
    let mut tampered = first.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'a' { 'b' } else { 'a' });
    assert_eq!(
        http(server.http_addr, "GET", &tampered, &[]).await.status,
        401
    );
    assert_eq!(
        http(server.http_addr, "GET", "/portal/open/kwpl_short", &[])
            .await
            .status,
        401
    );
    let browser = Browser::open(server.http_addr, &first).await;
    // A second cookie of the same name beside the real one: refused, not guessed between.
    let doubled = format!("{}; keyward_portal=kwps_other", browser.cookie);
    let confused = http(
        server.http_addr,
        "GET",
        "/v1/api-keys",
        &[("cookie", &doubled), ("x-csrf-token", &browser.csrf)],
    )
    .await;
    assert_eq!(confused.status, 401, "{}", confused.body);

    // The lifetime passes: the session and the unopened link both end.
    eventually(Duration::from_secs(10), "the session to end", || async {
        let answer = http(
            server.http_addr,
            "GET",
            "/portal/session",
            &[("cookie", &browser.cookie)],
        )
        .await;
        (answer.status == 401).then_some(())
    })
    .await;
    assert_eq!(
        http(server.http_addr, "GET", &unopened, &[]).await.status,
        401
    );

    // Signing out: the cookie is cleared and the session ends at once.
    let fresh = portal_link_path(&create_session(&server, &root, body).await.json());
    let browser = Browser::open(server.http_addr, &fresh).await;
    let no_csrf = http(
        server.http_addr,
        "POST",
        "/portal/sign-out",
        &[("cookie", &browser.cookie)],
    )
    .await;
    assert_eq!(no_csrf.status, 403);
    let out = browser.call("POST", "/portal/sign-out", "").await;
    assert_eq!(out.status, 204);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(browser.call("GET", "/v1/api-keys", "").await.status, 401);
    server.stop().await;
}

/// A session opened on one replica works on another and ends on all when revoked on one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_session_survives_a_replica_switch() {
    let (url, _) = fresh_database(Backend::Postgres).await;
    let a = TestServer::start_on(test_config(&url)).await;
    let b = TestServer::start_on(test_config(&url)).await;
    let created = create_session(
        &a,
        &a.root_key,
        serde_json::json!({
            "accountId": "acme",
            "permissions": {"scopes": ["videos:read"]},
            "returnUrl": "https://app.acme.example/"
        }),
    )
    .await
    .json();
    let session_id = created["data"]["session"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let on_a = Browser::open(a.http_addr, &portal_link_path(&created)).await;
    let on_b = Browser {
        addr: b.http_addr,
        cookie: on_a.cookie.clone(),
        csrf: on_a.csrf.clone(),
    };
    let made = on_b
        .call(
            "POST",
            "/v1/api-keys",
            r#"{"name": "from b", "scopes": ["videos:read"], "expiresIn": "30d"}"#,
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(on_a.call("GET", "/v1/api-keys", "").await.status, 200);
    let root = format!("Bearer {}", b.root_key);
    let ended = http(
        b.http_addr,
        "DELETE",
        &format!("/v1/portal-sessions/{session_id}?accountId=acme"),
        &[("authorization", &root)],
    )
    .await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    assert_eq!(on_a.call("GET", "/v1/api-keys", "").await.status, 401);
    a.stop().await;
    b.stop().await;
}

/// The same over gRPC: CreatePortalSession answers the link (never in its `Debug`),
/// ListPortalSessions shows the session, RevokePortalSession ends it; bad fields are named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_sessions_over_grpc() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut manage = server.manage().await;
    let request = proto::CreatePortalSessionRequest {
        account_id: "acme".into(),
        permissions: Some(proto::PortalPermissions {
            presets: vec!["read_only".into()],
            max_ttl: Some(prost_types::Duration {
                seconds: 30 * 86_400,
                nanos: 0,
            }),
            ..Default::default()
        }),
        display_name: "Ada".into(),
        return_url: "https://app.acme.example/settings".into(),
        branding: None,
    };
    let created = manage
        .create_portal_session(server.root(request.clone()))
        .await
        .expect("created")
        .into_inner();
    let token = &created.url[created.url.find("kwpl_").expect("a link")..];
    assert!(!format!("{created:?}").contains(token));
    let session = created.session.clone().unwrap();
    assert_eq!(session.status, "pending");
    assert_eq!(
        session
            .permissions
            .as_ref()
            .unwrap()
            .max_ttl
            .as_ref()
            .unwrap()
            .seconds,
        30 * 86_400
    );
    let opened = http(
        server.http_addr,
        "GET",
        &created.url[created.url.find("/portal/open/").unwrap()..],
        &[],
    )
    .await;
    assert_eq!(opened.status, 303);
    let listed = manage
        .list_portal_sessions(server.root(proto::ListPortalSessionsRequest {
            account_id: "acme".into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, session.id);
    assert_eq!(listed[0].status, "active");
    assert!(listed[0].opened_at.is_some());
    let ended = manage
        .revoke_portal_session(server.root(proto::RevokePortalSessionRequest {
            account_id: "acme".into(),
            id: session.id.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(ended.status, "revoked");
    // Another account's session is not found there.
    let elsewhere = manage
        .revoke_portal_session(server.root(proto::RevokePortalSessionRequest {
            account_id: "globex".into(),
            id: session.id.clone(),
        }))
        .await
        .unwrap_err();
    assert_eq!(elsewhere.code(), tonic::Code::NotFound);
    let mut bad = request;
    bad.return_url = "ftp://example.com/".into();
    bad.permissions.as_mut().unwrap().scopes = vec!["root".into()];
    let e = manage
        .create_portal_session(server.root(bad))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        violated_fields(&e),
        vec!["permissions.scopes[0]", "return_url"]
    );
    server.stop().await;
}

/// The curl, Node and Python examples in `docs/portal.md`, run as written (keyward's address
/// and the backend's key in `KEYWARD_URL` and `KEYWARD_KEY`): each prints a link that opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_examples_make_links_that_open() {
    let server = TestServer::start(Backend::Sqlite).await;
    // The backend's key holds what it lets customers grant: the read_only preset's scopes
    // and videos:write.
    let catalog = keyward::catalog::Catalog::builtin();
    let mut scopes: Vec<&str> = catalog
        .preset("read_only")
        .unwrap()
        .scopes
        .iter()
        .map(|s| s.as_str())
        .collect();
    scopes.extend(["keys:write", "keys:read", "videos:write"]);
    let (backend_key, _) = server.create(key_request("acme", &scopes)).await;
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/portal.md"),
    )
    .expect("docs/portal.md");
    let section = &text[text
        .find("## Making a portal session from your backend")
        .unwrap()..];
    let section = &section[..section.find("\n## Operators").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let mut ran = Vec::new();
    for (fence, program, file) in [
        ("```sh\n", "sh", "example.sh"),
        ("```js\n", "node", "example.mjs"),
        ("```python\n", "python3", "example.py"),
    ] {
        let start = section
            .find(fence)
            .unwrap_or_else(|| panic!("a {fence} example"))
            + fence.len();
        let code = &section[start..start + section[start..].find("```").unwrap()];
        let path = dir.path().join(file);
        std::fs::write(&path, code).unwrap();
        let output = std::process::Command::new(program)
            .arg(&path)
            .env("KEYWARD_URL", format!("http://{}", server.http_addr))
            .env("KEYWARD_KEY", &backend_key)
            .output()
            .unwrap_or_else(|e| panic!("{program} runs (.ci/run installs it): {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            output.status.success(),
            "{file}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let path = &stdout[stdout
            .find("/portal/open/")
            .unwrap_or_else(|| panic!("{file}: {stdout}"))..];
        let opened = http(server.http_addr, "GET", path, &[]).await;
        assert_eq!(opened.status, 303, "{file}: {}", opened.body);
        ran.push(file);
    }
    assert_eq!(ran.len(), 3);
    server.stop().await;
}
