//! Shared helpers for the privileged runtime tests: a busybox bundle builder, a wrapper around
//! `minid runtime` with a private `--root`, unique ids and the root check.
//!
//! Kept small and generic on purpose: several test crates include it (`mod common;`), and each
//! uses only part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The `minid` binary under test.
pub fn minid() -> &'static str {
    env!("CARGO_BIN_EXE_minid")
}

/// True when running as root; otherwise prints `skipping: <reason>` (the test then returns).
pub fn need_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        true
    } else {
        println!("skipping: needs root ({what})");
        false
    }
}

/// A container id unique across tests and test processes: `<name>-<pid>-<counter>`.
pub fn unique_id(name: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{}-{}", name.replace('_', "-"), std::process::id(), n)
}

/// Where the host's busybox-static lives.
pub fn busybox_path() -> Option<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// An OCI bundle in a temp dir: `config.json` (from `minid runtime spec`) and a busybox rootfs.
/// The directory is removed on drop.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub config: serde_json::Value,
}

impl Bundle {
    /// A busybox rootfs and the default spec with `process.args = args`, `terminal = false`.
    pub fn busybox(args: &[&str]) -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("minid-bundle-")
            .tempdir()
            .expect("create bundle temp dir");
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root"] {
            fs::create_dir_all(rootfs.join(d)).expect("create rootfs dir");
        }
        fs::set_permissions(
            rootfs.join("tmp"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .expect("chmod /tmp");
        let busybox = busybox_path().expect("busybox-static is installed (tests/setup)");
        fs::copy(&busybox, rootfs.join("bin/busybox")).expect("copy busybox");
        let list = Command::new(&busybox)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if !applet.is_empty() && applet != "busybox" {
                symlink("busybox", rootfs.join("bin").join(applet)).expect("link applet");
            }
        }
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        )
        .expect("write passwd");
        fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("write group");

        let out = Command::new(minid())
            .args(["runtime", "spec", "--bundle"])
            .arg(dir.path())
            .output()
            .expect("run minid runtime spec");
        assert!(out.status.success(), "minid runtime spec: {out:?}");
        let text = fs::read_to_string(dir.path().join("config.json")).expect("read config.json");
        let mut config: serde_json::Value = serde_json::from_str(&text).expect("parse config");
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = args.iter().map(|a| a.to_string()).collect();
        let bundle = Bundle { dir, config };
        bundle.write_config();
        bundle
    }

    /// Shorthand for `sh -c SCRIPT`.
    pub fn sh(script: &str) -> Bundle {
        Bundle::busybox(&["sh", "-c", script])
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Writes `self.config` to `config.json` (call after editing it).
    pub fn write_config(&self) {
        let text = serde_json::to_string_pretty(&self.config).expect("serialize config");
        fs::write(self.dir.path().join("config.json"), text).expect("write config.json");
    }
}

/// `minid runtime` with a private `--root` (a temp dir removed on drop).
pub struct Runtime {
    pub root: tempfile::TempDir,
}

impl Default for Runtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Runtime {
    pub fn new() -> Runtime {
        let root = tempfile::Builder::new()
            .prefix("minid-root-")
            .tempdir()
            .expect("create runtime root");
        Runtime { root }
    }

    /// `minid runtime --root R ARGS...`, stdin null, output captured.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(minid());
        cmd.arg("runtime")
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `minid runtime ARGS...` to completion.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("spawn minid runtime")
    }

    /// Like [`Runtime::output`], panicking with the output when the verb fails.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "minid runtime {args:?} failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The container's state directory `<root>/<id>`.
    pub fn state_dir(&self, id: &str) -> PathBuf {
        self.root.path().join(id)
    }

    /// `<root>/<id>/<name>` parsed as JSON, if present.
    pub fn read_json(&self, id: &str, name: &str) -> Option<serde_json::Value> {
        let text = fs::read_to_string(self.state_dir(id).join(name)).ok()?;
        Some(serde_json::from_str(&text).expect("state file is JSON"))
    }

    /// `minid runtime state ID` parsed.
    pub fn state(&self, id: &str) -> serde_json::Value {
        let out = self.ok(&["state", id]);
        serde_json::from_slice(&out.stdout).expect("state output is JSON")
    }
}

/// Deletes the container (`delete --force`) on drop, so a failing test still cleans up.
pub struct ContainerGuard<'a> {
    pub runtime: &'a Runtime,
    pub id: String,
}

impl<'a> ContainerGuard<'a> {
    pub fn new(runtime: &'a Runtime, id: &str) -> Self {
        ContainerGuard {
            runtime,
            id: id.to_string(),
        }
    }
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        if self.runtime.state_dir(&self.id).exists() {
            let _ = self.runtime.output(&["delete", "--force", &self.id]);
        }
    }
}

/// Output bytes as a lossy string.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
