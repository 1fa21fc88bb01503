//! `delete`: removes a stopped container (with `force`, kills it first).
//!
//! Leaves nothing behind: the container's mounts lived in its own mount namespace and went
//! with it; the cgroup is removed here, then the state directory, then poststop hooks run
//! (their failure is a warning, per the runtime spec).
//!
//! In two halves for a caller that answers in between ([`retire`], then [`Retired::finish`]):
//! the container is gone after the first, which touches no cgroup.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{create::state_json, Record, Runtime, Status};
use crate::engine::cgroups;
use crate::engine::error::{EngineError, Result};
use crate::engine::fsutil;
use crate::engine::hooks::{self, Stage};

/// Deletes the container; returns warnings.
pub fn delete(rt: &Runtime, id: &str, force: bool) -> Result<Vec<String>> {
    delete_with(rt, id, force, None)
}

/// [`delete`] with the container's spec already at hand (for its poststop hooks). Its cgroup
/// and state go under its lock, in place: if the cgroup cannot be removed the container is
/// still there, and the delete can be tried again.
pub fn delete_with(
    rt: &Runtime,
    id: &str,
    force: bool,
    spec: Option<&oci_spec::runtime::Spec>,
) -> Result<Vec<String>> {
    let (lock, mut r) = stop_for_delete(rt, id, force)?;
    r.remove()?;
    r.removed = true;
    drop(lock);
    r.finish(spec)
}

/// The prefix of a retired container's directory under the runtime's root.
pub const RETIRED_PREFIX: &str = ".retired-";

/// A container taken out of the runtime by [`retire`]: it no longer exists for any verb, but
/// its cgroup and state directory are still there for [`Retired::finish`] to remove.
#[derive(Debug)]
pub struct Retired {
    id: String,
    dir: PathBuf,
    record: Option<Record>,
    /// Its cgroup and directory are gone already; the hooks are left.
    removed: bool,
}

/// Takes the container's lock and checks it can be deleted; with `force`, kills it and waits
/// for its end. Returns the lock and the container, to be removed.
fn stop_for_delete(rt: &Runtime, id: &str, force: bool) -> Result<(super::Lock, Retired)> {
    let lock = super::lock(&rt.dir(id), id)?;
    let c = rt.load(id)?;
    let status = c.status();
    if !status.can_delete() && !force {
        return Err(EngineError::WrongState {
            id: id.to_string(),
            status: status.to_string(),
            verb: "delete (stop it first or use --force)",
        });
    }
    // A created init waits at the fifo and a forced delete may find it running: kill every
    // process so nothing runs after we are gone.
    if matches!(status, Status::Created | Status::Running | Status::Paused) {
        let cg = c.cgroup()?;
        cg.kill_all(Signal::SIGKILL as i32)?;
        if status == Status::Paused {
            let _ = cg.thaw();
        }
        wait_stopped(rt, id, Duration::from_secs(10))?;
    }
    let r = Retired {
        id: id.to_string(),
        dir: c.dir,
        record: c.record,
        removed: false,
    };
    Ok((lock, r))
}

/// [`delete`] in two halves, for a caller that answers in between: checks the container can
/// go (with `force`, kills it and waits for its end), then renames its directory aside, which
/// is what makes it gone. It touches no cgroup, so it never waits behind another cgroup change
/// (on cgroup v1 a move of a process can hold the kernel's cgroup mutex for an RCU grace
/// period). [`Retired::finish`] is the second half; a crash before it leaves the renamed
/// directory for [`finish_retired`].
pub fn retire(rt: &Runtime, id: &str, force: bool) -> Result<Retired> {
    let (lock, mut r) = stop_for_delete(rt, id, force)?;
    let aside = rt.root.join(format!("{RETIRED_PREFIX}{id}"));
    match std::fs::rename(&r.dir, &aside) {
        Ok(()) => r.dir = aside,
        // Another retired container of this id not finished yet: this one goes in place,
        // under its lock, before anyone can make the id again.
        Err(_) => {
            r.remove()?;
            r.removed = true;
        }
    }
    drop(lock);
    Ok(r)
}

impl Retired {
    /// The second half of [`delete`]: removes the cgroup (killing what is left in it) and the
    /// state directory, then runs the poststop hooks (`spec`, else the bundle's); returns
    /// warnings.
    pub fn finish(self, spec: Option<&oci_spec::runtime::Spec>) -> Result<Vec<String>> {
        if !self.removed {
            self.remove()?;
        }
        let mut warnings = Vec::new();
        let Some(rec) = &self.record else {
            return Ok(warnings);
        };
        if !rec.hooks && spec.is_none() {
            return Ok(warnings);
        }
        let loaded;
        let spec = match spec {
            Some(s) => Ok(s),
            None => {
                loaded = crate::engine::spec::load(&rec.bundle);
                loaded.as_ref().map_err(|e| e.to_string())
            }
        };
        match spec {
            Ok(spec) => {
                if let Err(e) = hooks::run(
                    spec,
                    Stage::Poststop,
                    &state_json(&self.id, "stopped", 0, rec),
                ) {
                    warnings.push(e.to_string());
                }
            }
            Err(e) => warnings.push(format!("poststop hooks not run: {e}")),
        }
        Ok(warnings)
    }

    fn remove(&self) -> Result<()> {
        if let Some(rec) = &self.record {
            let cg = cgroups::open_path(&rec.cgroup_root, rec.cgroup_version, &rec.cgroup);
            // Without its own pid namespace a container's init can exit and leave children
            // behind; they go with the container (runc does the same), or its cgroup stays busy.
            if !cg.pids()?.is_empty() {
                cg.kill_all(Signal::SIGKILL as i32)?;
                let deadline = Instant::now() + Duration::from_secs(5);
                while !cg.pids()?.is_empty() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            cg.remove()?;
        }
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io("remove", &self.dir, e)),
        }
    }
}

/// Finishes the containers retired but not finished when the process doing it ended (see
/// [`retire`]); returns what could not be finished, by directory. Their poststop hooks run as
/// [`Retired::finish`] runs them.
pub fn finish_retired(rt: &Runtime) -> Vec<(PathBuf, EngineError)> {
    let Ok(rd) = std::fs::read_dir(&rt.root) else {
        return Vec::new();
    };
    let mut failed = Vec::new();
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix(RETIRED_PREFIX) else {
            continue;
        };
        let dir = e.path();
        let state = dir.join(super::STATE_FILE);
        let record = match fsutil::read_json::<Record>(&state) {
            Ok(r) => Some(r),
            // No record: there was never a cgroup (or it went with the record's writer).
            Err(_) if !state.exists() => None,
            Err(err) => {
                failed.push((dir, err));
                continue;
            }
        };
        let r = Retired {
            id: id.to_string(),
            dir: dir.clone(),
            record,
            removed: false,
        };
        if let Err(err) = r.finish(None) {
            failed.push((dir, err));
        }
    }
    failed
}

/// Waits for the shim's exit record (not for the pid to vanish: pid 1 may reap late).
pub fn wait_stopped(rt: &Runtime, id: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        if rt.load(id)?.status() == Status::Stopped {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(EngineError::Other(format!(
                "container {id} did not stop within {}s of SIGKILL",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::engine::cgroups::testutil::{privileged, v1_parent, ChildGuard};
    use crate::engine::cgroups::{open_path, resolve_path, CgroupVersion};
    use crate::engine::container::{now_rfc3339, write_exit, write_record, ExitRecord};

    /// A stopped container `id` under `rt` whose record names `cgroup` (made here).
    fn stopped(rt: &Runtime, id: &str, cgroup: &cgroups::CgroupPath) {
        let dir = rt.dir(id);
        std::fs::create_dir_all(&dir).unwrap();
        write_record(
            &dir,
            &Record {
                id: id.into(),
                bundle: "/nonexistent-bundle".into(),
                rootfs: "/nonexistent-bundle/rootfs".into(),
                // Any live process: its exit record says it stopped.
                pid: std::process::id() as i32,
                pid_start_time: crate::engine::container::pid_start_time(std::process::id() as i32)
                    .unwrap(),
                shim_pid: 0,
                shim_start_time: 0,
                created: now_rfc3339(),
                cgroup: cgroup.clone(),
                cgroup_version: CgroupVersion::V1,
                cgroup_root: rt.cgroup_root.clone(),
                annotations: Default::default(),
                log_path: None,
                hooks: false,
            },
        )
        .unwrap();
        write_exit(
            &dir,
            &ExitRecord {
                status: 0,
                signal: None,
                oom_killed: false,
                finished_at: now_rfc3339(),
            },
        )
        .unwrap();
    }

    #[test]
    fn a_retired_container_is_gone_at_once_and_its_leftovers_are_finished_later() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(dir.path());
        std::fs::create_dir_all(rt.dir("c1")).unwrap();
        std::fs::create_dir_all(rt.dir("c2")).unwrap();
        // No record yet (a create that never got far): nothing to kill, a directory to go.
        let r = retire(&rt, "c1", false).unwrap();
        assert!(matches!(
            rt.load("c1"),
            Err(EngineError::ContainerNotFound(_))
        ));
        let listed: Vec<String> = rt
            .list()
            .unwrap()
            .into_iter()
            .map(|c| c.unwrap().id)
            .collect();
        assert_eq!(listed, vec!["c2".to_string()]);
        assert!(dir.path().join(".retired-c1").is_dir());
        r.finish(None).unwrap();
        assert!(!dir.path().join(".retired-c1").exists());
        // One whose finisher went away (a crash): finished by the next process.
        drop(retire(&rt, "c2", true).unwrap());
        assert!(dir.path().join(".retired-c2").is_dir());
        assert!(finish_retired(&rt).is_empty());
        assert!(!dir.path().join(".retired-c2").exists());
        assert!(rt.list().unwrap().is_empty());
    }

    #[test]
    fn a_retire_that_finds_an_unfinished_one_of_its_id_removes_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Runtime::new(dir.path());
        // A retired c1 whose finish has not run, and a new c1.
        std::fs::create_dir_all(rt.dir("c1")).unwrap();
        std::fs::write(rt.dir("c1").join("marker"), b"old").unwrap();
        drop(retire(&rt, "c1", false).unwrap());
        std::fs::create_dir_all(rt.dir("c1")).unwrap();
        std::fs::write(rt.dir("c1").join("marker"), b"new").unwrap();
        let r = retire(&rt, "c1", false).unwrap();
        // The new one is gone at once (no second .retired-c1 to rename to); the old one waits.
        assert!(!rt.dir("c1").exists());
        assert!(dir.path().join(".retired-c1").is_dir());
        assert_eq!(
            std::fs::read(dir.path().join(".retired-c1/marker")).unwrap(),
            b"old"
        );
        r.finish(None).unwrap();
        assert!(
            dir.path().join(".retired-c1").is_dir(),
            "not the other one's to finish"
        );
        assert!(finish_retired(&rt).is_empty());
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    }

    #[test]
    fn a_delete_that_cannot_remove_the_cgroup_leaves_the_container_to_try_again() {
        // A v1 layout on a plain directory: its "cgroup" cannot be removed while it holds a
        // file, as a real one cannot while it holds a process.
        let fixture = tempfile::tempdir().unwrap();
        let cg = fixture.path().join("pids/minid/c1");
        std::fs::create_dir_all(&cg).unwrap();
        std::fs::write(cg.join("cgroup.procs"), b"").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut rt = Runtime::new(dir.path());
        rt.cgroup_root = fixture.path().to_path_buf();
        stopped(&rt, "c1", &cgroups::CgroupPath::uniform("/minid/c1"));
        assert!(delete(&rt, "c1", false).is_err());
        // Still there, as it was: the delete can be tried again.
        assert_eq!(rt.load("c1").unwrap().status(), Status::Stopped);
        std::fs::remove_file(cg.join("cgroup.procs")).unwrap();
        assert_eq!(delete(&rt, "c1", false).unwrap(), Vec::<String>::new());
        assert!(matches!(
            rt.load("c1"),
            Err(EngineError::ContainerNotFound(_))
        ));
        assert!(!cg.exists());
    }

    #[test]
    fn privileged_v1_retire_leaves_the_cgroup_to_finish() {
        let Some((root, own)) = privileged(CgroupVersion::V1, &["memory", "pids"]) else {
            return;
        };
        let (parent_name, parent) = v1_parent(&root, &own, "retire");
        let dir = tempfile::tempdir().unwrap();
        let mut rt = Runtime::new(dir.path());
        rt.cgroup_root = root.clone();
        let mut children = Vec::new();
        let mut memory_dirs = Vec::new();
        for id in ["c1", "c2"] {
            let path = resolve_path(&own, CgroupVersion::V1, None, Some(&parent_name), id).unwrap();
            let cg = open_path(&root, CgroupVersion::V1, &path);
            cg.create().unwrap();
            // Something the container left running in its cgroup.
            let child = ChildGuard::sleep();
            cg.add(child.pid()).unwrap();
            children.push(child);
            memory_dirs.push(root.join("memory").join(path.path.trim_start_matches('/')));
            stopped(&rt, id, &path);
        }

        let r = retire(&rt, "c1", false).unwrap();
        assert!(matches!(
            rt.load("c1"),
            Err(EngineError::ContainerNotFound(_))
        ));
        // Gone as a container, but its cgroup (and what is in it) waits for finish.
        assert!(memory_dirs[0].is_dir());
        assert_eq!(r.finish(None).unwrap(), Vec::<String>::new());
        assert!(!memory_dirs[0].exists(), "cgroup left after finish");
        let st = children[0].wait();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(libc::SIGKILL)
        );

        // Retired, then the process went away: the next one finishes it, cgroup and all.
        drop(retire(&rt, "c2", false).unwrap());
        assert!(memory_dirs[1].is_dir());
        assert!(finish_retired(&rt).is_empty());
        assert!(!memory_dirs[1].exists(), "cgroup left by finish_retired");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
        drop(children);
        drop(parent);
    }
}
