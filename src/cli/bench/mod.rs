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

mod connect;
mod keys;
mod measure;
mod propagation;
mod stats;
mod wire;

use connect::*;
use keys::*;
use measure::*;
pub use propagation::propagation;
use stats::*;
use wire::*;

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
