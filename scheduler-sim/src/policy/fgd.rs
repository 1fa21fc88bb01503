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
//! Speed: the [`super::Stack`] calls [`Scorer::score_cached`], which memoises `delta` by
//! what it depends on — the node's free CPU and memory, the *multiset* of its per-device
//! allocations (the sum over devices and the device choice of [`pick_gpus`] are both blind
//! to device order, so the allocations are sorted into the key) and the task's shape. A
//! cluster has few node classes and a trace few task shapes, so almost every delta after the
//! first few decisions is a lookup. The memo is exact (a hit returns the bits a miss would
//! compute) and bounded ([`MEMO_MAX`] entries, then cleared), so placements do not change.
//!
//! Departures from the paper, for this increment: GPU models are not part of a shape (the
//! model filter already keeps a task off wrong models), memory is checked beside CPU, and the
//! shape list is capped for speed.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::resources::{pick_gpus, Node, Task, GPU_MILLI};
use super::score::Scorer;
use crate::rng::Rng;

/// A task shape of the target workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

/// Nodes with more devices than this are scored without the memo.
const MEMO_GPUS: usize = 8;
/// The memo is cleared when it reaches this many entries (about 100 bytes each).
pub const MEMO_MAX: usize = 1 << 18;

/// What `delta` depends on: free CPU and memory, the sorted per-device allocations, the
/// task's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct MemoKey {
    cpu_free: u64,
    mem_free: u64,
    gpus: [u32; MEMO_GPUS],
    n_gpus: u8,
    task: Shape,
}

impl MemoKey {
    fn new(node: &Node, task: &Task) -> Option<Self> {
        if node.gpus.len() > MEMO_GPUS {
            return None;
        }
        let mut gpus = [0u32; MEMO_GPUS];
        gpus[..node.gpus.len()].copy_from_slice(&node.gpus);
        gpus[..node.gpus.len()].sort_unstable();
        let free = node.free();
        Some(Self {
            cpu_free: free.cpu_milli,
            mem_free: free.memory_mib,
            gpus,
            n_gpus: node.gpus.len() as u8,
            task: Shape::of(task),
        })
    }
}

/// A small multiply-rotate hasher (the FxHash recipe) for the memo: the keys are plain
/// integers, SipHash's DoS resistance buys nothing here, and iteration order is never used.
#[derive(Default)]
struct FxHasher(u64);

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The FGD score over a target workload.
#[derive(Clone, Debug)]
pub struct FragmentationScore {
    /// Shapes with their popularity, summing to 1 (empty: every score is 0.5).
    workload: Vec<(Shape, f64)>,
    /// `delta` by [`MemoKey`]; see the module documentation.
    memo: HashMap<MemoKey, f64, BuildHasherDefault<FxHasher>>,
}

/// Two scorers are equal when their target workloads are (the memo is a cache).
impl PartialEq for FragmentationScore {
    fn eq(&self, o: &Self) -> bool {
        self.workload == o.workload
    }
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
        Self {
            workload,
            memo: HashMap::default(),
        }
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

    /// [`Self::delta`] through the memo.
    pub fn delta_cached(&mut self, node: &Node, task: &Task) -> f64 {
        if node.gpus.is_empty() {
            return 0.0;
        }
        let Some(key) = MemoKey::new(node, task) else {
            return self.delta(node, task);
        };
        if let Some(&d) = self.memo.get(&key) {
            return d;
        }
        let d = self.delta(node, task);
        if self.memo.len() >= MEMO_MAX {
            self.memo.clear();
        }
        self.memo.insert(key, d);
        d
    }
}

/// The score for a fragmentation delta: `1 / (1 + 2^(delta / 1000))`.
fn score_of(delta: f64) -> f64 {
    1.0 / (1.0 + (delta / f64::from(GPU_MILLI)).exp2())
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
        score_of(self.delta(node, task))
    }
    fn score_cached(&mut self, node: &Node, task: &Task, _: &mut Rng) -> f64 {
        score_of(self.delta_cached(node, task))
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

    /// The scorer without its memo: only `score`, so the stack's `score_cached` falls back
    /// to the uncached computation.
    struct Uncached(FragmentationScore);
    impl Scorer for Uncached {
        fn name(&self) -> &'static str {
            "fgd"
        }
        fn score(&self, node: &Node, task: &Task, rng: &mut Rng) -> f64 {
            self.0.score(node, task, rng)
        }
    }

    fn random_task(r: &mut Rng, i: usize) -> Task {
        let t = Task::new(
            format!("t{i}"),
            1000 * (1 + r.below(8) as u64),
            1024 * (1 + r.below(8) as u64),
        );
        match r.below(4) {
            0 => t,
            1 => t.with_gpus(1, 100 * (1 + r.below(9) as u32)),
            2 => t.with_gpus(1, 1000),
            _ => t.with_gpus(1 + r.below(4) as u32, 1000),
        }
    }

    #[test]
    fn memo_returns_exactly_the_uncached_delta_in_any_device_order() {
        let mut r = Rng::new(4);
        let tasks: Vec<Task> = (0..40).map(|i| random_task(&mut r, i)).collect();
        let mut fgd = FragmentationScore::from_tasks(tasks.iter(), 32);
        for k in 0..3000 {
            let mut n = Node::new("n", 16000, 16384, 1 + r.below(8) as u32, None);
            for d in 0..n.gpus.len() {
                n.gpus[d] = [0, 0, 300, 500, 900, 1000][r.below(6)];
            }
            n.allocated.cpu_milli = 1000 * r.below(16) as u64;
            n.allocated.memory_mib = 1024 * r.below(16) as u64;
            let t = &tasks[k % tasks.len()];
            let want = fgd.delta(&n, t);
            assert_eq!(fgd.delta_cached(&n, t).to_bits(), want.to_bits());
            // Same devices in another order: the same (memoised) value, exactly.
            n.gpus.reverse();
            assert_eq!(fgd.delta(&n, t).to_bits(), want.to_bits());
            assert_eq!(fgd.delta_cached(&n, t).to_bits(), want.to_bits());
        }
    }

    #[test]
    fn memoised_stack_places_exactly_like_the_uncached_one() {
        use crate::policy::filter::default_filters;
        use crate::policy::Stack;
        use crate::sim;
        use crate::trace::TaskSpec;
        let mut r = Rng::new(9);
        let nodes: Vec<Node> = (0..30)
            .map(|i| match i % 3 {
                0 => Node::new(format!("c{i}"), 32000, 65536, 0, None),
                1 => Node::new(format!("t{i}"), 16000, 32768, 2, Some("T4")),
                _ => Node::new(format!("g{i}"), 64000, 131072, 8, Some("G2")),
            })
            .collect();
        let specs: Vec<TaskSpec> = (0..600)
            .map(|i| TaskSpec {
                task: random_task(&mut r, i),
                arrival: i as u64 / 2,
                duration: Some(20 + r.below(200) as u64),
            })
            .collect();
        let target = FragmentationScore::from_tasks(specs.iter().map(|s| &s.task), 32);
        let mut memo = Stack::new(default_filters(), 0).with_scorer(1.0, Box::new(target.clone()));
        let mut plain =
            Stack::new(default_filters(), 0).with_scorer(1.0, Box::new(Uncached(target)));
        let a = sim::run(nodes.clone(), &specs, &mut memo);
        let b = sim::run(nodes, &specs, &mut plain);
        assert_eq!(a.placements, b.placements);
        assert_eq!(a.metrics, b.metrics);
        assert!(a.metrics.placements > 500, "{:?}", a.metrics);
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
