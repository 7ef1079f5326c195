//! Where a key may be used: client-IP CIDRs, referrer and path patterns with `*` wildcards, and
//! HTTP methods. Each is parsed once, at create/update time, into a type that can only hold a
//! valid value; verify only matches.

mod path;
mod pattern;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::echo;

pub use path::{MAX_PATH_LEN, normalize_path};
pub use pattern::{MAX_PATTERN_LEN, Pattern};

/// Longest method token accepted.
use crate::limits::MAX_METHOD_LEN;

/// An HTTP method, uppercase (`get` is read as `GET`). Held inline: every gateway request
/// names one, and reading it allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Method {
    /// The uppercase letters, then zeros.
    letters: [u8; MAX_METHOD_LEN],
    len: u8,
}

impl Method {
    /// Parses a method token: 1–20 ASCII letters.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty()
            || text.len() > MAX_METHOD_LEN
            || !text.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return Err(format!(
                "method {} must be an HTTP method such as GET",
                echo(text)
            ));
        }
        let mut letters = [0; MAX_METHOD_LEN];
        letters[..text.len()].copy_from_slice(text.as_bytes());
        letters.make_ascii_uppercase();
        Ok(Method {
            letters,
            len: text.len() as u8,
        })
    }

    /// The method, uppercase.
    pub fn as_str(&self) -> &str {
        // ASCII letters only (see `parse`): always UTF-8.
        std::str::from_utf8(&self.letters[..self.len.into()]).unwrap_or_default()
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
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
        m.as_str().to_owned()
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
