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
