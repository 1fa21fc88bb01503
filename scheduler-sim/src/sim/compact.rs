//! Cell compaction, Borg's measure of a policy's packing (Verma et al., EuroSys'15, §5.1):
//! the fewest nodes that still fit a workload under the policy.
//!
//! Precisely: the workload is a *snapshot* of the trace ([`Snapshot`]: the tasks running at the
//! moment of peak CPU demand, at a given time, or every task at once). For each of `k` seeded
//! random permutations of the node list, a binary search finds the smallest prefix of the
//! permutation on which the policy, placing the snapshot's tasks one by one in trace order on
//! empty nodes with no departures, places every task. The answer per permutation, and their
//! minimum, median and maximum, are the result; Borg used 11 permutations and the same shape
//! of answer. Re-packing from scratch at every size keeps one unlucky packing from deciding.
//!
//! The binary search assumes that a prefix that fits stays fitting when nodes are added,
//! which holds for the presets' filters and for fit-then-score policies in practice (a policy
//! with anomalies would make the answer an upper bound of a local minimum, not the global).
//!
//! Deterministic: the permutations come from the seed; each packing's stack is built with a
//! seed derived from the run's seed, the permutation and the size tried.

use serde::Serialize;

use crate::policy::{ExternalError, Node, Stack, Task};
use crate::rng::Rng;
use crate::trace::TaskSpec;

/// Mixed into the seed for the permutation stream.
const PERMUTATION_SALT: u64 = 0x636f_6d70_6163_7421; // "compact!"

/// Which tasks make up the workload to fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "time")]
pub enum Snapshot {
    /// The tasks running when the requested CPU of running tasks peaks (earliest such time).
    Peak,
    /// Every task at once, as the FGD paper treats the OpenB pod lists.
    All,
    /// The tasks running at this trace time.
    At(u64),
}

impl std::str::FromStr for Snapshot {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "peak" => Ok(Snapshot::Peak),
            "all" => Ok(Snapshot::All),
            t => t
                .parse()
                .map(Snapshot::At)
                .map_err(|_| format!("{s:?} is not peak, all, or a trace time in whole seconds")),
        }
    }
}

fn running_at(t: &TaskSpec, time: u64) -> bool {
    t.arrival <= time
        && t.duration
            .is_none_or(|d| time < t.arrival.saturating_add(d))
}

/// The snapshot's tasks in trace order, and its time (`None` for [`Snapshot::All`]).
pub fn snapshot(tasks: &[TaskSpec], which: Snapshot) -> (Option<u64>, Vec<Task>) {
    let time = match which {
        Snapshot::All => return (None, tasks.iter().map(|t| t.task.clone()).collect()),
        Snapshot::At(t) => t,
        Snapshot::Peak => {
            // Sweep starts and ends in time order; ends before starts at the same instant
            // (a task ending at t is not running at t).
            let mut ev: Vec<(u64, bool, u64)> = Vec::with_capacity(tasks.len() * 2);
            // A task of zero duration never runs (see `running_at`): it has no part in a peak.
            for t in tasks.iter().filter(|t| t.duration != Some(0)) {
                ev.push((t.arrival, true, t.task.cpu_milli));
                if let Some(d) = t.duration {
                    ev.push((t.arrival.saturating_add(d), false, t.task.cpu_milli));
                }
            }
            ev.sort_unstable();
            let (mut cur, mut best, mut at) = (0u64, 0u64, 0u64);
            let mut i = 0;
            while i < ev.len() {
                let time = ev[i].0;
                while i < ev.len() && ev[i].0 == time {
                    let (_, start, cpu) = ev[i];
                    if start {
                        cur += cpu;
                    } else {
                        cur = cur.saturating_sub(cpu);
                    }
                    i += 1;
                }
                if cur > best {
                    best = cur;
                    at = time;
                }
            }
            at
        }
    };
    (
        Some(time),
        tasks
            .iter()
            .filter(|t| running_at(t, time))
            .map(|t| t.task.clone())
            .collect(),
    )
}

/// How a compaction runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactOptions {
    pub seed: u64,
    /// Random permutations of the node list to search (Borg: 11).
    pub permutations: usize,
    /// Worker threads (permutations are independent).
    pub threads: usize,
    /// The examine cap the stacks are built with (the caller's `make` applies it).
    pub examine: crate::policy::Examine,
}

/// What a compaction found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompactOutcome {
    pub nodes: usize,
    pub tasks: usize,
    /// Whether the whole cluster fits the snapshot under the policy; when not, there is
    /// nothing to compact and the per-permutation answers are empty.
    pub fits_all: bool,
    /// Per permutation, the fewest nodes (a prefix of the permutation) that fit.
    pub per_permutation: Vec<usize>,
    pub min: Option<usize>,
    pub median: Option<usize>,
    pub max: Option<usize>,
}

/// Places every task on `nodes` (emptied copies) in order; false at the first that fits
/// nowhere.
fn fits(nodes: &[Node], order: &[usize], k: usize, tasks: &[Task], stack: &mut Stack) -> bool {
    let mut sub: Vec<Node> = order[..k].iter().map(|&i| nodes[i].emptied()).collect();
    for t in tasks {
        match stack.place(&sub, t).node {
            Some(i) => {
                if sub[i].allocate(t).is_none() {
                    return false;
                }
            }
            None => return false,
        }
    }
    true
}

fn permutation(n: usize, seed: u64, p: usize) -> Vec<usize> {
    let mut rng =
        Rng::new(seed ^ PERMUTATION_SALT ^ (p as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i + 1);
        v.swap(i, j);
    }
    v
}

fn stack_seed(seed: u64, p: usize, k: usize) -> u64 {
    seed.wrapping_add((p as u64) << 32).wrapping_add(k as u64)
}

/// The fewest nodes of permutation `p` that fit `tasks`; `Ok(None)` when even all do not.
fn search(
    nodes: &[Node],
    tasks: &[Task],
    p: usize,
    o: &CompactOptions,
    make: &(dyn Fn(u64) -> Result<Stack, ExternalError> + Sync),
) -> Result<Option<usize>, ExternalError> {
    let order = permutation(nodes.len(), o.seed, p);
    let test = |k: usize| -> Result<bool, ExternalError> {
        let mut stack = make(stack_seed(o.seed, p, k))?;
        let ok = fits(nodes, &order, k, tasks, &mut stack);
        match stack.error() {
            Some(e) => Err(e.clone()),
            None => Ok(ok),
        }
    };
    if tasks.is_empty() {
        return Ok(Some(0));
    }
    if !test(nodes.len())? {
        return Ok(None);
    }
    // Invariant: fits(hi), and nothing at or below lo is known to fit (lo = 0 never does
    // with tasks to place).
    let (mut lo, mut hi) = (0usize, nodes.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if test(mid)? {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(Some(hi))
}

/// Compacts `nodes` for `tasks` under the stacks `make` builds (one per packing, from the
/// seed it is given). Fails only when an external policy program fails.
pub fn compact(
    nodes: &[Node],
    tasks: &[Task],
    o: &CompactOptions,
    make: &(dyn Fn(u64) -> Result<Stack, ExternalError> + Sync),
) -> Result<CompactOutcome, ExternalError> {
    let perms = o.permutations.max(1);
    let threads = o.threads.clamp(1, perms);
    let mut results: Vec<Result<Option<usize>, ExternalError>> = Vec::with_capacity(perms);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                s.spawn(move || {
                    (w..perms)
                        .step_by(threads)
                        .map(|p| (p, search(nodes, tasks, p, o, make)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, Result<Option<usize>, ExternalError>)> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect();
        all.sort_by_key(|(p, _)| *p);
        results.extend(all.into_iter().map(|(_, r)| r));
    });
    let mut per = Vec::with_capacity(perms);
    let mut fits_all = true;
    for r in results {
        match r? {
            Some(k) => per.push(k),
            None => fits_all = false,
        }
    }
    if !fits_all {
        per.clear();
    }
    let mut sorted = per.clone();
    sorted.sort_unstable();
    Ok(CompactOutcome {
        nodes: nodes.len(),
        tasks: tasks.len(),
        fits_all,
        min: sorted.first().copied(),
        median: (!sorted.is_empty()).then(|| sorted[(sorted.len() - 1) / 2]),
        max: sorted.last().copied(),
        per_permutation: per,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Preset;

    fn spec(cpu: u64, arrival: u64, duration: Option<u64>) -> TaskSpec {
        TaskSpec {
            task: Task::new(format!("t{arrival}-{cpu}"), cpu, 1),
            arrival,
            duration,
        }
    }

    #[test]
    fn the_snapshot_is_taken_at_peak_cpu() {
        let tasks = [
            spec(1000, 0, Some(10)),
            spec(3000, 5, Some(10)), // 0..10 and 5..15 overlap: 4000 at t=5
            spec(2000, 12, None),    // 5..15 and 12..: 5000 at t=12
            spec(500, 15, Some(1)),  // at 15 the 3000 has ended: 2500
        ];
        let (t, s) = snapshot(&tasks, Snapshot::Peak);
        assert_eq!(t, Some(12));
        assert_eq!(
            s.iter().map(|t| t.cpu_milli).collect::<Vec<_>>(),
            vec![3000, 2000]
        );
        let (t, s) = snapshot(&tasks, Snapshot::At(15));
        assert_eq!((t, s.len()), (Some(15), 2));
        let (t, s) = snapshot(&tasks, Snapshot::All);
        assert_eq!((t, s.len()), (None, 4));
        assert_eq!("peak".parse(), Ok(Snapshot::Peak));
        assert_eq!("42".parse(), Ok(Snapshot::At(42)));
        assert!("soon".parse::<Snapshot>().is_err());
    }

    /// Ten 4-core nodes and ten 1500m tasks: two fit a node, so 5 nodes are the minimum for
    /// binpack and first-fit, whatever the permutation (all nodes are alike).
    #[test]
    fn compaction_finds_the_fewest_nodes() {
        let nodes: Vec<Node> = (0..10)
            .map(|i| Node::new(format!("n{i}"), 4000, 16384, 0, None))
            .collect();
        let tasks: Vec<Task> = (0..10)
            .map(|i| Task::new(format!("t{i}"), 1500, 1024))
            .collect();
        let o = CompactOptions {
            seed: 3,
            permutations: 5,
            threads: 2,
            examine: Default::default(),
        };
        for p in [Preset::Binpack, Preset::FirstFit, Preset::Spread] {
            let make = |seed| Ok(p.build(seed, tasks.iter()));
            let r = compact(&nodes, &tasks, &o, &make).unwrap();
            assert!(r.fits_all);
            assert_eq!(r.per_permutation, vec![5; 5], "{p}");
            assert_eq!((r.min, r.median, r.max), (Some(5), Some(5), Some(5)));
        }
    }

    /// Mixed nodes: big (8 cores) and small (2 cores); tasks of 2 cores. The answer depends on
    /// which nodes come first in a permutation, and is repeatable for a seed.
    #[test]
    fn heterogeneous_nodes_give_a_range_that_repeats_for_a_seed() {
        let mut nodes: Vec<Node> = (0..4)
            .map(|i| Node::new(format!("big{i}"), 8000, 32768, 0, None))
            .collect();
        nodes.extend((0..8).map(|i| Node::new(format!("small{i}"), 2000, 8192, 0, None)));
        let tasks: Vec<Task> = (0..8)
            .map(|i| Task::new(format!("t{i}"), 2000, 1024))
            .collect();
        let o = CompactOptions {
            seed: 11,
            permutations: 11,
            threads: 3,
            examine: Default::default(),
        };
        let make = |seed| Ok(Preset::Binpack.build(seed, tasks.iter()));
        let a = compact(&nodes, &tasks, &o, &make).unwrap();
        let b = compact(&nodes, &tasks, &o, &make).unwrap();
        assert_eq!(a, b);
        // At best two big nodes; at worst all the small ones come first: 8 small, or fewer
        // when a big one is among the first.
        assert!(a.min.unwrap() >= 2 && a.max.unwrap() <= 8, "{a:?}");
        assert!(a.min < a.max, "permutations should differ: {a:?}");
    }

    #[test]
    fn a_workload_too_big_for_the_cluster_is_said_so() {
        let nodes = vec![Node::new("n", 1000, 1024, 0, None)];
        let tasks = vec![Task::new("t", 2000, 1)];
        let make = |seed| Ok(Preset::Binpack.build(seed, tasks.iter()));
        let o = CompactOptions {
            seed: 0,
            permutations: 3,
            threads: 1,
            examine: Default::default(),
        };
        let r = compact(&nodes, &tasks, &o, &make).unwrap();
        assert!(!r.fits_all);
        assert_eq!(r.median, None);
    }
}
