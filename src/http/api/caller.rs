//! Who is calling: the bearer key, the TCP peer and the path, and the key id a path names.

use super::*;

/// The key id in a request path (`/v1/api-keys/{id}`): a path that does not decode is the
/// JSON API's 400, like every other error, not axum's plain-text one.
pub(super) struct KeyPath(pub(super) String);

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
    pub(super) bearer: Result<Option<String>, crate::gateway::AmbiguousKey>,
    pub(super) peer: Option<IpAddr>,
    pub(super) path: String,
    /// The portal session's secret from its cookie, when there is one.
    pub(super) portal: Option<String>,
    /// The `X-CSRF-Token` header, when there is one (and only one).
    pub(super) csrf: Option<String>,
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
            portal: crate::http::portal::session_cookie(&parts.headers),
            csrf: single_header(&parts.headers, crate::http::portal::CSRF_HEADER),
        })
    }
}

/// A header's value when it is given exactly once and readable.
fn single_header(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?.to_str().ok()?.to_owned();
    values.next().is_none().then_some(value)
}

impl Call {
    /// The authenticated caller, under its key's own restrictions (the HTTP path is what
    /// `allowed_paths` sees).
    pub(super) async fn caller(&self, state: &HttpState, access: Access) -> Answered<Caller> {
        let call = CallContext {
            peer: self.peer,
            rpc: &self.path,
            access,
        };
        let bearer = self
            .bearer
            .as_ref()
            .map_err(|e| Error::Unauthenticated(e.to_string()))?;
        // A portal session (docs/portal.md) when no key is presented: its cookie and, on
        // every call, the CSRF token only its own page can read.
        if let (None, Some(secret)) = (bearer, &self.portal) {
            let expected = crate::portal::csrf_token(secret);
            if !self
                .csrf
                .as_deref()
                .is_some_and(|given| crate::portal::same(given, &expected))
            {
                return Err(Error::PermissionDenied(format!(
                    "a portal call needs its {} header",
                    crate::http::portal::CSRF_HEADER
                ))
                .into());
            }
            let (caller, _) = state.service.authenticate_portal(secret).await?;
            return Ok(caller);
        }
        Ok(state.service.authenticate(bearer.as_deref(), &call).await?)
    }
}

/// The account a request names, or the caller's own; a root key must name one.
pub(super) fn account_or_own(caller: &Caller, named: Option<String>) -> Answered<String> {
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
