//! The scheduling policy library, shared by `minisim` and `minictl`: pure (no I/O, no clock,
//! randomness only from a seeded [`crate::rng::Rng`]).
//!
//! [`resources`] holds the state (nodes, tasks, resource vectors), [`constraint`] the label
//! constraints, [`filter`] the hard constraints, [`score`] and [`fgd`] the soft preferences,
//! [`stack`] combines them into a [`Decision`], and [`preset`] names the classic stacks.
//!
//! The exception to purity is [`external`]: `exec:PROGRAM` policies, a line protocol to a
//! separate process (with per-decision timeouts), used through [`Stack::with_chooser`].

pub mod constraint;
pub mod external;
pub mod fgd;
pub mod filter;
pub mod preset;
pub mod resources;
pub mod score;
pub mod stack;
pub mod taint;

pub use constraint::{Constraint, Op};
pub use external::{ExecSpec, ExternalError, ExternalPolicy};
pub use filter::{Filter, Reason};
pub use preset::{Policy, PolicyParseError, Preset, UnknownPolicy};
pub use resources::{
    Allocation, HostPort, Node, Resources, Task, GPU_MILLI, NONZERO_CPU_MILLI, NONZERO_MEMORY_MIB,
};
pub use score::Scorer;
pub use stack::{Chooser, Decision, Examine, NodeExplanation, Stack, Verdict};
pub use taint::{Effect, Taint, TaintParseError, Toleration};
