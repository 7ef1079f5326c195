//! The shared engine: Valkey or Redis (≥ 7), which every replica reserves blocks of a rate
//! limit's window from, atomically, with one Lua script. A replica spends a block locally
//! (see [`super::Block`]) and comes back only when it is spent, so in steady state a Verify
//! makes no network call; the engine's count of a window is the sum of the blocks handed out,
//! so however many replicas serve a key, it never gets more than its limit in a window.
//!
//! When the engine cannot be reached the replicas fall back to their own counters at the
//! limit divided by the number of replicas last seen: each replica announces itself in the
//! engine with an expiry, and counts the others, every [`HEARTBEAT`]. A background task
//! notices when the engine is back and the shared mode resumes by itself.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{Error, Result};

/// How often a replica announces itself; it counts as present for three times this.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// How long one reservation may take before the engine counts as unreachable.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(250);

/// While the engine is unreachable, how often it is tried again.
const RETRY: Duration = Duration::from_millis(500);

/// Where every engine key lives.
const PREFIX: &str = "keyward:rl:";

/// The sorted set of replicas, scored by when their announcement expires (ms).
const REPLICAS: &str = "keyward:replicas";

/// Reserves up to `want` units (at least `need`) of a window's budget.
/// KEYS[1]: the window's hash (`used`, `end`); it expires when the window ends.
/// ARGV: limit, window (ms), want, need, now (ms, the caller's clock).
/// Returns {granted, window end (ms), ms left in the window, units handed out}.
const RESERVE: &str = r"
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local need = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local ttl = redis.call('PTTL', KEYS[1])
local used = 0
local ends = now + window
if ttl > 0 then
  local fields = redis.call('HMGET', KEYS[1], 'used', 'end')
  used = tonumber(fields[1]) or 0
  ends = tonumber(fields[2]) or (now + ttl)
else
  ttl = window
end
local room = limit - used
if room < need then
  return {0, ends, ttl, used}
end
local grant = math.min(want, room)
if used == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'used', grant, 'end', ends)
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('HINCRBY', KEYS[1], 'used', grant)
end
return {grant, ends, ttl, used + grant}
";

/// Announces a replica and counts the ones whose announcement has not expired.
/// KEYS[1]: the replica set. ARGV: this replica's id, its expiry (ms), now (ms).
const ANNOUNCE: &str = r"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
return redis.call('ZCARD', KEYS[1])
";

/// A `redis://` or `rediss://` URL. Prints without its password.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct EngineUrl(String);

impl EngineUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        EngineUrl(url.into())
    }

    /// Why the URL cannot name an engine, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if !(self.0.starts_with("redis://") || self.0.starts_with("rediss://")) {
            return Some(format!(
                "{self} is not a redis:// or rediss:// URL (Valkey or Redis 7 or later)"
            ));
        }
        redis::Client::open(self.0.as_str())
            .err()
            .map(|e| format!("{self}: {}", e.detail().unwrap_or("not a valid URL")))
    }

    fn redacted(&self) -> String {
        crate::redact::url_password(&self.0)
    }
}

impl fmt::Debug for EngineUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EngineUrl({})", self.redacted())
    }
}

impl fmt::Display for EngineUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// A block the engine handed out, or its refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Units reserved for this replica; 0 when the window lacks room for what was needed.
    pub granted: u32,
    /// When the window ends, ms since the epoch: the same for every replica.
    pub window_end_ms: i64,
    /// How long the window had left when the engine answered.
    pub left_ms: i64,
    /// Units handed out in the window, this grant included.
    pub handed_out: u32,
}

/// What a replica asks the engine for: one limit's window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The limit's name in the engine (its key or account id, and scope).
    pub name: String,
    /// Units per window.
    pub limit: u32,
    /// The window.
    pub window_ms: u64,
    /// Units wanted.
    pub want: u32,
    /// Units without which the request cannot pass.
    pub need: u32,
}

/// Counters of the engine's use, for the metrics.
#[derive(Debug, Default)]
pub struct EngineStats {
    /// Blocks granted.
    pub granted: AtomicU64,
    /// Reservations refused for lack of room.
    pub refused: AtomicU64,
    /// Reservations that failed (engine unreachable or erring).
    pub failed: AtomicU64,
    /// Decisions made on local counters while the engine was unreachable.
    pub fallback_decisions: AtomicU64,
}

/// The connection to the shared engine, and whether it is reachable.
pub struct Engine {
    url: EngineUrl,
    connection: ConnectionManager,
    reserve: redis::Script,
    announce: redis::Script,
    up: AtomicBool,
    replicas: AtomicU32,
    replica_id: String,
    stats: EngineStats,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("url", &self.url)
            .field("up", &self.is_up())
            .field("replicas", &self.replicas())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Connects to the engine at `url`. Unreachable at start is not an error: the replica
    /// starts on local counters and the shared mode begins when the engine answers.
    pub async fn connect(url: &EngineUrl) -> Result<Arc<Engine>> {
        if let Some(problem) = url.problem() {
            return Err(Error::FailedPrecondition(format!(
                "rate_limit_store: {problem}"
            )));
        }
        let client = redis::Client::open(url.0.as_str()).map_err(|e| {
            Error::FailedPrecondition(format!(
                "rate_limit_store: {url}: {}",
                e.detail().unwrap_or("not a valid URL")
            ))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(RETRY);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| Error::internal_caused("rate_limit_store: connecting", e))?;
        let engine = Arc::new(Engine {
            url: url.clone(),
            connection,
            reserve: redis::Script::new(RESERVE),
            announce: redis::Script::new(ANNOUNCE),
            up: AtomicBool::new(false),
            replicas: AtomicU32::new(1),
            replica_id: crate::model::new_id("replica"),
            stats: EngineStats::default(),
        });
        match engine.announce().await {
            Ok(()) => {
                engine.up.store(true, Ordering::Release);
                tracing::info!(
                    store = %engine.url,
                    replicas = engine.replicas(),
                    "rate limits shared through the rate-limit store"
                );
            }
            Err(e) => tracing::warn!(
                store = %engine.url,
                error = %e,
                "the rate-limit store does not answer: rate limits start on this replica's own \
                 counters and are shared once it answers"
            ),
        }
        Ok(engine)
    }

    /// Whether the engine answered last time it was asked.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Replicas that announced themselves within the last three heartbeats (at least 1).
    pub fn replicas(&self) -> u32 {
        self.replicas.load(Ordering::Relaxed).max(1)
    }

    /// Counters for the metrics.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Reserves blocks for every reservation in one round trip (a pipeline of script calls),
    /// in order. An error marks the engine down.
    pub async fn reserve(&self, reservations: &[Reservation], now_ms: i64) -> Result<Vec<Grant>> {
        let mut pipe = redis::pipe();
        for r in reservations {
            let mut call = self
                .reserve
                .key(format!("{PREFIX}{}:{}", r.name, r.window_ms));
            call.arg(r.limit)
                .arg(r.window_ms)
                .arg(r.want)
                .arg(r.need)
                .arg(now_ms);
            pipe.invoke_script(&call);
        }
        let mut connection = self.connection.clone();
        let answer: redis::RedisResult<Vec<(i64, i64, i64, i64)>> =
            match tokio::time::timeout(RESPONSE_TIMEOUT, pipe.query_async(&mut connection)).await {
                Ok(answer) => answer,
                Err(_) => Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no answer in time",
                ))),
            };
        let answer = match answer {
            // A script the engine has not seen yet (a restart flushes them): loaded, then
            // the calls are made again.
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let mut connection = self.connection.clone();
                let loaded = self.reserve.load_async(&mut connection).await;
                match loaded {
                    Ok(_) => pipe.query_async(&mut connection).await,
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        match answer {
            Ok(rows) => {
                let grants: Vec<Grant> = rows
                    .into_iter()
                    .map(|(granted, window_end_ms, left_ms, handed_out)| Grant {
                        granted: u32::try_from(granted).unwrap_or(0),
                        window_end_ms,
                        left_ms,
                        handed_out: u32::try_from(handed_out).unwrap_or(u32::MAX),
                    })
                    .collect();
                for grant in &grants {
                    let counter = if grant.granted > 0 {
                        &self.stats.granted
                    } else {
                        &self.stats.refused
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
                Ok(grants)
            }
            Err(e) => {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                self.went_down(&e);
                Err(Error::Unavailable(
                    "the rate-limit store is unreachable".into(),
                ))
            }
        }
    }

    /// Announces this replica and reads how many are present.
    async fn announce(&self) -> redis::RedisResult<()> {
        let now = crate::time::Timestamp::now().micros() / 1000;
        let expires = now + 3 * i64::try_from(HEARTBEAT.as_millis()).unwrap_or(15_000);
        let mut connection = self.connection.clone();
        let mut invocation = self.announce.key(REPLICAS);
        invocation.arg(&self.replica_id).arg(expires).arg(now);
        let call = invocation.invoke_async::<u32>(&mut connection);
        let count = match tokio::time::timeout(RESPONSE_TIMEOUT * 4, call).await {
            Ok(count) => count?,
            Err(_) => {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no answer in time",
                )));
            }
        };
        self.replicas.store(count.max(1), Ordering::Relaxed);
        Ok(())
    }

    /// Withdraws this replica's announcement (at shutdown), so the others' fallback share
    /// grows at once.
    pub async fn withdraw(&self) {
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("ZREM");
        command.arg(REPLICAS).arg(&self.replica_id);
        let withdrawn = command.query_async::<i64>(&mut connection);
        let _ = tokio::time::timeout(RESPONSE_TIMEOUT, withdrawn).await;
    }

    fn went_down(&self, error: &redis::RedisError) {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                store = %self.url,
                error = %error,
                replicas = self.replicas(),
                "the rate-limit store is unreachable: rate limits fall back to this replica's \
                 counters at the limit divided by the replicas last seen"
            );
        }
    }

    /// Announces this replica every [`HEARTBEAT`] and, while the engine is unreachable, tries
    /// it every [`RETRY`] until it answers. Runs until the task is aborted.
    pub async fn watch(self: Arc<Self>) {
        let mut last_announced = tokio::time::Instant::now();
        loop {
            let pause = if self.is_up() { HEARTBEAT } else { RETRY };
            tokio::time::sleep_until(last_announced.max(tokio::time::Instant::now()) + pause).await;
            last_announced = tokio::time::Instant::now();
            match self.announce().await {
                Ok(()) => {
                    if !self.up.swap(true, Ordering::AcqRel) {
                        tracing::info!(
                            store = %self.url,
                            replicas = self.replicas(),
                            "the rate-limit store answers again: rate limits are shared again"
                        );
                    }
                }
                Err(e) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    self.went_down(&e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_print_without_password_and_only_redis_schemes_pass() {
        let url = EngineUrl::new("rediss://:s3cret@valkey:6380/0");
        assert_eq!(url.to_string(), "rediss://:***@valkey:6380/0");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(url.problem(), None);
        let wrong = EngineUrl::new("http://user:s3cret@valkey:6379");
        let problem = wrong.problem().expect("not a redis URL");
        assert!(problem.contains("redis://"), "{problem}");
        assert!(!problem.contains("s3cret"), "{problem}");
    }
}
