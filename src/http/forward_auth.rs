//! HTTP forward auth (`/auth`): nginx `auth_request`, Traefik ForwardAuth, Caddy `forward_auth`.
//! The proxy describes the end client's request in headers; that description becomes a
//! [`ClientRequest`] and the answer is the same [`Answer`] Envoy gets.
//!
//! What the end client sends about its own request must never change the decision
//! (`docs/gateways.md`), so a description that is ambiguous is refused (400 `INVALID_REQUEST`), never
//! read one way: a header given twice, one that is not readable text, or the two header
//! families (`X-Forwarded-*` from Traefik and Caddy, `X-Original-*` from nginx) disagreeing.
//! The shipped configurations (`deploy/`) blank the headers their proxy does not set itself;
//! `docs/gateways.md` lists, per gateway, which headers keyward reads and from whom.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::{CALLER_KEY_HEADER, HttpState, decide, respond};
use crate::error::redact_keys;
use crate::gateway::{Answer, ClientRequest, Rejection, client_ip};
use crate::net::PeerInfo;
use crate::service::{Access, CallContext};

use crate::limits::MAX_FORWARDED_LEN;

/// Parameters of the auth URL, e.g. `/auth?scopes=videos:read,videos:write`. Any other
/// parameter is refused, so a mistyped gateway configuration (`?scope=`) is found on its first
/// request instead of requiring no scope at all.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthParams {
    /// Required scopes, comma-separated; overrides the route table.
    scopes: Option<String>,
    /// The environment the route serves: `live` or `test`.
    environment: Option<String>,
}

pub(super) async fn forward_auth(
    State(state): State<Arc<HttpState>>,
    request: Request,
) -> Response {
    let headers = request.headers();
    let peer_info = request.extensions().get::<PeerInfo>().copied();
    let peer = peer_info.map(|p| p.remote_addr.ip());
    let certified = peer_info.is_some_and(|p| p.verified_client_certificate);
    if state.require_caller
        && !certified
        && let Err(e) = authenticate_caller(&state, headers, peer).await
    {
        // Never 401/403: the gateway would take the end client's key for the bad one.
        tracing::warn!(error = %e, "forward auth: the gateway's own key was refused");
        return respond(Answer::caller_refused());
    }
    let params = match Query::<AuthParams>::try_from_uri(request.uri()) {
        Ok(Query(params)) => params,
        Err(e) => {
            // serde's message names the parameter at fault; never a key, never long.
            let text = e.body_text();
            let reason: String = redact_keys(&text).chars().take(300).collect();
            return respond(Answer::rejected(&Rejection::new("query", reason)));
        }
    };
    let client = match client_request(&state, headers, peer, &params) {
        Ok(client) => client,
        Err(rejection) => return respond(Answer::rejected(&rejection)),
    };
    let values = |name: &str| headers.get_all(name).iter().map(|v| v.to_str().ok());
    let Ok(key) = state.gateway.key(values) else {
        return respond(Answer::ambiguous_key());
    };
    let answer = match decide(&state, key, &client).await {
        Ok(decision) => Answer::from_decision(decision),
        Err(answer) => answer,
    };
    respond(answer)
}

/// The end client's request as the proxy describes it, with the auth URL's parameters.
fn client_request<'r>(
    state: &HttpState,
    headers: &'r HeaderMap,
    peer: Option<IpAddr>,
    params: &'r AuthParams,
) -> Result<ClientRequest<'r>, Rejection> {
    Ok(ClientRequest {
        method: described(headers, "x-forwarded-method", "x-original-method")?.unwrap_or_default(),
        target: described(headers, "x-forwarded-uri", "x-original-uri")?.unwrap_or_default(),
        client_ip: client_address(state, headers, peer)?,
        referrer: single(headers, "referer")?.unwrap_or_default(),
        scopes: params.scopes.as_deref(),
        environment: params.environment.as_deref(),
    })
}

/// The value of a header that describes the client's request: absent, or exactly one value of
/// readable text.
pub(crate) fn single<'h>(
    headers: &'h HeaderMap,
    name: &'static str,
) -> Result<Option<&'h str>, Rejection> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Rejection::new(name, "is given more than once"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| Rejection::new(name, "is not readable text"))
}

/// The request's method or target, from `X-Forwarded-*` (Traefik, Caddy) or `X-Original-*`
/// (nginx); both present and different is ambiguous.
fn described<'h>(
    headers: &'h HeaderMap,
    forwarded: &'static str,
    original: &'static str,
) -> Result<Option<&'h str>, Rejection> {
    match (single(headers, forwarded)?, single(headers, original)?) {
        (Some(a), Some(b)) if a != b => Err(Rejection::new(
            forwarded,
            format!("disagrees with {original}"),
        )),
        (a, b) => Ok(a.or(b)),
    }
}

/// The client's address: the TCP peer, or what `X-Forwarded-For` / `X-Real-IP` say when the
/// peer is a trusted proxy. Every `X-Forwarded-For` line is read, as one list in order (a proxy
/// may append its own line: HAProxy does); `X-Real-IP` is read only without it and must be
/// given once.
pub(crate) fn client_address(
    state: &HttpState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Option<IpAddr>, Rejection> {
    let Some(peer) = peer else { return Ok(None) };
    let gateway = &state.gateway;
    if !gateway.trusts(peer) {
        return Ok(Some(peer.to_canonical()));
    }
    let mut forwarded = String::new();
    for line in headers.get_all("x-forwarded-for") {
        let line = line
            .to_str()
            .map_err(|_| Rejection::new("x-forwarded-for", "is not readable text"))?;
        if forwarded.len() + line.len() + 1 > MAX_FORWARDED_LEN {
            return Err(Rejection::new(
                "x-forwarded-for",
                format!("at most {MAX_FORWARDED_LEN} bytes"),
            ));
        }
        if !forwarded.is_empty() {
            forwarded.push(',');
        }
        forwarded.push_str(line);
    }
    let real_ip = single(headers, "x-real-ip")?;
    let forwarded = (!forwarded.is_empty()).then_some(forwarded.as_str());
    Ok(client_ip(
        peer,
        forwarded,
        real_ip,
        gateway.trusted_proxies(),
    ))
}

async fn authenticate_caller(
    state: &HttpState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> crate::error::Result<()> {
    let call = CallContext {
        peer: peer.map(|ip| ip.to_canonical()),
        rpc: "HTTP /auth",
        access: Access::Read,
    };
    // Given twice or unreadable: no key, refused as a missing one.
    let key = single(headers, CALLER_KEY_HEADER)
        .ok()
        .flatten()
        .map(str::trim);
    state.service.authenticate_verifier(key, &call).await
}
