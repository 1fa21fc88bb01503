//! `create` (and `run`, which is create + start + wait in the foreground).
//!
//! `create` validates everything it can before any side effect, writes the container's record,
//! and starts a detached `minid shim` that owns the container from then on. It returns once the
//! shim reports the init created (waiting at the exec fifo) or reports why it failed, in which
//! case nothing is left behind. [`launch`] is the part both the shim and the foreground `run`
//! share: cgroup, init, record.

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};

use super::{now_rfc3339, validate_id, Record, Runtime, FIFO_FILE};
use crate::engine::cgroups::{self, Cgroup};
use crate::engine::error::{EngineError, Result};
use crate::engine::namespaces::{self, Plan};
use crate::engine::process::{self, init::InitConfig, SpawnRequest};
use crate::engine::spec;

/// Where the container's stdio goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StdioMode {
    /// The container inherits the caller's stdin, stdout and stderr (OCI CLI semantics).
    Inherit,
    /// The shim holds the pipes (or the pty) and writes a CRI-format log with rotation.
    Log(LogConfig),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    pub path: PathBuf,
    /// Rotate when the file would grow past this many bytes (0: never).
    pub max_size: u64,
    /// How many rotated files to keep (`log.1` .. `log.N`).
    pub max_files: u32,
    /// Keep the container's stdin open for input: the shim takes it through the `stdin` FIFO
    /// in the container's state directory (and terminal resizes through `ctl`), and closes
    /// the container's stdin when the first writer goes away (Docker's stdin-once).
    #[serde(default)]
    pub open_stdin: bool,
}

/// Who is the init's parent after `create` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Monitor {
    /// minid's process model: a detached `minid shim` owns the init, its stdio and its exit
    /// record, independent of the caller.
    Shim,
    /// runc's process model: `create` clones the init itself and exits, so the init is
    /// reparented to the caller's subreaper (conmon, containerd-shim-runc-v2), which waits
    /// for it and learns its exit status. What podman and containerd expect of a runtime.
    Caller,
}

#[derive(Debug)]
pub struct CreateOptions {
    pub monitor: Monitor,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: i32,
    pub stdio: StdioMode,
    /// A standby shim to give the container to (log mode, nothing passed by number or to a
    /// console socket); without one a fresh shim is started.
    pub standby: Option<super::standby::Taken>,
    /// The bundle's spec, when the caller has it at hand (it wrote `config.json`): not read
    /// again here.
    pub spec: Option<Spec>,
}

/// What the shim tells `create` over the ready pipe.
#[derive(Debug, Serialize, Deserialize)]
pub enum Ready {
    Created {
        pid: i32,
    },
    Failed {
        message: String,
        exec_code: Option<i32>,
    },
}

/// Validates, records, and spawns the shim; returns the init's pid.
pub fn create(rt: &Runtime, id: &str, opts: &CreateOptions) -> Result<i32> {
    let (spec, _lock) = prepare(rt, id, &opts.bundle, opts.spec.clone())?;
    let dir = rt.dir(id);
    let res = (|| {
        let fifo = dir.join(FIFO_FILE);
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o622))
            .map_err(|e| EngineError::sys(format!("mkfifo {}", fifo.display()), e))?;
        // mkfifo applies the umask; the init may run as any user and must be able to open it.
        nix::sys::stat::fchmodat(
            None,
            &fifo,
            Mode::from_bits_truncate(0o622),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| EngineError::sys(format!("chmod {}", fifo.display()), e))?;
        let pid = match opts.monitor {
            Monitor::Shim => spawn_shim(rt, id, opts)?,
            Monitor::Caller => create_in_process(rt, id, &spec, opts)?,
        };
        if let Some(p) = &opts.pid_file {
            super::write_pid_file(p, pid)?;
        }
        Ok(pid)
    })();
    match res {
        Ok(pid) => Ok(pid),
        Err(e) => Err(abort(rt, id, e)),
    }
}

/// Undoes a create that failed part-way: a container that got as far as a live init is
/// killed and waited for, its cgroup removed, and its directory with it. Returns the original
/// error, with any cleanup failure beside it (never instead of it).
pub fn abort(rt: &Runtime, id: &str, err: EngineError) -> EngineError {
    let dir = rt.dir(id);
    let mut cleanup = Vec::new();
    if let Ok(c) = rt.load(id) {
        if c.record.as_ref().is_some_and(|r| r.pid > 0) {
            if let Ok(cg) = c.cgroup() {
                if let Err(e) = cg.kill_all(libc::SIGKILL) {
                    cleanup.push(e.to_string());
                }
                if let Err(e) =
                    super::delete::wait_stopped(rt, id, std::time::Duration::from_secs(5))
                {
                    cleanup.push(e.to_string());
                }
                if let Err(e) = cg.remove() {
                    cleanup.push(e.to_string());
                }
            }
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            cleanup.push(format!("failed to remove {}: {e}", dir.display()));
        }
    }
    if cleanup.is_empty() {
        err
    } else {
        EngineError::Other(format!("{err} (and cleaning up: {})", cleanup.join("; ")))
    }
}

/// Loads (unless given) and validates the spec, creates the container directory and the
/// initial record.
pub fn prepare(
    rt: &Runtime,
    id: &str,
    bundle: &Path,
    spec: Option<Spec>,
) -> Result<(Spec, super::Lock)> {
    validate_id(id)?;
    let bundle =
        std::fs::canonicalize(bundle).map_err(|e| EngineError::io("open bundle", bundle, e))?;
    let spec = match spec {
        Some(s) => spec::resolve(s, &bundle)?,
        None => spec::load(&bundle)?,
    };
    if let Some(caps) = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
    {
        for w in crate::engine::process::identity::ambient_warnings(caps)? {
            tracing::warn!(container_id = id, "{w}");
        }
    }
    if !spec::new_namespace(&spec, LinuxNamespaceType::Mount) {
        return Err(EngineError::Unsupported(
            "a container without a new mount namespace (minid always pivots into the rootfs)"
                .into(),
        ));
    }
    let version = cgroups::detect(&rt.cgroup_root)?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| EngineError::io("read", "/proc/self/cgroup", e))?;
    let cgroup = cgroups::resolve_path(
        &own,
        version,
        spec.linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_deref()),
        rt.cgroup_parent.as_deref(),
        id,
    )?;
    std::fs::create_dir_all(&rt.root).map_err(|e| EngineError::io("create", &rt.root, e))?;
    let dir = rt.dir(id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(EngineError::ContainerExists(id.to_string()))
        }
        Err(e) => return Err(EngineError::io("create", &dir, e)),
    }
    // Held until the container is created (or its creation undone): a concurrent delete or
    // start of the same id waits instead of meeting a half-made container.
    let lock = match super::lock(&dir, id) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
    };
    let record = Record {
        id: id.to_string(),
        bundle: bundle.clone(),
        rootfs: spec::rootfs_path(&spec, &bundle)?,
        pid: 0,
        pid_start_time: 0,
        shim_pid: 0,
        shim_start_time: 0,
        created: now_rfc3339(),
        cgroup,
        cgroup_version: version,
        cgroup_root: rt.cgroup_root.clone(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        log_path: None,
        hooks: crate::engine::hooks::any_after_create(&spec),
    };
    if let Err(e) = super::write_record(&dir, &record) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok((spec, lock))
}

/// runc's model: we are the init's parent only until we exit.
fn create_in_process(rt: &Runtime, id: &str, spec: &Spec, opts: &CreateOptions) -> Result<i32> {
    if let StdioMode::Log(_) = opts.stdio {
        return Err(EngineError::InvalidSpec(
            "a container log needs the shim to hold the pipes (use --monitor shim)".into(),
        ));
    }
    let fifo = rt.dir(id).join(FIFO_FILE);
    let exec_fifo = nix::fcntl::open(&fifo, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| EngineError::sys(format!("open {}", fifo.display()), e))?;
    // SAFETY: open returned a fresh descriptor that we now own.
    let exec_fifo = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(exec_fifo) };
    let console = process::connect_console(opts.console_socket.as_deref())?;
    let launched = launch(
        rt,
        id,
        spec,
        LaunchOptions {
            standby: None,
            stdio: None,
            console: console.as_ref().map(|c| c.as_raw_fd()),
            exec_fifo: Some(exec_fifo),
            preserve_fds: opts.preserve_fds,
            monitor_pid: None,
            log_path: None,
        },
    )?;
    Ok(launched.record.pid)
}

fn spawn_shim(rt: &Runtime, id: &str, opts: &CreateOptions) -> Result<i32> {
    if let (Some(taken), StdioMode::Log(l), 0, None) = (
        &opts.standby,
        &opts.stdio,
        opts.preserve_fds,
        &opts.console_socket,
    ) {
        if let Some(warm) = taken.warm() {
            let job = super::standby::Job {
                id: id.to_string(),
                log_path: Some(l.path.clone()),
                log_max_size: l.max_size,
                log_max_files: l.max_files,
                open_stdin: l.open_stdin,
            };
            // The next standby starts when `taken` drops, after this create.
            match warm.run(&job) {
                Ok(Some(buf)) => return ready_outcome(&buf),
                // The standby died before it took the job: start a shim as without one.
                Ok(None) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let (rd, wr) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| EngineError::sys("pipe2", e))?;
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| EngineError::io("read", "/proc/self/exe", e))?;
    let mut cmd = Command::new(&exe);
    cmd.arg("shim")
        .arg("--root")
        .arg(&rt.root)
        .arg("--id")
        .arg(id)
        .arg("--ready-fd")
        .arg(wr.as_raw_fd().to_string())
        .arg("--preserve-fds")
        .arg(opts.preserve_fds.to_string());
    if let Some(s) = &opts.console_socket {
        cmd.arg("--console-socket").arg(s);
    }
    if let StdioMode::Log(l) = &opts.stdio {
        cmd.arg("--log-path")
            .arg(&l.path)
            .arg("--log-max-size")
            .arg(l.max_size.to_string())
            .arg("--log-max-files")
            .arg(l.max_files.to_string());
        if l.open_stdin {
            cmd.arg("--open-stdin");
        }
    }
    let wr_fd: RawFd = wr.as_raw_fd();
    // SAFETY: the closure runs between fork and exec and only calls fcntl, which is
    // async-signal-safe; it clears CLOEXEC on the ready pipe so the shim inherits it.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(wr_fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| EngineError::io("start shim", &exe, e))?;
    drop(wr);
    let mut buf = Vec::new();
    let read = std::fs::File::from(rd).read_to_end(&mut buf);
    // The process we started is the shim's short-lived first half; it exits at once.
    let _ = child.wait();
    read.map_err(|e| EngineError::io("read", "shim ready pipe", e))?;
    ready_outcome(&buf)
}

/// What a shim's report on its ready pipe means for `create`.
fn ready_outcome(buf: &[u8]) -> Result<i32> {
    match serde_json::from_slice::<Ready>(buf) {
        Ok(Ready::Created { pid }) => Ok(pid),
        Ok(Ready::Failed {
            message,
            exec_code: Some(code),
        }) => Err(EngineError::Exec { code, msg: message }),
        Ok(Ready::Failed { message, .. }) => Err(EngineError::Init(message)),
        Err(_) => Err(EngineError::Init(format!(
            "the shim exited without reporting ({})",
            String::from_utf8_lossy(buf).trim()
        ))),
    }
}

/// Everything the init's parent provides besides the spec.
pub struct LaunchOptions {
    pub stdio: Option<[RawFd; 3]>,
    pub console: Option<RawFd>,
    pub exec_fifo: Option<OwnedFd>,
    pub preserve_fds: i32,
    /// The process that will record the init's exit (the shim, or `run` itself); `None` when
    /// the caller's subreaper learns it (runc's model).
    pub monitor_pid: Option<i32>,
    /// The CRI log the monitor writes.
    pub log_path: Option<PathBuf>,
    /// An init cloned and placed in a cgroup ahead of time, to become this container's init
    /// when it can (else it is discarded and a fresh one cloned).
    pub standby: Option<super::standby::PlacedInit>,
}

/// A launched container: its record (already written) and cgroup, and the init, which waits to
/// be started.
pub struct Launched {
    pub record: Record,
    pub cgroup: Box<dyn Cgroup>,
    pub init: process::Spawned,
}

/// Creates the cgroup, spawns the init and records its pid and monitor, all before the init
/// can run the user's process. Must run in a single-threaded process (the init is a copy of
/// it). A caller that monitors the init (the shim, `run`) blocks SIGCHLD first so the exit
/// cannot be missed; `create --monitor caller` instead exits and leaves the init to its
/// caller's subreaper.
pub fn launch(rt: &Runtime, id: &str, spec: &Spec, mut opts: LaunchOptions) -> Result<Launched> {
    let c = rt.load(id)?;
    let mut record = c.record()?.clone();
    let cgroup = cgroups::open_path(&record.cgroup_root, record.cgroup_version, &record.cgroup);
    let standby = opts
        .standby
        .take()
        .and_then(|s| s.adopt(spec, &record, opts.preserve_fds));
    let res = (|| {
        if standby.is_none() {
            cgroup.create()?;
        }
        if let Some(res) = effective_resources(spec)? {
            cgroup.apply(&res)?;
        }
        let exec_fifo = opts.exec_fifo.as_ref().map(|f| f.as_raw_fd());
        let state_json = |pid: i32| state_json(id, "creating", pid, &record);
        if let Some(sb) = standby {
            let job = process::StandbyJob {
                stdio: opts.stdio,
                console: opts.console,
                exec_fifo,
                spec,
                state_for_hooks: &state_json,
            };
            return process::spawn_standby(sb, job);
        }
        let init = init_config(
            id,
            spec,
            &record,
            opts.stdio,
            opts.console,
            exec_fifo,
            opts.preserve_fds,
        )?;
        process::spawn(SpawnRequest {
            init,
            cgroup: cgroup.as_ref(),
            state_for_hooks: &state_json,
        })
    })();
    let init = match res {
        Ok(init) => init,
        Err(e) => {
            if let Err(ce) = cgroup.remove() {
                return Err(EngineError::Other(format!("{e} (and cleaning up: {ce})")));
            }
            return Err(e);
        }
    };
    record.pid = init.pid.as_raw();
    record.pid_start_time = super::pid_start_time(record.pid).unwrap_or(0);
    if let Some(m) = opts.monitor_pid {
        record.shim_pid = m;
        record.shim_start_time = super::pid_start_time(m).unwrap_or(0);
    }
    record.log_path = opts.log_path.clone();
    if let Err(e) = super::write_record(&c.dir, &record) {
        // We are the init's parent: nobody else would reap it or remove its cgroup.
        let _ = nix::sys::signal::kill(init.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(init.pid, None);
        return Err(match cgroup.remove() {
            Ok(()) => e,
            Err(ce) => EngineError::Other(format!("{e} (and cleaning up: {ce})")),
        });
    }
    Ok(Launched {
        record,
        cgroup,
        init,
    })
}

/// What the init of container `id` needs, from its spec and record and the descriptors its
/// parent provides (shared by a fresh clone and a standby init, which builds it itself).
pub(super) fn init_config(
    id: &str,
    spec: &Spec,
    record: &Record,
    stdio: Option<[RawFd; 3]>,
    console: Option<RawFd>,
    exec_fifo: Option<RawFd>,
    preserve_fds: i32,
) -> Result<InitConfig> {
    let plan = Plan::from_spec(spec)?;
    let mut joins = Vec::new();
    for (typ, path) in plan.init_joins() {
        joins.push((*typ, namespaces::open_ns(path)?, path.clone()));
    }
    let wait_for_hooks = process::init::waits_for_hooks(spec);
    let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(cfg) => Some(crate::engine::seccomp::compile(cfg)?),
        None => None,
    };
    Ok(InitConfig {
        seccomp,
        rootfs: record.rootfs.clone(),
        plan,
        joins,
        stdio,
        console,
        exec_fifo,
        preserve_fds,
        cgroup_version: record.cgroup_version,
        cgroup_root: record.cgroup_root.clone(),
        cgroup_path: record.cgroup.clone(),
        wait_for_hooks,
        state_json: state_json(id, "creating", 0, record),
        spec: spec.clone(),
    })
}

/// The device rules every runtime adds after the spec's own (runc's `AllowedDevices`, crun
/// likewise): mknod of any node, the default devices, the pty devices, and each node of
/// `linux.devices`. Without them a spec whose list starts with deny-all (`runc spec`'s default)
/// could not even create its own `/dev/null`.
fn effective_resources(spec: &Spec) -> Result<Option<oci_spec::runtime::LinuxResources>> {
    let Some(linux) = spec.linux().as_ref() else {
        return Ok(None);
    };
    let Some(res) = linux.resources().as_ref() else {
        return Ok(None);
    };
    let Some(rules) = res.devices().as_ref().filter(|r| !r.is_empty()) else {
        return Ok(Some(res.clone()));
    };
    let mut all = rules.clone();
    let mut allow = |typ: &str, major: Option<i64>, minor: Option<i64>, access: &str| {
        let v = serde_json::json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access});
        serde_json::from_value(v).map(|r| all.push(r))
    };
    let defaults: [(&str, Option<i64>, Option<i64>, &str); 11] = [
        ("c", None, None, "m"),
        ("b", None, None, "m"),
        ("c", Some(1), Some(3), "rwm"),
        ("c", Some(1), Some(5), "rwm"),
        ("c", Some(1), Some(7), "rwm"),
        ("c", Some(1), Some(8), "rwm"),
        ("c", Some(1), Some(9), "rwm"),
        ("c", Some(5), Some(0), "rwm"),
        ("c", Some(5), Some(1), "rwm"),
        ("c", Some(5), Some(2), "rwm"),
        ("c", Some(136), None, "rwm"),
    ];
    let encode = |e: serde_json::Error| EngineError::Other(format!("device rule: {e}"));
    for (t, ma, mi, a) in defaults {
        allow(t, ma, mi, a).map_err(encode)?;
    }
    for d in linux.devices().as_deref().unwrap_or_default() {
        let typ = match d.typ() {
            oci_spec::runtime::LinuxDeviceType::B => "b",
            oci_spec::runtime::LinuxDeviceType::C | oci_spec::runtime::LinuxDeviceType::U => "c",
            // FIFOs are not device numbers the cgroup controls.
            _ => continue,
        };
        allow(typ, Some(d.major()), Some(d.minor()), "rwm").map_err(encode)?;
    }
    let mut res = res.clone();
    res.set_devices(Some(all));
    Ok(Some(res))
}

/// The OCI state JSON for hooks.
pub fn state_json(id: &str, status: &str, pid: i32, record: &Record) -> Vec<u8> {
    let mut v = serde_json::json!({
        "ociVersion": oci_spec::runtime::VERSION,
        "id": id,
        "status": status,
        "bundle": record.bundle,
        "annotations": record.annotations,
    });
    if pid > 0 {
        v["pid"] = pid.into();
    }
    serde_json::to_vec(&v).unwrap_or_default()
}
