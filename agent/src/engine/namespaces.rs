//! The ordered creation and joining of a container's namespaces.
//!
//! A container's namespaces come into being in three places, in this order:
//!
//! 1. the parent joins a pid namespace given by path (`setns` on a pid namespace only changes
//!    where the parent's *children* go, so the init lands in it) — [`Plan::join_pid`];
//! 2. `clone3` creates a new user and/or pid namespace ([`Plan::clone_flags`]): the user
//!    namespace must exist first so every other new namespace is owned by it, and a process
//!    cannot move itself into a new pid namespace;
//! 3. the init joins the namespaces given by path (user first, because joining it changes which
//!    other namespaces we may join), then unshares the remaining new ones
//!    ([`Plan::unshare_flags`]); the cgroup namespace comes after the parent has put the init in
//!    its cgroup, so the container sees its own cgroup as `/`.
//!
//! See namespaces(7), setns(2), clone(2) and runtime-spec config-linux.md "Namespaces".

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::engine::error::{EngineError, Result};

/// The kernel's flag for one namespace type.
pub fn clone_flag(typ: LinuxNamespaceType) -> Result<CloneFlags> {
    Ok(match typ {
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Time => return Err(EngineError::Unsupported("time namespace".into())),
    })
}

/// Which namespaces to create and which to join, derived once from the spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// New namespaces.
    pub new: Vec<LinuxNamespaceType>,
    /// Namespaces to join, by path, in the order they must be joined.
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
}

impl Plan {
    pub fn from_spec(spec: &Spec) -> Result<Plan> {
        let mut plan = Plan::default();
        let nss = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for ns in nss {
            clone_flag(ns.typ())?;
            match ns.path() {
                Some(p) => plan.join.push((ns.typ(), p.clone())),
                None => plan.new.push(ns.typ()),
            }
        }
        // The user namespace is joined first: it decides which other namespaces we may enter.
        plan.join
            .sort_by_key(|(t, _)| if *t == LinuxNamespaceType::User { 0 } else { 1 });
        Ok(plan)
    }

    pub fn creates(&self, typ: LinuxNamespaceType) -> bool {
        self.new.contains(&typ)
    }

    /// Flags for `clone3`: only the namespaces a process cannot unshare for itself (pid) or that
    /// must own the others (user).
    pub fn clone_flags(&self) -> CloneFlags {
        let mut f = CloneFlags::empty();
        if self.creates(LinuxNamespaceType::User) {
            f |= CloneFlags::CLONE_NEWUSER;
        }
        if self.creates(LinuxNamespaceType::Pid) {
            f |= CloneFlags::CLONE_NEWPID;
        }
        f
    }

    /// Flags the init passes to `unshare` after joining: every other new namespace.
    pub fn unshare_flags(&self) -> CloneFlags {
        let mut f = CloneFlags::empty();
        for t in &self.new {
            if !matches!(t, LinuxNamespaceType::User | LinuxNamespaceType::Pid) {
                // Infallible: from_spec already checked every type.
                f |= clone_flag(*t).unwrap_or(CloneFlags::empty());
            }
        }
        f
    }

    /// A pid namespace to join by path; the parent joins it before cloning.
    pub fn join_pid(&self) -> Option<&Path> {
        self.join
            .iter()
            .find(|(t, _)| *t == LinuxNamespaceType::Pid)
            .map(|(_, p)| p.as_path())
    }

    /// Namespaces the init joins itself, in order (the pid namespace excluded).
    pub fn init_joins(&self) -> impl Iterator<Item = &(LinuxNamespaceType, PathBuf)> {
        self.join
            .iter()
            .filter(|(t, _)| *t != LinuxNamespaceType::Pid)
    }
}

/// Opens a namespace file; done before any join so that a later join cannot hide the path.
pub fn open_ns(path: &Path) -> Result<OwnedFd> {
    let f = std::fs::File::open(path).map_err(|e| EngineError::io("open namespace", path, e))?;
    Ok(f.into())
}

/// `setns` into an open namespace file of the given type.
pub fn join(fd: &OwnedFd, typ: LinuxNamespaceType, path: &Path) -> Result<()> {
    nix::sched::setns(fd, clone_flag(typ)?).map_err(|e| {
        EngineError::sys(
            format!("failed to join {typ:?} namespace {}", path.display()),
            e,
        )
    })
}

/// Brings the loopback interface of the current network namespace up, as every runtime does
/// for a new network namespace (netdevice(7): SIOCGIFFLAGS / SIOCSIFFLAGS).
pub fn loopback_up() -> Result<()> {
    // SAFETY: plain socket(2) call; the result is checked and wrapped in an OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(EngineError::sys(
            "socket for loopback setup",
            nix::Error::last(),
        ));
    }
    // SAFETY: fd is a fresh, valid descriptor we own.
    let sock: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into the ifreq we own; the name is NUL-terminated.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(EngineError::sys("SIOCGIFFLAGS lo", nix::Error::last()));
    }
    // SAFETY: ifru_flags is the active union member after SIOCGIFFLAGS.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(EngineError::sys(
            "failed to bring lo up",
            nix::Error::last(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxNamespace;

    fn spec_with(nss: Vec<(LinuxNamespaceType, Option<&str>)>) -> Spec {
        let mut spec = crate::engine::spec::default_spec();
        let list = nss
            .into_iter()
            .map(|(t, p)| {
                let mut n = LinuxNamespace::default();
                n.set_typ(t);
                n.set_path(p.map(PathBuf::from));
                n
            })
            .collect();
        if let Some(l) = spec.linux_mut() {
            l.set_namespaces(Some(list));
        }
        spec
    }

    #[test]
    fn user_and_pid_are_cloned_the_rest_unshared() {
        use LinuxNamespaceType::*;
        let plan = Plan::from_spec(&spec_with(vec![
            (Pid, None),
            (Network, None),
            (User, None),
            (Mount, None),
            (Cgroup, None),
        ]))
        .expect("plan");
        assert_eq!(
            plan.clone_flags(),
            CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWPID
        );
        assert_eq!(
            plan.unshare_flags(),
            CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWCGROUP
        );
    }

    #[test]
    fn user_namespace_is_joined_first_and_pid_by_the_parent() {
        use LinuxNamespaceType::*;
        let plan = Plan::from_spec(&spec_with(vec![
            (Network, Some("/proc/10/ns/net")),
            (Pid, Some("/proc/10/ns/pid")),
            (User, Some("/proc/10/ns/user")),
            (Mount, None),
        ]))
        .expect("plan");
        let order: Vec<_> = plan.init_joins().map(|(t, _)| *t).collect();
        assert_eq!(order, vec![User, Network]);
        assert_eq!(plan.join_pid(), Some(Path::new("/proc/10/ns/pid")));
        assert_eq!(plan.clone_flags(), CloneFlags::empty());
        assert_eq!(plan.unshare_flags(), CloneFlags::CLONE_NEWNS);
    }
}
