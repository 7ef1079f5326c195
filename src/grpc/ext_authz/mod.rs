//! `envoy.service.auth.v3.Authorization/Check` (Envoy ext_authz): Envoy's description of the end
//! client's request becomes a [`crate::gateway::ClientRequest`]; the verdict is the same
//! decision as Verify's, answered the way Envoy applies it (SPEC section 11).
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

use wire::{CheckInput, CheckOutput};

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
        let key = self.gateway.key(|name| input.header(name));
        let decision = self.service.verify(key, &query).await?;
        if let Some(state) = &decision.key {
            super::trace::record_verified(state.key.id(), state.key.account_id());
        }
        respond(Answer::from_decision(decision))
    }
}

/// The end client's request as Envoy describes it; a string the client sent that is not
/// UTF-8 is a rejection (400). A header that is not UTF-8 reads as absent, so a key that is
/// not UTF-8 is a missing key.
fn client_request(input: &CheckInput) -> Result<ClientRequest<'_>, Rejection> {
    if input.too_many_headers() {
        return Err(Rejection::new(
            "headers",
            format!("at most {}", wire::MAX_HEADERS),
        ));
    }
    let not_utf8 = |field| move |_| Rejection::new(field, "not valid UTF-8");
    Ok(ClientRequest {
        method: input.method().map_err(not_utf8("method"))?,
        target: input.path().map_err(not_utf8("path"))?,
        // Unreadable or absent: None, and IP restrictions fail closed.
        client_ip: input.source_address().and_then(parse_client_ip),
        referrer: input.header("referer").unwrap_or_default(),
        scopes: input.scopes().map_err(not_utf8("scopes"))?,
        environment: input.environment().map_err(not_utf8("environment"))?,
    })
}
