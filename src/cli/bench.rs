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

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use keyward::key::{Environment, KeyFormat};
use keyward::proto::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use keyward::proto::envoy::service::auth::v3::{AttributeContext, CheckRequest, attribute_context};
use keyward::proto::manage_service_client::ManageServiceClient;
use keyward::proto::verify_service_client::VerifyServiceClient;
use keyward::proto::{self, VerifyCode};
use prost::Message as _;

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
    /// The gRPC faces to drive, each a phase: `Verify` and/or Envoy's `Check`.
    pub faces: Vec<Face>,
    /// HTTP URLs to drive with a valid key in `X-Api-Key`, each a phase: keyward's forward-auth
    /// endpoint, or a gateway in front of an API.
    pub http_urls: Vec<String>,
    /// Rounds of all phases, alternating; the summary reports the median and range.
    pub repeat: usize,
    /// The server's process id, to report its resident memory before and after caching.
    pub server_pid: Option<u32>,
    /// The rate limit of the run's keys (units, window); `None`: no practical limit (every
    /// unit of a u32 per second).
    pub key_limit: Option<(u32, Duration)>,
    /// Ask Verify for the basic view (AIP-157): the key's identity only.
    pub basic_view: bool,
}

/// A gRPC face the load generator drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Face {
    /// `keyward.v1.VerifyService/Verify`.
    Verify,
    /// `envoy.service.auth.v3.Authorization/Check` (ext_authz).
    Check,
}

/// Latency and throughput of one phase.
#[derive(Debug)]
pub struct PhaseReport {
    /// What ran.
    pub name: String,
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
        self.line_of(&self.name, &self.histogram)
    }

    fn line_of(&self, name: &str, histogram: &Histogram<u64>) -> String {
        let q = |p: f64| histogram.value_at_quantile(p);
        format!(
            "{:<8} {:>9.0} req/s  p50 {:>6} µs  p90 {:>6} µs  p99 {:>6} µs  p99.9 {:>6} µs  max {:>7} µs  ({} requests, {} errors)",
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

/// A channel to `addr` over a transport h2 batches like the server's (see `net::Conn`): so
/// every phase's client spends as little as it can, and the figures are keyward's.
async fn connect(addr: &str) -> Result<Channel, String> {
    let endpoint =
        Endpoint::from_shared(addr.to_owned()).map_err(|e| format!("bad address {addr}: {e}"))?;
    let connector = tower::service_fn(|uri: hyper::Uri| async move {
        let authority = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| std::io::Error::other("no host in the address"))?;
        let stream = tokio::net::TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(TokioIo::new(Unvectored(stream)))
    });
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

/// A TCP stream that does not offer vectored writes, so h2 copies small frames into one buffer.
struct Unvectored(tokio::net::TcpStream);

impl tokio::io::AsyncRead for Unvectored {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Unvectored {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Keys per bench account.
const KEYS_PER_ACCOUNT: usize = 500;

/// Records per ImportKeys call (the most the server takes).
const IMPORT_BATCH: usize = 1000;

/// The keys a run made: their secrets, ids and accounts.
struct RunKeys {
    secrets: Vec<String>,
    ids: Vec<String>,
    accounts: Vec<String>,
}

/// Makes `n` keys in fresh accounts (`{prefix}_{i}`) with no practical rate limit: generated
/// here in the server's format and imported by their hashes, 1000 a call, a few calls in
/// flight, with a progress bar (a million keys take minutes, not hours, this way).
async fn create_keys(
    channels: &[Channel],
    root: &str,
    prefix: &str,
    format: &KeyFormat,
    n: usize,
    limit: Option<(u32, Duration)>,
) -> Result<RunKeys, String> {
    let (limit, window) = limit.unwrap_or((u32::MAX, Duration::from_secs(1)));
    let progress = indicatif::ProgressBar::new(n as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "creating keys {bar:40} {pos}/{len} ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut secrets = Vec::with_capacity(n);
    let mut batches = Vec::new();
    for start in (0..n).step_by(IMPORT_BATCH) {
        let mut batch = Vec::with_capacity(IMPORT_BATCH);
        for i in start..(start + IMPORT_BATCH).min(n) {
            let generated = format.generate(Environment::Live);
            batch.push(proto::ImportedKey {
                sha256: generated.digest.to_hex(),
                prefix: generated.display_prefix.clone(),
                account_id: format!("{prefix}_{}", i / KEYS_PER_ACCOUNT),
                name: format!("bench {i}"),
                environment: proto::Environment::Live.into(),
                scopes: vec!["videos:read".into()],
                rate_limit: Some(proto::RateLimit {
                    limit,
                    window: Some(prost_types::Duration {
                        seconds: i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
                        nanos: 0,
                    }),
                }),
                ..Default::default()
            });
            secrets.push(generated.secret.expose().to_owned());
        }
        batches.push(batch);
    }
    // Up to 4 calls in flight, in order.
    let mut ids = Vec::with_capacity(n);
    let mut in_flight = std::collections::VecDeque::new();
    let mut batches = batches.into_iter().enumerate();
    loop {
        while in_flight.len() < 4 {
            let Some((i, keys)) = batches.next() else {
                break;
            };
            let mut manage = ManageServiceClient::new(channels[i % channels.len()].clone());
            let request = authed(root, proto::ImportKeysRequest { keys });
            in_flight.push_back(tokio::spawn(
                async move { manage.import_keys(request).await },
            ));
        }
        let Some(call) = in_flight.pop_front() else {
            break;
        };
        let answer = call
            .await
            .map_err(|e| format!("an import task failed: {e}"))?
            .map_err(|e| format!("cannot create bench keys: {}", e.message()))?
            .into_inner();
        for result in answer.results {
            if result.outcome != i32::from(proto::ImportOutcome::Imported) {
                return Err(format!("a bench key was refused: {}", result.error));
            }
            ids.push(result.key_id);
        }
        progress.set_position(ids.len() as u64);
    }
    progress.finish_and_clear();
    let accounts = (0..n.div_ceil(KEYS_PER_ACCOUNT))
        .map(|a| format!("{prefix}_{a}"))
        .collect();
    Ok(RunKeys {
        secrets,
        ids,
        accounts,
    })
}

/// Revokes every key of the run, an account at a time; says what it did.
async fn revoke_keys(channel: Channel, root: &str, keys: &RunKeys) -> String {
    let mut manage = ManageServiceClient::new(channel);
    let mut revoked = 0;
    let mut failed = 0;
    for account in &keys.accounts {
        let request = authed(
            root,
            proto::RevokeAccountKeysRequest {
                account_id: account.clone(),
            },
        );
        match manage.revoke_account_keys(request).await {
            Ok(answer) => revoked += answer.into_inner().api_keys.len(),
            Err(_) => failed += 1,
        }
    }
    let first = keys
        .accounts
        .first()
        .map(String::as_str)
        .unwrap_or_default();
    let mut said = format!(
        "cleanup: revoked the {revoked} keys of the run (accounts {}…, {} of them)",
        first.trim_end_matches(|c: char| c.is_ascii_digit()),
        keys.accounts.len()
    );
    if failed > 0 {
        said += &format!("; {failed} accounts could not be offboarded: revoke their keys by hand");
    }
    said + "\n"
}

/// Verifies every key once, from every connection at once, so the run starts on a warm cache.
async fn warm(channels: &[Channel], secrets: &Arc<Vec<String>>, concurrency: usize) {
    let workers = channels.len() * concurrency.max(1);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let mut verifier = VerifyServiceClient::new(channels[w % channels.len()].clone());
        let (secrets, next) = (secrets.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(secret) = secrets.get(i) else { break };
                let _ = verifier
                    .verify(proto::VerifyRequest {
                        key: secret.clone(),
                        ..Default::default()
                    })
                    .await;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// The resident memory of process `pid` in bytes (Linux: `VmRSS` of `/proc/<pid>/status`).
fn resident_bytes(pid: u32) -> Result<u64, String> {
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
async fn phase<F, Fut>(name: String, spec: &LoadSpec, channels: &[Channel], call: F) -> PhaseReport
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
    let rss = |when: &str| {
        spec.server_pid.map(|pid| {
            resident_bytes(pid).inspect(|bytes| {
                eprintln!(
                    "server resident memory {when}: {:.1} MB",
                    *bytes as f64 / 1e6
                );
            })
        })
    };
    let rss_start = rss("before the keys").transpose()?;
    eprintln!("creating {} keys in accounts {account}_*…", spec.keys);
    let keys = create_keys(
        &channels,
        &spec.root_key,
        &account,
        &spec.key_format,
        spec.keys.max(1),
        spec.key_limit,
    )
    .await?;
    let secrets = Arc::new(keys.secrets.clone());
    let unknowns_sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (miss, invalid) = (
        u64::from(spec.miss_percent),
        u64::from(spec.invalid_percent),
    );

    // Warm the cache so the run measures steady state.
    let rss_created = rss("with the keys stored, none cached").transpose()?;
    eprintln!("warming the cache…");
    warm(&channels, &secrets, spec.concurrency).await;
    let rss_warm = rss("with every key cached").transpose()?;
    let memory = match (rss_start, rss_created, rss_warm) {
        (Some(start), Some(created), Some(warm)) => {
            let n = secrets.len() as f64;
            format!(
                "server resident memory: {:.1} MB before the keys, {:.1} MB with {} keys stored, {:.1} MB with all cached: the cache adds {:.1} MB ({:.0} B per key); {:.0} B per key in all\n",
                start as f64 / 1e6,
                created as f64 / 1e6,
                secrets.len(),
                warm as f64 / 1e6,
                (warm as f64 - created as f64) / 1e6,
                (warm as f64 - created as f64) / n,
                (warm as f64 - start as f64) / n,
            )
        }
        _ => String::new(),
    };

    // A gateway builds its requests, not keyward: each valid key's request is encoded once
    // and only the answer's code is decoded, so the phase measures keyward's work (as h2load
    // would), like the health phase's near-free client.
    let basic_view = spec.basic_view;
    let verify_request = move |key: String| {
        Bytes::from(prost::Message::encode_to_vec(&proto::VerifyRequest {
            key,
            required_scopes: vec!["videos:read".into()],
            view: if basic_view {
                proto::VerifyView::Basic
            } else {
                proto::VerifyView::Unspecified
            }
            .into(),
            ..Default::default()
        }))
    };
    let encoded: Arc<Vec<Bytes>> = Arc::new(secrets.iter().cloned().map(verify_request).collect());
    let verify = {
        let encoded = encoded.clone();
        let format = spec.key_format.clone();
        let unknowns_sent = unknowns_sent.clone();
        move |channel: Channel, i: u64| {
            let bucket = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 100;
            let valid_key = bucket >= invalid + miss;
            let request = if bucket < invalid {
                verify_request("kw_live_not-a-key".to_owned())
            } else if !valid_key {
                // Each unknown key is new, so the negative cache cannot absorb them.
                unknowns_sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                verify_request(
                    format
                        .generate(Environment::Live)
                        .secret
                        .expose()
                        .to_owned(),
                )
            } else {
                encoded[(i as usize) % encoded.len()].clone()
            };
            async move {
                const PATH: &str = "/keyward.v1.VerifyService/Verify";
                let ok = raw_unary(channel, PATH, request)
                    .await
                    .and_then(|answer| VerifyCodeOnly::decode(answer).ok())
                    .is_some_and(|r| r.code != VerifyCode::RateLimited as i32);
                (ok, valid_key)
            }
        }
    };
    // Envoy builds its requests, not keyward: each key's CheckRequest is encoded once, so the
    // phase measures keyward's work, like the health phase's near-free client.
    let checks: Arc<Vec<Bytes>> = Arc::new(
        secrets
            .iter()
            .map(|key| Bytes::from(prost::Message::encode_to_vec(&envoy_request(key))))
            .collect(),
    );
    let check = move |channel: Channel, i: u64| {
        let request = checks[(i as usize) % checks.len()].clone();
        async move { (raw_check(channel, request).await, true) }
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
    const LOOKUPS: &str = "keyward_store_lookups_total";
    let workers = spec.connections.max(1) * spec.concurrency.max(1);
    let mut rounds: Vec<Vec<PhaseReport>> = Vec::new();
    let mut extra = String::new();
    let order = phases(&spec);
    for round in 0..spec.repeat.max(1) {
        // Each round starts one phase later than the one before, so that no phase always runs
        // first or last: the machine's drift over a round falls on every phase alike.
        let first = round % order.len();
        let run: Vec<usize> = (0..order.len())
            .map(|k| (first + k) % order.len())
            .collect();
        let names: Vec<String> = run.iter().map(|&i| order[i].name()).collect();
        eprintln!("round {}: {}", round + 1, names.join(", "));
        let mut reports: Vec<Option<PhaseReport>> = order.iter().map(|_| None).collect();
        for i in run {
            let name = order[i].name();
            let report = match order[i] {
                Phase::Face(Face::Verify) => {
                    let lookups_before = match &spec.metrics_addr {
                        Some(addr) => Some(server_counter(addr, LOOKUPS).await?),
                        None => None,
                    };
                    let report = phase(name, &spec, &channels, verify.clone()).await;
                    if let (Some(addr), Some(before)) = (&spec.metrics_addr, lookups_before) {
                        let lookups = server_counter(addr, LOOKUPS).await?.saturating_sub(before);
                        let sent = unknowns_sent.swap(0, std::sync::atomic::Ordering::Relaxed);
                        extra += &format!(
                            "round {}: store look-ups during the verify phase: {lookups} for {sent} distinct unknown keys ({:.1} per 1,000)\n",
                            round + 1,
                            lookups as f64 * 1000.0 / sent.max(1) as f64
                        );
                    }
                    if miss + invalid > 0 {
                        extra += &format!(
                            "round {}: {}\n",
                            round + 1,
                            report.line_of("valid", &report.valid)
                        );
                    }
                    report
                }
                Phase::Face(Face::Check) => phase(name, &spec, &channels, check.clone()).await,
                Phase::Health => phase(name, &spec, &channels, health).await,
                Phase::Http(n) => {
                    let target = HttpTarget::parse(&spec.http_urls[n])?;
                    let pool = HttpPool::connect(&target, workers).await?;
                    let secrets = secrets.clone();
                    let call = move |_channel: Channel, i: u64| {
                        let key = secrets[(i as usize) % secrets.len()].clone();
                        let pool = pool.clone();
                        async move { (pool.get(i, &key).await, true) }
                    };
                    phase(name, &spec, &channels, call).await
                }
            };
            reports[i] = Some(report);
        }
        // Reported in the same order every round, whatever order they ran in.
        rounds.push(reports.into_iter().flatten().collect());
    }
    let cleanup = revoke_keys(channels[0].clone(), &spec.root_key, &keys).await;
    eprint!("{cleanup}");

    let mut out = format!(
        "{} connections × {} in flight ({} HTTP/1.1 connections), {} per phase, {} keys, mix: {}% hit / {}% miss / {}% invalid{}, {} round(s)\n",
        spec.connections,
        spec.concurrency,
        workers,
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
        rounds.len(),
    );
    for (n, url) in spec.http_urls.iter().enumerate() {
        out += &format!("http{}   = GET {url}\n", n + 1);
    }
    for (round, reports) in rounds.iter().enumerate() {
        for report in reports {
            out += &format!("round {}: {}\n", round + 1, report.line());
        }
    }
    out += &extra;
    out += &memory;
    out += &summary(&rounds);
    out += &cleanup;
    Ok(out)
}

/// One phase of a round.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A gRPC face.
    Face(Face),
    /// The health check: the transport's floor.
    Health,
    /// The n-th `--http` URL.
    Http(usize),
}

impl Phase {
    fn name(self) -> String {
        match self {
            Phase::Face(Face::Verify) => "verify".to_owned(),
            Phase::Face(Face::Check) => "check".to_owned(),
            Phase::Health => "health".to_owned(),
            Phase::Http(n) => format!("http{}", n + 1),
        }
    }
}

/// The phases one round runs, in the order the first round runs them.
fn phases(spec: &LoadSpec) -> Vec<Phase> {
    let faces = spec.faces.iter().map(|&f| Phase::Face(f));
    let http = (0..spec.http_urls.len()).map(Phase::Http);
    faces.chain([Phase::Health]).chain(http).collect()
}

/// Median and range across rounds, per phase: throughput, p99, and the gRPC phases'
/// throughput relative to the health floor of the same round.
fn summary(rounds: &[Vec<PhaseReport>]) -> String {
    fn median_range(mut values: Vec<f64>) -> (f64, f64, f64) {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        (median, values[0], values[n - 1])
    }
    let Some(first) = rounds.first() else {
        return String::new();
    };
    let mut out = format!(
        "summary over {} round(s), each starting one phase later: median (min–max)\n",
        rounds.len()
    );
    for (i, report) in first.iter().enumerate() {
        let of = |f: &dyn Fn(&PhaseReport) -> f64| {
            median_range(rounds.iter().filter_map(|r| r.get(i)).map(f).collect())
        };
        let (rate, rate_lo, rate_hi) = of(&|r| r.rate());
        let (p99, p99_lo, p99_hi) = of(&|r| r.histogram.value_at_quantile(0.99) as f64);
        out += &format!(
            "{:<8} {rate:>9.0} req/s ({rate_lo:.0}–{rate_hi:.0})  p99 {p99:.0} µs ({p99_lo:.0}–{p99_hi:.0})",
            report.name
        );
        if report.name == "verify" || report.name == "check" {
            let ratios = rounds
                .iter()
                .filter_map(|round| {
                    let health = round.iter().find(|p| p.name == "health")?;
                    Some(round.get(i)?.rate() / health.rate())
                })
                .collect();
            let (ratio, lo, hi) = median_range(ratios);
            let pooled = pooled_ratio(rounds.iter(), &report.name);
            out += &format!("  {ratio:.2} × health ({lo:.2}–{hi:.2}), pooled {pooled:.3}");
            if let Some((lo, hi)) = pooled_interval(rounds, &report.name) {
                out += &format!(" (95 % {lo:.3}–{hi:.3})");
            }
        }
        out += "\n";
    }
    out
}

/// The phase's rate over the health floor's, pooled: all the rounds' requests over all their
/// time, of the phase and of the floor, so the machine's moments of noise weigh by their
/// length instead of a round apiece.
fn pooled_ratio<'r>(rounds: impl Iterator<Item = &'r Vec<PhaseReport>> + Clone, name: &str) -> f64 {
    let rate = |name: &str| {
        let reports = rounds.clone().flatten().filter(|p| p.name == name);
        let (requests, secs) = reports.fold((0.0, 0.0), |(n, t), p| {
            (n + p.requests as f64, t + p.elapsed.as_secs_f64())
        });
        requests / secs
    };
    rate(name) / rate("health")
}

/// How many times the rounds are resampled for [`pooled_interval`].
const RESAMPLES: usize = 2000;

/// The 95 % interval of [`pooled_ratio`]: a percentile bootstrap, the rounds drawn with
/// replacement [`RESAMPLES`] times (seeded, so the same rounds give the same interval). On a
/// noisy machine it says how far the pooled ratio could move from one run to the next;
/// `None` for fewer than 5 rounds, too few to resample.
fn pooled_interval(rounds: &[Vec<PhaseReport>], name: &str) -> Option<(f64, f64)> {
    use rand::{Rng as _, SeedableRng as _};
    if rounds.len() < 5 {
        return None;
    }
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0x6b65_7977_6172_6400);
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let drawn: Vec<&Vec<PhaseReport>> = (0..rounds.len())
                .map(|_| &rounds[rng.random_range(0..rounds.len())])
                .collect();
            pooled_ratio(drawn.into_iter(), name)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    Some((
        ratios[RESAMPLES / 40],
        ratios[RESAMPLES - 1 - RESAMPLES / 40],
    ))
}

/// Sends an encoded `CheckRequest`; true when the answer's status is OK. Only the status is
/// decoded: the headers of the answer are skipped.
async fn raw_check(channel: Channel, request: Bytes) -> bool {
    const PATH: &str = "/envoy.service.auth.v3.Authorization/Check";
    raw_unary(channel, PATH, request)
        .await
        .and_then(|answer| CheckStatus::decode(answer).ok())
        .is_some_and(|r| r.status.is_some_and(|s| s.code == 0))
}

/// One unary call with an encoded request; the encoded answer, `None` on a gRPC error.
async fn raw_unary(channel: Channel, path: &'static str, request: Bytes) -> Option<Bytes> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.ok()?;
    let path = hyper::http::uri::PathAndQuery::from_static(path);
    let response = grpc
        .unary(Request::new(request), path, RawCodec)
        .await
        .ok()?;
    Some(response.into_inner())
}

/// The code of a `VerifyResponse` (field 2); the rest skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct VerifyCodeOnly {
    #[prost(int32, tag = "2")]
    code: i32,
}

/// The status of a `CheckResponse` (field 1, `google.rpc.Status.code` = 1); the rest skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct CheckStatus {
    #[prost(message, optional, tag = "1")]
    status: Option<StatusCode>,
}

/// `google.rpc.Status.code`.
#[derive(Clone, PartialEq, prost::Message)]
struct StatusCode {
    #[prost(int32, tag = "1")]
    code: i32,
}

/// A gRPC codec of already-encoded messages.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        prost::bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, Self::Error> {
        let len = hyper::body::Buf::remaining(src);
        Ok(Some(hyper::body::Buf::copy_to_bytes(src, len)))
    }
}

/// What Envoy sends for a typical API request: a handful of headers, the key as a bearer token,
/// the route's scopes in `context_extensions`.
fn envoy_request(key: &str) -> CheckRequest {
    let headers = [
        (":authority", "api.example.com"),
        (":method", "GET"),
        (":path", "/v1/videos/42?page=2"),
        ("accept", "application/json"),
        ("user-agent", "bench/1.0"),
        ("x-request-id", "5f1b0c9e-bench"),
        ("x-forwarded-proto", "https"),
    ];
    let mut map: std::collections::BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.insert("authorization".into(), format!("Bearer {key}"));
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(attribute_context::Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: "203.0.113.9".into(),
                        port_specifier: Some(socket_address::PortSpecifier::PortValue(40_000)),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            destination: None,
            request: Some(attribute_context::Request {
                time: None,
                http: Some(attribute_context::HttpRequest {
                    id: "5f1b0c9e-bench".into(),
                    method: "GET".into(),
                    headers: map,
                    path: "/v1/videos/42?page=2".into(),
                    host: "api.example.com".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/1.1".into(),
                    ..Default::default()
                }),
            }),
            context_extensions: [("scopes".to_owned(), "videos:read".to_owned())].into(),
        }),
    }
}

/// An HTTP URL to drive: where to connect and what to ask.
#[derive(Debug, Clone)]
struct HttpTarget {
    authority: String,
    path: String,
}

impl HttpTarget {
    fn parse(url: &str) -> Result<Self, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!("{url}: only http:// URLs"));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url}: no host"))?
            .to_string();
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.to_string());
        Ok(HttpTarget { authority, path })
    }
}

/// One HTTP/1.1 connection's sending half.
type Sender = SendRequest<Empty<Bytes>>;

/// One HTTP/1.1 keep-alive connection per worker (worker `w` uses `i % workers == w`, so no
/// two workers share one); a broken connection is replaced on the next request.
#[derive(Clone)]
struct HttpPool {
    target: Arc<HttpTarget>,
    connections: Arc<Vec<Mutex<Option<Sender>>>>,
}

impl HttpPool {
    async fn connect(target: &HttpTarget, workers: usize) -> Result<Self, String> {
        let mut connections = Vec::with_capacity(workers);
        for _ in 0..workers {
            connections.push(Mutex::new(Some(http_connect(&target.authority).await?)));
        }
        Ok(HttpPool {
            target: Arc::new(target.clone()),
            connections: Arc::new(connections),
        })
    }

    /// Sends one GET with `key`; true on a 2xx answer.
    async fn get(&self, i: u64, key: &str) -> bool {
        let slot = &self.connections[(i as usize) % self.connections.len()];
        let mut slot = slot.lock().await;
        let sender = match slot.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => match http_connect(&self.target.authority).await {
                Ok(sender) => sender,
                Err(_) => return false,
            },
        };
        let mut sender = sender;
        let request = hyper::Request::get(self.target.path.as_str())
            .header("host", self.target.authority.as_str())
            .header("x-api-key", key)
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-uri", "/v1/videos/42?page=2")
            .body(Empty::<Bytes>::new());
        let Ok(request) = request else { return false };
        let ok = match sender.send_request(request).await {
            Ok(response) => {
                let ok = response.status().is_success();
                // Read the body so the connection can carry the next request.
                ok && response.into_body().collect().await.is_ok()
            }
            Err(_) => false,
        };
        *slot = Some(sender);
        ok
    }
}

async fn http_connect(authority: &str) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake with {authority}: {e}"))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Measures how long a revocation made through `addr` takes to be seen by `peer`, `rounds`
/// times, polling the peer as fast as it answers.
pub async fn propagation(
    addr: &str,
    peer: &str,
    root_key: &str,
    format: &KeyFormat,
    rounds: usize,
) -> Result<String, String> {
    let origin = connect(addr).await?;
    let other = connect(peer).await?;
    let account = keyward::model::new_id("bench");
    let keys = create_keys(
        std::slice::from_ref(&origin),
        root_key,
        &account,
        format,
        rounds.max(1),
        None,
    )
    .await?;
    let (secrets, ids) = (keys.secrets, keys.ids);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A round of a face and the floor: `face` and `health` requests, each in one second.
    fn round(face: u64, health: u64) -> Vec<PhaseReport> {
        let report = |name: &str, requests| PhaseReport {
            name: name.to_owned(),
            requests,
            errors: 0,
            elapsed: Duration::from_secs(1),
            histogram: Histogram::new(3).unwrap(),
            valid: Histogram::new(3).unwrap(),
        };
        vec![report("check", face), report("health", health)]
    }

    #[test]
    fn the_pooled_ratio_weighs_rounds_by_their_requests() {
        let rounds = [round(90, 100), round(180, 100)];
        assert!((pooled_ratio(rounds.iter(), "check") - 1.35).abs() < 1e-9);
    }

    #[test]
    fn the_interval_holds_the_pooled_ratio_and_narrows_with_agreeing_rounds() {
        let noisy: Vec<_> = (0..20)
            .map(|i| round(if i % 2 == 0 { 80 } else { 100 }, 100))
            .collect();
        let (lo, hi) = pooled_interval(&noisy, "check").unwrap();
        let pooled = pooled_ratio(noisy.iter(), "check");
        assert!(lo < pooled && pooled < hi, "{lo} {pooled} {hi}");
        assert!(
            lo >= 0.8 && hi <= 1.0,
            "within the rounds' own range: {lo}–{hi}"
        );
        // Rounds that all agree leave nothing to vary.
        let steady: Vec<_> = (0..20).map(|_| round(90, 100)).collect();
        let (lo, hi) = pooled_interval(&steady, "check").unwrap();
        assert!(
            (lo - 0.9).abs() < 1e-9 && (hi - 0.9).abs() < 1e-9,
            "{lo}–{hi}"
        );
        // The same rounds give the same interval.
        assert_eq!(
            pooled_interval(&noisy, "check"),
            pooled_interval(&noisy, "check")
        );
    }

    #[test]
    fn too_few_rounds_give_no_interval() {
        let rounds: Vec<_> = (0..4).map(|_| round(90, 100)).collect();
        assert_eq!(pooled_interval(&rounds, "check"), None);
    }
}
