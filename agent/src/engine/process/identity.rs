//! The container process's identity: user, groups, capabilities, rlimits, no_new_privs.
//!
//! Order matters (capabilities(7), "Effect of user ID changes on capabilities"):
//! drop the bounding set while still root, set the groups and gid, keep capabilities across
//! `setuid` with `PR_SET_KEEPCAPS`, then set the permitted, effective and inheritable sets, and
//! finally raise the ambient ones (which must be permitted and inheritable).

use std::collections::HashSet;

use caps::{CapSet, Capability as Cap};
use oci_spec::runtime::{Capabilities, LinuxCapabilities, PosixRlimit, Process};

use crate::engine::error::{EngineError, Result};

fn to_caps(set: &Option<Capabilities>) -> Result<HashSet<Cap>> {
    let mut out = HashSet::new();
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        let cap: Cap = name
            .parse()
            .map_err(|_| EngineError::Unsupported(format!("capability {name}")))?;
        out.insert(cap);
    }
    Ok(out)
}

fn caps_err(what: &str) -> impl FnOnce(caps::errors::CapsError) -> EngineError + '_ {
    move |e| EngineError::Init(format!("failed to set {what} capabilities: {e}"))
}

/// Drops every capability not in the bounding set (while still privileged).
pub fn drop_bounding(c: &LinuxCapabilities) -> Result<()> {
    let keep = to_caps(c.bounding())?;
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(caps_err("bounding"))?;
        }
    }
    Ok(())
}

/// Bit masks of a capability set, as capset(2) wants them (two 32-bit words).
fn mask(set: &HashSet<Cap>) -> u64 {
    set.iter().fold(0u64, |m, c| m | (1u64 << c.index()))
}

/// Sets the permitted, effective and inheritable sets in one capset(2) call (one call, because
/// the kernel checks effective ⊆ permitted after each call), then the ambient set.
pub fn set_caps(c: &LinuxCapabilities) -> Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let (e, p, i) = (
        mask(&to_caps(c.effective())?),
        mask(&to_caps(c.permitted())?),
        mask(&to_caps(c.inheritable())?),
    );
    let hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [
        Data {
            effective: e as u32,
            permitted: p as u32,
            inheritable: i as u32,
        },
        Data {
            effective: (e >> 32) as u32,
            permitted: (p >> 32) as u32,
            inheritable: (i >> 32) as u32,
        },
    ];
    // SAFETY: capset with a version-3 header and the two data structs that version requires.
    if unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) } < 0 {
        return Err(EngineError::Init(format!(
            "capset (effective {e:#x}, permitted {p:#x}, inheritable {i:#x}): {}",
            std::io::Error::last_os_error()
        )));
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_err("ambient"))?;
    for cap in raisable_ambient(c)? {
        caps::raise(None, CapSet::Ambient, cap).map_err(caps_err("ambient"))?;
    }
    Ok(())
}

/// The ambient capabilities the kernel will accept: an ambient capability must also be
/// permitted and inheritable (capabilities(7)). runc and crun skip the others (runc's default
/// spec lists ambient capabilities with an empty inheritable set); so do we, and
/// [`ambient_warnings`] lets the caller say so.
pub fn raisable_ambient(c: &LinuxCapabilities) -> Result<HashSet<Cap>> {
    let p = to_caps(c.permitted())?;
    let i = to_caps(c.inheritable())?;
    Ok(to_caps(c.ambient())?
        .into_iter()
        .filter(|cap| p.contains(cap) && i.contains(cap))
        .collect())
}

/// One warning per ambient capability that cannot be raised.
pub fn ambient_warnings(c: &LinuxCapabilities) -> Result<Vec<String>> {
    let ok = raisable_ambient(c)?;
    let mut out: Vec<String> = to_caps(c.ambient())?
        .into_iter()
        .filter(|cap| !ok.contains(cap))
        .map(|cap| {
            format!(
                "ambient capability {cap} is not raised: it is not both permitted and inheritable"
            )
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Switches to the process's uid, gid and supplementary groups, keeping the capabilities the
/// spec grants across the switch.
pub fn switch_user(p: &Process, userns: bool) -> Result<()> {
    let u = p.user();
    let groups: Vec<libc::gid_t> = u.additional_gids().clone().unwrap_or_default();
    // setgroups fails in a user namespace whose /proc/PID/setgroups says "deny"; we leave it
    // at its default ("allow": the maps are written by a privileged parent), so a failure is
    // real, unless there are no groups to set in a namespace someone else made.
    // SAFETY: setgroups with a valid pointer/length pair.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } < 0 {
        let e = std::io::Error::last_os_error();
        if !(userns && groups.is_empty()) {
            return Err(EngineError::Init(format!("setgroups {groups:?}: {e}")));
        }
    }
    nix::unistd::setresgid(u.gid().into(), u.gid().into(), u.gid().into())
        .map_err(|e| EngineError::sys(format!("setresgid {}", u.gid()), e))?;
    nix::sys::prctl::set_keepcaps(true).map_err(|e| EngineError::sys("PR_SET_KEEPCAPS", e))?;
    nix::unistd::setresuid(u.uid().into(), u.uid().into(), u.uid().into())
        .map_err(|e| EngineError::sys(format!("setresuid {}", u.uid()), e))?;
    nix::sys::prctl::set_keepcaps(false).map_err(|e| EngineError::sys("PR_SET_KEEPCAPS", e))?;
    Ok(())
}

fn rlimit_resource(r: &PosixRlimit) -> Result<libc::__rlimit_resource_t> {
    let name = serde_json::to_value(r.typ())
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    Ok(match name.as_str() {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return Err(EngineError::Unsupported(format!("rlimit {name}"))),
    })
}

/// Applies `process.rlimits` (setrlimit(2)); done while still privileged so hard limits may rise.
pub fn set_rlimits(p: &Process) -> Result<()> {
    for r in p.rlimits().as_deref().unwrap_or_default() {
        let res = rlimit_resource(r)?;
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit with a valid resource constant and a struct we own.
        if unsafe { libc::setrlimit(res, &lim) } < 0 {
            return Err(EngineError::Init(format!(
                "setrlimit {:?} soft={} hard={}: {}",
                r.typ(),
                r.soft(),
                r.hard(),
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

/// `process.ioPriority` (ioprio_set(2), IOPRIO_WHO_PROCESS of ourselves).
pub fn set_io_priority(p: &Process) -> Result<()> {
    let Some(io) = p.io_priority() else {
        return Ok(());
    };
    let class = match serde_json::to_value(io.class())
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .as_deref()
    {
        Some("IOPRIO_CLASS_RT") => 1,
        Some("IOPRIO_CLASS_BE") => 2,
        Some("IOPRIO_CLASS_IDLE") => 3,
        other => {
            return Err(EngineError::Unsupported(format!(
                "io priority class {other:?}"
            )))
        }
    };
    let prio = (class << 13) | (io.priority() & 0x1fff);
    // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS=1, 0 = self, prio); plain integers.
    if unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, prio) } < 0 {
        return Err(EngineError::Init(format!(
            "ioprio_set: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}
