//! Live placement against real agents: `minictl --cluster FILE` surveys every node, places
//! with the chosen policy, explains, retries when a node refuses for room, and finds
//! containers across the nodes. Two agents on 127.0.0.1 and a third inventory entry where
//! nothing listens (a node that is down).

#![allow(clippy::unwrap_used)] // test helpers

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mini_e2e::{bin, cluster_pki, identity, require_root, start_in_cluster, stderr, stdout, Node};

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn write_inventory(path: &Path, pki: &Path, nodes: &[(&str, String, &str, &str)]) {
    let mut s = format!(
        "[tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
        pki.join("ca.pem"),
        pki.join("ops.pem"),
        pki.join("ops-key.pem")
    );
    for (name, addr, labels, taints) in nodes {
        s.push_str(&format!(
            "\n[[node]]\nname = \"{name}\"\naddress = \"{addr}\"\nlabels = {{ {labels} }}\ntaints = [{taints}]\n"
        ));
    }
    std::fs::write(path, s).unwrap();
}

struct Cluster {
    home: tempfile::TempDir,
    inventory: PathBuf,
}

impl Cluster {
    fn ctl(&self, args: &[&str]) -> Output {
        self.ctl_with(&self.inventory, args)
    }

    fn ctl_with(&self, inventory: &Path, args: &[&str]) -> Output {
        mini_e2e::ctl_cluster(self.home.path(), inventory, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        mini_e2e::succeeded(&self.ctl(args), args)
    }

    /// Container name → the NODE column of `ps -a`.
    fn placements(&self) -> BTreeMap<String, String> {
        let out = self.ctl(&["ps", "-a", "--format", "json"]);
        stdout(&out)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["Names"].as_str().unwrap().to_string(),
                    v["Node"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

#[test]
fn run_places_across_the_cluster_and_commands_find_containers() {
    require_root!();
    let pkid = tempfile::tempdir().unwrap();
    let pki = pkid.path();
    cluster_pki(pki);
    let node = |zone: &str| {
        let mut n = start_in_cluster(
            pki,
            &[
                "--label",
                &format!("zone={zone}"),
                "--capacity-cpus",
                "2",
                "--capacity-memory",
                "1g",
            ],
        );
        n.operator = Some(identity(pki, "ops"));
        n
    };
    let n1: Node = node("a");
    let n2: Node = node("b");
    let home = tempfile::tempdir().unwrap();
    let inventory = home.path().join("cluster.toml");
    let down = format!("127.0.0.1:{}", dead_port());
    write_inventory(
        &inventory,
        pki,
        &[
            ("node1", n1.addr(), "disk = \"ssd\"", ""),
            ("node2", n2.addr(), "disk = \"hdd\"", ""),
            ("node3", down.clone(), "", ""),
        ],
    );
    let c = Cluster { home, inventory };

    // nodes: both agents ready with their inventory names and labels, node3 down.
    let out = c.ctl(&["nodes"]);
    assert_eq!(out.status.code(), Some(125), "a down node is a failure");
    let table = stdout(&out);
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{table}"))
            .to_string()
    };
    assert!(line("node1").contains("ready") && line("node1").contains("disk=ssd,zone=a"));
    assert!(line("node2").contains("ready") && line("node2").contains("zone=b"));
    assert!(line("node3").ends_with("down"), "{table}");
    assert!(
        stderr(&out).contains("node node3 is down"),
        "{}",
        stderr(&out)
    );

    // Import on the nodes that are up, chosen by their inventory names.
    let tar = mini_e2e::busybox_tar(c.home.path());
    let out = c.ok(&[
        "--node",
        "node1,node2",
        "import",
        tar.to_str().unwrap(),
        "busybox",
    ]);
    assert!(
        out.contains("node1: sha256:") && out.contains("node2: sha256:"),
        "{out}"
    );

    // Spread (the default) spreads containers without limits evenly over the live nodes.
    for i in 0..4 {
        let name = format!("s{i}");
        c.ok(&["run", "-d", "--name", &name, "busybox", "sleep", "300"]);
    }
    let placed = c.placements();
    let on = |n: &str| placed.values().filter(|v| *v == n).count();
    assert_eq!((on("node1"), on("node2")), (2, 2), "{placed:?}");

    // A constraint, explained: node2 chosen, node1 rejected by the constraint, node3 down.
    let out = c.ctl(&[
        "run",
        "-d",
        "--name",
        "in-b",
        "--constraint",
        "zone=b",
        "--explain",
        "busybox",
        "sleep",
        "300",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let why = stderr(&out);
    let row = |name: &str| {
        why.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{why}"))
            .to_string()
    };
    assert!(
        why.starts_with("policy spread: 0m cpu, 0Mi memory; constraints zone=b"),
        "{why}"
    );
    assert!(row("node2").contains("chosen"), "{why}");
    assert!(
        row("node1").contains("rejected") && row("node1").contains("constraint zone=b not met")
    );
    assert!(row("node3").contains("down"), "{why}");
    assert_eq!(c.placements()["in-b"], "node2");

    // Too big for every node: refused, each node's reason named.
    let out = c.ctl(&["run", "--cpus", "3", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    let e = stderr(&out);
    assert!(
        e.contains("no node can take this container: node1: cpu: need 3000m, free 2000m; node2: cpu: need 3000m, free 2000m; node3: down"),
        "{e}"
    );

    // Two clients racing for the same room: first-fit sends both to node1, which admits one;
    // the other is refused there and placed on node2. Both succeed, one per node.
    let racers: Vec<_> = ["r1", "r2"]
        .iter()
        .map(|name| {
            Command::new(bin("minictl"))
                .env("HOME", c.home.path())
                .env_remove("MINICTL_NODE")
                .arg("--cluster")
                .arg(&c.inventory)
                .args([
                    "run",
                    "-d",
                    "--name",
                    name,
                    "--scheduler",
                    "first-fit",
                    "-m",
                    "700m",
                    "busybox",
                    "sleep",
                    "300",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for r in racers {
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let placed = c.placements();
    let mut racer_nodes = [placed["r1"].clone(), placed["r2"].clone()];
    racer_nodes.sort();
    assert_eq!(racer_nodes, ["node1", "node2"], "{placed:?}");

    // An external policy program (minisim's example) chooses among the feasible nodes: the
    // one with the most free CPU, so node2 once node1 holds a 1-CPU container.
    c.ok(&[
        "run",
        "-d",
        "--name",
        "one-cpu",
        "--cpus",
        "1",
        "--constraint",
        "node.name=node1",
        "busybox",
        "sleep",
        "300",
    ]);
    let program = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scheduler-sim/examples/policies/most_free_gpu.py")
        .canonicalize()
        .unwrap();
    let out = c.ctl(&[
        "run",
        "-d",
        "--name",
        "by-program",
        "--scheduler",
        &format!("exec:{}", program.display()),
        "--explain",
        "busybox",
        "sleep",
        "300",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("policy most_free_gpu.py:"),
        "{}",
        stderr(&out)
    );
    assert_eq!(c.placements()["by-program"], "node2");

    // Images are imported per node: a node without the image refuses, and placement moves
    // on (first-fit tries node1 first; only node2 has "solo").
    c.ok(&["--node", "node2", "import", tar.to_str().unwrap(), "solo"]);
    let out = c.ctl(&[
        "run",
        "-d",
        "--name",
        "solo-1",
        "--scheduler",
        "first-fit",
        "--explain",
        "solo",
        "sleep",
        "300",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(e.contains("node node1 refused (image"), "{e}");
    assert!(
        e.lines()
            .any(|l| l.starts_with("node1") && l.contains("refused")),
        "{e}"
    );
    assert!(
        e.lines()
            .any(|l| l.starts_with("node2") && l.contains("chosen")),
        "{e}"
    );
    assert_eq!(c.placements()["solo-1"], "node2");
    // rmi across nodes: fine where the image is, silent where it is not.
    c.ok(&["rm", "-f", "solo-1"]);
    let out = c.ok(&["--node", "node1,node2", "rmi", "solo"]);
    assert!(out.contains("node2: Untagged:"), "{out}");

    // Commands on a container find its node.
    let out = c.ok(&["exec", "in-b", "hostname"]);
    assert!(!out.trim().is_empty());
    c.ok(&["stop", "-t", "0", "s0", "s1"]);
    assert_eq!(n2.inspect("in-b")["State"]["Status"], "running");
    let out = c.ok(&["rm", "-f", "s0", "s1", "in-b"]);
    assert_eq!(out, "s0\ns1\nin-b\n");
    // Missing everywhere, but node3 could not be asked: not a plain "no such container".
    let out = c.ctl(&["rm", "s0"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("some did not: node3"),
        "{}",
        stderr(&out)
    );

    // Taints: node2 tainted in another inventory keeps containers off unless tolerated.
    let tainted = c.home.path().join("tainted.toml");
    write_inventory(
        &tainted,
        pki,
        &[
            ("node1", n1.addr(), "", ""),
            ("node2", n2.addr(), "", "\"dedicated=batch:NoSchedule\""),
        ],
    );
    let out = c.ctl_with(
        &tainted,
        &[
            "run",
            "-d",
            "--name",
            "t1",
            "--constraint",
            "node.name=node2",
            "busybox",
            "true",
        ],
    );
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("node2: taint dedicated=batch:NoSchedule not tolerated"),
        "{}",
        stderr(&out)
    );
    let out = c.ctl_with(
        &tainted,
        &[
            "run",
            "--rm",
            "--toleration",
            "dedicated=batch",
            "--constraint",
            "node.name=node2",
            "busybox",
            "echo",
            "tolerated",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "tolerated\n");

    // With one --node, placement flags are refused rather than ignored.
    let out = c.ctl(&[
        "--node",
        "node1",
        "run",
        "--scheduler",
        "binpack",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("choose among a cluster's nodes"));
}
