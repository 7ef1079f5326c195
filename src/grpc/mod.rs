//! The gRPC transport: thin adapters that validate, read the caller's identity, convert proto
//! messages into domain values, call [`crate::service::Keyward`] and convert back.

pub(crate) mod codec;
pub(crate) mod convert;
mod ext_authz;
mod manage;
pub(crate) mod protobuf;
pub(crate) mod requests;
mod status;
pub(crate) mod trace;
mod verify;

pub use ext_authz::{AuthorizationServer, ExtAuthzApi};
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

/// The future of a call, as the generated (`async_trait`) service traits return it.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A call from a gateway (Verify, Envoy's `Check`): `answer` the request's message, once the
/// gateway is authenticated where `require_caller` asks for it. The services' trait methods
/// use this instead of `async_trait`, whose future holds the request twice; authentication is
/// boxed apart, so an unauthenticated call's future is only `answer`'s (the future is moved
/// whole as each call starts, so its size is paid on every call).
fn gateway_call<'a, T, R, F>(
    service: &'a crate::service::Keyward,
    require_caller: bool,
    rpc: &'static str,
    request: tonic::Request<T>,
    answer: impl FnOnce(T) -> F + Send + 'a,
) -> BoxFuture<'a, Result<R, tonic::Status>>
where
    T: Send + Sync + 'a,
    F: std::future::Future<Output = Result<R, tonic::Status>> + Send + 'a,
{
    if require_caller {
        Box::pin(async move {
            Box::pin(authenticate_gateway(service, &request, rpc)).await?;
            answer(request.into_inner()).await
        })
    } else {
        Box::pin(answer(request.into_inner()))
    }
}

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
        .authenticate_verifier(bearer(request), &call)
        .await?;
    Ok(())
}

/// The key a caller presents as `authorization: Bearer <key>`, if any.
fn bearer<T>(request: &tonic::Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::gateway::bearer_token)
}
