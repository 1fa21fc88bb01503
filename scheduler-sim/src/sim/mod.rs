//! The discrete-event simulator: replays timed tasks through a [`Stack`] on a virtual clock.
//!
//! Events are task arrivals and task finishes, ordered by `(time, finishes before arrivals,
//! trace order)`, so a replay depends only on its inputs and the stack's seed. An arrival is
//! offered to the stack at once; if no node fits it waits in a FIFO pending queue, which is
//! retried (oldest first, every pending task tried, so one large task does not block smaller
//! ones behind it) whenever a finish has freed capacity. A task that would not fit even on
//! an *empty* cluster is counted as failed and never queued. Time-series samples are taken
//! once per distinct event time, after every event at that time.
//!
//! Node failures ([`NodeFailure`], explicit or drawn by [`failures_at_rate`]) add node-down
//! and node-up events. At one time, events run in the order finishes, node ups, node downs,
//! arrivals. A node going down is marked not ready (the stack's `node-ready` filter keeps
//! work off it) and every task running on it is evicted: released, counted in
//! [`Metrics::evictions`] and put at the back of the pending queue, where it competes like any
//! waiting task; when placed again it runs its *full* duration again (no checkpointing). Its
//! wait time stays the one of its first placement. Overlapping outages of one node nest: the
//! node is up again when every outage covering it has ended.
//!
//! Every sample also carries the FGD paper's fragmentation measure over the target workload
//! (the trace's task shapes, as the `fgd` preset uses): unallocated GPUs on ready nodes and
//! the part of them that is fragmented (`sum_n F_n(M)`, see [`crate::policy::fgd`]). Each
//! node's `F_n(M)` is cached and recomputed only when that node changes.
//!
//! This module reads no clock and does no I/O; [`crate::report`] writes the results.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Serialize;

use crate::policy::fgd::FragmentationScore;
use crate::policy::preset::FGD_MAX_SHAPES;
use crate::policy::{Allocation, Node, Resources, Stack, GPU_MILLI};
use crate::rng::Rng;
use crate::trace::TaskSpec;

pub mod compact;
pub mod fill;
mod pending;

/// One node outage: node `node` (an index) goes down at `at` and, with `duration`, comes back
/// up that many seconds later (without, it stays down).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFailure {
    pub node: usize,
    pub at: u64,
    pub duration: Option<u64>,
}

/// Outages drawn at a rate: every node fails as a Poisson process with `per_node_per_hour`
/// failures per hour of simulated time over `[start, end)`, each outage lasting `duration`
/// seconds. Draws are seeded and per node in node order, so the list depends only on the
/// arguments.
pub fn failures_at_rate(
    nodes: usize,
    per_node_per_hour: f64,
    duration: u64,
    start: u64,
    end: u64,
    seed: u64,
) -> Vec<NodeFailure> {
    let mut out = Vec::new();
    if per_node_per_hour <= 0.0 || !per_node_per_hour.is_finite() {
        return out;
    }
    let mean_gap = 3600.0 / per_node_per_hour;
    let mut rng = Rng::new(seed);
    for node in 0..nodes {
        let mut t = start as f64;
        loop {
            t += -(1.0 - rng.next_f64()).ln() * mean_gap;
            if t >= end as f64 {
                break;
            }
            out.push(NodeFailure {
                node,
                at: t as u64,
                duration: Some(duration),
            });
        }
    }
    out
}

/// What a replay does besides placing tasks.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Node outages to inject.
    pub failures: Vec<NodeFailure>,
    /// The target workload fragmentation is measured against; `None` measures it against the
    /// replayed tasks' own shapes (what the `fgd` preset targets).
    pub frag_workload: Option<FragmentationScore>,
    /// The examine cap the stack is built with (the caller applies it).
    pub examine: crate::policy::Examine,
}

/// One time-series sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    pub time: u64,
    pub cpu_alloc: f64,
    pub mem_alloc: f64,
    pub gpu_alloc: f64,
    pub nodes_in_use: usize,
    pub running: usize,
    pub pending: usize,
    /// Unallocated GPUs on ready nodes, in whole GPUs.
    pub gpu_unallocated: f64,
    /// The part of `gpu_unallocated` that is fragmented for the target workload (FGD's
    /// `sum_n F_n(M)`), in whole GPUs.
    pub gpu_fragmented: f64,
}

/// Mean and peak of one allocation ratio.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RatioSummary {
    /// Time-weighted mean over the simulated span.
    pub mean: f64,
    pub peak: f64,
}

/// What a replay measured. Deterministic for the same inputs and seed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub nodes: usize,
    pub tasks: usize,
    /// Successful placements.
    pub placements: usize,
    /// Tasks that fit on no node even when the cluster is empty.
    pub failed: usize,
    /// Tasks still waiting when the event queue ran dry.
    pub pending_at_end: usize,
    /// Tasks that had to wait at least once.
    pub queued: usize,
    /// Calls to the stack, retries included (a pending task no node that gained room could
    /// take is not offered again; see the retry round).
    pub decisions: u64,
    /// Wait from arrival to placement over placed tasks, seconds (nearest-rank).
    pub wait_p50: u64,
    pub wait_p99: u64,
    pub wait_max: u64,
    pub start_time: u64,
    pub end_time: u64,
    pub cpu_alloc: RatioSummary,
    pub mem_alloc: RatioSummary,
    pub gpu_alloc: RatioSummary,
    pub peak_nodes_in_use: usize,
    /// Fragmented GPUs (whole GPUs) over time: time-weighted mean and peak.
    pub gpu_fragmented: RatioSummary,
    /// Node-down events that took an up node down.
    pub node_failures: usize,
    /// Running tasks stopped by a node going down (each was re-queued).
    pub evictions: usize,
}

/// A replay's results.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub metrics: Metrics,
    pub series: Vec<Sample>,
    /// Per task, the node index it was placed on (the first placement), or `None`.
    pub placements: Vec<Option<usize>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Finish = 0,
    NodeUp = 1,
    NodeDown = 2,
    Arrival = 3,
}

type EventQueue = BinaryHeap<Reverse<(u64, Kind, usize)>>;

/// The mutable state of one replay.
struct Replay<'a> {
    tasks: &'a [TaskSpec],
    nodes: Vec<Node>,
    events: EventQueue,
    pending: pending::Pending,
    /// Per task: node, allocation and the time its finish event is due (`u64::MAX`: never),
    /// so a finish event left over from before an eviction is recognised as stale.
    running: Vec<Option<(usize, Allocation, u64)>>,
    /// Per node: the tasks running on it.
    on_node: Vec<Vec<usize>>,
    /// Per node: outages currently covering it.
    down: Vec<u32>,
    frag: Frag,
    placed_on: Vec<Option<usize>>,
    was_queued: Vec<bool>,
    waits: Vec<u64>,
    allocated: Resources,
    n_running: usize,
    nodes_in_use: usize,
    /// Nodes that gained room (a finish, a node back up) since the last retry round, and a
    /// flag per node for membership.
    gained: Vec<usize>,
    gained_flag: Vec<bool>,
    m: Metrics,
}

impl Replay<'_> {
    /// Offers task `i` to the stack at `now`; on success charges the node and schedules the
    /// finish.
    fn try_place(&mut self, stack: &mut Stack, i: usize, now: u64) -> bool {
        let spec = &self.tasks[i];
        self.m.decisions += 1;
        let Some(n) = stack.place(&self.nodes, &spec.task).node else {
            return false;
        };
        let Some(a) = self.nodes[n].allocate(&spec.task) else {
            return false;
        };
        if self.nodes[n].tasks == 1 {
            self.nodes_in_use += 1;
        }
        self.allocated = self.allocated.plus(a.request);
        let end = match spec.duration {
            Some(d) => {
                let end = now.saturating_add(d);
                self.events.push(Reverse((end, Kind::Finish, i)));
                end
            }
            None => u64::MAX,
        };
        self.running[i] = Some((n, a, end));
        self.on_node[n].push(i);
        self.frag.update(&self.nodes[n], n);
        self.n_running += 1;
        self.m.placements += 1;
        if self.placed_on[i].is_none() {
            self.placed_on[i] = Some(n);
            self.waits.push(now - spec.arrival);
        }
        true
    }

    /// Ends task `i` if it is running (and, for a finish event, due at `now`).
    fn finish(&mut self, i: usize, now: Option<u64>) -> bool {
        match &self.running[i] {
            Some((_, _, end)) if now.is_none_or(|t| t == *end) => {}
            _ => return false,
        }
        let Some((n, a, _)) = self.running[i].take() else {
            return false;
        };
        self.nodes[n].release(&self.tasks[i].task, &a);
        if self.nodes[n].tasks == 0 {
            self.nodes_in_use -= 1;
        }
        if let Some(p) = self.on_node[n].iter().position(|&t| t == i) {
            self.on_node[n].swap_remove(p);
        }
        self.frag.update(&self.nodes[n], n);
        self.allocated = self.allocated.minus(a.request);
        self.n_running -= 1;
        self.mark_gained(n);
        true
    }

    fn mark_gained(&mut self, n: usize) {
        if !self.gained_flag[n] {
            self.gained_flag[n] = true;
            self.gained.push(n);
        }
    }

    /// Takes node `n` down (if up): evicts its tasks, in the order they were placed, to the
    /// back of the pending queue. Returns whether the node was up.
    fn node_down(&mut self, n: usize) -> bool {
        self.down[n] += 1;
        if self.down[n] > 1 {
            return false;
        }
        self.m.node_failures += 1;
        // Evicted in trace order, so the pending queue's order does not depend on the order
        // the node's task list happens to be in.
        let mut victims = std::mem::take(&mut self.on_node[n]);
        victims.sort_unstable();
        for &i in &victims {
            if self.finish(i, None) {
                self.m.evictions += 1;
                self.pending.push(self.tasks, i, true);
                self.was_queued[i] = true;
            }
        }
        self.nodes[n].ready = false;
        self.frag.set_ready(&self.nodes[n], n);
        true
    }

    /// Ends one outage of node `n`; the node is ready again when none is left.
    fn node_up(&mut self, n: usize) -> bool {
        self.down[n] = self.down[n].saturating_sub(1);
        if self.down[n] > 0 || self.nodes[n].ready {
            return false;
        }
        self.nodes[n].ready = true;
        self.frag.set_ready(&self.nodes[n], n);
        self.mark_gained(n);
        true
    }

    /// Offers pending tasks, oldest first; keeps those that still do not fit.
    ///
    /// A pending task was refused by every node when last offered, and since then nodes have
    /// only gained room where a task finished or a node came back (constraints, taints and
    /// labels do not change; placements only take room). So a task the filters reject on
    /// every node that gained is kept without asking the stack, whose answer could only be
    /// "nowhere" (kube-scheduler's queueing hints, exact for the built-in stacks); and within
    /// a round, a task whose demand was just refused is not offered either
    /// ([`pending::Pending`]). Evicted tasks were never refused and are always offered. With an
    /// external program, which may decline a task that fits, every task is offered.
    fn retry(&mut self, stack: &mut Stack, now: u64) {
        let gained = std::mem::take(&mut self.gained);
        for &n in &gained {
            self.gained_flag[n] = false;
        }
        // A chooser (an external program) may leave a task unplaced although nodes fit it:
        // then "refused" says nothing about the nodes, and every task is offered again.
        let hints = stack.chooser_name().is_none();
        let mut pending = std::mem::take(&mut self.pending);
        let nodes = &self.nodes;
        let selected = pending.select(self.tasks, |t| {
            !hints || gained.iter().any(|&n| stack.feasible(&nodes[n], t))
        });
        // Placements earlier in the round may have taken the room that made a class hopeful:
        // look again (cheaply, on the gained nodes) before asking the stack.
        pending.offer(selected, |i, unchecked| {
            let task = &self.tasks[i].task;
            (unchecked || !hints || gained.iter().any(|&n| stack.feasible(&self.nodes[n], task)))
                && self.try_place(stack, i, now)
        });
        self.pending = pending;
    }

    fn sample(&self, now: u64, capacity: Resources) -> Sample {
        Sample {
            time: now,
            cpu_alloc: ratio(self.allocated.cpu_milli, capacity.cpu_milli),
            mem_alloc: ratio(self.allocated.memory_mib, capacity.memory_mib),
            gpu_alloc: ratio(self.allocated.gpu_milli, capacity.gpu_milli),
            nodes_in_use: self.nodes_in_use,
            running: self.n_running,
            pending: self.pending.len(),
            gpu_unallocated: self.frag.unallocated(),
            gpu_fragmented: self.frag.fragmented(),
        }
    }
}

/// Per-node cached fragmentation (`F_n(M)`, milli-GPUs) and free GPU share of ready nodes.
pub(crate) struct Frag {
    score: FragmentationScore,
    per_node: Vec<f64>,
    free: Vec<u64>,
}

impl Frag {
    pub(crate) fn new(score: FragmentationScore, nodes: &[Node]) -> Self {
        let mut f = Self {
            score,
            per_node: vec![0.0; nodes.len()],
            free: vec![0; nodes.len()],
        };
        for (i, n) in nodes.iter().enumerate() {
            f.update(n, i);
        }
        f
    }

    /// Recomputes node `i` after it changed.
    pub(crate) fn update(&mut self, node: &Node, i: usize) {
        if node.ready {
            self.per_node[i] = self.score.node_fragmentation(node);
            self.free[i] = node.free().gpu_milli;
        } else {
            self.per_node[i] = 0.0;
            self.free[i] = 0;
        }
    }

    fn set_ready(&mut self, node: &Node, i: usize) {
        self.update(node, i);
    }

    /// Unallocated GPUs of ready nodes, whole GPUs.
    pub(crate) fn unallocated(&self) -> f64 {
        self.free.iter().sum::<u64>() as f64 / f64::from(GPU_MILLI)
    }

    /// Fragmented GPUs of ready nodes, whole GPUs (summed in node order: deterministic).
    pub(crate) fn fragmented(&self) -> f64 {
        self.per_node.iter().sum::<f64>() / f64::from(GPU_MILLI)
    }
}

/// Replays `tasks` on `nodes` with `stack`, no failures.
pub fn run(nodes: Vec<Node>, tasks: &[TaskSpec], stack: &mut Stack) -> Outcome {
    run_with(nodes, tasks, stack, Options::default())
}

/// Replays `tasks` on `nodes` with `stack` and `opts`. Failures naming a node index out of
/// range are ignored.
pub fn run_with(nodes: Vec<Node>, tasks: &[TaskSpec], stack: &mut Stack, opts: Options) -> Outcome {
    let empty: Vec<Node> = nodes.iter().map(Node::emptied).collect();
    let score = opts.frag_workload.unwrap_or_else(|| {
        FragmentationScore::from_tasks(tasks.iter().map(|t| &t.task), FGD_MAX_SHAPES)
    });
    let mut events: EventQueue = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| Reverse((t.arrival, Kind::Arrival, i)))
        .collect();
    for f in opts.failures.iter().filter(|f| f.node < nodes.len()) {
        events.push(Reverse((f.at, Kind::NodeDown, f.node)));
        if let Some(d) = f.duration {
            events.push(Reverse((f.at.saturating_add(d), Kind::NodeUp, f.node)));
        }
    }
    let capacity = nodes
        .iter()
        .fold(Resources::default(), |a, n| a.plus(n.capacity));
    let mut r = Replay {
        tasks,
        events,
        pending: pending::Pending::default(),
        running: vec![None; tasks.len()],
        on_node: vec![Vec::new(); nodes.len()],
        down: vec![0; nodes.len()],
        frag: Frag::new(score, &nodes),
        placed_on: vec![None; tasks.len()],
        was_queued: vec![false; tasks.len()],
        waits: Vec::new(),
        allocated: Resources::default(),
        n_running: 0,
        nodes_in_use: 0,
        gained: Vec::new(),
        gained_flag: vec![false; nodes.len()],
        m: Metrics {
            nodes: nodes.len(),
            tasks: tasks.len(),
            ..Metrics::default()
        },
        nodes,
    };
    r.m.start_time = r.events.peek().map_or(0, |Reverse((t, _, _))| *t);
    let mut series = Vec::new();

    while let Some(&Reverse((now, _, _))) = r.events.peek() {
        // A failed external policy ends the replay; the caller reports its error.
        if stack.failed() {
            break;
        }
        let mut freed = false;
        while let Some(&Reverse((t, kind, i))) = r.events.peek() {
            if t != now {
                break;
            }
            r.events.pop();
            match kind {
                Kind::Finish => freed |= r.finish(i, Some(now)),
                Kind::NodeUp => freed |= r.node_up(i),
                // Evicted tasks join the pending queue; retry them like freed capacity.
                Kind::NodeDown => freed |= r.node_down(i),
                Kind::Arrival => {
                    // Older waiting tasks get freed capacity before a new arrival.
                    if std::mem::take(&mut freed) {
                        r.retry(stack, now);
                    }
                    if !r.try_place(stack, i, now) {
                        if empty.iter().any(|n| stack.feasible(n, &tasks[i].task)) {
                            r.pending.push(tasks, i, false);
                            r.was_queued[i] = true;
                        } else {
                            r.m.failed += 1;
                        }
                    }
                }
            }
        }
        if freed {
            r.retry(stack, now);
        }
        series.push(r.sample(now, capacity));
        r.m.end_time = now;
    }

    let mut m = r.m;
    m.pending_at_end = r.pending.len();
    m.queued = r.was_queued.iter().filter(|q| **q).count();
    let mut waits = r.waits;
    waits.sort_unstable();
    m.wait_p50 = percentile(&waits, 50);
    m.wait_p99 = percentile(&waits, 99);
    m.wait_max = waits.last().copied().unwrap_or(0);
    m.cpu_alloc = summarise(&series, m.end_time, |s| s.cpu_alloc);
    m.mem_alloc = summarise(&series, m.end_time, |s| s.mem_alloc);
    m.gpu_alloc = summarise(&series, m.end_time, |s| s.gpu_alloc);
    m.peak_nodes_in_use = series.iter().map(|s| s.nodes_in_use).max().unwrap_or(0);
    m.gpu_fragmented = summarise(&series, m.end_time, |s| s.gpu_fragmented);
    Outcome {
        metrics: m,
        series,
        placements: r.placed_on,
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Nearest-rank percentile of sorted values (0 when empty).
fn percentile(sorted: &[u64], p: u64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as u64).div_ceil(100).max(1) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Time-weighted mean (each sample holds until the next) and peak.
fn summarise(series: &[Sample], end: u64, f: impl Fn(&Sample) -> f64) -> RatioSummary {
    let peak = series.iter().map(&f).fold(0.0, f64::max);
    let (Some(first), true) = (series.first(), end > series.first().map_or(0, |s| s.time)) else {
        return RatioSummary {
            mean: series.first().map_or(0.0, &f),
            peak,
        };
    };
    let mut area = 0.0;
    for w in series.windows(2) {
        area += f(&w[0]) * (w[1].time - w[0].time) as f64;
    }
    RatioSummary {
        mean: area / (end - first.time) as f64,
        peak,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Preset, Task};

    fn spec(name: &str, cpu: u64, arrival: u64, duration: Option<u64>) -> TaskSpec {
        TaskSpec {
            task: Task::new(name, cpu, 1),
            arrival,
            duration,
        }
    }

    #[test]
    fn pending_tasks_wait_for_capacity_in_fifo_order() {
        let nodes = vec![Node::new("n", 4000, 100, 0, None)];
        let tasks = vec![
            spec("a", 3000, 0, Some(10)),
            spec("b", 2000, 1, Some(5)), // waits for a: placed at 10
            spec("c", 1000, 2, Some(5)), // fits beside a at once
            spec("d", 5000, 3, Some(1)), // fits nowhere, ever: failed
            spec("e", 4000, 4, None),    // waits for b and c: placed at 15, never leaves
        ];
        let mut stack = Preset::FirstFit.build(0, std::iter::empty());
        let o = run(nodes, &tasks, &mut stack);
        let m = &o.metrics;
        assert_eq!(o.placements, vec![Some(0), Some(0), Some(0), None, Some(0)]);
        assert_eq!(
            (m.placements, m.failed, m.pending_at_end, m.queued),
            (4, 1, 0, 2)
        );
        // Waits: a 0, c 0, b 9, e 11.
        assert_eq!((m.wait_p50, m.wait_p99, m.wait_max), (0, 11, 11));
        assert_eq!(
            o.series.iter().map(|s| s.time).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 7, 10, 15]
        );
        let at10 = &o.series[6];
        assert_eq!((at10.running, at10.pending, at10.cpu_alloc), (1, 1, 0.5));
        assert_eq!(
            o.series.last().map(|s| (s.running, s.cpu_alloc)),
            Some((1, 1.0))
        );
        // CPU over 0..15: 0.75 for 2 s, 1.0 for 5, 0.75 for 3, 0.5 for 5 → 11.25 / 15.
        assert_eq!(
            m.cpu_alloc,
            RatioSummary {
                mean: 0.75,
                peak: 1.0
            }
        );
        // Five arrivals; at 10 b placed; at 15 e. At 7 (c ended: 1000m free) neither b nor e
        // fits the one node that gained, and at 10 e no longer fits it once b is placed, so
        // the stack is not asked then.
        assert_eq!(m.decisions, 7);
    }

    #[test]
    fn node_failure_evicts_requeues_and_recovers() {
        // Two 4-core nodes; t0 on a, t1 on b (first-fit). a fails at 10 for 20 s: t0 is
        // evicted, b has no room, so t0 waits until a is back at 30 and runs its full 100 s
        // again (ends 130). Its original finish at 100 is stale and ignored.
        let nodes = vec![
            Node::new("a", 4000, 100, 0, None),
            Node::new("b", 4000, 100, 0, None),
        ];
        let tasks = vec![
            spec("t0", 3000, 0, Some(100)),
            spec("t1", 3000, 1, Some(100)),
        ];
        let mut stack = Preset::FirstFit.build(0, std::iter::empty());
        let opts = Options {
            failures: vec![NodeFailure {
                node: 0,
                at: 10,
                duration: Some(20),
            }],
            frag_workload: None,
            ..Options::default()
        };
        let o = run_with(nodes.clone(), &tasks, &mut stack, opts);
        let m = &o.metrics;
        assert_eq!(o.placements, vec![Some(0), Some(1)]);
        assert_eq!(
            (
                m.node_failures,
                m.evictions,
                m.placements,
                m.queued,
                m.pending_at_end
            ),
            (1, 1, 3, 1, 0)
        );
        // The wait is the first placement's.
        assert_eq!(m.wait_max, 0);
        let rows: Vec<(u64, usize, usize)> = o
            .series
            .iter()
            .map(|s| (s.time, s.running, s.pending))
            .collect();
        assert_eq!(
            rows,
            [
                (0, 1, 0),
                (1, 2, 0),
                (10, 1, 1),
                (30, 2, 0),
                (100, 2, 0),
                (101, 1, 0),
                (130, 0, 0)
            ]
        );
        assert_eq!(m.end_time, 130);

        // Without `for` the node never returns: t0 is still pending at the end. Overlapping
        // outages nest: b down 5..50 and 20..40 is up again only at 50.
        let mut stack = Preset::FirstFit.build(0, std::iter::empty());
        let opts = Options {
            failures: vec![
                NodeFailure {
                    node: 0,
                    at: 10,
                    duration: None,
                },
                NodeFailure {
                    node: 1,
                    at: 5,
                    duration: Some(45),
                },
                NodeFailure {
                    node: 1,
                    at: 20,
                    duration: Some(20),
                },
                NodeFailure {
                    node: 7,
                    at: 1,
                    duration: None,
                },
            ],
            frag_workload: None,
            ..Options::default()
        };
        let o = run_with(nodes, &tasks, &mut stack, opts);
        let m = &o.metrics;
        // t1 arrives at 1 on b; b down at 5 evicts it; a down at 10 evicts t0. The queue is
        // [t1, t0]. b is up again only at 50 (the 20..40 outage nests in 5..50): t1 goes on
        // b, t0 does not fit beside it and waits until t1 ends at 150, then runs to 250.
        assert_eq!((m.node_failures, m.evictions), (2, 2));
        let at = |t: u64| {
            o.series
                .iter()
                .find(|s| s.time == t)
                .map(|s| (s.running, s.pending))
        };
        assert_eq!(
            (at(40), at(50), at(150)),
            (Some((0, 2)), Some((1, 1)), Some((1, 0)))
        );
        assert_eq!((m.pending_at_end, m.end_time), (0, 250));
        assert_eq!(o.placements, vec![Some(0), Some(1)]);
    }

    #[test]
    fn failures_at_rate_are_seeded_and_near_the_rate() {
        let a = failures_at_rate(100, 2.0, 60, 0, 36_000, 5);
        assert_eq!(a, failures_at_rate(100, 2.0, 60, 0, 36_000, 5));
        assert_ne!(a, failures_at_rate(100, 2.0, 60, 0, 36_000, 6));
        // Expect 100 nodes * 10 h * 2/h = 2000.
        assert!((1800..2200).contains(&a.len()), "{}", a.len());
        assert!(a
            .iter()
            .all(|f| f.at < 36_000 && f.duration == Some(60) && f.node < 100));
        assert!(failures_at_rate(10, 0.0, 60, 0, 1000, 1).is_empty());
    }

    #[test]
    fn fragmentation_is_tracked_per_sample() {
        // One 2-GPU node; target workload = the tasks (a 500m share and a whole GPU, 1:1).
        let nodes = vec![Node::new("g", 8000, 8192, 2, None)];
        let tasks = vec![
            TaskSpec {
                task: Task::new("s", 100, 1).with_gpus(1, 500),
                arrival: 0,
                duration: Some(10),
            },
            TaskSpec {
                task: Task::new("w", 100, 1).with_gpus(1, 1000),
                arrival: 5,
                duration: None,
            },
        ];
        let mut stack = Preset::FirstFit.build(0, std::iter::empty());
        let o = run(nodes, &tasks, &mut stack);
        let f: Vec<(f64, f64)> = o
            .series
            .iter()
            .map(|s| (s.gpu_unallocated, s.gpu_fragmented))
            .collect();
        // 0: devices [500, 0]: share shape sees no fragment, whole-GPU shape 500 → 0.25.
        // 5: [500, 1000]: 500 free; share 0, whole 500 → 0.25. 10: [0, 1000]: 0.
        assert_eq!(f, [(1.5, 0.25), (0.5, 0.25), (1.0, 0.0)]);
        assert_eq!(o.metrics.gpu_fragmented.peak, 0.25);
    }

    #[test]
    fn percentile_nearest_rank() {
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[5], 99), 5);
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!((percentile(&v, 50), percentile(&v, 99)), (50, 99));
    }
}
