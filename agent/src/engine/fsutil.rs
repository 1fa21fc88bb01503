//! Small filesystem helpers shared by the engine: atomic writes and JSON state files.
//!
//! Every piece of state the engine keeps on disk is replaced atomically: the bytes go to a
//! temporary file in the same directory and the file is renamed over the target, so a reader
//! (or a restarted agent) sees either the old or the new content, never a torn one. Whether
//! the write also waits for the disk (fsync of the file and its directory) is the caller's
//! [`Durability`]: durable for what outlives a reboot, volatile for runtime state on `/run`.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::engine::error::{EngineError, Result};

/// Whether a write must survive power loss, or only a crash of the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the file and its directory: image store and snapshot metadata under
    /// `/var/lib/minid`, which outlive a reboot.
    Durable,
    /// Rename only: readers still never see a torn file, but nothing waits for the disk.
    /// For the runtime's container state under `/run`, which a reboot discards anyway (and
    /// whose fsyncs were the largest cost of starting a container).
    Volatile,
}

/// Writes `data` to `path` atomically and durably (temp file + fsync + rename + fsync of the
/// directory).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_atomic_with(path, data, Durability::Durable)
}

/// Writes `data` to `path` atomically (temp file + rename), fsyncing as `durability` says.
pub fn write_atomic_with(path: &Path, data: &[u8], durability: Durability) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| EngineError::Other(format!("{} has no parent directory", path.display())))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per write, not just per process: threads of one process (minid serve) may write
    // the same file at once, and a shared temp name would let one truncate the other's.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp.{}.{seq}", std::process::id()));
    let res = (|| {
        let mut f = File::create(&tmp).map_err(|e| EngineError::io("create", &tmp, e))?;
        f.write_all(data)
            .map_err(|e| EngineError::io("write", &tmp, e))?;
        if durability == Durability::Durable {
            f.sync_all()
                .map_err(|e| EngineError::io("fsync", &tmp, e))?;
        }
        fs::rename(&tmp, path).map_err(|e| EngineError::io("rename into place", path, e))?;
        if durability == Durability::Durable {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Serializes `value` as JSON and writes it atomically and durably.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_json_atomic_with(path, value, Durability::Durable)
}

/// Serializes `value` as JSON and writes it atomically, fsyncing as `durability` says.
pub fn write_json_atomic_with<T: serde::Serialize>(
    path: &Path,
    value: &T,
    durability: Durability,
) -> Result<()> {
    let data = serde_json::to_vec_pretty(value)
        .map_err(|e| EngineError::Other(format!("failed to encode {}: {e}", path.display())))?;
    write_atomic_with(path, &data, durability)
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

/// Whether `p` (a file or a directory) is a mount point: on another device than its parent.
pub fn is_mountpoint(p: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(p), p.parent().map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
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
