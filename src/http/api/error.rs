//! The API's errors: `{"code", "message", "fieldViolations"}` with an HTTP status, and the
//! helpers that read JSON bodies and name bad fields as this API spells them.

use super::*;

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
pub(super) fn camel(field: &str) -> String {
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
                    Error::Internal { .. } => {
                        error.log_internal();
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
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

pub(super) type Answered<T> = Result<T, ApiError>;

/// A JSON body.
pub(super) fn json(value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, JSON)], bytes).into_response(),
        Err(e) => ApiError::Domain(Error::internal_caused("encoding an answer", e)).into_response(),
    }
}

/// Reads a JSON body: an empty body is `{}`, another media type 415, bad JSON 400. serde's
/// message is passed on, unless it quotes something shaped like a key.
pub(super) fn read_json<T: DeserializeOwned>(
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
pub(super) fn bad_json(e: serde_json::Error) -> ApiError {
    let text = e.to_string();
    ApiError::BadRequest(if crate::error::looks_like_key(&text) {
        "the body is not the JSON this endpoint takes".to_owned()
    } else {
        let cut: String = text.chars().take(300).collect();
        format!("the body is not the JSON this endpoint takes: {cut}")
    })
}

/// Adds `extra` violations (found before the shared parse) to the parse's result.
pub(super) fn with_violations<T>(
    extra: Vec<FieldViolation>,
    parsed: crate::error::Result<T>,
) -> Answered<T> {
    match parsed {
        Ok(value) if extra.is_empty() => Ok(value),
        Ok(_) => Err(Error::InvalidArgument(extra).into()),
        // A field the adapter already found wrong is reported once, as the adapter saw it.
        Err(Error::InvalidArgument(more)) => {
            let more: Vec<FieldViolation> = more
                .into_iter()
                .filter(|m| !extra.iter().any(|e| e.field == camel(&m.field)))
                .collect();
            Err(Error::InvalidArgument(extra.into_iter().chain(more).collect()).into())
        }
        Err(other) => Err(other.into()),
    }
}

pub(super) fn violation(field: &str, description: impl Into<String>) -> FieldViolation {
    FieldViolation {
        field: field.to_owned(),
        description: description.into(),
    }
}

/// An RFC 3339 time as the request layer takes it.
pub(super) fn parse_time(
    extra: &mut Vec<FieldViolation>,
    field: &str,
    text: &str,
) -> Option<RawTime> {
    Timestamp::parse_rfc3339(text)
        .map(RawTime::from)
        .or_else(|| {
            extra.push(violation(
                field,
                "must be an RFC 3339 time, e.g. 2030-01-31T12:00:00Z",
            ));
            None
        })
}

/// A rate limit as the request layer takes it; the window is `<n><unit>`.
pub(super) fn rate_limit_input(
    extra: &mut Vec<FieldViolation>,
    r: RateLimitJson,
) -> Option<RateLimitInput> {
    match crate::duration::parse(&r.window) {
        Ok(window) => Some(RateLimitInput {
            limit: r.limit,
            window: Some(RawDuration::from_secs(window.as_secs())),
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
