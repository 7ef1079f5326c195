//! The server: opens the store, bootstraps the first root key, and serves VerifyService,
//! ManageService, gRPC health and reflection on an already-bound listener until the shutdown
//! future resolves. Tests bind `127.0.0.1:0` and stop it with a oneshot; `main` passes
//! SIGTERM/SIGINT.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::{HealthReporter, HealthService};

use crate::cache::CacheSettings;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::gateway::Gateway;
use crate::grpc::{
    AuthorizationServer, ExtAuthzApi, GatewayLayer, GatewayRoutesLayer, ManageApi, TraceLayer,
    VerifyApi, VerifyServiceServer,
};
use crate::http::HttpState;
use crate::key::SecretKey;
use crate::model::RateLimit;
use crate::net::{ConnectionGauge, ConnectionLimits};
use crate::proto::manage_service_server::ManageServiceServer;
use crate::ratelimit::engine::Engine;
use crate::service::{Keyward, Policy};
use crate::store;

pub use crate::limits::{MAX_CHECK_REQUEST, MAX_MANAGE_REQUEST, MAX_VERIFY_REQUEST};

/// An opened service, ready to serve.
#[derive(Debug)]
pub struct App {
    service: Arc<Keyward>,
    shutdown_timeout: Duration,
    flushing: Flushing,
    limits: ConnectionLimits,
    connections: Arc<ConnectionGauge>,
    metrics_connections: Arc<ConnectionGauge>,
    http_connections: Arc<ConnectionGauge>,
    metrics: Option<TcpListener>,
    http: Option<TcpListener>,
    http_manage: Option<TcpListener>,
    manage: Option<TcpListener>,
    health: Option<TcpListener>,
    verify_auth: bool,
    gateway: Arc<Gateway>,
    api: crate::http::ApiSettings,
    tls: Option<Arc<crate::tls::Tls>>,
}

impl App {
    /// Connects to the configured store and applies its migrations.
    pub async fn open(config: &Config) -> Result<App> {
        let catalog = match &config.scopes_file {
            Some(path) => Catalog::load(path),
            None => Ok(Catalog::builtin()),
        }
        .map_err(|e| Error::FailedPrecondition(e.to_string()))?;
        let store = store::connect(&config.database_url).await?;
        store.migrate().await?;
        let mut service = Keyward::new(
            store,
            Arc::new(catalog),
            config.key_format(),
            policy(config),
            cache_settings(config),
        )
        .with_foreign_prefixes(config.foreign_key_prefixes.clone())
        .with_usage_counting(config.usage_counting)
        .with_portal(config.portal_settings());
        if let Some(url) = &config.rate_limit_store {
            service = service.with_rate_limit_engine(Engine::connect(url).await?);
        }
        service.load_shared_secrets().await?;
        let gateway = Gateway::new(&config.gateway).map_err(Error::FailedPrecondition)?;
        if let Some(preset) = &config.http_api_default_preset
            && service.catalog().preset(preset).is_none()
        {
            return Err(Error::FailedPrecondition(format!(
                "http_api_default_preset: the catalog has no preset {preset:?}"
            )));
        }
        let api = crate::http::ApiSettings {
            enabled: config.http_api,
            default_preset: config.http_api_default_preset.clone(),
            portal_frame_ancestors: config.portal_frame_ancestors.clone(),
            // Served over TLS, or reached through it (a proxy in front): never sent in clear.
            secure_cookies: config.tls_files().is_some()
                || config.portal_settings().base_url.starts_with("https://"),
        };
        let tls = match config.tls_files() {
            Some(files) => Some(crate::tls::Tls::load(&files).map_err(Error::FailedPrecondition)?),
            None => None,
        };
        Ok(App {
            service: Arc::new(service),
            shutdown_timeout: config.shutdown_timeout,
            flushing: Flushing {
                last_used: config.last_used_interval,
                usage: config.usage_flush_interval,
                retention: config.usage_retention(),
            },
            limits: config.connection_limits().within_descriptors(),
            connections: Arc::default(),
            metrics_connections: Arc::default(),
            http_connections: Arc::default(),
            metrics: None,
            http: None,
            http_manage: None,
            manage: None,
            health: None,
            verify_auth: config.verify_auth,
            gateway: Arc::new(gateway),
            api,
            tls,
        })
    }

    /// The domain service, for the CLI and tests.
    pub fn service(&self) -> &Arc<Keyward> {
        &self.service
    }

    /// Connections open on the gRPC listener and on the metrics listener.
    pub fn connection_gauges(&self) -> (Arc<ConnectionGauge>, Arc<ConnectionGauge>) {
        (self.connections.clone(), self.metrics_connections.clone())
    }

    /// Connections open on the HTTP listener.
    pub fn http_connections(&self) -> Arc<ConnectionGauge> {
        self.http_connections.clone()
    }

    /// Serves Prometheus metrics (`GET /metrics`) and health (`/healthz`, `/readyz`) on
    /// `listener` while the server runs.
    pub fn with_metrics(mut self, listener: TcpListener) -> Self {
        self.metrics = Some(listener);
        self
    }

    /// Serves the HTTP listener on `listener`: forward auth (`/auth`), metrics and health, and
    /// the JSON API and admin page unless they have their own listener or are off.
    pub fn with_http(mut self, listener: TcpListener) -> Self {
        self.http = Some(listener);
        self
    }

    /// Serves the JSON API and the admin page on `listener` instead of the HTTP listener, so
    /// they can stay internal while forward auth faces the gateways.
    pub fn with_http_manage_listener(mut self, listener: TcpListener) -> Self {
        self.http_manage = Some(listener);
        self
    }

    /// Serves ManageService on `listener` instead of the main one, so it can stay internal while
    /// Verify faces the gateways. Health and reflection are served on both.
    pub fn with_health_listener(mut self, listener: TcpListener) -> Self {
        self.health = Some(listener);
        self
    }

    /// Serves ManageService on `listener` instead of the main one, so it can stay internal while
    /// Verify faces the gateways. Health and reflection are served on both.
    pub fn with_manage_listener(mut self, listener: TcpListener) -> Self {
        self.manage = Some(listener);
        self
    }

    /// Creates the first root key if the store is empty; its secret is returned to be shown once.
    pub async fn bootstrap(&self) -> Result<Option<SecretKey>> {
        self.service.bootstrap_root_key().await
    }

    /// A server with keyward's transport settings and the RPC trace layer.
    fn server_builder(
        &self,
    ) -> Server<tower::layer::util::Stack<TraceLayer, tower::layer::util::Identity>> {
        Server::builder()
            // Pings keep a live client's idle connection open and expose dead peers.
            .http2_keepalive_interval(Some(self.limits.idle_timeout / 3))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .layer(TraceLayer)
    }

    fn manage_service(&self) -> ManageServiceServer<ManageApi> {
        ManageServiceServer::new(ManageApi::new(self.service.clone()))
            .max_decoding_message_size(MAX_MANAGE_REQUEST)
    }

    /// Says so when Verify is reachable beyond this machine with neither TLS nor caller
    /// authentication.
    fn warn_if_open(&self, addr: std::net::SocketAddr) {
        if !addr.ip().is_loopback() && !self.verify_auth && self.tls.is_none() {
            tracing::warn!(
                %addr,
                "listening beyond this machine without TLS or caller authentication: anyone \
                 who reaches this port can call Verify, read a key's name, scopes and \
                 metadata and spend its rate limit, and keys cross the network in the \
                 clear; set tls_cert/tls_key, and verify_auth = true with gateways \
                 presenting a key holding keys:verify or a client certificate"
            );
        }
    }

    /// Starts the HTTP listeners this server was given (forward auth and operations, the
    /// JSON API's own, metrics) and the TLS file watcher; answers their shared state (so
    /// shutdown can turn `/readyz` off) and their tasks.
    fn start_http(
        &mut self,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> (Arc<HttpState>, Vec<tokio::task::JoinHandle<()>>) {
        let state = Arc::new(HttpState::new(
            self.service.clone(),
            self.gateway.clone(),
            self.api.clone(),
            self.verify_auth,
            vec![
                ("grpc", self.connections.clone()),
                ("http", self.http_connections.clone()),
                ("metrics", self.metrics_connections.clone()),
            ],
        ));
        let api_here = self.api.enabled && self.http_manage.is_none();
        let api = if api_here { ", /v1, /admin" } else { "" };
        let listeners = [
            (
                self.http.take(),
                crate::http::router(state.clone(), api_here),
                self.http_connections.clone(),
                tls.clone(),
                format!("HTTP listening: /auth, /metrics, /healthz, /readyz{api}"),
            ),
            (
                self.http_manage.take(),
                crate::http::manage_router(state.clone()),
                self.http_connections.clone(),
                tls,
                "HTTP management listening: /v1, /admin".to_owned(),
            ),
            (
                self.metrics.take(),
                crate::http::ops_router().with_state(state.clone()),
                self.metrics_connections.clone(),
                // Plaintext on purpose: metrics and health carry no key, and Prometheus and
                // the kubelet's probes then need no certificate.
                None,
                "serving metrics on /metrics".to_owned(),
            ),
        ];
        let mut tasks = Vec::new();
        for (listener, router, gauge, tls, what) in listeners {
            let Some(listener) = listener else { continue };
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "{what}");
            }
            tasks.push(tokio::spawn(crate::http::serve(
                listener,
                router,
                self.limits,
                gauge,
                tls,
            )));
        }
        if let Some(tls) = &self.tls {
            tasks.push(tokio::spawn(tls.clone().watch()));
        }
        (state, tasks)
    }

    /// Serves until `shutdown` resolves, then reports NOT_SERVING, drains in-flight calls (for
    /// at most the configured shutdown timeout) and closes the store.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let reporter = HealthReporter::new();
        let health = HealthServer::new(HealthService::from_health_reporter(reporter.clone()));
        set_status(&reporter, ServingStatus::Serving).await;
        let grpc_tls = self.acceptor(crate::tls::ALPN_H2)?;
        let http_tls = self.acceptor(crate::tls::ALPN_HTTP1)?;
        let stop = Stop::new();
        let signal = stop.on(shutdown, reporter.clone());
        let grpc = self.grpc_servers(listener, health, grpc_tls, signal, &stop)?;
        let background = self.start_background(&reporter, &stop);
        let (http_state, http_tasks) = self.start_http(http_tls);
        let served = self.drain(grpc, &stop, &http_state).await;
        self.close(background, http_tasks).await;
        served.map_err(|e| Error::internal_caused("gRPC server", e))
    }

    /// The TLS acceptor for a listener speaking `alpn`, when TLS is configured.
    fn acceptor(&self, alpn: &[u8]) -> Result<Option<tokio_rustls::TlsAcceptor>> {
        self.tls
            .as_ref()
            .map(|tls| tls.acceptor(&[alpn]))
            .transpose()
            .map_err(Error::FailedPrecondition)
    }

    /// The gRPC servers: the main listener (health, reflection, Verify, `Check`, and
    /// ManageService unless it has its own), ManageService's own listener, and plaintext
    /// health; all stop when `signal` resolves.
    fn grpc_servers<'a>(
        &mut self,
        listener: TcpListener,
        health: HealthServer,
        tls: Option<tokio_rustls::TlsAcceptor>,
        signal: impl Future<Output = ()> + 'a,
        stop: &Stop,
    ) -> Result<impl Future<Output = std::result::Result<(), tonic::transport::Error>> + 'a> {
        let local = listener.local_addr().ok();
        // Bounded connections with handshake and idle timeouts (TCP_NODELAY set on each).
        let incoming =
            crate::net::incoming(listener, self.limits, self.connections.clone(), tls.clone());
        let separate_manage = self.manage.take();
        let (v1, v1alpha) = reflection()?;
        // Verify and Check answer only gateways the service authenticates, when verify_auth
        // asks for it.
        let gateways = self.verify_auth.then(|| self.service.clone());
        // Verify and Check go straight to their generated servers; the router serves the rest.
        let gateway_routes = GatewayRoutesLayer::new(
            GatewayLayer::new(MAX_VERIFY_REQUEST, gateways.clone()).layer(
                VerifyServiceServer::new(VerifyApi::new(self.service.clone()))
                    .max_decoding_message_size(MAX_VERIFY_REQUEST),
            ),
            GatewayLayer::new(MAX_CHECK_REQUEST, gateways).layer(
                AuthorizationServer::new(ExtAuthzApi::new(
                    self.service.clone(),
                    self.gateway.clone(),
                ))
                .max_decoding_message_size(MAX_CHECK_REQUEST),
            ),
        );
        let main = self
            .server_builder()
            .layer(gateway_routes)
            .add_service(health.clone())
            .add_service(v1)
            .add_service(v1alpha)
            .add_optional_service(separate_manage.is_none().then(|| self.manage_service()))
            .serve_with_incoming_shutdown(incoming, signal);
        if let Some(addr) = local {
            self.warn_if_open(addr);
            tracing::info!(%addr, "keyward listening");
        }
        // gRPC health alone, in plaintext, for probes that cannot speak TLS (the kubelet's).
        let health_only = self.health.take().map(|listener| {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "gRPC health (plaintext) listening");
            }
            let incoming =
                crate::net::incoming(listener, self.limits, self.connections.clone(), None);
            Server::builder()
                .add_service(health.clone())
                .serve_with_incoming_shutdown(incoming, stop.stopped())
        });
        let manage = match separate_manage {
            None => None,
            Some(listener) => {
                if let Ok(addr) = listener.local_addr() {
                    tracing::info!(%addr, "ManageService listening on its own port");
                }
                let incoming =
                    crate::net::incoming(listener, self.limits, self.connections.clone(), tls);
                let (v1, v1alpha) = reflection()?;
                Some(
                    self.server_builder()
                        .add_service(health)
                        .add_service(v1)
                        .add_service(v1alpha)
                        .add_service(self.manage_service())
                        .serve_with_incoming_shutdown(incoming, stop.stopped()),
                )
            }
        };
        Ok(
            async move { tokio::try_join!(main, optional(manage), optional(health_only)).map(|_| ()) },
        )
    }

    /// The tasks that run beside the listeners: the store's health, the rate-limit engine's
    /// watch, the change feed and the last-use flusher.
    fn start_background(&self, reporter: &HealthReporter, stop: &Stop) -> Background {
        let engine_watch = self
            .service
            .rate_limit_engine()
            .map(|engine| tokio::spawn(engine.clone().watch()));
        let store_watch = tokio::spawn(watch_store(
            self.service.clone(),
            reporter.clone(),
            stop.stopped.subscribe(),
        ));
        // The set of known digests loads while the server answers (exactly, looking every
        // key up until it is complete). With a change feed, its first connection reports
        // `Lost`, which loads the set; without one, load it here.
        let feed = self.service.store().subscribe();
        if feed.is_none() {
            let service = self.service.clone();
            tokio::spawn(async move {
                if let Err(e) = service.load_known_keys().await {
                    tracing::warn!(error = %e, "could not load the known key digests");
                }
            });
        }
        let feed = feed.map(|mut changes| {
            let service = self.service.clone();
            tokio::spawn(async move {
                while let Some(change) = changes.recv().await {
                    service.apply_change(change).await;
                }
            })
        });
        let (stop_flusher, flusher_stop) = tokio::sync::oneshot::channel::<()>();
        let flusher = tokio::spawn(flush(
            self.service.clone(),
            self.flushing.clone(),
            flusher_stop,
        ));
        Background {
            engine_watch,
            store_watch,
            feed,
            flusher,
            stop_flusher,
        }
    }

    /// Runs the gRPC servers until they end or shutdown begins; then `/readyz` turns off and
    /// in-flight calls get at most the shutdown timeout to finish.
    async fn drain(
        &self,
        grpc: impl Future<Output = std::result::Result<(), tonic::transport::Error>>,
        stop: &Stop,
        http: &HttpState,
    ) -> std::result::Result<(), tonic::transport::Error> {
        tokio::pin!(grpc);
        tokio::select! {
            result = &mut grpc => result,
            () = stop.begun.notified() => {
                http.stopping();
                match tokio::time::timeout(self.shutdown_timeout, &mut grpc).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!("in-flight calls did not finish in time; stopping anyway");
                        Ok(())
                    }
                }
            }
        }
    }

    /// After the listeners: stops the background tasks, hands back what this replica held
    /// (its engine announcement, unspent credit blocks), writes the last uses and closes the
    /// store.
    async fn close(&self, background: Background, http_tasks: Vec<tokio::task::JoinHandle<()>>) {
        // Not aborted: a flush in progress must finish, or its batch would be lost.
        let _ = background.stop_flusher.send(());
        let _ = background.flusher.await;
        background.store_watch.abort();
        if let Some(watch) = background.engine_watch {
            watch.abort();
        }
        if let Some(engine) = self.service.rate_limit_engine() {
            engine.withdraw().await;
        }
        // Unspent credit blocks go back to the database: a graceful stop loses none.
        self.service.return_credits().await;
        for task in http_tasks {
            task.abort();
        }
        if let Some(feed) = background.feed {
            feed.abort();
        }
        if let Err(e) = self.service.flush_last_used().await {
            tracing::error!(error = %e, "could not write last-use times at shutdown");
        }
        if let Err(e) = self.service.flush_usage().await {
            tracing::error!(error = %e, "could not write usage counts at shutdown");
        }
        self.service.store().close().await;
        tracing::info!("keyward stopped");
    }
}

/// The gRPC health service.
type HealthServer = tonic_health::pb::health_server::HealthServer<HealthService>;

/// A server that may not be configured: when absent, done at once.
async fn optional<E>(
    server: Option<impl Future<Output = std::result::Result<(), E>>>,
) -> std::result::Result<(), E> {
    match server {
        Some(server) => server.await,
        None => Ok(()),
    }
}

/// How shutdown reaches every part: `begun` wakes the drain, `stopped` the secondary
/// listeners and the store watch.
struct Stop {
    begun: Arc<Notify>,
    stopped: tokio::sync::watch::Sender<bool>,
}

impl Stop {
    fn new() -> Self {
        Stop {
            begun: Arc::new(Notify::new()),
            stopped: tokio::sync::watch::channel(false).0,
        }
    }

    /// A future that waits for `shutdown`, then reports NOT_SERVING and tells every part.
    fn on(
        &self,
        shutdown: impl Future<Output = ()>,
        reporter: HealthReporter,
    ) -> impl Future<Output = ()> {
        let begun = self.begun.clone();
        let stopped = self.stopped.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: health NOT_SERVING, draining in-flight calls");
            set_status(&reporter, ServingStatus::NotServing).await;
            stopped.send_replace(true);
            begun.notify_one();
        }
    }

    /// Resolves once shutdown has begun.
    fn stopped(&self) -> impl Future<Output = ()> + 'static {
        let mut stopped = self.stopped.subscribe();
        async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        }
    }
}

/// The tasks started beside the listeners, stopped in [`App::close`].
struct Background {
    engine_watch: Option<tokio::task::JoinHandle<()>>,
    store_watch: tokio::task::JoinHandle<()>,
    feed: Option<tokio::task::JoinHandle<()>>,
    flusher: tokio::task::JoinHandle<()>,
    stop_flusher: tokio::sync::oneshot::Sender<()>,
}

/// The service-wide key policy the configuration sets.
fn policy(config: &Config) -> Policy {
    Policy {
        max_active_keys: config.max_active_keys,
        // With a max_ttl and no default, keys get the longest life allowed.
        default_ttl: config.default_ttl.or(config.max_ttl),
        max_ttl: config.max_ttl,
        rate_limit: RateLimit {
            limit: config.rate_limit,
            window_secs: config.rate_limit_window.as_secs(),
        },
    }
}

/// The cache's sizes and lifetimes the configuration sets.
fn cache_settings(config: &Config) -> CacheSettings {
    CacheSettings {
        capacity: config.cache_capacity,
        ttl: config.cache_ttl,
        stale_limit: config.stale_limit,
        negative_capacity: config.negative_cache_capacity,
        negative_ttl: config.negative_cache_ttl,
        unknown_lookups_per_second: config.unknown_key_lookups_per_second,
    }
}

/// Reflection, v1 and v1alpha, over keyward's protos, health and the google.rpc error details
/// (so grpcurl can decode BadRequest field violations).
fn reflection() -> Result<(
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let v1 = builder()
        .build_v1()
        .map_err(|e| Error::internal_caused("reflection", e))?;
    let v1alpha = builder()
        .build_v1alpha()
        .map_err(|e| Error::internal_caused("reflection", e))?;
    Ok((v1, v1alpha))
}

/// What the flusher writes and deletes, and how often.
#[derive(Debug, Clone)]
struct Flushing {
    /// Coalesced last-use times.
    last_used: Duration,
    /// Counted decisions.
    usage: Duration,
    /// How long each usage bucket width is kept.
    retention: Vec<(crate::usage::Granularity, Duration)>,
}

/// How often usage rows past their retention are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// Writes coalesced last-use times and counted decisions, each at its interval, and deletes
/// usage rows past their retention, until told to stop (between writes).
async fn flush(
    service: Arc<Keyward>,
    flushing: Flushing,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    // The first write one period after the start (an interval's first tick is at once).
    let every = |period: Duration| {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    };
    let (mut last_used, mut usage) = (every(flushing.last_used), every(flushing.usage));
    let mut prune = every(PRUNE_INTERVAL);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = last_used.tick() => {
                if let Err(e) = service.flush_last_used().await {
                    tracing::warn!(error = %e, "could not write last-use times; will retry");
                }
            }
            _ = usage.tick() => {
                if let Err(e) = service.flush_usage().await {
                    tracing::warn!(error = %e, "could not write usage counts; will retry");
                }
            }
            _ = prune.tick() => {
                let now = crate::time::Timestamp::now();
                match service.prune_usage(now, &flushing.retention).await {
                    Ok(0) => {}
                    Ok(rows) => tracing::info!(rows, "deleted usage rows past their retention"),
                    Err(e) => tracing::warn!(error = %e, "could not delete old usage rows"),
                }
            }
        }
    }
}

/// Health tells the truth about the store: ManageService is NOT_SERVING while the database does
/// not answer (every management call would fail), SERVING again when it does. VerifyService
/// stays SERVING: it answers cached keys through an outage. Checked every second until shutdown,
/// which owns the statuses from then on.
async fn watch_store(
    service: Arc<Keyward>,
    reporter: HealthReporter,
    stopping: tokio::sync::watch::Receiver<bool>,
) {
    let manage = <ManageServiceServer<ManageApi> as tonic::server::NamedService>::NAME;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut up = true;
    loop {
        ticks.tick().await;
        let answered = tokio::time::timeout(Duration::from_secs(2), service.store().ping()).await;
        let now_up = matches!(answered, Ok(Ok(())));
        if *stopping.borrow() {
            return;
        }
        if now_up != up {
            up = now_up;
            let status = if up {
                tracing::info!("the database answers again: ManageService SERVING");
                ServingStatus::Serving
            } else {
                tracing::warn!("the database does not answer: ManageService NOT_SERVING");
                ServingStatus::NotServing
            };
            reporter.set_service_status(manage, status).await;
        }
    }
}

async fn set_status(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter
        .set_service_status(
            <VerifyServiceServer<VerifyApi> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
    reporter
        .set_service_status(
            <ManageServiceServer<ManageApi> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
}
