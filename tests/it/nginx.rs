//! A real nginx (Debian's `nginx` package) running `deploy/nginx.conf` with `auth_request` in
//! front of an upstream this test runs: keyward decides, nginx applies it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::any;
use keyward::net::{ConnectionGauge, ConnectionLimits};
use keyward::proto;

use crate::helpers::*;

/// The nginx binary: `KEYWARD_TEST_NGINX`, else Debian's.
fn nginx_binary() -> String {
    std::env::var("KEYWARD_TEST_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into())
}

/// A running nginx, stopped on drop.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn free_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

impl Nginx {
    /// Starts nginx with the shipped `deploy/nginx.conf`, pointed at `keyward` (its HTTP
    /// listener) and `api`, with `workers` worker processes (0: a single process).
    pub async fn start(keyward: SocketAddr, api: SocketAddr, workers: usize) -> Nginx {
        Self::start_with_caller_key(keyward, api, workers, None).await
    }

    /// Like [`Nginx::start`]; with `caller_key`, the gateway's own key goes in the secret file
    /// `keyward-caller-key.conf` beside the configuration, as the deployment docs say.
    pub async fn start_with_caller_key(
        keyward: SocketAddr,
        api: SocketAddr,
        workers: usize,
        caller_key: Option<&str>,
    ) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        let addr = free_port().await;
        let site = std::fs::read_to_string(root.join("nginx.conf"))
            .expect("deploy/nginx.conf")
            .replace("127.0.0.1:8080", &keyward.to_string())
            .replace("127.0.0.1:9000", &api.to_string())
            .replace("listen 127.0.0.1:8000", &format!("listen {addr}"));
        std::fs::write(dir.path().join("site.conf"), site).unwrap();
        std::fs::copy(
            root.join("keyward-protect.conf"),
            dir.path().join("keyward-protect.conf"),
        )
        .unwrap();
        if let Some(key) = caller_key {
            std::fs::write(
                dir.path().join("keyward-caller-key.conf"),
                format!("set $keyward_caller_key \"{key}\";\n"),
            )
            .unwrap();
        }
        let d = dir.path().display();
        let process = if workers == 0 {
            "master_process off;".to_owned()
        } else {
            format!("worker_processes {workers};")
        };
        // Running as root, workers would switch to an unprivileged user; keep this user.
        let user = if crate::pg::is_root() {
            "user root;"
        } else {
            ""
        };
        let main = format!(
            "daemon off;\n{process}\n{user}\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {d}/site.conf;\n}}\n"
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start nginx ({}): {e}; install Debian's nginx package",
                    nginx_binary()
                )
            });
        let nginx = Nginx {
            child,
            addr,
            _dir: dir,
        };
        eventually(Duration::from_secs(10), "nginx to listen", || async {
            tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
        })
        .await;
        nginx
    }
}

/// The headers of every request the upstream received.
pub type Seen = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// A small upstream API that records the headers of what reaches it and answers 200.
pub async fn upstream() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let router = Router::new().fallback(any(move |headers: HeaderMap| {
        let record = record.clone();
        async move {
            let headers: HashMap<String, String> = headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        v.to_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            record.lock().unwrap().push(headers);
            "upstream reached\n"
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = ConnectionLimits {
        max_connections: 4096,
        handshake_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
    };
    tokio::spawn(keyward::http::serve(
        listener,
        router,
        limits,
        Arc::new(ConnectionGauge::default()),
        None,
    ));
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_applies_keywards_answers() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        // nginx is on this machine: its X-Forwarded-For is believed.
        c.gateway.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let (api, seen) = upstream().await;
    let nginx = Nginx::start(server.http_addr, api, 0).await;
    let get = |target: &str, key: &str| {
        let target = target.to_owned();
        let key = key.to_owned();
        async move {
            let headers: Vec<(&str, &str)> = if key.is_empty() {
                vec![]
            } else {
                vec![("x-api-key", key.as_str())]
            };
            http(nginx.addr, "GET", &target, &headers).await
        }
    };
    let reached = || seen.lock().unwrap().len();

    // A valid key reaches the upstream, which learns the account and never sees the key.
    let (reader, record) = server.create(key_request("acme", &["videos:read"])).await;
    let ok = http(
        nginx.addr,
        "GET",
        "/v1/videos/1",
        &[
            ("authorization", &format!("Bearer {reader}")),
            ("x-keyward-account-id", "spoofed"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.body, "upstream reached\n");
    assert!(ok.header("ratelimit-remaining").is_some(), "{ok:?}");
    {
        let seen = seen.lock().unwrap();
        let upstream = seen.last().expect("the upstream was reached");
        assert_eq!(upstream["x-keyward-account-id"], "acme");
        assert_eq!(upstream["x-keyward-key-id"], record.id);
        assert_eq!(upstream["x-keyward-environment"], "live");
        assert!(
            !upstream.contains_key("authorization") && !upstream.contains_key("x-api-key"),
            "{upstream:?}"
        );
        assert!(
            upstream.values().all(|v| !v.contains(&reader)),
            "the upstream never sees the key: {upstream:?}"
        );
    }
    let ok = get("/v1/videos/2", &reader).await;
    assert_eq!(ok.status, 200);
    let before = reached();

    // A missing scope: 403 with keyward's code, the upstream not reached.
    let forbidden = get("/v1/uploads/1", &reader).await;
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    assert_eq!(forbidden.json()["code"], "INSUFFICIENT_SCOPE");

    // A revoked key: 401 with the RFC 6750 challenge.
    let (revoked, revoked_record) = server.create(key_request("acme", &["videos:read"])).await;
    server
        .manage()
        .await
        .revoke_key(server.root(proto::RevokeKeyRequest {
            id: revoked_record.id,
        }))
        .await
        .unwrap();
    let refused = get("/v1/videos/1", &revoked).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert_eq!(refused.json()["code"], "REVOKED");
    assert!(
        refused
            .header("www-authenticate")
            .is_some_and(|h| h.starts_with("Bearer error=\"invalid_token\"")),
        "{refused:?}"
    );
    let missing = get("/v1/videos/1", "").await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["code"], "MISSING");

    // An exhausted key: 429 with Retry-After.
    let (limited, _) = server
        .create(proto::CreateKeyRequest {
            rate_limit: Some(proto::RateLimit {
                limit: 1,
                window: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
            }),
            ..key_request("acme", &["videos:read"])
        })
        .await;
    assert_eq!(get("/v1/videos/1", &limited).await.status, 200);
    let before_limited = reached();
    let exhausted = get("/v1/videos/1", &limited).await;
    assert_eq!(exhausted.status, 429, "{exhausted:?}");
    let retry: u64 = exhausted
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(exhausted.header("ratelimit-remaining"), Some("0"));
    assert_eq!(reached(), before_limited);

    // A path restriction is enforced on the original URI.
    let (public_only, _) = server
        .create(proto::CreateKeyRequest {
            restrictions: Some(proto::Restrictions {
                allowed_paths: vec!["/v1/videos/public/*".into()],
                ..Default::default()
            }),
            ..key_request("acme", &["videos:read"])
        })
        .await;
    assert_eq!(get("/v1/videos/public/1", &public_only).await.status, 200);
    let private = get("/v1/videos/private/1?x=/v1/videos/public/1", &public_only).await;
    assert_eq!(private.status, 403, "{private:?}");
    assert_eq!(private.json()["code"], "PATH_NOT_ALLOWED");

    // The client IP nginx forwards is the one restrictions see.
    let (office_only, _) = server
        .create(proto::CreateKeyRequest {
            restrictions: Some(proto::Restrictions {
                allowed_cidrs: vec!["198.51.100.0/24".into()],
                ..Default::default()
            }),
            ..key_request("acme", &["videos:read"])
        })
        .await;
    let elsewhere = get("/v1/videos/1", &office_only).await;
    assert_eq!(elsewhere.status, 403);
    assert_eq!(elsewhere.json()["code"], "IP_NOT_ALLOWED");

    // Denials never reached the upstream (the two 200s above did).
    assert_eq!(reached(), before + 2);

    // With keyward stopped, nginx refuses: fail closed.
    server.stop().await;
    let down = get("/v1/videos/1", &reader).await;
    assert_eq!(down.status, 503, "{down:?}");
    assert_eq!(down.json()["code"], "UNAVAILABLE");
    assert_eq!(reached(), before + 2, "nothing reached the upstream");
}

/// Through the shipped configuration, nothing the end client says about its own request
/// changes keyward's decision: forwarded and original method and URI, client address, a
/// second credential; and a 401 carries one challenge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_passes_on_nothing_the_client_says_about_its_request() {
    let server = TestServer::start_with(Backend::Sqlite, |c| {
        c.gateway.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let (api, seen) = upstream().await;
    let nginx = Nginx::start(server.http_addr, api, 0).await;
    let reached = || seen.lock().unwrap().len();
    let (public_get, _) = server
        .create(proto::CreateKeyRequest {
            restrictions: Some(proto::Restrictions {
                allowed_paths: vec!["/v1/videos/public/*".into()],
                allowed_methods: vec!["GET".into()],
                allowed_cidrs: vec!["127.0.0.1/32".into()],
                ..Default::default()
            }),
            ..key_request("acme", &["videos:read"])
        })
        .await;
    let bearer = format!("Bearer {public_get}");
    let send = |method: &'static str, target: &'static str, extra: Vec<(&'static str, String)>| {
        let bearer = bearer.clone();
        async move {
            let mut headers: Vec<(&str, &str)> = vec![("authorization", bearer.as_str())];
            headers.extend(extra.iter().map(|(k, v)| (*k, v.as_str())));
            http(nginx.addr, method, target, &headers).await
        }
    };
    assert_eq!(send("GET", "/v1/videos/public/1", vec![]).await.status, 200);
    let before = reached();

    // The client's own X-Forwarded-Uri / X-Original-URI do not move it onto an allowed path.
    for header in ["x-forwarded-uri", "x-original-uri"] {
        let private = send(
            "GET",
            "/v1/videos/private/1",
            vec![(header, "/v1/videos/public/1".into())],
        )
        .await;
        assert_eq!(private.status, 403, "{header}: {private:?}");
        assert_eq!(private.json()["code"], "PATH_NOT_ALLOWED", "{header}");
    }
    // Nor its X-Forwarded-Method / X-Original-Method onto an allowed method.
    for header in ["x-forwarded-method", "x-original-method"] {
        let delete = send(
            "DELETE",
            "/v1/videos/public/1",
            vec![(header, "GET".into())],
        )
        .await;
        assert_eq!(delete.status, 403, "{header}: {delete:?}");
        assert_eq!(delete.json()["code"], "METHOD_NOT_ALLOWED", "{header}");
    }
    // Nor its X-Forwarded-For / X-Real-IP onto another address: nginx's own address of the
    // client is the one restrictions see (this key is allowed only from 127.0.0.1).
    forged_addresses_are_not_believed(&server, nginx.addr).await;
    // A second, different key: refused, whichever header carries it.
    let (other, _) = server.create(key_request("acme", &["videos:read"])).await;
    for extra in [
        ("x-api-key", other.clone()),
        ("authorization", format!("Bearer {other}")),
    ] {
        let two = send("GET", "/v1/videos/public/1", vec![extra.clone()]).await;
        if extra.0 == "authorization" {
            // nginx itself refuses a second Authorization header before asking keyward.
            assert_eq!(two.status, 400, "{two:?}");
            continue;
        }
        assert_eq!(two.status, 401, "{extra:?}: {two:?}");
        assert_eq!(two.json()["code"], "MALFORMED");
        // One challenge, not two (nginx passes keyward's own on).
        assert_eq!(two.header_values("www-authenticate").len(), 1, "{two:?}");
    }
    // The client's own caller key and identity headers are not believed either.
    let spoofed = send(
        "GET",
        "/v1/videos/public/2",
        vec![
            ("x-keyward-caller-key", other.clone()),
            ("x-keyward-key-id", "key_spoofed".into()),
        ],
    )
    .await;
    assert_eq!(spoofed.status, 200, "{spoofed:?}");
    assert_ne!(
        seen.lock().unwrap().last().unwrap()["x-keyward-key-id"],
        "key_spoofed"
    );
    let revoked = {
        let (key, record) = server.create(key_request("acme", &["videos:read"])).await;
        server
            .manage()
            .await
            .revoke_key(server.root(proto::RevokeKeyRequest { id: record.id }))
            .await
            .unwrap();
        key
    };
    let refused = http(
        nginx.addr,
        "GET",
        "/v1/videos/1",
        &[("x-api-key", &revoked)],
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header_values("www-authenticate").len(),
        1,
        "{refused:?}"
    );
    assert_eq!(
        reached(),
        before + 1,
        "only the one allowed request went upstream"
    );
}

/// With `verify_auth`, the shipped configuration presents nginx's own key from the secret
/// file beside it; without that file every request fails closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_presents_its_own_key_when_verify_auth_is_on() {
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
    let with_key = Nginx::start_with_caller_key(server.http_addr, api, 0, Some(&gateway_key)).await;
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
    let without = Nginx::start(server.http_addr, api, 0).await;
    let refused = http(
        without.addr,
        "GET",
        "/v1/videos/1",
        &[("x-api-key", &client)],
    )
    .await;
    assert_eq!(refused.status, 503, "{refused:?}");
    // A client cannot supply the gateway's key itself.
    let spoofed = http(
        without.addr,
        "GET",
        "/v1/videos/1",
        &[
            ("x-api-key", &client),
            ("x-keyward-caller-key", &gateway_key),
        ],
    )
    .await;
    assert_eq!(spoofed.status, 503, "{spoofed:?}");
}

/// Through the gateway at `gateway`, a client's own `X-Forwarded-For` / `X-Real-IP` do not
/// move it into a key's allowed network: the gateway's view of the client is what counts.
pub async fn forged_addresses_are_not_believed(server: &TestServer, gateway: SocketAddr) {
    let (office_only, _) = server
        .create(proto::CreateKeyRequest {
            restrictions: Some(proto::Restrictions {
                allowed_cidrs: vec!["198.51.100.0/24".into()],
                ..Default::default()
            }),
            ..key_request("acme", &["videos:read"])
        })
        .await;
    for header in ["x-forwarded-for", "x-real-ip"] {
        let answer = http(
            gateway,
            "GET",
            "/v1/videos/1",
            &[
                ("x-api-key", office_only.as_str()),
                (header, "198.51.100.7"),
            ],
        )
        .await;
        assert_eq!(answer.status, 403, "{header}: {answer:?}");
        assert_eq!(answer.json()["code"], "IP_NOT_ALLOWED", "{header}");
    }
}
