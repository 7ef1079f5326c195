//! How tonic serves the gateways' methods (Verify, Envoy's `Check`): their generated servers
//! (`build.rs`) run over [`WireCodec`], which hands the one request message to its reader
//! without a copy and writes the answer straight into tonic's buffer; [`GatewayRoutesLayer`]
//! sends their calls to them by exact path ahead of tonic's router; and each is wrapped by
//! [`GatewayLayer`], which
//!
//! - authenticates the caller **before the body is read**, where `verify_auth` asks for it (a
//!   client certificate, or a key holding `keys:verify`): an unauthenticated caller's body is
//!   never decoded, whatever its size;
//! - answers a body that breaks gRPC's framing (no message, a cut one, an invalid compression
//!   flag) `INVALID_ARGUMENT`, the client's mistake, where tonic says `INTERNAL`; and one past
//!   the bound (`max_decoding_message_size`, checked from the length prefix before the message
//!   is collected) `OUT_OF_RANGE` with the bound in the text.
//!
//! A second message in a unary call is refused by the codec's decoder, which tonic gives every
//! message of the call.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Buf;
use tonic::body::Body;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::{Code, Status};

use super::BoxFuture;
use super::ext_authz::{AuthorizationServer, ExtAuthzApi};
use super::protobuf::{Malformed, ReadInPlace, WriteInPlace};
use super::verify::{VerifyApi, VerifyServiceServer};
use crate::service::Keyward;

/// A request as the codec read it: located in its body, or why the body is not the message (a
/// method decides how to answer that: Verify `INVALID_ARGUMENT`, `Check` a denial).
pub type Read<T> = Result<T, Malformed>;

/// The codec of a method whose request is read in place and whose answer is written by hand.
pub struct WireCodec<Out, In>(PhantomData<fn(In) -> Out>);

impl<Out, In> Default for WireCodec<Out, In> {
    fn default() -> Self {
        WireCodec(PhantomData)
    }
}

impl<Out: WriteInPlace, In: ReadInPlace> Codec for WireCodec<Out, In> {
    type Encode = Out;
    type Decode = Read<In>;
    type Encoder = WireEncoder<Out>;
    type Decoder = WireDecoder<In>;

    fn encoder(&mut self) -> WireEncoder<Out> {
        WireEncoder(PhantomData)
    }

    fn decoder(&mut self) -> WireDecoder<In> {
        WireDecoder {
            read: false,
            kind: PhantomData,
        }
    }
}

/// Writes an answer into tonic's buffer.
pub struct WireEncoder<Out>(PhantomData<fn(Out)>);

impl<Out: WriteInPlace> Encoder for WireEncoder<Out> {
    type Item = Out;
    type Error = Status;

    fn encode(&mut self, item: Out, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.write(buf);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffers()
    }
}

/// The codec's buffers: a gateway's request and answer are a few hundred bytes, where tonic's
/// default is 8 KiB allocated per call for each; a larger message grows the buffer as needed.
/// tonic reserves room for a whole message even once it arrived, so 512 B would grow for
/// `Check`'s usual 370.
fn buffers() -> BufferSettings {
    BufferSettings::new(1024, 32 * 1024)
}

/// Reads the call's one request message; tonic makes one per call.
pub struct WireDecoder<In> {
    /// Whether the call's message was read already.
    read: bool,
    kind: PhantomData<fn() -> In>,
}

impl<In: ReadInPlace> Decoder for WireDecoder<In> {
    type Item = Read<In>;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Read<In>>, Status> {
        if std::mem::replace(&mut self.read, true) {
            return Err(not_one_message());
        }
        // The message's bytes, handed over without a copy.
        let body = buf.copy_to_bytes(buf.remaining());
        Ok(Some(In::read(body)))
    }

    fn buffer_settings(&self) -> BufferSettings {
        buffers()
    }
}

fn not_one_message() -> Status {
    Status::invalid_argument("the request body is not exactly one gRPC message")
}

/// Wraps a gateway method's generated server (see the module's documentation).
#[derive(Debug, Clone)]
pub struct GatewayLayer {
    /// The largest request message accepted, as the server was told
    /// (`max_decoding_message_size`).
    max_request: usize,
    /// When callers must authenticate as gateways: the service that checks their key.
    callers: Option<Arc<Keyward>>,
}

impl GatewayLayer {
    /// A layer for a method bounded at `max_request` bytes; with `callers`, only gateways that
    /// service authenticates are served.
    pub fn new(max_request: usize, callers: Option<Arc<Keyward>>) -> Self {
        GatewayLayer {
            max_request,
            callers,
        }
    }
}

impl<S> tower::Layer<S> for GatewayLayer {
    type Service = Gateway<S>;

    fn layer(&self, inner: S) -> Gateway<S> {
        Gateway {
            inner,
            layer: self.clone(),
        }
    }
}

/// A gateway method's server behind [`GatewayLayer`].
#[derive(Debug, Clone)]
pub struct Gateway<S> {
    inner: S,
    layer: GatewayLayer,
}

impl<S: NamedService> NamedService for Gateway<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<Body>> for Gateway<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + Unpin + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = GatewayFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let max_request = self.layer.max_request;
        let Some(service) = self.layer.callers.clone() else {
            return GatewayFuture::Served {
                answer: self.inner.call(request),
                max_request,
            };
        };
        // The clone that was made ready serves this call (tower's rule for `call`).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        GatewayFuture::Checked(Box::pin(async move {
            // The caller's headers and connection, without the body (never read here).
            let mut caller = http::Request::new(());
            *caller.headers_mut() = request.headers().clone();
            *caller.extensions_mut() = request.extensions().clone();
            let rpc = match request.uri().path() {
                super::verify::PATH => super::verify::PATH,
                _ => super::ext_authz::PATH,
            };
            let caller = tonic::Request::from_http(caller);
            let checked = Box::pin(super::authenticate_gateway(&service, &caller, rpc)).await;
            if let Err(status) = checked {
                return Ok(status.into_http());
            }
            let response = inner.call(request).await?;
            Ok(refusal(response, max_request))
        }))
    }
}

/// A gateway method's answer: straight from its server when callers need not authenticate
/// (nothing allocated for the layer), or after the caller was checked.
pub enum GatewayFuture<F> {
    /// The method's server answers; its refusals are restated.
    Served {
        /// The server's answer.
        answer: F,
        /// The bound the server was given, named in a refusal.
        max_request: usize,
    },
    /// The caller is checked first.
    Checked(BoxFuture<'static, Result<http::Response<Body>, Infallible>>),
}

impl<F> std::future::Future for GatewayFuture<F>
where
    F: std::future::Future<Output = Result<http::Response<Body>, Infallible>> + Unpin,
{
    type Output = Result<http::Response<Body>, Infallible>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            GatewayFuture::Served {
                answer,
                max_request,
            } => std::pin::Pin::new(answer)
                .poll(cx)
                .map_ok(|response| refusal(response, *max_request)),
            GatewayFuture::Checked(checked) => checked.as_mut().poll(cx),
        }
    }
}

/// The response, with a framing refusal tonic answers `INTERNAL` (or in its own words) said as
/// the client's mistake. Only trailers-only responses (a refusal before any answer) carry
/// `grpc-status` in their headers: an answer passes untouched.
fn refusal(response: http::Response<Body>, max_request: usize) -> http::Response<Body> {
    if !response.headers().contains_key(&GRPC_STATUS) {
        return response;
    }
    let Some(status) = Status::from_header_map(response.headers()) else {
        return response;
    };
    let restated = match status.code() {
        Code::Internal if status.message().starts_with(INVALID_FLAG) => {
            Status::invalid_argument("invalid gRPC compression flag")
        }
        Code::Internal
            if status.message() == MISSING_MESSAGE || status.message() == CUT_MESSAGE =>
        {
            not_one_message()
        }
        Code::OutOfRange => {
            Status::out_of_range(format!("the request is larger than {max_request} bytes"))
        }
        _ => return response,
    };
    restated.into_http()
}

/// The header of a trailers-only response's status.
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// The starts of tonic's own words for a body that breaks gRPC's framing (tonic 0.14's
/// `codec::decode` and `server::grpc`); `tests/it/framing.rs` sends each case, so a change in
/// tonic's wording shows there.
const INVALID_FLAG: &str = "protocol error: received message with invalid compression flag";
const MISSING_MESSAGE: &str = "Missing request message.";
const CUT_MESSAGE: &str = "Unexpected EOF decoding stream.";

/// The gateways' methods, served ahead of tonic's router: a call to Verify or `Check` goes by
/// its exact path straight to the method's generated server (behind [`GatewayLayer`]); every
/// other call goes on to the router. The router matches a service's prefix with a wildcard
/// route, keeps the matched rest of the path in the request and wraps the body twice for its
/// own types: work the per-request methods skip (docs/architecture.md).
#[derive(Clone)]
pub struct GatewayRoutesLayer {
    verify: Gateway<VerifyServiceServer<VerifyApi>>,
    check: Gateway<AuthorizationServer<ExtAuthzApi>>,
}

impl GatewayRoutesLayer {
    /// Routes for the two methods' servers, each behind its [`GatewayLayer`].
    pub fn new(
        verify: Gateway<VerifyServiceServer<VerifyApi>>,
        check: Gateway<AuthorizationServer<ExtAuthzApi>>,
    ) -> Self {
        GatewayRoutesLayer { verify, check }
    }
}

impl<S> tower::Layer<S> for GatewayRoutesLayer {
    type Service = GatewayRoutes<S>;

    fn layer(&self, rest: S) -> GatewayRoutes<S> {
        GatewayRoutes {
            methods: self.clone(),
            rest,
        }
    }
}

/// The server's routes behind [`GatewayRoutesLayer`].
#[derive(Clone)]
pub struct GatewayRoutes<S> {
    methods: GatewayRoutesLayer,
    /// tonic's router, for every other call.
    rest: S,
}

type VerifyFuture =
    <Gateway<VerifyServiceServer<VerifyApi>> as tower::Service<http::Request<Body>>>::Future;
type CheckFuture =
    <Gateway<AuthorizationServer<ExtAuthzApi>> as tower::Service<http::Request<Body>>>::Future;

impl<S> tower::Service<http::Request<Body>> for GatewayRoutes<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = RoutesFuture<S::Future>;

    /// Ready when the router is: the generated servers are always ready (tonic's generated
    /// `poll_ready` answers `Ready` at once), so they are called without asking.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.rest.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match request.uri().path() {
            super::verify::PATH => RoutesFuture::Verify {
                answer: self.methods.verify.call(request),
            },
            super::ext_authz::PATH => RoutesFuture::Check {
                answer: self.methods.check.call(request),
            },
            _ => RoutesFuture::Rest {
                answer: self.rest.call(request),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// A call's answer, from the method it went to.
    #[project = Answering]
    pub enum RoutesFuture<F> {
        /// Verify's server.
        Verify { answer: VerifyFuture },
        /// `Check`'s server.
        Check { answer: CheckFuture },
        /// The router.
        Rest { #[pin] answer: F },
    }
}

impl<F, E> std::future::Future for RoutesFuture<F>
where
    F: std::future::Future<Output = Result<http::Response<Body>, E>>,
{
    type Output = Result<http::Response<Body>, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let answered = |answer: Result<http::Response<Body>, Infallible>| match answer {
            Ok(response) => Ok(response),
            Err(never) => match never {},
        };
        match self.project() {
            Answering::Verify { answer } => std::pin::Pin::new(answer).poll(cx).map(answered),
            Answering::Check { answer } => std::pin::Pin::new(answer).poll(cx).map(answered),
            Answering::Rest { answer } => answer.poll(cx),
        }
    }
}
