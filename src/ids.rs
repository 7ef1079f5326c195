//! Account ids and key ids, parsed once at the edge: past it, a value of these types is known
//! to be well-formed, so no layer below checks (or quotes back) raw client text again. The
//! model and the store pass these, never bare strings; they read as text (`Deref<Target =
//! str>`, `Display`) and are written to JSON and the database as plain strings.

use std::fmt;

use rand::distr::{Alphanumeric, Distribution};

/// Digits of the time part of an id, in ascending ASCII order (so ids sort by time).
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Characters of an id's time part: milliseconds since the epoch, base62 (62⁷ ms ≈ 111 years).
const TIME_CHARS: usize = 7;

/// A fresh public id with the given prefix, e.g. `key_…`: 22 base62 characters, the first 7
/// the creation time in milliseconds and the other 15 random (89 bits, from the thread's
/// cryptographic generator). Ids made later sort after earlier ones, so the database's unique
/// indexes on ids grow at one end instead of at random places (bulk imports stay fast at
/// millions of rows); the time they reveal is the record's public `created_at` anyway.
pub fn new_id(prefix: &str) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    new_id_at(prefix, millis)
}

fn new_id_at(prefix: &str, millis: u128) -> String {
    let mut time = [0u8; TIME_CHARS];
    let mut rest = millis;
    for digit in time.iter_mut().rev() {
        *digit = BASE62[(rest % 62) as usize];
        rest /= 62;
    }
    let mut id = String::with_capacity(prefix.len() + 1 + 22);
    id.push_str(prefix);
    id.push('_');
    id.extend(time.iter().map(|&b| char::from(b)));
    id.extend(
        Alphanumeric
            .sample_iter(rand::rng())
            .take(22 - TIME_CHARS)
            .map(char::from),
    );
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

    #[test]
    fn fresh_ids_parse_differ_and_sort_by_time() {
        let a = KeyId::generate();
        assert_eq!(KeyId::parse(&a).as_ref(), Ok(&a));
        assert_ne!(KeyId::generate(), a);
        // Later milliseconds sort later, across a carry of every time digit.
        let times = [
            0u128,
            61,
            62,
            3_843,
            3_844,
            1_767_225_600_000,
            3_521_614_606_207,
        ];
        let ids: Vec<String> = times.iter().map(|&t| new_id_at("key", t)).collect();
        for pair in ids.windows(2) {
            assert!(pair[0][..11] < pair[1][..11], "{pair:?}");
        }
        assert!(ids.iter().all(|id| KeyId::parse(id).is_ok()), "{ids:?}");
    }
}
