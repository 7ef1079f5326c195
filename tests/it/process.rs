//! The real `keyward` binary: first start prints a root key once, raw keys never reach the
//! logs, and SIGTERM stops it cleanly with exit status 0.

use keyward::ids::KeyId;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyward::key::KeyDigest;
use keyward::proto::{self, VerifyCode};

use crate::helpers::{as_key, code, key_request, verify_request};

/// A running `keyward serve` whose output is collected line by line.
struct Process {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    addr: String,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn collect(
    stream: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<String>>,
    lines: mpsc::Sender<String>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            into.lock().unwrap().push_str(&line);
            into.lock().unwrap().push('\n');
            let _ = lines.send(line);
        }
    })
}

impl Process {
    fn start(database_url: &str) -> Process {
        Self::start_as(Command::new(env!("CARGO_BIN_EXE_keyward")), database_url)
    }

    /// Starts `keyward serve` through `command` (the binary itself, or a wrapper such as
    /// `prlimit … -- keyward`).
    fn start_as(mut command: Command, database_url: &str) -> Process {
        let mut child = command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(["--database-url", database_url])
            .env("KEYWARD_ROOT_KEY_FILE", root_key_file(database_url))
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keyward");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let readers = vec![
            collect(
                child.stdout.take().unwrap(),
                stdout.clone(),
                mpsc::channel().0,
            ),
            collect(child.stderr.take().unwrap(), stderr.clone(), tx),
        ];
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("keyward logs that it is listening");
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if event["message"] == "keyward listening" {
                break event["addr"].as_str().expect("addr field").to_owned();
            }
        };
        Process {
            child,
            stdout,
            stderr,
            addr,
            readers,
        }
    }

    /// The HTTP listener's address, as the server logged it.
    async fn http_addr(&self) -> std::net::SocketAddr {
        crate::helpers::eventually(Duration::from_secs(10), "the HTTP address", || {
            let line = (self.stderr.lock().unwrap().lines())
                .find(|l| l.contains("HTTP listening"))
                .map(str::to_owned);
            async move {
                let event: serde_json::Value = serde_json::from_str(&line?).ok()?;
                event["addr"].as_str()?.parse().ok()
            }
        })
        .await
    }

    async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect()
            .await
            .expect("connect")
    }

    /// Kills the process with SIGKILL: no shutdown work runs.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
        for reader in self.readers.drain(..) {
            reader.join().expect("reader thread");
        }
    }

    /// Sends SIGTERM and returns the exit status.
    fn terminate(mut self) -> (std::process::ExitStatus, String, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        // The reader threads finish when the pipes close.
        for reader in self.readers.drain(..) {
            reader.join().expect("reader thread");
        }
        let out = self.stdout.lock().unwrap().clone();
        let err = self.stderr.lock().unwrap().clone();
        (exit, out, err)
    }
}

/// Where a test server on this SQLite URL writes its first root key: beside the database.
fn root_key_file(database_url: &str) -> std::path::PathBuf {
    std::path::Path::new(database_url.trim_start_matches("sqlite://")).with_file_name("root-key")
}

fn root_key_in(stdout: &str) -> Option<String> {
    stdout
        .split_whitespace()
        .find(|w| w.starts_with("kw_live_"))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_writes_a_root_key_file_and_logs_no_secret() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let server = Process::start(&url);
    // The first root key is in a file only its owner can read; the log says where, not what.
    let file = root_key_file(&url);
    let root = std::fs::read_to_string(&file)
        .expect("the root key file")
        .trim()
        .to_owned();
    assert!(root.starts_with("kw_live_"), "{root}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    assert!(
        server
            .stderr
            .lock()
            .unwrap()
            .contains(&file.display().to_string()),
        "the log names the file"
    );

    // A full create → verify → revoke → verify cycle through the binary.
    let channel = server.channel().await;
    let mut manage = proto::manage_service_client::ManageServiceClient::new(channel.clone());
    let mut verifier = proto::verify_service_client::VerifyServiceClient::new(channel);
    let created = manage
        .create_key(as_key(&root, key_request("acme", &["videos:read"])))
        .await
        .expect("create with the printed root key")
        .into_inner();
    let secret = created.key.clone();
    let id = created.api_key.unwrap().id;
    let key_id = id.clone();
    let valid = verifier
        .verify(verify_request(&secret, &["videos:read"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&valid), VerifyCode::Valid);
    let denied = verifier
        .verify(verify_request(&secret, &["members:email"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&denied), VerifyCode::InsufficientScope);
    manage
        .revoke_key(as_key(&root, proto::RevokeKeyRequest { id }))
        .await
        .expect("revoke");
    let revoked = verifier
        .verify(verify_request(&secret, &[]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(&revoked), VerifyCode::Revoked);
    // A refused management call: the plain key holds no management scope.
    let refused = manage
        .create_key(as_key(&secret, key_request("acme", &["videos:read"])))
        .await
        .expect_err("a revoked plain key cannot manage");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    drop((manage, verifier));

    let (exit, stdout, stderr) = server.terminate();
    assert!(exit.success(), "SIGTERM exits 0, got {exit:?}");
    assert!(stderr.contains("shutting down"), "shutdown is logged");
    assert!(
        stderr.contains("key created"),
        "the logs were captured at trace level"
    );
    // Every management call leaves one info line: who (the calling key), what (the RPC),
    // on what (the target), and how it ended; refusals with their reason.
    let revoke_line = stderr
        .lines()
        .find(|l| l.contains("management call done") && l.contains("RevokeKey"))
        .expect("a log line for the revocation");
    assert!(
        revoke_line.contains(&format!("\"target\":\"{key_id}\"")),
        "{revoke_line}"
    );
    assert!(revoke_line.contains("\"key_id\":\"key_"), "{revoke_line}");
    assert!(
        revoke_line.contains("\"code\":\"Ok\"") || revoke_line.contains("\"code\":\"OK\""),
        "{revoke_line}"
    );
    // With debug on, a Verify's line names the key it decided (never the key itself).
    let verify_line = stderr
        .lines()
        .find(|l| l.contains("call answered") && l.contains("VerifyService/Verify"))
        .expect("a debug line for a Verify");
    assert!(
        verify_line.contains(&format!("\"key_id\":\"{key_id}\"")),
        "{verify_line}"
    );
    let refused_line = stderr
        .lines()
        .find(|l| l.contains("management call refused") && l.contains("CreateKey"))
        .expect("a log line for the refusal");
    assert!(refused_line.contains("Unauthenticated"), "{refused_line}");
    assert!(
        refused_line.contains("a valid key is required"),
        "{refused_line}"
    );

    // The created key appears nowhere; the root key only in its one stdout banner.
    let secret_part = &secret[16..];
    assert!(
        !stderr.contains(secret_part),
        "a created secret reached the logs"
    );
    assert!(
        !stdout.contains(secret_part),
        "a created secret reached stdout"
    );
    assert!(
        !stderr.contains(&root[16..]),
        "the root key reached the logs"
    );
    assert_eq!(
        root_key_in(&stdout),
        None,
        "stdout is not a terminal (it may be a container's log): no key on it"
    );

    // The use of the key was written at shutdown (the default interval is far longer).
    let store = keyward::store::connect(&keyward::store::DatabaseUrl::new(url.clone()))
        .await
        .unwrap();
    let stored = store
        .key_by_id(&KeyId::parse(&key_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.key.last_used_at.is_some(),
        "last use flushed on SIGTERM"
    );
    store.close().await;

    // The second start finds keys in the store, leaves the file alone and prints none.
    let again = Process::start(&url);
    let (exit, stdout, _) = again.terminate();
    assert!(exit.success());
    assert_eq!(root_key_in(&stdout), None);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), root);
}

/// A root key file left from an earlier store is never overwritten: on an empty store keyward
/// refuses to start before it makes a key (so none is lost); with bootstrap off it starts and
/// makes none.
#[test]
fn the_root_key_file_is_never_overwritten_and_bootstrap_can_be_off() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let file = root_key_file(&url);
    std::fs::write(&file, "an earlier key\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--database-url",
            &url,
        ])
        .env("KEYWARD_ROOT_KEY_FILE", &file)
        .output()
        .expect("run keyward");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot be created"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "an earlier key\n");

    std::fs::remove_file(&file).unwrap();
    let server = {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
        command.env("KEYWARD_BOOTSTRAP", "false");
        Process::start_as(command, &url)
    };
    let (exit, stdout, stderr) = server.terminate();
    assert!(exit.success());
    assert!(stderr.contains("bootstrap is off"), "{stderr}");
    assert!(!file.exists(), "no root key file");
    assert_eq!(root_key_in(&stdout), None);
}

/// Idle connections to one listener never use up the process's descriptors: each listener's
/// cap comes from `RLIMIT_NOFILE`, with a reserve kept, so a flood of 300 connections to the
/// HTTP listener of a server limited to 256 descriptors leaves gRPC serving, and accept never
/// runs out of descriptors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_never_reaches_the_descriptor_limit() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let mut limited = Command::new("prlimit");
    limited.args(["--nofile=256:256", "--", env!("CARGO_BIN_EXE_keyward")]);
    let server = Process::start_as(limited, &url);
    let pid = server.child.id();
    let http = server.http_addr().await;
    let mut flood = Vec::new();
    for _ in 0..300 {
        if let Ok(stream) = tokio::net::TcpStream::connect(&http).await {
            flood.push(stream);
        }
    }
    // The HTTP listener holds at most its share ((256 - 64) / 6 = 32); the rest wait in the
    // kernel's backlog or are refused there, never taking a descriptor of keyward's.
    crate::helpers::eventually(Duration::from_secs(10), "the HTTP listener's share", || {
        let open = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count());
        async move { open.ok().filter(|n| *n >= 32).map(|_| ()) }
    })
    .await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("gRPC answers during the flood");
    assert_eq!(status.into_inner().status, 1, "SERVING");
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(open < 256 - 64 + 32, "{open} descriptors open of 256");
    assert!(
        !server.stderr.lock().unwrap().contains("accept failed"),
        "accept never ran out of descriptors"
    );
    drop(flood);
    let (exit, _, _) = server.terminate();
    assert!(exit.success());
}

/// A key pasted into a JSON API URL by mistake never reaches the log: the logged path has it
/// redacted (also percent-encoded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_a_url_is_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let server = Process::start(&url);
    let http = server.http_addr().await;
    let secret = "Z8fJqLw2XbN4vR7tYc1mKp9sDg3hQe6uAa0";
    for path in [
        format!("/v1/api-keys/kw_live_{secret}"),
        format!("/v1/api-keys/kw%5Flive%5F{secret}"),
    ] {
        let answer = crate::helpers::http(http, "GET", &path, &[]).await;
        assert_eq!(answer.status, 401, "{answer:?}");
    }
    crate::helpers::eventually(Duration::from_secs(10), "both calls logged", || {
        let logged = server
            .stderr
            .lock()
            .unwrap()
            .matches("HTTP API call done")
            .count();
        async move { (logged >= 2).then_some(()) }
    })
    .await;
    let (exit, stdout, stderr) = server.terminate();
    assert!(exit.success());
    assert!(stderr.contains("/v1/api-keys/<redacted>"), "{stderr}");
    assert!(
        !stderr.contains(secret) && !stdout.contains(secret),
        "{stderr}"
    );
}

/// A portal link and its session's secret never reach the log, even at `trace`: made,
/// opened, replayed, used and signed out of.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_secrets_are_not_logged() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let server = Process::start(&url);
    let http = server.http_addr().await;
    let root = format!(
        "Bearer {}",
        std::fs::read_to_string(root_key_file(&url)).unwrap().trim()
    );
    let created = crate::helpers::http_with_body(
        http,
        "POST",
        "/v1/portal-sessions",
        &[
            ("authorization", &root),
            ("content-type", "application/json"),
        ],
        r#"{"accountId": "acme", "permissions": {"presets": ["read_only"]},
            "returnUrl": "https://app.acme.example/"}"#,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let link = created.json()["data"]["url"].as_str().unwrap().to_owned();
    let path = link[link.find("/portal/open/").unwrap()..].to_owned();
    let token = path.trim_start_matches("/portal/open/").to_owned();
    let opened = crate::helpers::http(http, "GET", &path, &[]).await;
    assert_eq!(opened.status, 303);
    let cookie = opened
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let secret = cookie.trim_start_matches("keyward_portal=").to_owned();
    assert_eq!(
        crate::helpers::http(http, "GET", &path, &[]).await.status,
        401
    );
    let session =
        crate::helpers::http(http, "GET", "/portal/session", &[("cookie", &cookie)]).await;
    let csrf = session.json()["csrfToken"].as_str().unwrap().to_owned();
    let listed = crate::helpers::http(
        http,
        "GET",
        "/v1/api-keys",
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    crate::helpers::eventually(Duration::from_secs(10), "the calls logged", || {
        let logged = server
            .stderr
            .lock()
            .unwrap()
            .contains("portal link refused");
        async move { logged.then_some(()) }
    })
    .await;
    let (exit, stdout, stderr) = server.terminate();
    assert!(exit.success());
    assert!(stderr.contains("portal link opened"), "{stderr}");
    for s in [&token, &secret, &csrf] {
        assert!(
            !stderr.contains(s.as_str()) && !stdout.contains(s.as_str()),
            "{s} logged"
        );
    }
}

/// `keyward health` for a container HEALTHCHECK: 0 while the server serves, 1 otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_command_reports_serving() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let server = Process::start(&url);
    let address = format!("http://{}", server.addr);
    let check = |service: &str| {
        Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["health", "--server", &address, "--service", service])
            .output()
            .expect("run keyward health")
    };
    let serving = check("keyward.v1.VerifyService");
    assert!(serving.status.success(), "{serving:?}");
    assert_eq!(String::from_utf8_lossy(&serving.stdout).trim(), "SERVING");
    let unknown = check("keyward.v1.NoSuchService");
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    let (exit, _, _) = server.terminate();
    assert!(exit.success());
    let gone = check("");
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    assert!(String::from_utf8_lossy(&gone.stderr).contains("cannot reach"));
}

#[test]
fn text_logs_have_no_colour_codes_when_not_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let output = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["migrate", "--log-format", "text", "--database-url", &url])
        .env("RUST_LOG", "info")
        .output()
        .expect("run keyward");
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("migrations applied"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );
}

#[test]
fn bad_configuration_stops_the_binary_with_a_clear_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--key-prefix", "Not_Valid"])
        .env("KEYWARD_DATABASE_URL", "sqlite::memory:")
        .output()
        .expect("run keyward");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("key_prefix"), "{stderr}");
    // A setting's name as users write it, and where the value came from.
    for (variable, value, says) in [
        ("KEYWARD_MAX_TTL", "abc", "max_ttl: "),
        ("KEYWARD_MAX_TTL", "abc", "(from KEYWARD_MAX_TTL)"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args(["serve", "--database-url", "sqlite::memory:"])
            .env(variable, value)
            .output()
            .expect("run keyward");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{stderr}");
        assert!(!stderr.contains("default."), "{stderr}");
    }

    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("scopes.toml");
    std::fs::write(
        &catalog,
        "[[scope]]\nname = \"videos:read\"\ndescription = \"x\"\naccess = \"sometimes\"\nrisk = \"low\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args([
            "serve",
            "--database-url",
            "sqlite::memory:",
            "--scopes-file",
        ])
        .arg(&catalog)
        .output()
        .expect("run keyward");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let at = format!("{}:4", catalog.display());
    assert!(
        stderr.contains(&at) && stderr.contains("sometimes"),
        "{stderr}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve"])
        .env("KEYWARD_LISTEN", "not-an-address")
        .output()
        .expect("run keyward");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.to_lowercase().contains("listen"), "{stderr}");
}

/// Defaults → TOML file → `KEYWARD_*` environment → flags: each layer overrides the one before.
/// The key prefix is visible in the root key printed on first start.
#[test]
fn configuration_layers_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keyward.toml");
    std::fs::write(
        &file,
        "key_prefix = \"fromfile\"\nlisten = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let first_key = |n: u32, env: Option<&str>, flag: Option<&str>| {
        let url = format!("sqlite://{}", dir.path().join(format!("k{n}.db")).display());
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
        command
            .args(["root-key", "create", "--database-url", &url, "--config"])
            .arg(&file)
            .env_remove("KEYWARD_KEY_PREFIX");
        if let Some(env) = env {
            command.env("KEYWARD_KEY_PREFIX", env);
        }
        if let Some(flag) = flag {
            command.args(["--key-prefix", flag]);
        }
        let output = command.output().expect("run keyward");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        stdout
            .split_whitespace()
            .find(|w| w.contains("_live_"))
            .map(|k| k.split('_').next().unwrap_or_default().to_owned())
            .expect("a key is printed")
    };
    assert_eq!(first_key(1, None, None), "fromfile");
    assert_eq!(first_key(2, Some("fromenv"), None), "fromenv");
    assert_eq!(first_key(3, Some("fromenv"), Some("fromflag")), "fromflag");

    let missing = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--config", "/nonexistent/keyward.toml"])
        .output()
        .expect("run keyward");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/keyward.toml"));
}

/// Listening beyond loopback without caller authentication is said at start, in a warning.
#[test]
fn an_open_verify_port_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let start = |verify_auth: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keyward"))
            .args([
                "serve",
                "--listen",
                "0.0.0.0:0",
                "--http-listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(["--database-url", &url])
            .env("KEYWARD_ROOT_KEY_FILE", root_key_file(&url))
            .env("KEYWARD_VERIFY_AUTH", verify_auth)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keyward");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = Vec::new();
        for line in stderr.lines().map_while(Result::ok) {
            let listening = line.contains("keyward listening");
            seen.push(line);
            if listening {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        seen.join("\n")
    };
    let open = start("false");
    assert!(
        open.contains("without TLS or caller authentication"),
        "{open}"
    );
    let closed = start("true");
    assert!(
        !closed.contains("without TLS or caller authentication"),
        "{closed}"
    );
}

/// A root key generated elsewhere reaches the server as its SHA-256 only: never printed by
/// the server, never logged, provisioned once however often the server starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_key_can_be_provisioned_by_its_hash() {
    let generated = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["root-key", "generate"])
        .output()
        .expect("generate");
    assert!(generated.status.success());
    let text = String::from_utf8(generated.stdout).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .expect("a field of the output")
    };
    let (key, sha256) = (field("key:"), field("sha256:"));
    assert_eq!(sha256, KeyDigest::of(&key).to_hex());

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let start = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
        command.env("KEYWARD_ROOT_KEY_SHA256", &sha256);
        Process::start_as(command, &url)
    };
    for _ in 0..2 {
        let server = start();
        let mut manage =
            proto::manage_service_client::ManageServiceClient::new(server.channel().await);
        let roots = manage
            .list_keys(as_key(
                &key,
                proto::ListKeysRequest {
                    account_id: "root".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("the provisioned key manages")
            .into_inner()
            .api_keys;
        assert_eq!(
            roots.len(),
            1,
            "provisioned once, no bootstrap key beside it"
        );
        assert_eq!(roots[0].prefix, "provisioned");
        drop(manage);
        let (exit, stdout, stderr) = server.terminate();
        assert!(exit.success());
        assert!(!stdout.contains(&key[8..]) && !stderr.contains(&key[8..]));
    }
    assert!(!root_key_file(&url).exists(), "no bootstrap key was made");

    let bad = Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["serve", "--database-url", &url])
        .env("KEYWARD_ROOT_KEY_SHA256", "not-hex")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("root_key_sha256"));
}

/// `keyward bench` drives Verify, Envoy's Check and an HTTP URL (here keyward's forward auth)
/// against a real server, each as a phase, and every request of every phase is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_drives_verify_check_and_forward_auth() {
    let server = crate::helpers::TestServer::start(crate::helpers::Backend::Sqlite).await;
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    command
        .args([
            "bench",
            "--addr",
            &format!("http://{}", server.addr),
            "--faces",
            "verify,check",
            "--http",
            &format!("http://{}/auth?scopes=videos:read", server.http_addr),
            "--keys",
            "10",
            "--requests",
            "200",
            "--connections",
            "1",
            "--concurrency",
            "4",
            "--repeat",
            "2",
            // The server runs in this test process.
            "--server-pid",
            &std::process::id().to_string(),
        ])
        .env("KEYWARD_ROOT_KEY", &server.root_key);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for phase in ["verify", "check", "health", "http1"] {
        for round in 1..=2 {
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&format!("round {round}: {phase} ")))
                .unwrap_or_else(|| panic!("no round {round} {phase} line:\n{stdout}"));
            assert!(line.contains("(200 requests, 0 errors)"), "{line}");
        }
    }
    assert!(
        stdout.contains("× health") && stdout.contains("pooled"),
        "the summary relates the faces to the floor, round by round and pooled:\n{stdout}"
    );
    // The second round starts one phase later than the first.
    let stderr = String::from_utf8_lossy(&output.stderr);
    for order in [
        "round 1: verify, check, health, http1",
        "round 2: check, health, http1, verify",
    ] {
        assert!(stderr.contains(order), "no `{order}`:\n{stderr}");
    }
    assert!(
        stdout.contains("server resident memory:") && stdout.contains("B per key"),
        "the server's memory is reported:\n{stdout}"
    );
    // It cleans up after itself: every key of the run is revoked, and says so.
    assert!(
        stdout.contains("cleanup: revoked the 10 keys of the run"),
        "{stdout}"
    );
    let account = stdout
        .split("(accounts ")
        .nth(1)
        .and_then(|rest| rest.split('…').next())
        .map(|prefix| format!("{prefix}0"))
        .expect("the cleanup line names the accounts");
    let keys = server
        .manage()
        .await
        .list_keys(server.root(keyward::proto::ListKeysRequest {
            account_id: account.clone(),
            include_revoked: true,
            ..Default::default()
        }))
        .await
        .expect("list the bench account")
        .into_inner()
        .api_keys;
    assert_eq!(keys.len(), 10, "{account}");
    assert!(keys.iter().all(|k| k.revoked), "every bench key is revoked");
    server.stop().await;
}

/// A replica killed with SIGKILL loses at most the credit block it held (an undercount, never
/// an overspend); one stopped with SIGTERM gives its unspent block back and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_loses_at_most_its_credit_block() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
    let server = Process::start(&url);
    let root_key = std::fs::read_to_string(root_key_file(&url))
        .expect("the root key file")
        .trim()
        .to_owned();
    let mut manage = proto::manage_service_client::ManageServiceClient::new(server.channel().await);
    let mut request = key_request("acme", &["videos:read"]);
    request.credits = Some(proto::Credits {
        remaining: 100,
        refill: None,
        refilled_at: None,
    });
    let created = manage
        .create_key(as_key(&root_key, request))
        .await
        .expect("create")
        .into_inner();
    let (secret, id) = (created.key, created.api_key.expect("api_key").id);
    // 10 units spent from blocks of 4 and 8: 2 units held unspent when the replica dies.
    spend(&server, &secret, 10).await;
    server.kill();
    let server = Process::start(&url);
    let after_kill = credits_left(&server, &root_key, &id).await;
    let lost = 100 - 10 - after_kill;
    assert!(
        lost > 0 && lost < 8,
        "{after_kill} left after spending 10 of 100: {lost} lost, at most the last block"
    );
    // SIGTERM: the unspent block goes back.
    spend(&server, &secret, 5).await;
    let (status, _, _) = server.terminate();
    assert!(status.success());
    let server = Process::start(&url);
    assert_eq!(
        credits_left(&server, &root_key, &id).await,
        after_kill - 5,
        "a graceful stop loses nothing"
    );
    server.terminate();
}

async fn spend(server: &Process, secret: &str, times: usize) {
    let mut verifier =
        proto::verify_service_client::VerifyServiceClient::new(server.channel().await);
    for _ in 0..times {
        let answer = verifier
            .verify(verify_request(secret, &[]))
            .await
            .expect("verify")
            .into_inner();
        assert_eq!(code(&answer), VerifyCode::Valid);
    }
}

async fn credits_left(server: &Process, root_key: &str, id: &str) -> u64 {
    proto::manage_service_client::ManageServiceClient::new(server.channel().await)
        .get_key(as_key(root_key, proto::GetKeyRequest { id: id.into() }))
        .await
        .expect("get")
        .into_inner()
        .api_key
        .expect("api_key")
        .credits
        .expect("credits")
        .remaining
}
