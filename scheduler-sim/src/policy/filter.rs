//! Filters: hard constraints that decide whether a node *can* take a task. A filter never
//! scores; it answers yes or a [`Reason`] that the [`super::Stack`] records for the
//! explanation. Filters are cheap and allocation-free on the hot path: a `Reason` carries
//! numbers, and text is made only when an explanation is rendered.

use std::fmt;

use super::resources::{Node, Task, GPU_MILLI};

/// Why a filter rejected a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    NotReady,
    Cpu {
        need: u64,
        free: u64,
    },
    Memory {
        need: u64,
        free: u64,
    },
    /// Fewer than `need` devices have `milli` free; `have` do.
    Gpus {
        need: u32,
        milli: u32,
        have: u32,
    },
    /// The task allows only some GPU models and the node's is not one of them.
    GpuModel,
    /// The task's constraint at this index does not match the node's labels.
    Constraint {
        index: usize,
    },
    /// `count` tasks with the task's value of the max-per-node label already run here.
    MaxPerNode {
        count: u32,
        max: u32,
    },
    /// The node's taint at this index is not tolerated by the task.
    Taint {
        index: usize,
    },
    Pids {
        need: u64,
        free: u64,
    },
    /// A host port the task publishes is held by another task on the node.
    Port(super::resources::HostPort),
}

impl Reason {
    /// Text for an explanation, naming the task's constraint or the node's model.
    pub fn describe(&self, node: &Node, task: &Task) -> String {
        match self {
            Reason::GpuModel => format!(
                "gpu model {} not in {}",
                node.gpu_model.as_deref().unwrap_or("(none)"),
                task.gpu_models.join("|")
            ),
            Reason::Constraint { index } => match task.constraints.get(*index) {
                Some(c) => format!("constraint {c} not met"),
                None => format!("constraint #{index} not met"),
            },
            Reason::Taint { index } => match node.taints.get(*index) {
                Some(t) => format!("taint {t} not tolerated"),
                None => format!("taint #{index} not tolerated"),
            },
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotReady => write!(f, "node not ready"),
            Reason::Cpu { need, free } => write!(f, "cpu: need {need}m, free {free}m"),
            Reason::Memory { need, free } => write!(f, "memory: need {need}Mi, free {free}Mi"),
            Reason::Gpus { need, milli, have } => {
                write!(
                    f,
                    "gpu: need {need} device(s) with {milli}m free, have {have}"
                )
            }
            Reason::GpuModel => write!(f, "gpu model not allowed"),
            Reason::Constraint { index } => write!(f, "constraint #{index} not met"),
            Reason::MaxPerNode { count, max } => {
                write!(f, "max-per-node: {count} already here, max {max}")
            }
            Reason::Taint { index } => write!(f, "taint #{index} not tolerated"),
            Reason::Pids { need, free } => write!(f, "pids: need {need}, free {free}"),
            Reason::Port(p) => write!(f, "port {p} is taken"),
        }
    }
}

/// A hard constraint.
pub trait Filter: Send + Sync {
    /// Short stable name, shown in explanations.
    fn name(&self) -> &'static str;
    /// `Ok` when `node` may take `task`.
    fn check(&self, node: &Node, task: &Task) -> Result<(), Reason>;
}

/// Rejects nodes that are not ready (down, draining, unreachable).
#[derive(Clone, Copy, Debug, Default)]
pub struct NodeReady;

impl Filter for NodeReady {
    fn name(&self) -> &'static str {
        "node-ready"
    }
    fn check(&self, node: &Node, _: &Task) -> Result<(), Reason> {
        if node.ready {
            Ok(())
        } else {
            Err(Reason::NotReady)
        }
    }
}

/// CPU, memory and GPU fit: enough free CPU and memory, an allowed GPU model, and enough
/// devices with the requested share free (entirely free devices for whole-GPU requests).
#[derive(Clone, Copy, Debug, Default)]
pub struct ResourceFit;

impl Filter for ResourceFit {
    fn name(&self) -> &'static str {
        "resource-fit"
    }
    fn check(&self, node: &Node, task: &Task) -> Result<(), Reason> {
        let free = node.free();
        if task.cpu_milli > free.cpu_milli {
            return Err(Reason::Cpu {
                need: task.cpu_milli,
                free: free.cpu_milli,
            });
        }
        if task.memory_mib > free.memory_mib {
            return Err(Reason::Memory {
                need: task.memory_mib,
                free: free.memory_mib,
            });
        }
        if node.capacity.pids > 0 && task.pids > free.pids {
            return Err(Reason::Pids {
                need: task.pids,
                free: free.pids,
            });
        }
        if task.num_gpu == 0 {
            return Ok(());
        }
        if !task.gpu_models.is_empty()
            && !node
                .gpu_model
                .as_ref()
                .is_some_and(|m| task.gpu_models.iter().any(|a| a == m))
        {
            return Err(Reason::GpuModel);
        }
        let milli = task.gpu_milli.min(GPU_MILLI);
        let have = if task.gpu_milli >= GPU_MILLI {
            node.gpus.iter().filter(|&&a| a == 0).count()
        } else {
            node.gpus
                .iter()
                .filter(|&&a| GPU_MILLI.saturating_sub(a) >= milli)
                .count()
        } as u32;
        if have < task.num_gpu {
            return Err(Reason::Gpus {
                need: task.num_gpu,
                milli,
                have,
            });
        }
        Ok(())
    }
}

/// Every one of the task's label constraints matches the node's labels.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConstraintMatch;

impl Filter for ConstraintMatch {
    fn name(&self) -> &'static str {
        "constraint"
    }
    fn check(&self, node: &Node, task: &Task) -> Result<(), Reason> {
        match task
            .constraints
            .iter()
            .position(|c| !c.matches(&node.labels))
        {
            Some(index) => Err(Reason::Constraint { index }),
            None => Ok(()),
        }
    }
}

/// Max-per-node / anti-affinity: fewer than `max` tasks with the task's own value of the
/// label already run on the node. A task without that label is not limited.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaxPerNodeFilter;

impl Filter for MaxPerNodeFilter {
    fn name(&self) -> &'static str {
        "max-per-node"
    }
    fn check(&self, node: &Node, task: &Task) -> Result<(), Reason> {
        let Some(limit) = &task.max_per_node else {
            return Ok(());
        };
        let Some(value) = task.labels.get(&limit.label) else {
            return Ok(());
        };
        // A BTreeMap keyed by owned pairs cannot be queried with borrowed ones; the linear
        // scan over a node's distinct labels is short in practice.
        let count = node
            .label_counts
            .iter()
            .find(|((k, v), _)| *k == limit.label && v == value)
            .map_or(0, |(_, c)| *c);
        if count >= limit.max {
            Err(Reason::MaxPerNode {
                count,
                max: limit.max,
            })
        } else {
            Ok(())
        }
    }
}

/// Host ports: none of the task's is held on the node (Kubernetes' `NodePorts`).
#[derive(Clone, Copy, Debug, Default)]
pub struct PortsFree;

impl Filter for PortsFree {
    fn name(&self) -> &'static str {
        "ports"
    }
    fn check(&self, node: &Node, task: &Task) -> Result<(), Reason> {
        match task.ports.iter().find(|p| node.ports_in_use.contains(p)) {
            Some(p) => Err(Reason::Port(*p)),
            None => Ok(()),
        }
    }
}

/// Taints: every taint of the node must be tolerated by the task.
#[derive(Clone, Copy, Debug, Default)]
pub struct TaintToleration;

impl Filter for TaintToleration {
    fn name(&self) -> &'static str {
        "taint"
    }
    fn check(&self, node: &Node, task: &Task) -> Result<(), Reason> {
        match node
            .taints
            .iter()
            .position(|t| !task.tolerations.iter().any(|tol| tol.tolerates(t)))
        {
            Some(index) => Err(Reason::Taint { index }),
            None => Ok(()),
        }
    }
}

/// The filters every preset runs, in order.
pub fn default_filters() -> Vec<Box<dyn Filter>> {
    vec![
        Box::new(NodeReady),
        Box::new(ResourceFit),
        Box::new(PortsFree),
        Box::new(ConstraintMatch),
        Box::new(TaintToleration),
        Box::new(MaxPerNodeFilter),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::constraint::Constraint;

    /// Static node list: a CPU node, a half-used T4 node, a down V100 node.
    fn nodes() -> Vec<Node> {
        let cpu = Node::new("cpu", 4000, 8192, 0, None).with_label("zone", "a");
        let mut t4 = Node::new("t4", 8000, 16384, 2, Some("T4")).with_label("zone", "b");
        t4.allocate(
            &Task::new("x", 2000, 4096)
                .with_gpus(1, 600)
                .with_label("app", "db"),
        )
        .unwrap();
        let mut v100 = Node::new("v100", 16000, 32768, 4, Some("V100"));
        v100.ready = false;
        vec![cpu, t4, v100]
    }

    fn check(f: &dyn Filter, task: &Task) -> Vec<Result<(), Reason>> {
        nodes().iter().map(|n| f.check(n, task)).collect()
    }

    #[test]
    fn node_ready() {
        assert_eq!(
            check(&NodeReady, &Task::new("t", 1, 1)),
            vec![Ok(()), Ok(()), Err(Reason::NotReady)]
        );
    }

    #[test]
    fn resource_fit_cpu_and_memory() {
        assert_eq!(
            check(&ResourceFit, &Task::new("t", 5000, 1)),
            vec![
                Err(Reason::Cpu {
                    need: 5000,
                    free: 4000
                }),
                Ok(()),
                Ok(())
            ]
        );
        assert_eq!(
            check(&ResourceFit, &Task::new("t", 1, 10000)),
            vec![
                Err(Reason::Memory {
                    need: 10000,
                    free: 8192
                }),
                Ok(()),
                Ok(())
            ]
        );
    }

    #[test]
    fn resource_fit_gpu_count_share_and_model() {
        // A 400m share fits the T4's used device (400 free) and the V100s.
        assert_eq!(
            check(&ResourceFit, &Task::new("t", 1, 1).with_gpus(1, 400)),
            vec![
                Err(Reason::Gpus {
                    need: 1,
                    milli: 400,
                    have: 0
                }),
                Ok(()),
                Ok(())
            ]
        );
        // Two whole GPUs: the T4 has only one entirely free device.
        assert_eq!(
            check(&ResourceFit, &Task::new("t", 1, 1).with_gpus(2, 1000)),
            vec![
                Err(Reason::Gpus {
                    need: 2,
                    milli: 1000,
                    have: 0
                }),
                Err(Reason::Gpus {
                    need: 2,
                    milli: 1000,
                    have: 1
                }),
                Ok(())
            ]
        );
        // Model set {V100}: the CPU node has none, the T4 is the wrong one.
        assert_eq!(
            check(
                &ResourceFit,
                &Task::new("t", 1, 1)
                    .with_gpus(1, 500)
                    .with_gpu_models(&["V100"])
            ),
            vec![Err(Reason::GpuModel), Err(Reason::GpuModel), Ok(())]
        );
        // A CPU-only task ignores the model set.
        assert_eq!(
            check(
                &ResourceFit,
                &Task::new("t", 1, 1).with_gpu_models(&["V100"])
            ),
            vec![Ok(()), Ok(()), Ok(())]
        );
    }

    #[test]
    fn constraint_match_reports_the_failing_constraint() {
        let task = Task::new("t", 1, 1)
            .with_constraint("zone exists".parse::<Constraint>().unwrap())
            .with_constraint("zone!=a".parse::<Constraint>().unwrap());
        assert_eq!(
            check(&ConstraintMatch, &task),
            vec![
                Err(Reason::Constraint { index: 1 }),
                Ok(()),
                Err(Reason::Constraint { index: 0 })
            ]
        );
        let n = &nodes()[0];
        assert_eq!(
            Reason::Constraint { index: 1 }.describe(n, &task),
            "constraint zone!=a not met"
        );
    }

    #[test]
    fn max_per_node_counts_the_same_label_value() {
        let db = Task::new("t", 1, 1)
            .with_label("app", "db")
            .with_max_per_node("app", 1);
        assert_eq!(
            check(&MaxPerNodeFilter, &db),
            vec![Ok(()), Err(Reason::MaxPerNode { count: 1, max: 1 }), Ok(())]
        );
        let web = Task::new("t", 1, 1)
            .with_label("app", "web")
            .with_max_per_node("app", 1);
        assert_eq!(check(&MaxPerNodeFilter, &web), vec![Ok(()), Ok(()), Ok(())]);
        let two = Task::new("t", 1, 1)
            .with_label("app", "db")
            .with_max_per_node("app", 2);
        assert_eq!(check(&MaxPerNodeFilter, &two), vec![Ok(()), Ok(()), Ok(())]);
    }

    #[test]
    fn taints_keep_off_tasks_that_do_not_tolerate_them() {
        let tainted = |n: Node| {
            n.with_taint("gpu=t4:NoSchedule".parse().unwrap())
                .with_taint("draining:NoSchedule".parse().unwrap())
        };
        let nodes = [
            Node::new("plain", 4000, 8192, 0, None),
            tainted(Node::new("gpu", 4000, 8192, 1, Some("T4"))),
        ];
        let run = |t: &Task| -> Vec<Result<(), Reason>> {
            nodes.iter().map(|n| TaintToleration.check(n, t)).collect()
        };
        let plain = Task::new("t", 1, 1);
        assert_eq!(run(&plain), vec![Ok(()), Err(Reason::Taint { index: 0 })]);
        let gpu_only = plain.clone().with_toleration("gpu".parse().unwrap());
        assert_eq!(
            run(&gpu_only),
            vec![Ok(()), Err(Reason::Taint { index: 1 })]
        );
        assert_eq!(
            Reason::Taint { index: 1 }.describe(&nodes[1], &gpu_only),
            "taint draining:NoSchedule not tolerated"
        );
        let both = gpu_only.with_toleration("draining:NoSchedule".parse().unwrap());
        assert_eq!(run(&both), vec![Ok(()), Ok(())]);
        let all = plain.with_toleration("*".parse().unwrap());
        assert_eq!(run(&all), vec![Ok(()), Ok(())]);
    }

    #[test]
    fn pids_count_only_where_the_node_states_a_capacity_and_ports_are_exclusive() {
        let mut counted = Node::new("counted", 4000, 8192, 0, None);
        counted.capacity.pids = 100;
        let uncounted = Node::new("uncounted", 4000, 8192, 0, None);
        let t = Task::new("t", 1, 1).with_pids(150);
        assert_eq!(
            ResourceFit.check(&counted, &t),
            Err(Reason::Pids {
                need: 150,
                free: 100
            })
        );
        assert_eq!(ResourceFit.check(&uncounted, &t), Ok(()));

        let web: crate::policy::HostPort = "8080".parse().unwrap();
        let dns: crate::policy::HostPort = "53/udp".parse().unwrap();
        let mut n = Node::new("n", 4000, 8192, 0, None);
        let first = Task::new("a", 1, 1).with_port(web);
        let a = n.allocate(&first).unwrap();
        let again = Task::new("b", 1, 1).with_port(dns).with_port(web);
        assert_eq!(PortsFree.check(&n, &again), Err(Reason::Port(web)));
        assert_eq!(
            Reason::Port(web).describe(&n, &again),
            "port 8080/tcp is taken"
        );
        // The same number over UDP is another port.
        let udp_web = Task::new("c", 1, 1).with_port("8080/udp".parse().unwrap());
        assert_eq!(PortsFree.check(&n, &udp_web), Ok(()));
        n.release(&first, &a);
        assert_eq!(PortsFree.check(&n, &again), Ok(()));
        assert!("80/sctp".parse::<crate::policy::HostPort>().is_err());
        assert!("0".parse::<crate::policy::HostPort>().is_err());
    }
}
