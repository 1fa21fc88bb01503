//! `kill -9` of minid while containers run and log, then a new minid on the same state:
//! every container is still there with the right status, logs have no gap and no duplicate,
//! an exit that happened meanwhile reports its real code, restart policies resume, and a
//! corrupt state file is quarantined without hiding the others.

use std::time::Duration;

use mini_e2e::{require_root, stderr, Node};

fn numbers(text: &str) -> Vec<u64> {
    text.lines()
        .map(|l| {
            l.trim()
                .parse()
                .unwrap_or_else(|_| panic!("not a number: {l:?}"))
        })
        .collect()
}

#[test]
fn containers_survive_a_killed_agent() {
    require_root!();
    let mut n = Node::start();
    n.ok(&[
        "run",
        "-d",
        "--name",
        "logger",
        "busybox",
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done",
    ]);
    n.ok(&[
        "run",
        "-d",
        "--name",
        "quitter",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 7",
    ]);
    n.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:5",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 1",
    ]);
    let broken = n.ok(&["create", "--name", "broken", "busybox", "true"]);
    let broken = broken.trim().to_string();
    std::thread::sleep(Duration::from_millis(300));

    n.kill9();
    // While the agent is away: the logger keeps logging, quitter and flaky exit.
    std::fs::write(
        n.state.join("containers").join(&broken).join("meta.json"),
        b"{\"id\": \"torn",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    n.launch();

    let i = n.inspect("logger");
    assert_eq!(i["State"]["Status"], "running", "{i}");
    let q = n.inspect("quitter");
    assert_eq!(q["State"]["Status"], "exited", "{q}");
    assert_eq!(q["State"]["ExitCode"], 7);
    let w = n.ctl(&["wait", "quitter"]);
    assert_eq!(w.status.code(), Some(7), "{}", stderr(&w));

    // The corrupt one is reported and set aside; the others load.
    let out = n.ctl(&["inspect", "broken"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(n.log().contains("quarantined"), "{}", n.log());
    assert!(n
        .state
        .join("quarantine")
        .read_dir()
        .unwrap()
        .next()
        .is_some());

    // flaky exited (1) while nobody watched: its policy applies now.
    n.until(Duration::from_secs(10), "flaky to be restarted", || {
        n.inspect("flaky")["RestartCount"].as_u64().unwrap_or(0) >= 1
    });

    // The logger's output across the outage: consecutive, no gap, no duplicate.
    std::thread::sleep(Duration::from_millis(300));
    n.ok(&["stop", "-t", "1", "logger"]);
    let nums = numbers(&n.ok(&["logs", "logger"]));
    assert!(nums.len() > 40, "{} lines", nums.len());
    for (k, v) in nums.iter().enumerate() {
        assert_eq!(*v, k as u64 + 1, "line {k}: a gap or duplicate");
    }
}

#[test]
fn sigterm_stops_the_agent_even_with_open_streams_and_containers_run_on() {
    require_root!();
    let mut n = Node::start();
    n.ok(&[
        "run",
        "-d",
        "--name",
        "svc",
        "busybox",
        "sh",
        "-c",
        "while :; do echo tick; sleep 0.2; done",
    ]);
    let mut follower = n.ctl_spawn(&["logs", "-f", "svc"]);
    std::thread::sleep(Duration::from_millis(500));
    let t0 = std::time::Instant::now();
    let st = n
        .stop(Duration::from_secs(15))
        .expect("minid did not exit after SIGTERM");
    assert!(st.success(), "{st:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    let _ = follower.kill();
    let _ = follower.wait();
    n.launch();
    assert_eq!(n.inspect("svc")["State"]["Status"], "running");
}

/// What a reboot leaves of a container whose init runs: its state on disk, none of its
/// processes, none of the engine's state (on tmpfs), no namespace mount, an empty cgroup (gone
/// too after a real reboot, removed here). Done while its agent is down.
fn reboot_away(n: &Node, id: &str) {
    let dir = n.run.join(id);
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).expect("state.json"))
            .expect("record");
    let init = rec["pid"].as_i64().expect("init pid") as i32;
    // The init is ours (this test's agent started it); its shim records its end and exits.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the init");
    n.until(Duration::from_secs(10), "the shim's exit record", || {
        dir.join("exit.json").exists()
    });
    std::fs::remove_dir_all(&dir).expect("remove the engine state");
    let netns = n.run.join("netns").join(id);
    let _ = nix::mount::umount2(&netns, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_file(&netns);
    let mut paths: Vec<String> = vec![rec["cgroup"]["path"].as_str().expect("path").into()];
    if let Some(m) = rec["cgroup"]["v1"].as_object() {
        paths.extend(m.values().filter_map(|v| v.as_str().map(String::from)));
    }
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup root")
        .flatten()
    {
        for p in &paths {
            let _ = std::fs::remove_dir(h.path().join(p.trim_start_matches('/')));
        }
    }
}

#[test]
fn an_auto_removed_container_whose_run_a_reboot_ended_is_removed() {
    require_root!();
    let mut n = Node::start();
    let gone = n.ok(&["create", "--rm", "--network", "none", "busybox", "true"]);
    let gone = gone.trim().to_string();
    let kept = n.ok(&["create", "--network", "none", "busybox", "true"]);
    let kept = kept.trim().to_string();
    n.kill9();
    reboot_away(&n, &gone);
    n.launch();
    n.until(
        Duration::from_secs(10),
        "the --rm container's removal",
        || !n.ok(&["ps", "-aq", "--no-trunc"]).contains(&gone),
    );
    assert!(
        !n.state.join("containers").join(&gone).exists(),
        "its files are left"
    );
    // One without --rm is still there, and still runs.
    let out = n.ctl(&["start", "-a", &kept]);
    assert!(out.status.success(), "{}", stderr(&out));
}
