//! Fill mode, for capacity questions: tasks drawn from a workload's empirical mix arrive one
//! after another and never leave, until the cluster can place no more.
//!
//! Precisely: each step draws one task uniformly from the mix (a trace's task list, so each
//! shape, GPU-model restriction and constraint comes up as often as in the trace) with a
//! generator seeded by the run's seed (a stream separate from the stack's). The stack places
//! it or it fails; a failed task is dropped, not queued. The run stops after
//! [`FillOptions::max_consecutive_failures`] failures in a row (the cluster is taken to be
//! full for this mix), or after [`FillOptions::max_tasks`] draws.
//!
//! *Offered load* is the demand of every task drawn so far, placed or not, as a share of the
//! cluster's capacity in the [`FillOptions::basis`] resource: GPU when the cluster has GPUs
//! and the mix asks for some (the FGD paper's x-axis), CPU otherwise. A [`FillRow`] is taken
//! the first time offered load reaches each multiple of the step (10%, 20%, ... by default)
//! and once more when the run stops.

use serde::Serialize;

use super::{ratio, Frag};
use crate::policy::fgd::FragmentationScore;
use crate::policy::preset::FGD_MAX_SHAPES;
use crate::policy::{Node, Resources, Stack, Task};
use crate::rng::Rng;

/// Mixed into the seed for the draw stream, so draws and the stack's choices are independent.
const DRAW_SEED_SALT: u64 = 0x6669_6c6c_6d6f_6465; // "fillmode"

/// The resource offered load is measured in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    Gpu,
    Cpu,
}

/// How a fill runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FillOptions {
    pub seed: u64,
    /// Stop after this many failed placements in a row.
    pub max_consecutive_failures: usize,
    /// Stop after this many draws in all (a safety bound).
    pub max_tasks: usize,
    /// Row spacing in percent of capacity.
    pub step_percent: u32,
    /// The examine cap the stack is built with (the caller applies it).
    pub examine: crate::policy::Examine,
}

impl Default for FillOptions {
    fn default() -> Self {
        Self {
            seed: 0,
            max_consecutive_failures: 100,
            max_tasks: 10_000_000,
            step_percent: 10,
            examine: crate::policy::Examine::All,
        }
    }
}

/// The cluster at one level of offered load.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FillRow {
    /// Offered load, a share of capacity in the basis resource (may pass 1 through failures).
    pub offered: f64,
    pub drawn: usize,
    pub placed: usize,
    pub failed: usize,
    pub cpu_alloc: f64,
    pub mem_alloc: f64,
    pub gpu_alloc: f64,
    pub nodes_in_use: usize,
    pub gpu_unallocated: f64,
    pub gpu_fragmented: f64,
}

/// What a fill measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FillOutcome {
    pub basis: Basis,
    pub rows: Vec<FillRow>,
    /// Per draw, the index into the mix that was drawn and the node it went to.
    #[serde(skip)]
    pub draws: Vec<(usize, Option<usize>)>,
}

/// Fills `nodes` with draws from `mix` under `stack`. An empty mix or cluster gives one row.
pub fn fill(mut nodes: Vec<Node>, mix: &[Task], stack: &mut Stack, o: &FillOptions) -> FillOutcome {
    let capacity = nodes
        .iter()
        .fold(Resources::default(), |a, n| a.plus(n.capacity));
    let basis = if capacity.gpu_milli > 0 && mix.iter().any(|t| t.num_gpu > 0) {
        Basis::Gpu
    } else {
        Basis::Cpu
    };
    let of = |r: Resources| match basis {
        Basis::Gpu => r.gpu_milli,
        Basis::Cpu => r.cpu_milli,
    };
    let cap = of(capacity);
    let mut frag = Frag::new(
        FragmentationScore::from_tasks(mix.iter(), FGD_MAX_SHAPES),
        &nodes,
    );
    let mut rng = Rng::new(o.seed ^ DRAW_SEED_SALT);
    let (mut offered, mut allocated) = (Resources::default(), Resources::default());
    let (mut placed, mut failed, mut in_a_row, mut in_use) = (0usize, 0usize, 0usize, 0usize);
    let step = u64::from(o.step_percent.max(1));
    let mut next_pct = step;
    let mut rows = Vec::new();
    let mut draws = Vec::new();
    let row = |offered: Resources,
               allocated: Resources,
               drawn: usize,
               placed: usize,
               failed: usize,
               in_use: usize,
               frag: &Frag| FillRow {
        offered: ratio(of(offered), cap),
        drawn,
        placed,
        failed,
        cpu_alloc: ratio(allocated.cpu_milli, capacity.cpu_milli),
        mem_alloc: ratio(allocated.memory_mib, capacity.memory_mib),
        gpu_alloc: ratio(allocated.gpu_milli, capacity.gpu_milli),
        nodes_in_use: in_use,
        gpu_unallocated: frag.unallocated(),
        gpu_fragmented: frag.fragmented(),
    };
    while !mix.is_empty()
        && !nodes.is_empty()
        && in_a_row < o.max_consecutive_failures
        && draws.len() < o.max_tasks
        && !stack.failed()
    {
        let k = rng.below(mix.len());
        let task = &mix[k];
        offered = offered.plus(task.request());
        let chosen = stack.place(&nodes, task).node;
        let got = chosen.and_then(|n| nodes[n].allocate(task).map(|a| (n, a)));
        let on = got.as_ref().map(|(n, _)| *n);
        match got {
            Some((n, a)) => {
                allocated = allocated.plus(a.request);
                if nodes[n].tasks == 1 {
                    in_use += 1;
                }
                frag.update(&nodes[n], n);
                placed += 1;
                in_a_row = 0;
            }
            None => {
                failed += 1;
                in_a_row += 1;
            }
        }
        draws.push((k, on));
        // Rows at every step the offered load crossed: `pct` in percent, compared exactly.
        while cap > 0 && u128::from(of(offered)) * 100 >= u128::from(cap) * u128::from(next_pct) {
            rows.push(row(
                offered,
                allocated,
                draws.len(),
                placed,
                failed,
                in_use,
                &frag,
            ));
            next_pct += step;
        }
    }
    let last = row(
        offered,
        allocated,
        draws.len(),
        placed,
        failed,
        in_use,
        &frag,
    );
    if rows.last() != Some(&last) {
        rows.push(last);
    }
    FillOutcome { basis, rows, draws }
}

/// The rows as CSV with a header; shares and GPU counts with six decimals.
pub fn fill_csv(rows: &[FillRow]) -> String {
    use std::fmt::Write as _;
    let mut s = String::from(
        "offered,drawn,placed,failed,cpu_alloc,mem_alloc,gpu_alloc,nodes_in_use,gpu_unallocated,gpu_fragmented\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:.6},{},{},{},{:.6},{:.6},{:.6},{},{:.6},{:.6}",
            r.offered,
            r.drawn,
            r.placed,
            r.failed,
            r.cpu_alloc,
            r.mem_alloc,
            r.gpu_alloc,
            r.nodes_in_use,
            r.gpu_unallocated,
            r.gpu_fragmented
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Preset;

    #[test]
    fn fills_until_consecutive_failures_with_exact_rows() {
        // Two 1-GPU nodes (2000m GPU capacity); every draw is a 300m share = 15% offered.
        // Three fit per device (900m), leaving 100m fragments: draws 1-3 go to n0, 4-6 to
        // n1, 7 and 8 fail, and two failures in a row stop the run.
        let nodes = vec![
            Node::new("n0", 8000, 8192, 1, None),
            Node::new("n1", 8000, 8192, 1, None),
        ];
        let mix = vec![Task::new("s", 100, 100).with_gpus(1, 300)];
        let mut stack = Preset::FirstFit.build(0, mix.iter());
        let o = FillOptions {
            seed: 1,
            max_consecutive_failures: 2,
            step_percent: 15,
            ..FillOptions::default()
        };
        let out = fill(nodes, &mix, &mut stack, &o);
        assert_eq!(out.basis, Basis::Gpu);
        let got: Vec<(usize, usize, usize, usize)> = out
            .rows
            .iter()
            .map(|r| (r.drawn, r.placed, r.failed, r.nodes_in_use))
            .collect();
        assert_eq!(
            got,
            [
                (1, 1, 0, 1),
                (2, 2, 0, 1),
                (3, 3, 0, 1),
                (4, 4, 0, 2),
                (5, 5, 0, 2),
                (6, 6, 0, 2),
                (7, 6, 1, 2),
                (8, 6, 2, 2)
            ]
        );
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        for (k, r) in out.rows.iter().enumerate() {
            assert!(close(r.offered, 0.15 * (k + 1) as f64), "{r:?}");
        }
        let r3 = &out.rows[2];
        assert!(close(r3.gpu_alloc, 0.45) && close(r3.gpu_unallocated, 1.1));
        assert!(close(r3.gpu_fragmented, 0.1), "{r3:?}");
        let last = &out.rows[7];
        assert!(close(last.gpu_alloc, 0.9) && close(last.gpu_unallocated, 0.2));
        assert!(close(last.gpu_fragmented, 0.2), "{last:?}");
        assert_eq!(
            out.draws.iter().map(|d| d.1).collect::<Vec<_>>(),
            [
                Some(0),
                Some(0),
                Some(0),
                Some(1),
                Some(1),
                Some(1),
                None,
                None
            ]
        );
        let csv = fill_csv(&out.rows);
        assert!(
            csv.starts_with("offered,drawn,placed,failed,cpu_alloc"),
            "{csv}"
        );
        assert!(
            csv.lines()
                .nth(3)
                .is_some_and(|l| l.starts_with("0.450000,3,3,0,")),
            "{csv}"
        );
    }

    #[test]
    fn draws_follow_the_mix_and_repeat_for_a_seed() {
        // A CPU-only cluster: offered load is a share of CPU; a mix of 1000m and 2000m tasks.
        let nodes: Vec<Node> = (0..4)
            .map(|i| Node::new(format!("n{i}"), 10_000, 1 << 20, 0, None))
            .collect();
        let mix = vec![Task::new("a", 1000, 1), Task::new("b", 2000, 1)];
        let o = FillOptions {
            seed: 3,
            ..FillOptions::default()
        };
        let run = || {
            let mut stack = Preset::Binpack.build(3, mix.iter());
            fill(nodes.clone(), &mix, &mut stack, &o)
        };
        let (x, y) = (run(), run());
        assert_eq!(x, y);
        assert_eq!(x.basis, Basis::Cpu);
        // The cluster (40 cores) ends exactly full: every placed task's CPU adds up to it.
        let placed_cpu: u64 = x
            .draws
            .iter()
            .filter(|d| d.1.is_some())
            .map(|d| mix[d.0].cpu_milli)
            .sum();
        assert!(placed_cpu > 38_000 && placed_cpu <= 40_000, "{placed_cpu}");
        let last = x.rows.last().map(|r| (r.failed, r.cpu_alloc));
        assert!(
            last.is_some_and(|(f, c)| f >= 100 && (c - placed_cpu as f64 / 40_000.0).abs() < 1e-12)
        );
        // Both shapes were drawn.
        assert!(x.draws.iter().any(|d| d.0 == 0) && x.draws.iter().any(|d| d.0 == 1));
    }
}
