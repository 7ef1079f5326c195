//! The gateway faces' common part. Envoy ext_authz (`grpc::ext_authz`) and HTTP forward auth
//! (`http`) describe the end client's request in their own terms; this turns that description
//! into a [`VerifyQuery`] and turns the one [`Decision`] into the HTTP answer both faces give
//! (`docs/gateways.md`). It decides nothing itself: the verdict is [`crate::verify::decide`]'s.

mod client_ip;
mod routes;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::cache::KeyState;
use crate::error::echo;
use crate::key::Environment;
use crate::limits::{MAX_METHOD_LEN, MAX_PATH_LEN, MAX_SCOPES};
use crate::restriction::{Method, normalize_path};
use crate::scope::ScopeName;
use crate::verify::{Code, Decision, RequestContext, RequiredScopes, VerifyQuery};

pub use client_ip::client_ip;
pub use routes::{Route, RouteConfig};

/// Most key headers the configuration may name.
const MAX_KEY_HEADERS: usize = 8;

/// The gateway faces' settings (`[gateway]` in the configuration file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Request headers the key is read from, in order; `authorization` is read as
    /// `Bearer <key>`, any other header as the bare key.
    pub key_headers: Vec<String>,
    /// Whether the key headers are removed before the request goes upstream (`true`), so the
    /// upstream never sees the secret.
    pub strip_key_headers: bool,
    /// Proxies whose `X-Forwarded-For` / `X-Real-IP` are believed (HTTP forward auth); empty:
    /// the TCP peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Required scopes per route, for gateways that cannot send them per route; the first
    /// matching route wins.
    pub routes: Vec<RouteConfig>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            key_headers: vec!["authorization".into(), "x-api-key".into()],
            strip_key_headers: true,
            trusted_proxies: Vec::new(),
            routes: Vec::new(),
        }
    }
}

/// The validated gateway settings.
#[derive(Debug, Clone)]
pub struct Gateway {
    key_headers: Vec<String>,
    strip_key_headers: bool,
    trusted_proxies: Vec<IpNet>,
    routes: Vec<Route>,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway::new(&GatewayConfig::default()).expect("the defaults are valid")
    }
}

impl Gateway {
    /// Validates `config`; the error names the setting.
    pub fn new(config: &GatewayConfig) -> Result<Self, String> {
        if config.key_headers.is_empty() || config.key_headers.len() > MAX_KEY_HEADERS {
            return Err(format!(
                "gateway.key_headers: name 1-{MAX_KEY_HEADERS} headers"
            ));
        }
        let mut key_headers = Vec::with_capacity(config.key_headers.len());
        for name in &config.key_headers {
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(format!(
                    "gateway.key_headers: {} is not a header name",
                    echo(name)
                ));
            }
            key_headers.push(name.to_ascii_lowercase());
        }
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| Route::new(r).map_err(|e| format!("gateway.routes[{i}]: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Gateway {
            key_headers,
            strip_key_headers: config.strip_key_headers,
            trusted_proxies: config.trusted_proxies.clone(),
            routes,
        })
    }

    /// The key the request presents, from every value of every configured key header: `""`
    /// when none holds one. `values` gives a header's values by its lower-case name, each
    /// `None` when it is not readable text. Two different keys, or a key header that cannot be
    /// read, are [`AmbiguousKey`]: the request does not say which key it acts with, and the
    /// first one read must not win (`docs/gateways.md`).
    pub fn key<'h, I>(&self, values: impl Fn(&str) -> I) -> Result<&'h str, AmbiguousKey>
    where
        I: IntoIterator<Item = Option<&'h str>>,
    {
        let mut found = "";
        for name in &self.key_headers {
            for value in values(name) {
                let value = value.ok_or(AmbiguousKey)?;
                let key = if name == "authorization" {
                    // Another scheme (Basic, say) is not a keyward key.
                    bearer_token(value).unwrap_or_default()
                } else {
                    value.trim_ascii()
                };
                if key.is_empty() || key == found {
                    continue;
                }
                if !found.is_empty() {
                    return Err(AmbiguousKey);
                }
                found = key;
            }
        }
        Ok(found)
    }

    /// Whether forwarded client-address headers from `peer` are believed.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }

    /// Headers removed before the request goes upstream: every key header, so the secret never
    /// reaches the upstream whichever header carried it.
    pub fn headers_to_remove(&self) -> &[String] {
        if self.strip_key_headers {
            &self.key_headers
        } else {
            &[]
        }
    }

    /// Proxies whose forwarded client-IP headers are believed.
    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted_proxies
    }

    /// The verify query of an end client's request; a field the client (or the gateway's
    /// configuration) got wrong is a [`Rejection`], answered 400 without a verdict.
    pub fn query<'a>(&'a self, request: &ClientRequest<'a>) -> Result<VerifyQuery<'a>, Rejection> {
        if request.target.len() > MAX_PATH_LEN {
            return Err(Rejection::new(
                "path",
                format!("at most {MAX_PATH_LEN} bytes"),
            ));
        }
        if request.referrer.len() > MAX_PATH_LEN {
            return Err(Rejection::new(
                "referer",
                format!("at most {MAX_PATH_LEN} bytes"),
            ));
        }
        let method = match request.method {
            "" => None,
            m if m.len() > MAX_METHOD_LEN => {
                return Err(Rejection::new(
                    "method",
                    format!("at most {MAX_METHOD_LEN} bytes"),
                ));
            }
            m => Some(Method::parse(m).map_err(|e| Rejection::new("method", e))?),
        };
        // The path without its query string: restrictions and routes match the path.
        let end = request
            .target
            .bytes()
            .position(|b| b == b'?' || b == b'#')
            .unwrap_or(request.target.len());
        let path = &request.target[..end];
        let required_scopes = match request.scopes {
            Some(text) => parse_scope_list(text).map_err(|e| Rejection::new("scopes", e))?,
            None => self.route_scopes(method.as_ref(), path)?,
        };
        let environment = match request.environment {
            None | Some("") => None,
            Some(text) => Some(
                Environment::parse(text)
                    .ok_or_else(|| Rejection::new("environment", "must be live or test"))?,
            ),
        };
        Ok(VerifyQuery {
            required_scopes,
            context: RequestContext {
                method,
                path,
                client_ip: request.client_ip.map(|ip| ip.to_canonical()),
                referrer: request.referrer,
            },
            environment,
            cost: 0,
        })
    }

    /// The scopes the route table requires of a request; none when no route matches.
    fn route_scopes(
        &self,
        method: Option<&Method>,
        path: &str,
    ) -> Result<RequiredScopes<'_>, Rejection> {
        if self.routes.is_empty() {
            return Ok(RequiredScopes::new());
        }
        // Routes match the normal form of the path; one that has none fails closed.
        let normal =
            normalize_path(path).ok_or_else(|| Rejection::new("path", "cannot be normalised"))?;
        Ok(self
            .routes
            .iter()
            .find(|r| r.matches(method, &normal))
            .map(|r| r.scopes().iter().map(ScopeName::as_str).collect())
            .unwrap_or_default())
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme case-insensitive).
/// Whitespace around the value and after the scheme is HTTP's (RFC 9110 `OWS`: spaces, tabs).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_ascii().split_at_checked("bearer".len())?;
    let separated = token.starts_with([' ', '\t']);
    (separated && scheme.eq_ignore_ascii_case("bearer")).then(|| token.trim_ascii())
}

/// A request that presents two different keys, or a key header that is not readable text:
/// refused (401 `MALFORMED`), never decided with one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmbiguousKey;

impl std::fmt::Display for AmbiguousKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(AMBIGUOUS_KEY)
    }
}

/// What an [`AmbiguousKey`] is answered with.
const AMBIGUOUS_KEY: &str =
    "the request presents more than one API key, or a key header that cannot be read";

/// The one bearer token of a request's `Authorization` values (gRPC metadata, the JSON API):
/// `None` when there is none, [`AmbiguousKey`] when the header is given twice or cannot be
/// read.
pub fn single_bearer<'a>(
    mut values: impl Iterator<Item = Option<&'a str>>,
) -> Result<Option<&'a str>, AmbiguousKey> {
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AmbiguousKey);
    }
    Ok(bearer_token(first.ok_or(AmbiguousKey)?))
}

/// Parses a comma- (or space-) separated scope list (each name trimmed of ASCII whitespace;
/// any other character is the name's and refused by its check), bounded by its length before
/// any entry is looked at and by its count as it is read; duplicates dropped.
fn parse_scope_list(text: &str) -> Result<RequiredScopes<'_>, String> {
    if text.len() > MAX_SCOPES * 65 {
        return Err(format!("at most {MAX_SCOPES} scopes"));
    }
    let names = split_scope_list(text)
        .map(str::trim_ascii)
        .filter(|s| !s.is_empty());
    let mut out = RequiredScopes::new();
    for name in names {
        if out.len() == MAX_SCOPES {
            return Err(format!("at most {MAX_SCOPES} scopes"));
        }
        crate::scope::check_name(name)?;
        out.push(name);
    }
    crate::scope::dedup(&mut out);
    Ok(out)
}

/// The pieces of a scope list between its separators (`,` and space): found byte by byte, as
/// both are ASCII, instead of decoding the text char by char.
fn split_scope_list(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let text = rest?;
        match text.bytes().position(|b| b == b',' || b == b' ') {
            Some(end) => {
                rest = Some(&text[end + 1..]);
                Some(&text[..end])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// The end client's request, as a gateway describes it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientRequest<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The request target: path and query string as on the request line.
    pub target: &'a str,
    /// The end client's address, if known.
    pub client_ip: Option<IpAddr>,
    /// The `Referer` header.
    pub referrer: &'a str,
    /// Required scopes the gateway names for this route (comma-separated), overriding the
    /// route table.
    pub scopes: Option<&'a str>,
    /// The environment the route serves (`live` / `test`); none: either.
    pub environment: Option<&'a str>,
}

/// A gateway request that cannot be evaluated: answered 400, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it (never the value of a key).
    pub reason: String,
}

impl Rejection {
    /// A rejection of `field` for `reason`.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Rejection {
            field,
            reason: reason.into(),
        }
    }
}

/// The HTTP answer of a gateway face. Kept small (no `memcpy` when it is moved on its way to
/// the wire): what only a denial carries is boxed, the rate-limit state kept as numbers.
#[derive(Debug, Clone)]
pub struct Answer {
    /// 200, 400, 401, 403, 429, 500 or 503.
    pub status: u16,
    /// `VALID`, a verify code, `INVALID_REQUEST`, `UNAVAILABLE`, `CALLER_REFUSED` or
    /// `INTERNAL`.
    pub code: &'static str,
    /// The key, whenever it was found: who it is (see [`Answer::identity`]).
    key: Option<Arc<KeyState>>,
    /// The limit, the units remaining and the seconds to the reset, when a limit was looked at
    /// (see [`Answer::rate_limit`]).
    rate_limit: Option<[u64; 3]>,
    /// The key's credits left, when it has credits.
    credits: Option<u64>,
    /// What a denial carries besides its status.
    denial: Option<Box<Denial>>,
}

/// The parts of an answer only a denial has.
#[derive(Debug, Clone, Default)]
struct Denial {
    /// `www-authenticate` (401), `retry-after` (429).
    challenge: Vec<(&'static str, String)>,
    /// The `retry-after` seconds (429).
    retry_after: Option<u64>,
    /// The JSON body `{"code": …, "message": …}`.
    body: String,
}

/// A header of an answer: its name and its value as it goes on the wire.
pub type Header<'a> = (&'static str, &'a [u8]);

/// The JSON body's media type.
pub const JSON: &str = "application/json";

impl Answer {
    /// The answer to a decision, which it takes over (its key moves into the answer); the
    /// rate-limit reset is counted from when it was made.
    pub fn from_decision(decision: Decision) -> Self {
        let rate_limit = decision.rate_limit.as_ref().map(|status| {
            let reset = (status.reset_at.micros() - decision.decided_at.micros())
                .max(0)
                .unsigned_abs();
            // Delta seconds, rounded up (IETF RateLimit header fields).
            [
                status.limit.into(),
                status.remaining.into(),
                reset.div_ceil(1_000_000),
            ]
        });
        let code = decision.code;
        let status = code.http_status() as u16;
        let denial = (code != Code::Valid).then(|| {
            let mut denial = Denial {
                body: body(code.as_str(), code.message()),
                ..Denial::default()
            };
            if status == 401 {
                denial.challenge.push((
                    "www-authenticate",
                    format!(
                        "Bearer error=\"invalid_token\", error_description=\"{}\"",
                        code.message()
                    ),
                ));
            }
            // Whole seconds, rounded up, at least 1 (RFC 9110 section 10.2.3).
            denial.retry_after = decision.retry_after.map(|wait| {
                u64::try_from(wait.as_micros().div_ceil(1_000_000).max(1)).unwrap_or(u64::MAX)
            });
            if let Some(secs) = denial.retry_after {
                denial.challenge.push(("retry-after", secs.to_string()));
            }
            Box::new(denial)
        });
        Answer {
            status,
            code: code.as_str(),
            key: decision.key,
            rate_limit,
            credits: decision.credits.map(|c| c.remaining),
            denial,
        }
    }

    /// Who the key is: `x-keyward-key-id`, `x-keyward-account-id`, `x-keyward-environment`
    /// (whenever the key was found). Header values are bytes, as they go on the wire.
    pub fn identity(&self) -> Option<[Header<'_>; 3]> {
        let key = &self.key.as_ref()?.key;
        Some([
            ("x-keyward-key-id", key.id().as_bytes()),
            ("x-keyward-account-id", key.account_id().as_bytes()),
            (
                "x-keyward-environment",
                key.environment().as_str().as_bytes(),
            ),
        ])
    }

    /// `ratelimit-limit`, `ratelimit-remaining`, `ratelimit-reset` (when a limit was looked
    /// at) and `x-keyward-credits-remaining` (when the key has credits), written in decimal:
    /// [`RateLimitHeaders::headers`].
    pub fn rate_limit(&self) -> Option<RateLimitHeaders> {
        if self.rate_limit.is_none() && self.credits.is_none() {
            return None;
        }
        Some(RateLimitHeaders {
            limit: self.rate_limit.map(|numbers| numbers.map(Decimal::new)),
            credits: self.credits.map(Decimal::new),
        })
    }

    /// On a denial: `www-authenticate` (401), `retry-after` (429).
    pub fn challenge(&self) -> &[(&'static str, String)] {
        self.denial.as_ref().map_or(&[], |d| &d.challenge)
    }

    /// The `retry-after` seconds (429), as a number for faces that carry it elsewhere too.
    pub fn retry_after(&self) -> Option<u64> {
        self.denial.as_ref().and_then(|d| d.retry_after)
    }

    /// On a denial: the JSON body `{"code": …, "message": …}`.
    pub fn body(&self) -> Option<&str> {
        self.denial.as_ref().map(|d| d.body.as_str())
    }

    /// The JSON body of a denial, taken out of the answer.
    pub fn take_body(&mut self) -> Option<String> {
        self.denial.as_mut().map(|d| std::mem::take(&mut d.body))
    }

    /// A request that presents more than one key, or one that cannot be read: 401 with the
    /// RFC 6750 challenge, as any other refused key.
    pub fn ambiguous_key() -> Self {
        let mut answer = Answer::error(401, Code::Malformed.as_str(), AMBIGUOUS_KEY);
        if let Some(denial) = answer.denial.as_mut() {
            denial.challenge.push((
                "www-authenticate",
                format!("Bearer error=\"invalid_request\", error_description=\"{AMBIGUOUS_KEY}\""),
            ));
        }
        answer
    }

    /// A request that cannot be evaluated.
    pub fn rejected(rejection: &Rejection) -> Self {
        Answer::error(
            400,
            "INVALID_REQUEST",
            &format!("{}: {}", rejection.field, rejection.reason),
        )
    }

    /// The store could not be reached for an uncached key.
    pub fn unavailable() -> Self {
        Answer::error(
            503,
            "UNAVAILABLE",
            "the key could not be checked right now; try again",
        )
    }

    /// The gateway's own key (`verify_auth`) was refused: an error, never 401/403, so the
    /// gateway does not take the end client's key for the bad one.
    pub fn caller_refused() -> Self {
        Answer::error(
            500,
            "CALLER_REFUSED",
            "the gateway's own keyward key was refused; see keyward's log",
        )
    }

    /// The request could not be decided (logged).
    pub fn internal() -> Self {
        Answer::error(500, "INTERNAL", "internal error")
    }

    fn error(status: u16, code: &'static str, message: &str) -> Self {
        Answer {
            status,
            code,
            key: None,
            rate_limit: None,
            credits: None,
            denial: Some(Box::new(Denial {
                body: body(code, message),
                ..Denial::default()
            })),
        }
    }

    /// Whether the request may go upstream.
    pub fn allowed(&self) -> bool {
        self.status == 200
    }
}

/// The budget headers' values, in decimal: the rate limit's and the credits'.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitHeaders {
    limit: Option<[Decimal; 3]>,
    credits: Option<Decimal>,
}

impl RateLimitHeaders {
    /// `ratelimit-limit`, `ratelimit-remaining`, `ratelimit-reset` (when a limit was looked
    /// at), `x-keyward-credits-remaining` (when the key has credits).
    pub fn headers(&self) -> smallvec::SmallVec<[Header<'_>; 4]> {
        let mut headers = smallvec::SmallVec::new();
        if let Some([limit, remaining, reset]) = &self.limit {
            headers.extend([
                ("ratelimit-limit", limit.as_bytes()),
                ("ratelimit-remaining", remaining.as_bytes()),
                ("ratelimit-reset", reset.as_bytes()),
            ]);
        }
        if let Some(credits) = &self.credits {
            headers.push(("x-keyward-credits-remaining", credits.as_bytes()));
        }
        headers
    }
}

/// A number in decimal, written without an allocation.
#[derive(Debug, Clone, Copy)]
struct Decimal {
    digits: [u8; 20],
    start: u8,
}

/// `00`, `01`, … `99`: a number is written two digits a step (the rate-limit headers of every
/// allowed request are three numbers).
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

impl Decimal {
    fn new(mut n: u64) -> Self {
        let mut digits = [0; 20];
        let mut start = digits.len();
        while n >= 100 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            start -= 2;
            digits[start..start + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        }
        if n >= 10 {
            let pair = n as usize * 2;
            start -= 2;
            digits[start..start + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        } else {
            start -= 1;
            digits[start] = b'0' + n as u8;
        }
        Decimal {
            digits,
            start: start as u8,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.digits[self.start.into()..]
    }
}

fn body(code: &str, message: &str) -> String {
    serde_json::json!({ "code": code, "message": message }).to_string()
}
