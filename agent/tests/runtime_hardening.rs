//! Edges where a runtime can quietly do the wrong thing: sysctls that would change the host,
//! bind sources relative to the wrong directory, a cgroup mount that shows the host's tree,
//! a `/dev/null` that is not the null device, processes left behind by an init that exited.

mod common;

use std::path::Path;

use common::{need_root, text, unique_id, Bundle, Runtime};
use serde_json::json;

fn bundle_arg(b: &Bundle) -> &str {
    b.path().to_str().expect("utf-8 bundle path")
}

/// `run --keep`, then `delete`; returns (exit code, stdout, stderr).
fn run(rt: &Runtime, b: &Bundle, id: &str) -> (i32, String, String) {
    let out = rt.output(&["run", "--keep", "--bundle", bundle_arg(b), id]);
    if rt.state_dir(id).exists() {
        rt.ok(&["delete", "--force", id]);
    }
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn namespaced_sysctls_apply_inside_and_host_wide_ones_are_refused() {
    if !need_root("sysctls") {
        return;
    }
    let rt = Runtime::new();
    let host_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host");
    let want = if host_before.trim() == "1" { "0" } else { "1" };
    let mut b = Bundle::sh("cat /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo ro");
    b.config["linux"]["sysctl"] = json!({ "net.ipv4.ip_forward": want });
    b.write_config();
    let (code, out, err) = run(&rt, &b, &unique_id("sysctl"));
    assert_eq!(code, 0, "{err}");
    // Applied in the container's network namespace, and /proc/sys is read-only afterwards.
    assert_eq!(out, format!("{want}\nro\n"));
    let host_after = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host");
    assert_eq!(host_before, host_after, "the host's value is untouched");

    b.config["linux"]["sysctl"] = json!({ "kernel.core_pattern": "|/tmp/evil" });
    b.write_config();
    let id = unique_id("sysctl-host");
    let (code, _, err) = run(&rt, &b, &id);
    assert_ne!(code, 0);
    assert!(err.contains("kernel.core_pattern"), "{err}");
    assert!(!rt.state_dir(&id).exists());
}

#[test]
fn relative_bind_sources_are_relative_to_the_bundle() {
    if !need_root("bind mounts") {
        return;
    }
    let rt = Runtime::new();
    let mut b = Bundle::sh("cat /data/marker");
    std::fs::create_dir(b.path().join("data")).expect("mkdir");
    std::fs::write(b.path().join("data/marker"), "from the bundle\n").expect("marker");
    b.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .push(json!({"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]}));
    b.write_config();
    // Run from a directory that has a `data` of its own: the bundle's must win.
    let elsewhere = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(elsewhere.path().join("data")).expect("mkdir");
    std::fs::write(elsewhere.path().join("data/marker"), "from the cwd\n").expect("marker");
    let id = unique_id("relbind");
    let out = rt
        .command(&["run", "--bundle", bundle_arg(&b), &id])
        .current_dir(elsewhere.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "from the bundle\n");
}

#[test]
fn cgroup_mount_without_a_cgroup_namespace_shows_only_the_containers_cgroup() {
    if !need_root("cgroups") {
        return;
    }
    let rt = Runtime::new();
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let script = if v2 {
        "cat /sys/fs/cgroup/memory.max; ls /sys/fs/cgroup | grep -c '^minid$' || true"
    } else {
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; ls /sys/fs/cgroup/memory | grep -c '^minid$' || true"
    };
    let mut b = Bundle::sh(script);
    b.config["linux"]["resources"]["memory"] = json!({ "limit": 50331648 });
    let ns = b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces");
    ns.retain(|n| n["type"] != "cgroup");
    b.write_config();
    let (code, out, err) = run(&rt, &b, &unique_id("cgmount"));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    // The limit file is the container's own (a mount of the hierarchy's root would show the
    // root's), and the host's tree (our `minid` parent among it) is not visible.
    assert_eq!(lines, vec!["50331648", "0"], "{out}");
}

#[test]
fn masking_refuses_a_dev_null_that_is_not_the_null_device() {
    if !need_root("mounts") {
        return;
    }
    let Some(masked) = [
        "/proc/kcore",
        "/proc/timer_list",
        "/proc/keys",
        "/proc/sched_debug",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists()) else {
        println!("skipping: none of the usual masked /proc files exists on this kernel");
        return;
    };
    let rt = Runtime::new();
    let mut b = Bundle::sh("cat /etc/passwd");
    // No tmpfs /dev: the image's own /dev is used, and there /dev/null is a symlink to a file.
    b.config["mounts"]
        .as_array_mut()
        .expect("mounts")
        .retain(|m| m["destination"] != "/dev");
    b.config["linux"]["maskedPaths"] = json!([masked]);
    b.write_config();
    std::os::unix::fs::symlink("/etc/passwd", b.rootfs().join("dev/null")).expect("symlink");
    let id = unique_id("devnull");
    let (code, _, err) = run(&rt, &b, &id);
    assert_ne!(code, 0, "masking with a fake /dev/null must fail");
    assert!(err.contains("/dev/null"), "{err}");
    assert!(!rt.state_dir(&id).exists(), "nothing is left behind");
}

#[test]
fn delete_removes_processes_an_exited_init_left_behind() {
    if !need_root("cgroups") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("orphans");
    let mut b = Bundle::sh("sleep 1000 & echo started");
    // Without a pid namespace the init's exit does not take its children with it.
    b.config["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .retain(|n| n["type"] != "pid");
    b.write_config();
    // The sleep inherits run's stdio: give it none, or reading run's output would wait for it.
    let status = rt
        .command(&["run", "--keep", "--bundle", bundle_arg(&b), &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run");
    assert!(status.success(), "{status}");
    let state = rt.read_json(&id, "state.json").expect("state");
    let rel = state["cgroup"]["v1"]["pids"]
        .as_str()
        .or(state["cgroup"]["path"].as_str())
        .expect("cgroup path")
        .trim_start_matches('/')
        .to_string();
    let root = state["cgroup_root"]
        .as_str()
        .expect("cgroup root")
        .to_string();
    let procs = if Path::new(&root).join("pids").is_dir() {
        Path::new(&root)
            .join("pids")
            .join(&rel)
            .join("cgroup.procs")
    } else {
        Path::new(&root).join(&rel).join("cgroup.procs")
    };
    let left = std::fs::read_to_string(&procs).expect("cgroup.procs");
    assert!(
        !left.trim().is_empty(),
        "the background sleep is still in the cgroup"
    );
    rt.ok(&["delete", &id]);
    assert!(!procs.exists(), "the cgroup is gone: {}", procs.display());
    assert!(!rt.state_dir(&id).exists());
}

#[test]
fn concurrent_starts_start_the_container_once() {
    if !need_root("containers") {
        return;
    }
    let rt = Runtime::new();
    let id = unique_id("twostarts");
    let b = Bundle::sh("sleep 100");
    let status = rt
        .command(&["create", "--bundle", bundle_arg(&b), &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("create");
    let _guard = common::ContainerGuard::new(&rt, &id);
    assert!(status.success());
    let spawn = || {
        rt.command(&["start", &id])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start")
    };
    let (a, b2) = (spawn(), spawn());
    let outs = [
        a.wait_with_output().expect("wait"),
        b2.wait_with_output().expect("wait"),
    ];
    let ok = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 1, "exactly one start wins: {outs:?}");
    let loser = outs.iter().find(|o| !o.status.success()).expect("a loser");
    assert!(
        text(&loser.stderr).contains("running: cannot start"),
        "the other is told why: {}",
        text(&loser.stderr)
    );
    assert_eq!(rt.state(&id)["status"], "running");
}
