//! Where a key may be used: client-IP CIDRs, referrer and path patterns with `*` wildcards, and
//! HTTP methods. Each is parsed once, at create/update time, into a type that can only hold a
//! valid value; verify only matches.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::echo;

/// The longest restriction pattern.
pub const MAX_PATTERN_LEN: usize = 512;

/// A pattern where `*` matches any run of characters within a path segment (a trailing `*`:
/// everything) and everything else matches itself, e.g. `https://*.example.com/*` or
/// `/v1/videos/*`. Case-sensitive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pattern(String);

impl Pattern {
    /// Parses a pattern: 1–512 printable characters without whitespace.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "pattern {} must be 1-{MAX_PATTERN_LEN} characters",
                echo(text)
            ));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "pattern {} must not contain spaces or control characters",
                echo(text)
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
    ///
    /// Linear in `text` and the pattern: the literal pieces between `*`s are found leftmost,
    /// in order, and a gap a `*` covers may not hold a `/`. Leftmost is always safe: a later
    /// occurrence of a piece can only leave a longer, no less constrained, rest to match.
    pub fn matches(&self, text: &str) -> bool {
        match_cost(&self.0, text).0
    }
}

/// Matches `pattern` against `text` and reports the bytes examined, so tests can assert that
/// the work is linear.
fn match_cost(pattern: &str, text: &str) -> (bool, usize) {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let trailing_star = pattern.ends_with(b"*");
    let body = pattern.strip_suffix(b"*").unwrap_or(pattern);
    let mut pieces = body.split(|&b| b == b'*');
    // `split` always yields at least one piece.
    let first = pieces.next().unwrap_or_default();
    let mut cost = first.len();
    let Some(mut rest) = text.strip_prefix(first) else {
        return (false, cost);
    };
    // Without a trailing `*`, the last piece must end the text.
    let stars = memchr::memchr_iter(b'*', body).count();
    let last = (!trailing_star && stars > 0)
        .then(|| body.rsplit(|&b| b == b'*').next())
        .flatten();
    let middle = pieces.take(if last.is_some() { stars - 1 } else { stars });
    if let Some(last) = last {
        cost += last.len();
        let Some(head) = rest.strip_suffix(last) else {
            return (false, cost);
        };
        rest = head;
    }
    for piece in middle {
        // The gap before the piece may not cross a `/`: the piece starts by the next one.
        let window = memchr::memchr(b'/', rest)
            .map_or(rest.len(), |slash| (slash + piece.len()).min(rest.len()));
        cost += window + piece.len();
        match memchr::memmem::find(&rest[..window], piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return (false, cost),
        }
    }
    cost += rest.len();
    let ok = if trailing_star {
        true
    } else if body.contains(&b'*') {
        memchr::memchr(b'/', rest).is_none()
    } else {
        rest.is_empty()
    };
    (ok, cost)
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
                "method {} must be an HTTP method such as GET",
                echo(text)
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

/// The longest CIDR text accepted.
const MAX_CIDR_LEN: usize = 64;

/// Parses a CIDR (`203.0.113.0/24`, `2001:db8::/32`); a bare address means just that address.
/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) is stored as the IPv4 network it
/// maps (`10.0.0.0/8`), so it matches IPv4 clients like any other IPv4 network.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let invalid = || {
        format!(
            "{} is not an IPv4 or IPv6 CIDR such as 203.0.113.0/24",
            echo(text)
        )
    };
    if text.len() > MAX_CIDR_LEN {
        return Err(invalid());
    }
    let net = text
        .parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| invalid())?
        .trunc();
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
    {
        // prefix_len - 96 is at most 32, always a valid IPv4 prefix length.
        return Ok(IpNet::V4(
            ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_err(|_| invalid())?,
        ));
    }
    Ok(net)
}

/// Reads a client IP as gateways send it: an address or `address:port`; IPv4-mapped IPv6
/// addresses count as IPv4.
pub fn parse_client_ip(text: &str) -> Option<IpAddr> {
    if text.len() > MAX_CIDR_LEN {
        return None;
    }
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))?;
    Some(ip.to_canonical())
}

/// Whether `net` holds `ip`, an IPv4 client also matching IPv6 networks that contain its
/// IPv4-mapped form (`::/0`, `::ffff:0:0/96`).
fn net_contains(net: &IpNet, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpNet::V6(v6), IpAddr::V4(v4)) => v6.contains(&v4.to_ipv6_mapped()),
        _ => net.contains(&ip),
    }
}

/// The longest request path (or referrer) a verify request may carry.
pub const MAX_PATH_LEN: usize = 4096;

/// A request path made comparable, once per request, before path patterns match it (RFC 3986
/// section 6.2.2): the query string and fragment are dropped, percent-encoded unreserved
/// characters are decoded (`%2e` → `.`), other escapes get uppercase hex, and dot segments are
/// removed (section 5.2.4), so `/v1/videos/%2e%2e/admin` is `/v1/admin`.
///
/// `None`, which fails closed, for anything a server might read in more than one way: an
/// encoded `/` or `\`, a NUL or other control character, a raw `\`, an empty segment (`//`,
/// which some servers merge and others keep), a `..;` or `.;` segment (read as `..` by some
/// servers), a bad escape, a path not starting with `/`, or one longer than [`MAX_PATH_LEN`].
pub fn normalize_path(path: &str) -> Option<String> {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') || path.len() > MAX_PATH_LEN {
        return None;
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = hex_value(*bytes.get(i + 1)?)?;
            let lo = hex_value(*bytes.get(i + 2)?)?;
            let c = hi * 16 + lo;
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                decoded.push(c);
            } else if c == b'/' || c == b'\\' || c.is_ascii_control() {
                return None;
            } else {
                decoded.extend_from_slice(&[b'%', HEX[usize::from(hi)], HEX[usize::from(lo)]]);
            }
            i += 3;
        } else if b == b'\\' || b.is_ascii_control() {
            return None;
        } else {
            decoded.push(b);
            i += 1;
        }
    }
    // Only ASCII was decoded, and other bytes were copied whole from a `str`.
    let decoded = String::from_utf8(decoded).ok()?;
    let segments: Vec<&str> = decoded[1..].split('/').collect();
    let mut out: Vec<&str> = Vec::with_capacity(segments.len());
    for (n, segment) in segments.iter().enumerate() {
        let last = n + 1 == segments.len();
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    out.pop();
                }
                if last {
                    out.push("");
                }
            }
            "" if !last => return None,
            s if s.starts_with("..;") || s.starts_with(".;") => return None,
            s => out.push(s),
        }
    }
    let mut normal = String::with_capacity(decoded.len());
    for segment in &out {
        normal.push('/');
        normal.push_str(segment);
    }
    if normal.is_empty() {
        normal.push('/');
    }
    Some(normal)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
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
    pub fn allows_ip(&self, client_ip: Option<IpAddr>) -> bool {
        if self.allowed_cidrs.is_empty() {
            return true;
        }
        client_ip.is_some_and(|ip| {
            let ip = ip.to_canonical();
            self.allowed_cidrs.iter().any(|net| net_contains(net, ip))
        })
    }

    /// Whether the referrer is allowed. A missing referrer is not.
    pub fn allows_referrer(&self, referrer: &str) -> bool {
        self.allowed_referrers.is_empty()
            || (!referrer.is_empty() && self.allowed_referrers.iter().any(|p| p.matches(referrer)))
    }

    /// Whether the method is allowed. A missing method is not.
    pub fn allows_method(&self, method: Option<&Method>) -> bool {
        self.allowed_methods.is_empty() || method.is_some_and(|m| self.allowed_methods.contains(m))
    }

    /// Whether the path (its query string ignored) is allowed, matched in its normal form
    /// (see [`normalize_path`]). A missing path, or one that cannot be normalised, is not.
    pub fn allows_path(&self, path: &str) -> bool {
        if self.allowed_paths.is_empty() {
            return true;
        }
        normalize_path(path).is_some_and(|path| self.allowed_paths.iter().any(|p| p.matches(&path)))
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
    fn paths_are_normalised_before_matching() {
        let r = Restrictions {
            allowed_paths: vec![p("/v1/videos/*")],
            ..Restrictions::default()
        };
        for attack in [
            "/v1/videos/../admin",
            "/v1/videos/%2e%2e/admin",
            "/v1/videos/%2E%2E/admin",
            "/v1/videos/..%2f..%2fadmin",
            "/v1/videos/%2e%2e%2fadmin",
            "/v1/videos/..%5cadmin",
            "/v1/videos/..\\admin",
            "/v1/videos//../admin",
            "/v1/videos/..;/admin",
            "/v1/videos/x%00",
            "/v1/videos/%zz",
            "/v1/videos/%2",
            "v1/videos/1",
            "/v1/videos/./../../admin",
        ] {
            assert!(!r.allows_path(attack), "{attack}");
        }
        for ok in [
            "/v1/videos/1",
            "/v1/videos/./1",
            "/v1/%76ideos/1",
            "/v1/videos/a%20b",
            "/v1/collections/../videos/1?x=1",
            "/v1/videos/1/comments/..",
        ] {
            assert!(r.allows_path(ok), "{ok}");
        }
        assert_eq!(normalize_path("/a/b/../c").as_deref(), Some("/a/c"));
        assert_eq!(normalize_path("/a/..").as_deref(), Some("/"));
        assert_eq!(normalize_path("/..").as_deref(), Some("/"));
        assert_eq!(normalize_path("/a/./b/.").as_deref(), Some("/a/b/"));
        assert_eq!(normalize_path("/a%2db%7e").as_deref(), Some("/a-b~"));
        assert_eq!(normalize_path("/a%3fb").as_deref(), Some("/a%3Fb"));
        assert_eq!(
            normalize_path(&format!("/{}", "a".repeat(MAX_PATH_LEN))),
            None
        );
    }

    #[test]
    fn matching_work_is_linear() {
        // The hostile case: 512-character patterns of many stars against a long path.
        let pattern = "*a".repeat(255) + "*b";
        let text = "a".repeat(8192);
        let (matched, cost) = match_cost(&pattern, &text);
        assert!(!matched);
        assert!(
            cost <= 4 * (pattern.len() + text.len()),
            "examined {cost} bytes for a {}-byte pattern and {}-byte text",
            pattern.len(),
            text.len()
        );
        let segments = "/a".repeat(4096);
        let (_, cost) = match_cost("/*/*/*/*/*/*/*/*/*/*/*/*/z", &segments);
        assert!(cost <= 4 * (segments.len() + 26), "{cost}");
    }

    #[test]
    fn ipv4_mapped_networks_match_ipv4_clients() {
        assert_eq!(
            parse_cidr("::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_cidr("::ffff:10.1.2.3").unwrap().to_string(),
            "10.1.2.3/32"
        );
        let r = Restrictions {
            allowed_cidrs: vec![parse_cidr("::ffff:10.0.0.0/104").unwrap()],
            ..Restrictions::default()
        };
        assert!(r.allows_ip(parse_client_ip("10.1.2.3")));
        assert!(r.allows_ip(parse_client_ip("::ffff:10.1.2.3")));
        assert!(!r.allows_ip(parse_client_ip("11.1.2.3")));
        let all_v6 = Restrictions {
            allowed_cidrs: vec![parse_cidr("::/0").unwrap()],
            ..Restrictions::default()
        };
        assert!(
            all_v6.allows_ip(parse_client_ip("10.1.2.3")),
            "::/0 holds every mapped IPv4 address"
        );
        assert!(parse_cidr(&"1".repeat(1_000_000)).unwrap_err().len() < 120);
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
        assert!(r.allows_ip(parse_client_ip("203.0.113.9")));
        assert!(r.allows_ip(parse_client_ip("203.0.113.9:4431")));
        assert!(r.allows_ip(parse_client_ip("::ffff:203.0.113.9")));
        assert!(r.allows_ip(parse_client_ip("2001:db8::5")));
        assert!(r.allows_ip(parse_client_ip("[2001:db8::5]:443")));
        assert!(!r.allows_ip(parse_client_ip("198.51.100.1")));
        assert!(!r.allows_ip(parse_client_ip("")), "a missing IP is denied");
        assert!(!r.allows_ip(parse_client_ip("garbage")));
        assert!(Restrictions::default().allows_ip(parse_client_ip("")));
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
        let m = |text: &str| Method::parse(text).ok();
        assert!(r.allows_method(m("GET").as_ref()) && r.allows_method(m("head").as_ref()));
        assert!(!r.allows_method(m("POST").as_ref()) && !r.allows_method(None));
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

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// The straightforward dynamic-programming matcher, as a reference for the linear one.
    fn reference(pattern: &str, text: &str) -> bool {
        let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
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

    proptest! {
        #[test]
        fn linear_matching_agrees_with_the_reference(
            pattern in "[ab/*.]{1,12}",
            text in "[ab/.]{0,16}",
        ) {
            let p = Pattern::parse(&pattern).unwrap();
            prop_assert_eq!(p.matches(&text), reference(&pattern, &text), "{} vs {}", pattern, text);
        }

        #[test]
        fn normal_paths_are_normal(path in "/[a-z./%2eEfF5cC;]{0,24}") {
            if let Some(normal) = normalize_path(&path) {
                prop_assert!(normal.starts_with('/'));
                prop_assert!(!normal.contains("//"), "{normal}");
                for segment in normal.split('/') {
                    prop_assert!(segment != "." && segment != "..", "{normal}");
                }
                prop_assert_eq!(normalize_path(&normal), Some(normal.clone()), "idempotent");
            }
        }

        #[test]
        fn any_path_normalises_or_is_refused_without_panic(path in "\\PC{0,64}") {
            let _ = normalize_path(&path);
        }

        #[test]
        fn cidrs_round_trip(v4 in any::<[u8; 4]>(), v4_len in 0u8..=32, v6 in any::<[u16; 8]>(), v6_len in 0u8..=128) {
            let net = parse_cidr(&format!("{}/{v4_len}", std::net::Ipv4Addr::from(v4))).unwrap();
            prop_assert_eq!(parse_cidr(&net.to_string()).unwrap(), net);
            let addr = std::net::Ipv6Addr::from(v6);
            let net = parse_cidr(&format!("{addr}/{v6_len}")).unwrap();
            prop_assert_eq!(parse_cidr(&net.to_string()).unwrap(), net);
        }

        #[test]
        fn any_text_is_a_cidr_or_refused_without_panic(text in "\\PC{0,48}") {
            let _ = parse_cidr(&text);
            let _ = parse_client_ip(&text);
        }
    }
}
