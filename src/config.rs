//! Configuration, layered: built-in defaults → optional TOML file (`--config`) → `KEYWARD_*`
//! environment variables → command-line flags. Validated once, at load, with messages that
//! name the setting and where it came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::duration;
use crate::gateway::{Gateway, GatewayConfig};
use crate::key::{KeyFormat, KeyPrefix};
use crate::net::ConnectionLimits;
use crate::ratelimit::engine::EngineUrl;
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
    /// Serve ManageService on this address instead of `listen` (off: on `listen`).
    pub manage_listen: Option<SocketAddr>,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: DatabaseUrl,
    /// Scope catalog replacing the built-in one.
    pub scopes_file: Option<PathBuf>,
    /// Valkey or Redis (≥ 7) shared by the replicas for rate limits (`redis://…`,
    /// `rediss://…` with TLS); unset: each replica counts alone (the single-replica mode).
    pub rate_limit_store: Option<EngineUrl>,
    /// Whether Verify requires an authenticated caller: a key holding `keys:verify` presented
    /// as `authorization: Bearer <key>` (`false`).
    pub verify_auth: bool,
    /// The SHA-256 (hex) of a root key generated elsewhere (`keyward root-key generate`): a root
    /// key with this digest is provisioned at start if missing, never printed.
    pub root_key_sha256: Option<String>,
    /// Whether an empty store gets a first root key at start (`true`).
    pub bootstrap: bool,
    /// Where the first root key is written, mode 0600, never overwritten (`keyward-root-key`).
    pub root_key_file: PathBuf,
    /// Prometheus metrics (and health) on their own address; off when unset. The HTTP
    /// listener serves them too.
    pub metrics_addr: Option<SocketAddr>,
    /// HTTP listener: forward auth (`/auth`), `/metrics`, `/healthz`, `/readyz`.
    pub http_listen: SocketAddr,
    /// gRPC health alone, plaintext, for probes that cannot speak TLS; off when unset.
    pub health_listen: Option<SocketAddr>,
    /// Whether the HTTP listener serves the JSON API (`/v1`) and the admin page (`/admin`)
    /// (`true`). Turn it off where the HTTP listener faces gateways only.
    pub http_api: bool,
    /// Serve the JSON API and the admin page on this address instead of `http_listen` (off:
    /// on `http_listen`).
    pub http_manage_listen: Option<SocketAddr>,
    /// The catalog preset a key created over the JSON API without scopes, a preset or
    /// `grantAll` gets (e.g. `read_only`); unset: such a request is refused.
    pub http_api_default_preset: Option<String>,
    /// Where portal links point (`https://keys.example.com`); unset: `http://` and the
    /// address the JSON API is served on.
    pub portal_url: Option<String>,
    /// A portal session unused this long ends (`30m`).
    #[serde(with = "duration::human")]
    pub portal_idle_timeout: Duration,
    /// A portal session ends this long after its link was made, used or not (`12h`).
    #[serde(with = "duration::human")]
    pub portal_session_lifetime: Duration,
    /// Origins that may frame the portal page (`https://app.example.com`); empty: none.
    pub portal_frame_ancestors: Vec<String>,
    /// Origins a portal's logo may come from (`https://cdn.example.com`); empty: no logos.
    pub portal_logo_origins: Vec<String>,
    /// TLS certificate chain (PEM) for every listener; off (plaintext) when unset.
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM), with `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) whose client certificates are required (mutual TLS); off when unset.
    pub tls_client_ca: Option<PathBuf>,
    /// The gateway faces (Envoy ext_authz and HTTP forward auth).
    pub gateway: GatewayConfig,
    /// Prefixes of imported keys issued elsewhere (e.g. `["sk_live_"]`): Verify hashes and
    /// looks those up instead of answering MALFORMED. Empty: only keyward's format.
    pub foreign_key_prefixes: Vec<String>,
    /// Brand prefix of keys.
    pub key_prefix: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Active keys per account unless the account overrides it.
    pub max_active_keys: u32,
    /// Units per window for keys without their own rate limit.
    pub rate_limit: u32,
    /// The default rate limit's window (`2m`).
    #[serde(with = "duration::human")]
    pub rate_limit_window: Duration,
    /// TTL of keys created without one (`30d`, `1y`, `never`).
    #[serde(with = "duration::ttl")]
    pub default_ttl: Option<Duration>,
    /// Longest TTL a key may get (`never` = unlimited).
    #[serde(with = "duration::ttl")]
    pub max_ttl: Option<Duration>,
    /// Most keys held in the verify cache.
    pub cache_capacity: u64,
    /// Backstop lifetime of a cached key (`5m`).
    #[serde(with = "duration::human")]
    pub cache_ttl: Duration,
    /// How long a cached key may still be served while the database is unreachable (`1h`).
    #[serde(with = "duration::human")]
    pub stale_limit: Duration,
    /// Most unknown keys remembered.
    pub negative_cache_capacity: u64,
    /// How long an unknown key is remembered (`5s`).
    #[serde(with = "duration::human")]
    pub negative_cache_ttl: Duration,
    /// How long shutdown waits for in-flight calls (`10s`).
    #[serde(with = "duration::human")]
    pub shutdown_timeout: Duration,
    /// How often coalesced last-use times are written (`10s`): `last_used_at` lags by at most
    /// this plus one second.
    #[serde(with = "duration::human")]
    pub last_used_interval: Duration,
    /// Count every decision per key over time (`true`): what GetUsage, `/v1/usage` and the
    /// admin page's chart show.
    pub usage_counting: bool,
    /// How often counted decisions are written (`10s`): a replica killed without a graceful
    /// stop loses at most this much of its counts.
    #[serde(with = "duration::human")]
    pub usage_flush_interval: Duration,
    /// How long minute buckets are kept (`48h`).
    #[serde(with = "duration::human")]
    pub usage_retention_minutes: Duration,
    /// How long hour buckets are kept (`90d`).
    #[serde(with = "duration::human")]
    pub usage_retention_hours: Duration,
    /// How long day buckets are kept (`2y`).
    #[serde(with = "duration::human")]
    pub usage_retention_days: Duration,
    /// Most connections each listener keeps open at once; past that, accepting waits.
    pub max_connections: usize,
    /// Store look-ups per second for well-formed keys not known to exist (`50`): bounds the
    /// database work of a flood of random keys.
    pub unknown_key_lookups_per_second: u32,
    /// How long a new connection may take to send its first bytes before it is closed.
    #[serde(with = "duration::human")]
    pub handshake_timeout: Duration,
    /// How long a connection may stay silent before it is closed (keepalive pings count).
    #[serde(with = "duration::human")]
    pub idle_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            manage_listen: None,
            database_url: DatabaseUrl::new("sqlite://keyward.db"),
            scopes_file: None,
            rate_limit_store: None,
            verify_auth: false,
            root_key_sha256: None,
            bootstrap: true,
            root_key_file: PathBuf::from("keyward-root-key"),
            metrics_addr: None,
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            health_listen: None,
            http_api: true,
            http_api_default_preset: None,
            http_manage_listen: None,
            portal_url: None,
            portal_idle_timeout: Duration::from_secs(30 * 60),
            portal_session_lifetime: Duration::from_secs(12 * 3_600),
            portal_frame_ancestors: Vec::new(),
            portal_logo_origins: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            gateway: GatewayConfig::default(),
            foreign_key_prefixes: Vec::new(),
            key_prefix: "kw".into(),
            log_format: LogFormat::Text,
            max_active_keys: 10,
            rate_limit: 100,
            rate_limit_window: Duration::from_secs(120),
            default_ttl: None,
            max_ttl: None,
            cache_capacity: 1_000_000,
            cache_ttl: Duration::from_secs(300),
            stale_limit: Duration::from_secs(3600),
            negative_cache_capacity: 100_000,
            negative_cache_ttl: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(10),
            last_used_interval: Duration::from_secs(10),
            usage_counting: true,
            usage_flush_interval: Duration::from_secs(10),
            usage_retention_minutes: Duration::from_secs(48 * 3_600),
            usage_retention_hours: Duration::from_secs(90 * 86_400),
            usage_retention_days: Duration::from_secs(2 * 365 * 86_400),
            max_connections: 4096,
            unknown_key_lookups_per_second: 50,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
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
    /// Serve ManageService on its own address, to keep it internal [env: KEYWARD_MANAGE_LISTEN]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manage_listen: Option<SocketAddr>,
    /// sqlite://FILE or postgres://… [env: KEYWARD_DATABASE_URL] [default: sqlite://keyward.db]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Valkey/Redis shared by the replicas for rate limits: redis://… or rediss://… [env: KEYWARD_RATE_LIMIT_STORE] [default: off, per-replica counters]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_store: Option<String>,
    /// Scope catalog (TOML) replacing the built-in one [env: KEYWARD_SCOPES_FILE]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes_file: Option<PathBuf>,
    /// Where the first root key is written [env: KEYWARD_ROOT_KEY_FILE] [default: keyward-root-key]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_key_file: Option<PathBuf>,
    /// Serve Prometheus metrics on this address [env: KEYWARD_METRICS_ADDR] [default: off]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<SocketAddr>,
    /// HTTP listener: forward auth, metrics, health [env: KEYWARD_HTTP_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_listen: Option<SocketAddr>,
    /// The JSON API and admin page on their own address [env: KEYWARD_HTTP_MANAGE_LISTEN] [default: on --http-listen]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_manage_listen: Option<SocketAddr>,
    /// gRPC health only, plaintext, for the kubelet's probes [env: KEYWARD_HEALTH_LISTEN] [default: off]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_listen: Option<SocketAddr>,
    /// TLS certificate chain, PEM; re-read when it changes [env: KEYWARD_TLS_CERT] [default: off]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key, PEM [env: KEYWARD_TLS_KEY]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (mutual TLS) [env: KEYWARD_TLS_CLIENT_CA]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_client_ca: Option<PathBuf>,
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
    "manage_listen",
    "database_url",
    "scopes_file",
    "rate_limit_store",
    "verify_auth",
    "root_key_sha256",
    "bootstrap",
    "root_key_file",
    "metrics_addr",
    "http_listen",
    "health_listen",
    "http_api",
    "http_api_default_preset",
    "http_manage_listen",
    "portal_url",
    "portal_idle_timeout",
    "portal_session_lifetime",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
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
    "usage_counting",
    "usage_flush_interval",
    "usage_retention_minutes",
    "usage_retention_hours",
    "usage_retention_days",
    "max_connections",
    "unknown_key_lookups_per_second",
    "handshake_timeout",
    "idle_timeout",
];

/// A layer's error as users write settings: the setting's name (`max_ttl`, not figment's
/// `default.max_ttl`) and where the value came from (`KEYWARD_MAX_TTL`, the file).
fn describe(error: figment::Error) -> ConfigError {
    let messages: Vec<String> = error
        .into_iter()
        .map(|e| {
            let setting = e.path.join(".").to_ascii_lowercase();
            let from = match &e.metadata {
                Some(m) if m.name.contains("environment") => {
                    format!(" (from KEYWARD_{})", setting.to_ascii_uppercase())
                }
                Some(m) => match &m.source {
                    Some(source) => format!(" (from {source})"),
                    None => format!(" (from {})", m.name),
                },
                None => String::new(),
            };
            match setting.as_str() {
                "" => format!("{}{from}", e.kind),
                _ => format!("{setting}: {}{from}", e.kind),
            }
        })
        .collect();
    ConfigError(messages.join("; "))
}

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
            .map_err(describe)?;
        config.validate()?;
        Ok(config)
    }

    /// How portal sessions behave.
    pub fn portal_settings(&self) -> crate::service::PortalSettings {
        let listener = self.http_manage_listen.unwrap_or(self.http_listen);
        // The HTTP listeners speak TLS when the server has a certificate.
        let scheme = if self.tls_files().is_some() {
            "https"
        } else {
            "http"
        };
        crate::service::PortalSettings {
            idle_timeout: self.portal_idle_timeout,
            lifetime: self.portal_session_lifetime,
            base_url: self
                .portal_url
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{listener}")),
            logo_origins: self.portal_logo_origins.clone(),
        }
    }

    /// How long each usage bucket width is kept.
    pub fn usage_retention(&self) -> Vec<(crate::usage::Granularity, Duration)> {
        use crate::usage::Granularity;
        vec![
            (Granularity::Minute, self.usage_retention_minutes),
            (Granularity::Hour, self.usage_retention_hours),
            (Granularity::Day, self.usage_retention_days),
        ]
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let err = |setting: &str, e: String| ConfigError(format!("{setting}: {e}"));
        KeyPrefix::parse(&self.key_prefix).map_err(|e| err("key_prefix", e))?;
        if let Some(problem) = self.rate_limit_store.as_ref().and_then(EngineUrl::problem) {
            return Err(err("rate_limit_store", problem));
        }
        if self.max_active_keys == 0 {
            return Err(err("max_active_keys", "must be at least 1".into()));
        }
        if self.rate_limit == 0 {
            return Err(err("rate_limit", "must be at least 1".into()));
        }
        if self.rate_limit_window.as_secs() == 0 {
            return Err(err(
                "rate_limit_window",
                "must be at least one second".into(),
            ));
        }
        for (setting, value) in [
            ("last_used_interval", self.last_used_interval),
            ("usage_flush_interval", self.usage_flush_interval),
            ("usage_retention_minutes", self.usage_retention_minutes),
            ("usage_retention_hours", self.usage_retention_hours),
            ("usage_retention_days", self.usage_retention_days),
            ("handshake_timeout", self.handshake_timeout),
            ("portal_idle_timeout", self.portal_idle_timeout),
            ("portal_session_lifetime", self.portal_session_lifetime),
            ("idle_timeout", self.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(err(setting, "must be longer than zero".into()));
            }
        }
        if let Some(url) = &self.portal_url {
            let origin = crate::portal::url_origin(url).map_err(|e| err("portal_url", e))?;
            if url.trim_end_matches('/') != origin {
                return Err(err(
                    "portal_url",
                    format!("must be an origin without a path, e.g. {origin}"),
                ));
            }
        }
        for (setting, origins) in [
            ("portal_frame_ancestors", &self.portal_frame_ancestors),
            ("portal_logo_origins", &self.portal_logo_origins),
        ] {
            for o in origins {
                match crate::portal::url_origin(o) {
                    Ok(origin) if origin == *o => {}
                    Ok(origin) => {
                        return Err(err(
                            setting,
                            format!("{o:?} must be written as an origin: {origin}"),
                        ));
                    }
                    Err(e) => return Err(err(setting, format!("{o:?} {e}"))),
                }
            }
        }
        if self.root_key_sha256.is_some() && self.root_key_digest().is_none() {
            return Err(err(
                "root_key_sha256",
                "must be 64 hexadecimal digits (the SHA-256 of a kw_live_ key)".into(),
            ));
        }
        Gateway::new(&self.gateway).map_err(ConfigError)?;
        let own = format!("{}_", self.key_prefix);
        for prefix in &self.foreign_key_prefixes {
            let printable = !prefix.is_empty()
                && prefix.len() <= 32
                && prefix.bytes().all(|b| b.is_ascii_graphic());
            if !printable {
                return Err(err(
                    "foreign_key_prefixes",
                    format!("{prefix:?} must be 1-32 printable characters"),
                ));
            }
            // keyward's own keys keep their checksum fast path.
            if own.starts_with(prefix.as_str()) || prefix.starts_with(own.as_str()) {
                return Err(err(
                    "foreign_key_prefixes",
                    format!("{prefix:?} overlaps keyward's own key prefix {own:?}"),
                ));
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err(err("tls_key", "is required with tls_cert".into())),
            (None, Some(_)) => return Err(err("tls_cert", "is required with tls_key".into())),
            _ => {}
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err(err(
                "tls_client_ca",
                "needs tls_cert and tls_key (mutual TLS is TLS)".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(err("max_connections", "must be at least 1".into()));
        }
        if let (Some(default), Some(max)) = (self.default_ttl, self.max_ttl)
            && default > max
        {
            return Err(err(
                "default_ttl",
                format!("is longer than max_ttl ({})", duration::format(max)),
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
    /// The digest `root_key_sha256` names, if set and well-formed.
    pub fn root_key_digest(&self) -> Option<crate::key::KeyDigest> {
        crate::key::KeyDigest::from_hex(self.root_key_sha256.as_deref()?.trim())
    }

    /// The TLS files, when TLS is on.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// Bounds on the connections each listener keeps.
    pub fn connection_limits(&self) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: self.max_connections,
            handshake_timeout: self.handshake_timeout,
            idle_timeout: self.idle_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyward.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), &Flags::default())
    }

    #[test]
    fn durations_are_durations_and_a_bad_one_is_an_error() {
        let config = load_toml("cache_ttl = \"90s\"\nmax_ttl = \"1y\"\ndefault_ttl = \"30d\"\n")
            .expect("valid durations");
        assert_eq!(config.cache_ttl, Duration::from_secs(90));
        assert_eq!(config.max_ttl, Some(Duration::from_secs(365 * 86_400)));
        assert_eq!(config.default_ttl, Some(Duration::from_secs(30 * 86_400)));
        for (text, setting) in [
            ("cache_ttl = \"5 minutes\"", "cache_ttl"),
            ("stale_limit = \"1x\"", "stale_limit"),
            ("max_ttl = \"forever\"", "max_ttl"),
            ("max_ttl = \"10000y\"", "max_ttl"),
            ("idle_timeout = \"0s\"", "idle_timeout"),
        ] {
            let error = load_toml(text).expect_err(text).to_string();
            assert!(error.contains(setting), "{text}: {error}");
        }
        let error = load_toml("default_ttl = \"90d\"\nmax_ttl = \"30d\"\n")
            .expect_err("default above max")
            .to_string();
        assert!(error.contains("default_ttl"), "{error}");
    }

    #[test]
    fn a_rate_limit_store_must_be_a_redis_url_and_is_never_printed_with_its_password() {
        let config = load_toml("rate_limit_store = \"redis://:pw@127.0.0.1:6379/0\"\n")
            .expect("a redis URL");
        assert!(!format!("{config:?}").contains(":pw@"));
        let error = load_toml("rate_limit_store = \"postgres://u:pw@db/x\"\n")
            .expect_err("not a redis URL")
            .to_string();
        assert!(error.contains("rate_limit_store: "), "{error}");
        assert!(!error.contains(":pw@"), "{error}");
    }

    #[test]
    fn portal_origins_are_origins() {
        let config = load_toml(
            "portal_url = \"https://keys.example.com\"\n\
             portal_frame_ancestors = [\"https://app.example.com\"]\n",
        )
        .expect("origins");
        assert_eq!(
            config.portal_settings().base_url,
            "https://keys.example.com"
        );
        assert_eq!(
            Config::default().portal_settings().base_url,
            "http://127.0.0.1:8080"
        );
        for (text, setting) in [
            (
                "portal_url = \"https://keys.example.com/portal\"",
                "portal_url",
            ),
            ("portal_url = \"keys.example.com\"", "portal_url"),
            ("portal_frame_ancestors = [\"*\"]", "portal_frame_ancestors"),
            (
                "portal_logo_origins = [\"https://CDN.example.com/\"]",
                "portal_logo_origins",
            ),
            ("portal_idle_timeout = \"0s\"", "portal_idle_timeout"),
        ] {
            let error = load_toml(text).expect_err(text).to_string();
            assert!(error.contains(setting), "{text}: {error}");
        }
    }
}
