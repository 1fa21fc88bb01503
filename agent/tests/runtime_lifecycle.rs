//! Privileged end-to-end tests of `minid runtime`: lifecycle and state machine, exit codes, the
//! CRI container log, the detached shim, the console socket, overlay isolation of image
//! bundles, cleanup after delete, CLI errors, pause/resume and signal forwarding.
//!
//! Every test drives the real binary (`CARGO_BIN_EXE_minid`) with its own `--root`, bundle
//! and container ids, and asserts what a user of the CLI would notice: exit statuses, the bytes
//! in the log, the JSON of `state`, what is left on the host afterwards. Without root the tests
//! print `skipping: <reason>` and return. The helpers are kept in this file (not in
//! `common/`) so they can be tuned for lifecycle work without disturbing other suites.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use minid::shim::log::{parse, Stream};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use sha2::{Digest, Sha256};

const MINID: &str = env!("CARGO_BIN_EXE_minid");

macro_rules! need_root {
    () => {
        if !nix::unistd::geteuid().is_root() {
            println!("skipping: needs root (namespaces, mounts, cgroups)");
            return;
        }
        if !Path::new("/bin/busybox").exists() {
            println!("skipping: /bin/busybox (busybox-static) is not installed");
            return;
        }
    };
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A container id no other test (or test process) uses.
fn unique(tag: &str) -> String {
    format!(
        "lc-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Polls `f` until it returns `Some`, panicking with `what` after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// Bundles

/// A bundle in a temp dir: `config.json` from `minid runtime spec` and a busybox rootfs.
struct Bundle {
    tmp: tempfile::TempDir,
}

impl Bundle {
    fn busybox(args: &[&str]) -> Bundle {
        let tmp = tempfile::tempdir().expect("bundle tempdir");
        let dir = tmp.path().join("bundle");
        let rootfs = dir.join("rootfs");
        for d in ["bin", "etc", "tmp", "proc", "sys", "dev", "root"] {
            fs::create_dir_all(rootfs.join(d)).expect("mkdir rootfs dir");
        }
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
        let list = Command::new("/bin/busybox")
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in text(&list.stdout).lines() {
            if applet.is_empty() || applet == "busybox" {
                continue;
            }
            let _ = symlink("busybox", rootfs.join("bin").join(applet));
        }
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        )
        .expect("passwd");
        fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777))
            .expect("chmod tmp");
        let out = Command::new(MINID)
            .args(["runtime", "spec", "--bundle"])
            .arg(&dir)
            .output()
            .expect("minid runtime spec");
        assert!(out.status.success(), "spec: {}", text(&out.stderr));
        let b = Bundle { tmp };
        b.edit(|c| {
            c["process"]["args"] = serde_json::json!(args);
            c["process"]["terminal"] = Value::Bool(false);
            c["hostname"] = Value::String("lifecycle".into());
        });
        b
    }

    fn sh(script: &str) -> Bundle {
        Bundle::busybox(&["sh", "-c", script])
    }

    fn path(&self) -> PathBuf {
        self.tmp.path().join("bundle")
    }

    fn path_str(&self) -> String {
        self.path().to_str().expect("utf-8 path").to_string()
    }

    fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    fn edit(&self, f: impl FnOnce(&mut Value)) {
        let p = self.path().join("config.json");
        let mut v: Value = serde_json::from_slice(&fs::read(&p).expect("read config.json"))
            .expect("parse config.json");
        f(&mut v);
        fs::write(&p, serde_json::to_vec_pretty(&v).expect("encode")).expect("write config");
    }

    /// Adds a small writable tmpfs at /tmp (the default rootfs is read-only).
    fn with_tmpfs(self) -> Bundle {
        self.edit(|c| {
            c["mounts"]
                .as_array_mut()
                .expect("mounts")
                .push(serde_json::json!({
                    "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                    "options": ["nosuid", "nodev", "mode=1777", "size=1m"]
                }))
        });
        self
    }
}

// ---------------------------------------------------------------------------------------------
// The runtime CLI

struct Out {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl Out {
    fn describe(&self) -> String {
        format!(
            "exit {:?}\nstdout: {}\nstderr: {}",
            self.code,
            text(&self.stdout),
            self.stderr
        )
    }
}

/// One `--root`; `Drop` force-deletes every container left under it.
struct Rt {
    root: tempfile::TempDir,
}

impl Rt {
    fn new() -> Rt {
        Rt {
            root: tempfile::tempdir().expect("root tempdir"),
        }
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(MINID);
        c.arg("runtime").arg("--root").arg(self.root()).args(args);
        c
    }

    /// Runs a verb to completion. Output goes to files, not pipes: a container started by
    /// `create` inherits them and may keep them open long after the verb has returned.
    fn exec(&self, args: &[&str]) -> Out {
        run_to_files(self.cmd(args))
    }

    fn ok(&self, args: &[&str]) -> Out {
        let o = self.exec(args);
        assert_eq!(o.code, Some(0), "{args:?} failed: {}", o.describe());
        o
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root().join(id)
    }

    fn state(&self, id: &str) -> Value {
        let o = self.ok(&["state", id]);
        serde_json::from_slice(&o.stdout).expect("state is JSON")
    }

    fn status(&self, id: &str) -> String {
        self.state(id)["status"]
            .as_str()
            .expect("status string")
            .to_string()
    }

    fn wait_status(&self, id: &str, want: &str) {
        wait_for(
            &format!("{id} to be {want}"),
            Duration::from_secs(20),
            || (self.status(id) == want).then_some(()),
        )
    }

    /// state.json (the record with pid, shim pid, cgroup).
    fn record(&self, id: &str) -> Value {
        serde_json::from_slice(&fs::read(self.dir(id).join("state.json")).expect("state.json"))
            .expect("state.json is JSON")
    }

    /// Waits for the shim's exit record.
    fn wait_exit(&self, id: &str, timeout: Duration) -> Value {
        let p = self.dir(id).join("exit.json");
        wait_for(&format!("{}", p.display()), timeout, || {
            let b = fs::read(&p).ok()?;
            serde_json::from_slice(&b).ok()
        })
    }

    /// `create --container-log LOG` + `start`.
    fn start_logged(&self, b: &Bundle, id: &str, log: &Path) {
        self.ok(&[
            "create",
            "--bundle",
            &b.path_str(),
            "--container-log",
            log.to_str().expect("utf-8"),
            id,
        ]);
        self.ok(&["start", id]);
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        let Ok(rd) = fs::read_dir(self.root()) else {
            return;
        };
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let o = self.exec(&["delete", "--force", &id]);
            if o.code != Some(0) {
                eprintln!("cleanup: delete --force {id}: {}", o.describe());
            }
        }
    }
}

fn run_to_files(mut c: Command) -> Out {
    let mut out = tempfile::tempfile().expect("stdout file");
    let mut err = tempfile::tempfile().expect("stderr file");
    let status = c
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .status()
        .expect("spawn minid");
    let mut stdout = Vec::new();
    out.rewind().expect("rewind");
    out.read_to_end(&mut stdout).expect("read stdout");
    let mut stderr = Vec::new();
    err.rewind().expect("rewind");
    err.read_to_end(&mut stderr).expect("read stderr");
    Out {
        code: status.code(),
        stdout,
        stderr: text(&stderr),
    }
}

/// Kills a child we started (by pid) and reaps it when dropped, unless it was reaped already.
struct ChildGuard(Option<Child>);

/// `runtime run` of a bundle whose container prints "ready" first; returns once it has.
fn run_until_ready(rt: &Rt, b: &Bundle, id: &str) -> ChildGuard {
    let mut child = ChildGuard(Some(
        rt.cmd(&["run", "--bundle", &b.path_str(), id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn run"),
    ));
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.child().stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read ready");
    assert_eq!(line, "ready\n");
    child
}

impl ChildGuard {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child")
    }
    /// Waits (waitpid) for the child with a deadline; kills it and panics past the deadline.
    fn wait_timeout(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child().try_wait().expect("try_wait") {
                self.0 = None;
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "child did not exit in {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Host inspection

/// The cgroup directories a container with this id gets by default: `<own>/minid/<id>` in every
/// hierarchy this process belongs to (the runtime nests under its caller's cgroup).
fn default_cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let own = fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let v2_only = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let mut dirs = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let rel = format!("{}/minid/{id}", path.trim_start_matches('/'));
        let mounts: Vec<String> = if ctrls.is_empty() {
            vec![if v2_only {
                String::new()
            } else {
                "unified".into()
            }]
        } else {
            let mut m: Vec<String> = ctrls
                .split(',')
                .map(|c| c.trim_start_matches("name=").to_string())
                .collect();
            m.push(ctrls.to_string());
            m
        };
        for m in mounts {
            dirs.push(Path::new("/sys/fs/cgroup").join(m).join(&rel));
        }
    }
    dirs
}

/// The cgroup directories named by a container's record (state.json "cgroup").
fn recorded_cgroup_dirs(record: &Value) -> Vec<PathBuf> {
    let cg = &record["cgroup"];
    let path = cg["path"].as_str().expect("cgroup.path");
    if record["cgroup_version"] == "V2" {
        return vec![Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'))];
    }
    let mut dirs = Vec::new();
    for e in fs::read_dir("/sys/fs/cgroup")
        .expect("read /sys/fs/cgroup")
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "unified" || !e.path().is_dir() {
            continue;
        }
        let p = cg["v1"][&name].as_str().unwrap_or(path);
        dirs.push(e.path().join(p.trim_start_matches('/')));
    }
    dirs
}

fn existing(dirs: &[PathBuf]) -> Vec<PathBuf> {
    dirs.iter().filter(|d| d.exists()).cloned().collect()
}

/// Lines of our mountinfo that mention any of `needles`.
fn mounts_mentioning(needles: &[&str]) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

/// Asserts that a container left nothing behind: no state dir, no cgroup, no mount.
fn assert_nothing_left(rt: &Rt, id: &str, bundle: &Bundle, cgroups: &[PathBuf]) {
    assert!(
        !rt.dir(id).exists(),
        "{} still exists",
        rt.dir(id).display()
    );
    let left = existing(cgroups);
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
    let left = existing(&default_cgroup_dirs(id));
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
    let m = mounts_mentioning(&[id, &bundle.path_str()]);
    assert!(m.is_empty(), "mounts left behind: {m:#?}");
}

// ---------------------------------------------------------------------------------------------
// CRI logs

fn read_log(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_default()
}

/// Bytes per stream of a CRI log, newlines restored.
fn streams(log: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    for (s, b) in parse(log) {
        match s {
            Stream::Stdout => out.extend_from_slice(&b),
            Stream::Stderr => err.extend_from_slice(&b),
        }
    }
    (out, err)
}

/// Every line of a CRI log is `<RFC3339Nano> stdout|stderr F|P <bytes>`.
fn assert_cri_format(log: &[u8]) {
    for line in log.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let mut p = line.splitn(4, |b| *b == b' ');
        let ts = text(p.next().expect("timestamp"));
        humantime::parse_rfc3339(&ts).unwrap_or_else(|e| panic!("bad timestamp {ts:?}: {e}"));
        let stream = p.next().expect("stream");
        assert!(stream == b"stdout" || stream == b"stderr", "{}", text(line));
        let tag = p.next().expect("tag");
        assert!(tag == b"F" || tag == b"P", "{}", text(line));
        assert!(p.next().is_some(), "no body separator: {}", text(line));
    }
}

// =============================================================================================
// 1. Exit codes

#[test]
fn run_exits_with_the_container_status() {
    need_root!();
    let rt = Rt::new();
    for code in [0, 3, 42] {
        let b = Bundle::sh(&format!("echo out-{code}; exit {code}"));
        let id = unique("exit");
        let o = rt.exec(&["run", "--bundle", &b.path_str(), &id]);
        assert_eq!(o.code, Some(code), "{}", o.describe());
        assert_eq!(text(&o.stdout), format!("out-{code}\n"), "container stdout");
        assert!(!rt.dir(&id).exists(), "run deletes the container");
    }
}

#[test]
fn run_reports_missing_and_non_executable_commands() {
    need_root!();
    let rt = Rt::new();
    let b = Bundle::busybox(&["no-such-command"]);
    let id = unique("e127");
    let o = rt.exec(&["run", "--bundle", &b.path_str(), &id]);
    assert_eq!(o.code, Some(127), "{}", o.describe());
    assert!(o.stderr.contains("no-such-command"), "{}", o.describe());
    assert!(!rt.dir(&id).exists());

    let b = Bundle::busybox(&["/notexec"]);
    let f = b.rootfs().join("notexec");
    fs::write(&f, "#!/bin/sh\necho hi\n").expect("write script");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).expect("chmod");
    let id = unique("e126");
    let o = rt.exec(&["run", "--bundle", &b.path_str(), &id]);
    assert_eq!(o.code, Some(126), "{}", o.describe());
    assert!(o.stderr.contains("/notexec"), "{}", o.describe());
    assert!(!rt.dir(&id).exists());
}

#[test]
fn sigkill_from_kill_is_recorded_as_137() {
    need_root!();
    let rt = Rt::new();
    let b = Bundle::sh("echo ready; while :; do sleep 0.1; done");
    let id = unique("k9");
    let log = b.tmp.path().join("c.log");
    rt.start_logged(&b, &id, &log);
    wait_for("ready", Duration::from_secs(10), || {
        text(&read_log(&log)).contains("ready").then_some(())
    });
    rt.ok(&["kill", &id, "KILL"]);
    let exit = rt.wait_exit(&id, Duration::from_secs(10));
    assert_eq!(exit["status"], 137, "{exit}");
    assert_eq!(exit["signal"], 9, "{exit}");
    assert_eq!(exit["oom_killed"], false, "{exit}");
    assert_eq!(rt.status(&id), "stopped");
}

#[test]
fn sigterm_kills_an_init_outside_a_pid_namespace_with_143() {
    need_root!();
    let rt = Rt::new();
    // As pid 1 of its own pid namespace the shell would ignore SIGTERM (no handler), so this
    // container shares our pid namespace: TERM has its default action and kills it.
    let b = Bundle::sh("echo ready; exec sleep 1000");
    b.edit(|c| {
        let ns = c["linux"]["namespaces"].as_array_mut().expect("namespaces");
        ns.retain(|n| n["type"] != "pid");
    });
    let id = unique("k15");
    let mut child = run_until_ready(&rt, &b, &id);
    assert_eq!(rt.status(&id), "running", "recorded before the process ran");
    rt.ok(&["kill", &id, "TERM"]);
    let st = child.wait_timeout(Duration::from_secs(20));
    assert_eq!(st.code(), Some(143), "run exits 128+15");
    assert!(!rt.dir(&id).exists(), "run deleted the container");
}

#[test]
fn run_records_the_pid_before_the_container_runs() {
    need_root!();
    let rt = Rt::new();
    let b = Bundle::sh("echo ready; exec sleep 1000");
    for _ in 0..5 {
        let id = unique("race");
        let mut child = run_until_ready(&rt, &b, &id);
        // The container's process has run: a user can see it and must be able to signal it.
        assert_eq!(rt.status(&id), "running");
        rt.ok(&["kill", &id, "KILL"]);
        let st = child.wait_timeout(Duration::from_secs(20));
        assert_eq!(st.code(), Some(137));
    }
}

// =============================================================================================
// 2. Detached lifecycle and the state machine

#[test]
fn detached_lifecycle_follows_the_state_machine() {
    need_root!();
    let rt = Rt::new();
    let b = Bundle::sh("trap 'exit 0' TERM; echo ready; while :; do sleep 0.1; done");
    let id = unique("life");
    let log = b.tmp.path().join("c.log");
    let pid_file = b.tmp.path().join("pid");
    rt.ok(&[
        "create",
        "--bundle",
        &b.path_str(),
        "--pid-file",
        pid_file.to_str().expect("utf-8"),
        "--container-log",
        log.to_str().expect("utf-8"),
        &id,
    ]);
    let st = rt.state(&id);
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["id"], id.as_str());
    assert_eq!(st["bundle"], b.path_str().as_str(), "{st}");
    let pid = st["pid"].as_i64().expect("created has a pid");
    assert!(pid > 0);
    let from_file: i64 = fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid file holds a number");
    assert_eq!(from_file, pid, "pid file matches state");
    assert!(
        fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok(),
        "the init exists while created"
    );
    assert!(
        !text(&read_log(&log)).contains("ready"),
        "a created container must not run its process yet"
    );
    // `list` and `ps` see it.
    let list: Value =
        serde_json::from_slice(&rt.ok(&["list", "--format", "json"]).stdout).expect("list json");
    let row = list
        .as_array()
        .expect("list array")
        .iter()
        .find(|r| r["id"] == id.as_str())
        .expect("listed");
    assert_eq!(row["status"], "created");

    rt.ok(&["start", &id]);
    wait_for("ready", Duration::from_secs(10), || {
        text(&read_log(&log)).contains("ready").then_some(())
    });
    assert_eq!(rt.status(&id), "running");
    let ps: Value =
        serde_json::from_slice(&rt.ok(&["ps", "--format", "json", &id]).stdout).expect("ps");
    assert!(
        ps.as_array().expect("ps array").contains(&Value::from(pid)),
        "ps lists the init {pid}: {ps}"
    );

    // Illegal transitions are refused with the status in the message.
    let o = rt.exec(&["start", &id]);
    assert_eq!(o.code, Some(1), "{}", o.describe());
    assert!(o.stderr.contains("running"), "{}", o.describe());
    let o = rt.exec(&["delete", &id]);
    assert_eq!(o.code, Some(1), "{}", o.describe());
    assert!(
        o.stderr.contains("running") && o.stderr.contains("--force"),
        "{}",
        o.describe()
    );
    assert_eq!(
        rt.status(&id),
        "running",
        "a refused delete changes nothing"
    );
    let o = rt.exec(&["resume", &id]);
    assert_eq!(
        o.code,
        Some(1),
        "resume of a running container: {}",
        o.describe()
    );

    rt.ok(&["kill", &id, "TERM"]);
    let exit = rt.wait_exit(&id, Duration::from_secs(10));
    assert_eq!(exit["status"], 0, "the trap ran: {exit}");
    let st = rt.state(&id);
    assert_eq!(st["status"], "stopped", "{st}");
    assert!(st.get("pid").is_none_or(|p| p.is_null() || p == 0), "{st}");
    let o = rt.exec(&["kill", &id, "TERM"]);
    assert_eq!(o.code, Some(1), "{}", o.describe());
    assert!(o.stderr.contains("stopped"), "{}", o.describe());
    let o = rt.exec(&["start", &id]);
    assert_eq!(o.code, Some(1), "{}", o.describe());

    rt.ok(&["delete", &id]);
    assert!(!rt.dir(&id).exists());
    let o = rt.exec(&["state", &id]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("does not exist"), "{}", o.describe());
}

#[test]
fn delete_force_kills_running_and_ignores_missing() {
    need_root!();
    let rt = Rt::new();
    let b = Bundle::sh("while :; do sleep 0.1; done");
    let id = unique("force");
    let log = b.tmp.path().join("c.log");
    rt.start_logged(&b, &id, &log);
    assert_eq!(rt.status(&id), "running");
    let cgroups = existing(&recorded_cgroup_dirs(&rt.record(&id)));
    assert!(!cgroups.is_empty(), "the container has cgroups");
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b, &cgroups);
    let o = rt.exec(&["state", &id]);
    assert!(o.stderr.contains("does not exist"), "{}", o.describe());

    // A created (never started) container can be deleted without --force.
    let id2 = unique("force-created");
    rt.ok(&[
        "create",
        "--bundle",
        &b.path_str(),
        "--container-log",
        log.to_str().expect("utf-8"),
        &id2,
    ]);
    rt.ok(&["delete", &id2]);
    assert!(!rt.dir(&id2).exists());

    // runc: a forced delete of a container that does not exist succeeds; a plain one does not.
    rt.ok(&["delete", "--force", "lc-never-existed"]);
    let o = rt.exec(&["delete", "lc-never-existed"]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("does not exist"), "{}", o.describe());
}

// =============================================================================================
// 3. The CRI container log

#[test]
fn container_log_keeps_partial_lines_binary_and_streams_byte_exact() {
    need_root!();
    let rt = Rt::new();
    let b = Bundle::sh(
        "printf 'line1\\nparti'; printf 'err1\\n' >&2; \
         while [ ! -e /tmp/go ]; do sleep 0.05; done; \
         printf 'al\\n\\000\\377\\001bin\\r\\n \\n'; printf 'e2' >&2",
    );
    let id = unique("log");
    let log = b.tmp.path().join("c.log");
    rt.start_logged(&b, &id, &log);
    // A partial line is written as soon as it is read, not held back until its newline.
    wait_for(
        "the partial line in the log",
        Duration::from_secs(10),
        || {
            text(&read_log(&log))
                .contains(" stdout P parti\n")
                .then_some(())
        },
    );
    assert_eq!(rt.status(&id), "running");
    fs::write(b.rootfs().join("tmp/go"), "").expect("release the container");
    let exit = rt.wait_exit(&id, Duration::from_secs(10));
    assert_eq!(exit["status"], 0, "{exit}");
    let bytes = read_log(&log);
    assert_cri_format(&bytes);
    let (out, err) = streams(&bytes);
    assert_eq!(
        out,
        b"line1\npartial\n\x00\xff\x01bin\r\n \n".to_vec(),
        "stdout: {:?}",
        text(&out)
    );
    assert_eq!(err, b"err1\ne2".to_vec(), "stderr: {:?}", text(&err));
    assert!(
        text(&bytes).contains(" stderr P e2\n"),
        "unterminated stderr is a P entry"
    );
}

#[test]
fn container_log_captures_a_100mb_burst_completely() {
    need_root!();
    let rt = Rt::new();
    const N: usize = 100_000_000;
    // The container hashes what it writes (through a fifo) and reports the digest on stderr.
    let b = Bundle::sh(&format!(
        "mkfifo /tmp/f && {{ sha256sum </tmp/f >&2 & head -c {N} /dev/urandom | tee /tmp/f; wait; }}"
    ))
    .with_tmpfs();
    let id = unique("burst");
    let log = b.tmp.path().join("c.log");
    rt.start_logged(&b, &id, &log);
    let exit = rt.wait_exit(&id, Duration::from_secs(150));
    assert_eq!(exit["status"], 0, "{exit}");
    let bytes = read_log(&log);
    let (out, err) = streams(&bytes);
    drop(bytes);
    let err = text(&err);
    let inside = err.split_whitespace().next().expect("digest on stderr");
    assert_eq!(out.len(), N, "every byte captured");
    assert_eq!(
        sha256_hex(&out),
        inside,
        "same bytes as the container wrote"
    );
}

#[test]
fn container_log_rotates_by_size_and_keeps_max_files() {
    need_root!();
    let rt = Rt::new();
    const LAST: u64 = 300_000;
    let b = Bundle::sh(&format!("seq 1 {LAST}"));
    let id = unique("rotate");
    let log = b.tmp.path().join("c.log");
    const MAX: u64 = 1024 * 1024;
    rt.ok(&[
        "create",
        "--bundle",
        &b.path_str(),
        "--container-log",
        log.to_str().expect("utf-8"),
        "--container-log-max-size",
        &MAX.to_string(),
        "--container-log-max-files",
        "3",
        &id,
    ]);
    rt.ok(&["start", &id]);
    let exit = rt.wait_exit(&id, Duration::from_secs(60));
    assert_eq!(exit["status"], 0, "{exit}");
    let name = |n: u32| PathBuf::from(format!("{}.{n}", log.display()));
    let mut all = Vec::new();
    for p in [name(3), name(2), name(1), log.clone()] {
        let len = fs::metadata(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .len();
        assert!(len <= MAX, "{} is {len} bytes > {MAX}", p.display());
        let b = fs::read(&p).expect("read log file");
        assert_cri_format(&b);
        all.extend(b);
    }
    assert!(!name(4).exists(), "only 3 rotated files are kept");
    // The kept files hold a contiguous tail of the output, oldest first.
    let (out, _) = streams(&all);
    let out = text(&out);
    let nums: Vec<u64> = out
        .lines()
        .skip(1) // may be the tail of a line whose head was in a dropped file
        .map(|l| l.parse().unwrap_or_else(|_| panic!("bad line {l:?}")))
        .collect();
    assert_eq!(*nums.last().expect("lines"), LAST);
    assert!(nums[0] > 1, "old output was dropped");
    for w in nums.windows(2) {
        assert_eq!(w[0] + 1, w[1], "gap in the rotated log");
    }
}

// =============================================================================================
// 4. The shim

#[test]
fn shim_outlives_the_process_that_created_the_container() {
    need_root!();
    let rt = Rt::new();
    let b =
        Bundle::sh("trap 'exit 7' TERM; i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done");
    let id = unique("orphan");
    let log = b.tmp.path().join("c.log");
    let mut wrapper = ChildGuard(Some(
        Command::new("/bin/sh")
            .arg("-c")
            .arg(r#""$0" runtime --root "$1" create --bundle "$2" --container-log "$3" "$4" && "$0" runtime --root "$1" start "$4" && exec sleep 1000"#)
            .arg(MINID)
            .arg(rt.root())
            .arg(b.path())
            .arg(&log)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn wrapper"),
    ));
    wait_for("the container to run", Duration::from_secs(20), || {
        (rt.dir(&id).join("state.json").exists()
            && !rt.dir(&id).join("exec.fifo").exists()
            && rt.status(&id) == "running")
            .then_some(())
    });
    let wpid = wrapper.child().id() as i32;
    kill(Pid::from_raw(wpid), Signal::SIGKILL).expect("SIGKILL the wrapper");
    let st = wrapper.wait_timeout(Duration::from_secs(10));
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    let lines = || text(&streams(&read_log(&log)).0).lines().count();
    let before = lines();
    wait_for("the log to keep growing", Duration::from_secs(10), || {
        (lines() >= before + 10).then_some(())
    });
    assert_eq!(rt.status(&id), "running");
    rt.ok(&["kill", &id, "TERM"]);
    let exit = rt.wait_exit(&id, Duration::from_secs(10));
    assert_eq!(exit["status"], 7, "{exit}");
    assert_eq!(exit["signal"], Value::Null);
    let (out, _) = streams(&read_log(&log));
    let nums: Vec<u64> = text(&out)
        .lines()
        .map(|l| l.parse().expect("counter"))
        .collect();
    assert!(nums.len() >= before + 10);
    for w in nums.windows(2) {
        assert_eq!(w[0] + 1, w[1], "no output lost while the creator died");
    }
    rt.ok(&["delete", &id]);
}

#[test]
fn killing_the_shim_leaves_a_container_that_can_still_be_stopped_and_deleted() {
    need_root!();
    let rt = Rt::new();
    let b = Bundle::sh("while :; do sleep 0.1; done");
    let id = unique("shimkill");
    let log = b.tmp.path().join("c.log");
    rt.start_logged(&b, &id, &log);
    let rec = rt.record(&id);
    let cgroups = existing(&recorded_cgroup_dirs(&rec));
    let shim = rec["shim_pid"].as_i64().expect("shim pid") as i32;
    assert!(shim > 0, "{rec}");
    // The shim was started by our `create`.
    kill(Pid::from_raw(shim), Signal::SIGKILL).expect("SIGKILL the shim");
    // The init does not die with its shim (as with runc, nothing ties it to its parent), and
    // nobody records its exit now: the status is derived from the init itself and must not lie.
    let pid = rec["pid"].as_i64().expect("pid");
    let alive = fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| !r.starts_with('Z')));
    assert!(alive, "the init survives its shim");
    assert_eq!(rt.status(&id), "running", "the init still runs");
    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_status(&id, "stopped");
    assert!(
        !rt.dir(&id).join("exit.json").exists(),
        "no exit record without a shim: the status was derived"
    );
    rt.ok(&["delete", &id]);
    assert_nothing_left(&rt, &id, &b, &cgroups);
}

// =============================================================================================
// 5. The console socket

#[test]
fn terminal_container_sends_its_pty_master_to_the_console_socket() {
    need_root!();
    let rt = Rt::new();
    let b = Bundle::busybox(&["sh"]);
    b.edit(|c| c["process"]["terminal"] = Value::Bool(true));
    let id = unique("pty");
    let sock = b.tmp.path().join("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind console socket");
    listener.set_nonblocking(true).expect("nonblocking");
    let mut create = ChildGuard(Some(
        rt.cmd(&[
            "create",
            "--bundle",
            &b.path_str(),
            "--console-socket",
            sock.to_str().expect("utf-8"),
            &id,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn create"),
    ));
    let (conn, _) = wait_for("the shim to connect", Duration::from_secs(20), || {
        listener.accept().ok()
    });
    conn.set_nonblocking(false).expect("blocking");
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let master = recv_fd(&conn);
    let st = create.wait_timeout(Duration::from_secs(20));
    assert!(st.success(), "create with a console socket");
    assert_eq!(rt.status(&id), "created");
    rt.ok(&["start", &id]);
    let mut m = fs::File::from(master);
    m.write_all(b"tty; exit 7\n").expect("type into the pty");
    let seen = read_pty(&m, Duration::from_secs(20));
    assert!(
        seen.contains("/dev/pts/0"),
        "the shell's tty is the pty: {seen:?}"
    );
    let exit = rt.wait_exit(&id, Duration::from_secs(20));
    assert_eq!(exit["status"], 7, "{exit}");
}

fn recv_fd(conn: &std::os::unix::net::UnixStream) -> OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg on the console socket");
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            let fd = *fds.first().expect("one fd");
            // SAFETY: the kernel installed this descriptor for us; we own it from here.
            return unsafe { OwnedFd::from_raw_fd(fd) };
        }
    }
    panic!("no SCM_RIGHTS descriptor on the console socket");
}

/// Reads the pty master until the last slave closes (EIO) or `timeout`.
fn read_pty(m: &fs::File, timeout: Duration) -> String {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let mut fds = [PollFd::new(m.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => panic!("poll pty: {e}"),
        }
        match nix::unistd::read(m.as_raw_fd(), &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EIO) => break,
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(e) => panic!("read pty: {e}"),
        }
    }
    text(&out)
}

// =============================================================================================
// 6. Overlay isolation of image bundles

struct TarBuf(tar::Builder<Vec<u8>>);

impl TarBuf {
    fn new() -> Self {
        TarBuf(tar::Builder::new(Vec::new()))
    }
    fn entry(&mut self, p: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>) {
        let mut h = tar::Header::new_gnu();
        h.set_path(p).expect("path");
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(946_684_800);
        h.set_uid(0);
        h.set_gid(0);
        if let Some(l) = link {
            h.set_link_name(l).expect("link");
        }
        h.set_cksum();
        self.0.append(&h, data).expect("append");
    }
    fn dir(&mut self, p: &str, mode: u32) -> &mut Self {
        self.entry(p, tar::EntryType::Directory, mode, &[], None);
        self
    }
    fn file(&mut self, p: &str, data: &[u8], mode: u32) -> &mut Self {
        self.entry(p, tar::EntryType::Regular, mode, data, None);
        self
    }
    fn symlink(&mut self, p: &str, target: &str) -> &mut Self {
        self.entry(p, tar::EntryType::Symlink, 0o777, &[], Some(target));
        self
    }
    fn done(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.0, tar::Builder::new(Vec::new()))
            .into_inner()
            .expect("finish tar")
    }
}

/// A two-layer docker-archive: busybox plus test files, then a layer that whites out
/// `/data/gone` and adds `/etc/top`.
fn two_layer_image() -> Vec<u8> {
    let mut base = TarBuf::new();
    base.dir("bin", 0o755).file(
        "bin/busybox",
        &fs::read("/bin/busybox").expect("read busybox"),
        0o755,
    );
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for a in text(&list.stdout).lines() {
        if !a.is_empty() && a != "busybox" {
            base.symlink(&format!("bin/{a}"), "busybox");
        }
    }
    base.dir("etc", 0o755)
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        .file("etc/group", b"root:x:0:\n", 0o644)
        .file("etc/base-file", b"base\n", 0o644)
        .dir("data", 0o755)
        .file("data/gone", b"hidden by the top layer\n", 0o644)
        .file("data/keep", b"kept\n", 0o644)
        .dir("tmp", 0o1777)
        .dir("proc", 0o755)
        .dir("sys", 0o755)
        .dir("dev", 0o755)
        .dir("root", 0o700);
    let l1 = base.done();
    let l2 = TarBuf::new()
        .dir("data", 0o755)
        .file("data/.wh.gone", b"", 0o644)
        .dir("etc", 0o755)
        .file("etc/top", b"top\n", 0o644)
        .done();
    let digest = |b: &[u8]| format!("sha256:{}", sha256_hex(b));
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": minid::engine::image::host_arch(),
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [digest(&l1), digest(&l2)]},
    }))
    .expect("config");
    let cfg_name = format!("{}.json", sha256_hex(&cfg));
    let p1 = format!("{}/layer.tar", sha256_hex(&l1));
    let p2 = format!("{}/layer.tar", sha256_hex(&l2));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": cfg_name, "RepoTags": ["lifecycle/layers:1"], "Layers": [p1, p2],
    }]))
    .expect("manifest");
    TarBuf::new()
        .file(&cfg_name, &cfg, 0o644)
        .file(&p1, &l1, 0o644)
        .file(&p2, &l2, 0o644)
        .file("manifest.json", &manifest, 0o644)
        .done()
}

/// An image bundle; `Drop` unbundles it (unmount, remove the snapshot).
struct ImageBundle {
    state: PathBuf,
    dir: PathBuf,
}

impl ImageBundle {
    fn new(state: &Path, dir: PathBuf, key: &str, cmd: &[&str]) -> ImageBundle {
        let o = run_to_files({
            let mut c = Command::new(MINID);
            c.arg("--state-dir")
                .arg(state)
                .args(["image", "bundle", "--key", key, "lifecycle/layers:1"])
                .arg(&dir)
                .args(cmd);
            c
        });
        assert_eq!(o.code, Some(0), "image bundle: {}", o.describe());
        ImageBundle {
            state: state.to_path_buf(),
            dir,
        }
    }
}

impl Drop for ImageBundle {
    fn drop(&mut self) {
        if self.dir.join("snapshot.json").exists() {
            let o = run_to_files({
                let mut c = Command::new(MINID);
                c.arg("--state-dir")
                    .arg(&self.state)
                    .args(["image", "unbundle"])
                    .arg(&self.dir);
                c
            });
            if o.code != Some(0) {
                eprintln!("cleanup: unbundle {}: {}", self.dir.display(), o.describe());
            }
        }
    }
}

/// sha256 of every file (and symlink target) under `dir`, by relative path.
fn tree_digest(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(d).expect("read_dir").flatten() {
            let p = e.path();
            let rel = p.strip_prefix(base).expect("prefix").display().to_string();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                out.insert(rel, "dir".into());
                walk(base, &p, out);
            } else if ft.is_symlink() {
                out.insert(
                    rel,
                    format!("-> {}", fs::read_link(&p).expect("readlink").display()),
                );
            } else if ft.is_file() {
                out.insert(rel, sha256_hex(&fs::read(&p).expect("read")));
            } else {
                out.insert(rel, format!("{ft:?}"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn image_containers_write_only_to_their_own_snapshot() {
    need_root!();
    use minid::engine::snapshot::Snapshotter;
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("store");
    let tar = tmp.path().join("img.tar");
    fs::write(&tar, two_layer_image()).expect("write image");
    let o = run_to_files({
        let mut c = Command::new(MINID);
        c.arg("--state-dir")
            .arg(&state)
            .args(["image", "import"])
            .arg(&tar);
        c
    });
    assert_eq!(o.code, Some(0), "import: {}", o.describe());
    let ka = unique("snap-a");
    let kb = unique("snap-b");
    let a = ImageBundle::new(
        &state,
        tmp.path().join("a"),
        &ka,
        &[
            "sh",
            "-c",
            "echo from-a > /etc/written-by-a && echo changed >> /etc/base-file \
             && rm /data/keep && cat /etc/base-file",
        ],
    );
    let b = ImageBundle::new(
        &state,
        tmp.path().join("b"),
        &kb,
        &[
            "sh",
            "-c",
            "test ! -e /etc/written-by-a && test ! -e /data/gone && cat /data/keep /etc/base-file /etc/top",
        ],
    );
    let store = minid::engine::image::ImageStore::open(&state).expect("open store");
    let snaps = store.snapshotter();
    let lowers: Vec<PathBuf> = snaps
        .mounts(&ka)
        .expect("mounts of a")
        .iter()
        .flat_map(|m| m.options.clone())
        .filter_map(|o| o.strip_prefix("lowerdir=").map(str::to_string))
        .flat_map(|l| l.split(':').map(PathBuf::from).collect::<Vec<_>>())
        .collect();
    assert_eq!(lowers.len(), 2, "two committed layers: {lowers:?}");
    let committed_before: Vec<_> = lowers.iter().map(|l| tree_digest(l)).collect();
    assert!(
        lowers.iter().any(|l| l.join("data/gone").exists()),
        "the base layer has data/gone"
    );
    assert!(
        !b.dir.join("rootfs/data/gone").exists(),
        "the whiteout hides it in the merged rootfs"
    );

    let rt = Rt::new();
    let ida = unique("img-a");
    let o = rt.exec(&["run", "--bundle", a.dir.to_str().expect("utf-8"), &ida]);
    assert_eq!(o.code, Some(0), "{}", o.describe());
    assert_eq!(text(&o.stdout), "base\nchanged\n");
    let idb = unique("img-b");
    let o = rt.exec(&["run", "--bundle", b.dir.to_str().expect("utf-8"), &idb]);
    assert_eq!(
        (o.code, text(&o.stdout)),
        (Some(0), "kept\nbase\ntop\n".to_string()),
        "B sees the image, not A's writes: {}",
        o.describe()
    );

    let upper_a = snaps.upper_dir(&ka).expect("upper a");
    let upper_b = snaps.upper_dir(&kb).expect("upper b");
    assert_eq!(
        fs::read_to_string(upper_a.join("etc/written-by-a")).expect("A's new file in A's upper"),
        "from-a\n"
    );
    assert_eq!(
        fs::read_to_string(upper_a.join("etc/base-file")).expect("copied up"),
        "base\nchanged\n"
    );
    let wh = fs::symlink_metadata(upper_a.join("data/keep")).expect("whiteout for rm");
    assert!(wh.file_type().is_char_device(), "rm leaves a whiteout");
    assert!(!upper_b.join("etc/written-by-a").exists());
    assert!(!upper_b.join("etc/base-file").exists());
    let committed_after: Vec<_> = lowers.iter().map(|l| tree_digest(l)).collect();
    assert_eq!(
        committed_before, committed_after,
        "committed layers are untouched"
    );
    drop(b);
    drop(a);
}

// =============================================================================================
// 7. Nothing is left behind

#[test]
fn run_leaves_nothing_behind() {
    need_root!();
    let rt = Rt::new();
    let b = Bundle::sh("while [ ! -e /tmp/go ]; do sleep 0.05; done");
    let id = unique("clean-run");
    let mut run = ChildGuard(Some(
        rt.cmd(&["run", "--bundle", &b.path_str(), &id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn run"),
    ));
    let rec = wait_for("the init's pid", Duration::from_secs(20), || {
        let v: Value =
            serde_json::from_slice(&fs::read(rt.dir(&id).join("state.json")).ok()?).ok()?;
        (v["pid"].as_i64()? > 0).then_some(v)
    });
    let cgroups = existing(&recorded_cgroup_dirs(&rec));
    assert!(!cgroups.is_empty(), "cgroups exist while it runs");
    let mut defaults = existing(&default_cgroup_dirs(&id));
    defaults.sort();
    defaults.dedup();
    assert!(
        !defaults.is_empty(),
        "the default cgroup path is where it is expected"
    );
    assert!(
        defaults.iter().all(|d| cgroups.contains(d)),
        "recorded {cgroups:?} vs default {defaults:?}"
    );
    let m = mounts_mentioning(&[&id, &b.path_str()]);
    assert!(m.is_empty(), "container mounts leak into the host: {m:#?}");
    fs::write(b.rootfs().join("tmp/go"), "").expect("release");
    let st = run.wait_timeout(Duration::from_secs(20));
    assert_eq!(st.code(), Some(0));
    assert_nothing_left(&rt, &id, &b, &cgroups);
}

#[test]
fn create_start_kill_delete_leaves_nothing_behind() {
    need_root!();
    let rt = Rt::new();
    let b = Bundle::sh("while :; do sleep 0.1; done");
    let id = unique("clean-det");
    let log = b.tmp.path().join("c.log");
    rt.start_logged(&b, &id, &log);
    let cgroups = existing(&recorded_cgroup_dirs(&rt.record(&id)));
    assert!(!cgroups.is_empty());
    rt.ok(&["kill", &id, "KILL"]);
    rt.wait_exit(&id, Duration::from_secs(10));
    rt.ok(&["delete", &id]);
    assert_nothing_left(&rt, &id, &b, &cgroups);
}

#[test]
fn failed_create_leaves_nothing_behind() {
    need_root!();
    let rt = Rt::new();
    let b = Bundle::busybox(&["/no/such/binary"]);
    let id = unique("clean-fail");
    let o = rt.exec(&["create", "--bundle", &b.path_str(), &id]);
    assert_eq!(o.code, Some(127), "{}", o.describe());
    assert!(o.stderr.contains("/no/such/binary"), "{}", o.describe());
    assert_nothing_left(&rt, &id, &b, &[]);

    let b = Bundle::sh("true");
    b.edit(|c| {
        c["mounts"]
            .as_array_mut()
            .expect("mounts")
            .push(serde_json::json!({
                "destination": "/mnt", "type": "nosuchfs", "source": "none"
            }))
    });
    let id = unique("clean-mnt");
    let o = rt.exec(&["create", "--bundle", &b.path_str(), &id]);
    assert_eq!(o.code, Some(1), "{}", o.describe());
    assert!(
        o.stderr.contains("/mnt"),
        "the error names the mount: {}",
        o.describe()
    );
    assert_nothing_left(&rt, &id, &b, &[]);
    let o = rt.exec(&["run", "--bundle", &b.path_str(), &id]);
    assert_eq!(o.code, Some(1), "{}", o.describe());
    assert_nothing_left(&rt, &id, &b, &[]);
}

// =============================================================================================
// 8. CLI errors

#[test]
fn malformed_and_unsupported_configs_are_refused_by_name() {
    need_root!();
    let rt = Rt::new();
    let b = Bundle::sh("true");
    fs::write(b.path().join("config.json"), "{ this is not json").expect("write");
    let id = unique("badjson");
    let o = rt.exec(&["create", "--bundle", &b.path_str(), &id]);
    assert_eq!(o.code, Some(1), "{}", o.describe());
    assert!(o.stderr.contains("config.json"), "{}", o.describe());
    assert!(!rt.dir(&id).exists());

    // What minid cannot honour is refused with the field's name, never ignored.
    for (field, value) in [
        ("intelRdt", serde_json::json!({"closID": "lc"})),
        ("personality", serde_json::json!({"domain": "LINUX32"})),
    ] {
        let b = Bundle::sh("true");
        b.edit(|c| c["linux"][field] = value);
        let o = rt.exec(&["run", "--bundle", &b.path_str(), &id]);
        assert_eq!(o.code, Some(1), "{field}: {}", o.describe());
        assert!(
            o.stderr.contains(&format!("linux.{field}")),
            "{field}: {}",
            o.describe()
        );
        assert!(!rt.dir(&id).exists());
    }
}

#[test]
fn cli_usage_errors_are_reported() {
    need_root!();
    let rt = Rt::new();
    let o = rt.exec(&["create", "--frobnicate", "x"]);
    assert!(o.code.is_some_and(|c| c != 0), "{}", o.describe());
    assert!(o.stderr.contains("--frobnicate"), "{}", o.describe());
    let o = rt.exec(&["frobnicate"]);
    assert!(o.code.is_some_and(|c| c != 0), "{}", o.describe());

    let b = Bundle::sh("while :; do sleep 0.1; done");
    let log = b.tmp.path().join("c.log");
    let logarg = log.to_str().expect("utf-8");
    let id = unique("dup");
    rt.ok(&[
        "create",
        "--bundle",
        &b.path_str(),
        "--container-log",
        logarg,
        &id,
    ]);
    let o = rt.exec(&[
        "create",
        "--bundle",
        &b.path_str(),
        "--container-log",
        logarg,
        &id,
    ]);
    assert_eq!(o.code, Some(1), "{}", o.describe());
    assert!(o.stderr.contains("already exists"), "{}", o.describe());
    assert_eq!(
        rt.status(&id),
        "created",
        "the first container is untouched"
    );

    // A root inside a directory of its own, so "nothing appeared beside it" is checkable.
    let outer = tempfile::tempdir().expect("tempdir");
    let root = outer.path().join("root");
    for bad in ["../x", "a/b", "-x"] {
        let mut c = Command::new(MINID);
        c.arg("runtime").arg("--root").arg(&root);
        c.args(["create", "--bundle", &b.path_str(), "--", bad]);
        let o = run_to_files(c);
        assert_eq!(o.code, Some(1), "{bad}: {}", o.describe());
        assert!(
            o.stderr.contains("invalid container id"),
            "{bad}: {}",
            o.describe()
        );
    }
    let beside: Vec<_> = std::fs::read_dir(outer.path())
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n != "root")
        .collect();
    assert!(
        beside.is_empty(),
        "nothing created outside the root: {beside:?}"
    );

    let o = rt.exec(&["--systemd-cgroup", "state", &id]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("--systemd-cgroup"), "{}", o.describe());
    let o = rt.exec(&["kill", &id, "SIGNOPE"]);
    assert_eq!(o.code, Some(1));
    assert!(o.stderr.contains("SIGNOPE"), "{}", o.describe());
}

#[test]
fn podman_style_sequence_through_a_minid_runtime_link() {
    need_root!();
    let rt = Rt::new();
    let tools = tempfile::tempdir().expect("tempdir");
    let link = tools.path().join("minid-runtime");
    symlink(MINID, &link).expect("symlink");
    let log = tools.path().join("runtime.log");
    let pid_file = tools.path().join("pid");
    let b = Bundle::sh("while :; do sleep 0.1; done");
    let id = unique("podman");
    let call = |args: &[&str]| {
        let mut c = Command::new(&link);
        c.arg("--root")
            .arg(rt.root())
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json"])
            .args(args);
        run_to_files(c)
    };
    let o = call(&[
        "create",
        "--bundle",
        &b.path_str(),
        "--pid-file",
        pid_file.to_str().expect("utf-8"),
        &id,
    ]);
    assert_eq!(o.code, Some(0), "{}", o.describe());
    let o = call(&["start", &id]);
    assert_eq!(o.code, Some(0), "{}", o.describe());
    let o = call(&["state", &id]);
    assert_eq!(o.code, Some(0), "{}", o.describe());
    let st: Value = serde_json::from_slice(&o.stdout).expect("state json");
    assert_eq!(st["status"], "running");
    assert_eq!(
        st["pid"].as_i64().expect("pid").to_string(),
        fs::read_to_string(&pid_file).expect("pid file").trim()
    );
    let o = call(&["delete", "--force", &id]);
    assert_eq!(o.code, Some(0), "{}", o.describe());
    assert!(!rt.dir(&id).exists());
    // An error is appended to --log as one JSON object per line.
    let o = call(&["state", &id]);
    assert_eq!(o.code, Some(1));
    let lines = fs::read_to_string(&log).expect("runtime log");
    let last: Value = serde_json::from_str(lines.lines().last().expect("a log line"))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {lines}"));
    assert_eq!(last["level"], "error");
    let msg = last["msg"].as_str().expect("msg");
    assert!(msg.contains("does not exist") && msg.contains(&id), "{msg}");
}

// =============================================================================================
// 9. Pause and resume

#[test]
fn pause_freezes_output_and_resume_continues_it() {
    need_root!();
    let rt = Rt::new();
    let b = Bundle::sh("i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done");
    let id = unique("pause");
    let log = b.tmp.path().join("c.log");
    rt.start_logged(&b, &id, &log);
    wait_for("output", Duration::from_secs(10), || {
        (read_log(&log).len() > 100).then_some(())
    });
    rt.ok(&["pause", &id]);
    assert_eq!(rt.status(&id), "paused");
    // "paused" is runc's extension of the OCI status; minid reports it the same way.
    std::thread::sleep(Duration::from_millis(150)); // output already in flight
    let frozen = read_log(&log).len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        read_log(&log).len(),
        frozen,
        "a paused container writes nothing"
    );
    let o = rt.exec(&["pause", &id]);
    assert_eq!(o.code, Some(1), "pausing twice: {}", o.describe());
    rt.ok(&["resume", &id]);
    assert_eq!(rt.status(&id), "running");
    wait_for("output after resume", Duration::from_secs(10), || {
        (read_log(&log).len() > frozen + 20).then_some(())
    });
    // A paused container can still be killed.
    rt.ok(&["pause", &id]);
    rt.ok(&["kill", &id, "KILL"]);
    let exit = rt.wait_exit(&id, Duration::from_secs(10));
    assert_eq!(exit["signal"], 9, "{exit}");
}

// =============================================================================================
// 10. Signal forwarding by `run`

#[test]
fn run_forwards_sigterm_to_the_container() {
    need_root!();
    let rt = Rt::new();
    let b = Bundle::sh("trap 'exit 5' TERM; echo ready; while :; do sleep 0.1; done");
    let id = unique("fwd");
    let mut run = run_until_ready(&rt, &b, &id);
    let pid = run.child().id() as i32;
    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM minid runtime run");
    let st = run.wait_timeout(Duration::from_secs(20));
    assert_eq!(
        st.code(),
        Some(5),
        "the container's trap decided the status"
    );
    assert!(!rt.dir(&id).exists());
}
