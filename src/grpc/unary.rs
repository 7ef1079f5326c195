//! The gateways' unary methods (Verify, Envoy's `Check`) served straight over HTTP/2.
//!
//! tonic's generated servers run every call through its general machinery: a streaming decoder
//! that buffers and re-frames the body, an encoder stream, compression and response mapping.
//! For a method whose request is read in place ([`ReadInPlace`]) and whose answer is written
//! by hand ([`WriteInPlace`]), that machinery was a third of the call's work above the health
//! service's. [`UnaryRoute`] does only what such a call needs, with the same rules: the body is
//! bounded before it is collected (`OUT_OF_RANGE` past the bound, as tonic answers), and not
//! read at all before the caller is authenticated where `verify_auth` asks for it; it must
//! be exactly one uncompressed gRPC message; the answer is one message and a `grpc-status: 0`
//! trailer, and an error is answered trailers-only by [`Status::into_http`]. It is a route
//! like the generated ones (a [`NamedService`]), so the server's layers (deadlines, the RPC
//! span and metrics of [`super::TraceLayer`]) wrap it as they wrap every service.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;

use super::BoxFuture;
use super::protobuf::{Malformed, ReadInPlace, WriteInPlace};
use crate::service::Keyward;

/// The gRPC message prefix: a compression flag and the message's length (4 bytes, big-endian).
const PREFIX: usize = 5;

/// A unary method whose request is read in place and whose answer is written by hand.
pub(crate) trait UnaryMethod: Send + Sync + 'static {
    /// The gRPC service's full name (`package.Service`).
    const SERVICE: &'static str;
    /// The method's path (`/package.Service/Method`).
    const PATH: &'static str;
    /// The request, located in its body.
    type Input: ReadInPlace;
    /// The answer.
    type Output: WriteInPlace;

    /// Answers the request.
    fn answer(
        &self,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output, Status>> + Send;

    /// The answer to a body that is not the method's request message: `INVALID_ARGUMENT`,
    /// unless the method answers it otherwise.
    fn malformed(&self, error: Malformed) -> Result<Self::Output, Status> {
        Err(error.into())
    }
}

/// The route of one [`UnaryMethod`] on the gRPC server (cloned for every call: one reference
/// count).
#[derive(Debug)]
pub struct UnaryRoute<M>(Arc<Route<M>>);

#[derive(Debug)]
struct Route<M> {
    method: M,
    /// The largest request message accepted, in bytes (the prefix not counted).
    max_request: usize,
    /// When callers must authenticate as gateways (a client certificate or a key holding
    /// `keys:verify`, [`super::authenticate_gateway`]): the service that checks their key.
    callers: Option<Arc<Keyward>>,
}

impl<M> Clone for UnaryRoute<M> {
    fn clone(&self) -> Self {
        UnaryRoute(self.0.clone())
    }
}

impl<M: UnaryMethod> UnaryRoute<M> {
    /// Serves `method`, refusing requests larger than `max_request` bytes; with `callers`,
    /// only to gateways that service authenticates.
    pub fn new(method: M, max_request: usize, callers: Option<Arc<Keyward>>) -> Self {
        UnaryRoute(Arc::new(Route {
            method,
            max_request,
            callers,
        }))
    }
}

impl<M: UnaryMethod> NamedService for UnaryRoute<M> {
    const NAME: &'static str = M::SERVICE;
}

impl<M: UnaryMethod> tower::Service<http::Request<Body>> for UnaryRoute<M> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let route = self.clone();
        Box::pin(async move {
            Ok(match route.respond(request).await {
                Ok(message) => answered(message),
                Err(status) => status.into_http(),
            })
        })
    }
}

impl<M: UnaryMethod> UnaryRoute<M> {
    /// The encoded answer to `request` (its gRPC message, prefix included).
    async fn respond(&self, request: http::Request<Body>) -> Result<Bytes, Status> {
        if request.uri().path() != M::PATH {
            // The path is not echoed back: it is the caller's text.
            return Err(Status::unimplemented(format!(
                "{} has no such method",
                M::SERVICE
            )));
        }
        let (parts, body) = request.into_parts();
        let route = &*self.0;
        if let Some(service) = &route.callers {
            let caller = tonic::Request::from_http(http::Request::from_parts(parts, ()));
            Box::pin(super::authenticate_gateway(service, &caller, M::PATH)).await?;
        }
        let message = self.message(body).await?;
        let answer = match M::Input::read(message) {
            Ok(input) => route.method.answer(input).await?,
            Err(error) => route.method.malformed(error)?,
        };
        let mut buf = BytesMut::with_capacity(512);
        buf.put_bytes(0, PREFIX);
        answer.write(&mut buf);
        let len = u32::try_from(buf.len() - PREFIX)
            .map_err(|_| Status::internal("the answer is larger than gRPC allows"))?;
        buf[1..PREFIX].copy_from_slice(&len.to_be_bytes());
        Ok(buf.freeze())
    }

    /// The request's one message, read from a body bounded before it is collected.
    async fn message(&self, body: Body) -> Result<Bytes, Status> {
        let body = match Limited::new(body, self.0.max_request + PREFIX)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<LengthLimitError>() => return Err(self.too_large()),
            Err(error) => {
                tracing::debug!(%error, rpc = M::PATH, "the request body could not be read");
                return Err(Status::cancelled("the request body could not be read"));
            }
        };
        let Some(prefix) = body.first_chunk::<PREFIX>() else {
            return Err(not_one_message());
        };
        match prefix[0] {
            0 => {}
            1 => {
                return Err(Status::unimplemented(
                    "compressed requests are not accepted: send the message uncompressed",
                ));
            }
            _ => return Err(Status::invalid_argument("invalid gRPC compression flag")),
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if len > self.0.max_request {
            return Err(self.too_large());
        }
        if len != body.len() - PREFIX {
            return Err(not_one_message());
        }
        Ok(body.slice(PREFIX..))
    }

    /// The refusal of a request past the bound: `OUT_OF_RANGE`, as tonic's own limit answers.
    fn too_large(&self) -> Status {
        Status::out_of_range(format!(
            "the request is larger than {} bytes",
            self.0.max_request
        ))
    }
}

fn not_one_message() -> Status {
    Status::invalid_argument("the request body is not exactly one gRPC message")
}

/// A successful call's response: the answer's message, then `grpc-status: 0` in the trailers.
fn answered(message: Bytes) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(Answered::Message(message)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// The body of a successful call: one data frame, then the trailers. Its size is not
/// announced: a gRPC response carries no `content-length` (as tonic's own answers), which a
/// body of known length (`http_body_util::Full`) would make hyper add — a header that differs
/// from answer to answer, so HTTP/2's header compression cannot index it.
enum Answered {
    /// The answer's message is next.
    Message(Bytes),
    /// The trailers are next.
    Trailers,
    /// Both were sent.
    Done,
}

impl hyper::body::Body for Answered {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let frame = match std::mem::replace(&mut *self, Answered::Done) {
            Answered::Message(message) => {
                *self = Answered::Trailers;
                hyper::body::Frame::data(message)
            }
            Answered::Trailers => {
                let mut trailers = http::HeaderMap::with_capacity(1);
                trailers.insert(
                    http::HeaderName::from_static("grpc-status"),
                    http::HeaderValue::from_static("0"),
                );
                hyper::body::Frame::trailers(trailers)
            }
            Answered::Done => return Poll::Ready(None),
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Answered::Done)
    }
}
