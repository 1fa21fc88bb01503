//! mini's gRPC API, generated from `proto/mini/v1/*.proto` (package `mini.v1`). No logic lives
//! here: the agent implements the servers (`minid serve`), minictl uses the clients.

#![allow(clippy::all, missing_docs)]

/// Package `mini.v1`: ContainerService, ImageService, NodeService and their messages.
pub mod v1 {
    tonic::include_proto!("mini.v1");
}

/// The API version string a node reports (`VersionResponse.api_version`).
pub const API_VERSION: &str = "mini.v1";
