//! The per-container shim: `minid shim`, the parent of a container's init.
//!
//! `create` starts the shim and waits on a pipe. The shim forks once so that its first half
//! exits at once (whoever started it has nothing to reap later), calls `setsid` to leave the
//! caller's session and becomes a child subreaper (prctl(2) `PR_SET_CHILD_SUBREAPER`), so the
//! container's orphans are reaped by it and not by pid 1. It then creates the cgroup and the
//! init ([`crate::engine::container::create::launch`]), reports the pid on the pipe, and runs
//! the [`Monitor`] until the init exits: it holds the stdio pipes or the pty and writes the CRI
//! log, and records the exit status atomically in `exit.json`. Nothing here depends on the
//! process that started it: kill that process with SIGKILL and the container keeps running,
//! logging, and has its exit recorded.
//!
//! The shim is single-threaded and has no async runtime, so `clone3` from it is safe and its
//! memory footprint stays small.

pub mod log;
pub mod monitor;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::engine::container::create::{launch, LaunchOptions, Ready};
use crate::engine::container::standby::{Job, PlacedInit, TAKEN};
use crate::engine::container::{Runtime, FIFO_FILE, SHIM_LOG};
use crate::engine::error::{EngineError, Result};
pub use monitor::Monitor;

/// The shim's command line (set by `create`, not meant for people).
#[derive(Debug, Clone, clap::Args)]
pub struct ShimArgs {
    #[arg(long)]
    pub root: PathBuf,
    #[arg(long)]
    pub id: String,
    /// Descriptor of the pipe on which the outcome of the creation is reported.
    #[arg(long)]
    pub ready_fd: RawFd,
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,
    #[arg(long)]
    pub console_socket: Option<PathBuf>,
    /// Write the container's output to this CRI log instead of passing our stdio through.
    #[arg(long)]
    pub log_path: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    pub log_max_size: u64,
    #[arg(long, default_value_t = 0)]
    pub log_max_files: u32,
    /// Keep the container's stdin open and feed it from the `stdin` FIFO (log mode only).
    #[arg(long)]
    pub open_stdin: bool,
}

/// `minid shim-standby`: a shim started before its container is known. Its job comes on its
/// stdin (EOF without one: exit); it reports the creation on its stdout, as `minid shim` does
/// on its ready pipe (see [`crate::engine::container::standby`]).
#[derive(Debug, Clone, clap::Args)]
pub struct StandbyArgs {
    #[arg(long)]
    pub root: PathBuf,
    #[arg(long)]
    pub cgroup_root: PathBuf,
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// The niceness to run at once given a job (a standby waits at `SCHED_IDLE`).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub nice: i32,
}

/// Runs the shim; returns the process exit code.
pub fn main(args: ShimArgs) -> i32 {
    if let Some(code) = detach(args.ready_fd, &[], args.preserve_fds) {
        return code;
    }
    let rt = Runtime::new(&args.root);
    serve(args, &rt, None)
}

/// Runs a standby shim: detached, with a standby init placed (cgroup v1), it waits for its
/// job and then runs as [`main`] would have for it.
pub fn standby_main(a: StandbyArgs) -> i32 {
    // The pipes move off stdin and stdout, which become /dev/null like the rest of our stdio.
    let moved = |fd: RawFd| nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3));
    let (Ok(job_fd), Ok(ready_fd)) = (moved(0), moved(1)) else {
        return 1;
    };
    null_stdio();
    if let Some(code) = detach(ready_fd, &[job_fd], 0) {
        return code;
    }
    let _ = nix::unistd::chdir("/");
    let rt = Runtime {
        root: a.root.clone(),
        cgroup_root: a.cgroup_root.clone(),
        cgroup_parent: a.cgroup_parent.clone(),
    };
    let name = crate::engine::container::standby::cgroup_name(std::process::id());
    // Without one (cgroup v2, or it failed) the job clones a fresh init as any shim does.
    let placed = PlacedInit::prepare(&rt, &name, a.nice).ok().flatten();
    // The init moves into its cgroup now, long before a create needs it (the move holds the
    // kernel's cgroup mutex: it runs at normal priority, and only it does).
    if let Some(p) = &placed {
        p.place();
    }
    // SAFETY: the job fd is ours (moved off stdin above) and used only here.
    let mut f = unsafe { std::fs::File::from_raw_fd(job_fd) };
    // First the word that a create has begun (we leave idle priority meanwhile), then the job.
    let mut first = [0u8; 1];
    if !matches!(f.read(&mut first), Ok(1)) || first[..] != *TAKEN {
        // minid let us go (or went away): the standby init and its cgroup go with us.
        return 0;
    }
    if !crate::engine::process::priority::normal(a.nice) {
        report(
            ready_fd,
            &Ready::Failed {
                message: "the standby shim cannot leave its idle scheduling priority".into(),
                exec_code: None,
            },
        );
        return 1;
    }
    let mut buf = Vec::new();
    let job: Job = match f
        .read_to_end(&mut buf)
        .ok()
        .and_then(|_| serde_json::from_slice(&buf).ok())
    {
        Some(j) => j,
        // minid let us go (or went away): the standby init and its cgroup go with us.
        None => return 0,
    };
    drop(f);
    if let Some(p) = &placed {
        p.announce(&job.id);
    }
    let args = ShimArgs {
        root: a.root,
        id: job.id,
        ready_fd,
        preserve_fds: 0,
        console_socket: None,
        log_path: job.log_path,
        log_max_size: job.log_max_size,
        log_max_files: job.log_max_files,
        open_stdin: job.open_stdin,
    };
    serve(args, &rt, placed)
}

/// Forks so that the process our caller started exits at once (it has nothing to reap later)
/// and we continue in a new session as a child subreaper (prctl(2)
/// `PR_SET_CHILD_SUBREAPER`), so the container's orphans are reaped by us and not by pid 1.
/// Returns the exit code for the caller's process, `None` in the one that goes on.
fn detach(ready_fd: RawFd, keep: &[RawFd], preserve_fds: i32) -> Option<i32> {
    // SAFETY: the shim is single-threaded here (main has spawned nothing), so fork is safe.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => return Some(0),
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            report(
                ready_fd,
                &Ready::Failed {
                    message: format!("shim fork: {e}"),
                    exec_code: None,
                },
            );
            return Some(1);
        }
    }
    let _ = nix::unistd::setsid();
    let _ = nix::sys::prctl::set_child_subreaper(true);
    // Nothing of the caller's but stdio, our pipes and the descriptors passed on to the
    // container may stay open here: hooks we run and the monitor we become would otherwise
    // hold them (and a caller waiting for EOF would wait for the container's lifetime).
    for fd in std::iter::once(ready_fd).chain(keep.iter().copied()) {
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    let preserved = 3..3 + preserve_fds.max(0);
    close_fds_except(|fd| {
        fd <= 2 || fd == ready_fd || keep.contains(&fd) || preserved.contains(&fd)
    });
    None
}

/// How long a shim monitors its container in the image that created it before it continues
/// in a lean one (see [`serve`]).
const LEAN_AFTER: std::time::Duration = std::time::Duration::from_millis(250);

/// The shim proper, once detached: creates the container, reports, monitors it.
fn serve(args: ShimArgs, rt: &Runtime, standby: Option<PlacedInit>) -> i32 {
    // The cgroup root and parent were resolved by `create` and are in the record.
    let dir = rt.dir(&args.id);
    let mut monitor = match setup(rt, &args, standby) {
        Ok(m) => m,
        Err(e) => {
            let exec_code = match &e {
                EngineError::Exec { code, .. } => Some(*code),
                _ => None,
            };
            report(
                args.ready_fd,
                &Ready::Failed {
                    message: e.to_string(),
                    exec_code,
                },
            );
            return 1;
        }
    };
    report(args.ready_fd, &Ready::Created { pid: monitor.pid() });
    // Our stdio was the caller's: the container has inherited it (or has its own pipes), and
    // holding it would keep the caller's pipes open after the container is gone.
    null_stdio();
    redirect_stderr(&dir.join(SHIM_LOG));
    // Do not pin the caller's working directory (and its mount) for the container's life.
    let _ = nix::unistd::chdir("/");
    // Setup touched much of the binary (argument parsing, JSON, the spec, cgroups); a
    // container may run for months, so the monitor continues in a fresh image of ourselves
    // that touches only the monitor loop: its resident memory is what the loop needs. Not at
    // once: that exec would compete for the CPU with the container's start, and a container
    // that ends within moments (`run --rm ... true`) never needs it.
    // (Input still to be passed to the container is not handed over: wait for it to drain.)
    loop {
        if let Some(exit) = monitor.run_until(Some(std::time::Instant::now() + LEAN_AFTER)) {
            return finish(&dir, &args.id, exit);
        }
        if !monitor.input_pending() {
            break;
        }
    }
    match monitor.lean_args(&dir) {
        Ok(argv) => {
            let err = exec_self(&argv);
            eprintln!("minid shim: re-exec as a lean monitor failed ({err}); monitoring in place");
        }
        Err(e) => {
            eprintln!("minid shim: cannot hand over to a lean monitor ({e}); monitoring in place")
        }
    }
    finish(&dir, &args.id, monitor.run())
}

/// The lean monitor image (`minid shim-monitor ...`, exec'd by the shim itself).
pub fn lean_main(args: &[String]) -> i32 {
    let (dir, mut monitor) = match Monitor::from_lean_args(args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("minid shim: {e}");
            return 1;
        }
    };
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    finish(&dir, &id, monitor.run())
}

fn finish(dir: &std::path::Path, id: &str, exit: crate::engine::container::ExitRecord) -> i32 {
    if let Err(e) = crate::engine::container::write_exit(dir, &exit) {
        eprintln!("minid shim: recording the exit of {id}: {e}");
        return 1;
    }
    0
}

/// execve(2) of the lean monitor: `minid-monitor` beside our binary, or our own binary with
/// the hidden verb when it is not installed. Unlike `Command::exec`, this keeps the signal
/// mask, so a SIGCHLD that arrives in between stays pending for the new image.
fn exec_self(args: &[std::ffi::OsString]) -> nix::Error {
    use std::os::unix::ffi::OsStrExt;
    let own = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    let lean = own.with_file_name(monitor::LEAN_BINARY);
    let (path, mut argv) = if lean.is_file() {
        (lean, vec![c"minid-monitor".to_owned()])
    } else {
        (
            std::path::PathBuf::from("/proc/self/exe"),
            vec![c"minid".to_owned(), c"shim-monitor".to_owned()],
        )
    };
    for a in args {
        match std::ffi::CString::new(a.as_bytes()) {
            Ok(c) => argv.push(c),
            Err(_) => return nix::Error::EINVAL,
        }
    }
    let Ok(path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return nix::Error::EINVAL;
    };
    match nix::unistd::execv(&path, &argv) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn setup(rt: &Runtime, args: &ShimArgs, standby: Option<PlacedInit>) -> Result<Monitor> {
    let dir = rt.dir(&args.id);
    let fifo = dir.join(FIFO_FILE);
    let exec_fifo = nix::fcntl::open(&fifo, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| EngineError::sys(format!("open {}", fifo.display()), e))?;
    // SAFETY: open returned a fresh descriptor that we now own.
    let exec_fifo = unsafe { OwnedFd::from_raw_fd(exec_fifo) };
    let console = crate::engine::process::connect_console(args.console_socket.as_deref())?;
    let mut pipes = None;
    let mut stdio = None;
    let mut console_pair = None;
    if args.log_path.is_some() {
        let (p, fds) = monitor::StdioPipes::new(args.open_stdin)?;
        stdio = Some(fds);
        pipes = Some(p);
        if console.is_none() {
            // A terminal in log mode: the pty master comes to us over a socketpair.
            console_pair = Some(monitor::console_pair()?);
        }
    }
    // Opened before the init exists, so a log that cannot be written fails create cleanly.
    let log = match &args.log_path {
        Some(path) => Some(
            log::CriLog::open(path, args.log_max_size, args.log_max_files)
                .map_err(|e| EngineError::io("open log", path, e))?,
        ),
        None => None,
    };
    let monitor_guard = monitor::block_signals(false)?;
    let console_fd = console
        .as_ref()
        .map(|c| c.as_raw_fd())
        .or(console_pair.as_ref().map(|(_, child)| child.as_raw_fd()));
    let bundle = rt.load(&args.id)?.record()?.bundle.clone();
    let spec = crate::engine::spec::load(&bundle)?;
    let launched = launch(
        rt,
        &args.id,
        &spec,
        LaunchOptions {
            stdio,
            console: console_fd,
            exec_fifo: Some(exec_fifo),
            preserve_fds: args.preserve_fds,
            monitor_pid: Some(std::process::id() as i32),
            log_path: args.log_path.clone(),
            standby,
        },
    )?;
    let (record, cgroup) = (launched.record, launched.cgroup);
    drop(console);
    // The init has its copies of the preserved descriptors.
    for fd in 3..3 + args.preserve_fds.max(0) {
        let _ = nix::unistd::close(fd);
    }
    let mut m = Monitor::new(record.pid, monitor_guard, cgroup);
    if let (Some(p), Some(log)) = (pipes, log) {
        m.set_log(log, p, console_pair.map(|(ours, _)| ours));
        if args.open_stdin {
            m.open_input(&dir)?;
        }
    }
    Ok(m)
}

fn report(fd: RawFd, r: &Ready) {
    // SAFETY: the ready fd was handed to us on the command line and is used only here.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let _ = f.write_all(&serde_json::to_vec(r).unwrap_or_default());
}

/// Closes every open descriptor for which `keep` is false (listed from /proc/self/fd, so it
/// works whatever the kernel's close_range support).
fn close_fds_except(keep: impl Fn(RawFd) -> bool) {
    for fd in crate::engine::process::open_fds() {
        if !keep(fd) {
            // The listing's own descriptor is among them and already closed: EBADF is fine.
            let _ = nix::unistd::close(fd);
        }
    }
}

/// The shim's own messages go to `shim.log` in the container's directory.
fn redirect_stderr(path: &std::path::Path) {
    if let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let fd = f.into_raw_fd();
        let _ = nix::unistd::dup2(fd, 2);
        let _ = nix::unistd::close(fd);
    }
}

fn null_stdio() {
    if let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let fd = f.into_raw_fd();
        let _ = nix::unistd::dup2(fd, 0);
        let _ = nix::unistd::dup2(fd, 1);
        let _ = nix::unistd::close(fd);
    }
}
