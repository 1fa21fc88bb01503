//! `minictl create`: the flags `run` shares, turned into a ContainerConfig.

use std::collections::HashMap;

use clap::Args;
use mini_proto::v1 as pb;

use minisim::policy::{Constraint, Policy, Task, Toleration};

use super::Ctx;
use crate::client::Client;
use crate::output::Format;
use crate::placement::{self, PlaceError};

/// Docker's container flags.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// Print help (-h is --hostname, as in Docker)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (KEY=VALUE, or KEY to copy it from here)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines)
    #[arg(long)]
    pub env_file: Vec<std::path::PathBuf>,
    /// Bind mount a host path: /host:/container[:ro]
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// A mount: type=bind|tmpfs,source=..,target=..[,readonly][,tmpfs-size=..]
    #[arg(long = "mount")]
    pub mounts: Vec<String>,
    /// A tmpfs mount: /path[:options]
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Memory limit (64m, 1g)
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory plus swap limit; -1 for unlimited swap
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Number of CPUs (0.5 is half a CPU)
    #[arg(long)]
    pub cpus: Option<String>,
    /// CPU shares (relative weight)
    #[arg(long)]
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Limit on the number of processes (-1: unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block I/O weight, 10 to 1000
    #[arg(long)]
    pub blkio_weight: Option<u32>,
    /// Restart policy: no, always, on-failure[:N], unless-stopped
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Set metadata (KEY=VALUE)
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    /// Username or UID, optionally with a group (user[:group])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Override the image's entrypoint ("" clears it)
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Network: bridge (its own address on the node's bridge), none (loopback only) or host
    #[arg(long, default_value = "bridge")]
    pub network: String,
    /// Publish a port: [host_ip:][host_port:]container_port[/tcp|udp] (no host port: a free
    /// one)
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Mount the root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Add capabilities
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop capabilities
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Signal to stop the container
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Seconds to wait for the stop signal before SIGKILL
    #[arg(long)]
    pub stop_timeout: Option<u32>,
    /// Allocate a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep stdin open
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// How to choose the node in a cluster: first-fit, binpack, spread (default), balanced,
    /// dot-product, fgd (GPU-aware: on nodes without GPUs it is first-fit), random, p2c, or
    /// exec:PROGRAM
    #[arg(long, value_name = "POLICY")]
    pub scheduler: Option<String>,
    /// Only nodes whose labels match: key=value, key!=value, "key in a,b", "key exists"
    #[arg(long)]
    pub constraint: Vec<String>,
    /// Allow nodes with this taint: key=value[:NoSchedule], key, or * for every taint
    #[arg(long)]
    pub toleration: Vec<String>,
    /// Print how the node was chosen (each node's verdict and scores) on stderr
    #[arg(long)]
    pub explain: bool,
    /// The image
    pub image: String,
    /// Command and arguments (replace the image's Cmd)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

pub use crate::units::parse_size;

/// `-p [host_ip:][host_port:]container_port[/proto]`, as Docker reads it.
pub fn parse_publish(s: &str) -> Result<pb::PortMapping, String> {
    let bad = |why: &str| {
        format!(
            "invalid --publish {s:?}: {why} (form: [host_ip:][host_port:]container_port[/tcp|udp])"
        )
    };
    let (spec, proto) = match s.rsplit_once('/') {
        Some((a, p @ ("tcp" | "udp"))) => (a, p),
        Some(_) => return Err(bad("the protocol must be tcp or udp")),
        None => (s, "tcp"),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, cont) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [i, h, c] => (*i, *h, *c),
        _ => return Err(bad("too many parts")),
    };
    if !ip.is_empty() && ip.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(bad("the host address is not an IPv4 address"));
    }
    let port = |p: &str, what: &str| -> Result<u32, String> {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .map(u32::from)
            .ok_or_else(|| bad(&format!("the {what} port is not 1-65535")))
    };
    Ok(pb::PortMapping {
        host_ip: ip.to_string(),
        host_port: if host.is_empty() {
            0
        } else {
            port(host, "host")?
        },
        container_port: port(cont, "container")?,
        protocol: proto.to_string(),
    })
}

/// The policy `run` places with when `--scheduler` is not given: Docker Swarm's default.
pub const DEFAULT_SCHEDULER: &str = "spread";

async fn create_call(
    cl: &Client,
    req: pb::CreateRequest,
) -> Result<pb::CreateResponse, tonic::Status> {
    let mut c = cl.containers.clone();
    c.create(req).await.map(|r| r.into_inner())
}

/// Create on one node, warnings printed; the exit status after reporting a failure.
async fn create_on(cl: &Client, req: pb::CreateRequest) -> Result<String, i32> {
    match create_call(cl, req).await {
        Ok(r) => {
            for w in r.warnings {
                eprintln!("WARNING: {w}");
            }
            Ok(r.id)
        }
        Err(s) => Err(cl.fail(s)),
    }
}

/// "500m cpu, 64Mi memory, labels a=b, constraints zone=a": what was placed.
fn task_summary(t: &Task) -> String {
    let mut parts = vec![format!("{}m cpu, {}Mi memory", t.cpu_milli, t.memory_mib)];
    if !t.constraints.is_empty() {
        parts.push(format!(
            "constraints {}",
            t.constraints
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if !t.tolerations.is_empty() {
        parts.push(format!(
            "tolerations {}",
            t.tolerations
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    parts.join("; ")
}

impl CreateArgs {
    /// The config these flags ask for; a flag that does not parse is an error naming it.
    pub fn config(&self) -> Result<pb::ContainerConfig, String> {
        let mut env = Vec::new();
        for f in &self.env_file {
            let text = std::fs::read_to_string(f)
                .map_err(|e| format!("--env-file {}: {e}", f.display()))?;
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                env.push(line.to_string());
            }
        }
        for e in &self.env {
            if e.contains('=') {
                env.push(e.clone());
            } else if let Ok(v) = std::env::var(e) {
                // Docker: `-e NAME` passes this shell's value on.
                env.push(format!("{e}={v}"));
            }
        }
        let memory_bytes = match &self.memory {
            Some(m) => parse_size(m).map_err(|e| format!("invalid --memory: {e}"))?,
            None => 0,
        };
        let memory_swap_bytes = match self.memory_swap.as_deref() {
            Some("-1") => -1,
            Some(m) => parse_size(m).map_err(|e| format!("invalid --memory-swap: {e}"))?,
            None => 0,
        };
        let cpu_millis = match &self.cpus {
            Some(c) => {
                let v: f64 = c
                    .parse()
                    .map_err(|_| format!("invalid --cpus: {c:?} is not a number of CPUs"))?;
                if !(v.is_finite() && v > 0.0) {
                    return Err(format!("invalid --cpus: {c:?} must be more than 0"));
                }
                (v * 1000.0).round() as i64
            }
            None => 0,
        };
        let (policy, max_retries) = match self.restart.split_once(':') {
            Some(("on-failure", n)) => (
                "on-failure".to_string(),
                n.parse::<u32>()
                    .map_err(|_| format!("invalid --restart: {n:?} is not a retry count"))?,
            ),
            Some(_) => return Err(format!("invalid --restart {:?}", self.restart)),
            None => (self.restart.clone(), 0),
        };
        if !matches!(
            policy.as_str(),
            "no" | "always" | "on-failure" | "unless-stopped"
        ) {
            return Err(format!(
                "invalid --restart {:?}: use no, always, on-failure[:N] or unless-stopped",
                self.restart
            ));
        }
        let mut labels = HashMap::new();
        for l in &self.labels {
            let (k, v) = match l.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (l.clone(), String::new()),
            };
            labels.insert(k, v);
        }
        let mut mounts = Vec::new();
        for v in &self.volumes {
            let parts: Vec<&str> = v.split(':').collect();
            let (src, dst, ro) = match parts.as_slice() {
                [s, d] => (*s, *d, false),
                [s, d, "ro"] => (*s, *d, true),
                [s, d, "rw"] => (*s, *d, false),
                _ => {
                    return Err(format!(
                        "invalid -v {v:?}: use /host/path:/container/path[:ro]"
                    ))
                }
            };
            if !src.starts_with('/') {
                return Err(format!(
                    "invalid -v {v:?}: named volumes are not supported yet; give an absolute host path"
                ));
            }
            mounts.push(pb::Mount {
                r#type: "bind".into(),
                source: src.into(),
                target: dst.into(),
                read_only: ro,
                options: Vec::new(),
            });
        }
        for t in &self.tmpfs {
            let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
            mounts.push(pb::Mount {
                r#type: "tmpfs".into(),
                source: String::new(),
                target: dst.into(),
                read_only: false,
                options: opts
                    .split(',')
                    .filter(|o| !o.is_empty())
                    .map(String::from)
                    .collect(),
            });
        }
        for m in &self.mounts {
            let mut mt = pb::Mount::default();
            for field in m.split(',') {
                let (k, v) = field.split_once('=').unwrap_or((field, ""));
                match k {
                    "type" => mt.r#type = v.into(),
                    "source" | "src" => mt.source = v.into(),
                    "target" | "destination" | "dst" => mt.target = v.into(),
                    "readonly" | "ro" => mt.read_only = v.is_empty() || v == "true" || v == "1",
                    "tmpfs-size" => mt.options.push(format!("size={v}")),
                    "tmpfs-mode" => mt.options.push(format!("mode={v}")),
                    other => return Err(format!("invalid --mount {m:?}: unknown field {other:?}")),
                }
            }
            if mt.target.is_empty() {
                return Err(format!("invalid --mount {m:?}: no target"));
            }
            mounts.push(mt);
        }
        let ports = self
            .publish
            .iter()
            .map(|p| parse_publish(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(pb::ContainerConfig {
            ports,
            image: self.image.clone(),
            cmd: self.cmd.clone(),
            entrypoint: self.entrypoint.clone().map(|e| vec![e]).unwrap_or_default(),
            env,
            workdir: self.workdir.clone().unwrap_or_default(),
            user: self.user.clone().unwrap_or_default(),
            hostname: self.hostname.clone().unwrap_or_default(),
            labels,
            mounts,
            resources: Some(pb::Resources {
                cpu_millis,
                memory_bytes,
                memory_swap_bytes,
                pids_limit: self.pids_limit.unwrap_or(0),
                cpuset_cpus: self.cpuset_cpus.clone().unwrap_or_default(),
                io_weight: self.blkio_weight.unwrap_or(0),
                cpu_shares: self.cpu_shares.unwrap_or(0),
                unified: HashMap::new(),
            }),
            network_mode: self.network.clone(),
            restart_policy: Some(pb::RestartPolicy {
                name: policy,
                max_retries,
            }),
            tty: self.tty,
            open_stdin: self.interactive,
            stop_signal: self.stop_signal.clone().unwrap_or_default(),
            stop_timeout_secs: self.stop_timeout,
            auto_remove: self.rm,
            read_only_rootfs: self.read_only,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
        })
    }

    /// Sends Create (to the node the policy chooses when the context places); returns the
    /// id and the node holding it, or the exit status after reporting the failure.
    pub async fn create(&self, ctx: &Ctx) -> Result<(String, Client), i32> {
        let config = self.config().map_err(|e| {
            eprintln!("minictl: {e}");
            crate::EXIT_FAILURE
        })?;
        let req = pb::CreateRequest {
            name: self.name.clone().unwrap_or_default(),
            config: Some(config),
        };
        let size = prost::Message::encoded_len(&req);
        if size > crate::client::MAX_MESSAGE {
            eprintln!(
                "minictl: the container's configuration is {} MiB, more than the {} MiB a request may carry (a large --env-file?)",
                size >> 20,
                crate::client::MAX_MESSAGE >> 20
            );
            return Err(crate::EXIT_FAILURE);
        }
        if !ctx.placing {
            if self.scheduler.is_some()
                || !self.constraint.is_empty()
                || !self.toleration.is_empty()
                || self.explain
            {
                eprintln!(
                    "minictl: --scheduler, --constraint, --toleration and --explain choose among a cluster's nodes, \
                     but one --node names the node: leave --node out (with an inventory) or give several"
                );
                return Err(crate::EXIT_FAILURE);
            }
            return create_on(&ctx.client, req)
                .await
                .map(|id| (id, ctx.client.clone()));
        }
        self.place(ctx, req).await
    }

    /// The task the placement flags describe, and the policy.
    fn placement(
        &self,
        config: &pb::ContainerConfig,
        name: &str,
    ) -> Result<(Task, Policy), String> {
        let mut task = placement::task_for(name, config);
        for c in &self.constraint {
            task.constraints.push(
                c.parse::<Constraint>()
                    .map_err(|e| format!("--constraint: {e}"))?,
            );
        }
        for t in &self.toleration {
            task.tolerations.push(
                t.parse::<Toleration>()
                    .map_err(|e| format!("--toleration: {e}"))?,
            );
        }
        let policy = self
            .scheduler
            .as_deref()
            .unwrap_or(DEFAULT_SCHEDULER)
            .parse::<Policy>()
            .map_err(|e| format!("--scheduler: {e}"))?;
        Ok((task, policy))
    }

    async fn place(&self, ctx: &Ctx, req: pb::CreateRequest) -> Result<(String, Client), i32> {
        let config = req.config.clone().unwrap_or_default();
        let (task, policy) = self.placement(&config, &req.name).map_err(|e| {
            eprintln!("minictl: {e}");
            crate::EXIT_FAILURE
        })?;
        let survey = placement::survey(&ctx.clients, placement::SURVEY_TIMEOUT).await;
        let mut nodes: Vec<_> = ctx
            .clients
            .iter()
            .zip(&survey)
            .map(|(cl, info)| placement::to_node(&cl.name, cl.member.as_ref(), info))
            .collect();
        // Random policies draw from the clock: a live decision should not repeat itself.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        let mut stack = match policy.build(seed, std::iter::once(&task)) {
            Ok(s) => s.with_explain(true),
            Err(e) => {
                eprintln!("minictl: --scheduler {policy}: {e}");
                return Err(crate::EXIT_FAILURE);
            }
        };
        let clients = &ctx.clients;
        let mut refused: placement::Refusals = Vec::new();
        let (first, result) = placement::place_and_create(
            &mut stack,
            &mut nodes,
            &task,
            |i| create_call(&clients[i], req.clone()),
            |i, s| {
                eprintln!(
                    "minictl: node {} refused ({}); choosing again among the others",
                    clients[i].name,
                    s.message()
                );
                refused.push((i, s.message().to_string()));
            },
        )
        .await;
        let chosen = result.as_ref().ok().map(|(i, _)| *i);
        if self.explain {
            if let Some(d) = &first {
                if ctx.format == Format::Json {
                    if let Ok(j) = serde_json::to_string(d) {
                        eprintln!("{j}");
                    }
                } else {
                    eprintln!("policy {}: {}", policy.name(), task_summary(&task));
                    eprint!(
                        "{}",
                        placement::explain_table(d, &nodes, clients, &survey, &refused, chosen)
                            .render()
                    );
                }
            }
        }
        match result {
            Ok((i, r)) => {
                for w in r.warnings {
                    eprintln!("WARNING: {w}");
                }
                Ok((r.id, clients[i].clone()))
            }
            Err(PlaceError::NoNode(d)) => {
                eprintln!("minictl: {}", placement::why_none(&d, &survey, &refused));
                Err(crate::EXIT_FAILURE)
            }
            Err(PlaceError::Create(i, s)) => Err(clients[i].fail(s)),
            Err(PlaceError::Policy(e)) => {
                eprintln!("minictl: --scheduler {policy}: {e}");
                Err(crate::EXIT_FAILURE)
            }
        }
    }

    pub async fn run(&self, ctx: &Ctx) -> i32 {
        match self.create(ctx).await {
            Ok((id, _)) => {
                crate::output::print_str(&format!("{id}\n"));
                0
            }
            Err(code) => code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_flags_are_named() {
        assert!(parse_size("12Q").unwrap_err().contains("not a size"));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        let base = |f: &dyn Fn(&mut CreateArgs)| {
            let mut a = CreateArgs {
                help: None,
                name: None,
                env: vec![],
                env_file: vec![],
                volumes: vec![],
                mounts: vec![],
                tmpfs: vec![],
                memory: None,
                memory_swap: None,
                cpus: None,
                cpu_shares: None,
                cpuset_cpus: None,
                pids_limit: None,
                blkio_weight: None,
                restart: "no".into(),
                labels: vec![],
                user: None,
                workdir: None,
                entrypoint: None,
                hostname: None,
                network: "none".into(),
                publish: vec![],
                read_only: false,
                cap_add: vec![],
                cap_drop: vec![],
                stop_signal: None,
                stop_timeout: None,
                tty: false,
                interactive: false,
                rm: false,
                scheduler: None,
                constraint: vec![],
                toleration: vec![],
                explain: false,
                image: "busybox".into(),
                cmd: vec![],
            };
            f(&mut a);
            a.config()?;
            a.placement(&a.config()?, "c")
                .map(|_| a.config().unwrap_or_default())
        };
        assert!(base(&|a| a.publish = vec!["80/sctp".into()])
            .unwrap_err()
            .contains("tcp or udp"));
        let p = |s: &str| {
            parse_publish(s).map(|p| (p.host_ip, p.host_port, p.container_port, p.protocol))
        };
        assert_eq!(p("8080:80"), Ok(("".into(), 8080, 80, "tcp".into())));
        assert_eq!(
            p("127.0.0.1:5353:53/udp"),
            Ok(("127.0.0.1".into(), 5353, 53, "udp".into()))
        );
        assert_eq!(p("80"), Ok(("".into(), 0, 80, "tcp".into())));
        assert_eq!(
            p("127.0.0.1::80"),
            Ok(("127.0.0.1".into(), 0, 80, "tcp".into()))
        );
        assert!(p("host:80:80").unwrap_err().contains("IPv4"));
        assert!(p("70000:80").unwrap_err().contains("host port"));
        assert!(p("1:2:3:4").is_err());
        assert!(base(&|a| a.constraint = vec!["zone".into()])
            .unwrap_err()
            .contains("--constraint: invalid constraint \"zone\""));
        assert!(base(&|a| a.toleration = vec!["=x".into()])
            .unwrap_err()
            .starts_with("--toleration: "));
        assert!(base(&|a| a.scheduler = Some("best".into()))
            .unwrap_err()
            .starts_with("--scheduler: unknown policy \"best\""));
        assert!(base(&|a| {
            a.scheduler = Some("binpack".into());
            a.constraint = vec!["zone in a,b".into(), "gpu exists".into()];
            a.toleration = vec!["*".into()];
        })
        .is_ok());
        assert!(base(&|a| a.memory = Some("12Q".into()))
            .unwrap_err()
            .contains("--memory"));
        assert!(base(&|a| a.cpus = Some("lots".into()))
            .unwrap_err()
            .contains("--cpus"));
        assert!(base(&|a| a.cpus = Some("-1".into()))
            .unwrap_err()
            .contains("--cpus"));
        assert!(base(&|a| a.restart = "sometimes".into())
            .unwrap_err()
            .contains("--restart"));
        assert!(base(&|a| a.volumes = vec!["data:/x".into()])
            .unwrap_err()
            .contains("named volumes"));
        let c = base(&|a| {
            a.cpus = Some("0.5".into());
            a.memory = Some("64m".into());
            a.restart = "on-failure:3".into();
            a.volumes = vec!["/tmp:/host-tmp:ro".into()];
        })
        .unwrap();
        let r = c.resources.unwrap();
        assert_eq!((r.cpu_millis, r.memory_bytes), (500, 64 << 20));
        let p = c.restart_policy.unwrap();
        assert_eq!((p.name.as_str(), p.max_retries), ("on-failure", 3));
        assert!(c.mounts[0].read_only);
    }
}
