//! The OCI runtime spec (`config.json`): loading, defaults and validation.
//!
//! The engine honours what a bundle's spec asks for or refuses it; it never silently ignores a
//! field (runtime-spec `config.md`: "runtimes MUST generate an error" for what they cannot
//! honour). [`validate`] is the single place that decides what we support, so every verb that
//! reads a spec (`create`, `run`, `image bundle`) refuses the same things with the same words.
//!
//! [`default_spec`] is what `minid runtime spec` prints and what `minid image bundle` starts from:
//! the runc/oci-spec default, with Docker's default capability set and a private cgroup
//! namespace (Docker's default on cgroup v2).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxDeviceCgroup, LinuxDeviceType,
    LinuxNamespace, LinuxNamespaceType, Spec,
};

use crate::engine::error::{EngineError, Result};

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DOCKER_DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// The default spec for a new bundle: runs `sh` as root with Docker's capabilities in new
/// pid, mount, ipc, uts, network and cgroup namespaces.
pub fn default_spec() -> Spec {
    let mut spec = Spec::default();
    let caps: Capabilities = DOCKER_DEFAULT_CAPS.iter().copied().collect();
    let mut lc = LinuxCapabilities::default();
    lc.set_bounding(Some(caps.clone()))
        .set_effective(Some(caps.clone()))
        .set_permitted(Some(caps))
        .set_inheritable(Some(HashSet::new()))
        .set_ambient(Some(HashSet::new()));
    if let Some(p) = spec.process_mut() {
        p.set_capabilities(Some(lc));
    }
    if let Some(linux) = spec.linux_mut() {
        let mut ns = linux.namespaces().clone().unwrap_or_default();
        if !ns.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup) {
            let mut cg = LinuxNamespace::default();
            cg.set_typ(LinuxNamespaceType::Cgroup);
            ns.push(cg);
        }
        linux.set_namespaces(Some(ns));
        let mut res = linux.resources().clone().unwrap_or_default();
        res.set_devices(Some(default_device_rules()));
        linux.set_resources(Some(res));
    }
    spec
}

/// Docker's and runc's default device rules: deny everything, allow mknod, and allow using the
/// default devices (null, zero, full, random, urandom, tty, console, ptmx, pts). Without the
/// deny-all, CAP_MKNOD lets a container make and open any host device (a disk, /dev/fuse).
fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    let rule = |allow: bool,
                typ: LinuxDeviceType,
                major: Option<i64>,
                minor: Option<i64>,
                access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(allow)
            .set_typ(Some(typ))
            .set_major(major)
            .set_minor(minor)
            .set_access(Some(access.to_string()));
        r
    };
    let mut rules = vec![
        rule(false, LinuxDeviceType::A, None, None, "rwm"),
        rule(true, LinuxDeviceType::C, None, None, "m"),
        rule(true, LinuxDeviceType::B, None, None, "m"),
    ];
    for (major, minor) in [
        (1, Some(3)),
        (1, Some(5)),
        (1, Some(7)),
        (1, Some(8)),
        (1, Some(9)),
    ]
    .into_iter()
    .chain([(5, Some(0)), (5, Some(1)), (5, Some(2)), (136, None)])
    {
        rules.push(rule(true, LinuxDeviceType::C, Some(major), minor, "rwm"));
    }
    rules
}

/// Reads `<bundle>/config.json`, validates it and resolves the root path against the bundle.
pub fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|e| EngineError::io("read", &path, e))?;
    let raw: serde_json::Value = serde_json::from_slice(&data)
        .map_err(|e| EngineError::InvalidSpec(format!("{}: {e}", path.display())))?;
    let spec = <Spec as serde::Deserialize>::deserialize(&raw)
        .map_err(|e| EngineError::InvalidSpec(format!("{}: {e}", path.display())))?;
    // The spec types drop fields they do not know (a newer runtime-spec field, idmapped
    // mounts, a typo); dropping them silently would run something other than what was asked.
    let parsed = serde_json::to_value(&spec)
        .map_err(|e| EngineError::Other(format!("re-encoding the spec: {e}")))?;
    let mut unknown = Vec::new();
    dropped_fields(&raw, &parsed, "", &mut unknown);
    if !unknown.is_empty() {
        return Err(unsupported(format!(
            "{} (not understood by minid)",
            unknown.join(", ")
        )));
    }
    resolve(spec, bundle)
}

/// Validates a spec of the bundle at `bundle` (one read from its `config.json`, or the one a
/// caller has just written there) and resolves its root path and relative bind sources against
/// the bundle, as [`load`] does.
pub fn resolve(mut spec: Spec, bundle: &Path) -> Result<Spec> {
    validate(&spec)?;
    let root = rootfs_path(&spec, bundle)?;
    if !root.is_dir() {
        return Err(EngineError::InvalidSpec(format!(
            "root.path {} is not a directory",
            root.display()
        )));
    }
    if let Some(r) = spec.root_mut() {
        r.set_path(root);
    }
    // config.md: a relative bind source is relative to the bundle, not to whoever runs us.
    if let Some(mounts) = spec.mounts_mut() {
        for m in mounts.iter_mut() {
            let bind = m.typ().as_deref() == Some("bind")
                || m.options()
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|o| o == "bind" || o == "rbind");
            if let Some(src) = m.source().clone().filter(|s| bind && s.is_relative()) {
                m.set_source(Some(bundle.join(src)));
            }
        }
    }
    Ok(spec)
}

/// Fields present (and not null) in `raw` that did not survive parsing into `parsed`, as
/// JSON paths (`mounts[2].uidMappings`). Free-form maps (annotations, sysctl, unified) are
/// kept whole by the spec types, so their keys never show here.
fn dropped_fields(
    raw: &serde_json::Value,
    parsed: &serde_json::Value,
    at: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (raw, parsed) {
        (Value::Object(r), Value::Object(p)) => {
            for (k, v) in r {
                if v.is_null() {
                    continue;
                }
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match p.get(k) {
                    Some(pv) => dropped_fields(v, pv, &here, out),
                    None => out.push(here),
                }
            }
        }
        (Value::Array(r), Value::Array(p)) => {
            for (i, (rv, pv)) in r.iter().zip(p).enumerate() {
                dropped_fields(rv, pv, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The absolute root filesystem path of a bundle.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| EngineError::InvalidSpec("root is missing".into()))?;
    let p = root.path();
    Ok(if p.is_absolute() {
        p.clone()
    } else {
        bundle.join(p)
    })
}

fn unsupported(what: impl Into<String>) -> EngineError {
    EngineError::Unsupported(what.into())
}

fn nonempty(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|s| !s.is_empty())
}

/// Refuses every field minid cannot honour, naming it.
pub fn validate(spec: &Spec) -> Result<()> {
    let v = spec.version();
    if !v.starts_with("1.") {
        return Err(EngineError::InvalidSpec(format!(
            "ociVersion {v:?} is not a 1.x runtime spec"
        )));
    }
    if spec.solaris().is_some()
        || spec.windows().is_some()
        || spec.vm().is_some()
        || spec.zos().is_some()
    {
        return Err(unsupported(
            "solaris, windows, vm and zos sections (minid runs Linux containers only)",
        ));
    }
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| EngineError::InvalidSpec("process is missing".into()))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(EngineError::InvalidSpec("process.args is empty".into()));
    }
    if process.command_line().is_some() {
        return Err(unsupported("process.commandLine (Windows only)"));
    }
    if !process.cwd().is_absolute() {
        return Err(EngineError::InvalidSpec(format!(
            "process.cwd {} is not absolute",
            process.cwd().display()
        )));
    }
    if nonempty(process.apparmor_profile()) {
        return Err(unsupported(
            "process.apparmorProfile (AppArmor profiles are not supported by minid)",
        ));
    }
    if nonempty(process.selinux_label()) {
        return Err(unsupported(
            "process.selinuxLabel (SELinux is not supported by minid)",
        ));
    }
    if process.scheduler().is_some() {
        return Err(unsupported("process.scheduler"));
    }
    if process.exec_cpu_affinity().is_some() {
        return Err(unsupported("process.execCPUAffinity"));
    }
    if let Some(rl) = process.rlimits() {
        let mut seen = HashSet::new();
        for r in rl {
            if !seen.insert(format!("{:?}", r.typ())) {
                return Err(EngineError::InvalidSpec(format!(
                    "process.rlimits lists {:?} twice",
                    r.typ()
                )));
            }
            if r.soft() > r.hard() {
                return Err(EngineError::InvalidSpec(format!(
                    "process.rlimits {:?}: soft limit {} exceeds hard limit {}",
                    r.typ(),
                    r.soft(),
                    r.hard()
                )));
            }
        }
    }
    if let Some(m) = spec.mounts() {
        for mnt in m {
            if !mnt.destination().is_absolute() {
                return Err(EngineError::InvalidSpec(format!(
                    "mount destination {} is not absolute",
                    mnt.destination().display()
                )));
            }
        }
    }
    let Some(linux) = spec.linux() else {
        return Err(EngineError::InvalidSpec(
            "linux section is missing (minid runs Linux containers)".into(),
        ));
    };
    if linux.intel_rdt().is_some() {
        return Err(unsupported("linux.intelRdt"));
    }
    if linux.memory_policy().is_some() {
        return Err(unsupported("linux.memoryPolicy"));
    }
    if linux.personality().is_some() {
        return Err(unsupported("linux.personality"));
    }
    if linux.time_offsets().is_some() {
        return Err(unsupported("linux.timeOffsets (time namespaces)"));
    }
    if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(unsupported("linux.netDevices"));
    }
    if nonempty(linux.mount_label()) {
        return Err(unsupported(
            "linux.mountLabel (SELinux is not supported by minid)",
        ));
    }
    if let Some(p) = linux.rootfs_propagation() {
        if !matches!(
            p.as_str(),
            "" | "private"
                | "rprivate"
                | "slave"
                | "rslave"
                | "shared"
                | "rshared"
                | "unbindable"
                | "runbindable"
        ) {
            return Err(EngineError::InvalidSpec(format!(
                "linux.rootfsPropagation {p:?} is not a propagation mode"
            )));
        }
    }
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    let mut seen = HashSet::new();
    for ns in &namespaces {
        if !seen.insert(ns.typ()) {
            return Err(EngineError::InvalidSpec(format!(
                "namespace {:?} is listed twice",
                ns.typ()
            )));
        }
        if ns.typ() == LinuxNamespaceType::Time {
            return Err(unsupported("time namespace"));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(EngineError::InvalidSpec(format!(
                    "namespace {:?} path {} is not absolute",
                    ns.typ(),
                    p.display()
                )));
            }
        }
    }
    let new_user = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if new_user && !has_maps {
        return Err(EngineError::InvalidSpec(
            "a new user namespace needs linux.uidMappings and linux.gidMappings".into(),
        ));
    }
    if new_user {
        if let Some(j) = namespaces.iter().find(|n| n.path().is_some()) {
            // The init is cloned into its new user namespace first; from there it has no
            // privilege over namespaces owned by the host's (setns(2) EPERM).
            return Err(EngineError::Unsupported(format!(
                "joining the {:?} namespace by path together with a new user namespace \
                 (join the user namespace that owns it by path instead)",
                j.typ()
            )));
        }
    }
    if !new_user && has_maps {
        return Err(EngineError::InvalidSpec(
            "linux.uidMappings/gidMappings given without a new user namespace".into(),
        ));
    }
    let has_uts = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Uts);
    for (field, value) in [
        ("hostname", spec.hostname()),
        ("domainname", spec.domainname()),
    ] {
        if value.as_ref().is_some_and(|h| !h.is_empty()) && !has_uts {
            return Err(EngineError::InvalidSpec(format!(
                "{field} is set but the container has no uts namespace (it would rename the host)"
            )));
        }
    }

    if let Some(sysctl) = linux.sysctl() {
        for k in sysctl.keys() {
            if k.contains('/') || k.contains("..") || k.is_empty() {
                return Err(EngineError::InvalidSpec(format!(
                    "sysctl name {k:?} is invalid"
                )));
            }
            let has = |t| namespaces.iter().any(|n| n.typ() == t);
            let ok = match sysctl_namespace(k) {
                Some(t) => has(t),
                None => false,
            };
            if !ok {
                return Err(EngineError::InvalidSpec(match sysctl_namespace(k) {
                    Some(t) => format!(
                        "sysctl {k} needs the container's own {t:?} namespace: without it, it would change the host"
                    ),
                    None => format!(
                        "sysctl {k} is not namespaced: setting it in a container would change the host"
                    ),
                }));
            }
        }
    }
    Ok(())
}

/// The namespace a sysctl belongs to, for the sysctls the kernel namespaces (runc's list:
/// ipc sysctls, `net.*`, the uts names); `None` for host-wide ones.
fn sysctl_namespace(key: &str) -> Option<LinuxNamespaceType> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(LinuxNamespaceType::Uts)
    } else {
        None
    }
}

/// Whether the spec asks for a new (not joined) namespace of `typ`.
pub fn new_namespace(spec: &Spec, typ: LinuxNamespaceType) -> bool {
    namespace(spec, typ).is_some_and(|n| n.path().is_none())
}

/// The spec's entry for a namespace type, if any.
pub fn namespace(spec: &Spec, typ: LinuxNamespaceType) -> Option<&LinuxNamespace> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|ns| ns.iter().find(|n| n.typ() == typ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_is_valid_and_has_docker_caps() {
        let spec = default_spec();
        validate(&spec).expect("default spec validates");
        let caps = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref())
            .and_then(|c| c.bounding().clone())
            .expect("bounding set");
        assert_eq!(caps.len(), 14);
        assert!(caps.contains(&Capability::NetRaw));
        assert!(!caps.contains(&Capability::SysAdmin));
        assert!(new_namespace(&spec, LinuxNamespaceType::Cgroup));
        assert!(new_namespace(&spec, LinuxNamespaceType::Pid));
        let devices = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.devices().clone())
            .expect("device rules");
        assert!(!devices[0].allow() && devices[0].access().as_deref() == Some("rwm"));
    }

    #[test]
    fn fields_the_spec_types_drop_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("rootfs")).expect("mkdir");
        let mut v = serde_json::to_value(default_spec()).expect("json");
        v["mounts"][0]["uidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        v["process"]["frobnicate"] = true.into();
        v["hostname"] = serde_json::Value::Null;
        std::fs::write(dir.path().join("config.json"), v.to_string()).expect("write");
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("mounts[0].uidMappings"), "{err}");
        assert!(err.contains("process.frobnicate"), "{err}");
        assert!(
            !err.contains("hostname"),
            "null fields are absent, not unknown: {err}"
        );
    }

    #[test]
    fn host_wide_sysctls_are_refused() {
        let mut spec = default_spec();
        let set = |spec: &mut Spec, k: &str| {
            if let Some(l) = spec.linux_mut() {
                l.set_sysctl(Some([(k.to_string(), "1".to_string())].into()));
            }
        };
        set(&mut spec, "net.ipv4.ip_forward");
        validate(&spec).expect("net.* in a network namespace");
        set(&mut spec, "kernel.core_pattern");
        let err = validate(&spec).unwrap_err().to_string();
        assert!(
            err.contains("kernel.core_pattern") && err.contains("host"),
            "{err}"
        );
        if let Some(l) = spec.linux_mut() {
            let ns = l.namespaces().clone().unwrap_or_default();
            l.set_namespaces(Some(
                ns.into_iter()
                    .filter(|n| n.typ() != LinuxNamespaceType::Network)
                    .collect(),
            ));
        }
        set(&mut spec, "net.ipv4.ip_forward");
        let err = validate(&spec).unwrap_err().to_string();
        assert!(err.contains("Network"), "{err}");
    }

    #[test]
    fn intel_rdt_is_refused_not_ignored() {
        let mut spec = default_spec();
        let rdt = serde_json::from_value(serde_json::json!({"closID": "x"})).expect("rdt json");
        if let Some(l) = spec.linux_mut() {
            l.set_intel_rdt(Some(rdt));
        }
        let err = validate(&spec).unwrap_err();
        assert!(err.to_string().contains("linux.intelRdt"), "{err}");
    }

    #[test]
    fn user_namespace_without_mappings_is_refused() {
        let mut spec = default_spec();
        if let Some(l) = spec.linux_mut() {
            let mut ns = l.namespaces().clone().unwrap_or_default();
            let mut u = LinuxNamespace::default();
            u.set_typ(LinuxNamespaceType::User);
            ns.push(u);
            l.set_namespaces(Some(ns));
        }
        let err = validate(&spec).unwrap_err();
        assert!(err.to_string().contains("uidMappings"), "{err}");
    }

    #[test]
    fn load_resolves_relative_root_and_reports_bad_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("rootfs")).expect("mkdir");
        default_spec()
            .save(dir.path().join("config.json"))
            .expect("save");
        let spec = load(dir.path()).expect("load");
        assert_eq!(
            spec.root().as_ref().map(|r| r.path().clone()),
            Some(dir.path().join("rootfs"))
        );
        std::fs::write(dir.path().join("config.json"), b"{not json").expect("write");
        let err = load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("config.json"), "{err}");
    }
}
