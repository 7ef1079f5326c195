//! Prometheus metrics: verifications by code, verify latency, and the cache, store, change feed
//! and last-use counters the domain keeps anyway, rendered in the text exposition format and
//! served over plain HTTP on `--metrics-addr`. The values already live in atomics, so they are
//! rendered directly rather than mirrored into a registry.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::service::Keyward;
use crate::verify::Code;

/// Upper bounds of the verify latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// Verification counters and the latency histogram.
#[derive(Debug, Default)]
pub struct VerifyMetrics {
    by_code: [AtomicU64; Code::ALL.len()],
    failures: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
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

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The metrics of a service, in Prometheus text format.
pub fn render(service: &Keyward) -> String {
    let mut out = String::new();
    let v = service.verify_metrics();
    let _ = writeln!(
        out,
        "# HELP keyward_verifications_total Verify answers by code."
    );
    let _ = writeln!(out, "# TYPE keyward_verifications_total counter");
    for code in Code::ALL {
        let _ = writeln!(
            out,
            "keyward_verifications_total{{code=\"{}\"}} {}",
            code.as_str(),
            v.count(code)
        );
    }
    metric(
        &mut out,
        "keyward_verify_failures_total",
        "counter",
        "Verify calls answered with a gRPC error (store unavailable, internal).",
        v.failures.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP keyward_verify_duration_seconds Time to decide a verify request."
    );
    let _ = writeln!(out, "# TYPE keyward_verify_duration_seconds histogram");
    let mut cumulative = 0;
    for (bound, bucket) in BUCKETS.iter().zip(&v.buckets) {
        cumulative += bucket.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "keyward_verify_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    let count = v.count.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "keyward_verify_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    );
    let sum = v.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    let _ = writeln!(
        out,
        "keyward_verify_duration_seconds_sum {sum}\nkeyward_verify_duration_seconds_count {count}"
    );

    let c = service.cache().stats();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    metric(
        &mut out,
        "keyward_cache_hits_total",
        "counter",
        "Key lookups answered from the cache.",
        load(&c.hits),
    );
    metric(
        &mut out,
        "keyward_cache_misses_total",
        "counter",
        "Key lookups that went to the store.",
        load(&c.misses),
    );
    metric(
        &mut out,
        "keyward_cache_negative_hits_total",
        "counter",
        "Unknown keys answered from the negative cache.",
        load(&c.negative_hits),
    );
    metric(
        &mut out,
        "keyward_cache_stale_hits_total",
        "counter",
        "Keys served stale because the store was unavailable.",
        load(&c.stale_hits),
    );
    metric(
        &mut out,
        "keyward_cache_entries",
        "gauge",
        "Keys in the cache.",
        service.cache().entry_count(),
    );
    metric(
        &mut out,
        "keyward_store_lookups_total",
        "counter",
        "Key queries sent to the store.",
        load(&c.store_lookups),
    );
    metric(
        &mut out,
        "keyward_store_errors_total",
        "counter",
        "Key queries that failed.",
        load(&c.store_errors),
    );
    metric(
        &mut out,
        "keyward_listener_reconnects_total",
        "counter",
        "Change-feed (re)connections after which the cache was re-read.",
        service.feed_interruptions(),
    );
    metric(
        &mut out,
        "keyward_last_used_writes_total",
        "counter",
        "Batched last-use writes.",
        service.last_used().writes(),
    );
    out
}

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, service: std::sync::Arc<Keyward>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&request);
            let (status, body) = if line.starts_with("GET /metrics ") {
                ("200 OK", render(&service))
            } else {
                ("404 Not Found", "try /metrics\n".to_owned())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
