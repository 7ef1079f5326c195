//! The reference page's own examples (`tests/reference/`: curl, TypeScript `fetch` with Node,
//! Python `requests`), run against a real keyward with only the host, the placeholder keys and
//! the placeholder key id changed; their printed output is checked.

use std::path::{Path, PathBuf};
use std::process::Command;

use keyward::proto::{self, VerifyCode};
use serde_json::Value;

use crate::helpers::*;

/// One example, ready to run: the snippet's text with the host, keys and id replaced.
struct Example {
    text: String,
}

impl Example {
    fn load(name: &str, host: &str, key: &str, id: &str) -> Example {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/reference")
            .join(name);
        let original =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let text = original
            .replace("https://api.docmap.io", host)
            .replace("dm_live_your_existing_api_key", key)
            .replace("dm_live_your_api_key", key)
            .replace("key-abc123", id);
        Example { text }
    }

    /// Runs the example with `program` from a file named `file` in `dir`, the key in `API_KEY`,
    /// and returns what it printed; it must succeed.
    fn run(&self, dir: &Path, program: &str, file: &str, preamble: &str, key: &str) -> String {
        let path: PathBuf = dir.join(file);
        std::fs::write(&path, format!("{preamble}{}", self.text)).expect("write the example");
        let output = Command::new(program)
            .arg(&path)
            .env("API_KEY", key)
            .output()
            .unwrap_or_else(|e| panic!("{program} runs (.ci/run installs it): {e}"));
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{program} {file} failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    fn curl(&self, dir: &Path, file: &str, key: &str) -> Value {
        let out = self.run(dir, "sh", file, "set -e\n", key);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{file} printed {out:?}: {e}"))
    }

    fn node(&self, dir: &Path, file: &str, key: &str) -> String {
        // The snippets assume these variables; the pages advise reading the key from the
        // environment.
        let preamble = "const existingApiKey = process.env.API_KEY, apiKey = process.env.API_KEY, \
                        currentApiKey = process.env.API_KEY;\n";
        self.run(dir, "node", file, preamble, key)
    }

    fn python(&self, dir: &Path, file: &str, key: &str) -> String {
        let preamble = "import os, requests\nexisting_api_key = api_key = os.environ['API_KEY']\n";
        self.run(dir, "python3", file, preamble, key)
    }
}

/// Verifies `key` for `GET /v1/videos` with `videos:read`, as a gateway would.
async fn get_videos(server: &TestServer, key: &str) -> proto::VerifyResponse {
    let request = proto::VerifyRequest {
        context: Some(proto::RequestContext {
            method: "GET".into(),
            path: "/v1/videos".into(),
            ..Default::default()
        }),
        ..verify_request(key, &["videos:read"])
    };
    server
        .verifier()
        .await
        .verify(request)
        .await
        .expect("verify")
        .into_inner()
}

/// `API Key: kw_live_…` and `Key ID: key_…` from a create example: the secret and the id.
fn created(output: &str) -> (String, String) {
    let field = |label: &str| {
        output
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .unwrap_or_else(|| panic!("{label} in {output:?}"))
            .trim()
            .to_owned()
    };
    (field("API Key:"), field("Key ID:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_pages_examples_work_against_keyward() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.http_api_default_preset = Some("read_only".into());
    })
    .await;
    let host = format!("http://{}", server.http_addr);
    // "An existing API key" of the account: it may manage keys and grant what they get.
    let (key, _) = server
        .create(proto::CreateKeyRequest {
            name: "existing key".into(),
            grant_all: true,
            ..key_request("docmap-user", &["keys:write"])
        })
        .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let dir = dir.path();
    let example = |name: &str, id: &str| Example::load(name, &host, &key, id);

    // Create: curl, TypeScript, Python; each prints the secret and the id.
    let made = example("create.sh", "").curl(dir, "create.sh", &key);
    let curl_secret = made["data"]["key"].as_str().expect("data.key").to_owned();
    let curl_id = made["data"]["apiKey"]["id"]
        .as_str()
        .expect("data.apiKey.id")
        .to_owned();
    assert_eq!(made["data"]["apiKey"]["name"], "Production Server");
    assert!(curl_secret.starts_with("kw_live_"));
    let (ts_secret, ts_id) = created(&example("create.ts", "").node(dir, "create.mjs", &key));
    let (py_secret, py_id) = created(&example("create.py", "").python(dir, "create.py", &key));
    // Read-only keys (the server's default preset): a GET with a read scope passes.
    for secret in [&curl_secret, &ts_secret, &py_secret] {
        let answer = get_videos(&server, secret).await;
        assert_eq!(code(&answer), VerifyCode::Valid, "{answer:?}");
    }

    // List: metadata only; each line names the key, its prefix and "Never".
    let listed = example("list.sh", "").curl(dir, "list.sh", &key);
    let keys = listed["data"].as_array().expect("data");
    assert_eq!(keys.len(), 4, "the existing key and three new ones");
    assert!(!listed.to_string().contains(&curl_secret));
    let prefix = |secret: &str| secret[..16].to_owned();
    let ts_lines = example("list.ts", "").node(dir, "list.mjs", &key);
    let py_lines = example("list.py", "").python(dir, "list.py", &key);
    for secret in [&curl_secret, &ts_secret, &py_secret] {
        let line = format!(
            "Production Server ({}...) - Last used: Never",
            prefix(secret)
        );
        assert!(
            ts_lines.lines().any(|l| l == line),
            "{line:?} in {ts_lines}"
        );
        assert!(
            py_lines.lines().any(|l| l == line),
            "{line:?} in {py_lines}"
        );
    }

    // Rotation: create the replacement, check it with a test call, which succeeds.
    let rotated = example("rotate.ts", "").node(dir, "rotate.mjs", &key);
    assert_eq!(
        rotated.trim(),
        "New key verified. Update your environment variables now."
    );

    // Monitoring: only the key never used through a gateway (the managing key) is inactive;
    // the three verified above and the replacement, used by its test call, are not.
    server
        .service
        .flush_last_used()
        .await
        .expect("last use written");
    let inactive = example("monitor.ts", "").node(dir, "monitor.mjs", &key);
    assert_eq!(
        inactive.trim(),
        format!(
            "Key \"existing key\" ({}...) is inactive — consider revoking it",
            prefix(&key)
        )
    );

    // Revoke: one key each way; each is refused at once.
    let revoked = example("revoke.sh", &curl_id).curl(dir, "revoke.sh", &key);
    assert_eq!(revoked["success"], true);
    assert_eq!(
        example("revoke.ts", &ts_id)
            .node(dir, "revoke.mjs", &key)
            .trim(),
        "Revoked: true"
    );
    assert_eq!(
        example("revoke.py", &py_id)
            .python(dir, "revoke.py", &key)
            .trim(),
        "Revoked: True"
    );
    for secret in [&curl_secret, &ts_secret, &py_secret] {
        assert_eq!(
            code(&get_videos(&server, secret).await),
            VerifyCode::Revoked
        );
    }
    server.stop().await;
}
