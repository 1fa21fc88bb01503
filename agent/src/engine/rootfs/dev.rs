//! `/dev` inside the container: the standard device nodes and symlinks.
//!
//! When the spec mounts a tmpfs on `/dev` (every default spec does), the runtime fills it the
//! way runtime-spec config-linux.md "Default Devices" asks: null, zero, full, random, urandom,
//! tty, plus `linux.devices`, and the `/dev/fd`, `/dev/std*` and `/dev/ptmx` symlinks. In a user
//! namespace `mknod` is not permitted, so the host's node is bind-mounted instead (as runc does).

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::path::{ensure_in_root, open_in_root, proc_fd_path, Create};
use crate::engine::error::{EngineError, Result};

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    pub kind: u32,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The default devices every container gets (runtime-spec "Default Devices").
pub fn default_nodes() -> Vec<Node> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(p, ma, mi)| Node {
        path: p.into(),
        kind: libc::S_IFCHR,
        major: ma,
        minor: mi,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// A spec device as a node; `u` (unbuffered) is a character device.
pub fn node_of(d: &LinuxDevice) -> Result<Node> {
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
        LinuxDeviceType::B => libc::S_IFBLK,
        LinuxDeviceType::P => libc::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(EngineError::InvalidSpec(format!(
                "device {} has type 'a', which only cgroup rules may use",
                d.path().display()
            )))
        }
    };
    let escapes = d
        .path()
        .components()
        .any(|c| c == std::path::Component::ParentDir);
    if !d.path().starts_with("/dev") || escapes {
        return Err(EngineError::InvalidSpec(format!(
            "device {} is not under /dev",
            d.path().display()
        )));
    }
    Ok(Node {
        path: d.path().clone(),
        kind,
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    })
}

/// Creates `node` inside the rootfs (`root` is an fd of it); binds the host's node when
/// `bind_host` (user namespaces).
pub fn create_node(
    root: &std::os::fd::OwnedFd,
    root_path: &Path,
    node: &Node,
    bind_host: bool,
) -> Result<()> {
    let full = root_path.join(super::path::rel_of(&node.path));
    if bind_host {
        // Bind only the host node that *is* this device: the same path on the host could be
        // another device, or not a device at all.
        let host = nix::sys::stat::lstat(&node.path)
            .map_err(|e| EngineError::sys(format!("stat host {}", node.path.display()), e))?;
        let want = libc::makedev(node.major as u32, node.minor as u32);
        if host.st_mode & libc::S_IFMT != node.kind || host.st_rdev != want {
            return Err(EngineError::InvalidSpec(format!(
                "cannot create device {} here (no mknod), and the host's {} is not that device",
                node.path.display(),
                node.path.display()
            )));
        }
        let fd = ensure_in_root(root, root_path, &node.path, Create::File)?;
        return mount(
            Some(&node.path),
            &proc_fd_path(&fd),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            EngineError::sys(
                format!(
                    "failed to bind {} to {}",
                    node.path.display(),
                    full.display()
                ),
                e,
            )
        });
    }
    let parent = node.path.parent().unwrap_or(Path::new("/dev"));
    let pfd = ensure_in_root(root, root_path, parent, Create::Dir)?;
    let name = node
        .path
        .file_name()
        .ok_or_else(|| EngineError::InvalidSpec(format!("device path {}", node.path.display())))?;
    let c = CString::new(name.as_encoded_bytes())
        .map_err(|_| EngineError::InvalidSpec(format!("device path {}", node.path.display())))?;
    let dev = libc::makedev(node.major as u32, node.minor as u32);
    // SAFETY: mknodat/fchownat on a directory fd we resolved inside the root, with a single
    // NUL-terminated component.
    unsafe {
        libc::unlinkat(pfd_dir(&pfd)?.as_raw_fd(), c.as_ptr(), 0);
    }
    let dirfd = pfd_dir(&pfd)?;
    // SAFETY: as above.
    let rc = unsafe { libc::mknodat(dirfd.as_raw_fd(), c.as_ptr(), node.kind | node.mode, dev) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        // The devices cgroup (already applied) may deny "m" for this node, e.g. a deny-all
        // list that allows only some devices: bind the host's node instead, as runc does.
        // Opening it is still subject to the cgroup's rules.
        if err.raw_os_error() == Some(libc::EPERM) {
            return create_node(root, root_path, node, true);
        }
        return Err(EngineError::io("mknod", &full, err));
    }
    // mknod applies the umask; the spec's mode is exact. The node was just created by us in
    // a directory resolved inside the root, so following it is following nothing.
    // SAFETY: *at calls on the directory fd with a single NUL-terminated component;
    // AT_SYMLINK_NOFOLLOW keeps the chown on the node itself.
    unsafe {
        if libc::fchmodat(dirfd.as_raw_fd(), c.as_ptr(), node.mode, 0) < 0 {
            return Err(EngineError::io(
                "chmod",
                &full,
                std::io::Error::last_os_error(),
            ));
        }
        if libc::fchownat(
            dirfd.as_raw_fd(),
            c.as_ptr(),
            node.uid,
            node.gid,
            libc::AT_SYMLINK_NOFOLLOW,
        ) < 0
        {
            return Err(EngineError::io(
                "chown",
                &full,
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}

/// Reopens an `O_PATH` directory fd as a real directory fd usable with the *at calls that
/// reject `O_PATH` (mknodat).
fn pfd_dir(pfd: &std::os::fd::OwnedFd) -> Result<std::os::fd::OwnedFd> {
    let p = proc_fd_path(pfd);
    std::fs::File::open(&p)
        .map(Into::into)
        .map_err(|e| EngineError::io("open", p, e))
}

/// The standard symlinks of `/dev`.
pub const SYMLINKS: [(&str, &str); 5] = [
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
    ("pts/ptmx", "/dev/ptmx"),
];

pub fn create_symlinks(root: &std::os::fd::OwnedFd, root_path: &Path) -> Result<()> {
    let dev = open_in_root(root, Path::new("/dev"), libc::O_DIRECTORY)
        .map_err(|e| EngineError::io("open", root_path.join("dev"), e))?;
    let mut links: Vec<(&str, &str)> = SYMLINKS.to_vec();
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "/dev/core"));
    }
    for (target, link) in links {
        let name = link.trim_start_matches("/dev/");
        let (t, n) = match (CString::new(target), CString::new(name)) {
            (Ok(t), Ok(n)) => (t, n),
            _ => continue,
        };
        // SAFETY: symlinkat/unlinkat in the /dev directory fd with NUL-terminated strings.
        unsafe {
            libc::unlinkat(dev.as_raw_fd(), n.as_ptr(), 0);
            if libc::symlinkat(t.as_ptr(), dev.as_raw_fd(), n.as_ptr()) < 0 {
                return Err(EngineError::io(
                    "symlink",
                    root_path.join("dev").join(name),
                    std::io::Error::last_os_error(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_devices_become_nodes_and_bad_ones_are_refused() {
        let d: LinuxDevice = serde_json::from_value(serde_json::json!({
            "path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438
        }))
        .expect("device json");
        let n = node_of(&d).expect("node");
        assert_eq!(
            (n.kind, n.major, n.minor, n.mode),
            (libc::S_IFCHR, 10, 229, 0o666)
        );
        let bad: LinuxDevice = serde_json::from_value(serde_json::json!({
            "path": "/etc/passwd", "type": "c", "major": 1, "minor": 3
        }))
        .expect("device json");
        assert!(node_of(&bad).is_err());
    }
}
