//! One timed phase of a run, and what the server reports about itself (memory, counters).

use super::*;

/// The resident memory of process `pid` in bytes (Linux: `VmRSS` of `/proc/<pid>/status`).
pub(super) fn resident_bytes(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read the server's memory (/proc/{pid}/status): {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// Runs one phase: every worker calls `call(i)` in a loop until the deadline.
pub(super) async fn phase<F, Fut>(
    name: String,
    spec: &LoadSpec,
    channels: &[Channel],
    call: F,
) -> PhaseReport
where
    F: Fn(Channel, u64) -> Fut + Clone + Send + Sync + 'static,
    // (answered, made with a valid key)
    Fut: std::future::Future<Output = (bool, bool)> + Send,
{
    let workers = spec.connections * spec.concurrency;
    let histogram = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
    ));
    let valid = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
    ));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let issued = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let budget = spec.requests;
    let per_worker_interval = spec
        .rate
        .map(|rate| Duration::from_secs_f64(workers as f64 / f64::from(rate.max(1))));
    let start = Instant::now();
    let deadline = start + spec.duration;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let channel = channels[w % channels.len()].clone();
        let call = call.clone();
        let histogram = histogram.clone();
        let valid = valid.clone();
        let errors = errors.clone();
        let issued = issued.clone();
        tasks.push(tokio::spawn(async move {
            let mut local =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let mut local_valid = local.clone();
            let mut ticker = per_worker_interval.map(|i| {
                let mut t = tokio::time::interval(i);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                t
            });
            let mut i = w as u64;
            while Instant::now() < deadline {
                if budget
                    .is_some_and(|b| issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= b)
                {
                    break;
                }
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                let sent = Instant::now();
                let (ok, with_valid_key) = call(channel.clone(), i).await;
                let micros = u64::try_from(sent.elapsed().as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let _ = local.record(micros.min(60_000_000));
                if with_valid_key {
                    let _ = local_valid.record(micros.min(60_000_000));
                }
                if !ok {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                i += workers as u64;
            }
            let _ = histogram.lock().await.add(&local);
            let _ = valid.lock().await.add(&local_valid);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = start.elapsed();
    // Every task has finished, so no other reference is left; copy if one were.
    let unwrap = |h: Arc<Mutex<Histogram<u64>>>| {
        Arc::try_unwrap(h)
            .map(Mutex::into_inner)
            .unwrap_or_else(|h| {
                h.try_lock()
                    .map(|g| g.clone())
                    .unwrap_or_else(|_| Histogram::new(3).expect("valid"))
            })
    };
    let histogram = unwrap(histogram);
    let valid = unwrap(valid);
    PhaseReport {
        name,
        requests: histogram.len(),
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        elapsed,
        histogram,
        valid,
    }
}

/// The value of an unlabelled counter on the server's metrics endpoint.
pub(super) async fn server_counter(metrics_addr: &str, name: &str) -> Result<u64, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(metrics_addr)
        .await
        .map_err(|e| format!("metrics at {metrics_addr}: {e}"))?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: keyward\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .await
        .map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .ok_or_else(|| format!("no {name} in the metrics"))
}
