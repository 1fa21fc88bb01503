//! proto ⇄ daemon types. No logic beyond the mapping (and Docker's defaults for unset fields).

use mini_proto::v1 as pb;

use crate::daemon::{self, ContainerConfig, MountSpec, Resources, RestartPolicy, View};
use crate::engine::error::{EngineError, Result};
use crate::engine::image::Image;

pub fn config_from_pb(c: pb::ContainerConfig) -> Result<ContainerConfig> {
    let r = c.resources.unwrap_or_default();
    let restart = match c.restart_policy {
        Some(p) => RestartPolicy::parse(&p.name, p.max_retries)?,
        None => RestartPolicy::No,
    };
    Ok(ContainerConfig {
        image: c.image,
        cmd: c.cmd,
        entrypoint: c.entrypoint,
        env: c.env,
        workdir: c.workdir,
        user: c.user,
        hostname: c.hostname,
        labels: c.labels.into_iter().collect(),
        mounts: c
            .mounts
            .into_iter()
            .map(|m| MountSpec {
                kind: if m.r#type.is_empty() {
                    "bind".into()
                } else {
                    m.r#type
                },
                source: m.source,
                target: m.target,
                read_only: m.read_only,
                options: m.options,
            })
            .collect(),
        resources: Resources {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            memory_swap_bytes: r.memory_swap_bytes,
            pids_limit: r.pids_limit,
            cpuset_cpus: r.cpuset_cpus,
            io_weight: r.io_weight,
            cpu_shares: r.cpu_shares,
            unified: r.unified.into_iter().collect(),
        },
        network_mode: c.network_mode,
        ports: c
            .ports
            .into_iter()
            .map(|p| {
                let port = |n: u32, what: &str| {
                    u16::try_from(n).map_err(|_| {
                        EngineError::InvalidArgument(format!("{what} port {n} is not 0-65535"))
                    })
                };
                Ok(daemon::config::PortSpec {
                    host_ip: p.host_ip,
                    host_port: port(p.host_port, "host")?,
                    container_port: port(p.container_port, "container")?,
                    protocol: p.protocol,
                })
            })
            .collect::<Result<_>>()?,
        restart,
        tty: c.tty,
        open_stdin: c.open_stdin,
        stop_signal: c.stop_signal,
        stop_timeout_secs: c.stop_timeout_secs,
        auto_remove: c.auto_remove,
        read_only: c.read_only_rootfs,
        cap_add: c.cap_add,
        cap_drop: c.cap_drop,
    })
}

pub fn config_to_pb(c: &ContainerConfig) -> pb::ContainerConfig {
    let r = &c.resources;
    pb::ContainerConfig {
        image: c.image.clone(),
        cmd: c.cmd.clone(),
        entrypoint: c.entrypoint.clone(),
        env: c.env.clone(),
        workdir: c.workdir.clone(),
        user: c.user.clone(),
        hostname: c.hostname.clone(),
        labels: c.labels.clone().into_iter().collect(),
        mounts: c
            .mounts
            .iter()
            .map(|m| pb::Mount {
                r#type: m.kind.clone(),
                source: m.source.clone(),
                target: m.target.clone(),
                read_only: m.read_only,
                options: m.options.clone(),
            })
            .collect(),
        resources: Some(pb::Resources {
            cpu_millis: r.cpu_millis,
            memory_bytes: r.memory_bytes,
            memory_swap_bytes: r.memory_swap_bytes,
            pids_limit: r.pids_limit,
            cpuset_cpus: r.cpuset_cpus.clone(),
            io_weight: r.io_weight,
            cpu_shares: r.cpu_shares,
            unified: r.unified.clone().into_iter().collect(),
        }),
        network_mode: c.network().into(),
        ports: c
            .ports
            .iter()
            .map(|p| pb::PortMapping {
                host_ip: p.host_ip.clone(),
                host_port: p.host_port.into(),
                container_port: p.container_port.into(),
                protocol: if p.protocol.is_empty() {
                    "tcp".into()
                } else {
                    p.protocol.clone()
                },
            })
            .collect(),
        restart_policy: Some(pb::RestartPolicy {
            name: c.restart.name().into(),
            max_retries: c.restart.max_retries(),
        }),
        tty: c.tty,
        open_stdin: c.open_stdin,
        stop_signal: if c.stop_signal.is_empty() {
            "SIGTERM".into()
        } else {
            c.stop_signal.clone()
        },
        stop_timeout_secs: Some(c.stop_timeout_secs.unwrap_or(10)),
        auto_remove: c.auto_remove,
        read_only_rootfs: c.read_only,
        cap_add: c.cap_add.clone(),
        cap_drop: c.cap_drop.clone(),
    }
}

/// A published port as the API says it.
pub fn port(p: &crate::engine::network::Publish) -> pb::PortMapping {
    pb::PortMapping {
        host_ip: p
            .host_ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "0.0.0.0".into()),
        host_port: p.host_port.into(),
        container_port: p.container_port.into(),
        protocol: if p.udp { "udp" } else { "tcp" }.into(),
    }
}

pub fn info(v: &View, node: &str, d: &daemon::Daemon) -> pb::ContainerInfo {
    let m = &v.meta;
    let exit = v.exit.clone().unwrap_or(daemon::ExitInfo {
        code: 0,
        signal: 0,
        oom_killed: false,
        finished_at: String::new(),
    });
    let running = matches!(v.status, "running" | "paused");
    let net = d.net_info(&m.id);
    pb::ContainerInfo {
        id: m.id.clone(),
        name: m.name.clone(),
        image: m.config.image.clone(),
        image_id: m.image_id.clone(),
        command: m.command.clone(),
        created_at: m.created_at.clone(),
        state: Some(pb::ContainerState {
            status: v.status.into(),
            pid: v.pid,
            exit_code: if running { 0 } else { exit.code },
            signal: if running { 0 } else { exit.signal },
            oom_killed: !running && exit.oom_killed,
            started_at: m.started_at.clone().unwrap_or_default(),
            finished_at: if running {
                String::new()
            } else {
                exit.finished_at
            },
            error: m.error.clone().unwrap_or_default(),
        }),
        config: Some(config_to_pb(&m.config)),
        restart_count: m.restart_count,
        node: node.to_string(),
        ip_addresses: net.0.iter().map(|i| i.to_string()).collect(),
        ports: net.1.iter().map(port).collect(),
        gateway: if net.0.is_some() {
            d.bridge_gateway()
                .map(|g| g.to_string())
                .unwrap_or_default()
        } else {
            String::new()
        },
    }
}

pub fn event(e: &daemon::Event) -> pb::Event {
    pb::Event {
        time: e.time.clone(),
        action: e.action.clone(),
        container_id: e.id.clone(),
        container_name: e.name.clone(),
        image: e.image.clone(),
        attributes: e.attributes.clone().into_iter().collect(),
    }
}

pub fn image(i: &Image) -> pb::ImageInfo {
    let cfg = i.config.config().clone().unwrap_or_default();
    pb::ImageInfo {
        name: i.name.clone(),
        id: i.id.clone(),
        manifest_digest: i.manifest_digest.clone(),
        size: i.size,
        created: i.created.clone().unwrap_or_default(),
        layers: i.layers.iter().map(|l| l.digest.clone()).collect(),
        entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
        cmd: cfg.cmd().clone().unwrap_or_default(),
        env: cfg.env().clone().unwrap_or_default(),
        workdir: cfg.working_dir().clone().unwrap_or_default(),
        user: cfg.user().clone().unwrap_or_default(),
        architecture: i.config.architecture().to_string(),
        os: i.config.os().to_string(),
        labels: cfg
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}

/// Docker's `ps --filter`: `label=k`, `label=k=v`, `status=`, `name=` (substring), `id=`
/// (prefix). Unknown filters are an error, not ignored.
pub fn matches(v: &View, filters: &[String]) -> Result<bool> {
    for f in filters {
        let (k, val) = f.split_once('=').ok_or_else(|| {
            EngineError::InvalidArgument(format!("filter {f:?} is not key=value"))
        })?;
        let ok = match k {
            "label" => match val.split_once('=') {
                Some((lk, lv)) => v.meta.config.labels.get(lk).is_some_and(|x| x == lv),
                None => v.meta.config.labels.contains_key(val),
            },
            "status" => v.status == val,
            "name" => v.meta.name.contains(val),
            "id" => v.meta.id.starts_with(val),
            "image" => v.meta.config.image == val,
            other => {
                return Err(EngineError::InvalidArgument(format!(
                    "unknown filter {other:?}: use label, status, name, id or image"
                )))
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub fn stats(v: &View, s: &crate::engine::cgroups::Stats, net: (u64, u64)) -> pb::ContainerStats {
    let psi = |p: Option<u64>| p.map(|v| v as f64 / 100.0).unwrap_or(-1.0);
    pb::ContainerStats {
        id: v.meta.id.clone(),
        name: v.meta.name.clone(),
        time: daemon::logs::format_time(std::time::SystemTime::now()),
        cpu_usage_ns: s.cpu_usage_ns,
        cpu_user_ns: s.cpu_user_ns,
        cpu_system_ns: s.cpu_system_ns,
        online_cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        memory_usage: s.memory_usage,
        memory_working_set: s.memory_working_set,
        memory_rss: s.memory_rss,
        memory_limit: s.memory_limit.unwrap_or(0),
        pids_current: s.pids_current,
        pids_limit: s.pids_limit.unwrap_or(0),
        block_read_bytes: s.io_read_bytes,
        block_write_bytes: s.io_write_bytes,
        net_rx_bytes: net.0,
        net_tx_bytes: net.1,
        cpu_periods: s.cpu_nr_periods,
        cpu_throttled_periods: s.cpu_nr_throttled,
        cpu_throttled_ns: s.cpu_throttled_ns,
        cpu_pressure_some_avg10: psi(s.cpu_pressure),
        memory_pressure_some_avg10: psi(s.memory_pressure),
        io_pressure_some_avg10: psi(s.io_pressure),
        page_faults: s.page_faults,
        major_page_faults: s.major_page_faults,
    }
}
