//! A real Caddy (Debian's `caddy` package) running `deploy/Caddyfile` with `forward_auth` in
//! front of an upstream this test runs: keyward decides, Caddy applies it, and nothing the
//! end client says about its own request changes the decision.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keyward::proto;

use crate::helpers::*;
use crate::nginx::upstream;

/// The Caddy binary: `KEYWARD_TEST_CADDY`, else Debian's.
fn caddy_binary() -> String {
    std::env::var("KEYWARD_TEST_CADDY").unwrap_or_else(|_| "/usr/bin/caddy".into())
}

/// A running Caddy, stopped on drop.
struct Caddy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Caddy {
    /// Starts Caddy with the shipped `deploy/Caddyfile`, pointed at `keyward` (its HTTP
    /// listener) and `api`; `caller_key` in its environment as `KEYWARD_CALLER_KEY`.
    async fn start(keyward: SocketAddr, api: SocketAddr, caller_key: Option<&str>) -> Caddy {
        let dir = tempfile::tempdir().expect("temp dir");
        let addr = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap()
        };
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/Caddyfile");
        let site = std::fs::read_to_string(shipped)
            .expect("deploy/Caddyfile")
            .replace("api.example.com", &format!("http://{addr}"))
            .replace("keyward:8080", &keyward.to_string())
            .replace("api:9000", &api.to_string());
        // No admin endpoint, no certificates: a plain HTTP site on a free port.
        let config = format!("{{\n\tadmin off\n\tauto_https off\n}}\n\n{site}");
        let file = dir.path().join("Caddyfile");
        std::fs::write(&file, config).unwrap();
        let mut command = Command::new(caddy_binary());
        command
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .env_remove("KEYWARD_CALLER_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(key) = caller_key {
            command.env("KEYWARD_CALLER_KEY", key);
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start Caddy ({}): {e}; install Debian's caddy package",
                caddy_binary()
            )
        });
        let caddy = Caddy {
            child,
            addr,
            _dir: dir,
        };
        eventually(Duration::from_secs(20), "Caddy to listen", || async {
            tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
        })
        .await;
        caddy
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_applies_keywards_answers() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.gateway.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let (api, seen) = upstream().await;
    let caddy = Caddy::start(server.http_addr, api, None).await;
    let reached = || seen.lock().unwrap().len();

    // A valid key reaches the upstream, which learns who it is and never sees the key.
    let (reader, record) = server.create(key_request("acme", &["videos:read"])).await;
    let ok = http(caddy.addr, "GET", "/v1/videos/1", &[("x-api-key", &reader)]).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    {
        let seen = seen.lock().unwrap();
        let upstream = seen.last().expect("reached");
        assert_eq!(upstream["x-keyward-key-id"], record.id);
        assert_eq!(upstream["x-keyward-account-id"], "acme");
        assert!(
            upstream.values().all(|v| !v.contains(&reader)),
            "the upstream never sees the key: {upstream:?}"
        );
    }
    // A missing scope and a missing key, with keyward's codes.
    let forbidden = http(
        caddy.addr,
        "GET",
        "/v1/uploads/1",
        &[("x-api-key", &reader)],
    )
    .await;
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    assert_eq!(forbidden.json()["code"], "INSUFFICIENT_SCOPE");
    let missing = http(caddy.addr, "GET", "/v1/videos/1", &[]).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header_values("www-authenticate").len(), 1);
    let before = reached();

    // Nothing the client says about its own request moves it past the key's restrictions.
    let (public_get, _) = server
        .create(proto::CreateKeyRequest {
            restrictions: Some(proto::Restrictions {
                allowed_paths: vec!["/v1/videos/public/*".into()],
                allowed_methods: vec!["GET".into()],
                ..Default::default()
            }),
            ..key_request("acme", &["videos:read"])
        })
        .await;
    for (method, header, value, code) in [
        (
            "GET",
            "x-forwarded-uri",
            "/v1/videos/public/1",
            "PATH_NOT_ALLOWED",
        ),
        (
            "GET",
            "x-original-uri",
            "/v1/videos/public/1",
            "PATH_NOT_ALLOWED",
        ),
        ("DELETE", "x-forwarded-method", "GET", "METHOD_NOT_ALLOWED"),
        ("DELETE", "x-original-method", "GET", "METHOD_NOT_ALLOWED"),
    ] {
        let target = if method == "GET" {
            "/v1/videos/private/1"
        } else {
            "/v1/videos/public/1"
        };
        let answer = http(
            caddy.addr,
            method,
            target,
            &[("x-api-key", &public_get), (header, value)],
        )
        .await;
        assert_eq!(answer.status, 403, "{header}: {answer:?}");
        assert_eq!(answer.json()["code"], code, "{header}");
    }
    crate::nginx::forged_addresses_are_not_believed(&server, caddy.addr).await;
    // Two different keys: refused.
    let two = http(
        caddy.addr,
        "GET",
        "/v1/videos/1",
        &[
            ("x-api-key", &reader),
            ("authorization", &format!("Bearer {public_get}")),
        ],
    )
    .await;
    assert_eq!(two.status, 401, "{two:?}");
    assert_eq!(two.json()["code"], "MALFORMED");
    assert_eq!(reached(), before, "no refused request went upstream");
}

/// With `verify_auth`, the shipped Caddyfile presents Caddy's own key from its environment;
/// without it every request fails closed, and a client cannot supply one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_presents_its_own_key_when_verify_auth_is_on() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.verify_auth = true;
        c.gateway.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let (api, seen) = upstream().await;
    let (gateway_key, _) = server
        .create(key_request("gateway", &["keys:verify"]))
        .await;
    let (client, _) = server.create(key_request("acme", &["videos:read"])).await;
    let with_key = Caddy::start(server.http_addr, api, Some(&gateway_key)).await;
    let ok = http(
        with_key.addr,
        "GET",
        "/v1/videos/1",
        &[("x-api-key", &client)],
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let upstream = seen.lock().unwrap().last().cloned().expect("reached");
    assert!(
        upstream.values().all(|v| !v.contains(&gateway_key)),
        "the gateway's key never goes upstream: {upstream:?}"
    );
    drop(with_key);
    let without = Caddy::start(server.http_addr, api, None).await;
    for extra in [None, Some(gateway_key.as_str())] {
        let mut headers = vec![("x-api-key", client.as_str())];
        headers.extend(extra.map(|key| ("x-keyward-caller-key", key)));
        let refused = http(without.addr, "GET", "/v1/videos/1", &headers).await;
        assert_eq!(refused.status, 500, "{refused:?}");
        assert_eq!(refused.json()["code"], "CALLER_REFUSED");
    }
}
