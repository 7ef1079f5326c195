//! `keyward.v1.VerifyService`: a denial is a normal response; only a request that cannot be
//! evaluated (`INVALID_ARGUMENT`) or a failing store (`UNAVAILABLE`) is a gRPC error.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{Violations, duration, parse_environment, parse_scopes_owned, timestamp};
use crate::proto::{self, verify_service_server::VerifyService};
use crate::restriction::{MAX_PATH_LEN, Method, parse_client_ip};
use crate::service::{Access, CallContext, Keyward};
use crate::verify::{Code, Decision, RequestContext, VerifyQuery};

/// The VerifyService adapter.
#[derive(Debug, Clone)]
pub struct VerifyApi {
    service: Arc<Keyward>,
    /// Whether callers must present a key holding `keys:verify`.
    require_caller: bool,
}

impl VerifyApi {
    /// An adapter over the domain service.
    pub fn new(service: Arc<Keyward>, require_caller: bool) -> Self {
        VerifyApi {
            service,
            require_caller,
        }
    }
}

#[tonic::async_trait]
impl VerifyService for VerifyApi {
    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        // A gateway authenticates with a key holding keys:verify or a client certificate.
        if self.require_caller && !super::has_client_certificate(&request) {
            let call = CallContext {
                peer: super::peer(&request).map(|p| p.remote_addr.ip().to_canonical()),
                rpc: "/keyward.v1.VerifyService/Verify",
                access: Access::Read,
            };
            self.service
                .authenticate_verifier(super::bearer(&request), &call)
                .await?;
        }
        let mut request = request.into_inner();
        let key = std::mem::take(&mut request.key);
        let basic = match proto::VerifyView::try_from(request.view) {
            Ok(proto::VerifyView::Basic) => true,
            Ok(proto::VerifyView::Unspecified | proto::VerifyView::Full) => false,
            Err(_) => {
                return Err(crate::error::Error::invalid(
                    "view",
                    "must be VERIFY_VIEW_BASIC or VERIFY_VIEW_FULL",
                )
                .into());
            }
        };
        let query = parse_query(request)?;
        let decision = self.service.verify(&key, &query).await?;
        if let Some(state) = &decision.key {
            super::trace::record_caller(state.key.id(), state.key.account_id());
        }
        Ok(Response::new(response(decision, basic)))
    }
}

/// The request's question, taking its strings over (no copies on the hot path).
fn parse_query(request: proto::VerifyRequest) -> crate::error::Result<VerifyQuery> {
    let mut v = Violations::default();
    let required_scopes = parse_scopes_owned(&mut v, "required_scopes", request.required_scopes);
    let environment = parse_environment(request.environment).unwrap_or_else(|e| {
        v.add("environment", e);
        None
    });
    let context = request.context.map(|c| {
        // Each field is bounded before it is parsed; one too long is one violation.
        let mut fits = |field: &str, value: &str, max: usize| {
            let fits = value.len() <= max;
            if !fits {
                v.add(format!("context.{field}"), format!("at most {max} bytes"));
            }
            fits
        };
        let method_fits = fits("method", &c.method, 20);
        let ip_fits = fits("client_ip", &c.client_ip, 64);
        fits("path", &c.path, MAX_PATH_LEN);
        fits("referrer", &c.referrer, MAX_PATH_LEN);
        let client_ip = match c.client_ip.as_str() {
            "" => None,
            _ if !ip_fits => None,
            text => v.parse("context.client_ip", text, |t| {
                parse_client_ip(t).ok_or_else(|| "is not an IP address (or address:port)".into())
            }),
        };
        RequestContext {
            method: match c.method.as_str() {
                "" => None,
                _ if !method_fits => None,
                text => v.parse("context.method", text, Method::parse),
            },
            path: c.path,
            client_ip,
            referrer: c.referrer,
        }
    });
    v.finish(VerifyQuery {
        required_scopes,
        context: context.unwrap_or_default(),
        environment,
        cost: request.cost,
    })
}

fn code(code: Code) -> proto::VerifyCode {
    use proto::VerifyCode as P;
    match code {
        Code::Valid => P::Valid,
        Code::Missing => P::Missing,
        Code::Malformed => P::Malformed,
        Code::NotFound => P::NotFound,
        Code::Revoked => P::Revoked,
        Code::Expired => P::Expired,
        Code::WrongEnvironment => P::WrongEnvironment,
        Code::AccountDisabled => P::AccountDisabled,
        Code::IpNotAllowed => P::IpNotAllowed,
        Code::ReferrerNotAllowed => P::ReferrerNotAllowed,
        Code::MethodNotAllowed => P::MethodNotAllowed,
        Code::PathNotAllowed => P::PathNotAllowed,
        Code::InsufficientScope => P::InsufficientScope,
        Code::RateLimited => P::RateLimited,
    }
}

/// What a gateway learns of the key: identity, and (full view) grant, metadata and expiry.
fn key_info(key: &crate::model::CachedKey, basic: bool) -> proto::KeyInfo {
    let identity = proto::KeyInfo {
        key_id: key.id().to_owned(),
        account_id: key.account_id().to_owned(),
        environment: super::convert::environment(key.environment()).into(),
        ..Default::default()
    };
    if basic {
        return identity;
    }
    proto::KeyInfo {
        name: key.name().to_owned(),
        scopes: key.scopes().map(str::to_owned).collect(),
        grant_all: key.grant_all(),
        meta: key
            .meta()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        expires_at: key.expires_at().map(timestamp),
        ..identity
    }
}

fn response(decision: Decision, basic: bool) -> proto::VerifyResponse {
    proto::VerifyResponse {
        valid: decision.code == Code::Valid,
        code: code(decision.code).into(),
        http_status: decision.code.http_status(),
        message: decision.code.message().to_owned(),
        key: decision.key.as_deref().map(|k| key_info(&k.key, basic)),
        missing_scopes: decision.missing_scopes,
        rate_limit: decision.rate_limit.map(|s| proto::RateLimitStatus {
            limit: s.limit,
            remaining: s.remaining,
            reset_at: Some(timestamp(s.reset_at)),
        }),
        retry_after: decision.retry_after.map(duration),
    }
}
