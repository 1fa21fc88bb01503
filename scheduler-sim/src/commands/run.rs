//! `minisim run`: one policy over one trace.

use anyhow::Context as _;
use clap::Args;
use minisim::policy::Policy;
use minisim::report;
use minisim::sim::fill::FillOptions;

use super::{run_one, TraceArgs};

#[derive(Debug, Args)]
pub struct RunCmd {
    /// Placement policy: first-fit, binpack, spread, balanced, dot-product, fgd, random, p2c,
    /// or exec:PROGRAM (an external program speaking the line protocol of
    /// examples/policies/README.md; PROGRAM is split on whitespace, no shell).
    #[arg(long)]
    pub policy: Policy,
    #[command(flatten)]
    pub trace: TraceArgs,
    /// Fill mode: draw tasks (seeded) from the workload's mix, no departures, until the
    /// cluster can place no more; writes fill.json and fill.csv instead of a replay report.
    #[arg(long, conflicts_with_all = ["fail", "fail_rate"])]
    pub fill: bool,
    /// Fill mode stops after this many failed placements in a row.
    #[arg(long, default_value_t = 100, requires = "fill")]
    pub fill_failures: usize,
    /// Fill mode reports a row every this many percent of offered load.
    #[arg(long, default_value_t = 10, requires = "fill", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub fill_step: u32,
}

impl RunCmd {
    pub fn run(self) -> anyhow::Result<()> {
        let w = self.trace.load()?;
        let policy = self.policy.clone().with_timeout(self.trace.exec_timeout);
        if self.fill {
            let o = FillOptions {
                seed: self.trace.seed,
                max_consecutive_failures: self.fill_failures.max(1),
                step_percent: self.fill_step,
                examine: self.trace.examine,
                ..FillOptions::default()
            };
            let r = report::fill_run(
                &w.nodes,
                &w.tasks,
                &policy,
                w.inputs.clone(),
                &w.malformed,
                &o,
            )?;
            super::say(&report::fill_table(&r));
            if let Some(out) = &self.trace.out {
                report::write_fill(out, &r).context("writing the fill report")?;
                super::say(&format!("wrote {}\n", out.display()));
            }
            return Ok(());
        }
        let opts = self.trace.options(&w)?;
        let (run, timings) = run_one(
            &w,
            &policy,
            self.trace.seed,
            opts,
            self.trace.out.as_ref(),
            self.trace.placements,
        )?;
        super::say(&report::table(&[(&run.report, &timings)]));
        if let Some(out) = &self.trace.out {
            super::say(&format!("wrote {}\n", out.display()));
        }
        Ok(())
    }
}
