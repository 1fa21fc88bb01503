//! Named policies: the stacks `minisim --policy NAME` and `minictl --scheduler NAME` build.
//! Every preset runs [`super::filter::default_filters`]; they differ in scoring:
//!
//! | name | scoring |
//! |---|---|
//! | first-fit | none: the lowest-indexed feasible node |
//! | binpack | most-allocated |
//! | spread | least-allocated |
//! | balanced | balanced allocation |
//! | dot-product | Tetris alignment |
//! | fgd | GPU fragmentation delta (needs the target workload) |
//! | random | a uniform random feasible node |
//! | p2c | two random feasible nodes, the less allocated wins |
//!
//! A [`Policy`] is a preset or an external program (`exec:PROGRAM`, see [`super::external`]):
//! the built-in filters, then the program picks among the feasible nodes.

use std::fmt;
use std::str::FromStr;

use super::external::{ExecSpec, ExternalError, ExternalPolicy, EXEC_PREFIX};
use super::fgd::FragmentationScore;
use super::filter::default_filters;
use super::resources::Task;
use super::score::{BalancedAllocation, DotProduct, LeastAllocated, MostAllocated, RandomScore};
use super::stack::Stack;

/// The FGD preset's cap on target-workload shapes (see [`FragmentationScore::from_tasks`]).
pub const FGD_MAX_SHAPES: usize = 32;

/// A named policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Preset {
    FirstFit,
    Binpack,
    Spread,
    Balanced,
    DotProduct,
    Fgd,
    Random,
    P2c,
}

impl Preset {
    pub const ALL: [Preset; 8] = [
        Preset::FirstFit,
        Preset::Binpack,
        Preset::Spread,
        Preset::Balanced,
        Preset::DotProduct,
        Preset::Fgd,
        Preset::Random,
        Preset::P2c,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Preset::FirstFit => "first-fit",
            Preset::Binpack => "binpack",
            Preset::Spread => "spread",
            Preset::Balanced => "balanced",
            Preset::DotProduct => "dot-product",
            Preset::Fgd => "fgd",
            Preset::Random => "random",
            Preset::P2c => "p2c",
        }
    }

    /// The stack for this preset. `workload` is the target workload FGD measures
    /// fragmentation against (the other presets ignore it).
    pub fn build<'a>(self, seed: u64, workload: impl IntoIterator<Item = &'a Task>) -> Stack {
        let s = Stack::new(default_filters(), seed);
        match self {
            Preset::FirstFit => s,
            Preset::Binpack => s.with_scorer(1.0, Box::new(MostAllocated)),
            Preset::Spread => s.with_scorer(1.0, Box::new(LeastAllocated)),
            Preset::Balanced => s.with_scorer(1.0, Box::new(BalancedAllocation)),
            Preset::DotProduct => s.with_scorer(1.0, Box::new(DotProduct)),
            Preset::Fgd => s.with_scorer(
                1.0,
                Box::new(FragmentationScore::from_tasks(workload, FGD_MAX_SHAPES)),
            ),
            Preset::Random => s.with_scorer(1.0, Box::new(RandomScore)),
            Preset::P2c => s.with_scorer(1.0, Box::new(LeastAllocated)).with_sample(2),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown policy name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown policy {name:?} (known: {})", Preset::ALL.map(Preset::name).join(", "))]
pub struct UnknownPolicy {
    pub name: String,
}

impl FromStr for Preset {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Preset::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPolicy {
                name: s.to_string(),
            })
    }
}

/// What `--policy` names: a preset, or an external program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    Preset(Preset),
    Exec(ExecSpec),
}

impl Policy {
    /// The name in reports and tables: the preset's, or the program's file name.
    pub fn name(&self) -> &str {
        match self {
            Policy::Preset(p) => p.name(),
            Policy::Exec(e) => e.name(),
        }
    }

    /// The stack; for `exec:` this starts the program (and sends it `seed`).
    pub fn build<'a>(
        &self,
        seed: u64,
        workload: impl IntoIterator<Item = &'a Task>,
    ) -> Result<Stack, ExternalError> {
        match self {
            Policy::Preset(p) => Ok(p.build(seed, workload)),
            Policy::Exec(e) => {
                let program = ExternalPolicy::start(e, seed)?;
                Ok(Stack::new(default_filters(), seed).with_chooser(Box::new(program)))
            }
        }
    }

    /// Sets the per-decision timeout of an external program (presets ignore it).
    pub fn with_timeout(self, timeout: std::time::Duration) -> Self {
        match self {
            Policy::Exec(e) => Policy::Exec(e.with_timeout(timeout)),
            p => p,
        }
    }
}

impl From<Preset> for Policy {
    fn from(p: Preset) -> Self {
        Policy::Preset(p)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Preset(p) => p.fmt(f),
            Policy::Exec(e) => e.fmt(f),
        }
    }
}

/// A `--policy` value that names no policy.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyParseError {
    #[error("{0}, or exec:PROGRAM")]
    Unknown(UnknownPolicy),
    #[error(transparent)]
    Exec(ExternalError),
}

impl FromStr for Policy {
    type Err = PolicyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix(EXEC_PREFIX) {
            Some(program) => ExecSpec::parse(program)
                .map(Policy::Exec)
                .map_err(PolicyParseError::Exec),
            None => s
                .parse::<Preset>()
                .map(Policy::Preset)
                .map_err(PolicyParseError::Unknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_are_presets_or_programs() {
        assert_eq!("fgd".parse::<Policy>(), Ok(Policy::Preset(Preset::Fgd)));
        let p = "exec:./examples/policies/most_free_gpu.py -v"
            .parse::<Policy>()
            .unwrap();
        assert_eq!(p.name(), "most_free_gpu.py");
        assert_eq!(
            p.to_string(),
            "exec:./examples/policies/most_free_gpu.py -v"
        );
        assert!(matches!(&p, Policy::Exec(e) if e.argv.len() == 2));
        assert_eq!(
            "exec:".parse::<Policy>().unwrap_err().to_string(),
            "exec: policy needs a program, as in exec:./policy.py"
        );
        assert!("best"
            .parse::<Policy>()
            .unwrap_err()
            .to_string()
            .ends_with("p2c), or exec:PROGRAM"));
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_known_ones() {
        for p in Preset::ALL {
            assert_eq!(p.name().parse::<Preset>(), Ok(p));
        }
        let e = "best".parse::<Preset>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown policy \"best\" (known: first-fit, binpack, spread, balanced, dot-product, fgd, random, p2c)"
        );
    }
}
