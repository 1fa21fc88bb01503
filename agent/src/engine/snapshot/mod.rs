//! Snapshots: immutable, shared filesystem layers and the writable layer a container gets on top.
//!
//! This follows containerd's snapshotter model (`core/snapshots/snapshotter.go`). A snapshot is
//! identified by a caller-chosen *key*. [`Snapshotter::prepare`] creates an *active* (writable)
//! snapshot on top of a *committed* parent; an applier writes a layer diff into
//! [`Snapshotter::upper_dir`]; [`Snapshotter::commit`] turns it into an immutable committed
//! snapshot under a new name (the image store uses the layer's chain id). Containers get an active
//! snapshot on top of their image's top layer; [`Snapshotter::view`] gives a read-only one.
//!
//! A snapshotter never mounts anything itself: [`Snapshotter::mounts`] returns [`Mount`]
//! *descriptions* (overlay lowerdir/upperdir/workdir, or a bind mount for a single layer), which
//! the runtime performs with [`Mount::mount_at`] / [`mount_all`] inside the right mount
//! namespace. The only implementation today is [`OverlaySnapshotter`]; every implementation must
//! pass the shared conformance suite in `agent/tests/snapshot_conformance.rs`.

mod mount;
mod overlay;

use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::engine::error::io_kind;
use crate::engine::ErrorKind;

pub use mount::{mount_all, unmount, unmount_all, Mount};
pub use overlay::OverlaySnapshotter;

/// What a snapshot is for; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Writable; can be committed.
    Active,
    /// Read-only view of a committed parent; cannot be committed.
    View,
    /// Immutable; may be the parent of other snapshots.
    Committed,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Active => "active",
            Kind::View => "view",
            Kind::Committed => "committed",
        })
    }
}

/// What [`Snapshotter::stat`] knows about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    pub key: String,
    pub parent: Option<String>,
    pub kind: Kind,
    pub created: SystemTime,
}

/// Errors of the snapshot module.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot {0:?} does not exist")]
    NotFound(String),
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),
    #[error("invalid snapshot key {0:?}: use 1-256 characters, no NUL")]
    InvalidKey(String),
    #[error("snapshot {key:?} is the parent of {child:?}: remove the child first")]
    InUse { key: String, child: String },
    #[error("snapshot {key:?} is {kind}: cannot {op}")]
    WrongKind {
        key: String,
        kind: Kind,
        op: &'static str,
    },
    #[error("parent snapshot {0:?} is not committed")]
    ParentNotCommitted(String),
    #[error("invalid snapshotter root {path}: {reason}")]
    InvalidRoot { path: PathBuf, reason: String },
    #[error("invalid mount {0}")]
    InvalidMount(String),
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to mount {fstype} on {target}: {reason}")]
    Mount {
        fstype: String,
        target: PathBuf,
        reason: String,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot metadata: {0}")]
    Metadata(String),
}

impl SnapshotError {
    pub fn kind(&self) -> ErrorKind {
        use SnapshotError::*;
        match self {
            NotFound(_) => ErrorKind::NotFound,
            AlreadyExists(_) => ErrorKind::AlreadyExists,
            InvalidKey(_) | InvalidRoot { .. } | InvalidMount(_) => ErrorKind::InvalidArgument,
            InUse { .. } | WrongKind { .. } | ParentNotCommitted(_) => {
                ErrorKind::FailedPrecondition
            }
            Io { source, .. } => io_kind(source),
            Mount { source, .. } => match source.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => ErrorKind::PermissionDenied,
                Some(libc::ENOMEM) | Some(libc::ENOSPC) => ErrorKind::ResourceExhausted,
                _ => ErrorKind::Internal,
            },
            Metadata(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        SnapshotError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Converts an error of the shared `fsutil` helpers (which return the engine's top error).
impl From<crate::engine::EngineError> for SnapshotError {
    fn from(e: crate::engine::EngineError) -> Self {
        match e {
            crate::engine::EngineError::Io { op, path, source } => {
                SnapshotError::Io { op, path, source }
            }
            other => SnapshotError::Metadata(other.to_string()),
        }
    }
}

/// The containerd snapshotter contract; see the module docs.
pub trait Snapshotter {
    /// Creates a writable active snapshot `key` on top of the committed `parent`.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError>;
    /// Creates a read-only view `key` of the committed `parent`.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError>;
    /// Describes the mounts of an active snapshot or view.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError>;
    /// Turns the active snapshot `key` into the immutable committed snapshot `name`.
    fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError>;
    /// Removes a snapshot; refuses one that is the parent of another.
    fn remove(&self, key: &str) -> Result<(), SnapshotError>;
    fn stat(&self, key: &str) -> Result<Info, SnapshotError>;
    fn list(&self) -> Result<Vec<Info>, SnapshotError>;
    /// The directory where an applier writes a layer diff for the active snapshot `key`.
    fn upper_dir(&self, key: &str) -> Result<PathBuf, SnapshotError>;
}
