//! The `keyward` binary: parses the command line and hands over to the library.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

mod cli;

use clap::{Parser, Subcommand};
use keyward::config::{Config, Flags};
use keyward::server::App;
use tokio::net::TcpListener;

use crate::cli::manage::Failure;

/// mimalloc instead of the system allocator, when built with `--features mimalloc`: less CPU a
/// call, more memory a cached key (measured in docs/benchmarks.md, "Choices").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// keyward: API keys, created once, verified in well under a millisecond.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC server (applies migrations; creates a root key on first start).
    Serve(ConfigArgs),
    /// Apply database migrations and exit.
    Migrate(ConfigArgs),
    /// Load-test a running server (Verify against the health Check floor), or with --peer
    /// measure how fast a revocation reaches another replica.
    Bench(BenchArgs),
    /// Ask a running server whether it serves (gRPC health), for a container HEALTHCHECK or a
    /// script: exit 0 when SERVING, 1 otherwise.
    Health {
        /// The server.
        #[arg(
            long,
            default_value = "http://127.0.0.1:50051",
            env = "KEYWARD_HEALTH_SERVER"
        )]
        server: String,
        /// The service to ask about ("" = the whole server).
        #[arg(long, default_value = "")]
        service: String,
        /// Speak TLS, trusting this CA (PEM); use with an https:// server.
        #[arg(long, env = "KEYWARD_HEALTH_TLS_CA")]
        tls_ca: Option<PathBuf>,
        /// Client certificate (PEM) for a server requiring mutual TLS.
        #[arg(long, requires = "tls_key", env = "KEYWARD_HEALTH_TLS_CERT")]
        tls_cert: Option<PathBuf>,
        /// Client key (PEM).
        #[arg(long, requires = "tls_cert", env = "KEYWARD_HEALTH_TLS_KEY")]
        tls_key: Option<PathBuf>,
    },
    /// Root keys: mint one directly against the store, for recovery.
    RootKey {
        #[command(subcommand)]
        command: RootKeyCommand,
    },
    /// Manage keys on a running server (the caller's key in KEYWARD_KEY).
    Keys {
        #[command(subcommand)]
        command: cli::manage::KeysCommand,
    },
    /// Show or change an account (the caller's key in KEYWARD_KEY).
    Accounts {
        #[command(subcommand)]
        command: cli::manage::AccountsCommand,
    },
    /// Portal sessions: one-time links to the key page for a product's customer (the caller's
    /// key in KEYWARD_KEY).
    Portal {
        #[command(subcommand)]
        command: cli::manage::PortalCommand,
    },
    /// The scope catalog: scopes with their risk, and the presets.
    Scopes(cli::manage::ClientArgs),
    /// Decisions over time of a key or an account's keys, by outcome (the caller's key in
    /// KEYWARD_KEY).
    Usage(cli::manage::UsageArgs),
    /// The management audit log, newest first.
    Audit {
        /// Only this account's events (default: the calling key's account; all for root).
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        client: cli::manage::ClientArgs,
    },
}

// Parsed once at start; the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum RootKeyCommand {
    /// Generate a root key without touching any store: prints the key and its SHA-256. Keep
    /// the key in your secret store and give the server only `root_key_sha256`.
    Generate {
        /// Brand prefix of the server's keys.
        #[arg(long, default_value = "kw")]
        key_prefix: String,
    },
    /// Create a root key and print it once.
    Create {
        /// A name to recognise the key by.
        #[arg(long, default_value = "root (minted by the CLI)")]
        name: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// The server to drive.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// A root key (imports the run's keys, revokes them afterwards: the run leaves no usable key).
    #[arg(long, env = "KEYWARD_ROOT_KEY", hide_env_values = true)]
    root_key: String,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Length of each phase, e.g. 10s, or in milliseconds (500ms): on a noisy machine many
    /// short rounds narrow the summary's interval more than a few long ones.
    #[arg(long, default_value = "10s")]
    duration: String,
    /// Requests per phase instead of a duration (the phase still stops after 1 hour).
    #[arg(long)]
    requests: Option<u64>,
    /// Keys created for the run.
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// The server's metrics address (host:port): reports its store look-ups per unknown key.
    #[arg(long)]
    metrics_addr: Option<String>,
    /// Percent of verifies with unknown, well-formed keys (each one new).
    #[arg(long, default_value_t = 0)]
    miss_percent: u32,
    /// Percent of verifies with malformed keys.
    #[arg(long, default_value_t = 0)]
    invalid_percent: u32,
    /// Target total requests per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<u32>,
    /// Key prefix of the server.
    #[arg(long, default_value = "kw")]
    key_prefix: String,
    /// gRPC faces to drive, each a phase (a health phase always runs, as the floor).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "verify")]
    faces: Vec<cli::bench::Face>,
    /// An HTTP URL to drive with a valid key in X-Api-Key, as a phase of its own: keyward's
    /// forward auth (http://127.0.0.1:8080/auth?scopes=videos:read) or a gateway in front of an
    /// API. Repeatable.
    #[arg(long = "http")]
    http_urls: Vec<String>,
    /// Rounds of all phases, alternating; the summary gives the median and range.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Measure revocation propagation to this replica instead of load.
    #[arg(long)]
    peer: Option<String>,
    /// Revocations to time with --peer.
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// Verify answers in this view: `full` (the default) or `basic` (the key's identity only).
    #[arg(long, value_parser = ["full", "basic"], default_value = "full")]
    view: String,
    /// The server's process id (on this machine): reports its resident memory before the
    /// keys, with them stored, and with all of them cached.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The run's keys' rate limit, `UNITS/WINDOW` (e.g. `100000/1m`); default: no practical
    /// limit (4294967295 per second).
    #[arg(long)]
    key_limit: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "KEYWARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    flags: Flags,
}

impl ConfigArgs {
    fn load(&self) -> Result<Config, String> {
        Config::load(self.config.as_deref(), &self.flags).map_err(|e| e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("keyward: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Exit codes: 0 done, 1 refused or failed (with the reason), 2 usage (clap's too).
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Failed(message)) => {
            eprintln!("keyward: {message}");
            ExitCode::FAILURE
        }
        Err(Failure::Usage(message)) => {
            eprintln!("keyward: {message}");
            ExitCode::from(2)
        }
    }
}

/// A listener on `addr` for `what`; the error names both.
async fn bind(addr: std::net::SocketAddr, what: &str) -> Result<TcpListener, Failure> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Failure::from(format!("cannot serve {what} on {addr}: {e}")))
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Keys { command } => cli::manage::keys(command).await,
        Command::Accounts { command } => cli::manage::accounts(command).await,
        Command::Scopes(client) => cli::manage::scopes(client).await,
        Command::Audit { account, client } => cli::manage::audit(account, client).await,
        Command::Usage(args) => cli::manage::usage(args).await,
        Command::Portal { command } => cli::manage::portal(command).await,
        Command::Serve(args) => {
            let config = args.load()?;
            keyward::telemetry::init(config.log_format);
            let shutdown = shutdown_signal()?;
            tracing::info!(database = %config.database_url, "opening the store");
            let app = App::open(&config).await.map_err(|e| e.to_string())?;
            if let Some(digest) = config.root_key_digest() {
                app.service()
                    .provision_root_key(digest)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            bootstrap(&app, &config).await?;
            let listener = bind(config.listen, "gRPC").await?;
            let mut app = app.with_http(bind(config.http_listen, "HTTP").await?);
            if let Some(addr) = config.manage_listen {
                app = app.with_manage_listener(bind(addr, "ManageService").await?);
            }
            if let Some(addr) = config.metrics_addr {
                app = app.with_metrics(bind(addr, "metrics").await?);
            }
            if let Some(addr) = config.health_listen {
                app = app.with_health_listener(bind(addr, "gRPC health").await?);
            }
            if let Some(addr) = config.http_manage_listen.filter(|_| config.http_api) {
                app = app.with_http_manage_listener(bind(addr, "the HTTP API").await?);
            }
            app.serve(listener, shutdown)
                .await
                .map_err(|e| Failure::Failed(e.to_string()))
        }
        Command::Migrate(args) => {
            let config = args.load()?;
            keyward::telemetry::init(config.log_format);
            App::open(&config).await.map_err(|e| e.to_string())?;
            tracing::info!(database = %config.database_url, "migrations applied");
            Ok(())
        }
        Command::Bench(args) => {
            let prefix = keyward::key::KeyPrefix::parse(&args.key_prefix)?;
            let format = keyward::key::KeyFormat::new(prefix);
            let report = match &args.peer {
                Some(peer) => {
                    cli::bench::propagation(&args.addr, peer, &args.root_key, &format, args.rounds)
                        .await?
                }
                None => {
                    if args.miss_percent + args.invalid_percent > 100 {
                        return Err("--miss-percent plus --invalid-percent exceeds 100".into());
                    }
                    cli::bench::load(cli::bench::LoadSpec {
                        addr: args.addr,
                        root_key: args.root_key,
                        connections: args.connections.max(1),
                        concurrency: args.concurrency.max(1),
                        duration: match args.requests {
                            Some(_) => std::time::Duration::from_secs(3600),
                            None => phase_length(&args.duration)?,
                        },
                        requests: args.requests,
                        keys: args.keys.max(1),
                        miss_percent: args.miss_percent,
                        invalid_percent: args.invalid_percent,
                        rate: args.rate,
                        key_format: format,
                        metrics_addr: args.metrics_addr,
                        faces: args.faces,
                        http_urls: args.http_urls,
                        repeat: args.repeat.max(1),
                        server_pid: args.server_pid,
                        key_limit: match &args.key_limit {
                            None => None,
                            Some(text) => Some(key_limit(text)?),
                        },
                        basic_view: args.view == "basic",
                    })
                    .await?
                }
            };
            print!("{report}");
            Ok(())
        }
        Command::Health {
            server,
            service,
            tls_ca,
            tls_cert,
            tls_key,
        } => {
            let identity = tls_cert.as_deref().zip(tls_key.as_deref());
            Ok(health(&server, &service, tls_ca.as_deref(), identity).await?)
        }
        Command::RootKey {
            command: RootKeyCommand::Generate { key_prefix },
        } => {
            let prefix = keyward::key::KeyPrefix::parse(&key_prefix)?;
            let generated =
                keyward::key::KeyFormat::new(prefix).generate(keyward::key::Environment::Live);
            println!(
                "key:    {}\nsha256: {}",
                generated.secret.expose(),
                generated.digest.to_hex()
            );
            Ok(())
        }
        Command::RootKey {
            command: RootKeyCommand::Create { name, config },
        } => {
            let config = config.load()?;
            keyward::telemetry::init(config.log_format);
            let app = App::open(&config).await.map_err(|e| e.to_string())?;
            let (secret, key) = app
                .service()
                .mint_root_key(&name)
                .await
                .map_err(|e| e.to_string())?;
            print_secret(&format!("Created root key {}", key.id), secret.expose());
            app.service().store().close().await;
            Ok(())
        }
    }
}

/// Creates the first root key if the store is empty. In a container stdout is the log, so the
/// key goes to `root_key_file` (mode 0600, never overwritten, checked before the key is made so
/// it cannot be lost) and is shown on stdout only when stdout is a terminal.
async fn bootstrap(app: &App, config: &Config) -> Result<(), String> {
    use std::io::{IsTerminal, Write};
    use std::os::unix::fs::OpenOptionsExt;

    if !config.bootstrap {
        tracing::info!("bootstrap is off: an empty store gets no root key");
        return Ok(());
    }
    let (any, _) = app
        .service()
        .store()
        .key_digests(0, 1)
        .await
        .map_err(|e| e.to_string())?;
    if !any.is_empty() {
        return Ok(()); // the store holds keys: nothing to bootstrap
    }
    let path = &config.root_key_file;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            format!(
                "the store is empty and the first root key would go to {}, which cannot be \
                 created ({e}); move an old file away, or set root_key_file",
                path.display()
            )
        })?;
    let Some(root) = app.bootstrap().await.map_err(|e| e.to_string())? else {
        // Another replica bootstrapped first.
        drop(file);
        let _ = std::fs::remove_file(path);
        return Ok(());
    };
    file.write_all(format!("{}\n", root.expose()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write the first root key to {}: {e}", path.display()))?;
    tracing::info!(path = %path.display(), "the first root key was written to this file (mode 0600); move it somewhere safe");
    if std::io::stdout().is_terminal() {
        print_secret(
            "The store was empty, so keyward created its first root key",
            root.expose(),
        );
    }
    Ok(())
}

/// Asks `server` for the health of `service`; `Ok` only when it is SERVING.
async fn health(
    server: &str,
    service: &str,
    tls_ca: Option<&std::path::Path>,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> Result<(), String> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let channel = match tls_ca {
        Some(ca) => keyward::tls::grpc_channel(server, ca, identity).await?,
        None => tonic::transport::Endpoint::from_shared(server.to_owned())
            .map_err(|e| format!("bad server address {server}: {e}"))?
            .connect_timeout(std::time::Duration::from_secs(3))
            .timeout(std::time::Duration::from_secs(3))
            .connect()
            .await
            .map_err(|e| format!("cannot reach {server}: {e}"))?,
    };
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|e| format!("{server}: {}", e.message()))?
        .into_inner();
    match ServingStatus::try_from(answer.status) {
        Ok(ServingStatus::Serving) => {
            println!("SERVING");
            Ok(())
        }
        Ok(status) => Err(format!("{server} answers {}", status.as_str_name())),
        Err(_) => Err(format!(
            "{server} answers an unknown status {}",
            answer.status
        )),
    }
}

/// Prints a new key on stdout, the one time it is shown. Never through the logger.
fn print_secret(headline: &str, secret: &str) {
    println!("{headline}. It is shown this once; store it now:\n\n    {secret}\n");
}

/// Registers SIGTERM and SIGINT handlers now (so a signal that arrives while the server is
/// still starting is not fatal) and returns a future that resolves on the first of them.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}

/// A bench phase's length: a duration as the configuration reads it, or whole milliseconds
/// (`250ms`); never zero.
fn phase_length(text: &str) -> Result<std::time::Duration, String> {
    let length = match text.trim().strip_suffix("ms") {
        Some(millis) => millis
            .parse::<u64>()
            .map(std::time::Duration::from_millis)
            .map_err(|_| format!("{text:?} must be a whole number of milliseconds (e.g. 250ms)"))?,
        None => keyward::duration::parse(text)?,
    };
    if length.is_zero() {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(length)
}

/// `--key-limit UNITS/WINDOW`.
fn key_limit(text: &str) -> Result<(u32, std::time::Duration), String> {
    let (units, window) = text
        .split_once('/')
        .ok_or_else(|| format!("--key-limit {text:?}: give UNITS/WINDOW, e.g. 100000/1m"))?;
    let units: u32 = units
        .parse()
        .map_err(|_| format!("--key-limit {text:?}: {units:?} is not a number of units"))?;
    Ok((units, keyward::duration::parse(window)?))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::phase_length;

    #[test]
    fn phase_lengths_read_seconds_and_milliseconds() {
        assert_eq!(phase_length("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(phase_length("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(phase_length(" 2m "), Ok(Duration::from_secs(120)));
        for bad in ["0ms", "0s", "1.5ms", "ms", "-5ms", "250"] {
            assert!(phase_length(bad).is_err(), "{bad}");
        }
    }
}
