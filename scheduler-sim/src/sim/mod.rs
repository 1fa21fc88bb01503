//! The discrete-event simulator: replays timed tasks through a [`Stack`] on a virtual clock.
//!
//! Events are task arrivals and task finishes, ordered by `(time, finishes before arrivals,
//! trace order)`, so a replay depends only on its inputs and the stack's seed. An arrival is
//! offered to the stack at once; if no node fits it waits in a FIFO pending queue, which is
//! retried (oldest first, every pending task tried, so one large task does not block smaller
//! ones behind it) whenever a finish has freed capacity. A task that would not fit even on
//! an *empty* cluster is counted as failed and never queued. Time-series samples are taken
//! once per distinct event time, after every event at that time. Node down/up events are not
//! simulated yet.
//!
//! This module reads no clock and does no I/O; [`crate::report`] writes the results.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use serde::Serialize;

use crate::policy::{Allocation, Node, Resources, Stack, Task};
use crate::trace::TaskSpec;

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
    /// Calls to the stack, retries included.
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
    Arrival = 1,
}

type EventQueue = BinaryHeap<Reverse<(u64, Kind, usize)>>;

/// The mutable state of one replay.
struct Replay<'a> {
    tasks: &'a [TaskSpec],
    nodes: Vec<Node>,
    events: EventQueue,
    pending: VecDeque<usize>,
    running: Vec<Option<(usize, Allocation)>>,
    placed_on: Vec<Option<usize>>,
    was_queued: Vec<bool>,
    waits: Vec<u64>,
    allocated: Resources,
    n_running: usize,
    nodes_in_use: usize,
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
        self.running[i] = Some((n, a));
        self.n_running += 1;
        self.m.placements += 1;
        self.placed_on[i].get_or_insert(n);
        self.waits.push(now - spec.arrival);
        if let Some(d) = spec.duration {
            self.events
                .push(Reverse((now.saturating_add(d), Kind::Finish, i)));
        }
        true
    }

    fn finish(&mut self, i: usize) -> bool {
        let Some((n, a)) = self.running[i].take() else {
            return false;
        };
        self.nodes[n].release(&self.tasks[i].task, &a);
        if self.nodes[n].tasks == 0 {
            self.nodes_in_use -= 1;
        }
        self.allocated = self.allocated.minus(a.request);
        self.n_running -= 1;
        true
    }

    /// Offers every pending task once, oldest first; keeps those that still do not fit.
    /// After a failure, later tasks with the same demand are skipped until something is
    /// placed (the nodes have not changed, so they would fail too).
    fn retry(&mut self, stack: &mut Stack, now: u64) {
        let tasks = self.tasks;
        let mut failed_demands: Vec<&Task> = Vec::new();
        for _ in 0..self.pending.len() {
            let Some(j) = self.pending.pop_front() else {
                break;
            };
            let task = &tasks[j].task;
            if failed_demands.iter().any(|f| f.same_demand(task)) {
                self.pending.push_back(j);
            } else if self.try_place(stack, j, now) {
                failed_demands.clear();
            } else {
                failed_demands.push(task);
                self.pending.push_back(j);
            }
        }
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
        }
    }
}

/// Replays `tasks` on `nodes` with `stack`.
pub fn run(nodes: Vec<Node>, tasks: &[TaskSpec], stack: &mut Stack) -> Outcome {
    let empty: Vec<Node> = nodes.iter().map(Node::emptied).collect();
    let capacity = nodes
        .iter()
        .fold(Resources::default(), |a, n| a.plus(n.capacity));
    let mut r = Replay {
        tasks,
        events: tasks
            .iter()
            .enumerate()
            .map(|(i, t)| Reverse((t.arrival, Kind::Arrival, i)))
            .collect(),
        pending: VecDeque::new(),
        running: vec![None; tasks.len()],
        placed_on: vec![None; tasks.len()],
        was_queued: vec![false; tasks.len()],
        waits: Vec::new(),
        allocated: Resources::default(),
        n_running: 0,
        nodes_in_use: 0,
        m: Metrics {
            nodes: nodes.len(),
            tasks: tasks.len(),
            ..Metrics::default()
        },
        nodes,
    };
    r.m.start_time = tasks.iter().map(|t| t.arrival).min().unwrap_or(0);
    let mut series = Vec::new();

    while let Some(&Reverse((now, _, _))) = r.events.peek() {
        let mut freed = false;
        while let Some(&Reverse((t, kind, i))) = r.events.peek() {
            if t != now {
                break;
            }
            r.events.pop();
            match kind {
                Kind::Finish => freed |= r.finish(i),
                Kind::Arrival => {
                    // Older waiting tasks get freed capacity before a new arrival.
                    if std::mem::take(&mut freed) {
                        r.retry(stack, now);
                    }
                    if !r.try_place(stack, i, now) {
                        if empty.iter().any(|n| stack.feasible(n, &tasks[i].task)) {
                            r.pending.push_back(i);
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
    use crate::policy::Preset;

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
        // Five arrivals; at 7 b and e retried (both fail); at 10 b placed, e fails; at 15 e.
        assert_eq!(m.decisions, 10);
    }

    #[test]
    fn percentile_nearest_rank() {
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[5], 99), 5);
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!((percentile(&v, 50), percentile(&v, 99)), (50, 99));
    }
}
