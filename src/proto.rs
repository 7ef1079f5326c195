//! The generated `keyward.v1` API, and the encoded descriptor set for server reflection.
//! Messages that carry a raw key get a hand-written `Debug` that redacts it.

#![allow(missing_docs, clippy::all)]

use std::fmt;

tonic::include_proto!("keyward.v1");

/// Envoy's ext_authz API (a vendored subset, wire-compatible): see `proto/envoy/README.md`.
pub mod envoy {
    /// `envoy.config`.
    pub mod config {
        /// `envoy.config.core`.
        pub mod core {
            /// `envoy.config.core.v3`.
            pub mod v3 {
                tonic::include_proto!("envoy.config.core.v3");
            }
        }
    }
    /// `envoy.type`.
    pub mod r#type {
        /// `envoy.type.v3`.
        pub mod v3 {
            include!(concat!(env!("OUT_DIR"), "/envoy.r#type.v3.rs"));
        }
    }
    /// `envoy.service`.
    pub mod service {
        /// `envoy.service.auth`.
        pub mod auth {
            /// `envoy.service.auth.v3`.
            pub mod v3 {
                tonic::include_proto!("envoy.service.auth.v3");
            }
        }
    }
}

include!(concat!(env!("OUT_DIR"), "/rpcs.rs"));

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

impl fmt::Debug for ReportLeakedKeysRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportLeakedKeysRequest")
            .field("keys", &format_args!("[{} redacted]", self.keys.len()))
            .field("source", &self.source)
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

impl fmt::Debug for CreatePortalSessionResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatePortalSessionResponse")
            .field("url", &REDACTED)
            .field("session", &self.session)
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

/// Header values are redacted: a request's headers carry its raw key.
impl fmt::Debug for envoy::config::core::v3::HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderValue")
            .field("key", &self.key)
            .field("value", &REDACTED)
            .finish()
    }
}

/// Only header names are shown: a request's headers carry its raw key.
impl fmt::Debug for envoy::service::auth::v3::attribute_context::HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.keys().map(String::as_str).collect();
        f.debug_struct("HttpRequest")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("header_names", &names)
            .field("header_map", &self.header_map)
            .field("path", &self.path)
            .field("host", &self.host)
            .field("scheme", &self.scheme)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}
