//! The verify decision, whole: every one of the fourteen codes is decided here, by one pure
//! function of what was presented as a key, the request, `now` and the rate-limit budget, in
//! the order `docs/keys.md` ("Verify codes") lists; the first that applies wins. The service around it only
//! parses, looks up, calls [`decide`] and records; the transports only convert.

mod code;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

pub use code::Code;

use crate::cache::KeyState;
use crate::key::Environment;
use crate::ratelimit::{CreditStatus, LimitStatus, Outcome};
use crate::restriction::Method;
use crate::time::Timestamp;

/// The end client's HTTP request, as the gateway describes it. Borrowed from the request
/// that carried it: asking costs no copies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext<'a> {
    /// HTTP method, parsed once at the edge.
    pub method: Option<Method>,
    /// Request path.
    pub path: &'a str,
    /// The end client's IP address, parsed once at the edge (IPv4-mapped addresses as IPv4).
    pub client_ip: Option<std::net::IpAddr>,
    /// Referer header.
    pub referrer: &'a str,
}

pub use crate::scope::RequiredScopes;

/// What a verify request asks, besides the key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyQuery<'a> {
    /// Scopes the request needs.
    pub required_scopes: RequiredScopes<'a>,
    /// The HTTP request.
    pub context: RequestContext<'a>,
    /// The environment the gateway serves; `None` accepts either.
    pub environment: Option<Environment>,
    /// Rate-limit units; 0 counts as 1.
    pub cost: u32,
}

/// What the request presented as a key, once parsed and looked up.
#[derive(Debug, Clone)]
pub enum Presented {
    /// Nothing.
    Empty,
    /// Not the key format, or the checksum fails: no lookup was made.
    Malformed,
    /// Well-formed, but no such key.
    Unknown,
    /// A stored key, and the environment its text names.
    Found {
        /// The key and its account's state.
        state: Arc<KeyState>,
        /// The environment in the key's text (`kw_live_…`).
        environment: Environment,
    },
}

/// The rate-limit budget of keys, behind a trait so [`decide`] stays pure: the service's
/// budget is the in-memory limiter with the catalog's guardrails, a test's is a stand-in.
pub trait RateBudget {
    /// Takes `cost` units from the key's credits, its own limit, its account's and the
    /// guardrail of each required scope that has one, all or nothing.
    fn take(
        &mut self,
        state: &KeyState,
        required_scopes: &[&str],
        cost: u32,
        now: Timestamp,
    ) -> Outcome;

    /// The key's credits after the last [`RateBudget::take`] allowed a request, when it has
    /// credits.
    fn credits(&self) -> Option<CreditStatus> {
        None
    }
}

/// The answer to a verify request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The outcome.
    pub code: Code,
    /// Required scopes the key lacks (`INSUFFICIENT_SCOPE`).
    pub missing_scopes: Vec<String>,
    /// The key's own limit after this request (`VALID`), or the limit that refused it.
    pub rate_limit: Option<LimitStatus>,
    /// How long to wait before retrying (`RATE_LIMITED`; `USAGE_EXCEEDED` with a refill due).
    pub retry_after: Option<Duration>,
    /// The key's usage credits, when it has them (`VALID`, `USAGE_EXCEEDED`).
    pub credits: Option<CreditStatus>,
    /// The key, whenever it was found (also on a denial).
    pub key: Option<Arc<KeyState>>,
    /// When the decision was made: the `now` of [`decide`], which the rate-limit state's reset
    /// is relative to (so an answer needs no second read of the clock).
    pub decided_at: Timestamp,
}

impl Decision {
    fn deny(code: Code, now: Timestamp) -> Self {
        Decision {
            code,
            missing_scopes: Vec::new(),
            rate_limit: None,
            retry_after: None,
            credits: None,
            key: None,
            decided_at: now,
        }
    }

    /// A denial of a found key, which the answer carries.
    fn deny_key(code: Code, state: Arc<KeyState>, now: Timestamp) -> Self {
        Decision {
            key: Some(state),
            ..Decision::deny(code, now)
        }
    }

    /// Whether a key was found: the answer then carries it, denial or not.
    pub fn found_key(&self) -> bool {
        self.key.is_some()
    }
}

/// Decides a verify request. Rate-limit units are taken only when every other check passed.
pub fn decide(
    presented: Presented,
    query: &VerifyQuery<'_>,
    now: Timestamp,
    budget: &mut impl RateBudget,
) -> Decision {
    let state = match presented {
        Presented::Empty => return Decision::deny(Code::Missing, now),
        Presented::Malformed => return Decision::deny(Code::Malformed, now),
        Presented::Unknown => return Decision::deny(Code::NotFound, now),
        // A stored key whose environment disagrees with its text was not made by this service.
        Presented::Found { state, environment } if state.key.environment() != environment => {
            return Decision::deny(Code::NotFound, now);
        }
        Presented::Found { state, .. } => state,
    };
    let key = &state.key;
    if key.is_revoked() {
        return Decision::deny_key(Code::Revoked, state, now);
    }
    if key.is_expired(now) {
        return Decision::deny_key(Code::Expired, state, now);
    }
    if query
        .environment
        .is_some_and(|env| env != key.environment())
    {
        return Decision::deny_key(Code::WrongEnvironment, state, now);
    }
    if state.account_disabled {
        return Decision::deny_key(Code::AccountDisabled, state, now);
    }
    let r = key.restrictions();
    let ctx = &query.context;
    if !r.allows_ip(ctx.client_ip) {
        return Decision::deny_key(Code::IpNotAllowed, state, now);
    }
    if !r.allows_referrer(ctx.referrer) {
        return Decision::deny_key(Code::ReferrerNotAllowed, state, now);
    }
    if !r.allows_method(ctx.method.as_ref()) {
        return Decision::deny_key(Code::MethodNotAllowed, state, now);
    }
    if !r.allows_path(ctx.path) {
        return Decision::deny_key(Code::PathNotAllowed, state, now);
    }
    let missing_scopes: Vec<String> = query
        .required_scopes
        .iter()
        .filter(|s| !key.holds(s))
        .map(|s| (*s).to_owned())
        .collect();
    if !missing_scopes.is_empty() {
        return Decision {
            missing_scopes,
            ..Decision::deny_key(Code::InsufficientScope, state, now)
        };
    }
    match budget.take(&state, &query.required_scopes, query.cost.max(1), now) {
        Outcome::Allowed(status) => Decision {
            rate_limit: Some(status),
            credits: budget.credits(),
            ..Decision::deny_key(Code::Valid, state, now)
        },
        Outcome::UsageExceeded {
            credits,
            retry_after,
        } => Decision {
            credits: Some(credits),
            retry_after,
            ..Decision::deny_key(Code::UsageExceeded, state, now)
        },
        Outcome::Limited {
            status,
            retry_after,
            ..
        } => Decision {
            rate_limit: Some(status),
            retry_after: Some(retry_after),
            ..Decision::deny_key(Code::RateLimited, state, now)
        },
    }
}
