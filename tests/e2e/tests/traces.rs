//! One trace across the wire: `minictl run` with `MINICTL_OTLP_ENDPOINT` and an agent with
//! `--otlp-endpoint` send their spans to a real OTLP/gRPC receiver on 127.0.0.1; the minictl
//! span, the agent's call spans (children of it, through `traceparent`) and the engine's step
//! spans share one trace id.

#![allow(clippy::unwrap_used)] // test code

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mini_e2e::{require_root, stderr, Node};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;

/// (service.name, span name, trace id, span id, parent span id)
type Got = (String, String, Vec<u8>, Vec<u8>, Vec<u8>);

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Got>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut out = self.spans.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| match a.value.as_ref()?.value.as_ref()? {
                    any_value::Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for s in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                out.push((
                    service.clone(),
                    s.name,
                    s.trace_id,
                    s.span_id,
                    s.parent_span_id,
                ));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[test]
fn one_trace_covers_minictl_the_agent_and_the_engine() {
    require_root!();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = Receiver::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let svc = TraceServiceServer::new(r.clone());
    rt.spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    // The agent's batch processor sends every 100 ms.
    std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
    let n = Node::start_with(vec!["--otlp-endpoint".into(), endpoint.clone()]);
    let tar = mini_e2e::busybox_tar(n.dir.path());
    n.ok(&["import", tar.to_str().unwrap(), "busybox"]);

    let out = n
        .ctl_command(&["run", "--rm", "--network", "none", "busybox", "true"])
        .env("MINICTL_OTLP_ENDPOINT", &endpoint)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let root = || {
        r.spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.0 == "minictl" && s.1 == "minictl run")
            .cloned()
    };
    n.until(Duration::from_secs(10), "the minictl span", || {
        root().is_some()
    });
    let (_, _, trace, root_id, _) = root().unwrap();
    let in_trace = || -> Vec<(String, String, Vec<u8>)> {
        r.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.2 == trace && s.0 == "minid")
            .map(|s| (s.1.clone(), s.0.clone(), s.4.clone()))
            .collect()
    };
    let want = [
        "mini.v1.ContainerService/Create",
        // `run` starts with its output attached: one call.
        "mini.v1.ContainerService/StartAttached",
        "image resolve",
        "snapshot prepare",
        "shim spawn",
        "start",
    ];
    n.until(
        Duration::from_secs(10),
        "the agent's spans in the same trace",
        || {
            let got = in_trace();
            want.iter()
                .all(|w| got.iter().any(|(name, _, _)| name == w))
        },
    );
    // The agent's call spans are children of minictl's span.
    let got = in_trace();
    let create = got
        .iter()
        .find(|(name, _, _)| name == "mini.v1.ContainerService/Create")
        .unwrap();
    assert_eq!(create.2, root_id, "Create's parent is the minictl span");
}
