//! Container metrics pushed to an OpenTelemetry collector over OTLP/gRPC.
//!
//! Every interval (`OTEL_METRIC_EXPORT_INTERVAL`, milliseconds, default 60 000) the running
//! containers' cgroups are read and sent in one `ExportMetricsServiceRequest`: one
//! `ResourceMetrics` per container, whose resource says which container (`container.id`,
//! `container.name`, `container.image.name`, `container.image.id`, `container.runtime`) on
//! which host (`host.name`, `service.name=minid`, and `OTEL_RESOURCE_ATTRIBUTES`), as the
//! collector's docker_stats receiver reports them, with the semantic conventions' names and
//! units (`container.cpu.time` in s by `cpu.mode`, `container.memory.working_set` in By, ...).
//!
//! The messages are built here on opentelemetry-proto's generated types and sent with its
//! tonic client, rather than through the SDK's `MeterProvider`: a provider has one resource,
//! and per-container resources would take one provider (reader, exporter, timer) per
//! container. What the SDK's periodic reader would do, this loop does: cumulative sums with
//! the container's start as their start time, gauges read at export time.
//!
//! Failure behaviour: nothing is queued. Each interval exports a fresh snapshot, at most one
//! export is in flight, and one that fails or times out (`OTEL_METRIC_EXPORT_TIMEOUT`,
//! milliseconds, default 10 000) is dropped and counted ([`ExportStats`], shown on the
//! Prometheus endpoint) — memory stays bounded however long the collector is away, and the
//! next interval sends again. Exporting never takes a lock an RPC needs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::Sample;
use crate::daemon::Daemon;

/// Where and how often to export.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpConfig {
    /// `http://host:port` (OTLP/gRPC, default port 4317).
    pub endpoint: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`).
    pub resource: Vec<(String, String)>,
    pub service_name: String,
}

impl OtlpConfig {
    /// The configuration from `--otlp-endpoint` (else `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`,
    /// else `OTEL_EXPORTER_OTLP_ENDPOINT`) and the standard `OTEL_*` variables; `None` when no
    /// endpoint is configured, `OTEL_SDK_DISABLED=true` or `OTEL_METRICS_EXPORTER=none` (then
    /// nothing is exported and nothing is logged).
    pub fn from_env(
        flag: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Option<OtlpConfig>> {
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env("OTEL_METRICS_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let endpoint = flag
            .map(str::to_string)
            .or_else(|| env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .filter(|e| !e.is_empty());
        let Some(endpoint) = endpoint else {
            return Ok(None);
        };
        if !endpoint.starts_with("http://") {
            anyhow::bail!(
                "OTLP endpoint {endpoint:?}: only http:// (plain OTLP/gRPC, e.g. a collector on the node or its network) is supported"
            );
        }
        let ms = |k: &str, default: u64| -> anyhow::Result<Duration> {
            match env(k) {
                None => Ok(Duration::from_millis(default)),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|m| *m > 0)
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        anyhow::anyhow!("{k}={v:?} is not a number of milliseconds > 0")
                    }),
            }
        };
        let resource = env("OTEL_RESOURCE_ATTRIBUTES")
            .map(|s| {
                s.split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .filter(|(k, _)| !k.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(OtlpConfig {
            endpoint,
            interval: ms("OTEL_METRIC_EXPORT_INTERVAL", 60_000)?,
            timeout: ms("OTEL_METRIC_EXPORT_TIMEOUT", 10_000)?,
            resource,
            service_name: env("OTEL_SERVICE_NAME").unwrap_or_else(|| "minid".into()),
        }))
    }
}

/// What the exporter did, for the Prometheus endpoint and tests.
#[derive(Default)]
pub struct ExportStats {
    pub exports: AtomicU64,
    pub failed_exports: AtomicU64,
    /// Data points of failed exports, not delivered.
    pub dropped_points: AtomicU64,
    pub points: AtomicU64,
}

fn kv(k: &str, v: impl Into<String>) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn point(attrs: Vec<KeyValue>, start: u64, now: u64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: start,
        time_unix_nano: now,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn sum(name: &str, unit: &str, desc: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        description: desc.into(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Default::default()
    }
}

fn gauge(name: &str, unit: &str, desc: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        description: desc.into(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

/// The container's metrics, semantic-convention names and units. `prev_cpu` is the previous
/// sample's (CPU seconds, time) for `container.cpu.usage`.
pub fn container_metrics(
    s: &Sample,
    now: SystemTime,
    prev_cpu: Option<(f64, SystemTime)>,
) -> Vec<Metric> {
    let t = nanos(now);
    let start = s.started.map(nanos).unwrap_or(t);
    let st = &s.stats;
    let p = |attrs: Vec<KeyValue>, v: f64| point(attrs, start, t, v);
    let g = |v: f64| point(Vec::new(), 0, t, v);
    let cpu_s = st.cpu_usage_ns as f64 / 1e9;
    let mut m = vec![
        sum(
            "container.cpu.time",
            "s",
            "Total CPU time consumed.",
            vec![
                p(vec![kv("cpu.mode", "user")], st.cpu_user_ns as f64 / 1e9),
                p(
                    vec![kv("cpu.mode", "system")],
                    st.cpu_system_ns as f64 / 1e9,
                ),
            ],
        ),
        gauge(
            "container.memory.usage",
            "By",
            "Memory usage, page cache included.",
            vec![g(st.memory_usage as f64)],
        ),
        gauge(
            "container.memory.working_set",
            "By",
            "Memory usage minus inactive file cache: what the kernel cannot reclaim easily.",
            vec![g(st.memory_working_set as f64)],
        ),
        gauge(
            "container.memory.rss",
            "By",
            "Anonymous memory.",
            vec![g(st.memory_rss as f64)],
        ),
        sum(
            "container.paging.faults",
            "{fault}",
            "Page faults.",
            vec![
                p(
                    vec![kv("system.paging.fault.type", "major")],
                    st.major_page_faults as f64,
                ),
                p(
                    vec![kv("system.paging.fault.type", "minor")],
                    st.page_faults.saturating_sub(st.major_page_faults) as f64,
                ),
            ],
        ),
        sum(
            "container.disk.io",
            "By",
            "Bytes read from and written to block devices.",
            vec![
                p(
                    vec![kv("disk.io.direction", "read")],
                    st.io_read_bytes as f64,
                ),
                p(
                    vec![kv("disk.io.direction", "write")],
                    st.io_write_bytes as f64,
                ),
            ],
        ),
        sum(
            "container.network.io",
            "By",
            "Bytes received and transmitted on the container's interfaces (loopback excluded).",
            vec![
                p(vec![kv("network.io.direction", "receive")], s.rx as f64),
                p(vec![kv("network.io.direction", "transmit")], s.tx as f64),
            ],
        ),
        gauge(
            "container.pids.count",
            "{process}",
            "Processes in the container.",
            vec![g(st.pids_current as f64)],
        ),
        sum(
            "container.cpu.throttling.periods",
            "{period}",
            "Enforcement periods elapsed.",
            vec![p(Vec::new(), st.cpu_nr_periods as f64)],
        ),
        sum(
            "container.cpu.throttling.throttled_periods",
            "{period}",
            "Periods in which the container was throttled.",
            vec![p(Vec::new(), st.cpu_nr_throttled as f64)],
        ),
        sum(
            "container.cpu.throttling.throttled_time",
            "s",
            "Time the container was throttled.",
            vec![p(Vec::new(), st.cpu_throttled_ns as f64 / 1e9)],
        ),
        sum(
            "container.restarts",
            "{restart}",
            "Restarts by the restart policy.",
            vec![point(
                Vec::new(),
                s.created.map(nanos).unwrap_or(start),
                t,
                f64::from(s.restarts),
            )],
        ),
    ];
    if let Some(limit) = st.memory_limit {
        m.push(gauge(
            "container.memory.available",
            "By",
            "Memory left before the limit: limit minus working set.",
            vec![g(limit.saturating_sub(st.memory_working_set) as f64)],
        ));
    }
    if let Some(l) = st.pids_limit {
        m.push(gauge(
            "container.pids.limit",
            "{process}",
            "Limit on the container's processes.",
            vec![g(l as f64)],
        ));
    }
    if let Some(started) = s.started {
        if let Ok(up) = now.duration_since(started) {
            m.push(gauge(
                "container.uptime",
                "s",
                "Time since the container started.",
                vec![g(up.as_secs_f64())],
            ));
        }
    }
    if let Some((prev, at)) = prev_cpu {
        if let Ok(dt) = now.duration_since(at) {
            if dt.as_secs_f64() > 0.0 && cpu_s >= prev {
                m.push(gauge(
                    "container.cpu.usage",
                    "{cpu}",
                    "CPU used over the last interval, in CPUs.",
                    vec![g((cpu_s - prev) / dt.as_secs_f64())],
                ));
            }
        }
    }
    m
}

/// The request for `samples`, with the host's resource attributes.
pub fn request(
    cfg: &OtlpConfig,
    host: &str,
    samples: &[Sample],
    now: SystemTime,
    prev: &HashMap<String, (f64, SystemTime)>,
) -> ExportMetricsServiceRequest {
    let resource_metrics = samples
        .iter()
        .map(|s| {
            let mut attrs = vec![
                kv("service.name", cfg.service_name.clone()),
                kv("host.name", host),
                kv("container.id", s.id.clone()),
                kv("container.name", s.name.clone()),
                kv("container.image.name", s.image.clone()),
                kv("container.image.id", s.image_id.clone()),
                kv("container.runtime", "mini"),
            ];
            attrs.extend(cfg.resource.iter().map(|(k, v)| kv(k, v.clone())));
            ResourceMetrics {
                resource: Some(Resource {
                    attributes: attrs,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "minid".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    metrics: container_metrics(s, now, prev.get(&s.id).copied()),
                    ..Default::default()
                }],
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest { resource_metrics }
}

fn points_in(req: &ExportMetricsServiceRequest) -> u64 {
    req.resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => s.data_points.len() as u64,
            Some(metric::Data::Gauge(g)) => g.data_points.len() as u64,
            _ => 0,
        })
        .sum()
}

/// Exports every `cfg.interval` until the process ends.
pub async fn run(cfg: OtlpConfig, daemon: Arc<Daemon>, stats: Arc<ExportStats>) {
    let channel = match tonic::transport::Endpoint::from_shared(cfg.endpoint.clone()) {
        Ok(e) => e
            .connect_timeout(cfg.timeout)
            .timeout(cfg.timeout)
            .connect_lazy(),
        Err(e) => {
            tracing::error!(endpoint = %cfg.endpoint, error = %e, "OTLP endpoint is not a URI; metrics are not exported");
            return;
        }
    };
    let mut client = MetricsServiceClient::new(channel);
    let host = daemon.cfg.node_name.clone();
    let mut tick = tokio::time::interval(cfg.interval);
    // A tick missed while an export hung is skipped, not made up in a burst (the snapshot
    // it would have sent was never taken: nothing is counted as dropped for it).
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut prev: HashMap<String, (f64, SystemTime)> = HashMap::new();
    let mut failing = 0u64;
    tracing::info!(endpoint = %cfg.endpoint, interval_ms = cfg.interval.as_millis() as u64, "exporting container metrics over OTLP");
    loop {
        tick.tick().await;
        let d = daemon.clone();
        let Ok(samples) = tokio::task::spawn_blocking(move || super::snapshot(&d).running).await
        else {
            continue;
        };
        let now = SystemTime::now();
        let req = request(&cfg, &host, &samples, now, &prev);
        prev = samples
            .iter()
            .map(|s| (s.id.clone(), (s.stats.cpu_usage_ns as f64 / 1e9, now)))
            .collect();
        let n = points_in(&req);
        stats.points.fetch_add(n, Ordering::Relaxed);
        match tokio::time::timeout(cfg.timeout, client.export(req)).await {
            Ok(Ok(_)) => {
                stats.exports.fetch_add(1, Ordering::Relaxed);
                if failing > 0 {
                    tracing::info!(endpoint = %cfg.endpoint, after = failing, "OTLP export works again");
                }
                failing = 0;
            }
            r => {
                stats.failed_exports.fetch_add(1, Ordering::Relaxed);
                stats.dropped_points.fetch_add(n, Ordering::Relaxed);
                failing += 1;
                // Said once, then every 100th failure: a collector away for a day is not
                // thousands of log lines.
                if failing == 1 || failing % 100 == 0 {
                    let why = match r {
                        Ok(Err(s)) => s.message().to_string(),
                        _ => format!("no answer within {:?}", cfg.timeout),
                    };
                    tracing::warn!(endpoint = %cfg.endpoint, failures = failing, error = %why, "OTLP export failed; points dropped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cgroups::Stats;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn configuration_follows_the_standard_variables() {
        assert_eq!(OtlpConfig::from_env(None, env(&[])).unwrap(), None);
        let c = OtlpConfig::from_env(
            None,
            env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=lab, k = v",
                ),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint, "http://c:4317");
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.resource[1], ("k".to_string(), "v".to_string()));
        // The flag wins; disabled wins over everything; bad values are errors.
        let c = OtlpConfig::from_env(
            Some("http://flag:1"),
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint, "http://flag:1");
        assert_eq!(
            OtlpConfig::from_env(Some("http://x:1"), env(&[("OTEL_SDK_DISABLED", "true")]))
                .unwrap(),
            None
        );
        assert!(OtlpConfig::from_env(
            Some("http://x:1"),
            env(&[("OTEL_METRIC_EXPORT_INTERVAL", "soon")])
        )
        .is_err());
        assert!(OtlpConfig::from_env(Some("https://x:1"), env(&[])).is_err());
    }

    #[test]
    fn a_container_sample_becomes_semantic_convention_metrics() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let s = Sample {
            id: "abc".into(),
            name: "web".into(),
            image: "busybox".into(),
            image_id: "sha256:1".into(),
            started: Some(t0),
            created: Some(t0),
            restarts: 2,
            stats: Stats {
                cpu_usage_ns: 3_000_000_000,
                cpu_user_ns: 2_000_000_000,
                cpu_system_ns: 1_000_000_000,
                memory_working_set: 100,
                memory_limit: Some(1000),
                page_faults: 10,
                major_page_faults: 3,
                ..Default::default()
            },
            rx: 5,
            tx: 7,
        };
        let now = t0 + Duration::from_secs(10);
        let m = container_metrics(&s, now, Some((1.0, t0 + Duration::from_secs(6))));
        let find = |n: &str| {
            m.iter()
                .find(|x| x.name == n)
                .unwrap_or_else(|| panic!("{n}"))
        };
        let cpu = find("container.cpu.time");
        assert_eq!(cpu.unit, "s");
        let Some(metric::Data::Sum(sum)) = &cpu.data else {
            panic!()
        };
        assert!(sum.is_monotonic);
        assert_eq!(sum.data_points[0].start_time_unix_nano, 1_000_000_000_000);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsDouble(2.0))
        );
        let avail = find("container.memory.available");
        let Some(metric::Data::Gauge(g)) = &avail.data else {
            panic!()
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(900.0))
        );
        // (3 s - 1 s) over 4 s: half a CPU.
        let Some(metric::Data::Gauge(g)) = &find("container.cpu.usage").data else {
            panic!()
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(0.5))
        );
        let Some(metric::Data::Gauge(g)) = &find("container.uptime").data else {
            panic!()
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(10.0))
        );
        let cfg = OtlpConfig {
            endpoint: "http://x".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            resource: vec![("deployment.environment".into(), "lab".into())],
            service_name: "minid".into(),
        };
        let req = request(&cfg, "n1", &[s], now, &HashMap::new());
        let r = req.resource_metrics[0].resource.as_ref().unwrap();
        let keys: Vec<&str> = r.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "service.name",
                "host.name",
                "container.id",
                "container.name",
                "container.image.name",
                "container.image.id",
                "container.runtime",
                "deployment.environment"
            ]
        );
        assert!(points_in(&req) > 15);
    }
}
