//! The Alibaba GPU cluster trace v2023 ("OpenB", Weng et al., ATC'23) CSV files.
//!
//! Nodes: `sn,cpu_milli,memory_mib,gpu,model` (CPU-only nodes have an empty model).
//! Pods: `name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,
//! deletion_time,scheduled_time`, or only the first five columns (the `multigpu50` file): then
//! every pod arrives at 0 and never leaves. `gpu_spec` lists allowed GPU models separated by
//! `|`. A pod arrives at `creation_time` and, once placed, runs for
//! `deletion_time - creation_time` (its lifetime in the trace; `scheduled_time` is empty for
//! the trace's pending pods, so it is not used); an empty `deletion_time` means it never leaves.
//! `qos` and `pod_phase` are read but not used: every pod is offered to the scheduler.
//!
//! The files have no quoting, so fields are split on commas by hand rather than with the
//! `csv` crate; a line with a quote character is reported malformed rather than misread.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::{LoadOptions, Loaded, Malformed, TaskSpec, TraceError};
use crate::policy::{Node, Task, GPU_MILLI};

const NODE_HEADER: &str = "sn,cpu_milli,memory_mib,gpu,model";
const POD_HEADER: &str =
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time";
const POD_HEADER_SHORT: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli";

/// Reads an OpenB node list file.
pub fn load_nodes(path: &Path, opts: LoadOptions) -> Result<Loaded<Node>, TraceError> {
    let f = File::open(path).map_err(|source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_nodes(BufReader::new(f), path, opts)
}

/// Reads an OpenB pod list file.
pub fn load_pods(path: &Path, opts: LoadOptions) -> Result<Loaded<TaskSpec>, TraceError> {
    let f = File::open(path).map_err(|source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    read_pods(BufReader::new(f), path, opts)
}

/// Reads a node list from any reader; `path` names it in messages.
pub fn read_nodes(
    r: impl Read,
    path: &Path,
    opts: LoadOptions,
) -> Result<Loaded<Node>, TraceError> {
    read_lines(r, path, opts, &[NODE_HEADER], |_, f| parse_node(f))
}

/// Reads a pod list from any reader; `path` names it in messages.
pub fn read_pods(
    r: impl Read,
    path: &Path,
    opts: LoadOptions,
) -> Result<Loaded<TaskSpec>, TraceError> {
    read_lines(r, path, opts, &[POD_HEADER, POD_HEADER_SHORT], |h, f| {
        parse_pod(f, h == POD_HEADER)
    })
}

/// Shared line loop: checks the header against `headers`, splits lines, hands fields to
/// `parse` with the matched header, and applies the skip-or-fail policy.
fn read_lines<T>(
    r: impl Read,
    path: &Path,
    opts: LoadOptions,
    headers: &[&'static str],
    parse: impl Fn(&'static str, &[&str]) -> Result<T, String>,
) -> Result<Loaded<T>, TraceError> {
    let io = |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut header: Option<&'static str> = None;
    let mut out = Loaded {
        items: Vec::new(),
        malformed: Vec::new(),
    };
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(io)? == 0 {
            break;
        }
        line_no += 1;
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']);
        let Some(h) = header else {
            let found = line.trim_start_matches('\u{feff}');
            header = Some(
                headers
                    .iter()
                    .copied()
                    .find(|h| *h == found)
                    .ok_or_else(|| TraceError::Header {
                        path: path.to_path_buf(),
                        found: found.to_string(),
                        expected: headers.join(" or "),
                    })?,
            );
            continue;
        };
        if line.trim().is_empty() {
            continue;
        }
        let result = if line.contains('\u{fffd}') {
            Err("not valid UTF-8".to_string())
        } else if line.contains('"') {
            Err("quoted fields are not supported".to_string())
        } else {
            let fields: Vec<&str> = line.split(',').collect();
            let want = h.split(',').count();
            if fields.len() != want {
                Err(format!("expected {want} fields, found {}", fields.len()))
            } else {
                parse(h, &fields)
            }
        };
        match result {
            Ok(item) => out.items.push(item),
            Err(reason) => {
                let m = Malformed {
                    path: path.to_path_buf(),
                    line: line_no,
                    reason,
                };
                if opts.strict {
                    return Err(TraceError::Malformed(m));
                }
                out.malformed.push(m);
            }
        }
    }
    if header.is_none() {
        return Err(TraceError::Header {
            path: path.to_path_buf(),
            found: String::new(),
            expected: headers.join(" or "),
        });
    }
    Ok(out)
}

fn num<T: std::str::FromStr>(field: &str, name: &str) -> Result<T, String> {
    field
        .trim()
        .parse()
        .map_err(|_| format!("{name}: {field:?} is not a non-negative integer"))
}

fn parse_node(f: &[&str]) -> Result<Node, String> {
    let name = f[0].trim();
    if name.is_empty() {
        return Err("sn: empty".to_string());
    }
    let cpu: u64 = num(f[1], "cpu_milli")?;
    let mem: u64 = num(f[2], "memory_mib")?;
    let gpus: u32 = num(f[3], "gpu")?;
    if gpus > 1024 {
        return Err(format!("gpu: {gpus} devices is implausible"));
    }
    let model = f[4].trim();
    Ok(Node::new(
        name,
        cpu,
        mem,
        gpus,
        (!model.is_empty()).then_some(model),
    ))
}

fn parse_pod(f: &[&str], timed: bool) -> Result<TaskSpec, String> {
    let name = f[0].trim();
    if name.is_empty() {
        return Err("name: empty".to_string());
    }
    let cpu: u64 = num(f[1], "cpu_milli")?;
    let mem: u64 = num(f[2], "memory_mib")?;
    let num_gpu: u32 = num(f[3], "num_gpu")?;
    let gpu_milli: u32 = num(f[4], "gpu_milli")?;
    if gpu_milli > GPU_MILLI {
        return Err(format!(
            "gpu_milli: {gpu_milli} is more than one GPU ({GPU_MILLI})"
        ));
    }
    if (num_gpu == 0) != (gpu_milli == 0) {
        return Err(format!(
            "num_gpu {num_gpu} and gpu_milli {gpu_milli}: both or neither must be 0"
        ));
    }
    let mut task = Task::new(name, cpu, mem).with_gpus(num_gpu, gpu_milli);
    if !timed {
        return Ok(TaskSpec {
            task,
            arrival: 0,
            duration: None,
        });
    }
    task.gpu_models = f[5]
        .split('|')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect();
    let arrival: u64 = num(f[8], "creation_time")?;
    let duration = match f[9].trim() {
        "" => None,
        d => {
            let del: u64 = num(d, "deletion_time")?;
            if del < arrival {
                return Err(format!(
                    "deletion_time {del} is before creation_time {arrival}"
                ));
            }
            Some(del - arrival)
        }
    };
    Ok(TaskSpec {
        task,
        arrival,
        duration,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared traces: beside the repository (`../shared/traces`, as CI lays them out)
    /// or at the workplace's absolute path.
    fn traces() -> Option<std::path::PathBuf> {
        let beside =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces/alibaba-gpu-v2023");
        let found = [beside, "/work/shared/traces/alibaba-gpu-v2023".into()]
            .into_iter()
            .find(|p| p.is_dir());
        if found.is_none() {
            println!("skipping: shared/traces/alibaba-gpu-v2023 not found beside the repository");
        }
        found
    }

    #[test]
    fn real_openb_files_load_completely() {
        let Some(dir) = traces() else { return };
        let dir = dir.as_path();
        let strict = LoadOptions { strict: true };
        let nodes = load_nodes(&dir.join("openb_node_list_all_node.csv"), strict).unwrap();
        assert_eq!(nodes.items.len(), 1523);
        assert_eq!(
            nodes.items.iter().filter(|n| n.gpus.is_empty()).count(),
            310
        );
        assert_eq!(
            nodes
                .items
                .iter()
                .filter(|n| n.gpu_model.as_deref() == Some("G2"))
                .count(),
            549
        );
        assert_eq!(
            load_nodes(&dir.join("openb_node_list_gpu_node.csv"), strict)
                .unwrap()
                .items
                .len(),
            1213
        );

        let pods = load_pods(&dir.join("openb_pod_list_default.csv"), strict).unwrap();
        assert_eq!(pods.items.len(), 8152);
        assert!(pods.malformed.is_empty());
        let p0 = &pods.items[0];
        assert_eq!(
            (p0.task.name.as_str(), p0.task.cpu_milli, p0.task.memory_mib),
            ("openb-pod-0000", 12000, 16384)
        );
        assert_eq!(
            (p0.task.num_gpu, p0.task.gpu_milli, p0.arrival, p0.duration),
            (1, 1000, 0, Some(12537496))
        );
        assert_eq!(
            pods.items.iter().filter(|p| p.task.num_gpu == 0).count(),
            1088
        );

        let spec = load_pods(&dir.join("openb_pod_list_gpuspec33.csv"), strict).unwrap();
        let p9 = spec
            .items
            .iter()
            .find(|p| p.task.name == "openb-pod-0009")
            .unwrap();
        assert_eq!(
            p9.task.gpu_models,
            vec!["V100M16".to_string(), "V100M32".to_string()]
        );

        let multi = load_pods(&dir.join("openb_pod_list_multigpu50.csv"), strict).unwrap();
        assert_eq!(multi.items.len(), 9061);
        assert!(multi
            .items
            .iter()
            .all(|p| p.arrival == 0 && p.duration.is_none()));
    }

    const NODES: &str = "sn,cpu_milli,memory_mib,gpu,model\n\
        n0,32000,262144,0,\n\
        n1,abc,262144,0,\n\
        n2,64000,262144,2,P100\n\
        n3,64000,262144\n";

    #[test]
    fn node_fixture_skips_and_counts_bad_lines() {
        let p = Path::new("fixture/nodes.csv");
        let got = read_nodes(NODES.as_bytes(), p, LoadOptions::default()).unwrap();
        assert_eq!(
            got.items
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>(),
            ["n0", "n2"]
        );
        assert_eq!(got.items[1].gpus, vec![0, 0]);
        assert_eq!(
            got.items[1].labels.get("gpu.model").map(String::as_str),
            Some("P100")
        );
        let lines: Vec<String> = got.malformed.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            lines,
            [
                "fixture/nodes.csv:3: cpu_milli: \"abc\" is not a non-negative integer",
                "fixture/nodes.csv:5: expected 5 fields, found 3",
            ]
        );
    }

    #[test]
    fn strict_fails_on_the_first_bad_line() {
        let p = Path::new("fixture/nodes.csv");
        let err = read_nodes(NODES.as_bytes(), p, LoadOptions { strict: true }).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed trace line fixture/nodes.csv:3: cpu_milli: \"abc\" is not a non-negative integer"
        );
    }

    #[test]
    fn pod_fixture_bad_lines() {
        let text = format!(
            "{POD_HEADER}\r\n\
             a,1000,1024,1,500,T4|V100,LS,Running,10,70,10\r\n\
             b,1000,1024,1,1500,,LS,Running,10,70,10\r\n\
             c,1000,1024,0,500,,LS,Running,10,70,10\r\n\
             d,1000,1024,0,0,,LS,Running,10,5,10\r\n\
             e,1000,1024,0,0,,LS,Pending,10,,\r\n\
             \"f\",1000,1024,0,0,,LS,Running,10,70,10\r\n\
             g,-5,1024,0,0,,LS,Running,10,70,10\r\n"
        );
        let mut bytes = text.into_bytes();
        bytes.extend_from_slice(b"h,1000,1024,0,0,,L\xffS,Running,10,70,10\n");
        let got = read_pods(bytes.as_slice(), Path::new("p.csv"), LoadOptions::default()).unwrap();
        assert_eq!(got.items.len(), 2);
        assert_eq!(got.items[0].task.gpu_models, ["T4", "V100"]);
        assert_eq!(
            (got.items[0].arrival, got.items[0].duration),
            (10, Some(60))
        );
        assert_eq!(
            (got.items[1].task.name.as_str(), got.items[1].duration),
            ("e", None)
        );
        let lines: Vec<u64> = got.malformed.iter().map(|m| m.line).collect();
        assert_eq!(lines, [3, 4, 5, 7, 8, 9]);
        assert_eq!(
            got.malformed[0].reason,
            "gpu_milli: 1500 is more than one GPU (1000)"
        );
        assert_eq!(
            got.malformed[2].reason,
            "deletion_time 5 is before creation_time 10"
        );
        assert_eq!(got.malformed[5].reason, "not valid UTF-8");
    }

    #[test]
    fn headers_and_missing_files_are_errors() {
        let e = read_pods(
            "x,y\n1,2\n".as_bytes(),
            Path::new("p.csv"),
            LoadOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, TraceError::Header { .. }), "{e}");
        let e = read_nodes("".as_bytes(), Path::new("n.csv"), LoadOptions::default()).unwrap_err();
        assert!(matches!(e, TraceError::Header { .. }), "{e}");
        let e = load_nodes(Path::new("/nonexistent/n.csv"), LoadOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("failed to read /nonexistent/n.csv: "),
            "{e}"
        );
        // Short-form pod files: everything arrives at 0 and stays.
        let got = read_pods(
            "name,cpu_milli,memory_mib,num_gpu,gpu_milli\nq,1,2,8,1000\n".as_bytes(),
            Path::new("m.csv"),
            LoadOptions::default(),
        )
        .unwrap();
        assert_eq!(
            (
                got.items[0].arrival,
                got.items[0].duration,
                got.items[0].task.num_gpu
            ),
            (0, None, 8)
        );
    }
}
