//! Referrer and path patterns: `*` matches within one path segment, a trailing `*` matches
//! everything after it; matched in linear time without allocating.

use std::fmt;

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
pub(super) fn match_cost(pattern: &str, text: &str) -> (bool, usize) {
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
