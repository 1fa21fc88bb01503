//! `minictl exec`: a command in a running container, over the bidirectional Exec rpc.
//!
//! `-i` forwards our stdin (its end becomes stdin-close); `-t` asks for a terminal, puts ours
//! in raw mode for the session (so Ctrl-C and the like reach the container's process as
//! bytes, as with `docker exec -it`) and forwards window size changes. The exit status is the
//! process's.

use clap::Args;
use mini_proto::v1 as pb;
use mini_proto::v1::exec_request::Msg as In;
use mini_proto::v1::exec_response::Msg as Out;

use super::terminal::{forward_resizes, forward_stdin, term_size, RawMode};
use super::Ctx;

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open and forward it
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// User (name or uid, optionally :group)
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
    /// Run in the background
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
        let cl = match ctx.node_of(&self.container).await {
            Ok(cl) => cl,
            Err(code) => return code,
        };
        let (rows, cols) = if self.tty {
            term_size().unwrap_or((24, 80))
        } else {
            (0, 0)
        };
        let start = pb::ExecRequest {
            msg: Some(In::Start(pb::ExecStart {
                container: self.container.clone(),
                cmd: self.cmd.clone(),
                env: self.env.clone(),
                user: self.user.clone().unwrap_or_default(),
                workdir: self.workdir.clone().unwrap_or_default(),
                tty: self.tty,
                stdin: self.interactive,
                rows,
                cols,
                detach: self.detach,
            })),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::ExecRequest>(16);
        if tx.send(start).await.is_err() {
            return crate::EXIT_FAILURE;
        }
        let mut c = cl.containers.clone();
        let mut s = match c
            .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        {
            Ok(s) => s.into_inner(),
            Err(st) => return cl.fail(st),
        };
        let _raw = RawMode::enter(self.tty && self.interactive && !self.detach);
        let mut tasks = Vec::new();
        if self.interactive && !self.detach {
            tasks.push(forward_stdin(
                tx.clone(),
                |b| pb::ExecRequest {
                    msg: Some(In::Stdin(b)),
                },
                pb::ExecRequest {
                    msg: Some(In::StdinClose(true)),
                },
            ));
        }
        if self.tty && !self.detach {
            tasks.push(forward_resizes(tx.clone(), |rows, cols| pb::ExecRequest {
                msg: Some(In::Resize(pb::TerminalSize { rows, cols })),
            }));
        }
        // Without -i the request stream ends here; the output continues.
        drop(tx);
        let mut code = 0;
        loop {
            match s.message().await {
                Ok(Some(m)) => match m.msg {
                    Some(Out::Stdout(b)) => {
                        use std::io::Write;
                        let mut o = std::io::stdout().lock();
                        let _ = o.write_all(&b);
                        let _ = o.flush();
                    }
                    Some(Out::Stderr(b)) => {
                        use std::io::Write;
                        let _ = std::io::stderr().write_all(&b);
                    }
                    Some(Out::Exit(x)) => {
                        // Always the last message: the output is complete.
                        code = x.exit_code;
                        break;
                    }
                    _ => {}
                },
                Ok(None) => break,
                Err(st) => {
                    drop(_raw);
                    return cl.fail(st);
                }
            }
        }
        for t in tasks {
            t.abort();
        }
        code
    }
}
