//! The one place where engine errors become gRPC statuses.
//!
//! The code comes from [`EngineError::kind`]; the message is the error's text, which names
//! what was wrong in the caller's terms. A viewer-role caller never sees host paths: for
//! them, an error that carries a path (an I/O failure) is reduced to its kind.

use tonic::{Code, Status};

use crate::engine::error::{EngineError, ErrorKind};

pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Internal => Code::Internal,
    }
}

/// Status metadata carrying the shell's code of a command that could not be run (126: not
/// executable, 127: not found), for clients that exit with it as Docker does.
pub const EXEC_CODE: &str = "mini-exec-code";

/// The status for `e`, as seen by a caller who may (`operator`) or may not see host details.
pub fn to_status(e: EngineError, operator: bool) -> Status {
    let code = code(e.kind());
    let exec_code = match &e {
        EngineError::Exec { code, .. } => Some(*code),
        _ => None,
    };
    let msg = match &e {
        EngineError::Io { op, .. } if !operator => {
            format!("the node failed to {op} a file ({:?})", e.kind())
        }
        EngineError::Exec { code, msg } => format!("{msg} (exit code {code})"),
        _ => e.to_string(),
    };
    if code == Code::Internal {
        tracing::error!(error = %e, "internal error");
    }
    let mut status = Status::new(code, msg);
    if let Some(c) = exec_code {
        if let Ok(v) = c.to_string().parse() {
            status.metadata_mut().insert(EXEC_CODE, v);
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_codes_and_viewers_see_no_paths() {
        let e = EngineError::Exhausted("node n1 has 100m CPU unallocated".into());
        assert_eq!(to_status(e, true).code(), Code::ResourceExhausted);
        let e = EngineError::ContainerNotFound("web".into());
        assert_eq!(to_status(e, false).code(), Code::NotFound);
        let e = EngineError::io(
            "read",
            "/var/lib/minid/secret",
            std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        );
        let s = to_status(e, false);
        assert_eq!(s.code(), Code::PermissionDenied);
        assert!(s.metadata().get(EXEC_CODE).is_none());
        let s = to_status(
            EngineError::Exec {
                code: 127,
                msg: "exec: \"/nope\": no such file or directory".into(),
            },
            true,
        );
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(
            s.metadata()
                .get(EXEC_CODE)
                .map(|v| v.to_str().unwrap_or("")),
            Some("127")
        );
        assert!(!s.message().contains("/var/lib"), "{}", s.message());
    }
}
