//! Harness for the end-to-end tests: a real `minid serve` on 127.0.0.1 with a random port and
//! a temporary state directory, driven through the `minictl` binary.
//!
//! The binaries are the workspace's own (`target/<profile>/minid`, `minictl`), built by
//! `cargo build --workspace --all-targets` before the tests run (tests/run does that). Tests
//! need root (namespaces, cgroups, overlay); without it they print `skipping: <reason>`.
//! Everything a test starts is undone when its [`Node`] is dropped, also on failure: every
//! container is removed through the agent (which unmounts, removes cgroups and stops shims),
//! then the agent is stopped by pid.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Returns why privileged tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root: minid serve needs root for namespaces, cgroups and overlay".into());
    }
    None
}

/// Skips the calling test (with a printed reason) where the machine cannot run it.
#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(r) = $crate::skip_reason() {
            eprintln!("skipping: {r}");
            return;
        }
    };
}

/// `target/<profile>`, where the workspace's binaries are.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test>-<hash>
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace first (cargo build --workspace --all-targets)",
        p.display()
    );
    p
}

/// The busybox image tar (built once per test process from the host's busybox-static).
pub fn busybox_tar(dir: &Path) -> PathBuf {
    let out = dir.join("busybox.tar");
    if !out.exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/build-busybox.sh");
        let st = Command::new(&script)
            .arg(&out)
            .stdout(Stdio::null())
            .status()
            .expect("run build-busybox.sh");
        assert!(st.success(), "{} failed", script.display());
    }
    out
}

/// A cluster PKI in `dir`: CA, a node certificate for 127.0.0.1 and `node1` (shared by every
/// test node), an operator `ops` and a viewer `watcher`.
pub fn cluster_pki(dir: &Path) {
    use minictl::pki::{self, Role, Subject, Validity};
    pki::create_ca(dir, "test cluster CA", Validity::days(30)).expect("create CA");
    issue_node(dir, false);
    for (name, role) in [("ops", Role::Operator), ("watcher", Role::Viewer)] {
        let (c, k) = pki::cert_paths(dir, name);
        pki::issue(
            dir,
            &Subject::Client {
                name: name.into(),
                role,
            },
            Validity::days(30),
            &c,
            &k,
            false,
        )
        .expect("issue client certificate");
    }
}

/// The node certificate of [`cluster_pki`] (127.0.0.1 and `node1`), new or replacing it.
pub fn issue_node(dir: &Path, overwrite: bool) {
    use minictl::pki::{self, Subject, Validity};
    let (c, k) = pki::cert_paths(dir, "node");
    pki::issue(
        dir,
        &Subject::Node {
            name: "node1".into(),
            dns: vec!["node1".into()],
            ips: vec!["127.0.0.1".parse().expect("address")],
        },
        Validity::days(30),
        &c,
        &k,
        overwrite,
    )
    .expect("issue node certificate");
}

/// The client identity `name` of [`cluster_pki`].
pub fn identity(dir: &Path, name: &str) -> Identity {
    let (c, k) = minictl::pki::cert_paths(dir, name);
    Identity {
        ca: dir.join("ca.pem"),
        cert: Some(c),
        key: Some(k),
    }
}

/// An agent serving with [`cluster_pki`]'s node certificate (and CRL), plus `extra` flags.
pub fn start_in_cluster(dir: &Path, extra: &[&str]) -> Node {
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let mut args = vec![
        "--tls-cert".into(),
        p("node.pem"),
        "--tls-key".into(),
        p("node-key.pem"),
        "--tls-ca".into(),
        p("ca.pem"),
        "--tls-crl".into(),
        p("crl.pem"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Node::start_with(args)
}

/// TLS files a client uses.
#[derive(Debug, Clone)]
pub struct Identity {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Asserts that minictl `args` succeeded (naming its status and stderr if not); its stdout.
pub fn succeeded(out: &Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "minictl {args:?} failed ({:?}): {}",
        out.status.code(),
        stderr(out)
    );
    stdout(out)
}

/// minictl against a cluster inventory, with `home` as HOME (no default inventory or config
/// of the user's) and no MINICTL_* variables.
pub fn ctl_cluster(home: &Path, inventory: &Path, args: &[&str]) -> Output {
    Command::new(bin("minictl"))
        .env_remove("MINICTL_TLS_CA")
        .env_remove("MINICTL_TLS_CERT")
        .env_remove("MINICTL_TLS_KEY")
        .env_remove("MINICTL_NODE")
        .env_remove("MINICTL_CLUSTER")
        .env("HOME", home)
        .arg("--cluster")
        .arg(inventory)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run minictl")
}

/// A private bridge network for one test agent: bridge `mte<n>`, subnet `10.199.<n>.0/24`,
/// nftables table `minie2e<n>`. A lock file holds slot `n`, so test processes running at
/// once never share one; the bridge and the table are removed on drop (after the agent, which
/// removed its containers' veths and namespaces).
pub struct NetSlot {
    pub n: u32,
    _lock: std::fs::File,
}

impl NetSlot {
    pub fn take() -> NetSlot {
        let dir = Path::new("/tmp/mini-e2e-net");
        std::fs::create_dir_all(dir).expect("lock dir");
        for n in 0..250 {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("{n}.lock")))
                .expect("lock file");
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor we own; the lock lives as long as the file.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                let slot = NetSlot { n, _lock: f };
                slot.clean();
                return slot;
            }
        }
        panic!("no free e2e network slot");
    }

    pub fn bridge(&self) -> String {
        format!("mte{}", self.n)
    }

    pub fn table(&self) -> String {
        format!("minie2e{}", self.n)
    }

    pub fn subnet(&self) -> String {
        format!("10.199.{}.0/24", self.n)
    }

    pub fn serve_args(&self) -> Vec<String> {
        vec![
            "--bridge".into(),
            self.bridge(),
            "--subnet".into(),
            self.subnet(),
            "--nft-table".into(),
            self.table(),
        ]
    }

    /// Removes the slot's bridge and table (left by a crashed earlier run, or ours).
    fn clean(&self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.table()])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for NetSlot {
    fn drop(&mut self) {
        self.clean();
    }
}

/// A running `minid serve`.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub run: PathBuf,
    pub port: u16,
    pub child: Option<Child>,
    /// Extra `serve` flags (TLS files) used at every (re)start.
    pub serve_args: Vec<String>,
    pub log: PathBuf,
    /// The operator identity for `ctl` and clean-up, when not the development PKI's.
    pub operator: Option<Identity>,
    /// The node's private bridge network (dropped after the agent stops: fields drop after
    /// `Drop::drop`).
    pub net: Option<NetSlot>,
}

impl Node {
    /// Starts an agent with the development PKI and imports the busybox image as `busybox`.
    pub fn start() -> Node {
        let n = Node::start_with(Vec::new());
        let tar = busybox_tar(n.dir.path());
        let out = n.ctl(&["import", tar.to_str().expect("utf-8 path"), "busybox"]);
        assert!(out.status.success(), "import: {}", stderr(&out));
        n
    }

    /// Starts an agent with extra `serve` flags and no image. Unless the flags set up the
    /// network themselves, the agent gets a private bridge network ([`NetSlot`]).
    pub fn start_with(mut serve_args: Vec<String>) -> Node {
        let net = if serve_args
            .iter()
            .any(|a| a == "--bridge" || a == "--no-bridge")
        {
            None
        } else {
            let slot = NetSlot::take();
            serve_args.extend(slot.serve_args());
            Some(slot)
        };
        let dir = tempfile::Builder::new()
            .prefix("mini-e2e-")
            .tempdir()
            .expect("tempdir");
        let state = dir.path().join("state");
        let run = dir.path().join("run");
        let log = dir.path().join("minid.log");
        let mut n = Node {
            state,
            run,
            port: 0,
            child: None,
            serve_args,
            log,
            dir,
            operator: None,
            net,
        };
        n.launch();
        n
    }

    /// (Re)starts the agent process on the same state (and port, after the first start).
    pub fn launch(&mut self) {
        let listen = format!("127.0.0.1:{}", self.port);
        let logf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut child = Command::new(bin("minid"))
            .arg("--state-dir")
            .arg(&self.state)
            .arg("serve")
            .arg("--listen")
            .arg(&listen)
            .arg("--run-root")
            .arg(&self.run)
            .args(&self.serve_args)
            .stdout(Stdio::piped())
            .stderr(logf)
            .spawn()
            .expect("start minid serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut r = BufReader::new(stdout);
        let read = r.read_line(&mut line);
        if read.is_err() || !line.starts_with("minid listening on ") {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "minid did not start: {line:?}\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        self.port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        self.child = Some(child);
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pki(&self) -> PathBuf {
        self.state.join("pki")
    }

    /// The operator identity: the one set in `operator`, or the development PKI's.
    pub fn admin(&self) -> Identity {
        if let Some(id) = &self.operator {
            return id.clone();
        }
        Identity {
            ca: self.pki().join("ca.pem"),
            cert: Some(self.pki().join("admin.pem")),
            key: Some(self.pki().join("admin-key.pem")),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// SIGKILL to the agent (only the agent: containers live on under their shims).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM to the agent; waits up to `timeout` for it to exit. None: it did not.
    pub fn stop(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let end = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() > end {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
        }
    }

    /// minictl as the development operator.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_as(&self.admin(), &self.addr(), args)
    }

    /// minictl as the operator, started in the background with its stdout piped.
    pub fn ctl_spawn(&self, args: &[&str]) -> Child {
        self.command(&self.admin(), &self.addr(), args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start minictl")
    }

    /// minictl as the operator, to be spawned with stdio of the caller's choosing.
    pub fn ctl_command(&self, args: &[&str]) -> Command {
        self.command(&self.admin(), &self.addr(), args)
    }

    fn command(&self, id: &Identity, addr: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("minictl"));
        cmd.env_remove("MINICTL_TLS_CA")
            .env_remove("MINICTL_TLS_CERT")
            .env_remove("MINICTL_TLS_KEY")
            .env("HOME", self.dir.path())
            .arg("--node")
            .arg(addr)
            .arg("--tls-ca")
            .arg(&id.ca);
        if let (Some(c), Some(k)) = (&id.cert, &id.key) {
            cmd.arg("--tls-cert").arg(c).arg("--tls-key").arg(k);
        }
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    /// minictl with an identity against an address.
    pub fn ctl_as(&self, id: &Identity, addr: &str, args: &[&str]) -> Output {
        self.command(id, addr, args).output().expect("run minictl")
    }

    /// Runs minictl and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        succeeded(&self.ctl(args), args)
    }

    /// `inspect` of one container as JSON.
    pub fn inspect(&self, c: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", c]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
        v[0].clone()
    }

    /// Polls `f` until it holds or `timeout` passes.
    pub fn until(&self, timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}");
    }

    /// Imports busybox and starts the two containers the metrics tests measure: `busy`, a
    /// shell loop limited to half a CPU, and `mem`, which keeps 32 MiB in a tmpfs file (and
    /// a 128 MiB limit). Returns `busy`'s id.
    pub fn start_load(&self) -> String {
        let tar = busybox_tar(self.dir.path());
        self.ok(&["import", tar.to_str().expect("utf-8 path"), "busybox"]);
        let busy = self.ok(&[
            "run",
            "-d",
            "--name",
            "busy",
            "--cpus",
            "0.5",
            "busybox",
            "sh",
            "-c",
            "while :; do :; done",
        ]);
        self.ok(&[
            "run",
            "-d",
            "--name",
            "mem",
            "-m",
            "128m",
            "busybox",
            "sh",
            "-c",
            "dd if=/dev/zero of=/dev/shm/fill bs=1M count=32 2>/dev/null; exec sleep 600",
        ]);
        busy.trim().to_string()
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.child.is_none() {
            self.launch();
        }
        // Remove every container through the agent: it kills them, waits for their shims,
        // unmounts their root filesystems and removes their cgroups.
        let out = self.ctl(&["ps", "-aq", "--no-trunc"]);
        for id in stdout(&out).lines().filter(|l| !l.is_empty()) {
            let _ = self.ctl(&["rm", "-f", id]);
        }
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let end = Instant::now() + Duration::from_secs(5);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() > end => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
        // Image layers are mounted only inside containers; nothing else is mounted here.
    }
}

/// minictl on a pty of ours, as it runs in a person's terminal.
pub struct PtySession {
    pub child: Child,
    master: std::fs::File,
    seen: Vec<u8>,
}

impl PtySession {
    /// Spawns `cmd` with a new pty (of `rows` x `cols`) as its stdin, stdout and stderr.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> PtySession {
        let pty = nix::pty::openpty(
            Some(&nix::pty::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            }),
            None,
        )
        .expect("openpty");
        let slave = std::fs::File::from(pty.slave);
        cmd.stdin(slave.try_clone().expect("dup"))
            .stdout(slave.try_clone().expect("dup"))
            .stderr(slave);
        let child = cmd.spawn().expect("spawn on a pty");
        drop(cmd);
        PtySession {
            child,
            master: std::fs::File::from(pty.master),
            seen: Vec::new(),
        }
    }

    /// Everything read so far, once `want` is among it (or after 10 s).
    pub fn read_until(&mut self, want: &str) -> String {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && !String::from_utf8_lossy(&self.seen).contains(want) {
            let mut fds = [libc::pollfd {
                fd: self.master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: poll on one pollfd we own.
            if unsafe { libc::poll(fds.as_mut_ptr(), 1, 100) } > 0 {
                let mut b = [0u8; 4096];
                match self.master.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => self.seen.extend_from_slice(&b[..k]),
                }
            }
        }
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    pub fn write(&mut self, b: &[u8]) {
        use std::io::Write;
        self.master.write_all(b).expect("write to the pty");
    }

    /// Waits (reading, so the child never blocks on a full pty) for the exit status.
    pub fn wait(&mut self) -> std::process::ExitStatus {
        let end = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(Instant::now() < end, "the session did not end");
            let _ = self.read_until("\u{0}");
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
