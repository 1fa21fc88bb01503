//! minisim: mini's placement policies and a trace-driven cluster simulator.
//!
//! - [`policy`] is the pure scheduling library shared with `minictl`: resource vectors, nodes
//!   and tasks, filters (hard constraints), scorers (soft preferences in [0, 1]) and the
//!   [`policy::Stack`] that combines them into a [`policy::Decision`] with an explanation.
//!   It does no I/O, reads no clock and draws randomness only from a seeded [`rng::Rng`].
//! - [`trace`] turns public cluster traces (today: Alibaba OpenB, Weng et al., ATC'23) into
//!   nodes and timed tasks, reporting malformed lines with file and line number.
//! - [`sim`] replays timed tasks through a policy on a virtual clock and measures the result.
//! - [`synth`] generates seeded synthetic clusters and Poisson workloads.
//! - [`report`] writes a run's report, time series, timings and plots ([`plot`]) to disk and
//!   renders the terminal tables; it is the only module here besides [`trace`] that touches files.
//!
//! The split follows Nomad's scheduler design (ideas only): feasibility and ranking are
//! separate stages and every placement can say why each node was rejected or how it ranked.

pub mod plot;
pub mod policy;
pub mod report;
pub mod rng;
pub mod sim;
pub mod synth;
pub mod trace;
