//! What the end client (or anyone) sends that makes a request ambiguous is refused, never read
//! one way: forward auth's description headers given twice, unreadable or contradicting each
//! other, unknown auth parameters, two credentials (forward auth, `Check`, gRPC metadata, the
//! JSON API), strings that are not UTF-8 shadowed by valid ones; and keys never come back in
//! errors or logs, page tokens cannot be forged or used by another caller.

use std::net::SocketAddr;

use keyward::proto;
use keyward::proto::envoy::config::core::v3::{HeaderMap, HeaderValue};
use keyward::proto::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, attribute_context,
};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::helpers::*;

/// Sends `request` (a whole HTTP/1.1 request, any bytes) and answers the status and body.
async fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// `GET /auth…` with these header lines (raw bytes allowed), closing the connection.
fn auth_request(target: &str, lines: &[&[u8]]) -> Vec<u8> {
    let mut request =
        format!("GET {target} HTTP/1.1\r\nhost: keyward\r\nconnection: close\r\n").into_bytes();
    for line in lines {
        request.extend_from_slice(line);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request
}

fn code(body: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    value["code"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_refuses_an_ambiguous_description() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.gateway.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let (key, _) = server
        .create(proto::CreateKeyRequest {
            restrictions: Some(proto::Restrictions {
                allowed_paths: vec!["/v1/videos/public/*".into()],
                allowed_cidrs: vec!["198.51.100.0/24".into()],
                ..Default::default()
            }),
            ..key_request("acme", &["videos:read"])
        })
        .await;
    let api_key = format!("x-api-key: {key}");
    let from = b"x-forwarded-for: 198.51.100.7".as_slice();
    let public = b"x-forwarded-uri: /v1/videos/public/1".as_slice();
    let ask = |target: &'static str, lines: Vec<&[u8]>| {
        let mut all: Vec<&[u8]> = vec![api_key.as_bytes()];
        all.extend(lines);
        let request = auth_request(target, &all);
        async move { raw_http(server.http_addr, &request).await }
    };
    // The unambiguous request is allowed: the baseline each refusal below departs from.
    assert_eq!(ask("/auth", vec![from, public]).await.0, 200);
    let original_public = b"x-original-uri: /v1/videos/public/1".as_slice();
    assert_eq!(
        ask("/auth", vec![from, public, original_public]).await.0,
        200,
        "both families agreeing"
    );
    for (what, lines) in [
        (
            "two X-Forwarded-Uri",
            vec![
                from,
                public,
                b"x-forwarded-uri: /v1/videos/private/1".as_slice(),
            ],
        ),
        (
            "X-Forwarded-Uri and X-Original-Uri disagreeing",
            vec![
                from,
                public,
                b"x-original-uri: /v1/videos/private/1".as_slice(),
            ],
        ),
        (
            "two X-Original-Method",
            vec![
                from,
                public,
                b"x-original-method: GET",
                b"x-original-method: DELETE",
            ],
        ),
        (
            "X-Forwarded-Method and X-Original-Method disagreeing",
            vec![
                from,
                public,
                b"x-forwarded-method: GET",
                b"x-original-method: DELETE",
            ],
        ),
        (
            "an unreadable X-Forwarded-Uri beside a readable X-Original-Uri",
            vec![from, b"x-forwarded-uri: /v1/\xff", original_public],
        ),
        (
            "an unreadable X-Forwarded-For beside X-Real-IP",
            vec![b"x-forwarded-for: \xff", b"x-real-ip: 198.51.100.7", public],
        ),
        (
            "two X-Real-IP",
            vec![
                b"x-real-ip: 198.51.100.7",
                b"x-real-ip: 203.0.113.1",
                public,
            ],
        ),
        (
            "two Referer",
            vec![from, public, b"referer: https://a/", b"referer: https://b/"],
        ),
    ] {
        let (status, body) = ask("/auth", lines).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(code(&body), "INVALID_REQUEST", "{what}");
    }
    // A proxy that appends its own X-Forwarded-For line (HAProxy): the lines are one list, read
    // from the right, so the client's forged first line is not the address.
    let (status, body) = ask(
        "/auth",
        vec![from, b"x-forwarded-for: 203.0.113.1".as_slice(), public],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(code(&body), "IP_NOT_ALLOWED");
    // A mistyped parameter is refused instead of requiring no scope.
    for target in [
        "/auth?scope=videos:write",
        "/auth?Scopes=videos:write",
        "/auth?x=1",
    ] {
        let (status, body) = ask(target, vec![from, public]).await;
        assert_eq!(status, 400, "{target}: {body}");
        assert_eq!(code(&body), "INVALID_REQUEST", "{target}");
    }
    assert_eq!(
        ask("/auth?scopes=videos:read", vec![from, public]).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_refuses_two_keys() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (a, _) = server.create(key_request("acme", &["videos:read"])).await;
    let (b, _) = server.create(key_request("acme", &["videos:read"])).await;
    let (bearer_a, bearer_b) = (
        format!("authorization: Bearer {a}"),
        format!("authorization: Bearer {b}"),
    );
    let (api_a, api_b) = (format!("x-api-key: {a}"), format!("x-api-key: {b}"));
    let ask = |lines: Vec<&[u8]>| {
        let request = auth_request("/auth", &lines);
        async move { raw_http(server.http_addr, &request).await }
    };
    assert_eq!(ask(vec![bearer_a.as_bytes()]).await.0, 200);
    assert_eq!(
        ask(vec![bearer_a.as_bytes(), api_a.as_bytes()]).await.0,
        200,
        "the same key twice says one thing"
    );
    for (what, lines) in [
        (
            "two Authorization",
            vec![bearer_a.as_bytes(), bearer_b.as_bytes()],
        ),
        (
            "Authorization and X-Api-Key",
            vec![bearer_a.as_bytes(), api_b.as_bytes()],
        ),
        ("two X-Api-Key", vec![api_a.as_bytes(), api_b.as_bytes()]),
        (
            "an unreadable Authorization beside a valid X-Api-Key",
            vec![b"authorization: Bearer \xff".as_slice(), api_a.as_bytes()],
        ),
    ] {
        let (status, body) = ask(lines).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(code(&body), "MALFORMED", "{what}");
    }
}

fn check_request(method: &str, raw_headers: &[(&str, &[u8])]) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request {
                time: None,
                http: Some(attribute_context::HttpRequest {
                    method: method.into(),
                    path: "/v1/videos/1".into(),
                    header_map: Some(HeaderMap {
                        headers: raw_headers
                            .iter()
                            .map(|(k, v)| HeaderValue {
                                key: (*k).to_owned(),
                                value: String::new(),
                                raw_value: v.to_vec(),
                            })
                            .collect(),
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}

async fn check_status(server: &TestServer, body: Vec<u8>) -> i32 {
    let answer = server
        .check_raw(body)
        .await
        .expect("Check answers, never errs");
    let response = CheckResponse::decode(answer.as_slice()).expect("a CheckResponse");
    response.status.expect("a status").code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_two_keys_and_shadowed_strings() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (a, _) = server.create(key_request("acme", &["videos:read"])).await;
    let (b, _) = server.create(key_request("acme", &["videos:read"])).await;
    let (bearer_a, bearer_b) = (format!("Bearer {a}"), format!("Bearer {b}"));
    let ok = check_request("GET", &[("authorization", bearer_a.as_bytes())]);
    assert_eq!(
        check_status(&server, ok.encode_to_vec()).await,
        Code::Ok as i32
    );
    for (what, headers) in [
        (
            "two authorization",
            vec![
                ("authorization", bearer_a.as_bytes()),
                ("Authorization", bearer_b.as_bytes()),
            ],
        ),
        (
            "authorization and x-api-key",
            vec![
                ("authorization", bearer_a.as_bytes()),
                ("x-api-key", b.as_bytes()),
            ],
        ),
        (
            "an unreadable authorization beside a valid x-api-key",
            vec![
                ("authorization", b"Bearer \xff".as_slice()),
                ("x-api-key", a.as_bytes()),
            ],
        ),
    ] {
        let request = check_request("GET", &headers);
        assert_eq!(
            check_status(&server, request.encode_to_vec()).await,
            Code::Unauthenticated as i32,
            "{what}"
        );
    }
    // A method that is not UTF-8, shadowed by a valid one: protobuf refuses the message, and
    // Check answers a denial (400), never an allow and never a gRPC error.
    let mut body = ok.encode_to_vec();
    let http_method_not_utf8 = [0x0a, 7, 0x22, 5, 0x12, 3, 0x12, 1, 0xff];
    body.extend_from_slice(&http_method_not_utf8);
    body.extend_from_slice(&ok.encode_to_vec());
    assert!(CheckRequest::decode(body.as_slice()).is_err());
    assert_eq!(
        check_status(&server, body).await,
        Code::InvalidArgument as i32
    );
    // An unknown group: protobuf skips it, and so does keyward (the request is decided).
    let mut body = ok.encode_to_vec();
    body.extend_from_slice(&[0xab, 0x01, 0x08, 0x01, 0xac, 0x01]); // group 21 { 1: 1 }
    assert!(CheckRequest::decode(body.as_slice()).is_ok());
    assert_eq!(check_status(&server, body).await, Code::Ok as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_a_shadowed_key_that_is_not_utf8() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (key, _) = server.create(key_request("acme", &["videos:read"])).await;
    let valid = proto::VerifyRequest {
        key: key.clone(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/keyward.v1.VerifyService/Verify");
    for (body, expected) in [
        (valid.clone(), Code::Ok),
        (
            [&[0x0a, 1, 0xff][..], &valid].concat(),
            Code::InvalidArgument,
        ),
    ] {
        grpc.ready().await.unwrap();
        let answer = grpc
            .unary(tonic::Request::new(body), path.clone(), RawCodec)
            .await;
        assert_eq!(answer.err().map_or(Code::Ok, |s| s.code()), expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_calls_refuse_two_authorization_headers() {
    let server = TestServer::start_with(Backend::Sqlite, |c| c.http_api = true).await;
    let (other, _) = server.create(key_request("acme", &["keys:read"])).await;
    let mut request = server.root(proto::ListKeysRequest {
        account_id: "acme".into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .append("authorization", format!("Bearer {other}").parse().unwrap());
    let refused = server.manage().await.list_keys(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let root = format!("Bearer {}", server.root_key);
    let second = format!("Bearer {other}");
    let answer = http(
        server.http_addr,
        "GET",
        "/v1/api-keys?accountId=acme",
        &[("authorization", &root), ("authorization", &second)],
    )
    .await;
    assert_eq!(answer.status, 401, "{answer:?}");
    let alone = http(
        server.http_addr,
        "GET",
        "/v1/api-keys?accountId=acme",
        &[("authorization", &root)],
    )
    .await;
    assert_eq!(alone.status, 200, "{alone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_api_never_echoes_a_key_and_always_answers_json() {
    let server = TestServer::start_with(Backend::Sqlite, |c| c.http_api = true).await;
    let (key, _) = server.create(key_request("acme", &["keys:read"])).await;
    let bearer = format!("Bearer {key}");
    let pasted = &key[8..];
    for target in [
        format!("/v1/api-keys?{key}=1"),
        format!("/v1/api-keys?kw%5Flive%5F{pasted}=1"),
    ] {
        let answer = http(
            server.http_addr,
            "GET",
            &target,
            &[("authorization", &bearer)],
        )
        .await;
        assert_eq!(answer.status, 400, "{answer:?}");
        assert!(!answer.body.contains(pasted), "{}", answer.body);
        assert_eq!(answer.json()["code"], "BAD_REQUEST", "{}", answer.body);
    }
    let undecodable = http(
        server.http_addr,
        "GET",
        "/v1/api-keys/%ff",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(undecodable.status, 400, "{undecodable:?}");
    assert_eq!(undecodable.json()["code"], "BAD_REQUEST");
}

/// Page tokens are opaque, work on another replica, and only for the caller and query they
/// were issued for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_tokens_are_bound_to_their_caller_and_shared_by_replicas() {
    let first = TestServer::start(Backend::Sqlite).await;
    let second = TestServer::start_on(test_config(&first.database_url)).await;
    for i in 0..3 {
        first
            .create(proto::CreateKeyRequest {
                name: format!("key {i}"),
                ..key_request("acme", &["videos:read"])
            })
            .await;
    }
    let (reader, _) = first.create(key_request("acme", &["keys:read"])).await;
    let list = |token: String| proto::ListKeysRequest {
        account_id: "acme".into(),
        page_size: 1,
        page_token: token,
        ..Default::default()
    };
    let page = first
        .manage()
        .await
        .list_keys(as_key(&reader, list(String::new())))
        .await
        .unwrap()
        .into_inner();
    let token = page.next_page_token;
    assert_eq!(token.len(), 43, "{token}");
    // The next page from the other replica, for the same caller.
    let next = second
        .manage()
        .await
        .list_keys(as_key(&reader, list(token.clone())))
        .await
        .expect("the other replica opens the token")
        .into_inner();
    assert_ne!(next.api_keys[0].id, page.api_keys[0].id);
    // Another caller of the same account (the root key) cannot use it.
    let stolen = first
        .manage()
        .await
        .list_keys(first.root(list(token)))
        .await
        .unwrap_err();
    assert_eq!(stolen.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&stolen), ["page_token"]);
    // A token made offline (the old form: a row number and a checksum) is refused.
    let forged = first
        .manage()
        .await
        .list_keys(as_key(&reader, list("p1.1".into())))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&forged), ["page_token"]);
}
