//! Per-method gRPC call counts and latency histograms, recorded by a tower layer.
//!
//! The status is the `grpc-status` the handler answered with: an error is a trailers-only
//! response whose headers carry it; a success carries it in the trailers, after the body, so a
//! response without it in the headers counts as `OK`. The latency is the time to the response
//! headers, which for a stream is the time to its start, as grpc-go's server metrics measure.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tonic::codegen::http;

/// Histogram bucket bounds, seconds (Prometheus' client defaults, plus 1 ms).
pub const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One method's latency histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations at most `BUCKETS[i]` (not cumulative here; the renderer sums).
    pub buckets: [u64; BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

/// Counts by (method, status) and latencies by method.
#[derive(Default)]
pub struct RpcMetrics {
    calls: Mutex<BTreeMap<(String, String), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// gRPC's name of a status code number (`5` → `NotFound`).
pub fn code_name(code: &str) -> &'static str {
    match code {
        "0" => "OK",
        "1" => "Canceled",
        "2" => "Unknown",
        "3" => "InvalidArgument",
        "4" => "DeadlineExceeded",
        "5" => "NotFound",
        "6" => "AlreadyExists",
        "7" => "PermissionDenied",
        "8" => "ResourceExhausted",
        "9" => "FailedPrecondition",
        "10" => "Aborted",
        "11" => "OutOfRange",
        "12" => "Unimplemented",
        "13" => "Internal",
        "14" => "Unavailable",
        "15" => "DataLoss",
        "16" => "Unauthenticated",
        _ => "Unknown",
    }
}

impl RpcMetrics {
    pub fn observe(&self, method: &str, code: &str, took: Duration) {
        *lock(&self.calls)
            .entry((method.to_string(), code.to_string()))
            .or_insert(0) += 1;
        let secs = took.as_secs_f64();
        let mut l = lock(&self.latency);
        let h = l.entry(method.to_string()).or_default();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            h.buckets[i] += 1;
        }
        h.count += 1;
        h.sum += secs;
    }

    /// `((method, code), count)` in order.
    pub fn calls(&self) -> Vec<((String, String), u64)> {
        lock(&self.calls)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    pub fn latencies(&self) -> Vec<(String, Histogram)> {
        lock(&self.latency)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// The tower layer recording into an [`RpcMetrics`].
#[derive(Clone)]
pub struct RpcLayer(pub Arc<RpcMetrics>);

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;
    fn layer(&self, inner: S) -> RpcService<S> {
        RpcService {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct RpcService<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
}

impl<S, B, RB> tower::Service<http::Request<B>> for RpcService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(
        &mut self,
        req: http::Request<B>,
    ) -> <Self as tower::Service<http::Request<B>>>::Future {
        use tracing::Instrument;
        // Only the node's own services name a series; any other path is "unknown", so a
        // caller cannot grow the metrics (or span names) without bound.
        let path = req.uri().path();
        let method = if [
            "/mini.v1.ContainerService/",
            "/mini.v1.ImageService/",
            "/mini.v1.NodeService/",
            "/grpc.health.v1.Health/",
        ]
        .iter()
        .any(|p| path.starts_with(p))
            && path.len() < 100
        {
            path.to_string()
        } else {
            "unknown".to_string()
        };
        let start = Instant::now();
        // The handler runs in the call's span (a child of the caller's, from `traceparent`).
        let span = super::traces::server_span(&method, req.headers());
        let fut = span.in_scope(|| self.inner.call(req)).instrument(span);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let r = fut.await;
            let code = match &r {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .map(code_name)
                    .unwrap_or("OK"),
                Err(_) => "Unavailable",
            };
            metrics.observe(&method, code, start.elapsed());
            r
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket() {
        let m = RpcMetrics::default();
        m.observe("/a", "OK", Duration::from_micros(500));
        m.observe("/a", "NotFound", Duration::from_millis(30));
        m.observe("/a", "OK", Duration::from_secs(20));
        assert_eq!(
            m.calls(),
            vec![
                (("/a".into(), "NotFound".into()), 1),
                (("/a".into(), "OK".into()), 2)
            ]
        );
        let (_, h) = &m.latencies()[0];
        assert_eq!(h.count, 3);
        assert_eq!(h.buckets[0], 1, "0.5 ms ≤ 1 ms");
        assert_eq!(h.buckets[4], 1, "30 ms ≤ 50 ms");
        assert_eq!(
            h.buckets.iter().sum::<u64>(),
            2,
            "20 s is above every bound (+Inf only)"
        );
        assert_eq!(code_name("8"), "ResourceExhausted");
    }
}
