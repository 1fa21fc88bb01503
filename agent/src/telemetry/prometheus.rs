//! The Prometheus text endpoint: `GET /metrics` on `minid serve --metrics-listen ADDR`.
//!
//! Container series use cAdvisor's names and units (`container_cpu_usage_seconds_total`,
//! `container_memory_working_set_bytes`, ...), labelled `id` (the container id), `name` and
//! `image`, so the dashboards and alerts written for cAdvisor and the kubelet work unchanged.
//! They are read from the containers' cgroups at scrape time (running and paused containers
//! only: a stopped container has no cgroup), so a scrape costs one pass over the cgroup files
//! and nothing is collected between scrapes. The agent's own series are prefixed `minid_`:
//! containers by status, gRPC calls by method and status with latency histograms, and the
//! expiry of the node's TLS certificate.
//!
//! Plain HTTP, as node exporters are: bind it to an address only the monitoring network
//! reaches. A request must fit in 8 KiB and arrive within 5 s.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::rpc::{RpcMetrics, BUCKETS};
use crate::daemon::Daemon;
use crate::engine::cgroups::Stats;

/// What the endpoint reports on.
pub struct Source {
    pub daemon: Arc<Daemon>,
    pub rpc: Arc<RpcMetrics>,
    /// The node's certificate, for its expiry.
    pub cert: PathBuf,
    /// The OTLP exporter's counts, when it runs.
    pub otlp: Option<Arc<super::otlp::ExportStats>>,
}

/// A label value escaped for the text format.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn unix(t: &str) -> Option<f64> {
    humantime::parse_rfc3339_weak(t)
        .ok()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
}

struct Sampled {
    labels: String,
    stats: Stats,
    rx: u64,
    tx: u64,
    started: Option<f64>,
}

type Getter = fn(&Sampled) -> f64;

/// cAdvisor's container families: (name, type, help, value).
const FAMILIES: &[(&str, &str, &str, Getter)] = &[
    (
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative CPU time consumed, seconds.",
        |s| s.stats.cpu_usage_ns as f64 / 1e9,
    ),
    (
        "container_cpu_user_seconds_total",
        "counter",
        "Cumulative user CPU time consumed, seconds.",
        |s| s.stats.cpu_user_ns as f64 / 1e9,
    ),
    (
        "container_cpu_system_seconds_total",
        "counter",
        "Cumulative system CPU time consumed, seconds.",
        |s| s.stats.cpu_system_ns as f64 / 1e9,
    ),
    (
        "container_cpu_cfs_periods_total",
        "counter",
        "Number of elapsed enforcement period intervals.",
        |s| s.stats.cpu_nr_periods as f64,
    ),
    (
        "container_cpu_cfs_throttled_periods_total",
        "counter",
        "Number of throttled period intervals.",
        |s| s.stats.cpu_nr_throttled as f64,
    ),
    (
        "container_cpu_cfs_throttled_seconds_total",
        "counter",
        "Total time duration the container has been throttled, seconds.",
        |s| s.stats.cpu_throttled_ns as f64 / 1e9,
    ),
    (
        "container_memory_usage_bytes",
        "gauge",
        "Current memory usage, including all memory regardless of when it was accessed, bytes.",
        |s| s.stats.memory_usage as f64,
    ),
    (
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set (usage minus inactive file cache), bytes.",
        |s| s.stats.memory_working_set as f64,
    ),
    (
        "container_memory_rss",
        "gauge",
        "Size of RSS, bytes.",
        |s| s.stats.memory_rss as f64,
    ),
    (
        "container_memory_cache",
        "gauge",
        "Number of bytes of page cache memory.",
        |s| s.stats.memory_cache as f64,
    ),
    (
        "container_memory_swap",
        "gauge",
        "Container swap usage, bytes.",
        |s| s.stats.memory_swap_usage as f64,
    ),
    (
        "container_memory_max_usage_bytes",
        "gauge",
        "Maximum memory usage recorded, bytes.",
        |s| s.stats.memory_max_usage as f64,
    ),
    (
        "container_spec_memory_limit_bytes",
        "gauge",
        "Memory limit for the container, bytes (0: none).",
        |s| s.stats.memory_limit.unwrap_or(0) as f64,
    ),
    (
        "container_oom_events_total",
        "counter",
        "Count of out of memory events observed for the container.",
        |s| s.stats.oom_kill_count as f64,
    ),
    (
        "container_fs_reads_bytes_total",
        "counter",
        "Cumulative count of bytes read.",
        |s| s.stats.io_read_bytes as f64,
    ),
    (
        "container_fs_writes_bytes_total",
        "counter",
        "Cumulative count of bytes written.",
        |s| s.stats.io_write_bytes as f64,
    ),
    (
        "container_fs_reads_total",
        "counter",
        "Cumulative count of reads completed.",
        |s| s.stats.io_read_ops as f64,
    ),
    (
        "container_fs_writes_total",
        "counter",
        "Cumulative count of writes completed.",
        |s| s.stats.io_write_ops as f64,
    ),
    (
        "container_network_receive_bytes_total",
        "counter",
        "Cumulative count of bytes received (all interfaces but loopback).",
        |s| s.rx as f64,
    ),
    (
        "container_network_transmit_bytes_total",
        "counter",
        "Cumulative count of bytes transmitted (all interfaces but loopback).",
        |s| s.tx as f64,
    ),
    (
        "container_processes",
        "gauge",
        "Number of processes running inside the container.",
        |s| s.stats.pids_current as f64,
    ),
    (
        "container_spec_pids_limit",
        "gauge",
        "Limit on the container's processes (0: none).",
        |s| s.stats.pids_limit.unwrap_or(0) as f64,
    ),
];

/// The whole exposition, read now.
pub fn render(src: &Source) -> String {
    let d = &src.daemon;
    let snap = super::snapshot(d);
    let statuses = snap.statuses;
    let sampled: Vec<Sampled> = snap
        .running
        .into_iter()
        .map(|s| Sampled {
            labels: format!(
                "id=\"{}\",name=\"{}\",image=\"{}\"",
                esc(&s.id),
                esc(&s.name),
                esc(&s.image)
            ),
            started: s
                .started
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_secs_f64()),
            stats: s.stats,
            rx: s.rx,
            tx: s.tx,
        })
        .collect();
    let mut out = String::new();
    for (name, kind, help, get) in FAMILIES {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in &sampled {
            let _ = writeln!(out, "{name}{{{}}} {}", s.labels, get(s));
        }
    }
    let _ = writeln!(out, "# HELP container_memory_failures_total Cumulative count of memory allocation failures (page faults).\n# TYPE container_memory_failures_total counter");
    for s in &sampled {
        for (ty, v) in [
            ("pgfault", s.stats.page_faults),
            ("pgmajfault", s.stats.major_page_faults),
        ] {
            let _ = writeln!(
                out,
                "container_memory_failures_total{{{},failure_type=\"{ty}\",scope=\"container\"}} {v}",
                s.labels
            );
        }
    }
    let _ = writeln!(out, "# HELP container_start_time_seconds Start time of the container since unix epoch, seconds.\n# TYPE container_start_time_seconds gauge");
    for s in &sampled {
        if let Some(t) = s.started {
            let _ = writeln!(out, "container_start_time_seconds{{{}}} {t}", s.labels);
        }
    }

    let _ = writeln!(
        out,
        "# HELP minid_containers Containers on this node by status.\n# TYPE minid_containers gauge"
    );
    for (status, n) in &statuses {
        let _ = writeln!(out, "minid_containers{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(out, "# HELP minid_grpc_requests_total gRPC calls handled, by method and status.\n# TYPE minid_grpc_requests_total counter");
    for ((method, code), n) in src.rpc.calls() {
        let _ = writeln!(
            out,
            "minid_grpc_requests_total{{method=\"{}\",code=\"{code}\"}} {n}",
            esc(&method)
        );
    }
    let _ = writeln!(out, "# HELP minid_grpc_request_duration_seconds Time to the response headers of gRPC calls (a stream's start), seconds.\n# TYPE minid_grpc_request_duration_seconds histogram");
    for (method, h) in src.rpc.latencies() {
        let m = esc(&method);
        let mut cum = 0;
        for (b, n) in BUCKETS.iter().zip(h.buckets) {
            cum += n;
            let _ = writeln!(
                out,
                "minid_grpc_request_duration_seconds_bucket{{method=\"{m}\",le=\"{b}\"}} {cum}"
            );
        }
        let _ = writeln!(
            out,
            "minid_grpc_request_duration_seconds_bucket{{method=\"{m}\",le=\"+Inf\"}} {}\n\
             minid_grpc_request_duration_seconds_sum{{method=\"{m}\"}} {}\n\
             minid_grpc_request_duration_seconds_count{{method=\"{m}\"}} {}",
            h.count, h.sum, h.count
        );
    }
    if let Some(t) = minictl::pki::inspect(&src.cert)
        .ok()
        .and_then(|c| unix(&c.not_after))
    {
        let _ = writeln!(out, "# HELP minid_tls_certificate_expiry_timestamp_seconds When the node's TLS certificate expires, seconds since the epoch.\n# TYPE minid_tls_certificate_expiry_timestamp_seconds gauge\nminid_tls_certificate_expiry_timestamp_seconds {t}");
    }
    if let Some(o) = &src.otlp {
        use std::sync::atomic::Ordering::Relaxed;
        for (name, help, v) in [
            (
                "minid_otlp_exports_total",
                "OTLP metric exports the collector accepted.",
                o.exports.load(Relaxed),
            ),
            (
                "minid_otlp_failed_exports_total",
                "OTLP metric exports that failed or timed out.",
                o.failed_exports.load(Relaxed),
            ),
            (
                "minid_otlp_dropped_points_total",
                "Data points of failed exports, dropped.",
                o.dropped_points.load(Relaxed),
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP minid_build_info The agent's version.\n# TYPE minid_build_info gauge\nminid_build_info{{version=\"{}\",node=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        esc(&d.cfg.node_name)
    );
    out
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, src: Arc<Source>) -> anyhow::Result<()> {
    // A few scrapers at once; more wait in the listen queue. A render walks every
    // container's cgroup on the blocking pool the engine also uses.
    let slots = Arc::new(tokio::sync::Semaphore::new(4));
    tracing::info!(listen = %listener.local_addr()?, "metrics endpoint (Prometheus text) serving");
    loop {
        let (conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let src = src.clone();
        let Ok(slot) = slots.clone().acquire_owned().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(30), answer(conn, src)).await;
            drop(slot);
        });
    }
}

async fn answer(mut conn: tokio::net::TcpStream, src: Arc<Source>) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let head = String::from_utf8_lossy(&buf);
    let mut first = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/metrics") => {
            let src = src.clone();
            match tokio::task::spawn_blocking(move || render(&src)).await {
                Ok(body) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body),
                // An empty 200 would read as "every series is gone".
                Err(_) => (
                    "500 Internal Server Error",
                    "text/plain",
                    "rendering failed\n".to_string(),
                ),
            }
        }
        ("GET", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "minid: metrics at /metrics\n".to_string(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_string(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(unix("1970-01-01T00:00:10Z"), Some(10.0));
    }
}
