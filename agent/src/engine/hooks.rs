//! OCI lifecycle hooks (runtime-spec config.md "POSIX-platform Hooks").
//!
//! A hook is a program run with the container's state JSON on its stdin. Who runs which hook,
//! and where, follows the spec:
//!
//! | hook | run by | namespace | when |
//! |---|---|---|---|
//! | prestart, createRuntime | the init's parent | runtime | namespaces exist, before pivot_root |
//! | createContainer | the init | container | after the mounts, before pivot_root |
//! | startContainer | the init | container | after `start`, before the user's process |
//! | poststart | `start` | runtime | after the user's process started |
//! | poststop | `delete` | runtime | after the container is deleted |
//!
//! A failing prestart/createRuntime/createContainer/startContainer hook fails the container; a
//! failing poststart or poststop hook is reported as a warning (the spec says so).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks, Spec};

use crate::engine::error::{EngineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Stage {
    /// The stage's name in config.json, for errors that say which hook failed.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Prestart => "prestart",
            Stage::CreateRuntime => "createRuntime",
            Stage::CreateContainer => "createContainer",
            Stage::StartContainer => "startContainer",
            Stage::Poststart => "poststart",
            Stage::Poststop => "poststop",
        }
    }
}

/// The hooks of one stage (prestart is deprecated but still honoured, before createRuntime).
pub fn of(spec: &Spec, stage: Stage) -> Vec<Hook> {
    let Some(h): Option<&Hooks> = spec.hooks().as_ref() else {
        return Vec::new();
    };
    #[allow(deprecated)]
    let list = match stage {
        Stage::Prestart => h.prestart(),
        Stage::CreateRuntime => h.create_runtime(),
        Stage::CreateContainer => h.create_container(),
        Stage::StartContainer => h.start_container(),
        Stage::Poststart => h.poststart(),
        Stage::Poststop => h.poststop(),
    };
    list.clone().unwrap_or_default()
}

/// Whether the spec has hooks that run after the container is created (poststart, poststop):
/// only then do `start` and `delete` read the bundle's spec again.
pub fn any_after_create(spec: &Spec) -> bool {
    !of(spec, Stage::Poststart).is_empty() || !of(spec, Stage::Poststop).is_empty()
}

/// Runs every hook of `stage` in order, feeding `state_json` on stdin; stops at the first failure.
pub fn run(spec: &Spec, stage: Stage, state_json: &[u8]) -> Result<()> {
    for hook in of(spec, stage) {
        run_one(stage, &hook, state_json)?;
    }
    Ok(())
}

/// Runs one hook; a timeout (seconds, from the spec) kills it.
pub fn run_one(stage: Stage, hook: &Hook, state_json: &[u8]) -> Result<()> {
    let path = hook.path();
    let fail = |reason: String| EngineError::Hook {
        stage: stage.name(),
        path: path.display().to_string(),
        reason,
    };
    let args = hook.args().clone().unwrap_or_default();
    let mut cmd = Command::new(path);
    if let Some(argv0) = args.first() {
        use std::os::unix::process::CommandExt;
        cmd.arg0(argv0);
        cmd.args(&args[1..]);
    }
    cmd.env_clear();
    for kv in hook.env().as_deref().unwrap_or_default() {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(fail(format!("env entry {kv:?} is not KEY=VALUE")));
        };
        cmd.env(k, v);
    }
    // stderr goes to an anonymous memory file, not a pipe: a hook that writes more than a
    // pipe holds must not block on us while we wait for it to exit.
    let errfile = memfd().map_err(|e| fail(format!("memfd for stderr: {e}")))?;
    let errout = errfile
        .try_clone()
        .map_err(|e| fail(format!("memfd for stderr: {e}")))?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::from(errout));
    let mut child = cmd
        .spawn()
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state_json);
    }
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(fail(format!("wait: {e}"))),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!(
                "timed out after {}s",
                hook.timeout().unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    if status.success() {
        return Ok(());
    }
    let mut err = String::new();
    {
        use std::io::{Read, Seek};
        let mut f = &errfile;
        let _ = f.seek(std::io::SeekFrom::Start(0));
        let _ = f.take(64 * 1024).read_to_string(&mut err);
    }
    Err(fail(format!("{status}: {}", err.trim())))
}

fn memfd() -> std::io::Result<std::fs::File> {
    // SAFETY: memfd_create with a NUL-terminated name; the fd is checked and owned below.
    let fd = unsafe { libc::memfd_create(c"minid-hook-stderr".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: serde_json::Value) -> Hook {
        serde_json::from_value(json).expect("hook json")
    }

    #[test]
    fn hook_gets_state_on_stdin_and_env() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let h = hook(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {}; echo \"$X\" >> {}", out.display(), out.display())],
            "env": ["X=from-env"],
        }));
        run_one(Stage::Poststop, &h, br#"{"id":"c1"}"#).expect("hook runs");
        let got = std::fs::read_to_string(&out).expect("read");
        assert_eq!(got, "{\"id\":\"c1\"}from-env\n");
    }

    #[test]
    fn failing_and_slow_hooks_are_errors() {
        let h = hook(
            serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", "echo nope >&2; exit 3"]}),
        );
        let err = run_one(Stage::Poststop, &h, b"{}").unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains('3'), "{err}");
        assert!(err.starts_with("poststop hook /bin/sh failed"), "{err}");
        let h =
            hook(serde_json::json!({"path": "/bin/sleep", "args": ["sleep", "5"], "timeout": 1}));
        let err = run_one(Stage::Poststop, &h, b"{}").unwrap_err().to_string();
        assert!(err.contains("timed out"), "{err}");
    }
}
