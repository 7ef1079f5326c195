//! Account ids and key ids, parsed once at the edge: past it, a value of these types is known
//! to be well-formed, so no layer below checks (or quotes back) raw client text again.

use std::fmt;

/// The account a key belongs to: 1–128 characters of `[A-Za-z0-9._:@-]`, chosen by the product.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountId(String);

impl AccountId {
    /// Parses an account id; the error says what is wrong without quoting the input.
    pub fn parse(text: &str) -> Result<Self, String> {
        let ok_chars = text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:@-".contains(&b));
        if text.is_empty() {
            Err("is required".to_owned())
        } else if text.len() > 128 || !ok_chars {
            Err("must be 1-128 characters of [A-Za-z0-9._:@-]".to_owned())
        } else {
            Ok(AccountId(text.to_owned()))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key's public id as this service issues them: `key_` and 22 letters or digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// Parses a key id; anything else (a pasted secret, a NUL byte) is refused unquoted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let body = text.strip_prefix("key_").unwrap_or_default();
        if text.is_empty() {
            Err("is required".to_owned())
        } else if body.len() != 22 || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Err("is not a key id (key_ followed by 22 letters and digits)".to_owned())
        } else {
            Ok(KeyId(text.to_owned()))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids() {
        assert!(AccountId::parse("acme-corp_1@eu").is_ok());
        assert!(AccountId::parse("a:b.c").is_ok());
        for bad in ["", "has space", "ac\0me", "ünï"] {
            assert!(AccountId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(AccountId::parse(&"a".repeat(128)).is_ok());
        assert!(AccountId::parse(&"a".repeat(129)).is_err());
    }

    #[test]
    fn key_ids() {
        assert!(KeyId::parse("key_YbjKB8UR4Q1q1YqsBZAEUW").is_ok());
        for bad in [
            "",
            "key_",
            "key_YbjKB8UR4Q1q1YqsBZAEU\0",
            "kw_live_Scf5dmYDbbZgNUFLn2pWH0euOufMEdoq2YUb1j",
            "key_YbjKB8UR4Q1q1YqsBZAEUWW",
        ] {
            let error = KeyId::parse(bad).unwrap_err();
            assert!(!error.contains("Scf5"), "never quotes the input");
        }
    }
}
