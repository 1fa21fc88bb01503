//! minid's CPU cost of telemetry with 100 containers (release build, root):
//! `tests/bench/telemetry-bench` (or `cargo bench -p mini-e2e --bench telemetry` after
//! `cargo build --release -p minid -p minictl`).
//!
//! Starts a private agent (127.0.0.1, temporary state, no bridge: the containers are 100
//! `sleep`s with `--network none`) whose OTLP exporter sends to a real OTLP/gRPC receiver in
//! this process, then measures the agent's CPU time (utime + stime from /proc/PID/stat) over
//! a window with the exporter at a 10 s interval, and over the same window for an agent with
//! no exporter, as the baseline; also the agent's cost per Prometheus scrape of 100
//! containers. Prints a table. Target (issue 5): the exporter's share ≤ 1 % of a core.
//!
//! `--quick`: 20 containers and a 20 s window; `--window S` sets the window.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mini_e2e::Node;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};

#[derive(Clone, Default)]
struct Receiver {
    exports: Arc<AtomicU64>,
    points: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let n: usize = req
            .get_ref()
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| match &m.data {
                Some(Data::Sum(s)) => s.data_points.len(),
                Some(Data::Gauge(g)) => g.data_points.len(),
                _ => 0,
            })
            .sum();
        self.exports.fetch_add(1, Ordering::Relaxed);
        self.points.fetch_add(n as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// utime + stime of `pid`, seconds.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

fn fill(n: &Node, count: usize) {
    let tar = mini_e2e::busybox_tar(n.dir.path());
    n.ok(&["import", tar.to_str().expect("path"), "busybox"]);
    for i in 0..count {
        n.ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &format!("s{i}"),
            "busybox",
            "sleep",
            "3600",
        ]);
    }
}

/// The agent's CPU over `window`, as a share of one core.
fn share(n: &Node, window: Duration) -> f64 {
    let c0 = cpu_seconds(n.pid());
    let t0 = Instant::now();
    std::thread::sleep(window);
    (cpu_seconds(n.pid()) - c0) / t0.elapsed().as_secs_f64()
}

fn scrape(addr: &str) -> usize {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out.len()
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("skipping: the telemetry benchmark runs containers and needs root");
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let containers = if quick { 20 } else { 100 };
    let window = args
        .iter()
        .position(|a| a == "--window")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(if quick { 20 } else { 60 }));

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let r = Receiver::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let svc = MetricsServiceServer::new(r.clone());
    rt.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    std::env::set_var("OTEL_METRIC_EXPORT_INTERVAL", "10000");
    let metrics = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").to_string()
    };

    println!("minid telemetry cost, {containers} containers, window {window:?}");
    let with = Node::start_with(vec![
        "--no-bridge".into(),
        "--otlp-endpoint".into(),
        endpoint,
        "--metrics-listen".into(),
        metrics.clone(),
    ]);
    fill(&with, containers);
    std::thread::sleep(Duration::from_secs(2));
    let e0 = r.exports.load(Ordering::Relaxed);
    let p0 = r.points.load(Ordering::Relaxed);
    let with_share = share(&with, window);
    let exports = r.exports.load(Ordering::Relaxed) - e0;
    let points = r.points.load(Ordering::Relaxed) - p0;
    // Prometheus: the CPU of 20 scrapes back to back.
    let c0 = cpu_seconds(with.pid());
    let mut bytes = 0;
    for _ in 0..20 {
        bytes = scrape(&metrics);
    }
    let per_scrape_ms = (cpu_seconds(with.pid()) - c0) / 20.0 * 1000.0;
    drop(with);

    let without = Node::start_with(vec!["--no-bridge".into()]);
    fill(&without, containers);
    std::thread::sleep(Duration::from_secs(2));
    let base_share = share(&without, window);
    drop(without);

    let delta = (with_share - base_share).max(0.0);
    println!("{:<44} {:>12}\n{}", "measure", "value", "-".repeat(57));
    let row = |k: &str, v: String| println!("{k:<44} {v:>12}");
    row(
        "agent CPU with OTLP export every 10 s",
        format!("{:.3} %", with_share * 100.0),
    );
    row(
        "agent CPU without an exporter (baseline)",
        format!("{:.3} %", base_share * 100.0),
    );
    row(
        "exporter's share of a core",
        format!("{:.3} %", delta * 100.0),
    );
    row("exports received in the window", exports.to_string());
    row("data points received in the window", points.to_string());
    row(
        "agent CPU per Prometheus scrape",
        format!("{per_scrape_ms:.2} ms"),
    );
    row("scrape size", format!("{} KiB", bytes / 1024));
    println!(
        "target: exporter ≤ 1 % of a core: {}",
        if delta <= 0.01 { "met" } else { "NOT met" }
    );
}
