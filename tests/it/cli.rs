//! The management CLI: the real binary against a real server, every action, both outputs,
//! the secret only where it belongs, and exit codes 0 / 1 / 2.

use std::process::{Command, Output};
use std::time::Duration;

use keyward::proto::VerifyCode;

use crate::helpers::*;

/// Runs `keyward args…` against `server` with `key` in KEYWARD_KEY (none when empty).
async fn keyward(server: &TestServer, key: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    command
        .args(args)
        .env("KEYWARD_SERVER", format!("http://{}", server.addr))
        .env_remove("KEYWARD_KEY");
    if !key.is_empty() {
        command.env("KEYWARD_KEY", key);
    }
    tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(output)).unwrap_or_else(|e| panic!("{e}: {}", stdout(output)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_management_action_from_the_command_line() {
    let server = TestServer::start(Backend::Sqlite).await;
    let root = server.root_key.clone();

    // Create: the secret alone on stdout, a warning on stderr.
    let created = keyward(
        &server,
        &root,
        &[
            "keys",
            "create",
            "--account",
            "acme",
            "--name",
            "ci deploy",
            "--scope",
            "videos:read",
            "--scope",
            "videos:write",
            "--expires-in",
            "90d",
        ],
    )
    .await;
    let secret = ok(&created).trim().to_owned();
    assert!(secret.starts_with("kw_live_"), "{secret}");
    assert_eq!(ok(&created).lines().count(), 1, "only the secret on stdout");
    assert!(stderr(&created).contains("shown this once"));
    assert_eq!(
        code(&server.verify(&secret, &["videos:write"]).await),
        VerifyCode::Valid
    );

    // List, as a table and as JSON: metadata only, never the secret.
    let table = ok(&keyward(&server, &root, &["keys", "list", "--account", "acme"]).await);
    assert!(
        table.contains("PREFIX") && table.contains("LAST USED"),
        "{table}"
    );
    assert!(
        table.contains("ci deploy") && table.contains("in 3 months"),
        "{table}"
    );
    assert!(!table.contains(&secret));
    let listed = json(
        &keyward(
            &server,
            &root,
            &["keys", "list", "--account", "acme", "--output", "json"],
        )
        .await,
    );
    let key = &listed["api_keys"][0];
    let id = key["id"].as_str().unwrap().to_owned();
    assert_eq!(key["name"], "ci deploy");
    assert_eq!(key["environment"], "live");
    assert!(secret.starts_with(key["prefix"].as_str().unwrap()));
    assert!(!listed.to_string().contains(&secret));
    // Idle keys: one never used is listed by --unused-since.
    let (_, idle) = server.create(key_request("acme", &["videos:read"])).await;
    let unused = json(
        &keyward(
            &server,
            &root,
            &[
                "keys",
                "list",
                "--account",
                "acme",
                "--unused-since",
                "30d",
                "--output",
                "json",
            ],
        )
        .await,
    );
    let ids: Vec<&str> = unused["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&idle.id.as_str()), "{unused}");

    // Get and update: the change is effective at once.
    let got = ok(&keyward(&server, &root, &["keys", "get", &id]).await);
    assert!(got.contains("videos:read, videos:write"), "{got}");
    let updated = json(
        &keyward(
            &server,
            &root,
            &[
                "keys",
                "update",
                &id,
                "--scope",
                "videos:read",
                "--output",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(
        updated["api_key"]["scopes"],
        serde_json::json!(["videos:read"])
    );
    assert_eq!(
        code(&server.verify(&secret, &["videos:write"]).await),
        VerifyCode::InsufficientScope
    );

    // Rotate: a new secret, once; the old key works during the grace period.
    let rotated = json(
        &keyward(
            &server,
            &root,
            &["keys", "rotate", &id, "--grace", "1h", "--output", "json"],
        )
        .await,
    );
    let new_secret = rotated["key"].as_str().unwrap().to_owned();
    let new_id = rotated["api_key"]["id"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(rotated["previous_api_key"]["id"], id.as_str());
    assert_eq!(
        code(&server.verify(&new_secret, &[]).await),
        VerifyCode::Valid
    );

    // Revoke.
    let revoked = ok(&keyward(&server, &root, &["keys", "revoke", &new_id]).await);
    assert!(revoked.starts_with("revoked "), "{revoked}");
    assert_eq!(
        code(&server.verify(&new_secret, &[]).await),
        VerifyCode::Revoked
    );

    // Accounts, scopes, audit.
    let account = json(
        &keyward(
            &server,
            &root,
            &[
                "accounts",
                "update",
                "acme",
                "--max-active-keys",
                "5",
                "--output",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(account["max_active_keys"], 5);
    let shown = ok(&keyward(&server, &root, &["accounts", "get", "acme"]).await);
    assert!(
        shown.contains("ACTIVE KEYS") && shown.contains("enabled"),
        "{shown}"
    );
    // Report leaked strings from a file: the live key is revoked, the rest answered.
    let (leaked, _) = server.create(key_request("acme", &["videos:read"])).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("paste.txt");
    std::fs::write(&file, format!("{leaked}\nnot a key\n")).unwrap();
    let report = json(
        &keyward(
            &server,
            &root,
            &[
                "keys",
                "report-leaked",
                "--source",
                "https://paste.example/1",
                file.to_str().unwrap(),
                "--output",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(report["results"][0]["outcome"], "revoked_now");
    assert_eq!(report["results"][1]["outcome"], "not_a_key");
    assert!(!report.to_string().contains(&leaked));
    assert_eq!(
        code(&server.verify(&leaked, &[]).await),
        VerifyCode::Revoked
    );

    // Import from JSON Lines: per-line errors, the rest imported; idempotent.
    let lines = [
        format!(
            r#"{{"sha256":"{}","prefix":"sk_live_aa","account_id":"initech","name":"old 1","environment":"live","scopes":["videos:read"],"last_used_at":"2025-01-31T12:00:00Z"}}"#,
            keyward::key::KeyDigest::of("sk_live_aaaaaaaaaaaaaaaa").to_hex()
        ),
        format!(
            r#"{{"sha256":"{}","prefix":"sk_live_bb","account_id":"initech","name":"old 2","environment":"live","preset":"read_only"}}"#,
            keyward::key::KeyDigest::of("sk_live_bbbbbbbbbbbbbbbb").to_hex()
        ),
        r#"{"sha256":"nope","prefix":"x","account_id":"initech","name":"bad","environment":"live","scopes":["videos:read"]}"#.to_owned(),
    ];
    let jsonl = dir.path().join("keys.jsonl");
    std::fs::write(&jsonl, lines.join("\n")).unwrap();
    let imported = keyward(&server, &root, &["keys", "import", jsonl.to_str().unwrap()]).await;
    assert_eq!(
        imported.status.code(),
        Some(1),
        "a rejected line is reported"
    );
    assert!(
        stdout(&imported).contains("imported 2, already present 0, rejected 1"),
        "{}",
        stdout(&imported)
    );
    assert!(
        stderr(&imported).contains("line 3: sha256"),
        "{}",
        stderr(&imported)
    );
    let again = keyward(&server, &root, &["keys", "import", jsonl.to_str().unwrap()]).await;
    assert!(
        stdout(&again).contains("imported 0, already present 2"),
        "{}",
        stdout(&again)
    );

    // Offboard: every key of the account that still works, at once.
    let (last, _) = server.create(key_request("acme", &["videos:read"])).await;
    let offboarded = ok(&keyward(&server, &root, &["accounts", "offboard", "acme"]).await);
    assert!(offboarded.starts_with("revoked "), "{offboarded}");
    assert_eq!(code(&server.verify(&last, &[]).await), VerifyCode::Revoked);
    let scopes = ok(&keyward(&server, &root, &["scopes"]).await);
    assert!(
        scopes.contains("videos:read") && scopes.contains("RISK"),
        "{scopes}"
    );
    let audit = json(
        &keyward(
            &server,
            &root,
            &["audit", "--account", "acme", "--output", "json"],
        )
        .await,
    );
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "key_created",
        "key_updated",
        "key_rotated",
        "key_revoked",
        "account_updated",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    assert!(!audit.to_string().contains(&secret));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_say_refused_or_misused() {
    let server = TestServer::start(Backend::Sqlite).await;
    // No KEYWARD_KEY: usage (2), saying where the key goes.
    let missing = keyward(&server, "", &["keys", "list"]).await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("KEYWARD_KEY"),
        "{}",
        stderr(&missing)
    );
    // A flag that does not exist: usage (2).
    let bad = keyward(&server, &server.root_key, &["keys", "list", "--nope"]).await;
    assert_eq!(bad.status.code(), Some(2));
    // Nothing to change: usage (2).
    let nothing = keyward(&server, &server.root_key, &["keys", "update", ABSENT_ID]).await;
    assert_eq!(nothing.status.code(), Some(2));
    // Refused by the server: 1, with its message.
    let refused = keyward(&server, "kw_live_not-a-key", &["keys", "list"]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("Unauthenticated"),
        "{}",
        stderr(&refused)
    );
    let absent = keyward(&server, &server.root_key, &["keys", "get", ABSENT_ID]).await;
    assert_eq!(absent.status.code(), Some(1));
    assert!(stderr(&absent).contains("NotFound"), "{}", stderr(&absent));
    server.stop().await;
}

/// `--expires-in never` asks for a key that never expires: a server with a `max_ttl` refuses
/// it (as the JSON API does), instead of handing out a key of some other lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_expiring_keys_are_refused_under_a_max_ttl() {
    const ARGS: [&str; 11] = [
        "keys",
        "create",
        "--account",
        "acme",
        "--name",
        "forever",
        "--scope",
        "videos:read",
        "--expires-in",
        "never",
        "--output",
    ];
    let args: Vec<&str> = ARGS.iter().copied().chain(["json"]).collect();
    let capped = TestServer::start_with(Backend::Sqlite, |c| {
        c.max_ttl = Some(std::time::Duration::from_secs(365 * 86_400));
    })
    .await;
    let refused = keyward(&capped, &capped.root_key, &args).await;
    assert_eq!(refused.status.code(), Some(1), "{}", stdout(&refused));
    assert!(stderr(&refused).contains("max_ttl"), "{}", stderr(&refused));
    let open = TestServer::start(Backend::Sqlite).await;
    let created = json(&keyward(&open, &open.root_key, &args).await);
    assert_eq!(
        created["api_key"]["expires_at"],
        serde_json::Value::Null,
        "{created}"
    );
    // Absent ids are null, not "".
    assert_eq!(
        created["api_key"]["previous_key_id"],
        serde_json::Value::Null,
        "{created}"
    );
}

/// `keyward usage`: a key's decisions by outcome as JSON and as a table, an account's keys one
/// row each; a bad outcome is a usage error (exit 2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_from_the_command_line() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.usage_flush_interval = std::time::Duration::from_secs(3_600)
    })
    .await;
    let root = server.root_key.clone();
    let (a, a_record) = server.create(key_request("acme", &["videos:read"])).await;
    let (b, b_record) = server.create(key_request("acme", &["videos:read"])).await;
    for _ in 0..3 {
        assert_eq!(
            code(&server.verify(&a, &["videos:read"]).await),
            VerifyCode::Valid
        );
    }
    assert_eq!(
        code(&server.verify(&a, &["videos:write"]).await),
        VerifyCode::InsufficientScope
    );
    assert_eq!(code(&server.verify(&b, &[]).await), VerifyCode::Valid);
    assert_eq!(
        code(&server.verify("kw_live_nonsense", &[]).await),
        VerifyCode::Malformed
    );
    server.service.flush_usage().await.unwrap();

    let answer = json(
        &keyward(
            &server,
            &root,
            &[
                "usage",
                "--key",
                &a_record.id,
                "--since",
                "1h",
                "--by",
                "hour",
                "--output",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(answer["granularity"], "hour");
    assert_eq!(answer["series"][0]["key_id"], a_record.id.as_str());
    assert_eq!(answer["series"][0]["total"], 4);
    assert_eq!(
        answer["series"][0]["counts"],
        serde_json::json!({"VALID": 3, "INSUFFICIENT_SCOPE": 1})
    );

    let table = ok(&keyward(
        &server,
        &root,
        &["usage", "--key", &a_record.id, "--since", "1h"],
    )
    .await);
    assert!(table.contains("INSUFFICIENT_SCOPE 1"), "{table}");
    assert!(
        table.contains("4 decision(s), 3 valid, by minute"),
        "{table}"
    );

    let by_key = ok(&keyward(
        &server,
        &root,
        &["usage", "--account", "acme", "--by-key", "--since", "2h"],
    )
    .await);
    assert!(
        by_key.contains(&a_record.id) && by_key.contains(&b_record.id),
        "{by_key}"
    );
    assert!(by_key.contains("2 key(s) with decisions"), "{by_key}");

    // The most used key of the account.
    let top = json(
        &keyward(
            &server,
            &root,
            &[
                "keys",
                "list",
                "--account",
                "acme",
                "--most-used",
                "1d",
                "--limit",
                "1",
                "--output",
                "json",
            ],
        )
        .await,
    );
    assert_eq!(top["api_keys"].as_array().unwrap().len(), 1);
    assert_eq!(top["api_keys"][0]["id"], a_record.id.as_str());
    assert_eq!(top["uses"][&a_record.id], 4);

    // Decisions about no stored key, the operator's.
    let no_key = ok(&keyward(&server, &root, &["usage", "--no-key", "--since", "1h"]).await);
    assert!(no_key.contains("MALFORMED 1"), "{no_key}");
    let both = keyward(&server, &root, &["usage", "--no-key", "--account", "acme"]).await;
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));

    let misused = keyward(
        &server,
        &root,
        &["usage", "--account", "acme", "--outcome", "SOMETIMES"],
    )
    .await;
    assert_eq!(misused.status.code(), Some(2), "{}", stderr(&misused));
    assert!(stderr(&misused).contains("SOMETIMES"));
    server.stop().await;
}

/// `keyward portal create` prints the one-time link alone on stdout (it opens the page's
/// session once); `list` shows the session, `revoke` ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_sessions_from_the_command_line() {
    let server = TestServer::start(Backend::Sqlite).await;
    let root = server.root_key.clone();
    let url = ok(&keyward(
        &server,
        &root,
        &[
            "portal",
            "create",
            "--account",
            "acme",
            "--preset",
            "read_only",
            "--max-ttl",
            "90d",
            "--revoke",
            "--return-url",
            "https://app.acme.example/settings",
            "--display-name",
            "Ada",
        ],
    )
    .await);
    let url = url.trim();
    assert!(url.contains("/portal/open/kwpl_"), "{url}");
    let opened = http(
        server.http_addr,
        "GET",
        &url[url.find("/portal/open/").unwrap()..],
        &[],
    )
    .await;
    assert_eq!(opened.status, 303, "{}", opened.body);
    let listed = json(
        &keyward(
            &server,
            &root,
            &["portal", "list", "--account", "acme", "--output", "json"],
        )
        .await,
    );
    let session = &listed["portal_sessions"][0];
    assert_eq!(session["status"], "active");
    assert_eq!(session["presets"], serde_json::json!(["read_only"]));
    assert_eq!(session["max_ttl_seconds"], 90 * 86_400);
    assert_eq!(session["revoke"], true);
    assert_eq!(session["rotate"], false);
    let id = session["id"].as_str().unwrap().to_owned();
    let ended = ok(&keyward(
        &server,
        &root,
        &["portal", "revoke", &id, "--account", "acme"],
    )
    .await);
    assert!(ended.contains(&id), "{ended}");
    let table = ok(&keyward(&server, &root, &["portal", "list", "--account", "acme"]).await);
    assert!(table.contains("revoked"), "{table}");
    let misused = keyward(
        &server,
        &root,
        &[
            "portal",
            "create",
            "--account",
            "acme",
            "--scope",
            "videos:read",
            "--max-ttl",
            "soon",
            "--return-url",
            "https://a.example/",
        ],
    )
    .await;
    assert_eq!(misused.status.code(), Some(2), "{}", stderr(&misused));
    server.stop().await;
}

/// `keyward keys import`: CSV and JSON Lines, from a file or stdin; an interrupted import of a
/// file resumes after the last answered line and imports nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn importing_files_resumes_where_it_stopped() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.foreign_key_prefixes = vec!["sk_live_".into()];
    })
    .await;
    let root = server.root_key.clone();
    let dir = tempfile::tempdir().unwrap();
    let hex = |raw: &str| keyward::key::KeyDigest::of(raw).to_hex();

    // CSV: a header row naming the columns; a bad row is refused by its line number.
    let csv = dir.path().join("keys.csv");
    std::fs::write(
        &csv,
        format!(
            "sha256,prefix,account_id,name,environment,scopes,rate_limit\n\
             {},sk_live_cc,initech,\"old, first\",live,videos:read videos:write,100/1m\n\
             {},sk_live_dd,initech,second,moon,videos:read,\n\
             {},sk_live_ee,initech,third,live,videos:read,\n",
            hex("sk_live_cccccccccccccccc"),
            hex("sk_live_dddddddddddddddd"),
            hex("sk_live_eeeeeeeeeeeeeeee"),
        ),
    )
    .unwrap();
    let imported = keyward(&server, &root, &["keys", "import", csv.to_str().unwrap()]).await;
    assert_eq!(imported.status.code(), Some(1), "{}", stderr(&imported));
    assert!(
        stdout(&imported).contains("imported 2, already present 0, rejected 1"),
        "{}",
        stdout(&imported)
    );
    assert!(
        stderr(&imported).contains("line 3: environment: \"moon\" is not live or test"),
        "{}",
        stderr(&imported)
    );
    let verified = server
        .verify("sk_live_cccccccccccccccc", &["videos:write"])
        .await;
    assert_eq!(code(&verified), VerifyCode::Valid);
    assert_eq!(verified.key.unwrap().name, "old, first");

    // JSON Lines on stdin.
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    command
        .args(["keys", "import", "-"])
        .env("KEYWARD_SERVER", format!("http://{}", server.addr))
        .env("KEYWARD_KEY", &root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let line = |raw: &str, account: &str| {
        format!(
            r#"{{"sha256":"{}","prefix":"sk_live_ff","account_id":"{account}","name":"n","environment":"live","scopes":["videos:read"]}}"#,
            hex(raw)
        )
    };
    let piped = format!(
        "{}\n\n{}\n",
        line("sk_live_ffffffffffffffff", "initech"),
        line("sk_live_eeeeeeeeeeeeeeee", "initech"),
    );
    let from_stdin = tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(piped.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        ok(&from_stdin).contains("imported 1, already present 1, rejected 0"),
        "{}",
        stdout(&from_stdin)
    );

    // A big file, interrupted (Ctrl-C) once some batches are answered, then run again.
    let big = dir.path().join("big.jsonl");
    let total = 40_000;
    let text: String = (0..total)
        .map(|i| {
            line(
                &format!("sk_live_big{i:010}xxxxxxxx"),
                &format!("a{}", i % 97),
            ) + "\n"
        })
        .collect();
    std::fs::write(&big, text).unwrap();
    let checkpoint = dir.path().join("big.jsonl.keyward-progress");
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyward"));
    command
        .args(["keys", "import", big.to_str().unwrap(), "--batch", "10"])
        .args(["--in-flight", "1"])
        .env("KEYWARD_SERVER", format!("http://{}", server.addr))
        .env("KEYWARD_KEY", &root)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().unwrap();
    let pid = child.id().to_string();
    eventually(Duration::from_secs(60), "a saved checkpoint", || async {
        checkpoint.exists().then_some(())
    })
    .await;
    let interrupted = tokio::task::spawn_blocking(move || {
        let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(killed.success());
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        interrupted.status.code(),
        Some(1),
        "{}",
        stderr(&interrupted)
    );
    assert!(
        stderr(&interrupted).contains("interrupted; every line up to ")
            && stderr(&interrupted).contains("run the same command again to resume"),
        "{}",
        stderr(&interrupted)
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&checkpoint).unwrap()).unwrap();
    let done = saved["totals"]["line"].as_u64().unwrap();
    assert!(done > 0 && done < total, "stopped part-way: line {done}");
    let args = ["keys", "import", big.to_str().unwrap()];
    let resumed = keyward(&server, &root, &args).await;
    assert!(
        stderr(&resumed).contains(&format!("resuming after line {done}")),
        "{}",
        stderr(&resumed)
    );
    assert!(
        ok(&resumed).contains(&format!(
            "imported {total}, already present 0, rejected 0 ({} records",
            total - done
        )),
        "{}",
        stdout(&resumed)
    );
    assert!(!checkpoint.exists(), "forgotten once the import ended");
    let again = keyward(&server, &root, &args).await;
    assert!(
        ok(&again).contains(&format!("imported 0, already present {total}, rejected 0")),
        "{}",
        stdout(&again)
    );
    server.stop().await;
}
