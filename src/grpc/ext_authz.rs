//! `envoy.service.auth.v3.Authorization/Check` (Envoy ext_authz): Envoy's description of the end
//! client's request becomes a [`crate::gateway::ClientRequest`]; the verdict is the same
//! decision as Verify's, answered the way Envoy applies it (SPEC section 11).
//!
//! A request the client got wrong is a denial (400), never a gRPC error: Envoy's
//! `failure_mode_allow` would let an erroring request through. Only a store that cannot be
//! reached for an uncached key is an error (UNAVAILABLE), so Envoy's own setting decides.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::gateway::{Answer, ClientRequest, Gateway, JSON};
use crate::proto::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, address, header_value_option::HeaderAppendAction,
};
use crate::proto::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse, attribute_context,
    authorization_server::Authorization, check_response::HttpResponse,
};
use crate::proto::envoy::r#type::v3::{HttpStatus, StatusCode};
use crate::restriction::parse_client_ip;
use crate::service::{Access, CallContext, Keyward};
use crate::time::Timestamp;

/// The Envoy ext_authz adapter.
#[derive(Debug, Clone)]
pub struct ExtAuthzApi {
    service: Arc<Keyward>,
    gateway: Arc<Gateway>,
    /// Whether callers (Envoy) must present a key holding `keys:verify`.
    require_caller: bool,
}

impl ExtAuthzApi {
    /// An adapter over the domain service with the gateway settings.
    pub fn new(service: Arc<Keyward>, gateway: Arc<Gateway>, require_caller: bool) -> Self {
        ExtAuthzApi {
            service,
            gateway,
            require_caller,
        }
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthzApi {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        // A gateway authenticates with a key holding keys:verify or a client certificate.
        if self.require_caller && !super::has_client_certificate(&request) {
            let call = CallContext {
                peer: super::peer(&request).map(|p| p.remote_addr.ip().to_canonical()),
                rpc: "/envoy.service.auth.v3.Authorization/Check",
                access: Access::Read,
            };
            self.service
                .authenticate_verifier(super::bearer(&request), &call)
                .await?;
        }
        let attributes = request.into_inner().attributes.unwrap_or_default();
        let http = attributes.request.and_then(|r| r.http).unwrap_or_default();
        let header = |name: &str| header(&http, name);
        let key = self.gateway.key(header);
        let extension = |name: &str| attributes.context_extensions.get(name).map(String::as_str);
        let client = ClientRequest {
            method: &http.method,
            target: &http.path,
            client_ip: source_ip(attributes.source.as_ref()),
            referrer: header("referer").unwrap_or_default(),
            scopes: extension("scopes"),
            environment: extension("environment"),
        };
        let answer = match self.gateway.query(&client) {
            Err(rejection) => Answer::rejected(&rejection),
            Ok(query) => {
                let decision = self.service.verify(key, &query).await?;
                if let Some(state) = &decision.key {
                    super::trace::record_caller(state.key.id(), state.key.account_id());
                }
                Answer::from_decision(&decision, Timestamp::now())
            }
        };
        Ok(Response::new(check_response(
            answer,
            self.gateway.headers_to_remove(),
        )))
    }
}

/// A request header by its lower-case name, from the header map or, with Envoy's
/// `encode_raw_headers`, from the raw header list (a value that is not UTF-8 is absent).
fn header<'h>(http: &'h attribute_context::HttpRequest, name: &str) -> Option<&'h str> {
    if let Some(value) = http.headers.get(name) {
        return Some(value);
    }
    let raw = http.header_map.as_ref()?;
    raw.headers
        .iter()
        .find(|h| h.key.eq_ignore_ascii_case(name))
        .and_then(|h| match h.value.as_str() {
            "" => std::str::from_utf8(&h.raw_value).ok(),
            value => Some(value),
        })
}

/// The end client's address as Envoy saw it; `None` (IP restrictions fail closed) when absent
/// or unreadable.
fn source_ip(source: Option<&attribute_context::Peer>) -> Option<std::net::IpAddr> {
    match source?.address.as_ref()?.address.as_ref()? {
        address::Address::SocketAddress(socket) => parse_client_ip(&socket.address),
    }
}

fn check_response(answer: Answer, headers_to_remove: &[String]) -> CheckResponse {
    let allowed = answer.allowed();
    let status = tonic_types::pb::Status {
        code: grpc_code(answer.status) as i32,
        message: if allowed {
            String::new()
        } else {
            answer.code.to_owned()
        },
        details: retry_info(&answer).into_iter().collect(),
    };
    let http_response = if allowed {
        // Who the key is and its rate-limit state go upstream, overwriting (never appending
        // to) whatever the client sent under those names.
        HttpResponse::OkResponse(OkHttpResponse {
            headers: answer
                .identity
                .into_iter()
                .chain(answer.rate_limit)
                .map(overwrite)
                .collect(),
            headers_to_remove: headers_to_remove.to_vec(),
            response_headers_to_add: Vec::new(),
        })
    } else {
        HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: http_status(answer.status) as i32,
            }),
            headers: std::iter::once(("content-type", JSON.to_owned()))
                .chain(answer.challenge)
                .chain(answer.rate_limit)
                .map(overwrite)
                .collect(),
            body: answer.body.unwrap_or_default(),
        })
    };
    CheckResponse {
        status: Some(status),
        http_response: Some(http_response),
    }
}

/// RESOURCE_EXHAUSTED says when to retry in `google.rpc.RetryInfo` too (AIP-193), besides the
/// `retry-after` header Envoy sends the client.
fn retry_info(answer: &Answer) -> Option<prost_types::Any> {
    let secs: i64 = answer
        .challenge
        .iter()
        .find(|(name, _)| *name == "retry-after")?
        .1
        .parse()
        .ok()?;
    let info = tonic_types::pb::RetryInfo {
        retry_delay: Some(prost_types::Duration {
            seconds: secs,
            nanos: 0,
        }),
    };
    Some(prost_types::Any {
        type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
        value: prost::Message::encode_to_vec(&info),
    })
}

// `append` is deprecated in Envoy; left unset, `append_action` rules.
#[allow(deprecated)]
fn overwrite((name, value): (&'static str, String)) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        keep_empty_value: false,
    }
}

/// The gRPC code Envoy reads from `CheckResponse.status` for an HTTP status.
fn grpc_code(http: u16) -> tonic::Code {
    match http {
        200 => tonic::Code::Ok,
        400 => tonic::Code::InvalidArgument,
        401 => tonic::Code::Unauthenticated,
        429 => tonic::Code::ResourceExhausted,
        503 => tonic::Code::Unavailable,
        _ => tonic::Code::PermissionDenied,
    }
}

fn http_status(status: u16) -> StatusCode {
    match status {
        400 => StatusCode::BadRequest,
        401 => StatusCode::Unauthorized,
        429 => StatusCode::TooManyRequests,
        503 => StatusCode::ServiceUnavailable,
        _ => StatusCode::Forbidden,
    }
}
