//! keyward: an API-key service. Creates keys, stores only their SHA-256 digests, and answers
//! API gateways, per request, whether a key is valid and may do this — from a cache, in well
//! under a millisecond.
//!
//! Layout: `grpc` (transport adapters) → `service` (domain orchestration) with `verify` (the
//! pure decision) and `cache` → `store` (SQLite / PostgreSQL).

#![forbid(unsafe_code)]

pub(crate) mod audit;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod duration;
pub mod error;
pub mod gateway;
mod grpc;
pub mod http;
pub mod ids;
pub mod key;
pub(crate) mod known;
pub mod limits;
pub(crate) mod metrics;
pub mod model;
pub mod net;
pub(crate) mod page_token;
pub mod portal;
pub mod proto;
pub mod ratelimit;
pub(crate) mod redact;
pub(crate) mod request;
pub mod restriction;
pub mod scope;
pub mod server;
pub mod service;
pub(crate) mod stats;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod usage;
pub mod verify;
