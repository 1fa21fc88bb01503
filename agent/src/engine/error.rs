//! The engine's top error type.
//!
//! Each engine module has its own `thiserror` enum; they all convert into [`EngineError`], whose
//! [`EngineError::kind`] is what the gRPC layer (and the CLI's exit codes) map from. Nothing
//! outside `server/status.rs` maps a kind to a gRPC code.

use std::path::PathBuf;

/// Coarse classification of an engine failure, stable across modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    ResourceExhausted,
    PermissionDenied,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("container {0:?} does not exist")]
    ContainerNotFound(String),
    #[error("container {0:?} already exists")]
    ContainerExists(String),
    #[error("invalid container id {0:?}: use 1-64 characters from [A-Za-z0-9_.-], not starting with '.' or '-'")]
    InvalidId(String),
    #[error("container {id:?} is {status}: cannot {verb}")]
    WrongState {
        id: String,
        status: String,
        verb: &'static str,
    },
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("unsupported in spec: {0}")]
    Unsupported(String),
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: nix::Error,
    },
    #[error("{msg}")]
    Exec { code: i32, msg: String },
    #[error("container init failed: {0}")]
    Init(String),
    #[error("{stage} hook {path} failed: {reason}")]
    Hook {
        stage: &'static str,
        path: String,
        reason: String,
    },
    #[error(transparent)]
    Cgroup(#[from] crate::engine::cgroups::CgroupError),
    #[error(transparent)]
    Image(#[from] crate::engine::image::ImageError),
    #[error(transparent)]
    Snapshot(#[from] crate::engine::snapshot::SnapshotError),
    /// Something the caller named does not exist ("image \"x\" not found on node n1").
    #[error("{0}")]
    Missing(String),
    /// A request that asks for what the node cannot give (admission control).
    #[error("{0}")]
    Exhausted(String),
    /// Bad input from a caller, said in the caller's terms.
    #[error("{0}")]
    InvalidArgument(String),
    /// A name or resource already taken.
    #[error("{0}")]
    Conflict(String),
    /// The request is valid but the state forbids it ("image is used by container web").
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Other(String),
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        use EngineError::*;
        match self {
            ContainerNotFound(_) => ErrorKind::NotFound,
            ContainerExists(_) => ErrorKind::AlreadyExists,
            InvalidId(_) | InvalidSpec(_) | Unsupported(_) => ErrorKind::InvalidArgument,
            WrongState { .. } => ErrorKind::FailedPrecondition,
            Io { source, .. } => io_kind(source),
            Sys { source, .. } => match source {
                nix::Error::EPERM | nix::Error::EACCES => ErrorKind::PermissionDenied,
                nix::Error::ENOSPC | nix::Error::ENOMEM | nix::Error::EAGAIN => {
                    ErrorKind::ResourceExhausted
                }
                _ => ErrorKind::Internal,
            },
            Exec { code, .. } if *code == 127 => ErrorKind::NotFound,
            Exec { .. } => ErrorKind::PermissionDenied,
            Init(_) | Hook { .. } | Other(_) => ErrorKind::Internal,
            Exhausted(_) => ErrorKind::ResourceExhausted,
            Missing(_) => ErrorKind::NotFound,
            InvalidArgument(_) => ErrorKind::InvalidArgument,
            Conflict(_) => ErrorKind::AlreadyExists,
            Precondition(_) => ErrorKind::FailedPrecondition,
            Cgroup(e) => e.kind(),
            Image(e) => e.kind(),
            Snapshot(e) => e.kind(),
        }
    }

    /// An I/O error that names the path it concerns.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub fn sys(op: impl Into<String>, source: nix::Error) -> Self {
        EngineError::Sys {
            op: op.into(),
            source,
        }
    }
}

/// Maps an I/O error to a kind: a full disk is exhaustion, not an internal fault.
pub fn io_kind(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound => ErrorKind::NotFound,
        K::AlreadyExists => ErrorKind::AlreadyExists,
        K::PermissionDenied => ErrorKind::PermissionDenied,
        K::InvalidInput | K::InvalidData => ErrorKind::InvalidArgument,
        K::StorageFull | K::QuotaExceeded | K::OutOfMemory => ErrorKind::ResourceExhausted,
        _ => ErrorKind::Internal,
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
