//! Small filesystem helpers shared by the engine: atomic writes and JSON state files.
//!
//! Every piece of state the engine keeps on disk is written with [`write_atomic`]: the bytes go
//! to a temporary file in the same directory, are fsynced, and the file is renamed over the
//! target, so a reader (or a restarted agent) sees either the old or the new content, never a
//! torn one.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::engine::error::{EngineError, Result};

/// Writes `data` to `path` atomically (temp file + fsync + rename + fsync of the directory).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| EngineError::Other(format!("{} has no parent directory", path.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let res = (|| {
        let mut f = File::create(&tmp).map_err(|e| EngineError::io("create", &tmp, e))?;
        f.write_all(data)
            .map_err(|e| EngineError::io("write", &tmp, e))?;
        f.sync_all()
            .map_err(|e| EngineError::io("fsync", &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| EngineError::io("rename into place", path, e))?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Serializes `value` as JSON and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    let data = serde_json::to_vec_pretty(value)
        .map_err(|e| EngineError::Other(format!("failed to encode {}: {e}", path.display())))?;
    write_atomic(path, &data)
}

/// Reads and decodes a JSON file; a decode failure names the file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let data = fs::read(path).map_err(|e| EngineError::io("read", path, e))?;
    serde_json::from_slice(&data).map_err(|e| {
        EngineError::io(
            "decode",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("state.json");
        write_atomic(&p, b"one").expect("first write");
        write_atomic(&p, b"two").expect("second write");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn atomic_write_into_missing_dir_fails_with_path() {
        let err = write_atomic(Path::new("/nonexistent-mini-dir/x"), b"x").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-mini-dir"), "{err}");
    }
}
