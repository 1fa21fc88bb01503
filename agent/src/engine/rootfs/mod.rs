//! The container's root filesystem: mounts, `/dev`, `pivot_root`, masked and read-only paths.
//!
//! Runs in the init process, inside its new mount namespace, in this order (runc's
//! `prepareRootfs`, runtime-spec config.md "Mounts" and config-linux.md):
//!
//! 1. [`prepare`]: make `/` a slave (or what `linux.rootfsPropagation` asks) so nothing we mount
//!    propagates back to the host; bind the rootfs onto itself so it is a mount point; perform
//!    each spec mount beneath the rootfs (destinations resolved with [`path`], never escaping);
//!    fill a tmpfs `/dev`;
//! 2. [`pivot`]: `pivot_root(".", ".")` and a lazy unmount of the old root, so the host's tree
//!    is gone from the container (not hidden as with `chroot`);
//! 3. [`finalize`]: read-only paths, masked paths, a read-only root, and the requested
//!    propagation of `/`.

pub mod dev;
pub mod options;
pub mod path;

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{Mount as SpecMount, Spec};

use crate::engine::cgroups::CgroupVersion;
use crate::engine::error::{EngineError, Result};
use path::{ensure_in_root, proc_fd_path, Create};

/// What the rootfs steps need to know beyond the spec.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    pub spec: &'a Spec,
    /// Absolute path of the root filesystem on the host.
    pub rootfs: &'a Path,
    /// The container has a new user namespace (mknod is not permitted there).
    pub userns: bool,
    /// The container has its own network namespace (sysfs may be mounted fresh).
    pub netns: bool,
    pub cgroup_version: CgroupVersion,
    /// Root of the cgroup hierarchy on the host, normally `/sys/fs/cgroup`.
    pub cgroup_root: &'a Path,
    /// The container's own cgroup (what a cgroup mount shows without a cgroup namespace).
    pub cgroup_path: &'a crate::engine::cgroups::CgroupPath,
    /// The container has its own cgroup namespace.
    pub cgroupns: bool,
}

fn sys(what: String) -> impl FnOnce(nix::Error) -> EngineError {
    move |e| EngineError::sys(what, e)
}

/// Step 1: everything before `pivot_root`.
pub fn prepare(ctx: &Context) -> Result<()> {
    let linux = ctx.spec.linux().as_ref();
    let prop = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(options::propagation)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    // Shared propagation is applied after pivot_root; before it, be a slave so nothing leaks.
    let first = if prop.contains(MsFlags::MS_SHARED) {
        MsFlags::MS_SLAVE | MsFlags::MS_REC
    } else {
        prop | MsFlags::MS_REC
    };
    mount(None::<&str>, "/", None::<&str>, first, None::<&str>)
        .map_err(sys("failed to set propagation of /".into()))?;
    mount(
        Some(ctx.rootfs),
        ctx.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(format!(
        "failed to bind {} onto itself",
        ctx.rootfs.display()
    )))?;

    let root_fd: OwnedFd = std::fs::File::open(ctx.rootfs)
        .map_err(|e| EngineError::io("open", ctx.rootfs, e))?
        .into();
    let mut dev_is_tmpfs = false;
    for m in ctx.spec.mounts().as_deref().unwrap_or_default() {
        if m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs") {
            dev_is_tmpfs = true;
        }
        mount_one(ctx, &root_fd, m)?;
    }
    if dev_is_tmpfs {
        let mut nodes = dev::default_nodes();
        for d in linux
            .and_then(|l| l.devices().as_deref())
            .unwrap_or_default()
        {
            nodes.push(dev::node_of(d)?);
        }
        for n in &nodes {
            dev::create_node(&root_fd, ctx.rootfs, n, ctx.userns)?;
        }
        dev::create_symlinks(&root_fd, ctx.rootfs)?;
    }
    Ok(())
}

fn mount_one(ctx: &Context, root: &OwnedFd, m: &SpecMount) -> Result<()> {
    let opts = options::parse(m.options().as_deref().unwrap_or_default())?;
    let typ = m
        .typ()
        .as_deref()
        .unwrap_or(if opts.bind { "bind" } else { "" });
    let dest = m.destination();
    let full = ctx.rootfs.join(path::rel_of(dest));
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroups(ctx, root, dest, &opts);
    }
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let bind = opts.bind || typ == "bind";
    let create = if bind && !source.is_dir() {
        Create::File
    } else {
        Create::Dir
    };
    if bind && !opts.data.is_empty() {
        // A bind mount takes no filesystem data: these words would be silently dropped.
        return Err(EngineError::Unsupported(format!(
            "mount options {:?} on the bind mount at {}",
            opts.data,
            dest.display()
        )));
    }
    if bind && !source.exists() {
        return Err(EngineError::InvalidSpec(format!(
            "bind mount source {} does not exist",
            source.display()
        )));
    }
    let target_fd = ensure_in_root(root, ctx.rootfs, dest, create)?;
    let target = proc_fd_path(&target_fd);
    let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
    if bind {
        mount(
            Some(&source),
            &target,
            None::<&str>,
            opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC) | MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(format!(
            "failed to bind {} to {}",
            source.display(),
            full.display()
        )))?;
        let extra = opts.remount_flags();
        if !extra.is_empty() {
            remount_bind(&full_fd(root, ctx.rootfs, dest)?, &full, extra)?;
        }
    } else {
        let res = mount(Some(&source), &target, Some(typ), opts.flags, data);
        match res {
            Ok(()) => {}
            // Without its own network namespace, a container may not mount a fresh sysfs
            // (sysfs(5) ties it to the netns); bind the host's read-only instead, as runc does.
            Err(nix::Error::EPERM) if typ == "sysfs" && !ctx.netns => {
                mount(
                    Some("/sys"),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(sys(format!("failed to bind /sys to {}", full.display())))?;
                remount_bind(
                    &full_fd(root, ctx.rootfs, dest)?,
                    &full,
                    opts.flags | MsFlags::MS_RDONLY,
                )?;
            }
            Err(e) => {
                return Err(EngineError::sys(
                    format!("failed to mount {typ} on {}", full.display()),
                    e,
                ))
            }
        }
    }
    for p in &opts.propagation {
        let fd = full_fd(root, ctx.rootfs, dest)?;
        mount(
            None::<&str>,
            &proc_fd_path(&fd),
            None::<&str>,
            *p,
            None::<&str>,
        )
        .map_err(sys(format!(
            "failed to set propagation of {}",
            full.display()
        )))?;
    }
    Ok(())
}

/// An fd of the mount now on top of `dest` (the fd from before the mount names the covered
/// directory, not the new mount).
fn full_fd(root: &OwnedFd, rootfs: &Path, dest: &Path) -> Result<OwnedFd> {
    path::open_in_root(root, dest, libc::O_PATH)
        .map_err(|e| EngineError::io("resolve", rootfs.join(path::rel_of(dest)), e))
}

/// Remounts a bind mount with `flags`, keeping the flags the kernel locked on it (a user
/// namespace may not clear nosuid/nodev/noexec inherited from the host, mount(2) EPERM).
fn remount_bind(fd: &OwnedFd, shown: &Path, flags: MsFlags) -> Result<()> {
    let target = proc_fd_path(fd);
    let locked = locked_flags(&target);
    mount(
        None::<&str>,
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked,
        None::<&str>,
    )
    .map_err(sys(format!(
        "failed to remount {} ({flags:?})",
        shown.display()
    )))
}

fn locked_flags(p: &Path) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(p) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags as F;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (a, b) in [
        (F::ST_NOSUID, MsFlags::MS_NOSUID),
        (F::ST_NODEV, MsFlags::MS_NODEV),
        (F::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (F::ST_NOATIME, MsFlags::MS_NOATIME),
        (F::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (F::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(a) {
            out |= b;
        }
    }
    out
}

/// A `cgroup` mount: on v2 one cgroup2 mount; on v1 a tmpfs with one mount per hierarchy the
/// host has, named as on the host. With a cgroup namespace each shows the container's own
/// cgroup as its root.
fn mount_cgroups(
    ctx: &Context,
    root: &OwnedFd,
    dest: &Path,
    opts: &options::Options,
) -> Result<()> {
    let full = ctx.rootfs.join(path::rel_of(dest));
    let flags = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
    if ctx.cgroup_version == CgroupVersion::V2 && !ctx.cgroupns {
        // Without a cgroup namespace a fresh cgroup2 mount would show (and, unless read-only,
        // let root in the container change) the host's whole tree: bind only our own cgroup.
        let src = ctx
            .cgroup_root
            .join(ctx.cgroup_path.path.trim_start_matches('/'));
        return bind_cgroup(ctx, root, &src, dest, flags);
    }
    if ctx.cgroup_version == CgroupVersion::V2 {
        let fd = ensure_in_root(root, ctx.rootfs, dest, Create::Dir)?;
        return mount(
            Some("cgroup2"),
            &proc_fd_path(&fd),
            Some("cgroup2"),
            flags,
            None::<&str>,
        )
        .map_err(sys(format!(
            "failed to mount cgroup2 on {}",
            full.display()
        )));
    }
    let fd = ensure_in_root(root, ctx.rootfs, dest, Create::Dir)?;
    mount(
        Some("tmpfs"),
        &proc_fd_path(&fd),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .map_err(sys(format!("failed to mount tmpfs on {}", full.display())))?;
    for (name, hopts) in v1_hierarchies(ctx.cgroup_root)? {
        let sub = dest.join(&name);
        if !ctx.cgroupns {
            // As on v2: only the container's own cgroup of each hierarchy, or nothing.
            let own = hopts
                .split(',')
                .find_map(|c| ctx.cgroup_path.v1.get(c))
                .unwrap_or(&ctx.cgroup_path.path);
            let src = ctx
                .cgroup_root
                .join(&name)
                .join(own.trim_start_matches('/'));
            if src.is_dir() {
                bind_cgroup(ctx, root, &src, &sub, flags)?;
            }
            continue;
        }
        let fd = ensure_in_root(root, ctx.rootfs, &sub, Create::Dir)?;
        mount(
            Some("cgroup"),
            &proc_fd_path(&fd),
            Some("cgroup"),
            flags,
            Some(hopts.as_str()),
        )
        .map_err(sys(format!(
            "failed to mount cgroup ({hopts}) on {}",
            full.join(&name).display()
        )))?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        remount_bind(
            &full_fd(root, ctx.rootfs, dest)?,
            &full,
            flags | MsFlags::MS_RDONLY,
        )?;
    }
    Ok(())
}

/// Binds one host cgroup directory at `dest` with the mount's flags (read-only by default).
fn bind_cgroup(
    ctx: &Context,
    root: &OwnedFd,
    src: &Path,
    dest: &Path,
    flags: MsFlags,
) -> Result<()> {
    let full = ctx.rootfs.join(path::rel_of(dest));
    let fd = ensure_in_root(root, ctx.rootfs, dest, Create::Dir)?;
    mount(
        Some(src),
        &proc_fd_path(&fd),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(format!(
        "failed to bind {} to {}",
        src.display(),
        full.display()
    )))?;
    remount_bind(&full_fd(root, ctx.rootfs, dest)?, &full, flags)
}

/// The v1 hierarchies read ahead by this process ([`read_v1_hierarchies_ahead`]).
static V1_AHEAD: std::sync::OnceLock<(PathBuf, Vec<(String, String)>)> = std::sync::OnceLock::new();

/// Reads the v1 hierarchies under `cgroup_root` now, for this process's [`prepare`] to use: a
/// standby init does it while its parent readies its cgroup, moments before the mounts.
pub fn read_v1_hierarchies_ahead(cgroup_root: &Path) {
    if let Ok(h) = read_v1_hierarchies(cgroup_root) {
        let _ = V1_AHEAD.set((cgroup_root.to_path_buf(), h));
    }
}

/// The v1 hierarchies mounted under `cgroup_root` on the host: (directory name, mount options
/// naming its controllers), from /proc/self/mountinfo (or as read ahead).
fn v1_hierarchies(cgroup_root: &Path) -> Result<Vec<(String, String)>> {
    match V1_AHEAD.get() {
        Some((root, h)) if root == cgroup_root => Ok(h.clone()),
        _ => read_v1_hierarchies(cgroup_root),
    }
}

fn read_v1_hierarchies(cgroup_root: &Path) -> Result<Vec<(String, String)>> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| EngineError::io("read", "/proc/self/mountinfo", e))?;
    Ok(parse_v1_hierarchies(&mi, cgroup_root))
}

fn parse_v1_hierarchies(mountinfo: &str, cgroup_root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        if post.next() != Some("cgroup") {
            continue;
        }
        let super_opts = post.nth(1).unwrap_or("");
        let mp = pre.split(' ').nth(4).unwrap_or("");
        let Ok(rel) = Path::new(mp).strip_prefix(cgroup_root) else {
            continue;
        };
        let name = rel.to_string_lossy().into_owned();
        if name.is_empty() || name.contains('/') {
            continue;
        }
        let ctrl: Vec<&str> = super_opts
            .split(',')
            .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("release_agent"))
            .collect();
        out.push((name, ctrl.join(",")));
    }
    out
}

/// Step 2: make the rootfs `/` and detach the old root.
pub fn pivot(rootfs: &Path) -> Result<()> {
    let new_root = nix::fcntl::open(
        rootfs,
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys(format!("failed to open {}", rootfs.display())))?;
    let old_root = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(sys("failed to open /".into()))?;
    let close = |fd| {
        let _ = nix::unistd::close(fd);
    };
    let res = (|| {
        nix::unistd::fchdir(new_root)
            .map_err(sys(format!("failed to chdir to {}", rootfs.display())))?;
        // pivot_root(".", ".") stacks the old root under the new one at "."; see pivot_root(2)
        // NOTES, and runc's pivotRoot for the same sequence.
        nix::unistd::pivot_root(".", ".").map_err(sys(format!(
            "failed to pivot_root into {}",
            rootfs.display()
        )))?;
        nix::unistd::fchdir(old_root).map_err(sys("failed to chdir to the old root".into()))?;
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys("failed to make the old root a slave".into()))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(sys("failed to detach the old root".into()))?;
        nix::unistd::chdir("/").map_err(sys("failed to chdir to /".into()))
    })();
    close(new_root);
    close(old_root);
    res
}

/// Step 3: read-only and masked paths, read-only root, final propagation of `/`.
pub fn finalize(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let root_fd: OwnedFd = std::fs::File::open("/")
        .map_err(|e| EngineError::io("open", "/", e))?
        .into();
    for p in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or_default()
    {
        let p = Path::new(p);
        // config-linux.md: paths that do not exist are skipped; any other failure is an error.
        let Some(fd) = open_existing(&root_fd, p)? else {
            continue;
        };
        let t = proc_fd_path(&fd);
        mount(
            Some(&t),
            &t,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys(format!(
            "failed to bind read-only path {}",
            p.display()
        )))?;
        remount_bind(
            &full_fd(&root_fd, Path::new("/"), p)?,
            p,
            MsFlags::MS_RDONLY | MsFlags::MS_REC,
        )?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or_default()
    {
        let p = Path::new(p);
        let Some(fd) = open_existing(&root_fd, p)? else {
            continue;
        };
        let t = proc_fd_path(&fd);
        let is_dir = std::fs::metadata(&t).map(|m| m.is_dir()).unwrap_or(false);
        let res = if is_dir {
            mount(
                Some("tmpfs"),
                &t,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                Some("size=0k"),
            )
        } else {
            let null = dev_null(&root_fd)?;
            mount(
                Some(&proc_fd_path(&null)),
                &t,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        };
        res.map_err(sys(format!("failed to mask {}", p.display())))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        remount_bind(&root_fd_now()?, Path::new("/"), MsFlags::MS_RDONLY)?;
    }
    if let Some(p) = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(options::propagation)
    {
        if p.contains(MsFlags::MS_SHARED) {
            mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
                .map_err(sys("failed to make / shared".into()))?;
        }
    }
    Ok(())
}

/// `p` inside the root, or `None` when it does not exist.
fn open_existing(root: &OwnedFd, p: &Path) -> Result<Option<OwnedFd>> {
    match path::open_in_root(root, p, libc::O_PATH) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::io("resolve", p, e)),
    }
}

/// The container's `/dev/null`, verified to be the real node (char 1:3, not a symlink or a
/// file put there by the image): masking binds it over files, and binding whatever `/dev/null`
/// names would expose that instead (the pattern of CVE-2025-31133).
fn dev_null(root: &OwnedFd) -> Result<OwnedFd> {
    let fd = path::open_in_root(
        root,
        Path::new("/dev/null"),
        libc::O_PATH | libc::O_NOFOLLOW,
    )
    .map_err(|e| EngineError::io("open", "/dev/null", e))?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd())
        .map_err(|e| EngineError::sys("fstat /dev/null", e))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        return Err(EngineError::InvalidSpec(
            "the container's /dev/null is not the null device; refusing to mask paths with it"
                .into(),
        ));
    }
    Ok(fd)
}

fn root_fd_now() -> Result<OwnedFd> {
    std::fs::File::open("/")
        .map(Into::into)
        .map_err(|e| EngineError::io("open", "/", e))
}

/// Writes `linux.sysctl` through the container's /proc/sys (after pivot_root, so the values
/// land in the container's namespaces).
pub fn apply_sysctls(spec: &Spec) -> Result<()> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (k, v) in map {
        let p = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
        std::fs::write(&p, v.as_bytes()).map_err(|e| EngineError::io("write sysctl", &p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_hierarchies_come_from_mountinfo() {
        let mi = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
34 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
35 22 0:31 / /mnt/other rw - cgroup cgroup rw,pids";
        let h = parse_v1_hierarchies(mi, Path::new("/sys/fs/cgroup"));
        assert_eq!(
            h,
            vec![
                ("cpu".to_string(), "cpu".to_string()),
                ("memory".to_string(), "memory".to_string()),
                ("systemd".to_string(), "xattr,name=systemd".to_string()),
            ]
        );
    }
}
