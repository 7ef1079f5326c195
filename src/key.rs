//! The key format: `{prefix}_{env}_{secret}{checksum}`. Generating keys, parsing presented keys
//! (rejecting typos and random strings before any lookup) and hashing them. The raw key lives
//! only in [`SecretKey`], whose `Debug` and `Display` redact it.

use std::fmt;

use rand::TryRngCore;
use rand::distr::{Alphanumeric, Distribution};
use rand::rngs::OsRng;
use sha2::{Digest as _, Sha256};

/// Random base62 characters in a key: 32 × log2(62) ≈ 190 bits, so even after the display
/// prefix shows 8 of them, more than 140 unknown bits remain.
const SECRET_LEN: usize = 32;
/// Base62 characters of the CRC32 checksum (62^6 > 2^32).
const CHECKSUM_LEN: usize = 6;
/// How many leading characters of a key are stored and shown to identify it.
pub const DISPLAY_PREFIX_LEN: usize = 16;

/// The environment a key belongs to, visible in the key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Production traffic.
    Live,
    /// Test traffic; a test key can never act on live data.
    Test,
}

impl Environment {
    /// The environment's name as it appears in keys and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }

    /// Parses `live` or `test`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(Environment::Live),
            "test" => Some(Environment::Test),
            _ => None,
        }
    }
}

/// The service-wide brand prefix of keys (`kw` by default): 1–10 chars of `[a-z0-9]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Validates a configured prefix.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_len = (1..=10).contains(&s.len());
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if ok_len && ok_chars {
            Ok(KeyPrefix(s.to_owned()))
        } else {
            Err(format!(
                "key prefix {s:?} must be 1-10 characters of [a-z0-9]"
            ))
        }
    }

    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyPrefix {
    fn default() -> Self {
        KeyPrefix("kw".to_owned())
    }
}

/// A raw key. Exists only between generation and the response that shows it, or while a
/// presented key is parsed. `Debug` and `Display` never print it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    /// The raw key text, for the one response that returns it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([REDACTED])")
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// SHA-256 of a raw key: the only form in which a key is stored or cached.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// Hashes a raw key.
    pub fn of(raw: &str) -> Self {
        KeyDigest(Sha256::digest(raw.as_bytes()).into())
    }

    /// The digest bytes, for the store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Rebuilds a digest read from the store or given for an import.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(KeyDigest)
    }

    /// The digest as 64 lowercase hex digits (change notifications, `root_key_sha256`).
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads 64 hex digits; `None` for anything else.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(KeyDigest(bytes))
    }
}

/// Hashes a [`KeyDigest`] by taking its first 8 bytes: a SHA-256 digest is already uniformly
/// distributed, so hashing it again (SipHash, moka's default) is wasted work on the hot path.
#[derive(Debug, Default, Clone, Copy)]
pub struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(head);
    }
}

/// The hasher builder for maps keyed by [`KeyDigest`].
pub type DigestHashBuilder = std::hash::BuildHasherDefault<DigestHasher>;

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDigest([REDACTED])")
    }
}

/// A new key, just generated: the secret (shown once) and what is stored about it.
#[derive(Debug)]
pub struct GeneratedKey {
    /// The raw key, for the response that creates it.
    pub secret: SecretKey,
    /// What is stored instead of the key.
    pub digest: KeyDigest,
    /// The first characters of the key, stored for listing.
    pub display_prefix: String,
}

/// What a well-formed presented key tells before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey {
    /// The environment named in the key.
    pub environment: Environment,
    /// The key's hash, to look it up by.
    pub digest: KeyDigest,
}

/// Generates and parses keys for one configured prefix.
#[derive(Debug, Clone, Default)]
pub struct KeyFormat {
    prefix: KeyPrefix,
}

impl KeyFormat {
    /// A format for the given brand prefix.
    pub fn new(prefix: KeyPrefix) -> Self {
        KeyFormat { prefix }
    }

    /// Generates a new key of the given environment from the OS CSPRNG.
    pub fn generate(&self, environment: Environment) -> GeneratedKey {
        let mut rng = OsRng.unwrap_err();
        let mut raw = format!("{}_{}_", self.prefix.as_str(), environment.as_str());
        raw.extend(
            Alphanumeric
                .sample_iter(&mut rng)
                .take(SECRET_LEN)
                .map(char::from),
        );
        let checksum = checksum(&raw);
        raw.push_str(std::str::from_utf8(&checksum).expect("base62 digits are ASCII"));
        GeneratedKey {
            digest: KeyDigest::of(&raw),
            display_prefix: raw[..DISPLAY_PREFIX_LEN].to_owned(),
            secret: SecretKey(raw),
        }
    }

    /// Checks a presented key's shape and checksum. `None` means malformed: no lookup is due.
    pub fn parse(&self, raw: &str) -> Option<ParsedKey> {
        let rest = raw.strip_prefix(self.prefix.as_str())?.strip_prefix('_')?;
        // `live_` or `test_`: both four letters (no search for the separator).
        let environment = Environment::parse(rest.get(..4)?)?;
        let body = rest.get(4..)?.strip_prefix('_')?;
        // Every byte looked at, without stopping at the first bad one: a loop without an exit
        // the compiler can run over many bytes at once (every verify checks a key).
        if body.len() != SECRET_LEN + CHECKSUM_LEN
            || !body
                .bytes()
                .fold(true, |all, b| all & b.is_ascii_alphanumeric())
        {
            return None;
        }
        let (head, given) = raw.split_at(raw.len() - CHECKSUM_LEN);
        if checksum(head) != given.as_bytes() {
            return None;
        }
        Some(ParsedKey {
            environment,
            digest: KeyDigest::of(raw),
        })
    }
}

/// CRC32 of everything before the checksum, as 6 zero-padded base62 characters (written on
/// the stack: every verify computes one).
fn checksum(head: &str) -> [u8; CHECKSUM_LEN] {
    padded_base62(crc32fast::hash(head.as_bytes()))
}

fn padded_base62(crc: u32) -> [u8; CHECKSUM_LEN] {
    let mut digits = [0; CHECKSUM_LEN];
    let len = base62::encode_bytes(crc, &mut digits).expect("a u32 has at most 6 base62 digits");
    let mut out = [b'0'; CHECKSUM_LEN];
    out[CHECKSUM_LEN - len..].copy_from_slice(&digits[..len]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format() -> KeyFormat {
        KeyFormat::default()
    }

    #[test]
    fn checksums_are_six_zero_padded_base62_digits() {
        for crc in [
            0,
            1,
            61,
            62,
            3_843,
            3_844,
            916_132_831,
            916_132_832,
            u32::MAX,
        ] {
            let expected = format!("{:0>6}", base62::encode(crc));
            assert_eq!(padded_base62(crc), expected.as_bytes(), "{crc}");
        }
    }

    #[test]
    fn generated_keys_parse_and_fit_one_sha256_block() {
        for env in [Environment::Live, Environment::Test] {
            let key = format().generate(env);
            let raw = key.secret.expose();
            assert!(raw.starts_with(&format!("kw_{}_", env.as_str())));
            assert!(raw.len() <= 55, "{} bytes", raw.len());
            let parsed = format().parse(raw).expect("generated key parses");
            assert_eq!(parsed.environment, env);
            assert_eq!(parsed.digest, key.digest);
            assert_eq!(key.display_prefix, raw[..16]);
        }
    }

    #[test]
    fn keys_are_distinct() {
        let a = format().generate(Environment::Live);
        let b = format().generate(Environment::Live);
        assert_ne!(a.secret, b.secret);
    }

    #[test]
    fn longest_prefix_still_fits_one_block() {
        let format = KeyFormat::new(KeyPrefix::parse("abcdefghij").unwrap());
        let key = format.generate(Environment::Live);
        assert!(key.secret.expose().len() <= 55);
        assert!(format.parse(key.secret.expose()).is_some());
    }

    #[test]
    fn rejects_everything_but_the_format() {
        let raw = format()
            .generate(Environment::Live)
            .secret
            .expose()
            .to_owned();
        let mut typo = raw.clone().into_bytes();
        typo[12] = if typo[12] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        let cases = [
            String::new(),
            "kw_live_".to_owned(),
            raw.replacen("kw_", "xx_", 1),
            raw.replacen("_live_", "_prod_", 1),
            raw[..raw.len() - 1].to_owned(),
            format!("{raw}0"),
            raw.replacen(&raw[10..11], "-", 1),
            typo,
        ];
        for case in cases {
            assert!(format().parse(&case).is_none(), "accepted {case:?}");
        }
    }

    #[test]
    fn a_correct_checksum_does_not_admit_other_characters() {
        let raw = format()
            .generate(Environment::Live)
            .secret
            .expose()
            .to_owned();
        let head = &raw[..raw.len() - CHECKSUM_LEN];
        let secret_at = "kw_live_".len();
        for position in secret_at..head.len() {
            for bad in ['-', '+', '/', '.', ' ', '\u{7f}'] {
                let mut changed = head.to_owned();
                changed.replace_range(position..position + 1, &bad.to_string());
                let checksum = checksum(&changed);
                changed.push_str(std::str::from_utf8(&checksum).unwrap());
                assert!(format().parse(&changed).is_none(), "accepted {changed:?}");
            }
        }
    }

    #[test]
    fn prefix_validation() {
        assert!(KeyPrefix::parse("kw").is_ok());
        assert!(KeyPrefix::parse("acme2").is_ok());
        assert!(KeyPrefix::parse("").is_err());
        assert!(KeyPrefix::parse("Kw").is_err());
        assert!(KeyPrefix::parse("k_w").is_err());
        assert!(KeyPrefix::parse("abcdefghijk").is_err());
    }

    #[test]
    fn digests_round_trip_as_hex() {
        let digest = KeyDigest::of("kw_live_x");
        assert_eq!(KeyDigest::from_hex(&digest.to_hex()), Some(digest));
        assert_eq!(digest.to_hex().len(), 64);
        for bad in ["", "zz", &"g".repeat(64), &"a".repeat(63), &"é".repeat(32)] {
            assert_eq!(KeyDigest::from_hex(bad), None, "{bad}");
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let key = format().generate(Environment::Test);
        let raw = key.secret.expose().to_owned();
        for shown in [
            format!("{:?}", key),
            format!("{}", key.secret),
            format!("{:?}", key.digest),
        ] {
            assert!(!shown.contains(&raw[8..]), "{shown}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panic(text in "\\PC{0,80}") {
            let _ = KeyFormat::default().parse(&text);
        }

        #[test]
        fn generated_keys_parse_and_any_one_character_change_is_caught(
            live in any::<bool>(),
            position in 0usize..46,
            replacement in "[A-Za-z0-9]",
        ) {
            let format = KeyFormat::default();
            let env = if live { Environment::Live } else { Environment::Test };
            let generated = format.generate(env);
            let raw = generated.secret.expose();
            let parsed = format.parse(raw).expect("a generated key parses");
            prop_assert_eq!(parsed.environment, env);
            prop_assert_eq!(parsed.digest, generated.digest);
            // Change one character of the secret or checksum (after `kw_live_`).
            let position = 8 + position % (raw.len() - 8);
            let mut changed = raw.to_owned();
            if changed[position..position + 1] != *replacement {
                changed.replace_range(position..position + 1, &replacement);
                prop_assert!(format.parse(&changed).is_none(), "{position}");
            }
        }
    }
}
