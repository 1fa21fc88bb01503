//! Traces: minid's `tracing` spans exported over OTLP/gRPC through tracing-opentelemetry, and
//! the W3C `traceparent` of incoming calls as their parent, so one trace covers a `minictl
//! run` on a workstation, the agent's handling of each call and the engine's steps (image
//! resolve, snapshot and bundle, network attach, shim spawn, start).
//!
//! Configured like the metrics: `--otlp-endpoint`, else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! else `OTEL_EXPORTER_OTLP_ENDPOINT`; off with `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none`. `MINID_LOG` filters spans as it filters the log (the default
//! keeps `info`, where the call and step spans are). Spans go through the SDK's batch processor (bounded queue,
//! `OTEL_BSP_*`): a collector that is away loses spans, never blocks a call.

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tonic::codegen::http;

/// The traces endpoint, if traces are on.
pub fn endpoint(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Option<String> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return None;
    }
    flag.map(str::to_string)
        .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .filter(|e| !e.is_empty())
}

/// A tracer provider exporting to `endpoint`; call inside the tokio runtime that will drive
/// the exporter's connection. Also installs the W3C trace-context propagator.
pub fn provider(endpoint: &str, host: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "minid".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service)
                .with_attribute(KeyValue::new("host.name", host.to_string()))
                .build(),
        )
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    Ok(provider)
}

/// The tracing layer for `provider`.
pub fn layer<S>(
    provider: &SdkTracerProvider,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("minid"))
}

/// Reads a propagation header out of an HTTP request's headers.
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The span of one incoming call, a child of the caller's span when the request carries a
/// `traceparent`.
pub fn server_span(method: &str, headers: &http::HeaderMap) -> tracing::Span {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let (service, rpc) = method
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", method));
    let span = tracing::info_span!(
        "grpc",
        otel.name = %method.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %rpc,
    );
    if headers.contains_key("traceparent") {
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(headers))
        });
        let _ = span.set_parent(parent);
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_follows_the_standard_variables() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(endpoint(None, env(&[])), None);
        assert_eq!(
            endpoint(Some("http://a:1"), env(&[])).as_deref(),
            Some("http://a:1")
        );
        assert_eq!(
            endpoint(
                Some("http://a:1"),
                env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1")])
            )
            .as_deref(),
            Some("http://a:1"),
            "the flag wins"
        );
        assert_eq!(
            endpoint(
                None,
                env(&[
                    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1"),
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://g:1")
                ])
            )
            .as_deref(),
            Some("http://t:1")
        );
        assert_eq!(
            endpoint(Some("http://a:1"), env(&[("OTEL_TRACES_EXPORTER", "none")])),
            None
        );
    }
}
