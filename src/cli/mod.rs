//! The binary's client-side tools, kept out of the server library: the load generator.

pub mod bench;
