//! Bundles: where an image meets the runtime.
//!
//! [`create_bundle`] turns an image into an OCI bundle directory:
//!
//! ```text
//! DIR/snapshot.json   which snapshot (key, store root) the rootfs is; written first
//! DIR/rootfs          the image's layers + a writable active snapshot, mounted
//! DIR/config.json     crate::engine::spec::default_spec() + the image config
//! ```
//!
//! The image config fills the process: Entrypoint + Cmd (given arguments replace Cmd, as with
//! `docker run IMAGE ARGS...`, and keep the Entrypoint), Env (merged over the defaults by
//! name), WorkingDir and User. `User` may be numeric or use names, which are looked up in the
//! image's own `/etc/passwd` and `/etc/group`, read with `openat2(RESOLVE_IN_ROOT)` so that a
//! symlink in the image cannot make us read a host file; supplementary groups come from
//! `/etc/group` membership, as Docker does. [`remove_bundle`] undoes all of it.

use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use oci_spec::runtime::{Spec, UserBuilder};
use serde::{Deserialize, Serialize};

use super::unpack::open_how;
use super::{Image, ImageError, ImageStore};
use crate::engine::fsutil::{read_json, write_json_atomic_with, Durability};
use crate::engine::snapshot::{mount_all, unmount_all, Snapshotter};

/// The file in a bundle directory naming its snapshot.
pub const SNAPSHOT_FILE: &str = "snapshot.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotRef {
    snapshotter: String,
    key: String,
    image: String,
}

/// A bundle made by [`create_bundle`].
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub snapshot_key: String,
    pub spec: Spec,
}

/// What a caller changes in the process the image describes (Docker's `run` flags).
#[derive(Debug, Clone, Default)]
pub struct ProcessOverrides {
    /// Replaces the image's Cmd.
    pub cmd: Option<Vec<String>>,
    /// Replaces the image's Entrypoint (and then the image's Cmd is dropped, as Docker does);
    /// `[""]` clears it.
    pub entrypoint: Option<Vec<String>>,
    /// `user[:group]` by name or number, resolved in the image.
    pub user: Option<String>,
    /// Absolute working directory.
    pub workdir: Option<String>,
    /// KEY=VALUE merged over the image's environment by name.
    pub env: Vec<String>,
}

/// The process arguments: Entrypoint + (args or Cmd).
fn process_args(image: &Image, o: &ProcessOverrides) -> Result<Vec<String>, ImageError> {
    let cfg = image.config.config().as_ref();
    let mut out: Vec<String> = match &o.entrypoint {
        Some(e) => e.iter().filter(|s| !s.is_empty()).cloned().collect(),
        None => cfg.and_then(|c| c.entrypoint().clone()).unwrap_or_default(),
    };
    match &o.cmd {
        Some(a) if !a.is_empty() => out.extend(a.iter().cloned()),
        _ if o.entrypoint.is_some() => {}
        _ => out.extend(cfg.and_then(|c| c.cmd().clone()).unwrap_or_default()),
    }
    if out.is_empty() {
        return Err(ImageError::InvalidConfig(format!(
            "image {} has no entrypoint or cmd: give a command",
            image.name
        )));
    }
    Ok(out)
}

fn merge_env(base: &mut Vec<String>, over: &[String]) {
    for kv in over {
        let k = kv.split('=').next().unwrap_or(kv);
        match base.iter_mut().find(|e| e.split('=').next() == Some(k)) {
            Some(e) => *e = kv.clone(),
            None => base.push(kv.clone()),
        }
    }
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// Reads a small file of the image, resolving symlinks as if `rootfs` were `/`.
fn read_in_root(rootfs: &Path, rel: &str) -> Result<Option<String>, ImageError> {
    let root = fs::File::open(rootfs).map_err(|e| ImageError::io("open", rootfs, e))?;
    let fd = match open_how(
        root.as_raw_fd(),
        Path::new(rel),
        // O_NONBLOCK: an image's /etc/passwd could be a FIFO, and opening it must not hang.
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
        RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(ImageError::io("open", rootfs.join(rel), e)),
    };
    let f = fs::File::from(fd);
    let meta = f
        .metadata()
        .map_err(|e| ImageError::io("stat", rootfs.join(rel), e))?;
    if !meta.is_file() {
        return Err(ImageError::io(
            "read",
            rootfs.join(rel),
            std::io::Error::new(std::io::ErrorKind::InvalidData, "not a regular file"),
        ));
    }
    let mut s = String::new();
    f.take(4 << 20)
        .read_to_string(&mut s)
        .map_err(|e| ImageError::io("read", rootfs.join(rel), e))?;
    Ok(Some(s))
}

/// `name:x:uid:gid:...` / `name:x:gid:members` lines.
fn entries(db: &Option<String>) -> Vec<Vec<&str>> {
    db.as_deref()
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect()
}

/// Resolved user: uid, gid, supplementary gids.
#[derive(Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Resolves an image `User` (`""`, `uid`, `name`, `uid:gid`, `name:group`, ...) against the
/// image's passwd and group databases.
pub fn resolve_user(
    user: &str,
    passwd: &Option<String>,
    group: &Option<String>,
) -> Result<ResolvedUser, ImageError> {
    let pw = entries(passwd);
    let gr = entries(group);
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let pw_entry = match u.parse::<u32>() {
        Ok(uid) => pw.iter().find(|f| f[2].parse::<u32>().ok() == Some(uid)),
        Err(_) => pw.iter().find(|f| f[0] == u),
    };
    let uid = match u.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => pw_entry.and_then(|f| f[2].parse().ok()).ok_or_else(|| {
            ImageError::InvalidConfig(format!("user {u:?} not found in the image's /etc/passwd"))
        })?,
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => gr
                .iter()
                .find(|f| f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    ImageError::InvalidConfig(format!(
                        "group {g:?} not found in the image's /etc/group"
                    ))
                })?,
        },
        None => pw_entry.and_then(|f| f[2 + 1].parse().ok()).unwrap_or(0),
    };
    // Supplementary groups only when the group was not given explicitly (Docker's rule).
    let mut additional_gids = Vec::new();
    if g.is_none() {
        if let Some(name) = pw_entry.map(|f| f[0]) {
            for f in &gr {
                if f[3].split(',').any(|m| m == name) {
                    if let Ok(id) = f[2].parse::<u32>() {
                        if id != gid && !additional_gids.contains(&id) {
                            additional_gids.push(id);
                        }
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
    })
}

/// Builds the runtime spec for `image` with its rootfs mounted at `rootfs`.
fn build_spec(
    image: &Image,
    rootfs: &Path,
    args: Vec<String>,
    o: &ProcessOverrides,
) -> Result<Spec, ImageError> {
    let mut spec = crate::engine::spec::default_spec();
    let cfg = image.config.config().clone().unwrap_or_default();
    let user_s = o
        .user
        .clone()
        .unwrap_or_else(|| cfg.user().clone().unwrap_or_default());
    // Even a numeric user needs the databases for its primary and supplementary groups.
    let passwd = read_in_root(rootfs, "etc/passwd")?;
    let group = read_in_root(rootfs, "etc/group")?;
    let user = resolve_user(&user_s, &passwd, &group)?;
    let mut ub = UserBuilder::default().uid(user.uid).gid(user.gid);
    if !user.additional_gids.is_empty() {
        ub = ub.additional_gids(user.additional_gids.clone());
    }
    let user = ub
        .build()
        .map_err(|e| ImageError::InvalidConfig(format!("user: {e}")))?;
    let mut process = spec.process().clone().unwrap_or_default();
    let mut env = process.env().clone().unwrap_or_default();
    merge_env(&mut env, &cfg.env().clone().unwrap_or_default());
    for kv in &o.env {
        if !kv.contains('=') || kv.starts_with('=') {
            return Err(ImageError::InvalidConfig(format!(
                "environment variable {kv:?} is not KEY=VALUE"
            )));
        }
    }
    merge_env(&mut env, &o.env);
    process.set_env(Some(env));
    process.set_args(Some(args));
    let cwd = o
        .workdir
        .clone()
        .or_else(|| cfg.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(ImageError::InvalidConfig(format!(
            "working dir {cwd:?} is not absolute"
        )));
    }
    process.set_cwd(cwd.into());
    process.set_user(user);
    spec.set_process(Some(process));
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_path("rootfs".into());
    root.set_readonly(Some(false));
    spec.set_root(Some(root));
    Ok(spec)
}

/// Makes `dir` an OCI bundle of `image`: prepares the snapshot `key`, mounts it at
/// `dir/rootfs` and writes `dir/config.json`. `args` replace the image's Cmd.
pub fn create_bundle(
    store: &ImageStore,
    image: &Image,
    dir: &Path,
    key: &str,
    args: Option<Vec<String>>,
) -> Result<Bundle, ImageError> {
    create_bundle_with(
        store,
        image,
        dir,
        key,
        &ProcessOverrides {
            cmd: args,
            ..Default::default()
        },
    )
}

/// [`create_bundle`] with Docker's process overrides (cmd, entrypoint, user, workdir, env).
pub fn create_bundle_with(
    store: &ImageStore,
    image: &Image,
    dir: &Path,
    key: &str,
    o: &ProcessOverrides,
) -> Result<Bundle, ImageError> {
    prepare_bundle(store, image, dir, key, o, true, Durability::Durable)
}

/// [`create_bundle_with`], leaving `config.json` to a caller that adds to the spec first
/// (`write_config` false): the file is then written once, not twice. `durability` says
/// whether the bundle's own files are fsynced: not for a container that is removed when it
/// exits, which no reboot will find again (the snapshot's record always is).
pub fn prepare_bundle(
    store: &ImageStore,
    image: &Image,
    dir: &Path,
    key: &str,
    o: &ProcessOverrides,
    write_config: bool,
    durability: Durability,
) -> Result<Bundle, ImageError> {
    let args = process_args(image, o)?;
    fs::create_dir_all(dir).map_err(|e| ImageError::io("create", dir, e))?;
    let sref = dir.join(SNAPSHOT_FILE);
    let config = dir.join("config.json");
    for p in [&sref, &config] {
        if p.exists() {
            return Err(ImageError::InvalidConfig(format!(
                "{} already exists: {} is already a bundle",
                p.display(),
                dir.display()
            )));
        }
    }
    write_json_atomic_with(
        &sref,
        &SnapshotRef {
            snapshotter: "overlay".into(),
            key: key.to_string(),
            image: image.name.clone(),
        },
        durability,
    )?;
    let rootfs = dir.join("rootfs");
    let mut mounted = false;
    let mut prepared = false;
    let res = (|| {
        let mounts = store.prepare_rootfs(image, key)?;
        prepared = true;
        fs::create_dir_all(&rootfs).map_err(|e| ImageError::io("create", &rootfs, e))?;
        mount_all(&mounts, &rootfs)?;
        mounted = true;
        let spec = build_spec(image, &rootfs, args, o)?;
        if write_config {
            write_json_atomic_with(&config, &spec, durability)?;
        }
        Ok(spec)
    })();
    match res {
        Ok(spec) => Ok(Bundle {
            dir: dir.to_path_buf(),
            rootfs,
            snapshot_key: key.to_string(),
            spec,
        }),
        Err(e) => {
            let mut problems = Vec::new();
            if mounted {
                if let Err(ce) = unmount_all(&rootfs) {
                    problems.push(ce.to_string());
                }
            }
            if prepared {
                if let Err(ce) = store.snapshotter().remove(key) {
                    problems.push(ce.to_string());
                }
            }
            let _ = fs::remove_dir(&rootfs);
            let _ = fs::remove_file(&config);
            let _ = fs::remove_file(&sref);
            if problems.is_empty() {
                Err(e)
            } else {
                Err(ImageError::WithCleanup {
                    error: Box::new(e),
                    cleanup: problems.join("; "),
                })
            }
        }
    }
}

/// Undoes [`create_bundle`]: unmounts `dir/rootfs`, removes the snapshot, `config.json`,
/// `snapshot.json`, and `dir` itself if nothing else is left in it.
pub fn remove_bundle(store: &ImageStore, dir: &Path) -> Result<(), ImageError> {
    remove_bundle_or(store, dir, None)
}

/// [`remove_bundle`] for a caller that knows the snapshot key the bundle was made with: a
/// torn or unreadable `snapshot.json` (a crash while an unsynced one was written) does not
/// keep the bundle and its snapshot forever.
pub fn remove_bundle_or(
    store: &ImageStore,
    dir: &Path,
    known_key: Option<&str>,
) -> Result<(), ImageError> {
    let sref_path = dir.join(SNAPSHOT_FILE);
    let key = match (read_json::<SnapshotRef>(&sref_path), known_key) {
        (Ok(sref), _) => sref.key,
        (Err(_), Some(k)) => k.to_string(),
        (Err(e), None) => return Err(e.into()),
    };
    let rootfs = dir.join("rootfs");
    if rootfs.exists() {
        unmount_all(&rootfs)?;
    }
    match store.snapshotter().remove(&key) {
        Ok(()) | Err(crate::engine::snapshot::SnapshotError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    if rootfs.exists() {
        fs::remove_dir(&rootfs).map_err(|e| ImageError::io("remove", &rootfs, e))?;
    }
    let config = dir.join("config.json");
    if config.exists() {
        fs::remove_file(&config).map_err(|e| ImageError::io("remove", &config, e))?;
    }
    match fs::remove_file(&sref_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ImageError::io("remove", &sref_path, e)),
    }
    let _ = fs::remove_dir(dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_by_number_and_name() {
        let pw = Some("root:x:0:0:root:/root:/bin/sh\nwww:x:33:44::/:/bin/false\n".to_string());
        let gr = Some("root:x:0:\nweb:x:44:\nstaff:x:50:www,bob\n".to_string());
        let r = resolve_user("", &pw, &gr).expect("root");
        assert_eq!((r.uid, r.gid), (0, 0));
        let r = resolve_user("www", &pw, &gr).expect("www");
        assert_eq!(
            (r.uid, r.gid, r.additional_gids.clone()),
            (33, 44, vec![50])
        );
        let r = resolve_user("33", &pw, &gr).expect("33");
        assert_eq!((r.uid, r.gid), (33, 44));
        let r = resolve_user("1000:staff", &pw, &gr).expect("1000:staff");
        assert_eq!((r.uid, r.gid, r.additional_gids.len()), (1000, 50, 0));
        let r = resolve_user("1000", &None, &None).expect("numeric without passwd");
        assert_eq!((r.uid, r.gid), (1000, 0));
        let e = resolve_user("nosuch", &pw, &gr).expect_err("must fail");
        assert!(e.to_string().contains("nosuch"), "{e}");
    }

    #[test]
    fn env_merges_by_name() {
        let mut base = vec!["PATH=/bin".to_string(), "TERM=xterm".to_string()];
        merge_env(&mut base, &["PATH=/usr/bin".into(), "A=1".into()]);
        assert_eq!(base, vec!["PATH=/usr/bin", "TERM=xterm", "A=1"]);
    }
}
