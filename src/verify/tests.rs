//! The decision's table: each code alone, every pair of codes (the earlier one wins), and the
//! details each answer carries.

use std::time::Duration;

use super::*;
use crate::model::test_key;
use crate::ratelimit::LimitStatus;
use crate::restriction::{Method, Pattern, parse_cidr};

fn scopes(names: &[&'static str]) -> RequiredScopes<'static> {
    names.iter().copied().collect()
}

/// A budget with room, or with its credits spent, or its rate limit exhausted; counts what
/// was taken.
#[derive(Debug, Default)]
struct Budget {
    spent: bool,
    exhausted: bool,
    taken: u32,
}

impl RateBudget for Budget {
    fn take(&mut self, _: &KeyState, _: &[&str], cost: u32, now: Timestamp) -> Outcome {
        if self.spent {
            return Outcome::UsageExceeded {
                credits: crate::ratelimit::CreditStatus {
                    remaining: 0,
                    refill_at: None,
                },
                retry_after: None,
            };
        }
        let status = LimitStatus {
            limit: 10,
            remaining: if self.exhausted { 0 } else { 10 - cost },
            reset_at: now,
        };
        if self.exhausted {
            return Outcome::Limited {
                status,
                retry_after: Duration::from_secs(30),
                scope: None,
            };
        }
        self.taken += cost;
        Outcome::Allowed(status)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Empty,
    Malformed,
    Unknown,
    Found,
}

/// A request that passes every check until conditions are added to it.
#[derive(Debug, Clone)]
struct Scenario {
    kind: Kind,
    text_environment: Environment,
    key: crate::model::ApiKey,
    account_disabled: bool,
    query: VerifyQuery<'static>,
    spent: bool,
    exhausted: bool,
}

const NOW: Timestamp = Timestamp::from_micros(1_000);

impl Scenario {
    fn passing() -> Self {
        let mut key = test_key();
        key.restrictions = crate::model::Restrictions {
            allowed_cidrs: vec![parse_cidr("10.0.0.0/8").unwrap()],
            allowed_referrers: vec![Pattern::parse("https://*.example.com/*").unwrap()],
            allowed_methods: vec![Method::parse("GET").unwrap()],
            allowed_paths: vec![Pattern::parse("/v1/videos/*").unwrap()],
        };
        Scenario {
            kind: Kind::Found,
            text_environment: Environment::Live,
            key,
            account_disabled: false,
            query: VerifyQuery {
                required_scopes: scopes(&["videos:read"]),
                context: RequestContext {
                    method: Method::parse("GET").ok(),
                    path: "/v1/videos/1",
                    client_ip: Some("10.1.2.3".parse().unwrap()),
                    referrer: "https://app.example.com/",
                },
                environment: Some(Environment::Live),
                cost: 1,
            },
            spent: false,
            exhausted: false,
        }
    }

    /// Makes the request fail the condition of `code` (and nothing else).
    fn fail(&mut self, code: Code, not_found_by_environment: bool) {
        match code {
            Code::Valid => {}
            Code::Missing => self.kind = Kind::Empty,
            Code::Malformed => self.kind = Kind::Malformed,
            Code::NotFound if not_found_by_environment => {
                self.text_environment = Environment::Test;
            }
            Code::NotFound => self.kind = Kind::Unknown,
            Code::Revoked => self.key.revoked_at = Some(Timestamp::from_micros(1)),
            Code::Expired => self.key.expires_at = Some(Timestamp::from_micros(500)),
            Code::WrongEnvironment => self.query.environment = Some(Environment::Test),
            Code::AccountDisabled => self.account_disabled = true,
            Code::IpNotAllowed => self.query.context.client_ip = Some("192.0.2.1".parse().unwrap()),
            Code::ReferrerNotAllowed => self.query.context.referrer = "https://evil.test/",
            Code::MethodNotAllowed => self.query.context.method = Method::parse("POST").ok(),
            Code::PathNotAllowed => self.query.context.path = "/v1/admin",
            Code::InsufficientScope => self
                .query
                .required_scopes
                .extend(scopes(&["billing:write"])),
            Code::UsageExceeded => self.spent = true,
            Code::RateLimited => self.exhausted = true,
        }
    }

    fn decide(&self) -> (Decision, Budget) {
        let mut budget = Budget {
            spent: self.spent,
            exhausted: self.exhausted,
            taken: 0,
        };
        let state = std::sync::Arc::new(KeyState::new(&self.key, self.account_disabled));
        let presented = match self.kind {
            Kind::Empty => Presented::Empty,
            Kind::Malformed => Presented::Malformed,
            Kind::Unknown => Presented::Unknown,
            Kind::Found => Presented::Found {
                state,
                environment: self.text_environment,
            },
        };
        (decide(presented, &self.query, NOW, &mut budget), budget)
    }
}

#[test]
fn each_condition_alone_gives_its_code() {
    for by_environment in [false, true] {
        for code in Code::ALL {
            let mut s = Scenario::passing();
            s.fail(code, by_environment);
            assert_eq!(s.decide().0.code, code, "{code:?}");
        }
    }
}

#[test]
fn of_two_failed_conditions_the_earlier_code_wins() {
    let codes = &Code::ALL[1..]; // every denial, in the order they are checked (docs/keys.md)
    for by_environment in [false, true] {
        for (i, &earlier) in codes.iter().enumerate() {
            for &later in &codes[i + 1..] {
                let mut s = Scenario::passing();
                // The later condition first, so the earlier one's presentation stands.
                s.fail(later, by_environment);
                s.fail(earlier, by_environment);
                let (decision, budget) = s.decide();
                assert_eq!(decision.code, earlier, "{earlier:?} before {later:?}");
                assert_eq!(budget.taken, 0, "a denial takes no units");
            }
        }
    }
}

#[test]
fn http_status_of_every_code() {
    let expected = [
        (Code::Valid, 200),
        (Code::Missing, 401),
        (Code::Malformed, 401),
        (Code::NotFound, 401),
        (Code::Revoked, 401),
        (Code::Expired, 401),
        (Code::WrongEnvironment, 401),
        (Code::AccountDisabled, 403),
        (Code::IpNotAllowed, 403),
        (Code::ReferrerNotAllowed, 403),
        (Code::MethodNotAllowed, 403),
        (Code::PathNotAllowed, 403),
        (Code::InsufficientScope, 403),
        (Code::UsageExceeded, 429),
        (Code::RateLimited, 429),
    ];
    assert_eq!(expected.len(), Code::ALL.len());
    for (code, status) in expected {
        assert_eq!(code.http_status(), status, "{code:?}");
    }
}

#[test]
fn all_is_in_discriminant_order() {
    for (i, code) in Code::ALL.iter().enumerate() {
        assert_eq!(*code as usize, i);
    }
}

#[test]
fn valid_takes_the_cost_and_reports_the_limit() {
    let mut s = Scenario::passing();
    s.query.cost = 0;
    let (decision, budget) = s.decide();
    assert_eq!(decision.code, Code::Valid);
    assert_eq!(budget.taken, 1, "a cost of 0 counts as 1");
    assert_eq!(decision.rate_limit.map(|r| r.remaining), Some(9));
    assert!(decision.found_key());
    s.query.cost = 3;
    assert_eq!(s.decide().1.taken, 3);
}

#[test]
fn rate_limited_says_when_to_retry() {
    let mut s = Scenario::passing();
    s.fail(Code::RateLimited, false);
    let (decision, _) = s.decide();
    assert_eq!(decision.retry_after, Some(Duration::from_secs(30)));
    assert_eq!(decision.rate_limit.map(|r| r.remaining), Some(0));
}

#[test]
fn spent_credits_say_so_without_a_retry_unless_a_refill_is_due() {
    let mut s = Scenario::passing();
    s.fail(Code::UsageExceeded, false);
    let (decision, budget) = s.decide();
    assert_eq!(decision.code, Code::UsageExceeded);
    assert_eq!(decision.code.http_status(), 429);
    assert_eq!(decision.retry_after, None);
    assert_eq!(decision.credits.map(|c| c.remaining), Some(0));
    assert_eq!(budget.taken, 0, "nothing taken from the rate limits");
    assert!(decision.found_key());
}

#[test]
fn lists_every_missing_scope() {
    let mut s = Scenario::passing();
    s.query.required_scopes = scopes(&["videos:read", "members:email", "billing:write"]);
    let decision = s.decide().0;
    assert_eq!(decision.code, Code::InsufficientScope);
    assert_eq!(
        decision.missing_scopes,
        vec!["members:email", "billing:write"]
    );
}

#[test]
fn grant_all_holds_any_scope_but_the_reserved_ones() {
    let mut s = Scenario::passing();
    s.key.scopes.clear();
    s.key.grant_all = true;
    s.query.required_scopes = scopes(&["anything:new"]);
    assert_eq!(s.decide().0.code, Code::Valid);
    s.query.required_scopes = scopes(&["keys:write"]);
    assert_eq!(s.decide().0.code, Code::InsufficientScope);
}

#[test]
fn expiry_is_exclusive_of_the_instant() {
    let mut s = Scenario::passing();
    s.key.expires_at = Some(Timestamp::from_micros(NOW.micros() + 1));
    assert_eq!(s.decide().0.code, Code::Valid);
    s.key.expires_at = Some(NOW);
    assert_eq!(s.decide().0.code, Code::Expired);
}

#[test]
fn missing_context_fields_deny_a_restricted_key() {
    let mut s = Scenario::passing();
    s.query.context = RequestContext::default();
    assert_eq!(s.decide().0.code, Code::IpNotAllowed);
    s.key.restrictions = crate::model::Restrictions::default();
    assert_eq!(
        s.decide().0.code,
        Code::Valid,
        "no restriction, nothing needed"
    );
}

#[test]
fn an_unknown_or_malformed_key_carries_no_key() {
    for code in [Code::Missing, Code::Malformed, Code::NotFound] {
        let mut s = Scenario::passing();
        s.fail(code, false);
        assert!(!s.decide().0.found_key(), "{code:?}");
    }
    let mut s = Scenario::passing();
    s.fail(Code::Revoked, false);
    assert!(s.decide().0.found_key());
}
