//! What the verify path counts as it goes: answers by code and a latency histogram, in
//! atomics. The service records; `metrics` renders. Kept apart from both so the dependency runs
//! one way (metrics → service → stats).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::verify::Code;

/// Upper bounds of the verify latency buckets, in seconds.
pub(crate) const BUCKETS: [f64; 12] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// Verification counters and the latency histogram.
#[derive(Debug, Default)]
pub struct VerifyMetrics {
    by_code: [AtomicU64; Code::ALL.len()],
    pub(crate) failures: AtomicU64,
    pub(crate) buckets: [AtomicU64; BUCKETS.len()],
    pub(crate) count: AtomicU64,
    pub(crate) sum_nanos: AtomicU64,
}

impl VerifyMetrics {
    /// Records one answered verification.
    pub fn record(&self, code: Option<Code>, elapsed: Duration) {
        match code {
            Some(code) => self.by_code[code as usize].fetch_add(1, Ordering::Relaxed),
            None => self.failures.fetch_add(1, Ordering::Relaxed),
        };
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Verifications answered with `code` so far.
    pub fn count(&self, code: Code) -> u64 {
        self.by_code[code as usize].load(Ordering::Relaxed)
    }
}
