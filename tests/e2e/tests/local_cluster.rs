//! A 3-node cluster from `deploy/local-cluster` (network namespaces as hosts on one bridge,
//! a minid in each): 30 containers placed by spread land on every node, a container on node 1
//! reaches one on node 3 by address (host routes between nodes), and losing a node (its agent
//! killed, or its link down) shows in `nodes`, placements avoid it, the other nodes' containers
//! are unaffected, and its containers are reported again when it returns. `down` is run at the
//! end, also on failure, and must leave no link, namespace or route behind.

#![allow(clippy::unwrap_used)] // test code

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mini_e2e::{bin, require_root, stderr, stdout};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/local-cluster")
}

struct LocalCluster {
    dir: tempfile::TempDir,
    inventory: PathBuf,
}

impl LocalCluster {
    fn lc(dir: &Path, args: &[&str]) -> Output {
        Command::new(script())
            .args(args)
            .arg("--dir")
            .arg(dir)
            .env("MINID", bin("minid"))
            .env("MINICTL", bin("minictl"))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn up(n: u32) -> LocalCluster {
        let dir = tempfile::tempdir().unwrap();
        let out = Self::lc(dir.path(), &["up", &n.to_string()]);
        assert!(out.status.success(), "up: {}{}", stdout(&out), stderr(&out));
        let inventory = PathBuf::from(stdout(&out).lines().last().unwrap().trim());
        assert!(inventory.is_file(), "{}", stdout(&out));
        LocalCluster { dir, inventory }
    }

    fn node(&self, verb: &str, k: u32) {
        let out = Self::lc(self.dir.path(), &[verb, &k.to_string()]);
        assert!(out.status.success(), "{verb} {k}: {}", stderr(&out));
    }

    fn ctl(&self, args: &[&str]) -> Output {
        mini_e2e::ctl_cluster(self.dir.path(), &self.inventory, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        mini_e2e::succeeded(&self.ctl(args), args)
    }

    /// Container name → (node, status, address), from `ps -a`.
    fn ps(&self) -> BTreeMap<String, (String, String, String)> {
        stdout(&self.ctl(&["ps", "-a", "--format", "json"]))
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["Names"].as_str().unwrap().to_string(),
                    (
                        v["Node"].as_str().unwrap().to_string(),
                        v["State"].as_str().unwrap().to_string(),
                        v["IPAddress"].as_str().unwrap_or_default().to_string(),
                    ),
                )
            })
            .collect()
    }

    /// The HEALTH column of `nodes` for `name`.
    fn health(&self, name: &str) -> String {
        stdout(&self.ctl(&["nodes"]))
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_default()
            .to_string()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let out = Self::lc(self.dir.path(), &["down"]);
        if !out.status.success() {
            eprintln!("local-cluster down: {}", stderr(&out));
        }
    }
}

fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn a_three_node_local_cluster_spreads_routes_and_survives_a_node_loss() {
    require_root!();
    for tool in ["nft", "nsenter"] {
        if Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            println!("skipping: {tool} is not installed");
            return;
        }
    }
    if Path::new("/sys/class/net/minilc0").exists() {
        panic!("a local cluster is already up on this machine (bridge minilc0): run deploy/local-cluster down");
    }
    let c = LocalCluster::up(3);
    let tar = mini_e2e::busybox_tar(c.dir.path());
    let out = c.ok(&["import", tar.to_str().unwrap(), "busybox"]);
    assert_eq!(out.lines().count(), 3, "imported on every node: {out}");

    // 30 containers by spread: every node takes a share (10 each: they ask for nothing, and
    // spread counts them at the non-zero defaults).
    for i in 0..30 {
        c.ok(&[
            "run",
            "-d",
            "--name",
            &format!("s{i}"),
            "--scheduler",
            "spread",
            "busybox",
            "sleep",
            "600",
        ]);
    }
    let ps = c.ps();
    let per_node = |ps: &BTreeMap<String, (String, String, String)>, n: &str| {
        ps.values().filter(|(node, _, _)| node == n).count()
    };
    for n in ["node1", "node2", "node3"] {
        assert_eq!(per_node(&ps, n), 10, "{n}: {ps:?}");
    }

    // Across nodes by address: a web server on node 1, a client on node 3.
    c.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--constraint",
        "node.name=node1",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www; echo across > /www/index.html; exec httpd -f -p 80 -h /www",
    ]);
    let web_ip = c.ps()["web"].2.clone();
    assert!(web_ip.starts_with("10.88.1."), "{web_ip}");
    let mut got = String::new();
    until(
        "node 3 reaching web on node 1",
        Duration::from_secs(10),
        || {
            let out = c.ctl(&[
                "run",
                "--rm",
                "--constraint",
                "node.name=node3",
                "busybox",
                "timeout",
                "5",
                "wget",
                "-qO-",
                &format!("http://{web_ip}/"),
            ]);
            got = stdout(&out);
            got == "across\n"
        },
    );

    // Node 2's agent dies: `nodes` says down, placements avoid it, the others run on.
    c.node("stop-node", 2);
    assert_eq!(c.health("node2"), "down");
    for i in 0..3 {
        let out = c.ctl(&[
            "run",
            "-d",
            "--name",
            &format!("after{i}"),
            "--explain",
            "busybox",
            "sleep",
            "600",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stderr(&out)
                .lines()
                .any(|l| l.starts_with("node2") && l.contains("down")),
            "{}",
            stderr(&out)
        );
    }
    let ps = c.ps();
    assert_eq!(per_node(&ps, "node2"), 0, "node2 is not listed while down");
    assert!(ps
        .iter()
        .filter(|(n, _)| n.starts_with("after"))
        .all(|(_, (node, _, _))| node != "node2"));
    assert!(ps
        .values()
        .filter(|(node, _, _)| node != "node2")
        .all(|(_, state, _)| state == "running"));
    // It comes back with its ten containers, still running (their shims kept them).
    c.node("start-node", 2);
    let ps = c.ps();
    assert_eq!(per_node(&ps, "node2"), 10, "{ps:?}");
    assert!(ps
        .values()
        .filter(|(node, _, _)| node == "node2")
        .all(|(_, state, _)| state == "running"));

    // Node 3's link goes down: it does not answer within the survey's time, so it is down.
    let link = "lc3-h";
    assert!(Command::new("ip")
        .args(["link", "set", link, "down"])
        .status()
        .unwrap()
        .success());
    let t = Instant::now();
    assert_eq!(c.health("node3"), "down");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(Command::new("ip")
        .args(["link", "set", link, "up"])
        .status()
        .unwrap()
        .success());
    until("node3 ready again", Duration::from_secs(10), || {
        c.health("node3") == "ready"
    });

    // down removes everything.
    drop(c);
    assert!(!Path::new("/sys/class/net/minilc0").exists(), "bridge left");
    let netns = stdout(&Command::new("ip").args(["netns", "list"]).output().unwrap());
    assert!(!netns.contains("mini-lc"), "{netns}");
    let routes = stdout(&Command::new("ip").args(["route"]).output().unwrap());
    assert!(!routes.contains("10.88."), "{routes}");
}
