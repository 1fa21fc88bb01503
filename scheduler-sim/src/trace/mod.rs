//! Trace loaders: public cluster traces in, [`crate::policy::Node`]s and timed
//! [`TaskSpec`]s out: Alibaba OpenB ([`openb`]), Alibaba 2018 machines ([`alibaba2018`]),
//! Alibaba 2017 batch tasks ([`alibaba2017`]) and Google 2011 job, task and machine events
//! ([`google2011`]). Machine tables also give node up/down events ([`cluster`]).
//!
//! Bad input never panics. A malformed line is a [`Malformed`] with file and line number; by
//! default it is skipped and counted (the report shows the count and the first few), and with
//! [`LoadOptions::strict`] the first one is an error. A missing file or an unknown header is
//! always an error: nothing in the file could be read meaningfully.

pub mod alibaba2017;
pub mod alibaba2018;
pub mod cluster;
pub mod google2011;
mod lines;
pub mod openb;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

use crate::policy::Task;

/// A task with its arrival time and how long it runs once placed (seconds of trace time).
#[derive(Clone, Debug, PartialEq)]
pub struct TaskSpec {
    pub task: Task,
    pub arrival: u64,
    /// `None`: runs until the end of the simulation.
    pub duration: Option<u64>,
}

/// How strictly to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Fail on the first malformed line instead of skipping it.
    pub strict: bool,
}

/// One malformed line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Malformed {
    pub path: PathBuf,
    /// 1-based, counting the header.
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
    }
}

/// What a loader read, with the lines it skipped.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded<T> {
    pub items: Vec<T>,
    pub malformed: Vec<Malformed>,
}

/// Errors from the loaders.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("failed to read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: unexpected header {found:?}, expected {expected}", path.display())]
    Header {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("malformed trace line {0}")]
    Malformed(Malformed),
}

/// A trace format name, as `--trace` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceFormat {
    /// Alibaba cluster-trace-gpu-v2023 ("OpenB"): node list + pod list CSVs.
    Openb,
    /// Alibaba cluster-trace-v2018 `machine_meta` (nodes and their up/down events).
    Alibaba2018,
    /// Alibaba cluster-trace-v2017 `batch_task` (tasks).
    Alibaba2017,
    /// Google clusterdata-2011 `job_events` (jobs, with a default size each).
    Google2011Jobs,
    /// Google clusterdata-2011 `task_events` (tasks).
    Google2011Tasks,
    /// Google clusterdata-2011 `machine_events` (nodes and their up/down events).
    Google2011Machines,
}

impl TraceFormat {
    pub const ALL: [TraceFormat; 6] = [
        TraceFormat::Openb,
        TraceFormat::Alibaba2018,
        TraceFormat::Alibaba2017,
        TraceFormat::Google2011Jobs,
        TraceFormat::Google2011Tasks,
        TraceFormat::Google2011Machines,
    ];
    pub fn name(self) -> &'static str {
        match self {
            TraceFormat::Openb => "openb",
            TraceFormat::Alibaba2018 => "alibaba2018",
            TraceFormat::Alibaba2017 => "alibaba2017",
            TraceFormat::Google2011Jobs => "google2011-jobs",
            TraceFormat::Google2011Tasks => "google2011-tasks",
            TraceFormat::Google2011Machines => "google2011-machines",
        }
    }

    /// Whether files of this format list nodes (a cluster) or tasks (a workload).
    pub fn has_nodes(self) -> bool {
        matches!(
            self,
            TraceFormat::Openb | TraceFormat::Alibaba2018 | TraceFormat::Google2011Machines
        )
    }

    pub fn has_tasks(self) -> bool {
        matches!(
            self,
            TraceFormat::Openb
                | TraceFormat::Alibaba2017
                | TraceFormat::Google2011Jobs
                | TraceFormat::Google2011Tasks
        )
    }
}

impl fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown trace format name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown trace format {name:?} (known: {})", TraceFormat::ALL.map(TraceFormat::name).join(", "))]
pub struct UnknownTrace {
    pub name: String,
}

impl FromStr for TraceFormat {
    type Err = UnknownTrace;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TraceFormat::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownTrace {
                name: s.to_string(),
            })
    }
}
