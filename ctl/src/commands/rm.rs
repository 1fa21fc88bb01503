//! `minictl rm [-f]`: removing what does not exist is an error here, as in Docker (the
//! rpc itself is idempotent and says `not_found`).

use clap::Args;
use mini_proto::v1 as pb;

use super::Ctx;

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Kill a running container first
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Containers (name, id or id prefix)
    #[arg(required = true)]
    pub containers: Vec<String>,
}

impl RmArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let mut code = 0;
        for t in &self.containers {
            let cl = match ctx.locate(t).await {
                Ok(cl) => cl,
                // Across nodes, "nowhere" is the rpc's not_found.
                Err(s) if s.code() == tonic::Code::NotFound => {
                    if !self.force {
                        eprintln!("minictl: {}", s.message());
                        code = 1;
                    }
                    continue;
                }
                Err(s) => {
                    eprintln!("minictl: {}", s.message());
                    code = super::exit_for(&s);
                    continue;
                }
            };
            let mut c = cl.containers.clone();
            match c
                .remove(pb::RemoveRequest {
                    container: t.clone(),
                    force: self.force,
                })
                .await
            {
                Ok(r) if r.get_ref().not_found => {
                    if !self.force {
                        eprintln!("minictl: no such container: {t}");
                        code = 1;
                    }
                }
                Ok(_) => crate::output::print_str(&format!("{t}\n")),
                Err(s) => code = cl.fail(s),
            }
        }
        code
    }
}
