//! `minictl nodes` and `minictl version`.

use clap::Args;
use mini_proto::v1 as pb;

use super::Ctx;
use crate::output::{bytes_binary, print_json_line, print_str, Format, Table};

#[derive(Debug, Args)]
pub struct NodesArgs {}

impl NodesArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let infos = futures::future::join_all(ctx.clients.iter().map(|cl| {
            let mut c = cl.node.clone();
            async move { c.info(pb::NodeInfoRequest {}).await.map(|r| r.into_inner()) }
        }))
        .await;
        let mut t = Table::new(&[
            "NAME",
            "ADDRESS",
            "CPU (ALLOC/CAP)",
            "MEMORY (ALLOC/CAP)",
            "RUNNING",
            "CGROUP",
            "VERSION",
            "HEALTH",
        ]);
        let mut code = 0;
        for (cl, r) in ctx.clients.iter().zip(infos) {
            let n = match r {
                Ok(n) => n,
                Err(s) => {
                    let e = cl.explain(s);
                    eprintln!("minictl: node {}: {e}", cl.addr);
                    code = crate::EXIT_FAILURE;
                    if ctx.format == Format::Table {
                        t.row(vec![
                            "?".into(),
                            cl.addr.clone(),
                            String::new(),
                            String::new(),
                            String::new(),
                            String::new(),
                            String::new(),
                            "unreachable".into(),
                        ]);
                    }
                    continue;
                }
            };
            let cap = n.capacity.unwrap_or_default();
            let alloc = n.allocated.unwrap_or_default();
            if ctx.format == Format::Json {
                print_json_line(&serde_json::json!({
                    "Name": n.name, "Address": cl.addr, "Labels": n.labels,
                    "CpuMillis": cap.cpu_millis, "MemoryBytes": cap.memory_bytes,
                    "AllocatedCpuMillis": alloc.cpu_millis, "AllocatedMemoryBytes": alloc.memory_bytes,
                    "Running": n.containers_running, "Containers": n.containers_total,
                    "Kernel": n.kernel, "CgroupVersion": n.cgroup_version, "AgentVersion": n.agent_version,
                    "Caller": n.caller, "CallerRole": n.caller_role,
                }));
                continue;
            }
            t.row(vec![
                n.name,
                cl.addr.clone(),
                format!("{}m/{}m", alloc.cpu_millis, cap.cpu_millis),
                format!(
                    "{}/{}",
                    bytes_binary(alloc.memory_bytes.max(0) as u64),
                    bytes_binary(cap.memory_bytes.max(0) as u64)
                ),
                format!("{}/{}", n.containers_running, n.containers_total),
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
