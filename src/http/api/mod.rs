//! The HTTP JSON API under `/v1`, in the shape of the reference product pages: create a key
//! with `expiresIn`, list metadata with `prefix` and `lastUsedAt`, `DELETE` to revoke.
//!
//! A thin adapter, like the gRPC one: a JSON body is read into the request layer's inputs
//! (`request`), checked by the same functions ManageService's messages are, and the same domain
//! calls decide; no rule lives here. What differs is only the face: camelCase names, answers
//! wrapped as `{"data": …}`, errors as `{"code", "message", "fieldViolations"}` with an HTTP
//! status. Routes and the OpenAPI document are made in one place (`utoipa_axum`), so a route
//! cannot exist without being documented.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::HttpState;
use crate::error::{Error, FieldViolation};
use crate::gateway::{Answer, ClientRequest, JSON};
use crate::model::ApiKey;
use crate::model::RefillInterval;
use crate::net::PeerInfo;
use crate::request::{
    self, CreateKeyInput, CreditsInput, ExpiryInput, ListKeysInput, RateLimitInput, RawDuration,
    RawTime, RefillInput, RestrictionsInput, UpdateKeyInput, Violations, query_fingerprint,
};
use crate::service::{Access, CallContext, Caller};
use crate::time::Timestamp;
use crate::verify::Code;

pub use crate::limits::MAX_JSON_BODY as MAX_BODY;

/// The OpenAPI document's description of the API as a whole.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "keyward HTTP API",
        description = "Create, list, update, rotate and revoke API keys. Authenticate with \
                       `Authorization: Bearer <key>`: a key holding `keys:read` / `keys:write` \
                       manages its own account's keys, a root key every account's.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "api-keys", description = "Keys of an account"),
        (name = "portal", description = "Key pages for a product's own customers")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The API's routes and their OpenAPI document, made together.
pub fn routes() -> (axum::Router<Arc<HttpState>>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_key, list_keys))
        .routes(routes!(get_key, update_key, revoke_key))
        .routes(routes!(rotate_key))
        .routes(routes!(list_scopes))
        .routes(routes!(usage))
        .routes(routes!(key_usage))
        .routes(routes!(create_portal_session, list_portal_sessions))
        .routes(routes!(revoke_portal_session))
        .split_for_parts()
}

mod caller;
mod error;
mod handlers;
mod json;
mod portal;
#[cfg(test)]
mod tests;
mod usage;

use caller::*;
pub use error::not_found;
use error::*;
use handlers::*;
use json::*;
use portal::*;
use usage::*;
