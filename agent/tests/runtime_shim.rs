//! The shim hands over to a lean monitor image once the container is set up: `minid-monitor`
//! beside the `minid` binary, or `minid shim-monitor` when that is not installed. Either way
//! the container's output keeps reaching its log and its exit is recorded.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{need_root, unique_id, Bundle, ContainerGuard, Runtime};

fn wait_for_exit(rt: &Runtime, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = rt.read_json(id, "exit.json") {
            return v;
        }
        assert!(Instant::now() < deadline, "{id}: no exit record");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Creates and starts a container that prints, waits for `go` to appear, prints and exits 9;
/// returns its monitor's command line while it runs, then its log and exit record.
fn run_through_monitor(minid: &Path, tag: &str) -> (String, Vec<u8>, serde_json::Value) {
    let rt = Runtime::new();
    let id = unique_id(tag);
    let b =
        Bundle::sh("echo before; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after; exit 9");
    let log = b.path().join("c.log");
    let status = std::process::Command::new(minid)
        .arg("runtime")
        .arg("--root")
        .arg(rt.root.path())
        .args(["create", "--bundle"])
        .arg(b.path())
        .arg("--container-log")
        .arg(&log)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn create");
    let _guard = ContainerGuard::new(&rt, &id);
    assert!(status.success(), "create: {status}");
    rt.ok(&["start", &id]);
    let shim = rt.read_json(&id, "state.json").expect("state")["shim_pid"]
        .as_i64()
        .expect("shim pid");
    // The handover happens once the container has run for a moment (a quarter second): wait
    // for the new image (its command line reads empty while the exec is under way).
    let deadline = Instant::now() + Duration::from_secs(5);
    let cmdline = loop {
        let raw = std::fs::read(format!("/proc/{shim}/cmdline")).expect("shim cmdline");
        let c = String::from_utf8_lossy(&raw).replace('\0', " ");
        if !c.is_empty() && !c.contains(" shim ") {
            break c;
        }
        assert!(Instant::now() < deadline, "the shim never handed over: {c}");
        std::thread::sleep(Duration::from_millis(10));
    };
    std::fs::write(b.rootfs().join("tmp/go"), b"").expect("release the container");
    let exit = wait_for_exit(&rt, &id);
    let text = std::fs::read(&log).expect("log");
    let bytes: Vec<u8> = minid::shim::log::parse(&text)
        .into_iter()
        .flat_map(|(_, b)| b)
        .collect();
    rt.ok(&["delete", &id]);
    (cmdline, bytes, exit)
}

#[test]
fn shim_continues_in_the_lean_monitor_binary() {
    if !need_root("containers") {
        return;
    }
    let minid = Path::new(common::minid());
    assert!(
        minid.with_file_name("minid-monitor").is_file(),
        "cargo builds minid-monitor beside minid"
    );
    let (cmdline, out, exit) = run_through_monitor(minid, "lean");
    assert!(cmdline.starts_with("minid-monitor "), "{cmdline}");
    assert_eq!(out, b"before\nafter\n");
    assert_eq!(exit["status"], 9, "{exit}");
}

#[test]
fn without_the_monitor_binary_the_shim_reexecs_itself() {
    if !need_root("containers") {
        return;
    }
    // A copy of minid alone in a directory: no minid-monitor beside it.
    let dir = tempfile::tempdir().expect("tempdir");
    let alone = dir.path().join("minid");
    std::fs::copy(common::minid(), &alone).expect("copy minid");
    let (cmdline, out, exit) = run_through_monitor(&alone, "self");
    assert!(cmdline.starts_with("minid shim-monitor "), "{cmdline}");
    assert_eq!(out, b"before\nafter\n");
    assert_eq!(exit["status"], 9, "{exit}");
}
