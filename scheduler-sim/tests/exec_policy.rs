//! `--policy exec:PROGRAM` end to end: the Python examples in examples/policies/ through
//! `minisim run` and `compare` on a small OpenB-format fixture (exact placements, byte-identical
//! reports), and misbehaving programs (shell scripts, so they need no Python) failing with a
//! clear error naming the program and the decision, never hanging.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> String {
    manifest()
        .join("tests/fixtures/exec")
        .join(name)
        .display()
        .to_string()
}

/// Runs minisim in the package directory (so `./examples/...` paths resolve).
fn minisim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_minisim"))
        .args(args)
        .current_dir(manifest())
        .output()
        .expect("run minisim")
}

fn python3() -> bool {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("skipping: python3 is not installed");
    }
    ok
}

fn run_args(policy: &str, out: &Path) -> Vec<String> {
    let (n, p) = (fixture("nodes.csv"), fixture("pods.csv"));
    let out = out.display().to_string();
    [
        "run",
        "--trace",
        "openb",
        "--nodes",
        &n,
        "--pods",
        &p,
        "--policy",
        policy,
        "--seed",
        "7",
        "--out",
        &out,
        "--placements",
    ]
    .map(str::to_string)
    .to_vec()
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "minisim failed: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn most_free_gpu_places_exactly_and_reports_are_byte_identical() {
    if !python3() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let policy = "exec:./examples/policies/most_free_gpu.py";
    ok(&minisim(&args(&run_args(policy, &a))));
    // p0 CPU-only → the GPU-less node; GPU tasks → most free milli-GPUs (p2 may only use a
    // T4); p4 does not fit on cpu-a (12 of 16 cores free) → the node with fewest GPUs; p7
    // arrives after p0 left → cpu-a again.
    assert_eq!(
        fs::read_to_string(a.join("placements.csv")).expect("placements.csv"),
        "task,node\np0,cpu-a\np1,g2-8\np2,t4-2\np3,g2-8\np4,t4-2\np5,v100-4\np6,g2-8\np7,cpu-a\n"
    );
    let report = fs::read_to_string(a.join("report.json")).expect("report.json");
    let v: serde_json::Value = serde_json::from_str(&report).expect("json");
    assert_eq!(v["policy"], "most_free_gpu.py");
    assert_eq!(v["program"], "./examples/policies/most_free_gpu.py");
    assert_eq!(v["metrics"]["placements"], 8);
    // Same program, inputs and seed: the same bytes.
    ok(&minisim(&args(&run_args(policy, &b))));
    for f in ["report.json", "timeseries.csv", "placements.csv"] {
        assert_eq!(
            fs::read(a.join(f)).expect("a"),
            fs::read(b.join(f)).expect("b"),
            "{f} differs between identical runs"
        );
    }
}

#[test]
fn exec_first_fit_matches_the_builtin_in_compare() {
    if !python3() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (n, p) = (fixture("nodes.csv"), fixture("pods.csv"));
    let out = dir.path().display().to_string();
    let o = minisim(&[
        "compare",
        "--policies",
        "first-fit,exec:./examples/policies/first_fit.py",
        "--trace",
        "openb",
        "--nodes",
        &n,
        "--pods",
        &p,
        "--out",
        &out,
        "--placements",
    ]);
    ok(&o);
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.lines().any(|l| l.starts_with("first-fit ")),
        "{table}"
    );
    assert!(
        table.lines().any(|l| l.starts_with("first_fit.py ")),
        "{table}"
    );
    let read = |d: &str, f: &str| fs::read_to_string(dir.path().join(d).join(f)).expect(f);
    assert_eq!(
        read("first-fit", "placements.csv"),
        read("first_fit.py", "placements.csv")
    );
    let metrics = |d: &str| {
        let v: serde_json::Value = serde_json::from_str(&read(d, "report.json")).expect("json");
        v["metrics"].clone()
    };
    assert_eq!(metrics("first-fit"), metrics("first_fit.py"));
}

/// A misbehaving "policy": a shell script run as `exec:sh SCRIPT`.
fn misbehave(dir: &Path, name: &str, script: &str) -> (Output, Duration, PathBuf) {
    let path = dir.join(name);
    fs::write(&path, script).expect("write script");
    let policy = format!("exec:sh {}", path.display());
    let mut a = run_args(&policy, &dir.join(format!("{name}.out")));
    a.extend(["--exec-timeout".to_string(), "0.5".to_string()]);
    let start = Instant::now();
    let o = minisim(&args(&a));
    (o, start.elapsed(), path)
}

#[test]
fn misbehaving_programs_fail_clearly_without_hanging() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "infeasible.sh",
            // Decision 1 has every node feasible; decision 2 (p1, a GPU task) not cpu-a (0).
            "read h; read r; echo '{\"node\":0}'; read r; echo '{\"node\":0}'; cat >/dev/null\n",
            "decision 2: answered node 0, which is not one of the 3 feasible nodes sent",
        ),
        (
            "garbage.sh",
            "read h; read r; echo 'I think node 2'; cat >/dev/null\n",
            "decision 1: malformed answer \"I think node 2\": not JSON",
        ),
        (
            "early.sh",
            "read h; read r; echo '{\"node\":null}'; exit 4\n",
            "decision 2: closed its stdout without answering (exit status: 4)",
        ),
        (
            "slow.sh",
            "read h; read r; exec sleep 30\n",
            "decision 1: no answer within 500ms",
        ),
    ];
    for (name, script, want) in cases {
        let (o, took, path) = misbehave(dir.path(), name, script);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{name} succeeded");
        let program = format!("policy program \"sh {}\", ", path.display());
        assert!(err.contains(&program), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(took < Duration::from_secs(10), "{name} took {took:?}");
        assert!(
            !dir.path().join(format!("{name}.out/report.json")).exists(),
            "{name}: no report after a failed run"
        );
    }
    // A program that cannot be started.
    let o = minisim(&args(&run_args(
        "exec:./examples/policies/no-such-policy",
        &dir.path().join("missing"),
    )));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("policy program \"./examples/policies/no-such-policy\": cannot start it"),
        "{err}"
    );
}
