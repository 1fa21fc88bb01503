//! `minictl nodes` and `minictl version`.

use clap::Args;
use mini_proto::v1 as pb;

use super::Ctx;
use crate::output::{bytes_binary, print_json_line, print_str, Format, Table};
use crate::placement;

#[derive(Debug, Args)]
pub struct NodesArgs {}

impl NodesArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        // Every node at once; one that does not answer in time is down, as placement sees it.
        let infos = placement::ask_all(&ctx.clients, placement::SURVEY_TIMEOUT).await;
        let mut t = Table::new(&[
            "NAME",
            "ADDRESS",
            "CPU (ALLOC/CAP)",
            "MEMORY (ALLOC/CAP)",
            "RUNNING",
            "LABELS",
            "CGROUP",
            "VERSION",
            "HEALTH",
        ]);
        let mut code = 0;
        for (cl, r) in ctx.clients.iter().zip(infos) {
            let n = match r {
                Ok(n) => n,
                Err(u) => {
                    // Down: no answer or no connection (TLS refusals explained); error: the
                    // node answered, with an error.
                    let health = if u.is_down(cl) { "down" } else { "error" };
                    let why = u.explain(cl);
                    eprintln!("minictl: node {} is {health}: {why}", cl.name);
                    code = crate::EXIT_FAILURE;
                    match ctx.format {
                        Format::Json => print_json_line(&serde_json::json!({
                            "Name": cl.name, "Address": cl.addr, "Health": health, "Error": why,
                        })),
                        Format::Table => t.row(vec![
                            cl.name.clone(),
                            cl.addr.clone(),
                            String::new(),
                            String::new(),
                            String::new(),
                            String::new(),
                            String::new(),
                            String::new(),
                            health.into(),
                        ]),
                    }
                    continue;
                }
            };
            let cap = n.capacity.unwrap_or_default();
            let alloc = n.allocated.unwrap_or_default();
            // The inventory's name for the node when it has one (what --node takes).
            let name = if cl.member.is_some() || n.name.is_empty() {
                cl.name.clone()
            } else {
                n.name.clone()
            };
            let mut labels = cl
                .member
                .as_ref()
                .map(|m| m.labels.clone())
                .unwrap_or_default();
            labels.extend(n.labels.clone());
            if ctx.format == Format::Json {
                print_json_line(&serde_json::json!({
                    "Name": name, "NodeName": n.name, "Address": cl.addr, "Labels": labels,
                    "Taints": cl.member.as_ref().map(|m| m.taints.iter().map(|t| t.to_string()).collect::<Vec<_>>()).unwrap_or_default(),
                    "CpuMillis": cap.cpu_millis, "MemoryBytes": cap.memory_bytes,
                    "AllocatedCpuMillis": alloc.cpu_millis, "AllocatedMemoryBytes": alloc.memory_bytes,
                    "Running": n.containers_running, "Containers": n.containers_total,
                    "Kernel": n.kernel, "CgroupVersion": n.cgroup_version, "AgentVersion": n.agent_version,
                    "Caller": n.caller, "CallerRole": n.caller_role, "Health": "ready",
                }));
                continue;
            }
            t.row(vec![
                name,
                cl.addr.clone(),
                format!("{}m/{}m", alloc.cpu_millis, cap.cpu_millis),
                format!(
                    "{}/{}",
                    bytes_binary(alloc.memory_bytes.max(0) as u64),
                    bytes_binary(cap.memory_bytes.max(0) as u64)
                ),
                format!("{}/{}", n.containers_running, n.containers_total),
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                format!("v{}", n.cgroup_version),
                n.agent_version,
                "ready".into(),
            ]);
        }
        if ctx.format == Format::Table {
            t.print();
        }
        code
    }
}

pub async fn version(ctx: &Ctx) -> i32 {
    let mut c = ctx.client.node.clone();
    let client = format!(
        "Client: minictl {} ({})\n",
        env!("CARGO_PKG_VERSION"),
        mini_proto::API_VERSION
    );
    match c.version(pb::VersionRequest {}).await {
        Ok(v) => {
            let v = v.into_inner();
            print_str(&format!(
                "{client}Server: minid {} ({}) at {}\n",
                v.version, v.api_version, ctx.client.addr
            ));
            0
        }
        Err(s) => {
            print_str(&client);
            ctx.fail(s)
        }
    }
}
