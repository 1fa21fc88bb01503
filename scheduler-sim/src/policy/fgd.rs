//! A GPU-fragmentation-aware scorer after "fragmentation gradient descent" (FGD), Weng et
//! al., "Beware of Fragmentation: Scheduling GPU-Sharing Workloads with Fragmentation
//! Gradient Descent", USENIX ATC'23 — the paper that published the OpenB traces.
//!
//! What is computed, precisely. The *target workload* `M` is a list of task shapes `m`
//! (CPU, memory, GPU count, per-GPU milli share) with popularity `p_m` summing to 1, taken
//! from the trace being replayed ([`FragmentationScore::from_tasks`] keeps the most frequent
//! `max_shapes` shapes and renormalises). For a node `n` with free CPU, free memory and free
//! milli-GPU `f_g` per device `g`, the fragmentation *measured by* shape `m` is
//!
//! - `F_n(m) = sum_g f_g` (every free GPU share is a fragment for `m`) when `m` asks for no
//!   GPU, or when `m` cannot run on `n` at all: too little free CPU or memory, or fewer than
//!   `num_gpu_m` devices that can serve it;
//! - otherwise `F_n(m) = sum of f_g over devices g that cannot serve m`, where a device serves
//!   a whole-GPU shape when entirely free and a share `d_m < 1000` when `f_g >= d_m`.
//!
//! and the node's fragmentation is `F_n(M) = sum_m p_m F_n(m)` (milli-GPUs). FGD places a
//! task where the fragmentation *grows least*: `delta = F_n'(M) - F_n(M)`, with `n'` the node
//! after a what-if placement that picks devices exactly as [`super::Node::allocate`] does.
//! The score maps `delta` monotonically into (0, 1) with `1 / (1 + 2^(delta / 1000))`: a
//! delta of 0 scores 0.5, one whole GPU more fragmented ~0.33, one less ~0.67; the map is the
//! same on every node so ranking by score is ranking by `delta`, across heterogeneous nodes.
//!
//! Departures from the paper, for this increment: GPU models are not part of a shape (the
//! model filter already keeps a task off wrong models), memory is checked beside CPU, and the
//! shape list is capped for speed.

use std::collections::BTreeMap;

use super::resources::{pick_gpus, Node, Task, GPU_MILLI};
use super::score::Scorer;
use crate::rng::Rng;

/// A task shape of the target workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shape {
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub num_gpu: u32,
    pub gpu_milli: u32,
}

impl Shape {
    pub fn of(t: &Task) -> Self {
        Self {
            cpu_milli: t.cpu_milli,
            memory_mib: t.memory_mib,
            num_gpu: t.num_gpu,
            gpu_milli: t.gpu_milli,
        }
    }
}

/// The FGD score over a target workload.
#[derive(Clone, Debug, PartialEq)]
pub struct FragmentationScore {
    /// Shapes with their popularity, summing to 1 (empty: every score is 0.5).
    workload: Vec<(Shape, f64)>,
}

impl FragmentationScore {
    /// A scorer over explicit `(shape, weight)` pairs; weights are normalised to sum to 1.
    pub fn new(shapes: Vec<(Shape, f64)>) -> Self {
        let total: f64 = shapes.iter().map(|(_, w)| w.max(0.0)).sum();
        let workload = if total > 0.0 {
            shapes
                .into_iter()
                .map(|(s, w)| (s, w.max(0.0) / total))
                .collect()
        } else {
            Vec::new()
        };
        Self { workload }
    }

    /// The target workload as the `max_shapes` most frequent shapes among `tasks` (ties by
    /// shape order, so the list is deterministic).
    pub fn from_tasks<'a>(tasks: impl IntoIterator<Item = &'a Task>, max_shapes: usize) -> Self {
        let mut counts: BTreeMap<Shape, u64> = BTreeMap::new();
        for t in tasks {
            *counts.entry(Shape::of(t)).or_insert(0) += 1;
        }
        let mut v: Vec<(Shape, u64)> = counts.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(max_shapes);
        Self::new(v.into_iter().map(|(s, c)| (s, c as f64)).collect())
    }

    pub fn workload(&self) -> &[(Shape, f64)] {
        &self.workload
    }

    /// `F_n(M)` in milli-GPUs for a node with the given free CPU, memory and per-device
    /// allocation.
    pub fn fragmentation(&self, cpu_free: u64, mem_free: u64, gpu_alloc: &[u32]) -> f64 {
        let total_free: u64 = gpu_alloc
            .iter()
            .map(|&a| u64::from(GPU_MILLI.saturating_sub(a)))
            .sum();
        if total_free == 0 {
            return 0.0;
        }
        let mut f = 0.0;
        for (m, p) in &self.workload {
            f += p * frag_for_shape(cpu_free, mem_free, gpu_alloc, total_free, m) as f64;
        }
        f
    }

    /// `F_n(M)` of a node as it is.
    pub fn node_fragmentation(&self, node: &Node) -> f64 {
        let free = node.free();
        self.fragmentation(free.cpu_milli, free.memory_mib, &node.gpus)
    }

    /// `F_n'(M) - F_n(M)` for placing `task` on `node`.
    pub fn delta(&self, node: &Node, task: &Task) -> f64 {
        if node.gpus.is_empty() {
            return 0.0;
        }
        let free = node.free();
        let before = self.fragmentation(free.cpu_milli, free.memory_mib, &node.gpus);
        let mut after_gpus = node.gpus.clone();
        if let Some(devs) = pick_gpus(&node.gpus, task.num_gpu, task.gpu_milli) {
            for d in devs {
                after_gpus[d as usize] += task.gpu_milli;
            }
        }
        let after = self.fragmentation(
            free.cpu_milli.saturating_sub(task.cpu_milli),
            free.memory_mib.saturating_sub(task.memory_mib),
            &after_gpus,
        );
        after - before
    }
}

fn frag_for_shape(
    cpu_free: u64,
    mem_free: u64,
    gpu_alloc: &[u32],
    total_free: u64,
    m: &Shape,
) -> u64 {
    if m.num_gpu == 0 || m.cpu_milli > cpu_free || m.memory_mib > mem_free {
        return total_free;
    }
    let serves = |a: u32| {
        if m.gpu_milli >= GPU_MILLI {
            a == 0
        } else {
            GPU_MILLI.saturating_sub(a) >= m.gpu_milli
        }
    };
    let (mut serving, mut unusable) = (0u32, 0u64);
    for &a in gpu_alloc {
        if serves(a) {
            serving += 1;
        } else {
            unusable += u64::from(GPU_MILLI.saturating_sub(a));
        }
    }
    if serving < m.num_gpu {
        total_free
    } else {
        unusable
    }
}

impl Scorer for FragmentationScore {
    fn name(&self) -> &'static str {
        "fgd"
    }
    fn score(&self, node: &Node, task: &Task, _: &mut Rng) -> f64 {
        let delta = self.delta(node, task);
        1.0 / (1.0 + (delta / f64::from(GPU_MILLI)).exp2())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(num_gpu: u32, gpu_milli: u32) -> Shape {
        Shape {
            cpu_milli: 1000,
            memory_mib: 1024,
            num_gpu,
            gpu_milli,
        }
    }

    #[test]
    fn fragmentation_per_shape_cases() {
        // Devices: 300m used (700 free), free, 900m used (100 free). Total free 1800.
        let g = [300, 0, 900];
        let one = |m: Shape| FragmentationScore::new(vec![(m, 1.0)]).fragmentation(8000, 8192, &g);
        assert_eq!(one(shape(0, 0)), 1800.0, "a CPU-only shape can use no GPU");
        assert_eq!(
            one(shape(1, 500)),
            100.0,
            "only the 100m remainder cannot take 500m"
        );
        assert_eq!(
            one(shape(1, 1000)),
            800.0,
            "partly used devices are fragments for whole GPUs"
        );
        assert_eq!(
            one(shape(2, 1000)),
            1800.0,
            "two whole GPUs cannot run here at all"
        );
        let big_cpu = Shape {
            cpu_milli: 9000,
            ..shape(1, 500)
        };
        assert_eq!(
            one(big_cpu),
            1800.0,
            "not enough CPU: everything free is a fragment"
        );
        // Mixed workload 1:3 → 0.25*100 + 0.75*800.
        let mix = FragmentationScore::new(vec![(shape(1, 500), 1.0), (shape(1, 1000), 3.0)]);
        assert_eq!(mix.fragmentation(8000, 8192, &g), 625.0);
    }

    #[test]
    fn delta_and_score_prefer_filling_a_fragment() {
        let fgd = FragmentationScore::new(vec![(shape(1, 1000), 1.0)]);
        // Node a: one device half used, one free. Node b: two free devices.
        let mut a = Node::new("a", 8000, 8192, 2, None);
        a.gpus = vec![500, 0];
        a.allocated.gpu_milli = 500;
        let b = Node::new("b", 8000, 8192, 2, None);
        let t = Task::new("t", 1000, 1024).with_gpus(1, 500);
        // On a the share fills device 0: fragments go 500 → 0. On b it breaks a whole
        // device: 0 → 500.
        assert_eq!(fgd.delta(&a, &t), -500.0);
        assert_eq!(fgd.delta(&b, &t), 500.0);
        let mut rng = Rng::new(0);
        let (sa, sb) = (fgd.score(&a, &t, &mut rng), fgd.score(&b, &t, &mut rng));
        assert!((sa - 1.0 / (1.0 + (-0.5f64).exp2())).abs() < 1e-12);
        assert!((sb - 1.0 / (1.0 + 2f64.sqrt())).abs() < 1e-12);
        assert!(sa > sb);
        // A node without GPUs is neutral.
        assert_eq!(
            fgd.score(&Node::new("c", 8000, 8192, 0, None), &t, &mut rng),
            0.5
        );
    }

    #[test]
    fn from_tasks_keeps_most_frequent_shapes() {
        let tasks = [
            Task::new("a", 1000, 1024).with_gpus(1, 500),
            Task::new("b", 1000, 1024).with_gpus(1, 500),
            Task::new("c", 1000, 1024).with_gpus(1, 1000),
            Task::new("d", 2000, 1024),
        ];
        let f = FragmentationScore::from_tasks(tasks.iter(), 2);
        assert_eq!(f.workload().len(), 2);
        assert_eq!(f.workload()[0], (shape(1, 500), 2.0 / 3.0));
        // c and d both occur once; the smaller shape (by field order) wins the tie.
        assert_eq!(f.workload()[1], (shape(1, 1000), 1.0 / 3.0));
    }
}
