//! Envoy's `CheckRequest` read straight from the wire, and the `CheckResponse` written straight
//! to it.
//!
//! Envoy describes every request in full: each header, both peers, the host, the protocol.
//! keyward reads six of those fields. Decoding them with prost, even into a message trimmed to
//! those fields, builds a string (or a counted slice) per header and a vector of them: 10 % of
//! `Check`'s throughput (docs/benchmarks.md, "Choices"). Here the body stays one [`Bytes`]; the
//! fields keyward reads are located by Envoy's field numbers (those of the vendored protos,
//! listed below) and read in place, by prost's rules; everything else is skipped. The answer is
//! encoded from the gateway's [`Answer`] without building the generated response first.
//! `tests` below check both against prost, both ways (what one accepts, the other accepts, and
//! reads the same), and `tests/it/gateway.rs` against bytes encoded by hand.
//!
//! Strings are checked as UTF-8 on every occurrence, as prost checks them; a raw header value
//! (bytes) is read as UTF-8 when used. A body that is not such a message is the client's
//! mistake, answered as a denial (see [`super::ExtAuthzApi`]), never a gRPC error that Envoy's
//! `failure_mode_allow` could let through.

use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes};
use prost::encoding::WireType;
use smallvec::SmallVec;

use crate::gateway::{Answer, Gateway, Header, JSON, RateLimitHeaders};
pub use crate::grpc::protobuf::Malformed;
use crate::grpc::protobuf::{
    Fields, ReadInPlace, Span, Value, WriteInPlace, bytes_field, bytes_field_len,
    message_field_len, message_header, varint_field, varint_field_len,
};
use crate::proto::envoy::config::core::v3::header_value_option::HeaderAppendAction;

// Envoy's field numbers (proto/envoy/service/auth/v3/*.proto, proto/envoy/config/core/v3/*).
/// `CheckRequest.attributes`.
const CHECK_REQUEST_ATTRIBUTES: u32 = 1;
/// `AttributeContext.source`, `.request`, `.context_extensions`.
const ATTRIBUTES_SOURCE: u32 = 1;
const ATTRIBUTES_REQUEST: u32 = 4;
const ATTRIBUTES_CONTEXT_EXTENSIONS: u32 = 10;
/// `AttributeContext.Peer.address`.
const PEER_ADDRESS: u32 = 1;
/// `Address.socket_address`; `pipe` and `envoy_internal_address` are the oneof's others.
const ADDRESS_SOCKET_ADDRESS: u32 = 1;
const ADDRESS_PIPE: u32 = 2;
const ADDRESS_ENVOY_INTERNAL: u32 = 3;
/// `SocketAddress.address`.
const SOCKET_ADDRESS_ADDRESS: u32 = 2;
/// `AttributeContext.Request.http`.
const REQUEST_HTTP: u32 = 2;
/// `AttributeContext.HttpRequest.method`, `.headers`, `.path`, `.header_map`.
const HTTP_METHOD: u32 = 2;
const HTTP_HEADERS: u32 = 3;
const HTTP_PATH: u32 = 4;
const HTTP_HEADER_MAP: u32 = 13;
/// `HeaderMap.headers`.
const HEADER_MAP_HEADERS: u32 = 1;
/// `HeaderValue.key`, `.value`, `.raw_value`; a map entry's key and value have the same numbers.
const HEADER_KEY: u32 = 1;
const HEADER_VALUE: u32 = 2;
const HEADER_RAW_VALUE: u32 = 3;

pub use crate::limits::MAX_CHECK_HEADERS as MAX_HEADERS;

/// A `Check` request as the codec read it.
pub type CheckRead = crate::grpc::gateway::Read<CheckInput>;

/// What keyward reads of Envoy's `CheckRequest`, located in the request body.
pub struct CheckInput {
    body: Bytes,
    method: Span,
    path: Span,
    /// `attributes.source.address.socket_address.address`.
    source_address: Option<Span>,
    /// `attributes.request.http.headers`, key and value, in wire order.
    headers: Vec<(Span, Span)>,
    /// `attributes.request.http.header_map` (Envoy's `encode_raw_headers`): key and value, or
    /// the raw value when the value is empty.
    raw_headers: Vec<(Span, Span)>,
    /// `attributes.context_extensions["scopes"]` and `["environment"]`.
    scopes: Option<Span>,
    environment: Option<Span>,
    /// More than [`MAX_HEADERS`] headers came: the lists are cut short.
    too_many_headers: bool,
}

impl CheckInput {
    fn attributes(&mut self, mut fields: Fields<'_>) -> Result<(), Malformed> {
        let body = fields.body();
        while let Some((number, field)) = fields.next()? {
            match number {
                ATTRIBUTES_SOURCE => self.source(fields.message(field)?)?,
                ATTRIBUTES_REQUEST => {
                    let mut request = fields.message(field)?;
                    while let Some((number, field)) = request.next()? {
                        if number == REQUEST_HTTP {
                            self.http(request.message(field)?)?;
                        }
                    }
                }
                ATTRIBUTES_CONTEXT_EXTENSIONS => {
                    let (name, value) = entry(fields.message(field)?)?;
                    match name.of(body) {
                        b"scopes" => self.scopes = Some(value),
                        b"environment" => self.environment = Some(value),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn source(&mut self, mut peer: Fields<'_>) -> Result<(), Malformed> {
        let body = peer.body();
        while let Some((number, field)) = peer.next()? {
            if number != PEER_ADDRESS {
                continue;
            }
            let mut address = peer.message(field)?;
            while let Some((number, field)) = address.next()? {
                match number {
                    ADDRESS_SOCKET_ADDRESS => {
                        let mut socket = address.message(field)?;
                        while let Some((number, field)) = socket.next()? {
                            if number == SOCKET_ADDRESS_ADDRESS {
                                self.source_address = Some(field.string(body, "source.address")?);
                            }
                        }
                    }
                    // The oneof now holds an address that is not an IP address.
                    ADDRESS_PIPE | ADDRESS_ENVOY_INTERNAL => {
                        // Read through (its fields must be well formed), though none is used.
                        let mut other = address.message(field)?;
                        while other.next()?.is_some() {}
                        self.source_address = None;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn http(&mut self, mut fields: Fields<'_>) -> Result<(), Malformed> {
        let body = fields.body();
        while let Some((number, field)) = fields.next()? {
            match number {
                HTTP_METHOD => self.method = field.string(body, "http.method")?,
                HTTP_PATH => self.path = field.string(body, "http.path")?,
                HTTP_HEADERS => {
                    let header = entry(fields.message(field)?)?;
                    if self.headers.len() == MAX_HEADERS {
                        self.too_many_headers = true;
                    } else {
                        if self.headers.is_empty() {
                            self.headers.reserve(16);
                        }
                        self.headers.push(header);
                    }
                }
                HTTP_HEADER_MAP => {
                    let mut map = fields.message(field)?;
                    while let Some((number, field)) = map.next()? {
                        if number == HEADER_MAP_HEADERS {
                            let header = header_value(map.message(field)?)?;
                            if self.raw_headers.len() == MAX_HEADERS {
                                self.too_many_headers = true;
                            } else {
                                self.raw_headers.push(header);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A string field, checked as UTF-8 when it was read.
    fn text(&self, span: Span) -> &str {
        // Checked when read (`Value::string`): never empty by failure.
        std::str::from_utf8(span.of(&self.body)).unwrap_or_default()
    }

    /// The request's HTTP method.
    pub fn method(&self) -> &str {
        self.text(self.method)
    }

    /// The request target: path and query string, as on the request line.
    pub fn path(&self) -> &str {
        self.text(self.path)
    }

    /// The end client's address as Envoy saw it, if it is a socket address.
    pub fn source_address(&self) -> Option<&str> {
        Some(self.text(self.source_address?))
    }

    /// Every value of a request header by its lower-case name, each `None` when it is not
    /// UTF-8: from the header map (one value, the last entry of that name, as a map decodes)
    /// or, with Envoy's `encode_raw_headers`, every entry of the raw header list (any case).
    pub fn header_values(&self, name: &str) -> SmallVec<[Option<&str>; 1]> {
        let name = name.as_bytes();
        // Lengths first: most names differ in length, and a span's length needs no slicing.
        let bytes = |span: Span| span.of(&self.body);
        let named = |key: &Span| key.len() == name.len() && bytes(*key) == name;
        if let Some((_, value)) = self.headers.iter().rev().find(|(k, _)| named(k)) {
            return SmallVec::from_buf([Some(self.text(*value))]);
        }
        self.raw_headers
            .iter()
            .filter(|(k, _)| k.len() == name.len() && bytes(*k).eq_ignore_ascii_case(name))
            .map(|(_, value)| std::str::from_utf8(bytes(*value)).ok())
            .collect()
    }

    /// A request header by its lower-case name when it has exactly one value of UTF-8 text
    /// (see [`CheckInput::header_values`]).
    #[cfg(test)]
    pub fn header(&self, name: &str) -> Option<&str> {
        match self.header_values(name).as_slice() {
            [Some(value)] => Some(value),
            _ => None,
        }
    }

    /// Whether more than [`MAX_HEADERS`] headers came (in either list): such a request is
    /// refused, since a header past the bound could be the one that matters.
    pub fn too_many_headers(&self) -> bool {
        self.too_many_headers
    }

    /// The route's `context_extensions["scopes"]`.
    pub fn scopes(&self) -> Option<&str> {
        self.scopes.map(|s| self.text(s))
    }

    /// The route's `context_extensions["environment"]`.
    pub fn environment(&self) -> Option<&str> {
        self.environment.map(|s| self.text(s))
    }
}

/// Header values carry the raw key: only the fields' sizes are shown.
impl fmt::Debug for CheckInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckInput")
            .field("bytes", &self.body.len())
            .field("headers", &self.headers.len())
            .field("raw_headers", &self.raw_headers.len())
            .finish_non_exhaustive()
    }
}

/// A `map<string, string>` entry: its key and value (empty when absent), both UTF-8. Read
/// inline as every encoder writes one (a request has one per header); any other layout by
/// [`entry_general`].
#[inline]
fn entry(fields: Fields<'_>) -> Result<(Span, Span), Malformed> {
    let (body, span) = (fields.body(), fields.span());
    // Key (field 1), then value (field 2), both shorter than 128.
    if let [0x0a, key_len @ 0..0x80, rest @ ..] = span.of(body)
        && let Some([0x12, value_len @ 0..0x80, value @ ..]) = rest.get(usize::from(*key_len)..)
        && value.len() == usize::from(*value_len)
    {
        let key = Span::new(span.start() + 2, span.start() + 2 + usize::from(*key_len));
        let value = Span::new(key.end() + 2, span.end());
        return Ok((
            Value::Bytes(key).string(body, "a map key")?,
            Value::Bytes(value).string(body, "a map value")?,
        ));
    }
    entry_general(fields)
}

/// A map entry in any order or length, with unknown fields skipped and the last of a repeated
/// field kept, as protobuf reads one.
#[inline(never)]
fn entry_general(mut fields: Fields<'_>) -> Result<(Span, Span), Malformed> {
    let (body, span) = (fields.body(), fields.span());
    let (mut key, mut value) = (span.empty_at(), span.empty_at());
    while let Some((number, field)) = fields.next()? {
        match number {
            HEADER_KEY => key = field.string(body, "a map key")?,
            HEADER_VALUE => value = field.string(body, "a map value")?,
            _ => {}
        }
    }
    Ok((key, value))
}

/// A `HeaderValue`: its key, and its value or, when that is empty, its raw value (bytes, not
/// necessarily UTF-8).
fn header_value(mut fields: Fields<'_>) -> Result<(Span, Span), Malformed> {
    let (body, span) = (fields.body(), fields.span());
    let (mut key, mut value, mut raw) = (span.empty_at(), span.empty_at(), span.empty_at());
    while let Some((number, field)) = fields.next()? {
        match number {
            HEADER_KEY => key = field.string(body, "header_map.key")?,
            HEADER_VALUE => value = field.string(body, "header_map.value")?,
            HEADER_RAW_VALUE => raw = field.bytes()?,
            _ => {}
        }
    }
    Ok((key, if value.is_empty() { raw } else { value }))
}

/// The answer to one `Check`: the gateway's [`Answer`] and the request headers Envoy removes
/// before the request goes upstream.
#[derive(Debug)]
pub struct CheckOutput {
    answer: Answer,
    gateway: Arc<Gateway>,
}

impl CheckOutput {
    /// The `CheckResponse` of `answer` under the gateway's settings.
    pub fn new(answer: Answer, gateway: Arc<Gateway>) -> Self {
        CheckOutput { answer, gateway }
    }
}

// Envoy's field numbers of the answer (external_auth.proto, base.proto, http_status.proto,
// google/rpc/status.proto).
/// `CheckResponse.status`, `.denied_response`, `.ok_response`.
const RESPONSE_STATUS: u32 = 1;
const RESPONSE_DENIED: u32 = 2;
const RESPONSE_OK: u32 = 3;
/// `google.rpc.Status.code`, `.message`, `.details`; `google.protobuf.Any.type_url`, `.value`.
const STATUS_CODE: u32 = 1;
const STATUS_MESSAGE: u32 = 2;
const STATUS_DETAILS: u32 = 3;
const ANY_TYPE_URL: u32 = 1;
const ANY_VALUE: u32 = 2;
/// `OkHttpResponse.headers`, `.headers_to_remove`.
const OK_HEADERS: u32 = 2;
const OK_HEADERS_TO_REMOVE: u32 = 5;
/// `DeniedHttpResponse.status` (an `HttpStatus`, whose `code` is 1), `.headers`, `.body`.
const DENIED_STATUS: u32 = 1;
const HTTP_STATUS_CODE: u32 = 1;
const DENIED_HEADERS: u32 = 2;
const DENIED_BODY: u32 = 3;
/// `HeaderValueOption.header`, `.append_action`.
const OPTION_HEADER: u32 = 1;
const OPTION_APPEND_ACTION: u32 = 3;
/// `google.rpc.RetryInfo.retry_delay`; `google.protobuf.Duration.seconds`.
const RETRY_INFO_DELAY: u32 = 1;
const DURATION_SECONDS: u32 = 1;

/// Who the key is and its rate-limit state go upstream, overwriting (never appending to)
/// whatever the client sent under those names.
const OVERWRITE: u64 = HeaderAppendAction::OverwriteIfExistsOrAdd as u64;
const _: () = assert!(OVERWRITE < 0x80, "a one-byte varint");

impl CheckOutput {
    /// The headers of the answer: upstream request headers when allowed, the client's response
    /// headers when denied. The rate-limit values are written in decimal by the caller (they
    /// live on its stack).
    fn headers<'a>(
        &'a self,
        rate_limit: Option<&'a RateLimitHeaders>,
    ) -> SmallVec<[Header<'a>; 9]> {
        let answer = &self.answer;
        let mut headers = SmallVec::new();
        if answer.allowed() {
            if let Some(identity) = answer.identity() {
                headers.extend_from_slice(&identity);
            }
        } else {
            headers.push(("content-type", JSON.as_bytes()));
        }
        for (name, value) in answer.challenge() {
            headers.push((*name, value.as_bytes()));
        }
        if let Some(rate_limit) = rate_limit {
            headers.extend_from_slice(&rate_limit.headers());
        }
        headers
    }

    /// The gRPC status Envoy reads.
    fn grpc_code(&self) -> u64 {
        let code = match self.answer.status {
            200 => tonic::Code::Ok,
            400 => tonic::Code::InvalidArgument,
            401 => tonic::Code::Unauthenticated,
            429 => tonic::Code::ResourceExhausted,
            503 => tonic::Code::Unavailable,
            _ => tonic::Code::PermissionDenied,
        };
        code as u64
    }

    /// RESOURCE_EXHAUSTED says when to retry in `google.rpc.RetryInfo` too (AIP-193), besides
    /// the `retry-after` header Envoy sends the client.
    fn retry_after(&self) -> Option<u64> {
        self.answer.retry_after()
    }

    /// The HTTP status Envoy answers a denied client with.
    fn http_status(&self) -> u64 {
        match self.answer.status {
            400 | 401 | 429 | 503 => self.answer.status.into(),
            _ => 403,
        }
    }

    fn status_message(&self) -> &str {
        if self.answer.allowed() {
            ""
        } else {
            self.answer.code
        }
    }

    /// The encoded length of the `google.rpc.Status` of `code`, `message` and, on a 429, its
    /// `RetryInfo`.
    fn status_len(code: u64, message: &str, retry_after: Option<u64>) -> usize {
        varint_field_len(STATUS_CODE, code)
            + bytes_field_len(STATUS_MESSAGE, message.len())
            + retry_after.map_or(0, |secs| message_field_len(STATUS_DETAILS, any_len(secs)))
    }

    fn headers_len(number: u32, headers: &[Header<'_>]) -> usize {
        let mut len = 0;
        for (name, value) in headers {
            len += message_field_len(number, option_len(name, value));
        }
        len
    }

    /// `OkHttpResponse` or `DeniedHttpResponse`.
    fn http_response_len(&self, headers: &[Header<'_>]) -> usize {
        if self.answer.allowed() {
            let mut len = Self::headers_len(OK_HEADERS, headers);
            for name in self.gateway.headers_to_remove() {
                len += bytes_field_len(OK_HEADERS_TO_REMOVE, name.len());
            }
            len
        } else {
            message_field_len(
                DENIED_STATUS,
                varint_field_len(HTTP_STATUS_CODE, self.http_status()),
            ) + Self::headers_len(DENIED_HEADERS, headers)
                + bytes_field_len(DENIED_BODY, self.body().len())
        }
    }

    fn body(&self) -> &str {
        self.answer.body().unwrap_or_default()
    }

    /// The encoded length of the `CheckResponse` (what [`WriteInPlace::write`] writes).
    #[cfg(test)]
    fn encoded_len(&self) -> usize {
        let status_len =
            Self::status_len(self.grpc_code(), self.status_message(), self.retry_after());
        message_field_len(RESPONSE_STATUS, status_len)
            + message_field_len(
                if self.answer.allowed() {
                    RESPONSE_OK
                } else {
                    RESPONSE_DENIED
                },
                self.http_response_len(&self.headers(self.answer.rate_limit().as_ref())),
            )
    }
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.protobuf.Any` holding a `google.rpc.RetryInfo` of `secs`.
fn any_len(secs: u64) -> usize {
    bytes_field_len(ANY_TYPE_URL, RETRY_INFO_TYPE.len())
        + message_field_len(ANY_VALUE, retry_info_len(secs))
}

fn retry_info_len(secs: u64) -> usize {
    message_field_len(RETRY_INFO_DELAY, varint_field_len(DURATION_SECONDS, secs))
}

/// `HeaderValueOption { header: HeaderValue { key, value }, append_action: OVERWRITE… }`.
fn option_len(name: &str, value: &[u8]) -> usize {
    message_field_len(OPTION_HEADER, header_len(name, value))
        + varint_field_len(OPTION_APPEND_ACTION, OVERWRITE)
}

fn header_len(name: &str, value: &[u8]) -> usize {
    bytes_field_len(HEADER_KEY, name.len()) + bytes_field_len(HEADER_VALUE, value.len())
}

fn header_option(number: u32, name: &str, value: &[u8], buf: &mut impl BufMut) {
    let header = header_len(name, value);
    let option = message_field_len(OPTION_HEADER, header)
        + varint_field_len(OPTION_APPEND_ACTION, OVERWRITE);
    // Every header keyward sends: a name and a value, each length one byte. Written in five
    // pieces instead of nine (each piece checks the buffer's capacity).
    if number < 16 && option < 0x80 && !name.is_empty() && !value.is_empty() {
        let length_delimited = WireType::LengthDelimited as u8;
        buf.put_slice(&[
            (number as u8) << 3 | length_delimited,
            option as u8,
            (OPTION_HEADER as u8) << 3 | length_delimited,
            header as u8,
            (HEADER_KEY as u8) << 3 | length_delimited,
            name.len() as u8,
        ]);
        buf.put_slice(name.as_bytes());
        buf.put_slice(&[
            (HEADER_VALUE as u8) << 3 | length_delimited,
            value.len() as u8,
        ]);
        buf.put_slice(value);
        buf.put_slice(&[
            (OPTION_APPEND_ACTION as u8) << 3 | WireType::Varint as u8,
            OVERWRITE as u8,
        ]);
        return;
    }
    message_header(number, option, buf);
    message_header(OPTION_HEADER, header, buf);
    bytes_field(HEADER_KEY, name.as_bytes(), buf);
    bytes_field(HEADER_VALUE, value, buf);
    varint_field(OPTION_APPEND_ACTION, OVERWRITE, buf);
}

impl ReadInPlace for CheckInput {
    /// Locates the fields keyward reads in an encoded `CheckRequest`.
    fn read(body: Bytes) -> Result<Self, Malformed> {
        let mut input = CheckInput {
            method: Span::default(),
            path: Span::default(),
            source_address: None,
            headers: Vec::new(),
            raw_headers: Vec::new(),
            scopes: None,
            environment: None,
            too_many_headers: false,
            // Moved in once located (no second reference to count up and down).
            body: Bytes::new(),
        };
        let mut fields = Fields::top(&body)?;
        while let Some((number, field)) = fields.next()? {
            if number == CHECK_REQUEST_ATTRIBUTES {
                input.attributes(fields.message(field)?)?;
            }
        }
        input.body = body;
        Ok(input)
    }
}

impl WriteInPlace for CheckOutput {
    /// The encoded `CheckResponse`.
    fn write(&self, buf: &mut impl BufMut) {
        let code = self.grpc_code();
        let message = self.status_message();
        let retry_after = self.retry_after();
        message_header(
            RESPONSE_STATUS,
            Self::status_len(code, message, retry_after),
            buf,
        );
        varint_field(STATUS_CODE, code, buf);
        bytes_field(STATUS_MESSAGE, message.as_bytes(), buf);
        if let Some(secs) = retry_after {
            message_header(STATUS_DETAILS, any_len(secs), buf);
            bytes_field(ANY_TYPE_URL, RETRY_INFO_TYPE.as_bytes(), buf);
            message_header(ANY_VALUE, retry_info_len(secs), buf);
            message_header(
                RETRY_INFO_DELAY,
                varint_field_len(DURATION_SECONDS, secs),
                buf,
            );
            varint_field(DURATION_SECONDS, secs, buf);
        }
        let allowed = self.answer.allowed();
        let number = if allowed {
            RESPONSE_OK
        } else {
            RESPONSE_DENIED
        };
        // The headers, gathered once (on the stack) for both their length and their bytes.
        let rate_limit = self.answer.rate_limit();
        let headers = self.headers(rate_limit.as_ref());
        message_header(number, self.http_response_len(&headers), buf);
        if allowed {
            for &(name, value) in &headers {
                header_option(OK_HEADERS, name, value, buf);
            }
            for name in self.gateway.headers_to_remove() {
                bytes_field(OK_HEADERS_TO_REMOVE, name.as_bytes(), buf);
            }
        } else {
            let status = self.http_status();
            message_header(
                DENIED_STATUS,
                varint_field_len(HTTP_STATUS_CODE, status),
                buf,
            );
            varint_field(HTTP_STATUS_CODE, status, buf);
            for &(name, value) in &headers {
                header_option(DENIED_HEADERS, name, value, buf);
            }
            bytes_field(DENIED_BODY, self.body().as_bytes(), buf);
        }
    }
}

#[cfg(test)]
mod tests;
