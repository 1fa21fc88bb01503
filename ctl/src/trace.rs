//! minictl's part of a trace. With `MINICTL_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
//! set, a command is one span: its trace id and span id go in the W3C `traceparent` of every
//! call it makes (so the agents' spans become its children), and the span is sent to the
//! collector over OTLP/gRPC when the command ends (at most 2 s are spent on that). minictl is a
//! short-lived process on a current-thread runtime, so it builds the one span itself rather
//! than run the SDK's batch exporter thread.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};

/// The `traceparent` every call carries, once a trace is started.
static TRACEPARENT: OnceLock<String> = OnceLock::new();

/// The interceptor of every client: adds the command's `traceparent`.
pub type Inject = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

pub fn inject(mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    if let Some(tp) = TRACEPARENT.get() {
        if let Ok(v) = tp.parse() {
            req.metadata_mut().insert("traceparent", v);
        }
    }
    Ok(req)
}

/// The command's span, open.
pub struct Trace {
    endpoint: String,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    name: String,
    start: SystemTime,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_ok();
    // All-zero ids are invalid in traceparent: without /dev/urandom, the clock and the pid
    // (unique enough for one command's trace).
    if !ok || b.iter().all(|x| *x == 0) {
        let seed = (nanos(SystemTime::now()) ^ (u64::from(std::process::id()) << 32)) | 1;
        for (i, x) in b.iter_mut().enumerate() {
            *x = (seed.rotate_left((i as u32 * 8) % 64) & 0xff) as u8 | 1;
        }
    }
    b
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// Starts the trace of command `name` when an endpoint is configured.
pub fn start(name: &str) -> Option<Trace> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    let endpoint =
        env("MINICTL_OTLP_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))?;
    let t = Trace {
        endpoint,
        trace_id: random(),
        span_id: random(),
        name: format!("minictl {name}"),
        start: SystemTime::now(),
    };
    let _ = TRACEPARENT.set(format!("00-{}-{}-01", hex(&t.trace_id), hex(&t.span_id)));
    Some(t)
}

impl Trace {
    /// Ends the span with the command's exit status and sends it.
    pub async fn finish(self, code: i32) {
        let end = SystemTime::now();
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv(
                            "service.name",
                            any_value::Value::StringValue("minictl".into()),
                        ),
                        kv("host.name", any_value::Value::StringValue(host)),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "minictl".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    spans: vec![Span {
                        trace_id: self.trace_id.to_vec(),
                        span_id: self.span_id.to_vec(),
                        name: self.name.clone(),
                        kind: span::SpanKind::Client as i32,
                        start_time_unix_nano: nanos(self.start),
                        end_time_unix_nano: nanos(end),
                        attributes: vec![kv(
                            "process.exit.code",
                            any_value::Value::IntValue(code.into()),
                        )],
                        status: Some(Status {
                            code: if code == 0 {
                                status::StatusCode::Ok
                            } else {
                                status::StatusCode::Error
                            } as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let send = async {
            let mut c = TraceServiceClient::connect(self.endpoint.clone()).await?;
            c.export(req).await?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        };
        match tokio::time::timeout(Duration::from_secs(2), send).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "minictl: warning: the trace was not sent to {}: {e}",
                self.endpoint
            ),
            Err(_) => eprintln!(
                "minictl: warning: the trace was not sent to {} within 2 s",
                self.endpoint
            ),
        }
    }
}
