//! What the machine-table loaders produce: nodes plus a timeline of nodes going down and up,
//! for replaying a trace's machine failures and additions.

use crate::policy::Node;

use super::Loaded;

/// A node changing state at a point in trace time (seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEvent {
    pub time: u64,
    /// The node's name ([`Node::name`]).
    pub node: String,
    /// `true`: the node becomes usable; `false`: it goes down (its tasks are lost).
    pub up: bool,
}

/// Nodes with their state changes.
///
/// Each node's [`Node::ready`] is its state at time 0; `events` (sorted by time, stable in
/// file order) only list changes from there, so a node that the trace adds later starts not
/// ready and has an `up` event at the time it appears. A simulator that ignores `events`
/// should treat every node as ready.
#[derive(Clone, Debug, PartialEq)]
pub struct Cluster {
    pub nodes: Loaded<Node>,
    pub events: Vec<NodeEvent>,
}

/// Builds the event list from per-node `(time, up)` observations in time order: the state at
/// time 0 goes into `ready`, later changes become events. A node first seen after 0 starts
/// down.
pub(crate) fn timeline(
    node: &str,
    observations: &[(u64, bool)],
    events: &mut Vec<NodeEvent>,
) -> bool {
    let mut state: Option<bool> = None;
    let mut ready = false;
    for &(time, up) in observations {
        match state {
            None if time == 0 => ready = up,
            None => {
                ready = false;
                if up {
                    events.push(NodeEvent {
                        time,
                        node: node.to_string(),
                        up,
                    });
                }
            }
            Some(s) if s != up => events.push(NodeEvent {
                time,
                node: node.to_string(),
                up,
            }),
            Some(_) => {}
        }
        state = Some(up);
    }
    ready
}
