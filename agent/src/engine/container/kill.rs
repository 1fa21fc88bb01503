//! `kill`: sends a signal to the init, or with `all` to every process of the container.

use nix::sys::signal::Signal;
use nix::unistd::Pid;

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
    nix::sys::signal::kill(Pid::from_raw(rec.pid), sig).map_err(|e| {
        EngineError::sys(
            format!("kill {} {sig} (container {id} is {status})", rec.pid),
            e,
        )
    })?;
    if status == Status::Paused && matches!(sig, Signal::SIGKILL) {
        // A frozen process cannot die until thawed.
        let _ = c.cgroup()?.thaw();
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
