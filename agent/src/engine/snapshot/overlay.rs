//! The overlayfs snapshotter (modelled on containerd's `plugins/snapshots/overlay`).
//!
//! Layout under the root (e.g. `/var/lib/minid/snapshots`):
//!
//! ```text
//! metadata.json        key -> {id, parent, kind, created}, next id; written atomically
//! lock                 flock(2) taken for every read-modify-write of metadata.json
//! snapshots/<id>/fs    the layer's files (the upperdir while active)
//! snapshots/<id>/work  overlay's workdir (active snapshots only)
//! ```
//!
//! Directories are named by short decimal ids, not by key or digest, so that a 128-layer
//! `lowerdir=` stays as short as possible (see [`super::mount`] for what happens past one page).
//! The metadata is written after a directory is created and before it is removed, so a crash
//! can leave only an orphan directory, which [`OverlaySnapshotter::open`] sweeps.
//!
//! Mounts follow containerd: an active snapshot with no parent is a bind mount of its `fs`; a
//! view of a single committed layer is a read-only bind mount of that layer; anything else is an
//! overlay with the parent chain as `lowerdir` (top first).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::{Info, Kind, Mount, SnapshotError, Snapshotter};
use crate::engine::fsutil::{read_json, write_json_atomic};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: u64,
    parent: Option<String>,
    kind: Kind,
    created: SystemTime,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Metadata {
    next_id: u64,
    snapshots: BTreeMap<String, Record>,
}

/// Overlayfs-backed [`Snapshotter`]; see the module docs for the on-disk layout.
#[derive(Debug, Clone)]
pub struct OverlaySnapshotter {
    root: PathBuf,
}

/// Holds the metadata lock for as long as it lives.
struct Locked {
    _lock: Flock<File>,
    meta: Metadata,
}

const MAX_KEY: usize = 256;

fn check_key(key: &str) -> Result<(), SnapshotError> {
    if key.is_empty() || key.len() > MAX_KEY || key.contains('\0') {
        return Err(SnapshotError::InvalidKey(key.to_string()));
    }
    Ok(())
}

impl OverlaySnapshotter {
    /// Opens (creating if needed) a snapshotter rooted at `root` and removes orphan directories
    /// left by a crash.
    pub fn open(root: &Path) -> Result<Self, SnapshotError> {
        let s = root.to_string_lossy();
        // ':' separates lowerdirs and ',' separates mount options; neither can be escaped
        // portably in both the classic and the new mount API, so refuse them up front.
        if s.contains(':') || s.contains(',') || !root.is_absolute() {
            return Err(SnapshotError::InvalidRoot {
                path: root.to_path_buf(),
                reason: "must be an absolute path without ':' or ','".into(),
            });
        }
        let snaps = root.join("snapshots");
        fs::create_dir_all(&snaps).map_err(|e| SnapshotError::io("create", &snaps, e))?;
        // Layers keep the image's setuid binaries and device nodes: no one but root may walk
        // to them on the host (containerd uses 0700 too).
        fs::set_permissions(&snaps, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(|e| SnapshotError::io("chmod 0700", &snaps, e))?;
        let this = OverlaySnapshotter {
            root: root.to_path_buf(),
        };
        let locked = this.lock()?;
        let known: std::collections::HashSet<String> = locked
            .meta
            .snapshots
            .values()
            .map(|r| r.id.to_string())
            .collect();
        let entries = fs::read_dir(&snaps).map_err(|e| SnapshotError::io("read", &snaps, e))?;
        if known.is_empty() && !root.join("metadata.json").exists() {
            // No metadata at all (lost, or never written): every directory would look like an
            // orphan. Deleting all layers on that evidence is not ours to do; leave them.
            return Ok(this);
        }
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !known.contains(&name) {
                tracing::warn!(dir = %entry.path().display(), "removing orphan snapshot directory");
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        Ok(this)
    }

    /// The snapshotter's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn meta_path(&self) -> PathBuf {
        self.root.join("metadata.json")
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    fn lock(&self) -> Result<Locked, SnapshotError> {
        let path = self.root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| SnapshotError::io("open", &path, e))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| SnapshotError::io("lock", &path, e.into()))?;
        let mp = self.meta_path();
        let meta = if mp.exists() {
            read_json(&mp)?
        } else {
            Metadata {
                next_id: 1,
                ..Default::default()
            }
        };
        Ok(Locked { _lock: lock, meta })
    }

    /// Saves the metadata durably: it is one file for every snapshot, image layers included,
    /// so no snapshot's record may be written without waiting for the disk.
    fn save(&self, meta: &Metadata) -> Result<(), SnapshotError> {
        write_json_atomic(&self.meta_path(), meta)?;
        Ok(())
    }

    /// The chain of committed ancestors of `parent`, nearest first, as ids.
    fn chain(meta: &Metadata, parent: Option<&str>) -> Result<Vec<u64>, SnapshotError> {
        let mut out = Vec::new();
        let mut cur = parent.map(str::to_string);
        while let Some(p) = cur {
            let r = meta
                .snapshots
                .get(&p)
                .ok_or_else(|| SnapshotError::Metadata(format!("parent {p:?} is missing")))?;
            out.push(r.id);
            if out.len() > meta.snapshots.len() {
                return Err(SnapshotError::Metadata(format!("parent cycle at {p:?}")));
            }
            cur = r.parent.clone();
        }
        Ok(out)
    }

    fn mounts_of(&self, meta: &Metadata, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let r = meta
            .snapshots
            .get(key)
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
        let fs_dir = |id: u64| self.dir(id).join("fs").to_string_lossy().into_owned();
        let parents = Self::chain(meta, r.parent.as_deref())?;
        let bind = |src: String, ro: bool| Mount {
            fstype: "bind".into(),
            source: src,
            options: vec!["rbind".into(), if ro { "ro" } else { "rw" }.into()],
        };
        let lower = || {
            let dirs: Vec<String> = parents.iter().map(|&id| fs_dir(id)).collect();
            format!("lowerdir={}", dirs.join(":"))
        };
        Ok(match r.kind {
            Kind::Committed => {
                return Err(SnapshotError::WrongKind {
                    key: key.to_string(),
                    kind: r.kind,
                    op: "mount (use a view)",
                })
            }
            Kind::Active if parents.is_empty() => vec![bind(fs_dir(r.id), false)],
            Kind::Active => vec![Mount {
                fstype: "overlay".into(),
                source: "overlay".into(),
                options: vec![
                    format!("workdir={}", self.dir(r.id).join("work").to_string_lossy()),
                    format!("upperdir={}", fs_dir(r.id)),
                    lower(),
                ],
            }],
            Kind::View if parents.is_empty() => vec![bind(fs_dir(r.id), true)],
            Kind::View if parents.len() == 1 => vec![bind(fs_dir(parents[0]), true)],
            Kind::View => vec![Mount {
                fstype: "overlay".into(),
                source: "overlay".into(),
                options: vec!["ro".into(), lower()],
            }],
        })
    }

    fn create(
        &self,
        key: &str,
        parent: Option<&str>,
        kind: Kind,
    ) -> Result<Vec<Mount>, SnapshotError> {
        check_key(key)?;
        let mut l = self.lock()?;
        if l.meta.snapshots.contains_key(key) {
            return Err(SnapshotError::AlreadyExists(key.to_string()));
        }
        if let Some(p) = parent {
            let pr = l
                .meta
                .snapshots
                .get(p)
                .ok_or_else(|| SnapshotError::NotFound(p.to_string()))?;
            if pr.kind != Kind::Committed {
                return Err(SnapshotError::ParentNotCommitted(p.to_string()));
            }
        }
        let id = l.meta.next_id.max(1);
        l.meta.next_id = id + 1;
        let dir = self.dir(id);
        let res = (|| {
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(|e| SnapshotError::io("remove", &dir, e))?;
            }
            let fs_dir = dir.join("fs");
            fs::create_dir_all(&fs_dir).map_err(|e| SnapshotError::io("create", &fs_dir, e))?;
            if kind == Kind::Active {
                let work = dir.join("work");
                fs::create_dir(&work).map_err(|e| SnapshotError::io("create", &work, e))?;
            }
            l.meta.snapshots.insert(
                key.to_string(),
                Record {
                    id,
                    parent: parent.map(str::to_string),
                    kind,
                    created: SystemTime::now(),
                },
            );
            self.save(&l.meta)?;
            self.mounts_of(&l.meta, key)
        })();
        if res.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        res
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        self.create(key, parent, Kind::View)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        let l = self.lock()?;
        self.mounts_of(&l.meta, key)
    }

    fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError> {
        check_key(name)?;
        let mut l = self.lock()?;
        if l.meta.snapshots.contains_key(name) {
            return Err(SnapshotError::AlreadyExists(name.to_string()));
        }
        let mut r = l
            .meta
            .snapshots
            .remove(key)
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
        if r.kind != Kind::Active {
            return Err(SnapshotError::WrongKind {
                key: key.to_string(),
                kind: r.kind,
                op: "commit",
            });
        }
        r.kind = Kind::Committed;
        let work = self.dir(r.id).join("work");
        l.meta.snapshots.insert(name.to_string(), r);
        self.save(&l.meta)?;
        // The workdir is only needed while the layer is an upperdir.
        let _ = fs::remove_dir_all(&work);
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        let mut l = self.lock()?;
        if let Some((child, _)) = l
            .meta
            .snapshots
            .iter()
            .find(|(_, r)| r.parent.as_deref() == Some(key))
        {
            return Err(SnapshotError::InUse {
                key: key.to_string(),
                child: child.clone(),
            });
        }
        let r = l
            .meta
            .snapshots
            .remove(key)
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
        self.save(&l.meta)?;
        let dir = self.dir(r.id);
        fs::remove_dir_all(&dir).map_err(|e| SnapshotError::io("remove", &dir, e))
    }

    fn stat(&self, key: &str) -> Result<Info, SnapshotError> {
        let l = self.lock()?;
        let r = l
            .meta
            .snapshots
            .get(key)
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
        Ok(Info {
            key: key.to_string(),
            parent: r.parent.clone(),
            kind: r.kind,
            created: r.created,
        })
    }

    fn list(&self) -> Result<Vec<Info>, SnapshotError> {
        let l = self.lock()?;
        Ok(l.meta
            .snapshots
            .iter()
            .map(|(k, r)| Info {
                key: k.clone(),
                parent: r.parent.clone(),
                kind: r.kind,
                created: r.created,
            })
            .collect())
    }

    fn upper_dir(&self, key: &str) -> Result<PathBuf, SnapshotError> {
        let l = self.lock()?;
        let r = l
            .meta
            .snapshots
            .get(key)
            .ok_or_else(|| SnapshotError::NotFound(key.to_string()))?;
        if r.kind != Kind::Active {
            return Err(SnapshotError::WrongKind {
                key: key.to_string(),
                kind: r.kind,
                op: "write to",
            });
        }
        Ok(self.dir(r.id).join("fs"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_follow_the_containerd_shapes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = OverlaySnapshotter::open(tmp.path()).expect("open");
        let m = s.prepare("a", None).expect("prepare");
        assert_eq!(m[0].fstype, "bind");
        assert!(m[0].options.contains(&"rw".to_string()));
        s.commit("base", "a").expect("commit");
        let v = s.view("v", Some("base")).expect("view");
        assert_eq!(v[0].fstype, "bind");
        assert!(v[0].options.contains(&"ro".to_string()));
        let a = s.prepare("c", Some("base")).expect("prepare on base");
        assert_eq!(a[0].fstype, "overlay");
        let opts = a[0].options.join(",");
        assert!(
            opts.contains("upperdir=") && opts.contains("workdir=") && opts.contains("lowerdir=")
        );
        assert!(matches!(
            s.mounts("base"),
            Err(SnapshotError::WrongKind { .. })
        ));
    }

    #[test]
    fn root_with_colon_is_refused() {
        let err = OverlaySnapshotter::open(Path::new("/tmp/a:b")).expect_err("must fail");
        assert_eq!(err.kind(), crate::engine::ErrorKind::InvalidArgument);
    }

    #[test]
    fn orphan_directories_are_swept_on_open() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = OverlaySnapshotter::open(tmp.path()).expect("open");
        s.prepare("a", None).expect("prepare");
        let orphan = tmp.path().join("snapshots/999");
        fs::create_dir_all(&orphan).expect("mkdir");
        OverlaySnapshotter::open(tmp.path()).expect("reopen");
        assert!(!orphan.exists());
        assert!(s.upper_dir("a").expect("upper").exists());
    }
}
