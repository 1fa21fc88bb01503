//! What minid tells the outside about itself and its containers.
//!
//! - [`rpc`]: counts and latencies of every gRPC call, by method and status (a tower layer
//!   around the services);
//! - [`prometheus`]: the Prometheus text endpoint (`minid serve --metrics-listen ADDR`), with
//!   cAdvisor's names for container metrics so existing dashboards and alerts work, and the
//!   agent's own health;
//! - [`otlp`]: container metrics pushed to an OpenTelemetry collector;
//! - [`traces`]: spans exported over OTLP, linked to the caller's by `traceparent`.

pub mod otlp;
pub mod prometheus;
pub mod rpc;
pub mod traces;
