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
    /// Import keys issued elsewhere by their SHA-256, from a JSON Lines file (root only):
    /// {"sha256", "prefix", "account_id", "name", "environment", "scopes" | "preset",
    /// "grant_all", "expires_at", "created_at", "last_used_at"} per line.
    Import {
        /// The JSON Lines file; `-` reads stdin.
        file: PathBuf,
        /// Records per call (one transaction each), at most 1000.
        #[arg(long, default_value_t = 500)]
        batch: usize,
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

/// The calling key, from the environment only.
fn caller_key() -> Result<String, Failure> {
    std::env::var("KEYWARD_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| {
            Failure::Usage(
                "set KEYWARD_KEY to a key holding keys:read, keys:write or root (never on the \
                 command line: it would land in shell history)"
                    .into(),
            )
        })
}

/// How a command failed: the exit code tells scripts which.
#[derive(Debug)]
pub enum Failure {
    /// Refused by the server or unreachable (exit 1).
    Failed(String),
    /// The command was used wrongly (exit 2).
    Usage(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Failed(message)
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Failure::Failed(message.to_owned())
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Failure::Failed(format!("{:?}: {}", status.code(), status.message()))
    }
}

struct Client {
    manage: ManageServiceClient<Channel>,
    key: String,
    output: Output,
}

impl Client {
    async fn connect(args: &ClientArgs) -> Result<Client, Failure> {
        let key = caller_key()?;
        let channel = match &args.tls_ca {
            Some(ca) => {
                let identity = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
                keyward::tls::grpc_channel(&args.server, ca, identity)
                    .await
                    .map_err(Failure::Failed)?
            }
            None => tonic::transport::Endpoint::from_shared(args.server.clone())
                .map_err(|e| Failure::Usage(format!("bad server address {}: {e}", args.server)))?
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(30))
                .connect()
                .await
                .map_err(|e| Failure::Failed(format!("cannot reach {}: {e}", args.server)))?,
        };
        Ok(Client {
            manage: ManageServiceClient::new(channel),
            key,
            output: args.output,
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Ok(value) = format!("Bearer {}", self.key).parse() {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}

fn duration(text: &str) -> Result<prost_types::Duration, Failure> {
    let d = keyward::duration::parse(text).map_err(Failure::Usage)?;
    Ok(prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    })
}

/// `keyward keys …`.
pub async fn keys(command: KeysCommand) -> Result<(), Failure> {
    match command {
        KeysCommand::Create(args) => create(args).await,
        KeysCommand::List(args) => list(args).await,
        KeysCommand::Get { id, client } => {
            let mut c = Client::connect(&client).await?;
            let key = c
                .manage
                .get_key(c.request(proto::GetKeyRequest { id }))
                .await?
                .into_inner()
                .api_key
                .unwrap_or_default();
            show_key(c.output, &key);
            Ok(())
        }
        KeysCommand::Update(args) => update(args).await,
        KeysCommand::Rotate { id, grace, client } => {
            let mut c = Client::connect(&client).await?;
            let grace_period = grace.as_deref().map(duration).transpose()?;
            let answer = c
                .manage
                .rotate_key(c.request(proto::RotateKeyRequest { id, grace_period }))
                .await?
                .into_inner();
            let key = answer.api_key.unwrap_or_default();
            let previous = answer.previous_api_key.unwrap_or_default();
            print_secret(
                c.output,
                &answer.key,
                &key,
                Some(&previous),
                "the new key is shown this once; store it now (the old one keeps working until its new expiry)",
            );
            Ok(())
        }
        KeysCommand::Import {
            file,
            batch,
            client,
        } => import(&file, batch, &client).await,
        KeysCommand::ReportLeaked {
            source,
            file,
            client,
        } => report_leaked(&source, &file, &client).await,
        KeysCommand::Revoke { id, client } => {
            let mut c = Client::connect(&client).await?;
            let key = c
                .manage
                .revoke_key(c.request(proto::RevokeKeyRequest { id }))
                .await?
                .into_inner()
                .api_key
                .unwrap_or_default();
            match c.output {
                Output::Json => println!("{}", json!({ "api_key": key_json(&key) })),
                Output::Table => println!("revoked {} ({})", key.prefix, key.name),
            }
            Ok(())
        }
    }
}

async fn report_leaked(source: &str, file: &PathBuf, client: &ClientArgs) -> Result<(), Failure> {
    let text = read_input(file)?;
    let strings: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if strings.is_empty() {
        return Err(Failure::Usage("no strings to report".into()));
    }
    let mut c = Client::connect(client).await?;
    let mut results = Vec::with_capacity(strings.len());
    // The server takes at most 100 strings a call.
    for chunk in strings.chunks(100) {
        let answer = c
            .manage
            .report_leaked_keys(c.request(proto::ReportLeakedKeysRequest {
                keys: chunk.to_vec(),
                source: source.to_owned(),
            }))
            .await?
            .into_inner();
        results.extend(answer.results);
    }
    let outcome = |o: i32| label(proto::LeakOutcome::try_from(o).map(|o| o.as_str_name()));
    match c.output {
        Output::Json => println!(
            "{}",
            json!({ "results": results.iter().enumerate().map(|(i, r)| json!({
                "line": i + 1,
                "outcome": outcome(r.outcome),
                "key_id": r.key_id,
                "account_id": r.account_id,
                "prefix": r.prefix,
            })).collect::<Vec<_>>() })
        ),
        Output::Table => {
            let mut table = table(&["LINE", "OUTCOME", "PREFIX", "ACCOUNT", "ID"]);
            for (i, r) in results.iter().enumerate() {
                table.add_row(vec![
                    (i + 1).to_string(),
                    outcome(r.outcome),
                    r.prefix.clone(),
                    r.account_id.clone(),
                    r.key_id.clone(),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}

/// The text of `file`, or of stdin for `-`.
fn read_input(file: &PathBuf) -> Result<String, Failure> {
    if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| Failure::Usage(format!("cannot read stdin: {e}")))
    } else {
        std::fs::read_to_string(file)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))
    }
}

/// One line of an import file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportLine {
    sha256: String,
    prefix: String,
    account_id: String,
    name: String,
    environment: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    preset: Option<String>,
    #[serde(default)]
    grant_all: bool,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    last_used_at: Option<String>,
    /// The key's own rate limit, e.g. `{"limit": 100, "window": "2m"}`.
    #[serde(default)]
    rate_limit: Option<ImportRateLimit>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRateLimit {
    limit: u32,
    window: String,
}

impl ImportLine {
    fn into_proto(self) -> Result<proto::ImportedKey, String> {
        let time = |field: &str, t: Option<String>| {
            t.map(|t| {
                t.parse::<Timestamp>()
                    .map_err(|e| format!("{field}: {e} (RFC 3339, e.g. 2025-01-31T12:00:00Z)"))
            })
            .transpose()
        };
        Ok(proto::ImportedKey {
            sha256: self.sha256,
            prefix: self.prefix,
            account_id: self.account_id,
            name: self.name,
            environment: match self.environment.as_str() {
                "live" => Environment::Live,
                "test" => Environment::Test,
                other => return Err(format!("environment: {other:?} is not live or test")),
            }
            .into(),
            scopes: self.scopes,
            preset: self.preset.unwrap_or_default(),
            grant_all: self.grant_all,
            expires_at: time("expires_at", self.expires_at)?,
            created_at: time("created_at", self.created_at)?,
            last_used_at: time("last_used_at", self.last_used_at)?,
            rate_limit: match self.rate_limit {
                None => None,
                Some(rl) => Some(proto::RateLimit {
                    limit: rl.limit,
                    window: Some(duration(&rl.window).map_err(|e| match e {
                        Failure::Failed(m) | Failure::Usage(m) => {
                            format!("rate_limit.window: {m}")
                        }
                    })?),
                }),
            },
        })
    }
}

async fn import(file: &PathBuf, batch: usize, client: &ClientArgs) -> Result<(), Failure> {
    let text = read_input(file)?;
    let batch = batch.clamp(1, 1000);
    // (line number, record or why the line is refused here)
    let lines: Vec<(usize, Result<proto::ImportedKey, String>)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            let record = serde_json::from_str::<ImportLine>(l)
                .map_err(|e| e.to_string())
                .and_then(ImportLine::into_proto);
            (n + 1, record)
        })
        .collect();
    let mut c = Client::connect(client).await?;
    let bar = indicatif::ProgressBar::new(lines.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} keys ({per_sec}, {eta} left)",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut imported, mut present) = (0u64, 0u64);
    let mut rejected: Vec<(usize, String)> = Vec::new();
    let mut outcomes: Vec<Value> = Vec::new();
    for chunk in lines.chunks(batch) {
        let mut sent = Vec::new();
        for (line, record) in chunk {
            match record {
                Ok(record) => sent.push((*line, record.clone())),
                Err(why) => rejected.push((*line, why.clone())),
            }
        }
        if !sent.is_empty() {
            let answer = c
                .manage
                .import_keys(c.request(proto::ImportKeysRequest {
                    keys: sent.iter().map(|(_, r)| r.clone()).collect(),
                }))
                .await?
                .into_inner();
            for ((line, _), result) in sent.iter().zip(&answer.results) {
                match proto::ImportOutcome::try_from(result.outcome) {
                    Ok(proto::ImportOutcome::Imported) => imported += 1,
                    Ok(proto::ImportOutcome::AlreadyPresent) => present += 1,
                    _ => rejected.push((
                        *line,
                        // The server names the record by its place in the call.
                        result
                            .error
                            .split_once('.')
                            .map_or(result.error.as_str(), |(_, e)| e)
                            .to_owned(),
                    )),
                }
                if c.output == Output::Json {
                    outcomes.push(json!({
                        "line": line,
                        "outcome": label(
                            proto::ImportOutcome::try_from(result.outcome).map(|o| o.as_str_name()),
                        ),
                        "key_id": result.key_id,
                        "error": result.error,
                    }));
                }
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    rejected.sort();
    match c.output {
        Output::Json => println!(
            "{}",
            json!({
                "imported": imported,
                "already_present": present,
                "rejected": rejected.iter().map(|(l, e)| json!({"line": l, "error": e})).collect::<Vec<_>>(),
                "results": outcomes,
            })
        ),
        Output::Table => {
            println!(
                "imported {imported}, already present {present}, rejected {}",
                rejected.len()
            );
            for (line, why) in &rejected {
                eprintln!("line {line}: {why}");
            }
        }
    }
    if rejected.is_empty() {
        Ok(())
    } else {
        Err(Failure::Failed(format!(
            "{} record(s) rejected; the others were imported",
            rejected.len()
        )))
    }
}

async fn create(args: CreateArgs) -> Result<(), Failure> {
    let mut c = Client::connect(&args.client).await?;
    let expiry = match args.expires_in.as_deref() {
        None => None,
        // Asked for as such: a server with a max_ttl refuses it rather than pick a lifetime.
        Some("never") => Some(proto::create_key_request::Expiry::NeverExpires(true)),
        Some(text) => Some(proto::create_key_request::Expiry::Ttl(duration(text)?)),
    };
    let restrictions = proto::Restrictions {
        allowed_cidrs: args.allowed_cidrs,
        allowed_referrers: args.allowed_referrers,
        allowed_paths: args.allowed_paths,
        allowed_methods: args.allowed_methods,
    };
    let request = proto::CreateKeyRequest {
        account_id: args.account,
        name: args.name,
        environment: match args.environment {
            Env::Live => Environment::Live,
            Env::Test => Environment::Test,
        }
        .into(),
        scopes: args.scopes,
        preset: args.preset.unwrap_or_default(),
        grant_all: args.grant_all,
        expiry,
        restrictions: Some(restrictions),
        rate_limit: None,
        meta: args.meta.into_iter().collect(),
        credits: args.credits.map(|remaining| proto::Credits {
            remaining,
            refill: args.refill,
            refilled_at: None,
        }),
    };
    let answer = c.manage.create_key(c.request(request)).await?.into_inner();
    let key = answer.api_key.unwrap_or_default();
    print_secret(
        c.output,
        &answer.key,
        &key,
        None,
        "the key is shown this once; store it now",
    );
    Ok(())
}

/// The secret on stdout (alone in table mode, so `$(keyward keys create …)` captures it), the
/// warning on stderr.
fn print_secret(
    output: Output,
    secret: &str,
    key: &proto::ApiKey,
    previous: Option<&proto::ApiKey>,
    warning: &str,
) {
    eprintln!("keyward: {warning}");
    match output {
        Output::Json => {
            let mut doc = json!({ "key": secret, "api_key": key_json(key) });
            if let Some(previous) = previous {
                doc["previous_api_key"] = key_json(previous);
            }
            println!("{doc}");
        }
        Output::Table => println!("{secret}"),
    }
}

async fn list(args: ListArgs) -> Result<(), Failure> {
    let mut c = Client::connect(&args.client).await?;
    let unused_since = match args.unused_since.as_deref() {
        None => None,
        Some(text) => {
            let d = keyward::duration::parse(text).map_err(Failure::Usage)?;
            let at = std::time::SystemTime::now()
                .checked_sub(d)
                .ok_or_else(|| Failure::Usage(format!("--unused-since {text} is too long")))?;
            Some(Timestamp::from(at))
        }
    };
    let mut keys = Vec::new();
    let mut page_token = String::new();
    loop {
        let answer = c
            .manage
            .list_keys(c.request(proto::ListKeysRequest {
                account_id: args.account.clone().unwrap_or_default(),
                include_revoked: args.include_revoked,
                unused_since,
                page_size: 100,
                page_token: page_token.clone(),
            }))
            .await?
            .into_inner();
        keys.extend(answer.api_keys);
        if answer.next_page_token.is_empty() {
            break;
        }
        page_token = answer.next_page_token;
    }
    match c.output {
        Output::Json => println!(
            "{}",
            json!({ "api_keys": keys.iter().map(key_json).collect::<Vec<_>>() })
        ),
        Output::Table => {
            let now = now_secs();
            let mut table = table(&[
                "PREFIX",
                "NAME",
                "ACCOUNT",
                "SCOPES",
                "CREATED",
                "EXPIRES",
                "LAST USED",
                "STATUS",
                "ID",
            ]);
            for key in &keys {
                table.add_row(vec![
                    key.prefix.clone(),
                    key.name.clone(),
                    key.account_id.clone(),
                    scopes_text(key),
                    relative(key.created_at.as_ref(), now, "-"),
                    relative(key.expires_at.as_ref(), now, "never"),
                    relative(key.last_used_at.as_ref(), now, "never"),
                    status(key, now).to_owned(),
                    key.id.clone(),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}

async fn update(args: UpdateArgs) -> Result<(), Failure> {
    let mut c = Client::connect(&args.client).await?;
    let mut paths = Vec::new();
    let mut request = proto::UpdateKeyRequest {
        id: args.id,
        ..Default::default()
    };
    if let Some(name) = args.name {
        request.name = name;
        paths.push("name");
    }
    if !args.scopes.is_empty() {
        request.scopes = args.scopes;
        paths.push("scopes");
    }
    if let Some(text) = args.expires_in {
        if text != "never" {
            let d = keyward::duration::parse(&text).map_err(Failure::Usage)?;
            request.expires_at = Some(Timestamp::from(std::time::SystemTime::now() + d));
        }
        paths.push("expires_at");
    }
    if !args.allowed_cidrs.is_empty() {
        request.restrictions = Some(proto::Restrictions {
            allowed_cidrs: args.allowed_cidrs,
            ..Default::default()
        });
        paths.push("restrictions");
    }
    if let Some(text) = args.credits {
        request.credits = match text.as_str() {
            "unlimited" => None,
            number => Some(proto::Credits {
                remaining: number.parse().map_err(|_| {
                    Failure::Usage(format!(
                        "--credits {number:?}: give a number of units or unlimited"
                    ))
                })?,
                refill: args.refill,
                refilled_at: None,
            }),
        };
        paths.push("credits");
    }
    if let Some(delta) = args.add_credits {
        request.add_credits = delta;
        paths.push("add_credits");
    }
    if paths.is_empty() {
        return Err(Failure::Usage(
            "nothing to change: give --name, --scope, --expires-in, --allowed-cidr, --credits or --add-credits"
                .into(),
        ));
    }
    request.update_mask = Some(FieldMask {
        paths: paths.into_iter().map(String::from).collect(),
    });
    let key = c
        .manage
        .update_key(c.request(request))
        .await?
        .into_inner()
        .api_key
        .unwrap_or_default();
    show_key(c.output, &key);
    Ok(())
}

/// `keyward accounts …`.
pub async fn accounts(command: AccountsCommand) -> Result<(), Failure> {
    let (account, client) = match &command {
        AccountsCommand::Get { account, client }
        | AccountsCommand::Offboard { account, client }
        | AccountsCommand::Update {
            account, client, ..
        } => (account.clone(), client.clone()),
    };
    let mut c = Client::connect(&client).await?;
    let answer = match command {
        AccountsCommand::Offboard { .. } => {
            let keys = c
                .manage
                .revoke_account_keys(c.request(proto::RevokeAccountKeysRequest {
                    account_id: account.clone(),
                }))
                .await?
                .into_inner()
                .api_keys;
            match c.output {
                Output::Json => println!(
                    "{}",
                    json!({ "api_keys": keys.iter().map(key_json).collect::<Vec<_>>() })
                ),
                Output::Table => {
                    println!("revoked {} key(s) of {account}", keys.len());
                    for key in &keys {
                        println!("  {}  {}", key.prefix, key.name);
                    }
                }
            }
            return Ok(());
        }
        AccountsCommand::Get { .. } => {
            c.manage
                .get_account(c.request(proto::GetAccountRequest {
                    account_id: account,
                }))
                .await?
                .into_inner()
                .account
        }
        AccountsCommand::Update {
            max_active_keys,
            disabled,
            rate_limit,
            ..
        } => {
            let mut paths = Vec::new();
            if max_active_keys.is_some() {
                paths.push("max_active_keys".to_owned());
            }
            if disabled.is_some() {
                paths.push("disabled".to_owned());
            }
            if rate_limit.is_some() {
                paths.push("rate_limit".to_owned());
            }
            if paths.is_empty() {
                return Err(Failure::Usage(
                    "nothing to change: give --max-active-keys, --disabled or --rate-limit".into(),
                ));
            }
            c.manage
                .update_account(c.request(proto::UpdateAccountRequest {
                    account_id: account,
                    max_active_keys: max_active_keys.unwrap_or(0),
                    disabled: disabled.unwrap_or(false),
                    update_mask: Some(FieldMask { paths }),
                    rate_limit: rate_limit.and_then(|limit| limit.0),
                }))
                .await?
                .into_inner()
                .account
        }
    };
    let account = answer.unwrap_or_default();
    let doc = json!({
        "account_id": account.account_id,
        "max_active_keys": account.max_active_keys,
        "disabled": account.disabled,
        "active_keys": account.active_keys,
        "rate_limit": account.rate_limit.as_ref().map(|r| json!({
            "limit": r.limit,
            "window_secs": r.window.as_ref().map_or(0, |w| w.seconds),
        })),
    });
    match c.output {
        Output::Json => println!("{doc}"),
        Output::Table => {
            let mut table = table(&["ACCOUNT", "ACTIVE KEYS", "MAX ACTIVE KEYS", "STATUS"]);
            table.add_row(vec![
                account.account_id.clone(),
                account.active_keys.to_string(),
                account.max_active_keys.to_string(),
                if account.disabled {
                    "disabled"
                } else {
                    "enabled"
                }
                .to_owned(),
            ]);
            println!("{table}");
        }
    }
    Ok(())
}

/// `keyward scopes`: the catalog, with risk, and the presets.
pub async fn scopes(client: ClientArgs) -> Result<(), Failure> {
    let mut c = Client::connect(&client).await?;
    let answer = c
        .manage
        .list_scopes(c.request(proto::ListScopesRequest {}))
        .await?
        .into_inner();
    let risk = |r: i32| match proto::ScopeRisk::try_from(r) {
        Ok(proto::ScopeRisk::Low) => "low",
        Ok(proto::ScopeRisk::Medium) => "medium",
        Ok(proto::ScopeRisk::High) => "high",
        _ => "-",
    };
    match c.output {
        Output::Json => println!(
            "{}",
            json!({
                "scopes": answer.scopes.iter().map(|s| json!({
                    "name": s.name, "description": s.description, "risk": risk(s.risk),
                })).collect::<Vec<_>>(),
                "presets": answer.presets.iter().map(|p| json!({
                    "name": p.name, "description": p.description, "scopes": p.scopes,
                    "grant_all": p.grant_all,
                })).collect::<Vec<_>>(),
            })
        ),
        Output::Table => {
            let mut table = table(&["SCOPE", "RISK", "DESCRIPTION"]);
            for s in &answer.scopes {
                table.add_row(vec![
                    s.name.clone(),
                    risk(s.risk).to_owned(),
                    s.description.clone(),
                ]);
            }
            println!("{table}\n");
            let mut presets = table_of(&["PRESET", "SCOPES", "DESCRIPTION"]);
            for p in &answer.presets {
                let scopes = if p.grant_all {
                    "all".to_owned()
                } else {
                    p.scopes.join(", ")
                };
                presets.add_row(vec![p.name.clone(), scopes, p.description.clone()]);
            }
            println!("{presets}");
        }
    }
    Ok(())
}

/// `keyward audit`: the management audit log, newest first.
pub async fn audit(account: Option<String>, client: ClientArgs) -> Result<(), Failure> {
    let mut c = Client::connect(&client).await?;
    let answer = c
        .manage
        .list_audit_events(c.request(proto::ListAuditEventsRequest {
            account_id: account.unwrap_or_default(),
            page_size: 100,
            page_token: String::new(),
        }))
        .await?
        .into_inner();
    let action = |a: i32| label(proto::AuditAction::try_from(a).map(|a| a.as_str_name()));
    match c.output {
        Output::Json => println!(
            "{}",
            json!({ "events": answer.events.iter().map(|e| json!({
                "id": e.id,
                "time": e.time.as_ref().map(rfc3339),
                "actor_key_id": e.actor_key_id,
                "account_id": e.account_id,
                "action": action(e.action),
                "target_key_id": e.target_key_id,
                "changes": e.changes.iter().map(|f| json!({
                    "field": f.field, "old_value": f.old_value, "new_value": f.new_value,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>() })
        ),
        Output::Table => {
            let now = now_secs();
            let mut table = table(&["WHEN", "ACTION", "ACCOUNT", "TARGET", "BY", "CHANGES"]);
            for e in &answer.events {
                let changes: Vec<&str> = e.changes.iter().map(|f| f.field.as_str()).collect();
                table.add_row(vec![
                    relative(e.time.as_ref(), now, "-"),
                    action(e.action),
                    e.account_id.clone(),
                    e.target_key_id.clone(),
                    e.actor_key_id.clone(),
                    changes.join(", "),
                ]);
            }
            println!("{table}");
        }
    }
    Ok(())
}

/// A proto enum value as a stable lower-case label: `LEAK_OUTCOME_REVOKED_NOW` → `revoked_now`
/// (the enum's name prefix dropped), `unknown` for a value this binary does not know.
fn label<E>(name: Result<&str, E>) -> String {
    let Ok(name) = name else {
        return "unknown".into();
    };
    let known = ["LEAK_OUTCOME_", "AUDIT_ACTION_", "IMPORT_OUTCOME_"];
    let bare = known
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    bare.to_lowercase()
}

fn show_key(output: Output, key: &proto::ApiKey) {
    match output {
        Output::Json => println!("{}", json!({ "api_key": key_json(key) })),
        Output::Table => {
            let now = now_secs();
            let mut table = table_of(&["FIELD", "VALUE"]);
            let rows: Vec<(&str, String)> = vec![
                ("prefix", key.prefix.clone()),
                ("id", key.id.clone()),
                ("name", key.name.clone()),
                ("account", key.account_id.clone()),
                ("environment", environment(key.environment).to_owned()),
                ("scopes", scopes_text(key)),
                ("created", relative(key.created_at.as_ref(), now, "-")),
                ("expires", relative(key.expires_at.as_ref(), now, "never")),
                (
                    "last used",
                    relative(key.last_used_at.as_ref(), now, "never"),
                ),
                ("status", status(key, now).to_owned()),
            ];
            for (field, value) in rows {
                table.add_row(vec![field.to_owned(), value]);
            }
            println!("{table}");
        }
    }
}

fn table(header: &[&str]) -> Table {
    table_of(header)
}

fn table_of(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    table.set_header(header.to_vec());
    table
}

fn environment(e: i32) -> &'static str {
    match Environment::try_from(e) {
        Ok(Environment::Live) => "live",
        Ok(Environment::Test) => "test",
        _ => "-",
    }
}

fn scopes_text(key: &proto::ApiKey) -> String {
    if key.grant_all {
        "all".into()
    } else {
        key.scopes.join(", ")
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn status(key: &proto::ApiKey, now: i64) -> &'static str {
    if key.revoked {
        "revoked"
    } else if key.expires_at.as_ref().is_some_and(|t| t.seconds <= now) {
        "expired"
    } else {
        "active"
    }
}

/// "3 days ago", "in 2 months", "just now"; `missing` when there is no time.
pub fn relative(at: Option<&Timestamp>, now: i64, missing: &str) -> String {
    let Some(at) = at else {
        return missing.to_owned();
    };
    let delta = at.seconds - now;
    let secs = delta.unsigned_abs();
    if secs < 60 {
        return "just now".into();
    }
    let (n, unit) = match secs {
        s if s < 3_600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3_600, "hour"),
        s if s < 30 * 86_400 => (s / 86_400, "day"),
        s if s < 365 * 86_400 => (s / (30 * 86_400), "month"),
        s => (s / (365 * 86_400), "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if delta < 0 {
        format!("{n} {unit}{plural} ago")
    } else {
        format!("in {n} {unit}{plural}")
    }
}

fn rfc3339(t: &Timestamp) -> String {
    t.to_string()
}

/// A key as JSON: stable snake_case names, times in RFC 3339, absent times as null.
fn key_json(key: &proto::ApiKey) -> Value {
    let restrictions = key.restrictions.clone().unwrap_or_default();
    json!({
        "id": key.id,
        "account_id": key.account_id,
        "name": key.name,
        "prefix": key.prefix,
        "environment": environment(key.environment),
        "scopes": key.scopes,
        "grant_all": key.grant_all,
        "restrictions": {
            "allowed_cidrs": restrictions.allowed_cidrs,
            "allowed_referrers": restrictions.allowed_referrers,
            "allowed_paths": restrictions.allowed_paths,
            "allowed_methods": restrictions.allowed_methods,
        },
        "rate_limit": key.rate_limit.as_ref().map(|r| json!({
            "limit": r.limit,
            "window_seconds": r.window.as_ref().map(|w| w.seconds),
        })),
        "credits": key.credits.as_ref().map(|c| json!({
            "remaining": c.remaining,
            "refill": c.refill.as_ref().map(|r| json!({
                "amount": r.amount,
                "interval": match proto::RefillInterval::try_from(r.interval) {
                    Ok(proto::RefillInterval::Daily) => "daily",
                    Ok(proto::RefillInterval::Monthly) => "monthly",
                    _ => "unspecified",
                },
                "day_of_month": (r.day_of_month != 0).then_some(r.day_of_month),
            })),
        })),
        "meta": key.meta.iter().collect::<BTreeMap<_, _>>(),
        "created_at": key.created_at.as_ref().map(rfc3339),
        "updated_at": key.updated_at.as_ref().map(rfc3339),
        "expires_at": key.expires_at.as_ref().map(rfc3339),
        "last_used_at": key.last_used_at.as_ref().map(rfc3339),
        "revoked": key.revoked,
        "revoked_at": key.revoked_at.as_ref().map(rfc3339),
        // proto3 writes an absent id as ""; JSON says absent as null.
        "previous_key_id": (!key.previous_key_id.is_empty()).then_some(&key.previous_key_id),
        "created_by": (!key.created_by.is_empty()).then_some(&key.created_by),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_like_a_person_says_them() {
        let at = |s: i64| Timestamp {
            seconds: s,
            nanos: 0,
        };
        let now = 1_000_000_000;
        assert_eq!(relative(None, now, "never"), "never");
        assert_eq!(relative(Some(&at(now - 10)), now, "-"), "just now");
        assert_eq!(
            relative(Some(&at(now - 3 * 86_400)), now, "-"),
            "3 days ago"
        );
        assert_eq!(relative(Some(&at(now - 3_600)), now, "-"), "1 hour ago");
        assert_eq!(
            relative(Some(&at(now + 90 * 86_400)), now, "-"),
            "in 3 months"
        );
    }
}
