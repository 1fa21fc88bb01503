//! Scorers: soft preferences that rank nodes the filters accepted. A scorer returns a value
//! in [0, 1] (higher is better) and never rejects a node. The [`super::Stack`] combines them
//! with weights. Utilisation-based scorers look at the dimensions the node has (CPU and
//! memory always, GPU when the node has devices), each as a fraction of the node's capacity.
//!
//! - [`LeastAllocated`] (spread) and [`MostAllocated`] (binpack) are Kubernetes'
//!   `NodeResourcesFit` strategies of the same names, on utilisation *after* placement.
//! - [`BalancedAllocation`] is Kubernetes' `NodeResourcesBalancedAllocation`: one minus the
//!   standard deviation of the per-dimension utilisations after placement.
//! - [`DotProduct`] is the alignment score of Tetris (Grandl et al., SIGCOMM'14).
//! - [`RandomScore`] draws from the stack's seeded generator.
//! - [`super::fgd::FragmentationScore`] is the GPU-fragmentation score (its own module).

use super::resources::{Node, Task};
use crate::rng::Rng;

/// A soft preference.
pub trait Scorer: Send + Sync {
    /// Short stable name, shown in explanations.
    fn name(&self) -> &'static str;
    /// A value in [0, 1] for placing `task` on `node`, which passed every filter.
    fn score(&self, node: &Node, task: &Task, rng: &mut Rng) -> f64;
    /// What the [`super::Stack`] calls: exactly [`Scorer::score`]'s value, but a scorer may
    /// keep a private cache here (FGD memoises its fragmentation delta by node state). The
    /// default just calls `score`.
    fn score_cached(&mut self, node: &Node, task: &Task, rng: &mut Rng) -> f64 {
        self.score(node, task, rng)
    }
}

/// Per-dimension `(used, capacity)` of `node` if `task` were added, for the dimensions the
/// node has. Returns the array and how many entries are valid.
fn dims_after(node: &Node, task: &Task) -> ([(f64, f64); 3], usize) {
    let after = node.scoring_allocated().plus(task.request()).as_array();
    let cap = node.capacity.as_array();
    let mut out = [(0.0, 0.0); 3];
    let mut n = 0;
    for d in 0..3 {
        if cap[d] > 0 {
            out[n] = (after[d] as f64, cap[d] as f64);
            n += 1;
        }
    }
    (out, n)
}

/// Mean utilisation after placement, each dimension clamped to [0, 1].
fn mean_util_after(node: &Node, task: &Task) -> f64 {
    let (d, n) = dims_after(node, task);
    if n == 0 {
        return 0.0;
    }
    d[..n]
        .iter()
        .map(|(u, c)| (u / c).clamp(0.0, 1.0))
        .sum::<f64>()
        / n as f64
}

/// Spread: prefers the node with the most room left, `mean_d(1 - used_d/cap_d)` after
/// placement.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeastAllocated;

impl Scorer for LeastAllocated {
    fn name(&self) -> &'static str {
        "least-allocated"
    }
    fn score(&self, node: &Node, task: &Task, _: &mut Rng) -> f64 {
        1.0 - mean_util_after(node, task)
    }
}

/// Binpack: prefers the fullest node, `mean_d(used_d/cap_d)` after placement.
#[derive(Clone, Copy, Debug, Default)]
pub struct MostAllocated;

impl Scorer for MostAllocated {
    fn name(&self) -> &'static str {
        "most-allocated"
    }
    fn score(&self, node: &Node, task: &Task, _: &mut Rng) -> f64 {
        mean_util_after(node, task)
    }
}

/// Balanced allocation: `1 - stddev_d(used_d/cap_d)` after placement (population standard
/// deviation; utilisations lie in [0, 1] so the result is in [0.5, 1]).
#[derive(Clone, Copy, Debug, Default)]
pub struct BalancedAllocation;

impl Scorer for BalancedAllocation {
    fn name(&self) -> &'static str {
        "balanced"
    }
    fn score(&self, node: &Node, task: &Task, _: &mut Rng) -> f64 {
        let (d, n) = dims_after(node, task);
        if n == 0 {
            return 0.0;
        }
        let u: Vec<f64> = d[..n]
            .iter()
            .map(|(u, c)| (u / c).clamp(0.0, 1.0))
            .collect();
        let mean = u.iter().sum::<f64>() / n as f64;
        let var = u.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        1.0 - var.sqrt()
    }
}

/// Tetris alignment: the dot product of the task's demand and the node's free resources,
/// both normalised by the node's capacity, divided by the number of dimensions:
/// `sum_d (req_d/cap_d) * (free_d/cap_d) / n`. A feasible task has `req_d <= free_d <= cap_d`,
/// so the value is in [0, 1]; large tasks on nodes with matching room score highest.
#[derive(Clone, Copy, Debug, Default)]
pub struct DotProduct;

impl Scorer for DotProduct {
    fn name(&self) -> &'static str {
        "dot-product"
    }
    fn score(&self, node: &Node, task: &Task, _: &mut Rng) -> f64 {
        let req = task.request().as_array();
        let free = node.capacity.minus(node.scoring_allocated()).as_array();
        let cap = node.capacity.as_array();
        let (mut sum, mut n) = (0.0, 0);
        for d in 0..3 {
            if cap[d] > 0 {
                let c = cap[d] as f64;
                sum += (req[d] as f64 / c).min(1.0) * (free[d] as f64 / c).min(1.0);
                n += 1;
            }
        }
        if n == 0 {
            0.0
        } else {
            sum / f64::from(n)
        }
    }
}

/// A uniform draw from the stack's seeded generator: with no other scorer, a random
/// feasible node.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomScore;

impl Scorer for RandomScore {
    fn name(&self) -> &'static str {
        "random"
    }
    fn score(&self, _: &Node, _: &Task, rng: &mut Rng) -> f64 {
        rng.next_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Resources;

    /// Static node list: an empty CPU node, a CPU node with 3000m/4096Mi of 4000m/8192Mi
    /// used, and a GPU node with one of two devices taken.
    fn nodes() -> Vec<Node> {
        let a = Node::new("a", 4000, 8192, 0, None);
        let mut b = Node::new("b", 4000, 8192, 0, None);
        b.allocate(&Task::new("x", 3000, 4096)).unwrap();
        let mut c = Node::new("c", 8000, 16384, 2, Some("T4"));
        c.allocate(&Task::new("y", 0, 0).with_gpus(1, 1000))
            .unwrap();
        vec![a, b, c]
    }

    fn scores(s: &dyn Scorer, task: &Task) -> Vec<f64> {
        let mut rng = Rng::new(7);
        nodes().iter().map(|n| s.score(n, task, &mut rng)).collect()
    }

    const T: f64 = 1e-12;

    fn assert_close(got: Vec<f64>, want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < T, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn least_allocated() {
        // task 1000m/2048Mi. a: (0.25, 0.25) → 0.75. b: (1.0, 0.75) → 0.125.
        // c: cpu 1/8, mem 1/8, gpu 1/2 → 1 - 0.25 = 0.75.
        assert_close(
            scores(&LeastAllocated, &Task::new("t", 1000, 2048)),
            &[0.75, 0.125, 0.75],
        );
    }

    #[test]
    fn most_allocated() {
        assert_close(
            scores(&MostAllocated, &Task::new("t", 1000, 2048)),
            &[0.25, 0.875, 0.25],
        );
    }

    #[test]
    fn balanced_allocation() {
        // a: (0.25, 0.25) → 1. b: (1.0, 0.75) → std 0.125 → 0.875.
        // c: (0.125, 0.125, 0.5): mean 0.25, var (2*0.015625 + 0.0625)/3 = 0.03125.
        let c = 1.0 - 0.03125f64.sqrt();
        assert_close(
            scores(&BalancedAllocation, &Task::new("t", 1000, 2048)),
            &[1.0, 0.875, c],
        );
    }

    #[test]
    fn dot_product() {
        // a: (0.25*1 + 0.25*1)/2 = 0.25. b: (0.25*0.25 + 0.25*0.5)/2 = 0.09375.
        // c: task 1000m/2048Mi/500m GPU: (0.125*1 + 0.125*1 + 0.25*0.5)/3 = 0.125.
        let t = Task::new("t", 1000, 2048).with_gpus(1, 500);
        let got = scores(&DotProduct, &t);
        assert!((got[2] - 0.125).abs() < T, "{got:?}");
        assert_close(
            scores(&DotProduct, &Task::new("t", 1000, 2048))[..2].to_vec(),
            &[0.25, 0.09375],
        );
    }

    #[test]
    fn random_is_seeded() {
        let mut r = Rng::new(7);
        let want = [r.next_f64(), r.next_f64(), r.next_f64()];
        assert_close(scores(&RandomScore, &Task::new("t", 1, 1)), &want);
    }

    #[test]
    fn all_scores_in_unit_interval() {
        let s: [&dyn Scorer; 5] = [
            &LeastAllocated,
            &MostAllocated,
            &BalancedAllocation,
            &DotProduct,
            &RandomScore,
        ];
        for sc in s {
            for v in scores(sc, &Task::new("t", 1000, 2048).with_gpus(1, 700)) {
                assert!((0.0..=1.0).contains(&v), "{} gave {v}", sc.name());
            }
        }
    }

    #[test]
    fn scoring_extra_counts_for_utilisation_scorers_only() {
        // Two empty nodes; one runs containers without limits, reported as scoring extra.
        let a = Node::new("a", 4000, 8192, 0, None);
        let mut b = Node::new("b", 4000, 8192, 0, None);
        b.scoring_extra = Resources::new(1000, 2048, 0);
        let t = Task::new("t", 0, 0);
        let mut rng = Rng::new(1);
        assert!(LeastAllocated.score(&a, &t, &mut rng) > LeastAllocated.score(&b, &t, &mut rng));
        assert!(MostAllocated.score(&b, &t, &mut rng) > MostAllocated.score(&a, &t, &mut rng));
        let big = Task::new("t", 1000, 2048);
        assert!(DotProduct.score(&a, &big, &mut rng) > DotProduct.score(&b, &big, &mut rng));
        // Filtering still sees all of b's capacity free.
        assert_eq!(b.free(), Resources::new(4000, 8192, 0));
    }
}
