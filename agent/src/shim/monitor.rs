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
    /// Our end of the container's stdin, when it is kept open for input.
    stdin: Option<OwnedFd>,
    /// The container's ends; closed once the init holds its copies.
    child: Vec<OwnedFd>,
}

impl StdioPipes {
    /// The pipes, and the descriptors to hand to the init as its stdin/stdout/stderr. The
    /// init's stdin is `/dev/null`, or with `open_stdin` a pipe whose write end we keep.
    pub fn new(open_stdin: bool) -> Result<(StdioPipes, [RawFd; 3])> {
        use nix::fcntl::OFlag;
        let (out_r, out_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| EngineError::sys("pipe2", e))?;
        let (err_r, err_w) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| EngineError::sys("pipe2", e))?;
        let (stdin_child, stdin_ours): (OwnedFd, Option<OwnedFd>) = if open_stdin {
            let (r, w) =
                nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| EngineError::sys("pipe2", e))?;
            (r, Some(w))
        } else {
            let null: OwnedFd = std::fs::OpenOptions::new()
                .read(true)
                .open("/dev/null")
                .map_err(|e| EngineError::io("open", "/dev/null", e))?
                .into();
            (null, None)
        };
        let fds = [
            stdin_child.as_raw_fd(),
            out_w.as_raw_fd(),
            err_w.as_raw_fd(),
        ];
        Ok((
            StdioPipes {
                stdout: out_r,
                stderr: err_r,
                stdin: stdin_ours,
                child: vec![stdin_child, out_w, err_w],
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
    /// The pty master (input for a terminal goes here too).
    tty: bool,
}

/// Takes ownership of a descriptor handed over across execve by the shim that set up this
/// container (and marks it close-on-exec again).
fn inherited(fd: RawFd) -> OwnedFd {
    // SAFETY: the descriptor was handed to us across execve by the shim that set up this
    // container; nothing else in this image owns it.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    fd
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
    input: Option<Input>,
    /// Our end of the container's stdin pipe, until [`Monitor::open_input`] takes it.
    stdin_pipe: Option<OwnedFd>,
}

/// Input for a container whose stdin is kept open: bytes written to the `stdin` FIFO go to
/// the container (its stdin pipe, or its terminal); `resize ROWS COLS` lines written to the
/// `ctl` FIFO resize its terminal. When the first writer of `stdin` goes away, the container's
/// stdin is closed (a terminal gets ^D), as Docker's stdin-once does for `run -i`.
struct Input {
    fifo: Option<OwnedFd>,
    ctl: OwnedFd,
    /// Where the bytes go: the stdin pipe, or a copy of the pty master.
    sink: Option<OwnedFd>,
    tty: bool,
    /// Bytes read but not yet taken by the container (its pipe was full).
    pending: Vec<u8>,
    ctl_buf: Vec<u8>,
}

impl Input {
    /// Bytes arrived on the FIFO (or its writer left).
    fn on_stdin(&mut self) {
        let Some(f) = &self.fifo else { return };
        let mut buf = [0u8; 32 * 1024];
        match nix::unistd::read(f.as_raw_fd(), &mut buf) {
            Ok(0) => {
                // The first writer is gone: the container's stdin ends (stdin-once).
                self.fifo = None;
                if self.tty {
                    self.pending.push(4);
                    self.flush();
                } else {
                    self.pending.clear();
                    self.sink = None;
                }
            }
            Ok(n) => {
                if self.sink.is_some() {
                    self.pending.extend_from_slice(&buf[..n]);
                    self.flush();
                }
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => {}
            Err(_) => self.fifo = None,
        }
    }

    /// Hands pending bytes to the container, as many as it takes now.
    fn flush(&mut self) {
        let Some(s) = &self.sink else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match nix::unistd::write(s, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    // The container closed its stdin.
                    self.pending.clear();
                    self.sink = None;
                    return;
                }
            }
        }
        if self.fifo.is_none() && !self.tty {
            self.sink = None;
        }
    }

    /// `resize ROWS COLS` lines on the control FIFO.
    fn on_ctl(&mut self) {
        let mut buf = [0u8; 512];
        match nix::unistd::read(self.ctl.as_raw_fd(), &mut buf) {
            Ok(n) if n > 0 => self.ctl_buf.extend_from_slice(&buf[..n]),
            _ => return,
        }
        while let Some(nl) = self.ctl_buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.ctl_buf.drain(..=nl).collect();
            let line = String::from_utf8_lossy(&line);
            let mut w = line.split_whitespace();
            if let (Some("resize"), Some(r), Some(c), Some(s)) =
                (w.next(), w.next(), w.next(), &self.sink)
            {
                if let (Ok(rows), Ok(cols), true) = (r.parse::<u16>(), c.parse::<u16>(), self.tty) {
                    let ws = libc::winsize {
                        ws_row: rows,
                        ws_col: cols,
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    // SAFETY: TIOCSWINSZ reads the winsize we own, on the pty master we hold.
                    unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
            }
        }
        if self.ctl_buf.len() > 4096 {
            self.ctl_buf.clear();
        }
    }
}

/// What one read of a container output gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pumped {
    Data,
    Empty,
    Closed,
}

/// The FIFOs of an open stdin, in the container's state directory.
pub const STDIN_FIFO: &str = "stdin";
pub const CTL_FIFO: &str = "ctl";

impl Monitor {
    pub fn new(pid: i32, signals: Signals, cgroup: Box<dyn Cgroup>) -> Monitor {
        Monitor {
            pid: Pid::from_raw(pid),
            signals,
            oom: OomSource::Cgroup(cgroup),
            log: None,
            outputs: Vec::new(),
            input: None,
            stdin_pipe: None,
        }
    }

    /// Creates the `stdin` and `ctl` FIFOs in `dir` and feeds the container's stdin from them
    /// (after [`Monitor::set_log`], which kept our end of the stdin pipe or the pty master).
    pub fn open_input(&mut self, dir: &Path) -> Result<()> {
        use nix::fcntl::OFlag;
        // stdin: read-only, so the first writer's leaving is seen (end of input). ctl: read-
        // write, so that it never reports a hang-up between writers (fifo(7)).
        let open = |name: &str, mode: OFlag| -> Result<OwnedFd> {
            let p = dir.join(name);
            let _ = std::fs::remove_file(&p);
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| EngineError::sys(format!("mkfifo {}", p.display()), e))?;
            let fd = nix::fcntl::open(
                &p,
                mode | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| EngineError::sys(format!("open {}", p.display()), e))?;
            // SAFETY: open returned a fresh descriptor that we now own.
            Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
        };
        let (sink, tty) = match self.stdin_pipe.take() {
            Some(p) => (p, false),
            None => {
                // A terminal: input goes to the pty master (the last output added).
                let m =
                    self.outputs.iter().find(|o| o.tty).ok_or_else(|| {
                        EngineError::Other("no stdin pipe and no terminal".into())
                    })?;
                let dup =
                    m.fd.try_clone()
                        .map_err(|e| EngineError::io("dup", "the pty master", e))?;
                (dup, true)
            }
        };
        let _ = nix::fcntl::fcntl(
            sink.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
        );
        self.input = Some(Input {
            fifo: Some(open(STDIN_FIFO, OFlag::O_RDONLY)?),
            ctl: open(CTL_FIFO, OFlag::O_RDWR)?,
            sink: Some(sink),
            tty,
            pending: Vec::new(),
            ctl_buf: Vec::new(),
        });
        Ok(())
    }

    /// Whether input for the container waits in our buffer (it cannot be handed over).
    pub fn input_pending(&self) -> bool {
        self.input.as_ref().is_some_and(|i| !i.pending.is_empty())
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
            let flag = if o.tty { "tty" } else { o.stream.as_str() };
            a.push(format!("--{flag}").into());
            a.push(o.fd.as_raw_fd().to_string().into());
        }
        if let Some(i) = &self.input {
            let mut fds = vec![("--ctl-fifo", i.ctl.as_raw_fd())];
            if let Some(f) = &i.fifo {
                fds.push(("--stdin-fifo", f.as_raw_fd()));
            }
            if let Some(f) = &i.sink {
                fds.push((
                    if i.tty { "--stdin-tty" } else { "--stdin-pipe" },
                    f.as_raw_fd(),
                ));
            }
            if !i.pending.is_empty() {
                return Err(EngineError::Other(
                    "stdin bytes pending at hand-over".into(),
                ));
            }
            for (flag, fd) in fds {
                nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                )
                .map_err(|e| EngineError::sys("clear FD_CLOEXEC on a stdin descriptor", e))?;
                a.push(flag.into());
                a.push(fd.to_string().into());
            }
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
        let mut ctl = None;
        let mut fifo = None;
        let mut sink = None;
        let mut sink_tty = false;
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
                "--stdout" | "--stderr" | "--tty" => {
                    let stream = if k == "--stderr" {
                        Stream::Stderr
                    } else {
                        Stream::Stdout
                    };
                    let fd = inherited(v.parse().map_err(|_| bad(v))?);
                    outputs.push(Output {
                        fd,
                        stream,
                        tty: k == "--tty",
                    });
                }
                "--ctl-fifo" => ctl = Some(inherited(v.parse().map_err(|_| bad(v))?)),
                "--stdin-fifo" => fifo = Some(inherited(v.parse().map_err(|_| bad(v))?)),
                "--stdin-pipe" | "--stdin-tty" => {
                    sink = Some(inherited(v.parse().map_err(|_| bad(v))?));
                    sink_tty = k == "--stdin-tty";
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
        let input = ctl.map(|ctl| Input {
            fifo,
            ctl,
            sink,
            tty: sink_tty,
            pending: Vec::new(),
            ctl_buf: Vec::new(),
        });
        Ok((
            dir,
            Monitor {
                pid: Pid::from_raw(pid),
                signals: block_signals(false)?,
                oom: OomSource::File(oom_file),
                log,
                outputs,
                input,
                stdin_pipe: None,
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
            tty: false,
        });
        self.outputs.push(Output {
            fd: pipes.stderr,
            stream: Stream::Stderr,
            tty: false,
        });
        let mut tty = false;
        if let Some(sock) = console {
            // The init sent the master before reporting itself created.
            if let Ok(Some(master)) = recv_fd(&sock) {
                self.outputs.push(Output {
                    fd: master,
                    stream: Stream::Stdout,
                    tty: true,
                });
                tty = true;
            }
        }
        // With a terminal the init's stdin is the pty; the pipe is not used.
        self.stdin_pipe = if tty { None } else { pipes.stdin };
        self.log = Some(log);
    }

    /// Runs until the init exits; returns how it ended.
    pub fn run(&mut self) -> ExitRecord {
        loop {
            if let Some(exit) = self.run_until(None) {
                return exit;
            }
        }
    }

    /// [`Self::run`] until `deadline`: `None` if the container still runs then (nothing is
    /// lost: what it wrote is in the log, its exit is still to be reaped).
    pub fn run_until(&mut self, deadline: Option<std::time::Instant>) -> Option<ExitRecord> {
        let mut status = None;
        let mut buf = vec![0u8; 64 * 1024];
        while status.is_none() {
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    // Rounded up, so that the deadline is not polled for in a busy loop.
                    let ms = u16::try_from(left.as_millis() + 1).unwrap_or(u16::MAX);
                    PollTimeout::from(ms)
                }
            };
            let mut fds: Vec<PollFd> = Vec::with_capacity(4 + self.outputs.len());
            fds.push(PollFd::new(self.signals.fd.as_fd(), PollFlags::POLLIN));
            for o in &self.outputs {
                fds.push(PollFd::new(o.fd.as_fd(), PollFlags::POLLIN));
            }
            let n_out = fds.len();
            // Input: the FIFO while nothing is pending, the sink while something is.
            let mut input_slots = (None, None, None);
            if let Some(i) = &self.input {
                input_slots.2 = Some(fds.len());
                fds.push(PollFd::new(i.ctl.as_fd(), PollFlags::POLLIN));
                match (&i.fifo, &i.sink, i.pending.is_empty()) {
                    (_, Some(s), false) => {
                        input_slots.1 = Some(fds.len());
                        fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
                    }
                    // Read the FIFO also once the container closed its stdin (the bytes are
                    // dropped), so that writers never block on a full FIFO.
                    (Some(f), _, _) => {
                        input_slots.0 = Some(fds.len());
                        fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                    }
                    _ => {}
                }
            }
            match poll(&mut fds, timeout) {
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
            if let Some(inp) = self.input.as_mut() {
                if input_slots.2.is_some_and(|k| ready[k]) {
                    inp.on_ctl();
                }
                if input_slots.0.is_some_and(|k| ready[k]) {
                    inp.on_stdin();
                }
                if input_slots.1.is_some_and(|k| ready[k]) {
                    inp.flush();
                }
            }
            let mut closed = Vec::new();
            for (i, r) in ready[1..n_out].iter().enumerate() {
                if *r && self.pump(i, &mut buf) == Pumped::Closed {
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
            while self.pump(i, &mut buf) == Pumped::Data {}
        }
        let ws = status.unwrap_or(WaitStatus::Exited(self.pid, 255));
        let oom = match &self.oom {
            OomSource::Cgroup(cg) => cg.oom_kill_count().unwrap_or(0) > 0,
            OomSource::File(Some(f)) => {
                crate::engine::cgroups::read_oom_kill_count(f).unwrap_or(0) > 0
            }
            OomSource::File(None) => false,
        };
        Some(ExitRecord::from_wait(ws, oom).unwrap_or(ExitRecord {
            status: 255,
            signal: None,
            oom_killed: oom,
            finished_at: crate::engine::container::now_rfc3339(),
        }))
    }

    /// Reads one chunk from output `i` into the log. (The input's FIFOs are handled by
    /// [`Input`].)
    fn pump(&mut self, i: usize, buf: &mut [u8]) -> Pumped {
        let fd = self.outputs[i].fd.as_raw_fd();
        match nix::unistd::read(fd, buf) {
            Ok(0) => Pumped::Closed,
            Ok(n) => {
                if let Some(log) = &mut self.log {
                    log.write(self.outputs[i].stream, &buf[..n]);
                }
                Pumped::Data
            }
            // Nothing now: the descriptor may be non-blocking (a pty master shares its file
            // description with the input's copy, which is non-blocking).
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => Pumped::Empty,
            // EIO: a pty whose last slave closed.
            Err(_) => Pumped::Closed,
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
