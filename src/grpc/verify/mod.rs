//! `keyward.v1.VerifyService`: a denial is a normal response; only a request that cannot be
//! evaluated (`INVALID_ARGUMENT`) or a failing store (`UNAVAILABLE`) is a gRPC error.

use std::sync::Arc;

use tonic::Status;

pub(crate) mod wire;

use super::convert::parse_environment;
use crate::limits::{MAX_CLIENT_IP_LEN, MAX_METHOD_LEN, MAX_PATH_LEN};
use crate::proto;
use crate::request::{Violations, required_scopes};
use crate::restriction::{Method, parse_client_ip};
use crate::service::Keyward;
use crate::verify::{RequestContext, VerifyQuery};

use super::unary::UnaryMethod;
use wire::{VerifyInput, VerifyOutput};

/// The VerifyService adapter.
#[derive(Debug, Clone)]
pub struct VerifyApi {
    service: Arc<Keyward>,
}

impl VerifyApi {
    /// An adapter over the domain service.
    pub fn new(service: Arc<Keyward>) -> Self {
        VerifyApi { service }
    }
}

/// Served by [`super::unary::UnaryRoute`] as `keyward.v1.VerifyService`.
impl UnaryMethod for VerifyApi {
    const SERVICE: &'static str = "keyward.v1.VerifyService";
    const PATH: &'static str = "/keyward.v1.VerifyService/Verify";
    type Input = VerifyInput;
    type Output = VerifyOutput;

    /// Decides the request and writes the answer.
    async fn answer(&self, input: VerifyInput) -> Result<VerifyOutput, Status> {
        let basic = match proto::VerifyView::try_from(input.view()) {
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
        let key = input.key();
        let query = parse_query(&input)?;
        let decision = self.service.verify(key, &query).await?;
        if let Some(state) = &decision.key {
            super::trace::record_verified(state.key.id(), state.key.account_id());
        }
        Ok(VerifyOutput::new(decision, basic))
    }
}

/// The request's question, borrowed from its body (no copies on the hot path).
fn parse_query(input: &VerifyInput) -> Result<VerifyQuery<'_>, Status> {
    let mut v = Violations::default();
    let required_scopes = required_scopes(&mut v, "required_scopes", input.required_scopes());
    let environment = parse_environment(input.environment()).unwrap_or_else(|e| {
        v.add("environment", e);
        None
    });
    let context = input.context().map(|c| {
        // Each field is bounded before it is parsed; one too long is one violation.
        let mut fits = |field: &str, value: &str, max: usize| {
            let fits = value.len() <= max;
            if !fits {
                v.add(format!("context.{field}"), format!("at most {max} bytes"));
            }
            fits
        };
        let method_fits = fits("method", c.method, MAX_METHOD_LEN);
        let ip_fits = fits("client_ip", c.client_ip, MAX_CLIENT_IP_LEN);
        fits("path", c.path, MAX_PATH_LEN);
        fits("referrer", c.referrer, MAX_PATH_LEN);
        let client_ip = match c.client_ip {
            "" => None,
            _ if !ip_fits => None,
            text => v.parse("context.client_ip", text, |t| {
                parse_client_ip(t).ok_or_else(|| "is not an IP address (or address:port)".into())
            }),
        };
        RequestContext {
            method: match c.method {
                "" => None,
                _ if !method_fits => None,
                text => v.parse("context.method", text, Method::parse),
            },
            path: c.path,
            client_ip,
            referrer: c.referrer,
        }
    });
    Ok(v.finish(VerifyQuery {
        required_scopes,
        context: context.unwrap_or_default(),
        environment,
        cost: input.cost(),
    })?)
}
