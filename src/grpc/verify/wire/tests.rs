//! The trimmed request against prost's decoding of the same bytes into the generated type; the
//! written `VerifyResponse` against prost's encoding of the generated message built from the
//! same decision (`prost_response`, the oracle).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use prost::Message;

use super::*;
use crate::cache::KeyState;
use crate::grpc::convert::{duration, timestamp};
use crate::grpc::protobuf::arbitrary::{self, Kind};
use crate::model::test_key;
use crate::ratelimit::{CreditStatus, LimitStatus};

// keyward.v1 field numbers of the request (proto/keyward/v1/verify.proto), for the generated
// bodies; `field_numbers_match_the_descriptors` checks them.
/// `VerifyRequest`.
const REQUEST_KEY: u32 = 1;
const REQUEST_REQUIRED_SCOPES: u32 = 2;
const REQUEST_CONTEXT: u32 = 3;
const REQUEST_ENVIRONMENT: u32 = 4;
const REQUEST_COST: u32 = 5;
const REQUEST_VIEW: u32 = 6;
/// `RequestContext`.
const CONTEXT_METHOD: u32 = 1;
const CONTEXT_PATH: u32 = 2;
const CONTEXT_CLIENT_IP: u32 = 3;
const CONTEXT_REFERRER: u32 = 4;

/// Reads `body` and checks every field against what prost decodes from it.
fn assert_reads_as_prost(body: &[u8]) {
    let expected = proto::VerifyRequest::decode(body).expect("prost decodes it");
    let input = VerifyInput::read(Bytes::copy_from_slice(body)).expect("read");
    assert_eq!(input.key(), expected.key);
    let scopes: Vec<&str> = expected
        .required_scopes
        .iter()
        .map(String::as_str)
        .collect();
    // Kept: one more than a request may name, so a longer list is still refused.
    let kept = &scopes[..scopes.len().min(MAX_SCOPES + 1)];
    assert_eq!(input.required_scopes().as_slice(), kept);
    match (input.context(), &expected.context) {
        (None, None) => {}
        (Some(got), Some(want)) => {
            assert_eq!(got.method, want.method);
            assert_eq!(got.path, want.path);
            assert_eq!(got.client_ip, want.client_ip);
            assert_eq!(got.referrer, want.referrer);
        }
        (got, want) => panic!("context: read {got:?}, prost {want:?}"),
    }
    assert_eq!(input.environment(), expected.environment);
    assert_eq!(input.cost(), expected.cost);
    assert_eq!(input.view(), expected.view);
}

/// `VerifyRequest` (proto/keyward/v1/verify.proto), every field of which the reader reads.
const REQUEST_SHAPE: &[(u32, Kind)] = &[
    (REQUEST_KEY, Kind::Str),
    (REQUEST_REQUIRED_SCOPES, Kind::Str),
    (REQUEST_CONTEXT, Kind::Message(CONTEXT_SHAPE)),
    (REQUEST_ENVIRONMENT, Kind::Varint),
    (REQUEST_COST, Kind::Varint),
    (REQUEST_VIEW, Kind::Varint),
];
const CONTEXT_SHAPE: &[(u32, Kind)] = &[
    (CONTEXT_METHOD, Kind::Str),
    (CONTEXT_PATH, Kind::Str),
    (CONTEXT_CLIENT_IP, Kind::Str),
    (CONTEXT_REFERRER, Kind::Str),
];

/// The reader accepts exactly what prost accepts, and reads what prost decodes.
fn assert_agrees_with_prost(body: &[u8]) -> Result<(), TestCaseError> {
    let prost = proto::VerifyRequest::decode(body);
    let read = VerifyInput::read(Bytes::copy_from_slice(body));
    prop_assert_eq!(
        prost.is_ok(),
        read.is_ok(),
        "prost {:?}, reader {:?}, body {:02x?}",
        prost.as_ref().err(),
        read.as_ref().err(),
        body
    );
    if prost.is_ok() {
        assert_reads_as_prost(body);
    }
    Ok(())
}

fn arb_request() -> impl Strategy<Value = proto::VerifyRequest> {
    let context = (".{0,40}", ".{0,150}", "[0-9a-f.:]{0,45}", ".{0,150}").prop_map(
        |(method, path, client_ip, referrer)| proto::RequestContext {
            method,
            path,
            client_ip,
            referrer,
        },
    );
    (
        ".{0,60}",
        proptest::collection::vec(".{0,150}", 0..6),
        proptest::option::of(context),
        (any::<i32>(), any::<u32>(), any::<i32>()),
    )
        .prop_map(
            |(key, required_scopes, context, (environment, cost, view))| proto::VerifyRequest {
                key,
                required_scopes,
                context,
                environment,
                cost,
                view,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Messages with repeated, shadowed and invalid-UTF-8 fields, unknown fields of every wire
    /// type, non-minimal varints, wrong wire types and cut bodies: both directions at once.
    #[test]
    fn accepts_exactly_what_prost_accepts(seed in any::<u64>()) {
        assert_agrees_with_prost(&arbitrary::message(REQUEST_SHAPE, seed))?;
    }

    /// Valid requests with a few bytes changed.
    #[test]
    fn mutated_requests_are_read_as_prost_reads_them(
        request in arb_request(),
        seed in any::<u64>(),
    ) {
        assert_agrees_with_prost(&arbitrary::mutated(request.encode_to_vec(), seed))?;
    }

    #[test]
    fn reads_what_prost_decodes(first in arb_request(), second in arb_request()) {
        assert_reads_as_prost(&first.encode_to_vec());
        // Two messages one after the other merge: later scalars win, lists and the context
        // message merge.
        let both = [first.encode_to_vec(), second.encode_to_vec()].concat();
        assert_reads_as_prost(&both);
    }

    #[test]
    fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(input) = VerifyInput::read(Bytes::from(body.clone())) {
            let _ = (input.key(), input.required_scopes(), input.context());
            // Whatever prost reads whole, the reader reads the same.
            if proto::VerifyRequest::decode(&body[..]).is_ok() {
                assert_reads_as_prost(&body);
            }
        }
    }
}

#[test]
fn scope_lists_past_the_bound_are_cut_one_past_it() {
    let request = proto::VerifyRequest {
        required_scopes: (0..1000).map(|i| format!("s{i}:read")).collect(),
        ..Default::default()
    };
    let input = VerifyInput::read(request.encode_to_vec().into()).unwrap();
    assert_eq!(input.required_scopes().len(), MAX_SCOPES + 1);
}

#[test]
fn strings_that_are_not_utf8_are_refused_naming_the_field() {
    // key = 0xff, then a context whose path is 0xfe.
    const BODY: [u8; 8] = [0x0a, 1, 0xff, 0x1a, 3, 0x12, 1, 0xfe];
    let error = VerifyInput::read(Bytes::from_static(&BODY)).unwrap_err();
    assert!(error.0.contains("VerifyRequest.key"), "{error}");
    // Every occurrence is checked: a key that is not UTF-8 shadowed by a valid one is still
    // refused, as prost refuses it.
    const SHADOWED: [u8; 6] = [0x0a, 1, 0xff, 0x0a, 1, b'k'];
    assert!(proto::VerifyRequest::decode(&SHADOWED[..]).is_err());
    let error = VerifyInput::read(Bytes::from_static(&SHADOWED)).unwrap_err();
    assert!(error.0.contains("VerifyRequest.key"), "{error}");
    // context.path = 0xfe, then a valid one.
    const PATH: [u8; 10] = [0x1a, 3, 0x12, 1, 0xfe, 0x1a, 3, 0x12, 1, b'/'];
    let error = VerifyInput::read(Bytes::from_static(&PATH)).unwrap_err();
    assert!(error.0.contains("RequestContext.path"), "{error}");
    let status = tonic::Status::from(error);
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

#[test]
fn malformed_bodies_are_refused() {
    let whole = proto::VerifyRequest {
        key: "kw_live_x".into(),
        required_scopes: vec!["videos:read".into()],
        cost: 3,
        ..Default::default()
    }
    .encode_to_vec();
    for cut in 1..whole.len() {
        if proto::VerifyRequest::decode(&whole[..cut]).is_err() {
            assert!(VerifyInput::read(Bytes::copy_from_slice(&whole[..cut])).is_err());
        }
    }
    // The key (a string) sent as an integer; the cost (an integer) sent as a string.
    assert!(VerifyInput::read(Bytes::from_static(&[0x08, 1])).is_err());
    assert!(VerifyInput::read(Bytes::from_static(&[0x2a, 0])).is_err());
}

#[test]
fn debug_never_shows_the_key() {
    let request = proto::VerifyRequest {
        key: "kw_live_secretsecret".into(),
        ..Default::default()
    };
    let input = VerifyInput::read(request.encode_to_vec().into()).unwrap();
    assert!(!format!("{input:?}").contains("secret"));
    let trimmed = VerifyRequest::decode(request.encode_to_vec().as_slice()).unwrap();
    assert!(!format!("{trimmed:?} {trimmed:#?}").contains("secret"));
    assert!(format!("{trimmed:?}").contains("key_bytes: 20"));
}

/// What a gateway learns of the key: identity, and (full view) grant, metadata and expiry.
fn key_info(key: &crate::model::CachedKey, basic: bool) -> proto::KeyInfo {
    let identity = proto::KeyInfo {
        key_id: key.id().to_owned(),
        account_id: key.account_id().to_owned(),
        environment: environment(key.environment()).into(),
        ..Default::default()
    };
    if basic {
        return identity;
    }
    proto::KeyInfo {
        name: key.name().to_owned(),
        scopes: key.scopes().map(str::to_owned).collect(),
        grant_all: key.grant_all(),
        meta: key
            .meta()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        expires_at: key.expires_at().map(timestamp),
        ..identity
    }
}

fn prost_response(decision: Decision, basic: bool) -> proto::VerifyResponse {
    proto::VerifyResponse {
        valid: decision.code == Code::Valid,
        code: code(decision.code).into(),
        http_status: decision.code.http_status(),
        message: decision.code.message().to_owned(),
        key: decision.key.as_deref().map(|k| key_info(&k.key, basic)),
        missing_scopes: decision.missing_scopes,
        rate_limit: decision.rate_limit.map(|s| proto::RateLimitStatus {
            limit: s.limit,
            remaining: s.remaining,
            reset_at: Some(timestamp(s.reset_at)),
        }),
        retry_after: decision.retry_after.map(duration),
        credits: decision.credits.map(|c| proto::CreditsStatus {
            remaining: c.remaining,
            refill_at: c.refill_at.map(timestamp),
        }),
    }
}

fn written(decision: &Decision, basic: bool) -> Vec<u8> {
    let output = VerifyOutput::new(decision.clone(), basic);
    let mut buf = Vec::new();
    output.write(&mut buf);
    buf
}

fn keys() -> Vec<Option<Arc<KeyState>>> {
    let plain = test_key();
    let mut full = test_key();
    full.scopes = vec!["videos:read".into(), "videos:write".into(), String::new()];
    full.grant_all = true;
    full.meta = BTreeMap::from([("plan".into(), "pro".into())]);
    full.expires_at = Some(Timestamp::from_parts(1_900_000_000, 5_000).unwrap());
    let mut many = full.clone();
    many.meta = BTreeMap::from([
        ("a".into(), "1".into()),
        ("b".into(), String::new()),
        (String::new(), "empty key".into()),
        ("long".into(), "x".repeat(300)),
    ]);
    many.name = String::new();
    many.environment = crate::key::Environment::Test;
    many.scopes = vec![];
    let mut old = test_key();
    old.expires_at = Some(Timestamp::from_parts(-62_000_000_000, 0).unwrap());
    [plain, full, many, old]
        .iter()
        .map(|k| Some(Arc::new(KeyState::new(k, false))))
        .chain([None])
        .collect()
}

#[test]
fn writes_what_prost_encodes() {
    let now = Timestamp::from_parts(1_800_000_000, 123_456_000).unwrap();
    for key in keys() {
        for code in Code::ALL {
            for (rate_limit, retry_after, credits) in [
                (None, None, None),
                (
                    None,
                    None,
                    Some(CreditStatus {
                        remaining: 0,
                        refill_at: None,
                    }),
                ),
                (
                    Some(LimitStatus {
                        limit: 100,
                        remaining: 0,
                        reset_at: now,
                    }),
                    Some(Duration::from_millis(2_500)),
                    Some(CreditStatus {
                        remaining: u64::MAX,
                        refill_at: Some(now),
                    }),
                ),
                (
                    Some(LimitStatus {
                        limit: u32::MAX,
                        remaining: 7,
                        reset_at: Timestamp::from_parts(0, 0).unwrap(),
                    }),
                    Some(Duration::ZERO),
                    None,
                ),
            ] {
                let decision = Decision {
                    code,
                    missing_scopes: if code == Code::InsufficientScope {
                        vec!["videos:write".into(), String::new()]
                    } else {
                        Vec::new()
                    },
                    rate_limit,
                    retry_after,
                    credits,
                    key: key.clone(),
                    decided_at: Timestamp::from_parts(0, 0).unwrap(),
                };
                for basic in [false, true] {
                    let expected = prost_response(decision.clone(), basic);
                    let bytes = written(&decision, basic);
                    let decoded =
                        proto::VerifyResponse::decode(bytes.as_slice()).expect("a VerifyResponse");
                    assert_eq!(decoded, expected, "{code:?} basic={basic}");
                    // Byte for byte too, where prost's order is defined (a HashMap's is not).
                    if expected.key.as_ref().is_none_or(|k| k.meta.len() <= 1) {
                        assert_eq!(bytes, expected.encode_to_vec(), "{code:?} basic={basic}");
                    }
                }
            }
        }
    }
}

/// The generated messages are a mix: enough that prost accepts for the readings to be
/// compared, enough that it refuses for the refusals to be.
#[test]
fn the_differential_messages_are_both_valid_and_invalid() {
    let accepted = (0..2000)
        .filter(|seed| {
            proto::VerifyRequest::decode(arbitrary::message(REQUEST_SHAPE, *seed).as_slice())
                .is_ok()
        })
        .count();
    assert!((500..=1800).contains(&accepted), "{accepted} of 2000 valid");
}

#[test]
fn field_numbers_match_the_descriptors() {
    use crate::grpc::protobuf::field_number;
    let request = "keyward.v1.VerifyRequest";
    let context = "keyward.v1.RequestContext";
    for (message, field, number) in [
        (request, "key", REQUEST_KEY),
        (request, "required_scopes", REQUEST_REQUIRED_SCOPES),
        (request, "context", REQUEST_CONTEXT),
        (request, "environment", REQUEST_ENVIRONMENT),
        (request, "cost", REQUEST_COST),
        (request, "view", REQUEST_VIEW),
        (context, "method", CONTEXT_METHOD),
        (context, "path", CONTEXT_PATH),
        (context, "client_ip", CONTEXT_CLIENT_IP),
        (context, "referrer", CONTEXT_REFERRER),
    ] {
        assert_eq!(field_number(message, field), number, "{message}.{field}");
    }
}

/// The trimmed messages carry every field of the generated ones under the same numbers: a
/// request with every field set decodes into them and encodes back to the same bytes.
#[test]
fn the_trimmed_request_has_the_generated_ones_fields_and_numbers() {
    let full = proto::VerifyRequest {
        key: "kw_live_x".into(),
        required_scopes: vec!["videos:read".into(), "videos:write".into()],
        context: Some(proto::RequestContext {
            method: "GET".into(),
            path: "/videos".into(),
            client_ip: "203.0.113.7".into(),
            referrer: "https://example.com/".into(),
        }),
        environment: 2,
        cost: 7,
        view: 1,
    }
    .encode_to_vec();
    let trimmed = VerifyRequest::decode(full.as_slice()).unwrap();
    assert_eq!(trimmed.encode_to_vec(), full);
}
