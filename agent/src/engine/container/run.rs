//! `run` in the foreground: create, start and wait, with this process as the init's parent.
//!
//! Like `crun run`, the container inherits our stdio and we exit with its status; unlike
//! `create`, no shim is spawned (we are the monitor) and no exec fifo is used: the init is
//! released with a message on the channel it already has, once its record is written, which
//! keeps the common "run one command" path short. Termination
//! signals sent to us are forwarded to the init. The container is deleted when it exits.

use super::create::{launch, prepare, state_json, LaunchOptions};
use super::{delete, ExitRecord, Runtime};
use crate::engine::error::Result;
use crate::engine::hooks::{self, Stage};
use crate::shim::monitor::{block_signals, Monitor};
use std::os::fd::AsRawFd;

pub struct RunOptions {
    pub bundle: std::path::PathBuf,
    pub pid_file: Option<std::path::PathBuf>,
    pub preserve_fds: i32,
    /// Where to send the pty master when `process.terminal` is set.
    pub console_socket: Option<std::path::PathBuf>,
    /// Keep the stopped container (its record and exit status) instead of deleting it.
    pub keep: bool,
}

/// Runs the container to completion; returns its exit record.
pub fn run(rt: &Runtime, id: &str, opts: &RunOptions) -> Result<ExitRecord> {
    let (spec, lock) = prepare(rt, id, &opts.bundle, None)?;
    let mut lock = Some(lock);
    let dir = rt.dir(id);
    let res = (|| {
        let console = crate::engine::process::connect_console(opts.console_socket.as_deref())?;
        let signals = block_signals(true)?;
        let launched = launch(
            rt,
            id,
            &spec,
            LaunchOptions {
                standby: None,
                stdio: None,
                console: console.as_ref().map(|c| c.as_raw_fd()),
                exec_fifo: None,
                preserve_fds: opts.preserve_fds,
                monitor_pid: Some(std::process::id() as i32),
                log_path: None,
            },
        )?;
        let (record, cgroup) = (launched.record, launched.cgroup);
        // Created: other verbs (kill, pause, a forced delete) may act on it from now on.
        drop(lock.take());
        if let Some(p) = &opts.pid_file {
            super::write_pid_file(p, record.pid)?;
        }
        // Recorded: now let the init go on, and once it has exec'd run the poststart hooks,
        // as `start` does (a failing one is a warning, per the runtime spec).
        launched.init.start()?;
        let state = state_json(id, "running", record.pid, &record);
        if let Err(e) = hooks::run(&spec, Stage::Poststart, &state) {
            eprintln!("minid: warning: {e}");
        }
        let exit = Monitor::new(record.pid, signals, cgroup).run();
        super::write_exit(&dir, &exit)?;
        Ok(exit)
    })();
    match res {
        Ok(exit) => {
            if !opts.keep {
                for w in delete::delete_with(rt, id, false, Some(&spec))? {
                    eprintln!("minid: warning: {w}");
                }
            }
            Ok(exit)
        }
        Err(e) => {
            drop(lock);
            Err(super::create::abort(rt, id, e))
        }
    }
}
