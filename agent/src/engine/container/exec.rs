//! `exec`: another process in a running container (`minid exec-helper`).
//!
//! minid is multi-threaded and never forks container processes itself; it starts this
//! helper, a fresh single-threaded image of its own binary, with the session's stdio (pipes,
//! or the slave side of a pty minid holds the master of). The helper:
//!
//! 1. loads the container's record and spec, and checks that its init is still the process
//!    it started (pid and start time);
//! 2. joins the container's cgroup, then opens every namespace of the init that differs from
//!    its own (`/proc/<pid>/ns/*`) *before* joining any, and joins them, user first and mount
//!    last — after the mount namespace, `/` is the container's root (setns(2));
//! 3. forks, because a joined pid namespace applies to children only; the child becomes a
//!    session leader (with the pty as its controlling terminal), takes the container's
//!    identity — user (or `--user`, resolved in the container's own `/etc/passwd`), the spec's
//!    capabilities, no_new_privs and seccomp filter, as runc applies them to an exec — and
//!    execs the command;
//! 4. waits for the child and exits with its status (128+N for signal N; 126/127 when the
//!    command cannot be run, with the reason on stderr, as `docker exec` says it).

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, Process, UserBuilder};

use super::{pid_is_ours, Runtime, Status};
use crate::engine::error::{EngineError, Result};
use crate::engine::image::bundle::resolve_user;
use crate::engine::namespaces;
use crate::engine::process::identity;
use crate::engine::process::init::{cstrings, find_executable};
use crate::engine::seccomp;

/// `minid exec-helper` flags (set by minid, not meant for people).
#[derive(Debug, Clone, clap::Args)]
pub struct ExecArgs {
    #[arg(long)]
    pub root: PathBuf,
    #[arg(long)]
    pub id: String,
    /// Our stdin is a unix socket: open a pty in the container, send its master back over
    /// it, and give the command the slave as its controlling terminal.
    #[arg(long)]
    pub tty: bool,
    /// `user[:group]`, by name or number (default: the container's user).
    #[arg(long)]
    pub user: Option<String>,
    /// Working directory (default: the container's).
    #[arg(long)]
    pub cwd: Option<String>,
    /// KEY=VALUE merged over the container's environment.
    #[arg(long = "env")]
    pub env: Vec<String>,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// The order in which namespaces are joined: user first (it grants the rights for the
/// others), mount last (it changes our root).
const ORDER: [(LinuxNamespaceType, &str); 7] = [
    (LinuxNamespaceType::User, "user"),
    (LinuxNamespaceType::Ipc, "ipc"),
    (LinuxNamespaceType::Uts, "uts"),
    (LinuxNamespaceType::Network, "net"),
    (LinuxNamespaceType::Pid, "pid"),
    (LinuxNamespaceType::Cgroup, "cgroup"),
    (LinuxNamespaceType::Mount, "mnt"),
];

fn same_ns(pid: i32, name: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let ours = std::fs::metadata(format!("/proc/self/ns/{name}"));
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{name}"));
    match (ours, theirs) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

fn merge_env(base: &mut Vec<String>, over: &[String]) {
    for kv in over {
        let k = kv.split('=').next().unwrap_or(kv);
        base.retain(|e| e.split('=').next() != Some(k));
        base.push(kv.clone());
    }
}

/// Runs the helper; returns the exit status to exit with.
pub fn main(args: ExecArgs) -> i32 {
    match run(&args) {
        Ok(code) => code,
        Err(e) => report(e),
    }
}

/// Says why the command could not be run; returns Docker's status for it (127 not found,
/// 126 otherwise).
fn report(e: EngineError) -> i32 {
    eprintln!("minid exec: {e}");
    match e {
        EngineError::Exec { code, .. } => code,
        _ => 126,
    }
}

fn run(args: &ExecArgs) -> Result<i32> {
    let rt = Runtime::new(&args.root);
    let c = rt.load(&args.id)?;
    let status = c.status();
    if status != Status::Running {
        return Err(EngineError::WrongState {
            id: args.id.clone(),
            status: status.to_string(),
            verb: "exec in it (it is not running)",
        });
    }
    let rec = c.record()?.clone();
    let spec = crate::engine::spec::load(&rec.bundle)?;
    let mut process: Process = spec.process().clone().unwrap_or_default();
    // Not dumpable from here on: once we are in the container's pid namespace, its root must
    // not reach our memory or /proc/<pid>/exe (minid's binary) before the exec replaces us
    // (the runc CVE-2019-5736 pattern). execve resets the flag for the command itself.
    nix::sys::prctl::set_dumpable(false).map_err(|e| EngineError::sys("PR_SET_DUMPABLE", e))?;
    // The cgroup first, so everything after (and the child) is accounted to the container.
    c.cgroup()?.add(std::process::id() as i32)?;
    let mut joins = Vec::new();
    for (typ, name) in ORDER {
        if !same_ns(rec.pid, name) {
            let p = PathBuf::from(format!("/proc/{}/ns/{name}", rec.pid));
            joins.push((typ, namespaces::open_ns(&p)?, p));
        }
    }
    // The descriptors name the init's namespaces only if the init is still the one we know.
    if !pid_is_ours(rec.pid, rec.pid_start_time) {
        return Err(EngineError::WrongState {
            id: args.id.clone(),
            status: "stopping".into(),
            verb: "exec in it (its init has exited)",
        });
    }
    let userns = joins.iter().any(|(t, _, _)| *t == LinuxNamespaceType::User);
    for (typ, fd, p) in &joins {
        namespaces::join(fd, *typ, p)?;
    }
    drop(joins);
    if args.tty {
        terminal_from_container()?;
    }
    // Now inside: resolve the user against the container's own databases.
    if let Some(u) = &args.user {
        let passwd = std::fs::read_to_string("/etc/passwd").ok();
        let group = std::fs::read_to_string("/etc/group").ok();
        let r = resolve_user(u, &passwd, &group).map_err(|e| EngineError::Exec {
            code: 126,
            msg: format!("unable to find user {u}: {e}"),
        })?;
        let mut b = UserBuilder::default().uid(r.uid).gid(r.gid);
        if !r.additional_gids.is_empty() {
            b = b.additional_gids(r.additional_gids);
        }
        process.set_user(
            b.build()
                .map_err(|e| EngineError::InvalidArgument(format!("user {u}: {e}")))?,
        );
    }
    let mut env = process.env().clone().unwrap_or_default();
    merge_env(&mut env, &args.env);
    let cwd = args
        .cwd
        .clone()
        .unwrap_or_else(|| process.cwd().to_string_lossy().into_owned());
    let exe = find_executable(&args.cmd, &env)?;
    let argv = cstrings(&args.cmd)?;
    let envp = cstrings(&env)?;
    let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(s) => Some(seccomp::compile(s)?),
        None => None,
    };
    let caps = process.capabilities().clone().unwrap_or_default();
    let nnp = process.no_new_privileges().unwrap_or(false);
    // SAFETY: the helper is single-threaded (a fresh exec of minid that spawned nothing), so
    // the child may call anything.
    match unsafe { nix::unistd::fork() }.map_err(|e| EngineError::sys("fork", e))? {
        nix::unistd::ForkResult::Child => {
            let code = match child(
                args.tty,
                &process,
                userns,
                &caps,
                nnp,
                filter.as_ref(),
                &cwd,
                &exe,
                &argv,
                &envp,
            ) {
                Ok(never) => match never {},
                Err(e) => {
                    let code = match &e {
                        EngineError::Exec { code, .. } => *code,
                        _ => 126,
                    };
                    eprintln!("minid exec: {e}");
                    code
                }
            };
            // SAFETY: _exit in the forked child, without running the parent's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            // The session's signals are the child's business; we only wait.
            loop {
                match nix::sys::wait::waitpid(child, None) {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => return Ok(code),
                    Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => {
                        return Ok(128 + sig as i32)
                    }
                    Ok(_) => continue,
                    Err(nix::Error::EINTR) => continue,
                    Err(e) => return Err(EngineError::sys("waitpid", e)),
                }
            }
        }
    }
}

/// Opens a pty in the container's own devpts (so `tty` names it and `/dev/pts` shows it, as
/// runc does for `exec -t`), sends the master to minid over our stdin (a unix socket), and
/// makes the slave our stdin, stdout and stderr.
fn terminal_from_container() -> Result<()> {
    use nix::fcntl::OFlag;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| EngineError::sys("open /dev/ptmx in the container", e))?;
    nix::pty::grantpt(&master).map_err(|e| EngineError::sys("grantpt", e))?;
    nix::pty::unlockpt(&master).map_err(|e| EngineError::sys("unlockpt", e))?;
    let name = nix::pty::ptsname_r(&master).map_err(|e| EngineError::sys("ptsname", e))?;
    let slave = nix::fcntl::open(
        std::path::Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| EngineError::sys(format!("open {name}"), e))?;
    crate::engine::process::init::send_fd(0, master.as_raw_fd(), name.as_bytes())?;
    drop(master);
    for i in 0..3 {
        nix::unistd::dup2(slave, i).map_err(|e| EngineError::sys("dup2 pty", e))?;
    }
    if slave > 2 {
        let _ = nix::unistd::close(slave);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn child(
    tty: bool,
    process: &Process,
    userns: bool,
    caps: &oci_spec::runtime::LinuxCapabilities,
    nnp: bool,
    filter: Option<&libseccomp::ScmpFilterContext>,
    cwd: &str,
    exe: &CString,
    argv: &[CString],
    envp: &[CString],
) -> Result<std::convert::Infallible> {
    nix::unistd::setsid().map_err(|e| EngineError::sys("setsid", e))?;
    // The command dies with the helper, which minid kills when the client goes away.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| EngineError::sys("PR_SET_PDEATHSIG", e))?;
    if tty {
        // SAFETY: TIOCSCTTY on our stdin (the pty slave); we are a session leader.
        if unsafe { libc::ioctl(std::io::stdin().as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
            return Err(EngineError::sys("TIOCSCTTY", nix::Error::last()));
        }
    }
    identity::set_rlimits(process)?;
    if let (Some(f), false) = (filter, nnp) {
        seccomp::load(f)?;
    }
    if nnp {
        nix::sys::prctl::set_no_new_privs()
            .map_err(|e| EngineError::sys("PR_SET_NO_NEW_PRIVS", e))?;
    }
    identity::drop_bounding(caps)?;
    identity::switch_user(process, userns)?;
    identity::set_caps(caps)?;
    nix::unistd::chdir(cwd).map_err(|e| EngineError::Exec {
        code: 126,
        msg: format!("chdir to {cwd}: {e}"),
    })?;
    if let (Some(f), true) = (filter, nnp) {
        seccomp::load(f)?;
    }
    let err = match nix::unistd::execve(exe, argv, envp) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let code = if err == nix::Error::ENOENT { 127 } else { 126 };
    Err(EngineError::Exec {
        code,
        msg: format!("exec {}: {err}", exe.to_string_lossy()),
    })
}
