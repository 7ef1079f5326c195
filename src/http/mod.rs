//! The HTTP listener (`--http-listen`): forward auth for nginx `auth_request`, Traefik
//! ForwardAuth and Caddy `forward_auth` (`/auth`), Prometheus metrics (`/metrics`),
//! liveness/readiness (`/healthz`, `/readyz`), and, unless turned off, the JSON API under
//! `/v1` ([`api`]) and the admin page at `/admin` ([`admin`]). axum routes on hyper;
//! connections are bounded like the gRPC listener's.
//!
//! Forward auth is the gateway face of the one verify decision: the proxy's description of
//! the original request becomes a [`ClientRequest`], the answer is the same [`Answer`] Envoy
//! gets, as a status code, headers and a JSON body.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tower::ServiceExt;

pub mod admin;
pub mod api;
pub(crate) mod forward_auth;
pub mod portal;

use crate::error::Error;
use crate::gateway::{Answer, ClientRequest, Gateway, JSON};
use crate::net::{ConnectionGauge, ConnectionLimits};
use crate::service::Keyward;

/// The header a gateway presents its own key in when `verify_auth` is on: the client's key is
/// in `Authorization`, so the caller's cannot be.
pub const CALLER_KEY_HEADER: &str = "x-keyward-caller-key";

/// The JSON API's and the admin page's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiSettings {
    /// Whether `/v1` and `/admin` are served.
    pub enabled: bool,
    /// The catalog preset a key created over `/v1` without scopes, preset or `grantAll` gets;
    /// `None`: such a request is refused, as on gRPC.
    pub default_preset: Option<String>,
    /// Origins that may frame the portal page; empty: none.
    pub portal_frame_ancestors: Vec<String>,
    /// Whether the portal's cookie is marked `Secure` (its URL is `https://`).
    pub secure_cookies: bool,
}

/// What the HTTP handlers share.
#[derive(Debug)]
pub struct HttpState {
    service: Arc<Keyward>,
    gateway: Arc<Gateway>,
    api: ApiSettings,
    require_caller: bool,
    ready: AtomicBool,
    /// Open connections per listener, for `keyward_connections_open`.
    gauges: Vec<(&'static str, Arc<ConnectionGauge>)>,
}

impl HttpState {
    /// The state of a running server.
    pub fn new(
        service: Arc<Keyward>,
        gateway: Arc<Gateway>,
        api: ApiSettings,
        require_caller: bool,
        gauges: Vec<(&'static str, Arc<ConnectionGauge>)>,
    ) -> Self {
        HttpState {
            service,
            gateway,
            api,
            require_caller,
            ready: AtomicBool::new(true),
            gauges,
        }
    }

    /// From now on `/readyz` answers 503, so load balancers stop sending requests.
    pub fn stopping(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }
}

/// The HTTP listener's routes: forward auth, metrics and health, and, when `with_api`, the
/// JSON API, its OpenAPI document and the admin page.
pub fn router(state: Arc<HttpState>, with_api: bool) -> Router {
    let router = Router::new()
        .route("/auth", any(forward_auth::forward_auth))
        .merge(ops_router());
    let router = if with_api {
        router.merge(api_routes())
    } else {
        router
    };
    router.with_state(state)
}

/// The JSON API, its OpenAPI document and the admin page, with health, for a listener of
/// their own (`http_manage_listen`).
pub fn manage_router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(api_routes())
        .with_state(state)
}

fn api_routes() -> Router<Arc<HttpState>> {
    let (api, document) = api::routes();
    let document: Arc<str> = document
        .to_json()
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "the OpenAPI document does not encode");
            "{}".to_owned()
        })
        .into();
    api.route(
        "/v1/openapi.json",
        get(move || async move { ([(header::CONTENT_TYPE, JSON)], document.to_string()) }),
    )
    .fallback(|| async { api::not_found() })
    .layer(axum::extract::DefaultBodyLimit::max(api::MAX_BODY))
    .layer(axum::middleware::map_response(admin::api_headers))
    .layer(axum::middleware::from_fn(log_api_call))
    .merge(admin::router())
    .merge(portal::router())
}

/// One log line per JSON API call, like the gRPC management calls': method, path (key ids,
/// never a key: keys travel only in headers and bodies, which are not logged), status, latency.
async fn log_api_call(request: Request, next: axum::middleware::Next) -> Response {
    let start = std::time::Instant::now();
    let method = request.method().clone();
    // A key pasted into a URL by mistake never reaches the log.
    let path = crate::error::redact_keys(request.uri().path()).into_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let latency_us = start.elapsed().as_micros() as u64;
    if response.status().is_server_error() {
        tracing::warn!(%method, %path, status, latency_us, "HTTP API call failed");
    } else {
        tracing::info!(%method, %path, status, latency_us, "HTTP API call done");
    }
    response
}

/// Metrics and health only, for the separate `--metrics-addr` listener.
pub fn ops_router() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
}

async fn metrics(State(state): State<Arc<HttpState>>) -> Response {
    let text = crate::metrics::render(&state.service).await
        + &crate::metrics::render_connections(&state.gauges);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    }
}

/// The one verify decision for the request a gateway described, or the answer to give when it
/// cannot be made (a request that cannot be evaluated, the store unavailable).
pub(crate) async fn decide(
    state: &HttpState,
    key: &str,
    client: &ClientRequest<'_>,
) -> Result<crate::verify::Decision, Answer> {
    let query = state
        .gateway
        .query(client)
        .map_err(|rejection| Answer::rejected(&rejection))?;
    match state.service.verify(key, &query).await {
        Ok(decision) => Ok(decision),
        Err(Error::Unavailable(why)) => {
            tracing::warn!(%why, "HTTP verify: the store is unavailable");
            Err(Answer::unavailable())
        }
        Err(e) => {
            tracing::error!(error = %e, "HTTP verify failed");
            Err(Answer::internal())
        }
    }
}

/// The answer as an HTTP response: the status, `x-keyward-code`, the identity and rate-limit
/// headers (so `auth_request_set` / `authResponseHeaders` / `copy_headers` can pass them on),
/// the challenge headers and the JSON body of a denial.
pub(crate) fn respond(mut answer: Answer) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::FORBIDDEN);
    let mut response = match answer.take_body() {
        Some(body) => (status, [(header::CONTENT_TYPE, JSON)], body).into_response(),
        None => status.into_response(),
    };
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("x-keyward-code"),
        HeaderValue::from_static(answer.code),
    );
    let rate_limit = answer.rate_limit();
    let challenge = answer
        .challenge()
        .iter()
        .map(|(name, value)| (*name, value.as_bytes()));
    for (name, value) in (answer.identity().into_iter().flatten())
        .chain(rate_limit.iter().flat_map(|r| r.headers()))
        .chain(challenge)
    {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    response
}

/// Serves `router` over HTTP/1.1 on `listener` (over TLS with an acceptor), within `limits`,
/// until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    gauge: Arc<ConnectionGauge>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut connections = crate::net::incoming(listener, limits, gauge, tls);
    while let Some(conn) = connections.next().await {
        let Ok(conn) = conn else { continue };
        let peer = conn.peer_info();
        let router = router.clone();
        tokio::spawn(async move {
            let respond =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(peer);
                    let router = router.clone();
                    async move {
                        let response = router.oneshot(request).await;
                        Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
                    }
                });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.handshake_timeout)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(conn), respond)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
}
