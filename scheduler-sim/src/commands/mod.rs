//! Argument parsing shared by the subcommands, and the work they share: loading a trace and
//! running one policy over it with wall-clock timing (the only clock in minisim).

mod compact;
mod compare;
mod run;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use minisim::policy::{Examine, Node, Policy};
use minisim::report::{self, Inputs, Run, Timings};
use minisim::sim::{self, NodeFailure, Options};
use minisim::synth::{self, SynthSpec};
use minisim::trace::cluster::NodeEvent;
use minisim::trace::{
    alibaba2017, alibaba2018, google2011, openb, LoadOptions, Loaded, Malformed, TaskSpec,
    TraceFormat,
};

#[derive(Debug, Parser)]
#[command(
    name = "minisim",
    version,
    about = "Replay cluster traces through mini's placement policies"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay a trace under one policy.
    Run(run::RunCmd),
    /// Replay a trace under several policies and print them side by side.
    Compare(compare::CompareCmd),
    /// Borg-style cell compaction: the fewest nodes that still fit a snapshot of the
    /// workload, per policy, over random node orders.
    Compact(compact::CompactCmd),
}

impl Command {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Run(c) => c.run(),
            Command::Compare(c) => c.run(),
            Command::Compact(c) => c.run(),
        }
    }
}

/// The workload options every subcommand takes: a trace (`--trace --nodes --pods`) or a
/// synthetic workload (`--synthetic`), and optional failure injection.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Format of the task files (--pods): openb, alibaba2017, google2011-jobs,
    /// google2011-tasks.
    #[arg(long, required_unless_present = "synthetic", requires_all = ["nodes", "pods"])]
    pub trace: Option<TraceFormat>,
    /// Format of the node files (--nodes) when it differs from --trace: openb, alibaba2018,
    /// google2011-machines. Their up/down events are replayed as node outages.
    #[arg(long, requires = "trace")]
    pub node_trace: Option<TraceFormat>,
    /// Node list file(s); repeat for part files (google2011).
    #[arg(long, requires = "trace")]
    pub nodes: Vec<PathBuf>,
    /// Task list file(s); repeat for part files (google2011).
    #[arg(long, requires = "trace")]
    pub pods: Vec<PathBuf>,
    /// A synthetic workload instead of a trace: nodes=N,tasks=N,seed=N[,duration=S][,load=F]
    /// [,rate=F] (see the synth module for the distributions).
    #[arg(long, conflicts_with_all = ["trace", "node_trace", "nodes", "pods"])]
    pub synthetic: Option<SynthSpec>,
    /// Take a node down: node=NAME,at=SECONDS[,for=SECONDS] (trace time; without `for` it
    /// stays down). Repeatable. Its running tasks are evicted and re-queued.
    #[arg(long = "fail")]
    pub fail: Vec<FailSpec>,
    /// Fail nodes at random: per_node_per_hour=X[,for=SECONDS][,seed=N] (outage length
    /// default 600 s, seed default the run's --seed).
    #[arg(long = "fail-rate")]
    pub fail_rate: Option<FailRate>,
    /// Seed for every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Feasible nodes a decision looks for before scoring: all, auto (kube-scheduler's
    /// percentageOfNodesToScore formula) or a number; filtering resumes round robin where the
    /// previous decision stopped.
    #[arg(long, default_value = "all")]
    pub examine: Examine,
    /// Directory for report.json, timeseries.csv and timings.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Fail on the first malformed trace line instead of skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Also write placements.csv into --out: per task, the node it was first placed on.
    #[arg(long, requires = "out")]
    pub placements: bool,
    /// For exec:PROGRAM policies: seconds the program may take to answer one decision
    /// (decimals allowed) before the run fails.
    #[arg(long, default_value = "10", value_parser = parse_timeout)]
    pub exec_timeout: std::time::Duration,
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 && x <= 1e9 => Ok(std::time::Duration::from_secs_f64(x)),
        _ => Err(format!("{s:?} is not a number of seconds > 0")),
    }
}

/// A loaded workload.
pub struct Workload {
    pub nodes: Vec<Node>,
    pub tasks: Vec<TaskSpec>,
    /// Node up/down changes from the node trace (alibaba2018, google2011-machines).
    pub events: Vec<NodeEvent>,
    pub malformed: Vec<Malformed>,
    pub inputs: Inputs,
}

/// `--fail node=NAME,at=SECONDS[,for=SECONDS]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailSpec {
    pub node: String,
    pub at: u64,
    pub duration: Option<u64>,
}

/// `--fail-rate per_node_per_hour=X[,for=SECONDS][,seed=N]`.
#[derive(Clone, Debug, PartialEq)]
pub struct FailRate {
    pub per_node_per_hour: f64,
    pub duration: u64,
    pub seed: Option<u64>,
}

fn key_values(s: &str) -> Result<Vec<(&str, &str)>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| format!("{p:?} is not key=value"))
        })
        .collect()
}

fn seconds(k: &str, v: &str) -> Result<u64, String> {
    v.parse()
        .map_err(|_| format!("{k}: {v:?} is not a whole number of seconds"))
}

impl std::str::FromStr for FailSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (mut node, mut at, mut duration) = (None, None, None);
        for (k, v) in key_values(s)? {
            match k {
                "node" => node = Some(v.to_string()),
                "at" => at = Some(seconds(k, v)?),
                "for" => duration = Some(seconds(k, v)?),
                _ => return Err(format!("unknown key {k:?} (known: node, at, for)")),
            }
        }
        Ok(Self {
            node: node.ok_or("node=NAME is required")?,
            at: at.ok_or("at=SECONDS is required")?,
            duration,
        })
    }
}

impl std::str::FromStr for FailRate {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut r = FailRate {
            per_node_per_hour: -1.0,
            duration: 600,
            seed: None,
        };
        for (k, v) in key_values(s)? {
            match k {
                "per_node_per_hour" => {
                    r.per_node_per_hour = match v.parse::<f64>() {
                        Ok(x) if x.is_finite() && x >= 0.0 => x,
                        _ => return Err(format!("{k}: {v:?} is not a rate >= 0")),
                    }
                }
                "for" => r.duration = seconds(k, v)?,
                "seed" => r.seed = Some(seconds(k, v)?),
                _ => {
                    return Err(format!(
                        "unknown key {k:?} (known: per_node_per_hour, for, seed)"
                    ))
                }
            }
        }
        if r.per_node_per_hour < 0.0 {
            return Err("per_node_per_hour=X is required".into());
        }
        Ok(r)
    }
}

impl TraceArgs {
    /// The simulator options: failures resolved against the loaded nodes.
    pub fn options(&self, w: &Workload) -> anyhow::Result<Options> {
        let mut failures = Vec::new();
        for f in &self.fail {
            let node = w
                .nodes
                .iter()
                .position(|n| n.name == f.node)
                .with_context(|| format!("--fail: no node named {:?}", f.node))?;
            failures.push(NodeFailure {
                node,
                at: f.at,
                duration: f.duration,
            });
        }
        failures.extend(outages(&w.nodes, &w.events));
        if let Some(r) = &self.fail_rate {
            let start = w.tasks.iter().map(|t| t.arrival).min().unwrap_or(0);
            let end = w
                .tasks
                .iter()
                .map(|t| t.arrival.saturating_add(t.duration.unwrap_or(0)))
                .max()
                .unwrap_or(0);
            failures.extend(sim::failures_at_rate(
                w.nodes.len(),
                r.per_node_per_hour,
                r.duration,
                start,
                end,
                r.seed.unwrap_or(self.seed),
            ));
        }
        Ok(Options {
            failures,
            frag_workload: None,
            examine: self.examine,
        })
    }

    pub fn load(&self) -> anyhow::Result<Workload> {
        if let Some(spec) = &self.synthetic {
            let (nodes, tasks) = synth::generate(spec);
            return Ok(Workload {
                nodes,
                tasks,
                events: Vec::new(),
                malformed: Vec::new(),
                inputs: Inputs {
                    trace: "synthetic".into(),
                    nodes: spec.to_string(),
                    pods: String::new(),
                },
            });
        }
        let opts = LoadOptions {
            strict: self.strict,
        };
        let Some(trace) = self.trace else {
            anyhow::bail!("give --trace with --nodes and --pods, or --synthetic");
        };
        if self.nodes.is_empty() || self.pods.is_empty() {
            anyhow::bail!("give --trace with --nodes and --pods, or --synthetic");
        }
        let node_trace = self.node_trace.unwrap_or(trace);
        let (nodes, events) = load_nodes(node_trace, &self.nodes, opts)?;
        let pods = load_tasks(trace, &self.pods, opts)?;
        for m in nodes
            .malformed
            .iter()
            .chain(&pods.malformed)
            .take(report::MALFORMED_EXAMPLES)
        {
            eprintln!("minisim: skipped {m}");
        }
        let mut malformed = nodes.malformed;
        malformed.extend(pods.malformed);
        if malformed.len() > report::MALFORMED_EXAMPLES {
            eprintln!(
                "minisim: skipped {} malformed lines in all",
                malformed.len()
            );
        }
        Ok(Workload {
            nodes: nodes.items,
            tasks: pods.items,
            events,
            malformed,
            inputs: Inputs {
                trace: if node_trace == trace {
                    trace.to_string()
                } else {
                    format!("{trace} (nodes: {node_trace})")
                },
                nodes: joined(&self.nodes),
                pods: joined(&self.pods),
            },
        })
    }
}

/// Replays `w` under `policy`, timing it, and writes the files into `out` when given.
pub fn run_one(
    w: &Workload,
    policy: &Policy,
    seed: u64,
    opts: Options,
    out: Option<&PathBuf>,
    placements: bool,
) -> anyhow::Result<(Run, Timings)> {
    let start = Instant::now();
    let run = report::replay(
        &w.nodes,
        &w.tasks,
        policy,
        seed,
        w.inputs.clone(),
        &w.malformed,
        opts,
    )?;
    let wall = start.elapsed().as_secs_f64();
    let decisions = run.report.metrics.decisions;
    let timings = Timings {
        policy: policy.name().to_string(),
        wall_seconds: wall,
        decisions,
        decisions_per_second: if wall > 0.0 {
            decisions as f64 / wall
        } else {
            0.0
        },
    };
    if let Some(dir) = out {
        report::write_run(dir, &run, &timings)
            .with_context(|| format!("writing the {} report", policy.name()))?;
        if placements {
            let csv = report::placements_csv(&w.tasks, &w.nodes, &run.placements);
            report::write_placements(dir, &csv)
                .with_context(|| format!("writing the {} placements", policy.name()))?;
        }
    }
    Ok((run, timings))
}

/// Writes to stdout. A reader that went away (`minisim ... | head`) ends the program quietly,
/// as with any command-line tool, instead of the panic `print!` would raise.
pub fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("minisim: writing to stdout: {e}");
        std::process::exit(1);
    }
}

fn joined(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// One file, or several part files in order.
fn one(format: TraceFormat, paths: &[PathBuf]) -> anyhow::Result<&PathBuf> {
    match paths {
        [p] => Ok(p),
        _ => anyhow::bail!("{format} takes one file ({} given)", paths.len()),
    }
}

/// The cluster: nodes, and the up/down events of traces that record them.
fn load_nodes(
    format: TraceFormat,
    paths: &[PathBuf],
    opts: LoadOptions,
) -> anyhow::Result<(Loaded<Node>, Vec<NodeEvent>)> {
    Ok(match format {
        TraceFormat::Openb => (openb::load_nodes(one(format, paths)?, opts)?, Vec::new()),
        TraceFormat::Alibaba2018 => {
            let c = alibaba2018::load_cluster(one(format, paths)?, opts, Default::default())?;
            (c.nodes, c.events)
        }
        TraceFormat::Google2011Machines => {
            let rows = google2011::load_many(paths, opts, google2011::load_machine_events)?;
            let c = google2011::machines_to_cluster(rows, Default::default());
            (c.nodes, c.events)
        }
        other => {
            anyhow::bail!("{other} lists tasks, not nodes: give the node format with --node-trace")
        }
    })
}

/// The workload.
fn load_tasks(
    format: TraceFormat,
    paths: &[PathBuf],
    opts: LoadOptions,
) -> anyhow::Result<Loaded<TaskSpec>> {
    Ok(match format {
        TraceFormat::Openb => openb::load_pods(one(format, paths)?, opts)?,
        TraceFormat::Alibaba2017 => {
            alibaba2017::load_tasks(one(format, paths)?, opts, Default::default())?
        }
        TraceFormat::Google2011Jobs => {
            let rows = google2011::load_many(paths, opts, google2011::load_job_events)?;
            Loaded {
                items: google2011::jobs_to_task_specs(&rows.items, Default::default()).tasks,
                malformed: rows.malformed,
            }
        }
        TraceFormat::Google2011Tasks => {
            let rows = google2011::load_many(paths, opts, google2011::load_task_events)?;
            Loaded {
                items: google2011::tasks_to_task_specs(&rows.items, Default::default()).tasks,
                malformed: rows.malformed,
            }
        }
        other => anyhow::bail!("{other} lists nodes, not tasks: use it with --node-trace"),
    })
}

/// A node trace's up/down events as outages: a node down at time 0 (or first seen later)
/// is out until its next up; a later down lasts until the next up, or for good.
fn outages(nodes: &[Node], events: &[NodeEvent]) -> Vec<NodeFailure> {
    let index: std::collections::HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();
    let mut down_since: std::collections::HashMap<usize, u64> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| !n.ready)
        .map(|(i, _)| (i, 0))
        .collect();
    let mut out = Vec::new();
    let mut sorted: Vec<&NodeEvent> = events.iter().collect();
    sorted.sort_by_key(|e| e.time);
    for e in sorted {
        let Some(&i) = index.get(e.node.as_str()) else {
            continue;
        };
        match (e.up, down_since.get(&i).copied()) {
            (true, Some(since)) => {
                down_since.remove(&i);
                out.push(NodeFailure {
                    node: i,
                    at: since,
                    duration: Some(e.time.saturating_sub(since)),
                });
            }
            (false, None) => {
                down_since.insert(i, e.time);
            }
            _ => {}
        }
    }
    let mut rest: Vec<_> = down_since.into_iter().collect();
    rest.sort_unstable();
    out.extend(rest.into_iter().map(|(node, at)| NodeFailure {
        node,
        at,
        duration: None,
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use minisim::policy::Preset;

    #[test]
    fn exec_policies_and_timeouts_parse() {
        let cli = Cli::try_parse_from([
            "minisim",
            "compare",
            "--policies",
            "binpack,exec:./p.py --k 3",
            "--synthetic",
            "nodes=5",
            "--exec-timeout",
            "0.5",
        ])
        .unwrap();
        let Command::Compare(c) = cli.command else {
            panic!("not compare")
        };
        assert_eq!(c.policies[1].name(), "p.py");
        assert_eq!(c.trace.exec_timeout, std::time::Duration::from_millis(500));
        let cli = Cli::try_parse_from([
            "minisim",
            "run",
            "--synthetic",
            "nodes=5",
            "--policy",
            "fgd",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert_eq!(r.trace.exec_timeout, std::time::Duration::from_secs(10));
        for bad in ["0", "-1", "x", "inf"] {
            assert!(
                Cli::try_parse_from([
                    "minisim",
                    "run",
                    "--synthetic",
                    "nodes=5",
                    "--policy",
                    "fgd",
                    "--exec-timeout",
                    bad
                ])
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_parses_every_flag() {
        let cli = Cli::try_parse_from([
            "minisim", "run", "--trace", "openb", "--nodes", "n.csv", "--pods", "p.csv",
            "--policy", "binpack", "--seed", "7", "--out", "o", "--strict",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert_eq!(r.policy, Policy::Preset(Preset::Binpack));
        assert_eq!((r.trace.seed, r.trace.strict), (7, true));
        assert_eq!(r.trace.out, Some(PathBuf::from("o")));
    }

    #[test]
    fn synthetic_fill_and_failure_flags_parse() {
        let cli = Cli::try_parse_from([
            "minisim",
            "run",
            "--synthetic",
            "nodes=50,tasks=500,seed=7",
            "--policy",
            "fgd",
            "--fail",
            "node=n1,at=10,for=20",
            "--fail",
            "node=n2,at=5",
            "--fail-rate",
            "per_node_per_hour=0.5,for=60,seed=3",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert_eq!(
            r.trace
                .synthetic
                .as_ref()
                .map(|s| (s.nodes, s.tasks, s.seed)),
            Some((50, 500, 7))
        );
        assert_eq!(
            r.trace.fail[0],
            FailSpec {
                node: "n1".into(),
                at: 10,
                duration: Some(20)
            }
        );
        assert_eq!(r.trace.fail[1].duration, None);
        assert_eq!(
            r.trace.fail_rate,
            Some(FailRate {
                per_node_per_hour: 0.5,
                duration: 60,
                seed: Some(3)
            })
        );
        let cli = Cli::try_parse_from([
            "minisim",
            "run",
            "--synthetic",
            "nodes=5",
            "--policy",
            "binpack",
            "--fill",
            "--fill-failures",
            "7",
            "--fill-step",
            "5",
        ])
        .unwrap();
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert_eq!((r.fill, r.fill_failures, r.fill_step), (true, 7, 5));
        // A trace and a synthetic workload together, or neither, or fill with failures: errors.
        for bad in [
            &[
                "minisim",
                "run",
                "--synthetic",
                "nodes=5",
                "--trace",
                "openb",
                "--nodes",
                "n",
                "--pods",
                "p",
                "--policy",
                "fgd",
            ][..],
            &["minisim", "run", "--policy", "fgd"][..],
            &["minisim", "run", "--trace", "openb", "--policy", "fgd"][..],
            &[
                "minisim",
                "run",
                "--synthetic",
                "nodes=5",
                "--policy",
                "fgd",
                "--fill",
                "--fail",
                "node=a,at=1",
            ][..],
            &[
                "minisim",
                "run",
                "--synthetic",
                "nodes=5",
                "--policy",
                "fgd",
                "--fail",
                "at=1",
            ][..],
            &[
                "minisim",
                "run",
                "--synthetic",
                "nodes=x",
                "--policy",
                "fgd",
            ][..],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn compare_splits_policies() {
        let cli = Cli::try_parse_from([
            "minisim",
            "compare",
            "--policies",
            "first-fit,fgd,p2c",
            "--trace",
            "openb",
            "--nodes",
            "n",
            "--pods",
            "p",
        ])
        .unwrap();
        let Command::Compare(c) = cli.command else {
            panic!("not compare")
        };
        assert_eq!(
            c.policies,
            [Preset::FirstFit, Preset::Fgd, Preset::P2c].map(Policy::Preset)
        );
        assert_eq!((c.trace.seed, c.trace.out), (0, None));
    }

    #[test]
    fn node_events_become_outages() {
        let mut b = Node::new("b", 1000, 1024, 0, None);
        b.ready = false; // first seen later: down from 0 until its up event
        let nodes = vec![
            Node::new("a", 1000, 1024, 0, None),
            b,
            Node::new("c", 1, 1, 0, None),
        ];
        let ev = |time, node: &str, up| NodeEvent {
            time,
            node: node.into(),
            up,
        };
        let events = vec![
            ev(50, "b", true),
            ev(100, "a", false),
            ev(130, "a", true),
            ev(200, "c", false),
            ev(300, "nobody", false),
        ];
        let got: Vec<(usize, u64, Option<u64>)> = outages(&nodes, &events)
            .into_iter()
            .map(|f| (f.node, f.at, f.duration))
            .collect();
        assert_eq!(
            got,
            vec![(1, 0, Some(50)), (0, 100, Some(30)), (2, 200, None)]
        );
    }

    #[test]
    fn task_only_and_node_only_formats_are_refused_on_the_wrong_side() {
        let opts = LoadOptions { strict: false };
        let p = vec![PathBuf::from("/nonexistent")];
        let e = load_nodes(TraceFormat::Alibaba2017, &p, opts)
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("lists tasks, not nodes")),
            "{e:?}"
        );
        let e = load_tasks(TraceFormat::Alibaba2018, &p, opts)
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("lists nodes, not tasks")),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let e = Cli::try_parse_from([
            "minisim", "run", "--trace", "openb", "--nodes", "n", "--pods", "p", "--policy", "best",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown policy \"best\" (known: first-fit, binpack"),
            "{e}"
        );
        let e = Cli::try_parse_from([
            "minisim",
            "compare",
            "--policies",
            "binpack,nope",
            "--trace",
            "openb",
            "--nodes",
            "n",
            "--pods",
            "p",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown policy \"nope\""), "{e}");
        let e = Cli::try_parse_from([
            "minisim", "run", "--trace", "borg", "--nodes", "n", "--pods", "p", "--policy",
            "binpack",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("unknown trace format \"borg\" (known: openb, alibaba2018, alibaba2017"),
            "{e}"
        );
        assert!(Cli::try_parse_from([
            "minisim", "run", "--trace", "openb", "--nodes", "n", "--pods", "p"
        ])
        .is_err());
    }
}
