//! The verify decision: a pure function of (key record, request, now). No I/O, so it is tested
//! here and benchmarked on its own. Checks run in the SPEC's order; the first
//! that applies wins.

use crate::key::Environment;
use crate::model::KeyState;
use crate::time::Timestamp;

/// The outcome of a verification, in the order the checks are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Every check passed.
    Valid,
    /// No key was presented.
    Missing,
    /// Not the key format, or the checksum fails.
    Malformed,
    /// No such key.
    NotFound,
    /// The key was revoked.
    Revoked,
    /// The key is past its expiry.
    Expired,
    /// The key's environment is not the expected one.
    WrongEnvironment,
    /// The key's account is disabled.
    AccountDisabled,
    /// The client IP is outside the allowed CIDRs.
    IpNotAllowed,
    /// The referrer matches no allowed pattern.
    ReferrerNotAllowed,
    /// The method is not allowed.
    MethodNotAllowed,
    /// The path matches no allowed pattern.
    PathNotAllowed,
    /// A required scope is not held.
    InsufficientScope,
    /// A rate limit is exhausted.
    RateLimited,
}

impl Code {
    /// Every code, in discriminant order (`code as usize` indexes this).
    pub const ALL: [Code; 14] = [
        Code::Valid,
        Code::Missing,
        Code::Malformed,
        Code::NotFound,
        Code::Revoked,
        Code::Expired,
        Code::WrongEnvironment,
        Code::AccountDisabled,
        Code::IpNotAllowed,
        Code::ReferrerNotAllowed,
        Code::MethodNotAllowed,
        Code::PathNotAllowed,
        Code::InsufficientScope,
        Code::RateLimited,
    ];

    /// What the gateway should answer.
    pub fn http_status(self) -> u32 {
        match self {
            Code::Valid => 200,
            Code::Missing
            | Code::Malformed
            | Code::NotFound
            | Code::Revoked
            | Code::Expired
            | Code::WrongEnvironment => 401,
            Code::AccountDisabled
            | Code::IpNotAllowed
            | Code::ReferrerNotAllowed
            | Code::MethodNotAllowed
            | Code::PathNotAllowed
            | Code::InsufficientScope => 403,
            Code::RateLimited => 429,
        }
    }

    /// A reason safe to show the end client.
    pub fn message(self) -> &'static str {
        match self {
            Code::Valid => "the key is valid",
            Code::Missing => "no API key was given",
            Code::Malformed => "the API key is malformed",
            Code::NotFound => "the API key does not exist",
            Code::Revoked => "the API key has been revoked",
            Code::Expired => "the API key has expired",
            Code::WrongEnvironment => "the API key belongs to another environment",
            Code::AccountDisabled => "the API key's account is disabled",
            Code::IpNotAllowed => "the client IP is not allowed for this API key",
            Code::ReferrerNotAllowed => "the referrer is not allowed for this API key",
            Code::MethodNotAllowed => "the HTTP method is not allowed for this API key",
            Code::PathNotAllowed => "the path is not allowed for this API key",
            Code::InsufficientScope => "the API key lacks a required scope",
            Code::RateLimited => "the API key's rate limit is exhausted",
        }
    }

    /// The code's name, for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Valid => "VALID",
            Code::Missing => "MISSING",
            Code::Malformed => "MALFORMED",
            Code::NotFound => "NOT_FOUND",
            Code::Revoked => "REVOKED",
            Code::Expired => "EXPIRED",
            Code::WrongEnvironment => "WRONG_ENVIRONMENT",
            Code::AccountDisabled => "ACCOUNT_DISABLED",
            Code::IpNotAllowed => "IP_NOT_ALLOWED",
            Code::ReferrerNotAllowed => "REFERRER_NOT_ALLOWED",
            Code::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Code::PathNotAllowed => "PATH_NOT_ALLOWED",
            Code::InsufficientScope => "INSUFFICIENT_SCOPE",
            Code::RateLimited => "RATE_LIMITED",
        }
    }
}

/// The end client's HTTP request, as the gateway describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Client IP address.
    pub client_ip: String,
    /// Referer header.
    pub referrer: String,
}

/// What a verify request asks, besides the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyQuery {
    /// Scopes the request needs.
    pub required_scopes: Vec<String>,
    /// The HTTP request.
    pub context: RequestContext,
    /// The environment the gateway serves; `None` accepts either.
    pub environment: Option<Environment>,
    /// Rate-limit units (at least 1).
    pub cost: u32,
}

/// The decision on a found key, before rate limits are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The outcome.
    pub code: Code,
    /// Required scopes the key does not hold.
    pub missing_scopes: Vec<String>,
}

impl Decision {
    fn deny(code: Code) -> Self {
        Decision {
            code,
            missing_scopes: Vec::new(),
        }
    }
}

/// Decides on a found key. `Valid` here means "every check but the rate limits passed".
pub fn decide(state: &KeyState, query: &VerifyQuery, now: Timestamp) -> Decision {
    let key = &state.key;
    if key.is_revoked() {
        return Decision::deny(Code::Revoked);
    }
    if key.is_expired(now) {
        return Decision::deny(Code::Expired);
    }
    if query.environment.is_some_and(|env| env != key.environment) {
        return Decision::deny(Code::WrongEnvironment);
    }
    if state.account_disabled {
        return Decision::deny(Code::AccountDisabled);
    }
    let r = &key.restrictions;
    let ctx = &query.context;
    if !r.allows_ip(&ctx.client_ip) {
        return Decision::deny(Code::IpNotAllowed);
    }
    if !r.allows_referrer(&ctx.referrer) {
        return Decision::deny(Code::ReferrerNotAllowed);
    }
    if !r.allows_method(&ctx.method) {
        return Decision::deny(Code::MethodNotAllowed);
    }
    if !r.allows_path(&ctx.path) {
        return Decision::deny(Code::PathNotAllowed);
    }
    let missing_scopes: Vec<String> = query
        .required_scopes
        .iter()
        .filter(|s| !key.holds(s))
        .cloned()
        .collect();
    if !missing_scopes.is_empty() {
        return Decision {
            code: Code::InsufficientScope,
            missing_scopes,
        };
    }
    Decision::deny(Code::Valid)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::key::KeyDigest;
    use crate::model::{ApiKey, Restrictions};
    use crate::restriction::{Method, Pattern, parse_cidr};

    fn state(key: ApiKey) -> KeyState {
        KeyState {
            digest: KeyDigest::of("k"),
            key,
            account_disabled: false,
        }
    }

    fn key() -> ApiKey {
        ApiKey {
            id: "key_1".into(),
            account_id: "acme".into(),
            name: "n".into(),
            prefix: "kw_live_abcdefgh".into(),
            environment: Environment::Live,
            scopes: vec!["videos:read".into(), "videos:write".into()],
            grant_all: false,
            restrictions: Restrictions::default(),
            rate_limit: None,
            meta: BTreeMap::new(),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
            previous_key_id: None,
            created_by: None,
            replaced_by: None,
        }
    }

    fn query(scopes: &[&str]) -> VerifyQuery {
        VerifyQuery {
            required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
            cost: 1,
            ..VerifyQuery::default()
        }
    }

    #[test]
    fn valid_when_scopes_are_held() {
        let d = decide(&state(key()), &query(&["videos:read"]), Timestamp(1));
        assert_eq!(d.code, Code::Valid);
        assert_eq!(
            decide(&state(key()), &query(&[]), Timestamp(1)).code,
            Code::Valid
        );
    }

    #[test]
    fn lists_every_missing_scope() {
        let d = decide(
            &state(key()),
            &query(&["videos:read", "members:email", "billing:write"]),
            Timestamp(1),
        );
        assert_eq!(d.code, Code::InsufficientScope);
        assert_eq!(d.missing_scopes, vec!["members:email", "billing:write"]);
    }

    #[test]
    fn grant_all_holds_any_scope() {
        let mut k = key();
        k.scopes.clear();
        k.grant_all = true;
        assert_eq!(
            decide(&state(k.clone()), &query(&["anything:new"]), Timestamp(1)).code,
            Code::Valid
        );
    }

    #[test]
    fn checks_run_in_spec_order() {
        let mut k = key();
        k.revoked_at = Some(Timestamp(1));
        k.expires_at = Some(Timestamp(1));
        let mut q = query(&["members:email"]);
        q.environment = Some(Environment::Test);
        assert_eq!(
            decide(&state(k.clone()), &q, Timestamp(5)).code,
            Code::Revoked
        );
        k.revoked_at = None;
        assert_eq!(
            decide(&state(k.clone()), &q, Timestamp(5)).code,
            Code::Expired
        );
        k.expires_at = Some(Timestamp(10));
        assert_eq!(
            decide(&state(k.clone()), &q, Timestamp(5)).code,
            Code::WrongEnvironment
        );
        q.environment = Some(Environment::Live);
        assert_eq!(
            decide(&state(k.clone()), &q, Timestamp(5)).code,
            Code::InsufficientScope
        );
        q.environment = None;
        assert_eq!(
            decide(&state(k.clone()), &q, Timestamp(5)).code,
            Code::InsufficientScope
        );
    }

    #[test]
    fn expiry_is_exclusive_of_the_instant() {
        let mut k = key();
        k.expires_at = Some(Timestamp(10));
        assert_eq!(
            decide(&state(k.clone()), &query(&[]), Timestamp(9)).code,
            Code::Valid
        );
        assert_eq!(
            decide(&state(k.clone()), &query(&[]), Timestamp(10)).code,
            Code::Expired
        );
    }

    #[test]
    fn restrictions_and_account_come_in_spec_order() {
        let mut k = key();
        k.restrictions = Restrictions {
            allowed_cidrs: vec![parse_cidr("10.0.0.0/8").unwrap()],
            allowed_referrers: vec![Pattern::parse("https://*.example.com/*").unwrap()],
            allowed_methods: vec![Method::parse("GET").unwrap()],
            allowed_paths: vec![Pattern::parse("/v1/videos/*").unwrap()],
        };
        let mut s = state(k);
        s.account_disabled = true;
        let mut q = query(&["members:email"]);
        let now = Timestamp(1);
        assert_eq!(decide(&s, &q, now).code, Code::AccountDisabled);
        s.account_disabled = false;
        assert_eq!(
            decide(&s, &q, now).code,
            Code::IpNotAllowed,
            "a missing IP denies"
        );
        q.context.client_ip = "10.1.2.3".into();
        assert_eq!(decide(&s, &q, now).code, Code::ReferrerNotAllowed);
        q.context.referrer = "https://app.example.com/".into();
        assert_eq!(decide(&s, &q, now).code, Code::MethodNotAllowed);
        q.context.method = "get".into();
        assert_eq!(decide(&s, &q, now).code, Code::PathNotAllowed);
        q.context.path = "/v1/videos/9".into();
        assert_eq!(decide(&s, &q, now).code, Code::InsufficientScope);
        q.required_scopes = vec!["videos:read".into()];
        assert_eq!(decide(&s, &q, now).code, Code::Valid);
        q.context.client_ip = "192.168.0.1".into();
        assert_eq!(decide(&s, &q, now).code, Code::IpNotAllowed);
    }

    #[test]
    fn all_is_in_discriminant_order() {
        for (i, code) in Code::ALL.iter().enumerate() {
            assert_eq!(*code as usize, i);
        }
    }

    #[test]
    fn http_statuses() {
        assert_eq!(Code::Valid.http_status(), 200);
        assert_eq!(Code::WrongEnvironment.http_status(), 401);
        assert_eq!(Code::InsufficientScope.http_status(), 403);
        assert_eq!(Code::AccountDisabled.http_status(), 403);
        assert_eq!(Code::RateLimited.http_status(), 429);
    }
}
