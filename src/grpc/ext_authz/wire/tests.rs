//! The wire reader and writer against the generated (prost) types of the vendored protos: what
//! prost decodes is what [`CheckInput`] reads, and what [`CheckOutput`] writes is byte for byte
//! what prost encodes for the same answer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::cache::KeyState;
use crate::gateway::{Answer, Gateway, GatewayConfig, Rejection};
use crate::proto::envoy::config::core::v3::{
    Address, HeaderMap, HeaderValue, HeaderValueOption, SocketAddress, address,
};
use crate::proto::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
    attribute_context, check_response::HttpResponse,
};
use crate::proto::envoy::r#type::v3::{HttpStatus, StatusCode};
use crate::ratelimit::LimitStatus;
use crate::time::Timestamp;
use crate::verify::{Code, Decision};

fn request(
    method: &str,
    path: &str,
    headers: &BTreeMap<String, String>,
    raw: &[(String, String)],
    source: Option<&str>,
    extensions: &BTreeMap<String, String>,
) -> CheckRequest {
    let peer = |ip: &str| attribute_context::Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.to_owned(),
                ..Default::default()
            })),
        }),
        service: "client".into(),
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: source.map(peer),
            destination: Some(peer("10.0.0.2")),
            request: Some(attribute_context::Request {
                time: None,
                http: Some(attribute_context::HttpRequest {
                    id: "req-1".into(),
                    method: method.into(),
                    headers: headers.clone(),
                    header_map: (!raw.is_empty()).then(|| HeaderMap {
                        headers: raw
                            .iter()
                            .map(|(k, v)| HeaderValue {
                                key: k.clone(),
                                value: String::new(),
                                raw_value: v.clone().into_bytes(),
                            })
                            .collect(),
                    }),
                    path: path.into(),
                    host: "api.example.com".into(),
                    size: 42,
                    ..Default::default()
                }),
            }),
            context_extensions: extensions.clone(),
        }),
    }
}

/// What the generated types say a header's values are: the map's one value, else every entry
/// of the raw list of that name (any case), its value or raw value, `None` when not UTF-8.
fn prost_header<'r>(request: &'r CheckRequest, name: &str) -> Vec<Option<&'r str>> {
    let Some(http) = (request.attributes.as_ref())
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref())
    else {
        return Vec::new();
    };
    if let Some(value) = http.headers.get(name) {
        return vec![Some(value)];
    }
    http.header_map
        .iter()
        .flat_map(|m| &m.headers)
        .filter(|h| h.key.eq_ignore_ascii_case(name))
        .map(|h| match h.value.as_str() {
            "" => std::str::from_utf8(&h.raw_value).ok(),
            value => Some(value),
        })
        .collect()
}

fn decode(request: &CheckRequest) -> CheckInput {
    CheckInput::read(Bytes::from(request.encode_to_vec())).expect("decodes")
}

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("authorization".to_owned()),
        Just("x-api-key".to_owned()),
        Just("referer".to_owned()),
        "[a-z-]{1,12}",
    ]
}

proptest! {
    #[test]
    fn reads_what_prost_decodes(
        method in "[A-Z]{0,8}",
        path in "/[ -~]{0,200}",
        // Values past 127 bytes take the reader's general path (two-byte lengths).
        headers in proptest::collection::btree_map(header_name(), "[ -~]{0,150}", 0..12),
        raw in proptest::collection::vec((header_name(), "[ -~]{0,30}"), 0..4),
        source in proptest::option::of("[0-9.:a-f]{0,20}"),
        extensions in proptest::collection::btree_map(
            prop_oneof![Just("scopes".to_owned()), Just("environment".to_owned()), "[a-z]{1,8}"],
            "[ -~]{0,20}",
            0..4,
        ),
    ) {
        let request = request(&method, &path, &headers, &raw, source.as_deref(), &extensions);
        let input = decode(&request);
        prop_assert_eq!(input.method(), method.as_str());
        prop_assert_eq!(input.path(), path.as_str());
        // An empty address is not written (proto3), so it reads as absent: no IP either way.
        prop_assert_eq!(input.source_address(), source.as_deref().filter(|s| !s.is_empty()));
        prop_assert_eq!(input.scopes(), extensions.get("scopes").map(String::as_str));
        prop_assert_eq!(
            input.environment(),
            extensions.get("environment").map(String::as_str)
        );
        for name in headers.keys().chain(raw.iter().map(|(k, _)| k)).map(String::as_str)
            .chain(["authorization", "x-api-key", "referer", "absent"])
        {
            prop_assert_eq!(input.header_values(name).to_vec(), prost_header(&request, name), "{}", name);
        }
    }

    /// Any bytes at all: an answer or an error, never a panic.
    #[test]
    fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(input) = CheckInput::read(Bytes::from(body)) {
            let _ = (input.method(), input.path(), input.header("authorization"));
        }
    }
}

#[test]
fn an_empty_request_reads_as_empty() {
    let input = CheckInput::read(Bytes::new()).expect("an empty message is valid");
    assert_eq!(input.method(), "");
    assert_eq!(input.path(), "");
    assert_eq!(input.source_address(), None);
    assert_eq!(input.header("authorization"), None);
    assert_eq!(input.scopes(), None);
}

#[test]
fn a_message_split_in_two_merges_as_protobuf_says() {
    // Two `attributes` fields merge: the later method wins, headers of both are present.
    let first = request(
        "GET",
        "/a",
        &BTreeMap::from([("authorization".into(), "Bearer one".into())]),
        &[],
        Some("203.0.113.9"),
        &BTreeMap::new(),
    );
    let second = request(
        "POST",
        "/b",
        &BTreeMap::from([("x-api-key".into(), "two".into())]),
        &[],
        None,
        &BTreeMap::from([("scopes".into(), "videos:read".into())]),
    );
    let mut bytes = first.encode_to_vec();
    bytes.extend(second.encode_to_vec());
    let merged = CheckRequest::decode(bytes.as_slice()).unwrap();
    let input = CheckInput::read(Bytes::from(bytes)).unwrap();
    assert_eq!(input.method(), "POST");
    assert_eq!(input.path(), "/b");
    assert_eq!(input.source_address(), Some("203.0.113.9"));
    for name in ["authorization", "x-api-key"] {
        assert_eq!(
            input.header_values(name).to_vec(),
            prost_header(&merged, name)
        );
    }
    assert_eq!(input.scopes(), Some("videos:read"));
}

#[test]
fn a_pipe_address_is_not_a_client_ip() {
    let mut request = request(
        "GET",
        "/",
        &BTreeMap::new(),
        &[],
        Some("203.0.113.9"),
        &BTreeMap::new(),
    );
    let mut bytes = request.encode_to_vec();
    // attributes { source { address { pipe (2) { path: "/run/sock" } } } }, appended: the
    // oneof now holds the pipe.
    let pipe = [0x12, 0x0b, 0x0a, 0x09];
    let mut source = Vec::new();
    source.extend_from_slice(&pipe);
    source.extend_from_slice(b"/run/sock");
    let address = [&[0x0a, source.len() as u8][..], &source].concat();
    let peer = [&[0x0a, address.len() as u8][..], &address].concat();
    let attributes = [&[0x0a, peer.len() as u8][..], &peer].concat();
    bytes.extend_from_slice(&attributes);
    let input = CheckInput::read(Bytes::from(bytes)).unwrap();
    assert_eq!(input.source_address(), None);
    request.attributes = None;
    assert_eq!(
        decode(&request).source_address(),
        None,
        "no attributes at all"
    );
}

#[test]
fn strings_that_are_not_utf8_are_refused() {
    // HttpRequest { method: 0xff, path: "/\xff", headers { "authorization": "\xff" },
    // headers { "user-agent": "ok" } } inside Request.http inside attributes.request.
    let field =
        |number: u8, bytes: &[u8]| [&[number << 3 | 2, bytes.len() as u8][..], bytes].concat();
    let entry = |k: &[u8], v: &[u8]| field(3, &[field(1, k), field(2, v)].concat());
    let http = [
        field(2, b"\xff"),
        field(4, b"/\xff"),
        entry(b"authorization", b"\xff"),
        entry(b"user-agent", b"ok"),
    ]
    .concat();
    let bytes = field(1, &field(4, &field(2, &http)));
    let error = CheckInput::read(Bytes::from(bytes)).expect_err("protobuf refuses it");
    assert!(error.0.contains("http.method"), "{error}");
    // Every occurrence is checked, not only the one that wins: a method that is not UTF-8,
    // then a valid one, is refused as prost refuses it.
    let http = [field(2, b"\xff"), field(2, b"GET")].concat();
    let bytes = field(1, &field(4, &field(2, &http)));
    assert!(CheckRequest::decode(bytes.as_slice()).is_err());
    assert!(CheckInput::read(Bytes::from(bytes)).is_err());
}

#[test]
fn malformed_bodies_are_refused() {
    let valid = request(
        "GET",
        "/v1/videos/1",
        &BTreeMap::from([("authorization".into(), "Bearer x".into())]),
        &[],
        Some("203.0.113.9"),
        &BTreeMap::new(),
    )
    .encode_to_vec();
    // Truncated anywhere inside: a field runs past its message's end.
    for cut in [1, 2, 10, valid.len() / 2, valid.len() - 1] {
        assert!(
            CheckInput::read(Bytes::copy_from_slice(&valid[..cut])).is_err(),
            "cut at {cut}"
        );
    }
    // A field keyward reads with another wire type: attributes as a varint.
    assert!(CheckInput::read(Bytes::from_static(&[0x08, 0x01])).is_err());
    // A group.
    assert!(CheckInput::read(Bytes::from_static(&[0x0b, 0x0c])).is_err());
    // A field number of 0.
    assert!(CheckInput::read(Bytes::from_static(&[0x02, 0x00])).is_err());
    // Unknown fields of every wire type are skipped.
    let unknown = [
        0x28, 0x96, 0x01, // 5: varint
        0x35, 1, 2, 3, 4, // 6: fixed32
        0x39, 1, 2, 3, 4, 5, 6, 7, 8, // 7: fixed64
        0x42, 0x01, 0xff, // 8: bytes
    ];
    let mut bytes = unknown.to_vec();
    bytes.extend_from_slice(&valid);
    let input = CheckInput::read(Bytes::from(bytes)).expect("unknown fields skipped");
    assert_eq!(input.header("authorization"), Some("Bearer x"));
}

#[test]
fn headers_past_the_bound_mark_the_request() {
    let many: BTreeMap<String, String> = (0..=MAX_HEADERS)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect();
    let input = decode(&request("GET", "/", &many, &[], None, &BTreeMap::new()));
    assert!(input.too_many_headers());
    assert_eq!(
        input.headers.len(),
        MAX_HEADERS,
        "the list stops at the bound"
    );
    let enough: BTreeMap<String, String> = many.into_iter().take(MAX_HEADERS).collect();
    let input = decode(&request("GET", "/", &enough, &[], None, &BTreeMap::new()));
    assert!(!input.too_many_headers());
    let raw: Vec<(String, String)> = (0..=MAX_HEADERS)
        .map(|i| (format!("x-h{i}"), "v".to_owned()))
        .collect();
    let input = decode(&request(
        "GET",
        "/",
        &BTreeMap::new(),
        &raw,
        None,
        &BTreeMap::new(),
    ));
    assert!(input.too_many_headers());
}

#[test]
fn debug_never_shows_header_values() {
    let input = decode(&request(
        "GET",
        "/",
        &BTreeMap::from([("authorization".into(), "Bearer kw_live_secret".into())]),
        &[],
        None,
        &BTreeMap::new(),
    ));
    let debug = format!("{input:?}");
    assert!(!debug.contains("secret"), "{debug}");
}

/// The answer built with the generated types, as prost encodes it (the oracle).
#[allow(deprecated)]
fn prost_response(answer: &Answer, headers_to_remove: &[String]) -> CheckResponse {
    let overwrite = |(name, value): (&str, String)| HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    };
    let allowed = answer.allowed();
    let code = match answer.status {
        200 => tonic::Code::Ok,
        400 => tonic::Code::InvalidArgument,
        401 => tonic::Code::Unauthenticated,
        429 => tonic::Code::ResourceExhausted,
        503 => tonic::Code::Unavailable,
        _ => tonic::Code::PermissionDenied,
    };
    let retry = answer
        .challenge()
        .iter()
        .find(|(n, _)| *n == "retry-after")
        .map(|(_, v)| prost_types::Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: tonic_types::pb::RetryInfo {
                retry_delay: Some(prost_types::Duration {
                    seconds: v.parse().unwrap(),
                    nanos: 0,
                }),
            }
            .encode_to_vec(),
        });
    let owned = |list: &mut dyn Iterator<Item = (&'static str, &[u8])>| {
        list.map(|(k, v)| (k, String::from_utf8(v.to_vec()).unwrap()))
            .collect::<Vec<_>>()
    };
    let rate_limit = answer.rate_limit();
    let challenge = owned(&mut answer.challenge().iter().map(|(k, v)| (*k, v.as_bytes())));
    let http_response = if allowed {
        HttpResponse::OkResponse(OkHttpResponse {
            headers: owned(&mut answer.identity().into_iter().flatten())
                .into_iter()
                .chain(owned(&mut rate_limit.iter().flat_map(|r| r.headers())))
                .map(overwrite)
                .collect(),
            headers_to_remove: headers_to_remove.to_vec(),
            response_headers_to_add: Vec::new(),
        })
    } else {
        let status = match answer.status {
            400 => StatusCode::BadRequest,
            401 => StatusCode::Unauthorized,
            429 => StatusCode::TooManyRequests,
            503 => StatusCode::ServiceUnavailable,
            _ => StatusCode::Forbidden,
        };
        HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: status as i32,
            }),
            headers: std::iter::once(("content-type", "application/json".to_owned()))
                .chain(challenge)
                .chain(owned(&mut rate_limit.iter().flat_map(|r| r.headers())))
                .map(overwrite)
                .collect(),
            body: answer.body().unwrap_or_default().to_owned(),
        })
    };
    CheckResponse {
        status: Some(tonic_types::pb::Status {
            code: code as i32,
            message: if allowed {
                String::new()
            } else {
                answer.code.to_owned()
            },
            details: retry.into_iter().collect(),
        }),
        http_response: Some(http_response),
    }
}

fn answers() -> Vec<Answer> {
    let now = Timestamp::now();
    let key = Some(Arc::new(KeyState::new(&crate::model::test_key(), false)));
    let limit = |remaining| LimitStatus {
        limit: 100,
        remaining,
        reset_at: now.saturating_add(Duration::from_secs(60)),
    };
    let decision = |code, rate_limit, retry_after| Decision {
        code,
        missing_scopes: Vec::new(),
        rate_limit,
        retry_after,
        credits: None,
        key: key.clone(),
        decided_at: now,
    };
    let answer = |decision: Decision| Answer::from_decision(decision);
    vec![
        answer(decision(Code::Valid, Some(limit(99)), None)),
        answer(decision(Code::Valid, None, None)),
        answer(Decision {
            credits: Some(crate::ratelimit::CreditStatus {
                remaining: 41,
                refill_at: None,
            }),
            ..decision(Code::Valid, Some(limit(99)), None)
        }),
        answer(Decision {
            credits: Some(crate::ratelimit::CreditStatus {
                remaining: 0,
                refill_at: None,
            }),
            ..decision(Code::UsageExceeded, None, Some(Duration::from_secs(3600)))
        }),
        answer(Decision {
            key: None,
            ..decision(Code::NotFound, None, None)
        }),
        answer(decision(Code::Revoked, None, None)),
        answer(decision(Code::InsufficientScope, Some(limit(98)), None)),
        answer(decision(
            Code::RateLimited,
            Some(limit(0)),
            Some(Duration::from_secs(17)),
        )),
        answer(decision(
            Code::RateLimited,
            Some(limit(0)),
            Some(Duration::from_secs(300_000)),
        )),
        Answer::rejected(&Rejection::new("path", "at most 2048 bytes")),
        Answer::unavailable(),
        Answer::internal(),
    ]
}

#[test]
fn writes_what_prost_encodes() {
    for strip in [true, false] {
        let gateway = Arc::new(
            Gateway::new(&GatewayConfig {
                strip_key_headers: strip,
                ..GatewayConfig::default()
            })
            .unwrap(),
        );
        for answer in answers() {
            let expected = prost_response(&answer, gateway.headers_to_remove()).encode_to_vec();
            let output = CheckOutput::new(answer.clone(), gateway.clone());
            let mut written = Vec::new();
            output.write(&mut written);
            assert_eq!(output.encoded_len(), written.len(), "{answer:?}");
            assert_eq!(written, expected, "{answer:?}");
        }
    }
}

#[test]
fn header_options_of_every_length_are_what_prost_encodes() {
    // A 16-byte name: the option's length crosses 127 between values of 103 and 104 bytes, so
    // both the one-byte-lengths path and the general one are written.
    let cases = [
        ("x-keyward-key-id", 1),
        ("x-keyward-key-id", 103),
        ("x-keyward-key-id", 104),
        ("www-authenticate", 300),
        ("x-keyward-key-id", 0),
        ("", 5),
    ];
    for (name, value_len) in cases {
        let value = "v".repeat(value_len);
        let mut written = Vec::new();
        header_option(DENIED_HEADERS, name, value.as_bytes(), &mut written);
        let expected = DeniedHttpResponse {
            status: None,
            headers: vec![HeaderValueOption {
                header: Some(HeaderValue {
                    key: name.to_owned(),
                    value: value.clone(),
                    raw_value: Vec::new(),
                }),
                append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                ..HeaderValueOption::default()
            }],
            body: String::new(),
        }
        .encode_to_vec();
        assert_eq!(written, expected, "{name:?} with a {value_len}-byte value");
    }
}

// `CheckRequest` trimmed to the fields the reader reads (the same numbers as the vendored
// protos): the reference the reader must agree with, field for field and error for error.
mod trimmed {
    use std::collections::HashMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CheckRequest {
        #[prost(message, optional, tag = "1")]
        pub attributes: Option<Attributes>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Attributes {
        #[prost(message, optional, tag = "1")]
        pub source: Option<Peer>,
        #[prost(message, optional, tag = "4")]
        pub request: Option<Request>,
        #[prost(map = "string, string", tag = "10")]
        pub context_extensions: HashMap<String, String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Peer {
        #[prost(message, optional, tag = "1")]
        pub address: Option<Address>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Address {
        #[prost(oneof = "AddressKind", tags = "1, 2, 3")]
        pub address: Option<AddressKind>,
    }
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum AddressKind {
        #[prost(message, tag = "1")]
        Socket(SocketAddress),
        #[prost(message, tag = "2")]
        Pipe(Empty),
        #[prost(message, tag = "3")]
        Internal(Empty),
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SocketAddress {
        #[prost(string, tag = "2")]
        pub address: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Empty {}
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(message, optional, tag = "2")]
        pub http: Option<Http>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Http {
        #[prost(string, tag = "2")]
        pub method: String,
        #[prost(map = "string, string", tag = "3")]
        pub headers: HashMap<String, String>,
        #[prost(string, tag = "4")]
        pub path: String,
        #[prost(message, optional, tag = "13")]
        pub header_map: Option<HeaderMap>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderMap {
        #[prost(message, repeated, tag = "1")]
        pub headers: Vec<HeaderValue>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct HeaderValue {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
        #[prost(bytes = "vec", tag = "3")]
        pub raw_value: Vec<u8>,
    }
}

use crate::grpc::protobuf::arbitrary::{self, Kind};

const CHECK_SHAPE: &[(u32, Kind)] = &[(CHECK_REQUEST_ATTRIBUTES, Kind::Message(ATTRIBUTES_SHAPE))];
const ATTRIBUTES_SHAPE: &[(u32, Kind)] = &[
    (ATTRIBUTES_SOURCE, Kind::Message(PEER_SHAPE)),
    (ATTRIBUTES_REQUEST, Kind::Message(REQUEST_SHAPE)),
    (ATTRIBUTES_CONTEXT_EXTENSIONS, Kind::Message(ENTRY_SHAPE)),
];
const PEER_SHAPE: &[(u32, Kind)] = &[(PEER_ADDRESS, Kind::Message(ADDRESS_SHAPE))];
const ADDRESS_SHAPE: &[(u32, Kind)] = &[
    (ADDRESS_SOCKET_ADDRESS, Kind::Message(SOCKET_SHAPE)),
    (ADDRESS_PIPE, Kind::Message(&[(1, Kind::Str)])),
    (ADDRESS_ENVOY_INTERNAL, Kind::Message(&[])),
];
const SOCKET_SHAPE: &[(u32, Kind)] = &[(SOCKET_ADDRESS_ADDRESS, Kind::Str), (1, Kind::Varint)];
const REQUEST_SHAPE: &[(u32, Kind)] = &[(REQUEST_HTTP, Kind::Message(HTTP_SHAPE))];
const HTTP_SHAPE: &[(u32, Kind)] = &[
    (HTTP_METHOD, Kind::Str),
    (HTTP_HEADERS, Kind::Message(ENTRY_SHAPE)),
    (HTTP_PATH, Kind::Str),
    (HTTP_HEADER_MAP, Kind::Message(HEADER_MAP_SHAPE)),
];
const ENTRY_SHAPE: &[(u32, Kind)] = &[(HEADER_KEY, Kind::Str), (HEADER_VALUE, Kind::Str)];
const HEADER_MAP_SHAPE: &[(u32, Kind)] = &[(HEADER_MAP_HEADERS, Kind::Message(HEADER_VALUE_SHAPE))];
const HEADER_VALUE_SHAPE: &[(u32, Kind)] = &[
    (HEADER_KEY, Kind::Str),
    (HEADER_VALUE, Kind::Str),
    (HEADER_RAW_VALUE, Kind::Bytes),
];

/// The reader accepts exactly what prost accepts (decoding the trimmed message), and reads
/// what prost decodes.
fn assert_agrees_with_prost(body: &[u8]) -> Result<(), TestCaseError> {
    let prost = trimmed::CheckRequest::decode(body);
    let read = CheckInput::read(Bytes::copy_from_slice(body));
    let (prost, input) = match (prost, read) {
        (Ok(prost), Ok(input)) => (prost, input),
        (Err(_), Err(_)) => return Ok(()),
        (prost, read) => {
            return Err(TestCaseError::fail(format!(
                "prost {:?}, reader {:?}, body {body:02x?}",
                prost.err(),
                read.err()
            )));
        }
    };
    let attributes = prost.attributes.unwrap_or_default();
    let http = attributes.request.and_then(|r| r.http).unwrap_or_default();
    prop_assert_eq!(input.method(), http.method.as_str());
    prop_assert_eq!(input.path(), http.path.as_str());
    let source = match attributes
        .source
        .and_then(|p| p.address)
        .and_then(|a| a.address)
    {
        Some(trimmed::AddressKind::Socket(socket)) => Some(socket.address),
        _ => None,
    };
    prop_assert_eq!(
        input.source_address().filter(|a| !a.is_empty()),
        source.as_deref().filter(|a| !a.is_empty())
    );
    let extension = |name: &str| attributes.context_extensions.get(name).map(String::as_str);
    prop_assert_eq!(input.scopes(), extension("scopes"));
    prop_assert_eq!(input.environment(), extension("environment"));
    let raw = http.header_map.unwrap_or_default().headers;
    let names = http
        .headers
        .keys()
        .map(String::as_str)
        .chain(raw.iter().map(|h| h.key.as_str()))
        .chain(["authorization", "x-api-key", "referer"])
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>();
    for name in &names {
        let want: Vec<Option<&str>> = match http.headers.get(name) {
            Some(value) => vec![Some(value.as_str())],
            None => raw
                .iter()
                .filter(|h| h.key.eq_ignore_ascii_case(name))
                .map(|h| {
                    if h.value.is_empty() {
                        std::str::from_utf8(&h.raw_value).ok()
                    } else {
                        Some(h.value.as_str())
                    }
                })
                .collect(),
        };
        prop_assert_eq!(input.header_values(name).to_vec(), want, "{}", name);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Messages with repeated, shadowed and invalid-UTF-8 fields, unknown fields of every wire
    /// type, non-minimal varints, wrong wire types and cut bodies: both directions at once.
    #[test]
    fn accepts_exactly_what_prost_accepts(seed in any::<u64>()) {
        assert_agrees_with_prost(&arbitrary::message(CHECK_SHAPE, seed))?;
    }

    /// Valid requests (as Envoy encodes them) with a few bytes changed.
    #[test]
    fn mutated_requests_are_read_as_prost_reads_them(
        method in "[A-Z]{0,7}",
        headers in proptest::collection::btree_map(header_name(), "[ -~]{0,40}", 0..6),
        raw in proptest::collection::vec((header_name(), "[ -~]{0,20}"), 0..3),
        seed in any::<u64>(),
    ) {
        let request = request(&method, "/v1/x", &headers, &raw, Some("203.0.113.9"), &BTreeMap::new());
        assert_agrees_with_prost(&arbitrary::mutated(request.encode_to_vec(), seed))?;
    }
}

/// The generated messages are a mix: enough that prost accepts for the readings to be
/// compared (headers among them), enough that it refuses for the refusals to be.
#[test]
fn the_differential_messages_are_both_valid_and_invalid() {
    let decoded: Vec<_> = (0..2000)
        .filter_map(|seed| {
            trimmed::CheckRequest::decode(arbitrary::message(CHECK_SHAPE, seed).as_slice()).ok()
        })
        .collect();
    let with_headers = decoded
        .iter()
        .filter(|r| {
            let http = r
                .attributes
                .as_ref()
                .and_then(|a| a.request.as_ref())
                .and_then(|r| r.http.as_ref());
            http.is_some_and(|h| !h.headers.is_empty() || h.header_map.is_some())
        })
        .count();
    assert!(
        (300..=1800).contains(&decoded.len()),
        "{} of 2000 valid",
        decoded.len()
    );
    assert!(with_headers >= 10, "{with_headers} with headers");
}

#[test]
fn field_numbers_match_the_descriptors() {
    use crate::grpc::protobuf::field_number;
    let attributes = "envoy.service.auth.v3.AttributeContext";
    let peer = "envoy.service.auth.v3.AttributeContext.Peer";
    let request = "envoy.service.auth.v3.AttributeContext.Request";
    let http = "envoy.service.auth.v3.AttributeContext.HttpRequest";
    let header = "envoy.config.core.v3.HeaderValue";
    for (message, field, number) in [
        (
            "envoy.service.auth.v3.CheckRequest",
            "attributes",
            CHECK_REQUEST_ATTRIBUTES,
        ),
        (attributes, "source", ATTRIBUTES_SOURCE),
        (attributes, "request", ATTRIBUTES_REQUEST),
        (
            attributes,
            "context_extensions",
            ATTRIBUTES_CONTEXT_EXTENSIONS,
        ),
        (peer, "address", PEER_ADDRESS),
        (
            "envoy.config.core.v3.Address",
            "socket_address",
            ADDRESS_SOCKET_ADDRESS,
        ),
        (
            "envoy.config.core.v3.SocketAddress",
            "address",
            SOCKET_ADDRESS_ADDRESS,
        ),
        (request, "http", REQUEST_HTTP),
        (http, "method", HTTP_METHOD),
        (http, "headers", HTTP_HEADERS),
        (http, "path", HTTP_PATH),
        (http, "header_map", HTTP_HEADER_MAP),
        (
            "envoy.config.core.v3.HeaderMap",
            "headers",
            HEADER_MAP_HEADERS,
        ),
        (header, "key", HEADER_KEY),
        (header, "value", HEADER_VALUE),
        (header, "raw_value", HEADER_RAW_VALUE),
    ] {
        assert_eq!(field_number(message, field), number, "{message}.{field}");
    }
}
