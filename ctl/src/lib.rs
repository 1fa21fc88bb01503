//! `minictl`: mini's command line, and the library behind it.
//!
//! [`commands`] holds one file per verb, each a clap struct that runs itself against a
//! [`client::Client`]; [`tls`] is the client side of mutual TLS; [`output`] renders tables and
//! JSON (nothing else prints results); [`pki`] makes and inspects the cluster's certificates
//! (the agent uses it too, for its development PKI).

pub mod client;
pub mod cluster;
pub mod commands;
pub mod output;
pub mod pki;
pub mod placement;
pub mod tls;
pub mod trace;
pub mod units;

/// Exit status when minictl or the node failed (Docker's 125).
pub const EXIT_FAILURE: i32 = 125;
