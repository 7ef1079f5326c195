//! The written `VerifyResponse` against prost's encoding of the message the adapter built before
//! (the oracle below is that code, kept as it was).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;

use super::*;
use crate::grpc::convert::{duration, timestamp};
use crate::model::{KeyState, test_key};
use crate::ratelimit::LimitStatus;

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
    }
}

fn written(decision: &Decision, basic: bool) -> Vec<u8> {
    let output = VerifyOutput::new(decision.clone(), basic);
    let mut buf = Vec::new();
    output.encode(&mut buf);
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
            for (rate_limit, retry_after) in [
                (None, None),
                (
                    Some(LimitStatus {
                        limit: 100,
                        remaining: 0,
                        reset_at: now,
                    }),
                    Some(Duration::from_millis(2_500)),
                ),
                (
                    Some(LimitStatus {
                        limit: u32::MAX,
                        remaining: 7,
                        reset_at: Timestamp::from_parts(0, 0).unwrap(),
                    }),
                    Some(Duration::ZERO),
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
                    key: key.clone(),
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
