//! One tower layer gives every RPC a span: the RPC's path, its gRPC code and latency, and —
//! once a handler knows them — the calling key's id and account and the target of a management
//! call (never a key itself). A management call then logs one line at `info` saying who did
//! what, refusals included with their reason; Verify logs at `debug` only (it is the hot path).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;

/// The gRPC path prefix of management calls.
const MANAGE: &str = "/keyward.v1.ManageService/";

/// Adds an RPC span around each call of the service it wraps.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace { inner }
    }
}

/// The service [`TraceLayer`] makes.
#[derive(Debug, Clone)]
pub struct Trace<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for Trace<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let rpc = request.uri().path().to_owned();
        // Management calls are logged at info; everything else (Verify: the hot path) at debug,
        // where a disabled span costs next to nothing.
        let span = if rpc.starts_with(MANAGE) {
            tracing::info_span!(
                "rpc",
                rpc = %rpc,
                code = Empty,
                latency_us = Empty,
                key_id = Empty,
                account_id = Empty,
                target = Empty,
            )
        } else {
            tracing::debug_span!(
                "rpc",
                rpc = %rpc,
                code = Empty,
                latency_us = Empty,
                key_id = Empty,
                account_id = Empty,
            )
        };
        let start = Instant::now();
        let call = self.inner.call(request).instrument(span.clone());
        Box::pin(async move {
            let result = call.await;
            let elapsed = start.elapsed();
            let number = match &result {
                Ok(response) => code_number(response.headers()),
                Err(_) => tonic::Code::Unknown as i32,
            };
            crate::stats::rpc_metrics().record(&rpc, number, elapsed);
            if span.is_disabled() {
                return result;
            }
            let (code, message) = match &result {
                Ok(response) => status_of(response.headers()),
                Err(_) => ("TRANSPORT_ERROR".to_owned(), String::new()),
            };
            let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            span.record("code", code.as_str());
            span.record("latency_us", latency_us);
            let _entered = span.enter();
            if rpc.starts_with(MANAGE) {
                if code == "OK" {
                    tracing::info!("management call done");
                } else {
                    tracing::info!(reason = %message, "management call refused");
                }
            } else {
                tracing::debug!(reason = %message, "call answered");
            }
            result
        })
    }
}

/// The gRPC code number of a response head (a success carries it in the trailers: 0).
fn code_number(headers: &http::HeaderMap) -> i32 {
    headers
        .get("grpc-status")
        .and_then(|s| s.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
        .unwrap_or(0)
}

/// The gRPC code and message of a response head: a failed unary call is answered
/// "trailers-only", so its status is in the headers; a success carries it in the trailers.
fn status_of(headers: &http::HeaderMap) -> (String, String) {
    let Some(status) = headers.get("grpc-status") else {
        return ("OK".to_owned(), String::new());
    };
    let code = status
        .to_str()
        .ok()
        .and_then(|s| s.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
        .unwrap_or(tonic::Code::Unknown);
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    (format!("{code:?}"), message)
}

/// gRPC percent-encodes `grpc-message`; the log shows it as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Names the calling key and its account on the current RPC span.
pub(crate) fn record_caller(key_id: &str, account_id: &str) {
    let span = tracing::Span::current();
    span.record("key_id", key_id);
    span.record("account_id", account_id);
}

/// Names the key a Verify or `Check` decided on its RPC span. Those spans are `debug` spans
/// (the hot path): with `debug` off there is no span to name it on, and finding the current
/// span costs more than the rest of the call's logging, so it is not looked for.
pub(crate) fn record_verified(key_id: &str, account_id: &str) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        record_caller(key_id, account_id);
    }
}

/// Names the key or account a management call acts on, on the current RPC span.
pub(crate) fn record_target(target: &str) {
    tracing::Span::current().record("target", target);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_from_a_trailers_only_head() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_of(&headers).0, "OK");
        headers.insert("grpc-status", http::HeaderValue::from_static("7"));
        headers.insert(
            "grpc-message",
            http::HeaderValue::from_static("the%20calling%20key%20lacks%20keys:write"),
        );
        let (code, message) = status_of(&headers);
        assert_eq!(code, "PermissionDenied");
        assert_eq!(message, "the calling key lacks keys:write");
    }
}
