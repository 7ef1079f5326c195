//! The HTTP JSON API under `/v1`, in the shape of the reference product pages: create a key
//! with `expiresIn`, list metadata with `prefix` and `lastUsedAt`, `DELETE` to revoke.
//!
//! A thin adapter, like the gRPC one: a JSON body becomes the `keyward.v1` request message
//! ManageService takes, parsed by the same functions (`grpc::requests`), and the same domain
//! calls decide; no rule lives here. What differs is only the face: camelCase names, answers
//! wrapped as `{"data": …}`, errors as `{"code", "message", "fieldViolations"}` with an HTTP
//! status. Routes and the OpenAPI document are made in one place (`utoipa_axum`), so a route
//! cannot exist without being documented.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

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
use crate::grpc::convert::{duration, query_fingerprint, timestamp};
use crate::grpc::requests::{parse_create, parse_grace, parse_list, parse_patch, required_id};
use crate::model::ApiKey;
use crate::net::PeerInfo;
use crate::proto;
use crate::service::{Access, CallContext, Caller};
use crate::time::Timestamp;
use crate::verify::Code;

/// Largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;

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
    tags((name = "api-keys", description = "Keys of an account"))
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
        .split_for_parts()
}

// ---------------------------------------------------------------------------------------------
// The JSON shapes.

/// A key's record: everything but its secret.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyJson {
    /// Public id, `key_…`.
    id: String,
    /// The owning account.
    account_id: String,
    /// Human-readable name.
    name: String,
    /// The key's first 16 characters, to recognise it by.
    prefix: String,
    /// `live` or `test`.
    environment: &'static str,
    /// Scopes held.
    scopes: Vec<String>,
    /// Holds every current and future scope.
    grant_all: bool,
    /// Where the key may be used; empty lists restrict nothing.
    restrictions: RestrictionsJson,
    /// The key's own rate limit; `null`: the service default.
    rate_limit: Option<RateLimitJson>,
    /// Free-form metadata.
    meta: BTreeMap<String, String>,
    /// When the key was made (RFC 3339).
    created_at: String,
    /// When the key last changed.
    updated_at: String,
    /// When the key expires; `null`: never.
    expires_at: Option<String>,
    /// When the key was last used (within the documented lag); `null`: never.
    last_used_at: Option<String>,
    /// Whether the key is revoked.
    revoked: bool,
    /// When it was revoked.
    revoked_at: Option<String>,
    /// On a key made by rotation, the key it replaced.
    previous_key_id: Option<String>,
    /// `active`, `expired` or `revoked`.
    status: &'static str,
}

fn rfc3339(t: Timestamp) -> String {
    timestamp(t).to_string()
}

impl From<&crate::model::Restrictions> for RestrictionsJson {
    fn from(r: &crate::model::Restrictions) -> Self {
        let r = crate::grpc::convert::restrictions(r);
        RestrictionsJson {
            allowed_cidrs: r.allowed_cidrs,
            allowed_referrers: r.allowed_referrers,
            allowed_paths: r.allowed_paths,
            allowed_methods: r.allowed_methods,
        }
    }
}

impl From<crate::model::RateLimit> for RateLimitJson {
    fn from(rl: crate::model::RateLimit) -> Self {
        RateLimitJson {
            limit: rl.limit,
            window: crate::duration::format(rl.window()),
        }
    }
}

impl From<&ApiKey> for ApiKeyJson {
    fn from(k: &ApiKey) -> Self {
        ApiKeyJson {
            id: k.id.clone(),
            account_id: k.account_id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            environment: k.environment.as_str(),
            scopes: k.scopes.clone(),
            grant_all: k.grant_all,
            restrictions: (&k.restrictions).into(),
            rate_limit: k.rate_limit.map(Into::into),
            meta: k.meta.clone(),
            created_at: rfc3339(k.created_at),
            updated_at: rfc3339(k.updated_at),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            revoked: k.is_revoked(),
            revoked_at: k.revoked_at.map(rfc3339),
            previous_key_id: k.previous_key_id.clone(),
            status: if k.is_revoked() {
                "revoked"
            } else if k.is_expired(Timestamp::now()) {
                "expired"
            } else {
                "active"
            },
        }
    }
}

/// Where a key may be used. Every list is optional; an empty list restricts nothing.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct RestrictionsJson {
    /// IPv4/IPv6 CIDRs the end client's address must be in.
    allowed_cidrs: Vec<String>,
    /// Referrer patterns with `*` wildcards.
    allowed_referrers: Vec<String>,
    /// Request-path patterns with `*` wildcards.
    allowed_paths: Vec<String>,
    /// HTTP methods.
    allowed_methods: Vec<String>,
}

impl From<RestrictionsJson> for proto::Restrictions {
    fn from(r: RestrictionsJson) -> Self {
        proto::Restrictions {
            allowed_cidrs: r.allowed_cidrs,
            allowed_referrers: r.allowed_referrers,
            allowed_paths: r.allowed_paths,
            allowed_methods: r.allowed_methods,
        }
    }
}

/// A budget of requests per window.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitJson {
    /// Requests allowed per window.
    limit: u32,
    /// The window: `<n><unit>` with unit s, m, h, d or w (`2m`).
    #[schema(example = "2m")]
    window: String,
}

/// When a new key expires, counted from now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub enum ExpiresIn {
    /// 30 days.
    #[serde(rename = "30d")]
    Days30,
    /// 60 days.
    #[serde(rename = "60d")]
    Days60,
    /// 90 days.
    #[serde(rename = "90d")]
    Days90,
    /// 365 days.
    #[serde(rename = "1y")]
    Year,
    /// No expiry.
    #[serde(rename = "never")]
    Never,
}

/// The key to make. Grant something: `scopes`, a `preset` or `grantAll` (or rely on the
/// server's configured default preset, if it has one).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKeyBody {
    /// Human-readable name, 1–200 characters.
    #[serde(default)]
    name: String,
    /// The account; the calling key's own when absent (a root key must name one).
    account_id: Option<String>,
    /// `live` or `test`; the calling key's environment when absent.
    environment: Option<String>,
    /// `30d`, `60d`, `90d`, `1y` or `never`; the service default when absent.
    #[schema(value_type = Option<ExpiresIn>)]
    expires_in: Option<String>,
    /// Absolute expiry (RFC 3339), instead of `expiresIn`.
    expires_at: Option<String>,
    /// Scopes to grant, `resource:action`.
    #[serde(default)]
    scopes: Vec<String>,
    /// A catalog preset: `read_only`, `content_agent`, `full_access`.
    preset: Option<String>,
    /// Every current and future scope; must be asked for explicitly.
    #[serde(default)]
    grant_all: bool,
    /// Where the key may be used.
    restrictions: Option<RestrictionsJson>,
    /// The key's own rate limit.
    rate_limit: Option<RateLimitJson>,
    /// Free-form metadata (at most 32 entries).
    #[serde(default)]
    meta: HashMap<String, String>,
}

/// Changes to a key; only the fields given change, effective at once on every replica.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateKeyBody {
    /// New name.
    name: Option<String>,
    /// The scopes the key holds from now on.
    scopes: Option<Vec<String>>,
    /// Grant every scope, or stop doing so.
    grant_all: Option<bool>,
    /// New restrictions (replacing the old ones).
    restrictions: Option<RestrictionsJson>,
    /// New rate limit; `null`: the service default.
    rate_limit: Option<RateLimitJson>,
    /// New metadata (replacing the old).
    meta: Option<HashMap<String, String>>,
    /// New expiry (RFC 3339); `null`: never. Only earlier for a key being replaced.
    expires_at: Option<String>,
}

/// How to rotate.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateKeyBody {
    /// How long the old key keeps working (`24h`, `7d`, at most `365d`); absent: revoked now.
    grace_period: Option<String>,
}

/// A new key: its secret, shown this once, and its record.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewKeyJson {
    /// The full key. It is never stored and can never be retrieved again.
    key: String,
    /// The new key's record.
    api_key: ApiKeyJson,
    /// On rotation, the replaced key's record.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous_api_key: Option<ApiKeyJson>,
}

/// `{"data": NewKey}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewKeyAnswer {
    data: NewKeyJson,
}

/// `{"data": ApiKey}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyAnswer {
    data: ApiKeyJson,
}

/// One page of keys.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyListAnswer {
    /// The keys, oldest first.
    data: Vec<ApiKeyJson>,
    /// Pass as `pageToken` for the next page; `null` on the last.
    next_page_token: Option<String>,
}

/// The answer to a revocation.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedAnswer {
    /// Always `true`.
    success: bool,
    /// For people.
    message: &'static str,
    /// The revoked key's record.
    data: ApiKeyJson,
}

/// A scope of the catalog.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScopeJson {
    /// `resource:action`.
    name: String,
    /// The resource part, for grouping.
    resource: String,
    /// What it allows.
    description: String,
    /// `read` or `write`.
    #[schema(value_type = String, example = "read")]
    access: crate::catalog::Access,
    /// `low`, `medium` or `high`.
    #[schema(value_type = String, example = "low")]
    risk: crate::catalog::Risk,
    /// A per-key guardrail every key using the scope is held to.
    guardrail: Option<RateLimitJson>,
}

/// A preset: a named grant to create keys with.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PresetJson {
    /// `read_only`, `content_agent`, `full_access`, …
    name: String,
    /// What it grants.
    description: String,
    /// The scopes it grants.
    scopes: Vec<String>,
    /// Whether it grants everything.
    grant_all: bool,
    /// The restrictions it sets.
    restrictions: RestrictionsJson,
}

/// The scope catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogJson {
    /// Every scope.
    scopes: Vec<ScopeJson>,
    /// The presets.
    presets: Vec<PresetJson>,
}

/// `{"data": Catalog}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogAnswer {
    data: CatalogJson,
}

/// The rate-limit state of a key.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitState {
    /// Requests per window.
    limit: u32,
    /// Requests left in this window.
    remaining: u32,
    /// When the window ends (RFC 3339).
    reset_at: String,
}

/// The calling key and its rate-limit state.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageJson {
    /// The calling key's record.
    api_key: ApiKeyJson,
    /// Its rate limit after this request.
    rate_limit: Option<RateLimitState>,
}

/// `{"data": Usage}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageAnswer {
    data: UsageJson,
}

/// A field the request got wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldViolationJson {
    /// The field, as this API names it (`scopes[2]`, `rateLimit.window`).
    field: String,
    /// What is wrong with it.
    description: String,
}

/// Every error answer.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorAnswer {
    /// Always `false`.
    success: bool,
    /// Stable, for programs: `INVALID_ARGUMENT`, `UNAUTHENTICATED`, `PERMISSION_DENIED`,
    /// `NOT_FOUND`, `FAILED_PRECONDITION`, `ACTIVE_KEY_LIMIT`, `BAD_REQUEST`, `RATE_LIMITED`, …
    code: String,
    /// For people.
    message: String,
    /// The fields at fault (`INVALID_ARGUMENT`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    field_violations: Vec<FieldViolationJson>,
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// What can go wrong in a handler.
#[derive(Debug)]
pub enum ApiError {
    /// The domain refused or failed.
    Domain(Error),
    /// The request could not be read (not JSON, wrong types, a bad query string).
    BadRequest(String),
    /// A body that is not `application/json`.
    UnsupportedMediaType,
    /// A body over [`MAX_BODY`].
    TooLarge,
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Domain(e)
    }
}

/// A field name as this API spells it: `rate_limit.window` → `rateLimit.window`, the TTL
/// field → `expiresIn`; map keys in brackets stay as they are.
fn camel(field: &str) -> String {
    if field == "ttl" {
        return "expiresIn".to_owned();
    }
    let mut out = String::with_capacity(field.len());
    let (mut upper, mut depth) = (false, 0u32);
    for c in field.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '_' if depth == 0 => {
                upper = true;
                continue;
            }
            _ => {}
        }
        if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut extra: Vec<(header::HeaderName, &'static str)> = Vec::new();
        let (status, code, message, violations) = match self {
            // Client input quoted in full (a query string's names): never a key.
            ApiError::BadRequest(why) => (
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                crate::error::redact_keys(&why).into_owned(),
                vec![],
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "send the body as application/json".to_owned(),
                vec![],
            ),
            ApiError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!("the body is over {MAX_BODY} bytes"),
                vec![],
            ),
            ApiError::Domain(error) => {
                let status = match &error {
                    Error::InvalidArgument(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    Error::NotFound(_) => StatusCode::NOT_FOUND,
                    Error::FailedPrecondition(_)
                    | Error::LimitReached { .. }
                    | Error::AlreadyExists(_) => StatusCode::CONFLICT,
                    Error::Unauthenticated(_) => {
                        extra.push((header::WWW_AUTHENTICATE, "Bearer realm=\"keyward\""));
                        StatusCode::UNAUTHORIZED
                    }
                    Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
                    Error::Unimplemented(_) => StatusCode::NOT_IMPLEMENTED,
                    Error::Unavailable(_) => {
                        extra.push((header::RETRY_AFTER, "1"));
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                    Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                let (code, message) = (error.reason(), error.client_message());
                let violations = match error {
                    Error::InvalidArgument(violations) => violations
                        .into_iter()
                        .map(|v| FieldViolationJson {
                            field: camel(&v.field),
                            description: v.description,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let message = if violations.is_empty() {
                    message
                } else {
                    violations
                        .iter()
                        .map(|v| format!("{}: {}", v.field, v.description))
                        .collect::<Vec<_>>()
                        .join("; ")
                };
                (status, code, message, violations)
            }
        };
        let body = ErrorAnswer {
            success: false,
            code: code.to_owned(),
            message,
            field_violations: violations,
        };
        let mut response = (status, json(&body)).into_response();
        for (name, value) in extra {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        response
    }
}

type Answered<T> = Result<T, ApiError>;

/// A JSON body.
fn json(value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, JSON)], bytes).into_response(),
        Err(e) => {
            ApiError::Domain(Error::Internal(format!("encoding an answer: {e}"))).into_response()
        }
    }
}

/// Reads a JSON body: an empty body is `{}`, another media type 415, bad JSON 400. serde's
/// message is passed on, unless it quotes something shaped like a key.
fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answered<T> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge
        } else {
            ApiError::BadRequest("the body could not be read".to_owned())
        }
    })?;
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(JSON));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        &body
    };
    serde_json::from_slice(body).map_err(bad_json)
}

/// A body that does not decode: serde's message, cut short, unless it quotes something shaped
/// like a key.
fn bad_json(e: serde_json::Error) -> ApiError {
    let text = e.to_string();
    ApiError::BadRequest(if crate::error::looks_like_key(&text) {
        "the body is not the JSON this endpoint takes".to_owned()
    } else {
        let cut: String = text.chars().take(300).collect();
        format!("the body is not the JSON this endpoint takes: {cut}")
    })
}

/// Adds `extra` violations (found before the shared parse) to the parse's result.
fn with_violations<T>(extra: Vec<FieldViolation>, parsed: crate::error::Result<T>) -> Answered<T> {
    match parsed {
        Ok(value) if extra.is_empty() => Ok(value),
        Ok(_) => Err(Error::InvalidArgument(extra).into()),
        Err(Error::InvalidArgument(more)) => {
            Err(Error::InvalidArgument(extra.into_iter().chain(more).collect()).into())
        }
        Err(other) => Err(other.into()),
    }
}

fn violation(field: &str, description: impl Into<String>) -> FieldViolation {
    FieldViolation {
        field: field.to_owned(),
        description: description.into(),
    }
}

/// An RFC 3339 time as the proto message carries it.
fn parse_time(
    extra: &mut Vec<FieldViolation>,
    field: &str,
    text: &str,
) -> Option<prost_types::Timestamp> {
    prost_types::Timestamp::from_str(text.trim())
        .map_err(|_| {
            extra.push(violation(
                field,
                "must be an RFC 3339 time, e.g. 2030-01-31T12:00:00Z",
            ))
        })
        .ok()
}

/// A rate limit as the proto message carries it; the window is `<n><unit>`.
fn rate_limit_message(
    extra: &mut Vec<FieldViolation>,
    r: RateLimitJson,
) -> Option<proto::RateLimit> {
    match crate::duration::parse(&r.window) {
        Ok(window) => Some(proto::RateLimit {
            limit: r.limit,
            window: Some(duration(window)),
        }),
        Err(e) => {
            extra.push(violation("rate_limit.window", e));
            None
        }
    }
}

/// The answer to a path the API does not have.
pub fn not_found() -> Response {
    let body = ErrorAnswer {
        success: false,
        code: "NOT_FOUND".to_owned(),
        message: "no such path; the API is described at /v1/openapi.json".to_owned(),
        field_violations: Vec::new(),
    };
    (StatusCode::NOT_FOUND, json(&body)).into_response()
}

// ---------------------------------------------------------------------------------------------
// Who is calling.

/// The key id in a request path (`/v1/api-keys/{id}`): a path that does not decode is the
/// JSON API's 400, like every other error, not axum's plain-text one.
struct KeyPath(String);

impl<S: Send + Sync> FromRequestParts<S> for KeyPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(KeyPath(id)),
            Err(_) => Err(ApiError::BadRequest(
                "the key id in the path is not valid percent-encoded UTF-8".to_owned(),
            )),
        }
    }
}

/// What a handler knows of its caller: the bearer key, the TCP peer and the path called.
/// The key is never logged; this type has no `Debug` on purpose.
pub struct Call {
    /// The bearer key, or the mark of a request that presents more than one (or one that
    /// cannot be read).
    bearer: Result<Option<String>, crate::gateway::AmbiguousKey>,
    peer: Option<IpAddr>,
    path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Call {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Call {
            bearer: crate::gateway::single_bearer(
                parts
                    .headers
                    .get_all(header::AUTHORIZATION)
                    .iter()
                    .map(|v| v.to_str().ok()),
            )
            .map(|key| key.map(str::to_owned)),
            peer: parts
                .extensions
                .get::<PeerInfo>()
                .map(|p| p.remote_addr.ip().to_canonical()),
            path: parts.uri.path().to_owned(),
        })
    }
}

impl Call {
    /// The authenticated caller, under its key's own restrictions (the HTTP path is what
    /// `allowed_paths` sees).
    async fn caller(&self, state: &HttpState, access: Access) -> Answered<Caller> {
        let call = CallContext {
            peer: self.peer,
            rpc: &self.path,
            access,
        };
        let bearer = self
            .bearer
            .as_ref()
            .map_err(|e| Error::Unauthenticated(e.to_string()))?;
        Ok(state.service.authenticate(bearer.as_deref(), &call).await?)
    }
}

/// The account a request names, or the caller's own; a root key must name one.
fn account_or_own(caller: &Caller, named: Option<String>) -> Answered<String> {
    match named.filter(|a| !a.is_empty()) {
        Some(account) => Ok(account),
        None if caller.is_root() => Err(Error::invalid(
            "accountId",
            "a root key belongs to no customer account: name the account",
        )
        .into()),
        None => Ok(caller.account_id().to_owned()),
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers.

/// Creates a key. The answer carries the full key this one time.
#[utoipa::path(
    post,
    path = "/v1/api-keys",
    tag = "api-keys",
    request_body = CreateKeyBody,
    responses(
        (status = 201, description = "Created; `data.key` is the secret, shown only now", body = NewKeyAnswer),
        (status = 400, description = "Not JSON, or wrong types", body = ErrorAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
        (status = 409, description = "The account has its maximum of active keys", body = ErrorAnswer),
        (status = 422, description = "A field is invalid", body = ErrorAnswer),
    )
)]
async fn create_key(
    State(state): State<Arc<HttpState>>,
    call: Call,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Write).await?;
    let body: CreateKeyBody = read_json(&headers, body)?;
    let mut extra = Vec::new();
    let account_id = account_or_own(&caller, body.account_id)?;
    let environment = match body.environment.as_deref().map(str::trim) {
        None => caller.environment(),
        Some(text) => crate::key::Environment::parse(text).unwrap_or_else(|| {
            extra.push(violation("environment", "must be live or test"));
            caller.environment()
        }),
    };
    let expiry = match (body.expires_in.as_deref(), body.expires_at.as_deref()) {
        (Some(_), Some(_)) => {
            extra.push(violation(
                "expiresIn",
                "give expiresIn or expiresAt, not both",
            ));
            None
        }
        (Some(text), None) => {
            let ttl = |days: u64| {
                Some(proto::create_key_request::Expiry::Ttl(duration(
                    Duration::from_secs(days * 86_400),
                )))
            };
            match text {
                "30d" => ttl(30),
                "60d" => ttl(60),
                "90d" => ttl(90),
                "1y" => ttl(365),
                "never" => Some(proto::create_key_request::Expiry::NeverExpires(true)),
                _ => {
                    extra.push(violation("expiresIn", "must be 30d, 60d, 90d, 1y or never"));
                    None
                }
            }
        }
        (None, Some(at)) => parse_time(&mut extra, "expiresAt", at)
            .map(proto::create_key_request::Expiry::ExpiresAt),
        (None, None) => None,
    };
    let granted = !body.scopes.is_empty() || body.preset.is_some() || body.grant_all;
    let preset = match (&body.preset, &state.api.default_preset) {
        (Some(preset), _) => preset.clone(),
        (None, Some(default)) if !granted => default.clone(),
        _ => String::new(),
    };
    let rate_limit = body
        .rate_limit
        .and_then(|rl| rate_limit_message(&mut extra, rl));
    let message = proto::CreateKeyRequest {
        account_id,
        name: body.name,
        environment: crate::grpc::convert::environment(environment).into(),
        scopes: body.scopes,
        preset,
        grant_all: body.grant_all,
        expiry,
        restrictions: body.restrictions.map(Into::into),
        rate_limit,
        meta: body.meta,
    };
    let create = with_violations(extra, parse_create(message))?;
    let (secret, key) = state.service.create_key(&caller, create).await?;
    let location = HeaderValue::from_str(&format!("/v1/api-keys/{}", key.id)).ok();
    let mut response = json(&NewKeyAnswer {
        data: NewKeyJson {
            key: secret.expose().to_owned(),
            api_key: (&key).into(),
            previous_api_key: None,
        },
    });
    *response.status_mut() = StatusCode::CREATED;
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Which keys to list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// The account; the calling key's own when absent (a root key must name one).
    account_id: Option<String>,
    /// Include revoked keys (hidden by default).
    include_revoked: Option<bool>,
    /// Only keys not used since then: a duration back from now (`30d`) or an RFC 3339 time.
    unused_since: Option<String>,
    /// Keys per page, 1–1000 (default 100).
    page_size: Option<u32>,
    /// `nextPageToken` of the previous page.
    page_token: Option<String>,
}

/// Lists an account's keys: metadata only, never a secret.
#[utoipa::path(
    get,
    path = "/v1/api-keys",
    tag = "api-keys",
    params(ListParams),
    responses(
        (status = 200, description = "One page of keys", body = KeyListAnswer),
        (status = 400, description = "A bad query string", body = ErrorAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
        (status = 422, description = "A parameter is invalid", body = ErrorAnswer),
    )
)]
async fn list_keys(
    State(state): State<Arc<HttpState>>,
    call: Call,
    uri: axum::http::Uri,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Read).await?;
    let axum::extract::Query(params) = axum::extract::Query::<ListParams>::try_from_uri(&uri)
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let mut extra = Vec::new();
    let account_id = account_or_own(&caller, params.account_id)?;
    let include_revoked = params.include_revoked.unwrap_or(false);
    let unused_text = params.unused_since.unwrap_or_default();
    let unused_since = match unused_text.trim() {
        "" => None,
        text => match crate::duration::parse(text) {
            Ok(ago) => {
                let now = Timestamp::now().micros();
                let ago = i64::try_from(ago.as_micros()).unwrap_or(i64::MAX);
                let at = now.saturating_sub(ago).max(0);
                Some(prost_types::Timestamp {
                    seconds: at / 1_000_000,
                    nanos: ((at % 1_000_000) * 1000) as i32,
                })
            }
            Err(_) => parse_time(&mut extra, "unusedSince", text),
        },
    };
    // The page token is bound to the query as given: `30d` means the same on every page.
    let fingerprint = query_fingerprint(&[
        "http-keys",
        &account_id,
        if include_revoked { "1" } else { "0" },
        unused_text.trim(),
    ]);
    let tokens = state.service.page_tokens();
    let page_token = params.page_token.as_deref().unwrap_or("");
    let after = (tokens.open(page_token, caller.key_id(), fingerprint)).unwrap_or_else(|e| {
        extra.push(violation("pageToken", e));
        None
    });
    let message = proto::ListKeysRequest {
        account_id,
        include_revoked,
        unused_since,
        page_size: params.page_size.unwrap_or(0),
        page_token: String::new(),
    };
    let mut query = with_violations(extra, parse_list(&message, tokens, caller.key_id()))?;
    query.after = after;
    let page = state.service.list_keys(&caller, &query).await?;
    let next = tokens.seal(page.next, caller.key_id(), fingerprint);
    Ok(json(&KeyListAnswer {
        data: page.items.iter().map(Into::into).collect(),
        next_page_token: (!next.is_empty()).then_some(next),
    }))
}

/// One key's record.
#[utoipa::path(
    get,
    path = "/v1/api-keys/{id}",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id, `key_…`")),
    responses(
        (status = 200, description = "The key", body = KeyAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
        (status = 404, description = "No such key", body = ErrorAnswer),
        (status = 422, description = "Not a key id", body = ErrorAnswer),
    )
)]
async fn get_key(
    State(state): State<Arc<HttpState>>,
    call: Call,
    KeyPath(id): KeyPath,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Read).await?;
    let id = required_id(&id)?;
    let key = state.service.get_key(&caller, &id).await?;
    Ok(json(&KeyAnswer {
        data: (&key).into(),
    }))
}

/// Changes a key's name, scopes, restrictions, rate limit, metadata or expiry; the next
/// verification on every replica sees the change.
#[utoipa::path(
    patch,
    path = "/v1/api-keys/{id}",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id, `key_…`")),
    request_body = UpdateKeyBody,
    responses(
        (status = 200, description = "The changed key", body = KeyAnswer),
        (status = 400, description = "Not JSON, or wrong types", body = ErrorAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
        (status = 404, description = "No such key", body = ErrorAnswer),
        (status = 409, description = "The key cannot change so (revoked, or root)", body = ErrorAnswer),
        (status = 422, description = "A field is invalid", body = ErrorAnswer),
    )
)]
async fn update_key(
    State(state): State<Arc<HttpState>>,
    call: Call,
    KeyPath(id): KeyPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Write).await?;
    let id = required_id(&id)?;
    // Which fields are given (`null` included) is the update mask.
    let fields: serde_json::Map<String, serde_json::Value> = read_json(&headers, body)?;
    let body: UpdateKeyBody =
        serde_json::from_value(serde_json::Value::Object(fields.clone())).map_err(bad_json)?;
    let mut extra = Vec::new();
    let mut paths = Vec::new();
    for name in fields.keys() {
        paths.push(match name.as_str() {
            "grantAll" => "grant_all".to_owned(),
            "rateLimit" => "rate_limit".to_owned(),
            "expiresAt" => "expires_at".to_owned(),
            other => other.to_owned(),
        });
    }
    if paths.is_empty() {
        extra.push(violation(
            "body",
            "give at least one of name, scopes, grantAll, restrictions, rateLimit, meta, expiresAt",
        ));
    }
    let expires_at = body
        .expires_at
        .as_deref()
        .and_then(|at| parse_time(&mut extra, "expiresAt", at));
    let rate_limit = body
        .rate_limit
        .and_then(|rl| rate_limit_message(&mut extra, rl));
    let message = proto::UpdateKeyRequest {
        id: id.as_str().to_owned(),
        name: body.name.unwrap_or_default(),
        scopes: body.scopes.unwrap_or_default(),
        grant_all: body.grant_all.unwrap_or(false),
        restrictions: body.restrictions.map(Into::into),
        rate_limit,
        meta: body.meta.unwrap_or_default(),
        expires_at,
        update_mask: Some(prost_types::FieldMask { paths }),
    };
    if !extra.is_empty() {
        return Err(Error::InvalidArgument(extra).into());
    }
    let patch = parse_patch(&message)?;
    let key = state.service.update_key(&caller, &id, &patch).await?;
    Ok(json(&KeyAnswer {
        data: (&key).into(),
    }))
}

/// Revokes a key at once and for good: its next use, on any replica, is refused.
#[utoipa::path(
    delete,
    path = "/v1/api-keys/{id}",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id, `key_…`")),
    responses(
        (status = 200, description = "Revoked", body = RevokedAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
        (status = 404, description = "No such key", body = ErrorAnswer),
    )
)]
async fn revoke_key(
    State(state): State<Arc<HttpState>>,
    call: Call,
    KeyPath(id): KeyPath,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Write).await?;
    let id = required_id(&id)?;
    let key = state.service.revoke_key(&caller, &id).await?;
    Ok(json(&RevokedAnswer {
        success: true,
        message: "API key revoked successfully",
        data: (&key).into(),
    }))
}

/// Replaces a key by a new one with the same grant; the old one keeps working for the grace
/// period, then expires. The answer carries the new secret this one time.
#[utoipa::path(
    post,
    path = "/v1/api-keys/{id}/rotate",
    tag = "api-keys",
    params(("id" = String, Path, description = "The key's id, `key_…`")),
    request_body(content = RotateKeyBody, description = "Optional"),
    responses(
        (status = 201, description = "The new key (and the old one's record)", body = NewKeyAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
        (status = 403, description = "The key may not do this", body = ErrorAnswer),
        (status = 404, description = "No such key", body = ErrorAnswer),
        (status = 409, description = "The key was revoked or replaced already", body = ErrorAnswer),
        (status = 422, description = "A field is invalid", body = ErrorAnswer),
    )
)]
async fn rotate_key(
    State(state): State<Arc<HttpState>>,
    call: Call,
    KeyPath(id): KeyPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Answered<Response> {
    let caller = call.caller(&state, Access::Write).await?;
    let id = required_id(&id)?;
    let body: RotateKeyBody = read_json(&headers, body)?;
    let grace = match body.grace_period.as_deref().map(crate::duration::parse) {
        None => None,
        Some(Ok(grace)) => Some(duration(grace)),
        Some(Err(e)) => return Err(Error::invalid("gracePeriod", e).into()),
    };
    let grace = parse_grace(grace.as_ref()).map_err(|e| match e {
        Error::InvalidArgument(v) => Error::InvalidArgument(
            v.into_iter()
                .map(|v| violation(&camel(&v.field), v.description))
                .collect(),
        ),
        other => other,
    })?;
    let (secret, new, old) = state.service.rotate_key(&caller, &id, grace).await?;
    let mut response = json(&NewKeyAnswer {
        data: NewKeyJson {
            key: secret.expose().to_owned(),
            api_key: (&new).into(),
            previous_api_key: Some((&old).into()),
        },
    });
    *response.status_mut() = StatusCode::CREATED;
    Ok(response)
}

/// The scope catalog: every scope with its access kind and risk, and the presets, for a
/// dashboard's risk badges and preset picker.
#[utoipa::path(
    get,
    path = "/v1/scopes",
    tag = "api-keys",
    responses(
        (status = 200, description = "The catalog", body = CatalogAnswer),
        (status = 401, description = "No valid key", body = ErrorAnswer),
    )
)]
async fn list_scopes(State(state): State<Arc<HttpState>>, call: Call) -> Answered<Response> {
    let caller = call.caller(&state, Access::Read).await?;
    let catalog = state.service.list_scopes(&caller);
    Ok(json(&CatalogAnswer {
        data: CatalogJson {
            scopes: catalog
                .scopes()
                .iter()
                .map(|s| ScopeJson {
                    name: s.name.clone(),
                    resource: s.name.split(':').next().unwrap_or_default().to_owned(),
                    description: s.description.clone(),
                    access: s.access,
                    risk: s.risk,
                    guardrail: s.guardrail.map(Into::into),
                })
                .collect(),
            presets: catalog
                .presets()
                .iter()
                .map(|p| PresetJson {
                    name: p.name.clone(),
                    description: p.description.clone(),
                    scopes: p.scopes.clone(),
                    grant_all: p.grant_all,
                    restrictions: (&p.restrictions).into(),
                })
                .collect(),
        },
    }))
}

/// Checks the calling key the way a gateway would (as a `GET /v1/usage` request: it counts
/// against the key's rate limit) and answers its record and rate-limit state: the "make a
/// test call with the new key" step of a rotation. Any valid key may ask about itself.
#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "api-keys",
    responses(
        (status = 200, description = "The key works; its record and rate-limit state", body = UsageAnswer),
        (status = 401, description = "Missing, unknown, revoked or expired key", body = ErrorAnswer),
        (status = 403, description = "A restriction of the key refuses this request", body = ErrorAnswer),
        (status = 429, description = "The key's rate limit is used up; see Retry-After", body = ErrorAnswer),
    )
)]
async fn usage(State(state): State<Arc<HttpState>>, call: Call, headers: HeaderMap) -> Response {
    let described = super::forward_auth::client_address(&state, &headers, call.peer)
        .and_then(|ip| Ok((ip, super::forward_auth::single(&headers, "referer")?)));
    let (client_ip, referrer) = match described {
        Ok((ip, referrer)) => (ip, referrer.unwrap_or_default()),
        Err(rejection) => return super::respond(Answer::rejected(&rejection)),
    };
    let client = ClientRequest {
        method: "GET",
        target: "/v1/usage",
        client_ip,
        referrer,
        scopes: None,
        environment: None,
    };
    let Ok(key) = &call.bearer else {
        return super::respond(Answer::ambiguous_key());
    };
    let key = key.as_deref().unwrap_or_default();
    let decision = match super::decide(&state, key, &client).await {
        Ok(decision) => decision,
        Err(answer) => return super::respond(answer),
    };
    let (code, key, rate_limit) = (decision.code, decision.key.clone(), decision.rate_limit);
    let answer = Answer::from_decision(decision);
    let (Code::Valid, Some(key)) = (code, key) else {
        return super::respond(answer);
    };
    // The cache keeps only what verification reads; the answer shows the whole record.
    let record = match state.service.key_record(key.key.id()).await {
        Ok(record) => record,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut response = json(&UsageAnswer {
        data: UsageJson {
            api_key: (&record).into(),
            rate_limit: rate_limit.as_ref().map(|rl| RateLimitState {
                limit: rl.limit,
                remaining: rl.remaining,
                reset_at: rfc3339(rl.reset_at),
            }),
        },
    });
    for (name, value) in answer.rate_limit().iter().flat_map(|r| r.headers()) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            response
                .headers_mut()
                .insert(header::HeaderName::from_static(name), value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_read_as_the_json_spells_them() {
        assert_eq!(camel("rate_limit.window"), "rateLimit.window");
        assert_eq!(
            camel("restrictions.allowed_cidrs[2]"),
            "restrictions.allowedCidrs[2]"
        );
        assert_eq!(camel("ttl"), "expiresIn");
        assert_eq!(camel("meta[\"my_key\"]"), "meta[\"my_key\"]");
        assert_eq!(camel("account_id"), "accountId");
    }

    #[test]
    fn every_route_is_in_the_document() {
        let (_, doc) = routes();
        let paths: Vec<&String> = doc.paths.paths.keys().collect();
        for path in [
            "/v1/api-keys",
            "/v1/api-keys/{id}",
            "/v1/api-keys/{id}/rotate",
            "/v1/scopes",
            "/v1/usage",
        ] {
            assert!(paths.iter().any(|p| *p == path), "{path} in {paths:?}");
        }
    }
}
