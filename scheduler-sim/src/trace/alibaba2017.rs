//! Alibaba cluster-trace-v2017 `batch_task.csv`: batch tasks with their resource requests.
//!
//! Columns: `task_create_time,task_end_time,job_id,task_id,number_of_instances,status,
//! number_of_cpus_requested_per_instance_in_the_task,
//! normalized_memory_requested_per_instance_in_the_task`. The original has no header; the
//! shared copy has one (with spaces), which is skipped. Times are seconds from the start of
//! the trace; 0 and negative times are events before it.
//!
//! [`to_task_specs`] makes tasks out of the rows:
//! - CPU: 100 = one core, so `cpus * 10` millicores. Memory is normalised to the largest
//!   machine (0–1) and scaled by [`Alibaba2017Config::machine_memory_mib`] (an assumption,
//!   default 256 GiB; the trace does not publish it).
//! - A task has `number_of_instances` identical instances. Each becomes one [`TaskSpec`]
//!   named `j{job}-t{task}-{i}`, up to [`Alibaba2017Config::max_instances_per_task`]
//!   (default 1: one TaskSpec per task, standing for its instances; the file's 80,553 tasks
//!   have 11.9 million instances).
//! - Arrival: create time minus the earliest create time in the file (so the first task
//!   arrives at 0). Duration: `end - create` when `end >= create` and `end != 0`, else none
//!   (runs to the end; `Running` tasks have end 0).
//! - Rows without a request (the `Waiting` tasks have empty CPU and memory) are left out and
//!   counted in [`Converted::without_request`]; they are not malformed.

use std::io::Read;
use std::path::Path;

use super::lines::{fraction, int, open, opt, read_records, scale, signed, Layout};
use super::{LoadOptions, Loaded, TaskSpec, TraceError};
use crate::policy::Task;

const LAYOUT: Layout = Layout {
    fields: 8,
    header: Some(
        "task_create_time,task_end_time,job_id,task_id,number_of_instances,status,\
         number_of_cpus_requested_per_instance_in_the_task,\
         normalized_memory_requested_per_instance_in_the_task",
    ),
};

/// How rows become tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alibaba2017Config {
    /// MiB that a normalised memory of 1.0 stands for.
    pub machine_memory_mib: u64,
    /// At most this many TaskSpecs per task (at least 1 is used).
    pub max_instances_per_task: u32,
}

impl Default for Alibaba2017Config {
    fn default() -> Self {
        Self {
            machine_memory_mib: 256 * 1024,
            max_instances_per_task: 1,
        }
    }
}

/// One row of `batch_task`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchTask {
    pub create_time: i64,
    pub end_time: i64,
    pub job_id: u64,
    pub task_id: u64,
    pub instances: u64,
    pub status: String,
    /// Per instance, 100 = one core; `None` when the row has no request.
    pub cpus: Option<u32>,
    /// Per instance, normalised to the largest machine (0–1).
    pub memory: Option<f64>,
}

/// Tasks made from rows, with what was left out.
#[derive(Clone, Debug, PartialEq)]
pub struct Converted {
    pub tasks: Vec<TaskSpec>,
    /// Rows without a CPU and memory request.
    pub without_request: u64,
    /// Instances beyond [`Alibaba2017Config::max_instances_per_task`].
    pub instances_capped: u64,
}

/// Reads the rows of a `batch_task` file (plain or gzip).
pub fn load_rows(path: &Path, opts: LoadOptions) -> Result<Loaded<BatchTask>, TraceError> {
    read_rows(open(path)?, path, opts)
}

/// Reads `batch_task` rows from any reader; `path` names it in messages.
pub fn read_rows(
    r: impl Read,
    path: &Path,
    opts: LoadOptions,
) -> Result<Loaded<BatchTask>, TraceError> {
    read_records(r, path, opts, &LAYOUT, parse)
}

/// Reads a `batch_task` file straight into tasks (see the module documentation).
pub fn load_tasks(
    path: &Path,
    opts: LoadOptions,
    cfg: Alibaba2017Config,
) -> Result<Loaded<TaskSpec>, TraceError> {
    let rows = load_rows(path, opts)?;
    Ok(Loaded {
        items: to_task_specs(&rows.items, cfg).tasks,
        malformed: rows.malformed,
    })
}

/// Turns rows into tasks (see the module documentation), in row order.
pub fn to_task_specs(rows: &[BatchTask], cfg: Alibaba2017Config) -> Converted {
    let origin = rows.iter().map(|r| r.create_time).min().unwrap_or(0);
    let cap = u64::from(cfg.max_instances_per_task.max(1));
    let mut out = Converted {
        tasks: Vec::new(),
        without_request: 0,
        instances_capped: 0,
    };
    for r in rows {
        let (Some(cpus), Some(memory)) = (r.cpus, r.memory) else {
            out.without_request += 1;
            continue;
        };
        let n = r.instances.min(cap);
        out.instances_capped += r.instances - n;
        let arrival = r.create_time.abs_diff(origin);
        let duration = (r.end_time != 0 && r.end_time >= r.create_time)
            .then(|| r.end_time.abs_diff(r.create_time));
        let cpu_milli = u64::from(cpus) * 10;
        let memory_mib = scale(memory, cfg.machine_memory_mib);
        for i in 0..n {
            out.tasks.push(TaskSpec {
                task: Task::new(
                    format!("j{}-t{}-{i}", r.job_id, r.task_id),
                    cpu_milli,
                    memory_mib,
                ),
                arrival,
                duration,
            });
        }
    }
    out
}

fn parse(f: &[&str]) -> Result<BatchTask, String> {
    let instances: u64 = int(f[4], "number_of_instances")?;
    if instances == 0 {
        return Err("number_of_instances: 0".to_string());
    }
    let cpus = opt(f[6], |s| {
        int::<u32>(s, "number_of_cpus_requested_per_instance")
    })?;
    if let Some(c) = cpus.filter(|&c| c > 100 * 1024) {
        return Err(format!(
            "number_of_cpus_requested_per_instance: {c} (100 = one core) is implausible"
        ));
    }
    let memory = opt(f[7], |s| {
        fraction(s, "normalized_memory_requested_per_instance", 1.0)
    })?;
    if cpus.is_some() != memory.is_some() {
        return Err("CPU and memory requests: both or neither must be given".to_string());
    }
    let create_time = signed(f[0], "task_create_time")?;
    let end_time = signed(f[1], "task_end_time")?;
    if create_time.unsigned_abs() > 1 << 40 || end_time.unsigned_abs() > 1 << 40 {
        return Err("times beyond 2^40 seconds are implausible".to_string());
    }
    Ok(BatchTask {
        create_time,
        end_time,
        job_id: int(f[2], "job_id")?,
        task_id: int(f[3], "task_id")?,
        instances,
        status: f[5].to_string(),
        cpus,
        memory,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::lines::testing::shared_traces;
    use crate::trace::TraceError;

    #[test]
    fn real_batch_task_loads_completely() {
        let Some(dir) = shared_traces("alibaba-v2017") else {
            return;
        };
        let path = dir.join("batch_task.csv");
        let strict = LoadOptions { strict: true };
        let rows = load_rows(&path, strict).unwrap();
        assert_eq!(rows.items.len(), 80_553);
        assert_eq!(
            rows.items.iter().map(|r| r.instances).sum::<u64>(),
            11_909_321
        );
        let c = to_task_specs(&rows.items, Alibaba2017Config::default());
        assert_eq!(c.without_request, 9017);
        assert_eq!(c.tasks.len(), 71_536);
        assert_eq!(c.instances_capped, 11_059_704 - 71_536);
        // The earliest create time is -1078: everything moves up by 1078 s.
        let t0 = &c.tasks[0];
        assert_eq!(
            (t0.task.name.as_str(), t0.task.cpu_milli, t0.task.memory_mib),
            ("j3-t4-0", 500, 2086)
        );
        assert_eq!((t0.arrival, t0.duration), (6459 + 1078, Some(65)));
        assert_eq!(c.tasks.iter().filter(|t| t.arrival == 0).count(), 3);
        assert_eq!(c.tasks.iter().filter(|t| t.duration.is_none()).count(), 82);
        assert_eq!(
            c.tasks.iter().map(|t| t.task.cpu_milli).sum::<u64>(),
            44_710_150
        );
        assert_eq!(
            c.tasks.iter().map(|t| t.task.memory_mib).sum::<u64>(),
            135_937_549
        );
        let ten = to_task_specs(
            &rows.items,
            Alibaba2017Config {
                max_instances_per_task: 10,
                ..Default::default()
            },
        );
        assert_eq!(ten.tasks.len(), 358_596);
        assert_eq!(ten.tasks[9].task.name, "j3-t4-9");
    }

    const HEADER: &str = "task_create_time, task_end_time, job_id, task_id,number_of_instances, status, number_of_cpus_requested_per_instance_in_the_task,normalized_memory_requested_per_instance_in_the_task\n";

    #[test]
    fn fixture_conversion_and_bad_lines() {
        let text = format!(
            "{HEADER}\
             100,160,1,1,3,Terminated,50,0.5\n\
             -20,0,1,2,1,Running,100,0.25\n\
             90,80,2,1,2,Failed,200,0.1\n\
             95,95,2,2,1,Waiting,,\n\
             abc,1,2,3,1,Terminated,50,0.1\n\
             1,2,2,4,0,Terminated,50,0.1\n\
             1,2,2,5,1,Terminated,50,\n\
             1,2,2,6,1,Terminated,50,1.5\n\
             1,2,2,7,1,Terminated,50\n"
        );
        let p = Path::new("fixture/batch_task.csv");
        let rows = read_rows(text.as_bytes(), p, LoadOptions::default()).unwrap();
        assert_eq!(rows.items.len(), 4);
        let bad: Vec<String> = rows.malformed.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            bad,
            [
                "fixture/batch_task.csv:6: task_create_time: \"abc\" is not an integer",
                "fixture/batch_task.csv:7: number_of_instances: 0",
                "fixture/batch_task.csv:8: CPU and memory requests: both or neither must be given",
                "fixture/batch_task.csv:9: normalized_memory_requested_per_instance: \"1.5\" is not a number in 0..=1",
                "fixture/batch_task.csv:10: expected 8 fields, found 7",
            ]
        );
        let cfg = Alibaba2017Config {
            machine_memory_mib: 1000,
            max_instances_per_task: 2,
        };
        let c = to_task_specs(&rows.items, cfg);
        assert_eq!((c.without_request, c.instances_capped), (1, 1));
        let got: Vec<(&str, u64, u64, u64, Option<u64>)> = c
            .tasks
            .iter()
            .map(|t| {
                (
                    t.task.name.as_str(),
                    t.task.cpu_milli,
                    t.task.memory_mib,
                    t.arrival,
                    t.duration,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("j1-t1-0", 500, 500, 120, Some(60)),
                ("j1-t1-1", 500, 500, 120, Some(60)),
                // End 0: still running.
                ("j1-t2-0", 1000, 250, 0, None),
                // End before create.
                ("j2-t1-0", 2000, 100, 110, None),
                ("j2-t1-1", 2000, 100, 110, None),
            ]
        );
        let e = read_rows(text.as_bytes(), p, LoadOptions { strict: true }).unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed trace line fixture/batch_task.csv:6: task_create_time: \"abc\" is not an integer"
        );
        let e = read_rows(HEADER.as_bytes(), p, LoadOptions::default()).unwrap_err();
        assert!(matches!(e, TraceError::Io { .. }), "{e}");
    }
}
