use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::ratelimit::LimitStatus;
use crate::time::Timestamp;

fn headers(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_key_comes_from_the_first_configured_header_that_holds_one() {
    let gateway = Gateway::default();
    let key = |pairs: &[(&str, &str)]| {
        let h = headers(pairs);
        gateway
            .key(|name| h.get(name).map(|v| Some(v.as_str())))
            .expect("one key")
            .to_owned()
    };
    assert_eq!(key(&[("authorization", "Bearer kw_a")]), "kw_a");
    assert_eq!(key(&[("authorization", "bearer   kw_a ")]), "kw_a");
    assert_eq!(key(&[("authorization", "\tBearer\tkw_a\t")]), "kw_a");
    // HTTP's whitespace is spaces and tabs: other Unicode spaces stay part of the key, which
    // then reads as malformed, never as another key.
    assert_eq!(key(&[("authorization", "Bearer kw_a\u{a0}")]), "kw_a\u{a0}");
    assert_eq!(key(&[("x-api-key", " kw_b ")]), "kw_b");
    // A credential of another scheme is not a key; the next header is read.
    assert_eq!(
        key(&[
            ("authorization", "Basic dXNlcjpwdw=="),
            ("x-api-key", "kw_b")
        ]),
        "kw_b"
    );
    assert_eq!(key(&[("authorization", "Bearer")]), "");
    assert_eq!(key(&[]), "");
    assert_eq!(
        gateway.headers_to_remove(),
        &["authorization".to_owned(), "x-api-key".to_owned()]
    );
    let keep = Gateway::new(&GatewayConfig {
        strip_key_headers: false,
        ..GatewayConfig::default()
    })
    .unwrap();
    assert!(keep.headers_to_remove().is_empty());
}

#[test]
fn two_different_keys_or_an_unreadable_key_header_are_ambiguous() {
    let gateway = Gateway::default();
    let key = |pairs: &[(&'static str, Option<&'static str>)]| {
        gateway.key(|name| {
            pairs
                .iter()
                .filter(move |(n, _)| *n == name)
                .map(|(_, v)| *v)
                .collect::<Vec<_>>()
        })
    };
    let a = Some("Bearer kw_a");
    assert_eq!(
        key(&[("authorization", a), ("authorization", Some("Bearer kw_b"))]),
        Err(AmbiguousKey)
    );
    assert_eq!(
        key(&[("authorization", a), ("x-api-key", Some("kw_b"))]),
        Err(AmbiguousKey)
    );
    assert_eq!(
        key(&[("x-api-key", Some("kw_a")), ("x-api-key", Some("kw_b"))]),
        Err(AmbiguousKey)
    );
    assert_eq!(
        key(&[("authorization", None), ("x-api-key", Some("kw_b"))]),
        Err(AmbiguousKey)
    );
    assert_eq!(
        key(&[("authorization", a), ("x-api-key", None)]),
        Err(AmbiguousKey)
    );
    // The same key twice says one thing.
    assert_eq!(
        key(&[("authorization", a), ("x-api-key", Some("kw_a"))]),
        Ok("kw_a")
    );
    // The bearer token of management calls: given twice or unreadable is ambiguous.
    assert_eq!(single_bearer([a].into_iter()), Ok(Some("kw_a")));
    assert_eq!(single_bearer([a, a].into_iter()), Err(AmbiguousKey));
    assert_eq!(single_bearer([None].into_iter()), Err(AmbiguousKey));
    assert_eq!(single_bearer(std::iter::empty()), Ok(None));
}

#[test]
fn bad_settings_name_the_setting() {
    for (config, setting) in [
        (
            GatewayConfig {
                key_headers: vec!["x api key".into()],
                ..GatewayConfig::default()
            },
            "gateway.key_headers",
        ),
        (
            GatewayConfig {
                key_headers: vec![],
                ..GatewayConfig::default()
            },
            "gateway.key_headers",
        ),
        (
            GatewayConfig {
                routes: vec![RouteConfig {
                    method: None,
                    path: "videos/*".into(),
                    scopes: vec![],
                }],
                ..GatewayConfig::default()
            },
            "gateway.routes[0]: path",
        ),
        (
            GatewayConfig {
                routes: vec![RouteConfig {
                    method: Some("GET".into()),
                    path: "/v1/*".into(),
                    scopes: vec!["Not A Scope".into()],
                }],
                ..GatewayConfig::default()
            },
            "gateway.routes[0]: scopes",
        ),
    ] {
        let error = Gateway::new(&config).expect_err(setting);
        assert!(error.starts_with(setting), "{error}");
    }
}

fn routed() -> Gateway {
    Gateway::new(&GatewayConfig {
        routes: vec![
            RouteConfig {
                method: Some("GET".into()),
                path: "/v1/videos/*".into(),
                scopes: vec!["videos:read".into()],
            },
            RouteConfig {
                method: None,
                path: "/v1/videos/*".into(),
                scopes: vec!["videos:write".into()],
            },
        ],
        ..GatewayConfig::default()
    })
    .unwrap()
}

fn scopes<'a>(query: &VerifyQuery<'a>) -> Vec<&'a str> {
    query.required_scopes.to_vec()
}

#[test]
fn scopes_come_from_the_gateway_else_from_the_first_matching_route() {
    let gateway = routed();
    let request = |method, target, scopes| ClientRequest {
        method,
        target,
        scopes,
        ..ClientRequest::default()
    };
    let q = gateway
        .query(&request("GET", "/v1/videos/1?x=1", None))
        .unwrap();
    assert_eq!(scopes(&q), ["videos:read"]);
    assert_eq!(
        q.context.path, "/v1/videos/1",
        "the query string is dropped"
    );
    let q = gateway
        .query(&request("POST", "/v1/videos/1", None))
        .unwrap();
    assert_eq!(scopes(&q), ["videos:write"]);
    // Routes match the normal form: dot segments cannot dodge a route.
    let q = gateway
        .query(&request("POST", "/v1/x/../videos/1", None))
        .unwrap();
    assert_eq!(scopes(&q), ["videos:write"]);
    let q = gateway.query(&request("GET", "/v1/other", None)).unwrap();
    assert!(q.required_scopes.is_empty());
    // Explicit scopes win over the table; a list is trimmed and de-duplicated.
    let q = gateway
        .query(&request("GET", "/v1/videos/1", Some("a:b, c:d,a:b")))
        .unwrap();
    assert_eq!(scopes(&q), ["a:b", "c:d"]);
    // A path with no normal form fails closed when routes decide the scopes.
    let err = gateway
        .query(&request("GET", "/v1/videos%2f1", None))
        .unwrap_err();
    assert_eq!(err.field, "path");
}

#[test]
fn bad_requests_are_rejected_naming_the_field() {
    let gateway = Gateway::default();
    let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
    let many = vec!["a:b"; MAX_SCOPES + 1].join(",");
    for (request, field) in [
        (
            ClientRequest {
                target: &long,
                ..ClientRequest::default()
            },
            "path",
        ),
        (
            ClientRequest {
                referrer: &long,
                ..ClientRequest::default()
            },
            "referer",
        ),
        (
            ClientRequest {
                method: "GET /x",
                ..ClientRequest::default()
            },
            "method",
        ),
        (
            ClientRequest {
                scopes: Some("Bad Scope"),
                ..ClientRequest::default()
            },
            "scopes",
        ),
        (
            ClientRequest {
                scopes: Some(&many),
                ..ClientRequest::default()
            },
            "scopes",
        ),
        (
            ClientRequest {
                environment: Some("prod"),
                ..ClientRequest::default()
            },
            "environment",
        ),
    ] {
        let rejection = gateway.query(&request).expect_err(field);
        assert_eq!(rejection.field, field);
        let answer = Answer::rejected(&rejection);
        assert_eq!(answer.status, 400);
        assert!(!answer.allowed());
    }
}

#[test]
fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
    let client = |peer, xff, real| client_ip(ip(peer), xff, real, &trusted);
    // An untrusted peer's headers are ignored.
    assert_eq!(
        client("203.0.113.9", Some("1.2.3.4"), Some("5.6.7.8")),
        Some(ip("203.0.113.9"))
    );
    // From a trusted proxy: the rightmost untrusted hop, not a spoofed leftmost one.
    assert_eq!(
        client("10.0.0.1", Some("6.6.6.6, 198.51.100.7, 10.0.0.2"), None),
        Some(ip("198.51.100.7"))
    );
    assert_eq!(
        client("10.0.0.1", None, Some("198.51.100.7")),
        Some(ip("198.51.100.7"))
    );
    assert_eq!(client("10.0.0.1", None, None), Some(ip("10.0.0.1")));
    // Unreadable or absurd forwarding fails closed (no client address).
    assert_eq!(client("10.0.0.1", Some("1.2.3.4, nonsense"), None), None);
    let hops = vec!["10.0.0.3"; 40].join(",");
    assert_eq!(client("10.0.0.1", Some(&hops), None), None);
    // IPv4-mapped IPv6 peers are their IPv4 address.
    assert_eq!(
        client("::ffff:10.0.0.1", None, Some("198.51.100.7")),
        Some(ip("198.51.100.7"))
    );
}

#[test]
fn denials_carry_the_json_body_challenge_and_retry_after() {
    // A decision made long ago: the reset is counted from when it was made, not from the clock.
    let now = Timestamp::from_parts(1_000_000, 0).unwrap();
    let rate_limit = Some(LimitStatus {
        limit: 100,
        remaining: 0,
        reset_at: now.saturating_add(Duration::from_millis(2_500)),
    });
    let limited = Decision {
        code: Code::RateLimited,
        missing_scopes: vec![],
        rate_limit,
        retry_after: Some(Duration::from_millis(2_500)),
        credits: None,
        key: None,
        decided_at: now,
    };
    let answer = Answer::from_decision(limited);
    assert_eq!(answer.status, 429);
    assert_eq!(answer.challenge(), [("retry-after", "3".to_owned())]);
    assert_eq!(answer.retry_after(), Some(3));
    assert_eq!(
        answer.rate_limit().unwrap().headers()[..],
        [
            ("ratelimit-limit", &b"100"[..]),
            ("ratelimit-remaining", b"0"),
            ("ratelimit-reset", b"3"),
        ]
    );
    assert_eq!(answer.identity(), None, "no key was found");
    let body: serde_json::Value = serde_json::from_str(answer.body().unwrap()).unwrap();
    assert_eq!(body["code"], "RATE_LIMITED");
    assert_eq!(body["message"], Code::RateLimited.message());

    // Spent credits: 429, the credits header, no retry-after without a refill.
    let spent = Answer::from_decision(Decision {
        code: Code::UsageExceeded,
        missing_scopes: vec![],
        rate_limit: None,
        retry_after: None,
        credits: Some(crate::ratelimit::CreditStatus {
            remaining: 0,
            refill_at: None,
        }),
        key: None,
        decided_at: now,
    });
    assert_eq!(spent.status, 429);
    assert_eq!(spent.retry_after(), None);
    assert_eq!(
        spent.rate_limit().unwrap().headers()[..],
        [("x-keyward-credits-remaining", &b"0"[..])]
    );

    let revoked = Decision {
        code: Code::Revoked,
        missing_scopes: vec![],
        rate_limit: None,
        retry_after: None,
        credits: None,
        key: None,
        decided_at: now,
    };
    let answer = Answer::from_decision(revoked);
    assert_eq!(answer.status, 401);
    assert_eq!(answer.challenge().len(), 1);
    assert_eq!(answer.challenge()[0].0, "www-authenticate");
    assert!(
        answer.challenge()[0]
            .1
            .starts_with("Bearer error=\"invalid_token\"")
    );
}

#[test]
fn decimals_are_written_in_full() {
    for n in [0, 7, 10, 99, 100, 4_000_000_000, u64::MAX] {
        assert_eq!(Decimal::new(n).as_bytes(), n.to_string().as_bytes());
    }
}

#[test]
fn long_scope_lists_are_deduplicated_too() {
    let names: Vec<String> = (0..30).map(|i| format!("r{i}:read")).collect();
    let twice = [names.clone(), names.clone()].concat().join(",");
    let parsed = parse_scope_list(&twice).unwrap();
    let parsed = parsed.to_vec();
    assert_eq!(parsed, names, "first occurrence kept, in order");
    let short = parse_scope_list("a:b a:b,c:d").unwrap();
    assert_eq!(short.len(), 2);
}

#[test]
fn numbers_are_written_in_decimal() {
    let mut numbers = vec![
        0,
        1,
        9,
        10,
        11,
        99,
        100,
        101,
        999,
        1000,
        4_000_000_000,
        u64::MAX,
    ];
    numbers.extend((0..20).map(|p| 10u64.pow(p)));
    numbers.extend((1..20).map(|p| 10u64.pow(p) - 1));
    for n in numbers {
        assert_eq!(Decimal::new(n).as_bytes(), n.to_string().as_bytes(), "{n}");
    }
}

#[test]
fn scope_lists_split_on_commas_and_spaces_and_trim_ascii_whitespace() {
    let names = |text| parse_scope_list(text).map(|s| s.to_vec());
    assert_eq!(names(""), Ok(vec![]));
    assert_eq!(names(" , ,"), Ok(vec![]));
    assert_eq!(names("a:b"), Ok(vec!["a:b"]));
    assert_eq!(names(",a:b,,c:d ,\te:f\t"), Ok(vec!["a:b", "c:d", "e:f"]));
    assert!(
        names("a:b\tc:d").is_err(),
        "a tab inside a piece is the name's"
    );
    // Non-ASCII (whitespace or not) is part of a name, which refuses it; never split mid-char.
    assert!(names("a:b,\u{a0}c:d").is_err());
    assert!(names("é:b").is_err());
}

proptest::proptest! {
    /// The token is what follows the scheme `Bearer` (any case) and HTTP whitespace, trimmed:
    /// the same as splitting at the first space or tab and comparing the scheme, for any text
    /// (multi-byte characters where the scheme would end included).
    #[test]
    fn bearer_tokens_are_read_after_the_scheme(
        value in "[ \t]{0,2}(bearer|BeArEr|beare|bearerx|bear\u{20ac}|bear\u{e9}|basic|)[ \t\u{a0}]{0,2}[a-z_ \t\u{e9}]{0,6}"
    ) {
        fn by_split(value: &str) -> Option<&str> {
            let value = value.trim_ascii();
            let gap = value.bytes().position(|b| b == b' ' || b == b'\t')?;
            let (scheme, token) = value.split_at(gap);
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_ascii())
        }
        proptest::prop_assert_eq!(bearer_token(&value), by_split(&value));
    }
}

#[test]
fn bearer_tokens_need_the_scheme_and_a_gap() {
    assert_eq!(bearer_token("Bearer kw_a"), Some("kw_a"));
    assert_eq!(bearer_token("BEARER\t kw_a \t"), Some("kw_a"));
    assert_eq!(bearer_token(" bearer  a b "), Some("a b"));
    assert_eq!(bearer_token("Bearer "), None);
    assert_eq!(bearer_token("Bearerkw_a"), None);
    assert_eq!(bearer_token("Bearer\u{a0}kw_a"), None);
    assert_eq!(bearer_token("Bear\u{20ac} kw_a"), None);
    assert_eq!(bearer_token("Basic dXNlcjpwdw=="), None);
    assert_eq!(bearer_token(""), None);
}
