//! OTLP export from a real agent into a real OTLP/gRPC receiver on 127.0.0.1 (a tonic server
//! from opentelemetry-proto's generated service): container metrics arrive with the semantic
//! conventions' names, units and resource attributes and plausible values; with the collector
//! away, RPCs keep working, memory stays bounded, drops are counted, and export resumes when
//! the collector comes back.

#![allow(clippy::unwrap_used)] // test code

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mini_e2e::{require_root, Node};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, ResourceMetrics};

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(Instant, ExportMetricsServiceRequest)>>>,
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.got
            .lock()
            .unwrap()
            .push((Instant::now(), req.into_inner()));
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Serves a receiver on `port` (0: any) from a runtime of its own; returns it and its port.
fn receiver(port: u16) -> (Receiver, u16, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = Receiver::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(("127.0.0.1", port)))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let svc = MetricsServiceServer::new(r.clone());
    rt.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    (r, port, rt)
}

fn attr(rm: &ResourceMetrics, key: &str) -> Option<String> {
    rm.resource.as_ref()?.attributes.iter().find_map(|kv| {
        (kv.key == key).then(|| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })?
    })
}

/// The values of metric `name` in `rm` (with each point's attributes as key=value text).
fn values(rm: &ResourceMetrics, name: &str) -> Vec<(String, f64, String)> {
    let mut out = Vec::new();
    for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
        if m.name != name {
            continue;
        }
        let points = match &m.data {
            Some(metric::Data::Sum(s)) => &s.data_points,
            Some(metric::Data::Gauge(g)) => &g.data_points,
            _ => continue,
        };
        for p in points {
            let v = match p.value {
                Some(number_data_point::Value::AsDouble(v)) => v,
                Some(number_data_point::Value::AsInt(v)) => v as f64,
                None => continue,
            };
            let attrs = p
                .attributes
                .iter()
                .map(|a| {
                    let v = match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(any_value::Value::StringValue(s)) => s.clone(),
                        _ => String::new(),
                    };
                    format!("{}={v}", a.key)
                })
                .collect::<Vec<_>>()
                .join(",");
            out.push((attrs, v, m.unit.clone()));
        }
    }
    out
}

/// The container's ResourceMetrics in every request so far, with arrival times.
fn of(r: &Receiver, name: &str) -> Vec<(Instant, ResourceMetrics)> {
    r.got
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(t, req)| {
            req.resource_metrics
                .iter()
                .filter(|rm| attr(rm, "container.name").as_deref() == Some(name))
                .map(move |rm| (*t, rm.clone()))
        })
        .collect()
}

fn scrape(addr: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn counter(body: &str, name: &str) -> f64 {
    body.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(-1.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn container_metrics_arrive_with_semantic_convention_names() {
    require_root!();
    std::env::set_var("OTEL_METRIC_EXPORT_INTERVAL", "500");
    let (r, port, _rt) = receiver(0);
    let n = Node::start_with(vec![
        "--otlp-endpoint".into(),
        format!("http://127.0.0.1:{port}"),
    ]);
    let busy = n.start_load();
    // Exports over at least 2 s of the busy loop.
    n.until(Duration::from_secs(15), "exports spanning 2 s", || {
        let b = of(&r, "busy");
        b.len() >= 2 && b.last().unwrap().0.duration_since(b[0].0) >= Duration::from_secs(2)
    });
    let b = of(&r, "busy");
    let (first, last) = (&b[0].1, &b.last().unwrap().1);
    assert_eq!(attr(last, "container.id").as_deref(), Some(busy.as_str()));
    assert_eq!(attr(last, "service.name").as_deref(), Some("minid"));
    assert_eq!(
        attr(last, "container.image.name").as_deref(),
        Some("busybox")
    );
    assert!(attr(last, "host.name").is_some_and(|h| !h.is_empty()));
    let cpu = |rm: &ResourceMetrics| -> f64 {
        let v = values(rm, "container.cpu.time");
        assert!(v.iter().all(|(_, _, unit)| unit == "s"), "{v:?}");
        assert!(v.iter().any(|(a, _, _)| a == "cpu.mode=user"), "{v:?}");
        v.iter().map(|(_, x, _)| x).sum()
    };
    let secs = b.last().unwrap().0.duration_since(b[0].0).as_secs_f64();
    let rate = (cpu(last) - cpu(first)) / secs;
    assert!(
        (0.2..=0.7).contains(&rate),
        "CPU rate {rate} (want about 0.5)"
    );
    // The memory container's 32 MiB of tmpfs is in its working set.
    n.until(
        Duration::from_secs(10),
        "the working set to show the fill",
        || {
            of(&r, "mem").last().is_some_and(|(_, rm)| {
                values(rm, "container.memory.working_set")
                    .first()
                    .is_some_and(|(_, v, unit)| unit == "By" && *v >= 32.0 * 1048576.0)
            })
        },
    );
    let (_, rm) = of(&r, "mem").last().unwrap().clone();
    for name in [
        "container.memory.usage",
        "container.memory.rss",
        "container.paging.faults",
        "container.disk.io",
        "container.network.io",
        "container.uptime",
        "container.pids.count",
        "container.cpu.throttling.periods",
        "container.restarts",
    ] {
        assert!(!values(&rm, name).is_empty(), "{name} missing");
    }
}

#[test]
fn a_missing_collector_costs_nothing_but_dropped_points() {
    require_root!();
    std::env::set_var("OTEL_METRIC_EXPORT_INTERVAL", "200");
    std::env::set_var("OTEL_METRIC_EXPORT_TIMEOUT", "500");
    let otlp_port = free_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let n = Node::start_with(vec![
        "--otlp-endpoint".into(),
        format!("http://127.0.0.1:{otlp_port}"),
        "--metrics-listen".into(),
        metrics.clone(),
    ]);
    let tar = mini_e2e::busybox_tar(n.dir.path());
    n.ok(&["import", tar.to_str().unwrap(), "busybox"]);
    n.ok(&["run", "-d", "--name", "s", "busybox", "sleep", "600"]);
    let rss = || -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", n.pid()))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap()
    };
    // Warm up, then 1,000 calls while every export fails.
    for _ in 0..20 {
        n.ok(&["version"]);
    }
    let before = rss();
    let t = Instant::now();
    for i in 0..1000 {
        let out = n.ctl(&["version"]);
        assert!(out.status.success(), "call {i} failed");
    }
    let after = rss();
    assert!(
        after < before + 16 * 1024,
        "minid grew from {before} kB to {after} kB over {:?}",
        t.elapsed()
    );
    let body = scrape(&metrics);
    assert!(
        counter(&body, "minid_otlp_failed_exports_total") >= 3.0,
        "{body}"
    );
    assert!(
        counter(&body, "minid_otlp_dropped_points_total") > 0.0,
        "{body}"
    );
    // The collector comes back on its port: exports resume.
    let (r, _, _rt) = receiver(otlp_port);
    n.until(Duration::from_secs(10), "exports to resume", || {
        !of(&r, "s").is_empty()
    });
    n.until(Duration::from_secs(5), "the export count to rise", || {
        counter(&scrape(&metrics), "minid_otlp_exports_total") >= 1.0
    });
}
