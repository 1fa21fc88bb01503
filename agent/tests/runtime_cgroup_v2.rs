//! The runtime on a real cgroup v2 hierarchy.
//!
//! The development machines are v1 (hybrid), but they mount an empty cgroup2 hierarchy at
//! `/sys/fs/cgroup/unified`: no controllers, yet the core of v2 works there (cgroup.procs,
//! `clone3(CLONE_INTO_CGROUP)`, cgroup.freeze, cgroup.kill, cgroup.events). Pointing
//! `--cgroup-root` at it runs minid's whole v2 path for real: detection, nesting, the clone
//! straight into the cgroup, the cgroup2 mount inside the container, freeze, kill, removal.
//! On a pure v2 host `/sys/fs/cgroup` itself is used the same way. Limits need controllers and
//! are covered by the v2 fixture tests in `engine/cgroups`.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{need_root, unique_id, Bundle, ContainerGuard, Runtime};

/// A cgroup2 mount to test on, or None (with the reason printed).
fn v2_root() -> Option<PathBuf> {
    for p in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let p = Path::new(p);
        if p.join("cgroup.procs").exists()
            && minid::engine::cgroups::detect(p).ok()
                == Some(minid::engine::cgroups::CgroupVersion::V2)
        {
            return Some(p.to_path_buf());
        }
    }
    println!("skipping: no cgroup2 hierarchy is mounted on this machine");
    None
}

fn v2_args<'a>(root: &'a Path, rest: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--cgroup-root", root.to_str().expect("utf-8 path")];
    v.extend_from_slice(rest);
    v
}

/// The container's cgroup directory, from its record.
fn cgroup_dir(rt: &Runtime, root: &Path, id: &str) -> PathBuf {
    let rec = rt.read_json(id, "state.json").expect("state.json");
    let path = rec["cgroup"]["path"].as_str().expect("cgroup path");
    root.join(path.trim_start_matches('/'))
}

fn wait_for_status(rt: &Runtime, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = rt.state(id);
        if st["status"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never became {want}: {st}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn v2_container_lives_in_its_own_cgroup_and_sees_cgroup2() {
    if !need_root("cgroup v2 runtime") {
        return;
    }
    let Some(root) = v2_root() else { return };
    let rt = Runtime::new();
    let id = unique_id("v2-own");
    let b = Bundle::sh(
        "cat /proc/self/cgroup; test -f /sys/fs/cgroup/cgroup.procs && echo cgroup2-mounted",
    );
    let out = rt.output(&v2_args(
        &root,
        &[
            "run",
            "--keep",
            "--bundle",
            b.path().to_str().expect("utf-8"),
            &id,
        ],
    ));
    let _guard = ContainerGuard::new(&rt, &id);
    let stdout = common::text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    // Inside its cgroup namespace the container is at the root of the v2 hierarchy.
    assert!(stdout.lines().any(|l| l == "0::/"), "{stdout}");
    assert!(stdout.contains("cgroup2-mounted"), "{stdout}");
    let dir = cgroup_dir(&rt, &root, &id);
    assert!(dir.is_dir(), "{} exists until delete", dir.display());
    rt.ok(&v2_args(&root, &["delete", &id]));
    assert!(!dir.exists(), "delete removes {}", dir.display());
}

#[test]
fn v2_freeze_thaw_and_kill_all_through_the_kernel() {
    if !need_root("cgroup v2 runtime") {
        return;
    }
    let Some(root) = v2_root() else { return };
    let rt = Runtime::new();
    let id = unique_id("v2-freeze");
    // Background children too: kill --all must reach them, not only the init.
    let b = Bundle::sh("sleep 1000 & sleep 1000 & while :; do sleep 1; done");
    // The container inherits create's stdio: give it none, or waiting for create's output
    // would wait for the container.
    let st = rt
        .command(&v2_args(
            &root,
            &["create", "--bundle", b.path().to_str().expect("utf-8"), &id],
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("spawn create");
    let _guard = ContainerGuard::new(&rt, &id);
    assert!(st.success(), "create: {st}");
    rt.ok(&["start", &id]);
    let dir = cgroup_dir(&rt, &root, &id);
    let pid = rt.state(&id)["pid"].as_i64().expect("pid");
    let host_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let rel = dir
        .strip_prefix(&root)
        .expect("under root")
        .display()
        .to_string();
    assert!(
        host_cgroup.lines().any(|l| l == format!("0::/{rel}")),
        "init {pid} is in {rel}: {host_cgroup}"
    );

    // Wait until the background sleeps exist, then pause.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(dir.join("cgroup.procs"))
        .expect("procs")
        .lines()
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "children never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.ok(&["pause", &id]);
    assert_eq!(rt.state(&id)["status"], "paused");
    let events = std::fs::read_to_string(dir.join("cgroup.events")).expect("events");
    assert!(events.lines().any(|l| l == "frozen 1"), "{events}");
    rt.ok(&["resume", &id]);
    assert_eq!(rt.state(&id)["status"], "running");

    rt.ok(&["kill", "--all", &id, "KILL"]);
    wait_for_status(&rt, &id, "stopped");
    let exit = rt.read_json(&id, "exit.json").expect("exit.json");
    assert_eq!(exit["status"], 137, "{exit}");
    assert_eq!(exit["signal"], 9, "{exit}");
    rt.ok(&["delete", &id]);
    assert!(!dir.exists(), "delete removes {}", dir.display());
}

#[test]
fn v2_limit_without_its_controller_is_refused_and_leaves_nothing() {
    if !need_root("cgroup v2 runtime") {
        return;
    }
    let Some(root) = v2_root() else { return };
    if std::fs::read_to_string(root.join("cgroup.controllers"))
        .expect("controllers")
        .split_whitespace()
        .any(|c| c == "pids")
    {
        println!("skipping: this cgroup2 hierarchy has the pids controller; the refusal needs one without it");
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("v2-nopids");
    let mut b = Bundle::busybox(&["true"]);
    b.config["linux"]["resources"] = serde_json::json!({"pids": {"limit": 10}});
    b.write_config();
    let out = rt.output(&v2_args(
        &root,
        &["create", "--bundle", b.path().to_str().expect("utf-8"), &id],
    ));
    let err = common::text(&out.stderr);
    assert!(
        !out.status.success(),
        "a pids limit cannot be honoured here: {out:?}"
    );
    assert!(err.contains("pids"), "the error names the limit: {err}");
    assert!(!rt.state_dir(&id).exists(), "no state is left behind");
    assert_eq!(find_dir(&root, &id, 6), None, "no cgroup is left behind");
}

/// A directory named `name` at most `depth` levels below `dir`.
fn find_dir(dir: &Path, name: &str, depth: u32) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if !p.is_dir() {
            continue;
        }
        if e.file_name() == name {
            return Some(p);
        }
        if depth > 0 {
            if let Some(f) = find_dir(&p, name, depth - 1) {
                return Some(f);
            }
        }
    }
    None
}
