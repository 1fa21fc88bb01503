//! podman drives minid as its OCI runtime (`podman --runtime .../minid-runtime`), the way it
//! drives runc or crun: conmon calls `create --bundle B --pid-file F ID`, `start`, `state`,
//! `kill` and `delete --force`, holds the container's stdio or pty, and learns its exit as its
//! subreaper. A container made from a plain directory (`--rootfs`), so no registry is needed.
//!
//! tests/setup installs podman. This sandbox lacks CAP_SYS_RESOURCE, so podman's default
//! RLIMIT_NOFILE of 1048576 cannot be set by any runtime here (runc and crun fail the same
//! way); the tests ask for limits under the host's.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{need_root, text, unique_id, Bundle};

struct Podman {
    /// Holds the `minid-runtime` link.
    _dir: tempfile::TempDir,
    runtime: PathBuf,
    names: Vec<String>,
}

impl Podman {
    fn new() -> Option<Podman> {
        let found = Command::new("podman")
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            println!("skipping: podman is not installed (tests/setup installs it)");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = dir.path().join("minid-runtime");
        std::os::unix::fs::symlink(common::minid(), &runtime).expect("link minid-runtime");
        Some(Podman {
            _dir: dir,
            runtime,
            names: Vec::new(),
        })
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--runtime").arg(&self.runtime).stdin(Stdio::null());
        c
    }

    /// `podman run` of `rootfs` with `args`, named and cleaned up on drop.
    fn run(&mut self, rootfs: &Path, flags: &[&str], args: &[&str]) -> Output {
        let name = unique_id("podman");
        self.names.push(name.clone());
        self.cmd()
            .args(["run", "--name", &name, "--network", "none"])
            .args([
                "--ulimit",
                "nofile=1024:4096",
                "--ulimit",
                "nproc=1024:4096",
            ])
            .args(flags)
            .arg("--rootfs")
            .arg(rootfs)
            .args(args)
            .output()
            .expect("spawn podman")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = self
                .cmd()
                .args(["rm", "--force", "--time", "0", n])
                .output();
        }
    }
}

#[test]
fn podman_runs_containers_through_minid_runtime() {
    if !need_root("podman") {
        return;
    }
    let Some(mut podman) = Podman::new() else {
        return;
    };
    let b = Bundle::sh("true");
    let rootfs = b.rootfs();

    // Foreground: output, exit status, and the security defaults podman asks for.
    let out = podman.run(
        &rootfs,
        &["--rm"],
        &[
            "sh",
            "-c",
            "echo hello; grep -E '^(Seccomp|CapEff):' /proc/self/status; exit 3",
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}\n{}",
        stdout,
        text(&out.stderr)
    );
    assert!(stdout.starts_with("hello\n"), "{stdout}");
    assert!(
        stdout.contains("Seccomp:\t2"),
        "podman's seccomp profile is loaded: {stdout}"
    );

    // A terminal: conmon receives the pty master over the console socket.
    let out = podman.run(
        &rootfs,
        &["--rm", "-t"],
        &["sh", "-c", "ls -l /proc/self/fd/0; exit 4"],
    );
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("/dev/pts/0"),
        "{}",
        text(&out.stdout)
    );

    // A missing command: podman's 127, from our runtime's error.
    let out = podman.run(&rootfs, &["--rm"], &["no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
}

#[test]
fn podman_stops_a_detached_container_and_reads_its_log() {
    if !need_root("podman") {
        return;
    }
    let Some(mut podman) = Podman::new() else {
        return;
    };
    let b = Bundle::sh("true");
    let out = podman.run(
        &b.rootfs(),
        &["-d"],
        &[
            "sh",
            "-c",
            "trap 'echo got TERM; exit 0' TERM; echo started; while :; do sleep 0.1; done",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let name = podman.names.last().expect("name").clone();
    let stop = podman
        .cmd()
        .args(["stop", "--time", "10", &name])
        .output()
        .expect("podman stop");
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    let inspect = podman
        .cmd()
        .args([
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            &name,
        ])
        .output()
        .expect("podman inspect");
    assert_eq!(
        text(&inspect.stdout).trim(),
        "exited 0",
        "{}",
        text(&inspect.stderr)
    );
    let logs = podman
        .cmd()
        .args(["logs", &name])
        .output()
        .expect("podman logs");
    assert_eq!(text(&logs.stdout), "started\ngot TERM\n");
}
