//! Account ids and key ids, parsed once at the edge: past it, a value of these types is known
//! to be well-formed, so no layer below checks (or quotes back) raw client text again. The
//! model and the store pass these, never bare strings; they read as text (`Deref<Target =
//! str>`, `Display`) and are written to JSON and the database as plain strings.

use std::fmt;

use rand::TryRngCore;
use rand::distr::{Alphanumeric, Distribution};
use rand::rngs::OsRng;

/// A fresh public id with the given prefix, e.g. `key_…`: 22 random base62 characters.
pub fn new_id(prefix: &str) -> String {
    let mut rng = OsRng.unwrap_err();
    let mut id = format!("{prefix}_");
    id.extend(Alphanumeric.sample_iter(&mut rng).take(22).map(char::from));
    id
}

/// The text behind an id: shared by both id types.
macro_rules! id_text {
    ($name:ident) => {
        impl $name {
            /// The id.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// An id this service checked or issued before (the store's, a cached key's), taken
            /// as it is.
            pub(crate) fn trusted(text: String) -> Self {
                $name(text)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The account a key belongs to: 1–128 characters of `[A-Za-z0-9._:@-]`, chosen by the product.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
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
}

id_text!(AccountId);

/// A key's public id as this service issues them: `key_` and 22 letters or digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
#[sqlx(transparent)]
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

    /// A fresh key id.
    pub fn generate() -> Self {
        KeyId(new_id("key"))
    }
}

id_text!(KeyId);

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
