//! Standby shims: a shim started before its container is known, so that `create` does not wait
//! for one to start.
//!
//! Starting a shim costs a fork of minid, an exec of the binary and the shim's own detaching
//! fork (about 3 ms here). On cgroup v1 there is more: moving the init into its cgroup waits
//! for an RCU grace period (the writer side of the kernel's cgroup threadgroup lock), 5 to
//! 30 ms on an idle machine. A standby shim (`minid shim-standby`) does all of that ahead of
//! time: it detaches, and on v1 makes a cgroup of its own beside the containers' and clones a
//! standby init into it ([`PlacedInit`]), which moves into that cgroup at once, so that its
//! grace period passes while no create waits for it. Then it waits on a pipe for a [`Job`]. Given one, it
//! runs exactly as a shim started for that container would, except that it renames the
//! standby's cgroup to the container's (v1 cgroups can be renamed; the processes in them stay)
//! and hands the standby init its job instead of cloning a new one.
//!
//! minid keeps `--standby-shims` standbys and starts a new one after each it hands out. A
//! standby whose minid goes away sees its job pipe close: it kills its standby init, removes
//! the cgroup and exits. Nothing about a container depends on whether its shim was a standby.
//!
//! A standby starts at `SCHED_IDLE` (its exec and setup must not slow the create that just took
//! the previous one); its init's move alone runs at normal priority, since it holds the
//! kernel's cgroup mutex, and the shim leaves idle priority when a create takes it. While that
//! move waits out its grace period every other cgroup change waits too: a container's removal
//! therefore answers before its cgroup goes ([`super::delete::retire`]).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use nix::fcntl::OFlag;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::create::init_config;
use super::{Record, Runtime};
use crate::engine::cgroups::{self, Cgroup};
use crate::engine::error::{EngineError, Result};
use crate::engine::namespaces::Plan;
use crate::engine::process::{self, init::InitConfig};
use crate::engine::spec;

/// The byte on the job pipe that comes before the job: "a create has begun: leave idle
/// priority".
pub const TAKEN: &[u8] = b"t";

/// What a standby shim is told to do: the part of `minid shim`'s arguments that names the
/// container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub log_path: Option<PathBuf>,
    pub log_max_size: u64,
    pub log_max_files: u32,
    pub open_stdin: bool,
}

/// A standby init in a cgroup of its own (see the module docs); dropping it kills the init
/// and removes the cgroup.
pub struct PlacedInit {
    held: Option<(process::Standby, Box<dyn Cgroup>)>,
    root: PathBuf,
}

impl Drop for PlacedInit {
    fn drop(&mut self) {
        if let Some((init, cgroup)) = self.held.take() {
            init.discard();
            let _ = cgroup.remove();
        }
    }
}

impl PlacedInit {
    /// Makes cgroup `name` beside where containers' cgroups go and clones a standby init into
    /// it; `None` where there is nothing to gain (cgroup v2, where `CLONE_INTO_CGROUP` makes an
    /// init inside its cgroup at no cost). Must run in a single-threaded process.
    pub fn prepare(rt: &Runtime, name: &str, nice: i32) -> Result<Option<PlacedInit>> {
        let version = cgroups::detect(&rt.cgroup_root)?;
        if version != cgroups::CgroupVersion::V1 {
            return Ok(None);
        }
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| EngineError::io("read", "/proc/self/cgroup", e))?;
        let path = cgroups::resolve_path(&own, version, None, rt.cgroup_parent.as_deref(), name)?;
        let cgroup = cgroups::open_path(&rt.cgroup_root, version, &path);
        cgroup.create()?;
        let rt2 = rt.clone();
        let build = move |id: &str| standby_config(&rt2, id);
        match process::clone_standby(cgroup.as_ref(), nice, &build) {
            Ok(init) => Ok(Some(PlacedInit {
                held: Some((init, cgroup)),
                root: rt.cgroup_root.clone(),
            })),
            Err(e) => {
                let _ = cgroup.remove();
                Err(e)
            }
        }
    }

    /// Tells the standby init to move into its cgroup now (see [`process::Standby`]).
    pub fn place(&self) {
        if let Some((init, _)) = &self.held {
            let _ = init.place();
        }
    }

    /// Tells the standby init which container it is likely to become the init of, so that it
    /// reads that container's record and spec while the shim does its part (see
    /// [`process::Standby::prepare`]). The job may still not fit it ([`Self::adopt`]).
    pub fn announce(&self, id: &str) {
        if let Some((init, _)) = &self.held {
            let _ = init.prepare(id);
        }
    }

    /// Takes the standby for container `record` when the container can use it: the same
    /// cgroup hierarchy, no namespace to be made at clone time but the pid one, nothing
    /// passed by number. Its cgroup becomes the container's. `None` (and the standby gone)
    /// otherwise: the caller clones a fresh init.
    pub(super) fn adopt(
        mut self,
        spec: &Spec,
        record: &Record,
        preserve_fds: i32,
    ) -> Option<process::Standby> {
        let fits = record.cgroup_version == cgroups::CgroupVersion::V1
            && record.cgroup_root == self.root
            && preserve_fds == 0
            && Plan::from_spec(spec).is_ok_and(|p| {
                p.clone_flags() == nix::sched::CloneFlags::CLONE_NEWPID && p.join_pid().is_none()
            });
        let (init, cgroup) = self.held.as_ref()?;
        if !fits || init.placed().is_err() || cgroup.rename_to(&record.cgroup).is_err() {
            return None; // dropped: killed, its cgroup removed
        }
        self.held.take().map(|(init, _)| init)
    }
}

/// A standby init's side of a job: the container's record and spec as its shim wrote them
/// (its descriptors come with the job).
fn standby_config(rt: &Runtime, id: &str) -> Result<InitConfig> {
    let c = rt.load(id)?;
    let record = c.record()?;
    let spec = spec::load(&record.bundle)?;
    if record.cgroup_version == cgroups::CgroupVersion::V1 {
        crate::engine::rootfs::read_v1_hierarchies_ahead(&record.cgroup_root);
    }
    init_config(id, &spec, record, None, None, None, 0)
}

/// One standby shim as minid holds it: the write end of its job pipe and the read end of the
/// pipe on which it reports the creation (as `minid shim` does on its ready pipe).
pub struct Warm {
    job: File,
    ready: File,
}

impl Warm {
    /// Whether the standby is still there to take a job (it holds the ready pipe open).
    fn alive(&self) -> bool {
        let mut fds = [nix::poll::PollFd::new(
            self.ready.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        matches!(
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO),
            Ok(0)
        )
    }

    /// Tells the standby that a job is coming, so that it leaves idle priority meanwhile. (A
    /// standby let go without a job after this is simply wasted.)
    pub fn claim(&mut self) {
        let _ = self.job.write_all(TAKEN);
    }

    /// Hands over the job; returns what the shim reported on its ready pipe, `None` if the
    /// standby was gone before it could take the job.
    pub fn run(self, what: &Job) -> Result<Option<Vec<u8>>> {
        let Warm {
            job: mut job_pipe,
            mut ready,
        } = self;
        let data = serde_json::to_vec(what)
            .map_err(|e| EngineError::Other(format!("encoding a shim job: {e}")))?;
        if job_pipe.write_all(&data).is_err() {
            return Ok(None); // EPIPE: nobody reads it any more
        }
        drop(job_pipe);
        let mut buf = Vec::new();
        ready
            .read_to_end(&mut buf)
            .map_err(|e| EngineError::io("read", "shim ready pipe", e))?;
        Ok((!buf.is_empty()).then_some(buf))
    }
}

/// A standby taken from a pool for one create: [`Warm`] and the pool to refill once it has
/// its job.
pub struct Taken {
    warm: Mutex<Option<Warm>>,
    pool: Arc<ShimPool>,
}

impl std::fmt::Debug for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Taken").finish_non_exhaustive()
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        // Used or not (the create failed first), the pool fills up again once the create is
        // over, so that the next standby does not compete with this one's setup.
        self.pool.refill();
    }
}

impl Taken {
    /// The standby, once: `None` the second time.
    pub(super) fn warm(&self) -> Option<Warm> {
        self.warm.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The standby shims minid keeps (see the module docs).
pub struct ShimPool {
    exe: PathBuf,
    rt: Runtime,
    size: usize,
    warm: Mutex<Vec<Warm>>,
    starting: AtomicUsize,
    /// Standbys start at `SCHED_IDLE` only where they can leave it again.
    idle_ok: bool,
}

impl std::fmt::Debug for ShimPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShimPool")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl ShimPool {
    /// A pool of `size` standby shims for containers of `rt`, started in the background.
    pub fn new(rt: &Runtime, size: usize) -> Result<Arc<ShimPool>> {
        sweep_stale(rt);
        let exe = std::fs::read_link("/proc/self/exe")
            .map_err(|e| EngineError::io("read", "/proc/self/exe", e))?;
        let pool = Arc::new(ShimPool {
            exe,
            rt: rt.clone(),
            size,
            warm: Mutex::new(Vec::new()),
            starting: AtomicUsize::new(0),
            idle_ok: process::priority::can_idle(),
        });
        pool.refill();
        Ok(pool)
    }

    /// A standby shim for a create that begins now, told it is taken, if one is ready.
    pub fn take(self: &Arc<Self>) -> Option<Taken> {
        let mut warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(mut w) = warm.pop() {
            if w.alive() {
                w.claim();
                return Some(Taken {
                    warm: Mutex::new(Some(w)),
                    pool: self.clone(),
                });
            }
        }
        drop(warm);
        // None ready (all taken, died, or failed to start): start what is missing.
        self.refill();
        None
    }

    /// Starts standbys (each on a thread of its own) until the pool is full again.
    pub fn refill(self: &Arc<Self>) {
        // Counted under the lock, so that two refills at once do not both start the missing.
        let warm = self.warm.lock().unwrap_or_else(|e| e.into_inner());
        let missing = self
            .size
            .saturating_sub(warm.len() + self.starting.load(Ordering::SeqCst));
        self.starting.fetch_add(missing, Ordering::SeqCst);
        drop(warm);
        for _ in 0..missing {
            let pool = self.clone();
            let spawned = std::thread::Builder::new()
                .name("shim-standby".into())
                .spawn(move || {
                    // A standby's start (an exec of minid, its cgroup, its init) is work for
                    // an idle CPU: it must not slow the create that just took the last one.
                    // The shim inherits this thread's policy and leaves it when given a job.
                    let nice = process::priority::current();
                    if pool.idle_ok {
                        process::priority::idle();
                    }
                    let r = pool.start_one(nice);
                    match r {
                        Ok(w) => pool.warm.lock().unwrap_or_else(|e| e.into_inner()).push(w),
                        // Tried again by the next create that finds none ready.
                        Err(e) => tracing::warn!(error = %e, "starting a standby shim"),
                    }
                    pool.starting.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                self.starting.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    fn start_one(&self, nice: i32) -> Result<Warm> {
        let (job_r, job_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| EngineError::sys("pipe2", e))?;
        let (ready_r, ready_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| EngineError::sys("pipe2", e))?;
        // The pipes go in as stdin and stdout, so no code runs between fork and exec and
        // the standard library can start the shim with posix_spawn (vfork): a fork of minid
        // would copy its page tables and stall its threads meanwhile.
        let mut cmd = Command::new(&self.exe);
        cmd.arg("shim-standby")
            .arg("--root")
            .arg(&self.rt.root)
            .arg("--cgroup-root")
            .arg(&self.rt.cgroup_root)
            .arg(format!("--nice={nice}"))
            .stdin(Stdio::from(job_r))
            .stdout(Stdio::from(ready_w))
            .stderr(Stdio::null());
        if let Some(p) = &self.rt.cgroup_parent {
            cmd.arg("--cgroup-parent").arg(p);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| EngineError::io("start standby shim", &self.exe, e))?;
        drop(cmd);
        // What we started is the shim's first half; it exits once the shim has detached.
        let status = child
            .wait()
            .map_err(|e| EngineError::io("wait for", "standby shim", e))?;
        if !status.success() {
            return Err(EngineError::Other(format!(
                "the standby shim exited with {status}"
            )));
        }
        Ok(Warm {
            job: File::from(job_w),
            ready: File::from(ready_r),
        })
    }

    /// Lets every standby go and waits (at most `timeout` in all) until each has cleaned up
    /// and exited, which it says by closing its ready pipe.
    pub fn shutdown(&self, timeout: std::time::Duration) {
        let warm = std::mem::take(&mut *self.warm.lock().unwrap_or_else(|e| e.into_inner()));
        let deadline = std::time::Instant::now() + timeout;
        let readies: Vec<File> = warm
            .into_iter()
            .map(|w| {
                drop(w.job);
                w.ready
            })
            .collect();
        for mut r in readies {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [nix::poll::PollFd::new(
                r.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)), Ok(n) if n > 0)
            {
                let mut sink = Vec::new();
                let _ = r.read_to_end(&mut sink);
            }
        }
    }
}

/// The name of a standby shim's cgroup (beside the containers' cgroups).
pub fn cgroup_name(shim_pid: u32) -> String {
    format!("{STANDBY_CGROUP_PREFIX}{shim_pid}")
}

const STANDBY_CGROUP_PREFIX: &str = "minid-standby-";

/// Removes the cgroups that standby shims killed before they could clean up left behind
/// (cgroup v1; on v2 there are none): `minid-standby-<pid>` beside the containers' cgroups
/// whose shim is gone. A cgroup with a process in it is never removed (the kernel refuses).
pub fn sweep_stale(rt: &Runtime) -> Vec<String> {
    let mut removed = Vec::new();
    if !matches!(
        cgroups::detect(&rt.cgroup_root),
        Ok(cgroups::CgroupVersion::V1)
    ) {
        return removed;
    }
    let Ok(own) = std::fs::read_to_string("/proc/self/cgroup") else {
        return removed;
    };
    let resolve = |name: &str| {
        cgroups::resolve_path(
            &own,
            cgroups::CgroupVersion::V1,
            None,
            rt.cgroup_parent.as_deref(),
            name,
        )
    };
    // `path` is the memory hierarchy's path on v1 (see CgroupPath).
    let (Ok(probe), Some(memory)) = (
        resolve(&cgroup_name(0)),
        cgroups::v1::hierarchy(&rt.cgroup_root, "memory"),
    ) else {
        return removed;
    };
    let Some(parent) = std::path::Path::new(&probe.path).parent() else {
        return removed;
    };
    let Ok(rd) = std::fs::read_dir(memory.join(parent.strip_prefix("/").unwrap_or(parent))) else {
        return removed;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(STANDBY_CGROUP_PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue; // a live standby (of this minid's predecessor, cleaning up, or another's)
        }
        if let Ok(path) = resolve(&name) {
            if cgroups::open_path(&rt.cgroup_root, cgroups::CgroupVersion::V1, &path)
                .remove()
                .is_ok()
            {
                removed.push(name);
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cgroups::testutil::{privileged, v1_parent, CgroupGuard};
    use crate::engine::cgroups::{open_path, resolve_path, CgroupVersion};

    #[test]
    fn privileged_v1_stale_standby_cgroups_are_swept_and_live_ones_kept() {
        let Some((root, own)) = privileged(CgroupVersion::V1, &["memory", "pids"]) else {
            return;
        };
        let (parent_name, parent) = v1_parent(&root, &own, "sweep");
        let mut rt = Runtime::new("/nonexistent-run-root");
        rt.cgroup_root = root.clone();
        rt.cgroup_parent = Some(parent_name.clone());
        // A shim that is gone (reaped) and one that is alive (this process).
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        let at = |name: &str| {
            let p = resolve_path(&own, CgroupVersion::V1, None, Some(&parent_name), name).unwrap();
            let dir = root
                .join("pids")
                .join(p.for_controller("pids").trim_start_matches('/'));
            (open_path(&root, CgroupVersion::V1, &p), dir)
        };
        let (stale, stale_dir) = at(&cgroup_name(gone_pid));
        stale.create().unwrap();
        let (live, live_dir) = at(&cgroup_name(std::process::id()));
        live.create().unwrap();
        let live = CgroupGuard(live);
        // Not a standby's: never touched.
        let (other, other_dir) = at("something-else-1");
        other.create().unwrap();
        let other = CgroupGuard(other);

        assert_eq!(sweep_stale(&rt), vec![cgroup_name(gone_pid)]);
        assert!(!stale_dir.exists(), "stale standby cgroup kept");
        assert!(live_dir.is_dir(), "a live standby's cgroup was removed");
        assert!(other_dir.is_dir(), "a cgroup not a standby's was removed");
        drop((live, other, parent));
    }
}
