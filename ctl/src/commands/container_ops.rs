//! `start`, `stop`, `restart`, `kill`, `pause`, `unpause`: one call per named container, the
//! name printed on success (Docker's output), the first failure's status returned.

use clap::Args;
use mini_proto::v1 as pb;

use super::Ctx;

#[derive(Debug, Args)]
pub struct Targets {
    /// Containers (name, id or id prefix)
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach to the output and exit with the container's status
    #[arg(short = 'a', long)]
    pub attach: bool,
    #[command(flatten)]
    pub targets: Targets,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL (default: the container's stop timeout)
    #[arg(short = 't', long = "time")]
    pub time: Option<u32>,
    /// Signal to send (default: the container's stop signal)
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[command(flatten)]
    pub targets: Targets,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    #[command(flatten)]
    pub targets: Targets,
}

impl StartArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let mut code = 0;
        for t in &self.targets.containers {
            let Some(cl) = ctx.node_for(t, &mut code).await else {
                continue;
            };
            let mut c = cl.containers.clone();
            if self.attach {
                let logs = match c
                    .logs(pb::LogsRequest {
                        container: t.clone(),
                        follow: true,
                        tail: Some(0),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(s) => s.into_inner(),
                    Err(s) => return cl.fail(s),
                };
                let copier = tokio::spawn(super::run::copy_logs(logs, false));
                if let Err(s) = c
                    .start(pb::StartRequest {
                        container: t.clone(),
                    })
                    .await
                {
                    copier.abort();
                    return cl.fail(s);
                }
                let w = c
                    .wait(pb::WaitRequest {
                        container: t.clone(),
                        condition: "not-running".into(),
                    })
                    .await;
                let _ = copier.await;
                return match w {
                    Ok(w) => super::exit_of(w.get_ref()),
                    Err(s) => cl.fail(s),
                };
            }
            match c
                .start(pb::StartRequest {
                    container: t.clone(),
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

impl StopArgs {
    pub async fn run(&self, ctx: &Ctx, restart: bool) -> i32 {
        let mut code = 0;
        for t in &self.targets.containers {
            let Some(cl) = ctx.node_for(t, &mut code).await else {
                continue;
            };
            let mut c = cl.containers.clone();
            let r = c
                .stop(pb::StopRequest {
                    container: t.clone(),
                    timeout_secs: self.time,
                    signal: self.signal.clone().unwrap_or_default(),
                })
                .await;
            let r = match (r, restart) {
                (Ok(_), true) => c
                    .start(pb::StartRequest {
                        container: t.clone(),
                    })
                    .await
                    .map(|_| ()),
                (r, _) => r.map(|_| ()),
            };
            match r {
                Ok(()) => crate::output::print_str(&format!("{t}\n")),
                Err(s) => code = cl.fail(s),
            }
        }
        code
    }
}

impl KillArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let mut code = 0;
        for t in &self.targets.containers {
            let Some(cl) = ctx.node_for(t, &mut code).await else {
                continue;
            };
            let mut c = cl.containers.clone();
            match c
                .kill(pb::KillRequest {
                    container: t.clone(),
                    signal: self.signal.clone(),
                    all: false,
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

impl Targets {
    pub async fn pause(&self, ctx: &Ctx, pause: bool) -> i32 {
        let mut code = 0;
        for t in &self.containers {
            let Some(cl) = ctx.node_for(t, &mut code).await else {
                continue;
            };
            let mut c = cl.containers.clone();
            let r = if pause {
                c.pause(pb::PauseRequest {
                    container: t.clone(),
                })
                .await
                .map(|_| ())
            } else {
                c.resume(pb::ResumeRequest {
                    container: t.clone(),
                })
                .await
                .map(|_| ())
            };
            match r {
                Ok(()) => crate::output::print_str(&format!("{t}\n")),
                Err(s) => code = cl.fail(s),
            }
        }
        code
    }
}
