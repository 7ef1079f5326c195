//! Time as the service keeps it: microseconds since the Unix epoch, the same integer in both
//! stores, so conformance tests compare exact values across backends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// 0001-01-01T00:00:00Z in seconds since the epoch.
const MIN_SECS: i64 = -62_135_596_800;
/// 9999-12-31T23:59:59Z in seconds since the epoch.
const MAX_SECS: i64 = 253_402_300_799;

/// A point in time, in microseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The time `micros` microseconds after the epoch (before it when negative).
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Timestamp(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
    }

    /// Microseconds since the epoch.
    pub fn micros(self) -> i64 {
        self.0
    }

    /// This time plus a duration, saturating instead of overflowing.
    pub fn saturating_add(self, d: Duration) -> Self {
        let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(micros))
    }

    /// Seconds and sub-second nanoseconds, the shape of `google.protobuf.Timestamp`.
    pub fn to_parts(self) -> (i64, i32) {
        let secs = self.0.div_euclid(1_000_000);
        // rem_euclid(1_000_000) * 1_000 < 10^9, which always fits an i32.
        let nanos = (self.0.rem_euclid(1_000_000) * 1_000) as i32;
        (secs, nanos)
    }

    /// Builds a timestamp from seconds and nanoseconds; `None` outside the range
    /// `google.protobuf.Timestamp` allows (years 1 to 9999), which every protobuf runtime can
    /// decode.
    pub fn from_parts(secs: i64, nanos: i32) -> Option<Self> {
        if !(0..1_000_000_000).contains(&nanos) || !(MIN_SECS..=MAX_SECS).contains(&secs) {
            return None;
        }
        let micros = secs
            .checked_mul(1_000_000)?
            .checked_add(i64::from(nanos) / 1_000)?;
        Some(Timestamp(micros))
    }

    /// The time as RFC 3339 text (`2030-01-31T12:00:00Z`, fractions only when present).
    pub fn to_rfc3339(self) -> String {
        let (seconds, nanos) = self.to_parts();
        prost_types::Timestamp { seconds, nanos }.to_string()
    }

    /// Parses RFC 3339 text; `None` for anything else or a time outside the years 1 to 9999.
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let t: prost_types::Timestamp = text.trim().parse().ok()?;
        Timestamp::from_parts(t.seconds, t.nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        for t in [0, 1, 999_999, 1_700_000_000_123_456, -1, -1_500_000] {
            let (s, n) = Timestamp(t).to_parts();
            assert_eq!(Timestamp::from_parts(s, n), Some(Timestamp(t)));
        }
        assert_eq!(Timestamp::from_parts(0, -1), None);
        assert_eq!(Timestamp::from_parts(i64::MAX, 0), None);
        assert!(Timestamp::from_parts(MAX_SECS, 999_999_999).is_some());
        assert_eq!(Timestamp::from_parts(MAX_SECS + 1, 0), None, "year 10000");
        assert_eq!(Timestamp::from_parts(MIN_SECS - 1, 0), None, "year 0");
    }
}
