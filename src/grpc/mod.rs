//! The gRPC transport: thin adapters that validate, read the caller's identity, convert proto
//! messages into domain values, call [`crate::service::Keyward`] and convert back.

pub(crate) mod codec;
mod convert;
mod manage;
mod requests;
mod status;
pub(crate) mod trace;
mod verify;

pub use manage::ManageApi;
pub use trace::TraceLayer;
pub use verify::VerifyApi;
