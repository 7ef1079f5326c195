//! Hand-framed gateway calls: Verify and `Check` bodies sent as bytes, only the code read back.

use super::*;

/// Sends an encoded `CheckRequest`; true when the answer's status is OK. Only the status is
/// decoded: the headers of the answer are skipped.
pub(super) async fn raw_check(channel: Channel, request: Bytes) -> bool {
    const PATH: &str = "/envoy.service.auth.v3.Authorization/Check";
    raw_unary(channel, PATH, request)
        .await
        .and_then(|answer| CheckStatus::decode(answer).ok())
        .is_some_and(|r| r.status.is_some_and(|s| s.code == 0))
}

/// One unary call with an encoded request; the encoded answer, `None` on a gRPC error.
pub(super) async fn raw_unary(
    channel: Channel,
    path: &'static str,
    request: Bytes,
) -> Option<Bytes> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.ok()?;
    let path = hyper::http::uri::PathAndQuery::from_static(path);
    let response = grpc
        .unary(Request::new(request), path, RawCodec)
        .await
        .ok()?;
    Some(response.into_inner())
}

/// The code of a `VerifyResponse` (field 2); the rest skipped.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct VerifyCodeOnly {
    #[prost(int32, tag = "2")]
    pub(super) code: i32,
}

/// The status of a `CheckResponse` (field 1, `google.rpc.Status.code` = 1); the rest skipped.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct CheckStatus {
    #[prost(message, optional, tag = "1")]
    pub(super) status: Option<StatusCode>,
}

/// `google.rpc.Status.code`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct StatusCode {
    #[prost(int32, tag = "1")]
    pub(super) code: i32,
}

/// A gRPC codec of already-encoded messages.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Self::Error> {
        prost::bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, Self::Error> {
        let len = hyper::body::Buf::remaining(src);
        Ok(Some(hyper::body::Buf::copy_to_bytes(src, len)))
    }
}

/// What Envoy sends for a typical API request: a handful of headers, the key as a bearer token,
/// the route's scopes in `context_extensions`.
pub(super) fn envoy_request(key: &str) -> CheckRequest {
    let headers = [
        (":authority", "api.example.com"),
        (":method", "GET"),
        (":path", "/v1/videos/42?page=2"),
        ("accept", "application/json"),
        ("user-agent", "bench/1.0"),
        ("x-request-id", "5f1b0c9e-bench"),
        ("x-forwarded-proto", "https"),
    ];
    let mut map: std::collections::BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.insert("authorization".into(), format!("Bearer {key}"));
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(attribute_context::Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: "203.0.113.9".into(),
                        port_specifier: Some(socket_address::PortSpecifier::PortValue(40_000)),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            destination: None,
            request: Some(attribute_context::Request {
                time: None,
                http: Some(attribute_context::HttpRequest {
                    id: "5f1b0c9e-bench".into(),
                    method: "GET".into(),
                    headers: map,
                    path: "/v1/videos/42?page=2".into(),
                    host: "api.example.com".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/1.1".into(),
                    ..Default::default()
                }),
            }),
            context_extensions: [("scopes".to_owned(), "videos:read".to_owned())].into(),
        }),
    }
}
