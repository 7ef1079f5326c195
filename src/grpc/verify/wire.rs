//! The `VerifyRequest` decoded by prost into a message trimmed to the fields keyward reads,
//! and the `VerifyResponse` written straight to the wire from the decision and the cached key.
//!
//! The trimmed message is prost's own decoding (its rules, its refusals: strings must be UTF-8,
//! later scalars win, a repeated message merges); measured against a hand-written reader of the
//! same fields it costs the same within noise (docs/benchmarks.md). Building the generated
//! `VerifyResponse` copied the key's id, account, name and scopes into owned strings, only for
//! prost to copy them again into the buffer, so the answer is written from the borrowed values
//! (proto3 rules: default scalars left out, a set message written even when empty). `tests`
//! checks both against the generated types.

use std::fmt;

use bytes::{BufMut, Bytes};

use crate::grpc::convert::environment;
use crate::grpc::protobuf::{
    Malformed, ReadInPlace, WriteInPlace, bytes_field, bytes_field_len, message_field_len,
    message_header, varint_field, varint_field_len,
};
use crate::limits::MAX_SCOPES;
use crate::model::CachedKey;
use crate::proto;
use crate::time::Timestamp;
use crate::verify::{Code, Decision, RequiredScopes};

/// A Verify request as the codec read it.
pub type VerifyRead = crate::grpc::gateway::Read<VerifyInput>;

/// What a `VerifyRequest` holds: the message trimmed to what keyward reads, decoded by prost.
pub struct VerifyInput {
    request: VerifyRequest,
}

/// The end client's request as a `VerifyRequest` describes it, borrowed from the request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context<'a> {
    /// `context.method`.
    pub method: &'a str,
    /// `context.path`.
    pub path: &'a str,
    /// `context.client_ip`.
    pub client_ip: &'a str,
    /// `context.referrer`.
    pub referrer: &'a str,
}

impl VerifyInput {
    /// `key`.
    pub fn key(&self) -> &str {
        &self.request.key
    }

    /// `required_scopes`, at most [`MAX_SCOPES`] + 1 of them.
    pub fn required_scopes(&self) -> RequiredScopes<'_> {
        self.request
            .required_scopes
            .iter()
            .take(MAX_SCOPES + 1)
            .map(String::as_str)
            .collect()
    }

    /// `context`, empty strings when absent.
    pub fn context(&self) -> Option<Context<'_>> {
        self.request.context.as_ref().map(|c| Context {
            method: &c.method,
            path: &c.path,
            client_ip: &c.client_ip,
            referrer: &c.referrer,
        })
    }

    /// `environment`, as the enum's number.
    pub fn environment(&self) -> i32 {
        self.request.environment
    }

    /// `cost`.
    pub fn cost(&self) -> u32 {
        self.request.cost
    }

    /// `view`, as the enum's number.
    pub fn view(&self) -> i32 {
        self.request.view
    }
}

/// The key is secret: only the sizes are shown.
impl fmt::Debug for VerifyInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.request.fmt(f)
    }
}

impl fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyRequest")
            .field("key_bytes", &self.key.len())
            .field("required_scopes", &self.required_scopes.len())
            .finish_non_exhaustive()
    }
}

// keyward.v1 field numbers (proto/keyward/v1/verify.proto).
/// `VerifyResponse`.
const VALID: u32 = 1;
const CODE: u32 = 2;
const HTTP_STATUS: u32 = 3;
const MESSAGE: u32 = 4;
const KEY: u32 = 5;
const MISSING_SCOPES: u32 = 6;
const RATE_LIMIT: u32 = 7;
const RETRY_AFTER: u32 = 8;
const CREDITS: u32 = 9;
/// `KeyInfo`.
const KEY_ID: u32 = 1;
const ACCOUNT_ID: u32 = 2;
const NAME: u32 = 3;
const ENVIRONMENT: u32 = 4;
const SCOPES: u32 = 5;
const GRANT_ALL: u32 = 6;
const META: u32 = 7;
const EXPIRES_AT: u32 = 8;
/// A map entry's key and value.
const ENTRY_KEY: u32 = 1;
const ENTRY_VALUE: u32 = 2;
/// `RateLimitStatus`.
const LIMIT: u32 = 1;
const REMAINING: u32 = 2;
const RESET_AT: u32 = 3;
/// `CreditsStatus`.
const CREDITS_REMAINING: u32 = 1;
const REFILL_AT: u32 = 2;
/// `google.protobuf.Timestamp` / `Duration`: seconds, nanos.
const SECONDS: u32 = 1;
const NANOS: u32 = 2;

/// The answer to one Verify: the decision, in the full or the basic view (AIP-157).
#[derive(Debug)]
pub struct VerifyOutput {
    decision: Decision,
    basic: bool,
}

impl VerifyOutput {
    /// The answer to `decision`; `basic` leaves out the key's name, grant, metadata and expiry.
    pub fn new(decision: Decision, basic: bool) -> Self {
        VerifyOutput { decision, basic }
    }

    /// `KeyInfo`'s length in this view.
    fn key_info_len(&self, key: &CachedKey) -> usize {
        let identity = bytes_field_len(KEY_ID, key.id().len())
            + bytes_field_len(ACCOUNT_ID, key.account_id().len())
            + varint_field_len(ENVIRONMENT, environment(key.environment()) as u64);
        if self.basic {
            return identity;
        }
        identity
            + bytes_field_len(NAME, key.name().len())
            + key
                .scopes()
                .map(|s| message_field_len(SCOPES, s.len()))
                .sum::<usize>()
            + varint_field_len(GRANT_ALL, u64::from(key.grant_all()))
            + key
                .meta()
                .into_iter()
                .flatten()
                .map(|(k, v)| message_field_len(META, entry_len(k, v)))
                .sum::<usize>()
            + key
                .expires_at()
                .map_or(0, |at| message_field_len(EXPIRES_AT, timestamp_len(at)))
    }
}

/// One element of a `repeated string`: written even when empty, as prost does.
fn repeated_string(number: u32, value: &str, buf: &mut impl BufMut) {
    message_header(number, value.len(), buf);
    buf.put_slice(value.as_bytes());
}

fn entry_len(key: &str, value: &str) -> usize {
    bytes_field_len(ENTRY_KEY, key.len()) + bytes_field_len(ENTRY_VALUE, value.len())
}

/// `google.protobuf.Timestamp`'s fields: int64 seconds and int32 nanos, as varints of their
/// two's complement (as protobuf writes negative numbers).
fn timestamp_parts(at: Timestamp) -> (u64, u64) {
    let (seconds, nanos) = at.to_parts();
    (seconds as u64, i64::from(nanos) as u64)
}

fn timestamp_len(at: Timestamp) -> usize {
    let (seconds, nanos) = timestamp_parts(at);
    varint_field_len(SECONDS, seconds) + varint_field_len(NANOS, nanos)
}

fn timestamp(number: u32, at: Timestamp, buf: &mut impl BufMut) {
    let (seconds, nanos) = timestamp_parts(at);
    message_header(number, timestamp_len(at), buf);
    varint_field(SECONDS, seconds, buf);
    varint_field(NANOS, nanos, buf);
}

/// The proto code of a verify code.
fn code(code: Code) -> proto::VerifyCode {
    use proto::VerifyCode as P;
    match code {
        Code::Valid => P::Valid,
        Code::Missing => P::Missing,
        Code::Malformed => P::Malformed,
        Code::NotFound => P::NotFound,
        Code::Revoked => P::Revoked,
        Code::Expired => P::Expired,
        Code::WrongEnvironment => P::WrongEnvironment,
        Code::AccountDisabled => P::AccountDisabled,
        Code::IpNotAllowed => P::IpNotAllowed,
        Code::ReferrerNotAllowed => P::ReferrerNotAllowed,
        Code::MethodNotAllowed => P::MethodNotAllowed,
        Code::PathNotAllowed => P::PathNotAllowed,
        Code::InsufficientScope => P::InsufficientScope,
        Code::UsageExceeded => P::UsageExceeded,
        Code::RateLimited => P::RateLimited,
    }
}

/// `keyward.v1.VerifyRequest` (proto/keyward/v1/verify.proto) with the fields keyward reads:
/// all of them today, so a field added to the proto is skipped here until it is added here too
/// (`tests` compares the two). Its `Debug` is [`VerifyInput`]'s: never the key.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
struct VerifyRequest {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, repeated, tag = "2")]
    required_scopes: Vec<String>,
    #[prost(message, optional, tag = "3")]
    context: Option<RequestContext>,
    #[prost(int32, tag = "4")]
    environment: i32,
    #[prost(uint32, tag = "5")]
    cost: u32,
    #[prost(int32, tag = "6")]
    view: i32,
}

/// `keyward.v1.RequestContext`, as [`VerifyRequest`].
#[derive(Clone, PartialEq, prost::Message)]
struct RequestContext {
    #[prost(string, tag = "1")]
    method: String,
    #[prost(string, tag = "2")]
    path: String,
    #[prost(string, tag = "3")]
    client_ip: String,
    #[prost(string, tag = "4")]
    referrer: String,
}

impl ReadInPlace for VerifyInput {
    /// Decodes the trimmed message.
    fn read(body: Bytes) -> Result<Self, Malformed> {
        // prost's error names the field (`VerifyRequest.context: RequestContext.path: …`).
        let request = <VerifyRequest as prost::Message>::decode(body)
            .map_err(|e| Malformed(e.to_string()))?;
        Ok(VerifyInput { request })
    }
}

impl WriteInPlace for VerifyOutput {
    /// Writes the encoded `VerifyResponse`.
    fn write(&self, buf: &mut impl BufMut) {
        let d = &self.decision;
        varint_field(VALID, u64::from(d.code == Code::Valid), buf);
        varint_field(CODE, code(d.code) as u64, buf);
        varint_field(HTTP_STATUS, d.code.http_status().into(), buf);
        bytes_field(MESSAGE, d.code.message().as_bytes(), buf);
        if let Some(state) = &d.key {
            let key = &state.key;
            message_header(KEY, self.key_info_len(key), buf);
            bytes_field(KEY_ID, key.id().as_bytes(), buf);
            bytes_field(ACCOUNT_ID, key.account_id().as_bytes(), buf);
            if !self.basic {
                bytes_field(NAME, key.name().as_bytes(), buf);
            }
            varint_field(ENVIRONMENT, environment(key.environment()) as u64, buf);
            if !self.basic {
                for scope in key.scopes() {
                    repeated_string(SCOPES, scope, buf);
                }
                varint_field(GRANT_ALL, u64::from(key.grant_all()), buf);
                for (k, v) in key.meta().into_iter().flatten() {
                    message_header(META, entry_len(k, v), buf);
                    bytes_field(ENTRY_KEY, k.as_bytes(), buf);
                    bytes_field(ENTRY_VALUE, v.as_bytes(), buf);
                }
                if let Some(at) = key.expires_at() {
                    timestamp(EXPIRES_AT, at, buf);
                }
            }
        }
        for scope in &d.missing_scopes {
            repeated_string(MISSING_SCOPES, scope, buf);
        }
        if let Some(status) = &d.rate_limit {
            let reset = timestamp_len(status.reset_at);
            let len = varint_field_len(LIMIT, status.limit.into())
                + varint_field_len(REMAINING, status.remaining.into())
                + message_field_len(RESET_AT, reset);
            message_header(RATE_LIMIT, len, buf);
            varint_field(LIMIT, status.limit.into(), buf);
            varint_field(REMAINING, status.remaining.into(), buf);
            timestamp(RESET_AT, status.reset_at, buf);
        }
        if let Some(wait) = d.retry_after {
            let seconds = i64::try_from(wait.as_secs()).unwrap_or(i64::MAX) as u64;
            let nanos = u64::from(wait.subsec_nanos());
            let len = varint_field_len(SECONDS, seconds) + varint_field_len(NANOS, nanos);
            message_header(RETRY_AFTER, len, buf);
            varint_field(SECONDS, seconds, buf);
            varint_field(NANOS, nanos, buf);
        }
        if let Some(credits) = &d.credits {
            let len = varint_field_len(CREDITS_REMAINING, credits.remaining)
                + credits
                    .refill_at
                    .map_or(0, |at| message_field_len(REFILL_AT, timestamp_len(at)));
            message_header(CREDITS, len, buf);
            varint_field(CREDITS_REMAINING, credits.remaining, buf);
            if let Some(at) = credits.refill_at {
                timestamp(REFILL_AT, at, buf);
            }
        }
    }
}

#[cfg(test)]
mod tests;
