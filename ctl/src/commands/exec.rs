//! `minictl exec`: a command in a running container, over the bidirectional Exec rpc.

use clap::Args;
use mini_proto::v1 as pb;

use super::Ctx;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// User
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Detach: run in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// The container
    pub container: String,
    /// Command and arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

impl ExecArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let start = pb::ExecRequest {
            msg: Some(pb::exec_request::Msg::Start(pb::ExecStart {
                container: self.container.clone(),
                cmd: self.cmd.clone(),
                env: self.env.clone(),
                user: self.user.clone().unwrap_or_default(),
                workdir: self.workdir.clone().unwrap_or_default(),
                tty: self.tty,
                stdin: self.interactive,
                rows: 0,
                cols: 0,
            })),
        };
        let mut c = ctx.client.containers.clone();
        let mut s = match c.exec(tokio_stream::iter(vec![start])).await {
            Ok(s) => s.into_inner(),
            Err(st) => return ctx.fail(st),
        };
        let mut code = 0;
        loop {
            match s.message().await {
                Ok(Some(m)) => match m.msg {
                    Some(pb::exec_response::Msg::Stdout(b)) => {
                        use std::io::Write;
                        let _ = std::io::stdout().write_all(&b);
                    }
                    Some(pb::exec_response::Msg::Stderr(b)) => {
                        use std::io::Write;
                        let _ = std::io::stderr().write_all(&b);
                    }
                    Some(pb::exec_response::Msg::Exit(x)) => code = x.exit_code,
                    _ => {}
                },
                Ok(None) => return code,
                Err(st) => return ctx.fail(st),
            }
        }
    }
}
