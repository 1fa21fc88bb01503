//! Command-line front ends of the `minid` binary that are not the OCI runtime CLI.

pub mod image;
pub mod overrides;
