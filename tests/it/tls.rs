//! TLS: the gRPC and HTTP listeners over rustls with certificates generated here (rcgen),
//! mutual TLS, certificate reload, a client certificate as a gateway's credential, and
//! PostgreSQL over TLS (`sslmode=verify-full`) against a cluster started with `ssl=on`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use keyward::proto::VerifyCode;
use keyward::server::App;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::*;
use crate::pg::Cluster;

/// A certificate authority made for one test.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A certificate and key (PEM) for `names`, for a server or a client.
    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn server(&self) -> (String, String) {
        self.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client(&self, name: &str) -> (String, String) {
        self.issue(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// PEM files in a temp dir.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, pem: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

async fn tls_channel(
    server: &TestServer,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<tonic::transport::Channel, String> {
    let url = format!("https://localhost:{}", server.addr.port());
    keyward::tls::grpc_channel(&url, ca, identity).await
}

async fn health(channel: tonic::transport::Channel) -> Result<i32, tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|r| r.into_inner().status)
}

/// A TLS server with `ca`'s server certificate; `client_ca` turns on mutual TLS.
async fn tls_server(
    files: &Files,
    ca: &Ca,
    client_ca: Option<&Ca>,
    verify_auth: bool,
) -> TestServer {
    let (cert, key) = ca.server();
    let cert = files.write("server.pem", &cert);
    let key = files.write("server-key.pem", &key);
    let client_ca = client_ca.map(|c| files.write("client-ca.pem", &c.cert.pem()));
    TestServer::start_with(Backend::Sqlite, move |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        c.tls_client_ca = client_ca;
        c.verify_auth = verify_auth;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_http_are_served_over_tls_and_plaintext_is_refused() {
    let files = Files::new();
    let ca = Ca::new("test CA");
    let ca_file = files.write("ca.pem", &ca.cert.pem());
    let server = tls_server(&files, &ca, None, false).await;

    // Over TLS: health, a management call and a verify.
    let channel = tls_channel(&server, &ca_file, None).await.expect("TLS");
    assert_eq!(health(channel.clone()).await.expect("health"), 1);
    let created = keyward::proto::manage_service_client::ManageServiceClient::new(channel.clone())
        .create_key(server.root(key_request("acme", &["videos:read"])))
        .await
        .expect("create over TLS")
        .into_inner();
    let answer = keyward::proto::verify_service_client::VerifyServiceClient::new(channel)
        .verify(verify_request(&created.key, &["videos:read"]))
        .await
        .expect("verify over TLS")
        .into_inner();
    assert_eq!(code(&answer), VerifyCode::Valid);

    // A plaintext gRPC client gets nothing.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .timeout(Duration::from_secs(3))
        .connect()
        .await;
    if let Ok(channel) = plain {
        health(channel)
            .await
            .expect_err("plaintext must not be answered");
    }

    // A server certificate from another CA is not trusted by the client.
    let other = Ca::new("other CA");
    let other_file = files.write("other.pem", &other.cert.pem());
    assert!(tls_channel(&server, &other_file, None).await.is_err());

    // The HTTP listener speaks TLS too: plaintext HTTP gets no answer.
    let plain_http = tokio::time::timeout(Duration::from_secs(5), async {
        let stream = tokio::net::TcpStream::connect(server.http_addr)
            .await
            .ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(conn);
        let request = hyper::Request::get("/healthz")
            .header("host", "localhost")
            .body(http_body_util::Empty::<hyper::body::Bytes>::new())
            .unwrap();
        sender.send_request(request).await.ok()
    })
    .await;
    assert!(
        matches!(plain_http, Ok(None)),
        "plaintext HTTP is refused: {plain_http:?}"
    );
    let connector =
        keyward::tls::connector(&ca_file, None, keyward::tls::ALPN_HTTP1).expect("connector");
    let stream = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .unwrap();
    let tls = connector
        .connect(keyward::tls::server_name("localhost").unwrap(), stream)
        .await
        .expect("TLS to the HTTP listener");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let response = sender
        .send_request(
            hyper::Request::get("/healthz")
                .header("host", "localhost")
                .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .unwrap(),
        )
        .await
        .expect("HTTPS answers");
    assert_eq!(response.status(), 200);
    // Portal links are https:// and their session cookie is Secure.
    let channel = tls_channel(&server, &ca_file, None).await.expect("TLS");
    let link = keyward::proto::manage_service_client::ManageServiceClient::new(channel)
        .create_portal_session(server.root(keyward::proto::CreatePortalSessionRequest {
            account_id: "acme".into(),
            permissions: Some(keyward::proto::PortalPermissions {
                scopes: vec!["videos:read".into()],
                ..Default::default()
            }),
            return_url: "https://app.acme.example/".into(),
            ..Default::default()
        }))
        .await
        .expect("a portal session over TLS")
        .into_inner()
        .url;
    assert!(link.starts_with("https://"), "{link}");
    let opened = sender
        .send_request(
            hyper::Request::get(&link[link.find("/portal/open/").unwrap()..])
                .header("host", "localhost")
                .body(http_body_util::Empty::<hyper::body::Bytes>::new())
                .unwrap(),
        )
        .await
        .expect("the link over HTTPS");
    assert_eq!(opened.status(), 303);
    let cookie = opened.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // The separate metrics listener stays plaintext (no key passes there): scrapers and
    // kubelet probes need no certificate.
    assert!(
        server
            .metrics()
            .await
            .contains("keyward_verifications_total")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate_of_the_client_ca() {
    let files = Files::new();
    let ca = Ca::new("test CA");
    let ca_file = files.write("ca.pem", &ca.cert.pem());
    let clients = Ca::new("client CA");
    let server = tls_server(&files, &ca, Some(&clients), false).await;

    // No client certificate: the handshake, or the first call, fails.
    match tls_channel(&server, &ca_file, None).await {
        Err(_) => {}
        Ok(channel) => {
            health(channel)
                .await
                .expect_err("a client without a certificate is refused");
        }
    }
    // A certificate from another CA: refused.
    let (cert, key) = Ca::new("stranger").client("gateway");
    let (cert, key) = (files.write("s.pem", &cert), files.write("s-key.pem", &key));
    match tls_channel(&server, &ca_file, Some((&cert, &key))).await {
        Err(_) => {}
        Ok(channel) => {
            health(channel)
                .await
                .expect_err("a certificate of another CA is refused");
        }
    }
    // The client CA's certificate: served.
    let (cert, key) = clients.client("gateway");
    let (cert, key) = (files.write("c.pem", &cert), files.write("c-key.pem", &key));
    let channel = tls_channel(&server, &ca_file, Some((&cert, &key)))
        .await
        .expect("mutual TLS");
    assert_eq!(health(channel).await.expect("health"), 1);

    // `keyward health` speaks the same TLS.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keyward"))
        .args(["health", "--server"])
        .arg(format!("https://localhost:{}", server.addr.port()))
        .arg("--tls-ca")
        .arg(&ca_file)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.stop().await;
}

/// With `verify_auth`, a gateway authenticates with a client certificate as well as with a
/// key holding `keys:verify`; TLS without client certificates does not authenticate anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_authenticates_a_gateway() {
    let files = Files::new();
    let ca = Ca::new("test CA");
    let ca_file = files.write("ca.pem", &ca.cert.pem());
    let clients = Ca::new("client CA");
    let (cert, key) = clients.client("gateway");
    let (cert, key) = (files.write("c.pem", &cert), files.write("c-key.pem", &key));

    let server = tls_server(&files, &ca, Some(&clients), true).await;
    let channel = tls_channel(&server, &ca_file, Some((&cert, &key)))
        .await
        .unwrap();
    let created = keyward::proto::manage_service_client::ManageServiceClient::new(channel.clone())
        .create_key(server.root(key_request("acme", &["videos:read"])))
        .await
        .unwrap()
        .into_inner();
    let answer = keyward::proto::verify_service_client::VerifyServiceClient::new(channel)
        .verify(verify_request(&created.key, &["videos:read"]))
        .await
        .expect("the certificate is the credential")
        .into_inner();
    assert_eq!(code(&answer), VerifyCode::Valid);
    server.stop().await;

    let files = Files::new();
    let server = tls_server(&files, &ca, None, true).await;
    let channel = tls_channel(&server, &ca_file, None).await.unwrap();
    let status = keyward::proto::verify_service_client::VerifyServiceClient::new(channel)
        .verify(verify_request("kw_live_x", &[]))
        .await
        .expect_err("TLS alone does not authenticate a caller");
    assert_eq!(status.code(), Code::Unauthenticated);
    server.stop().await;
}

/// cert-manager rotates certificates in place: new connections get the new certificate
/// without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_reloaded_when_their_files_change() {
    let files = Files::new();
    let first = Ca::new("first CA");
    let first_file = files.write("first.pem", &first.cert.pem());
    let second = Ca::new("second CA");
    let second_file = files.write("second.pem", &second.cert.pem());
    let server = tls_server(&files, &first, None, false).await;
    let old = tls_channel(&server, &first_file, None).await.unwrap();
    assert_eq!(health(old.clone()).await.unwrap(), 1);
    assert!(tls_channel(&server, &second_file, None).await.is_err());

    let (cert, key) = second.server();
    // Key first, then certificate, as a rotation writes them.
    std::fs::write(files.path("server-key.pem"), key).unwrap();
    std::fs::write(files.path("server.pem"), cert).unwrap();
    eventually(
        Duration::from_secs(20),
        "new connections to get the new certificate",
        || async {
            tls_channel(&server, &second_file, None)
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    assert!(tls_channel(&server, &first_file, None).await.is_err());
    // The connection made before the rotation still works.
    assert_eq!(health(old).await.unwrap(), 1);

    server.stop().await;
}

/// Bad TLS settings stop the start with a message naming the setting.
#[tokio::test]
async fn bad_tls_files_are_refused_at_start() {
    let files = Files::new();
    let (url, _dir) = fresh_database(Backend::Sqlite).await;
    let mut config = test_config(&url);
    config.tls_cert = Some(files.write("cert.pem", "not a certificate"));
    config.tls_key = Some(files.write("key.pem", "not a key"));
    let error = App::open(&config).await.expect_err("bad files").to_string();
    assert!(error.contains("tls_cert"), "{error}");
    let ca = Ca::new("test CA");
    let (cert, _) = ca.server();
    let (_, other_key) = ca.server();
    config.tls_cert = Some(files.write("cert.pem", &cert));
    config.tls_key = Some(files.write("key.pem", &other_key));
    let error = App::open(&config)
        .await
        .expect_err("mismatched key")
        .to_string();
    assert!(error.contains("does not match"), "{error}");
}

/// PostgreSQL over TLS: `verify-full` with the right CA works, with a wrong one it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_verifies_the_server() {
    let files = Files::new();
    let ca = Ca::new("database CA");
    let (cert, key) = ca.server();
    let cluster = Cluster::start_with_tls(Some((&cert, &key))).expect("a TLS cluster");
    let right = files.write("db-ca.pem", &ca.cert.pem());
    let wrong = files.write("other-ca.pem", &Ca::new("other").cert.pem());
    let url = |mode: &str, ca: &Path| {
        format!(
            "{}?sslmode={mode}&sslrootcert={}",
            cluster.url("postgres"),
            ca.display()
        )
    };
    for mode in ["verify-full", "verify-ca", "require"] {
        let config = test_config(&url(mode, &right));
        let app = App::open(&config)
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        app.service().store().close().await;
    }
    let error = App::open(&test_config(&url("verify-full", &wrong)))
        .await
        .expect_err("a server certificate the CA did not sign");
    let message = error.to_string();
    assert!(message.contains("TLS"), "the reason is named: {message}");
}

/// With TLS on, the kubelet's gRPC probes (which cannot speak TLS) use the plaintext health
/// listener: it answers gRPC health per service, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_listener_answers_probes_in_plaintext() {
    let files = Files::new();
    let ca = Ca::new("test CA");
    let (cert, key) = ca.server();
    let (url, _dir) = fresh_database(Backend::Sqlite).await;
    let mut config = test_config(&url);
    config.tls_cert = Some(files.write("server.pem", &cert));
    config.tls_key = Some(files.write("server-key.pem", &key));
    let app = App::open(&config).await.unwrap();
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health_addr = health_listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(
        app.with_health_listener(health_listener)
            .serve(main, async {
                let _ = stopped.await;
            }),
    );
    let channel = eventually(Duration::from_secs(10), "the health listener", || async {
        tonic::transport::Endpoint::from_shared(format!("http://{health_addr}"))
            .unwrap()
            .connect()
            .await
            .ok()
    })
    .await;
    for service in ["", "keyward.v1.VerifyService"] {
        let status = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("plaintext health")
            .into_inner()
            .status;
        assert_eq!(status, 1, "{service:?} SERVING");
    }
    let status = keyward::proto::verify_service_client::VerifyServiceClient::new(channel)
        .verify(verify_request("kw_live_x", &[]))
        .await
        .expect_err("only health is served there");
    assert_eq!(status.code(), Code::Unimplemented);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
