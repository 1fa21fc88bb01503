//! `kill`: sends a signal to the init, or with `all` to every process of the container.

use nix::sys::signal::Signal;

use super::{Runtime, Status};
use crate::engine::error::{EngineError, Result};

/// Parses `SIGTERM`, `TERM`, `term` or a number, as kill(1) and runc do.
pub fn parse_signal(s: &str) -> Result<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n)
            .map_err(|_| EngineError::Other(format!("invalid signal {s:?}")));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map_err(|_| EngineError::Other(format!("invalid signal {s:?}")))
}

pub fn kill(rt: &Runtime, id: &str, sig: Signal, all: bool) -> Result<()> {
    let c = rt.load(id)?;
    let status = c.check("kill", Status::can_kill)?;
    let rec = c.record()?;
    if all {
        c.cgroup()?.kill_all(sig as i32)?;
        return Ok(());
    }
    signal_init(rec.pid, rec.pid_start_time, sig).map_err(|e| match e {
        nix::Error::ESRCH => EngineError::WrongState {
            id: id.to_string(),
            status: "stopping".into(),
            verb: "kill (its init has exited)",
        },
        e => EngineError::sys(
            format!("kill {} {sig} (container {id} is {status})", rec.pid),
            e,
        ),
    })?;
    if status == Status::Paused && matches!(sig, Signal::SIGKILL) {
        // A frozen process cannot die until thawed.
        let _ = c.cgroup()?.thaw();
    }
    Ok(())
}

/// Signals the init through a pidfd taken *before* checking that the pid is still the init
/// (same start time): a pid freed and reused in between cannot receive the signal.
fn signal_init(pid: i32, start_time: u64, sig: Signal) -> Result<(), nix::Error> {
    // SAFETY: pidfd_open(2) with a pid and no flags; the result is checked and owned.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: the kernel just returned this descriptor.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
    if !super::pid_is_ours(pid, start_time) {
        return Err(nix::Error::ESRCH);
    }
    // SAFETY: pidfd_send_signal(2) on our pidfd with no siginfo and no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            sig as i32,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_kill() {
        assert_eq!(parse_signal("9").expect("num"), Signal::SIGKILL);
        assert_eq!(parse_signal("TERM").expect("name"), Signal::SIGTERM);
        assert_eq!(parse_signal("sigusr1").expect("name"), Signal::SIGUSR1);
        assert!(parse_signal("SIGNOPE").is_err());
    }
}
