//! The gRPC transport: thin adapters that validate, read the caller's identity, convert proto
//! messages into domain values, call [`crate::service::Keyward`] and convert back.

pub(crate) mod codec;
mod convert;
mod ext_authz;
mod manage;
mod requests;
mod status;
pub(crate) mod trace;
mod verify;

pub use ext_authz::ExtAuthzApi;
pub use manage::ManageApi;
pub use trace::TraceLayer;
pub use verify::VerifyApi;

/// The key a caller presents as `authorization: Bearer <key>`, if any.
fn bearer<T>(request: &tonic::Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
}
