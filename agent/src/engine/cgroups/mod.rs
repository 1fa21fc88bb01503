//! Control groups: the container's cgroup, its limits, its members and its statistics.
//!
//! This module owns everything the engine does under the cgroup mount: deciding where a
//! container's cgroup goes ([`resolve_path`]), detecting the hierarchy once ([`detect`]), and one
//! manager per container behind the [`Cgroup`] trait, with a v1 ([`v1`]) and a v2 ([`v2`])
//! backend. Its neighbours: `process` creates the init either directly into the cgroup
//! (`clone3(CLONE_INTO_CGROUP)` with [`Cgroup::clone_into_fd`], v2) or calls [`Cgroup::add`]
//! before letting the init run; `container` calls [`Cgroup::apply`] with the spec's
//! `linux.resources`, [`Cgroup::freeze`]/[`Cgroup::kill_all`] for pause and kill, and
//! [`Cgroup::remove`] on delete; the gRPC `Stats` call reads [`Cgroup::stats`]. The resolved
//! [`CgroupPath`] is serializable so a restarted agent (or the shim) can reopen the same cgroup.
//!
//! Semantics follow the OCI runtime spec, config-linux.md "Control groups" and the kernel's
//! Documentation/admin-guide/cgroup-v1/*.rst and cgroup-v2.rst. Every field of
//! `LinuxResources` is either written or refused with [`CgroupError::Unsupported`] naming the
//! field; nothing is silently ignored.
//!
//! Why not `cgroups-rs`: the architecture names it as the layer underneath, but version 0.5
//! discovers its hierarchies from `/proc/self/mountinfo` and the fixed `/sys/fs/cgroup`, so it
//! cannot be pointed at a temp dir of fixture files, which is how this module is tested; it also
//! hides per-file errors (we must report the path and the value of a failed write), has no
//! cgroup v2 device filter and treats the hybrid `unified` mount as neither v1 nor v2. The file
//! protocol itself is small (open, write one value, close), so the backends write the files
//! directly (the private `files` module). The v2 device controller is a hand-assembled eBPF program, see
//! [`devices`] for why.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::engine::ErrorKind;

pub mod devices;
mod files;
pub mod stats;
pub mod v1;
pub mod v2;

/// `CGROUP2_SUPER_MAGIC` from linux/magic.h.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// The cgroup mount root on a normal host.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// Which cgroup interface the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupVersion {
    /// Legacy per-controller hierarchies (including the "hybrid" layout with an empty
    /// `unified` cgroup2 mount beside them).
    V1,
    /// The unified hierarchy mounted at the root.
    V2,
}

/// Errors of the cgroup module. I/O errors carry the path and, for writes, the value.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to write {value} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unsupported cgroup setting {field}: {reason}")]
    Unsupported { field: String, reason: String },
    #[error("invalid value for {field}: {reason}")]
    InvalidValue { field: String, reason: String },
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("cannot parse {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("timed out after {waited_ms}ms waiting for {path} to become {state}")]
    Timeout {
        path: PathBuf,
        state: &'static str,
        waited_ms: u128,
    },
    #[error("failed to {op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: nix::Error,
    },
}

impl CgroupError {
    /// The engine-wide classification of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CgroupError::Unsupported { .. }
            | CgroupError::InvalidValue { .. }
            | CgroupError::InvalidPath { .. } => ErrorKind::InvalidArgument,
            CgroupError::Write { source, .. } | CgroupError::Io { source, .. } => {
                match source.raw_os_error() {
                    Some(e) => errno_kind(nix::Error::from_raw(e)),
                    None => crate::engine::error::io_kind(source),
                }
            }
            CgroupError::Sys { source, .. } => errno_kind(*source),
            CgroupError::Parse { .. } => ErrorKind::Internal,
            CgroupError::Timeout { .. } => ErrorKind::FailedPrecondition,
        }
    }

    pub(crate) fn unsupported(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CgroupError::Unsupported {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        CgroupError::InvalidValue {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// True when the error is the kernel saying "no such file": a missing control file means
    /// the controller is not enabled (v2) or not mounted (v1).
    pub fn is_not_found(&self) -> bool {
        match self {
            CgroupError::Write { source, .. } | CgroupError::Io { source, .. } => {
                source.kind() == std::io::ErrorKind::NotFound
            }
            _ => false,
        }
    }
}

fn errno_kind(e: nix::Error) -> ErrorKind {
    use nix::Error as E;
    match e {
        E::ENOENT => ErrorKind::NotFound,
        E::EEXIST => ErrorKind::AlreadyExists,
        E::EPERM | E::EACCES => ErrorKind::PermissionDenied,
        // ENOSPC: cgroup.max.descendants/depth reached; EAGAIN/ENOMEM: pids or memory exhausted.
        E::ENOSPC | E::ENOMEM | E::EAGAIN => ErrorKind::ResourceExhausted,
        // EBUSY: a limit below current usage, a non-empty cgroup, the no-internal-processes rule.
        E::EBUSY | E::ENOTEMPTY | E::EOPNOTSUPP => ErrorKind::FailedPrecondition,
        E::EINVAL | E::ERANGE => ErrorKind::InvalidArgument,
        _ => ErrorKind::Internal,
    }
}

/// Usage and limits of one container cgroup. Times are nanoseconds, sizes bytes; a counter the
/// kernel does not provide (controller missing) is 0, a limit that is "max" is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub cpu_usage_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    pub cpu_nr_periods: u64,
    pub cpu_nr_throttled: u64,
    pub cpu_throttled_ns: u64,
    pub memory_usage: u64,
    /// usage − inactive_file (v1: total_inactive_file), floored at 0: what the kernel cannot
    /// reclaim easily, the number `docker stats` and the kubelet show.
    pub memory_working_set: u64,
    pub memory_rss: u64,
    pub memory_cache: u64,
    pub memory_limit: Option<u64>,
    pub memory_swap_usage: u64,
    pub memory_max_usage: u64,
    pub oom_kill_count: u64,
    pub pids_current: u64,
    pub pids_limit: Option<u64>,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub io_read_ops: u64,
    pub io_write_ops: u64,
    /// Page faults, all and major (memory.stat pgfault, pgmajfault).
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// Pressure stall information, "some" avg10 in hundredths of a percent (cpu.pressure,
    /// memory.pressure, io.pressure); None where the kernel gives none (cgroup v1).
    pub cpu_pressure: Option<u64>,
    pub memory_pressure: Option<u64>,
    pub io_pressure: Option<u64>,
}

/// Manager for one container cgroup, v1 or v2 behind it.
pub trait Cgroup: Send + Sync + std::fmt::Debug {
    /// The cgroup path relative to the hierarchy root, e.g. "/minid/abc" (v1: the path in the
    /// memory hierarchy; see [`CgroupPath`]).
    fn path(&self) -> &str;
    /// Creates the cgroup (mkdir -p) in every needed hierarchy. v2: enables the available
    /// controllers of {cpu, cpuset, io, memory, pids, hugetlb} in the `cgroup.subtree_control`
    /// of every ancestor strictly below the root, down to the parent (the root itself is left
    /// alone: delegating from the root is the host's decision). v1: initialises
    /// `cpuset.cpus`/`cpuset.mems` of every new level from its parent.
    fn create(&self) -> Result<(), CgroupError>;
    /// Writes the limits; every field set is honoured or refused with an
    /// [`CgroupError::Unsupported`] error naming the field.
    fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError>;
    /// Moves `pid` into the cgroup (cgroup.procs of every v1 hierarchy).
    fn add(&self, pid: i32) -> Result<(), CgroupError>;
    /// v2: an `O_PATH|O_DIRECTORY` fd of the cgroup for `clone3(CLONE_INTO_CGROUP)`; v1: None.
    fn clone_into_fd(&self) -> Result<Option<OwnedFd>, CgroupError>;
    /// The processes in the cgroup and its descendants, sorted, without duplicates.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;
    fn stats(&self) -> Result<Stats, CgroupError>;
    /// Freezes and waits (bounded) until the kernel reports the cgroup frozen.
    fn freeze(&self) -> Result<(), CgroupError>;
    fn thaw(&self) -> Result<(), CgroupError>;
    /// Whether the cgroup is frozen (paused) or being frozen.
    fn is_frozen(&self) -> Result<bool, CgroupError>;
    /// Signals every process. v2 SIGKILL uses `cgroup.kill` when present; otherwise the cgroup
    /// is frozen, every pid signalled, and thawed, so no process can fork past the loop.
    fn kill_all(&self, signal: i32) -> Result<(), CgroupError>;
    /// The file whose `oom_kill N` line counts OOM kills (v1 `memory.oom_control`, v2
    /// `memory.events`); `None` without a memory hierarchy.
    fn oom_counter_file(&self) -> Option<PathBuf>;
    /// How many times the OOM killer killed a process in this cgroup.
    fn oom_kill_count(&self) -> Result<u64, CgroupError> {
        match self.oom_counter_file() {
            Some(p) => read_oom_kill_count(&p),
            None => Ok(0),
        }
    }
    /// Removes the cgroup (and any children it grew) from every hierarchy; retries briefly on
    /// EBUSY; a cgroup that does not exist is removed already.
    fn remove(&self) -> Result<(), CgroupError>;
    /// Renames this cgroup, with the processes in it, to `to`, a sibling in every hierarchy
    /// (v1 only: cgroup2 has no rename). All or nothing: a failure renames back what moved.
    fn rename_to(&self, to: &CgroupPath) -> Result<(), CgroupError> {
        Err(CgroupError::unsupported(
            "cgroup rename",
            format!("cannot rename {} to {}", self.path(), to.path),
        ))
    }
}

/// The `oom_kill` count in a counter file of [`Cgroup::oom_counter_file`]; a missing file
/// (no memory controller) counts none. Kept free of the managers so the shim's lean monitor
/// can read it without them.
pub fn read_oom_kill_count(p: &Path) -> Result<u64, CgroupError> {
    match files::read_opt(p)? {
        Some(c) => Ok(files::flat_keyed(p, &c, "oom_kill")?.unwrap_or(0)),
        None => Ok(0),
    }
}

/// Detects the cgroup interface mounted at `root` (normally `/sys/fs/cgroup`): V2 if it is a
/// cgroup2 mount (statfs magic `CGROUP2_SUPER_MAGIC`) or, for fixture trees, if
/// `cgroup.controllers` exists at the root; otherwise V1 (the hybrid layout counts as V1).
pub fn detect(root: &Path) -> Result<CgroupVersion, CgroupError> {
    let st = nix::sys::statfs::statfs(root).map_err(|e| CgroupError::Io {
        op: "statfs",
        path: root.to_path_buf(),
        source: e.into(),
    })?;
    #[allow(clippy::unnecessary_cast)] // the field's type differs between libc targets
    if st.filesystem_type().0 as i64 == CGROUP2_SUPER_MAGIC
        || root.join("cgroup.controllers").exists()
    {
        Ok(CgroupVersion::V2)
    } else {
        Ok(CgroupVersion::V1)
    }
}

/// Opens (does not create) the manager for `path` under `root`, with the same path in every
/// hierarchy. `root` is normally [`DEFAULT_ROOT`]; tests pass a fixture dir.
pub fn open(root: &Path, version: CgroupVersion, path: &str) -> Box<dyn Cgroup> {
    open_path(root, version, &CgroupPath::uniform(path))
}

/// Opens the manager for a path from [`resolve_path`] (which may differ per v1 hierarchy).
pub fn open_path(root: &Path, version: CgroupVersion, path: &CgroupPath) -> Box<dyn Cgroup> {
    match version {
        CgroupVersion::V1 => Box::new(v1::V1Cgroup::new(root, path)),
        CgroupVersion::V2 => Box::new(v2::V2Cgroup::new(root, &path.path)),
    }
}

/// Where a container's cgroup lives. On v2 (and on v1 when minid's own cgroup is the same in
/// every hierarchy) `path` says it all. On v1 minid's own cgroup can differ per controller
/// (here: memory is `/process_api/<hash>`, the others `/`), and nesting "under our own cgroup"
/// then means a different path per hierarchy: `v1` maps a controller name (as in
/// `/proc/self/cgroup`, e.g. "memory", "cpu") to its path. A controller missing from the map
/// uses `path`. `path` is the memory hierarchy's path on v1, because the memory hierarchy is the
/// one whose parent limits a container must stay inside of.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CgroupPath {
    pub path: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub v1: BTreeMap<String, String>,
}

impl CgroupPath {
    /// The same path in every hierarchy.
    pub fn uniform(path: &str) -> Self {
        CgroupPath {
            path: normalize(path),
            v1: BTreeMap::new(),
        }
    }

    /// The path in the v1 hierarchy of `controller`.
    pub fn for_controller(&self, controller: &str) -> &str {
        self.v1.get(controller).map_or(&self.path, |p| p.as_str())
    }
}

/// Joins path pieces into "/a/b" form (no trailing slash, "/" for the root).
fn normalize(p: &str) -> String {
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn join(base: &str, rel: &str) -> String {
    normalize(&format!("{base}/{rel}"))
}

/// Refuses paths that would escape the hierarchy or name its root: a container never owns the
/// root cgroup (limiting or removing it would hit every process on the host).
pub(crate) fn check_path(path: &str) -> Result<(), CgroupError> {
    let bad = |reason: &str| CgroupError::InvalidPath {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    if path.split('/').any(|c| c == "..") {
        return Err(bad("'..' is not allowed"));
    }
    if normalize(path) == "/" {
        return Err(bad("a container cannot use the root cgroup"));
    }
    Ok(())
}

/// Where the caller ("own") is, parsed from `/proc/self/cgroup`: the v2 `0::` path and the
/// path of every named v1 controller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnCgroup {
    pub unified: Option<String>,
    pub v1: BTreeMap<String, String>,
}

impl OwnCgroup {
    /// Parses the content of `/proc/self/cgroup` ("ID:controllers:path" lines). Co-mounted
    /// controllers ("cpu,cpuacct") each get the path; "name=systemd" is kept as "name=systemd".
    pub fn parse(content: &str) -> Result<Self, CgroupError> {
        let mut own = OwnCgroup::default();
        for line in content.lines().filter(|l| !l.trim().is_empty()) {
            let mut it = line.splitn(3, ':');
            let (Some(_id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
                return Err(CgroupError::Parse {
                    path: PathBuf::from("/proc/self/cgroup"),
                    reason: format!("malformed line {line:?}"),
                });
            };
            // A cgroup deleted under us shows as "/path (deleted)"; the path is what counts.
            let path = normalize(path.trim_end_matches(" (deleted)"));
            if ctrls.is_empty() {
                own.unified = Some(path);
            } else {
                for c in ctrls.split(',') {
                    own.v1.insert(c.to_string(), path.clone());
                }
            }
        }
        Ok(own)
    }
}

/// Resolves where a container's cgroup goes (ARCHITECTURE.md, "Cgroups"):
///
/// - `cgroups_path` absolute (the spec's `linux.cgroupsPath`): used as is, in every hierarchy;
/// - `cgroups_path` relative: nested under `parent` if given, else under minid's own cgroup;
/// - `cgroups_path` None: `<parent>/<id>` if `parent` is given, else `<own>/minid/<id>`.
///
/// `parent` is `--cgroup-parent`: absolute → from the hierarchy root, relative → under own.
/// `proc_self_cgroup` is the content of `/proc/self/cgroup`. On v2 "own" is the `0::` line; on
/// v1 it is per controller (see [`CgroupPath`]), and the result's `path` is the memory
/// hierarchy's. systemd-style "slice:prefix:name" paths are refused: minid does not drive
/// systemd.
pub fn resolve_path(
    proc_self_cgroup: &str,
    version: CgroupVersion,
    cgroups_path: Option<&Path>,
    parent: Option<&str>,
    id: &str,
) -> Result<CgroupPath, CgroupError> {
    if id.is_empty() || id.contains('/') || id == "." || id == ".." {
        return Err(CgroupError::InvalidPath {
            path: id.to_string(),
            reason: "a container id must be a single path component".into(),
        });
    }
    let spec = match cgroups_path {
        Some(p) => {
            let s = p.to_str().ok_or_else(|| CgroupError::InvalidPath {
                path: p.display().to_string(),
                reason: "not valid UTF-8".into(),
            })?;
            if s.contains(':') {
                return Err(CgroupError::unsupported(
                    "linux.cgroupsPath",
                    format!("{s:?} looks like a systemd slice path; minid manages cgroupfs paths"),
                ));
            }
            if p.components().any(|c| c == Component::ParentDir) {
                return Err(CgroupError::InvalidPath {
                    path: s.to_string(),
                    reason: "'..' is not allowed".into(),
                });
            }
            Some(s.to_string())
        }
        None => None,
    };
    if let Some(p) = parent {
        check_relative_ok(p)?;
    }
    // (absolute?, path below the base)
    let (absolute, rel) = match (&spec, parent) {
        (Some(s), _) if s.starts_with('/') => (true, s.clone()),
        (Some(s), Some(p)) => (p.starts_with('/'), join(p, s)),
        (Some(s), None) => (false, s.clone()),
        (None, Some(p)) => (p.starts_with('/'), join(p, id)),
        (None, None) => (false, format!("minid/{id}")),
    };
    let result = if absolute {
        CgroupPath::uniform(&rel)
    } else {
        let own = OwnCgroup::parse(proc_self_cgroup)?;
        match version {
            CgroupVersion::V2 => {
                let base = own.unified.as_deref().unwrap_or("/");
                CgroupPath::uniform(&join(base, &rel))
            }
            CgroupVersion::V1 => {
                let base = own
                    .v1
                    .get("memory")
                    .or(own.unified.as_ref())
                    .map_or("/", |s| s.as_str());
                let mut cp = CgroupPath::uniform(&join(base, &rel));
                for (ctrl, own_path) in &own.v1 {
                    if ctrl.starts_with("name=") {
                        continue;
                    }
                    let p = join(own_path, &rel);
                    if p != cp.path {
                        cp.v1.insert(ctrl.clone(), p);
                    }
                }
                cp
            }
        }
    };
    check_path(&result.path)?;
    for p in result.v1.values() {
        check_path(p)?;
    }
    Ok(result)
}

fn check_relative_ok(p: &str) -> Result<(), CgroupError> {
    if p.split('/').any(|c| c == "..") || p.contains(':') {
        return Err(CgroupError::InvalidPath {
            path: p.to_string(),
            reason: "a cgroup parent must be a cgroupfs path without '..'".into(),
        });
    }
    Ok(())
}

/// cpu.shares (v1, 2..=262144) to cpu.weight (v2, 1..=10000), the conversion runc, crun and the
/// kubelet share (KEP-2254): weight = 1 + ((shares − 2) × 9999) / 262142.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// blkio.weight (v1, 10..=1000) to io.weight (v2, 1..=10000), as runc converts it.
pub fn blkio_weight_to_io_weight(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = weight.clamp(10, 1000);
    1 + ((w - 10) * 9999) / 990
}

/// The v1/v2 fallback for [`Cgroup::kill_all`]: freeze so nothing forks past the loop, signal
/// every pid, thaw. Without a freezer (v1 freezer hierarchy not mounted, v2 kernel < 5.2) the
/// pids are signalled unfrozen, which is the best that can be done.
pub(crate) fn freeze_signal_thaw(cg: &dyn Cgroup, signal: i32) -> Result<(), CgroupError> {
    // A paused container stays paused: only a freeze we made is undone.
    let we_froze = !cg.is_frozen().unwrap_or(false)
        && match cg.freeze() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(cgroup = cg.path(), error = %e, "signalling without freezing");
                false
            }
        };
    let mut result = Ok(());
    match cg.pids() {
        Ok(pids) => {
            for pid in pids {
                if let Err(e) = files::signal(pid, signal) {
                    if result.is_ok() {
                        result = Err(e);
                    }
                }
            }
        }
        Err(e) => result = Err(e),
    }
    if we_froze {
        if let Err(e) = cg.thaw() {
            if result.is_ok() {
                result = Err(e);
            } else {
                tracing::warn!(cgroup = cg.path(), error = %e, "thaw after signalling failed");
            }
        }
    }
    result
}

/// Hugepage sizes become part of a file name ("hugetlb.2MB.max"): letters and digits only.
pub(crate) fn check_page_size(field: &str, size: &str) -> Result<(), CgroupError> {
    if size.is_empty() || !size.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(CgroupError::invalid(
            field,
            format!("{size:?} is not a page size like 2MB"),
        ));
    }
    Ok(())
}

/// rdma.max lines ("mlx4_0 hca_handle=2 hca_object=2000"), sorted by device; a device with no
/// limit set produces no line.
pub(crate) fn rdma_lines(
    rdma: &std::collections::HashMap<String, oci_spec::runtime::LinuxRdma>,
) -> Vec<String> {
    let mut devs: Vec<_> = rdma.iter().collect();
    devs.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    for (dev, l) in devs {
        let mut line = dev.clone();
        if let Some(h) = l.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        if line.len() > dev.len() {
            out.push(line);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn detect_fixture_v2_and_v1() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(detect(d.path()).unwrap(), CgroupVersion::V1);
        std::fs::write(d.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        assert_eq!(detect(d.path()).unwrap(), CgroupVersion::V2);
        let err = detect(&d.path().join("missing")).unwrap_err();
        assert!(err.to_string().starts_with("failed to statfs"), "{err}");
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn detect_real_host() {
        // This machine is hybrid; a pure v2 CI host must say V2. Either way the answer must
        // agree with the filesystem type of the mount.
        let root = Path::new(DEFAULT_ROOT);
        if !root.exists() {
            println!("skipping: {DEFAULT_ROOT} does not exist");
            return;
        }
        let v = detect(root).unwrap();
        let unified = root.join("unified");
        if v == CgroupVersion::V1 && unified.join("cgroup.procs").exists() {
            assert_eq!(detect(&unified).unwrap(), CgroupVersion::V2);
        }
    }

    const HYBRID: &str = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n4:memory:/process_api/abc\n\
                          3:cpuset:/\n2:cpu,cpuacct:/\n0::/\n";

    #[test]
    fn own_cgroup_parse() {
        let own = OwnCgroup::parse(HYBRID).unwrap();
        assert_eq!(own.unified.as_deref(), Some("/"));
        assert_eq!(own.v1["memory"], "/process_api/abc");
        assert_eq!(own.v1["cpuacct"], "/");
        assert_eq!(own.v1["name=systemd"], "/");
        assert!(OwnCgroup::parse("garbage").is_err());
        let own = OwnCgroup::parse("0::/user.slice/x (deleted)\n").unwrap();
        assert_eq!(own.unified.as_deref(), Some("/user.slice/x"));
    }

    #[test]
    fn resolve_default_v2_nests_under_own() {
        let p = resolve_path(
            "0::/system.slice/minid.service/agent\n",
            CgroupVersion::V2,
            None,
            None,
            "abc",
        )
        .unwrap();
        assert_eq!(p.path, "/system.slice/minid.service/agent/minid/abc");
        assert!(p.v1.is_empty());
    }

    #[test]
    fn resolve_default_v1_is_per_controller() {
        let p = resolve_path(HYBRID, CgroupVersion::V1, None, None, "abc").unwrap();
        assert_eq!(p.path, "/process_api/abc/minid/abc");
        assert_eq!(p.for_controller("memory"), "/process_api/abc/minid/abc");
        assert_eq!(p.for_controller("cpu"), "/minid/abc");
        assert_eq!(p.for_controller("pids"), "/minid/abc");
        assert!(!p.v1.contains_key("name=systemd"));
        // A controller we know nothing about uses the primary path.
        assert_eq!(p.for_controller("hugetlb"), "/process_api/abc/minid/abc");
    }

    #[test]
    fn resolve_explicit_paths_and_parent() {
        let abs = resolve_path(
            HYBRID,
            CgroupVersion::V1,
            Some(Path::new("/pods/x")),
            None,
            "a",
        )
        .unwrap();
        assert_eq!(abs, CgroupPath::uniform("/pods/x"));
        let rel = resolve_path(
            "0::/agent\n",
            CgroupVersion::V2,
            Some(Path::new("pods/x")),
            None,
            "a",
        )
        .unwrap();
        assert_eq!(rel.path, "/agent/pods/x");
        let parent_abs = resolve_path(
            "0::/agent\n",
            CgroupVersion::V2,
            None,
            Some("/tenants/t1/"),
            "a",
        )
        .unwrap();
        assert_eq!(parent_abs.path, "/tenants/t1/a");
        let parent_rel =
            resolve_path("0::/agent\n", CgroupVersion::V2, None, Some("tenants"), "a").unwrap();
        assert_eq!(parent_rel.path, "/agent/tenants/a");
        let both = resolve_path(
            "0::/agent\n",
            CgroupVersion::V2,
            Some(Path::new("x/y")),
            Some("/p"),
            "a",
        )
        .unwrap();
        assert_eq!(both.path, "/p/x/y");
    }

    #[test]
    fn resolve_refusals() {
        let v2 = CgroupVersion::V2;
        let e = resolve_path("0::/\n", v2, Some(Path::new("/")), None, "a").unwrap_err();
        assert!(e.to_string().contains("root cgroup"), "{e}");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(resolve_path("0::/\n", v2, Some(Path::new("../x")), None, "a").is_err());
        assert!(resolve_path(
            "0::/\n",
            v2,
            Some(Path::new("system.slice:minid:a")),
            None,
            "a"
        )
        .unwrap_err()
        .to_string()
        .contains("systemd"));
        assert!(resolve_path("0::/\n", v2, None, Some("../up"), "a").is_err());
        assert!(resolve_path("0::/\n", v2, None, None, "a/b").is_err());
    }

    #[test]
    fn shares_and_weights() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(512), 20);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
    }

    #[test]
    fn error_messages_and_kinds() {
        let e = CgroupError::Write {
            path: PathBuf::from("/sys/fs/cgroup/x/memory.max"),
            value: "512M".into(),
            source: std::io::Error::from_raw_os_error(libc::EBUSY),
        };
        assert!(e
            .to_string()
            .starts_with("failed to write 512M to /sys/fs/cgroup/x/memory.max: "));
        assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
        let e = CgroupError::Io {
            op: "mkdir",
            path: "/x".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert_eq!(e.kind(), ErrorKind::ResourceExhausted);
        assert_eq!(
            CgroupError::unsupported("memory.kernel", "x").kind(),
            ErrorKind::InvalidArgument
        );
    }
}
