//! Verify and Envoy's `Check` are served by their generated servers behind keyward's codec and
//! layers (src/grpc/gateway.rs): these tests send them HTTP/2 requests framed by hand and check
//! that they keep gRPC's rules — a bounded body, exactly one uncompressed message, an answer with
//! its status in the trailers, every refusal a gRPC status that says whose mistake it was — and
//! that ordinary calls still answer.

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use keyward::proto::{self, VerifyCode};
use keyward::server::{MAX_CHECK_REQUEST, MAX_VERIFY_REQUEST};
use prost::Message;
use tonic::Code;
use tonic::codegen::http;
use tower::ServiceExt;

use crate::helpers::{Backend, TestServer, code, key_request, verify_request};

const VERIFY: &str = "/keyward.v1.VerifyService/Verify";
const CHECK: &str = "/envoy.service.auth.v3.Authorization/Check";

/// What came back for one hand-framed request.
struct Reply {
    http_status: http::StatusCode,
    content_type: Option<String>,
    /// Whether the head announced the body's length (gRPC answers do not).
    content_length: bool,
    /// The gRPC status, from the trailers or the head of a trailers-only answer.
    grpc_status: Code,
    grpc_message: String,
    body: Bytes,
}

/// Sends `body` as the request body of `path`, as a gRPC client would (content type, `te`).
async fn send(server: &TestServer, path: &str, body: Bytes, headers: &[(&str, &str)]) -> Reply {
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}{path}", server.addr))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(tonic::body::Body::new(Full::new(body)))
        .expect("a request");
    let response = server
        .channel()
        .await
        .oneshot(request)
        .await
        .expect("an HTTP/2 response");
    let (head, body) = response.into_parts();
    let collected = body.collect().await.expect("the response body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    // A success has its status in the trailers; a refusal is trailers-only (in the head).
    let status = tonic::Status::from_header_map(if trailers.contains_key("grpc-status") {
        &trailers
    } else {
        &head.headers
    })
    .expect("a grpc-status");
    Reply {
        http_status: head.status,
        content_type: head
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        content_length: head.headers.contains_key("content-length"),
        grpc_status: status.code(),
        grpc_message: status.message().to_owned(),
        body: collected.to_bytes(),
    }
}

/// `message` with gRPC's prefix: the compression flag and the length.
fn framed(flag: u8, message: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(flag);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// The one message of an answer, unframed.
fn unframed(reply: &Reply) -> &[u8] {
    let body = &reply.body[..];
    assert!(body.len() >= 5, "a framed message: {body:?}");
    assert_eq!(body[0], 0, "uncompressed");
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    assert_eq!(len, body.len() - 5, "exactly one message");
    &body[5..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_methods_keep_grpcs_framing_rules() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (key, record) = server.create(key_request("acme", &["videos:read"])).await;
    let verify = verify_request(&key, &["videos:read"]).encode_to_vec();
    let check = proto::envoy::service::auth::v3::CheckRequest::default().encode_to_vec();

    // A well-framed call: 200, application/grpc, one message, grpc-status 0 in the trailers;
    // no content-length (as tonic answers: it would differ from answer to answer, so HTTP/2's
    // header compression could not index it).
    let reply = send(&server, VERIFY, framed(0, &verify), &[]).await;
    assert_eq!(reply.http_status, http::StatusCode::OK);
    assert_eq!(reply.content_type.as_deref(), Some("application/grpc"));
    assert!(!reply.content_length, "no content-length");
    assert_eq!(reply.grpc_status, Code::Ok, "{}", reply.grpc_message);
    let answer = proto::VerifyResponse::decode(unframed(&reply)).expect("a VerifyResponse");
    assert_eq!(answer.code(), VerifyCode::Valid);
    assert_eq!(answer.key.expect("the key").key_id, record.id);
    let reply = send(&server, CHECK, framed(0, &check), &[]).await;
    assert_eq!(reply.grpc_status, Code::Ok, "{}", reply.grpc_message);
    let answer = proto::envoy::service::auth::v3::CheckResponse::decode(unframed(&reply))
        .expect("a CheckResponse");
    // No key in an empty CheckRequest: a denial, in the answer.
    assert_eq!(
        answer.status.expect("a status").code,
        Code::Unauthenticated as i32
    );

    for (path, message, max) in [
        (VERIFY, &verify, MAX_VERIFY_REQUEST),
        (CHECK, &check, MAX_CHECK_REQUEST),
    ] {
        let refused = |reply: Reply, expected: Code, says: &str| {
            assert_eq!(
                reply.grpc_status, expected,
                "{path}: {}",
                reply.grpc_message
            );
            assert!(
                reply.grpc_message.contains(says),
                "{path}: {:?} should say {says:?}",
                reply.grpc_message
            );
            assert_eq!(reply.content_type.as_deref(), Some("application/grpc"));
            assert!(reply.body.is_empty(), "a refusal carries no message");
        };
        // Larger than the bound: refused as tonic refuses (OUT_OF_RANGE), whether the prefix
        // says so or the body runs past it.
        let huge = vec![0u8; max + 1];
        refused(
            send(&server, path, framed(0, &huge), &[]).await,
            Code::OutOfRange,
            &format!("larger than {max} bytes"),
        );
        let mut lying = BytesMut::from(&framed(0, message)[..]);
        lying[1..5].copy_from_slice(&((max + 1) as u32).to_be_bytes());
        refused(
            send(&server, path, lying.freeze(), &[]).await,
            Code::OutOfRange,
            "larger than",
        );
        // A compressed message: keyward accepts none.
        refused(
            send(
                &server,
                path,
                framed(1, message),
                &[("grpc-encoding", "gzip")],
            )
            .await,
            Code::Unimplemented,
            "compressed",
        );
        refused(
            send(&server, path, framed(7, message), &[]).await,
            Code::InvalidArgument,
            "compression flag",
        );
        // Not exactly one message: none, a cut prefix, a cut message, two messages.
        let whole = framed(0, message);
        let mut two = BytesMut::from(&whole[..]);
        two.put_slice(&whole);
        for body in [
            Bytes::new(),
            whole.slice(..3),
            whole.slice(..whole.len() - 1),
            two.freeze(),
        ] {
            refused(
                send(&server, path, body, &[]).await,
                Code::InvalidArgument,
                "not exactly one gRPC message",
            );
        }
        // A body that is not the message: Verify answers INVALID_ARGUMENT, as every service
        // does; Check a denial (400), never an error Envoy's failure_mode_allow lets through.
        let reply = send(&server, path, framed(0, &[0x0a, 0x7f, 0x01]), &[]).await;
        if path == CHECK {
            assert_eq!(reply.grpc_status, Code::Ok, "{}", reply.grpc_message);
            let answer = proto::envoy::service::auth::v3::CheckResponse::decode(unframed(&reply))
                .expect("a CheckResponse");
            assert_eq!(
                answer.status.expect("a status").code,
                Code::InvalidArgument as i32
            );
        } else {
            refused(reply, Code::InvalidArgument, "not a valid protobuf message");
        }
    }
    // A method the services do not have.
    for path in [
        "/keyward.v1.VerifyService/Nope",
        "/envoy.service.auth.v3.Authorization/Nope",
    ] {
        let reply = send(&server, path, framed(0, &verify), &[]).await;
        assert_eq!(reply.grpc_status, Code::Unimplemented, "{path}");
    }
    // None of it disturbed the server: ordinary calls answer.
    assert_eq!(
        code(&server.verify(&key, &["videos:read"]).await),
        VerifyCode::Valid
    );
    server.stop().await;
}

/// With `verify_auth`, a caller is authenticated before its body is read: an oversized body
/// from an unauthenticated caller is refused as UNAUTHENTICATED, not measured first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_are_authenticated_before_their_body_is_read() {
    let server = TestServer::start_with(Backend::Sqlite, |c| c.verify_auth = true).await;
    let huge = framed(0, &vec![0u8; MAX_CHECK_REQUEST + 1]);
    for path in [VERIFY, CHECK] {
        let reply = send(&server, path, huge.clone(), &[]).await;
        assert_eq!(reply.grpc_status, Code::Unauthenticated, "{path}");
    }
    // An authenticated gateway gets as far as the bound.
    let (verifier, _) = server
        .create(key_request("gateway", &["keys:verify"]))
        .await;
    let bearer = format!("Bearer {verifier}");
    for path in [VERIFY, CHECK] {
        let reply = send(&server, path, huge.clone(), &[("authorization", &bearer)]).await;
        assert_eq!(reply.grpc_status, Code::OutOfRange, "{path}");
    }
    server.stop().await;
}
