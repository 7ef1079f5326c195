//! The HTTP JSON API under `/v1` against a real server: every route, the reference pages'
//! shapes, the same rules as ManageService (it calls the same domain), and every error status.

use std::net::SocketAddr;

use keyward::proto;
use keyward::proto::VerifyCode;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::*;

/// One call of the API with `key` as the bearer.
async fn call(
    addr: SocketAddr,
    method: &str,
    target: &str,
    key: &str,
    body: Option<Value>,
) -> HttpAnswer {
    let bearer = format!("Bearer {key}");
    let mut headers = vec![("authorization", bearer.as_str())];
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    if !text.is_empty() {
        headers.push(("content-type", "application/json"));
    }
    http_with_body(addr, method, target, &headers, &text).await
}

fn violations(answer: &HttpAnswer) -> Vec<String> {
    answer.json()["fieldViolations"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|v| v["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

both_backends!(
    the_reference_api_manages_keys_end_to_end,
    errors_have_their_status_and_code
);

async fn the_reference_api_manages_keys_end_to_end(backend: Backend) {
    let server = TestServer::start(backend).await;
    let api = server.http_addr;
    // An admin key of account acme, made over the API by root.
    let made = call(
        api,
        "POST",
        "/v1/api-keys",
        &server.root_key,
        Some(json!({"name": "admin", "accountId": "acme", "scopes": ["keys:write", "videos:read", "videos:write"]})),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let admin = made.json()["data"]["key"].as_str().unwrap().to_owned();

    // Create as the reference page does: name and expiresIn, plus scopes.
    let created = call(
        api,
        "POST",
        "/v1/api-keys",
        &admin,
        Some(json!({"name": "Production Server", "expiresIn": "90d", "scopes": ["videos:read", "videos:write"]})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let data = &created.json()["data"];
    let secret = data["key"].as_str().unwrap().to_owned();
    let id = data["apiKey"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/v1/api-keys/{id}").as_str())
    );
    assert_eq!(
        data["apiKey"]["accountId"], "acme",
        "the caller's own account"
    );
    assert_eq!(data["apiKey"]["environment"], "live");
    assert_eq!(data["apiKey"]["prefix"].as_str().unwrap(), &secret[..16]);
    assert_eq!(data["apiKey"]["lastUsedAt"], Value::Null);
    assert_eq!(data["apiKey"]["revoked"], false);
    let expires = data["apiKey"]["expiresAt"].as_str().unwrap();
    let created_at = data["apiKey"]["createdAt"].as_str().unwrap();
    let days = |t: &str| t.parse::<prost_types::Timestamp>().unwrap().seconds / 86_400;
    assert_eq!(days(expires) - days(created_at), 90);
    assert_eq!(
        code(&server.verify(&secret, &["videos:write"]).await),
        VerifyCode::Valid
    );

    // The audit log records the HTTP mutation with its actor, as for gRPC.
    let events = server.audit_events("acme").await;
    assert!(
        events
            .iter()
            .any(|e| e.target_key_id == id && !e.actor_key_id.is_empty())
    );

    // List: metadata only, never the secret; lastUsedAt after a use.
    let listed = call(api, "GET", "/v1/api-keys", &admin, None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(
        !listed.body.contains(&secret),
        "a list never carries a secret"
    );
    let keys = listed.json()["data"].as_array().unwrap().clone();
    assert_eq!(keys.len(), 2);
    server
        .service
        .flush_last_used()
        .await
        .expect("last use written");
    let listed = call(api, "GET", "/v1/api-keys", &admin, None).await.json();
    let listed = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .expect("the key is listed")
        .clone();
    assert!(listed["lastUsedAt"].is_string(), "{listed}");
    assert_eq!(listed["name"], "Production Server");

    // Keys unused for 30 days: not this one, just used.
    let unused = call(api, "GET", "/v1/api-keys?unusedSince=30d", &admin, None).await;
    assert_eq!(unused.status, 200, "{}", unused.body);
    let unused_ids: Vec<String> = unused.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!unused_ids.contains(&id), "{unused_ids:?}");

    // Pagination: a page of one, then the next with the token; the token is bound to its query.
    let first = call(api, "GET", "/v1/api-keys?pageSize=1", &admin, None).await;
    let token = first.json()["nextPageToken"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = call(
        api,
        "GET",
        &format!("/v1/api-keys?pageSize=1&pageToken={token}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_ne!(
        first.json()["data"][0]["id"],
        second.json()["data"][0]["id"]
    );
    assert_eq!(second.json()["nextPageToken"], Value::Null);
    let mismatched = call(
        api,
        "GET",
        &format!("/v1/api-keys?includeRevoked=true&pageToken={token}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(mismatched.status, 422);
    assert_eq!(violations(&mismatched), ["pageToken"]);

    // Get one.
    let got = call(api, "GET", &format!("/v1/api-keys/{id}"), &admin, None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["data"]["id"], id.as_str());
    assert!(!got.body.contains(&secret));

    // Patch: drop videos:write; the next verify refuses it at once.
    let patched = call(
        api,
        "PATCH",
        &format!("/v1/api-keys/{id}"),
        &admin,
        Some(json!({"scopes": ["videos:read"], "name": "Production Server v2"})),
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["data"]["scopes"], json!(["videos:read"]));
    assert_eq!(patched.json()["data"]["name"], "Production Server v2");
    let refused = server.verify(&secret, &["videos:write"]).await;
    assert_eq!(code(&refused), VerifyCode::InsufficientScope);
    // No escalation over HTTP either: the admin does not hold members:write.
    let escalate = call(
        api,
        "PATCH",
        &format!("/v1/api-keys/{id}"),
        &admin,
        Some(json!({"scopes": ["members:write"]})),
    )
    .await;
    assert_eq!(escalate.status, 403, "{}", escalate.body);
    assert_eq!(escalate.json()["code"], "PERMISSION_DENIED");

    // Rotate with a grace period: both work; the answer carries the new secret once.
    let rotated = call(
        api,
        "POST",
        &format!("/v1/api-keys/{id}/rotate"),
        &admin,
        Some(json!({"gracePeriod": "1h"})),
    )
    .await;
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    let rotated = rotated.json();
    let new_secret = rotated["data"]["key"].as_str().unwrap().to_owned();
    let new_id = rotated["data"]["apiKey"]["id"].as_str().unwrap().to_owned();
    assert_eq!(rotated["data"]["previousApiKey"]["id"], id.as_str());
    assert_eq!(rotated["data"]["apiKey"]["previousKeyId"], id.as_str());
    assert_eq!(
        code(&server.verify(&new_secret, &["videos:read"]).await),
        VerifyCode::Valid
    );
    assert_eq!(
        code(&server.verify(&secret, &["videos:read"]).await),
        VerifyCode::Valid
    );

    // Revoke: {"success": true}, and the key is refused at once.
    let revoked = call(
        api,
        "DELETE",
        &format!("/v1/api-keys/{new_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.json()["success"], true);
    assert_eq!(revoked.json()["data"]["revoked"], true);
    assert_eq!(
        code(&server.verify(&new_secret, &[]).await),
        VerifyCode::Revoked
    );
    // Hidden from the list unless asked for.
    let listed = call(api, "GET", "/v1/api-keys", &admin, None).await;
    assert!(!listed.body.contains(&new_id));
    let all = call(api, "GET", "/v1/api-keys?includeRevoked=true", &admin, None).await;
    assert!(all.body.contains(&new_id));

    // The catalog, with risk and presets, for a dashboard.
    let scopes = call(api, "GET", "/v1/scopes", &admin, None).await;
    assert_eq!(scopes.status, 200);
    let catalog = scopes.json();
    let members_email = catalog["data"]["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "members:email")
        .expect("members:email in the catalog")
        .clone();
    assert_eq!(members_email["risk"], "high");
    assert_eq!(members_email["resource"], "members");
    let presets: Vec<&str> = catalog["data"]["presets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(presets, ["read_only", "content_agent", "full_access"]);

    // The usage call: the key's own record and rate-limit state.
    let usage = call(api, "GET", "/v1/usage", &secret, None).await;
    assert_eq!(usage.status, 200, "{}", usage.body);
    assert_eq!(usage.json()["data"]["apiKey"]["id"], id.as_str());
    assert_eq!(usage.json()["data"]["rateLimit"]["limit"], 100);
    assert!(usage.header("ratelimit-remaining").is_some());
    server.stop().await;
}

async fn errors_have_their_status_and_code(backend: Backend) {
    let server = TestServer::start_with(backend, |c| {
        c.max_active_keys = 3;
        c.rate_limit = 2;
    })
    .await;
    let api = server.http_addr;
    let (writer, _) = server
        .create(key_request("acme", &["keys:write", "videos:read"]))
        .await;
    let (reader, _) = server.create(key_request("acme", &["keys:read"])).await;
    let (other, other_key) = server.create(key_request("globex", &["keys:write"])).await;

    // 401: no key, and a revoked one; with the bearer challenge.
    let none = http(api, "GET", "/v1/api-keys", &[]).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["code"], "UNAUTHENTICATED");
    assert!(
        none.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    let bogus = call(api, "GET", "/v1/api-keys", "kw_live_notakey", None).await;
    assert_eq!(bogus.status, 401);

    // 403: a reader writes; a key of another account reads acme's key.
    let write = call(
        api,
        "POST",
        "/v1/api-keys",
        &reader,
        Some(json!({"name": "x", "scopes": ["videos:read"]})),
    )
    .await;
    assert_eq!(write.status, 403, "{}", write.body);
    assert_eq!(write.json()["code"], "PERMISSION_DENIED");
    let cross = call(
        api,
        "GET",
        &format!("/v1/api-keys/{}", other_key.id),
        &writer,
        None,
    )
    .await;
    assert_eq!(cross.status, 403, "{}", cross.body);

    // 404: no such key; no such path.
    let absent = call(
        api,
        "GET",
        &format!("/v1/api-keys/{ABSENT_ID}"),
        &writer,
        None,
    )
    .await;
    assert_eq!(absent.status, 404);
    assert_eq!(absent.json()["code"], "NOT_FOUND");
    let nowhere = call(api, "GET", "/v1/nowhere", &writer, None).await;
    assert_eq!(nowhere.status, 404);
    assert_eq!(nowhere.json()["code"], "NOT_FOUND");

    // 400: not JSON, and wrong types; the message never quotes a key.
    let not_json = http_with_body(
        api,
        "POST",
        "/v1/api-keys",
        &[
            ("authorization", &format!("Bearer {writer}")),
            ("content-type", "application/json"),
        ],
        "{nope",
    )
    .await;
    assert_eq!(not_json.status, 400);
    assert_eq!(not_json.json()["code"], "BAD_REQUEST");
    let keyish = call(
        api,
        "POST",
        "/v1/api-keys",
        &writer,
        Some(json!({"name": "x", "grantAll": writer})),
    )
    .await;
    assert_eq!(keyish.status, 400);
    assert!(!keyish.body.contains(&writer), "{}", keyish.body);
    let keyish_patch = call(
        api,
        "PATCH",
        &format!("/v1/api-keys/{}", other_key.id),
        &other,
        Some(json!({"grantAll": other})),
    )
    .await;
    assert_eq!(keyish_patch.status, 400);
    assert!(!keyish_patch.body.contains(&other), "{}", keyish_patch.body);
    // 415: a body that is not JSON by its media type.
    let form = http_with_body(
        api,
        "POST",
        "/v1/api-keys",
        &[
            ("authorization", &format!("Bearer {writer}")),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        "name=x",
    )
    .await;
    assert_eq!(form.status, 415);
    // 413: over the body limit, before any parsing.
    let huge = format!("{{\"name\": \"{}\"}}", "a".repeat(100_000));
    let large = http_with_body(
        api,
        "POST",
        "/v1/api-keys",
        &[
            ("authorization", &format!("Bearer {writer}")),
            ("content-type", "application/json"),
        ],
        &huge,
    )
    .await;
    assert_eq!(large.status, 413);

    // 422: every bad field named as the JSON spells it.
    let bad = call(
        api,
        "POST",
        "/v1/api-keys",
        &writer,
        Some(json!({
            "name": "",
            "expiresIn": "45d",
            "scopes": ["Not A Scope"],
            "restrictions": {"allowedCidrs": ["10.0.0.0/33"]},
            "rateLimit": {"limit": 5, "window": "5x"},
        })),
    )
    .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.json()["code"], "INVALID_ARGUMENT");
    let mut fields = violations(&bad);
    fields.sort();
    assert_eq!(
        fields,
        [
            "expiresIn",
            "name",
            "rateLimit.window",
            "restrictions.allowedCidrs[0]",
            "scopes[0]"
        ]
    );
    // Nothing granted and no default preset configured: refused as on gRPC.
    let nothing = call(
        api,
        "POST",
        "/v1/api-keys",
        &writer,
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(nothing.status, 422);
    assert_eq!(violations(&nothing), ["scopes"]);
    // A root key names the account.
    let rootless = call(
        api,
        "POST",
        "/v1/api-keys",
        &server.root_key,
        Some(json!({"name": "x", "scopes": ["videos:read"]})),
    )
    .await;
    assert_eq!(rootless.status, 422);
    assert_eq!(violations(&rootless), ["accountId"]);
    let empty_patch = call(
        api,
        "PATCH",
        &format!("/v1/api-keys/{}", other_key.id),
        &other,
        Some(json!({})),
    )
    .await;
    assert_eq!(empty_patch.status, 422, "{}", empty_patch.body);

    // 409: the account's active-key limit (3: writer, reader and one more).
    let third = call(
        api,
        "POST",
        "/v1/api-keys",
        &writer,
        Some(json!({"name": "third", "scopes": ["videos:read"]})),
    )
    .await;
    assert_eq!(third.status, 201, "{}", third.body);
    let fourth = call(
        api,
        "POST",
        "/v1/api-keys",
        &writer,
        Some(json!({"name": "fourth", "scopes": ["videos:read"]})),
    )
    .await;
    assert_eq!(fourth.status, 409, "{}", fourth.body);
    assert_eq!(fourth.json()["code"], "ACTIVE_KEY_LIMIT");
    // 409: a revoked key does not change.
    let third_id = third.json()["data"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        call(
            api,
            "DELETE",
            &format!("/v1/api-keys/{third_id}"),
            &writer,
            None
        )
        .await
        .status,
        200
    );
    let rotate_revoked = call(
        api,
        "POST",
        &format!("/v1/api-keys/{third_id}/rotate"),
        &writer,
        None,
    )
    .await;
    assert_eq!(rotate_revoked.status, 409, "{}", rotate_revoked.body);

    // 429: the key's own rate limit (2 per window) on the usage call, with Retry-After.
    let statuses = [
        call(api, "GET", "/v1/usage", &writer, None).await,
        call(api, "GET", "/v1/usage", &writer, None).await,
        call(api, "GET", "/v1/usage", &writer, None).await,
    ];
    assert_eq!(
        statuses.iter().map(|a| a.status).collect::<Vec<_>>(),
        [200, 200, 429]
    );
    assert_eq!(statuses[2].json()["code"], "RATE_LIMITED");
    assert!(statuses[2].header("retry-after").is_some());
    // A revoked key on the usage call: 401 with the RFC 6750 challenge.
    let revoked = proto::RevokeKeyRequest {
        id: other_key.id.clone(),
    };
    server
        .manage()
        .await
        .revoke_key(server.root(revoked))
        .await
        .unwrap();
    let gone = call(api, "GET", "/v1/usage", &other, None).await;
    assert_eq!(gone.status, 401);
    assert_eq!(gone.json()["code"], "REVOKED");
    assert!(
        gone.header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_default_preset_lets_a_bare_create_succeed() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.http_api_default_preset = Some("content_agent".into());
    })
    .await;
    let (admin, _) = server
        .create(proto::CreateKeyRequest {
            grant_all: true,
            ..key_request("acme", &["keys:write"])
        })
        .await;
    let created = call(
        server.http_addr,
        "POST",
        "/v1/api-keys",
        &admin,
        Some(json!({"name": "Production Server", "expiresIn": "never"})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let key = &created.json()["data"]["apiKey"];
    assert_eq!(key["expiresAt"], Value::Null);
    assert!(
        key["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "videos:write")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_admin_page_can_be_turned_off() {
    let server = TestServer::start_with(Backend::Sqlite, |c| c.http_api = false).await;
    let api = call(
        server.http_addr,
        "GET",
        "/v1/api-keys",
        &server.root_key,
        None,
    )
    .await;
    assert_eq!(api.status, 404);
    assert_eq!(
        http(server.http_addr, "GET", "/admin", &[]).await.status,
        404
    );
    // Forward auth is still there.
    assert_eq!(
        http(server.http_addr, "GET", "/auth", &[]).await.status,
        401
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_can_have_a_listener_of_its_own() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.http_manage_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let manage = server.http_manage_addr.expect("the API's listener");
    // Not on the gateways' listener…
    let there = call(
        server.http_addr,
        "GET",
        "/v1/scopes",
        &server.root_key,
        None,
    )
    .await;
    assert_eq!(there.status, 404);
    assert_eq!(
        http(server.http_addr, "GET", "/admin", &[]).await.status,
        404
    );
    assert_eq!(
        http(server.http_addr, "GET", "/auth", &[]).await.status,
        401
    );
    // …but on its own, with health, and without forward auth or metrics.
    let here = call(manage, "GET", "/v1/scopes", &server.root_key, None).await;
    assert_eq!(here.status, 200, "{}", here.body);
    assert_eq!(http(manage, "GET", "/admin", &[]).await.status, 200);
    assert_eq!(http(manage, "GET", "/readyz", &[]).await.status, 200);
    assert_eq!(http(manage, "GET", "/auth", &[]).await.status, 404);
    assert_eq!(http(manage, "GET", "/metrics", &[]).await.status, 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_is_served_with_a_strict_policy() {
    let server = TestServer::start(Backend::Sqlite).await;
    let page = http(server.http_addr, "GET", "/admin", &[]).await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    // No inline script or style in the page itself (the policy would block it anyway).
    assert!(!page.body.contains("<script>") && !page.body.contains("style="));
    assert!(
        !page.body.contains("https://"),
        "no CDN: everything is served by keyward"
    );
    for asset in ["/admin/app.js", "/admin/app.css"] {
        let answer = http(server.http_addr, "GET", asset, &[]).await;
        assert_eq!(answer.status, 200, "{asset}");
        assert!(page.body.contains(asset), "the page loads {asset}");
    }
    server.stop().await;
}

/// Runs `python3 -m openapi_spec_validator` on `document`; its success and its output.
fn validate_openapi(document: &Value) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, document.to_string()).expect("write the document");
    let output = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&path)
        .output()
        .expect("python3 runs (.ci/run installs openapi-spec-validator)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(
        !text.contains("No module named"),
        "openapi-spec-validator is missing: pip install openapi-spec-validator ({text})"
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_and_lists_every_route() {
    let server = TestServer::start(Backend::Sqlite).await;
    let answer = http(server.http_addr, "GET", "/v1/openapi.json", &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-type"), Some("application/json"));
    let document = answer.json();
    assert_eq!(document["openapi"], "3.1.0");
    let (valid, output) = validate_openapi(&document);
    assert!(valid, "the validator refused the document: {output}");
    // The validator is not a rubber stamp: a broken document is refused.
    let mut broken = document.clone();
    broken["paths"]["/v1/api-keys"]["get"]["responses"] = json!("none");
    assert!(
        !validate_openapi(&broken).0,
        "a broken document must fail validation"
    );

    let routes = [
        ("get", "/v1/api-keys"),
        ("post", "/v1/api-keys"),
        ("get", "/v1/api-keys/{id}"),
        ("patch", "/v1/api-keys/{id}"),
        ("delete", "/v1/api-keys/{id}"),
        ("post", "/v1/api-keys/{id}/rotate"),
        ("get", "/v1/scopes"),
        ("get", "/v1/usage"),
        ("get", "/v1/api-keys/{id}/usage"),
        ("post", "/v1/portal-sessions"),
        ("get", "/v1/portal-sessions"),
        ("delete", "/v1/portal-sessions/{id}"),
    ];
    let paths = document["paths"].as_object().unwrap();
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        routes.len(),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (method, path) in routes {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is documented");
        assert!(
            operation["responses"]["401"].is_object(),
            "{method} {path} documents 401"
        );
        // And served: without a key the route answers 401, not 404 or 405.
        let target = path.replace("{id}", ABSENT_ID);
        let served = http(server.http_addr, &method.to_uppercase(), &target, &[]).await;
        assert_eq!(served.status, 401, "{method} {path}: {}", served.body);
    }
    server.stop().await;
}
