//! What a user asks of a container (Docker's `run` flags), validated, and turned into the
//! bundle's OCI spec.
//!
//! [`ContainerConfig`] is the daemon's own type, persisted with the container; the gRPC layer
//! converts its proto twin into it. [`ContainerConfig::validate`] runs before anything is
//! created, so bad input changes nothing; [`apply`] edits the spec that
//! [`crate::engine::image::create_bundle_with`] built from the image.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use oci_spec::runtime::{
    Capability, LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxNamespaceType, LinuxPids, Mount, Spec,
};
use serde::{Deserialize, Serialize};

use crate::engine::error::{EngineError, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Thousandths of a CPU (CFS quota over a 100 ms period).
    pub cpu_millis: i64,
    pub memory_bytes: i64,
    /// Memory + swap; -1 unlimited swap.
    pub memory_swap_bytes: i64,
    /// -1 unlimited.
    pub pids_limit: i64,
    pub cpuset_cpus: String,
    pub io_weight: u32,
    pub cpu_shares: u64,
    pub unified: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// "bind" or "tmpfs".
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    Always,
    OnFailure {
        max_retries: u32,
    },
    UnlessStopped,
}

impl RestartPolicy {
    pub fn parse(name: &str, max_retries: u32) -> Result<RestartPolicy> {
        Ok(match name {
            "" | "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "on-failure" => RestartPolicy::OnFailure { max_retries },
            "unless-stopped" => RestartPolicy::UnlessStopped,
            other => {
                return Err(EngineError::InvalidArgument(format!(
                "restart policy {other:?} is not one of no, always, on-failure[:N], unless-stopped"
            )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    pub fn max_retries(self) -> u32 {
        match self {
            RestartPolicy::OnFailure { max_retries } => max_retries,
            _ => 0,
        }
    }

    /// Whether a container that exited with `code` after `restarts` restarts is run again
    /// (a container the user stopped never is).
    pub fn should_restart(self, code: i32, restarts: u32) -> bool {
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max_retries } => {
                code != 0 && (max_retries == 0 || restarts < max_retries)
            }
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub image: String,
    pub cmd: Vec<String>,
    /// Empty: the image's; `[""]`: none.
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    pub mounts: Vec<MountSpec>,
    pub resources: Resources,
    /// "bridge" (also when empty: the default), "none" or "host".
    pub network_mode: String,
    /// Ports to publish (bridge mode only).
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    pub restart: RestartPolicy,
    pub tty: bool,
    pub open_stdin: bool,
    pub stop_signal: String,
    pub stop_timeout_secs: Option<u32>,
    pub auto_remove: bool,
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
}

/// A port to publish: `[host_ip:]host_port:container_port/protocol`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// Empty: every address of the node.
    pub host_ip: String,
    /// 0: a free port, chosen when the container starts.
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
}

impl PortSpec {
    /// The engine's form (validated by [`ContainerConfig::validate`]).
    pub fn to_publish(&self) -> Result<crate::engine::network::Publish> {
        Ok(crate::engine::network::Publish {
            // 0.0.0.0 means every address, as no address at all does.
            host_ip: match self.host_ip.as_str() {
                "" | "0.0.0.0" => None,
                ip => Some(ip.parse().map_err(|_| {
                    invalid(format!("port host address {ip:?} is not an IPv4 address"))
                })?),
            },
            host_port: self.host_port,
            container_port: self.container_port,
            udp: match self.protocol.as_str() {
                "" | "tcp" => false,
                "udp" => true,
                other => {
                    return Err(invalid(format!(
                        "port protocol {other:?} is not tcp or udp"
                    )))
                }
            },
        })
    }
}

impl ContainerConfig {
    /// The network mode in force: an empty one is `bridge`, as in Docker.
    pub fn network(&self) -> &str {
        if self.network_mode.is_empty() {
            "bridge"
        } else {
            &self.network_mode
        }
    }
}

/// What bridge networking adds to a container's spec.
pub struct NetSetup {
    /// The network namespace to join.
    pub netns: std::path::PathBuf,
    /// Files to bind-mount: (host file, path in the container).
    pub files: Vec<(std::path::PathBuf, &'static str)>,
}

fn invalid(msg: String) -> EngineError {
    EngineError::InvalidArgument(msg)
}

/// `NET_ADMIN`, `cap_net_admin`, `CAP_NET_ADMIN` → the capability.
pub fn parse_capability(s: &str) -> Result<Capability> {
    let up = s.trim().to_ascii_uppercase();
    let name = up.strip_prefix("CAP_").unwrap_or(&up);
    Capability::from_str(name).map_err(|_| invalid(format!("unknown capability {s:?}")))
}

/// Every capability the kernel library knows, for `--cap-add ALL`.
fn all_capabilities() -> HashSet<Capability> {
    caps::all()
        .iter()
        .filter_map(|c| parse_capability(&c.to_string()).ok())
        .collect()
}

/// Checks a cpuset list ("0-3,5").
fn valid_cpuset(s: &str) -> bool {
    s.split(',').all(|part| {
        let mut it = part.splitn(2, '-');
        let a = it.next().and_then(|x| x.parse::<u32>().ok());
        match (a, it.next()) {
            (Some(_), None) => true,
            (Some(a), Some(b)) => b.parse::<u32>().is_ok_and(|b| b >= a),
            _ => false,
        }
    })
}

impl ContainerConfig {
    /// Everything that can be checked without the image: sizes, names, paths, policies.
    pub fn validate(&self) -> Result<()> {
        if self.image.is_empty() {
            return Err(invalid("no image given".into()));
        }
        let r = &self.resources;
        if r.cpu_millis < 0 {
            return Err(invalid(format!("cpu limit {}m is negative", r.cpu_millis)));
        }
        if r.cpu_millis > 0 && r.cpu_millis < 10 {
            return Err(invalid(format!(
                "cpu limit {}m is below the kernel's minimum quota (0.01 CPU)",
                r.cpu_millis
            )));
        }
        if r.memory_bytes < 0 {
            return Err(invalid("memory limit is negative".into()));
        }
        if r.memory_bytes > 0 && r.memory_bytes < 6 << 20 {
            return Err(invalid(format!(
                "memory limit {} bytes is below the minimum of 6 MiB",
                r.memory_bytes
            )));
        }
        if r.memory_swap_bytes > 0 && r.memory_swap_bytes < r.memory_bytes {
            return Err(invalid(
                "memory+swap limit is smaller than the memory limit".into(),
            ));
        }
        if r.memory_swap_bytes != 0 && r.memory_bytes == 0 && r.memory_swap_bytes != -1 {
            return Err(invalid(
                "a memory+swap limit needs a memory limit too".into(),
            ));
        }
        if r.pids_limit < -1 {
            return Err(invalid(format!("pids limit {} is invalid", r.pids_limit)));
        }
        if !r.cpuset_cpus.is_empty() && !valid_cpuset(&r.cpuset_cpus) {
            return Err(invalid(format!(
                "cpuset {:?} is not a CPU list such as 0-2,4",
                r.cpuset_cpus
            )));
        }
        if r.io_weight != 0 && !(10..=1000).contains(&r.io_weight) {
            return Err(invalid(format!(
                "io weight {} is outside 10..1000",
                r.io_weight
            )));
        }
        if r.cpu_shares != 0 && !(2..=262_144).contains(&r.cpu_shares) {
            return Err(invalid(format!(
                "cpu shares {} are outside 2..262144",
                r.cpu_shares
            )));
        }
        for kv in &self.env {
            if !kv.contains('=') || kv.starts_with('=') {
                return Err(invalid(format!(
                    "environment variable {kv:?} is not KEY=VALUE"
                )));
            }
        }
        if !self.workdir.is_empty() && !self.workdir.starts_with('/') {
            return Err(invalid(format!(
                "working directory {:?} is not absolute",
                self.workdir
            )));
        }
        if !self.hostname.is_empty()
            && (self.hostname.len() > 63
                || !self
                    .hostname
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        {
            return Err(invalid(format!(
                "hostname {:?} is not a valid host name",
                self.hostname
            )));
        }
        match self.network_mode.as_str() {
            "" | "none" | "host" | "bridge" => {}
            other => {
                return Err(invalid(format!(
                    "network mode {other:?} is not bridge, none or host"
                )))
            }
        }
        if !self.ports.is_empty() && self.network() != "bridge" {
            return Err(invalid(format!(
                "ports are published from the bridge network; with --network {} there is nothing to publish",
                self.network()
            )));
        }
        let mut seen = HashSet::new();
        for p in &self.ports {
            let publish = p.to_publish()?;
            if p.container_port == 0 {
                return Err(invalid("a published container port must be 1-65535".into()));
            }
            if p.host_port != 0 && !seen.insert((publish.host_ip, publish.host_port, publish.udp)) {
                return Err(invalid(format!(
                    "host port {}/{} is published twice",
                    p.host_port,
                    if publish.udp { "udp" } else { "tcp" }
                )));
            }
        }
        for m in &self.mounts {
            if !m.target.starts_with('/') {
                return Err(invalid(format!(
                    "mount target {:?} is not an absolute path",
                    m.target
                )));
            }
            match m.kind.as_str() {
                "bind" => {
                    if !m.source.starts_with('/') {
                        return Err(invalid(format!(
                            "bind mount source {:?} is not an absolute path",
                            m.source
                        )));
                    }
                    if !std::path::Path::new(&m.source).exists() {
                        return Err(EngineError::InvalidArgument(format!(
                            "bind mount source {} does not exist on this node",
                            m.source
                        )));
                    }
                }
                "tmpfs" => {}
                other => {
                    return Err(invalid(format!(
                        "mount type {other:?} is not bind or tmpfs"
                    )))
                }
            }
        }
        if !self.stop_signal.is_empty() {
            crate::engine::container::kill::parse_signal(&self.stop_signal).map_err(|_| {
                invalid(format!(
                    "stop signal {:?} is not a signal",
                    self.stop_signal
                ))
            })?;
        }
        for c in self.cap_add.iter().chain(&self.cap_drop) {
            if !c.eq_ignore_ascii_case("ALL") {
                parse_capability(c)?;
            }
        }
        Ok(())
    }
}

/// Edits the spec built from the image to what the config asks.
pub fn apply(
    cfg: &ContainerConfig,
    id: &str,
    spec: &mut Spec,
    net: Option<&NetSetup>,
) -> Result<()> {
    spec.set_hostname(Some(if cfg.hostname.is_empty() {
        id.chars().take(12).collect()
    } else {
        cfg.hostname.clone()
    }));
    if cfg.read_only {
        if let Some(r) = spec.root_mut() {
            r.set_readonly(Some(true));
        }
    }
    if let Some(p) = spec.process_mut() {
        p.set_terminal(Some(cfg.tty));
        if cfg.tty {
            let mut env = p.env().clone().unwrap_or_default();
            if !env.iter().any(|e| e.starts_with("TERM=")) {
                env.push("TERM=xterm".into());
            }
            p.set_env(Some(env));
        }
        if !cfg.cap_add.is_empty() || !cfg.cap_drop.is_empty() {
            let mut caps: HashSet<Capability> = p
                .capabilities()
                .as_ref()
                .and_then(|c| c.bounding().clone())
                .unwrap_or_default();
            for c in &cfg.cap_drop {
                if c.eq_ignore_ascii_case("ALL") {
                    caps.clear();
                } else {
                    caps.remove(&parse_capability(c)?);
                }
            }
            for c in &cfg.cap_add {
                if c.eq_ignore_ascii_case("ALL") {
                    caps.extend(all_capabilities());
                } else {
                    caps.insert(parse_capability(c)?);
                }
            }
            let mut lc = p.capabilities().clone().unwrap_or_default();
            lc.set_bounding(Some(caps.clone()))
                .set_effective(Some(caps.clone()))
                .set_permitted(Some(caps));
            p.set_capabilities(Some(lc));
        }
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    if let Some(n) = net {
        for (file, target) in &n.files {
            let mut mount = Mount::default();
            mount.set_destination((*target).into());
            mount.set_typ(Some("bind".into()));
            mount.set_source(Some(file.clone()));
            mount.set_options(Some(vec!["rbind".into(), "rprivate".into()]));
            mounts.retain(|x| x.destination() != mount.destination());
            mounts.push(mount);
        }
    }
    for m in &cfg.mounts {
        let mut mount = Mount::default();
        mount.set_destination(m.target.clone().into());
        let mut options = Vec::new();
        match m.kind.as_str() {
            "bind" => {
                mount.set_typ(Some("bind".into()));
                mount.set_source(Some(m.source.clone().into()));
                options.push("rbind".to_string());
                options.push("rprivate".to_string());
            }
            _ => {
                mount.set_typ(Some("tmpfs".into()));
                mount.set_source(Some("tmpfs".into()));
                options.extend(["nosuid".to_string(), "nodev".to_string()]);
            }
        }
        if m.read_only {
            options.push("ro".into());
        }
        options.extend(m.options.iter().cloned());
        mount.set_options(Some(options));
        // A later mount at the same place replaces the default one (Docker's rule).
        mounts.retain(|x| x.destination() != mount.destination());
        mounts.push(mount);
    }
    spec.set_mounts(Some(mounts));
    let linux = spec
        .linux_mut()
        .as_mut()
        .ok_or_else(|| invalid("spec has no linux section".into()))?;
    // Host: no network namespace. Bridge: join the one minid made and wired to the bridge.
    if cfg.network() == "host" || net.is_some() {
        let mut ns: Vec<_> = linux
            .namespaces()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.typ() != LinuxNamespaceType::Network)
            .collect();
        if let Some(n) = net {
            let mut joined = oci_spec::runtime::LinuxNamespace::default();
            joined.set_typ(LinuxNamespaceType::Network);
            joined.set_path(Some(n.netns.clone()));
            ns.push(joined);
        }
        linux.set_namespaces(Some(ns));
    }
    let r = &cfg.resources;
    let mut res = linux.resources().clone().unwrap_or_default();
    if r.memory_bytes > 0 || r.memory_swap_bytes != 0 {
        let mut mem = res.memory().unwrap_or_else(LinuxMemory::default);
        if r.memory_bytes > 0 {
            mem.set_limit(Some(r.memory_bytes));
        }
        if r.memory_swap_bytes != 0 {
            mem.set_swap(Some(r.memory_swap_bytes));
        }
        res.set_memory(Some(mem));
    }
    if r.cpu_millis > 0 || r.cpu_shares > 0 || !r.cpuset_cpus.is_empty() {
        let mut cpu = res.cpu().clone().unwrap_or_else(LinuxCpu::default);
        if r.cpu_millis > 0 {
            cpu.set_period(Some(100_000));
            cpu.set_quota(Some(r.cpu_millis * 100));
        }
        if r.cpu_shares > 0 {
            cpu.set_shares(Some(r.cpu_shares));
        }
        if !r.cpuset_cpus.is_empty() {
            cpu.set_cpus(Some(r.cpuset_cpus.clone()));
        }
        res.set_cpu(Some(cpu));
    }
    if r.pids_limit != 0 {
        let mut pids = LinuxPids::default();
        pids.set_limit(r.pids_limit);
        res.set_pids(Some(pids));
    }
    if r.io_weight != 0 {
        let mut io = LinuxBlockIo::default();
        io.set_weight(Some(r.io_weight as u16));
        res.set_block_io(Some(io));
    }
    if !r.unified.is_empty() {
        res.set_unified(Some(r.unified.clone().into_iter().collect()));
    }
    linux.set_resources(Some(res));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ContainerConfig {
        ContainerConfig {
            image: "busybox".into(),
            ..Default::default()
        }
    }

    #[test]
    fn bad_input_is_refused_with_what_was_wrong() {
        let cases: Vec<(ContainerConfig, &str)> = vec![
            (ContainerConfig::default(), "no image"),
            (
                ContainerConfig {
                    resources: Resources {
                        memory_bytes: 1000,
                        ..Default::default()
                    },
                    ..cfg()
                },
                "minimum of 6 MiB",
            ),
            (
                ContainerConfig {
                    resources: Resources {
                        cpuset_cpus: "0-a".into(),
                        ..Default::default()
                    },
                    ..cfg()
                },
                "not a CPU list",
            ),
            (
                ContainerConfig {
                    env: vec!["NOVALUE".into()],
                    ..cfg()
                },
                "not KEY=VALUE",
            ),
            (
                ContainerConfig {
                    network_mode: "overlay".into(),
                    ..cfg()
                },
                "not bridge, none or host",
            ),
            (
                ContainerConfig {
                    network_mode: "host".into(),
                    ports: vec![PortSpec {
                        container_port: 80,
                        ..Default::default()
                    }],
                    ..cfg()
                },
                "nothing to publish",
            ),
            (
                ContainerConfig {
                    ports: vec![
                        PortSpec {
                            host_port: 8080,
                            container_port: 80,
                            ..Default::default()
                        },
                        PortSpec {
                            host_port: 8080,
                            container_port: 81,
                            protocol: "tcp".into(),
                            ..Default::default()
                        },
                    ],
                    ..cfg()
                },
                "host port 8080/tcp is published twice",
            ),
            (
                ContainerConfig {
                    ports: vec![PortSpec {
                        host_ip: "localhost".into(),
                        container_port: 80,
                        ..Default::default()
                    }],
                    ..cfg()
                },
                "is not an IPv4 address",
            ),
            (
                ContainerConfig {
                    mounts: vec![MountSpec {
                        kind: "bind".into(),
                        source: "/nonexistent/minid-test".into(),
                        target: "/data".into(),
                        ..Default::default()
                    }],
                    ..cfg()
                },
                "does not exist",
            ),
            (
                ContainerConfig {
                    stop_signal: "SIGNOPE".into(),
                    ..cfg()
                },
                "not a signal",
            ),
            (
                ContainerConfig {
                    cap_add: vec!["FLY".into()],
                    ..cfg()
                },
                "unknown capability",
            ),
        ];
        for (c, want) in cases {
            let e = c.validate().expect_err(want);
            assert!(e.to_string().contains(want), "{e} lacks {want:?}");
        }
        cfg().validate().unwrap();
    }

    #[test]
    fn restart_policies_decide_like_docker() {
        assert!(!RestartPolicy::No.should_restart(1, 0));
        assert!(RestartPolicy::Always.should_restart(0, 100));
        let of = RestartPolicy::OnFailure { max_retries: 2 };
        assert!(!of.should_restart(0, 0));
        assert!(of.should_restart(1, 1));
        assert!(!of.should_restart(1, 2));
        assert!(RestartPolicy::OnFailure { max_retries: 0 }.should_restart(3, 1000));
        assert!(RestartPolicy::parse("sometimes", 0).is_err());
    }

    #[test]
    fn config_lands_in_the_spec() {
        let mut spec = crate::engine::spec::default_spec();
        let c = ContainerConfig {
            network_mode: "host".into(),
            tty: true,
            cap_drop: vec!["ALL".into()],
            cap_add: vec!["net_bind_service".into()],
            resources: Resources {
                cpu_millis: 500,
                memory_bytes: 64 << 20,
                pids_limit: 32,
                ..Default::default()
            },
            mounts: vec![MountSpec {
                kind: "tmpfs".into(),
                target: "/scratch".into(),
                options: vec!["size=1m".into()],
                ..Default::default()
            }],
            ..cfg()
        };
        apply(&c, "0123456789abcdef", &mut spec, None).unwrap();
        assert_eq!(spec.hostname().as_deref(), Some("0123456789ab"));
        let linux = spec.linux().as_ref().unwrap();
        assert!(!linux
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Network));
        let res = linux.resources().as_ref().unwrap();
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(50_000));
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.pids().as_ref().unwrap().limit(), 32);
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.terminal(), Some(true));
        let caps = p
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .clone()
            .unwrap();
        assert_eq!(caps.len(), 1);
        assert!(caps.contains(&Capability::NetBindService));
        let m = spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination().to_str() == Some("/scratch"))
            .unwrap();
        assert!(m
            .options()
            .as_ref()
            .unwrap()
            .contains(&"size=1m".to_string()));
    }
}
