//! The binary's client-side tools, kept out of the server library: the load generator and the
//! management CLI.

pub mod bench;
pub mod manage;
