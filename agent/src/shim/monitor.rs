//! Watching a container's init until it exits: signals, output, exit status.
//!
//! One `poll` loop over a signalfd and the output descriptors. SIGCHLD is blocked *before* the
//! init is cloned, so an init that exits at once is still seen: its SIGCHLD waits in the
//! signalfd. Every child is reaped (we are a subreaper, orphans come to us); the init's status
//! becomes the [`ExitRecord`]. After it exits, output still buffered in the pipes is drained
//! without blocking (an orphan outside a pid namespace could hold a pipe open forever).
//!
//! In the foreground (`minid runtime run`) the usual termination signals are forwarded to the
//! init, like `docker run`'s signal proxy.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::log::{CriLog, Stream};
use crate::engine::cgroups::Cgroup;
use crate::engine::container::ExitRecord;
use crate::engine::error::{EngineError, Result};

/// The hidden verb under which the shim re-executes itself as a lean monitor when the
/// `minid-monitor` binary is not installed beside it.
pub const LEAN_VERB: &str = "shim-monitor";

/// The small binary that carries a monitor after setup (src/bin/minid-monitor.rs).
pub const LEAN_BINARY: &str = "minid-monitor";

/// Signals forwarded to the init by a foreground monitor.
const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Blocked signals and the signalfd that receives them.
pub struct Signals {
    fd: SignalFd,
    forward: bool,
}

/// Blocks SIGCHLD (and with `forward` the termination signals) and opens a signalfd for them.
/// Must be called before the init is cloned.
pub fn block_signals(forward: bool) -> Result<Signals> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    if forward {
        for s in FORWARDED {
            set.add(s);
        }
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| EngineError::sys("sigprocmask", e))?;
    let fd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| EngineError::sys("signalfd", e))?;
    Ok(Signals { fd, forward })
}

/// Pipes for a container's stdio when the shim logs its output.
pub struct StdioPipes {
    stdout: OwnedFd,
    stderr: OwnedFd,
    /// The container's ends; closed once the init holds its copies.
    child: Vec<OwnedFd>,
}

impl StdioPipes {
    /// The pipes, and the descriptors to hand to the init as its stdin/stdout/stderr.
    pub fn new() -> Result<(StdioPipes, [RawFd; 3])> {
        use nix::fcntl::OFlag;
        let (out_r, out_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| EngineError::sys("pipe2", e))?;
        let (err_r, err_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| EngineError::sys("pipe2", e))?;
        let null: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .open("/dev/null")
            .map_err(|e| EngineError::io("open", "/dev/null", e))?
            .into();
        let fds = [null.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
        Ok((
            StdioPipes {
                stdout: out_r,
                stderr: err_r,
                child: vec![null, out_w, err_w],
            },
            fds,
        ))
    }
}

/// A socketpair over which the init sends the pty master: (our end, the init's end).
pub fn console_pair() -> Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| EngineError::sys("socketpair for the console", e))
}

/// Receives one descriptor sent with SCM_RIGHTS.
pub fn recv_fd(sock: &OwnedFd) -> Result<Option<OwnedFd>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(|e| EngineError::sys("receive the pty master", e))?;
    for c in msg
        .cmsgs()
        .map_err(|e| EngineError::sys("receive the pty master", e))?
    {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us.
                return Ok(Some(unsafe { std::os::fd::FromRawFd::from_raw_fd(*fd) }));
            }
        }
    }
    Ok(None)
}

struct Output {
    fd: OwnedFd,
    stream: Stream,
}

/// Where the OOM-kill count comes from when the init has exited.
enum OomSource {
    Cgroup(Box<dyn Cgroup>),
    /// The cgroup's counter file, read directly (the lean monitor carries no cgroup manager).
    File(Option<PathBuf>),
}

pub struct Monitor {
    pid: Pid,
    signals: Signals,
    oom: OomSource,
    log: Option<CriLog>,
    outputs: Vec<Output>,
}

impl Monitor {
    pub fn new(pid: i32, signals: Signals, cgroup: Box<dyn Cgroup>) -> Monitor {
        Monitor {
            pid: Pid::from_raw(pid),
            signals,
            oom: OomSource::Cgroup(cgroup),
            log: None,
            outputs: Vec::new(),
        }
    }

    /// The command line of [`Monitor::from_lean_args`] that carries this monitor across an
    /// `execve` of our own binary, and marks the descriptors it names inheritable.
    pub fn lean_args(&self, dir: &Path) -> Result<Vec<OsString>> {
        let mut a: Vec<OsString> = vec![
            "--dir".into(),
            dir.into(),
            "--pid".into(),
            self.pid.as_raw().to_string().into(),
        ];
        let oom = match &self.oom {
            OomSource::Cgroup(cg) => cg.oom_counter_file(),
            OomSource::File(f) => f.clone(),
        };
        if let Some(f) = oom {
            a.push("--oom-file".into());
            a.push(f.into());
        }
        for o in &self.outputs {
            nix::fcntl::fcntl(
                o.fd.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
            )
            .map_err(|e| EngineError::sys("clear FD_CLOEXEC on a container output", e))?;
            a.push(format!("--{}", o.stream.as_str()).into());
            a.push(o.fd.as_raw_fd().to_string().into());
        }
        if let Some(log) = &self.log {
            let (path, max_size, max_files) = log.config();
            a.extend([
                "--log".into(),
                path.into(),
                "--log-max-size".into(),
                max_size.to_string().into(),
                "--log-max-files".into(),
                max_files.to_string().into(),
            ]);
        }
        Ok(a)
    }

    /// Rebuilds a monitor in a fresh image from [`Monitor::lean_args`] (without the verb).
    /// Signals stay blocked and pending across execve (signal(7)), children stay ours, so
    /// nothing is lost in between; the signalfd itself is made anew.
    /// Returns the container's state directory and the monitor.
    pub fn from_lean_args(args: &[String]) -> Result<(PathBuf, Monitor)> {
        let mut dir = None;
        let mut oom_file = None;
        let mut pid = None;
        let mut outputs = Vec::new();
        let mut log = None;
        let mut max_size = 0;
        let mut max_files = 0;
        let bad = |what: &str| EngineError::Other(format!("shim monitor: bad argument {what}"));
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let v = it.next().ok_or_else(|| bad(k))?;
            match k.as_str() {
                "--dir" => dir = Some(PathBuf::from(v)),
                "--oom-file" => oom_file = Some(PathBuf::from(v)),
                "--pid" => pid = Some(v.parse::<i32>().map_err(|_| bad(v))?),
                "--stdout" | "--stderr" => {
                    let fd: RawFd = v.parse().map_err(|_| bad(v))?;
                    let stream = if k == "--stdout" {
                        Stream::Stdout
                    } else {
                        Stream::Stderr
                    };
                    // SAFETY: the descriptor was handed to us across execve by the shim that
                    // set up this container; nothing else in this image owns it.
                    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
                    let _ = nix::fcntl::fcntl(
                        fd.as_raw_fd(),
                        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                    );
                    outputs.push(Output { fd, stream });
                }
                "--log" => log = Some(PathBuf::from(v)),
                "--log-max-size" => max_size = v.parse().map_err(|_| bad(v))?,
                "--log-max-files" => max_files = v.parse().map_err(|_| bad(v))?,
                other => return Err(bad(other)),
            }
        }
        let (Some(dir), Some(pid)) = (dir, pid) else {
            return Err(bad("(missing --dir or --pid)"));
        };
        let log = match log {
            Some(p) => Some(
                CriLog::open(&p, max_size, max_files)
                    .map_err(|e| EngineError::io("open log", &p, e))?,
            ),
            None => None,
        };
        Ok((
            dir,
            Monitor {
                pid: Pid::from_raw(pid),
                signals: block_signals(false)?,
                oom: OomSource::File(oom_file),
                log,
                outputs,
            },
        ))
    }

    pub fn pid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// Logs the container's output: its pipes, or the pty master arriving on `console`.
    pub fn set_log(&mut self, log: CriLog, pipes: StdioPipes, console: Option<OwnedFd>) {
        // The init has its copies; ours must close so EOF arrives when the container's close.
        drop(pipes.child);
        self.outputs.push(Output {
            fd: pipes.stdout,
            stream: Stream::Stdout,
        });
        self.outputs.push(Output {
            fd: pipes.stderr,
            stream: Stream::Stderr,
        });
        if let Some(sock) = console {
            // The init sent the master before reporting itself created.
            if let Ok(Some(master)) = recv_fd(&sock) {
                self.outputs.push(Output {
                    fd: master,
                    stream: Stream::Stdout,
                });
            }
        }
        self.log = Some(log);
    }

    /// Runs until the init exits; returns how it ended.
    pub fn run(&mut self) -> ExitRecord {
        let mut status = None;
        let mut buf = vec![0u8; 64 * 1024];
        while status.is_none() {
            let mut fds: Vec<PollFd> = Vec::with_capacity(1 + self.outputs.len());
            fds.push(PollFd::new(self.signals.fd.as_fd(), PollFlags::POLLIN));
            for o in &self.outputs {
                fds.push(PollFd::new(o.fd.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    eprintln!("minid shim: poll: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            if ready[0] {
                status = self.on_signals();
            }
            let mut closed = Vec::new();
            for (i, r) in ready[1..].iter().enumerate() {
                if *r && !self.pump(i, &mut buf) {
                    closed.push(i);
                }
            }
            for i in closed.into_iter().rev() {
                self.outputs.remove(i);
            }
        }
        // Drain what the container wrote before it exited, without waiting for writers that
        // may outlive it.
        for i in 0..self.outputs.len() {
            let _ = nix::fcntl::fcntl(
                self.outputs[i].fd.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            );
            while self.pump(i, &mut buf) {}
        }
        let ws = status.unwrap_or(WaitStatus::Exited(self.pid, 255));
        let oom = match &self.oom {
            OomSource::Cgroup(cg) => cg.oom_kill_count().unwrap_or(0) > 0,
            OomSource::File(Some(f)) => {
                crate::engine::cgroups::read_oom_kill_count(f).unwrap_or(0) > 0
            }
            OomSource::File(None) => false,
        };
        ExitRecord::from_wait(ws, oom).unwrap_or(ExitRecord {
            status: 255,
            signal: None,
            oom_killed: oom,
            finished_at: crate::engine::container::now_rfc3339(),
        })
    }

    /// Reads one chunk from output `i` into the log; false at EOF or error (or nothing left).
    fn pump(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let fd = self.outputs[i].fd.as_raw_fd();
        match nix::unistd::read(fd, buf) {
            Ok(0) => false,
            Ok(n) => {
                if let Some(log) = &mut self.log {
                    log.write(self.outputs[i].stream, &buf[..n]);
                }
                true
            }
            Err(Errno::EINTR) => true,
            // EIO: a pty whose last slave closed.
            Err(_) => false,
        }
    }

    /// Handles pending signals; returns the init's status once it has exited.
    fn on_signals(&mut self) -> Option<WaitStatus> {
        let mut init_status = None;
        loop {
            match self.signals.fd.read_signal() {
                Ok(Some(info)) => {
                    let sig = info.ssi_signo as i32;
                    if sig != Signal::SIGCHLD as i32 && self.signals.forward {
                        // SAFETY: plain kill(2) to our own child.
                        unsafe { libc::kill(self.pid.as_raw(), sig) };
                    }
                }
                Ok(None) => break,
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        // Reap everything that has exited: the init, and orphans that came to us.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => break,
                Ok(ws) => {
                    if ws.pid() == Some(self.pid)
                        && matches!(ws, WaitStatus::Exited(..) | WaitStatus::Signaled(..))
                    {
                        init_status = Some(ws);
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break, // ECHILD: nobody left
            }
        }
        init_status
    }
}
