//! The `minisim` binary end to end on trace files written by the test: byte-identical reports
//! for a seed, per-policy directories for `compare`, and malformed-line handling.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use minisim::rng::Rng;

const POD_HEADER: &str =
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time";

/// A seeded synthetic OpenB-format cluster (40 nodes) and workload (400 pods, some bad
/// lines appended by callers).
fn write_trace(dir: &Path) {
    let mut r = Rng::new(5);
    let mut nodes = String::from("sn,cpu_milli,memory_mib,gpu,model\n");
    for i in 0..40 {
        let (gpus, model) = match i % 4 {
            0 => (0, ""),
            1 => (2, "T4"),
            2 => (4, "V100"),
            _ => (8, "G2"),
        };
        let _ = writeln!(nodes, "node-{i},32000,131072,{gpus},{model}");
    }
    let mut pods = format!("{POD_HEADER}\n");
    for i in 0..400 {
        let (num_gpu, milli) = match r.below(4) {
            0 => (0, 0),
            1 => (1, 100 + 100 * r.below(9) as u32),
            2 => (1, 1000),
            _ => (1 + r.below(4) as u32, 1000),
        };
        let spec = if r.below(5) == 0 { "T4|V100" } else { "" };
        let arrival = i * 10 + r.below(10) as u64;
        let _ = writeln!(
            pods,
            "pod-{i},{},{},{num_gpu},{milli},{spec},LS,Running,{arrival},{},{arrival}",
            1000 * (1 + r.below(16)),
            1024 * (1 + r.below(64)),
            arrival + 50 + r.below(3000) as u64
        );
    }
    fs::write(dir.join("nodes.csv"), nodes).expect("write nodes.csv");
    fs::write(dir.join("pods.csv"), pods).expect("write pods.csv");
}

fn minisim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minisim"))
        .args(args)
        .output()
        .expect("run minisim")
}

fn run_args<'a>(dir: &'a str, policy: &'a str, seed: &'a str, out: &'a str) -> Vec<String> {
    [
        "run",
        "--trace",
        "openb",
        "--nodes",
        &format!("{dir}/nodes.csv"),
        "--pods",
        &format!("{dir}/pods.csv"),
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(
        ["--policy", policy, "--seed", seed, "--out", out]
            .iter()
            .map(|s| s.to_string()),
    )
    .collect()
}

fn run(args: Vec<String>) -> Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    minisim(&refs)
}

#[test]
fn same_seed_gives_byte_identical_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    write_trace(tmp.path());
    for policy in ["random", "p2c", "fgd"] {
        let outs: Vec<String> = (0..2).map(|k| format!("{d}/{policy}-{k}")).collect();
        for o in &outs {
            let r = run(run_args(d, policy, "11", o));
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            let stdout = String::from_utf8_lossy(&r.stdout);
            assert!(
                stdout.lines().nth(1).is_some_and(|l| l.starts_with(policy)),
                "{stdout}"
            );
        }
        for f in [
            "report.json",
            "timeseries.csv",
            "allocation.svg",
            "tasks.svg",
            "gpu_fragmentation.svg",
        ] {
            let a = fs::read(format!("{}/{f}", outs[0])).unwrap();
            let b = fs::read(format!("{}/{f}", outs[1])).unwrap();
            assert!(!a.is_empty());
            assert!(
                a == b,
                "{policy}: {f} differs between two runs with the same seed"
            );
        }
        let t: serde_json::Value =
            serde_json::from_slice(&fs::read(format!("{}/timings.json", outs[0])).unwrap())
                .unwrap();
        assert!(t["wall_seconds"].as_f64().is_some());
    }
    // A different seed changes the random policy's placements, visible in the time series.
    let other = format!("{d}/random-seed12");
    assert!(run(run_args(d, "random", "12", &other)).status.success());
    let a = fs::read(format!("{d}/random-0/timeseries.csv")).unwrap();
    let b = fs::read(format!("{other}/timeseries.csv")).unwrap();
    assert_ne!(a, b, "seed 11 and 12 produced the same random placements");
}

#[test]
fn compare_writes_one_directory_per_policy_and_names_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    write_trace(tmp.path());
    let out = format!("{d}/cmp");
    let r = minisim(&[
        "compare",
        "--policies",
        "first-fit,binpack,spread,fgd",
        "--trace",
        "openb",
        "--nodes",
        &format!("{d}/nodes.csv"),
        "--pods",
        &format!("{d}/pods.csv"),
        "--seed",
        "1",
        "--out",
        &out,
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = String::from_utf8_lossy(&r.stdout);
    let first_col: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        &first_col[..5],
        ["policy", "first-fit", "binpack", "spread", "fgd"],
        "{stdout}"
    );
    for p in ["first-fit", "binpack", "spread", "fgd"] {
        let rep: serde_json::Value =
            serde_json::from_slice(&fs::read(format!("{out}/{p}/report.json")).unwrap()).unwrap();
        assert_eq!(rep["policy"], p);
        assert_eq!(rep["metrics"]["tasks"], 400);
    }
    // The side-by-side plots: one line and one legend entry per policy.
    for f in [
        "cpu",
        "memory",
        "pending",
        "nodes_in_use",
        "gpu",
        "gpu_fragmented",
    ] {
        let svg = fs::read_to_string(format!("{out}/{f}.svg")).unwrap();
        assert!(
            svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"),
            "{f}"
        );
        assert_eq!(svg.matches("<polyline").count(), 4, "{f}");
        for p in ["first-fit", "binpack", "spread", "fgd"] {
            assert!(svg.contains(&format!(">{p}</text>")), "{f} lacks {p}");
        }
    }
}

#[test]
fn malformed_lines_are_skipped_and_counted_or_fatal_with_strict() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    write_trace(tmp.path());
    let mut pods = fs::read_to_string(tmp.path().join("pods.csv")).unwrap();
    pods.push_str("bad-1,lots,1024,0,0,,LS,Running,5,10,5\nbad-2,1000\n");
    fs::write(tmp.path().join("pods.csv"), pods).unwrap();

    let out = format!("{d}/lenient");
    let r = run(run_args(d, "binpack", "1", &out));
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains(&format!("skipped {d}/pods.csv:402: cpu_milli: \"lots\"")),
        "{stderr}"
    );
    let rep: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{out}/report.json")).unwrap()).unwrap();
    assert_eq!(rep["malformed_lines"], 2);
    assert_eq!(rep["metrics"]["tasks"], 400);

    let mut strict = run_args(d, "binpack", "1", &format!("{d}/strict"));
    strict.push("--strict".into());
    let r = run(strict);
    assert_eq!(r.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(
        stderr.contains(&format!("{d}/pods.csv:402: cpu_milli")),
        "{stderr}"
    );
    assert!(!Path::new(&format!("{d}/strict")).exists());

    let r = minisim(&[
        "run",
        "--trace",
        "openb",
        "--nodes",
        "/nonexistent.csv",
        "--pods",
        "x",
        "--policy",
        "binpack",
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("failed to read /nonexistent.csv"));
}

#[test]
fn synthetic_runs_fill_and_failures_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    // Synthetic replay with a rate of failures: byte-identical for the same spec and seed.
    for k in 0..2 {
        let r = minisim(&[
            "run",
            "--synthetic",
            "nodes=30,tasks=400,seed=7,duration=600",
            "--policy",
            "fgd",
            "--fail-rate",
            "per_node_per_hour=1,for=300",
            "--seed",
            "2",
            "--out",
            &format!("{d}/syn-{k}"),
        ]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
    let a = fs::read(format!("{d}/syn-0/report.json")).unwrap();
    assert_eq!(a, fs::read(format!("{d}/syn-1/report.json")).unwrap());
    let rep: serde_json::Value = serde_json::from_slice(&a).unwrap();
    assert_eq!(rep["inputs"]["trace"], "synthetic");
    assert_eq!(rep["metrics"]["tasks"], 400);
    assert!(
        rep["metrics"]["node_failures"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{rep}"
    );
    let ts = fs::read_to_string(format!("{d}/syn-0/timeseries.csv")).unwrap();
    assert!(ts.starts_with("time,cpu_alloc,mem_alloc,gpu_alloc,nodes_in_use,running,pending,gpu_unallocated,gpu_fragmented\n"));

    // Fill mode writes fill.csv and fill.json with rows at each 10% of offered load.
    let r = minisim(&[
        "run",
        "--synthetic",
        "nodes=20,tasks=200,seed=1",
        "--policy",
        "fgd",
        "--fill",
        "--fill-failures",
        "20",
        "--out",
        &format!("{d}/fill"),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let csv = fs::read_to_string(format!("{d}/fill/fill.csv")).unwrap();
    assert!(csv.starts_with("offered,drawn,placed,failed"), "{csv}");
    let svg = fs::read_to_string(format!("{d}/fill/fill.svg")).unwrap();
    assert!(svg.contains("offered load (% of"), "{svg}");
    assert!(
        csv.lines().nth(1).is_some_and(|l| l.starts_with("0.1")),
        "{csv}"
    );
    assert!(csv.lines().count() >= 6, "{csv}");
    let j: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{d}/fill/fill.json")).unwrap()).unwrap();
    assert_eq!(j["basis"], "gpu");

    // An explicit failure names a node; an unknown name is a clear error.
    let r = minisim(&[
        "run",
        "--synthetic",
        "nodes=3,tasks=10,seed=1",
        "--policy",
        "binpack",
        "--fail",
        "node=nope,at=5",
    ]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("no node named \"nope\""));
}

#[test]
fn compact_reports_the_fewest_nodes_per_policy_repeatably() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    write_trace(tmp.path());
    let nodes = format!("{d}/nodes.csv");
    let pods = format!("{d}/pods.csv");
    let compact = |out: &str, snapshot: &str| {
        minisim(&[
            "compact",
            "--policies",
            "binpack,spread",
            "--snapshot",
            snapshot,
            "--trace",
            "openb",
            "--nodes",
            &nodes,
            "--pods",
            &pods,
            "--seed",
            "4",
            "--out",
            out,
        ])
    };
    let r = compact(&format!("{d}/a"), "500");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(stdout.starts_with("compaction of "), "{stdout}");
    let first_col: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(&first_col[..3], ["policy", "binpack", "spread"], "{stdout}");
    let rep: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{d}/a/binpack/compact.json")).unwrap()).unwrap();
    assert_eq!(rep["fits_all"], true);
    assert_eq!(rep["permutations"], 11);
    assert_eq!(rep["per_permutation"].as_array().unwrap().len(), 11);
    let (min, max) = (rep["min"].as_u64().unwrap(), rep["max"].as_u64().unwrap());
    assert!(0 < min && min <= max && max < 40, "{rep}");
    // The same seed gives the same bytes.
    assert!(compact(&format!("{d}/b"), "500").status.success());
    for p in ["binpack", "spread"] {
        assert_eq!(
            fs::read(format!("{d}/a/{p}/compact.json")).unwrap(),
            fs::read(format!("{d}/b/{p}/compact.json")).unwrap()
        );
    }
    // A snapshot that cannot fit is said so, not searched.
    let r = compact(&format!("{d}/c"), "all");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let rep: serde_json::Value =
        serde_json::from_slice(&fs::read(format!("{d}/c/binpack/compact.json")).unwrap()).unwrap();
    assert_eq!(rep["tasks"], 400);
    assert_eq!(rep["fits_all"], false, "{rep}");
    assert!(rep["median"].is_null());
    // Flags that do not apply are refused.
    let r = minisim(&[
        "compact",
        "--policies",
        "binpack",
        "--synthetic",
        "nodes=5,tasks=10,seed=1",
        "--fail-rate",
        "per_node_per_hour=1",
    ]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("do not apply"));
}
