//! Isolation and resource limits of `minid runtime`, as a user of the container would notice
//! them: what the container sees (pid 1, its hostname, its mounts, only `lo`, its capabilities),
//! what the kernel enforces (memory, pids, CPU quota, devices, read-only paths) and what is left
//! on the host afterwards (nothing: no mount, no cgroup, no state directory).
//!
//! Every test builds its own busybox bundle and uses a private `--root`; ids are unique per test
//! and process. Needs root; prints `skipping: <reason>` otherwise.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Lines};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::{need_root, text, unique_id, Bundle, ContainerGuard, Runtime};
use serde_json::{json, Value};

/// The mask of Docker's 14 default capabilities (the default spec's set).
const DOCKER_CAPS: &str = "00000000a80425fb";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A foreground `run --keep` that finished, with its state and exit records; the container has
/// been deleted and checked for leftovers.
struct Ran {
    status: i32,
    stdout: String,
    stderr: String,
    exit: Value,
    state: Value,
}

/// `run --keep --bundle B ID`, then reads state.json and exit.json, deletes the container and
/// asserts nothing is left behind.
fn run_keep(rt: &Runtime, bundle: &Bundle, id: &str) -> Ran {
    let _guard = ContainerGuard::new(rt, id);
    let bundle_arg = bundle.path().to_str().expect("utf-8 bundle path");
    let out = rt.output(&["run", "--keep", "--bundle", bundle_arg, id]);
    let state = rt.read_json(id, "state.json").unwrap_or_else(|| {
        panic!(
            "no state.json after run --keep: {}\nstderr: {}",
            out.status,
            text(&out.stderr)
        )
    });
    let exit = rt
        .read_json(id, "exit.json")
        .expect("exit.json after run --keep");
    rt.ok(&["delete", id]);
    assert_no_leftovers(rt, bundle.path(), id, &state);
    Ran {
        status: out.status.code().expect("run exited normally"),
        stdout: text(&out.stdout),
        stderr: text(&out.stderr),
        exit,
        state,
    }
}

/// The container's cgroup directories on the host, from state.json's `cgroup` record.
fn cgroup_dirs(state: &Value) -> Vec<PathBuf> {
    let cg = &state["cgroup"];
    let path = cg["path"].as_str().expect("state.json cgroup.path");
    if state["cgroup_version"] == "V2" {
        return vec![Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'))];
    }
    let mut dirs = Vec::new();
    for ctrl in [
        "memory", "cpu", "cpuacct", "pids", "devices", "freezer", "blkio", "cpuset",
    ] {
        let hier = Path::new("/sys/fs/cgroup").join(ctrl);
        if !hier.is_dir() {
            continue;
        }
        let p = cg["v1"][ctrl].as_str().unwrap_or(path);
        dirs.push(hier.join(p.trim_start_matches('/')));
    }
    dirs
}

/// Item 16: no mount naming the bundle or the id, no cgroup directory, no state directory.
fn assert_no_leftovers(rt: &Runtime, bundle: &Path, id: &str, state: &Value) {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    let bundle_s = bundle.to_str().expect("utf-8");
    for line in mountinfo.lines() {
        assert!(
            !line.contains(bundle_s) && !line.contains(id),
            "mount left behind by {id}: {line}"
        );
    }
    for dir in cgroup_dirs(state) {
        assert!(!dir.exists(), "cgroup left behind: {}", dir.display());
    }
    assert!(
        !rt.state_dir(id).exists(),
        "state dir left behind: {}",
        rt.state_dir(id).display()
    );
}

/// A foreground `run --keep` still running, stdout piped so the test can wait for a line the
/// container prints. Drop kills the container (by the runtime, i.e. its init) and reaps `run`.
struct Running<'a> {
    rt: &'a Runtime,
    id: String,
    child: Option<Child>,
    lines: Lines<BufReader<ChildStdout>>,
}

impl<'a> Running<'a> {
    fn spawn(rt: &'a Runtime, bundle: &Bundle, id: &str) -> Running<'a> {
        let mut child = rt
            .command(&["run", "--keep", "--bundle"])
            .arg(bundle.path())
            .arg(id)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn minid runtime run");
        let stdout = child.stdout.take().expect("piped stdout");
        Running {
            rt,
            id: id.to_string(),
            child: Some(child),
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// Reads stdout lines until one equals `marker`; returns the lines before it.
    fn until(&mut self, marker: &str) -> Vec<String> {
        let mut seen = Vec::new();
        for line in self.lines.by_ref() {
            let line = line.expect("read container stdout");
            if line == marker {
                return seen;
            }
            seen.push(line);
        }
        panic!("container exited before printing {marker:?}; it printed {seen:?}");
    }

    fn state_json(&self) -> Value {
        self.rt
            .read_json(&self.id, "state.json")
            .expect("state.json of a running container")
    }

    /// `kill ID KILL`, then waits for `run` and returns its exit code.
    fn kill_and_wait(&mut self) -> i32 {
        self.rt.ok(&["kill", &self.id, "KILL"]);
        let mut child = self.child.take().expect("not waited yet");
        let status = child.wait().expect("wait for run");
        status.code().expect("run exited normally")
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.rt.output(&["kill", &self.id, "KILL"]);
            let _ = child.wait();
        }
        if self.rt.state_dir(&self.id).exists() {
            let _ = self.rt.output(&["delete", "--force", &self.id]);
        }
    }
}

/// A host tmpfs mount on a temp dir, unmounted (lazily) on drop.
struct HostTmpfs {
    dir: tempfile::TempDir,
}

impl HostTmpfs {
    fn mount(source: &str) -> HostTmpfs {
        let dir = tempfile::Builder::new()
            .prefix("minid-hostmnt-")
            .tempdir()
            .expect("temp dir");
        nix::mount::mount(
            Some(source),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .expect("mount tmpfs on the host");
        HostTmpfs { dir }
    }
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A host process with a unique argv[0], killed and reaped on drop.
struct Marker(Child);

impl Drop for Marker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `Cap*:` field of a /proc/<pid>/status text.
fn status_field<'t>(status: &'t str, name: &str) -> &'t str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
        .trim()
}

/// Adds a bind mount of `source` at `dest` to the spec.
fn add_bind(bundle: &mut Bundle, source: &Path, dest: &str, ro: bool) {
    let mut options = vec!["rbind"];
    if ro {
        options.push("ro");
    }
    bundle.config["mounts"]
        .as_array_mut()
        .expect("mounts array")
        .push(json!({
            "destination": dest,
            "type": "bind",
            "source": source,
            "options": options,
        }));
}

/// Adds a tmpfs mount at `dest` to the spec.
fn add_tmpfs(bundle: &mut Bundle, dest: &str, options: &[&str]) {
    bundle.config["mounts"]
        .as_array_mut()
        .expect("mounts array")
        .push(json!({
            "destination": dest,
            "type": "tmpfs",
            "source": "tmpfs",
            "options": options,
        }));
}

fn host_hostname() -> String {
    nix::unistd::gethostname()
        .expect("gethostname")
        .into_string()
        .expect("utf-8 hostname")
}

/// CPU time (ns) the cgroup used so far (v1 cpuacct.usage or v2 cpu.stat usage_usec).
fn cgroup_cpu_ns(state: &Value) -> u64 {
    let cg = &state["cgroup"];
    let path = cg["path"].as_str().expect("cgroup.path");
    if state["cgroup_version"] == "V2" {
        let p = Path::new("/sys/fs/cgroup")
            .join(path.trim_start_matches('/'))
            .join("cpu.stat");
        let stat = fs::read_to_string(&p).expect("read cpu.stat");
        let usec: u64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .expect("usage_usec")
            .trim()
            .parse()
            .expect("number");
        return usec * 1000;
    }
    let p = cg["v1"]["cpuacct"].as_str().unwrap_or(path);
    let file = Path::new("/sys/fs/cgroup/cpuacct")
        .join(p.trim_start_matches('/'))
        .join("cpuacct.usage");
    fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("read {}: {e}", file.display()))
        .trim()
        .parse()
        .expect("cpuacct.usage is a number")
}

/// Fraction of one core a busy loop gets over `window` with the given CPU resources.
fn busy_loop_share(name: &str, cpu: Option<Value>, window: Duration) -> f64 {
    let rt = Runtime::new();
    let id = unique_id(name);
    let mut bundle = Bundle::sh("echo READY; while :; do :; done");
    if let Some(cpu) = cpu {
        bundle.config["linux"]["resources"]["cpu"] = cpu;
    }
    bundle.write_config();
    let mut running = Running::spawn(&rt, &bundle, &id);
    running.until("READY");
    let state = running.state_json();
    // Let the loop settle into its quota periods before measuring.
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let u0 = cgroup_cpu_ns(&state);
    std::thread::sleep(window);
    let u1 = cgroup_cpu_ns(&state);
    let wall = t0.elapsed();
    let status = running.kill_and_wait();
    assert_eq!(status, 137, "killed busy loop exits 128+9");
    rt.ok(&["delete", &id]);
    assert_no_leftovers(&rt, bundle.path(), &id, &state);
    (u1 - u0) as f64 / wall.as_nanos() as f64
}

/// The v1 (or v2) cgroup directories `minid` would use for `id` when started by this process:
/// `<own cgroup>/minid/<id>` per hierarchy.
fn expected_cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let own = fs::read_to_string("/proc/self/cgroup").expect("read /proc/self/cgroup");
    let mut dirs = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next(), parts.next(), parts.next());
        let (Some(ctrls), Some(path)) = (ctrls, path) else {
            continue;
        };
        let base = if ctrls.is_empty() {
            PathBuf::from("/sys/fs/cgroup/unified")
        } else if let Some(first) = ctrls.split(',').next() {
            Path::new("/sys/fs/cgroup").join(first.trim_start_matches("name="))
        } else {
            continue;
        };
        dirs.push(
            base.join(path.trim_start_matches('/'))
                .join("minid")
                .join(id),
        );
    }
    dirs
}

/// chown -hR uid:gid.
fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).expect("lchown");
    let meta = fs::symlink_metadata(path).expect("stat");
    if meta.is_dir() {
        for entry in fs::read_dir(path).expect("read dir") {
            chown_tree(&entry.expect("dir entry").path(), uid, gid);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. pid namespace
// ---------------------------------------------------------------------------------------------

#[test]
fn pid_namespace_hides_host_processes() {
    if !need_root("pid namespace") {
        return;
    }
    let marker_name = format!("minid-marker-{}", unique_id("pidns"));
    let marker = Marker(
        Command::new("sleep")
            .arg0(&marker_name)
            .arg("300")
            .spawn()
            .expect("spawn marker sleep"),
    );
    let rt = Runtime::new();
    let id = unique_id("pidns");
    let bundle = Bundle::sh(
        "echo \"pid=$$\"; echo PS; ps -o pid,args; echo END; cat /proc/[0-9]*/cmdline | tr '\\0' ' '",
    );
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    assert!(ran.stdout.lines().next() == Some("pid=1"), "{}", ran.stdout);
    let ps: Vec<&str> = ran
        .stdout
        .lines()
        .skip_while(|l| *l != "PS")
        .skip(2)
        .take_while(|l| *l != "END")
        .collect();
    // sh (pid 1), ps, and at most the subshell around it: nothing of the host.
    assert!(
        !ps.is_empty() && ps.len() <= 3,
        "container sees more than its own processes: {ps:?}"
    );
    assert!(
        !ran.stdout.contains(&marker_name),
        "host marker process visible inside: {}",
        ran.stdout
    );
    assert!(ran.state["pid"].as_i64().expect("pid") > 1);
    // The marker is visible on the host, so its absence inside means something. (Read after
    // the run: right after spawn the exec may not have set up the new argv yet.)
    let host_cmdline =
        fs::read(format!("/proc/{}/cmdline", marker.0.id())).expect("marker cmdline");
    assert!(
        text(&host_cmdline).contains(&marker_name),
        "marker cmdline: {:?}, stat {:?}",
        text(&host_cmdline),
        fs::read_to_string(format!("/proc/{}/stat", marker.0.id()))
    );
}

// ---------------------------------------------------------------------------------------------
// 2. uts namespace
// ---------------------------------------------------------------------------------------------

#[test]
fn uts_namespace_has_own_hostname() {
    if !need_root("uts namespace") {
        return;
    }
    let before = host_hostname();
    let rt = Runtime::new();
    let id = unique_id("uts");
    let want = format!("h{}", std::process::id());
    let mut bundle = Bundle::sh("hostname; cat /proc/sys/kernel/hostname");
    bundle.config["hostname"] = want.clone().into();
    bundle.write_config();
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines, vec![want.as_str(), want.as_str()]);
    assert_ne!(before, want);
    assert_eq!(host_hostname(), before, "host hostname changed");
}

// ---------------------------------------------------------------------------------------------
// 3. mount namespace and pivot_root
// ---------------------------------------------------------------------------------------------

#[test]
fn mount_namespace_hides_host_mounts_and_old_root() {
    if !need_root("mount namespace") {
        return;
    }
    let id = unique_id("mntns");
    // Not derived from the id: the leftover check looks for the id in the host's mountinfo.
    let source = format!("minid-src-{}", unique_id("hostsrc"));
    let host_mnt = HostTmpfs::mount(&source);
    let host_dir = host_mnt.dir.path().to_str().expect("utf-8").to_string();
    let host_mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(host_mountinfo.contains(&source), "host tmpfs is mounted");

    let rt = Runtime::new();
    let bundle = Bundle::sh(
        "cat /marker; \
         test -e /etc/hostname && echo HOST-ETC-HOSTNAME; \
         test -e /usr && echo HOST-USR; \
         test -e /proc/1/root/usr && echo HOST-USR-VIA-PROC; \
         cd /..; echo \"cwd=$(pwd)\"; ls -A /; \
         echo MOUNTINFO; cat /proc/self/mountinfo",
    );
    fs::write(bundle.rootfs().join("marker"), format!("rootfs-of-{id}\n")).expect("marker");
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    assert_eq!(
        ran.stdout.lines().next(),
        Some(format!("rootfs-of-{id}").as_str())
    );
    for leak in ["HOST-ETC-HOSTNAME", "HOST-USR", "HOST-USR-VIA-PROC"] {
        assert!(
            !ran.stdout.lines().any(|l| l == leak),
            "host root reachable ({leak}): {}",
            ran.stdout
        );
    }
    assert!(ran.stdout.contains("cwd=/\n"), "{}", ran.stdout);
    let mountinfo: Vec<&str> = ran
        .stdout
        .lines()
        .skip_while(|l| *l != "MOUNTINFO")
        .skip(1)
        .collect();
    assert!(!mountinfo.is_empty());
    for line in &mountinfo {
        assert!(
            !line.contains(&source) && !line.contains(&host_dir),
            "host mount visible inside: {line}"
        );
        let mount_point = line.split(' ').nth(4).expect("mount point field");
        assert!(
            mount_point == "/"
                || ["/proc", "/dev", "/sys"]
                    .iter()
                    .any(|p| mount_point == *p || mount_point.starts_with(&format!("{p}/"))),
            "unexpected mount (old root?) inside: {line}"
        );
    }
    assert!(
        mountinfo.iter().any(|l| l.split(' ').nth(4) == Some("/")),
        "no root mount: {mountinfo:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. network namespace
// ---------------------------------------------------------------------------------------------

#[test]
fn network_namespace_has_only_loopback_up() {
    if !need_root("network namespace") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("netns");
    let bundle = Bundle::sh(
        "ls /sys/class/net; echo FLAGS; cat /sys/class/net/lo/flags; \
         echo IP; ip -o link; echo NS; readlink /proc/self/ns/net",
    );
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let mut sections = ran.stdout.split("FLAGS\n");
    let ifaces = sections.next().expect("interfaces");
    assert_eq!(ifaces.trim(), "lo", "interfaces inside: {ifaces}");
    let rest = sections.next().expect("flags section");
    let flags = rest.lines().next().expect("flags");
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).expect("hex flags");
    assert_eq!(flags & 1, 1, "lo is not UP (flags {flags:#x})");
    let ip: Vec<&str> = rest
        .lines()
        .skip_while(|l| *l != "IP")
        .skip(1)
        .take_while(|l| *l != "NS")
        .collect();
    assert_eq!(ip.len(), 1, "ip link: {ip:?}");
    assert!(ip[0].contains("lo:") && ip[0].contains(",UP"), "{ip:?}");
    let inside_ns = ran.stdout.lines().last().expect("ns line");
    let host_ns = fs::read_link("/proc/self/ns/net").expect("host net ns");
    assert_ne!(inside_ns, host_ns.to_str().expect("utf-8"));
}

// ---------------------------------------------------------------------------------------------
// 5. memory limit
// ---------------------------------------------------------------------------------------------

#[test]
fn memory_limit_oom_kills_the_container() {
    if !need_root("memory cgroup") {
        return;
    }
    let limit: u64 = 32 << 20;
    let rt = Runtime::new();
    let id = unique_id("oom");
    // ash keeps a command substitution's output in its own (anonymous) memory: 128 MiB of it.
    let mut bundle = Bundle::sh(
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; \
         x=$(head -c 134217728 /dev/zero | tr '\\0' a); echo \"survived ${#x}\"",
    );
    let mut memory = json!({ "limit": limit });
    let memsw = Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        || !Path::new("/sys/fs/cgroup/memory").exists();
    if memsw {
        memory["swap"] = limit.into();
    }
    bundle.config["linux"]["resources"]["memory"] = memory;
    bundle.write_config();
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(
        ran.stdout.lines().next(),
        Some(limit.to_string().as_str()),
        "limit inside; stderr: {}",
        ran.stderr
    );
    assert!(!ran.stdout.contains("survived"), "{}", ran.stdout);
    assert_eq!(ran.status, 137, "stderr: {}", ran.stderr);
    assert_eq!(ran.exit["status"], 137, "{}", ran.exit);
    assert_eq!(ran.exit["signal"], 9, "{}", ran.exit);
    assert_eq!(ran.exit["oom_killed"], true, "{}", ran.exit);
}

#[test]
fn memory_without_limit_is_not_oom_killed() {
    if !need_root("memory cgroup") {
        return;
    }
    // The control for the test above: the same allocation survives without a limit.
    let rt = Runtime::new();
    let id = unique_id("nooom");
    let bundle =
        Bundle::sh("x=$(head -c 134217728 /dev/zero | tr '\\0' a); echo \"survived ${#x}\"");
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    assert_eq!(ran.stdout.trim(), "survived 134217728");
    assert_eq!(ran.exit["oom_killed"], false);
}

// ---------------------------------------------------------------------------------------------
// 6. pids limit
// ---------------------------------------------------------------------------------------------

#[test]
fn pids_limit_stops_a_fork_bomb() {
    if !need_root("pids cgroup") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("pids");
    // Only builtins after the bomb: the cgroup has no room left for another fork.
    let mut bundle = Bundle::sh(
        "sh -c 'i=0; while [ $i -lt 100 ]; do sleep 60 & i=$((i+1)); echo $i > /dev/shm/started; done' 2>/dev/shm/err; \
         read n < /dev/shm/started; \
         read c < /sys/fs/cgroup/pids/pids.current; read m < /sys/fs/cgroup/pids/pids.max; \
         echo \"started=$n current=$c max=$m\"; \
         while read l; do echo \"err: $l\"; done < /dev/shm/err; \
         echo READY; exec sleep 60",
    );
    bundle.config["linux"]["resources"]["pids"] = json!({ "limit": 20 });
    bundle.write_config();
    let mut running = Running::spawn(&rt, &bundle, &id);
    let before = running.until("READY");
    let state = running.state_json();
    let summary = before
        .iter()
        .find(|l| l.starts_with("started="))
        .unwrap_or_else(|| panic!("no summary: {before:?}"));
    let field = |k: &str| -> u32 {
        summary
            .split(' ')
            .find_map(|f| f.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {summary}"))
    };
    assert_eq!(field("max"), 20, "{summary}");
    let started = field("started");
    assert!(
        (10..20).contains(&started),
        "fork bomb started {started} processes under a limit of 20: {before:?}"
    );
    assert!(field("current") <= 20, "{summary}");
    assert!(
        before.iter().any(|l| l.contains("can't fork")),
        "no fork failure reported: {before:?}"
    );
    // The host can still fork.
    assert!(Command::new("true").status().expect("host fork").success());
    assert_eq!(running.kill_and_wait(), 137);
    let exit = rt.read_json(&id, "exit.json").expect("exit.json");
    assert_eq!(exit["signal"], 9, "{exit}");
    rt.ok(&["delete", &id]);
    assert_no_leftovers(&rt, bundle.path(), &id, &state);
}

// ---------------------------------------------------------------------------------------------
// 7. CPU quota
// ---------------------------------------------------------------------------------------------

#[test]
fn cpu_quota_holds_a_busy_loop_to_half_a_core() {
    if !need_root("cpu cgroup") {
        return;
    }
    // The lower bound and the control need a core to spare: other tests (or builds) may be
    // busy, so a round whose control run did not get a core is measured again.
    let window = Duration::from_secs(2);
    let mut rounds = Vec::new();
    for round in 0..3 {
        let limited = busy_loop_share(
            &format!("cpuq{round}"),
            Some(json!({ "quota": 50000, "period": 100000 })),
            window,
        );
        let free = busy_loop_share(&format!("cpufree{round}"), None, window);
        println!("busy loop: {limited:.3} of a core with quota 0.5, {free:.3} without");
        // The quota is a ceiling whatever the load.
        assert!(limited <= 0.65, "quota 0.5 gave {limited:.3} of a core");
        if free > 0.8 {
            assert!(
                limited >= 0.35,
                "quota 0.5 gave only {limited:.3} of a core"
            );
            return;
        }
        rounds.push((limited, free));
    }
    panic!("without quota the loop never got 0.8 of a core (machine busy?): {rounds:?}");
}

// ---------------------------------------------------------------------------------------------
// 8. user namespace
// ---------------------------------------------------------------------------------------------

#[test]
fn user_namespace_maps_root_to_an_unprivileged_host_uid() {
    if !need_root("user namespace") {
        return;
    }
    let host_base: u32 = 100000;
    let rt = Runtime::new();
    let id = unique_id("userns");
    let mut bundle = Bundle::sh("id -u; id -g; touch /tmp/created-inside");
    let mapping = json!([{ "containerID": 0, "hostID": host_base, "size": 65536 }]);
    bundle.config["linux"]["uidMappings"] = mapping.clone();
    bundle.config["linux"]["gidMappings"] = mapping;
    bundle.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({ "type": "user" }));
    bundle.config["root"]["readonly"] = false.into();
    bundle.write_config();
    chown_tree(&bundle.rootfs(), host_base, host_base);

    // What the container sees, and the owner of what it creates.
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"0"), "id -u inside: {lines:?}");
    assert_eq!(lines.get(1), Some(&"0"), "id -g inside: {lines:?}");
    let created = fs::metadata(bundle.rootfs().join("tmp/created-inside")).expect("file created");
    assert_eq!((created.uid(), created.gid()), (host_base, host_base));

    // What the host sees: a created container's init (its pid is recorded by `create`, which
    // `run` only records after the process may already run) already has its mapped ids.
    let id2 = unique_id("userns-host");
    let log = bundle.path().join("created.log");
    let _guard = ContainerGuard::new(&rt, &id2);
    rt.ok(&[
        "create",
        "--bundle",
        bundle.path().to_str().expect("utf-8"),
        "--container-log",
        log.to_str().expect("utf-8"),
        &id2,
    ]);
    let state = rt
        .read_json(&id2, "state.json")
        .expect("state.json after create");
    let pid = state["pid"].as_i64().expect("pid");
    assert!(pid > 0, "{state}");
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("init status");
    let uids: Vec<&str> = status_field(&status, "Uid").split_whitespace().collect();
    assert_eq!(uids, vec!["100000"; 4], "host view of the init's uids");
    let gids: Vec<&str> = status_field(&status, "Gid").split_whitespace().collect();
    assert_eq!(gids, vec!["100000"; 4], "host view of the init's gids");
    rt.ok(&["delete", "--force", &id2]);
    assert_no_leftovers(&rt, bundle.path(), &id2, &state);
}

// ---------------------------------------------------------------------------------------------
// 9. joining namespaces by path
// ---------------------------------------------------------------------------------------------

#[test]
fn joins_an_existing_network_and_uts_namespace_by_path() {
    if !need_root("namespaces") {
        return;
    }
    let rt = Runtime::new();
    let id_a = unique_id("join-a");
    let id_b = unique_id("join-b");
    let host_a = format!("a{}", std::process::id());
    let mut a = Bundle::busybox(&["sleep", "300"]);
    a.config["hostname"] = host_a.clone().into();
    a.write_config();
    let log = a.path().join("a.log");
    let _guard_a = ContainerGuard::new(&rt, &id_a);
    rt.ok(&[
        "create",
        "--bundle",
        a.path().to_str().expect("utf-8"),
        "--container-log",
        log.to_str().expect("utf-8"),
        &id_a,
    ]);
    rt.ok(&["start", &id_a]);
    assert_eq!(rt.state(&id_a)["status"], "running");
    let state_a = rt.read_json(&id_a, "state.json").expect("A state.json");
    let pid_a = state_a["pid"].as_i64().expect("pid");
    let net_a = fs::read_link(format!("/proc/{pid_a}/ns/net")).expect("A net ns");

    let mut b = Bundle::sh("hostname; readlink /proc/self/ns/net; readlink /proc/self/ns/uts");
    for ns in b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
    {
        match ns["type"].as_str() {
            Some("network") => ns["path"] = format!("/proc/{pid_a}/ns/net").into(),
            Some("uts") => ns["path"] = format!("/proc/{pid_a}/ns/uts").into(),
            _ => {}
        }
    }
    // A joined uts namespace keeps its hostname; setting one would change A's.
    b.config
        .as_object_mut()
        .expect("config object")
        .remove("hostname");
    b.write_config();
    let ran = run_keep(&rt, &b, &id_b);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&host_a.as_str()), "{lines:?}");
    assert_eq!(
        lines.get(1).copied(),
        Some(net_a.to_str().expect("utf-8")),
        "{lines:?}"
    );
    let uts_a = fs::read_link(format!("/proc/{pid_a}/ns/uts")).expect("A uts ns");
    assert_eq!(lines.get(2).copied(), uts_a.to_str(), "{lines:?}");
    // A is untouched by B's exit.
    assert_eq!(rt.state(&id_a)["status"], "running");
    rt.ok(&["kill", &id_a, "KILL"]);
    rt.ok(&["delete", "--force", &id_a]);
    assert_no_leftovers(&rt, a.path(), &id_a, &state_a);
}

// ---------------------------------------------------------------------------------------------
// 10. capabilities, user, no_new_privileges
// ---------------------------------------------------------------------------------------------

const CAPS_SCRIPT: &str =
    "grep -E '^(Cap|NoNewPrivs)' /proc/self/status; echo \"id=$(id -u):$(id -g)\"";

#[test]
fn default_capabilities_are_dockers_and_no_new_privs_is_set() {
    if !need_root("capabilities") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("caps");
    let bundle = Bundle::sh(CAPS_SCRIPT);
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let s = &ran.stdout;
    assert_eq!(status_field(s, "CapBnd"), DOCKER_CAPS, "{s}");
    assert_eq!(status_field(s, "CapEff"), DOCKER_CAPS, "{s}");
    assert_eq!(status_field(s, "CapPrm"), DOCKER_CAPS, "{s}");
    assert_eq!(status_field(s, "CapInh"), "0000000000000000", "{s}");
    assert_eq!(status_field(s, "CapAmb"), "0000000000000000", "{s}");
    assert_eq!(status_field(s, "NoNewPrivs"), "1", "{s}");
    assert!(s.contains("id=0:0"), "{s}");
}

#[test]
fn dropping_all_capabilities_leaves_none() {
    if !need_root("capabilities") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("nocaps");
    let mut bundle = Bundle::sh(CAPS_SCRIPT);
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        bundle.config["process"]["capabilities"][set] = json!([]);
    }
    bundle.config["process"]["noNewPrivileges"] = false.into();
    bundle.write_config();
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let s = &ran.stdout;
    for f in ["CapBnd", "CapEff", "CapPrm"] {
        assert_eq!(status_field(s, f), "0000000000000000", "{f}: {s}");
    }
    assert_eq!(status_field(s, "NoNewPrivs"), "0", "{s}");
}

#[test]
fn non_root_user_has_no_effective_capabilities() {
    if !need_root("capabilities") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("nobody");
    let mut bundle = Bundle::sh(&format!("{CAPS_SCRIPT}; touch /root/x || echo DENIED"));
    bundle.config["process"]["user"] = json!({ "uid": 65534, "gid": 65534 });
    // What Docker generates for a non-root user: the bounding set stays, nothing effective.
    for set in ["effective", "permitted", "inheritable", "ambient"] {
        bundle.config["process"]["capabilities"][set] = json!([]);
    }
    bundle.config["root"]["readonly"] = false.into();
    bundle.write_config();
    fs::set_permissions(
        bundle.rootfs().join("root"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod /root");
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let s = &ran.stdout;
    assert!(s.contains("id=65534:65534"), "{s}");
    assert_eq!(status_field(s, "CapEff"), "0000000000000000", "{s}");
    assert_eq!(status_field(s, "CapPrm"), "0000000000000000", "{s}");
    assert_eq!(status_field(s, "CapBnd"), DOCKER_CAPS, "{s}");
    assert!(s.contains("DENIED"), "uid 65534 wrote into 0700 /root: {s}");
}

// ---------------------------------------------------------------------------------------------
// 11. rlimits, umask, cwd, env
// ---------------------------------------------------------------------------------------------

#[test]
fn rlimits_umask_cwd_and_env_are_applied() {
    if !need_root("container process setup") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("proc");
    let mut bundle = Bundle::sh(
        "echo \"nofile=$(ulimit -n)/$(ulimit -Hn)\"; echo \"umask=$(umask)\"; echo \"cwd=$(pwd)\"; \
         echo \"foo=$FOO\"; echo \"path=$PATH\"",
    );
    bundle.config["process"]["rlimits"] =
        json!([{ "type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048 }]);
    bundle.config["process"]["user"]["umask"] = 0o027.into();
    bundle.config["process"]["cwd"] = "/tmp".into();
    bundle.config["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz=qux"]);
    bundle.write_config();
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            "nofile=1024/2048",
            "umask=0027",
            "cwd=/tmp",
            "foo=bar baz=qux",
            "path=/bin"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// 12. read-only rootfs, masked and read-only paths
// ---------------------------------------------------------------------------------------------

#[test]
fn readonly_rootfs_masked_and_readonly_paths() {
    if !need_root("mounts") {
        return;
    }
    let before = host_hostname();
    // A masked file this kernel has (/proc/kcore needs CONFIG_PROC_KCORE).
    let masked_file = ["/proc/kcore", "/proc/timer_list", "/proc/keys"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("the host has one of /proc/kcore, /proc/timer_list, /proc/keys");
    let rt = Runtime::new();
    let id = unique_id("ro");
    let mut bundle = Bundle::sh(&format!(
        "touch /x 2>&1; echo \"rootfs-write=$?\"; \
         touch /tmp/y && echo tmp-write=ok; \
         echo \"masked=$(wc -c < {masked_file}) $(stat -c '%F %t:%T' {masked_file})\"; \
         echo \"firmware=$(ls -A /sys/firmware | wc -l) $(stat -c %F /sys/firmware)\"; \
         echo \"acpi=$(ls -A /proc/acpi 2>/dev/null | wc -l)\"; \
         (echo x > /proc/sys/kernel/hostname) 2>&1; echo \"procsys-write=$?\"; \
         hostname"
    ));
    // Writable tmpfs on /tmp on top of the read-only root (the default spec's root is read-only).
    assert_eq!(bundle.config["root"]["readonly"], true);
    add_tmpfs(&mut bundle, "/tmp", &["nosuid", "nodev", "mode=1777"]);
    bundle.config["hostname"] = "ro-test".into();
    bundle.write_config();
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let s = &ran.stdout;
    assert!(s.contains("Read-only file system"), "{s}");
    assert!(!s.contains("rootfs-write=0"), "{s}");
    assert!(!bundle.rootfs().join("x").exists());
    assert!(s.contains("tmp-write=ok"), "{s}");
    assert!(
        s.contains("masked=0 character special file 1:3"),
        "{masked_file} not masked by /dev/null: {s}"
    );
    if Path::new("/sys/firmware").is_dir() && fs::read_dir("/sys/firmware").into_iter().count() > 0
    {
        assert!(s.contains("firmware=0 directory"), "{s}");
    } else {
        println!("note: host has no /sys/firmware; masking of a directory checked via /proc/acpi");
    }
    assert!(s.contains("acpi=0"), "{s}");
    assert!(!s.contains("procsys-write=0"), "{s}");
    let procsys_err = s
        .lines()
        .find(|l| l.contains("/proc/sys/kernel/hostname"))
        .unwrap_or_else(|| panic!("no error writing /proc/sys: {s}"));
    assert!(
        procsys_err.contains("Read-only file system"),
        "/proc/sys is not a read-only mount: {procsys_err}"
    );
    assert_eq!(s.lines().last(), Some("ro-test"));
    assert_eq!(host_hostname(), before);
}

// ---------------------------------------------------------------------------------------------
// 13. hooks
// ---------------------------------------------------------------------------------------------

fn hook(script: &str) -> Value {
    json!({ "path": "/bin/sh", "args": ["sh", "-c", script] })
}

#[test]
fn hooks_run_in_order_in_the_right_namespaces() {
    if !need_root("hooks") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("hooks");
    let out = tempfile::Builder::new()
        .prefix("minid-hooks-")
        .tempdir()
        .expect("hook output dir");
    let o = out.path().to_str().expect("utf-8").to_string();
    let mut bundle = Bundle::sh("echo main >> /hooks/order");
    add_bind(&mut bundle, out.path(), "/hooks", false);
    bundle.config["hostname"] = "hooked".into();
    bundle.config["hooks"] = json!({
        "prestart": [hook(&format!("cat > {o}/prestart.json; echo prestart >> {o}/order"))],
        "createRuntime": [hook(&format!(
            "cat > {o}/createRuntime.json; hostname > {o}/createRuntime.hostname; echo createRuntime >> {o}/order"
        ))],
        // Runs in the container's namespaces before pivot_root: the host path still resolves.
        "createContainer": [hook(&format!(
            "cat > {o}/createContainer.json; hostname > {o}/createContainer.hostname; echo createContainer >> {o}/order"
        ))],
        // Resolves in the container: /bin/sh of the rootfs, /hooks the bind mount.
        "startContainer": [hook(
            "cat > /hooks/startContainer.json; hostname > /hooks/startContainer.hostname; echo startContainer >> /hooks/order"
        )],
        "poststart": [hook(&format!("cat > {o}/poststart.json; echo poststart >> {o}/order"))],
        "poststop": [hook(&format!("cat > {o}/poststop.json; echo poststop >> {o}/order"))],
    });
    bundle.write_config();
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let read = |name: &str| {
        fs::read_to_string(out.path().join(name))
            .unwrap_or_else(|e| panic!("{name} not written: {e}; stderr: {}", ran.stderr))
    };
    let order: Vec<String> = read("order").lines().map(str::to_string).collect();
    // poststart runs after the process started, so it may come before or after "main".
    let without_main: Vec<&str> = order
        .iter()
        .map(String::as_str)
        .filter(|l| *l != "main")
        .collect();
    assert_eq!(
        without_main,
        vec![
            "prestart",
            "createRuntime",
            "createContainer",
            "startContainer",
            "poststart",
            "poststop"
        ],
        "{order:?}"
    );
    let main_at = order.iter().position(|l| l == "main").expect("main ran");
    let start_at = order
        .iter()
        .position(|l| l == "startContainer")
        .expect("startContainer ran");
    assert!(
        start_at < main_at,
        "startContainer after the process: {order:?}"
    );
    let pid = ran.state["pid"].as_i64().expect("pid");
    for stage in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        let state: Value = serde_json::from_str(&read(&format!("{stage}.json")))
            .unwrap_or_else(|e| panic!("{stage} state on stdin is not JSON: {e}"));
        assert_eq!(state["id"], id.as_str(), "{stage}: {state}");
        assert!(state["bundle"].is_string(), "{stage}: {state}");
        // pid is required for created/running (runtime spec "State"); the init's own hooks
        // (createContainer, startContainer) may leave it out, and a stopped container has none.
        match stage {
            "poststop" => {}
            "createContainer" | "startContainer" if state["pid"].is_null() => {
                println!("note: {stage} hook state has no pid: {state}");
            }
            _ => assert_eq!(state["pid"].as_i64(), Some(pid), "{stage}: {state}"),
        }
    }
    assert_eq!(read("createRuntime.hostname").trim(), host_hostname());
    assert_eq!(read("createContainer.hostname").trim(), "hooked");
    assert_eq!(read("startContainer.hostname").trim(), "hooked");
}

#[test]
fn failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    if !need_root("hooks") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("badhook");
    let mut bundle = Bundle::busybox(&["true"]);
    bundle.config["hooks"] = json!({ "createRuntime": [hook("echo hook-said-no >&2; exit 3")] });
    bundle.write_config();
    let log = bundle.path().join("ctr.log");
    let _guard = ContainerGuard::new(&rt, &id);
    let out = rt.output(&[
        "create",
        "--bundle",
        bundle.path().to_str().expect("utf-8"),
        "--container-log",
        log.to_str().expect("utf-8"),
        &id,
    ]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "create succeeded: {err}");
    assert!(
        err.contains("createRuntime"),
        "error does not name the hook: {err}"
    );
    assert!(
        !rt.state_dir(&id).exists(),
        "state dir left after failed create"
    );
    for dir in expected_cgroup_dirs(&id) {
        assert!(
            !dir.exists(),
            "cgroup left after failed create: {}",
            dir.display()
        );
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!mountinfo.contains(bundle.path().to_str().expect("utf-8")));
    assert!(!mountinfo.contains(&id));
}

// ---------------------------------------------------------------------------------------------
// 14. mounts
// ---------------------------------------------------------------------------------------------

#[test]
fn bind_mounts_ro_rw_and_sized_tmpfs() {
    if !need_root("mounts") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("binds");
    let ro = tempfile::tempdir().expect("ro dir");
    let rw = tempfile::tempdir().expect("rw dir");
    fs::write(ro.path().join("in-ro"), "from the host\n").expect("write");
    let mut bundle = Bundle::sh(
        "cat /ro/in-ro; touch /ro/new 2>&1; echo \"ro-write=$?\"; \
         echo written-inside > /rw/out && echo rw-write=ok; \
         head -c 2097152 /dev/zero 2>/dev/null > /small/big; echo \"tmpfs-write=$?\"; \
         echo \"tmpfs-size=$(wc -c < /small/big)\"; \
         grep ' /small ' /proc/self/mountinfo",
    );
    fs::create_dir_all(bundle.rootfs().join("ro")).expect("mkdir");
    add_bind(&mut bundle, ro.path(), "/ro", true);
    add_bind(&mut bundle, rw.path(), "/rw", false);
    add_tmpfs(&mut bundle, "/small", &["size=1m", "mode=1777"]);
    bundle.write_config();
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let s = &ran.stdout;
    assert_eq!(s.lines().next(), Some("from the host"), "{s}");
    assert!(s.contains("Read-only file system"), "{s}");
    assert!(!s.contains("ro-write=0"), "{s}");
    assert!(!ro.path().join("new").exists());
    assert!(s.contains("rw-write=ok"), "{s}");
    assert_eq!(
        fs::read_to_string(rw.path().join("out")).expect("written through rw bind"),
        "written-inside\n"
    );
    assert!(
        !s.contains("tmpfs-write=0"),
        "2 MiB fit into a 1 MiB tmpfs: {s}"
    );
    let size: u64 = s
        .lines()
        .find_map(|l| l.strip_prefix("tmpfs-size="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no tmpfs-size: {s}"));
    assert!(
        size <= 1 << 20,
        "tmpfs size not enforced: {size} bytes written"
    );
    assert!(s.contains("size=1024k"), "tmpfs options: {s}");
}

#[test]
fn mount_destination_symlink_cannot_escape_the_rootfs() {
    if !need_root("mounts") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("evil");
    let marker = format!("minid-evil-{id}");
    let src = tempfile::tempdir().expect("bind source");
    fs::write(src.path().join(&marker), "bound\n").expect("write");
    let host_etc_before: Vec<_> = fs::read_dir("/etc")
        .expect("read /etc")
        .map(|e| e.expect("entry").file_name())
        .collect();
    let host_mounts_before = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut bundle = Bundle::sh(&format!(
        "ls /etc; echo written > /evil2/{marker}-tmpfs; grep -E ' /(etc|tmp|evil|evil2) ' /proc/self/mountinfo"
    ));
    std::os::unix::fs::symlink("/etc", bundle.rootfs().join("evil")).expect("symlink");
    std::os::unix::fs::symlink("../../../../../../../tmp", bundle.rootfs().join("evil2"))
        .expect("symlink");
    add_bind(&mut bundle, src.path(), "/evil", true);
    add_tmpfs(&mut bundle, "/evil2", &["size=1m"]);
    bundle.write_config();
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let s = &ran.stdout;
    // The bind landed on the rootfs's own /etc, inside the container.
    assert!(
        s.lines().any(|l| l == marker),
        "bind not on the rootfs's /etc: {s}"
    );
    assert!(
        s.lines().any(|l| l.split(' ').nth(4) == Some("/etc")),
        "no mount at /etc inside: {s}"
    );
    assert!(
        s.lines().any(|l| l.split(' ').nth(4) == Some("/tmp")),
        "no tmpfs at the rootfs's /tmp: {s}"
    );
    // Nothing on the host.
    assert!(!Path::new("/etc").join(&marker).exists());
    assert!(!Path::new("/tmp").join(format!("{marker}-tmpfs")).exists());
    assert!(!bundle
        .rootfs()
        .join("tmp")
        .join(format!("{marker}-tmpfs"))
        .exists());
    let host_etc_after: Vec<_> = fs::read_dir("/etc")
        .expect("read /etc")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(host_etc_before, host_etc_after, "host /etc changed");
    let host_mounts_after = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mount_points = |m: &str| -> Vec<String> {
        m.lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|p| p == "/etc" || p == "/tmp" || p.starts_with("/etc/"))
            .collect()
    };
    assert_eq!(
        mount_points(&host_mounts_before),
        mount_points(&host_mounts_after),
        "host mounts on /etc or /tmp changed"
    );
}

// ---------------------------------------------------------------------------------------------
// 15. devices
// ---------------------------------------------------------------------------------------------

#[test]
fn default_device_nodes_exist_with_right_numbers() {
    if !need_root("devices") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("devs");
    let bundle = Bundle::sh(
        "for d in null zero full random urandom tty; do stat -c '%n %F %t:%T' /dev/$d; done; \
         head -c 4 /dev/zero | wc -c; echo hi > /dev/null && echo null-ok",
    );
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let lines: Vec<&str> = ran.stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            "/dev/null character special file 1:3",
            "/dev/zero character special file 1:5",
            "/dev/full character special file 1:7",
            "/dev/random character special file 1:8",
            "/dev/urandom character special file 1:9",
            "/dev/tty character special file 5:0",
            "4",
            "null-ok",
        ]
    );
}

/// The device tests make and open a fuse node (c 10:229, which needs no capability to open);
/// where the host itself cannot open /dev/fuse, they cannot tell the cgroup's refusal apart.
fn host_can_open_fuse() -> bool {
    let ok = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .is_ok();
    if !ok {
        println!("skipping: the host itself cannot open /dev/fuse");
    }
    ok
}

#[test]
fn devices_cgroup_denies_a_device_not_allowed() {
    if !need_root("devices cgroup") {
        return;
    }
    // The spec's rules are enforced, with the default devices always allowed after them (as
    // runc and crun append them): null and zero work, a node the rules do not allow (fuse,
    // c 10:229, which needs no capability to open) can be made but not opened.
    if !host_can_open_fuse() {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("devdeny");
    let mut bundle = Bundle::sh(
        "head -c 1 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; \
         head -c 1 /dev/full | wc -c; \
         mknod /dev/fuse-test c 10 229 2>&1; echo \"mknod=$?\"; \
         (exec 3<>/dev/fuse-test) 2>&1; echo \"open=$?\"",
    );
    bundle.config["linux"]["resources"]["devices"] = json!([
        { "allow": false, "access": "rwm" },
        { "allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm" },
        { "allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm" },
    ]);
    bundle.write_config();
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let s = &ran.stdout;
    assert!(
        s.starts_with("1\nnull-ok\n1\n"),
        "allowed and default devices unusable: {s}"
    );
    assert!(s.contains("mknod=0"), "mknod is allowed: {s}");
    assert!(
        s.contains("Operation not permitted") && !s.contains("open=0"),
        "a device the rules do not allow was opened: {s}"
    );
}

#[test]
fn default_spec_denies_devices_it_does_not_list() {
    if !need_root("devices cgroup") {
        return;
    }
    // /dev/fuse (c 10:229) is not among the default devices, and opening it needs no
    // capability: a container with the default spec (which has CAP_MKNOD) must not be able to
    // make and open it. runc's and Docker's default specs start with deny-all for this reason.
    if !host_can_open_fuse() {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("devdefault");
    let bundle = Bundle::sh(
        "mknod /dev/fuse-test c 10 229 2>&1; echo \"mknod=$?\"; \
         (exec 3<>/dev/fuse-test) 2>&1; echo \"open=$?\"; \
         echo x > /dev/null && echo null-ok",
    );
    let ran = run_keep(&rt, &bundle, &id);
    assert_eq!(ran.status, 0, "stderr: {}", ran.stderr);
    let s = &ran.stdout;
    assert!(s.contains("null-ok"), "default devices unusable: {s}");
    assert!(
        !s.contains("open=0"),
        "default spec lets the container create and open /dev/fuse (c 10:229): {s}"
    );
}

// ---------------------------------------------------------------------------------------------
// 17. stats from the cgroup, as `events --stats` prints them
// ---------------------------------------------------------------------------------------------

#[test]
fn events_stats_report_what_the_kernel_counts() {
    if !need_root("cgroup stats") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("stats");
    // 24 MiB in a tmpfs is charged to the container's memory cgroup; a second of busy loop
    // (at least one whole second) shows as CPU time; the sleeps are processes the pids counter sees.
    let mut bundle = Bundle::sh(
        "head -c 25165824 /dev/zero > /dev/shm/fill; sleep 100 & sleep 100 & \
         end=$(($(date +%s) + 2)); while [ $(date +%s) -lt $end ]; do :; done; \
         echo ready; sleep 100",
    );
    bundle.config["linux"]["resources"]["memory"] = json!({ "limit": 67108864 });
    bundle.config["linux"]["resources"]["pids"] = json!({ "limit": 50 });
    bundle.write_config();
    let mut running = Running::spawn(&rt, &bundle, &id);
    running.until("ready");
    let out = rt.ok(&["events", "--stats", &id]);
    let line: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(line["type"], "stats", "{line}");
    let data = &line["data"];
    assert_eq!(data["memory_limit"], 67108864, "{data}");
    let usage = data["memory_usage"].as_u64().expect("memory_usage");
    assert!(usage >= 24 << 20, "24 MiB in tmpfs is charged: {usage}");
    assert!(data["memory_working_set"].as_u64().expect("working set") <= usage);
    assert_eq!(data["pids_limit"], 50, "{data}");
    assert!(data["pids_current"].as_u64().expect("pids") >= 3, "{data}");
    let cpu = data["cpu_usage_ns"].as_u64().expect("cpu");
    assert!(
        cpu >= 300_000_000,
        "a busy loop of about a second: {cpu} ns"
    );
    assert_eq!(running.kill_and_wait(), 137);
}
