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

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::daemon::Daemon;
use crate::engine::cgroups::Stats;

/// One running (or paused) container, read now: what both exporters report on.
pub struct Sample {
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub started: Option<SystemTime>,
    /// When the container was created: the start of counts that outlive its restarts.
    pub created: Option<SystemTime>,
    pub restarts: u32,
    pub stats: Stats,
    pub rx: u64,
    pub tx: u64,
}

/// The node's containers now: how many are in each status (every status named, zeros
/// included) and a [`Sample`] of each running or paused one, by id. A container that stops
/// while it is read is left out.
pub struct Snapshot {
    pub statuses: BTreeMap<&'static str, u64>,
    pub running: Vec<Sample>,
}

/// Reads [`Snapshot`] (blocking: one pass over the containers' cgroup files).
pub fn snapshot(d: &Daemon) -> Snapshot {
    let mut statuses: BTreeMap<&'static str, u64> = [
        "created",
        "running",
        "paused",
        "restarting",
        "exited",
        "dead",
    ]
    .into_iter()
    .map(|s| (s, 0))
    .collect();
    let mut running = Vec::new();
    for e in d.entries() {
        let v = d.view(&e);
        *statuses.entry(v.status).or_insert(0) += 1;
        if !matches!(v.status, "running" | "paused") {
            continue;
        }
        let Ok((stats, (rx, tx))) = d.stats(&e) else {
            continue;
        };
        let time = |t: &str| humantime::parse_rfc3339_weak(t).ok();
        running.push(Sample {
            id: v.meta.id.clone(),
            name: v.meta.name.clone(),
            image: v.meta.config.image.clone(),
            image_id: v.meta.image_id.clone(),
            started: v.meta.started_at.as_deref().and_then(time),
            created: time(&v.meta.created_at),
            restarts: v.meta.restart_count,
            stats,
            rx,
            tx,
        });
    }
    running.sort_by(|a, b| a.id.cmp(&b.id));
    Snapshot { statuses, running }
}
