//! `keyward bench`: a load generator that drives a running server through the generated tonic
//! client, and a propagation probe for revocations across two replicas. It creates its own
//! keys for the run (with a root key) and revokes them afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Mutex;
use tonic::Request;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use keyward::key::{Environment, KeyFormat};
use keyward::proto::manage_service_client::ManageServiceClient;
use keyward::proto::verify_service_client::VerifyServiceClient;
use keyward::proto::{self, VerifyCode};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Server address, `http://host:port`.
    pub addr: String,
    /// A root key, to create (and afterwards revoke) the keys of the run.
    pub root_key: String,
    /// HTTP/2 connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub concurrency: usize,
    /// How long each phase runs (at most, with `requests`).
    pub duration: Duration,
    /// Requests per phase; `None` runs for `duration`.
    pub requests: Option<u64>,
    /// Keys created for the run.
    pub keys: usize,
    /// Share (percent) of verifies with an unknown but well-formed key.
    pub miss_percent: u32,
    /// Share (percent) of verifies with a malformed key.
    pub invalid_percent: u32,
    /// Target total requests per second; `None` = as fast as possible.
    pub rate: Option<u32>,
    /// Key prefix of the server.
    pub key_format: KeyFormat,
    /// The server's metrics address (`host:port`), to report its store look-ups per unknown key.
    pub metrics_addr: Option<String>,
}

/// Latency and throughput of one phase.
#[derive(Debug)]
pub struct PhaseReport {
    /// What ran.
    pub name: &'static str,
    /// Requests answered.
    pub requests: u64,
    /// Requests that failed (gRPC errors).
    pub errors: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// Latencies, in microseconds.
    pub histogram: Histogram<u64>,
    /// Latencies of the requests made with a valid key, in microseconds.
    pub valid: Histogram<u64>,
}

impl PhaseReport {
    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn line(&self) -> String {
        self.line_of(self.name, &self.histogram)
    }

    fn line_of(&self, name: &str, histogram: &Histogram<u64>) -> String {
        let q = |p: f64| histogram.value_at_quantile(p);
        format!(
            "{:<8} {:>10.0} req/s  p50 {:>6} µs  p90 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs  max {:>7} µs  ({} requests, {} errors)",
            name,
            histogram.len() as f64 / self.elapsed.as_secs_f64(),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            histogram.max(),
            histogram.len(),
            self.errors
        )
    }
}

fn authed<T>(root: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = format!("Bearer {root}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

async fn connect(addr: &str) -> Result<Channel, String> {
    Endpoint::from_shared(addr.to_owned())
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

/// Keys per bench account: the active-key count is checked on every create, so one huge
/// account would make creating 100k keys quadratic.
const KEYS_PER_ACCOUNT: usize = 500;

/// Creates `n` keys in fresh accounts (`{prefix}_{i}`) with no practical rate limit; returns
/// (secrets, ids).
async fn create_keys(
    channel: Channel,
    root: &str,
    prefix: &str,
    n: usize,
) -> Result<(Vec<String>, Vec<String>), String> {
    let mut manage = ManageServiceClient::new(channel);
    let mut secrets = Vec::with_capacity(n);
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let account = format!("{prefix}_{}", i / KEYS_PER_ACCOUNT);
        if i % KEYS_PER_ACCOUNT == 0 {
            let raise = proto::UpdateAccountRequest {
                account_id: account.clone(),
                max_active_keys: u32::try_from(KEYS_PER_ACCOUNT + 1).unwrap_or(u32::MAX),
                disabled: false,
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["max_active_keys".into()],
                }),
            };
            manage
                .update_account(authed(root, raise))
                .await
                .map_err(|e| {
                    format!("cannot raise a bench account's key limit: {}", e.message())
                })?;
        }
        let created = manage
            .create_key(authed(
                root,
                proto::CreateKeyRequest {
                    account_id: account,
                    name: format!("bench {i}"),
                    environment: proto::Environment::Live.into(),
                    scopes: vec!["videos:read".into()],
                    rate_limit: Some(proto::RateLimit {
                        limit: u32::MAX,
                        window: Some(prost_types::Duration {
                            seconds: 1,
                            nanos: 0,
                        }),
                    }),
                    ..Default::default()
                },
            ))
            .await
            .map_err(|e| format!("cannot create bench keys: {}", e.message()))?
            .into_inner();
        secrets.push(created.key);
        ids.push(created.api_key.map(|k| k.id).unwrap_or_default());
    }
    Ok((secrets, ids))
}

async fn revoke_keys(channel: Channel, root: &str, ids: &[String]) {
    let mut manage = ManageServiceClient::new(channel);
    for id in ids {
        let _ = manage
            .revoke_key(authed(root, proto::RevokeKeyRequest { id: id.clone() }))
            .await;
    }
}

/// Runs one phase: every worker calls `call(i)` in a loop until the deadline.
async fn phase<F, Fut>(
    name: &'static str,
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
async fn server_counter(metrics_addr: &str, name: &str) -> Result<u64, String> {
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

/// Runs the Verify phase and the health-Check phase (the transport floor) and reports both.
pub async fn load(spec: LoadSpec) -> Result<String, String> {
    let mut channels = Vec::new();
    for _ in 0..spec.connections.max(1) {
        channels.push(connect(&spec.addr).await?);
    }
    let account = keyward::model::new_id("bench");
    eprintln!("creating {} keys in accounts {account}_*…", spec.keys);
    let (secrets, ids) = create_keys(
        channels[0].clone(),
        &spec.root_key,
        &account,
        spec.keys.max(1),
    )
    .await?;
    let secrets = Arc::new(secrets);
    let unknowns_sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (miss, invalid) = (
        u64::from(spec.miss_percent),
        u64::from(spec.invalid_percent),
    );

    // Warm the cache so the run measures steady state.
    eprintln!("warming the cache…");
    let mut verifier = VerifyServiceClient::new(channels[0].clone());
    for secret in secrets.iter() {
        let _ = verifier
            .verify(proto::VerifyRequest {
                key: secret.clone(),
                ..Default::default()
            })
            .await;
    }

    let verify = {
        let secrets = secrets.clone();
        let format = spec.key_format.clone();
        let unknowns_sent = unknowns_sent.clone();
        move |channel: Channel, i: u64| {
            let bucket = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 100;
            let valid_key = bucket >= invalid + miss;
            let key = if bucket < invalid {
                "kw_live_not-a-key".to_owned()
            } else if !valid_key {
                // Each unknown key is new, so the negative cache cannot absorb them.
                unknowns_sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format
                    .generate(Environment::Live)
                    .secret
                    .expose()
                    .to_owned()
            } else {
                secrets[(i as usize) % secrets.len()].clone()
            };
            async move {
                let mut client = VerifyServiceClient::new(channel);
                let request = proto::VerifyRequest {
                    key,
                    required_scopes: vec!["videos:read".into()],
                    ..Default::default()
                };
                let ok = match client.verify(request).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        r.code != VerifyCode::RateLimited as i32
                    }
                    Err(_) => false,
                };
                (ok, valid_key)
            }
        }
    };
    let health = |channel: Channel, _i: u64| async move {
        let mut client = HealthClient::new(channel);
        let ok = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok();
        (ok, false)
    };
    eprintln!("running the verify phase, then the health phase…");
    const LOOKUPS: &str = "keyward_store_lookups_total";
    let lookups_before = match &spec.metrics_addr {
        Some(addr) => Some(server_counter(addr, LOOKUPS).await?),
        None => None,
    };
    let verify_report = phase("verify", &spec, &channels, verify).await;
    let unknown_line = match (&spec.metrics_addr, lookups_before) {
        (Some(addr), Some(before)) => {
            let lookups = server_counter(addr, LOOKUPS).await?.saturating_sub(before);
            let sent = unknowns_sent.load(std::sync::atomic::Ordering::Relaxed);
            format!(
                "store look-ups during the verify phase: {lookups} for {sent} distinct unknown keys ({:.1} per 1,000)\n",
                lookups as f64 * 1000.0 / sent.max(1) as f64
            )
        }
        _ => String::new(),
    };
    let valid_line = if miss + invalid > 0 {
        format!("{}\n", verify_report.line_of("valid", &verify_report.valid))
    } else {
        String::new()
    };
    let health_report = phase("health", &spec, &channels, health).await;
    revoke_keys(channels[0].clone(), &spec.root_key, &ids).await;

    let ratio = verify_report.rate() / health_report.rate();
    Ok(format!(
        "{} connections × {} in flight, {} per phase, {} keys, mix: {}% hit / {}% miss / {}% invalid{}\n{}\n{valid_line}{}\nverify/health throughput ratio: {ratio:.2}\n{unknown_line}",
        spec.connections,
        spec.concurrency,
        spec.requests
            .map(|r| format!("{r} requests"))
            .unwrap_or_else(|| format!("{:?}", spec.duration)),
        spec.keys,
        100 - spec.miss_percent - spec.invalid_percent,
        spec.miss_percent,
        spec.invalid_percent,
        spec.rate
            .map(|r| format!(", target {r} req/s"))
            .unwrap_or_default(),
        verify_report.line(),
        health_report.line(),
    ))
}

/// Measures how long a revocation made through `addr` takes to be seen by `peer`, `rounds`
/// times, polling the peer as fast as it answers.
pub async fn propagation(
    addr: &str,
    peer: &str,
    root_key: &str,
    rounds: usize,
) -> Result<String, String> {
    let origin = connect(addr).await?;
    let other = connect(peer).await?;
    let account = keyward::model::new_id("bench");
    let (secrets, ids) = create_keys(origin.clone(), root_key, &account, rounds.max(1)).await?;
    let mut manage = ManageServiceClient::new(origin);
    let mut verifier = VerifyServiceClient::new(other);
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for (secret, id) in secrets.iter().zip(&ids) {
        let ask = || proto::VerifyRequest {
            key: secret.clone(),
            ..Default::default()
        };
        // The peer caches the key first, as a busy gateway would have.
        let first = verifier
            .verify(ask())
            .await
            .map_err(|e| e.message().to_owned())?;
        if first.into_inner().code != VerifyCode::Valid as i32 {
            return Err(
                "the peer does not see the new key; do the servers share a database?".into(),
            );
        }
        manage
            .revoke_key(authed(root_key, proto::RevokeKeyRequest { id: id.clone() }))
            .await
            .map_err(|e| e.message().to_owned())?;
        let revoked_at = Instant::now();
        loop {
            let r = verifier
                .verify(ask())
                .await
                .map_err(|e| e.message().to_owned())?;
            if r.into_inner().code == VerifyCode::Revoked as i32 {
                break;
            }
            if revoked_at.elapsed() > Duration::from_secs(30) {
                return Err("the peer did not see a revocation within 30 s".into());
            }
        }
        let micros = u64::try_from(revoked_at.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = histogram.record(micros.max(1));
    }
    let ms = |p: f64| histogram.value_at_quantile(p) as f64 / 1000.0;
    Ok(format!(
        "revocation seen by the peer, over {} revocations: p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms\n",
        histogram.len(),
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    ))
}
