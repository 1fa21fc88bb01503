//! `minid`: the mini node agent.
//!
//! The crate is a library plus the `minid` binary. The library holds the synchronous container
//! [`engine`] (no tokio, no gRPC), the per-container [`shim`] that owns a running container, and
//! the OCI-runtime-compatible command line in [`runtime`]. `minid serve` is [`server`] (gRPC over
//! the mutual TLS of [`tls`]) on top of [`daemon`], which manages the node's containers. The
//! binary (`src/main.rs`) only parses arguments and dispatches to these modules.

pub mod cli;
pub mod daemon;
pub mod engine;
pub mod runtime;
pub mod server;
pub mod shim;
pub mod telemetry;
pub mod tls;
