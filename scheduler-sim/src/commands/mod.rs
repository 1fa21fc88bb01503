//! Argument parsing shared by the subcommands, and the work they share: loading a trace and
//! running one policy over it with wall-clock timing (the only clock in minisim).

mod compare;
mod run;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use minisim::policy::{Node, Preset};
use minisim::report::{self, Inputs, Run, Timings};
use minisim::trace::{openb, LoadOptions, Malformed, TaskSpec, TraceFormat};

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
}

impl Command {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Run(c) => c.run(),
            Command::Compare(c) => c.run(),
        }
    }
}

/// The workload options every subcommand takes.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Trace format (known: openb).
    #[arg(long)]
    pub trace: TraceFormat,
    /// Node list file.
    #[arg(long)]
    pub nodes: PathBuf,
    /// Pod (task) list file.
    #[arg(long)]
    pub pods: PathBuf,
    /// Seed for every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Directory for report.json, timeseries.csv and timings.json.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Fail on the first malformed trace line instead of skipping it.
    #[arg(long)]
    pub strict: bool,
}

/// A loaded workload.
pub struct Workload {
    pub nodes: Vec<Node>,
    pub tasks: Vec<TaskSpec>,
    pub malformed: Vec<Malformed>,
    pub inputs: Inputs,
}

impl TraceArgs {
    pub fn load(&self) -> anyhow::Result<Workload> {
        let opts = LoadOptions {
            strict: self.strict,
        };
        let (nodes, pods) = match self.trace {
            TraceFormat::Openb => (
                openb::load_nodes(&self.nodes, opts)?,
                openb::load_pods(&self.pods, opts)?,
            ),
        };
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
            malformed,
            inputs: Inputs {
                trace: self.trace.to_string(),
                nodes: self.nodes.display().to_string(),
                pods: self.pods.display().to_string(),
            },
        })
    }
}

/// Replays `w` under `preset`, timing it, and writes the files into `out` when given.
pub fn run_one(
    w: &Workload,
    preset: Preset,
    seed: u64,
    out: Option<&PathBuf>,
) -> anyhow::Result<(Run, Timings)> {
    let start = Instant::now();
    let run = report::replay(
        &w.nodes,
        &w.tasks,
        preset,
        seed,
        w.inputs.clone(),
        &w.malformed,
    );
    let wall = start.elapsed().as_secs_f64();
    let decisions = run.report.metrics.decisions;
    let timings = Timings {
        policy: preset.name().to_string(),
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
            .with_context(|| format!("writing the {preset} report"))?;
    }
    Ok((run, timings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

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
        assert_eq!(r.policy, Preset::Binpack);
        assert_eq!((r.trace.seed, r.trace.strict), (7, true));
        assert_eq!(r.trace.out, Some(PathBuf::from("o")));
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
        assert_eq!(c.policies, [Preset::FirstFit, Preset::Fgd, Preset::P2c]);
        assert_eq!((c.trace.seed, c.trace.out), (0, None));
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
            e.contains("unknown trace format \"borg\" (known: openb)"),
            "{e}"
        );
        assert!(Cli::try_parse_from([
            "minisim", "run", "--trace", "openb", "--nodes", "n", "--pods", "p"
        ])
        .is_err());
    }
}
