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
        "keyward_unknown_keys_shed_total",
        "counter",
        "Unknown keys answered without a store look-up: the per-second budget was spent.",
        service.cache().known().shed(),
    );
    metric(
        &mut out,
        "keyward_known_keys",
        "gauge",
        "Key digests in the known set (docs/operations.md).",
        service.cache().known().len() as u64,
    );
    metric(
        &mut out,
        "keyward_known_keys_loaded",
        "gauge",
        "1 once the known set holds every stored digest; 0 while it loads at start (every \
         unknown key is then looked up).",
        u64::from(service.cache().known().is_complete()),
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
    metric(
        &mut out,
        "keyward_usage_statements_total",
        "counter",
        "Statements that wrote counted decisions (usage) to the database.",
        service.usage_counter().statements(),
    );
    metric(
        &mut out,
        "keyward_usage_decisions_written_total",
        "counter",
        "Decisions whose usage counts were written to the database.",
        service.usage_counter().written(),
    );
    if let Some(engine) = service.rate_limit_engine() {
        render_engine(&mut out, engine);
    }
    render_rpcs(&mut out);
    render_process(&mut out);
    let _ = writeln!(
        out,
        "# HELP keyward_build_info The running keyward's version.\n# TYPE keyward_build_info gauge\nkeyward_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    out
}

/// The shared rate-limit engine's state and use.
fn render_engine(out: &mut String, engine: &crate::ratelimit::engine::Engine) {
    let stats = engine.stats();
    metric(
        out,
        "keyward_rate_limit_store_up",
        "gauge",
        "1 while the shared rate-limit store answers; 0 while limits fall back to local counters.",
        u64::from(engine.is_up()),
    );
    metric(
        out,
        "keyward_rate_limit_store_replicas",
        "gauge",
        "Replicas announced in the rate-limit store (the divisor of the fallback limits).",
        u64::from(engine.replicas()),
    );
    let _ = writeln!(
        out,
        "# HELP keyward_rate_limit_reservations_total Blocks asked of the rate-limit store, by result.\n# TYPE keyward_rate_limit_reservations_total counter"
    );
    for (result, count) in [
        ("granted", &stats.granted),
        ("refused", &stats.refused),
        ("failed", &stats.failed),
    ] {
        let _ = writeln!(
            out,
            "keyward_rate_limit_reservations_total{{result=\"{result}\"}} {}",
            count.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    metric(
        out,
        "keyward_rate_limit_fallback_decisions_total",
        "counter",
        "Verify decisions made on local counters because the rate-limit store was unreachable.",
        stats
            .fallback_decisions
            .load(std::sync::atomic::Ordering::Relaxed),
    );
}

/// Per-RPC counters and latency histograms, named as the common gRPC Prometheus middlewares
/// name them (`grpc_server_handled_total`, `grpc_server_handling_seconds`); only RPCs that
/// were called appear.
fn render_rpcs(out: &mut String) {
    use crate::stats::{GRPC_CODES, RPCS, rpc_metrics};
    let m = rpc_metrics();
    let _ = writeln!(
        out,
        "# HELP grpc_server_handled_total RPCs completed on the server, by method and gRPC code.\n# TYPE grpc_server_handled_total counter"
    );
    let labels = |path: &str| {
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("other", "other"));
        format!("grpc_type=\"unary\",grpc_service=\"{service}\",grpc_method=\"{method}\"")
    };
    for (i, path) in RPCS.iter().enumerate() {
        for (c, name) in GRPC_CODES.iter().enumerate() {
            let n = m.handled[i][c].load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "grpc_server_handled_total{{{},grpc_code=\"{name}\"}} {n}",
                    labels(path)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP grpc_server_handling_seconds Time to handle an RPC, by method.\n# TYPE grpc_server_handling_seconds histogram"
    );
    for (i, path) in RPCS.iter().enumerate() {
        let count = m.count[i].load(Ordering::Relaxed);
        if count == 0 {
            continue;
        }
        let labels = labels(path);
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&m.buckets[i]) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "grpc_server_handling_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let sum = m.sum_nanos[i].load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "grpc_server_handling_seconds_bucket{{{labels},le=\"+Inf\"}} {count}\n\
             grpc_server_handling_seconds_sum{{{labels}}} {sum}\n\
             grpc_server_handling_seconds_count{{{labels}}} {count}"
        );
    }
}

/// The standard process metrics, read from `/proc/self` (Linux; absent elsewhere).
fn render_process(out: &mut String) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(kb) = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    {
        metric(
            out,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            kb * 1024,
        );
    }
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at index 2 ("state").
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime, stime are fields 14 and 15 of stat (indexes 11, 12 here), in USER_HZ (100/s).
    if let (Some(user), Some(system)) = (
        fields.get(11).and_then(|v| v.parse::<u64>().ok()),
        fields.get(12).and_then(|v| v.parse::<u64>().ok()),
    ) {
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}",
            (user + system) as f64 / 100.0
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metric(
            out,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            fds.count() as u64,
        );
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    if let Some(max) = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok())
    {
        metric(
            out,
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max,
        );
    }
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
