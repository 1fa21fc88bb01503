//! Tests of the v1 backend: fixture trees for the file mapping, the real kernel's v1
//! hierarchies for limits, membership, freezing, killing and removal.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use super::*;
use crate::engine::cgroups::files::record;
use crate::engine::cgroups::testutil::*;
use crate::engine::cgroups::{open_path, resolve_path, CgroupVersion};
use crate::engine::ErrorKind;

/// Control files per hierarchy, as an older kernel (CFQ weights, kmem limits) has them.
const FILES: &[(&str, &[&str])] = &[
    (
        "cpu",
        &[
            "cpu.shares",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpu.cfs_burst_us",
            "cpu.idle",
        ],
    ),
    ("cpuacct", &[]),
    ("cpuset", &["cpuset.cpus", "cpuset.mems"]),
    (
        "memory",
        &[
            "memory.memsw.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.kmem.limit_in_bytes",
            "memory.kmem.tcp.limit_in_bytes",
            "memory.swappiness",
            "memory.oom_control",
            "memory.use_hierarchy",
        ],
    ),
    ("devices", &["devices.allow", "devices.deny"]),
    ("freezer", &["freezer.state"]),
    (
        "blkio",
        &[
            "blkio.weight",
            "blkio.leaf_weight",
            "blkio.weight_device",
            "blkio.leaf_weight_device",
            "blkio.throttle.read_bps_device",
            "blkio.throttle.write_bps_device",
            "blkio.throttle.read_iops_device",
            "blkio.throttle.write_iops_device",
        ],
    ),
    ("pids", &["pids.max"]),
    ("hugetlb", &["hugetlb.2MB.limit_in_bytes"]),
    ("net_cls", &["net_cls.classid"]),
    ("net_prio", &["net_prio.ifpriomap"]),
    ("rdma", &["rdma.max"]),
];

/// The container path: "/c1" everywhere but memory, where minid itself sits deeper.
fn cpath() -> CgroupPath {
    let mut p = CgroupPath::uniform("/process_api/h/c1");
    for (c, _) in FILES {
        if *c != "memory" {
            p.v1.insert(c.to_string(), "/c1".to_string());
        }
    }
    p
}

fn fixture() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = cpath();
    for (c, files) in FILES {
        let dir = d
            .path()
            .join(c)
            .join(p.for_controller(c).trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        for f in *files {
            std::fs::write(dir.join(f), "").unwrap();
        }
        std::fs::write(dir.join("cgroup.procs"), "").unwrap();
    }
    let mem = d.path().join("memory/process_api/h/c1");
    write_files(
        &mem,
        &[
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.usage_in_bytes", "1048576\n"),
        ],
    );
    // Not ours: must be ignored.
    std::fs::create_dir_all(d.path().join("systemd")).unwrap();
    std::fs::create_dir_all(d.path().join("unified")).unwrap();
    d
}

const FULL: &str = r#"{
    "memory": {"limit": 536870912, "reservation": 268435456, "swap": 805306368,
               "kernel": 67108864, "kernelTCP": 16777216, "swappiness": 10,
               "disableOOMKiller": true, "useHierarchy": true, "checkBeforeUpdate": true},
    "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 10000, "idle": 0,
            "cpus": "0-1", "mems": "0", "realtimeRuntime": 0},
    "pids": {"limit": 100},
    "blockIO": {
        "weight": 500, "leafWeight": 300,
        "weightDevice": [{"major": 8, "minor": 0, "weight": 100, "leafWeight": 50}],
        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
        "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
        "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 0}]
    },
    "hugepageLimits": [{"pageSize": "2MB", "limit": 1073741824}],
    "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
    "rdma": {"mlx5_0": {"hcaHandles": 3}},
    "unified": {},
    "devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 136, "access": "rwm"}
    ]
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
fn hierarchies_are_found_and_deduplicated() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("cpu,cpuacct")).unwrap();
    std::os::unix::fs::symlink("cpu,cpuacct", d.path().join("cpu")).unwrap();
    std::os::unix::fs::symlink("cpu,cpuacct", d.path().join("cpuacct")).unwrap();
    std::fs::create_dir_all(d.path().join("memory")).unwrap();
    std::fs::create_dir_all(d.path().join("systemd")).unwrap();
    let cg = V1Cgroup::new(d.path(), &CgroupPath::uniform("/x"));
    let keys: Vec<&String> = cg.hierarchies.keys().collect();
    assert_eq!(keys, ["cpu", "cpuacct", "memory"]);
    let dirs = cg.all_dirs();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
    cg.create().unwrap();
    assert!(d.path().join("cpu,cpuacct/x").is_dir());
    assert!(d.path().join("memory/x").is_dir());
}

#[test]
fn apply_full_resources_writes_exact_bytes() {
    let d = fixture();
    let cg = open_path(d.path(), CgroupVersion::V1, &cpath());
    assert_eq!(cg.path(), "/process_api/h/c1");
    let (r, log) = record::capture(|| cg.apply(&resources(FULL)));
    r.unwrap();
    assert_eq!(
        rel(&log, d.path()),
        pairs(&[
            // The current limit (unlimited) is above the new memsw: lower the limit first.
            ("memory/process_api/h/c1/memory.limit_in_bytes", "536870912"),
            (
                "memory/process_api/h/c1/memory.memsw.limit_in_bytes",
                "805306368"
            ),
            (
                "memory/process_api/h/c1/memory.soft_limit_in_bytes",
                "268435456"
            ),
            (
                "memory/process_api/h/c1/memory.kmem.limit_in_bytes",
                "67108864"
            ),
            (
                "memory/process_api/h/c1/memory.kmem.tcp.limit_in_bytes",
                "16777216"
            ),
            ("memory/process_api/h/c1/memory.swappiness", "10"),
            ("memory/process_api/h/c1/memory.oom_control", "1"),
            ("memory/process_api/h/c1/memory.use_hierarchy", "1"),
            ("cpu/c1/cpu.shares", "1024"),
            ("cpu/c1/cpu.cfs_period_us", "100000"),
            ("cpu/c1/cpu.cfs_quota_us", "50000"),
            ("cpu/c1/cpu.cfs_burst_us", "10000"),
            ("cpu/c1/cpu.idle", "0"),
            ("cpuset/c1/cpuset.cpus", "0-1"),
            ("cpuset/c1/cpuset.mems", "0"),
            ("pids/c1/pids.max", "100"),
            ("blkio/c1/blkio.weight", "500"),
            ("blkio/c1/blkio.leaf_weight", "300"),
            ("blkio/c1/blkio.weight_device", "8:0 100"),
            ("blkio/c1/blkio.leaf_weight_device", "8:0 50"),
            ("blkio/c1/blkio.throttle.read_bps_device", "8:0 1048576"),
            ("blkio/c1/blkio.throttle.write_bps_device", "8:0 2097152"),
            ("blkio/c1/blkio.throttle.read_iops_device", "8:16 100"),
            ("blkio/c1/blkio.throttle.write_iops_device", "8:0 0"),
            ("hugetlb/c1/hugetlb.2MB.limit_in_bytes", "1073741824"),
            ("net_cls/c1/net_cls.classid", "1048577"),
            ("net_prio/c1/net_prio.ifpriomap", "eth0 5"),
            ("rdma/c1/rdma.max", "mlx5_0 hca_handle=3"),
            ("devices/c1/devices.deny", "a"),
            ("devices/c1/devices.allow", "c 1:3 rwm"),
            ("devices/c1/devices.allow", "c 136:* rwm"),
        ])
    );
}

#[test]
fn memsw_is_raised_before_the_limit() {
    let d = fixture();
    let mem = d.path().join("memory/process_api/h/c1");
    std::fs::write(mem.join("memory.limit_in_bytes"), "104857600\n").unwrap();
    let cg = open_path(d.path(), CgroupVersion::V1, &cpath());
    let res = resources(r#"{"memory": {"limit": 209715200, "swap": 419430400}}"#);
    let (r, log) = record::capture(|| cg.apply(&res));
    r.unwrap();
    assert_eq!(
        rel(&log, &mem),
        pairs(&[
            ("memory.memsw.limit_in_bytes", "419430400"),
            ("memory.limit_in_bytes", "209715200"),
        ])
    );
}

#[test]
fn bfq_weight_when_cfq_is_gone() {
    let d = fixture();
    let blk = d.path().join("blkio/c1");
    std::fs::remove_file(blk.join("blkio.weight")).unwrap();
    std::fs::write(blk.join("blkio.bfq.weight"), "").unwrap();
    let cg = open_path(d.path(), CgroupVersion::V1, &cpath());
    let (r, log) = record::capture(|| cg.apply(&resources(r#"{"blockIO": {"weight": 200}}"#)));
    r.unwrap();
    assert_eq!(rel(&log, &blk), pairs(&[("blkio.bfq.weight", "200")]));
}

#[test]
fn refusals_name_the_field_and_write_nothing() {
    let d = fixture();
    let mem = d.path().join("memory/process_api/h/c1");
    std::fs::remove_file(mem.join("memory.kmem.tcp.limit_in_bytes")).unwrap();
    std::fs::remove_file(d.path().join("blkio/c1/blkio.leaf_weight")).unwrap();
    std::fs::remove_dir_all(d.path().join("net_cls")).unwrap();
    let cg = open_path(d.path(), CgroupVersion::V1, &cpath());
    let cases = [
        (r#"{"unified": {"memory.high": "1"}}"#, "unified"),
        (
            r#"{"cpu": {"realtimeRuntime": 950000}}"#,
            "cpu.realtimeRuntime",
        ),
        (r#"{"memory": {"kernelTCP": 1}}"#, "memory.kernelTCP"),
        (r#"{"memory": {"swappiness": 101}}"#, "memory.swappiness"),
        (
            r#"{"memory": {"limit": 2097152, "swap": 1048576}}"#,
            "memory.swap",
        ),
        (r#"{"memory": {"limit": -5}}"#, "memory.limit"),
        (
            r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#,
            "memory.limit",
        ),
        (
            r#"{"pids": {"limit": 3}, "blockIO": {"leafWeight": 10}}"#,
            "blockIO.leafWeight",
        ),
        (r#"{"network": {"classID": 1}}"#, "network.classID"),
        (
            r#"{"hugepageLimits": [{"pageSize": "1GB", "limit": 1}]}"#,
            "hugepageLimits[0] (1GB)",
        ),
        (
            r#"{"devices": [{"allow": true, "access": "rwx"}]}"#,
            "devices[0].access",
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
fn swap_without_swap_accounting_is_a_clear_error() {
    let d = fixture();
    let mem = d.path().join("memory/process_api/h/c1");
    std::fs::remove_file(mem.join("memory.memsw.limit_in_bytes")).unwrap();
    let cg = open_path(d.path(), CgroupVersion::V1, &cpath());
    let e = cg
        .apply(&resources(
            r#"{"memory": {"limit": 1048576, "swap": 2097152}}"#,
        ))
        .unwrap_err();
    assert!(e.to_string().contains("swapaccount=1"), "{e}");
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
}

#[test]
fn create_initialises_cpuset_from_the_parent() {
    let d = tempfile::tempdir().unwrap();
    write_files(
        &d.path().join("cpuset"),
        &[("cpuset.cpus", "0-1\n"), ("cpuset.mems", "0\n")],
    );
    std::fs::create_dir_all(d.path().join("memory")).unwrap();
    // The fixture cannot grow control files on mkdir: pre-create the levels like the kernel
    // would, with empty cpusets.
    for lvl in ["cpuset/minid", "cpuset/minid/c1"] {
        write_files(
            &d.path().join(lvl),
            &[("cpuset.cpus", "\n"), ("cpuset.mems", "\n")],
        );
    }
    let cg = open_path(
        d.path(),
        CgroupVersion::V1,
        &CgroupPath::uniform("/minid/c1"),
    );
    let (r, log) = record::capture(|| cg.create());
    r.unwrap();
    assert_eq!(
        rel(&log, d.path()),
        pairs(&[
            ("cpuset/minid/cpuset.cpus", "0-1"),
            ("cpuset/minid/cpuset.mems", "0"),
            ("cpuset/minid/c1/cpuset.cpus", "0-1"),
            ("cpuset/minid/c1/cpuset.mems", "0"),
        ])
    );
    assert!(d.path().join("memory/minid/c1").is_dir());
}

#[test]
fn fixture_membership_and_counters() {
    let d = fixture();
    let cg = open_path(d.path(), CgroupVersion::V1, &cpath());
    let (r, log) = record::capture(|| cg.add(4242));
    r.unwrap();
    // One write per hierarchy, in each hierarchy's own path.
    assert_eq!(log.len(), FILES.len());
    assert!(log
        .iter()
        .any(|(p, v)| p.ends_with("memory/process_api/h/c1/cgroup.procs") && v == "4242"));
    write_files(&d.path().join("pids/c1"), &[("cgroup.procs", "5\n3\n")]);
    write_files(
        &d.path().join("memory/process_api/h/c1"),
        &[("cgroup.procs", "3\n")],
    );
    // The union over hierarchies: 4242 is still listed in the fixture files add() wrote.
    assert_eq!(cg.pids().unwrap(), vec![3, 5, 4242]);
    write_files(
        &d.path().join("memory/process_api/h/c1"),
        &[(
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
        )],
    );
    assert_eq!(cg.oom_kill_count().unwrap(), 4);
    assert!(cg.clone_into_fd().unwrap().is_none());
    write_files(
        &d.path().join("freezer/c1"),
        &[("freezer.state", "FROZEN\n")],
    );
    cg.freeze().unwrap();
}

// ---- privileged: the real v1 hierarchies ----------------------------------------------------

fn state(pid: i32) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find(|l| l.starts_with("State:"))
        .unwrap_or("")
        .to_string()
}

#[test]
fn privileged_v1_limits_membership_freeze_kill_remove() {
    let Some((root, own)) = privileged(CgroupVersion::V1, &["memory", "pids", "freezer", "cpu"])
    else {
        return;
    };
    let name = unique("v1");
    let p = resolve_path(&own, CgroupVersion::V1, Some(Path::new(&name)), None, "x").unwrap();
    let cg = CgroupGuard(open_path(&root, CgroupVersion::V1, &p));
    cg.0.create().unwrap();
    let dir = |c: &str| {
        root.join(c)
            .join(p.for_controller(c).trim_start_matches('/'))
    };
    for c in ["memory", "pids", "freezer", "cpu"] {
        assert!(dir(c).is_dir(), "{}", dir(c).display());
    }

    cg.0.apply(&resources(
        r#"{"memory": {"limit": 67108864}, "pids": {"limit": 32}, "cpu": {"shares": 512}}"#,
    ))
    .unwrap();
    // Read back what the kernel now enforces.
    assert_eq!(
        read(&dir("memory").join("memory.limit_in_bytes")).trim(),
        "67108864"
    );
    assert_eq!(read(&dir("pids").join("pids.max")).trim(), "32");
    assert_eq!(read(&dir("cpu").join("cpu.shares")).trim(), "512");

    let mut child = ChildGuard::sleep();
    let pid = child.pid();
    cg.0.add(pid).unwrap();
    assert_eq!(cg.0.pids().unwrap(), vec![pid]);
    let membership = read(Path::new(&format!("/proc/{pid}/cgroup")));
    assert!(
        membership.contains(&format!("memory:{}\n", p.for_controller("memory"))),
        "{membership}"
    );

    let s = cg.0.stats().unwrap();
    assert_eq!(s.pids_current, 1);
    assert_eq!(s.pids_limit, Some(32));
    assert_eq!(s.memory_limit, Some(67_108_864));

    cg.0.freeze().unwrap();
    assert_eq!(read(&dir("freezer").join("freezer.state")).trim(), "FROZEN");
    // A frozen task sleeps uninterruptibly in the freezer ("D").
    assert!(state(pid).contains('D'), "{}", state(pid));
    cg.0.thaw().unwrap();
    assert_eq!(read(&dir("freezer").join("freezer.state")).trim(), "THAWED");

    cg.0.kill_all(libc::SIGKILL).unwrap();
    let st = child.wait();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL)
    );

    cg.0.remove().unwrap();
    for c in [
        "memory", "pids", "freezer", "cpu", "cpuset", "devices", "blkio",
    ] {
        assert!(!dir(c).exists(), "{} still exists", dir(c).display());
    }
}

#[test]
fn privileged_v1_device_rules_reach_the_kernel() {
    let Some((root, own)) = privileged(CgroupVersion::V1, &["devices", "pids"]) else {
        return;
    };
    let name = unique("v1dev");
    let p = resolve_path(&own, CgroupVersion::V1, Some(Path::new(&name)), None, "x").unwrap();
    let cg = CgroupGuard(open_path(&root, CgroupVersion::V1, &p));
    cg.0.create().unwrap();
    cg.0.apply(&resources(
        r#"{"devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]}"#,
    ))
    .unwrap();
    let list = read(
        &root
            .join("devices")
            .join(p.for_controller("devices").trim_start_matches('/'))
            .join("devices.list"),
    );
    assert_eq!(list.trim(), "c 1:5 rwm");
}

#[test]
fn rename_moves_every_hierarchy_and_refuses_a_non_sibling() {
    let d = fixture();
    let cg = open_path(d.path(), CgroupVersion::V1, &cpath());
    // The container's name, beside the standby's in every hierarchy.
    let mut to = CgroupPath::uniform("/process_api/h/c2");
    for (c, _) in FILES {
        if *c != "memory" {
            to.v1.insert(c.to_string(), "/c2".to_string());
        }
    }
    cg.rename_to(&to).unwrap();
    for (c, _) in FILES {
        let old = d
            .path()
            .join(c)
            .join(cpath().for_controller(c).trim_start_matches('/'));
        let new = d
            .path()
            .join(c)
            .join(to.for_controller(c).trim_start_matches('/'));
        assert!(!old.exists(), "{} still there", old.display());
        assert!(
            new.join("cgroup.procs").exists(),
            "{} missing",
            new.display()
        );
    }
    // Back again, then a target in another parent: refused before anything moves.
    open_path(d.path(), CgroupVersion::V1, &to)
        .rename_to(&cpath())
        .unwrap();
    let err = cg
        .rename_to(&CgroupPath::uniform("/elsewhere/c3"))
        .unwrap_err();
    assert!(err.to_string().contains("not a sibling"), "{err}");
    for (c, _) in FILES {
        let old = d
            .path()
            .join(c)
            .join(cpath().for_controller(c).trim_start_matches('/'));
        assert!(old.is_dir(), "{} moved", old.display());
    }
}

#[test]
fn privileged_v1_rename_keeps_its_processes_and_limits() {
    let Some((root, own)) = privileged(CgroupVersion::V1, &["memory", "pids"]) else {
        return;
    };
    let name = unique("v1ren");
    let from = resolve_path(&own, CgroupVersion::V1, None, Some(&name), "standby").unwrap();
    let to = resolve_path(&own, CgroupVersion::V1, None, Some(&name), "container").unwrap();
    let parent = CgroupGuard(open_path(
        &root,
        CgroupVersion::V1,
        &resolve_path(&own, CgroupVersion::V1, Some(Path::new(&name)), None, "x").unwrap(),
    ));
    let cg = open_path(&root, CgroupVersion::V1, &from);
    cg.create().unwrap();
    let mut child = ChildGuard::sleep();
    let pid = child.pid();
    cg.add(pid).unwrap();
    cg.rename_to(&to).unwrap();
    let renamed = CgroupGuard(open_path(&root, CgroupVersion::V1, &to));
    // The process moved with its cgroup, and limits written now reach it.
    assert_eq!(renamed.0.pids().unwrap(), vec![pid]);
    let membership = read(Path::new(&format!("/proc/{pid}/cgroup")));
    assert!(
        membership.contains(&format!("memory:{}\n", to.for_controller("memory"))),
        "{membership}"
    );
    renamed
        .0
        .apply(&resources(r#"{"pids": {"limit": 7}}"#))
        .unwrap();
    assert_eq!(renamed.0.stats().unwrap().pids_limit, Some(7));
    renamed.0.kill_all(libc::SIGKILL).unwrap();
    child.wait();
    drop(renamed);
    drop(parent);
}
