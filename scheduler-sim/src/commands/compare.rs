//! `minisim compare`: several policies over the same trace, one thread each (std threads, a
//! scope so they borrow the loaded workload), printed side by side in the order given.

use anyhow::Context as _;
use clap::Args;
use minisim::policy::Policy;
use minisim::report;

use super::{run_one, TraceArgs};

#[derive(Debug, Args)]
pub struct CompareCmd {
    /// Comma-separated policies, e.g. first-fit,binpack,spread,fgd,exec:./my_policy.py (an
    /// external program is shown, and its report directory named, by its file name).
    #[arg(long, value_delimiter = ',', required = true)]
    pub policies: Vec<Policy>,
    #[command(flatten)]
    pub trace: TraceArgs,
}

impl CompareCmd {
    pub fn run(self) -> anyhow::Result<()> {
        let w = self.trace.load()?;
        let opts = self.trace.options(&w)?;
        let mut policies: Vec<Policy> = self
            .policies
            .iter()
            .map(|p| p.clone().with_timeout(self.trace.exec_timeout))
            .collect();
        policies.dedup();
        let mut names = std::collections::BTreeSet::new();
        if let Some(p) = policies.iter().find(|p| !names.insert(p.name())) {
            anyhow::bail!(
                "two policies are named {:?}: each needs its own name (and report directory)",
                p.name()
            );
        }
        let seed = self.trace.seed;
        let out = self.trace.out.as_ref();
        let placements = self.trace.placements;
        let results = std::thread::scope(|s| {
            let handles: Vec<_> = policies
                .iter()
                .map(|p| {
                    let w = &w;
                    let dir = out.map(|o| o.join(p.name()));
                    let opts = opts.clone();
                    s.spawn(move || run_one(w, p, seed, opts, dir.as_ref(), placements))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a replay thread panicked")))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        let rows: Vec<_> = results.iter().map(|(r, t)| (&r.report, t)).collect();
        super::say(&report::table(&rows));
        if let Some(o) = out {
            let runs: Vec<_> = results.iter().map(|(r, _)| r).collect();
            report::write_compare(o, &runs).context("writing the comparison plots")?;
            super::say(&format!(
                "wrote {}/<policy>/ and the side-by-side plots {}/*.svg\n",
                o.display(),
                o.display()
            ));
        }
        Ok(())
    }
}
