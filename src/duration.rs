//! Human durations as operators and the CLI write them: `30d`, `90d`, `1y`, `12h`, `5m`, `10s`,
//! `2w`, and `never` for TTLs. A year is 365 days.

use std::time::Duration;

/// The longest TTL a key may have: 100 years, so every expiry stays a timestamp any protobuf
/// runtime can decode (year 9999 at the latest).
pub const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses `<n><unit>` with unit `s`, `m`, `h`, `d`, `w` or `y`.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: s, m, h, d, w or y (e.g. 30d)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} must start with a whole number (e.g. 30d)"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => {
            return Err(format!(
                "{text:?} has unknown unit {unit:?}: use s, m, h, d, w or y"
            ));
        }
    };
    n.checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

/// Parses a TTL: a duration as [`parse`] reads it, or `never` (`None`).
pub fn parse_ttl(text: &str) -> Result<Option<Duration>, String> {
    if text.trim().eq_ignore_ascii_case("never") {
        return Ok(None);
    }
    let d = parse(text)?;
    if d.is_zero() {
        return Err(format!("{text:?} must be longer than zero"));
    }
    if d > MAX_TTL {
        return Err(format!("{text:?} is longer than 100 years"));
    }
    Ok(Some(d))
}

/// A duration in the largest unit that divides it exactly (`120s` → `2m`), as [`parse`] reads.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    let units = [
        ("y", 365 * 86_400),
        ("w", 7 * 86_400),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
    ];
    for (unit, size) in units {
        if secs > 0 && secs.is_multiple_of(size) {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// Serde adapter for a duration written as [`parse`] reads it (`10s`, `5m`, `2w`): a value
/// that does not parse is an error naming the setting, never a silent default.
pub mod human {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use std::time::Duration;

    /// Writes `d` as [`super::format`] spells it.
    pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format(*d))
    }

    /// Reads a duration as [`super::parse`] does.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse(&text).map_err(D::Error::custom)
    }
}

/// Serde adapter for a TTL: a duration as [`parse_ttl`] reads it, or `never` (`None`).
pub mod ttl {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use std::time::Duration;

    /// Writes `never` or the duration.
    pub fn serialize<S: Serializer>(
        d: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            None => serializer.serialize_str("never"),
            Some(d) => serializer.serialize_str(&super::format(*d)),
        }
    }

    /// Reads a TTL as [`super::parse_ttl`] does.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_ttl(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_ttls() {
        let day = 86_400;
        assert_eq!(parse_ttl("30d"), Ok(Some(Duration::from_secs(30 * day))));
        assert_eq!(parse_ttl("60d"), Ok(Some(Duration::from_secs(60 * day))));
        assert_eq!(parse_ttl("90d"), Ok(Some(Duration::from_secs(90 * day))));
        assert_eq!(parse_ttl("1y"), Ok(Some(Duration::from_secs(365 * day))));
        assert_eq!(parse_ttl("never"), Ok(None));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_ttl("10000y").is_err());
        for text in ["2m", "5s", "1h", "3d", "2w", "1y", "90s"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }

    #[test]
    fn rejects_junk() {
        for bad in [
            "",
            "d",
            "30",
            "30x",
            "-1d",
            "0d",
            "1.5d",
            "99999999999999999999y",
        ] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panic(text in "\\PC{0,24}") {
            let _ = parse(&text);
            let _ = parse_ttl(&text);
        }

        #[test]
        fn numbers_with_units_round_trip(n in 0u64..1_000_000, unit in 0usize..6) {
            let (suffix, secs) = [("s", 1), ("m", 60), ("h", 3_600), ("d", 86_400), ("w", 604_800), ("y", 31_536_000)][unit];
            prop_assert_eq!(parse(&format!("{n}{suffix}")), Ok(Duration::from_secs(n * secs)));
            let ttl = parse_ttl(&format!("{n}{suffix}"));
            let d = Duration::from_secs(n * secs);
            prop_assert_eq!(ttl.is_ok(), n > 0 && d <= MAX_TTL);
        }
    }
}
