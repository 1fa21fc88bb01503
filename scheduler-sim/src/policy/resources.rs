//! Resource vectors, nodes and tasks: the state every filter and scorer reads.
//!
//! A [`Resources`] vector counts CPU in millicores, memory in MiB, GPU in milli-GPUs
//! (1000 = one whole device) and processes (pids; a node with no pids capacity does not
//! count them). Host ports are not a quantity but a set: a [`Task`] asks for ports, a
//! [`Node`] holds the ports its tasks took, and two tasks never share one. GPUs are also tracked per device on a [`Node`], because a task
//! may take a *share* of one GPU (`gpu_milli` < 1000, the OpenB trace's GPU sharing) or whole
//! GPUs, and whether it fits depends on how the free share is spread over devices, not on the
//! total. A [`Task`] is a placement request; [`Node::allocate`] and [`Node::release`] are the
//! only ways node state changes, so the simulator and `minictl` account identically.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::constraint::Constraint;
use super::taint::{Taint, Toleration};

/// One whole GPU in milli-GPUs.
pub const GPU_MILLI: u32 = 1000;

/// What a running task that asked for no CPU counts as when nodes are *scored* (never when
/// they are filtered): Kubernetes' non-zero request defaults, so that spreading still spreads
/// containers started without limits. See [`Node::scoring_extra`].
pub const NONZERO_CPU_MILLI: u64 = 100;
/// The memory counterpart of [`NONZERO_CPU_MILLI`], in MiB.
pub const NONZERO_MEMORY_MIB: u64 = 200;

/// A resource vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    pub cpu_milli: u64,
    pub memory_mib: u64,
    /// Total milli-GPUs: `num_gpu * gpu_milli` for a request, `gpus * 1000` for a capacity.
    pub gpu_milli: u64,
    /// Processes. Scorers do not weigh it (as Kubernetes does not); the fit filter checks it
    /// on nodes that state a pids capacity.
    pub pids: u64,
}

impl Resources {
    pub fn new(cpu_milli: u64, memory_mib: u64, gpu_milli: u64) -> Self {
        Self {
            cpu_milli,
            memory_mib,
            gpu_milli,
            pids: 0,
        }
    }

    pub fn with_pids(mut self, pids: u64) -> Self {
        self.pids = pids;
        self
    }

    /// Component-wise sum.
    pub fn plus(self, o: Self) -> Self {
        Self {
            cpu_milli: self.cpu_milli + o.cpu_milli,
            memory_mib: self.memory_mib + o.memory_mib,
            gpu_milli: self.gpu_milli + o.gpu_milli,
            pids: self.pids + o.pids,
        }
    }

    /// Component-wise difference, saturating at zero.
    pub fn minus(self, o: Self) -> Self {
        Self {
            cpu_milli: self.cpu_milli.saturating_sub(o.cpu_milli),
            memory_mib: self.memory_mib.saturating_sub(o.memory_mib),
            gpu_milli: self.gpu_milli.saturating_sub(o.gpu_milli),
            pids: self.pids.saturating_sub(o.pids),
        }
    }

    /// The scored dimensions as `[cpu, memory, gpu]`, in that order everywhere.
    pub fn as_array(self) -> [u64; 3] {
        [self.cpu_milli, self.memory_mib, self.gpu_milli]
    }
}

/// A host port a task publishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub port: u16,
    pub udp: bool,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, if self.udp { "udp" } else { "tcp" })
    }
}

impl FromStr for HostPort {
    type Err = String;
    /// `8080`, `8080/tcp` or `53/udp`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (p, proto) = s.split_once('/').unwrap_or((s, "tcp"));
        let udp = match proto {
            "tcp" => false,
            "udp" => true,
            other => return Err(format!("port {s:?}: protocol {other:?} is not tcp or udp")),
        };
        match p.parse::<u16>() {
            Ok(port) if port > 0 => Ok(HostPort { port, udp }),
            _ => Err(format!("port {s:?}: not a port number 1-65535")),
        }
    }
}

/// At most `max` tasks carrying the same value of label `label` as this task may run on one
/// node. `max = 1` is anti-affinity with one's own kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaxPerNode {
    pub label: String,
    pub max: u32,
}

/// A placement request.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub name: String,
    pub cpu_milli: u64,
    pub memory_mib: u64,
    /// Number of GPU devices; each must have `gpu_milli` free.
    pub num_gpu: u32,
    /// Share of each GPU in milli-GPUs: 1000 takes whole (entirely free) devices, less is a
    /// share of one device (OpenB's GPU sharing).
    pub gpu_milli: u32,
    /// Allowed GPU models; empty means any model.
    pub gpu_models: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// Every constraint must match the node's labels.
    pub constraints: Vec<Constraint>,
    pub max_per_node: Option<MaxPerNode>,
    /// Taints of the node this task may ignore.
    pub tolerations: Vec<Toleration>,
    /// Processes (a pids limit); 0 asks for none.
    pub pids: u64,
    /// Host ports the task publishes: no other task on the node may hold them.
    pub ports: Vec<HostPort>,
}

impl Task {
    /// A CPU/memory task with no GPU, labels or constraints.
    pub fn new(name: impl Into<String>, cpu_milli: u64, memory_mib: u64) -> Self {
        Self {
            name: name.into(),
            cpu_milli,
            memory_mib,
            num_gpu: 0,
            gpu_milli: 0,
            gpu_models: Vec::new(),
            labels: BTreeMap::new(),
            constraints: Vec::new(),
            max_per_node: None,
            tolerations: Vec::new(),
            pids: 0,
            ports: Vec::new(),
        }
    }

    pub fn with_pids(mut self, pids: u64) -> Self {
        self.pids = pids;
        self
    }

    pub fn with_port(mut self, p: HostPort) -> Self {
        self.ports.push(p);
        self
    }

    /// Asks for `num_gpu` devices with `gpu_milli` free on each.
    pub fn with_gpus(mut self, num_gpu: u32, gpu_milli: u32) -> Self {
        self.num_gpu = num_gpu;
        self.gpu_milli = gpu_milli;
        self
    }

    pub fn with_gpu_models(mut self, models: &[&str]) -> Self {
        self.gpu_models = models.iter().map(|m| m.to_string()).collect();
        self
    }

    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn with_constraint(mut self, c: Constraint) -> Self {
        self.constraints.push(c);
        self
    }

    pub fn with_max_per_node(mut self, label: &str, max: u32) -> Self {
        self.max_per_node = Some(MaxPerNode {
            label: label.to_string(),
            max,
        });
        self
    }

    pub fn with_toleration(mut self, t: Toleration) -> Self {
        self.tolerations.push(t);
        self
    }

    /// The request as a resource vector.
    pub fn request(&self) -> Resources {
        Resources::new(
            self.cpu_milli,
            self.memory_mib,
            u64::from(self.num_gpu) * u64::from(self.gpu_milli),
        )
        .with_pids(self.pids)
    }

    /// True when everything but the name is equal: two such tasks fit the same nodes.
    pub fn same_demand(&self, o: &Task) -> bool {
        self.cpu_milli == o.cpu_milli
            && self.memory_mib == o.memory_mib
            && self.num_gpu == o.num_gpu
            && self.gpu_milli == o.gpu_milli
            && self.gpu_models == o.gpu_models
            && self.labels == o.labels
            && self.constraints == o.constraints
            && self.max_per_node == o.max_per_node
            && self.tolerations == o.tolerations
            && self.pids == o.pids
            && self.ports == o.ports
    }
}

/// What [`Node::allocate`] took, so [`Node::release`] can give back exactly that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub request: Resources,
    /// GPU device indices, each charged `gpu_milli`.
    pub gpus: Vec<u32>,
    pub gpu_milli: u32,
}

/// A machine that can run tasks.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub capacity: Resources,
    pub allocated: Resources,
    pub gpu_model: Option<String>,
    /// Allocated milli-GPUs per device (each at most [`GPU_MILLI`]).
    pub gpus: Vec<u32>,
    pub labels: BTreeMap<String, String>,
    pub ready: bool,
    /// Running tasks on this node.
    pub tasks: u32,
    /// Running tasks per `(label key, value)`, for [`MaxPerNode`].
    pub label_counts: BTreeMap<(String, String), u32>,
    /// Only tasks tolerating each of these may be placed here.
    pub taints: Vec<Taint>,
    /// Host ports held by the tasks running here.
    pub ports_in_use: BTreeSet<HostPort>,
    /// Added to `allocated` by the utilisation scorers only: what running tasks that set no
    /// limit count at [`NONZERO_CPU_MILLI`] / [`NONZERO_MEMORY_MIB`] beyond what they
    /// allocated. `minictl` fills it from a node's report; the simulator leaves it zero.
    pub scoring_extra: Resources,
}

impl Node {
    /// An empty, ready node. A GPU model, when given, is also the label `gpu.model`.
    pub fn new(
        name: impl Into<String>,
        cpu_milli: u64,
        memory_mib: u64,
        gpus: u32,
        gpu_model: Option<&str>,
    ) -> Self {
        let mut labels = BTreeMap::new();
        if let Some(m) = gpu_model {
            labels.insert("gpu.model".to_string(), m.to_string());
        }
        Self {
            name: name.into(),
            capacity: Resources::new(
                cpu_milli,
                memory_mib,
                u64::from(gpus) * u64::from(GPU_MILLI),
            ),
            allocated: Resources::default(),
            gpu_model: gpu_model.map(str::to_string),
            gpus: vec![0; gpus as usize],
            labels,
            ready: true,
            tasks: 0,
            label_counts: BTreeMap::new(),
            taints: Vec::new(),
            ports_in_use: BTreeSet::new(),
            scoring_extra: Resources::default(),
        }
    }

    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn with_taint(mut self, t: Taint) -> Self {
        self.taints.push(t);
        self
    }

    /// What the utilisation scorers count as used: `allocated` plus [`Node::scoring_extra`].
    pub fn scoring_allocated(&self) -> Resources {
        self.allocated.plus(self.scoring_extra)
    }

    /// Unallocated resources.
    pub fn free(&self) -> Resources {
        self.capacity.minus(self.allocated)
    }

    /// Free milli-GPUs of device `i`.
    pub fn gpu_free(&self, i: usize) -> u32 {
        GPU_MILLI.saturating_sub(self.gpus.get(i).copied().unwrap_or(GPU_MILLI))
    }

    /// The same node with nothing allocated.
    pub fn emptied(&self) -> Node {
        let mut n = self.clone();
        n.allocated = Resources::default();
        n.gpus.iter_mut().for_each(|g| *g = 0);
        n.tasks = 0;
        n.label_counts.clear();
        n.ports_in_use.clear();
        n.scoring_extra = Resources::default();
        n
    }

    /// Devices that would serve `task`, or `None` when too few can. Whole-GPU requests take
    /// the lowest-numbered entirely free devices; shares go best-fit (the device with the
    /// least free share that still fits, lowest index on ties) so that whole devices stay
    /// whole for later whole-GPU tasks.
    pub fn pick_gpus(&self, task: &Task) -> Option<Vec<u32>> {
        pick_gpus(&self.gpus, task.num_gpu, task.gpu_milli)
    }

    /// Charges `task` to this node. Callers run the filters first; this only refuses what
    /// would corrupt the accounting (no devices to serve the GPU request).
    pub fn allocate(&mut self, task: &Task) -> Option<Allocation> {
        let gpus = self.pick_gpus(task)?;
        for &g in &gpus {
            self.gpus[g as usize] += task.gpu_milli;
        }
        let request = task.request();
        self.allocated = self.allocated.plus(request);
        self.tasks += 1;
        for (k, v) in &task.labels {
            *self.label_counts.entry((k.clone(), v.clone())).or_insert(0) += 1;
        }
        self.ports_in_use.extend(task.ports.iter().copied());
        Some(Allocation {
            request,
            gpus,
            gpu_milli: task.gpu_milli,
        })
    }

    /// Gives back what [`Node::allocate`] took for `task`.
    pub fn release(&mut self, task: &Task, a: &Allocation) {
        for &g in &a.gpus {
            if let Some(d) = self.gpus.get_mut(g as usize) {
                *d = d.saturating_sub(a.gpu_milli);
            }
        }
        self.allocated = self.allocated.minus(a.request);
        self.tasks = self.tasks.saturating_sub(1);
        for p in &task.ports {
            self.ports_in_use.remove(p);
        }
        for (k, v) in &task.labels {
            let key = (k.clone(), v.clone());
            if let Some(c) = self.label_counts.get_mut(&key) {
                *c -= 1;
                if *c == 0 {
                    self.label_counts.remove(&key);
                }
            }
        }
    }
}

/// Device choice shared by [`Node::pick_gpus`] and the FGD scorer's what-if placement.
pub(crate) fn pick_gpus(allocated: &[u32], num_gpu: u32, gpu_milli: u32) -> Option<Vec<u32>> {
    if num_gpu == 0 {
        return Some(Vec::new());
    }
    let need = num_gpu as usize;
    let mut picked: Vec<u32> = Vec::with_capacity(need);
    if gpu_milli >= GPU_MILLI {
        picked.extend(
            allocated
                .iter()
                .enumerate()
                .filter(|(_, &a)| a == 0)
                .map(|(i, _)| i as u32)
                .take(need),
        );
    } else {
        let mut fits: Vec<(u32, u32)> = allocated
            .iter()
            .enumerate()
            .filter(|(_, &a)| GPU_MILLI.saturating_sub(a) >= gpu_milli)
            .map(|(i, &a)| (GPU_MILLI - a, i as u32))
            .collect();
        fits.sort_unstable();
        picked.extend(fits.into_iter().take(need).map(|(_, i)| i));
        picked.sort_unstable();
    }
    (picked.len() == need).then_some(picked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_and_release_round_trip() {
        let mut n = Node::new("n", 8000, 16384, 2, Some("T4"));
        let t = Task::new("t", 2000, 1024)
            .with_gpus(1, 300)
            .with_label("app", "web");
        let a = n.allocate(&t).unwrap();
        assert_eq!(a.gpus, vec![0]);
        assert_eq!(n.allocated, Resources::new(2000, 1024, 300));
        assert_eq!(n.gpus, vec![300, 0]);
        assert_eq!(n.label_counts.get(&("app".into(), "web".into())), Some(&1));
        n.release(&t, &a);
        assert_eq!(n, Node::new("n", 8000, 16384, 2, Some("T4")));
    }

    #[test]
    fn shares_go_best_fit_and_whole_gpus_need_free_devices() {
        let mut n = Node::new("n", 8000, 16384, 3, None);
        n.gpus = vec![500, 0, 800];
        // 200 fits on device 2 (200 free) best, then device 0 (500 free).
        assert_eq!(
            n.pick_gpus(&Task::new("a", 0, 0).with_gpus(1, 200)),
            Some(vec![2])
        );
        assert_eq!(
            n.pick_gpus(&Task::new("a", 0, 0).with_gpus(1, 400)),
            Some(vec![0])
        );
        assert_eq!(
            n.pick_gpus(&Task::new("a", 0, 0).with_gpus(1, 1000)),
            Some(vec![1])
        );
        assert_eq!(n.pick_gpus(&Task::new("a", 0, 0).with_gpus(2, 1000)), None);
        assert_eq!(n.pick_gpus(&Task::new("a", 0, 0)), Some(vec![]));
    }
}
