//! Performing the mounts a snapshotter describes.
//!
//! A [`Mount`] is plain data (what containerd calls `mount.Mount`) so that it can be stored in a
//! bundle, sent to another process or printed; [`Mount::mount_at`] performs it.
//!
//! **Many layers.** The classic `mount(2)` passes all overlay options in one string that the
//! kernel copies into a single page (4096 bytes here), so `lowerdir=a:b:c...` stops working
//! somewhere around 100 layers with paths like `/var/lib/minid/snapshots/123/fs`. Two ways
//! around that exist: `chdir` into the snapshots directory and pass short relative paths, or the
//! new mount API (`fsopen("overlay")` + one `fsconfig(FSCONFIG_SET_STRING, "lowerdir+", dir)` per
//! layer, kernel >= 6.8, then `fsmount` + `move_mount`). We use the new API whenever the option
//! string would not fit in a page: the working directory is per *process*, and `minid serve` is
//! multi-threaded, so a `chdir` would race with every other thread resolving a relative path.
//! The new API has no total-length limit and keeps absolute paths. Short option strings still use
//! `mount(2)` so older kernels keep working for images of ordinary depth.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use super::SnapshotError;

/// A mount description: `mount -t <fstype> -o <options> <source> <target>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// `overlay` or `bind`.
    pub fstype: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Flags we understand in `options`; everything else is passed to the filesystem as data.
fn flag_of(opt: &str) -> Option<(MsFlags, bool)> {
    Some(match opt {
        "ro" => (MsFlags::MS_RDONLY, true),
        "rw" => (MsFlags::MS_RDONLY, false),
        "bind" => (MsFlags::MS_BIND, true),
        "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, true),
        "nosuid" => (MsFlags::MS_NOSUID, true),
        "nodev" => (MsFlags::MS_NODEV, true),
        "noexec" => (MsFlags::MS_NOEXEC, true),
        _ => return None,
    })
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| usize::try_from(v).ok())
        .unwrap_or(4096)
}

impl Mount {
    /// Splits options into mount flags and filesystem data.
    fn parse(&self) -> (MsFlags, Vec<&str>) {
        let mut flags = MsFlags::empty();
        let mut data = Vec::new();
        for o in &self.options {
            match flag_of(o) {
                Some((f, true)) => flags |= f,
                Some((f, false)) => flags &= !f,
                None => data.push(o.as_str()),
            }
        }
        (flags, data)
    }

    /// Performs this mount on `target` (which must exist).
    pub fn mount_at(&self, target: &Path) -> Result<(), SnapshotError> {
        let (flags, data) = self.parse();
        let is_bind = self.fstype == "bind" || flags.contains(MsFlags::MS_BIND);
        if is_bind {
            return self.mount_bind(target, flags);
        }
        let data_str = data.join(",");
        if self.fstype == "overlay" && data_str.len() + 1 > page_size() {
            return self.mount_overlay_fsapi(target, flags, &data);
        }
        nix::mount::mount(
            Some(self.source.as_str()),
            target,
            Some(self.fstype.as_str()),
            flags,
            Some(data_str.as_str()),
        )
        .map_err(|e| self.err(target, "mount(2)", e.into()))
    }

    fn err(&self, target: &Path, reason: &str, source: std::io::Error) -> SnapshotError {
        SnapshotError::Mount {
            fstype: self.fstype.clone(),
            target: target.to_path_buf(),
            reason: format!("{reason}: {source}"),
            source,
        }
    }

    fn mount_bind(&self, target: &Path, flags: MsFlags) -> Result<(), SnapshotError> {
        let bind = flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
        nix::mount::mount(
            Some(self.source.as_str()),
            target,
            None::<&str>,
            bind,
            None::<&str>,
        )
        .map_err(|e| self.err(target, "bind mount", e.into()))?;
        // A bind mount ignores MS_RDONLY and friends on creation; they take a remount.
        let extra = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        if !extra.is_empty() {
            if let Err(e) = nix::mount::mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra,
                None::<&str>,
            ) {
                let err = self.err(target, "read-only remount of bind", e.into());
                let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
                return Err(err);
            }
        }
        Ok(())
    }

    /// Mounts an overlay with the new mount API, one `lowerdir+` per layer (kernel >= 6.8).
    fn mount_overlay_fsapi(
        &self,
        target: &Path,
        flags: MsFlags,
        data: &[&str],
    ) -> Result<(), SnapshotError> {
        let fs = fsapi::FsContext::open("overlay").map_err(|e| self.err(target, "fsopen", e))?;
        let cfg = |k: &str, v: Option<&str>| {
            fs.set(k, v)
                .map_err(|e| self.err(target, &format!("fsconfig {k}{}", fs.log()), e))
        };
        cfg("source", Some(&self.source))?;
        for opt in data {
            match opt.split_once('=') {
                Some(("lowerdir", dirs)) => {
                    for dir in dirs.split(':').filter(|d| !d.is_empty()) {
                        cfg("lowerdir+", Some(dir))?;
                    }
                }
                Some((k, v)) => cfg(k, Some(v))?,
                None => cfg(opt, None)?,
            }
        }
        let mnt = fs
            .create_and_mount(flags)
            .map_err(|e| self.err(target, &format!("fsmount{}", fs.log()), e))?;
        fsapi::move_mount(&mnt, target).map_err(|e| self.err(target, "move_mount", e))
    }
}

/// Performs `mounts` in order on `target`; on failure undoes the ones already made.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<(), SnapshotError> {
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = m.mount_at(target) {
            for _ in 0..i {
                let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Unmounts the top mount on `target`; falls back to a lazy unmount if it is busy.
pub fn unmount(target: &Path) -> Result<(), SnapshotError> {
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::Error::EBUSY) => nix::mount::umount2(target, MntFlags::MNT_DETACH)
            .map_err(|e| SnapshotError::io("unmount", target, e.into())),
        Err(e) => Err(SnapshotError::io("unmount", target, e.into())),
    }
}

/// Unmounts everything stacked on `target`; succeeds when nothing is (left) mounted there.
pub fn unmount_all(target: &Path) -> Result<(), SnapshotError> {
    // Bounded: a target can only hold so many stacked mounts; a loop forever would hide a bug.
    for _ in 0..64 {
        match nix::mount::umount2(target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(nix::Error::EBUSY) => {
                nix::mount::umount2(target, MntFlags::MNT_DETACH)
                    .map_err(|e| SnapshotError::io("unmount", target, e.into()))?;
            }
            Err(e) => return Err(SnapshotError::io("unmount", target, e.into())),
        }
    }
    Err(SnapshotError::io(
        "unmount",
        PathBuf::from(target),
        std::io::Error::other("more than 64 mounts stacked"),
    ))
}

/// The new mount API (`fsopen`, `fsconfig`, `fsmount`, `move_mount`), which the libc crate
/// declares only as syscall numbers.
mod fsapi {
    use super::*;

    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_FLAG: libc::c_uint = 0;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
    const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
    const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
    const MOUNT_ATTR_NOEXEC: libc::c_uint = 0x8;
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

    fn cstr(s: &str) -> std::io::Result<CString> {
        CString::new(s).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
    }

    pub struct FsContext(OwnedFd);

    impl FsContext {
        pub fn open(fstype: &str) -> std::io::Result<Self> {
            let name = cstr(fstype)?;
            // SAFETY: fsopen(2) takes a NUL-terminated string that outlives the call and flags.
            let fd = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: the kernel just returned this fd to us and nothing else owns it.
            Ok(FsContext(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
        }

        /// `fsconfig(SET_STRING)` for `Some(value)`, `fsconfig(SET_FLAG)` for `None`.
        pub fn set(&self, key: &str, value: Option<&str>) -> std::io::Result<()> {
            let k = cstr(key)?;
            let v = value.map(cstr).transpose()?;
            let (cmd, vp) = match &v {
                Some(v) => (FSCONFIG_SET_STRING, v.as_ptr()),
                None => (FSCONFIG_SET_FLAG, std::ptr::null()),
            };
            // SAFETY: fd is a live fs context; key and value are NUL-terminated strings that
            // outlive the call (or value is NULL for SET_FLAG, as fsconfig(2) requires).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    self.0.as_raw_fd(),
                    cmd,
                    k.as_ptr(),
                    vp,
                    0,
                )
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        }

        pub fn create_and_mount(&self, flags: MsFlags) -> std::io::Result<OwnedFd> {
            // SAFETY: CMD_CREATE takes no key/value; both NULL as documented in fsconfig(2).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    self.0.as_raw_fd(),
                    FSCONFIG_CMD_CREATE,
                    std::ptr::null::<libc::c_char>(),
                    std::ptr::null::<libc::c_void>(),
                    0,
                )
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut attr = 0;
            for (f, a) in [
                (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
                (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
                (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
                (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
            ] {
                if flags.contains(f) {
                    attr |= a;
                }
            }
            // SAFETY: fsmount(2) on a created fs context fd with plain integer flags.
            let m = unsafe {
                libc::syscall(libc::SYS_fsmount, self.0.as_raw_fd(), FSMOUNT_CLOEXEC, attr)
            };
            if m < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: the kernel just returned this fd to us and nothing else owns it.
            Ok(unsafe { OwnedFd::from_raw_fd(m as i32) })
        }

        /// The messages the kernel queued on the context (why a parameter was rejected).
        pub fn log(&self) -> String {
            let mut out = String::new();
            let mut buf = [0u8; 512];
            for _ in 0..16 {
                // SAFETY: reading into a buffer we own, with its exact length.
                let n =
                    unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if n <= 0 {
                    break;
                }
                let msg = String::from_utf8_lossy(&buf[..n as usize]);
                out.push_str(" (");
                out.push_str(msg.trim_end());
                out.push(')');
            }
            out
        }
    }

    pub fn move_mount(mnt: &OwnedFd, target: &Path) -> std::io::Result<()> {
        let t = CString::new(target.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        let empty = c"";
        // SAFETY: move_mount(2) from the detached mount fd (empty path + F_EMPTY_PATH) to an
        // absolute or cwd-relative NUL-terminated target path; all pointers outlive the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                mnt.as_raw_fd(),
                empty.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let m = Mount {
            fstype: "overlay".into(),
            source: "overlay".into(),
            options: vec!["ro".into(), "lowerdir=/a:/b".into(), "nosuid".into()],
        };
        let (flags, data) = m.parse();
        assert!(flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
        assert_eq!(data, vec!["lowerdir=/a:/b"]);
    }

    #[test]
    fn mount_serializes_as_plain_data() {
        let m = Mount {
            fstype: "bind".into(),
            source: "/x".into(),
            options: vec!["rbind".into(), "ro".into()],
        };
        let j = serde_json::to_string(&m).expect("encode");
        assert_eq!(
            j,
            r#"{"fstype":"bind","source":"/x","options":["rbind","ro"]}"#
        );
    }
}
