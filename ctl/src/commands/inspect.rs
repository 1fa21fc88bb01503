//! `minictl inspect`: a JSON array of the containers' details (Docker's shape, trimmed).

use clap::Args;
use mini_proto::v1 as pb;

use super::Ctx;
use crate::output::print_str;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Containers (name, id or id prefix)
    #[arg(required = true)]
    pub containers: Vec<String>,
}

fn to_json(c: &pb::ContainerInfo) -> serde_json::Value {
    let st = c.state.clone().unwrap_or_default();
    let cfg = c.config.clone().unwrap_or_default();
    let r = cfg.resources.clone().unwrap_or_default();
    let rp = cfg.restart_policy.clone().unwrap_or_default();
    serde_json::json!({
        "Id": c.id,
        "Name": c.name,
        "Created": c.created_at,
        "Image": c.image_id,
        "Node": c.node,
        "RestartCount": c.restart_count,
        "Path": c.command.first().cloned().unwrap_or_default(),
        "Args": c.command.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": st.status,
            "Running": st.status == "running",
            "Paused": st.status == "paused",
            "Restarting": st.status == "restarting",
            "OOMKilled": st.oom_killed,
            "Dead": st.status == "dead",
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Signal": st.signal,
            "Error": st.error,
            "StartedAt": st.started_at,
            "FinishedAt": st.finished_at,
        },
        "Config": {
            "Image": cfg.image,
            "Cmd": cfg.cmd,
            "Entrypoint": cfg.entrypoint,
            "Env": cfg.env,
            "WorkingDir": cfg.workdir,
            "User": cfg.user,
            "Hostname": cfg.hostname,
            "Labels": cfg.labels,
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
            "StopSignal": cfg.stop_signal,
            "StopTimeout": cfg.stop_timeout_secs,
        },
        "HostConfig": {
            "NanoCpus": r.cpu_millis * 1_000_000,
            "Memory": r.memory_bytes,
            "MemorySwap": r.memory_swap_bytes,
            "PidsLimit": r.pids_limit,
            "CpusetCpus": r.cpuset_cpus,
            "CpuShares": r.cpu_shares,
            "BlkioWeight": r.io_weight,
            "NetworkMode": cfg.network_mode,
            "PortBindings": cfg.ports.iter().map(|p| serde_json::json!({
                "HostIp": p.host_ip, "HostPort": p.host_port, "ContainerPort": p.container_port,
                "Protocol": p.protocol,
            })).collect::<Vec<_>>(),
            "RestartPolicy": {"Name": rp.name, "MaximumRetryCount": rp.max_retries},
            "AutoRemove": cfg.auto_remove,
            "ReadonlyRootfs": cfg.read_only_rootfs,
            "CapAdd": cfg.cap_add,
            "CapDrop": cfg.cap_drop,
            "Mounts": cfg.mounts.iter().map(|m| serde_json::json!({
                "Type": m.r#type, "Source": m.source, "Target": m.target,
                "ReadOnly": m.read_only, "Options": m.options,
            })).collect::<Vec<_>>(),
        },
        "NetworkSettings": {
            "IPAddress": c.ip_addresses.first().cloned().unwrap_or_default(),
            "IPAddresses": c.ip_addresses,
            "Gateway": c.gateway,
            // Docker's shape: "80/tcp": [{"HostIp": .., "HostPort": ..}].
            "Ports": c.ports.iter().fold(serde_json::Map::new(), |mut m, p| {
                let key = format!("{}/{}", p.container_port, p.protocol);
                let v = m.entry(key).or_insert_with(|| serde_json::json!([]));
                if let Some(a) = v.as_array_mut() {
                    a.push(serde_json::json!({"HostIp": p.host_ip, "HostPort": p.host_port.to_string()}));
                }
                m
            }),
        },
    })
}

impl InspectArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let mut out = Vec::new();
        let mut code = 0;
        for t in &self.containers {
            let Some(cl) = ctx.node_for(t, &mut code).await else {
                continue;
            };
            let mut c = cl.containers.clone();
            match c
                .inspect(pb::InspectRequest {
                    container: t.clone(),
                })
                .await
            {
                Ok(i) => out.push(to_json(i.get_ref())),
                Err(s) => code = cl.fail(s),
            }
        }
        if !out.is_empty() || code == 0 {
            print_str(
                &(serde_json::to_string_pretty(&serde_json::Value::Array(out)).unwrap_or_default()
                    + "\n"),
            );
        }
        code
    }
}
