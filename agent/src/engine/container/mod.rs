//! Containers: their on-disk record, their status, and one file per verb.
//!
//! A container lives in `<root>/<id>/` (root is `/run/minid` for the runtime CLI):
//!
//! | file | written by | meaning |
//! |---|---|---|
//! | `state.json` | `create` (pid 0), then the shim (pid set) | [`Record`]: bundle, pid, cgroup, ... |
//! | `exec.fifo` | `create`; removed by `start` | present while the init waits to be started |
//! | `exit.json` | the shim, when the init exits | [`ExitRecord`]: code, signal, OOM-killed, time |
//! | `shim.log` | the shim | the shim's own errors after it detached |
//!
//! The status is *derived* from these files (never stored, so it cannot go stale): no pid yet →
//! creating; `exit.json` → stopped; `exec.fifo` → created; the cgroup frozen → paused;
//! otherwise running. Every file is written atomically. Verbs check the status first through the
//! `can_*` methods of [`Status`] (youki's state machine), before any side effect.

pub mod create;
pub mod delete;
pub mod exec;
pub mod kill;
pub mod run;
pub mod standby;
pub mod start;
pub mod state;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::engine::cgroups::{self, Cgroup, CgroupPath, CgroupVersion};
use crate::engine::error::{EngineError, Result};
use crate::engine::fsutil;

/// Where the runtime CLI keeps container state by default (like runc's /run/runc).
pub const DEFAULT_ROOT: &str = "/run/minid";

/// Where the runtime keeps its containers and finds the cgroup hierarchy.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// State directory holding one subdirectory per container.
    pub root: PathBuf,
    /// Mount point of the cgroup hierarchy (normally `/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// Overrides the parent cgroup of containers without an absolute `linux.cgroupsPath`.
    pub cgroup_parent: Option<String>,
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Runtime {
            root: root.into(),
            cgroup_root: PathBuf::from(cgroups::DEFAULT_ROOT),
            cgroup_parent: None,
        }
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Loads a container's record; a missing container is `ContainerNotFound`.
    pub fn load(&self, id: &str) -> Result<Container> {
        validate_id(id)?;
        let dir = self.dir(id);
        if !dir.is_dir() {
            return Err(EngineError::ContainerNotFound(id.to_string()));
        }
        let state_path = dir.join(STATE_FILE);
        let record = if state_path.exists() {
            Some(fsutil::read_json::<Record>(&state_path)?)
        } else {
            None
        };
        Ok(Container {
            id: id.to_string(),
            dir,
            record,
        })
    }

    /// Every container under the root, sorted by id; unreadable ones are reported, not hidden.
    /// Retired ones ([`delete::retire`], a name no id can have) are gone already.
    pub fn list(&self) -> Result<Vec<Result<Container>>> {
        let mut ids: Vec<String> = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with(delete::RETIRED_PREFIX))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(EngineError::io("read", &self.root, e)),
        };
        ids.sort();
        Ok(ids.iter().map(|id| self.load(id)).collect())
    }
}

pub const STATE_FILE: &str = "state.json";
pub const EXIT_FILE: &str = "exit.json";
pub const FIFO_FILE: &str = "exec.fifo";
pub const SHIM_LOG: &str = "shim.log";

/// A container's durable record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// The init's pid in our pid namespace; 0 until the shim has created it.
    pub pid: i32,
    /// The init's start time (field 22 of /proc/PID/stat), to tell it from a reused pid.
    #[serde(default)]
    pub pid_start_time: u64,
    /// The shim that owns the init (0 when `minid runtime run` owns it in the foreground).
    #[serde(default)]
    pub shim_pid: i32,
    #[serde(default)]
    pub shim_start_time: u64,
    pub created: String,
    pub cgroup: CgroupPath,
    pub cgroup_version: CgroupVersion,
    /// Mount point of the hierarchy the cgroup lives in; every verb uses this one.
    #[serde(default = "default_cgroup_root")]
    pub cgroup_root: PathBuf,
    #[serde(default)]
    pub annotations: std::collections::HashMap<String, String>,
    /// The CRI log file, when the shim writes one.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// The spec has poststart or poststop hooks (see [`crate::engine::hooks::any_after_create`]);
    /// a record from before this field says yes, so its bundle is read as before.
    #[serde(default = "yes")]
    pub hooks: bool,
}

fn yes() -> bool {
    true
}

fn default_cgroup_root() -> PathBuf {
    PathBuf::from(cgroups::DEFAULT_ROOT)
}

/// How the init ended, written once by its parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code as a shell reports it: the code, or 128+N when killed by signal N.
    pub status: i32,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// RFC 3339 time of the exit.
    pub finished_at: String,
}

impl ExitRecord {
    pub fn from_wait(ws: nix::sys::wait::WaitStatus, oom_killed: bool) -> Option<ExitRecord> {
        use nix::sys::wait::WaitStatus;
        let (status, signal) = match ws {
            WaitStatus::Exited(_, c) => (c, None),
            WaitStatus::Signaled(_, s, _) => (128 + s as i32, Some(s as i32)),
            _ => return None,
        };
        Some(ExitRecord {
            status,
            signal,
            oom_killed,
            finished_at: now_rfc3339(),
        })
    }
}

pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(SystemTime::now()).to_string()
}

/// The OCI status of a container, plus `paused` (runc's extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
    pub fn can_start(self) -> bool {
        self == Status::Created
    }
    pub fn can_kill(self) -> bool {
        matches!(self, Status::Created | Status::Running | Status::Paused)
    }
    pub fn can_delete(self) -> bool {
        matches!(self, Status::Stopped | Status::Created | Status::Creating)
    }
    pub fn can_pause(self) -> bool {
        self == Status::Running
    }
    pub fn can_resume(self) -> bool {
        self == Status::Paused
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A loaded container.
#[derive(Debug)]
pub struct Container {
    pub id: String,
    pub dir: PathBuf,
    /// `None` while `create` has not written the record yet.
    pub record: Option<Record>,
}

impl Container {
    pub fn exit(&self) -> Result<Option<ExitRecord>> {
        let p = self.dir.join(EXIT_FILE);
        if !p.exists() {
            return Ok(None);
        }
        fsutil::read_json(&p).map(Some)
    }

    /// Whether the container was started: its exec fifo, which `start` removes, is gone. (An
    /// init that died before its start leaves the fifo.)
    pub fn started(&self) -> bool {
        self.record.is_some() && !self.dir.join(FIFO_FILE).exists()
    }

    pub fn status(&self) -> Status {
        let Some(rec) = &self.record else {
            return Status::Creating;
        };
        if rec.pid == 0 {
            return Status::Creating;
        }
        if self.dir.join(EXIT_FILE).exists() {
            return Status::Stopped;
        }
        if !pid_is_ours(rec.pid, rec.pid_start_time) {
            // The init is gone. Its shim, if alive, is about to write the exit record: the
            // container counts as stopped once that record exists, so a caller that sees
            // "stopped" can always read the exit status. A dead shim records nothing.
            if rec.shim_pid > 0 && pid_is_ours(rec.shim_pid, rec.shim_start_time) {
                return Status::Running;
            }
            return Status::Stopped;
        }
        if self.dir.join(FIFO_FILE).exists() {
            return Status::Created;
        }
        if self.is_frozen() {
            return Status::Paused;
        }
        Status::Running
    }

    fn is_frozen(&self) -> bool {
        self.cgroup()
            .and_then(|cg| Ok(cg.is_frozen()?))
            .unwrap_or(false)
    }

    pub fn record(&self) -> Result<&Record> {
        self.record.as_ref().ok_or_else(|| EngineError::WrongState {
            id: self.id.clone(),
            status: Status::Creating.to_string(),
            verb: "use it",
        })
    }

    pub fn cgroup(&self) -> Result<Box<dyn Cgroup>> {
        let rec = self.record()?;
        Ok(cgroups::open_path(
            &rec.cgroup_root,
            rec.cgroup_version,
            &rec.cgroup,
        ))
    }

    /// Refuses `verb` unless `allowed(status)`.
    pub fn check(&self, verb: &'static str, allowed: fn(Status) -> bool) -> Result<Status> {
        let s = self.status();
        if allowed(s) {
            Ok(s)
        } else {
            Err(EngineError::WrongState {
                id: self.id.clone(),
                status: s.to_string(),
                verb,
            })
        }
    }

    /// The OCI state document (runtime-spec runtime.md "State").
    pub fn oci_state(&self) -> oci_spec::runtime::State {
        let status = self.status();
        let mut st = oci_spec::runtime::State::default();
        st.set_version(oci_spec::runtime::VERSION.to_string());
        st.set_id(self.id.clone());
        st.set_status(match status {
            Status::Creating => oci_spec::runtime::ContainerState::Creating,
            Status::Created => oci_spec::runtime::ContainerState::Created,
            Status::Running | Status::Paused => oci_spec::runtime::ContainerState::Running,
            Status::Stopped => oci_spec::runtime::ContainerState::Stopped,
        });
        if let Some(rec) = &self.record {
            if !matches!(status, Status::Stopped) && rec.pid > 0 {
                st.set_pid(Some(rec.pid));
            }
            st.set_bundle(rec.bundle.clone());
            if !rec.annotations.is_empty() {
                st.set_annotations(Some(rec.annotations.clone()));
            }
        }
        st
    }
}

/// Container ids: what runc accepts, so any caller's ids work, and nothing that is a path.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && !id.starts_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::InvalidId(id.to_string()))
    }
}

/// Field 22 of /proc/PID/stat: the process start time in clock ticks since boot.
pub fn pid_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Whether `pid` is still the process we recorded (not a reused pid, not a zombie).
pub fn pid_is_ours(pid: i32, start_time: u64) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let Some(idx) = stat.rfind(')') else {
                return false;
            };
            let rest = &stat[idx + 2..];
            let state = rest.split(' ').next().unwrap_or("");
            if state == "Z" || state == "X" {
                return false;
            }
            start_time == 0 || pid_start_time(pid) == Some(start_time)
        }
        Err(_) => false,
    }
}

/// An exclusive lock on one container's directory, held by verbs that change its state
/// (create, start, delete, pause, resume) so two of them cannot interleave: a second `start`
/// waits and then finds the container running; `delete` waits for a `create` in progress.
#[derive(Debug)]
pub struct Lock {
    _flock: nix::fcntl::Flock<std::fs::File>,
}

/// Takes the container's lock, waiting up to 10 s for another verb to finish with it.
pub fn lock(dir: &Path, id: &str) -> Result<Lock> {
    use nix::fcntl::{Flock, FlockArg};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let f = match std::fs::File::open(dir) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EngineError::ContainerNotFound(id.to_string()))
            }
            Err(e) => return Err(EngineError::io("open", dir, e)),
        };
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(flock) => return Ok(Lock { _flock: flock }),
            Err((_, nix::Error::EWOULDBLOCK)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err((_, nix::Error::EWOULDBLOCK)) => {
                return Err(EngineError::WrongState {
                    id: id.to_string(),
                    status: "busy".into(),
                    verb: "change it (another runtime command holds it for over 10s)",
                })
            }
            Err((_, e)) => return Err(EngineError::sys(format!("flock {}", dir.display()), e)),
        }
    }
}

/// Writes a container's record (`state.json`). Container state lives on `/run`, gone at
/// reboot, so it is replaced atomically without fsync (see [`fsutil::Durability`]).
pub fn write_record(dir: &Path, record: &Record) -> Result<()> {
    fsutil::write_json_atomic_with(&dir.join(STATE_FILE), record, fsutil::Durability::Volatile)
}

/// Writes a container's exit record (`exit.json`), atomically as the record.
pub fn write_exit(dir: &Path, exit: &ExitRecord) -> Result<()> {
    fsutil::write_json_atomic_with(&dir.join(EXIT_FILE), exit, fsutil::Durability::Volatile)
}

/// Writes `--pid-file` (atomically, as runc does, so a reader never sees it half-written).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    fsutil::write_atomic_with(
        path,
        pid.to_string().as_bytes(),
        fsutil::Durability::Volatile,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_are_paths_are_refused() {
        for bad in ["", "../x", "a/b", ".hidden", "-rf", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad:?} must be refused");
        }
        for good in ["abc", "web-1", "c_2.x", "0123456789abcdef"] {
            validate_id(good).expect(good);
        }
    }

    #[test]
    fn status_machine_allows_only_legal_verbs() {
        assert!(Status::Created.can_start());
        assert!(!Status::Running.can_start());
        assert!(!Status::Stopped.can_kill());
        assert!(Status::Paused.can_kill());
        assert!(!Status::Running.can_delete());
        assert!(Status::Stopped.can_delete());
    }

    #[test]
    fn exit_record_uses_shell_codes_for_signals() {
        use nix::sys::signal::Signal;
        use nix::sys::wait::WaitStatus;
        let pid = nix::unistd::Pid::from_raw(1);
        let r = ExitRecord::from_wait(WaitStatus::Signaled(pid, Signal::SIGKILL, false), true)
            .expect("record");
        assert_eq!((r.status, r.signal, r.oom_killed), (137, Some(9), true));
        let r = ExitRecord::from_wait(WaitStatus::Exited(pid, 3), false).expect("record");
        assert_eq!((r.status, r.signal), (3, None));
    }

    #[test]
    fn status_is_derived_from_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = Runtime::new(dir.path());
        std::fs::create_dir(rt.dir("c1")).expect("mkdir");
        assert_eq!(rt.load("c1").expect("load").status(), Status::Creating);
        let me = std::process::id() as i32;
        let rec = Record {
            id: "c1".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            pid: me,
            pid_start_time: pid_start_time(me).expect("own start time"),
            shim_pid: 0,
            shim_start_time: 0,
            created: now_rfc3339(),
            cgroup: CgroupPath::uniform("/minid/c1"),
            cgroup_version: CgroupVersion::V1,
            cgroup_root: default_cgroup_root(),
            annotations: Default::default(),
            log_path: None,
            hooks: false,
        };
        fsutil::write_json_atomic(&rt.dir("c1").join(STATE_FILE), &rec).expect("write");
        std::fs::write(rt.dir("c1").join(FIFO_FILE), b"").expect("fifo stand-in");
        assert_eq!(rt.load("c1").expect("load").status(), Status::Created);
        std::fs::remove_file(rt.dir("c1").join(FIFO_FILE)).expect("rm");
        assert_eq!(rt.load("c1").expect("load").status(), Status::Running);
        let exit = ExitRecord {
            status: 0,
            signal: None,
            oom_killed: false,
            finished_at: now_rfc3339(),
        };
        fsutil::write_json_atomic(&rt.dir("c1").join(EXIT_FILE), &exit).expect("write");
        assert_eq!(rt.load("c1").expect("load").status(), Status::Stopped);
        assert!(matches!(
            rt.load("nope"),
            Err(EngineError::ContainerNotFound(_))
        ));
    }
}
