//! The container engine: synchronous, and knowing nothing of gRPC.
//!
//! An OCI bundle (`config.json` + rootfs) goes in; a container owned by a [`crate::shim`] comes
//! out. The pieces, in the order a container meets them:
//!
//! - [`image`]: the content store (sha256 blobs), the image index and imports;
//! - [`snapshot`]: immutable, shared layers and the writable overlay a container gets on top;
//! - [`spec`]: loading and validating the OCI runtime spec; anything we cannot honour is refused;
//! - [`container`]: the container's on-disk state and one file per verb (create, start, kill,
//!   delete, state);
//! - [`process`]: cloning the init process and everything the init does before `execve`;
//! - [`namespaces`], [`rootfs`], [`cgroups`], [`hooks`]: the kernel mechanisms the init and its
//!   parent use.

pub mod cgroups;
pub mod container;
pub mod error;
pub mod fsutil;
pub mod hooks;
pub mod image;
pub mod namespaces;
pub mod network;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod snapshot;
pub mod spec;

pub use error::{EngineError, ErrorKind, Result};
