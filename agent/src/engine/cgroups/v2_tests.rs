//! Tests of the v2 backend: fixture trees for the file mapping, the real kernel (the cgroup2
//! root, or the hybrid `unified` mount) for membership, freezing, killing and device filters.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::*;
use crate::engine::cgroups::files::record;
use crate::engine::cgroups::testutil::*;
use crate::engine::cgroups::{open, resolve_path, CgroupVersion};
use crate::engine::ErrorKind;

const LEAF_FILES: &[&str] = &[
    "cgroup.procs",
    "cgroup.freeze",
    "cgroup.kill",
    "memory.max",
    "memory.low",
    "memory.swap.max",
    "memory.high",
    "memory.oom.group",
    "cpu.weight",
    "cpu.max",
    "cpu.max.burst",
    "cpu.idle",
    "cpuset.cpus",
    "cpuset.mems",
    "pids.max",
    "io.weight",
    "io.max",
    "hugetlb.2MB.max",
    "rdma.max",
];

/// A v2 root with controllers delegated to "/minid", and the cgroup "/minid/c1" in it.
fn fixture() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    write_files(
        root,
        &[
            (
                "cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma misc\n",
            ),
            ("cgroup.subtree_control", "cpu io memory pids\n"),
        ],
    );
    write_files(
        &root.join("minid"),
        &[
            ("cgroup.controllers", "cpu io memory pids\n"),
            ("cgroup.subtree_control", "memory\n"),
        ],
    );
    let leaf = root.join("minid/c1");
    std::fs::create_dir_all(&leaf).unwrap();
    for f in LEAF_FILES {
        std::fs::write(leaf.join(f), "").unwrap();
    }
    write_files(
        &leaf,
        &[
            ("memory.current", "1048576\n"),
            ("cgroup.events", "populated 0\nfrozen 0\n"),
        ],
    );
    (d, leaf)
}

const FULL: &str = r#"{
    "memory": {"limit": 536870912, "reservation": 268435456, "swap": 805306368,
               "checkBeforeUpdate": true, "useHierarchy": true, "disableOOMKiller": false},
    "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 10000, "idle": 0,
            "cpus": "0-1", "mems": "0", "realtimeRuntime": 0, "realtimePeriod": 0},
    "pids": {"limit": 100},
    "blockIO": {
        "weight": 500,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
        "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
        "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 0}]
    },
    "hugepageLimits": [{"pageSize": "2MB", "limit": 1073741824}],
    "rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 10000}},
    "unified": {"memory.oom.group": "1", "memory.high": "500000000"}
}"#;

fn rel(log: &[(PathBuf, String)], base: &Path) -> Vec<(String, String)> {
    log.iter()
        .map(|(p, v)| {
            let p = p.strip_prefix(base).unwrap_or(p);
            (p.display().to_string(), v.clone())
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn apply_full_resources_writes_exact_bytes() {
    let (d, leaf) = fixture();
    let cg = open(d.path(), CgroupVersion::V2, "/minid/c1");
    let (r, log) = record::capture(|| cg.apply(&resources(FULL)));
    r.unwrap();
    assert_eq!(
        rel(&log, &leaf),
        pairs(&[
            ("memory.max", "536870912"),
            ("memory.low", "268435456"),
            ("memory.swap.max", "268435456"),
            ("cpu.weight", "39"),
            ("cpu.max", "50000 100000"),
            ("cpu.max.burst", "10000"),
            ("cpu.idle", "0"),
            ("cpuset.cpus", "0-1"),
            ("cpuset.mems", "0"),
            ("pids.max", "100"),
            ("io.weight", "default 4950"),
            ("io.weight", "8:0 910"),
            ("io.max", "8:0 rbps=1048576 wbps=2097152 wiops=max"),
            ("io.max", "8:16 riops=100"),
            ("hugetlb.2MB.max", "1073741824"),
            ("rdma.max", "mlx5_0 hca_handle=3 hca_object=10000"),
            ("memory.high", "500000000"),
            ("memory.oom.group", "1"),
        ])
    );
    // And the bytes are in the files (the last write wins in a fixture).
    assert_eq!(read(&leaf.join("memory.max")), "536870912");
    assert_eq!(read(&leaf.join("cpu.max")), "50000 100000");
}

#[test]
fn apply_unlimited_values() {
    let (d, leaf) = fixture();
    let cg = open(d.path(), CgroupVersion::V2, "/minid/c1");
    let res = resources(
        r#"{"memory": {"limit": -1, "swap": -1}, "cpu": {"quota": -1, "period": 0},
            "pids": {"limit": 0}}"#,
    );
    let (r, log) = record::capture(|| cg.apply(&res));
    r.unwrap();
    assert_eq!(
        rel(&log, &leaf),
        pairs(&[
            ("memory.max", "max"),
            ("memory.swap.max", "max"),
            ("cpu.max", "max"),
            ("pids.max", "max"),
        ])
    );
}

#[test]
fn bfq_weight_is_used_unconverted_when_present() {
    let (d, leaf) = fixture();
    std::fs::write(leaf.join("io.bfq.weight"), "").unwrap();
    let cg = open(d.path(), CgroupVersion::V2, "/minid/c1");
    let (r, log) = record::capture(|| cg.apply(&resources(r#"{"blockIO": {"weight": 500}}"#)));
    r.unwrap();
    assert_eq!(rel(&log, &leaf), pairs(&[("io.bfq.weight", "500")]));
}

#[test]
fn refusals_name_the_field_and_write_nothing() {
    let (d, leaf) = fixture();
    std::fs::remove_file(leaf.join("hugetlb.2MB.max")).unwrap();
    let cg = open(d.path(), CgroupVersion::V2, "/minid/c1");
    let cases = [
        (
            r#"{"memory": {"limit": 1048576, "kernel": 1048576}}"#,
            "memory.kernel",
        ),
        (r#"{"memory": {"kernelTCP": 1048576}}"#, "memory.kernelTCP"),
        (r#"{"memory": {"swappiness": 10}}"#, "memory.swappiness"),
        (
            r#"{"memory": {"disableOOMKiller": true}}"#,
            "memory.disableOOMKiller",
        ),
        (
            r#"{"memory": {"useHierarchy": false}}"#,
            "memory.useHierarchy",
        ),
        (r#"{"memory": {"swap": 1048576}}"#, "memory.swap"),
        (
            r#"{"memory": {"limit": 2097152, "swap": 1048576}}"#,
            "memory.swap",
        ),
        (
            r#"{"memory": {"limit": 524288, "checkBeforeUpdate": true}}"#,
            "memory.limit",
        ),
        (
            r#"{"cpu": {"shares": 2, "realtimeRuntime": 1000}}"#,
            "cpu.realtimeRuntime",
        ),
        (r#"{"cpu": {"realtimePeriod": 1000}}"#, "cpu.realtimePeriod"),
        (r#"{"blockIO": {"leafWeight": 10}}"#, "blockIO.leafWeight"),
        (
            r#"{"blockIO": {"weightDevice": [{"major": 8, "minor": 0, "leafWeight": 10}]}}"#,
            "blockIO.weightDevice[0].leafWeight",
        ),
        (
            r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}"#,
            "hugepageLimits[0] (2MB)",
        ),
        (
            r#"{"hugepageLimits": [{"pageSize": "../x", "limit": 1}]}"#,
            "hugepageLimits[0]",
        ),
        (r#"{"network": {"classID": 1}}"#, "network"),
        (
            r#"{"unified": {"../../memory.max": "1"}}"#,
            "unified.../../memory.max",
        ),
        (
            r#"{"unified": {"cgroup.procs": "1"}}"#,
            "unified.cgroup.procs",
        ),
        (r#"{"unified": {"misc.max": "x 1"}}"#, "unified.misc.max"),
        (
            r#"{"pids": {"limit": 5}, "devices": [{"allow": true, "type": "p"}]}"#,
            "devices[0]",
        ),
    ];
    for (json, field) in cases {
        let (r, log) = record::capture(|| cg.apply(&resources(json)));
        let e = r.expect_err(json);
        assert!(e.to_string().contains(field), "{json}: {e}");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{json}: {e}");
        assert!(log.is_empty(), "{json} wrote {log:?}");
    }
}

#[test]
fn swap_needs_swap_accounting() {
    let (d, leaf) = fixture();
    std::fs::remove_file(leaf.join("memory.swap.max")).unwrap();
    let cg = open(d.path(), CgroupVersion::V2, "/minid/c1");
    let e = cg
        .apply(&resources(
            r#"{"memory": {"limit": 1048576, "swap": 2097152}}"#,
        ))
        .unwrap_err();
    assert!(e.to_string().contains("swap accounting"), "{e}");
}

#[test]
fn create_enables_controllers_below_the_root_only() {
    let (d, _) = fixture();
    let root_control = read(&d.path().join("cgroup.subtree_control"));
    let cg = open(d.path(), CgroupVersion::V2, "/minid/c2");
    let (r, log) = record::capture(|| cg.create());
    r.unwrap();
    assert_eq!(
        rel(&log, d.path()),
        pairs(&[("minid/cgroup.subtree_control", "+cpu +io +pids")])
    );
    assert!(d.path().join("minid/c2").is_dir());
    assert_eq!(read(&d.path().join("cgroup.subtree_control")), root_control);
    // Nothing to enable the second time.
    std::fs::write(
        d.path().join("minid/cgroup.subtree_control"),
        "cpu io memory pids\n",
    )
    .unwrap();
    let (r, log) = record::capture(|| cg.create());
    r.unwrap();
    assert!(log.is_empty(), "{log:?}");
}

#[test]
fn root_and_escaping_paths_are_refused() {
    let d = tempfile::tempdir().unwrap();
    for p in ["/", "", "/a/../.."] {
        let cg = open(d.path(), CgroupVersion::V2, p);
        let e = cg.create().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{p}: {e}");
        assert!(cg.remove().is_err());
        assert!(cg.add(1).is_err());
    }
}

#[test]
fn fixture_membership_freeze_and_oom_count() {
    let (d, leaf) = fixture();
    write_files(&leaf, &[("cgroup.procs", "10\n12\n")]);
    write_files(&leaf.join("sub"), &[("cgroup.procs", "11\n12\n")]);
    write_files(
        &leaf,
        &[(
            "memory.events",
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n",
        )],
    );
    let cg = open(d.path(), CgroupVersion::V2, "/minid/c1");
    assert_eq!(cg.pids().unwrap(), vec![10, 11, 12]);
    assert_eq!(cg.oom_kill_count().unwrap(), 1);
    assert!(cg.clone_into_fd().unwrap().is_some());
    // The "kernel" already reports frozen: freeze returns at once.
    write_files(&leaf, &[("cgroup.events", "populated 1\nfrozen 1\n")]);
    let (r, log) = record::capture(|| cg.freeze());
    r.unwrap();
    assert_eq!(rel(&log, &leaf), pairs(&[("cgroup.freeze", "1")]));
    // SIGKILL uses cgroup.kill.
    let (r, log) = record::capture(|| cg.kill_all(libc::SIGKILL));
    r.unwrap();
    assert_eq!(rel(&log, &leaf), pairs(&[("cgroup.kill", "1")]));
}

// ---- privileged: the real kernel -------------------------------------------------------------

fn real_cgroup(tag: &str) -> Option<CgroupGuard> {
    let (root, own) = privileged(CgroupVersion::V2, &["cgroup.procs"])?;
    let name = unique(tag);
    let p = resolve_path(&own, CgroupVersion::V2, Some(Path::new(&name)), None, "x").unwrap();
    let cg = CgroupGuard(super::super::open_path(&root, CgroupVersion::V2, &p));
    cg.0.create().unwrap();
    Some(cg)
}

fn events(cg: &dyn Cgroup) -> String {
    let fd = cg.clone_into_fd().unwrap().unwrap();
    let p = format!(
        "/proc/self/fd/{}/cgroup.events",
        std::os::fd::AsRawFd::as_raw_fd(&fd)
    );
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn privileged_v2_add_freeze_kill_remove() {
    let Some(cg) = real_cgroup("v2") else { return };
    let dir = {
        let fd = cg.0.clone_into_fd().unwrap().unwrap();
        std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .unwrap()
    };
    let mut child = ChildGuard::sleep();
    cg.0.add(child.pid()).unwrap();
    assert_eq!(cg.0.pids().unwrap(), vec![child.pid()]);
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", child.pid())).unwrap();
    assert!(own.contains(&format!("0::{}\n", cg.0.path())), "{own}");

    cg.0.freeze().unwrap();
    assert!(events(&*cg.0).contains("frozen 1"));
    cg.0.thaw().unwrap();
    assert!(events(&*cg.0).contains("frozen 0"));

    cg.0.kill_all(libc::SIGKILL).unwrap();
    let st = child.wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL)
    );
    cg.0.remove().unwrap();
    assert!(!dir.exists(), "{} still exists", dir.display());
    // Removing again is fine.
    cg.0.remove().unwrap();
}

#[test]
fn privileged_v2_signal_without_cgroup_kill_path() {
    // SIGTERM takes the freeze/signal/thaw path even where cgroup.kill exists.
    let Some(cg) = real_cgroup("v2term") else {
        return;
    };
    let mut child = ChildGuard::sleep();
    cg.0.add(child.pid()).unwrap();
    cg.0.kill_all(libc::SIGTERM).unwrap();
    let st = child.wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGTERM)
    );
    assert!(events(&*cg.0).contains("frozen 0"), "left frozen");
}

#[test]
fn privileged_v2_device_filter_denies_dev_null() {
    let Some(cg) = real_cgroup("v2dev") else {
        return;
    };
    let res = resources(
        r#"{"devices": [{"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}"#,
    );
    if let Err(e) = cg.0.apply(&res) {
        panic!("device filter: {e}");
    }
    let mut child = ChildGuard::spawn(
        Command::new("sh")
            .args([
                "-c",
                "read _; head -c1 /dev/zero | od -An -tx1; head -c1 /dev/null",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    cg.0.add(child.pid()).unwrap();
    // Only now, inside the cgroup, does the child open the devices.
    child
        .child()
        .stdin
        .take()
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.contains("00"),
        "/dev/zero must stay readable: {stdout:?} {stderr:?}"
    );
    assert!(!out.status.success());
    assert!(stderr.contains("Operation not permitted"), "{stderr:?}");
}

#[test]
fn privileged_v2_device_filter_is_replaced_on_update() {
    let Some(cg) = real_cgroup("v2devupd") else {
        return;
    };
    let deny =
        r#"{"devices": [{"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}"#;
    cg.0.apply(&resources(deny)).unwrap();
    // A second, permissive rule set must replace the first, not add to it.
    cg.0.apply(&resources(
        r#"{"devices": [{"allow": true, "access": "rwm"}]}"#,
    ))
    .unwrap();
    let fd = {
        let p = cg.0.clone_into_fd().unwrap().unwrap();
        let path = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&p)
        ))
        .unwrap();
        std::os::fd::OwnedFd::from(std::fs::File::open(path).unwrap())
    };
    assert_eq!(devices::attached_programs(&fd).unwrap().len(), 1);
    let mut child = ChildGuard::spawn(
        Command::new("sh")
            .args(["-c", "read _; head -c1 /dev/null"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    cg.0.add(child.pid()).unwrap();
    child
        .child()
        .stdin
        .take()
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
