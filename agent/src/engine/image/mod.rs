//! Images: the content store, the image index, imports, layer unpacking and bundles.
//!
//! How the pieces meet:
//!
//! - [`content`]: blobs by sha256 digest (`<root>/content/blobs/sha256/<hex>`); manifests,
//!   configs and (still compressed) layers are all blobs, as in an OCI image layout;
//! - [`store::ImageStore`]: the image index `<root>/images.json` (`repository:tag` → manifest
//!   digest, config digest, layer chain), imports, lookups, tags, removal with garbage
//!   collection; every layer is unpacked once into a committed snapshot of the
//!   [`crate::engine::snapshot::OverlaySnapshotter`] (under `<root>/snapshots`) keyed by its
//!   chain id, shared by every image that has it;
//! - [`import`]: reading docker-archive, OCI archive / layout and plain rootfs tars;
//! - [`unpack`]: applying a layer tar into a snapshot's upper directory (the security boundary
//!   against hostile layers);
//! - [`bundle`]: an image meets the runtime: a mounted rootfs plus `config.json`.
//!
//! A registry pull can be added without reshaping anything: it writes blobs by digest into the
//! content store, then feeds the manifest and config through the same layer/snapshot path.

pub mod bundle;
pub mod content;
pub mod import;
pub mod reference;
pub mod store;
pub mod targuard;
pub mod unpack;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::engine::error::io_kind;
use crate::engine::snapshot::SnapshotError;
use crate::engine::ErrorKind;

pub use bundle::{
    create_bundle, create_bundle_with, prepare_bundle, remove_bundle, remove_bundle_or, Bundle,
    ProcessOverrides,
};
pub use store::ImageStore;

/// What [`ImageStore::import`] should read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImportFormat {
    /// docker-archive if there is a `manifest.json`, OCI if there are `oci-layout` and
    /// `index.json` (a tar or a directory), a rootfs tar otherwise.
    #[default]
    Auto,
    /// A filesystem tree as one layer, like `docker import`.
    RootfsTar,
    /// `docker save` output.
    DockerArchive,
    /// An OCI image layout, as a tar or a directory.
    OciArchive,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// Digest of the blob as stored (compressed or not).
    pub digest: String,
    /// Digest of the uncompressed tar.
    pub diff_id: String,
    /// The OCI chain id: the key of this layer's committed snapshot.
    pub chain_id: String,
    /// Blob size in bytes.
    pub size: u64,
    pub media_type: String,
    /// Size of the uncompressed tar.
    pub unpacked_size: u64,
}

/// An image as the index knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Fully qualified `repository:tag`, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// The config digest (what `docker images` shows as IMAGE ID).
    pub id: String,
    pub manifest_digest: String,
    pub config: oci_spec::image::ImageConfiguration,
    /// Bottom first.
    pub layers: Vec<Layer>,
    /// Sum of the uncompressed layer sizes.
    pub size: u64,
    /// From the config (RFC 3339), if it says.
    pub created: Option<String>,
}

impl Image {
    /// The chain id of the top layer: the parent of a container's snapshot.
    pub fn top_chain_id(&self) -> Option<&str> {
        self.layers.last().map(|l| l.chain_id.as_str())
    }
}

/// Errors of the image module.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("reference {0:?} is ambiguous: it matches more than one image id")]
    Ambiguous(String),
    #[error("invalid digest {0:?}: want sha256:<64 lowercase hex>")]
    InvalidDigest(String),
    #[error("image {image} is in use by snapshot {snapshot:?}: remove the container first")]
    InUse { image: String, snapshot: String },
    #[error("unsafe layer entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    #[error("failed to {op} layer entry {entry:?}: {source}")]
    Entry {
        entry: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("invalid image archive: {0}")]
    InvalidArchive(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("invalid image config: {0}")]
    InvalidConfig(String),
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("image metadata: {0}")]
    Metadata(String),
    #[error("{error}; cleanup also failed: {cleanup}")]
    WithCleanup {
        error: Box<ImageError>,
        cleanup: String,
    },
}

impl ImageError {
    pub fn kind(&self) -> ErrorKind {
        use ImageError::*;
        match self {
            NotFound(_) => ErrorKind::NotFound,
            InvalidReference { .. }
            | Ambiguous(_)
            | InvalidDigest(_)
            | UnsafeEntry { .. }
            | DigestMismatch { .. }
            | InvalidArchive(_)
            | Unsupported(_)
            | InvalidConfig(_) => ErrorKind::InvalidArgument,
            InUse { .. } => ErrorKind::FailedPrecondition,
            Entry { source, .. } | Io { source, .. } => io_kind(source),
            Snapshot(e) => e.kind(),
            Metadata(_) => ErrorKind::Internal,
            WithCleanup { error, .. } => error.kind(),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Converts an error of the shared `fsutil` helpers (which return the engine's top error).
impl From<crate::engine::EngineError> for ImageError {
    fn from(e: crate::engine::EngineError) -> Self {
        match e {
            crate::engine::EngineError::Io { op, path, source } => {
                ImageError::Io { op, path, source }
            }
            other => ImageError::Metadata(other.to_string()),
        }
    }
}

/// The GOARCH name of the host, as image configs and platforms spell it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

// Howard Hinnant's civil-from-days / days-from-civil, so we need no date crate for RFC 3339.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2024-05-01T12:00:00Z`.
pub fn format_rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// Parses the `YYYY-MM-DDTHH:MM:SS` part of an RFC 3339 time (fraction and zone ignored: close
/// enough for "3 hours ago").
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = UNIX_EPOCH + Duration::from_secs(1_714_564_800);
        let s = format_rfc3339(t);
        assert_eq!(s, "2024-05-01T12:00:00Z");
        assert_eq!(parse_rfc3339(&s), Some(t));
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00.123456789Z"), Some(t));
        assert_eq!(parse_rfc3339("garbage"), None);
    }
}
