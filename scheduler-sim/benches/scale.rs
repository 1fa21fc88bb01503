//! minisim's scale benchmark (release build): `cargo bench -p minisim --bench scale`, or
//! `tests/bench/sim-bench`, which runs it. Prints three tables.
//!
//! 1. **Decisions per second** at 500, 5,000 and 15,000 nodes, shaped like kube-scheduler's
//!    scheduler_perf `SchedulingBasic` and `SchedulingPodAntiAffinity` workloads: nodes of
//!    4 CPUs / 32 GiB, pods asking 100m / 500 MiB; `init` pods placed first (untimed), then
//!    `measured` pods timed, each allocated on the node chosen, one thread. The anti-affinity
//!    pods carry `color=green` and allow one such pod per node (`max-per-node`), as the
//!    scheduler_perf pods' required anti-affinity on the host name does. Beside them:
//!    kube-scheduler's published CI minimums at 5,000 nodes (810 pods/s basic, 60 pods/s
//!    anti-affinity) and the targets (50× and 100× those).
//! 2. **OpenB replay** of the full default trace under every preset, one thread each: wall
//!    time (target under 1 s).
//! 3. **A 1,000,000-task synthetic run on 10,000 nodes** through the `minisim` binary: wall
//!    time and the child's peak RSS from `wait4` (target under 2 GiB).
//!
//! Flags: `--quick` (fewer measured pods, 100,000 synthetic tasks), `--only
//! decisions,openb,million`, `--traces DIR` (default `../shared/traces` beside the checkout).

use std::path::{Path, PathBuf};
use std::time::Instant;

use minisim::policy::{Examine, Node, Preset, Stack, Task};

/// kube-scheduler scheduler_perf CI minimums at 5,000 nodes, pods/s.
const KUBE_BASIC_5000: f64 = 810.0;
const KUBE_ANTI_5000: f64 = 60.0;

struct Args {
    quick: bool,
    only: Vec<String>,
    traces: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        quick: false,
        only: Vec::new(),
        traces: Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--quick" => a.quick = true,
            "--only" => {
                a.only = it
                    .next()
                    .unwrap_or_default()
                    .split(',')
                    .map(str::to_string)
                    .collect()
            }
            "--traces" => a.traces = it.next().map(PathBuf::from).unwrap_or(a.traces),
            // cargo bench passes --bench; anything else is a mistake worth saying.
            "--bench" => {}
            other => {
                eprintln!("scale: unknown argument {other:?} (--quick, --only LIST, --traces DIR)");
                std::process::exit(2);
            }
        }
    }
    a
}

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Basic,
    AntiAffinity,
}

fn pod(s: Scenario, i: usize) -> Task {
    let t = Task::new(format!("pod-{i}"), 100, 500);
    match s {
        Scenario::Basic => t,
        Scenario::AntiAffinity => t.with_label("color", "green").with_max_per_node("color", 1),
    }
}

/// The policy configurations measured: name, preset, examine cap.
const CONFIGS: [(&str, Preset, Examine); 5] = [
    ("first-fit", Preset::FirstFit, Examine::All),
    ("spread", Preset::Spread, Examine::All),
    ("spread, examine auto", Preset::Spread, Examine::Adaptive),
    ("binpack, examine auto", Preset::Binpack, Examine::Adaptive),
    ("p2c", Preset::P2c, Examine::All),
];

/// Places `init` pods untimed, then times `measured` more; decisions per second.
fn throughput(nodes: usize, s: Scenario, init: usize, measured: usize, stack: &mut Stack) -> f64 {
    let mut cluster: Vec<Node> = (0..nodes)
        .map(|i| Node::new(format!("node-{i}"), 4000, 32768, 0, None))
        .collect();
    let mut place = |i: usize, cluster: &mut Vec<Node>| {
        let t = pod(s, i);
        let n = stack.place(cluster, &t).node.unwrap_or_else(|| {
            panic!("pod {i} found no node: the benchmark's cluster is too small")
        });
        cluster[n].allocate(&t);
    };
    for i in 0..init {
        place(i, &mut cluster);
    }
    let start = Instant::now();
    for i in init..init + measured {
        place(i, &mut cluster);
    }
    measured as f64 / start.elapsed().as_secs_f64()
}

fn decisions(a: &Args) {
    println!("Decisions per second (one thread; scheduler_perf-shaped workloads)");
    let head = format!(
        "{:<14} {:>6} {:>6} {:>8}  {:<22} {:>12} {:>10} {:>8} {:>8}",
        "workload",
        "nodes",
        "init",
        "measured",
        "policy",
        "decisions/s",
        "kube min",
        "ratio",
        "target"
    );
    println!("{head}");
    println!("{}", "-".repeat(head.len()));
    for nodes in [500usize, 5000, 15000] {
        for s in [Scenario::Basic, Scenario::AntiAffinity] {
            let init = nodes / 5;
            let measured = match s {
                Scenario::Basic if a.quick => 1000,
                Scenario::Basic => 5000,
                Scenario::AntiAffinity => (nodes - init).min(if a.quick { 500 } else { 2000 }),
            };
            let (name, kube, factor) = match s {
                Scenario::Basic => ("basic", KUBE_BASIC_5000, 50.0),
                Scenario::AntiAffinity => ("anti-affinity", KUBE_ANTI_5000, 100.0),
            };
            for (label, preset, examine) in CONFIGS {
                let mut stack = preset.build(1, std::iter::empty()).with_examine(examine);
                let dps = throughput(nodes, s, init, measured, &mut stack);
                let (kube_s, ratio, target) = if nodes == 5000 {
                    (
                        format!("{kube:.0}"),
                        format!("{:.0}×", dps / kube),
                        if dps >= kube * factor {
                            "met"
                        } else {
                            "NOT met"
                        },
                    )
                } else {
                    ("—".to_string(), "—".to_string(), "")
                };
                println!(
                    "{name:<14} {nodes:>6} {init:>6} {measured:>8}  {label:<22} {dps:>12.0} {kube_s:>10} {ratio:>8} {target:>8}"
                );
            }
        }
    }
    println!(
        "target: ≥ {:.0}/s basic and ≥ {:.0}/s anti-affinity at 5,000 nodes (50× and 100× kube-scheduler's CI minimums)\n",
        KUBE_BASIC_5000 * 50.0,
        KUBE_ANTI_5000 * 100.0
    );
}

fn openb(a: &Args) {
    let dir = a.traces.join("alibaba-gpu-v2023");
    let (nodes_f, pods_f) = (
        dir.join("openb_node_list_all_node.csv"),
        dir.join("openb_pod_list_default.csv"),
    );
    println!("OpenB default trace replay, one thread per policy");
    if !nodes_f.is_file() || !pods_f.is_file() {
        println!("skipped: the OpenB trace is not at {}\n", dir.display());
        return;
    }
    let opts = minisim::trace::LoadOptions::default();
    let nodes = minisim::trace::openb::load_nodes(&nodes_f, opts).expect("load OpenB nodes");
    let pods = minisim::trace::openb::load_pods(&pods_f, opts).expect("load OpenB pods");
    println!(
        "{} nodes, {} pods\n{:<12} {:>8} {:>10} {:>12} {:>8}",
        nodes.items.len(),
        pods.items.len(),
        "policy",
        "wall s",
        "decisions",
        "decisions/s",
        "< 1 s"
    );
    for p in Preset::ALL {
        let start = Instant::now();
        let mut stack = p.build(1, pods.items.iter().map(|t| &t.task));
        let out = minisim::sim::run(nodes.items.clone(), &pods.items, &mut stack);
        let wall = start.elapsed().as_secs_f64();
        println!(
            "{:<12} {:>8.3} {:>10} {:>12.0} {:>8}",
            p.name(),
            wall,
            out.metrics.decisions,
            out.metrics.decisions as f64 / wall,
            if wall < 1.0 { "met" } else { "NOT met" }
        );
    }
    println!();
}

/// Runs `cmd`, returning its wall time and the peak RSS (KiB) wait4 reports for it.
// The child is reaped by wait4 below (for its rusage), not by Child::wait.
#[allow(clippy::zombie_processes)]
fn run_measured(cmd: &mut std::process::Command) -> (f64, i64, bool, String) {
    let start = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start minisim");
    let pid = child.id() as libc::pid_t;
    let mut out = String::new();
    if let Some(mut so) = child.stdout {
        use std::io::Read;
        let _ = so.read_to_string(&mut out);
    }
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet reaped (Child::wait was not called).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let ok = r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (start.elapsed().as_secs_f64(), ru.ru_maxrss, ok, out)
}

fn million(a: &Args) {
    let tasks = if a.quick { 100_000 } else { 1_000_000 };
    let spec = format!("nodes=10000,tasks={tasks},seed=1");
    println!("Synthetic run: {tasks} tasks on 10,000 nodes (minisim run --synthetic {spec} --policy binpack --examine auto)");
    let (wall, rss_kib, ok, out) = run_measured(
        std::process::Command::new(env!("CARGO_BIN_EXE_minisim")).args([
            "run",
            "--synthetic",
            &spec,
            "--policy",
            "binpack",
            "--examine",
            "auto",
        ]),
    );
    print!("{out}");
    let gib = rss_kib as f64 / (1024.0 * 1024.0);
    println!(
        "{:<10} {:>8} {:>14} {:>10}\n{:<10} {:>8.1} {:>13.2}G {:>10}\n",
        "completed",
        "wall s",
        "peak RSS",
        "< 2 GiB",
        if ok { "yes" } else { "NO" },
        wall,
        gib,
        if ok && gib < 2.0 { "met" } else { "NOT met" }
    );
}

fn main() {
    let a = args();
    let want = |x: &str| a.only.is_empty() || a.only.iter().any(|o| o == x);
    if cfg!(debug_assertions) {
        println!(
            "note: a debug build; run `cargo bench -p minisim --bench scale` for real numbers\n"
        );
    }
    if want("decisions") {
        decisions(&a);
    }
    if want("openb") {
        openb(&a);
    }
    if want("million") {
        million(&a);
    }
}
