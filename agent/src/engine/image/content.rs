//! The content store: blobs addressed by their sha256 digest.
//!
//! `<root>/content/blobs/sha256/<hex>` holds every manifest, config and layer exactly as
//! received (layers stay compressed). A blob is written to `<root>/content/ingest/`, hashed while
//! it is written, fsynced, checked against the digest the caller expected and only then renamed
//! into place, so a blob path always holds content matching its name. This is the OCI image
//! layout's own `blobs/<alg>/<hex>` shape, which is what a registry pull will write into too.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::ImageError;

/// A blob in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    pub digest: String,
    pub size: u64,
    /// True when this call put the blob into the store (it was not there before).
    pub created: bool,
}

/// Checks `sha256:<64 lowercase hex>`; digests name files, so this is also a path check.
pub fn validate_digest(d: &str) -> Result<&str, ImageError> {
    let hex = d
        .strip_prefix("sha256:")
        .ok_or_else(|| ImageError::InvalidDigest(d.to_string()))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(ImageError::InvalidDigest(d.to_string()));
    }
    Ok(hex)
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

static NONCE: AtomicU64 = AtomicU64::new(0);

impl ContentStore {
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let root = root.join("content");
        for d in [root.join("blobs/sha256"), root.join("ingest")] {
            fs::create_dir_all(&d).map_err(|e| ImageError::io("create", &d, e))?;
        }
        // Blobs are whole layers and configs (which may hold secrets): root only.
        fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| ImageError::io("chmod 0700", &root, e))?;
        Ok(ContentStore { root })
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = validate_digest(digest)?;
        Ok(self.root.join("blobs/sha256").join(hex))
    }

    pub fn exists(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.exists()).unwrap_or(false)
    }

    /// Streams `r` into the store; refuses it if `expected` is given and does not match.
    pub fn ingest<R: Read>(&self, mut r: R, expected: Option<&str>) -> Result<BlobRef, ImageError> {
        if let Some(d) = expected {
            validate_digest(d)?;
        }
        let tmp = self.root.join("ingest").join(format!(
            "{}-{}",
            std::process::id(),
            NONCE.fetch_add(1, Ordering::Relaxed)
        ));
        let res = (|| {
            let mut f = File::create(&tmp).map_err(|e| ImageError::io("create", &tmp, e))?;
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            let mut size = 0u64;
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(ImageError::InvalidArchive(format!(
                            "failed to read blob: {e}"
                        )))
                    }
                };
                h.update(&buf[..n]);
                f.write_all(&buf[..n])
                    .map_err(|e| ImageError::io("write", &tmp, e))?;
                size += n as u64;
            }
            f.sync_all().map_err(|e| ImageError::io("fsync", &tmp, e))?;
            let digest = format!("sha256:{}", hex::encode(h.finalize()));
            if let Some(exp) = expected {
                if exp != digest {
                    return Err(ImageError::DigestMismatch {
                        what: "blob".into(),
                        expected: exp.to_string(),
                        actual: digest,
                    });
                }
            }
            let dst = self.blob_path(&digest)?;
            if dst.exists() {
                let _ = fs::remove_file(&tmp);
                return Ok(BlobRef {
                    digest,
                    size,
                    created: false,
                });
            }
            fs::rename(&tmp, &dst).map_err(|e| ImageError::io("rename into place", &dst, e))?;
            // The index that will name this blob is written durably: the blob's directory
            // entry must reach the disk first, or a crash leaves the index pointing at nothing.
            if let Some(parent) = dst.parent() {
                if let Ok(d) = fs::File::open(parent) {
                    let _ = d.sync_all();
                }
            }
            Ok(BlobRef {
                digest,
                size,
                created: true,
            })
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    pub fn ingest_bytes(&self, data: &[u8]) -> Result<BlobRef, ImageError> {
        self.ingest(data, None)
    }

    pub fn open_blob(&self, digest: &str) -> Result<File, ImageError> {
        let p = self.blob_path(digest)?;
        File::open(&p).map_err(|e| ImageError::io("open", &p, e))
    }

    /// Reads a small blob (manifest, config) into memory, refusing one over `limit` bytes.
    pub fn read(&self, digest: &str, limit: u64) -> Result<Vec<u8>, ImageError> {
        let p = self.blob_path(digest)?;
        let f = File::open(&p).map_err(|e| ImageError::io("open", &p, e))?;
        let mut out = Vec::new();
        f.take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| ImageError::io("read", &p, e))?;
        if out.len() as u64 > limit {
            return Err(ImageError::InvalidArchive(format!(
                "blob {digest} is larger than {limit} bytes"
            )));
        }
        Ok(out)
    }

    pub fn remove(&self, digest: &str) -> Result<(), ImageError> {
        let p = self.blob_path(digest)?;
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io("remove", &p, e)),
        }
    }

    /// Every blob digest in the store.
    pub fn list(&self) -> Result<Vec<String>, ImageError> {
        let d = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&d).map_err(|e| ImageError::io("read", &d, e))? {
            let e = e.map_err(|e| ImageError::io("read", &d, e))?;
            let name = format!("sha256:{}", e.file_name().to_string_lossy());
            if validate_digest(&name).is_ok() {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Removes ingest files left by a crashed import (call with the store lock held).
    pub fn clean_ingest(&self) {
        let d = self.root.join("ingest");
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_verifies_and_dedups() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cs = ContentStore::open(tmp.path()).expect("open");
        let d = sha256_digest(b"hello");
        let a = cs.ingest(&b"hello"[..], Some(&d)).expect("ingest");
        assert!(a.created);
        assert_eq!(a.size, 5);
        let b = cs.ingest_bytes(b"hello").expect("again");
        assert!(!b.created);
        let bad = cs.ingest(&b"other"[..], Some(&d)).expect_err("must fail");
        assert!(matches!(bad, ImageError::DigestMismatch { .. }), "{bad}");
        assert_eq!(cs.list().expect("list"), vec![d.clone()]);
        assert_eq!(
            fs::read_dir(tmp.path().join("content/ingest"))
                .expect("rd")
                .count(),
            0
        );
    }

    #[test]
    fn digests_are_path_checked() {
        assert!(validate_digest("sha256:../../etc").is_err());
        assert!(validate_digest(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(validate_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
    }
}
