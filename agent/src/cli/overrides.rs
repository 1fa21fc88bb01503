//! Docker-style flags that adjust a bundle's spec: `--hostname`, `-m/--memory`, `--cpus`,
//! `--pids-limit`, `-e/--env`, `-t/--tty`, `--read-only`.
//!
//! They are applied to the `config.json` that `minid image bundle` writes, so a bundle can be
//! made with limits without editing JSON by hand (the quickstart uses them).

use anyhow::{bail, Context};
use oci_spec::runtime::{LinuxCpu, LinuxPids, LinuxResources, Spec};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct SpecOverrides {
    /// Container hostname
    #[arg(long)]
    pub hostname: Option<String>,
    /// Memory limit (bytes, or with a unit: 64m, 1g)
    #[arg(short, long, value_parser = parse_size)]
    pub memory: Option<i64>,
    /// CPU limit in cores (0.5 = half a core: a CFS quota of 50ms per 100ms period)
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes (-1: unlimited)
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Environment variables (KEY=VALUE), added to the image's
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Allocate a terminal (process.terminal)
    #[arg(short, long)]
    pub tty: bool,
    /// Mount the root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
}

/// `64m`, `1g`, `512k`, `1048576`, `2.5g` (binary units, as Docker's `-m`).
pub use minictl::units::parse_size;

impl SpecOverrides {
    pub fn is_empty(&self) -> bool {
        self.hostname.is_none()
            && self.memory.is_none()
            && self.cpus.is_none()
            && self.pids_limit.is_none()
            && self.env.is_empty()
            && !self.tty
            && !self.read_only
    }

    pub fn apply(&self, spec: &mut Spec) -> anyhow::Result<()> {
        if let Some(h) = &self.hostname {
            spec.set_hostname(Some(h.clone()));
        }
        if self.read_only {
            if let Some(r) = spec.root_mut() {
                r.set_readonly(Some(true));
            }
        }
        if let Some(p) = spec.process_mut() {
            if self.tty {
                p.set_terminal(Some(true));
            }
            if !self.env.is_empty() {
                let mut env = p.env().clone().unwrap_or_default();
                for kv in &self.env {
                    let key = kv.split('=').next().unwrap_or_default();
                    if key.is_empty() || !kv.contains('=') {
                        bail!("environment variable {kv:?} is not KEY=VALUE");
                    }
                    env.retain(|e| e.split('=').next() != Some(key));
                    env.push(kv.clone());
                }
                p.set_env(Some(env));
            }
        }
        if self.memory.is_none() && self.cpus.is_none() && self.pids_limit.is_none() {
            return Ok(());
        }
        let linux = spec
            .linux_mut()
            .as_mut()
            .context("spec has no linux section")?;
        let mut res = linux
            .resources()
            .clone()
            .unwrap_or_else(LinuxResources::default);
        if let Some(m) = self.memory {
            let mut mem = res.memory().unwrap_or_default();
            mem.set_limit(Some(m));
            res.set_memory(Some(mem));
        }
        if let Some(c) = self.cpus {
            if !(c.is_finite() && c > 0.0) {
                bail!("--cpus {c} must be a positive number of cores");
            }
            let period: u64 = 100_000;
            let mut cpu = res.cpu().clone().unwrap_or_else(LinuxCpu::default);
            cpu.set_period(Some(period));
            cpu.set_quota(Some((c * period as f64).round() as i64));
            res.set_cpu(Some(cpu));
        }
        if let Some(p) = self.pids_limit {
            let mut pids = LinuxPids::default();
            pids.set_limit(p);
            res.set_pids(Some(pids));
        }
        linux.set_resources(Some(res));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512kb"), Ok(512 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("12Q").unwrap_err().contains("not a size"));
        assert!(parse_size("-1m").is_err());
    }

    #[test]
    fn overrides_set_limits_and_env() {
        let mut spec = crate::engine::spec::default_spec();
        let o = SpecOverrides {
            hostname: Some("demo".into()),
            memory: Some(64 << 20),
            cpus: Some(0.5),
            pids_limit: Some(32),
            env: vec!["TERM=dumb".into(), "A=1".into()],
            tty: false,
            read_only: true,
        };
        o.apply(&mut spec).expect("apply");
        let res = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .expect("resources");
        assert_eq!(
            res.memory().as_ref().and_then(|m| m.limit()),
            Some(64 << 20)
        );
        assert_eq!(res.cpu().as_ref().and_then(|c| c.quota()), Some(50_000));
        assert_eq!(res.pids().as_ref().map(|p| p.limit()), Some(32));
        let env = spec
            .process()
            .as_ref()
            .and_then(|p| p.env().clone())
            .expect("env");
        assert!(env.contains(&"TERM=dumb".to_string()) && !env.contains(&"TERM=xterm".to_string()));
        assert_eq!(spec.hostname().as_deref(), Some("demo"));
        let bad = SpecOverrides {
            env: vec!["NOEQUALS".into()],
            ..Default::default()
        };
        assert!(bad.apply(&mut spec).is_err());
    }
}
