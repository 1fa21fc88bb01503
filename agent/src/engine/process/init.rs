//! The container's init: what the cloned child does between `clone3` and `execve`.
//!
//! This code runs in a copy of a *single-threaded* parent (the shim or `minid runtime run`),
//! so it may allocate and use ordinary Rust: no other thread can hold a lock in the copy.
//! Every failure before [`Message::Created`] is reported to the parent over the channel, which
//! turns it into the error `create` returns; after that point (the parent has gone on to
//! monitor) a failure is written to the container's stderr, where the user's log shows it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::SigSet;
use oci_spec::runtime::{LinuxCapabilities, LinuxNamespaceType, Spec};

use super::channel::{Channel, Message};
use super::identity;
use crate::engine::cgroups::CgroupVersion;
use crate::engine::error::{EngineError, Result};
use crate::engine::hooks::{self, Stage};
use crate::engine::namespaces::{self, Plan};
use crate::engine::rootfs;
use crate::engine::seccomp;

/// Everything the init needs, prepared by the parent before `clone3`.
#[derive(Debug)]
pub struct InitConfig {
    pub spec: Spec,
    pub rootfs: PathBuf,
    pub plan: Plan,
    /// Namespaces to join, opened by the parent: (type, fd, path for messages).
    pub joins: Vec<(LinuxNamespaceType, OwnedFd, PathBuf)>,
    /// Descriptors to become the container's stdin, stdout and stderr (None: inherit ours).
    pub stdio: Option<[RawFd; 3]>,
    /// A connected unix socket over which the pty master is sent (`process.terminal`).
    pub console: Option<RawFd>,
    /// `O_PATH` descriptor of the exec fifo; `None` runs the process at once (`run`).
    pub exec_fifo: Option<RawFd>,
    /// Descriptors 3..3+N are passed to the process (`--preserve-fds`).
    pub preserve_fds: i32,
    pub cgroup_version: CgroupVersion,
    pub cgroup_root: PathBuf,
    pub cgroup_path: crate::engine::cgroups::CgroupPath,
    /// Pause after the namespaces exist so the parent can run prestart/createRuntime hooks.
    pub wait_for_hooks: bool,
    /// The OCI state JSON given to createContainer and startContainer hooks.
    pub state_json: Vec<u8>,
    /// The compiled `linux.seccomp` filter, loaded by the init.
    pub seccomp: Option<libseccomp::ScmpFilterContext>,
}

/// Entry point of the cloned child; never returns.
pub fn child_main(cfg: &InitConfig, ch: &Channel) -> ! {
    let code = match setup(cfg, ch) {
        Ok(never) => match never {},
        Err(Failure::BeforeCreated(e)) => {
            let msg = match e {
                EngineError::Exec { code, msg } => Message::ExecFailed { code, msg },
                EngineError::Init(m) => Message::Error(m),
                other => Message::Error(other.to_string()),
            };
            let _ = ch.send(&msg);
            1
        }
        Err(Failure::AfterCreated(code, e)) => {
            eprintln!("minid: {e}");
            code
        }
    };
    // SAFETY: _exit skips atexit handlers and stdio flushing of the parent's copied state,
    // which is what a forked child must do.
    unsafe { libc::_exit(code) }
}

enum Never {}

enum Failure {
    BeforeCreated(EngineError),
    AfterCreated(i32, EngineError),
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::BeforeCreated(e)
    }
}

/// Whether the init stops after making its namespaces for its parent to run the prestart and
/// createRuntime hooks.
pub fn waits_for_hooks(spec: &oci_spec::runtime::Spec) -> bool {
    use crate::engine::hooks::{self, Stage};
    !hooks::of(spec, Stage::Prestart).is_empty()
        || !hooks::of(spec, Stage::CreateRuntime).is_empty()
}

fn setup(cfg: &InitConfig, ch: &Channel) -> std::result::Result<Never, Failure> {
    reset_signals()?;
    close_inherited(cfg, ch);
    if let Some(fds) = cfg.stdio {
        for (i, fd) in fds.iter().enumerate() {
            if *fd != i as RawFd {
                nix::unistd::dup2(*fd, i as RawFd)
                    .map_err(|e| EngineError::sys(format!("dup2 stdio {i}"), e))?;
            }
        }
    }
    let pid = match ch.recv()? {
        Some(Message::Go { pid }) => pid,
        Some(Message::Error(e)) => return Err(EngineError::Init(e).into()),
        other => {
            return Err(
                EngineError::Init(format!("protocol error: expected Go, got {other:?}")).into(),
            )
        }
    };
    let state_json = hook_state(&cfg.state_json, pid, "creating");
    let userns = cfg.plan.creates(LinuxNamespaceType::User);
    if userns {
        become_root()?;
    }
    for (typ, fd, path) in &cfg.joins {
        namespaces::join(fd, *typ, path)?;
        if *typ == LinuxNamespaceType::User {
            become_root()?;
        }
    }
    let flags = cfg.plan.unshare_flags();
    if !flags.is_empty() {
        nix::sched::unshare(flags)
            .map_err(|e| EngineError::sys(format!("unshare {flags:?}"), e))?;
    }
    let netns = cfg.plan.creates(LinuxNamespaceType::Network);
    if netns {
        namespaces::loopback_up()?;
    }
    if cfg.wait_for_hooks {
        ch.send(&Message::NamespacesReady)?;
        ch.expect(Message::HooksDone)?;
    }
    let spec = &cfg.spec;
    // A joined uts namespace gets the names too: the spec asks for them (validate refused
    // them without any uts namespace, where they would rename the host).
    if cfg.plan.creates(LinuxNamespaceType::Uts)
        || cfg
            .joins
            .iter()
            .any(|(t, _, _)| *t == LinuxNamespaceType::Uts)
    {
        if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(h)
                .map_err(|e| EngineError::sys(format!("sethostname {h:?}"), e))?;
        }
        if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            let c = CString::new(d)
                .map_err(|_| EngineError::InvalidSpec("domainname has NUL".into()))?;
            // SAFETY: setdomainname with a valid buffer and its length.
            if unsafe { libc::setdomainname(c.as_ptr(), d.len()) } < 0 {
                return Err(
                    EngineError::sys(format!("setdomainname {d:?}"), nix::Error::last()).into(),
                );
            }
        }
    }
    let ctx = rootfs::Context {
        spec,
        rootfs: &cfg.rootfs,
        userns,
        netns,
        cgroup_version: cfg.cgroup_version,
        cgroup_root: &cfg.cgroup_root,
        cgroup_path: &cfg.cgroup_path,
        cgroupns: cfg.plan.creates(LinuxNamespaceType::Cgroup)
            || cfg
                .joins
                .iter()
                .any(|(t, _, _)| *t == LinuxNamespaceType::Cgroup),
    };
    rootfs::prepare(&ctx)?;
    hooks::run(spec, Stage::CreateContainer, &state_json)?;
    rootfs::pivot(&cfg.rootfs)?;
    // Sysctls before the read-only and masked paths: /proc/sys is usually one of them.
    rootfs::apply_sysctls(spec)?;
    rootfs::finalize(spec)?;

    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| EngineError::InvalidSpec("process is missing".into()))?;
    nix::unistd::setsid().map_err(|e| EngineError::sys("setsid", e))?;
    if process.terminal().unwrap_or(false) {
        let console = cfg.console.ok_or_else(|| {
            EngineError::InvalidSpec(
                "process.terminal is true but no console socket was given".into(),
            )
        })?;
        setup_terminal(console, process.console_size().as_ref())?;
    }
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| EngineError::io("write", "/proc/self/oom_score_adj", e))?;
    }
    identity::set_rlimits(process)?;
    identity::set_io_priority(process)?;
    let nnp = process.no_new_privileges().unwrap_or(false);
    if let (Some(filter), false) = (&cfg.seccomp, nnp) {
        // Without no_new_privs, seccomp(2) needs CAP_SYS_ADMIN: load while we still have it.
        seccomp::load(filter)?;
    }
    if nnp {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| EngineError::sys("PR_SET_NO_NEW_PRIVS", e))?;
    }
    let caps = process.capabilities().clone().unwrap_or_else(empty_caps);
    identity::drop_bounding(&caps)?;
    identity::switch_user(process, userns)?;
    identity::set_caps(&caps)?;
    let mask = process.user().umask().unwrap_or(0o022);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    nix::unistd::chdir(process.cwd())
        .map_err(|e| EngineError::sys(format!("chdir to cwd {}", process.cwd().display()), e))?;

    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    let exe = find_executable(&args, &env)?;
    let argv = cstrings(&args)?;
    let envp = cstrings(&env)?;

    ch.send(&Message::Created)?;

    // Started: by `start` opening the exec fifo, or by the parent's Start message.
    let fifo = match cfg.exec_fifo {
        Some(fifo) => Some(open_exec_fifo(fifo).map_err(|e| Failure::AfterCreated(1, e))?),
        None => {
            ch.expect(Message::Start)
                .map_err(|e| Failure::AfterCreated(1, e))?;
            None
        }
    };
    hooks::run(
        spec,
        Stage::StartContainer,
        &hook_state(&state_json, pid, "created"),
    )
    .map_err(|e| Failure::AfterCreated(1, e))?;
    if let Some(f) = fifo {
        // The byte tells `start` the startContainer hooks ran and execve comes next, so its
        // poststart hooks follow them (runtime-spec order).
        use std::io::Write;
        (&f).write_all(b"0")
            .map_err(|e| Failure::AfterCreated(1, EngineError::io("write", "exec fifo", e)))?;
    }
    // Before the filter, which may not allow close_range.
    close_fds_on_exec(cfg.preserve_fds);
    if let (Some(filter), true) = (&cfg.seccomp, nnp) {
        // As late as possible, so none of our own setup is filtered (runc's order).
        seccomp::load(filter).map_err(|e| Failure::AfterCreated(1, e))?;
    }
    let err = match nix::unistd::execve(&exe, &argv, &envp) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let code = if err == nix::Error::ENOENT { 127 } else { 126 };
    Err(Failure::AfterCreated(
        code,
        EngineError::Exec {
            code,
            msg: format!("exec {}: {err}", exe.to_string_lossy()),
        },
    ))
}

/// The hook state with the init's pid and the container's status filled in.
fn hook_state(state: &[u8], pid: i32, status: &str) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(state) {
        Ok(mut v) => {
            v["pid"] = pid.into();
            v["status"] = status.into();
            serde_json::to_vec(&v).unwrap_or_else(|_| state.to_vec())
        }
        Err(_) => state.to_vec(),
    }
}

fn empty_caps() -> LinuxCapabilities {
    let mut c = LinuxCapabilities::default();
    c.set_bounding(None)
        .set_effective(None)
        .set_permitted(None)
        .set_inheritable(None)
        .set_ambient(None);
    c
}

/// The parent may have blocked signals (for its signalfd) and Rust ignores SIGPIPE; neither
/// may leak into the container (signal(7): the mask and ignored dispositions survive execve).
fn reset_signals() -> Result<()> {
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&SigSet::empty()),
        None,
    )
    .map_err(|e| EngineError::sys("sigprocmask", e))?;
    // Every signal number, the real-time ones included (nix's Signal does not list those).
    // SAFETY: sigaction with SIG_DFL and an empty mask for each valid signal number; SIGKILL
    // and SIGSTOP cannot be changed and are skipped.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut dfl.sa_mask);
        for sig in 1..=libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
    }
    Ok(())
}

/// In a new user namespace, become its root so the following steps have its capabilities.
fn become_root() -> Result<()> {
    nix::unistd::setresgid(0.into(), 0.into(), 0.into())
        .map_err(|e| EngineError::sys("setresgid 0 in the user namespace", e))?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into())
        .map_err(|e| EngineError::sys("setresuid 0 in the user namespace", e))
}

/// Creates the pty inside the container's devpts, hands the master to the console socket, and
/// makes the slave our controlling terminal and stdio (runtime-spec runtime.md "Console").
fn setup_terminal(console: RawFd, size: Option<&oci_spec::runtime::Box>) -> Result<()> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| EngineError::sys("open /dev/ptmx", e))?;
    nix::pty::grantpt(&master).map_err(|e| EngineError::sys("grantpt", e))?;
    nix::pty::unlockpt(&master).map_err(|e| EngineError::sys("unlockpt", e))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| EngineError::sys("ptsname", e))?;
    if let Some(b) = size {
        let ws = libc::winsize {
            ws_row: b.height() as u16,
            ws_col: b.width() as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads the winsize we own.
        unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    let slave = nix::fcntl::open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| EngineError::sys(format!("open {name}"), e))?;
    if Path::new("/dev/console").exists() || std::fs::File::create("/dev/console").is_ok() {
        nix::mount::mount(
            Some(Path::new(&name)),
            "/dev/console",
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| EngineError::sys(format!("bind {name} to /dev/console"), e))?;
    }
    send_fd(console, master.as_raw_fd(), name.as_bytes())?;
    drop(master);
    // SAFETY: TIOCSCTTY on the slave we just opened; we are a session leader.
    if unsafe { libc::ioctl(slave, libc::TIOCSCTTY, 0) } < 0 {
        return Err(EngineError::sys("TIOCSCTTY", nix::Error::last()));
    }
    for i in 0..3 {
        nix::unistd::dup2(slave, i).map_err(|e| EngineError::sys("dup2 pty", e))?;
    }
    if slave > 2 {
        let _ = nix::unistd::close(slave);
    }
    let _ = nix::unistd::close(console);
    Ok(())
}

/// Sends one descriptor with SCM_RIGHTS (and `name` as the payload, as runc does).
pub fn send_fd(sock: RawFd, fd: RawFd, name: &[u8]) -> Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let iov = [std::io::IoSlice::new(name)];
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None)
        .map_err(|e| EngineError::sys("send the pty master over the console socket", e))?;
    Ok(())
}

/// Blocks until `start` opens the exec fifo for reading; returns the write end.
fn open_exec_fifo(fifo: RawFd) -> Result<std::fs::File> {
    let p = format!("/proc/self/fd/{fifo}");
    // The fifo was opened O_PATH before pivot_root; reopening through /proc gives a real,
    // blocking write end without needing the host path (runc's exec.fifo does the same).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .map_err(|e| EngineError::io("open exec fifo", &p, e))?;
    let _ = nix::unistd::close(fifo);
    Ok(f)
}

/// Closes every descriptor the parent had that the init does not need. We are a copy of the
/// parent, not an exec of it, so close-on-exec does not help until our own `execve`: without
/// this, a pipe the parent's caller waits on for EOF (the shim's ready pipe) would stay open
/// for as long as the container lives.
fn close_inherited(cfg: &InitConfig, ch: &Channel) {
    let mut keep: Vec<RawFd> = vec![0, 1, 2, ch.raw_fd()];
    keep.extend((3..3 + cfg.preserve_fds.max(0)).collect::<Vec<_>>());
    keep.extend(cfg.stdio.iter().flatten().copied());
    keep.extend(cfg.console);
    keep.extend(cfg.exec_fifo);
    keep.extend(cfg.joins.iter().map(|(_, fd, _)| fd.as_raw_fd()));
    close_all_but(&keep);
}

/// Closes every descriptor not in `keep`.
pub(super) fn close_all_but(keep: &[RawFd]) {
    let mut keep = keep.to_vec();
    keep.sort_unstable();
    keep.dedup();
    let mut next: u32 = 0;
    let mut ranges = Vec::new();
    for fd in &keep {
        let fd = *fd as u32;
        if fd > next {
            ranges.push((next, fd - 1));
        }
        next = fd + 1;
    }
    ranges.push((next, u32::MAX));
    for (first, last) in ranges {
        // SAFETY: close_range(2) on a range that holds none of the descriptors we use.
        if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } < 0 {
            // Kernels before 5.9: close them one by one.
            for_each_open_fd(|fd| {
                if keep.binary_search(&fd).is_err() {
                    let _ = nix::unistd::close(fd);
                }
            });
            return;
        }
    }
}

/// Marks every descriptor from 3 up (except the preserved ones) close-on-exec.
fn close_fds_on_exec(preserve: i32) {
    let first = 3 + preserve.max(0);
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc < 0 {
        // Kernels before 5.11 have no CLOSE_RANGE_CLOEXEC.
        for_each_open_fd(|fd| {
            if fd >= first {
                let _ = nix::fcntl::fcntl(
                    fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                );
            }
        });
    }
}

/// Calls `f` for each descriptor open in this process.
fn for_each_open_fd(f: impl FnMut(RawFd)) {
    super::open_fds().into_iter().for_each(f);
}

pub fn cstrings(v: &[String]) -> Result<Vec<CString>> {
    v.iter()
        .map(|s| {
            CString::new(s.as_bytes())
                .map_err(|_| EngineError::InvalidSpec(format!("{s:?} contains NUL")))
        })
        .collect()
}

/// `args[0]` as the kernel will run it: a path, or the first executable match in the
/// process's `PATH` (execvp(3) semantics, looked up inside the container).
pub fn find_executable(args: &[String], env: &[String]) -> Result<CString> {
    let cmd = args
        .first()
        .ok_or_else(|| EngineError::InvalidSpec("process.args is empty".into()))?;
    let not_found = || EngineError::Exec {
        code: 127,
        msg: format!("exec: {cmd:?}: executable file not found in $PATH"),
    };
    let candidates: Vec<PathBuf> = if cmd.contains('/') {
        vec![PathBuf::from(cmd)]
    } else {
        let path = env
            .iter()
            .find_map(|kv| kv.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(cmd))
            .collect()
    };
    use std::os::unix::fs::PermissionsExt;
    let mut saw_non_exec = false;
    for c in candidates {
        match std::fs::metadata(&c) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                return CString::new(c.as_os_str().as_encoded_bytes()).map_err(|_| not_found());
            }
            Ok(_) => saw_non_exec = true,
            Err(_) => {}
        }
    }
    if saw_non_exec {
        return Err(EngineError::Exec {
            code: 126,
            msg: format!("exec: {cmd:?}: permission denied"),
        });
    }
    if cmd.contains('/') {
        return Err(EngineError::Exec {
            code: 127,
            msg: format!("exec: {cmd:?}: no such file or directory"),
        });
    }
    Err(not_found())
}

/// Wraps a descriptor number we were handed.
///
/// # Safety
/// `fd` must be open and owned by nobody else.
pub unsafe fn owned(fd: RawFd) -> OwnedFd {
    // SAFETY: guaranteed by the caller.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_are_found_in_path_and_failures_have_shell_codes() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let exe = find_executable(&["sh".into()], &env).expect("sh is found");
        assert!(exe.to_string_lossy().ends_with("/sh"));
        match find_executable(&["no-such-cmd-mini".into()], &env) {
            Err(EngineError::Exec { code: 127, msg }) => {
                assert!(msg.contains("not found"), "{msg}")
            }
            other => panic!("expected 127, got {other:?}"),
        }
        match find_executable(&["/etc/passwd".into()], &env) {
            Err(EngineError::Exec { code: 126, .. }) => {}
            other => panic!("expected 126, got {other:?}"),
        }
    }
}
