//! The [`Stack`]: filters, then weighted scorers, over a node list, giving a [`Decision`].
//!
//! Feasibility and ranking are separate stages (the structure of Nomad's scheduler, ideas
//! only). Every node is filtered; an optional sample size scores only `k` feasible nodes drawn
//! with the stack's seeded generator (k = 2 is "power of two choices", Mitzenmacher 2001).
//! With no scorers the stack is first-fit: the lowest-indexed feasible node wins and, when no
//! explanation is asked for, filtering stops there. Ties in the weighted score go to the
//! lowest node index, so a decision depends only on the nodes, the task and the seed.
//!
//! An optional *examine cap* bounds the work per decision the way kube-scheduler's
//! `percentageOfNodesToScore` does: filtering starts where the previous decision stopped
//! (round robin over the node list) and stops once the cap's number of feasible nodes is found;
//! only those are scored. [`Examine::Adaptive`] is kube-scheduler's default formula. The cap
//! does not apply to first-fit or to a chooser (they see every feasible node).
//!
//! A [`Chooser`] (an external policy program, [`super::external`]) replaces scoring and
//! sampling: the filters still run, and the chooser picks among the feasible nodes. A chooser
//! that fails leaves the stack [`Stack::failed`]: every later decision places nothing without
//! asking, and the caller stops and reports [`Stack::error`].

use serde::Serialize;

use super::external::ExternalError;
use super::filter::Filter;
use super::resources::{Node, Task};
use super::score::Scorer;
use crate::rng::Rng;

/// What happened to one node in a decision.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// The first filter that said no, and why.
    Rejected {
        filter: &'static str,
        reason: String,
    },
    /// Feasible and scored: each scorer's value and the weighted total.
    Scored {
        scores: Vec<(&'static str, f64)>,
        total: f64,
    },
    /// Feasible but not examined: sampling drew other nodes, or first-fit stopped earlier.
    NotExamined,
}

/// One node's line in an explanation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeExplanation {
    pub node: usize,
    pub name: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// The outcome of placing one task.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Decision {
    /// Index of the chosen node, `None` when no node is feasible.
    pub node: Option<usize>,
    /// The chosen node's weighted score (`None` for first-fit or no placement).
    pub score: Option<f64>,
    /// Nodes that passed every filter (for first-fit without explanation: at most 1).
    pub feasible: usize,
    /// Per node, when the stack explains; empty otherwise.
    pub explanation: Vec<NodeExplanation>,
}

/// How many feasible nodes a decision looks for before it scores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Examine {
    /// Every node is filtered and every feasible node scored.
    #[default]
    All,
    /// Stop after this many feasible nodes.
    Count(usize),
    /// kube-scheduler's default: all nodes below 100; else `max(5, 50 - nodes/125)` percent of
    /// the nodes, at least 100.
    Adaptive,
}

impl Examine {
    /// The number of feasible nodes to find among `n`; `None` for no cap.
    pub fn cap(self, n: usize) -> Option<usize> {
        match self {
            Examine::All => None,
            Examine::Count(k) => Some(k.max(1)),
            Examine::Adaptive if n < 100 => None,
            Examine::Adaptive => {
                let pct = 50usize.saturating_sub(n / 125).max(5);
                Some((n * pct / 100).max(100))
            }
        }
    }
}

impl std::str::FromStr for Examine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(Examine::All),
            "auto" | "adaptive" => Ok(Examine::Adaptive),
            n => match n.parse::<usize>() {
                Ok(k) if k > 0 => Ok(Examine::Count(k)),
                _ => Err(format!(
                    "{s:?} is not all, auto, or a number of feasible nodes > 0"
                )),
            },
        }
    }
}

/// A scorer with its weight.
pub struct Weighted {
    pub weight: f64,
    pub scorer: Box<dyn Scorer>,
}

/// Picks one node among the feasible ones, in place of the scorers: an external policy.
pub trait Chooser: Send {
    /// For reports.
    fn name(&self) -> &str;
    /// A node of `feasible` (sorted indices into `nodes`, never empty), or `None` to place
    /// nothing. Answers outside `feasible` must be errors.
    fn choose(
        &mut self,
        nodes: &[Node],
        task: &Task,
        feasible: &[usize],
    ) -> Result<Option<usize>, ExternalError>;
}

/// Filters, weighted scorers and an optional sample size, or filters and a [`Chooser`].
pub struct Stack {
    filters: Vec<Box<dyn Filter>>,
    scorers: Vec<Weighted>,
    sample: Option<usize>,
    examine: Examine,
    /// Where the next capped decision starts filtering.
    next_start: usize,
    chooser: Option<Box<dyn Chooser>>,
    error: Option<ExternalError>,
    rng: Rng,
    explain: bool,
    feasible_buf: Vec<usize>,
}

impl Stack {
    /// A stack with these filters and no scorers (first-fit), seeded with `seed`.
    pub fn new(filters: Vec<Box<dyn Filter>>, seed: u64) -> Self {
        Self {
            filters,
            scorers: Vec::new(),
            sample: None,
            examine: Examine::All,
            next_start: 0,
            chooser: None,
            error: None,
            rng: Rng::new(seed),
            explain: false,
            feasible_buf: Vec::new(),
        }
    }

    /// Adds a scorer. Weights must be positive; others are ignored.
    pub fn with_scorer(mut self, weight: f64, scorer: Box<dyn Scorer>) -> Self {
        if weight > 0.0 {
            self.scorers.push(Weighted { weight, scorer });
        }
        self
    }

    /// Scores only `k` feasible nodes drawn at random (all when fewer are feasible).
    pub fn with_sample(mut self, k: usize) -> Self {
        self.sample = Some(k.max(1));
        self
    }

    /// Caps the feasible nodes a decision looks for (see the module documentation).
    pub fn with_examine(mut self, e: Examine) -> Self {
        self.examine = e;
        self
    }

    /// The examine cap in force.
    pub fn examine(&self) -> Examine {
        self.examine
    }

    /// Lets `chooser` pick among the feasible nodes; scorers and sampling are then unused.
    pub fn with_chooser(mut self, chooser: Box<dyn Chooser>) -> Self {
        self.chooser = Some(chooser);
        self
    }

    /// The chooser's name, when the stack has one.
    pub fn chooser_name(&self) -> Option<&str> {
        self.chooser.as_deref().map(Chooser::name)
    }

    /// Whether the chooser has failed; the run should stop and report [`Self::error`].
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// The chooser's failure, if any.
    pub fn error(&self) -> Option<&ExternalError> {
        self.error.as_ref()
    }

    /// Records a per-node explanation in every decision (slower: it formats text).
    pub fn with_explain(mut self, explain: bool) -> Self {
        self.explain = explain;
        self
    }

    /// The names of the filters and `(scorer, weight)` pairs, for reports.
    pub fn describe(&self) -> (Vec<&'static str>, Vec<(&'static str, f64)>, Option<usize>) {
        (
            self.filters.iter().map(|f| f.name()).collect(),
            self.scorers
                .iter()
                .map(|w| (w.scorer.name(), w.weight))
                .collect(),
            self.sample,
        )
    }

    /// The first filter rejecting `node` for `task`, if any.
    pub fn reject(
        &self,
        node: &Node,
        task: &Task,
    ) -> Option<(&'static str, super::filter::Reason)> {
        self.filters
            .iter()
            .find_map(|f| f.check(node, task).err().map(|r| (f.name(), r)))
    }

    /// Whether `node` passes every filter for `task`.
    pub fn feasible(&self, node: &Node, task: &Task) -> bool {
        self.filters.iter().all(|f| f.check(node, task).is_ok())
    }

    /// Filters round robin from `next_start` until `cap` feasible nodes are found (sorted into
    /// `feasible`); with explanations, every node gets an entry in node order.
    fn filter_capped(
        &mut self,
        nodes: &[Node],
        task: &Task,
        cap: usize,
        feasible: &mut Vec<usize>,
        d: &mut Decision,
    ) {
        let n = nodes.len();
        if self.explain {
            d.explanation = nodes
                .iter()
                .enumerate()
                .map(|(i, node)| NodeExplanation {
                    node: i,
                    name: node.name.clone(),
                    verdict: Verdict::NotExamined,
                })
                .collect();
        }
        let start = if n == 0 { 0 } else { self.next_start % n };
        let mut examined = 0;
        // From `start` to the end, then from 0 round to `start`.
        for i in (start..n).chain(0..start) {
            if feasible.len() >= cap {
                break;
            }
            examined += 1;
            if !self.explain {
                if self.feasible(&nodes[i], task) {
                    feasible.push(i);
                }
                continue;
            }
            match self.reject(&nodes[i], task) {
                Some((filter, reason)) => {
                    d.explanation[i].verdict = Verdict::Rejected {
                        filter,
                        reason: reason.describe(&nodes[i], task),
                    };
                }
                None => feasible.push(i),
            }
        }
        self.next_start = if n == 0 { 0 } else { (start + examined) % n };
        feasible.sort_unstable();
    }

    /// Chooses a node for `task`. Does not change the nodes; the caller allocates.
    pub fn place(&mut self, nodes: &[Node], task: &Task) -> Decision {
        let mut d = Decision::default();
        if self.error.is_some() {
            return d;
        }
        let mut feasible = std::mem::take(&mut self.feasible_buf);
        feasible.clear();
        let first_fit = self.scorers.is_empty() && self.sample.is_none() && self.chooser.is_none();
        let cap = if first_fit || self.chooser.is_some() {
            None
        } else {
            self.examine.cap(nodes.len())
        };
        if let Some(cap) = cap {
            self.filter_capped(nodes, task, cap, &mut feasible, &mut d);
        } else if !self.explain {
            // The hot path: no reasons, no names.
            for (i, node) in nodes.iter().enumerate() {
                if self.feasible(node, task) {
                    feasible.push(i);
                    if first_fit {
                        break;
                    }
                }
            }
        } else {
            for (i, node) in nodes.iter().enumerate() {
                match self.reject(node, task) {
                    Some((filter, reason)) => {
                        if self.explain {
                            d.explanation.push(NodeExplanation {
                                node: i,
                                name: node.name.clone(),
                                verdict: Verdict::Rejected {
                                    filter,
                                    reason: reason.describe(node, task),
                                },
                            });
                        }
                    }
                    None => {
                        feasible.push(i);
                        if self.explain {
                            d.explanation.push(NodeExplanation {
                                node: i,
                                name: node.name.clone(),
                                verdict: Verdict::NotExamined,
                            });
                        }
                        if first_fit && !self.explain {
                            break;
                        }
                    }
                }
            }
        }
        d.feasible = feasible.len();
        if first_fit {
            d.node = feasible.first().copied();
            self.feasible_buf = feasible;
            return d;
        }
        if let Some(c) = &mut self.chooser {
            if !feasible.is_empty() {
                match c.choose(nodes, task, &feasible) {
                    Ok(n) => d.node = n.filter(|n| feasible.binary_search(n).is_ok()),
                    Err(e) => self.error = Some(e),
                }
            }
            self.feasible_buf = feasible;
            return d;
        }
        if let Some(k) = self.sample {
            if feasible.len() > k {
                // Partial Fisher-Yates: the first k entries become a uniform sample.
                for j in 0..k {
                    let r = j + self.rng.below(feasible.len() - j);
                    feasible.swap(j, r);
                }
                feasible.truncate(k);
                feasible.sort_unstable();
            }
        }
        let total_weight: f64 = self.scorers.iter().map(|w| w.weight).sum();
        let mut best: Option<(usize, f64)> = None;
        for &i in &feasible {
            let node = &nodes[i];
            let mut total = 0.0;
            let mut parts = Vec::new();
            for w in &mut self.scorers {
                let s = w
                    .scorer
                    .score_cached(node, task, &mut self.rng)
                    .clamp(0.0, 1.0);
                total += w.weight * s;
                if self.explain {
                    parts.push((w.scorer.name(), s));
                }
            }
            let total = if total_weight > 0.0 {
                total / total_weight
            } else {
                0.0
            };
            if self.explain {
                // With explanations on, every node has exactly one entry, in node order.
                if let Some(e) = d.explanation.get_mut(i) {
                    e.verdict = Verdict::Scored {
                        scores: parts,
                        total,
                    };
                }
            }
            if best.is_none_or(|(_, b)| total > b) {
                best = Some((i, total));
            }
        }
        d.node = best.map(|(i, _)| i);
        d.score = best.map(|(_, s)| s);
        self.feasible_buf = feasible;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::filter::default_filters;
    use crate::policy::score::{LeastAllocated, MostAllocated};

    fn nodes() -> Vec<Node> {
        let mut down = Node::new("down", 8000, 8192, 0, None);
        down.ready = false;
        let small = Node::new("small", 1000, 1024, 0, None);
        let mut half = Node::new("half", 4000, 4096, 0, None);
        half.allocate(&Task::new("x", 2000, 2048)).unwrap();
        let empty = Node::new("empty", 4000, 4096, 0, None);
        let twin = Node::new("twin", 4000, 4096, 0, None);
        vec![down, small, half, empty, twin]
    }

    #[test]
    fn first_fit_takes_the_lowest_feasible_index() {
        let mut s = Stack::new(default_filters(), 0);
        let d = s.place(&nodes(), &Task::new("t", 2000, 1024));
        assert_eq!(d.node, Some(2));
        assert_eq!(d.score, None);
        assert!(d.explanation.is_empty());
        assert_eq!(s.place(&nodes(), &Task::new("t", 9000, 1)).node, None);
    }

    #[test]
    fn scores_pick_the_best_and_ties_go_to_the_lowest_index() {
        let t = Task::new("t", 1000, 1024);
        let mut binpack =
            Stack::new(default_filters(), 0).with_scorer(1.0, Box::new(MostAllocated));
        assert_eq!(
            binpack.place(&nodes(), &t).node,
            Some(1),
            "small is filled completely"
        );
        let mut spread =
            Stack::new(default_filters(), 0).with_scorer(1.0, Box::new(LeastAllocated));
        let d = spread.place(&nodes(), &t);
        assert_eq!(d.node, Some(3), "empty and twin tie; the lower index wins");
        assert_eq!(d.score, Some(0.75));
        assert_eq!(d.feasible, 4);
    }

    #[test]
    fn explanation_names_the_rejecting_filter_and_each_score() {
        let mut s = Stack::new(default_filters(), 0)
            .with_scorer(3.0, Box::new(LeastAllocated))
            .with_scorer(1.0, Box::new(MostAllocated))
            .with_explain(true);
        let d = s.place(&nodes(), &Task::new("t", 2000, 1024));
        assert_eq!(d.explanation.len(), 5);
        assert_eq!(
            d.explanation[0].verdict,
            Verdict::Rejected {
                filter: "node-ready",
                reason: "node not ready".into()
            }
        );
        assert_eq!(
            d.explanation[1].verdict,
            Verdict::Rejected {
                filter: "resource-fit",
                reason: "cpu: need 2000m, free 1000m".into()
            }
        );
        // empty: utilisation (0.5, 0.25) → least 0.625, most 0.375; (3*0.625 + 0.375)/4.
        assert_eq!(
            d.explanation[3].verdict,
            Verdict::Scored {
                scores: vec![("least-allocated", 0.625), ("most-allocated", 0.375)],
                total: 0.5625
            }
        );
        assert_eq!(d.node, Some(3));
        let json = serde_json::to_string(&d.explanation[1]).unwrap();
        assert_eq!(
            json,
            r#"{"node":1,"name":"small","verdict":"rejected","filter":"resource-fit","reason":"cpu: need 2000m, free 1000m"}"#
        );
    }

    #[test]
    fn sampling_scores_only_k_nodes_and_is_seeded() {
        let t = Task::new("t", 100, 100);
        let mut picks = Vec::new();
        for seed in 0..20 {
            let mut s = Stack::new(default_filters(), seed)
                .with_scorer(1.0, Box::new(LeastAllocated))
                .with_sample(2)
                .with_explain(true);
            let d = s.place(&nodes(), &t);
            let scored = d
                .explanation
                .iter()
                .filter(|e| matches!(e.verdict, Verdict::Scored { .. }))
                .count();
            assert_eq!(scored, 2);
            let again = Stack::new(default_filters(), seed)
                .with_scorer(1.0, Box::new(LeastAllocated))
                .with_sample(2)
                .place(&nodes(), &t);
            assert_eq!(again.node, d.node, "same seed, same choice");
            picks.push(d.node);
        }
        // Across seeds, the sample must sometimes leave out both best nodes (3 and 4).
        assert!(
            picks.iter().any(|p| *p == Some(1) || *p == Some(2)),
            "{picks:?}"
        );
    }

    /// A stand-in for an external program: records what it was offered, answers from a list.
    struct Scripted {
        answers: Vec<Result<Option<usize>, ExternalError>>,
        offered: std::sync::Arc<std::sync::Mutex<Vec<Vec<usize>>>>,
    }

    impl Chooser for Scripted {
        fn name(&self) -> &str {
            "scripted"
        }
        fn choose(
            &mut self,
            _: &[Node],
            _: &Task,
            feasible: &[usize],
        ) -> Result<Option<usize>, ExternalError> {
            self.offered.lock().unwrap().push(feasible.to_vec());
            self.answers.remove(0)
        }
    }

    #[test]
    fn a_chooser_picks_among_filtered_nodes_and_a_failure_sticks() {
        let offered = std::sync::Arc::default();
        let mut s = Stack::new(default_filters(), 0)
            .with_scorer(1.0, Box::new(LeastAllocated))
            .with_chooser(Box::new(Scripted {
                answers: vec![Ok(Some(4)), Ok(None), Err(ExternalError::EmptyProgram)],
                offered: std::sync::Arc::clone(&offered),
            }));
        assert_eq!(s.chooser_name(), Some("scripted"));
        let t = Task::new("t", 2000, 1024);
        let d = s.place(&nodes(), &t);
        assert_eq!((d.node, d.feasible, d.score), (Some(4), 3, None));
        assert_eq!(s.place(&nodes(), &t).node, None);
        // No feasible node: the chooser is not asked.
        assert_eq!(s.place(&nodes(), &Task::new("big", 9000, 1)).node, None);
        assert!(!s.failed());
        assert_eq!(s.place(&nodes(), &t).node, None);
        assert_eq!(s.error(), Some(&ExternalError::EmptyProgram));
        // After a failure nothing is placed and the chooser is not asked again.
        assert_eq!(s.place(&nodes(), &t).node, None);
        assert_eq!(*offered.lock().unwrap(), vec![vec![2, 3, 4]; 3]);
    }

    #[test]
    fn an_examine_cap_filters_round_robin_and_scores_only_what_it_found() {
        let nodes: Vec<Node> = (0..10)
            .map(|i| Node::new(format!("n{i}"), 4000 + 100 * i, 4096, 0, None))
            .collect();
        let t = Task::new("t", 100, 1);
        let mut s = Stack::new(default_filters(), 0)
            .with_scorer(1.0, Box::new(LeastAllocated))
            .with_examine(Examine::Count(3))
            .with_explain(true);
        // Nodes 0..3 are found first; the largest of them (n2) wins.
        let d = s.place(&nodes, &t);
        assert_eq!((d.node, d.feasible), (Some(2), 3));
        let scored: Vec<usize> = d
            .explanation
            .iter()
            .filter(|e| matches!(e.verdict, Verdict::Scored { .. }))
            .map(|e| e.node)
            .collect();
        assert_eq!(scored, vec![0, 1, 2]);
        assert_eq!(d.explanation.len(), 10, "every node has an entry");
        // The next decision starts at n3; wrapping round from n9 to n0.
        assert_eq!(s.place(&nodes, &t).node, Some(5));
        assert_eq!(s.place(&nodes, &t).node, Some(8));
        assert_eq!(s.place(&nodes, &t).node, Some(9), "n9, n0, n1 examined");
        // A node the filters reject does not count towards the cap.
        let mut full = nodes.clone();
        full[3].ready = false;
        let mut s = Stack::new(default_filters(), 0)
            .with_scorer(1.0, Box::new(LeastAllocated))
            .with_examine(Examine::Count(3));
        s.place(&full, &t);
        let d = s.place(&full, &t);
        assert_eq!(
            (d.node, d.feasible),
            (Some(6), 3),
            "n4, n5 and n6 (n3 is down)"
        );
    }

    #[test]
    fn the_adaptive_cap_is_kube_schedulers_formula() {
        assert_eq!(Examine::Adaptive.cap(50), None);
        assert_eq!(Examine::Adaptive.cap(500), Some(230));
        assert_eq!(Examine::Adaptive.cap(5000), Some(500));
        assert_eq!(Examine::Adaptive.cap(15000), Some(750));
        assert_eq!(Examine::Adaptive.cap(150), Some(100));
        assert_eq!(Examine::All.cap(5000), None);
        assert_eq!("auto".parse(), Ok(Examine::Adaptive));
        assert_eq!("64".parse(), Ok(Examine::Count(64)));
        assert!("0".parse::<Examine>().is_err());
    }
}
