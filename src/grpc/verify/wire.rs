//! The `VerifyResponse`, written straight to the wire from the decision and the cached key.
//!
//! Building the generated `VerifyResponse` first copied the key's id, account, name and scopes
//! into owned strings on every call, only for prost to copy them again into the buffer. This
//! writes the same bytes (proto3 rules: default scalars left out, a set message written even
//! when empty) from the borrowed values; `tests` checks it against prost's encoding of the
//! generated message for every code and view. The request is still decoded by prost.

use bytes::BufMut;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, Encoder};

use crate::grpc::codec::KeywardDecoder;
use crate::grpc::convert::environment;
use crate::grpc::protobuf::{
    bytes_field, bytes_field_len, message_field_len, message_header, varint_field, varint_field_len,
};
use crate::model::CachedKey;
use crate::proto::{self, VerifyRequest};
use crate::time::Timestamp;
use crate::verify::{Code, Decision};

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

    /// Writes the encoded `VerifyResponse`.
    pub(crate) fn encode(&self, buf: &mut impl BufMut) {
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
        Code::RateLimited => P::RateLimited,
    }
}

/// The codec of `Verify`: prost's `VerifyRequest` in, [`VerifyOutput`] out.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyCodec;

impl Codec for VerifyCodec {
    type Encode = VerifyOutput;
    type Decode = VerifyRequest;
    type Encoder = VerifyEncoder;
    type Decoder = KeywardDecoder<VerifyRequest>;

    fn encoder(&mut self) -> VerifyEncoder {
        VerifyEncoder
    }

    fn decoder(&mut self) -> KeywardDecoder<VerifyRequest> {
        KeywardDecoder::default()
    }
}

/// Writes a [`VerifyOutput`] as a `VerifyResponse`.
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyEncoder;

impl Encoder for VerifyEncoder {
    type Item = VerifyOutput;
    type Error = Status;

    fn encode(
        &mut self,
        item: VerifyOutput,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        item.encode(buf);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

#[cfg(test)]
mod tests;
