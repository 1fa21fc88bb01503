//! Standby shims: containers made through a shim started ahead of them are like any other
//! (their own cgroup, its limits, their exit), and a standby goes away with its minid, with
//! its cgroup, whether minid stops or is killed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mini_e2e::{require_root, Node};

/// The standby shims of the agent whose run root is `run`: (pid, its cgroup on cgroup v1).
fn standbys(run: &std::path::Path) -> Vec<(i32, Option<PathBuf>)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if !args.iter().any(|a| a == "shim-standby")
            || !args.iter().any(|a| std::path::Path::new(a) == run)
        {
            continue;
        }
        // The standby's cgroup is beside the containers', under the shim's own pids cgroup.
        let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let dir = own
            .lines()
            .find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_string()))
            .map(|p| {
                PathBuf::from("/sys/fs/cgroup/pids")
                    .join(p.trim_start_matches('/'))
                    .join("minid")
                    .join(format!("minid-standby-{pid}"))
            });
        out.push((pid, dir));
    }
    out
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn standbys_make_ordinary_containers_and_leave_with_their_agent() {
    require_root!();
    let mut n = Node::start();
    let run = n.run.clone();
    wait_for("a standby shim", Duration::from_secs(10), || {
        !standbys(&run).is_empty()
    });
    let v1 = std::path::Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists();
    let holds_a_process = |d: &Option<PathBuf>| {
        d.as_ref().is_some_and(|d| {
            std::fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|s| !s.trim().is_empty())
        })
    };
    if v1 {
        // Its init is in its own cgroup before any create asks for it: the move's grace period
        // passes while nobody waits.
        wait_for(
            "the standby's init in its cgroup",
            Duration::from_secs(10),
            || standbys(&run).iter().any(|(_, d)| holds_a_process(d)),
        );
    }
    let first = standbys(&run);

    // Taken by this create: its limits are the container's, and it reports the exit.
    let out = n.ctl(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-m",
        "48m",
        "--pids-limit",
        "17",
        "busybox",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "17");
    let id = n.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "-m",
        "48m",
        "busybox",
        "sleep",
        "60",
    ]);
    let id = id.trim();
    let pid = n.inspect(id)["State"]["Pid"].as_i64().expect("pid");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let mem = cg
        .lines()
        .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_string()))
        .expect("memory line");
    assert!(mem.ends_with(&format!("/minid/{id}")), "{mem}");
    if v1 {
        let limit =
            std::fs::read_to_string(format!("/sys/fs/cgroup/memory{mem}/memory.limit_in_bytes"))
                .expect("limit");
        assert_eq!(limit.trim(), (48u64 << 20).to_string());
        // The standby that made it left no cgroup of its own behind.
        for (_, d) in &first {
            let d = d.as_ref().expect("v1 cgroup path");
            assert!(!d.exists(), "{} left", d.display());
        }
    }
    n.ok(&["rm", "-f", id]);

    // A new standby waits; a stopped agent takes it along, cgroup and all.
    wait_for("the next standby", Duration::from_secs(10), || {
        !standbys(&run).is_empty()
    });
    let waiting = standbys(&run);
    assert!(
        n.stop(Duration::from_secs(10)).is_some(),
        "minid did not stop"
    );
    assert!(standbys(&run).is_empty(), "standby left after a stop");
    for (_, d) in waiting
        .iter()
        .filter_map(|(p, d)| d.as_ref().map(|d| (p, d)))
    {
        assert!(!d.exists(), "{} left after a stop", d.display());
    }

    // Killed, the agent cannot say so: its standby sees its job pipe close and goes.
    n.launch();
    wait_for(
        "a standby after the restart",
        Duration::from_secs(10),
        || !standbys(&run).is_empty(),
    );
    let waiting = standbys(&run);
    n.kill9();
    wait_for(
        "the standby to go with its killed agent",
        Duration::from_secs(5),
        || {
            standbys(&run).is_empty()
                && waiting
                    .iter()
                    .all(|(_, d)| d.as_ref().is_none_or(|d| !d.exists()))
        },
    );
}
