//! Synthetic workloads: a heterogeneous cluster and a Poisson stream of tasks, seeded, for
//! `minisim run --synthetic nodes=5000,tasks=50000,seed=7`.
//!
//! **Node classes** (node `i` takes the class of a seeded draw with these weights):
//!
//! | class | weight | CPU | memory | GPUs |
//! |---|---|---|---|---|
//! | `cpu-small` | 30% | 32 cores | 128 GiB | 0 |
//! | `cpu-large` | 20% | 96 cores | 384 GiB | 0 |
//! | `t4x2` | 20% | 64 cores | 256 GiB | 2 × T4 |
//! | `v100x4` | 15% | 64 cores | 512 GiB | 4 × V100 |
//! | `a100x8` | 15% | 128 cores | 1 TiB | 8 × A100 |
//!
//! **Task sizes**: CPU is one of 0.5, 1, 2, 4, 8, 16 cores with weights 15, 25, 25, 20, 10,
//! 5%; memory is CPU × 2, 4 or 8 GiB per core (equally likely). GPU demand: 55% none, 20% a
//! share of one GPU (100..900 milli-GPU in steps of 100, uniform), 15% one whole GPU, 10%
//! 2, 4 or 8 whole GPUs (50/35/15%).
//!
//! **Durations**: exponential with mean `duration` seconds (default 3600), at least 1 s.
//!
//! **Arrivals**: a Poisson process (exponential gaps) starting at 0 whose rate makes the
//! expected CPU demand in steady state `load` (default 0.7) of the cluster's CPU capacity:
//! `rate = load * cluster_cpu / (mean task CPU * duration)`. An explicit `rate=` (tasks per
//! second) overrides it.
//!
//! Every draw comes from one [`Rng`] seeded with `seed`: nodes first, then tasks in arrival
//! order, so the same spec always gives the same workload.

use std::fmt;
use std::str::FromStr;

use crate::policy::{Node, Task};
use crate::rng::Rng;
use crate::trace::TaskSpec;

/// A node class: `(name, weight %, cores, memory GiB, gpus, model)`.
pub type NodeClass = (&'static str, u32, u64, u64, u32, Option<&'static str>);

/// The node classes, see the module documentation.
pub const NODE_CLASSES: [NodeClass; 5] = [
    ("cpu-small", 30, 32, 128, 0, None),
    ("cpu-large", 20, 96, 384, 0, None),
    ("t4x2", 20, 64, 256, 2, Some("T4")),
    ("v100x4", 15, 64, 512, 4, Some("V100")),
    ("a100x8", 15, 128, 1024, 8, Some("A100")),
];

/// Task CPU sizes in millicores with weights in percent.
pub const CPU_SIZES: [(u64, u32); 6] = [
    (500, 15),
    (1000, 25),
    (2000, 25),
    (4000, 20),
    (8000, 10),
    (16000, 5),
];

/// A synthetic workload's parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct SynthSpec {
    pub nodes: usize,
    pub tasks: usize,
    pub seed: u64,
    /// Mean task duration, seconds.
    pub duration: u64,
    /// Target steady-state CPU load (share of capacity) that sets the arrival rate.
    pub load: f64,
    /// Arrival rate in tasks per second; overrides `load`.
    pub rate: Option<f64>,
}

impl Default for SynthSpec {
    fn default() -> Self {
        Self {
            nodes: 100,
            tasks: 1000,
            seed: 0,
            duration: 3600,
            load: 0.7,
            rate: None,
        }
    }
}

impl fmt::Display for SynthSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nodes={},tasks={},seed={},duration={},load={}",
            self.nodes, self.tasks, self.seed, self.duration, self.load
        )?;
        if let Some(r) = self.rate {
            write!(f, ",rate={r}")?;
        }
        Ok(())
    }
}

/// A malformed `--synthetic` spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad synthetic spec {spec:?}: {reason} (expected e.g. nodes=5000,tasks=50000,seed=7[,duration=S][,load=F][,rate=F])")]
pub struct BadSpec {
    pub spec: String,
    pub reason: String,
}

impl FromStr for SynthSpec {
    type Err = BadSpec;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: String| BadSpec {
            spec: s.to_string(),
            reason,
        };
        let mut spec = SynthSpec::default();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| bad(format!("{part:?} is not key=value")))?;
            let (k, v) = (k.trim(), v.trim());
            let int = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("{k}: {v:?} is not a whole number")))
            };
            let float = |v: &str| match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
                _ => Err(bad(format!("{k}: {v:?} is not a positive number"))),
            };
            match k {
                "nodes" => spec.nodes = int(v)? as usize,
                "tasks" => spec.tasks = int(v)? as usize,
                "seed" => spec.seed = int(v)?,
                "duration" => spec.duration = int(v)?.max(1),
                "load" => spec.load = float(v)?,
                "rate" => spec.rate = Some(float(v)?),
                _ => return Err(bad(format!("unknown key {k:?}"))),
            }
        }
        if spec.nodes == 0 {
            return Err(bad("nodes must be at least 1".into()));
        }
        Ok(spec)
    }
}

fn weighted<T: Copy>(rng: &mut Rng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.below(total as usize) as u32;
    for &(v, w) in items {
        if x < w {
            return v;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

fn exponential(rng: &mut Rng, mean: f64) -> f64 {
    -(1.0 - rng.next_f64()).ln() * mean
}

/// Mean task CPU in millicores under [`CPU_SIZES`].
pub fn mean_task_cpu() -> f64 {
    let total: u32 = CPU_SIZES.iter().map(|(_, w)| w).sum();
    CPU_SIZES
        .iter()
        .map(|&(c, w)| c as f64 * f64::from(w))
        .sum::<f64>()
        / f64::from(total)
}

/// The cluster and the tasks, sorted by arrival.
pub fn generate(spec: &SynthSpec) -> (Vec<Node>, Vec<TaskSpec>) {
    let mut rng = Rng::new(spec.seed);
    let classes: Vec<(usize, u32)> = NODE_CLASSES
        .iter()
        .enumerate()
        .map(|(i, c)| (i, c.1))
        .collect();
    let nodes: Vec<Node> = (0..spec.nodes)
        .map(|i| {
            let (name, _, cores, gib, gpus, model) = NODE_CLASSES[weighted(&mut rng, &classes)];
            Node::new(format!("{name}-{i}"), cores * 1000, gib * 1024, gpus, model)
                .with_label("class", name)
        })
        .collect();
    let cluster_cpu: u64 = nodes.iter().map(|n| n.capacity.cpu_milli).sum();
    let rate = spec.rate.unwrap_or_else(|| {
        spec.load * cluster_cpu as f64 / (mean_task_cpu() * spec.duration as f64)
    });
    let mean_gap = if rate > 0.0 { 1.0 / rate } else { 0.0 };
    let mut t = 0.0;
    let tasks = (0..spec.tasks)
        .map(|i| {
            t += exponential(&mut rng, mean_gap);
            let cpu = weighted(&mut rng, &CPU_SIZES);
            let mem = cpu * 1024 / 1000 * [2, 4, 8][rng.below(3)];
            let mut task = Task::new(format!("task-{i}"), cpu, mem);
            match weighted(&mut rng, &[(0u8, 55), (1, 20), (2, 15), (3, 10)]) {
                1 => task = task.with_gpus(1, 100 * (1 + rng.below(9) as u32)),
                2 => task = task.with_gpus(1, 1000),
                3 => task = task.with_gpus(weighted(&mut rng, &[(2, 50), (4, 35), (8, 15)]), 1000),
                _ => {}
            }
            let duration = exponential(&mut rng, spec.duration as f64).max(1.0) as u64;
            TaskSpec {
                task,
                arrival: t as u64,
                duration: Some(duration),
            }
        })
        .collect();
    (nodes, tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_and_rejects() {
        let s: SynthSpec = "nodes=50,tasks=200,seed=7".parse().unwrap();
        assert_eq!((s.nodes, s.tasks, s.seed, s.duration), (50, 200, 7, 3600));
        let s: SynthSpec = "nodes=5,rate=0.5,duration=60,load=0.9".parse().unwrap();
        assert_eq!((s.rate, s.duration, s.load), (Some(0.5), 60, 0.9));
        for bad in ["nodes", "nodes=x", "color=red", "nodes=0", "load=-1"] {
            assert!(bad.parse::<SynthSpec>().is_err(), "{bad}");
        }
        let e = "size=3".parse::<SynthSpec>().unwrap_err().to_string();
        assert!(e.contains("unknown key \"size\""), "{e}");
    }

    #[test]
    fn same_seed_same_workload_other_seed_differs() {
        let spec: SynthSpec = "nodes=20,tasks=300,seed=7".parse().unwrap();
        assert_eq!(generate(&spec), generate(&spec));
        let other = SynthSpec {
            seed: 8,
            ..spec.clone()
        };
        assert_ne!(generate(&spec).1, generate(&other).1);
    }

    #[test]
    fn shape_statistics_follow_the_documented_distributions() {
        let spec = SynthSpec {
            nodes: 2000,
            tasks: 20000,
            seed: 3,
            duration: 100,
            ..SynthSpec::default()
        };
        let (nodes, tasks) = generate(&spec);
        assert_eq!((nodes.len(), tasks.len()), (2000, 20000));
        // Node classes: shares within 3 points of the weights.
        for (name, w, ..) in NODE_CLASSES {
            let share = nodes
                .iter()
                .filter(|n| n.labels.get("class").map(String::as_str) == Some(name))
                .count() as f64
                / 2000.0;
            assert!(
                (share - f64::from(w) / 100.0).abs() < 0.03,
                "{name}: {share}"
            );
        }
        let share = |f: &dyn Fn(&Task) -> bool| {
            tasks.iter().filter(|t| f(&t.task)).count() as f64 / tasks.len() as f64
        };
        assert!((share(&|t| t.num_gpu == 0) - 0.55).abs() < 0.015);
        assert!((share(&|t| t.num_gpu == 1 && t.gpu_milli < 1000) - 0.20).abs() < 0.015);
        assert!((share(&|t| t.num_gpu > 1) - 0.10).abs() < 0.015);
        assert!(tasks
            .iter()
            .all(|t| t.task.gpu_milli <= 1000 && t.task.gpu_milli % 100 == 0));
        assert!(tasks
            .iter()
            .all(|t| CPU_SIZES.iter().any(|c| c.0 == t.task.cpu_milli)));
        // Arrivals non-decreasing; mean duration and mean gap near their targets.
        assert!(tasks.windows(2).all(|w| w[0].arrival <= w[1].arrival));
        let mean_d = tasks.iter().filter_map(|t| t.duration).sum::<u64>() as f64 / 20000.0;
        assert!((mean_d - 100.0).abs() < 5.0, "{mean_d}");
        let cpu: u64 = nodes.iter().map(|n| n.capacity.cpu_milli).sum();
        let rate = 0.7 * cpu as f64 / (mean_task_cpu() * 100.0);
        let last = tasks.last().map_or(0, |t| t.arrival) as f64;
        let observed = 20000.0 / last;
        assert!((observed / rate - 1.0).abs() < 0.05, "{observed} vs {rate}");
    }
}
