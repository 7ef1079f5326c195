//! The gRPC transport: thin adapters that validate, read the caller's identity, convert proto
//! messages into domain values, call [`crate::service::Keyward`] and convert back.

pub(crate) mod codec;
pub(crate) mod convert;
mod ext_authz;
pub(crate) mod gateway;
mod manage;
pub(crate) mod protobuf;
pub(crate) mod requests;
mod status;
pub(crate) mod trace;
mod verify;

pub use ext_authz::{AuthorizationServer, ExtAuthzApi};
pub use gateway::{GatewayLayer, GatewayRoutesLayer};
pub use manage::ManageApi;
pub use trace::TraceLayer;
pub use verify::{VerifyApi, VerifyServiceServer};

/// Who is at the other end of the call's connection.
fn peer<T>(request: &tonic::Request<T>) -> Option<crate::net::PeerInfo> {
    request.extensions().get::<crate::net::PeerInfo>().copied()
}

/// Whether the caller presented a client certificate the client CA signed (mutual TLS),
/// which authenticates it as a gateway where `verify_auth` asks for one.
fn has_client_certificate<T>(request: &tonic::Request<T>) -> bool {
    peer(request).is_some_and(|p| p.verified_client_certificate)
}

/// The future of a call, as the services answer it.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A gateway (a caller of Verify or Envoy's `Check`) authenticates with a client certificate the
/// client CA signed, or a key holding `keys:verify`.
async fn authenticate_gateway<T>(
    service: &crate::service::Keyward,
    request: &tonic::Request<T>,
    rpc: &'static str,
) -> Result<(), tonic::Status> {
    if has_client_certificate(request) {
        return Ok(());
    }
    let call = crate::service::CallContext {
        peer: peer(request).map(|p| p.remote_addr.ip().to_canonical()),
        rpc,
        access: crate::service::Access::Read,
    };
    service
        .authenticate_verifier(bearer(request)?, &call)
        .await?;
    Ok(())
}

/// The key a caller presents as `authorization: Bearer <key>`, if any; the header given twice
/// or unreadable is refused (UNAUTHENTICATED), never read one way.
fn bearer<T>(request: &tonic::Request<T>) -> crate::error::Result<Option<&str>> {
    let values = request.metadata().get_all("authorization").iter();
    crate::gateway::single_bearer(values.map(|v| v.to_str().ok()))
        .map_err(|e| crate::error::Error::Unauthenticated(e.to_string()))
}
