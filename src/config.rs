//! Configuration, layered: built-in defaults → optional TOML file (`--config`) → `KEYWARD_*`
//! environment variables → command-line flags. Validated once, at load, with messages that
//! name the setting and where it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::cache::CacheSettings;
use crate::duration;
use crate::key::{KeyFormat, KeyPrefix};
use crate::model::RateLimit;
use crate::net::ConnectionLimits;
use crate::service::Policy;
use crate::store::DatabaseUrl;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Every setting, with its default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: DatabaseUrl,
    /// Scope catalog replacing the built-in one.
    pub scopes_file: Option<PathBuf>,
    /// Prometheus metrics address; off when unset.
    pub metrics_addr: Option<SocketAddr>,
    /// Brand prefix of keys.
    pub key_prefix: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Active keys per account unless the account overrides it.
    pub max_active_keys: u32,
    /// Units per window for keys without their own rate limit.
    pub rate_limit: u32,
    /// The default rate limit's window (`2m`).
    pub rate_limit_window: String,
    /// TTL of keys created without one (`30d`, `1y`, `never`).
    pub default_ttl: String,
    /// Longest TTL a key may get (`never` = unlimited).
    pub max_ttl: String,
    /// Most keys held in the verify cache.
    pub cache_capacity: u64,
    /// Backstop lifetime of a cached key (`5m`).
    pub cache_ttl: String,
    /// How long a cached key may still be served while the database is unreachable (`1h`).
    pub stale_limit: String,
    /// Most unknown keys remembered.
    pub negative_cache_capacity: u64,
    /// How long an unknown key is remembered (`5s`).
    pub negative_cache_ttl: String,
    /// How long shutdown waits for in-flight calls (`10s`).
    pub shutdown_timeout: String,
    /// How often coalesced last-use times are written (`10s`): `last_used_at` lags by at most
    /// this plus one second.
    pub last_used_interval: String,
    /// Most connections each listener keeps open at once; past that, accepting waits.
    pub max_connections: usize,
    /// Store look-ups per second for well-formed keys not known to exist (`50`): bounds the
    /// database work of a flood of random keys.
    pub unknown_key_lookups_per_second: u32,
    /// How long a new connection may take to send its first bytes before it is closed.
    pub handshake_timeout: String,
    /// How long a connection may stay silent before it is closed (keepalive pings count).
    pub idle_timeout: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            database_url: DatabaseUrl::new("sqlite://keyward.db"),
            scopes_file: None,
            metrics_addr: None,
            key_prefix: "kw".into(),
            log_format: LogFormat::Text,
            max_active_keys: 10,
            rate_limit: 100,
            rate_limit_window: "2m".into(),
            default_ttl: "never".into(),
            max_ttl: "never".into(),
            cache_capacity: 1_000_000,
            cache_ttl: "5m".into(),
            stale_limit: "1h".into(),
            negative_cache_capacity: 100_000,
            negative_cache_ttl: "5s".into(),
            shutdown_timeout: "10s".into(),
            last_used_interval: "10s".into(),
            max_connections: 4096,
            unknown_key_lookups_per_second: 50,
            handshake_timeout: "10s".into(),
            idle_timeout: "5m".into(),
        }
    }
}

/// Settings given on the command line; unset flags leave lower layers in force.
#[derive(Debug, Clone, Default, Serialize, clap::Args)]
pub struct Flags {
    /// gRPC listen address [env: KEYWARD_LISTEN] [default: 127.0.0.1:50051]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// sqlite://FILE or postgres://… [env: KEYWARD_DATABASE_URL] [default: sqlite://keyward.db]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Scope catalog (TOML) replacing the built-in one [env: KEYWARD_SCOPES_FILE]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes_file: Option<PathBuf>,
    /// Serve Prometheus metrics on this address [env: KEYWARD_METRICS_ADDR] [default: off]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<SocketAddr>,
    /// Brand prefix of keys [env: KEYWARD_KEY_PREFIX] [default: kw]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// Log format [env: KEYWARD_LOG_FORMAT] [default: text]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Active keys per account [env: KEYWARD_MAX_ACTIVE_KEYS] [default: 10]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_active_keys: Option<u32>,
}

/// Configuration that could not be loaded, with the reason.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

const ENV_KEYS: &[&str] = &[
    "listen",
    "database_url",
    "scopes_file",
    "metrics_addr",
    "key_prefix",
    "log_format",
    "max_active_keys",
    "rate_limit",
    "rate_limit_window",
    "default_ttl",
    "max_ttl",
    "cache_capacity",
    "cache_ttl",
    "stale_limit",
    "negative_cache_capacity",
    "negative_cache_ttl",
    "shutdown_timeout",
    "last_used_interval",
    "max_connections",
    "unknown_key_lookups_per_second",
    "handshake_timeout",
    "idle_timeout",
];

impl Config {
    /// Loads the layers and validates the result.
    pub fn load(file: Option<&Path>, flags: &Flags) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let config: Config = figment
            .merge(Env::prefixed("KEYWARD_").only(ENV_KEYS))
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let err = |setting: &str, e: String| ConfigError(format!("{setting}: {e}"));
        KeyPrefix::parse(&self.key_prefix).map_err(|e| err("key_prefix", e))?;
        if self.max_active_keys == 0 {
            return Err(err("max_active_keys", "must be at least 1".into()));
        }
        if self.rate_limit == 0 {
            return Err(err("rate_limit", "must be at least 1".into()));
        }
        let window =
            duration::parse(&self.rate_limit_window).map_err(|e| err("rate_limit_window", e))?;
        if window.as_secs() == 0 {
            return Err(err(
                "rate_limit_window",
                "must be at least one second".into(),
            ));
        }
        duration::parse_ttl(&self.default_ttl).map_err(|e| err("default_ttl", e))?;
        duration::parse_ttl(&self.max_ttl).map_err(|e| err("max_ttl", e))?;
        duration::parse(&self.cache_ttl).map_err(|e| err("cache_ttl", e))?;
        duration::parse(&self.stale_limit).map_err(|e| err("stale_limit", e))?;
        duration::parse(&self.negative_cache_ttl).map_err(|e| err("negative_cache_ttl", e))?;
        duration::parse(&self.shutdown_timeout).map_err(|e| err("shutdown_timeout", e))?;
        let interval =
            duration::parse(&self.last_used_interval).map_err(|e| err("last_used_interval", e))?;
        if interval.is_zero() {
            return Err(err("last_used_interval", "must be longer than zero".into()));
        }
        if self.max_connections == 0 {
            return Err(err("max_connections", "must be at least 1".into()));
        }
        for (setting, value) in [
            ("handshake_timeout", &self.handshake_timeout),
            ("idle_timeout", &self.idle_timeout),
        ] {
            if duration::parse(value)
                .map_err(|e| err(setting, e))?
                .is_zero()
            {
                return Err(err(setting, "must be longer than zero".into()));
            }
        }
        let policy = self.policy();
        if let (Some(default), Some(max)) = (policy.default_ttl, policy.max_ttl)
            && default > max
        {
            return Err(err(
                "default_ttl",
                format!("is longer than max_ttl ({})", self.max_ttl),
            ));
        }
        Ok(())
    }

    /// The key format for the configured prefix.
    pub fn key_format(&self) -> KeyFormat {
        // Validated at load.
        KeyFormat::new(KeyPrefix::parse(&self.key_prefix).unwrap_or_default())
    }

    /// The service-wide key policy. With a `max_ttl` and no `default_ttl`, keys created
    /// without an expiry get the longest TTL allowed.
    pub fn policy(&self) -> Policy {
        let max_ttl = duration::parse_ttl(&self.max_ttl).ok().flatten();
        let default_ttl = duration::parse_ttl(&self.default_ttl)
            .ok()
            .flatten()
            .or(max_ttl);
        Policy {
            max_active_keys: self.max_active_keys,
            default_ttl,
            max_ttl,
            rate_limit: RateLimit {
                limit: self.rate_limit,
                window_secs: duration::parse(&self.rate_limit_window).map_or(120, |w| w.as_secs()),
            },
        }
    }

    /// Cache sizes and lifetimes.
    pub fn cache(&self) -> CacheSettings {
        let secs = |text: &str, fallback: u64| {
            duration::parse(text).unwrap_or(Duration::from_secs(fallback))
        };
        CacheSettings {
            capacity: self.cache_capacity,
            ttl: secs(&self.cache_ttl, 300),
            stale_limit: secs(&self.stale_limit, 3600),
            negative_capacity: self.negative_cache_capacity,
            negative_ttl: secs(&self.negative_cache_ttl, 5),
            unknown_lookups_per_second: self.unknown_key_lookups_per_second,
        }
    }

    /// How often last-use times are written.
    /// Bounds on the connections each listener keeps.
    pub fn connection_limits(&self) -> ConnectionLimits {
        // Validated at load.
        let parse = |text: &str, fallback| duration::parse(text).unwrap_or(fallback);
        ConnectionLimits {
            max_connections: self.max_connections,
            handshake_timeout: parse(&self.handshake_timeout, Duration::from_secs(10)),
            idle_timeout: parse(&self.idle_timeout, Duration::from_secs(300)),
        }
    }

    pub fn last_used_interval(&self) -> Duration {
        duration::parse(&self.last_used_interval).unwrap_or(Duration::from_secs(10))
    }

    /// How long shutdown waits for in-flight calls.
    pub fn shutdown_timeout(&self) -> Duration {
        duration::parse(&self.shutdown_timeout).unwrap_or(Duration::from_secs(10))
    }
}
