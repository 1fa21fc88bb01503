//! The cgroup v1 backend: one directory per mounted controller hierarchy
//! (Documentation/admin-guide/cgroup-v1/), e.g. `/sys/fs/cgroup/memory/<path>`.
//!
//! Hierarchies are found by listing the root: every directory whose name is a comma-separated
//! list of known controllers ("memory", "cpu,cpuacct"); the `systemd` (name=systemd) and
//! `unified` mounts are not ours to manage. Co-mounted controllers reached through several
//! names (cpu → cpu,cpuacct) are deduplicated by their canonical directory.
//!
//! Mapping from the OCI spec (config-linux.md; the same choices as runc's `fs` driver where the
//! spec leaves room): memory.limit → memory.limit_in_bytes, swap (memory+swap) →
//! memory.memsw.limit_in_bytes (ordered against the memory limit so memsw ≥ limit holds at
//! every step), reservation → memory.soft_limit_in_bytes, kernel/kernelTCP →
//! memory.kmem[.tcp].limit_in_bytes where the kernel still has them; cpu.* → cpu.shares,
//! cpu.cfs_period_us/quota_us/burst_us, cpu.idle; cpus/mems → cpuset; pids.max; blockIO →
//! blkio.weight or blkio.bfq.weight, blkio.leaf_weight[_device], blkio.throttle.*;
//! hugepageLimits → hugetlb.<size>.limit_in_bytes; network → net_cls.classid /
//! net_prio.ifpriomap when those hierarchies are mounted; rdma → rdma.max; devices →
//! devices.allow/deny ([`super::devices::v1_writes`]). As in runc, 0 means "not set" for
//! memory limit/reservation/swap and cpu shares/quota/period.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::v2::{check_usage, pids_value, refuse_realtime};
use super::{check_path, devices, files, stats, Cgroup, CgroupError, CgroupPath, Stats};

/// The v1 controllers minid knows how to find.
const KNOWN: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "rdma",
    "misc",
];

#[derive(Debug)]
pub struct V1Cgroup {
    path: CgroupPath,
    /// controller → its hierarchy's mount directory under the root.
    hierarchies: BTreeMap<String, PathBuf>,
    /// controller → (device, inode) of its hierarchy's root, found on first use (only the
    /// verbs that walk every hierarchy need it; a status check does not): co-mounted
    /// controllers (`cpu` and `cpuacct` linked to `cpu,cpuacct`) share one.
    identity: std::sync::OnceLock<BTreeMap<String, (u64, u64)>>,
}

impl V1Cgroup {
    pub fn new(root: &Path, path: &CgroupPath) -> Self {
        let mut path = path.clone();
        path.path = super::normalize(&path.path);
        for p in path.v1.values_mut() {
            *p = super::normalize(p);
        }
        let hierarchies = find_hierarchies(root);
        V1Cgroup {
            path,
            hierarchies,
            identity: std::sync::OnceLock::new(),
        }
    }

    /// The cgroup's directory in `controller`'s hierarchy, None if that is not mounted.
    fn dir(&self, controller: &str) -> Option<PathBuf> {
        let h = self.hierarchies.get(controller)?;
        Some(h.join(self.path.for_controller(controller).trim_start_matches('/')))
    }

    /// A control file of `controller`, or Unsupported naming `field` if it is not mounted.
    fn file(&self, field: &str, controller: &str, name: &str) -> Result<PathBuf, CgroupError> {
        self.dir(controller).map(|d| d.join(name)).ok_or_else(|| {
            CgroupError::unsupported(
                field,
                format!("the {controller} cgroup controller is not mounted"),
            )
        })
    }

    /// Like [`Self::file`], and the file must exist (a feature of this kernel).
    fn existing(&self, field: &str, controller: &str, name: &str) -> Result<PathBuf, CgroupError> {
        let p = self.file(field, controller, name)?;
        if p.exists() {
            Ok(p)
        } else {
            Err(CgroupError::unsupported(
                field,
                format!("{} does not exist on this kernel", p.display()),
            ))
        }
    }

    fn identity(&self) -> &BTreeMap<String, (u64, u64)> {
        self.identity.get_or_init(|| {
            self.hierarchies
                .iter()
                .filter_map(|(c, h)| {
                    let m = std::fs::metadata(h).ok()?;
                    Some((
                        c.clone(),
                        (
                            std::os::unix::fs::MetadataExt::dev(&m),
                            std::os::unix::fs::MetadataExt::ino(&m),
                        ),
                    ))
                })
                .collect()
        })
    }

    /// Every distinct (controller, cgroup directory, hierarchy root) this cgroup spans.
    fn all_dirs(&self) -> Vec<(&str, PathBuf, &Path)> {
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for (c, h) in &self.hierarchies {
            let id = self.identity().get(c).copied();
            let rel = self.path.for_controller(c).to_string();
            if id.is_some() && seen.contains(&(id, rel.clone())) {
                continue;
            }
            seen.push((id, rel.clone()));
            out.push((c.as_str(), h.join(rel.trim_start_matches('/')), h.as_path()));
        }
        out
    }

    fn check_paths(&self) -> Result<(), CgroupError> {
        check_path(&self.path.path)?;
        self.path.v1.values().try_for_each(|p| check_path(p))
    }

    /// cpuset.cpus and cpuset.mems start empty in a new v1 cpuset, and a cpuset without CPUs
    /// refuses tasks (ENOSPC); copy them from the parent at every level below the root.
    fn init_cpuset(&self, hierarchy: &Path) -> Result<(), CgroupError> {
        let mut parent = hierarchy.to_path_buf();
        for part in self
            .path
            .for_controller("cpuset")
            .split('/')
            .filter(|s| !s.is_empty())
        {
            let dir = parent.join(part);
            for name in ["cpuset.cpus", "cpuset.mems"] {
                let mine = dir.join(name);
                if files::read(&mine)?.trim().is_empty() {
                    let from = files::read(&parent.join(name))?;
                    files::write(&mine, from.trim())?;
                }
            }
            parent = dir;
        }
        Ok(())
    }

    /// Computes every write `apply` will make, refusing unsupported fields before any write.
    fn plan(&self, res: &LinuxResources) -> Result<Vec<(PathBuf, String)>, CgroupError> {
        let mut w: Vec<(PathBuf, String)> = Vec::new();
        if let Some(m) = res.memory() {
            let limit = m.limit().filter(|&l| l != 0);
            let swap = m.swap().filter(|&s| s != 0);
            for (field, v) in [("memory.limit", limit), ("memory.swap", swap)] {
                if v.is_some_and(|v| v < -1) {
                    return Err(CgroupError::invalid(
                        field,
                        "must be -1 (unlimited) or positive",
                    ));
                }
            }
            if let (Some(s), Some(l)) = (swap, limit) {
                if s != -1 && l == -1 {
                    return Err(CgroupError::invalid(
                        "memory.swap",
                        format!("memory+swap {s} needs a memory limit, not an unlimited one"),
                    ));
                }
                if s != -1 && s < l {
                    return Err(CgroupError::invalid(
                        "memory.swap",
                        format!("memory+swap {s} is below the memory limit {l}"),
                    ));
                }
            }
            let limit_file = || self.file("memory.limit", "memory", "memory.limit_in_bytes");
            if let Some(l) = limit {
                if m.check_before_update() == Some(true) && l > 0 {
                    let usage = self.file("memory.limit", "memory", "memory.usage_in_bytes")?;
                    check_usage(&usage, l)?;
                }
            }
            match swap {
                Some(s) => {
                    let memsw =
                        self.file("memory.swap", "memory", "memory.memsw.limit_in_bytes")?;
                    if !memsw.exists() {
                        return Err(CgroupError::unsupported(
                            "memory.swap",
                            format!(
                                "{} does not exist: swap accounting is off (boot with swapaccount=1)",
                                memsw.display()
                            ),
                        ));
                    }
                    // memsw must stay ≥ the memory limit at every step: raise memsw first when
                    // it grows past the current limit, else lower the limit first.
                    let limit_file = limit_file()?;
                    let current = read_limit(&limit_file)?;
                    let memsw_first = s == -1 || current < s;
                    let mut pair = vec![(memsw, s.to_string())];
                    if let Some(l) = limit {
                        pair.push((limit_file, l.to_string()));
                    }
                    if !memsw_first {
                        pair.reverse();
                    }
                    w.extend(pair);
                }
                None => {
                    if let Some(l) = limit {
                        // Lifting the limit while memory+swap stays finite is EINVAL (memsw
                        // must be ≥ the limit): lift memsw first, as runc does.
                        if l == -1 {
                            if let Ok(memsw) =
                                self.file("memory.swap", "memory", "memory.memsw.limit_in_bytes")
                            {
                                if memsw.exists() {
                                    w.push((memsw, "-1".to_string()));
                                }
                            }
                        }
                        w.push((limit_file()?, l.to_string()));
                    }
                }
            }
            if let Some(r) = m.reservation().filter(|&r| r != 0) {
                w.push((
                    self.file("memory.reservation", "memory", "memory.soft_limit_in_bytes")?,
                    r.to_string(),
                ));
            }
            if let Some(k) = m.kernel() {
                let p = self.existing("memory.kernel", "memory", "memory.kmem.limit_in_bytes")?;
                w.push((p, k.to_string()));
            }
            if let Some(k) = m.kernel_tcp() {
                let p = self.existing(
                    "memory.kernelTCP",
                    "memory",
                    "memory.kmem.tcp.limit_in_bytes",
                )?;
                w.push((p, k.to_string()));
            }
            if let Some(s) = m.swappiness() {
                if s > 100 {
                    return Err(CgroupError::invalid(
                        "memory.swappiness",
                        format!("{s} is above 100"),
                    ));
                }
                w.push((
                    self.file("memory.swappiness", "memory", "memory.swappiness")?,
                    s.to_string(),
                ));
            }
            if let Some(d) = m.disable_oom_killer() {
                w.push((
                    self.file("memory.disableOOMKiller", "memory", "memory.oom_control")?,
                    u8::from(d).to_string(),
                ));
            }
            if let Some(h) = m.use_hierarchy() {
                w.push((
                    self.file("memory.useHierarchy", "memory", "memory.use_hierarchy")?,
                    u8::from(h).to_string(),
                ));
            }
        }
        if let Some(c) = res.cpu() {
            refuse_realtime(c.realtime_runtime(), c.realtime_period())?;
            if let Some(s) = c.shares().filter(|&s| s != 0) {
                w.push((self.file("cpu.shares", "cpu", "cpu.shares")?, s.to_string()));
            }
            // The period first: a quota is checked against the period in force.
            if let Some(p) = c.period().filter(|&p| p != 0) {
                w.push((
                    self.file("cpu.period", "cpu", "cpu.cfs_period_us")?,
                    p.to_string(),
                ));
            }
            if let Some(q) = c.quota().filter(|&q| q != 0) {
                let q = if q < 0 { -1 } else { q };
                w.push((
                    self.file("cpu.quota", "cpu", "cpu.cfs_quota_us")?,
                    q.to_string(),
                ));
            }
            if let Some(b) = c.burst() {
                w.push((
                    self.existing("cpu.burst", "cpu", "cpu.cfs_burst_us")?,
                    b.to_string(),
                ));
            }
            if let Some(i) = c.idle() {
                w.push((self.existing("cpu.idle", "cpu", "cpu.idle")?, i.to_string()));
            }
            if let Some(cpus) = c.cpus() {
                w.push((
                    self.file("cpu.cpus", "cpuset", "cpuset.cpus")?,
                    cpus.clone(),
                ));
            }
            if let Some(mems) = c.mems() {
                w.push((
                    self.file("cpu.mems", "cpuset", "cpuset.mems")?,
                    mems.clone(),
                ));
            }
        }
        if let Some(p) = res.pids() {
            w.push((
                self.file("pids.limit", "pids", "pids.max")?,
                pids_value(p.limit()),
            ));
        }
        if let Some(b) = res.block_io() {
            self.plan_blkio(b, &mut w)?;
        }
        if let Some(h) = res.hugepage_limits() {
            for (i, l) in h.iter().enumerate() {
                let field = format!("hugepageLimits[{i}] ({})", l.page_size());
                super::check_page_size(&field, l.page_size())?;
                let name = format!("hugetlb.{}.limit_in_bytes", l.page_size());
                w.push((
                    self.existing(&field, "hugetlb", &name)?,
                    l.limit().to_string(),
                ));
            }
        }
        if let Some(n) = res.network() {
            if let Some(id) = n.class_id() {
                w.push((
                    self.file("network.classID", "net_cls", "net_cls.classid")?,
                    id.to_string(),
                ));
            }
            for (i, p) in n.priorities().iter().flatten().enumerate() {
                w.push((
                    self.file(
                        &format!("network.priorities[{i}]"),
                        "net_prio",
                        "net_prio.ifpriomap",
                    )?,
                    format!("{} {}", p.name(), p.priority()),
                ));
            }
        }
        if let Some(r) = res.rdma() {
            let p = self.existing("rdma", "rdma", "rdma.max")?;
            for line in super::rdma_lines(r) {
                w.push((p.clone(), line));
            }
        }
        if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(CgroupError::unsupported(
                "unified",
                "cgroup v2 settings cannot be applied on a cgroup v1 host",
            ));
        }
        if let Some(d) = res.devices() {
            let rules = devices::rules(d)?;
            for (name, line) in devices::v1_writes(&rules) {
                w.push((self.file("devices", "devices", name)?, line));
            }
        }
        Ok(w)
    }

    fn plan_blkio(
        &self,
        b: &oci_spec::runtime::LinuxBlockIo,
        w: &mut Vec<(PathBuf, String)>,
    ) -> Result<(), CgroupError> {
        // CFQ's blkio.weight went away with the legacy block layer (Linux 5.0); BFQ offers
        // blkio.bfq.weight with the same scale. Use whichever this kernel has.
        let weight_file = |field: &str, cfq: &str, bfq: &str| -> Result<PathBuf, CgroupError> {
            let p = self.file(field, "blkio", cfq)?;
            if p.exists() {
                return Ok(p);
            }
            self.existing(field, "blkio", bfq)
        };
        // 0 means "not set" (runc's reading); the kernel would refuse it as a weight.
        if let Some(wt) = b.weight().filter(|&w| w != 0) {
            let p = weight_file("blockIO.weight", "blkio.weight", "blkio.bfq.weight")?;
            w.push((p, wt.to_string()));
        }
        if let Some(lw) = b.leaf_weight() {
            let p = self.existing("blockIO.leafWeight", "blkio", "blkio.leaf_weight")?;
            w.push((p, lw.to_string()));
        }
        for (i, d) in b.weight_device().iter().flatten().enumerate() {
            let field = format!("blockIO.weightDevice[{i}]");
            if let Some(wt) = d.weight() {
                let p = weight_file(&field, "blkio.weight_device", "blkio.bfq.weight_device")?;
                w.push((p, format!("{}:{} {wt}", d.major(), d.minor())));
            }
            if let Some(lw) = d.leaf_weight() {
                let p = self.existing(
                    &format!("{field}.leafWeight"),
                    "blkio",
                    "blkio.leaf_weight_device",
                )?;
                w.push((p, format!("{}:{} {lw}", d.major(), d.minor())));
            }
        }
        let lists = [
            (
                "blockIO.throttleReadBpsDevice",
                "blkio.throttle.read_bps_device",
                b.throttle_read_bps_device(),
            ),
            (
                "blockIO.throttleWriteBpsDevice",
                "blkio.throttle.write_bps_device",
                b.throttle_write_bps_device(),
            ),
            (
                "blockIO.throttleReadIOPSDevice",
                "blkio.throttle.read_iops_device",
                b.throttle_read_iops_device(),
            ),
            (
                "blockIO.throttleWriteIOPSDevice",
                "blkio.throttle.write_iops_device",
                b.throttle_write_iops_device(),
            ),
        ];
        for (field, name, list) in lists {
            for d in list.iter().flatten() {
                let p = self.file(field, "blkio", name)?;
                w.push((p, format!("{}:{} {}", d.major(), d.minor(), d.rate())));
            }
        }
        Ok(())
    }

    fn freezer_state(&self) -> Result<PathBuf, CgroupError> {
        self.file("freeze", "freezer", "freezer.state")
    }

    fn set_state(&self, want: &'static str) -> Result<(), CgroupError> {
        let p = self.freezer_state()?;
        files::write(&p, want)?;
        files::wait_for(
            &p,
            if want == "FROZEN" { "frozen" } else { "thawed" },
            || Ok(files::read(&p)?.trim() == want),
            // freezer-subsystem.rst: a cgroup stuck in FREEZING is retried by writing again.
            || files::write(&p, want),
        )
    }
}

/// Reads a v1 limit file; -1 is never reported by the kernel, "unlimited" is a huge number.
fn read_limit(p: &Path) -> Result<i64, CgroupError> {
    let v = files::read_u64(p)?;
    Ok(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Maps each known controller to its hierarchy directory under `root`.
/// Where `controller`'s hierarchy is mounted under `root`, if it is.
pub(crate) fn hierarchy(root: &Path, controller: &str) -> Option<PathBuf> {
    find_hierarchies(root).remove(controller)
}

fn find_hierarchies(root: &Path) -> BTreeMap<String, PathBuf> {
    let mut exact = BTreeMap::new();
    let mut combined = BTreeMap::new();
    let Ok(rd) = std::fs::read_dir(root) else {
        return exact;
    };
    for entry in rd.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        for c in name.split(',') {
            if !KNOWN.contains(&c) {
                continue;
            }
            if c == name {
                exact.insert(c.to_string(), path.clone());
            } else {
                combined.insert(c.to_string(), path.clone());
            }
        }
    }
    for (c, p) in combined {
        exact.entry(c).or_insert(p);
    }
    exact
}

impl Cgroup for V1Cgroup {
    fn path(&self) -> &str {
        &self.path.path
    }

    fn create(&self) -> Result<(), CgroupError> {
        self.check_paths()?;
        if self.hierarchies.is_empty() {
            return Err(CgroupError::unsupported(
                "cgroups",
                "no cgroup v1 controller hierarchy is mounted",
            ));
        }
        for (controller, dir, hierarchy) in self.all_dirs() {
            files::mkdir_p(&dir)?;
            if self
                .hierarchies
                .get("cpuset")
                .is_some_and(|h| h == hierarchy)
                || controller == "cpuset"
            {
                self.init_cpuset(hierarchy)?;
            }
        }
        Ok(())
    }

    fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        self.check_paths()?;
        for (path, value) in self.plan(res)? {
            files::write(&path, &value)?;
        }
        Ok(())
    }

    fn add(&self, pid: i32) -> Result<(), CgroupError> {
        self.check_paths()?;
        for (_, dir, _) in self.all_dirs() {
            files::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn clone_into_fd(&self) -> Result<Option<OwnedFd>, CgroupError> {
        Ok(None)
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut out = Vec::new();
        for (_, dir, _) in self.all_dirs() {
            files::pids_recursive(&dir, &mut out)?;
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        stats::v1_stats(|c| self.dir(c))
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        let r = self.set_state("FROZEN");
        if matches!(r, Err(CgroupError::Timeout { .. })) {
            // Leave nothing half-frozen behind a failed pause.
            if let Ok(p) = self.freezer_state() {
                let _ = files::write(&p, "THAWED");
            }
        }
        r
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.set_state("THAWED")
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        let p = self.freezer_state()?;
        Ok(files::read_opt(&p)?.is_some_and(|s| s.trim() == "FROZEN"))
    }

    fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        super::freeze_signal_thaw(self, signal)
    }

    fn oom_counter_file(&self) -> Option<PathBuf> {
        self.dir("memory").map(|d| d.join("memory.oom_control"))
    }

    fn remove(&self) -> Result<(), CgroupError> {
        self.check_paths()?;
        // Try every hierarchy; report the first failure (the others are logged).
        let mut first = None;
        for (_, dir, _) in self.all_dirs() {
            if let Err(e) = files::rmdir_tree(&dir) {
                if first.is_none() {
                    first = Some(e);
                } else {
                    tracing::warn!(error = %e, "failed to remove cgroup");
                }
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn rename_to(&self, to: &CgroupPath) -> Result<(), CgroupError> {
        self.check_paths()?;
        let mut moves = Vec::new();
        for (controller, dir, hierarchy) in self.all_dirs() {
            let rel = super::normalize(to.for_controller(controller));
            check_path(&rel)?;
            let to_dir = hierarchy.join(rel.trim_start_matches('/'));
            if to_dir.parent() != dir.parent() {
                return Err(CgroupError::InvalidPath {
                    path: to_dir.display().to_string(),
                    reason: format!("not a sibling of {}", dir.display()),
                });
            }
            moves.push((dir, to_dir));
        }
        for (i, (from, to_dir)) in moves.iter().enumerate() {
            if let Err(e) = std::fs::rename(from, to_dir) {
                for (f, t) in moves[..i].iter().rev() {
                    let _ = std::fs::rename(t, f);
                }
                return Err(CgroupError::Io {
                    op: "rename",
                    path: from.clone(),
                    source: e,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "v1_tests.rs"]
mod tests;
