//! `start`: lets a created container's init go ahead to `execve`.
//!
//! The init blocks writing to `exec.fifo`; we open the fifo for reading (non-blocking, so a dead
//! init cannot hang us), wait for its byte, and remove the fifo, which is what turns the status
//! from created into running. Then the poststart hooks run (a failure there is a warning, per
//! the runtime spec).

use std::io::Read;
use std::os::fd::AsFd;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::stat::Mode;

use super::{create::state_json, Runtime, Status, FIFO_FILE};
use crate::engine::error::{EngineError, Result};
use crate::engine::hooks::{self, Stage};
use crate::engine::spec;

/// Starts the container; returns warnings (failed poststart hooks).
pub fn start(rt: &Runtime, id: &str) -> Result<Vec<String>> {
    let lock = super::lock(&rt.dir(id), id)?;
    let c = rt.load(id)?;
    c.check("start", Status::can_start)?;
    let rec = c.record()?.clone();
    let fifo = c.dir.join(FIFO_FILE);
    let fd = nix::fcntl::open(
        &fifo,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| EngineError::sys(format!("open {}", fifo.display()), e))?;
    // SAFETY: open returned a fresh descriptor that we now own.
    let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    loop {
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) => {
                // No writer yet: make sure the init is still there to write.
                if rt.load(id)?.status() == Status::Stopped {
                    return Err(EngineError::WrongState {
                        id: id.to_string(),
                        status: "stopped".into(),
                        verb: "start (its init exited before it was started)",
                    });
                }
            }
            Ok(_) => {
                let mut b = [0u8; 1];
                match (&file).read(&mut b) {
                    Ok(1) => break,
                    Ok(_) => {
                        // EOF: the init opened the fifo and closed it without the go-ahead
                        // (a startContainer hook failed, or it was killed). Report how it
                        // ended rather than spin on the closed fifo.
                        let _ = std::fs::remove_file(&fifo);
                        super::delete::wait_stopped(rt, id, Duration::from_secs(10))?;
                        let exit = rt.load(id)?.exit()?;
                        return Err(EngineError::Init(format!(
                            "container {id} exited while starting (exit status {})",
                            exit.map(|e| e.status.to_string())
                                .unwrap_or_else(|| "unknown".into())
                        )));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(EngineError::io("read", &fifo, e)),
                }
            }
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(EngineError::sys(format!("poll {}", fifo.display()), e)),
        }
    }
    std::fs::remove_file(&fifo).map_err(|e| EngineError::io("remove", &fifo, e))?;
    drop(lock);
    let mut warnings = Vec::new();
    if !rec.hooks {
        return Ok(warnings);
    }
    let spec = spec::load(&rec.bundle)?;
    if let Err(e) = hooks::run(
        &spec,
        Stage::Poststart,
        &state_json(id, "running", rec.pid, &rec),
    ) {
        warnings.push(e.to_string());
    }
    Ok(warnings)
}
