//! keyward's integration tests: the real server on `127.0.0.1:0`, the generated tonic clients,
//! real SQLite and PostgreSQL. Features run on both backends through `both_backends!`.

mod access;
mod ambiguous;
mod browser;
mod budgets;
mod caddy;
mod cli;
mod consistency;
mod credits;
mod deploy;
mod framing;
mod fuzz;
mod gateway;
mod helpers;
mod pg;

mod hostile;
mod http_api;
mod import;
mod key_limit;
mod keys;
mod layers;
mod leaks;
mod limits;
mod manage;
mod nginx;
mod offboard;
mod ops;
mod policy;
mod portal;
mod process;
mod reference;
mod store;
mod tls;
mod usage;
mod valkey;
