//! `minisim run`: one policy over one trace.

use clap::Args;
use minisim::policy::Preset;
use minisim::report;

use super::{run_one, TraceArgs};

#[derive(Debug, Args)]
pub struct RunCmd {
    /// Placement policy: first-fit, binpack, spread, balanced, dot-product, fgd, random, p2c.
    #[arg(long)]
    pub policy: Preset,
    #[command(flatten)]
    pub trace: TraceArgs,
}

impl RunCmd {
    pub fn run(self) -> anyhow::Result<()> {
        let w = self.trace.load()?;
        let (run, timings) = run_one(&w, self.policy, self.trace.seed, self.trace.out.as_ref())?;
        print!("{}", report::table(&[(&run.report, &timings)]));
        if let Some(out) = &self.trace.out {
            println!("wrote {}", out.display());
        }
        Ok(())
    }
}
