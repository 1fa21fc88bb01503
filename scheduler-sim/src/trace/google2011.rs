//! Google cluster data 2011 (clusterdata-2011-2): `job_events`, `task_events` and
//! `machine_events` part files, plain or gzip (`part-NNNNN-of-00500.csv.gz`), no header.
//!
//! Times are microseconds; 0 means before the trace window and 2^63 − 1 after it. Tasks made
//! here keep the trace's clock (not rebased, so part files line up): arrival is
//! `floor(time / 10^6)` seconds and a duration is the difference of the two floored times.
//!
//! - `job_events`: `time,missing_info,job_id,event_type,user,scheduling_class,job_name,
//!   logical_job_name`. Jobs carry no resources: [`jobs_to_task_specs`] gives every job the
//!   same [`JobSize`].
//! - `task_events`: `time,missing_info,job_id,task_index,machine_id,event_type,user,
//!   scheduling_class,priority,cpu_request,memory_request,disk_request,different_machines`,
//!   requests normalised to the largest machine and scaled by a [`GoogleScale`].
//! - `machine_events`: `time,machine_id,event_type,platform_id,cpus,memory` (0 ADD, 1 REMOVE,
//!   2 UPDATE), capacities normalised like the requests.
//!
//! Event types for jobs and tasks: 0 SUBMIT, 1 SCHEDULE, 2 EVICT, 3 FAIL, 4 FINISH, 5 KILL,
//! 6 LOST, 7 UPDATE_PENDING, 8 UPDATE_RUNNING. A SUBMIT opens an *attempt* (a job or task is
//! resubmitted after an eviction or failure; each attempt is its own TaskSpec, the later ones
//! named `…#2`, `#3`, …); the first terminal event (EVICT, FAIL, FINISH, KILL, LOST) closes it.
//! Its duration runs from its SCHEDULE (the simulator adds its own wait) to the terminal
//! event; an attempt still open at the end of the events, or closed after the window, runs to
//! the end (no duration). Attempts closed without ever being scheduled never used the cluster
//! and are left out, as are events for jobs or tasks whose SUBMIT is not in the events given
//! (earlier part files): both are counted in [`Converted`].

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::cluster::{timeline, Cluster};
use super::lines::{fraction, int, open, opt, read_records, scale, Layout};
use super::{LoadOptions, Loaded, TaskSpec, TraceError};
use crate::policy::{Node, Task};

/// The time meaning "after the trace window".
pub const AFTER_WINDOW: u64 = i64::MAX as u64;

/// A job or task event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Submit,
    Schedule,
    Evict,
    Fail,
    Finish,
    Kill,
    Lost,
    UpdatePending,
    UpdateRunning,
}

impl EventType {
    pub fn from_code(code: u8) -> Option<Self> {
        use EventType::*;
        [
            Submit,
            Schedule,
            Evict,
            Fail,
            Finish,
            Kill,
            Lost,
            UpdatePending,
            UpdateRunning,
        ]
        .get(usize::from(code))
        .copied()
    }

    /// Ends an attempt.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EventType::Evict
                | EventType::Fail
                | EventType::Finish
                | EventType::Kill
                | EventType::Lost
        )
    }
}

/// What 1.0 of a normalised CPU or memory amount stands for (the largest machine). The trace
/// does not publish it; the defaults, 64 cores and 256 GiB, are assumptions. Use the same
/// scale for tasks and machines so that they fit each other as in the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoogleScale {
    pub cpu_milli: u64,
    pub memory_mib: u64,
}

impl Default for GoogleScale {
    fn default() -> Self {
        Self {
            cpu_milli: 64_000,
            memory_mib: 256 * 1024,
        }
    }
}

/// The request given to every job made from `job_events`. Default: one core, 4 GiB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobSize {
    pub cpu_milli: u64,
    pub memory_mib: u64,
}

impl Default for JobSize {
    fn default() -> Self {
        Self {
            cpu_milli: 1000,
            memory_mib: 4096,
        }
    }
}

/// Tasks made from events, with what was left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Converted {
    /// Sorted by arrival (stable).
    pub tasks: Vec<TaskSpec>,
    /// Events of jobs or tasks with no open attempt (their SUBMIT is not in the input).
    pub without_submit: u64,
    /// Attempts that ended without being scheduled.
    pub never_scheduled: u64,
    /// Task attempts with no CPU or memory request.
    pub without_request: u64,
}

/// One `job_events` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEvent {
    /// Microseconds.
    pub time: u64,
    pub missing_info: Option<u8>,
    pub job_id: u64,
    pub event: EventType,
    pub user: String,
    pub scheduling_class: Option<u8>,
    pub job_name: String,
    pub logical_job_name: String,
}

/// One `task_events` row.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskEvent {
    /// Microseconds.
    pub time: u64,
    pub missing_info: Option<u8>,
    pub job_id: u64,
    pub task_index: u64,
    pub machine_id: Option<u64>,
    pub event: EventType,
    pub user: String,
    pub scheduling_class: Option<u8>,
    pub priority: Option<u16>,
    /// Normalised (0–1); `None` when missing.
    pub cpu_request: Option<f64>,
    pub memory_request: Option<f64>,
    pub disk_request: Option<f64>,
    pub different_machines: Option<bool>,
}

/// A `machine_events` type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MachineEventType {
    Add,
    Remove,
    Update,
}

/// One `machine_events` row.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineEvent {
    /// Microseconds.
    pub time: u64,
    pub machine_id: u64,
    pub event: MachineEventType,
    pub platform_id: String,
    /// Normalised (0–1); `None` when missing.
    pub cpus: Option<f64>,
    pub memory: Option<f64>,
}

const JOB_LAYOUT: Layout = Layout {
    fields: 8,
    header: None,
};
const TASK_LAYOUT: Layout = Layout {
    fields: 13,
    header: None,
};
const MACHINE_LAYOUT: Layout = Layout {
    fields: 6,
    header: None,
};

/// Reads one `job_events` file.
pub fn load_job_events(path: &Path, opts: LoadOptions) -> Result<Loaded<JobEvent>, TraceError> {
    read_job_events(open(path)?, path, opts)
}

/// Reads `job_events` from any reader; `path` names it in messages.
pub fn read_job_events(
    r: impl Read,
    path: &Path,
    opts: LoadOptions,
) -> Result<Loaded<JobEvent>, TraceError> {
    read_records(r, path, opts, &JOB_LAYOUT, parse_job)
}

/// Reads one `task_events` file.
pub fn load_task_events(path: &Path, opts: LoadOptions) -> Result<Loaded<TaskEvent>, TraceError> {
    read_task_events(open(path)?, path, opts)
}

/// Reads `task_events` from any reader; `path` names it in messages.
pub fn read_task_events(
    r: impl Read,
    path: &Path,
    opts: LoadOptions,
) -> Result<Loaded<TaskEvent>, TraceError> {
    read_records(r, path, opts, &TASK_LAYOUT, parse_task)
}

/// Reads one `machine_events` file.
pub fn load_machine_events(
    path: &Path,
    opts: LoadOptions,
) -> Result<Loaded<MachineEvent>, TraceError> {
    read_machine_events(open(path)?, path, opts)
}

/// Reads `machine_events` from any reader; `path` names it in messages.
pub fn read_machine_events(
    r: impl Read,
    path: &Path,
    opts: LoadOptions,
) -> Result<Loaded<MachineEvent>, TraceError> {
    read_records(r, path, opts, &MACHINE_LAYOUT, parse_machine)
}

/// Reads several part files in the order given (pass them in part order) and concatenates
/// them, e.g. `load_many(&parts, opts, load_job_events)`.
pub fn load_many<T>(
    paths: &[PathBuf],
    opts: LoadOptions,
    load: impl Fn(&Path, LoadOptions) -> Result<Loaded<T>, TraceError>,
) -> Result<Loaded<T>, TraceError> {
    let mut all = Loaded {
        items: Vec::new(),
        malformed: Vec::new(),
    };
    for p in paths {
        let mut one = load(p, opts)?;
        all.items.append(&mut one.items);
        all.malformed.append(&mut one.malformed);
    }
    Ok(all)
}

fn secs(us: u64) -> u64 {
    us / 1_000_000
}

/// An open attempt of a job or task.
struct Attempt {
    name: String,
    submit: u64,
    schedule: Option<u64>,
    cpu_milli: Option<u64>,
    memory_mib: Option<u64>,
}

/// The state machine shared by jobs and tasks; `K` identifies a job or task.
struct Attempts<K> {
    open: HashMap<K, Attempt>,
    count: HashMap<K, u32>,
    out: Converted,
}

impl<K: std::hash::Hash + Eq + Clone> Attempts<K> {
    fn new() -> Self {
        Self {
            open: HashMap::new(),
            count: HashMap::new(),
            out: Converted::default(),
        }
    }

    /// Handles one event; `base` names the job or task, `request` is its (cpu, memory) when
    /// the event gives one.
    fn event(
        &mut self,
        key: &K,
        time: u64,
        event: EventType,
        base: impl FnOnce() -> String,
        request: (Option<u64>, Option<u64>),
    ) {
        if event.is_terminal() {
            match self.open.remove(key) {
                Some(a) => self.close(a, Some(time)),
                None => self.out.without_submit += 1,
            }
            return;
        }
        match (event, self.open.get_mut(key)) {
            (EventType::Submit, Some(a)) | (EventType::UpdatePending, Some(a)) => {
                a.cpu_milli = request.0.or(a.cpu_milli);
                a.memory_mib = request.1.or(a.memory_mib);
            }
            (EventType::Submit, None) => {
                let n = self.count.entry(key.clone()).or_insert(0);
                *n += 1;
                let name = if *n == 1 {
                    base()
                } else {
                    format!("{}#{n}", base())
                };
                self.open.insert(
                    key.clone(),
                    Attempt {
                        name,
                        submit: time,
                        schedule: None,
                        cpu_milli: request.0,
                        memory_mib: request.1,
                    },
                );
            }
            (EventType::Schedule, Some(a)) => {
                a.schedule.get_or_insert(time);
                a.cpu_milli = request.0.or(a.cpu_milli);
                a.memory_mib = request.1.or(a.memory_mib);
            }
            (EventType::UpdateRunning, Some(_)) => {}
            (_, _) => self.out.without_submit += 1,
        }
    }

    fn close(&mut self, a: Attempt, end: Option<u64>) {
        let Some(start) = a.schedule else {
            if end.is_some() {
                self.out.never_scheduled += 1;
                return;
            }
            // Still pending at the end of the events: offered to the simulator.
            return self.emit(a, None);
        };
        let duration = end
            .filter(|&e| e != AFTER_WINDOW)
            .map(|e| secs(e).saturating_sub(secs(start)));
        self.emit(a, duration);
    }

    fn emit(&mut self, a: Attempt, duration: Option<u64>) {
        let (Some(cpu), Some(mem)) = (a.cpu_milli, a.memory_mib) else {
            self.out.without_request += 1;
            return;
        };
        self.out.tasks.push(TaskSpec {
            task: Task::new(a.name, cpu, mem),
            arrival: secs(a.submit),
            duration,
        });
    }

    fn finish(mut self) -> Converted {
        let mut rest: Vec<Attempt> = self.open.drain().map(|(_, a)| a).collect();
        rest.sort_by(|a, b| (a.submit, &a.name).cmp(&(b.submit, &b.name)));
        for a in rest {
            self.close(a, None);
        }
        self.out.tasks.sort_by_key(|t| t.arrival);
        self.out
    }
}

/// Turns job events (in time order, as the files are) into one task per job attempt, each
/// asking for `size` (see the module documentation). Named `job-{job_id}`.
pub fn jobs_to_task_specs(events: &[JobEvent], size: JobSize) -> Converted {
    let mut s = Attempts::new();
    for e in events {
        s.event(
            &e.job_id,
            e.time,
            e.event,
            || format!("job-{}", e.job_id),
            (Some(size.cpu_milli), Some(size.memory_mib)),
        );
    }
    s.finish()
}

/// Turns task events (in time order) into one task per task attempt, with its requests scaled
/// by `scale` (see the module documentation). Named `task-{job_id}-{task_index}`; the task's
/// latest request before it ends is used.
pub fn tasks_to_task_specs(events: &[TaskEvent], scale_by: GoogleScale) -> Converted {
    let mut s = Attempts::new();
    for e in events {
        s.event(
            &(e.job_id, e.task_index),
            e.time,
            e.event,
            || format!("task-{}-{}", e.job_id, e.task_index),
            (
                e.cpu_request.map(|c| scale(c, scale_by.cpu_milli)),
                e.memory_request.map(|m| scale(m, scale_by.memory_mib)),
            ),
        );
    }
    s.finish()
}

/// Turns machine events into nodes named `m{machine_id}`, in order of first appearance, with
/// the capacity of their latest event that gives one (UPDATEs change capacity; the simulator's
/// nodes have one capacity, so the last wins). ADD is up, REMOVE down; the state at time 0 is
/// [`Node::ready`], later changes are events at `floor(time / 10^6)` seconds (see
/// [`Cluster`]). Machines that never give a capacity are left out.
pub fn machines_to_cluster(rows: Loaded<MachineEvent>, scale_by: GoogleScale) -> Cluster {
    let mut index: HashMap<u64, usize> = HashMap::new();
    let mut machines: Vec<Vec<&MachineEvent>> = Vec::new();
    for row in &rows.items {
        let i = *index.entry(row.machine_id).or_insert_with(|| {
            machines.push(Vec::new());
            machines.len() - 1
        });
        machines[i].push(row);
    }
    let mut nodes = Vec::new();
    let mut events = Vec::new();
    for mut obs in machines {
        obs.sort_by_key(|r| r.time);
        let Some(cap) = obs
            .iter()
            .rev()
            .find_map(|r| Some((r.cpus?, r.memory?, r.machine_id)))
        else {
            continue;
        };
        let name = format!("m{}", cap.2);
        let states: Vec<(u64, bool)> = obs
            .iter()
            .filter(|r| r.event != MachineEventType::Update)
            .map(|r| (secs(r.time), r.event == MachineEventType::Add))
            .collect();
        let mut node = Node::new(
            name.as_str(),
            scale(cap.0, scale_by.cpu_milli),
            scale(cap.1, scale_by.memory_mib),
            0,
            None,
        );
        node.ready = timeline(&name, &states, &mut events);
        nodes.push(node);
    }
    events.sort_by_key(|e| e.time);
    Cluster {
        nodes: Loaded {
            items: nodes,
            malformed: rows.malformed,
        },
        events,
    }
}

fn time(field: &str) -> Result<u64, String> {
    let t: u64 = int(field, "time")?;
    if t > AFTER_WINDOW {
        return Err(format!("time: {t} is beyond 2^63 - 1"));
    }
    Ok(t)
}

fn event_type(field: &str) -> Result<EventType, String> {
    let code: u8 = int(field, "event_type")?;
    EventType::from_code(code).ok_or_else(|| format!("event_type: {code} is not 0..=8"))
}

fn small(field: &str, name: &str, max: u8) -> Result<Option<u8>, String> {
    opt(field, |s| {
        let v: u8 = int(s, name)?;
        if v > max {
            return Err(format!("{name}: {v} is not 0..={max}"));
        }
        Ok(v)
    })
}

fn parse_job(f: &[&str]) -> Result<JobEvent, String> {
    Ok(JobEvent {
        time: time(f[0])?,
        missing_info: small(f[1], "missing_info", 3)?,
        job_id: int(f[2], "job_id")?,
        event: event_type(f[3])?,
        user: f[4].to_string(),
        scheduling_class: small(f[5], "scheduling_class", 3)?,
        job_name: f[6].to_string(),
        logical_job_name: f[7].to_string(),
    })
}

fn parse_task(f: &[&str]) -> Result<TaskEvent, String> {
    Ok(TaskEvent {
        time: time(f[0])?,
        missing_info: small(f[1], "missing_info", 3)?,
        job_id: int(f[2], "job_id")?,
        task_index: int(f[3], "task_index")?,
        machine_id: opt(f[4], |s| int(s, "machine_id"))?,
        event: event_type(f[5])?,
        user: f[6].to_string(),
        scheduling_class: small(f[7], "scheduling_class", 3)?,
        priority: opt(f[8], |s| int(s, "priority"))?,
        cpu_request: opt(f[9], |s| fraction(s, "cpu_request", 1.0))?,
        memory_request: opt(f[10], |s| fraction(s, "memory_request", 1.0))?,
        disk_request: opt(f[11], |s| fraction(s, "disk_request", 1.0))?,
        different_machines: small(f[12], "different_machines", 1)?.map(|v| v == 1),
    })
}

fn parse_machine(f: &[&str]) -> Result<MachineEvent, String> {
    let event = match int::<u8>(f[2], "event_type")? {
        0 => MachineEventType::Add,
        1 => MachineEventType::Remove,
        2 => MachineEventType::Update,
        c => return Err(format!("event_type: {c} is not 0, 1 or 2")),
    };
    Ok(MachineEvent {
        time: time(f[0])?,
        machine_id: int(f[1], "machine_id")?,
        event,
        platform_id: f[3].to_string(),
        cpus: opt(f[4], |s| fraction(s, "cpus", 1.0))?,
        memory: opt(f[5], |s| fraction(s, "memory", 1.0))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::lines::testing::{gzip, shared_traces};

    const PARTS: [&str; 3] = [
        "part-00000-of-00500.csv.gz",
        "part-00001-of-00500.csv.gz",
        "part-00002-of-00500.csv.gz",
    ];

    #[test]
    fn real_job_events_load_completely() {
        let Some(dir) = shared_traces("google-2011-job_events") else {
            return;
        };
        let strict = LoadOptions { strict: true };
        let counts: Vec<usize> = PARTS
            .iter()
            .map(|p| load_job_events(&dir.join(p), strict).unwrap().items.len())
            .collect();
        assert_eq!(counts, [10_704, 3099, 3360]);

        let p0 = load_job_events(&dir.join(PARTS[0]), strict).unwrap();
        assert_eq!(
            p0.items
                .iter()
                .filter(|e| e.event == EventType::Submit)
                .count(),
            4900
        );
        assert_eq!(p0.items.iter().filter(|e| e.time == 0).count(), 7970);
        let e0 = &p0.items[0];
        assert_eq!(
            (
                e0.time,
                e0.missing_info,
                e0.job_id,
                e0.event,
                e0.scheduling_class
            ),
            (0, None, 3_418_309, EventType::Submit, Some(3))
        );
        let c = jobs_to_task_specs(&p0.items, JobSize::default());
        assert_eq!(c.tasks.len(), 4900);
        assert_eq!((c.without_submit, c.never_scheduled), (0, 0));
        assert_eq!(c.tasks.iter().filter(|t| t.duration.is_some()).count(), 912);
        assert_eq!(c.tasks.iter().filter(|t| t.arrival == 0).count(), 3986);
        assert_eq!(
            c.tasks.iter().filter_map(|t| t.duration).sum::<u64>(),
            476_335
        );
        assert!(c
            .tasks
            .iter()
            .all(|t| (t.task.cpu_milli, t.task.memory_mib) == (1000, 4096)));
        assert!(c.tasks.windows(2).all(|w| w[0].arrival <= w[1].arrival));

        // Part 1 alone: 99 events belong to jobs submitted in part 0.
        let p1 = load_job_events(&dir.join(PARTS[1]), strict).unwrap();
        let c1 = jobs_to_task_specs(&p1.items, JobSize::default());
        assert_eq!((c1.tasks.len(), c1.without_submit), (1053, 99));

        // All three parts together: every event finds its job.
        let paths: Vec<PathBuf> = PARTS.iter().map(|p| dir.join(p)).collect();
        let all = load_many(&paths, strict, load_job_events).unwrap();
        assert_eq!(all.items.len(), 10_704 + 3099 + 3360);
        let c = jobs_to_task_specs(&all.items, JobSize::default());
        assert_eq!((c.tasks.len(), c.without_submit), (7061, 0));
        assert_eq!(
            c.tasks.iter().filter(|t| t.duration.is_some()).count(),
            3044
        );
        assert_eq!(
            c.tasks.iter().filter_map(|t| t.duration).sum::<u64>(),
            2_039_620
        );
    }

    #[test]
    fn job_fixture_bad_lines_plain_and_gzip() {
        let text = "0,,1,0,u,3,n,l\n\
                    600000000,,1,1,u,3,n,l\n\
                    x,,1,1,u,3,n,l\n\
                    700000000,,2,9,u,1,n,l\n\
                    700000000,,2,0,u,4,n,l\n\
                    700000000,,2,0,u,1,n\n\
                    9223372036854775808,,3,0,u,1,n,l\n\
                    2600000000,,1,4,u,3,n,l\n";
        let p = Path::new("fixture/job_events.csv.gz");
        for bytes in [text.as_bytes().to_vec(), gzip(text)] {
            let got = read_job_events(bytes.as_slice(), p, LoadOptions::default()).unwrap();
            assert_eq!(got.items.len(), 3);
            let bad: Vec<String> = got.malformed.iter().map(|m| m.to_string()).collect();
            assert_eq!(
                bad,
                [
                    "fixture/job_events.csv.gz:3: time: \"x\" is not a non-negative integer",
                    "fixture/job_events.csv.gz:4: event_type: 9 is not 0..=8",
                    "fixture/job_events.csv.gz:5: scheduling_class: 4 is not 0..=3",
                    "fixture/job_events.csv.gz:6: expected 8 fields, found 7",
                    "fixture/job_events.csv.gz:7: time: 9223372036854775808 is beyond 2^63 - 1",
                ]
            );
            let c = jobs_to_task_specs(&got.items, JobSize::default());
            assert_eq!(c.tasks.len(), 1);
            assert_eq!(
                (
                    c.tasks[0].task.name.as_str(),
                    c.tasks[0].arrival,
                    c.tasks[0].duration
                ),
                ("job-1", 0, Some(2000))
            );
            let e = read_job_events(bytes.as_slice(), p, LoadOptions { strict: true }).unwrap_err();
            assert_eq!(
                e.to_string(),
                "malformed trace line fixture/job_events.csv.gz:3: time: \"x\" is not a non-negative integer"
            );
        }
        let gz = gzip(text);
        let got = read_job_events(&gz[..gz.len() - 4], p, LoadOptions::default()).unwrap();
        assert_eq!(got.malformed.last().map(|m| m.line), Some(9));
    }

    /// task_events written from the documented schema: `time,missing_info,job_id,
    /// task_index,machine_id,event_type,user,scheduling_class,priority,cpu_request,
    /// memory_request,disk_request,different_machines`.
    const TASKS: &str = "\
0,,10,0,,0,u,2,9,0.125,0.0625,0.001,0
0,,10,0,5,1,u,2,9,0.125,0.0625,0.001,0
0,,10,1,,0,u,2,9,0.25,0.5,,1
700000000,,10,1,6,1,u,2,9,,,,
900000000,,10,0,5,4,u,2,9,0.125,0.0625,0.001,0
1000000000,,10,1,6,2,u,2,9,,,,
1500000000,,10,1,,0,u,2,9,0.25,0.5,,1
1600000000,,10,1,7,1,u,2,9,,,,
2000000000,,11,0,,0,u,0,0,,,,0
2100000000,,11,0,8,1,u,0,0,,,,0
2200000000,,12,0,,0,u,0,0,0.5,0.5,0,0
2300000000,,12,0,,5,u,0,0,0.5,0.5,0,0
2400000000,,13,0,,7,u,0,0,0.5,0.5,0,0
2500000000,,14,0,,0,u,0,0,0.5,0.5,0,0
2600000000,,14,0,,7,u,0,0,0.75,0.5,0,0
2700000000,,14,0,3,1,u,0,0,,,,
9223372036854775807,,14,0,3,4,u,0,0,,,,
2800000000,,15,0,,0,u,0,0,1.5,0.5,0,0
2800000000,,15,0,,0,u,0,0,0.5,0.5,0,0,0
2800000000,,15,x,,0,u,0,0,0.5,0.5,0,0
2800000000,,15,0,,0,u,0,0,0.5,0.5,0,2
";

    #[test]
    fn task_events_fixture() {
        let p = Path::new("fixture/task_events.csv");
        let got = read_task_events(TASKS.as_bytes(), p, LoadOptions::default()).unwrap();
        assert_eq!(got.items.len(), 17);
        let e1 = &got.items[1];
        assert_eq!(
            (
                e1.machine_id,
                e1.priority,
                e1.cpu_request,
                e1.different_machines
            ),
            (Some(5), Some(9), Some(0.125), Some(false))
        );
        let bad: Vec<String> = got.malformed.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            bad,
            [
                "fixture/task_events.csv:18: cpu_request: \"1.5\" is not a number in 0..=1",
                "fixture/task_events.csv:19: expected 13 fields, found 14",
                "fixture/task_events.csv:20: task_index: \"x\" is not a non-negative integer",
                "fixture/task_events.csv:21: different_machines: 2 is not 0..=1",
            ]
        );
        let e = read_task_events(TASKS.as_bytes(), p, LoadOptions { strict: true }).unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed trace line fixture/task_events.csv:18: cpu_request: \"1.5\" is not a number in 0..=1"
        );

        let scale_by = GoogleScale {
            cpu_milli: 8000,
            memory_mib: 16384,
        };
        let c = tasks_to_task_specs(&got.items, scale_by);
        let tasks: Vec<(&str, u64, u64, u64, Option<u64>)> = c
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
            tasks,
            [
                // Scheduled at 0, finished at 900 s.
                ("task-10-0", 1000, 1024, 0, Some(900)),
                // Scheduled at 700 s, evicted at 1000 s...
                ("task-10-1", 2000, 8192, 0, Some(300)),
                // ...resubmitted, scheduled again and still running at the end.
                ("task-10-1#2", 2000, 8192, 1500, None),
                // Updated while pending (0.75 CPU); finishes after the window.
                ("task-14-0", 6000, 8192, 2500, None),
            ]
        );
        // 11/0 never gave a request; 12/0 was killed while pending; 13/0 was never submitted.
        assert_eq!(
            (c.without_request, c.never_scheduled, c.without_submit),
            (1, 1, 1)
        );
    }

    const MACHINES: &str = "\
0,1,0,pA,0.5,0.5
0,2,0,pA,1,1
0,3,0,pB,,
5000000000,2,1,pA,1,1
6000000000,2,0,pA,1,0.75
7000000000,4,0,pB,0.25,0.25
8000000000,1,2,pA,0.5,0.25
9000000000,4,1,pB,0.25,0.25
9000000000,5,3,pB,0.25,0.25
9000000000,5,0,pB,0.25
9000000000,5,0,pB,0.25,-1
";

    #[test]
    fn machine_events_fixture() {
        let p = Path::new("fixture/machine_events.csv");
        let got = read_machine_events(MACHINES.as_bytes(), p, LoadOptions::default()).unwrap();
        assert_eq!(got.items.len(), 8);
        let bad: Vec<String> = got.malformed.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            bad,
            [
                "fixture/machine_events.csv:9: event_type: 3 is not 0, 1 or 2",
                "fixture/machine_events.csv:10: expected 6 fields, found 5",
                "fixture/machine_events.csv:11: memory: \"-1\" is not a number in 0..=1",
            ]
        );
        assert!(read_machine_events(MACHINES.as_bytes(), p, LoadOptions { strict: true }).is_err());
        let c = machines_to_cluster(
            got,
            GoogleScale {
                cpu_milli: 8000,
                memory_mib: 16384,
            },
        );
        let nodes: Vec<(&str, u64, u64, bool)> = c
            .nodes
            .items
            .iter()
            .map(|n| {
                (
                    n.name.as_str(),
                    n.capacity.cpu_milli,
                    n.capacity.memory_mib,
                    n.ready,
                )
            })
            .collect();
        // m3 never has a capacity; m1's UPDATE changes its memory; m2 returns with less.
        assert_eq!(
            nodes,
            [
                ("m1", 4000, 4096, true),
                ("m2", 8000, 12288, true),
                ("m4", 2000, 4096, false),
            ]
        );
        let events: Vec<(u64, &str, bool)> = c
            .events
            .iter()
            .map(|e| (e.time, e.node.as_str(), e.up))
            .collect();
        assert_eq!(
            events,
            [
                (5000, "m2", false),
                (6000, "m2", true),
                (7000, "m4", true),
                (9000, "m4", false),
            ]
        );
        assert_eq!(c.nodes.malformed.len(), 3);
    }
}
