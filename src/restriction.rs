//! Where a key may be used: client-IP CIDRs, referrer and path patterns with `*` wildcards, and
//! HTTP methods. Each is parsed once, at create/update time, into a type that can only hold a
//! valid value; verify only matches.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A pattern where `*` matches any run of characters within a path segment (a trailing `*`:
/// everything) and everything else matches itself, e.g. `https://*.example.com/*` or
/// `/v1/videos/*`. Case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern(String);

impl Pattern {
    /// Parses a pattern: 1–512 printable characters without whitespace.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > 512 {
            return Err(format!("pattern {text:?} must be 1-512 characters"));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "pattern {text:?} must not contain spaces or control characters"
            ));
        }
        Ok(Pattern(text.to_owned()))
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `text` matches the whole pattern. A `*` matches within one path segment (never
    /// a `/`), except a `*` that ends the pattern, which matches everything after it: so
    /// `https://*.example.com/*` cannot be satisfied by `https://evil.com/.example.com/`.
    pub fn matches(&self, text: &str) -> bool {
        let (pattern, text) = (self.0.as_bytes(), text.as_bytes());
        // row[j]: the pattern so far matches text[..j].
        let mut row = vec![false; text.len() + 1];
        row[0] = true;
        for (i, &c) in pattern.iter().enumerate() {
            let last = i + 1 == pattern.len();
            let mut next = vec![false; text.len() + 1];
            if c == b'*' {
                next[0] = row[0];
                for j in 1..=text.len() {
                    next[j] = row[j] || (next[j - 1] && (last || text[j - 1] != b'/'));
                }
            } else {
                for j in 1..=text.len() {
                    next[j] = row[j - 1] && text[j - 1] == c;
                }
            }
            row = next;
        }
        row[text.len()]
    }
}

impl TryFrom<String> for Pattern {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Pattern::parse(&s)
    }
}

impl From<Pattern> for String {
    fn from(p: Pattern) -> String {
        p.0
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An HTTP method, uppercase (`get` is read as `GET`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Method(String);

impl Method {
    /// Parses a method token: 1–20 ASCII letters.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(format!(
                "method {text:?} must be an HTTP method such as GET"
            ));
        }
        Ok(Method(text.to_ascii_uppercase()))
    }

    /// The method, uppercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a request's method (any case) is this one.
    pub fn matches(&self, method: &str) -> bool {
        self.0.eq_ignore_ascii_case(method)
    }
}

impl TryFrom<String> for Method {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Method::parse(&s)
    }
}

impl From<Method> for String {
    fn from(m: Method) -> String {
        m.0
    }
}

/// Parses a CIDR (`203.0.113.0/24`, `2001:db8::/32`); a bare address means just that address.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| format!("{text:?} is not an IPv4 or IPv6 CIDR such as 203.0.113.0/24"))
}

/// Reads a client IP as gateways send it: an address or `address:port`; IPv4-mapped IPv6
/// addresses count as IPv4.
pub fn parse_client_ip(text: &str) -> Option<IpAddr> {
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}

/// Where a key may be used. An empty list means "no restriction".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Restrictions {
    /// CIDRs the end client's IP must fall in.
    pub allowed_cidrs: Vec<IpNet>,
    /// Referrer patterns.
    pub allowed_referrers: Vec<Pattern>,
    /// Request-path patterns (matched against the path without its query string).
    pub allowed_paths: Vec<Pattern>,
    /// HTTP methods.
    pub allowed_methods: Vec<Method>,
}

impl Restrictions {
    /// Whether no restriction is set.
    pub fn is_empty(&self) -> bool {
        self.allowed_cidrs.is_empty()
            && self.allowed_referrers.is_empty()
            && self.allowed_paths.is_empty()
            && self.allowed_methods.is_empty()
    }

    /// Whether the client IP is allowed. A missing or unreadable IP is not.
    pub fn allows_ip(&self, client_ip: &str) -> bool {
        if self.allowed_cidrs.is_empty() {
            return true;
        }
        parse_client_ip(client_ip)
            .is_some_and(|ip| self.allowed_cidrs.iter().any(|net| net.contains(&ip)))
    }

    /// Whether the referrer is allowed. A missing referrer is not.
    pub fn allows_referrer(&self, referrer: &str) -> bool {
        self.allowed_referrers.is_empty()
            || (!referrer.is_empty() && self.allowed_referrers.iter().any(|p| p.matches(referrer)))
    }

    /// Whether the method is allowed. A missing method is not.
    pub fn allows_method(&self, method: &str) -> bool {
        self.allowed_methods.is_empty() || self.allowed_methods.iter().any(|m| m.matches(method))
    }

    /// Whether the path (its query string ignored) is allowed. A missing path is not.
    pub fn allows_path(&self, path: &str) -> bool {
        let path = path.split(['?', '#']).next().unwrap_or_default();
        self.allowed_paths.is_empty()
            || (!path.is_empty() && self.allowed_paths.iter().any(|p| p.matches(path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn wildcard_matching() {
        let cases = [
            ("/v1/videos/*", "/v1/videos/42", true),
            ("/v1/videos/*", "/v1/videos/", true),
            ("/v1/videos/*", "/v1/videos", false),
            ("/v1/videos/*", "/v1/collections/1", false),
            (
                "https://*.example.com/*",
                "https://app.example.com/page",
                true,
            ),
            ("https://*.example.com/*", "https://example.com/page", false),
            (
                "https://*.example.com/*",
                "https://evil.com/.example.com/",
                false,
            ),
            ("https://*.example.com/*", "https://a.b.example.com/", true),
            ("/exact", "/exact", true),
            ("/exact", "/exact/more", false),
            ("*", "", true),
            ("*", "anything", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("ab*ba", "aba", false),
            ("*.json", "x.json", true),
            ("*.json", "x.jsonp", false),
            ("/v1/*/comments", "/v1/videos/comments", true),
            ("/v1/*/comments", "/v1/a/b/comments", false),
            ("/v1/videos/*", "/v1/videos/1/comments", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(p(pattern).matches(text), expected, "{pattern} vs {text}");
        }
    }

    #[test]
    fn pattern_validation() {
        assert!(Pattern::parse("").is_err());
        assert!(Pattern::parse("has space").is_err());
        assert!(Pattern::parse(&"a".repeat(513)).is_err());
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_cidr("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(parse_cidr("192.0.2.7").unwrap().to_string(), "192.0.2.7/32");
        for bad in [
            "",
            "10.0.0.0/33",
            "300.1.1.1/8",
            "10.0.0.0/",
            "example.com",
            "::g/64",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ip_restrictions() {
        let r = Restrictions {
            allowed_cidrs: vec![
                parse_cidr("203.0.113.0/24").unwrap(),
                parse_cidr("2001:db8::/32").unwrap(),
            ],
            ..Restrictions::default()
        };
        assert!(r.allows_ip("203.0.113.9"));
        assert!(r.allows_ip("203.0.113.9:4431"));
        assert!(r.allows_ip("::ffff:203.0.113.9"));
        assert!(r.allows_ip("2001:db8::5"));
        assert!(r.allows_ip("[2001:db8::5]:443"));
        assert!(!r.allows_ip("198.51.100.1"));
        assert!(!r.allows_ip(""), "a missing IP is denied");
        assert!(!r.allows_ip("garbage"));
        assert!(Restrictions::default().allows_ip(""));
    }

    #[test]
    fn method_path_referrer_restrictions() {
        let r = Restrictions {
            allowed_methods: vec![
                Method::parse("get").unwrap(),
                Method::parse("HEAD").unwrap(),
            ],
            allowed_paths: vec![p("/v1/videos/*")],
            allowed_referrers: vec![p("https://*.example.com/*")],
            ..Restrictions::default()
        };
        assert!(r.allows_method("GET") && r.allows_method("head"));
        assert!(!r.allows_method("POST") && !r.allows_method(""));
        assert!(r.allows_path("/v1/videos/1?x=/admin"));
        assert!(!r.allows_path("/admin?/v1/videos/1"));
        assert!(!r.allows_path(""));
        assert!(r.allows_referrer("https://www.example.com/x"));
        assert!(!r.allows_referrer(""));
        assert!(Method::parse("GE T").is_err());
    }

    #[test]
    fn restrictions_round_trip_as_json() {
        let r = Restrictions {
            allowed_cidrs: vec![parse_cidr("10.0.0.0/8").unwrap()],
            allowed_methods: vec![Method::parse("GET").unwrap()],
            ..Restrictions::default()
        };
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Restrictions>(&json).unwrap(), r);
    }
}
