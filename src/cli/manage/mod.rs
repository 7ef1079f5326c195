//! `keyward keys|accounts|scopes|audit`: every management action from a shell, over gRPC to a
//! running server. The caller's key comes from `KEYWARD_KEY` (never a flag: flags land in shell
//! history). Human output is an aligned table with relative times; `--output json` prints one
//! JSON document per command with stable field names. The secret of a created or rotated key
//! is printed on stdout, once, with a warning on stderr.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use comfy_table::{Table, presets};
use prost_types::{FieldMask, Timestamp};
use serde_json::{Value, json};
use tonic::Request;
use tonic::transport::Channel;

use keyward::proto::manage_service_client::ManageServiceClient;
use keyward::proto::{self, Environment, Refill};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned tables for people.
    Table,
    /// One JSON document per command, for scripts.
    Json,
}

/// Where the server is and how to talk to it.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The server [env: KEYWARD_SERVER]
    #[arg(long, env = "KEYWARD_SERVER", default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    /// Speak TLS, trusting this CA (PEM) [env: KEYWARD_TLS_CA]
    #[arg(long, env = "KEYWARD_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS [env: KEYWARD_TLS_CERT]
    #[arg(long, env = "KEYWARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM) [env: KEYWARD_TLS_KEY]
    #[arg(long, env = "KEYWARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// `keyward keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create(CreateArgs),
    /// List keys (metadata only).
    List(ListArgs),
    /// Show one key.
    Get {
        /// The key's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a key's name, scopes, expiry or restrictions (only what is given changes).
    Update(UpdateArgs),
    /// Issue a replacement key; the old one keeps working for the grace period.
    Rotate {
        /// The key's id.
        id: String,
        /// How long the old key keeps working, e.g. 24h (default: the server's).
        #[arg(long)]
        grace: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Report strings found in public (one per line, from FILE or - for stdin): live keys
    /// among them are revoked, each string answered.
    ReportLeaked {
        /// Where they were found (a URL, "pastebin", …); recorded in the audit log.
        #[arg(long)]
        source: String,
        /// The file of strings, one per line; `-` reads stdin.
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Import keys issued elsewhere by their SHA-256, from JSON Lines or CSV (root only):
    /// {"sha256", "prefix", "account_id", "name", "environment", "scopes" | "preset",
    /// "grant_all", "expires_at", "created_at", "last_used_at", "rate_limit"} per line, or a
    /// CSV header naming those columns. An interrupted import of a file, run again, resumes
    /// after the last answered line.
    Import {
        /// The file; `-` reads stdin.
        file: PathBuf,
        /// The file's format [default: csv for a .csv file, else jsonl].
        #[arg(long, value_enum)]
        format: Option<import::Format>,
        /// Records per call (one transaction each), at most 1000.
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Calls in flight at once, at most 16.
        #[arg(long, default_value_t = 4)]
        in_flight: usize,
        /// Start from the first line even if an earlier import of this file was interrupted.
        #[arg(long)]
        restart: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a key, at once.
    Revoke {
        /// The key's id.
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `keyward keys create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The account the key belongs to.
    #[arg(long)]
    account: String,
    /// A name to recognise the key by.
    #[arg(long)]
    name: String,
    /// A scope the key holds (repeatable).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// A preset of the scope catalog instead of scopes.
    #[arg(long)]
    preset: Option<String>,
    /// Every non-reserved scope.
    #[arg(long)]
    grant_all: bool,
    /// `test` keys act only on test data.
    #[arg(long, value_enum, default_value = "live")]
    environment: Env,
    /// Lifetime: 30d, 60d, 90d, 1y, … or never (default: the server's).
    #[arg(long)]
    expires_in: Option<String>,
    /// An allowed client network, CIDR (repeatable).
    #[arg(long = "allowed-cidr")]
    allowed_cidrs: Vec<String>,
    /// An allowed referrer pattern (repeatable).
    #[arg(long = "allowed-referrer")]
    allowed_referrers: Vec<String>,
    /// An allowed path pattern (repeatable).
    #[arg(long = "allowed-path")]
    allowed_paths: Vec<String>,
    /// An allowed HTTP method (repeatable).
    #[arg(long = "allowed-method")]
    allowed_methods: Vec<String>,
    /// Metadata, key=value (repeatable).
    #[arg(long = "meta", value_parser = parse_meta)]
    meta: Vec<(String, String)>,
    /// Usage credits: units the key may spend in total (unlimited when absent).
    #[arg(long)]
    credits: Option<u64>,
    /// Refill the credits to AMOUNT daily or monthly: `AMOUNT/daily`, `AMOUNT/monthly` or
    /// `AMOUNT/monthly:DAY` (with --credits).
    #[arg(long, value_parser = parse_refill, requires = "credits")]
    refill: Option<Refill>,
    #[command(flatten)]
    client: ClientArgs,
}

/// A key's environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Env {
    /// Production.
    Live,
    /// Test.
    Test,
}

/// `keyward keys list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The account (default: the calling key's).
    #[arg(long)]
    account: Option<String>,
    /// Only keys not used for this long (never-used keys count), e.g. 30d.
    #[arg(long)]
    unused_since: Option<String>,
    /// Revoked keys too.
    #[arg(long)]
    include_revoked: bool,
    /// The most used keys first, counting decisions over this long (e.g. 30d), with a USES
    /// column.
    #[arg(long)]
    most_used: Option<String>,
    /// At most this many keys.
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    client: ClientArgs,
}

/// `keyward keys update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The key's id.
    id: String,
    /// A new name.
    #[arg(long)]
    name: Option<String>,
    /// The key's scopes, replacing the current ones (repeatable).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// A new lifetime from now (30d, 1y, …) or `never`.
    #[arg(long)]
    expires_in: Option<String>,
    /// Allowed client networks, replacing the current ones (repeatable).
    #[arg(long = "allowed-cidr")]
    allowed_cidrs: Vec<String>,
    /// Set the credits to this balance (a new period), or `unlimited`.
    #[arg(long)]
    credits: Option<String>,
    /// With --credits: refill to AMOUNT daily or monthly (`AMOUNT/daily`, `AMOUNT/monthly:DAY`).
    #[arg(long, value_parser = parse_refill, requires = "credits")]
    refill: Option<Refill>,
    /// Add units to the credits (negative: take), race-free with spending.
    #[arg(long, allow_hyphen_values = true)]
    add_credits: Option<i64>,
    #[command(flatten)]
    client: ClientArgs,
}

/// `--refill`: `AMOUNT/daily`, `AMOUNT/monthly` or `AMOUNT/monthly:DAY`.
fn parse_refill(text: &str) -> Result<Refill, String> {
    let usage = || format!("{text:?} is not AMOUNT/daily, AMOUNT/monthly or AMOUNT/monthly:DAY");
    let (amount, rest) = text.split_once('/').ok_or_else(usage)?;
    let amount: u64 = amount.parse().map_err(|_| usage())?;
    let (interval, day) = match rest.split_once(':') {
        None if rest == "daily" => (proto::RefillInterval::Daily, 0),
        None if rest == "monthly" => (proto::RefillInterval::Monthly, 0),
        Some(("monthly", day)) => (
            proto::RefillInterval::Monthly,
            day.parse::<u32>().map_err(|_| usage())?,
        ),
        _ => return Err(usage()),
    };
    Ok(Refill {
        amount,
        interval: interval.into(),
        day_of_month: day,
    })
}

/// `keyward accounts …`.
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Offboard an account: revoke every key of it that still works, at once.
    Offboard {
        /// The account.
        account: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show an account: its key limit, whether it is disabled, its active keys.
    Get {
        /// The account.
        account: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change an account's key limit or shared rate limit, or disable it.
    Update {
        /// The account.
        account: String,
        /// Active keys allowed (0: the server default).
        #[arg(long)]
        max_active_keys: Option<u32>,
        /// Disable (true) or re-enable (false) every key of the account.
        #[arg(long)]
        disabled: Option<bool>,
        /// A rate limit all the account's keys share, `UNITS/WINDOW` (e.g. `1000/1m`), or
        /// `none` to remove it.
        #[arg(long, value_parser = parse_shared_limit)]
        rate_limit: Option<SharedLimit>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `--rate-limit`: a limit, or `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedLimit(Option<proto::RateLimit>);

fn parse_shared_limit(text: &str) -> Result<SharedLimit, String> {
    if text == "none" {
        return Ok(SharedLimit(None));
    }
    let (units, window) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not UNITS/WINDOW (e.g. 1000/1m) or none"))?;
    let limit: u32 = units
        .parse()
        .map_err(|_| format!("{units:?} is not a number of units"))?;
    let window = keyward::duration::parse(window)?;
    Ok(SharedLimit(Some(proto::RateLimit {
        limit,
        window: Some(prost_types::Duration {
            seconds: i64::try_from(window.as_secs()).unwrap_or(i64::MAX),
            nanos: 0,
        }),
    })))
}

fn parse_meta(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

mod accounts;
mod client;
mod import;
mod keys;
mod leaked;
mod portal;
mod show;
mod usage;

pub use accounts::{accounts, audit, scopes};
pub use client::Failure;
use client::*;
pub use keys::keys;
pub use portal::{PortalCommand, portal};
pub use show::relative;
use show::*;
pub use usage::{UsageArgs, usage};
