//! Run reports: what a replay measured, written as `report.json` (deterministic: the same
//! inputs and seed give the same bytes), `timeseries.csv` (one row per event time) and
//! `timings.json` (wall-clock figures, kept apart so they cannot break that determinism);
//! for fill mode `fill.json` and `fill.csv` (one row per step of offered load); for
//! compaction `compact.json`; SVG plots of each ([`crate::plot`]); and the terminal summary
//! tables.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::plot::{time_unit, Chart, Series, YAxis};
use crate::policy::{Examine, ExternalError, Node, Policy};
use crate::sim::compact::{self, CompactOptions, CompactOutcome, Snapshot};
use crate::sim::fill::{self, Basis, FillOptions, FillRow};
use crate::sim::{self, Metrics, Options, Sample};
use crate::trace::{Malformed, TaskSpec};

/// How many malformed lines a report quotes (all are counted).
pub const MALFORMED_EXAMPLES: usize = 10;

/// Where a run's workload came from, as the user named it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inputs {
    pub trace: String,
    pub nodes: String,
    pub pods: String,
}

/// The deterministic report of one run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub policy: String,
    /// For `exec:` policies, the program as given (absent for presets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    pub seed: u64,
    pub inputs: Inputs,
    pub filters: Vec<&'static str>,
    pub scorers: Vec<(&'static str, f64)>,
    pub sample: Option<usize>,
    /// The examine cap (`all` unless `--examine` set one).
    pub examine: Examine,
    pub malformed_lines: usize,
    pub malformed_examples: Vec<String>,
    pub metrics: Metrics,
}

/// Wall-clock figures of one run; not deterministic, so not part of [`Report`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Timings {
    pub policy: String,
    pub wall_seconds: f64,
    pub decisions: u64,
    pub decisions_per_second: f64,
}

/// One finished run.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub report: Report,
    pub series: Vec<Sample>,
    /// Per task, the node index of its first placement (see [`placements_csv`]).
    pub placements: Vec<Option<usize>>,
}

/// Replays `tasks` on `nodes` under `policy` (FGD's target workload is `tasks` itself), with
/// the failures in `opts`. Fails only when an external policy program fails.
pub fn replay(
    nodes: &[Node],
    tasks: &[TaskSpec],
    policy: &Policy,
    seed: u64,
    inputs: Inputs,
    malformed: &[Malformed],
    opts: Options,
) -> Result<Run, ExternalError> {
    let mut stack = policy
        .build(seed, tasks.iter().map(|t| &t.task))?
        .with_examine(opts.examine);
    let examine = stack.examine();
    let (filters, scorers, sample) = stack.describe();
    let outcome = sim::run_with(nodes.to_vec(), tasks, &mut stack, opts);
    if let Some(e) = stack.error() {
        return Err(e.clone());
    }
    Ok(Run {
        report: Report {
            policy: policy.name().to_string(),
            program: program(policy),
            seed,
            inputs,
            filters,
            scorers,
            sample,
            examine,
            malformed_lines: malformed.len(),
            malformed_examples: malformed
                .iter()
                .take(MALFORMED_EXAMPLES)
                .map(|m| m.to_string())
                .collect(),
            metrics: outcome.metrics,
        },
        series: outcome.series,
        placements: outcome.placements,
    })
}

fn program(policy: &Policy) -> Option<String> {
    match policy {
        Policy::Exec(e) => Some(e.program.clone()),
        Policy::Preset(_) => None,
    }
}

/// The deterministic report of one fill run (`fill.json`; the rows also go to `fill.csv`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FillReport {
    pub policy: String,
    /// For `exec:` policies, the program as given (absent for presets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    pub seed: u64,
    pub inputs: Inputs,
    pub max_consecutive_failures: usize,
    pub step_percent: u32,
    /// The resource offered load is a share of.
    pub basis: Basis,
    pub malformed_lines: usize,
    pub rows: Vec<FillRow>,
}

/// Fills `nodes` with draws from the mix of `tasks` under `policy`. Fails only when an
/// external policy program fails.
pub fn fill_run(
    nodes: &[Node],
    tasks: &[TaskSpec],
    policy: &Policy,
    inputs: Inputs,
    malformed: &[Malformed],
    o: &FillOptions,
) -> Result<FillReport, ExternalError> {
    let mix: Vec<_> = tasks.iter().map(|t| t.task.clone()).collect();
    let mut stack = policy.build(o.seed, mix.iter())?.with_examine(o.examine);
    let out = fill::fill(nodes.to_vec(), &mix, &mut stack, o);
    if let Some(e) = stack.error() {
        return Err(e.clone());
    }
    Ok(FillReport {
        policy: policy.name().to_string(),
        program: program(policy),
        seed: o.seed,
        inputs,
        max_consecutive_failures: o.max_consecutive_failures,
        step_percent: o.step_percent,
        basis: out.basis,
        malformed_lines: malformed.len(),
        rows: out.rows,
    })
}

/// Writes `fill.json` and `fill.csv` into `dir` (created if needed).
pub fn write_fill(dir: &Path, r: &FillReport) -> Result<(), ReportError> {
    ensure_dir(dir)?;
    let p = dir.join("fill.json");
    write(p.clone(), &json(&p, r)?)?;
    write(dir.join("fill.csv"), fill::fill_csv(&r.rows).as_bytes())?;
    write_charts(dir, &fill_charts(r))
}

/// A terminal table of a fill: one line per row.
pub fn fill_table(r: &FillReport) -> String {
    let mut out = format!(
        "{} fill, offered load as a share of {} capacity
{:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10} {:>10}
",
        r.policy,
        match r.basis {
            Basis::Gpu => "GPU",
            Basis::Cpu => "CPU",
        },
        "offered",
        "placed",
        "failed",
        "cpu",
        "mem",
        "gpu",
        "nodes",
        "gpu free",
        "gpu frag"
    );
    for x in &r.rows {
        let _ = writeln!(
            out,
            "{:>7.1}% {:>8} {:>8} {:>7.1}% {:>7.1}% {:>7.1}% {:>8} {:>10.1} {:>10.1}",
            x.offered * 100.0,
            x.placed,
            x.failed,
            x.cpu_alloc * 100.0,
            x.mem_alloc * 100.0,
            x.gpu_alloc * 100.0,
            x.nodes_in_use,
            x.gpu_unallocated,
            x.gpu_fragmented
        );
    }
    out
}

/// Errors writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("failed to write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to encode {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn ensure_dir(dir: &Path) -> Result<(), ReportError> {
    fs::create_dir_all(dir).map_err(|source| ReportError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

fn write(path: PathBuf, bytes: &[u8]) -> Result<(), ReportError> {
    fs::write(&path, bytes).map_err(|source| ReportError::Write { path, source })
}

fn json<T: Serialize>(path: &Path, v: &T) -> Result<Vec<u8>, ReportError> {
    let mut b = serde_json::to_vec_pretty(v).map_err(|source| ReportError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    b.push(b'\n');
    Ok(b)
}

/// Writes `report.json`, `timeseries.csv` and `timings.json` into `dir` (created if needed).
pub fn write_run(dir: &Path, run: &Run, timings: &Timings) -> Result<(), ReportError> {
    ensure_dir(dir)?;
    let p = dir.join("report.json");
    write(p.clone(), &json(&p, &run.report)?)?;
    write(
        dir.join("timeseries.csv"),
        timeseries_csv(&run.series).as_bytes(),
    )?;
    let p = dir.join("timings.json");
    write(p.clone(), &json(&p, timings)?)?;
    write_charts(dir, &run_charts(run))
}

fn write_charts(dir: &Path, charts: &[(&str, Chart)]) -> Result<(), ReportError> {
    for (file, c) in charts {
        write(dir.join(file), c.svg().as_bytes())?;
    }
    Ok(())
}

/// Whether a run's cluster has GPUs (some sample shows GPUs free or allocated).
fn has_gpus(series: &[Sample]) -> bool {
    series
        .iter()
        .any(|x| x.gpu_unallocated > 0.0 || x.gpu_alloc > 0.0)
}

/// One series of a run's samples against time in `unit` seconds, as steps: a sample's value
/// holds until the next sample (as the time-weighted means count it).
fn over_time(name: &str, series: &[Sample], unit: f64, f: impl Fn(&Sample) -> f64) -> Series {
    let mut points = Vec::with_capacity(series.len() * 2);
    for (i, x) in series.iter().enumerate() {
        let y = f(x);
        points.push((x.time as f64 / unit, y));
        if let Some(next) = series.get(i + 1) {
            points.push((next.time as f64 / unit, y));
        }
    }
    Series {
        name: name.to_string(),
        points,
    }
}

fn span(series: &[Sample]) -> f64 {
    match (series.first(), series.last()) {
        (Some(a), Some(b)) => b.time.saturating_sub(a.time) as f64,
        _ => 0.0,
    }
}

/// The plots of one run: `allocation.svg` (CPU, memory, GPU shares over time), `tasks.svg`
/// (running, pending, nodes in use) and, with GPUs, `gpu_fragmentation.svg` (unallocated and
/// fragmented GPUs, FGD's measure).
pub fn run_charts(run: &Run) -> Vec<(&'static str, Chart)> {
    let s = &run.series;
    let policy = &run.report.policy;
    let (unit, x_label) = time_unit(span(s));
    let gpus = has_gpus(s);
    let mut alloc = vec![
        over_time("CPU", s, unit, |x| x.cpu_alloc),
        over_time("memory", s, unit, |x| x.mem_alloc),
    ];
    if gpus {
        alloc.push(over_time("GPU", s, unit, |x| x.gpu_alloc));
    }
    let mut charts = vec![
        (
            "allocation.svg",
            Chart {
                title: format!("Allocated share of the cluster — {policy}"),
                x_label: x_label.into(),
                y_label: "allocated".into(),
                y: YAxis::Percent,
                series: alloc,
            },
        ),
        (
            "tasks.svg",
            Chart {
                title: format!("Tasks and nodes — {policy}"),
                x_label: x_label.into(),
                y_label: "count".into(),
                y: YAxis::Count,
                series: vec![
                    over_time("running", s, unit, |x| x.running as f64),
                    over_time("pending", s, unit, |x| x.pending as f64),
                    over_time("nodes in use", s, unit, |x| x.nodes_in_use as f64),
                ],
            },
        ),
    ];
    if gpus {
        charts.push((
            "gpu_fragmentation.svg",
            Chart {
                title: format!("Unallocated and fragmented GPUs — {policy}"),
                x_label: x_label.into(),
                y_label: "GPUs".into(),
                y: YAxis::Count,
                series: vec![
                    over_time("unallocated", s, unit, |x| x.gpu_unallocated),
                    over_time("fragmented", s, unit, |x| x.gpu_fragmented),
                ],
            },
        ));
    }
    charts
}

/// Policies side by side, one line each: `cpu.svg`, `memory.svg`, `pending.svg`,
/// `nodes_in_use.svg` and, with GPUs, `gpu.svg` and `gpu_fragmented.svg`.
pub fn compare_charts(runs: &[&Run]) -> Vec<(&'static str, Chart)> {
    let longest = runs.iter().map(|r| span(&r.series)).fold(0.0, f64::max);
    let (unit, x_label) = time_unit(longest);
    let gpus = runs.iter().any(|r| has_gpus(&r.series));
    let each = |f: &dyn Fn(&Sample) -> f64| -> Vec<Series> {
        runs.iter()
            .map(|r| over_time(&r.report.policy, &r.series, unit, f))
            .collect()
    };
    let chart = |title: &str, y_label: &str, y: YAxis, series: Vec<Series>| Chart {
        title: title.to_string(),
        x_label: x_label.to_string(),
        y_label: y_label.to_string(),
        y,
        series,
    };
    let mut charts = vec![
        (
            "cpu.svg",
            chart(
                "Allocated CPU share",
                "allocated",
                YAxis::Percent,
                each(&|x| x.cpu_alloc),
            ),
        ),
        (
            "memory.svg",
            chart(
                "Allocated memory share",
                "allocated",
                YAxis::Percent,
                each(&|x| x.mem_alloc),
            ),
        ),
        (
            "pending.svg",
            chart(
                "Pending tasks",
                "tasks",
                YAxis::Count,
                each(&|x| x.pending as f64),
            ),
        ),
        (
            "nodes_in_use.svg",
            chart(
                "Nodes in use",
                "nodes",
                YAxis::Count,
                each(&|x| x.nodes_in_use as f64),
            ),
        ),
    ];
    if gpus {
        charts.push((
            "gpu.svg",
            chart(
                "Allocated GPU share",
                "allocated",
                YAxis::Percent,
                each(&|x| x.gpu_alloc),
            ),
        ));
        charts.push((
            "gpu_fragmented.svg",
            chart(
                "Fragmented GPUs (FGD's measure)",
                "GPUs",
                YAxis::Count,
                each(&|x| x.gpu_fragmented),
            ),
        ));
    }
    charts
}

/// Writes [`compare_charts`] into `dir` (created if needed).
pub fn write_compare(dir: &Path, runs: &[&Run]) -> Result<(), ReportError> {
    ensure_dir(dir)?;
    write_charts(dir, &compare_charts(runs))
}

/// A fill's plots against offered load: `fill.svg` (allocated shares) and, with GPUs,
/// `fill_gpu.svg` (unallocated and fragmented GPUs).
pub fn fill_charts(r: &FillReport) -> Vec<(&'static str, Chart)> {
    let basis = match r.basis {
        Basis::Gpu => "GPU",
        Basis::Cpu => "CPU",
    };
    let x_label = format!("offered load (% of {basis} capacity)");
    let line = |name: &str, f: &dyn Fn(&FillRow) -> f64| Series {
        name: name.to_string(),
        points: r.rows.iter().map(|x| (x.offered * 100.0, f(x))).collect(),
    };
    let gpus = r
        .rows
        .iter()
        .any(|x| x.gpu_unallocated > 0.0 || x.gpu_alloc > 0.0);
    let mut alloc = vec![
        line("CPU", &|x| x.cpu_alloc),
        line("memory", &|x| x.mem_alloc),
    ];
    if gpus {
        alloc.push(line("GPU", &|x| x.gpu_alloc));
    }
    let mut charts = vec![(
        "fill.svg",
        Chart {
            title: format!("Allocated share as load is offered — {}", r.policy),
            x_label: x_label.clone(),
            y_label: "allocated".into(),
            y: YAxis::Percent,
            series: alloc,
        },
    )];
    if gpus {
        charts.push((
            "fill_gpu.svg",
            Chart {
                title: format!("Unallocated and fragmented GPUs — {}", r.policy),
                x_label,
                y_label: "GPUs".into(),
                y: YAxis::Count,
                series: vec![
                    line("unallocated", &|x| x.gpu_unallocated),
                    line("fragmented", &|x| x.gpu_fragmented),
                ],
            },
        ));
    }
    charts
}

/// Per task in trace order, the node of its first placement (empty when never placed), as
/// CSV with the header `task,node`.
pub fn placements_csv(tasks: &[TaskSpec], nodes: &[Node], placements: &[Option<usize>]) -> String {
    let mut s = String::from("task,node\n");
    for (t, p) in tasks.iter().zip(placements) {
        let node = p.and_then(|n| nodes.get(n)).map_or("", |n| n.name.as_str());
        let _ = writeln!(s, "{},{node}", t.task.name);
    }
    s
}

/// Writes `placements.csv` (see [`placements_csv`]) into `dir` (created if needed).
pub fn write_placements(dir: &Path, csv: &str) -> Result<(), ReportError> {
    ensure_dir(dir)?;
    write(dir.join("placements.csv"), csv.as_bytes())
}

/// The time series as CSV with a header; ratios with six decimals.
pub fn timeseries_csv(series: &[Sample]) -> String {
    let mut s = String::from(
        "time,cpu_alloc,mem_alloc,gpu_alloc,nodes_in_use,running,pending,gpu_unallocated,gpu_fragmented\n",
    );
    for x in series {
        let _ = writeln!(
            s,
            "{},{:.6},{:.6},{:.6},{},{},{},{:.3},{:.3}",
            x.time,
            x.cpu_alloc,
            x.mem_alloc,
            x.gpu_alloc,
            x.nodes_in_use,
            x.running,
            x.pending,
            x.gpu_unallocated,
            x.gpu_fragmented
        );
    }
    s
}

/// A side-by-side table, one row per run, naming each policy.
pub fn table(runs: &[(&Report, &Timings)]) -> String {
    let head = [
        "policy",
        "placed",
        "failed",
        "pending",
        "queued",
        "wait p50",
        "wait p99",
        "cpu mean",
        "mem mean",
        "gpu mean",
        "gpu peak",
        "peak nodes",
        "decisions",
        "wall s",
        "dec/s",
    ];
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    for (r, t) in runs {
        let m = &r.metrics;
        let pct = |x: f64| format!("{:.1}%", x * 100.0);
        rows.push(vec![
            r.policy.clone(),
            m.placements.to_string(),
            m.failed.to_string(),
            m.pending_at_end.to_string(),
            m.queued.to_string(),
            format!("{}s", m.wait_p50),
            format!("{}s", m.wait_p99),
            pct(m.cpu_alloc.mean),
            pct(m.mem_alloc.mean),
            pct(m.gpu_alloc.mean),
            pct(m.gpu_alloc.peak),
            m.peak_nodes_in_use.to_string(),
            m.decisions.to_string(),
            format!("{:.3}", t.wall_seconds),
            format!("{:.0}", t.decisions_per_second),
        ]);
    }
    align(&rows)
}

/// Rows of cells as aligned text: the first column left-aligned, the others right-aligned.
fn align(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c == 0 {
                    format!("{v:<w$}", w = widths[c])
                } else {
                    format!("{v:>w$}", w = widths[c])
                }
            })
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// The deterministic report of one compaction (`compact.json`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompactReport {
    pub policy: String,
    /// For `exec:` policies, the program as given (absent for presets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    pub seed: u64,
    pub inputs: Inputs,
    pub snapshot: Snapshot,
    /// The trace time the snapshot was taken at (absent for `all`).
    pub snapshot_time: Option<u64>,
    pub permutations: usize,
    pub malformed_lines: usize,
    #[serde(flatten)]
    pub outcome: CompactOutcome,
}

/// Compacts `nodes` for the `which` snapshot of `tasks` under `policy` (FGD's target workload
/// is the snapshot). Fails only when an external policy program fails.
pub fn compact_run(
    nodes: &[Node],
    tasks: &[TaskSpec],
    policy: &Policy,
    inputs: Inputs,
    malformed: &[Malformed],
    which: Snapshot,
    o: &CompactOptions,
) -> Result<CompactReport, ExternalError> {
    let (snapshot_time, snap) = compact::snapshot(tasks, which);
    let make = |seed| {
        policy
            .build(seed, snap.iter())
            .map(|s| s.with_examine(o.examine))
    };
    let outcome = compact::compact(nodes, &snap, o, &make)?;
    Ok(CompactReport {
        policy: policy.name().to_string(),
        program: program(policy),
        seed: o.seed,
        inputs,
        snapshot: which,
        snapshot_time,
        permutations: o.permutations,
        malformed_lines: malformed.len(),
        outcome,
    })
}

/// Writes `compact.json` into `dir` (created if needed).
pub fn write_compact(dir: &Path, r: &CompactReport) -> Result<(), ReportError> {
    ensure_dir(dir)?;
    let p = dir.join("compact.json");
    write(p.clone(), &json(&p, r)?)
}

/// Compactions side by side, one row per policy; `wall` (seconds) per row when given.
pub fn compact_table(rs: &[(&CompactReport, f64)]) -> String {
    let head = [
        "policy", "tasks", "nodes", "fits", "min", "median", "max", "median %", "wall s",
    ];
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    let opt = |x: Option<usize>| x.map_or("-".to_string(), |v| v.to_string());
    for (r, wall) in rs {
        let o = &r.outcome;
        rows.push(vec![
            r.policy.clone(),
            o.tasks.to_string(),
            o.nodes.to_string(),
            if o.fits_all { "yes" } else { "no" }.into(),
            opt(o.min),
            opt(o.median),
            opt(o.max),
            o.median.map_or("-".into(), |m| {
                format!("{:.1}%", 100.0 * m as f64 / o.nodes.max(1) as f64)
            }),
            format!("{wall:.2}"),
        ]);
    }
    let mut out = align(&rows);
    if rs.iter().any(|(r, _)| !r.outcome.fits_all) {
        out.push_str("fits no: even every node cannot place the whole snapshot under that policy; nothing to compact\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Task;

    fn tiny() -> Run {
        let nodes = vec![
            Node::new("n0", 4000, 4096, 1, Some("T4")),
            Node::new("n1", 4000, 4096, 0, None),
        ];
        let tasks = vec![
            TaskSpec {
                task: Task::new("a", 1000, 1024).with_gpus(1, 500),
                arrival: 0,
                duration: Some(10),
            },
            TaskSpec {
                task: Task::new("b", 3000, 1024),
                arrival: 5,
                duration: None,
            },
        ];
        let inputs = Inputs {
            trace: "openb".into(),
            nodes: "n.csv".into(),
            pods: "p.csv".into(),
        };
        replay(
            &nodes,
            &tasks,
            &crate::policy::Preset::Binpack.into(),
            3,
            inputs,
            &[],
            Options::default(),
        )
        .unwrap()
    }

    #[test]
    fn csv_and_table_contents() {
        let run = tiny();
        assert_eq!(
            timeseries_csv(&run.series),
            "time,cpu_alloc,mem_alloc,gpu_alloc,nodes_in_use,running,pending,gpu_unallocated,gpu_fragmented\n\
             0,0.125000,0.125000,0.500000,1,1,0,0.500,0.250\n\
             5,0.500000,0.250000,0.500000,1,2,0,0.500,0.500\n\
             10,0.375000,0.125000,0.000000,1,1,0,1.000,0.500\n"
        );
        let t = Timings {
            policy: "binpack".into(),
            wall_seconds: 0.5,
            decisions: 2,
            decisions_per_second: 4.0,
        };
        let table = table(&[(&run.report, &t)]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("policy   placed  failed"), "{table}");
        assert!(lines[1].starts_with("binpack       2       0"), "{table}");
        assert!(lines[1].ends_with("0.500      4"), "{table}");
    }

    #[test]
    fn write_run_writes_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let run = tiny();
        let t = Timings {
            policy: "binpack".into(),
            wall_seconds: 0.5,
            decisions: 2,
            decisions_per_second: 4.0,
        };
        write_run(&dir.path().join("x"), &run, &t).unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("x/report.json")).unwrap()).unwrap();
        assert_eq!(report["policy"], "binpack");
        assert_eq!(report["metrics"]["placements"], 2);
        assert_eq!(report["scorers"][0][0], "most-allocated");
        assert!(report.get("wall_seconds").is_none());
        assert!(dir.path().join("x/timeseries.csv").is_file());
        assert!(dir.path().join("x/timings.json").is_file());
    }
}
