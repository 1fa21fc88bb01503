//! `minictl wait`: blocks until each container stops, prints its exit code, and exits with
//! the last one (Docker's behaviour).

use clap::Args;
use mini_proto::v1 as pb;

use super::Ctx;

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Condition: not-running, next-exit or removed
    #[arg(long, default_value = "not-running")]
    pub condition: String,
    /// Containers (name, id or id prefix)
    #[arg(required = true)]
    pub containers: Vec<String>,
}

impl WaitArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let mut code = 0;
        for t in &self.containers {
            let Some(cl) = ctx.node_for(t, &mut code).await else {
                continue;
            };
            let mut c = cl.containers.clone();
            match c
                .wait(pb::WaitRequest {
                    container: t.clone(),
                    condition: self.condition.clone(),
                })
                .await
            {
                Ok(w) => {
                    code = super::exit_of(w.get_ref());
                    if w.get_ref().error.is_empty() {
                        crate::output::print_str(&format!("{code}\n"));
                    }
                }
                Err(s) => code = cl.fail(s),
            }
        }
        code
    }
}
