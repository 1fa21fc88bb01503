//! `minisim compact`: Borg's cell compaction, per policy: how few nodes still fit a snapshot of
//! the workload (see `minisim::sim::compact`). Policies run one after another, each spreading
//! its permutations over the machine's cores.

use std::time::Instant;

use anyhow::Context as _;
use clap::Args;
use minisim::policy::Policy;
use minisim::report;
use minisim::sim::compact::{CompactOptions, Snapshot};

use super::TraceArgs;

#[derive(Debug, Args)]
pub struct CompactCmd {
    /// Comma-separated policies, e.g. first-fit,binpack,fgd.
    #[arg(long, value_delimiter = ',', required = true)]
    pub policies: Vec<Policy>,
    /// The workload to fit: peak (the tasks running at peak CPU demand), all (every task
    /// at once), or a trace time in seconds.
    #[arg(long, default_value = "peak")]
    pub snapshot: Snapshot,
    /// Random node permutations to search (Borg used 11).
    #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub permutations: u32,
    #[command(flatten)]
    pub trace: TraceArgs,
}

impl CompactCmd {
    pub fn run(self) -> anyhow::Result<()> {
        if !self.trace.fail.is_empty() || self.trace.fail_rate.is_some() || self.trace.placements {
            anyhow::bail!(
                "compact packs a snapshot on healthy nodes: --fail, --fail-rate and --placements do not apply"
            );
        }
        let w = self.trace.load()?;
        let o = CompactOptions {
            seed: self.trace.seed,
            permutations: self.permutations as usize,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            examine: self.trace.examine,
        };
        let mut reports = Vec::new();
        for p in &self.policies {
            let p = p.clone().with_timeout(self.trace.exec_timeout);
            let start = Instant::now();
            let r = report::compact_run(
                &w.nodes,
                &w.tasks,
                &p,
                w.inputs.clone(),
                &w.malformed,
                self.snapshot,
                &o,
            )?;
            let wall = start.elapsed().as_secs_f64();
            if let Some(out) = &self.trace.out {
                report::write_compact(&out.join(p.name()), &r)
                    .context("writing the compaction report")?;
            }
            reports.push((r, wall));
        }
        if let Some((r, _)) = reports.first() {
            super::say(&format!(
                "compaction of {} tasks ({}) over {} random node orders\n",
                r.outcome.tasks,
                match r.snapshot_time {
                    Some(t) => format!("running at t={t}s"),
                    None => "all at once".into(),
                },
                r.permutations
            ));
        }
        let rows: Vec<_> = reports.iter().map(|(r, w)| (r, *w)).collect();
        super::say(&report::compact_table(&rows));
        if let Some(o) = &self.trace.out {
            super::say(&format!("wrote {}/<policy>/compact.json\n", o.display()));
        }
        Ok(())
    }
}
