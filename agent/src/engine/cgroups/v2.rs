//! The cgroup v2 backend: one directory in the unified hierarchy (Documentation/admin-guide/
//! cgroup-v2.rst). Also used for the empty cgroup2 mount of a hybrid host
//! (`/sys/fs/cgroup/unified`), where only the core files exist: `cgroup.procs`,
//! `cgroup.freeze`, `cgroup.kill`, `cgroup.events` and BPF device programs.
//!
//! Mapping from the OCI spec (config-linux.md; the same choices as runc's `fs2` where the spec
//! leaves room): memory.limit → memory.max, reservation → memory.low, swap (memory+swap) →
//! memory.swap.max = swap − limit; cpu.shares → cpu.weight ([`super::shares_to_weight`]);
//! quota/period → cpu.max; burst → cpu.max.burst; idle → cpu.idle; cpus/mems → cpuset.*;
//! pids → pids.max; blockIO → io.bfq.weight (when the BFQ scheduler provides it, same scale) or
//! io.weight (converted), io.max; hugepageLimits → hugetlb.<size>.max; rdma → rdma.max;
//! unified → the named files, written last; devices → an eBPF program ([`super::devices`]).
//! As in runc, 0 means "not set" for memory limit/reservation/swap, cpu shares/quota/period.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use oci_spec::runtime::LinuxResources;

use super::files;
use super::{check_path, devices, stats, Cgroup, CgroupError, Stats};

/// Controllers `create` enables for its children, when the parent offers them.
const CONTROLLERS: &[&str] = &["cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma"];

/// Control files `unified` may not name: they belong to the manager, not to limits.
const RESERVED: &[&str] = &[
    "cgroup.procs",
    "cgroup.threads",
    "cgroup.kill",
    "cgroup.freeze",
    "cgroup.subtree_control",
    "cgroup.type",
];

#[derive(Debug)]
pub struct V2Cgroup {
    root: PathBuf,
    path: String,
    dir: PathBuf,
}

impl V2Cgroup {
    pub fn new(root: &Path, path: &str) -> Self {
        let path = super::normalize(path);
        V2Cgroup {
            root: root.to_path_buf(),
            dir: root.join(path.trim_start_matches('/')),
            path,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Enables the available [`CONTROLLERS`] in `dir`'s subtree_control. A controller the
    /// kernel refuses (EBUSY under the no-internal-processes rule, or a realtime task blocking
    /// cpu) is logged and skipped: `apply` then fails loudly on its missing files, while a
    /// container that needs no limit from it still runs.
    fn enable_controllers(&self, dir: &Path) -> Result<(), CgroupError> {
        let available = files::read(&dir.join("cgroup.controllers"))?;
        let control = dir.join("cgroup.subtree_control");
        let enabled = files::read(&control)?;
        let missing: Vec<&str> = CONTROLLERS
            .iter()
            .copied()
            .filter(|c| available.split_whitespace().any(|a| a == *c))
            .filter(|c| !enabled.split_whitespace().any(|a| a == *c))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let all: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
        if files::write(&control, &all.join(" ")).is_ok() {
            return Ok(());
        }
        for c in missing {
            if let Err(e) = files::write(&control, &format!("+{c}")) {
                tracing::warn!(error = %e, controller = c, "cannot enable cgroup controller");
            }
        }
        Ok(())
    }

    /// Computes every write `apply` will make, refusing unsupported fields before any write.
    fn plan(&self, res: &LinuxResources) -> Result<Vec<(PathBuf, String)>, CgroupError> {
        let mut w: Vec<(PathBuf, String)> = Vec::new();
        // -1 is "no limit"; any other negative value is a mistake, not a limit.
        let num = |field: &str, v: i64| -> Result<String, CgroupError> {
            match v {
                -1 => Ok("max".to_string()),
                v if v < 0 => Err(CgroupError::invalid(
                    field,
                    format!("{v} is negative (-1 means no limit)"),
                )),
                v => Ok(v.to_string()),
            }
        };
        if let Some(m) = res.memory() {
            if m.kernel().is_some() {
                return Err(CgroupError::unsupported(
                    "memory.kernel",
                    "kernel memory limits do not exist in cgroup v2 (deprecated in the OCI spec)",
                ));
            }
            if m.kernel_tcp().is_some() {
                return Err(CgroupError::unsupported(
                    "memory.kernelTCP",
                    "kernel TCP memory limits do not exist in cgroup v2 (deprecated in the OCI spec)",
                ));
            }
            if m.swappiness().is_some() {
                return Err(CgroupError::unsupported(
                    "memory.swappiness",
                    "cgroup v2 has no per-cgroup swappiness",
                ));
            }
            if m.disable_oom_killer() == Some(true) {
                return Err(CgroupError::unsupported(
                    "memory.disableOOMKiller",
                    "cgroup v2 cannot disable the OOM killer",
                ));
            }
            if m.use_hierarchy() == Some(false) {
                return Err(CgroupError::unsupported(
                    "memory.useHierarchy",
                    "cgroup v2 accounting is always hierarchical",
                ));
            }
            let limit = m.limit().filter(|&l| l != 0);
            if let Some(l) = limit {
                if l < -1 {
                    return Err(CgroupError::invalid(
                        "memory.limit",
                        format!("{l} is negative"),
                    ));
                }
                if m.check_before_update() == Some(true) && l > 0 {
                    check_usage(&self.file("memory.current"), l)?;
                }
                w.push((self.file("memory.max"), num("memory.limit", l)?));
            }
            if let Some(r) = m.reservation().filter(|&r| r != 0) {
                w.push((self.file("memory.low"), num("memory.reservation", r)?));
            }
            if let Some(s) = m.swap().filter(|&s| s != 0) {
                let value = match (s, limit) {
                    (-1, _) => "max".to_string(),
                    (_, None) | (_, Some(-1)) => {
                        return Err(CgroupError::invalid(
                            "memory.swap",
                            "a memory+swap limit needs a memory limit (cgroup v2 limits swap separately)",
                        ))
                    }
                    (s, Some(l)) if s < l => {
                        return Err(CgroupError::invalid(
                            "memory.swap",
                            format!("memory+swap {s} is below the memory limit {l}"),
                        ))
                    }
                    (s, Some(l)) => (s - l).to_string(),
                };
                let p = self.file("memory.swap.max");
                if !p.exists() {
                    return Err(CgroupError::unsupported(
                        "memory.swap",
                        format!(
                            "{} does not exist: swap accounting is off on this kernel",
                            p.display()
                        ),
                    ));
                }
                w.push((p, value));
            }
        }
        if let Some(c) = res.cpu() {
            if let Some(s) = c.shares().filter(|&s| s != 0) {
                w.push((
                    self.file("cpu.weight"),
                    super::shares_to_weight(s).to_string(),
                ));
            }
            let quota = c.quota().filter(|&q| q != 0);
            let period = c.period().filter(|&p| p != 0);
            if quota.is_some() || period.is_some() {
                let mut v = match quota {
                    Some(q) if q > 0 => q.to_string(),
                    _ => "max".to_string(),
                };
                if let Some(p) = period {
                    v.push_str(&format!(" {p}"));
                }
                w.push((self.file("cpu.max"), v));
            }
            if let Some(b) = c.burst() {
                w.push((self.existing("cpu.burst", "cpu.max.burst")?, b.to_string()));
            }
            if let Some(i) = c.idle() {
                w.push((self.existing("cpu.idle", "cpu.idle")?, i.to_string()));
            }
            refuse_realtime(c.realtime_runtime(), c.realtime_period())?;
            if let Some(cpus) = c.cpus() {
                w.push((self.file("cpuset.cpus"), cpus.clone()));
            }
            if let Some(mems) = c.mems() {
                w.push((self.file("cpuset.mems"), mems.clone()));
            }
        }
        if let Some(p) = res.pids() {
            w.push((self.file("pids.max"), pids_value(p.limit())));
        }
        if let Some(b) = res.block_io() {
            self.plan_io(b, &mut w)?;
        }
        if let Some(h) = res.hugepage_limits() {
            for (i, l) in h.iter().enumerate() {
                let field = format!("hugepageLimits[{i}] ({})", l.page_size());
                super::check_page_size(&field, l.page_size())?;
                let name = format!("hugetlb.{}.max", l.page_size());
                w.push((self.existing(&field, &name)?, num(&field, l.limit())?));
            }
        }
        if res.network().is_some() {
            return Err(CgroupError::unsupported(
                "network",
                "cgroup v2 has no net_cls/net_prio controllers (use BPF or tc in the network namespace)",
            ));
        }
        if let Some(r) = res.rdma() {
            let p = self.existing("rdma", "rdma.max")?;
            for line in super::rdma_lines(r) {
                w.push((p.clone(), line));
            }
        }
        if let Some(u) = res.unified() {
            let mut keys: Vec<_> = u.iter().collect();
            keys.sort();
            for (k, v) in keys {
                let field = format!("unified.{k}");
                if k.is_empty()
                    || k.contains('/')
                    || k.contains("..")
                    || k.starts_with('.')
                    || !k.contains('.')
                {
                    return Err(CgroupError::invalid(
                        field,
                        "not a cgroup control file name",
                    ));
                }
                if RESERVED.contains(&k.as_str()) {
                    return Err(CgroupError::unsupported(
                        field,
                        "minid manages this file itself",
                    ));
                }
                w.push((self.existing(&field, k)?, v.clone()));
            }
        }
        Ok(w)
    }

    fn plan_io(
        &self,
        b: &oci_spec::runtime::LinuxBlockIo,
        w: &mut Vec<(PathBuf, String)>,
    ) -> Result<(), CgroupError> {
        if b.leaf_weight().is_some() {
            return Err(CgroupError::unsupported(
                "blockIO.leafWeight",
                "cgroup v2 has no leaf weights",
            ));
        }
        // BFQ's io.bfq.weight takes the blkio scale (1-1000) as is; io.weight (iocost) needs
        // the conversion. Which one exists depends on the I/O scheduler.
        let bfq = self.file("io.bfq.weight");
        let weight_file = |field: &str| -> Result<(PathBuf, bool), CgroupError> {
            if bfq.exists() {
                Ok((bfq.clone(), true))
            } else {
                Ok((self.existing(field, "io.weight")?, false))
            }
        };
        // 0 means "not set" (runc's reading); the kernel would refuse it as a weight.
        if let Some(wt) = b.weight().filter(|&w| w != 0) {
            let (p, is_bfq) = weight_file("blockIO.weight")?;
            let v = if is_bfq {
                wt.to_string()
            } else {
                format!("default {}", super::blkio_weight_to_io_weight(wt.into()))
            };
            w.push((p, v));
        }
        for (i, d) in b.weight_device().iter().flatten().enumerate() {
            if d.leaf_weight().is_some() {
                return Err(CgroupError::unsupported(
                    format!("blockIO.weightDevice[{i}].leafWeight"),
                    "cgroup v2 has no leaf weights",
                ));
            }
            if let Some(wt) = d.weight() {
                let (p, is_bfq) = weight_file(&format!("blockIO.weightDevice[{i}]"))?;
                let wt = if is_bfq {
                    u64::from(wt)
                } else {
                    super::blkio_weight_to_io_weight(wt.into())
                };
                w.push((p, format!("{}:{} {wt}", d.major(), d.minor())));
            }
        }
        // io.max takes one line per device with any subset of the four keys; 0 means no limit.
        let mut lines: Vec<((i64, i64), Vec<String>)> = Vec::new();
        let lists = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, list) in lists {
            for d in list.iter().flatten() {
                let dev = (d.major(), d.minor());
                let v = if d.rate() == 0 {
                    format!("{key}=max")
                } else {
                    format!("{key}={}", d.rate())
                };
                match lines.iter_mut().find(|(k, _)| *k == dev) {
                    Some((_, kv)) => kv.push(v),
                    None => lines.push((dev, vec![v])),
                }
            }
        }
        for ((ma, mi), kv) in lines {
            w.push((self.file("io.max"), format!("{ma}:{mi} {}", kv.join(" "))));
        }
        Ok(())
    }

    /// The path of a control file that must exist for `field` to be honoured.
    fn existing(&self, field: &str, name: &str) -> Result<PathBuf, CgroupError> {
        let p = self.file(name);
        if p.exists() {
            Ok(p)
        } else {
            Err(CgroupError::unsupported(
                field,
                format!(
                    "{} does not exist (controller not enabled, or not supported by this kernel)",
                    p.display()
                ),
            ))
        }
    }

    fn frozen(&self) -> Result<bool, CgroupError> {
        let p = self.file("cgroup.events");
        Ok(files::flat_keyed(&p, &files::read(&p)?, "frozen")? == Some(1))
    }

    fn set_frozen(&self, on: bool) -> Result<(), CgroupError> {
        let p = self.file("cgroup.freeze");
        if !p.exists() && self.dir.exists() {
            return Err(CgroupError::unsupported(
                "freeze",
                "cgroup.freeze does not exist (the v2 freezer needs Linux 5.2)",
            ));
        }
        files::write(&p, if on { "1" } else { "0" })?;
        files::wait_for(
            &self.file("cgroup.events"),
            if on { "frozen" } else { "thawed" },
            || Ok(self.frozen()? == on),
            || Ok(()),
        )
    }

    /// Installs the device filter for `rules`, replacing the one a previous `apply` attached.
    fn apply_devices(&self, rules: &[devices::DeviceRule]) -> Result<(), CgroupError> {
        let fd = open(
            &self.dir,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| CgroupError::Io {
            op: "open",
            path: self.dir.clone(),
            source: e.into(),
        })?;
        // SAFETY: open(2) just returned this fd and nothing else owns it.
        let cgroup = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        devices::replace_program(&cgroup, rules)
    }
}

/// checkBeforeUpdate: refuse a memory limit below what the cgroup already uses.
pub(crate) fn check_usage(usage_file: &Path, limit: i64) -> Result<(), CgroupError> {
    if let Some(u) = files::read_opt(usage_file)? {
        let usage = files::parse_u64(usage_file, u.trim())?;
        if (limit as u64) < usage {
            return Err(CgroupError::invalid(
                "memory.limit",
                format!("{limit} is below the current usage {usage} (checkBeforeUpdate)"),
            ));
        }
    }
    Ok(())
}

pub(crate) fn refuse_realtime(
    runtime: Option<i64>,
    period: Option<u64>,
) -> Result<(), CgroupError> {
    if runtime.is_some_and(|r| r != 0) {
        return Err(CgroupError::unsupported(
            "cpu.realtimeRuntime",
            "realtime scheduling budgets for containers are not supported",
        ));
    }
    if period.is_some_and(|p| p != 0) {
        return Err(CgroupError::unsupported(
            "cpu.realtimePeriod",
            "realtime scheduling budgets for containers are not supported",
        ));
    }
    Ok(())
}

/// pids.max: a limit ≤ 0 means no limit ("max"), as in the OCI spec.
pub(crate) fn pids_value(limit: i64) -> String {
    if limit <= 0 {
        "max".to_string()
    } else {
        limit.to_string()
    }
}

impl Cgroup for V2Cgroup {
    fn path(&self) -> &str {
        &self.path
    }

    fn create(&self) -> Result<(), CgroupError> {
        check_path(&self.path)?;
        let parts: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        let mut dir = self.root.clone();
        // Ancestors strictly below the root, top-down: each one's subtree_control decides what
        // its children (the next level) can use.
        for part in &parts[..parts.len() - 1] {
            dir.push(part);
            files::mkdir_p(&dir)?;
            self.enable_controllers(&dir)?;
        }
        files::mkdir_p(&self.dir)
    }

    fn apply(&self, res: &LinuxResources) -> Result<(), CgroupError> {
        check_path(&self.path)?;
        let rules = match res.devices() {
            Some(d) => Some(devices::rules(d)?),
            None => None,
        };
        for (path, value) in self.plan(res)? {
            files::write(&path, &value)?;
        }
        match rules {
            Some(r) => self.apply_devices(&r),
            None => Ok(()),
        }
    }

    fn add(&self, pid: i32) -> Result<(), CgroupError> {
        check_path(&self.path)?;
        files::write(&self.file("cgroup.procs"), &pid.to_string())
    }

    fn clone_into_fd(&self) -> Result<Option<OwnedFd>, CgroupError> {
        let fd = open(
            &self.dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| CgroupError::Io {
            op: "open",
            path: self.dir.clone(),
            source: e.into(),
        })?;
        // SAFETY: open(2) just returned this fd and nothing else owns it.
        Ok(Some(unsafe {
            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        }))
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let mut out = Vec::new();
        files::pids_recursive(&self.dir, &mut out)?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        stats::v2_stats(&self.dir)
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        let r = self.set_frozen(true);
        if matches!(r, Err(CgroupError::Timeout { .. })) {
            // Leave nothing half-frozen behind a failed pause.
            let _ = files::write(&self.file("cgroup.freeze"), "0");
        }
        r
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        // What was asked (cgroup.freeze), not whether the kernel has finished freezing.
        Ok(files::read_opt(&self.file("cgroup.freeze"))?.is_some_and(|s| s.trim() == "1"))
    }

    fn kill_all(&self, signal: i32) -> Result<(), CgroupError> {
        let kill = self.file("cgroup.kill");
        if signal == libc::SIGKILL && kill.exists() {
            // Linux 5.14: the kernel kills every process, including ones forking right now.
            return files::write(&kill, "1");
        }
        super::freeze_signal_thaw(self, signal)
    }

    fn oom_counter_file(&self) -> Option<PathBuf> {
        Some(self.file("memory.events"))
    }

    fn remove(&self) -> Result<(), CgroupError> {
        check_path(&self.path)?;
        files::rmdir_tree(&self.dir)
    }
}

#[cfg(test)]
#[path = "v2_tests.rs"]
mod tests;
