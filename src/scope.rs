//! Scope names: permission groups named `resource:action`, lowercase, with no wildcard form,
//! so nothing broader than what was named can be granted by accident.

/// The scope that lets a key manage every account.
pub const ROOT: &str = "root";
/// The scope that lets a key read keys of its own account.
pub const KEYS_READ: &str = "keys:read";
/// The scope that lets a key manage keys of its own account.
pub const KEYS_WRITE: &str = "keys:write";

/// The scope that lets a key call the gateway-facing faces (Verify) when caller authentication
/// is on.
pub const KEYS_VERIFY: &str = "keys:verify";

/// The reserved system scopes, always in the catalog, never implied by `grant_all`.
pub const RESERVED: [&str; 4] = [KEYS_READ, KEYS_WRITE, KEYS_VERIFY, ROOT];

/// The longest scope name: two parts of at most 64 characters and the colon.
pub const MAX_NAME_LEN: usize = 129;

/// Scope names a request needs: well-formed ([`check_name`], checked at the edge), borrowed
/// from the request; a few fit without an allocation.
pub type RequiredScopes<'a> = smallvec::SmallVec<[&'a str; 4]>;

/// Drops repeated names from a list, keeping each first occurrence in order: a linear search
/// while the list is short (a request names a few), a set when it is long, so even a hostile
/// list of the most names allowed costs linear work.
pub fn dedup(names: &mut RequiredScopes<'_>) {
    if names.len() <= 16 {
        let mut i = 1;
        while i < names.len() {
            if names[..i].contains(&names[i]) {
                names.remove(i);
            } else {
                i += 1;
            }
        }
        return;
    }
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    names.retain(|name| seen.insert(*name));
}

/// Whether `name` is a reserved system scope.
pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name)
}

/// A well-formed scope name (see [`check_name`]), parsed once at the edge.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopeName(String);

impl ScopeName {
    /// Parses a scope name; the error names the problem.
    pub fn parse(text: &str) -> Result<Self, String> {
        check_name(text)?;
        Ok(ScopeName(text.to_owned()))
    }

    /// Like [`parse`](Self::parse), keeping the given string (no copy).
    pub fn parse_owned(text: String) -> Result<Self, String> {
        check_name(&text)?;
        Ok(ScopeName(text))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ScopeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<ScopeName> for String {
    fn from(name: ScopeName) -> String {
        name.0
    }
}

impl std::fmt::Display for ScopeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The bytes a scope name's parts are made of: `[a-z0-9_.-]` (a table: names are checked on
/// every Verify).
const NAME_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-');
        b += 1;
    }
    table
};

/// Checks that `name` is a well-formed scope: `resource:action` of `[a-z0-9_.-]`, each part
/// starting with a letter, or the reserved `root`. Returns the reason when it is not.
pub fn check_name(name: &str) -> Result<(), String> {
    if name == ROOT {
        return Ok(());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "scope {} is longer than {MAX_NAME_LEN} characters",
            crate::error::echo(name)
        ));
    }
    let part_ok = |p: &str| {
        p.len() <= 64
            && p.starts_with(|c: char| c.is_ascii_lowercase())
            && p.bytes().all(|b| NAME_BYTE[usize::from(b)])
    };
    let colon = name.bytes().position(|b| b == b':');
    match colon.map(|i| (&name[..i], &name[i + 1..])) {
        Some((resource, action)) if part_ok(resource) && part_ok(action) => Ok(()),
        _ => Err(format!(
            "scope {} is not of the form resource:action (lowercase letters, digits, '_', '.', '-')",
            crate::error::echo(name)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keeps_first_occurrences_in_order() {
        for len in [0, 1, 5, 16, 17, 200] {
            // Every name three times, interleaved: a, b, a, c, b, a, ...
            let names: Vec<String> = (0..len).map(|i| format!("s{}:x", i % 7)).collect();
            let mut expected: Vec<&str> = Vec::new();
            for n in &names {
                if !expected.contains(&n.as_str()) {
                    expected.push(n);
                }
            }
            let mut got: RequiredScopes<'_> = names.iter().map(String::as_str).collect();
            dedup(&mut got);
            assert_eq!(got.as_slice(), expected, "{len} names");
        }
    }

    #[test]
    fn accepts_resource_action() {
        for ok in [
            "videos:read",
            "members:email",
            "keys:write",
            "root",
            "ai.image:generate",
        ] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn scope_names_parse_once() {
        assert_eq!(
            ScopeName::parse("videos:read").unwrap().as_str(),
            "videos:read"
        );
        assert!(ScopeName::parse("videos:*").is_err());
        assert!(ScopeName::parse(&"a".repeat(200)).is_err());
    }

    #[test]
    fn rejects_wildcards_and_junk() {
        for bad in [
            "*",
            "videos:*",
            "videos",
            ":read",
            "videos:",
            "Videos:read",
            "a:b:c",
            "1x:read",
            "",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
