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

/// The RPCs counted one by one; any other path counts as `other` (a client cannot grow the
/// label set by calling made-up methods).
pub(crate) static RPCS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    let mut rpcs = crate::proto::SERVED_RPCS.to_vec();
    rpcs.extend([
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        // The slot of every other path.
        "/other/other",
        "/unknown/unknown",
    ]);
    rpcs
});

/// gRPC status codes, as the common Prometheus middlewares name them (Go's spelling).
pub(crate) const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// Per-RPC counters by gRPC code and latency histograms, process-wide, in atomics.
#[derive(Debug)]
pub struct RpcMetrics {
    pub(crate) handled: Vec<[AtomicU64; GRPC_CODES.len()]>,
    pub(crate) buckets: Vec<[AtomicU64; BUCKETS.len()]>,
    pub(crate) count: Vec<AtomicU64>,
    pub(crate) sum_nanos: Vec<AtomicU64>,
}

impl Default for RpcMetrics {
    fn default() -> Self {
        RpcMetrics {
            handled: RPCS.iter().map(|_| Default::default()).collect(),
            buckets: RPCS.iter().map(|_| Default::default()).collect(),
            count: RPCS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: RPCS.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// The process's RPC metrics.
pub fn rpc_metrics() -> &'static RpcMetrics {
    static METRICS: std::sync::LazyLock<RpcMetrics> = std::sync::LazyLock::new(Default::default);
    &METRICS
}

impl RpcMetrics {
    /// Records one handled call of `path` that ended with gRPC `code` (0–16) after `elapsed`.
    pub fn record(&self, path: &str, code: i32, elapsed: Duration) {
        let rpc = RPCS
            .iter()
            .position(|r| *r == path)
            .unwrap_or(RPCS.len() - 2);
        let code = usize::try_from(code)
            .ok()
            .filter(|c| *c < GRPC_CODES.len())
            .unwrap_or(2);
        self.handled[rpc][code].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[rpc][i].fetch_add(1, Ordering::Relaxed);
        }
        self.count[rpc].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos[rpc].fetch_add(nanos, Ordering::Relaxed);
    }
}
