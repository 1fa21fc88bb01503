//! Containers through minictl and a real minid serve: run, exit codes, logs, limits, stop,
//! remove, and the errors a user sees for bad input.

use std::time::Duration;

use mini_e2e::{require_root, stderr, stdout, Node, PtySession};

#[test]
fn run_rm_prints_and_exits_with_the_container_status() {
    require_root!();
    let n = Node::start();
    let out = n.ctl(&["run", "--rm", "busybox", "echo", "hello"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "hello\n");
    // --rm: nothing left.
    assert_eq!(n.ok(&["ps", "-aq"]), "");

    let out = n.ctl(&[
        "run",
        "--name",
        "three",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
    let i = n.inspect("three");
    assert_eq!(i["State"]["Status"], "exited");
    assert_eq!(i["State"]["ExitCode"], 3);

    // A signal: 128+N, as Docker reports it (pid 1 of a pid namespace only dies of KILL).
    n.ok(&["run", "-d", "--name", "sleeper", "busybox", "sleep", "100"]);
    n.ok(&["kill", "-s", "KILL", "sleeper"]);
    let w = n.ctl(&["wait", "sleeper"]);
    assert_eq!(w.status.code(), Some(128 + 9), "{}", stderr(&w));
    assert_eq!(n.inspect("sleeper")["State"]["Signal"], 9);

    // A command that does not exist: 127, and the reason.
    let out = n.ctl(&["run", "--rm", "busybox", "/no/such/binary"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(stderr(&out).contains("/no/such/binary"), "{}", stderr(&out));
}

#[test]
fn output_bytes_are_kept_exactly() {
    require_root!();
    let n = Node::start();
    // Invalid UTF-8, a partial last line, and an empty line must come back byte for byte.
    let out = n.ctl(&[
        "run",
        "--rm",
        "busybox",
        "printf",
        "a\\377b\\n\\nno newline",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"a\xffb\n\nno newline");
}

#[test]
fn detached_container_limits_logs_stop_and_remove() {
    require_root!();
    let n = Node::start();
    let id = n.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-m",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "32",
        "-l",
        "tier=web",
        "busybox",
        "sh",
        "-c",
        "i=0; while :; do i=$((i+1)); echo line $i; sleep 0.1; done",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    let ps = n.ok(&["ps"]);
    assert!(ps.starts_with("CONTAINER ID"), "{ps}");
    assert!(
        ps.contains("web") && ps.contains(&id[..12]) && ps.contains("Up "),
        "{ps}"
    );
    assert_eq!(
        n.ok(&["ps", "-q", "--filter", "label=tier=web"]).trim(),
        &id[..12]
    );
    assert_eq!(n.ok(&["ps", "-q", "--filter", "label=tier=db"]), "");

    // The limits the kernel enforces, read from inside.
    let i = n.inspect("web");
    assert_eq!(i["HostConfig"]["Memory"], 64 << 20);
    assert_eq!(i["State"]["Running"], true);
    let stats = n.ok(&["stats", "--no-stream"]);
    assert!(stats.contains("/ 64MiB"), "{stats}");

    // Logs: the tail, then every new line exactly once (numbers are consecutive).
    n.until(Duration::from_secs(5), "10 lines", || {
        n.ok(&["logs", "web"]).lines().count() >= 10
    });
    let tail = n.ok(&["logs", "--tail", "3", "web"]);
    assert_eq!(tail.lines().count(), 3, "{tail}");
    let follow = n.ctl_spawn(&["logs", "-f", "--tail", "2", "web"]);
    std::thread::sleep(Duration::from_millis(800));
    // Stop ends the follower after the container's last line (sh as pid 1 ignores SIGTERM,
    // so this also exercises the SIGKILL after the timeout).
    let t0 = std::time::Instant::now();
    n.ok(&["stop", "-t", "1", "web"]);
    assert!(t0.elapsed() < Duration::from_secs(5));
    let out = follow.wait_with_output().expect("follower");
    assert!(out.status.success());
    let nums: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| l.trim_start_matches("line ").parse().expect("line N"))
        .collect();
    assert!(nums.len() >= 6, "{nums:?}");
    for w in nums.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a gap or a duplicate: {nums:?}");
    }
    let all: Vec<u64> = n
        .ok(&["logs", "web"])
        .lines()
        .map(|l| l.trim_start_matches("line ").parse().expect("line N"))
        .collect();
    assert_eq!(all.last(), nums.last(), "the follower got the last line");
    let i = n.inspect("web");
    assert_eq!(i["State"]["Status"], "exited");
    assert_eq!(i["State"]["ExitCode"], 137);
    let w = n.ctl(&["wait", "web"]);
    assert_eq!(
        w.status.code(),
        Some(137),
        "wait exits with the container's status"
    );
    assert_eq!(stdout(&w).trim(), "137");

    // Start again (Docker's start of an exited container), then force-remove it running.
    n.ok(&["start", "web"]);
    assert_eq!(n.inspect("web")["State"]["Status"], "running");
    let out = n.ctl(&["rm", "web"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("stop it first"), "{}", stderr(&out));
    n.ok(&["rm", "-f", "web"]);
    assert_eq!(n.ok(&["ps", "-aq"]), "");
    // Removing again: -f is idempotent, plain rm says so.
    assert_eq!(n.ctl(&["rm", "-f", "web"]).status.code(), Some(0));
    let out = n.ctl(&["rm", "web"]);
    assert!(
        stderr(&out).contains("no such container"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn memory_limit_is_enforced_and_oom_reported() {
    require_root!();
    let n = Node::start();
    // A shell that keeps doubling a string until the kernel kills it.
    let out = n.ctl(&[
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while :; do x=$x$x; done",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    let i = n.inspect("hog");
    assert_eq!(i["State"]["OOMKilled"], true, "{i}");
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_changes_nothing() {
    require_root!();
    let n = Node::start();
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "-m", "12Q", "busybox", "true"],
            "\"12Q\" is not a size",
        ),
        (&["run", "--cpus", "lots", "busybox", "true"], "--cpus"),
        (
            &["run", "nosuch:latest", "true"],
            "image \"nosuch:latest\" not found on node",
        ),
        (
            &["run", "--name", "bad name", "busybox", "true"],
            "invalid container name",
        ),
        (
            &["run", "--restart", "sometimes", "busybox", "true"],
            "--restart",
        ),
        (
            &["run", "--cpus", "1000", "busybox", "true"],
            "CPU unallocated",
        ),
        (
            &["run", "-m", "100t", "busybox", "true"],
            "memory unallocated",
        ),
        (&["logs", "nosuch"], "does not exist"),
        (&["stop", "nosuch"], "does not exist"),
        (
            &["run", "-v", "/no/such/dir:/data", "busybox", "true"],
            "does not exist on this node",
        ),
    ];
    for (args, want) in cases {
        let out = n.ctl(args);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(want),
            "{args:?}: {:?} lacks {want:?}",
            stderr(&out)
        );
    }
    assert_eq!(
        n.ok(&["ps", "-aq"]),
        "",
        "a refused create left something behind"
    );
    // A duplicate name.
    n.ok(&["create", "--name", "dup", "busybox", "true"]);
    let out = n.ctl(&["create", "--name", "dup", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("already in use"), "{}", stderr(&out));
    assert_eq!(n.ok(&["ps", "-aq"]).lines().count(), 1);
}

#[test]
fn restart_policies_run_it_again_with_back_off() {
    require_root!();
    let n = Node::start();
    n.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    n.until(Duration::from_secs(10), "two restarts", || {
        let i = n.inspect("flaky");
        i["RestartCount"] == 2 && i["State"]["Status"] == "exited"
    });
    // on-failure:2 gives up after two restarts: three runs in the log.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(n.inspect("flaky")["RestartCount"], 2);
    assert_eq!(n.ok(&["logs", "flaky"]), "run\nrun\nrun\n");

    // always, stopped by the user: not restarted.
    n.ok(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "sleep 0.2; exit 0",
    ]);
    n.until(Duration::from_secs(10), "a restart", || {
        n.inspect("loop")["RestartCount"].as_u64().unwrap_or(0) >= 1
    });
    n.ok(&["stop", "-t", "1", "loop"]);
    let count = n.inspect("loop")["RestartCount"].clone();
    std::thread::sleep(Duration::from_millis(1500));
    let i = n.inspect("loop");
    assert_eq!(
        i["RestartCount"], count,
        "a stopped container was restarted"
    );
    assert_ne!(i["State"]["Status"], "running");
}

#[test]
fn events_and_node_info() {
    require_root!();
    let n = Node::start();
    n.ok(&["run", "--rm", "--name", "ev", "busybox", "true"]);
    let out = n.ok(&["--format", "json", "nodes"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("nodes json");
    assert!(v["CpuMillis"].as_i64().unwrap_or(0) >= 1000, "{v}");
    assert_eq!(v["CallerRole"], "operator");
    // The recorded events of that run, in order.
    let mut child = n.ctl_spawn(&[
        "--format",
        "json",
        "events",
        "--since",
        "1h",
        "--filter",
        "container=ev",
    ]);
    std::thread::sleep(Duration::from_millis(700));
    let _ = child.kill();
    let out = child.wait_with_output().expect("events output");
    let actions: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("event json")["action"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        actions,
        vec!["create", "start", "die", "destroy"],
        "{actions:?}"
    );
}

#[test]
fn run_attaches_stdin_and_a_terminal() {
    require_root!();
    let n = Node::start();
    // -i: our stdin reaches the container, and its end ends the container's stdin.
    let mut c = n.ctl_command(&[
        "run",
        "-i",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "cat; echo eof-seen",
    ]);
    c.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().expect("run -i");
    {
        use std::io::Write;
        let mut i = child.stdin.take().expect("stdin");
        i.write_all(b"one\ntwo \xff\n").expect("write");
    }
    let out = child.wait_with_output().expect("run -i output");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"one\ntwo \xff\neof-seen\n");
    // Without -i the container's stdin is empty.
    let out = n.ctl(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "read x; echo \"[$x]\"",
    ]);
    assert_eq!(stdout(&out), "[]\n");

    // -it on a terminal: raw mode, the terminal's size, exit status.
    let mut t = PtySession::spawn(
        n.ctl_command(&["run", "-it", "--rm", "busybox", "sh"]),
        33,
        99,
    );
    t.read_until("# ");
    t.write(b"stty size; tty; echo mark-$((40+2))\n");
    let s = t.read_until("mark-42");
    assert!(
        s.contains("33 99"),
        "the terminal size did not reach the container: {s:?}"
    );
    assert!(s.contains("/dev/pts/"), "{s:?}");
    t.write(b"exit 4\n");
    assert_eq!(t.wait().code(), Some(4));
}

#[test]
fn update_pause_and_wait_conditions() {
    require_root!();
    let n = Node::start();
    n.ok(&[
        "run", "-d", "--name", "u", "-m", "64m", "busybox", "sleep", "1000",
    ]);
    // A live limit change reaches the kernel: the container reads its own cgroup.
    n.ok(&["update", "-m", "96m", "--pids-limit", "50", "u"]);
    let mem = n.ok(&[
        "exec", "u", "sh", "-c",
        "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert_eq!(mem.trim(), (96u64 << 20).to_string());
    let pids = n.ok(&[
        "exec",
        "u",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max",
    ]);
    assert_eq!(pids.trim(), "50");
    assert_eq!(n.inspect("u")["HostConfig"]["Memory"], 96 << 20);
    let out = n.ctl(&["update", "-m", "12Q", "u"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("not a size"), "{}", stderr(&out));

    // stats as JSON: the kernel's counters for this container.
    let st = n.ok(&["--format", "json", "stats", "--no-stream", "u"]);
    let v: serde_json::Value =
        serde_json::from_str(st.lines().next().unwrap_or("")).expect("stats json");
    assert!(v["PageFaults"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(v["PIDs"].as_u64().unwrap_or(0) >= 1, "{v}");
    assert_eq!(v["MemLimit"], 96 << 20, "{v}");

    // top: the container's processes as the host sees them.
    let top = n.ok(&["top", "u"]);
    assert!(top.starts_with("UID"), "{top}");
    assert!(top.contains("sleep 1000"), "{top}");
    let pid = n.inspect("u")["State"]["Pid"].as_i64().unwrap_or(0);
    assert!(top.contains(&format!(" {pid} ")), "{top} lacks {pid}");

    // Pause freezes it (exec is refused, status says so), unpause thaws it.
    n.ok(&["pause", "u"]);
    assert_eq!(n.inspect("u")["State"]["Status"], "paused");
    assert!(n.ok(&["ps"]).contains("(Paused)"));
    n.ok(&["unpause", "u"]);
    assert_eq!(n.inspect("u")["State"]["Status"], "running");

    // wait --condition next-exit blocks until the next exit; removed until it is gone.
    let mut next = n.ctl_spawn(&["wait", "--condition", "next-exit", "u"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        next.try_wait().expect("poll").is_none(),
        "next-exit returned before an exit"
    );
    n.ok(&["kill", "u"]);
    let out = next.wait_with_output().expect("wait next-exit");
    assert_eq!(out.status.code(), Some(137));
    let mut removed = n.ctl_spawn(&["wait", "--condition", "removed", "u"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(removed.try_wait().expect("poll").is_none());
    n.ok(&["rm", "u"]);
    let out = removed.wait_with_output().expect("wait removed");
    assert_eq!(out.status.code(), Some(137));

    // Force-removing a running container: a waiter learns it was killed (137), not "0".
    n.ok(&["run", "-d", "--name", "f", "busybox", "sleep", "1000"]);
    let waiter = n.ctl_spawn(&["wait", "--condition", "removed", "f"]);
    std::thread::sleep(Duration::from_millis(300));
    n.ok(&["rm", "-f", "f"]);
    let out = waiter.wait_with_output().expect("wait removed");
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
}

#[test]
fn concurrent_creates_are_admitted_against_capacity_exactly() {
    require_root!();
    let n = Node::start_with(vec!["--capacity-cpus".into(), "1".into()]);
    let tar = mini_e2e::busybox_tar(n.dir.path());
    n.ok(&["import", tar.to_str().expect("utf-8"), "busybox"]);
    // Four creates of half a CPU at once on a one-CPU node: two fit, two are refused.
    let children: Vec<_> = (0..4)
        .map(|i| {
            let mut c = n.ctl_command(&[
                "create",
                "--name",
                &format!("c{i}"),
                "--cpus",
                "0.5",
                "busybox",
                "true",
            ]);
            c.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            c.spawn().expect("create")
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("create output"))
        .collect();
    let ok = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 2, "{outs:?}");
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert!(stderr(o).contains("CPU unallocated"), "{}", stderr(o));
    }
    let v: serde_json::Value =
        serde_json::from_str(n.ok(&["--format", "json", "nodes"]).trim()).expect("json");
    assert_eq!(v["AllocatedCpuMillis"], 1000);
    // Removing one makes room again.
    let first = n
        .ok(&["ps", "-aq"])
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    n.ok(&["rm", &first]);
    n.ok(&["create", "--cpus", "0.5", "busybox", "true"]);
}

#[test]
fn a_container_outliving_the_hand_over_continues_under_the_lean_monitor_losing_nothing() {
    require_root!();
    let n = Node::start();
    let id = n.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo before; sleep 1; echo after; exit 3",
    ]);
    let id = id.trim();
    let rec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(n.run.join(id).join("state.json")).expect("state.json"),
    )
    .expect("record");
    let shim = rec["shim_pid"].as_i64().expect("shim pid");
    // The shim that created it hands over to the lean monitor image (same pid) while the
    // container still runs.
    n.until(Duration::from_secs(5), "the lean monitor", || {
        std::fs::read(format!("/proc/{shim}/cmdline"))
            .map(|c| {
                c.split(|b| *b == 0)
                    .any(|a| a == b"shim-monitor" || a.ends_with(b"minid-monitor"))
            })
            .unwrap_or(false)
    });
    let w = n.ctl(&["wait", id]);
    assert_eq!(stdout(&w).trim(), "3", "{}", stderr(&w));
    assert_eq!(n.ok(&["logs", id]), "before\nafter\n");
}
