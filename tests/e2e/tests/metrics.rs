//! The Prometheus endpoint of a real agent: cAdvisor's series for running containers with
//! plausible values (a busy loop's CPU time grows by about its CPU share, a 32 MiB tmpfs file
//! shows in the working set), the agent's own series (containers by status, gRPC calls by
//! method and status), and `promtool check metrics` accepting the exposition.

#![allow(clippy::unwrap_used)] // test code

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mini_e2e::{require_root, stderr, Node};

fn scrape(addr: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// The value of the series `name{labels...}` whose labels contain `has`.
fn value(body: &str, name: &str, has: &str) -> Option<f64> {
    body.lines()
        .filter(|l| {
            (l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
                && l.contains(has)
        })
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn prometheus_endpoint_reports_containers_and_the_agent() {
    require_root!();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let addr = format!("127.0.0.1:{port}");
    let n = Node::start_with(vec!["--metrics-listen".into(), addr.clone()]);
    let busy = n.start_load();
    // A failing call, to be counted with its status.
    assert!(!n.ctl(&["inspect", "nosuch"]).status.success());

    let (head, body) = scrape(&addr);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let busy_l = format!("id=\"{busy}\",name=\"busy\",image=\"busybox\"");
    assert!(
        body.contains(&format!("container_cpu_usage_seconds_total{{{busy_l}}}")),
        "{body}"
    );
    assert_eq!(
        value(&body, "minid_containers", "status=\"running\""),
        Some(2.0)
    );
    assert!(
        value(
            &body,
            "minid_grpc_requests_total",
            "method=\"/mini.v1.ContainerService/Create\",code=\"OK\""
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{body}"
    );
    assert_eq!(
        value(
            &body,
            "minid_grpc_requests_total",
            "method=\"/mini.v1.ContainerService/Inspect\",code=\"NotFound\""
        ),
        Some(1.0),
        "{body}"
    );
    assert!(body.contains("minid_grpc_request_duration_seconds_bucket{method=\"/mini.v1.ContainerService/Create\",le=\"+Inf\"}"));
    let expiry = value(&body, "minid_tls_certificate_expiry_timestamp_seconds", "").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now,
        "certificate expiry {expiry} is not in the future"
    );

    // The 32 MiB in tmpfs is in the working set (it cannot be reclaimed as file cache).
    let mut ws = 0.0;
    n.until(Duration::from_secs(10), "the tmpfs fill to show", || {
        let (_, b) = scrape(&addr);
        ws = value(&b, "container_memory_working_set_bytes", "name=\"mem\"").unwrap_or(0.0);
        ws >= 32.0 * 1048576.0
    });
    assert!(ws < 128.0 * 1048576.0, "{ws}");
    assert_eq!(
        value(&body, "container_spec_memory_limit_bytes", "name=\"mem\""),
        Some(128.0 * 1048576.0)
    );

    // The busy loop under --cpus 0.5 gains about half a second of CPU per second.
    let (_, b1) = scrape(&addr);
    let t1 = Instant::now();
    let c1 = value(&b1, "container_cpu_usage_seconds_total", "name=\"busy\"").unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let (_, b2) = scrape(&addr);
    let elapsed = t1.elapsed().as_secs_f64();
    let c2 = value(&b2, "container_cpu_usage_seconds_total", "name=\"busy\"").unwrap();
    let rate = (c2 - c1) / elapsed;
    assert!(
        (0.2..=0.6).contains(&rate),
        "CPU rate {rate} (want about 0.5)"
    );

    // promtool, Prometheus' own checker, accepts the exposition.
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (the prometheus package; tests/setup installs it)");
    p.stdin.take().unwrap().write_all(b2.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    // Other paths and methods.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
}
