//! Live placement: which node of a cluster takes a new container.
//!
//! `minictl run` without `--node` asks every node of the inventory for its `NodeInfo` at once
//! (a node that does not answer within [`SURVEY_TIMEOUT`] counts as down), turns the answers
//! into [`minisim::policy::Node`]s, and lets the same policy stack `minisim` replays traces
//! with choose. Create goes to the winner; a node that refuses with `RESOURCE_EXHAUSTED`
//! (another client took the room since the survey: optimistic concurrency, no central store)
//! is set aside and the policy chooses again among the rest.

use std::future::Future;
use std::time::Duration;

use mini_proto::v1 as pb;
use minisim::policy::{Decision, Node, Resources, Stack, Task, Verdict};

use crate::client::{call_error, Client};
use crate::cluster::Member;
use crate::output::{bytes_binary, Table};

/// How long a node may take to answer before it counts as down.
pub const SURVEY_TIMEOUT: Duration = Duration::from_secs(3);

const MIB: i64 = 1 << 20;

/// Why a node gave no `NodeInfo`.
pub enum Unanswered {
    /// No answer within the survey's time.
    Timeout(Duration),
    /// The call failed: a connection or TLS failure, or an error the node sent.
    Failed(tonic::Status),
}

impl Unanswered {
    /// Down (no answer, no connection), as opposed to a node that answered with an error.
    pub fn is_down(&self, cl: &Client) -> bool {
        match self {
            Unanswered::Timeout(_) => true,
            Unanswered::Failed(s) => call_error(&cl.addr, s.clone()).transport,
        }
    }

    /// Said in a few words, without dialling again.
    pub fn describe(&self, cl: &Client) -> String {
        match self {
            Unanswered::Timeout(t) => format!("did not answer within {}s", t.as_secs()),
            Unanswered::Failed(s) => call_error(&cl.addr, s.clone()).message,
        }
    }

    /// Said fully: a refused connection is dialled again to hear the TLS reason.
    pub fn explain(self, cl: &Client) -> String {
        match self {
            Unanswered::Failed(s) => cl.explain(s).to_string(),
            t => t.describe(cl),
        }
    }
}

/// Every client's `NodeInfo`, asked at once, in the clients' order.
pub async fn ask_all(
    clients: &[Client],
    timeout: Duration,
) -> Vec<Result<pb::NodeInfo, Unanswered>> {
    futures::future::join_all(clients.iter().map(|cl| {
        let mut c = cl.node.clone();
        async move {
            match tokio::time::timeout(timeout, c.info(pb::NodeInfoRequest {})).await {
                Ok(Ok(r)) => Ok(r.into_inner()),
                Ok(Err(s)) => Err(Unanswered::Failed(s)),
                Err(_) => Err(Unanswered::Timeout(timeout)),
            }
        }
    }))
    .await
}

/// [`ask_all`], failures said in a few words: what placement needs.
pub async fn survey(clients: &[Client], timeout: Duration) -> Vec<Result<pb::NodeInfo, String>> {
    ask_all(clients, timeout)
        .await
        .into_iter()
        .zip(clients)
        .map(|(r, cl)| r.map_err(|u| u.describe(cl)))
        .collect()
}

/// The policy's view of a node: capacity and allocation as it reported them (memory in whole
/// MiB: capacity rounded down, allocation up), its labels (the inventory's, then the node's
/// own, which win, then `node.name`), the inventory's taints; not ready when it did not answer.
pub fn to_node(name: &str, member: Option<&Member>, info: &Result<pb::NodeInfo, String>) -> Node {
    let mut labels = member.map(|m| m.labels.clone()).unwrap_or_default();
    let taints = member.map(|m| m.taints.clone()).unwrap_or_default();
    let mut n = match info {
        Ok(i) => {
            let cap = i.capacity.unwrap_or_default();
            let alloc = i.allocated.unwrap_or_default();
            let req = i.requested.unwrap_or(alloc);
            let res = |r: pb::NodeResources, round_up: bool| {
                let mem = r.memory_bytes.max(0);
                let mib = mem / MIB + i64::from(round_up && mem % MIB != 0);
                Resources::new(r.cpu_millis.max(0) as u64, mib as u64, 0)
                    .with_pids(r.pids.max(0) as u64)
            };
            let capacity = res(cap, false);
            let mut n = Node::new(
                name.to_string(),
                capacity.cpu_milli,
                capacity.memory_mib,
                0,
                None,
            );
            n.capacity.pids = capacity.pids;
            n.allocated = res(alloc, true);
            n.scoring_extra = res(req, true).minus(n.allocated);
            n.tasks = i.containers_running;
            labels.extend(i.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            n
        }
        Err(_) => {
            let mut n = Node::new(name.to_string(), 0, 0, 0, None);
            n.ready = false;
            n
        }
    };
    labels
        .entry("node.name".into())
        .or_insert_with(|| name.to_string());
    n.labels.extend(labels);
    n.taints = taints;
    n
}

/// What the container asks of a node: its CPU, memory (rounded up to MiB) and pids limits,
/// its labels, and the placement flags.
pub fn task_for(name: &str, config: &pb::ContainerConfig) -> Task {
    let r = config.resources.clone().unwrap_or_default();
    let mem = r.memory_bytes.max(0);
    let mut t = Task::new(
        if name.is_empty() { "container" } else { name },
        r.cpu_millis.max(0) as u64,
        (mem / MIB + i64::from(mem % MIB != 0)) as u64,
    );
    t.pids = r.pids_limit.max(0) as u64;
    t.labels = config
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    t
}

/// Why a placement ended without a container.
#[derive(Debug)]
pub enum PlaceError {
    /// No node passed the filters; the decision explains each.
    NoNode(Decision),
    /// The chosen node failed the create for another reason than room.
    Create(usize, tonic::Status),
    /// The policy program failed.
    Policy(String),
}

/// Nodes that refused a create, with the node's reason, in the order they refused.
pub type Refusals = Vec<(usize, String)>;

/// One line per node, for `--explain`: the verdict of the policy's first decision, a node
/// that refused the create since (and why), the node that took the container, and for a
/// node that did not answer why.
pub fn explain_table(
    d: &Decision,
    nodes: &[Node],
    clients: &[Client],
    survey: &[Result<pb::NodeInfo, String>],
    refused: &Refusals,
    chosen: Option<usize>,
) -> Table {
    let mut t = Table::new(&[
        "NODE",
        "ADDRESS",
        "CPU (ALLOC/CAP)",
        "MEMORY (ALLOC/CAP)",
        "VERDICT",
        "SCORE",
        "WHY",
    ]);
    for e in &d.explanation {
        let n = &nodes[e.node];
        let picked = || -> String {
            if chosen == Some(e.node) {
                "chosen".into()
            } else {
                "feasible".into()
            }
        };
        let (verdict, score, why) =
            if let Some((_, msg)) = refused.iter().find(|(i, _)| *i == e.node) {
                ("refused".to_string(), String::new(), msg.clone())
            } else {
                match &e.verdict {
                    Verdict::Rejected { filter, reason } => match &survey[e.node] {
                        Err(down) => ("down".to_string(), String::new(), down.clone()),
                        Ok(_) => (
                            "rejected".into(),
                            String::new(),
                            format!("{reason} ({filter})"),
                        ),
                    },
                    Verdict::Scored { scores, total } => (
                        picked(),
                        format!("{total:.3}"),
                        scores
                            .iter()
                            .map(|(s, v)| format!("{s}={v:.3}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                    Verdict::NotExamined => (picked(), String::new(), String::new()),
                }
            };
        let (cpu, mem) = if survey[e.node].is_ok() {
            (
                format!("{}m/{}m", n.allocated.cpu_milli, n.capacity.cpu_milli),
                format!(
                    "{}/{}",
                    bytes_binary(n.allocated.memory_mib << 20),
                    bytes_binary(n.capacity.memory_mib << 20)
                ),
            )
        } else {
            (String::new(), String::new())
        };
        t.row(vec![
            n.name.clone(),
            clients[e.node].addr.clone(),
            cpu,
            mem,
            verdict,
            score,
            why,
        ]);
    }
    t
}

/// One line saying why no node could take the task: each node's reason, as Nomad's
/// "constraint filtered N nodes" does.
pub fn why_none(
    d: &Decision,
    survey: &[Result<pb::NodeInfo, String>],
    refused: &Refusals,
) -> String {
    let parts: Vec<String> = d
        .explanation
        .iter()
        .filter_map(|e| {
            if let Some((_, msg)) = refused.iter().find(|(i, _)| *i == e.node) {
                return Some(format!("{}: refused ({msg})", e.name));
            }
            match &e.verdict {
                Verdict::Rejected { reason, .. } => Some(match &survey[e.node] {
                    Err(down) => format!("{}: down ({down})", e.name),
                    Ok(_) => format!("{}: {reason}", e.name),
                }),
                _ => None,
            }
        })
        .collect();
    format!("no node can take this container: {}", parts.join("; "))
}

/// Chooses a node with `stack` and creates there with `create`. A node that refuses for room
/// (`RESOURCE_EXHAUSTED`: another client took it since the survey) or because it lacks the
/// image (`NOT_FOUND`: images are imported per node) is set aside, `refused` is told, and the
/// policy chooses again among the rest. Returns the first decision (for `--explain`) and the
/// node's index with the created value.
pub async fn place_and_create<T, F, Fut>(
    stack: &mut Stack,
    nodes: &mut [Node],
    task: &Task,
    mut create: F,
    mut refused: impl FnMut(usize, &tonic::Status),
) -> (Option<Decision>, Result<(usize, T), PlaceError>)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<T, tonic::Status>>,
{
    let mut first = None;
    for _ in 0..nodes.len().max(1) {
        let d = stack.place(nodes, task);
        if let Some(e) = stack.error() {
            return (first.or(Some(d)), Err(PlaceError::Policy(e.to_string())));
        }
        let Some(i) = d.node else {
            let shown = first.clone().unwrap_or_else(|| d.clone());
            return (Some(shown), Err(PlaceError::NoNode(d)));
        };
        if first.is_none() {
            first = Some(d);
        }
        match create(i).await {
            Ok(v) => return (first, Ok((i, v))),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::ResourceExhausted | tonic::Code::NotFound
                ) =>
            {
                refused(i, &s);
                nodes[i].ready = false;
            }
            Err(s) => return (first, Err(PlaceError::Create(i, s))),
        }
    }
    let d = stack.place(nodes, task);
    (first, Err(PlaceError::NoNode(d)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use minisim::policy::Preset;

    fn three() -> Vec<Node> {
        (1..=3)
            .map(|i| Node::new(format!("node{i}"), 2000, 4096, 0, None))
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_refusal_for_room_moves_on_to_the_next_best_node() {
        let mut nodes = three();
        nodes[1].allocated = Resources::new(1000, 0, 0);
        let task = Task::new("t", 500, 100);
        let mut stack = Preset::Spread.build(1, []).with_explain(true);
        let mut tried = Vec::new();
        let mut refusals = Vec::new();
        let (first, r) = place_and_create(
            &mut stack,
            &mut nodes,
            &task,
            |i| {
                tried.push(i);
                async move {
                    if i == 0 {
                        Err(tonic::Status::resource_exhausted("taken"))
                    } else {
                        Ok(format!("id-on-{i}"))
                    }
                }
            },
            |i, s| refusals.push((i, s.message().to_string())),
        )
        .await;
        // Spread prefers the empty nodes, lowest index first: node1, then (refused) node3.
        assert_eq!(tried, vec![0, 2]);
        assert_eq!(refusals, vec![(0, "taken".to_string())]);
        assert_eq!(r.unwrap(), (2, "id-on-2".to_string()));
        assert_eq!(first.unwrap().node, Some(0));
        assert!(!nodes[0].ready);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_room_anywhere_explains_every_node() {
        let mut nodes = three();
        nodes[2].ready = false;
        let task = Task::new("t", 3000, 100);
        let mut stack = Preset::Binpack.build(1, []).with_explain(true);
        let (_, r) = place_and_create(
            &mut stack,
            &mut nodes,
            &task,
            |_| async { Ok::<_, tonic::Status>(()) },
            |_, _| {},
        )
        .await;
        let Err(PlaceError::NoNode(d)) = r else {
            panic!("{r:?}")
        };
        let survey = vec![
            Ok(pb::NodeInfo::default()),
            Ok(pb::NodeInfo::default()),
            Err("connection refused".to_string()),
        ];
        assert_eq!(
            why_none(&d, &survey, &Vec::new()),
            "no node can take this container: node1: cpu: need 3000m, free 2000m; \
             node2: cpu: need 3000m, free 2000m; node3: down (connection refused)"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn every_node_refusing_ends_the_attempts() {
        let mut nodes = three();
        let task = Task::new("t", 100, 100);
        let mut stack = Preset::FirstFit.build(1, []).with_explain(true);
        let mut calls = 0;
        let (_, r) = place_and_create(
            &mut stack,
            &mut nodes,
            &task,
            |_| {
                calls += 1;
                async { Err::<(), _>(tonic::Status::resource_exhausted("full")) }
            },
            |_, _| {},
        )
        .await;
        assert_eq!(calls, 3);
        assert!(matches!(r, Err(PlaceError::NoNode(_))));
    }

    #[test]
    fn node_info_becomes_a_policy_node() {
        let info = pb::NodeInfo {
            name: "n".into(),
            labels: [("zone".to_string(), "b".to_string())].into(),
            capacity: Some(pb::NodeResources {
                cpu_millis: 2000,
                memory_bytes: (4096 << 20) + 5,
                pids: 0,
            }),
            allocated: Some(pb::NodeResources {
                cpu_millis: 500,
                memory_bytes: (64 << 20) + 1,
                pids: 0,
            }),
            requested: Some(pb::NodeResources {
                cpu_millis: 700,
                memory_bytes: 264 << 20,
                pids: 0,
            }),
            containers_running: 3,
            ..Default::default()
        };
        let member = Member {
            name: "node1".into(),
            address: "h:1".into(),
            labels: [
                ("zone".to_string(), "a".to_string()),
                ("disk".to_string(), "ssd".to_string()),
            ]
            .into(),
            taints: vec!["gpu:NoSchedule".parse().unwrap()],
        };
        let n = to_node("node1", Some(&member), &Ok(info));
        assert_eq!(n.capacity, Resources::new(2000, 4096, 0));
        assert_eq!(n.allocated, Resources::new(500, 65, 0));
        assert_eq!(n.scoring_extra, Resources::new(200, 199, 0));
        // The node's own label wins over the inventory's; node.name is added.
        assert_eq!(n.labels.get("zone").map(String::as_str), Some("b"));
        assert_eq!(n.labels.get("disk").map(String::as_str), Some("ssd"));
        assert_eq!(n.labels.get("node.name").map(String::as_str), Some("node1"));
        assert_eq!(n.taints.len(), 1);
        assert_eq!(n.tasks, 3);
        assert!(n.ready);
        let down = to_node("node2", None, &Err("refused".into()));
        assert!(!down.ready);
    }
}
