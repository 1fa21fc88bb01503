//! `minictl update`: live limits and restart policy.

use clap::Args;
use mini_proto::v1 as pb;

use super::create::parse_size;
use super::Ctx;

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap)
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Process limit (-1: unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// CPUs the container may use
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Block I/O weight
    #[arg(long)]
    pub blkio_weight: Option<u32>,
    /// Restart policy
    #[arg(long)]
    pub restart: Option<String>,
    /// Containers
    #[arg(required = true)]
    pub containers: Vec<String>,
}

impl UpdateArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let fail = |m: String| {
            eprintln!("minictl: {m}");
            crate::EXIT_FAILURE
        };
        let memory = match &self.memory {
            Some(m) => match parse_size(m) {
                Ok(v) => Some(v),
                Err(e) => return fail(format!("invalid --memory: {e}")),
            },
            None => None,
        };
        let swap = match self.memory_swap.as_deref() {
            Some("-1") => Some(-1),
            Some(m) => match parse_size(m) {
                Ok(v) => Some(v),
                Err(e) => return fail(format!("invalid --memory-swap: {e}")),
            },
            None => None,
        };
        if let Some(c) = self.cpus {
            if !(c.is_finite() && c > 0.0) {
                return fail(format!("invalid --cpus {c}: must be more than 0"));
            }
        }
        let restart = match &self.restart {
            Some(r) => {
                let (name, n) = match r.split_once(':') {
                    Some((n, c)) => match c.parse::<u32>() {
                        Ok(c) => (n.to_string(), c),
                        Err(_) => return fail(format!("invalid --restart {r:?}")),
                    },
                    None => (r.clone(), 0),
                };
                Some(pb::RestartPolicy {
                    name,
                    max_retries: n,
                })
            }
            None => None,
        };
        let mut code = 0;
        for t in &self.containers {
            let Some(cl) = ctx.node_for(t, &mut code).await else {
                continue;
            };
            let mut c = cl.containers.clone();
            match c
                .update(pb::UpdateRequest {
                    container: t.clone(),
                    cpu_millis: self.cpus.map(|c| (c * 1000.0).round() as i64),
                    memory_bytes: memory,
                    memory_swap_bytes: swap,
                    pids_limit: self.pids_limit,
                    cpuset_cpus: self.cpuset_cpus.clone(),
                    io_weight: self.blkio_weight,
                    restart_policy: restart.clone(),
                })
                .await
            {
                Ok(_) => crate::output::print_str(&format!("{t}\n")),
                Err(s) => code = cl.fail(s),
            }
        }
        code
    }
}
