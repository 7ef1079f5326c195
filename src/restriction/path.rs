//! Request paths made comparable once per request, before path patterns match them.

pub use crate::limits::MAX_PATH_LEN;

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
