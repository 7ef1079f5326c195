//! The generated `keyward.v1` API, and the encoded descriptor set for server reflection.
//! Messages that carry a raw key get a hand-written `Debug` that redacts it.

#![allow(missing_docs, clippy::all)]

use std::fmt;

tonic::include_proto!("keyward.v1");

/// The encoded `FileDescriptorSet` of `proto/`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/keyward_descriptor.bin"));

const REDACTED: &str = "[REDACTED]";

impl fmt::Debug for VerifyRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyRequest")
            .field("key", &REDACTED)
            .field("required_scopes", &self.required_scopes)
            .field("context", &self.context)
            .field("environment", &self.environment)
            .field("cost", &self.cost)
            .finish()
    }
}

impl fmt::Debug for CreateKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateKeyResponse")
            .field("key", &REDACTED)
            .field("api_key", &self.api_key)
            .finish()
    }
}

impl fmt::Debug for RotateKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotateKeyResponse")
            .field("key", &REDACTED)
            .field("api_key", &self.api_key)
            .field("previous_api_key", &self.previous_api_key)
            .finish()
    }
}
