//! `minid`: the mini node agent.
//!
//! The crate is a library plus the `minid` binary. The library holds the synchronous container
//! [`engine`] (no tokio, no gRPC), the per-container [`shim`] that owns a running container, and
//! the OCI-runtime-compatible command line in [`runtime`]. The binary (`src/main.rs`) only parses
//! arguments and dispatches to these modules.

pub mod cli;
pub mod engine;
pub mod runtime;
pub mod shim;
