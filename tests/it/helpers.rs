//! Starts the real server on `127.0.0.1:0` over a real database (SQLite in a temp dir or a
//! fresh PostgreSQL database) and hands out generated tonic clients.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward::config::{Config, Flags};
use keyward::proto::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use keyward::proto::manage_service_client::ManageServiceClient;
use keyward::proto::verify_service_client::VerifyServiceClient;
use keyward::proto::{self, Environment, VerifyCode};
use keyward::server::App;
use keyward::service::Keyward;
use keyward::store::DatabaseUrl;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Request;
use tonic::transport::Channel;

use crate::pg;

/// A well-formed key id that no key has.
pub const ABSENT_ID: &str = "key_0000000000000000000000";

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body once per backend, as `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

/// A fresh database of the backend: its URL and the temp dir holding it (SQLite).
pub async fn fresh_database(backend: Backend) -> (String, Option<tempfile::TempDir>) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("keyward.db").display());
            (url, Some(dir))
        }
        Backend::Postgres => (pg::fresh_database().await, None),
    }
}

/// Configuration for a test server on `database_url`.
pub fn test_config(database_url: &str) -> Config {
    let mut config = Config::load(None, &Flags::default()).expect("default config loads");
    config.database_url = DatabaseUrl::new(database_url);
    config
}

/// A running server and what a test needs to talk to it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// The HTTP listener: forward auth, metrics, health.
    pub http_addr: SocketAddr,
    /// The JSON API's own listener, when `http_manage_listen` is set.
    pub http_manage_addr: Option<SocketAddr>,
    pub root_key: String,
    pub service: Arc<Keyward>,
    pub database_url: String,
    /// Open connections on the gRPC and the metrics listener.
    pub connection_gauges: (
        Arc<keyward::net::ConnectionGauge>,
        Arc<keyward::net::ConnectionGauge>,
    ),
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<keyward::error::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server on a fresh database of `backend`, with a root key minted for the test.
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, |_| {}).await
    }

    /// Like [`start`](Self::start), with the configuration adjusted first.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestServer {
        let (url, dir) = fresh_database(backend).await;
        let mut config = test_config(&url);
        adjust(&mut config);
        let mut server = Self::start_on(config).await;
        server._dir = dir;
        server
    }

    /// A server on an existing database (sharing it with other servers).
    pub async fn start_on(config: Config) -> TestServer {
        let app = App::open(&config).await.expect("store opens");
        let (secret, _) = app
            .service()
            .mint_root_key("test root")
            .await
            .expect("root key");
        let service = app.service().clone();
        let connection_gauges = app.connection_gauges();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let metrics = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind metrics");
        let metrics_addr = metrics.local_addr().expect("local addr");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let http_addr = http.local_addr().expect("local addr");
        let app = app.with_metrics(metrics).with_http(http);
        let (app, http_manage_addr) = match config.http_manage_listen {
            Some(_) => {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let addr = listener.local_addr().expect("local addr");
                (app.with_http_manage_listener(listener), Some(addr))
            }
            None => (app, None),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        if config.database_url.expose().starts_with("postgres") {
            // Start from a connected change feed, so no test races its first (re)read.
            let feed = service.clone();
            eventually(
                Duration::from_secs(10),
                "the change feed to connect",
                || {
                    let connected = feed.feed_interruptions() >= 1;
                    async move { connected.then_some(()) }
                },
            )
            .await;
        }
        TestServer {
            addr,
            metrics_addr,
            http_addr,
            http_manage_addr,
            root_key: secret.expose().to_owned(),
            service,
            database_url: config.database_url.expose().to_owned(),
            connection_gauges,
            stop: Some(stop),
            task: Some(task),
            _dir: None,
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("valid uri")
            .connect()
            .await
            .expect("connect to test server")
    }

    pub async fn manage(&self) -> ManageServiceClient<Channel> {
        ManageServiceClient::new(self.channel().await)
    }

    pub async fn verifier(&self) -> VerifyServiceClient<Channel> {
        VerifyServiceClient::new(self.channel().await)
    }

    /// A client of the Envoy ext_authz service, generated from the vendored protos.
    pub async fn ext_authz(&self) -> AuthorizationClient<Channel> {
        AuthorizationClient::new(self.channel().await)
    }

    /// Calls Envoy's `Check` with `body` as the request message, bytes as given (no generated
    /// types in between); returns the response message's bytes.
    pub async fn check_raw(&self, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel().await);
        grpc.ready().await.expect("the channel is ready");
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/envoy.service.auth.v3.Authorization/Check",
        );
        grpc.unary(Request::new(body), path, RawCodec)
            .await
            .map(tonic::Response::into_inner)
    }

    /// A request carrying the root key.
    pub fn root<T>(&self, message: T) -> Request<T> {
        as_key(&self.root_key, message)
    }

    /// Creates a key through the API with the root key; returns the secret and record.
    pub async fn create(&self, request: proto::CreateKeyRequest) -> (String, proto::ApiKey) {
        let response = self
            .manage()
            .await
            .create_key(self.root(request))
            .await
            .expect("create key")
            .into_inner();
        (response.key, response.api_key.expect("api_key"))
    }

    /// The newest 100 audit events of `account`, read with the root key.
    pub async fn audit_events(&self, account: &str) -> Vec<proto::AuditEvent> {
        self.manage()
            .await
            .list_audit_events(self.root(proto::ListAuditEventsRequest {
                account_id: account.into(),
                page_size: 100,
                page_token: String::new(),
            }))
            .await
            .expect("audit events")
            .into_inner()
            .events
    }

    /// Verifies `key` with the given required scopes.
    pub async fn verify(&self, key: &str, scopes: &[&str]) -> proto::VerifyResponse {
        self.verifier()
            .await
            .verify(verify_request(key, scopes))
            .await
            .expect("verify answers")
            .into_inner()
    }

    /// Queries the store has answered for the verify path so far.
    pub fn store_lookups(&self) -> u64 {
        self.service
            .cache()
            .stats()
            .store_lookups
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The Prometheus text from `GET /metrics`.
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.metrics_addr)
            .await
            .expect("metrics");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: keyward\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        response
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A request carrying `key` as its bearer credential.
pub fn as_key<T>(key: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii header"),
    );
    request
}

/// A live key request for `account` with `scopes`.
pub fn key_request(account: &str, scopes: &[&str]) -> proto::CreateKeyRequest {
    proto::CreateKeyRequest {
        account_id: account.into(),
        name: format!("key for {account}"),
        environment: Environment::Live.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub fn verify_request(key: &str, scopes: &[&str]) -> proto::VerifyRequest {
    proto::VerifyRequest {
        key: key.into(),
        required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub fn code(response: &proto::VerifyResponse) -> VerifyCode {
    VerifyCode::try_from(response.code).expect("known code")
}

/// Polls `check` until it returns `Some`, failing after `deadline`. Never a blind sleep.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The field names of an `INVALID_ARGUMENT` status's `BadRequest` details.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// An HTTP/1.1 answer, header names lower-case.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: std::collections::HashMap<String, String>,
    /// Every header line, in order (`headers` keeps one value per name).
    pub lines: Vec<(String, String)>,
    pub body: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Every value of header `name`.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        (self.lines.iter())
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

/// Sends one HTTP/1.1 request through hyper's client to `addr`.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> HttpAnswer {
    http_with_body(addr, method, target, headers, "").await
}

/// Like [`http`], with a body.
pub async fn http_with_body(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpAnswer {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
    tokio::spawn(conn);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(target)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Full::new(hyper::body::Bytes::from(
            body.to_owned(),
        )))
        .expect("request");
    let response = sender.send_request(request).await.expect("HTTP response");
    let status = response.status().as_u16();
    let lines: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let headers = lines.iter().cloned().collect();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    HttpAnswer {
        status,
        headers,
        lines,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A gRPC codec of raw message bytes: what is given is sent, what arrives is returned.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        let len = bytes::Buf::remaining(buf);
        Ok(Some(bytes::Buf::copy_to_bytes(buf, len).to_vec()))
    }
}

/// `POST /v1/portal-sessions` with `key` as the bearer and `body` as JSON.
pub async fn create_portal_session(
    server: &TestServer,
    key: &str,
    body: &serde_json::Value,
) -> HttpAnswer {
    let bearer = format!("Bearer {key}");
    http_with_body(
        server.http_addr,
        "POST",
        "/v1/portal-sessions",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        &body.to_string(),
    )
    .await
}

/// The path of the one-time link (`/portal/open/kwpl_…`) in a create answer's JSON.
pub fn portal_link_path(answer: &serde_json::Value) -> String {
    let url = answer["data"]["url"].as_str().expect("a url");
    let at = url.find("/portal/open/").expect("a portal link");
    url[at..].to_owned()
}

/// A root-made session of account `acme` that may grant `videos:read`: its link's path.
pub async fn simple_portal_link(server: &TestServer) -> String {
    let answer = create_portal_session(
        server,
        &server.root_key,
        &serde_json::json!({"accountId": "acme", "permissions": {"scopes": ["videos:read"]},
                            "returnUrl": "https://app.acme.example/"}),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    portal_link_path(&answer.json())
}

/// Runs `sql` on the test's database directly, answering the first column of its first row
/// as an integer (0 for a statement that answers none).
pub async fn db_i64(database_url: &str, sql: &str) -> i64 {
    if database_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        let value = sqlx::query_scalar::<_, i64>(sql)
            .fetch_optional(&pool)
            .await
            .unwrap();
        pool.close().await;
        value.unwrap_or(0)
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        let value = sqlx::query_scalar::<_, i64>(sql)
            .fetch_optional(&pool)
            .await
            .unwrap();
        pool.close().await;
        value.unwrap_or(0)
    }
}
