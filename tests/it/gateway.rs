//! The gateway faces: Envoy ext_authz `Check` through a client generated from the vendored
//! protos, and HTTP forward auth through hyper's client. Both call the one verify decision.

use std::collections::HashMap;
use std::time::Duration;

use keyward::gateway::RouteConfig;
use keyward::key::{Environment as KeyEnvironment, KeyFormat};
use keyward::proto;
use keyward::proto::envoy::config::core::v3::{
    Address, HeaderMap, HeaderValue, SocketAddress, address, header_value_option,
};
use keyward::proto::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
    attribute_context, check_response::HttpResponse,
};
use prost::Message;
use prost_types::FieldMask;
use tonic::Code;

use crate::both_backends;
use crate::helpers::*;
use crate::pg::Cluster;

/// What Envoy would send for a request with these headers.
struct Envoy<'a> {
    method: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, String)>,
    source: &'a str,
    extensions: Vec<(&'a str, &'a str)>,
}

impl<'a> Envoy<'a> {
    fn get(path: &'a str) -> Self {
        Envoy {
            method: "GET",
            path,
            headers: Vec::new(),
            source: "198.51.100.7",
            extensions: Vec::new(),
        }
    }

    fn bearer(mut self, key: &str) -> Self {
        self.headers
            .push(("authorization", format!("Bearer {key}")));
        self
    }

    fn header(mut self, name: &'a str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn extension(mut self, name: &'a str, value: &'a str) -> Self {
        self.extensions.push((name, value));
        self
    }

    fn request(&self) -> CheckRequest {
        let peer = |ip: &str, port| {
            attribute_context::Peer {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: ip.to_owned(),
                    port_specifier: Some(
                        keyward::proto::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(port),
                    ),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        }
        };
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(peer(self.source, 40_000)),
                destination: Some(peer("10.0.0.2", 8443)),
                request: Some(attribute_context::Request {
                    time: None,
                    http: Some(attribute_context::HttpRequest {
                        id: "req-1".into(),
                        method: self.method.into(),
                        headers: self
                            .headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.clone()))
                            .collect(),
                        path: self.path.into(),
                        host: "api.example.com".into(),
                        scheme: "https".into(),
                        protocol: "HTTP/1.1".into(),
                        ..Default::default()
                    }),
                }),
                context_extensions: self
                    .extensions
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
        }
    }
}

async fn check(server: &TestServer, envoy: &Envoy<'_>) -> CheckResponse {
    server
        .ext_authz()
        .await
        .check(envoy.request())
        .await
        .expect("Check answers")
        .into_inner()
}

fn headers(
    options: &[keyward::proto::envoy::config::core::v3::HeaderValueOption],
) -> HashMap<String, String> {
    options
        .iter()
        .map(|o| {
            let h = o.header.as_ref().expect("a header");
            (h.key.clone(), h.value.clone())
        })
        .collect()
}

fn allowed(response: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(
        response.status.as_ref().map(|s| s.code),
        Some(0),
        "allowed: {response:?}"
    );
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("an ok_response: {other:?}"),
    }
}

/// Asserts a denial: the gRPC code, the HTTP status, the JSON body's code; returns the
/// denial's headers.
fn denied(response: &CheckResponse, grpc: Code, http: i32, code: &str) -> HashMap<String, String> {
    assert_eq!(
        response.status.as_ref().map(|s| s.code),
        Some(grpc as i32),
        "{code}: {response:?}"
    );
    let Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
        status,
        headers: list,
        body,
    })) = &response.http_response
    else {
        panic!("{code}: a denied_response: {response:?}");
    };
    assert_eq!(status.as_ref().map(|s| s.code), Some(http), "{code}");
    let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(body["code"], code);
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let headers = headers(list);
    assert_eq!(headers["content-type"], "application/json", "{code}");
    if http == 401 {
        assert!(
            headers["www-authenticate"].starts_with("Bearer error=\"invalid_token\""),
            "{code}: {headers:?}"
        );
    } else {
        assert!(!headers.contains_key("www-authenticate"), "{code}");
    }
    headers
}

fn restricted(account: &str, restrictions: proto::Restrictions) -> proto::CreateKeyRequest {
    proto::CreateKeyRequest {
        restrictions: Some(restrictions),
        ..key_request(account, &["videos:read"])
    }
}

both_backends!(check_answers_every_code);

async fn check_answers_every_code(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (valid, _) = server.create(key_request("acme", &["videos:read"])).await;

    // VALID, and the upstream view of it is covered in its own test.
    allowed(&check(&server, &Envoy::get("/v1/videos/1").bearer(&valid)).await);

    // MISSING, MALFORMED, NOT_FOUND.
    denied(
        &check(&server, &Envoy::get("/v1/videos/1")).await,
        Code::Unauthenticated,
        401,
        "MISSING",
    );
    denied(
        &check(
            &server,
            &Envoy::get("/v1/videos/1").bearer("kw_live_nonsense"),
        )
        .await,
        Code::Unauthenticated,
        401,
        "MALFORMED",
    );
    let absent = KeyFormat::default().generate(KeyEnvironment::Live);
    denied(
        &check(
            &server,
            &Envoy::get("/v1/videos/1").bearer(absent.secret.expose()),
        )
        .await,
        Code::Unauthenticated,
        401,
        "NOT_FOUND",
    );

    // REVOKED.
    let (revoked, record) = server.create(key_request("acme", &["videos:read"])).await;
    server
        .manage()
        .await
        .revoke_key(server.root(proto::RevokeKeyRequest { id: record.id }))
        .await
        .expect("revoke");
    denied(
        &check(&server, &Envoy::get("/v1/videos/1").bearer(&revoked)).await,
        Code::Unauthenticated,
        401,
        "REVOKED",
    );

    // WRONG_ENVIRONMENT: the route serves test traffic.
    denied(
        &check(
            &server,
            &Envoy::get("/v1/videos/1")
                .bearer(&valid)
                .extension("environment", "test"),
        )
        .await,
        Code::Unauthenticated,
        401,
        "WRONG_ENVIRONMENT",
    );

    // The four restrictions, each on the request Envoy describes.
    let (ip, _) = server
        .create(restricted(
            "acme",
            proto::Restrictions {
                allowed_cidrs: vec!["10.0.0.0/8".into()],
                ..Default::default()
            },
        ))
        .await;
    denied(
        &check(&server, &Envoy::get("/v1/videos/1").bearer(&ip)).await,
        Code::PermissionDenied,
        403,
        "IP_NOT_ALLOWED",
    );
    let mut inside = Envoy::get("/v1/videos/1").bearer(&ip);
    inside.source = "10.1.2.3";
    allowed(&check(&server, &inside).await);
    let (referrer, _) = server
        .create(restricted(
            "acme",
            proto::Restrictions {
                allowed_referrers: vec!["https://*.example.com/*".into()],
                ..Default::default()
            },
        ))
        .await;
    denied(
        &check(
            &server,
            &Envoy::get("/v1/videos/1")
                .bearer(&referrer)
                .header("referer", "https://evil.test/"),
        )
        .await,
        Code::PermissionDenied,
        403,
        "REFERRER_NOT_ALLOWED",
    );
    allowed(
        &check(
            &server,
            &Envoy::get("/v1/videos/1")
                .bearer(&referrer)
                .header("referer", "https://app.example.com/page"),
        )
        .await,
    );
    let (method, _) = server
        .create(restricted(
            "acme",
            proto::Restrictions {
                allowed_methods: vec!["GET".into()],
                ..Default::default()
            },
        ))
        .await;
    let mut post = Envoy::get("/v1/videos/1").bearer(&method);
    post.method = "POST";
    denied(
        &check(&server, &post).await,
        Code::PermissionDenied,
        403,
        "METHOD_NOT_ALLOWED",
    );
    let (path, _) = server
        .create(restricted(
            "acme",
            proto::Restrictions {
                allowed_paths: vec!["/v1/videos/*".into()],
                ..Default::default()
            },
        ))
        .await;
    // The query string is not part of the path; dot segments do not escape the pattern.
    allowed(&check(&server, &Envoy::get("/v1/videos/1?page=2").bearer(&path)).await);
    denied(
        &check(
            &server,
            &Envoy::get("/v1/videos/../admin?x=/v1/videos/1").bearer(&path),
        )
        .await,
        Code::PermissionDenied,
        403,
        "PATH_NOT_ALLOWED",
    );

    // INSUFFICIENT_SCOPE, from the route's context extensions.
    denied(
        &check(
            &server,
            &Envoy::get("/v1/videos/1")
                .bearer(&valid)
                .extension("scopes", "videos:read,videos:write"),
        )
        .await,
        Code::PermissionDenied,
        403,
        "INSUFFICIENT_SCOPE",
    );

    // RATE_LIMITED: Retry-After and the RateLimit fields.
    let (limited, _) = server
        .create(proto::CreateKeyRequest {
            rate_limit: Some(proto::RateLimit {
                limit: 1,
                window: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
            }),
            ..key_request("acme", &["videos:read"])
        })
        .await;
    let first = check(&server, &Envoy::get("/v1/videos/1").bearer(&limited)).await;
    assert_eq!(
        headers(&allowed(&first).headers)["ratelimit-remaining"],
        "0"
    );
    let headers = denied(
        &check(&server, &Envoy::get("/v1/videos/1").bearer(&limited)).await,
        Code::ResourceExhausted,
        429,
        "RATE_LIMITED",
    );
    let retry: u64 = headers["retry-after"].parse().expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    // RESOURCE_EXHAUSTED carries google.rpc.RetryInfo with the same delay (AIP-193).
    let exhausted = check(&server, &Envoy::get("/v1/videos/1").bearer(&limited)).await;
    let details = &exhausted.status.as_ref().unwrap().details;
    let info = details
        .iter()
        .find(|d| d.type_url == "type.googleapis.com/google.rpc.RetryInfo")
        .expect("RetryInfo");
    let info = <tonic_types::pb::RetryInfo as Message>::decode(info.value.as_slice()).unwrap();
    let delay = info.retry_delay.unwrap().seconds;
    assert!((1..=60).contains(&delay), "{delay}");
    assert_eq!(headers["ratelimit-limit"], "1");
    assert_eq!(headers["ratelimit-remaining"], "0");

    // EXPIRED.
    let (expiring, _) = server
        .create(proto::CreateKeyRequest {
            expiry: Some(proto::create_key_request::Expiry::Ttl(
                prost_types::Duration {
                    seconds: 1,
                    nanos: 0,
                },
            )),
            ..key_request("acme", &["videos:read"])
        })
        .await;
    let expired = eventually(Duration::from_secs(5), "the key to expire", || async {
        let r = check(&server, &Envoy::get("/v1/videos/1").bearer(&expiring)).await;
        (r.status.as_ref().is_some_and(|s| s.code != 0)).then_some(r)
    })
    .await;
    denied(&expired, Code::Unauthenticated, 401, "EXPIRED");

    // ACCOUNT_DISABLED (last: the account's keys all stop).
    server
        .manage()
        .await
        .update_account(server.root(proto::UpdateAccountRequest {
            account_id: "acme".into(),
            disabled: true,
            update_mask: Some(FieldMask {
                paths: vec!["disabled".into()],
            }),
            ..Default::default()
        }))
        .await
        .expect("disable");
    denied(
        &check(&server, &Envoy::get("/v1/videos/1").bearer(&valid)).await,
        Code::PermissionDenied,
        403,
        "ACCOUNT_DISABLED",
    );
    server.stop().await;
}

/// An allowed request reaches the upstream with who the key is and its rate-limit state, and
/// without the key: every key header is removed, and a client's own x-keyward-* is overwritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_injects_identity_and_removes_the_key() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (secret, record) = server.create(key_request("acme", &["videos:read"])).await;
    for envoy in [
        Envoy::get("/v1/videos/1")
            .bearer(&secret)
            .header("x-keyward-account-id", "spoofed"),
        Envoy::get("/v1/videos/1").header("x-api-key", &secret),
    ] {
        let response = check(&server, &envoy).await;
        let ok = allowed(&response);
        let upstream = headers(&ok.headers);
        assert_eq!(upstream["x-keyward-key-id"], record.id);
        assert_eq!(upstream["x-keyward-account-id"], "acme");
        assert_eq!(upstream["x-keyward-environment"], "live");
        assert_eq!(upstream["ratelimit-limit"], "100");
        assert!(upstream.contains_key("ratelimit-remaining"));
        assert!(upstream.contains_key("ratelimit-reset"));
        assert!(ok.headers.iter().all(|h| h.append_action
            == header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32));
        assert_eq!(ok.headers_to_remove, ["authorization", "x-api-key"]);
        assert!(
            !format!("{response:?}").contains(&secret),
            "the answer never carries the key"
        );
    }
    // Envoy's encode_raw_headers: the key in the raw header list.
    let mut request = Envoy::get("/v1/videos/1").request();
    let http = request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .unwrap();
    http.header_map = Some(HeaderMap {
        headers: vec![HeaderValue {
            key: "authorization".into(),
            value: String::new(),
            raw_value: format!("Bearer {secret}").into_bytes(),
        }],
    });
    assert!(
        !format!("{request:?}").contains(&secret),
        "Debug of a CheckRequest never shows the key"
    );
    let response = server
        .ext_authz()
        .await
        .check(request)
        .await
        .unwrap()
        .into_inner();
    allowed(&response);
    server.stop().await;

    // Configured to keep the key header: nothing is removed.
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.gateway.strip_key_headers = false;
    })
    .await;
    let (secret, _) = server.create(key_request("acme", &["videos:read"])).await;
    let response = check(&server, &Envoy::get("/v1/videos/1").bearer(&secret)).await;
    assert!(allowed(&response).headers_to_remove.is_empty());
    server.stop().await;
}

/// Without per-route context, the route table in keyward's configuration names the scopes; a
/// route's own `scopes` extension still wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_takes_scopes_from_the_route_table() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.gateway.routes = vec![
            RouteConfig {
                method: Some("GET".into()),
                path: "/v1/videos/*".into(),
                scopes: vec!["videos:read".into()],
            },
            RouteConfig {
                method: Some("DELETE".into()),
                path: "/v1/videos/*".into(),
                scopes: vec!["videos:delete".into()],
            },
        ];
    })
    .await;
    let (reader, _) = server.create(key_request("acme", &["videos:read"])).await;
    allowed(&check(&server, &Envoy::get("/v1/videos/7").bearer(&reader)).await);
    let mut delete = Envoy::get("/v1/videos/7").bearer(&reader);
    delete.method = "DELETE";
    denied(
        &check(&server, &delete).await,
        Code::PermissionDenied,
        403,
        "INSUFFICIENT_SCOPE",
    );
    // A dot segment does not dodge the table: the path is matched in its normal form.
    let mut sneaky = Envoy::get("/v1/x/../videos/7").bearer(&reader);
    sneaky.method = "DELETE";
    denied(
        &check(&server, &sneaky).await,
        Code::PermissionDenied,
        403,
        "INSUFFICIENT_SCOPE",
    );
    // An encoded slash has no normal form: refused, not let through.
    denied(
        &check(&server, &Envoy::get("/v1/videos%2F7").bearer(&reader)).await,
        Code::InvalidArgument,
        400,
        "INVALID_REQUEST",
    );
    allowed(
        &check(
            &server,
            &Envoy::get("/v1/videos/7")
                .bearer(&reader)
                .extension("scopes", ""),
        )
        .await,
    );
    server.stop().await;
}

/// Input the end client controls is a denial, never a gRPC error that Envoy's
/// `failure_mode_allow` could turn into an allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_denial_not_an_error() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (secret, _) = server.create(key_request("acme", &["videos:read"])).await;
    let long = format!("/{}", "a".repeat(5000));
    let mut bad_method = Envoy::get("/v1/videos/1").bearer(&secret);
    bad_method.method = "G E T";
    let names: Vec<String> = (0..=1024).map(|i| format!("x-h{i}")).collect();
    let mut too_many = Envoy::get("/v1/videos/1").bearer(&secret);
    for name in &names {
        too_many = too_many.header(name, "v");
    }
    for envoy in [
        Envoy::get(&long).bearer(&secret),
        bad_method,
        too_many,
        Envoy::get("/v1/videos/1")
            .bearer(&secret)
            .extension("scopes", "Not A Scope"),
    ] {
        let response = check(&server, &envoy).await;
        denied(&response, Code::InvalidArgument, 400, "INVALID_REQUEST");
    }
    server.stop().await;
}

/// With `verify_auth`, Envoy must call with a key holding `keys:verify` (its grpc_service
/// `initial_metadata`), like any Verify caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_requires_a_verifier_key_when_configured() {
    let server = TestServer::start_with(Backend::Sqlite, |c| c.verify_auth = true).await;
    let (secret, _) = server.create(key_request("acme", &["videos:read"])).await;
    let mut client = server.ext_authz().await;
    let status = client
        .check(Envoy::get("/v1/videos/1").bearer(&secret).request())
        .await
        .expect_err("no caller key");
    assert_eq!(status.code(), Code::Unauthenticated);
    let (verifier, _) = server
        .create(key_request("gateway", &["keys:verify"]))
        .await;
    let response = client
        .check(as_key(
            &verifier,
            Envoy::get("/v1/videos/1").bearer(&secret).request(),
        ))
        .await
        .expect("a verifier may call")
        .into_inner();
    allowed(&response);

    // Forward auth: the gateway's key in x-keyward-caller-key; a refusal is never a 401/403.
    let refused = http(server.http_addr, "GET", "/auth", &[("x-api-key", &secret)]).await;
    assert_eq!(refused.status, 500, "{refused:?}");
    assert_eq!(refused.json()["code"], "CALLER_REFUSED");
    let refused = http(
        server.http_addr,
        "GET",
        "/auth",
        &[("x-api-key", &secret), ("x-keyward-caller-key", &secret)],
    )
    .await;
    assert_eq!(
        refused.status, 500,
        "a key without keys:verify: {refused:?}"
    );
    let ok = http(
        server.http_addr,
        "GET",
        "/auth",
        &[("x-api-key", &secret), ("x-keyward-caller-key", &verifier)],
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    server.stop().await;
}

/// A `CheckRequest` encoded by hand with Envoy's field numbers (not the vendored files) is sent
/// to the server as bytes and understood: every field keyward reads is shown to be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_encoded_check_request_is_understood() {
    fn field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
        prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, out);
        prost::encoding::encode_varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }
    fn map_entry(out: &mut Vec<u8>, number: u32, key: &[u8], value: &[u8]) {
        let mut entry = Vec::new();
        field(&mut entry, 1, key);
        field(&mut entry, 2, value);
        field(out, number, &entry);
    }
    /// What Envoy sends for `GET <path>` from 198.51.100.7 with these headers.
    fn envoy(path: &[u8], headers: &[(&[u8], &[u8])], scopes: &str) -> Vec<u8> {
        // envoy.config.core.v3.SocketAddress { address = 2; port_value = 3 }
        let mut socket = Vec::new();
        field(&mut socket, 2, b"198.51.100.7");
        prost::encoding::encode_key(3, prost::encoding::WireType::Varint, &mut socket);
        prost::encoding::encode_varint(40_000, &mut socket);
        // Address { socket_address = 1 }; Peer { address = 1 }
        let mut address = Vec::new();
        field(&mut address, 1, &socket);
        let mut peer = Vec::new();
        field(&mut peer, 1, &address);
        // HttpRequest { id = 1; method = 2; headers = 3 (map); path = 4; host = 5 }
        let mut http = Vec::new();
        field(&mut http, 1, b"req-1");
        field(&mut http, 2, b"GET");
        for (name, value) in headers {
            map_entry(&mut http, 3, name, value);
        }
        field(&mut http, 4, path);
        field(&mut http, 5, b"api.example.com");
        // Request { http = 2 }; AttributeContext { source = 1; destination = 2; request = 4;
        // context_extensions = 10 }
        let mut request = Vec::new();
        field(&mut request, 2, &http);
        let mut attributes = Vec::new();
        field(&mut attributes, 1, &peer);
        field(&mut attributes, 2, &peer);
        field(&mut attributes, 4, &request);
        map_entry(&mut attributes, 10, b"scopes", scopes.as_bytes());
        // A field keyward left out (metadata_context = 11) is skipped, not an error.
        field(&mut attributes, 11, b"");
        // CheckRequest { attributes = 1 }
        let mut bytes = Vec::new();
        field(&mut bytes, 1, &attributes);
        bytes
    }
    let server = TestServer::start(Backend::Sqlite).await;
    let (secret, record) = server.create(key_request("acme", &["videos:read"])).await;
    let bearer = format!("Bearer {secret}");
    let check = |bytes: Vec<u8>| {
        let server = &server;
        async move {
            let answer = server.check_raw(bytes).await.expect("Check answers");
            CheckResponse::decode(answer.as_slice()).expect("a CheckResponse")
        }
    };
    // The header map is `map<string, string>`: a value that is not UTF-8 makes the message
    // one protobuf refuses, whichever header it is (Envoy itself sends UTF-8 there). It is a
    // denial (400), never a gRPC error Envoy's failure_mode_allow could let through.
    let user_agent: (&[u8], &[u8]) = (b"user-agent", b"curl/8.5 \xff\xfe");
    let response = check(envoy(
        b"/v1/videos/1",
        &[(b"authorization", bearer.as_bytes()), user_agent],
        "videos:read",
    ))
    .await;
    denied(&response, Code::InvalidArgument, 400, "INVALID_REQUEST");
    let answer = server
        .check_raw(envoy(
            b"/v1/videos/1?page=2",
            &[
                (b"authorization", bearer.as_bytes()),
                (b"referer", b"https://app.example.com/"),
                (b"user-agent", b"curl/8.5"),
            ],
            "videos:read",
        ))
        .await
        .expect("Check answers");
    let response = CheckResponse::decode(answer.as_slice()).expect("a CheckResponse");
    let ok = allowed(&response);
    assert_eq!(headers(&ok.headers)["x-keyward-key-id"], record.id);
    assert_eq!(ok.headers_to_remove, ["authorization", "x-api-key"]);
    // The answer has Envoy's numbers: status = 1, ok_response = 3.
    let mut buf = answer.as_slice();
    let mut fields = Vec::new();
    while !buf.is_empty() {
        let (number, wire) = prost::encoding::decode_key(&mut buf).expect("a field key");
        assert_eq!(wire, prost::encoding::WireType::LengthDelimited);
        let len = prost::encoding::decode_varint(&mut buf).expect("a length") as usize;
        buf = &buf[len..];
        fields.push(number);
    }
    assert_eq!(fields, [1, 3], "status = 1, ok_response = 3");

    // Each field keyward reads is read: the scopes extension…
    let response = check(envoy(
        b"/v1/videos/1",
        &[(b"authorization", bearer.as_bytes())],
        "videos:write",
    ))
    .await;
    denied(&response, Code::PermissionDenied, 403, "INSUFFICIENT_SCOPE");
    // …the source address, the referer and the path (matched without its query string).
    for (restrictions, code) in [
        (
            proto::Restrictions {
                allowed_cidrs: vec!["10.0.0.0/8".into()],
                ..Default::default()
            },
            "IP_NOT_ALLOWED",
        ),
        (
            proto::Restrictions {
                allowed_referrers: vec!["https://elsewhere.example.com/*".into()],
                ..Default::default()
            },
            "REFERRER_NOT_ALLOWED",
        ),
        (
            proto::Restrictions {
                allowed_paths: vec!["/v1/other/*".into()],
                ..Default::default()
            },
            "PATH_NOT_ALLOWED",
        ),
    ] {
        let (restricted_key, _) = server.create(restricted("acme", restrictions)).await;
        let bearer = format!("Bearer {restricted_key}");
        let response = check(envoy(
            b"/v1/videos/1?page=2",
            &[
                (b"authorization", bearer.as_bytes()),
                (b"referer", b"https://app.example.com/"),
            ],
            "videos:read",
        ))
        .await;
        denied(&response, Code::PermissionDenied, 403, code);
    }
    let (path_key, _) = server
        .create(restricted(
            "acme",
            proto::Restrictions {
                allowed_paths: vec!["/v1/videos/1".into()],
                ..Default::default()
            },
        ))
        .await;
    let bearer_path = format!("Bearer {path_key}");
    let response = check(envoy(
        b"/v1/videos/1?page=2",
        &[(b"authorization", bearer_path.as_bytes())],
        "videos:read",
    ))
    .await;
    allowed(&response);
    // The key header, from x-api-key too.
    let response = check(envoy(
        b"/v1/videos/1",
        &[(b"x-api-key", secret.as_bytes())],
        "videos:read",
    ))
    .await;
    allowed(&response);

    // What the end client sends that is not UTF-8 makes a message protobuf refuses: a denial
    // (400), never a gRPC error (which Envoy's failure_mode_allow could let through), and never
    // an allow with the string read some other way.
    for (path, key) in [
        (b"/v1/videos/\xff".as_slice(), bearer.as_bytes()),
        (b"/v1/videos/1".as_slice(), b"Bearer \xff\xfe".as_slice()),
    ] {
        let response = check(envoy(path, &[(b"authorization", key)], "videos:read")).await;
        denied(&response, Code::InvalidArgument, 400, "INVALID_REQUEST");
    }
    // Nor is a body that is not a protobuf message at all.
    let answer = server
        .check_raw(vec![0x0a, 0x7f, 0x01])
        .await
        .expect("a truncated message is answered");
    let response = CheckResponse::decode(answer.as_slice()).expect("a CheckResponse");
    denied(&response, Code::InvalidArgument, 400, "INVALID_REQUEST");
    server.stop().await;
}

/// Forward auth: the proxy's description of the original request, the same answer as Check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_answers_like_check() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (secret, record) = server.create(key_request("acme", &["videos:read"])).await;
    let bearer = format!("Bearer {secret}");
    let auth = |target: &'static str, headers: Vec<(&'static str, String)>| {
        let addr = server.http_addr;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            http(addr, "GET", target, &headers).await
        }
    };
    // Traefik / Caddy style.
    let ok = auth(
        "/auth?scopes=videos:read",
        vec![
            ("authorization", bearer.clone()),
            ("x-forwarded-method", "GET".into()),
            ("x-forwarded-uri", "/v1/videos/1?page=2".into()),
        ],
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.header("x-keyward-key-id"), Some(record.id.as_str()));
    assert_eq!(ok.header("x-keyward-account-id"), Some("acme"));
    assert_eq!(ok.header("x-keyward-environment"), Some("live"));
    assert_eq!(ok.header("x-keyward-code"), Some("VALID"));
    assert_eq!(ok.header("ratelimit-limit"), Some("100"));
    assert!(ok.header("ratelimit-remaining").is_some());
    assert!(ok.header("ratelimit-reset").is_some());
    assert!(!format!("{ok:?}").contains(&secret));

    // nginx style, with X-Api-Key; a missing scope.
    let forbidden = auth(
        "/auth?scopes=videos:write",
        vec![
            ("x-api-key", secret.clone()),
            ("x-original-method", "GET".into()),
            ("x-original-uri", "/v1/videos/1".into()),
        ],
    )
    .await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(forbidden.json()["code"], "INSUFFICIENT_SCOPE");
    assert_eq!(forbidden.header("content-type"), Some("application/json"));

    // No key: 401 with the RFC 6750 challenge.
    let missing = auth("/auth", vec![]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["code"], "MISSING");
    assert!(
        missing
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer error=\"invalid_token\""))
    );

    // A bad auth URL parameter is a 400 naming it.
    let bad = auth(
        "/auth?scopes=Not%20A%20Scope",
        vec![("authorization", bearer.clone())],
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("scopes")
    );

    // Health and metrics on the same listener.
    let healthz = http(server.http_addr, "GET", "/healthz", &[]).await;
    assert_eq!(healthz.status, 200);
    let readyz = http(server.http_addr, "GET", "/readyz", &[]).await;
    assert_eq!(readyz.status, 200);
    let metrics = http(server.http_addr, "GET", "/metrics", &[]).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("keyward_verifications_total{code=\"INSUFFICIENT_SCOPE\"} 1"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("keyward_connections_open{listener=\"http\"}")
    );
    server.stop().await;
}

/// Forwarded client addresses are believed only from `trusted_proxies`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_client_ip_is_believed_only_from_trusted_proxies() {
    let request = proto::CreateKeyRequest {
        restrictions: Some(proto::Restrictions {
            allowed_cidrs: vec!["198.51.100.0/24".into()],
            ..Default::default()
        }),
        ..key_request("acme", &["videos:read"])
    };
    for (trusted, expected) in [(vec![], 403), (vec!["127.0.0.1/32".parse().unwrap()], 200)] {
        let server = TestServer::start_with(Backend::Sqlite, |c| {
            c.gateway.trusted_proxies = trusted;
        })
        .await;
        let (secret, _) = server.create(request.clone()).await;
        let answer = http(
            server.http_addr,
            "GET",
            "/auth",
            &[
                ("x-api-key", &secret),
                ("x-forwarded-for", "203.0.113.1, 198.51.100.7"),
            ],
        )
        .await;
        assert_eq!(answer.status, expected, "{answer:?}");
        if expected == 403 {
            assert_eq!(answer.json()["code"], "IP_NOT_ALLOWED");
        }
        server.stop().await;
    }
}

/// A store outage for an uncached key is an error answer: Envoy's `failure_mode_allow` decides
/// (UNAVAILABLE), forward auth answers 503 (nginx then refuses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_for_an_uncached_key_is_an_error() {
    let cluster = Cluster::start().expect("a cluster of our own");
    let server = TestServer::start_on(test_config(&cluster.url("postgres"))).await;
    // Created by another keyward and unseen by this one: not cached here.
    let unknown = KeyFormat::default().generate(KeyEnvironment::Live);
    cluster.stop_server().expect("stop PostgreSQL");
    let status = eventually(Duration::from_secs(10), "Check to fail", || async {
        let r = server
            .ext_authz()
            .await
            .check(
                Envoy::get("/v1/videos/1")
                    .bearer(unknown.secret.expose())
                    .request(),
            )
            .await;
        r.err()
    })
    .await;
    assert_eq!(status.code(), Code::Unavailable);
    assert!(!status.message().contains(unknown.secret.expose()));
    let answer = http(
        server.http_addr,
        "GET",
        "/auth",
        &[("x-api-key", unknown.secret.expose())],
    )
    .await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.json()["code"], "UNAVAILABLE");
    server.stop().await;
}
