//! `delete`: removes a stopped container (with `force`, kills it first).
//!
//! Leaves nothing behind: the container's mounts lived in its own mount namespace and went
//! with it; the cgroup is removed here, then the state directory, then poststop hooks run
//! (their failure is a warning, per the runtime spec).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{create::state_json, Runtime, Status};
use crate::engine::error::{EngineError, Result};
use crate::engine::hooks::{self, Stage};

/// Deletes the container; returns warnings.
pub fn delete(rt: &Runtime, id: &str, force: bool) -> Result<Vec<String>> {
    delete_with(rt, id, force, None)
}

/// [`delete`] with the container's spec already at hand (for its poststop hooks).
pub fn delete_with(
    rt: &Runtime,
    id: &str,
    force: bool,
    spec: Option<&oci_spec::runtime::Spec>,
) -> Result<Vec<String>> {
    let _lock = super::lock(&rt.dir(id), id)?;
    let c = rt.load(id)?;
    let status = c.status();
    if !status.can_delete() && !force {
        return Err(EngineError::WrongState {
            id: id.to_string(),
            status: status.to_string(),
            verb: "delete (stop it first or use --force)",
        });
    }
    // A created init waits at the fifo and a forced delete may find it running: kill every
    // process so nothing runs after we are gone.
    if matches!(status, Status::Created | Status::Running | Status::Paused) {
        let cg = c.cgroup()?;
        cg.kill_all(Signal::SIGKILL as i32)?;
        if status == Status::Paused {
            let _ = cg.thaw();
        }
        wait_stopped(rt, id, Duration::from_secs(10))?;
    }
    let mut warnings = Vec::new();
    if let Some(rec) = c.record.clone() {
        let cg = c.cgroup()?;
        // Without its own pid namespace a container's init can exit and leave children
        // behind; they go with the container (runc does the same), or its cgroup stays busy.
        if !cg.pids()?.is_empty() {
            cg.kill_all(Signal::SIGKILL as i32)?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while !cg.pids()?.is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        cg.remove()?;
        std::fs::remove_dir_all(&c.dir).map_err(|e| EngineError::io("remove", &c.dir, e))?;
        let loaded;
        let spec = match spec {
            Some(s) => Ok(s),
            None => {
                loaded = crate::engine::spec::load(&rec.bundle);
                loaded.as_ref().map_err(|e| e.to_string())
            }
        };
        match spec {
            Ok(spec) => {
                if let Err(e) =
                    hooks::run(spec, Stage::Poststop, &state_json(id, "stopped", 0, &rec))
                {
                    warnings.push(e.to_string());
                }
            }
            Err(e) => warnings.push(format!("poststop hooks not run: {e}")),
        }
    } else {
        std::fs::remove_dir_all(&c.dir).map_err(|e| EngineError::io("remove", &c.dir, e))?;
    }
    Ok(warnings)
}

/// Waits for the shim's exit record (not for the pid to vanish: pid 1 may reap late).
pub fn wait_stopped(rt: &Runtime, id: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        if rt.load(id)?.status() == Status::Stopped {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(EngineError::Other(format!(
                "container {id} did not stop within {}s of SIGKILL",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(10));
    }
}
