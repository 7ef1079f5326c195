//! `envoy.service.auth.v3.Authorization/Check` (Envoy ext_authz): Envoy's description of the end
//! client's request becomes a [`crate::gateway::ClientRequest`]; the verdict is the same
//! decision as Verify's, answered the way Envoy applies it (docs/gateways.md).
//!
//! A request the client got wrong is a denial (400), never a gRPC error: Envoy's
//! `failure_mode_allow` would let an erroring request through. Only a store that cannot be
//! reached for an uncached key is an error (UNAVAILABLE), so Envoy's own setting decides.

pub(crate) mod wire;

use std::sync::Arc;

use tonic::Status;

use super::unary::UnaryMethod;
use crate::gateway::{Answer, ClientRequest, Gateway, Rejection};
use crate::restriction::parse_client_ip;
use crate::service::Keyward;

use wire::{CheckInput, CheckOutput, Malformed};

/// The Envoy ext_authz adapter.
#[derive(Debug, Clone)]
pub struct ExtAuthzApi {
    service: Arc<Keyward>,
    gateway: Arc<Gateway>,
}

impl ExtAuthzApi {
    /// An adapter over the domain service with the gateway settings.
    pub fn new(service: Arc<Keyward>, gateway: Arc<Gateway>) -> Self {
        ExtAuthzApi { service, gateway }
    }
}

/// Served by [`super::unary::UnaryRoute`] as `envoy.service.auth.v3.Authorization`.
impl UnaryMethod for ExtAuthzApi {
    const SERVICE: &'static str = "envoy.service.auth.v3.Authorization";
    const PATH: &'static str = "/envoy.service.auth.v3.Authorization/Check";
    type Input = CheckInput;
    type Output = CheckOutput;

    /// Decides the request Envoy describes and writes the answer.
    async fn answer(&self, input: CheckInput) -> Result<CheckOutput, Status> {
        let respond = |answer| Ok(CheckOutput::new(answer, self.gateway.clone()));
        // Decided before the await, so only the query is kept across it (a smaller future).
        let query = match client_request(&input).and_then(|c| self.gateway.query(&c)) {
            Ok(query) => query,
            Err(rejection) => return respond(Answer::rejected(&rejection)),
        };
        let Ok(key) = self.gateway.key(|name| input.header_values(name)) else {
            return respond(Answer::ambiguous_key());
        };
        let decision = self.service.verify(key, &query).await?;
        if let Some(state) = &decision.key {
            super::trace::record_verified(state.key.id(), state.key.account_id());
        }
        respond(Answer::from_decision(decision))
    }

    /// A body that is not a `CheckRequest` is a denial (400), never a gRPC error.
    fn malformed(&self, error: Malformed) -> Result<CheckOutput, Status> {
        tracing::debug!(%error, "Check: the request is not a CheckRequest");
        let rejection = Rejection::new("request", error.to_string());
        Ok(CheckOutput::new(
            Answer::rejected(&rejection),
            self.gateway.clone(),
        ))
    }
}

/// The end client's request as Envoy describes it (its strings were checked as UTF-8 when
/// read). A header given twice or not UTF-8 (the raw header list) is ambiguous: refused.
fn client_request(input: &CheckInput) -> Result<ClientRequest<'_>, Rejection> {
    if input.too_many_headers() {
        return Err(Rejection::new(
            "headers",
            format!("at most {}", wire::MAX_HEADERS),
        ));
    }
    let referrer = match input.header_values("referer").as_slice() {
        [] => "",
        [Some(referrer)] => referrer,
        _ => {
            return Err(Rejection::new(
                "referer",
                "is given more than once or is not UTF-8",
            ));
        }
    };
    Ok(ClientRequest {
        method: input.method(),
        target: input.path(),
        // Unreadable or absent: None, and IP restrictions fail closed.
        client_ip: input.source_address().and_then(parse_client_ip),
        referrer,
        scopes: input.scopes(),
        environment: input.environment(),
    })
}
