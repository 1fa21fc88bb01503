//! Alibaba cluster-trace-v2018 `machine_meta.csv`: the machines of the cluster.
//!
//! Columns (no header; a first line equal to the column names is skipped):
//! `machine_id,time_stamp,failure_domain_1,failure_domain_2,cpu_num,mem_size,status`.
//! A machine has one row per observation over time (seconds from the start of the trace).
//!
//! One [`Node`] per `machine_id`, in order of first appearance, named by it. Its capacity is
//! the latest row's (largest `time_stamp`, the later line on a tie): `cpu_num` cores become
//! `cpu_num * 1000` millicores; `mem_size` is normalised to 0–100 (100 = the largest machine)
//! and becomes `mem_size / 100 * Alibaba2018Config::memory_mib_per_100` MiB. The trace does not
//! publish the real size; the default, 512 GiB for 100, is an assumption to override when it
//! matters. The failure domains become the labels `failure_domain_1` and `failure_domain_2`
//! (for spreading over them).
//!
//! Status `USING` is up, anything else (e.g. `IMPORT_INSTALLING`) is down. The state at time 0
//! is [`Node::ready`]; later changes, and machines appearing after 0, become
//! [`NodeEvent`](super::cluster::NodeEvent)s (see [`Cluster`]).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::cluster::{timeline, Cluster};
use super::lines::{fraction, int, open, read_records, scale, Layout};
use super::{LoadOptions, Loaded, TraceError};
use crate::policy::Node;

const LAYOUT: Layout = Layout {
    fields: 7,
    header: Some("machine_id,time_stamp,failure_domain_1,failure_domain_2,cpu_num,mem_size,status"),
};

/// Scale for the normalised memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alibaba2018Config {
    /// MiB that `mem_size = 100` stands for.
    pub memory_mib_per_100: u64,
}

impl Default for Alibaba2018Config {
    fn default() -> Self {
        Self {
            memory_mib_per_100: 512 * 1024,
        }
    }
}

/// One row of `machine_meta`.
#[derive(Clone, Debug, PartialEq)]
pub struct MachineMeta {
    pub machine_id: String,
    pub time: u64,
    pub failure_domain_1: String,
    pub failure_domain_2: String,
    pub cpu_num: u32,
    /// 0–100.
    pub mem_size: f64,
    pub status: String,
}

impl MachineMeta {
    pub fn up(&self) -> bool {
        self.status == "USING"
    }
}

/// Reads the rows of a `machine_meta` file (plain or gzip).
pub fn load_rows(path: &Path, opts: LoadOptions) -> Result<Loaded<MachineMeta>, TraceError> {
    read_rows(open(path)?, path, opts)
}

/// Reads `machine_meta` rows from any reader; `path` names it in messages.
pub fn read_rows(
    r: impl Read,
    path: &Path,
    opts: LoadOptions,
) -> Result<Loaded<MachineMeta>, TraceError> {
    read_records(r, path, opts, &LAYOUT, parse)
}

/// Reads a `machine_meta` file into nodes and their up/down events.
pub fn load_cluster(
    path: &Path,
    opts: LoadOptions,
    cfg: Alibaba2018Config,
) -> Result<Cluster, TraceError> {
    Ok(to_cluster(load_rows(path, opts)?, cfg))
}

/// Reads `machine_meta` from any reader into nodes and events.
pub fn read_cluster(
    r: impl Read,
    path: &Path,
    opts: LoadOptions,
    cfg: Alibaba2018Config,
) -> Result<Cluster, TraceError> {
    Ok(to_cluster(read_rows(r, path, opts)?, cfg))
}

/// Groups rows by machine (see the module documentation).
pub fn to_cluster(rows: Loaded<MachineMeta>, cfg: Alibaba2018Config) -> Cluster {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut machines: Vec<Vec<&MachineMeta>> = Vec::new();
    for row in &rows.items {
        let i = *index.entry(row.machine_id.as_str()).or_insert_with(|| {
            machines.push(Vec::new());
            machines.len() - 1
        });
        machines[i].push(row);
    }
    let mut nodes = Vec::with_capacity(machines.len());
    let mut events = Vec::new();
    for mut obs in machines {
        // Stable: rows with equal times keep file order, so the last one is the latest.
        obs.sort_by_key(|r| r.time);
        let Some(last) = obs.last() else { continue };
        let states: Vec<(u64, bool)> = obs.iter().map(|r| (r.time, r.up())).collect();
        let mut node = Node::new(
            last.machine_id.as_str(),
            u64::from(last.cpu_num) * 1000,
            scale(last.mem_size / 100.0, cfg.memory_mib_per_100),
            0,
            None,
        )
        .with_label("failure_domain_1", &last.failure_domain_1)
        .with_label("failure_domain_2", &last.failure_domain_2);
        node.ready = timeline(&last.machine_id, &states, &mut events);
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

fn parse(f: &[&str]) -> Result<MachineMeta, String> {
    if f[0].is_empty() {
        return Err("machine_id: empty".to_string());
    }
    let cpu_num: u32 = int(f[4], "cpu_num")?;
    if cpu_num > 100_000 {
        return Err(format!("cpu_num: {cpu_num} cores is implausible"));
    }
    if f[6].is_empty() {
        return Err("status: empty".to_string());
    }
    Ok(MachineMeta {
        machine_id: f[0].to_string(),
        time: int(f[1], "time_stamp")?,
        failure_domain_1: f[2].to_string(),
        failure_domain_2: f[3].to_string(),
        cpu_num,
        mem_size: fraction(f[5], "mem_size", 100.0)?,
        status: f[6].to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::lines::testing::shared_traces;

    #[test]
    fn real_machine_meta_loads_completely() {
        let Some(dir) = shared_traces("alibaba-v2018") else {
            return;
        };
        let path = dir.join("machine_meta.csv");
        let strict = LoadOptions { strict: true };
        let rows = load_rows(&path, strict).unwrap();
        assert_eq!(rows.items.len(), 17_592);
        let c = load_cluster(&path, strict, Alibaba2018Config::default()).unwrap();
        let nodes = &c.nodes.items;
        assert_eq!(nodes.len(), 4034);
        assert!(c.nodes.malformed.is_empty());
        assert_eq!(nodes[0].name, "m_1");
        assert_eq!(
            (nodes[0].capacity.cpu_milli, nodes[0].capacity.memory_mib),
            (96_000, 512 * 1024)
        );
        assert_eq!(
            nodes[0].labels.get("failure_domain_1").map(String::as_str),
            Some("219")
        );
        // 3,887 machines are USING at time 0; 147 appear later, all USING except m_2739
        // (IMPORT_INSTALLING throughout), so 146 come up during the trace.
        assert_eq!(nodes.iter().filter(|n| n.ready).count(), 3887);
        assert_eq!(c.events.len(), 146);
        assert!(c.events.iter().all(|e| e.up));
        assert_eq!(
            (c.events[0].time, c.events[0].node.as_str()),
            (185, "m_1509")
        );
        let m2739 = nodes.iter().find(|n| n.name == "m_2739").unwrap();
        assert!(!m2739.ready);
        assert!(c.events.iter().all(|e| e.node != "m_2739"));
    }

    #[test]
    fn fixture_grouping_scaling_events_and_bad_lines() {
        let text = "m_1,0,1,2,96,100,USING\n\
                    m_2,0,1,3,64,50,USING\n\
                    m_1,10,1,2,96,100,IMPORT_INSTALLING\n\
                    m_2,5,1,3,x,50,USING\n\
                    m_3,20,4,5,32,25.5,USING\n\
                    m_1,30,1,2,128,100,USING\n\
                    m_2,7,1,3,64,101,USING\n\
                    m_2,8,1,3,64,50\n\
                    ,9,1,3,64,50,USING\n";
        let p = Path::new("fixture/machine_meta.csv");
        let cfg = Alibaba2018Config {
            memory_mib_per_100: 1000,
        };
        let c = read_cluster(text.as_bytes(), p, LoadOptions::default(), cfg).unwrap();
        let n = &c.nodes.items;
        let names: Vec<&str> = n.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["m_1", "m_2", "m_3"]);
        // Latest row's capacity.
        assert_eq!(
            (n[0].capacity.cpu_milli, n[0].capacity.memory_mib),
            (128_000, 1000)
        );
        assert_eq!(n[1].capacity.memory_mib, 500);
        assert_eq!(n[2].capacity.memory_mib, 255);
        assert_eq!(
            n.iter().map(|n| n.ready).collect::<Vec<_>>(),
            [true, true, false]
        );
        let ev: Vec<(u64, &str, bool)> = c
            .events
            .iter()
            .map(|e| (e.time, e.node.as_str(), e.up))
            .collect();
        assert_eq!(
            ev,
            [(10, "m_1", false), (20, "m_3", true), (30, "m_1", true)]
        );
        let bad: Vec<String> = c.nodes.malformed.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            bad,
            [
                "fixture/machine_meta.csv:4: cpu_num: \"x\" is not a non-negative integer",
                "fixture/machine_meta.csv:7: mem_size: \"101\" is not a number in 0..=100",
                "fixture/machine_meta.csv:8: expected 7 fields, found 6",
                "fixture/machine_meta.csv:9: machine_id: empty",
            ]
        );
        let e = read_cluster(text.as_bytes(), p, LoadOptions { strict: true }, cfg).unwrap_err();
        assert_eq!(
            e.to_string(),
            "malformed trace line fixture/machine_meta.csv:4: cpu_num: \"x\" is not a non-negative integer"
        );
        let e = read_rows("".as_bytes(), p, LoadOptions::default()).unwrap_err();
        assert!(matches!(e, TraceError::Io { .. }), "{e}");
        let e = load_rows(Path::new("/nonexistent/mm.csv"), LoadOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("failed to read /nonexistent/mm.csv: "),
            "{e}"
        );
    }
}
