//! The pending queue, grouped by demand so a retry round costs what it places, not what
//! waits.
//!
//! Tasks wait in one FIFO order (by the sequence number they were queued with); tasks with
//! the same demand ([`Task::same_demand`]: everything but the name) form a class. Within a
//! round of retries, a class whose task was refused stays refused: placements only take room,
//! so a same-demand task behind it would be refused too. And a class that no node that gained
//! room since the last round can take is not offered at all (see `Replay::retry`). What is
//! offered goes oldest first across the classes, so placements happen in exactly the order a
//! plain FIFO scan would make them.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::policy::Task;
use crate::trace::TaskSpec;

struct Class {
    /// A task of the class (its demand is the class's).
    rep: usize,
    /// `(sequence number, task)`, oldest first.
    queue: VecDeque<(u64, usize)>,
    /// Tasks queued without having been refused (evicted ones): the class must be offered.
    unchecked: usize,
}

#[derive(Default)]
pub(crate) struct Pending {
    classes: Vec<Class>,
    len: usize,
    next_seq: u64,
}

impl Pending {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Queues task `i` at the back. `unchecked`: it was not refused by every node just now
    /// (an evicted task), so the next round offers it whatever gained room.
    pub(crate) fn push(&mut self, tasks: &[TaskSpec], i: usize, unchecked: bool) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.len += 1;
        let task = &tasks[i].task;
        let c = match self
            .classes
            .iter()
            .position(|c| tasks[c.rep].task.same_demand(task))
        {
            Some(c) => c,
            None => {
                self.classes.push(Class {
                    rep: i,
                    queue: VecDeque::new(),
                    unchecked: 0,
                });
                self.classes.len() - 1
            }
        };
        self.classes[c].queue.push_back((seq, i));
        if unchecked {
            self.classes[c].unchecked += 1;
        }
    }

    /// The classes worth offering this round: those `hopeful` says may fit (given a task of
    /// the class), and those holding unchecked tasks.
    pub(crate) fn select(
        &self,
        tasks: &[TaskSpec],
        mut hopeful: impl FnMut(&Task) -> bool,
    ) -> Vec<usize> {
        self.classes
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                !c.queue.is_empty() && (c.unchecked > 0 || hopeful(&tasks[c.rep].task))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Offers the tasks of the `selected` classes oldest first with `place(task, unchecked)`
    /// (`unchecked`: the class holds tasks that must be offered); a class is done for the
    /// round at its first refusal. Returns whether anything was placed.
    pub(crate) fn offer(
        &mut self,
        selected: Vec<usize>,
        mut place: impl FnMut(usize, bool) -> bool,
    ) -> bool {
        let mut heads: BinaryHeap<Reverse<(u64, usize)>> = selected
            .iter()
            .filter_map(|&c| {
                self.classes[c]
                    .queue
                    .front()
                    .map(|&(seq, _)| Reverse((seq, c)))
            })
            .collect();
        let mut placed = false;
        while let Some(Reverse((_, c))) = heads.pop() {
            let Some(&(_, i)) = self.classes[c].queue.front() else {
                continue;
            };
            if place(i, self.classes[c].unchecked > 0) {
                placed = true;
                self.classes[c].queue.pop_front();
                self.len -= 1;
                if let Some(&(seq, _)) = self.classes[c].queue.front() {
                    heads.push(Reverse((seq, c)));
                }
            }
        }
        // Every selected class was offered until refused or empty: nothing in it is unchecked.
        for c in selected {
            self.classes[c].unchecked = 0;
        }
        self.classes.retain(|c| !c.queue.is_empty());
        placed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(cpus: &[u64]) -> Vec<TaskSpec> {
        cpus.iter()
            .enumerate()
            .map(|(i, &c)| TaskSpec {
                task: Task::new(format!("t{i}"), c, 1),
                arrival: 0,
                duration: None,
            })
            .collect()
    }

    #[test]
    fn offers_go_oldest_first_and_a_refused_class_is_skipped() {
        let tasks = specs(&[2, 1, 2, 1, 3]);
        let mut p = Pending::default();
        for i in 0..5 {
            p.push(&tasks, i, false);
        }
        assert_eq!(p.len(), 5);
        // Class "3" is not hopeful; the others are. Room for one 1-CPU task only.
        let sel = p.select(&tasks, |t| t.cpu_milli < 3);
        let mut offered = Vec::new();
        let mut room = 1;
        p.offer(sel, |i, _| {
            offered.push(i);
            let c = tasks[i].task.cpu_milli;
            if c <= room {
                room -= c;
                true
            } else {
                false
            }
        });
        // t0 (2) refused: t2 is not offered. t1 (1) placed, then t3 (1) refused.
        assert_eq!(offered, vec![0, 1, 3]);
        assert_eq!(p.len(), 4);
        // Evicted (unchecked) tasks make their class selected even when not hopeful.
        let tasks2 = specs(&[2, 1, 2, 1, 3, 3]);
        p.push(&tasks2, 5, true);
        let sel = p.select(&tasks2, |_| false);
        let mut offered = Vec::new();
        p.offer(sel, |i, unchecked| {
            assert!(unchecked);
            offered.push(i);
            false
        });
        assert_eq!(offered, vec![4], "the class's oldest task is offered first");
        assert!(p.select(&tasks2, |_| false).is_empty(), "now checked");
    }
}
