//! `minictl ps`: Docker's columns, `-a`, `-q`, `--filter`, `--no-trunc`, `--format json`.

use clap::Args;
use mini_proto::v1 as pb;

use super::Ctx;
use crate::output::{ago, human_duration, print_json_line, print_str, short_id, Format, Table};
use crate::placement::Unanswered;

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default: running ones)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only ids
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Filter: label=K[=V], status=S, name=N, id=PREFIX, image=I
    #[arg(short = 'f', long = "filter")]
    pub filters: Vec<String>,
    /// Do not cut ids and commands
    #[arg(long)]
    pub no_trunc: bool,
}

/// Docker's STATUS column: `Up 2 minutes`, `Exited (0) 3 seconds ago`, `Created`.
pub fn status_text(st: &pb::ContainerState) -> String {
    let since = |t: &str| {
        humantime::parse_rfc3339_weak(t)
            .ok()
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
            .map(human_duration)
            .unwrap_or_default()
    };
    match st.status.as_str() {
        "running" => format!("Up {}", since(&st.started_at)),
        "paused" => format!("Up {} (Paused)", since(&st.started_at)),
        "exited" => format!("Exited ({}) {}", st.exit_code, ago(&st.finished_at)),
        "restarting" => format!("Restarting ({}) {}", st.exit_code, ago(&st.finished_at)),
        "created" => "Created".into(),
        "dead" => "Dead".into(),
        other => other.to_string(),
    }
}

/// Docker's PORTS column: `0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp`.
pub fn ports_text(ports: &[pb::PortMapping]) -> String {
    ports
        .iter()
        .map(|p| {
            format!(
                "{}:{}->{}/{}",
                p.host_ip, p.host_port, p.container_port, p.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn info_json(c: &pb::ContainerInfo) -> serde_json::Value {
    let st = c.state.clone().unwrap_or_default();
    serde_json::json!({
        "ID": c.id, "Names": c.name, "Image": c.image, "ImageID": c.image_id,
        "Command": c.command.join(" "), "CreatedAt": c.created_at, "State": st.status,
        "Status": status_text(&st), "Pid": st.pid, "ExitCode": st.exit_code,
        "OOMKilled": st.oom_killed, "StartedAt": st.started_at, "FinishedAt": st.finished_at,
        "RestartCount": c.restart_count, "Node": c.node,
        "Ports": ports_text(&c.ports), "IPAddress": c.ip_addresses.first().cloned().unwrap_or_default(),
        "Labels": c.config.as_ref().map(|x| x.labels.clone()).unwrap_or_default(),
    })
}

impl PsArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        // Every node at once; a node that fails is reported and the others still listed.
        let lists = futures::future::join_all(ctx.clients.iter().map(|cl| {
            let mut c = cl.containers.clone();
            let req = pb::ListRequest {
                all: self.all,
                filters: self.filters.clone(),
            };
            async move {
                // A node that does not answer in time counts as down, as in placement.
                let t = crate::placement::SURVEY_TIMEOUT;
                let mut s = match tokio::time::timeout(t, c.list(req)).await {
                    Ok(r) => r.map_err(Unanswered::Failed)?.into_inner(),
                    Err(_) => return Err(Unanswered::Timeout(t)),
                };
                let mut items = Vec::new();
                while let Some(i) = s.message().await.map_err(Unanswered::Failed)? {
                    items.push(i);
                }
                Ok(items)
            }
        }))
        .await;
        let mut items = Vec::new();
        let mut code = 0;
        for (cl, r) in ctx.clients.iter().zip(lists) {
            match r {
                Ok(v) => items.extend(v.into_iter().map(|i| (cl, i))),
                Err(u) => {
                    eprintln!("minictl: node {}: {}", cl.name, u.explain(cl));
                    code = crate::EXIT_FAILURE;
                }
            }
        }
        let several = ctx.clients.len() > 1;
        let items_only: Vec<&pb::ContainerInfo> = items.iter().map(|(_, i)| i).collect();
        if self.quiet {
            let ids: String = items_only
                .iter()
                .map(|i| short_id(&i.id, self.no_trunc) + "\n")
                .collect();
            print_str(&ids);
            return code;
        }
        if ctx.format == Format::Json {
            for (node, i) in &items {
                let mut v = info_json(i);
                v["NodeAddress"] = serde_json::Value::String(node.addr.clone());
                if node.member.is_some() {
                    v["Node"] = serde_json::Value::String(node.name.clone());
                }
                print_json_line(&v);
            }
            return code;
        }
        let mut header = vec![
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
            // Not one of Docker's columns: the container's address on its node's bridge.
            "ADDRESS",
        ];
        if several {
            header.push("NODE");
        }
        let mut t = Table::new(&header);
        for (node, i) in &items {
            let st = i.state.clone().unwrap_or_default();
            let mut cmd = i.command.join(" ");
            if !self.no_trunc && cmd.chars().count() > 20 {
                cmd = cmd.chars().take(19).collect::<String>() + "…";
            }
            let mut row = vec![
                short_id(&i.id, self.no_trunc),
                i.image.clone(),
                format!("\"{cmd}\""),
                ago(&i.created_at),
                status_text(&st),
                ports_text(&i.ports),
                i.name.clone(),
                i.ip_addresses.join(","),
            ];
            if several {
                // The inventory's name, else the node's own, else its address.
                row.push(if node.member.is_some() || i.node.is_empty() {
                    node.name.clone()
                } else {
                    i.node.clone()
                });
            }
            t.row(row);
        }
        t.print();
        code
    }
}
