//! Prometheus metrics: verifications by code, verify latency, and the cache, store, change feed
//! and last-use counters the domain keeps anyway, rendered in the text exposition format and
//! served by the HTTP listener (`crate::http`) on `/metrics`. The values already live in atomics, so they are
//! rendered directly rather than mirrored into a registry.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use std::sync::Arc;

use crate::net::ConnectionGauge;

use crate::service::Keyward;
use crate::stats::BUCKETS;
use crate::verify::Code;

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// The metrics of a service, in Prometheus text format.
pub async fn render(service: &Keyward) -> String {
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
        service.cache().entry_count().await,
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
        "keyward_unknown_keys_shed_total",
        "counter",
        "Unknown keys answered without a store look-up: the per-second budget was spent.",
        service.cache().known().shed(),
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

/// The open-connection gauges of the listeners, in Prometheus text format.
pub(crate) fn render_connections(gauges: &[(&'static str, Arc<ConnectionGauge>)]) -> String {
    let mut out = String::from(
        "# HELP keyward_connections_open Connections open, per listener.\n# TYPE keyward_connections_open gauge\n",
    );
    for (listener, gauge) in gauges {
        let _ = writeln!(
            out,
            "keyward_connections_open{{listener=\"{listener}\"}} {}",
            gauge.open()
        );
    }
    out
}
