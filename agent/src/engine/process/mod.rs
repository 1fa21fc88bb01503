//! Creating a container's init process: the parent side of `clone3`.
//!
//! [`spawn`] runs in a single-threaded process (the shim, or `minid runtime run`): it clones the
//! init with the new user/pid namespaces (and, on cgroup v2, straight into its cgroup with
//! `CLONE_INTO_CGROUP`, which avoids a migration), writes the id mappings, adds the init to its
//! cgroup on v1, runs the prestart/createRuntime hooks when the init reports its namespaces, and
//! waits until the init says it is created. The child side is [`init`]; the two speak over a
//! [`channel`].

pub mod channel;
pub mod identity;
pub mod init;
pub mod priority;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxIdMapping, Spec};

use crate::engine::cgroups::Cgroup;
use crate::engine::error::{EngineError, Result};
use crate::engine::hooks::{self, Stage};
use channel::{Channel, Message};
use init::InitConfig;

/// Connects to the `--console-socket` that will receive the pty master (runtime-spec
/// runtime.md "Console"); `None` when no socket was given.
pub fn connect_console(path: Option<&std::path::Path>) -> Result<Option<OwnedFd>> {
    let Some(p) = path else {
        return Ok(None);
    };
    let s = std::os::unix::net::UnixStream::connect(p)
        .map_err(|e| EngineError::io("connect to console socket", p, e))?;
    Ok(Some(s.into()))
}

/// The descriptors open in this process, from /proc/self/fd (the directory's own descriptor
/// is closed again before this returns, so it may appear in the list already closed).
pub fn open_fds() -> Vec<std::os::fd::RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// `struct clone_args` of clone3(2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// fork(2)-like clone3: the child continues on a copy of our stack. Returns 0 in the child.
///
/// # Safety
/// The caller must be single-threaded, and the child must leave only through `_exit` or
/// `execve` (it shares nothing with the parent but must not run the parent's destructors twice
/// for shared resources such as temp files).
unsafe fn clone3(flags: CloneFlags, cgroup: Option<&OwnedFd>) -> Result<i32> {
    let mut args = CloneArgs {
        flags: flags.bits() as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..Default::default()
    };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: clone3 with a correctly sized clone_args and no new stack behaves like fork;
    // the caller guarantees we are single-threaded.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if rc < 0 {
        return Err(EngineError::sys(
            format!("clone3 {flags:?}"),
            nix::Error::last(),
        ));
    }
    Ok(rc as i32)
}

/// What the parent needs beyond the init's own configuration.
pub struct SpawnRequest<'a> {
    pub init: InitConfig,
    /// The container's cgroup, created and with resources applied.
    pub cgroup: &'a dyn Cgroup,
    /// The OCI state JSON given to prestart/createRuntime hooks (pid filled in by us).
    pub state_for_hooks: &'a dyn Fn(i32) -> Vec<u8>,
}

/// A created init: its pid, and the parent's end of the channel.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    channel: Channel,
}

impl Spawned {
    /// Lets an init without an exec fifo go on, then waits until its end of the channel
    /// closes: on execve, or when it exits because a startContainer hook or the exec failed
    /// (it says why on the container's stderr, and its exit status records it).
    pub fn start(self) -> Result<()> {
        self.channel.send(&Message::Start)?;
        // EOF: execve happened or the init exited (its own error goes to its stderr).
        while self.channel.recv()?.is_some() {}
        Ok(())
    }
}

/// Clones and sets up the init; returns it once it is created. It then waits to be started:
/// at the exec fifo, or (without one) for [`Spawned::start`].
pub fn spawn(req: SpawnRequest) -> Result<Spawned> {
    // The init is a copy of this process: with another thread alive, a lock it held (malloc,
    // stdio) would stay locked in the copy forever. Refuse rather than risk a hung init.
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| EngineError::io("read", "/proc/self/status", e))?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map(str::trim)
        .unwrap_or("1");
    if threads != "1" {
        return Err(EngineError::Other(format!(
            "containers must be spawned from a single-threaded process (this one has {threads} threads)"
        )));
    }
    let spec = &req.init.spec;
    let plan = &req.init.plan;
    // A pid namespace given by path is joined here: it only changes where our children go.
    let mut restore_pid_ns = None;
    if let Some(p) = plan.join_pid() {
        let own = crate::engine::namespaces::open_ns(std::path::Path::new(
            "/proc/self/ns/pid_for_children",
        ))?;
        let fd = crate::engine::namespaces::open_ns(p)?;
        crate::engine::namespaces::join(&fd, oci_spec::runtime::LinuxNamespaceType::Pid, p)?;
        restore_pid_ns = Some(own);
    }
    let into = req.cgroup.clone_into_fd()?;
    let (parent_ch, child_ch) = Channel::pair()?;
    // SAFETY: our callers (shim, `runtime run`) are single-threaded by construction; the child
    // runs init::child_main, which ends in execve or _exit.
    let pid = unsafe { clone3(plan.clone_flags(), into.as_ref()) };
    if let Some(own) = restore_pid_ns {
        let _ = nix::sched::setns(own, CloneFlags::CLONE_NEWPID);
    }
    let pid = pid?;
    if pid == 0 {
        drop(parent_ch);
        init::child_main(&req.init, &child_ch);
    }
    drop(child_ch);
    let pid = Pid::from_raw(pid);
    let driving = Driving {
        spec,
        user_ns: plan.creates(oci_spec::runtime::LinuxNamespaceType::User),
        wait_for_hooks: req.init.wait_for_hooks,
        cgroup: into.is_none().then_some(req.cgroup),
        state_for_hooks: req.state_for_hooks,
    };
    let res = drive(&driving, pid, &parent_ch);
    if res.is_err() {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
    }
    res.map(|_| Spawned {
        pid,
        channel: parent_ch,
    })
}

/// An init cloned before its container is known (a shim's standby): alone in a new pid
/// namespace, it waits to be told [`Message::Place`], moves itself into the cgroup it was
/// given, says [`Message::Placed`], and waits for a [`Message::Job`]. On cgroup v1 every move
/// into a cgroup waits for an RCU grace period (the writer side of the kernel's cgroup
/// threadgroup lock, taken with `cgroup_mutex` held), 5 to 30 ms here: a standby is told to
/// place itself as soon as it exists, so that no create waits for it.
#[derive(Debug)]
pub struct Standby {
    pub pid: Pid,
    channel: Channel,
}

/// What a standby init turns the container id of [`Message::Prepare`] into: its
/// [`InitConfig`], without descriptors (the job brings them).
pub type BuildInit<'a> = &'a dyn Fn(&str) -> Result<InitConfig>;

/// Clones a standby init into `cgroup` (see [`Standby`]); once told to place itself it runs
/// with `nice` under the normal scheduling policy (a standby waits at idle priority).
pub fn clone_standby(cgroup: &dyn Cgroup, nice: i32, build: BuildInit) -> Result<Standby> {
    let (parent_ch, child_ch) = Channel::pair()?;
    // SAFETY: called from the shim, which is single-threaded; the child ends in
    // init::child_main (execve or _exit) or _exit.
    let pid = unsafe { clone3(CloneFlags::CLONE_NEWPID, None) }?;
    if pid == 0 {
        drop(parent_ch);
        standby_main(cgroup, nice, &child_ch, build);
    }
    drop(child_ch);
    Ok(Standby {
        pid: Pid::from_raw(pid),
        channel: parent_ch,
    })
}

fn standby_main(cgroup: &dyn Cgroup, nice: i32, ch: &Channel, build: BuildInit) -> ! {
    // Of our parent's descriptors we need none but stdio (/dev/null) and the channel: its job
    // pipe in particular must not stay open for the container's life.
    init::close_all_but(&[0, 1, 2, ch.raw_fd()]);
    let res = (|| {
        match ch.recv()? {
            Some(Message::Place) => {}
            // The shim let us go without a job.
            None => return Ok(()),
            Some(other) => {
                return Err(EngineError::Init(format!(
                    "protocol error: expected Place, got {other:?}"
                )))
            }
        }
        if !priority::normal(nice) {
            return Err(EngineError::Init(
                "cannot leave the standby's idle scheduling priority".into(),
            ));
        }
        // "0" is the writer itself, whatever its pid in this namespace.
        cgroup.add(0)?;
        ch.send(&Message::Placed)?;
        let id = match ch.recv()? {
            Some(Message::Prepare { id }) => id,
            // The shim let us go without a job.
            None => return Ok(()),
            Some(other) => {
                return Err(EngineError::Init(format!(
                    "protocol error: expected Prepare, got {other:?}"
                )))
            }
        };
        // Built while the shim readies the cgroup; the descriptors come with the job.
        let mut cfg = build(&id)?;
        let (msg, fds) = match ch.recv_with_fds()? {
            Some(m) => m,
            // The shim let us go without a job.
            None => return Ok(()),
        };
        let Message::Job {
            stdio,
            console,
            exec_fifo,
        } = msg
        else {
            return Err(EngineError::Init(format!(
                "protocol error: expected Job, got {msg:?}"
            )));
        };
        let mut fds = fds.into_iter();
        let mut next = |what: &str| {
            fds.next()
                .ok_or_else(|| EngineError::Init(format!("the job came without its {what}")))
        };
        // Kept open for the init's life: they become its stdio, or are closed at its execve.
        let mut raw = |what: &str| next(what).map(std::os::fd::IntoRawFd::into_raw_fd);
        cfg.stdio = if stdio {
            Some([raw("stdin")?, raw("stdout")?, raw("stderr")?])
        } else {
            None
        };
        cfg.console = if console { Some(raw("console")?) } else { None };
        cfg.exec_fifo = if exec_fifo {
            Some(raw("exec fifo")?)
        } else {
            None
        };
        init::child_main(&cfg, ch)
    })();
    let code = match res {
        Ok(()) => 0,
        Err(e) => {
            let _ = ch.send(&Message::Error(e.to_string()));
            1
        }
    };
    // SAFETY: as in child_main: a forked child leaves through _exit.
    unsafe { libc::_exit(code) }
}

impl Standby {
    /// Tells the standby to move into its cgroup (without waiting for it).
    pub fn place(&self) -> Result<()> {
        self.channel.send(&Message::Place)
    }

    /// Waits until the standby is in its cgroup (at once, unless its move is still waiting
    /// for the kernel).
    pub fn placed(&self) -> Result<()> {
        self.channel.expect(Message::Placed)
    }

    /// Tells the standby which container it will be the init of, so that it reads the
    /// container's record and spec while we ready its cgroup (without waiting for it).
    pub fn prepare(&self, id: &str) -> Result<()> {
        self.channel.send(&Message::Prepare { id: id.to_string() })
    }

    /// Lets the standby go without a job, and reaps it.
    pub fn discard(self) {
        let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

/// A job for a standby init (see [`spawn_standby`]): the descriptors it is to have, and what
/// its parent runs for it.
pub struct StandbyJob<'a> {
    pub stdio: Option<[RawFd; 3]>,
    pub console: Option<RawFd>,
    pub exec_fifo: Option<RawFd>,
    /// The container's spec: its prestart and createRuntime hooks run here.
    pub spec: &'a Spec,
    /// The OCI state JSON given to those hooks (pid filled in by us).
    pub state_for_hooks: &'a dyn Fn(i32) -> Vec<u8>,
}

/// [`spawn`] for a standby init that is [`Standby::placed`] in the container's cgroup
/// already and was told its container ([`Standby::prepare`]): sends it the job, then drives
/// it like a fresh clone. (The init builds its own [`InitConfig`] from the container's record
/// and spec.)
pub fn spawn_standby(sb: Standby, job: StandbyJob) -> Result<Spawned> {
    let mut fds = Vec::new();
    fds.extend(job.stdio.iter().flatten().copied());
    fds.extend(job.console);
    fds.extend(job.exec_fifo);
    let msg = Message::Job {
        stdio: job.stdio.is_some(),
        console: job.console.is_some(),
        exec_fifo: job.exec_fifo.is_some(),
    };
    let driving = Driving {
        spec: job.spec,
        // A standby is taken only by containers whose sole new namespace at clone time is
        // the pid one.
        user_ns: false,
        wait_for_hooks: init::waits_for_hooks(job.spec),
        cgroup: None,
        state_for_hooks: job.state_for_hooks,
    };
    let res = match sb.channel.send_with_fds(&msg, &fds) {
        Ok(()) => drive(&driving, sb.pid, &sb.channel),
        // It failed reading its container (and went): its message says why, ours would not.
        Err(e) => Err(match sb.channel.recv() {
            Ok(Some(Message::Error(m))) => EngineError::Init(m),
            _ => e,
        }),
    };
    match res {
        Ok(()) => Ok(Spawned {
            pid: sb.pid,
            channel: sb.channel,
        }),
        Err(e) => {
            sb.discard();
            Err(e)
        }
    }
}

/// What the parent does for an init between its clone and its creation.
struct Driving<'a> {
    spec: &'a Spec,
    /// It makes a user namespace: we write its id maps.
    user_ns: bool,
    /// It waits while we run the prestart and createRuntime hooks.
    wait_for_hooks: bool,
    /// The cgroup to move it into (None: it is in it).
    cgroup: Option<&'a dyn Cgroup>,
    state_for_hooks: &'a dyn Fn(i32) -> Vec<u8>,
}

fn drive(d: &Driving, pid: Pid, ch: &Channel) -> Result<()> {
    if d.user_ns {
        write_id_maps(d.spec, pid)?;
    }
    if let Some(cg) = d.cgroup {
        cg.add(pid.as_raw())?;
    }
    if let Err(e) = ch.send(&Message::Go { pid: pid.as_raw() }) {
        // The init failed before we got here: its own message says why, ours would not.
        return Err(match ch.recv() {
            Ok(Some(Message::Error(m))) => EngineError::Init(m),
            _ => e,
        });
    }
    if d.wait_for_hooks {
        ch.expect(Message::NamespacesReady)?;
        let state = (d.state_for_hooks)(pid.as_raw());
        hooks::run(d.spec, Stage::Prestart, &state)?;
        hooks::run(d.spec, Stage::CreateRuntime, &state)?;
        ch.send(&Message::HooksDone)?;
    }
    ch.expect(Message::Created)
}

fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Writes uid_map and gid_map of the init's new user namespace (user_namespaces(7)).
fn write_id_maps(spec: &Spec, pid: Pid) -> Result<()> {
    let linux = spec.linux().as_ref();
    let uid = linux
        .and_then(|l| l.uid_mappings().clone())
        .unwrap_or_default();
    let gid = linux
        .and_then(|l| l.gid_mappings().clone())
        .unwrap_or_default();
    for (file, text) in [("uid_map", map_text(&uid)), ("gid_map", map_text(&gid))] {
        let p = format!("/proc/{pid}/{file}");
        std::fs::write(&p, text.as_bytes()).map_err(|e| EngineError::io("write", &p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_are_written_one_line_per_range() {
        let m: Vec<LinuxIdMapping> = serde_json::from_value(serde_json::json!([
            {"containerID": 0, "hostID": 100000, "size": 65536},
            {"containerID": 65536, "hostID": 1000, "size": 1}
        ]))
        .expect("mappings");
        assert_eq!(map_text(&m), "0 100000 65536\n65536 1000 1\n");
    }
}
