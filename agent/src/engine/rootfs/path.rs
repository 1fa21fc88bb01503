//! Resolving paths inside a container's root filesystem without escaping it.
//!
//! A mount destination comes from the spec but is resolved inside an image that the user may not
//! control: `/proc` could be a symlink to `/etc` on the host. Every destination is therefore
//! opened with `openat2(RESOLVE_IN_ROOT)` relative to the rootfs (openat2(2): symlinks and `..`
//! are resolved as if the rootfs were `/`), missing components are created one at a time with
//! `mkdirat` beneath an already-resolved parent, and the mount is then made on
//! `/proc/self/fd/N`, the very inode we resolved (the approach runc takes with securejoin).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use crate::engine::error::{EngineError, Result};

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_IN_ROOT: u64 = 0x10;

/// Opens `rel` (relative or absolute, interpreted inside `root`) beneath `root`.
pub fn open_in_root(root: &OwnedFd, rel: &Path, flags: i32) -> std::io::Result<OwnedFd> {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c = CString::new(rel.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    loop {
        // SAFETY: openat2 with a valid dirfd, a NUL-terminated path and an open_how of the
        // size we pass; the returned fd is checked before use.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel just returned this descriptor to us.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EAGAIN) && err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

/// What to create when a mount destination is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Dir,
    File,
}

/// Resolves `dest` inside `root`, creating missing components, and returns an `O_PATH` fd.
///
/// A dangling symlink on the way (an image's `/var/run -> /run` before `/run` exists) is
/// followed the way the kernel would inside the root: its target, re-rooted, is created.
pub fn ensure_in_root(
    root: &OwnedFd,
    root_path: &Path,
    dest: &Path,
    last: Create,
) -> Result<OwnedFd> {
    let err = |e: std::io::Error| EngineError::io("resolve", root_path.join(rel_of(dest)), e);
    if let Ok(fd) = open_in_root(root, dest, libc::O_PATH) {
        return Ok(fd);
    }
    let mut todo: Vec<std::ffi::OsString> = normal_components(dest);
    todo.reverse();
    let mut cur = PathBuf::from("/");
    let mut hops = 0;
    while let Some(comp) = todo.pop() {
        if comp == ".." {
            // `..` at the root stays at the root, as RESOLVE_IN_ROOT does.
            cur.pop();
            continue;
        }
        let parent = open_in_root(root, &cur, libc::O_PATH | libc::O_DIRECTORY).map_err(err)?;
        let next = cur.join(&comp);
        if open_in_root(root, &next, libc::O_PATH).is_ok() {
            cur = next;
            continue;
        }
        let c = CString::new(comp.as_encoded_bytes())
            .map_err(|_| err(std::io::ErrorKind::InvalidInput.into()))?;
        if let Some(target) = read_link_at(&parent, &c) {
            hops += 1;
            if hops > 40 {
                return Err(err(std::io::Error::from_raw_os_error(libc::ELOOP)));
            }
            let mut parts = normal_components(&target);
            parts.reverse();
            todo.extend(parts);
            if target.is_absolute() {
                cur = PathBuf::from("/");
            }
            continue;
        }
        let is_last = todo.is_empty();
        // SAFETY: *at calls on a valid directory fd with a NUL-terminated single component
        // (no '/'), so nothing outside `parent` can be named.
        let rc = unsafe {
            if is_last && last == Create::File {
                libc::mknodat(parent.as_raw_fd(), c.as_ptr(), libc::S_IFREG | 0o644, 0)
            } else {
                libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), 0o755)
            }
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(err(e));
            }
        }
        cur = next;
    }
    open_in_root(root, &cur, libc::O_PATH).map_err(err)
}

fn normal_components(p: &Path) -> Vec<std::ffi::OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// The target of `name` in `dir` if it is a symlink.
fn read_link_at(dir: &OwnedFd, name: &CString) -> Option<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat into a buffer of the length we pass, relative to a valid dir fd.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n <= 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(PathBuf::from(std::ffi::OsString::from_vec(buf)))
}

/// `dest` without its leading `/`.
pub fn rel_of(dest: &Path) -> &Path {
    dest.strip_prefix("/").unwrap_or(dest)
}

/// The magic-link path of an fd, usable as a mount target or source.
pub fn proc_fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_dir(p: &Path) -> OwnedFd {
        std::fs::File::open(p).expect("open root").into()
    }

    #[test]
    fn symlink_pointing_outside_is_resolved_inside_root() {
        let outside = tempfile::tempdir().expect("tempdir");
        let root = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).expect("symlink");
        let rfd = open_dir(root.path());
        let fd = ensure_in_root(&rfd, root.path(), Path::new("/escape/sub"), Create::Dir)
            .expect("ensure");
        drop(fd);
        assert!(
            std::fs::read_dir(outside.path())
                .expect("readdir")
                .next()
                .is_none(),
            "nothing may be created outside the root"
        );
        // The symlink's target was re-rooted: the directory now exists inside the root.
        let target = outside.path().strip_prefix("/").expect("abs");
        assert!(root.path().join(target).join("sub").is_dir());
    }

    #[test]
    fn dangling_relative_symlink_with_dotdot_is_created_where_it_points() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join("var")).expect("mkdir");
        std::os::unix::fs::symlink("../run", root.path().join("var/run")).expect("symlink");
        let rfd = open_dir(root.path());
        ensure_in_root(&rfd, root.path(), Path::new("/var/run/app"), Create::Dir).expect("ensure");
        assert!(root.path().join("run/app").is_dir());
    }

    #[test]
    fn dotdot_cannot_climb_out_and_files_are_created() {
        let root = tempfile::tempdir().expect("tempdir");
        let rfd = open_dir(root.path());
        ensure_in_root(
            &rfd,
            root.path(),
            Path::new("/../../etc/x/hosts"),
            Create::File,
        )
        .expect("ensure");
        assert!(root.path().join("etc/x/hosts").is_file());
    }
}
