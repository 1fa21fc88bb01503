//! `minictl run`: create, attach to the output, start, and exit with the container's status
//! (or print the id with `-d`).
//!
//! With `-i` our stdin goes to the container through the Attach rpc (its end ends the
//! container's stdin); with `-it` our terminal is in raw mode for the session, so keys such as
//! Ctrl-C reach the container's terminal, and its size follows ours.
//!
//! The log stream is opened before the container starts, so not a byte of its output is
//! missed; the stream ends after the container's last line. The exit comes from `Wait`
//! (`not-running`, after start): the node remembers the exit of an auto-removed container for
//! a while, so `--rm` does not lose it.

use std::io::Write;

use clap::Args;
use mini_proto::v1 as pb;

use super::create::CreateArgs;
use super::terminal::{forward_resizes, forward_stdin, term_size, RawMode};
use super::Ctx;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background and print the container id
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[command(flatten)]
    pub create: CreateArgs,
}

/// Writes log entries to our stdout/stderr as they come; returns when the stream ends.
pub async fn copy_logs(
    mut s: tonic::Streaming<pb::LogsResponse>,
    timestamps: bool,
) -> Result<(), tonic::Status> {
    while let Some(batch) = s.message().await? {
        let end = batch.end;
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        for e in batch.entries {
            let w: &mut dyn Write = if e.stream == "stderr" {
                &mut err
            } else {
                &mut out
            };
            // An entry may hold several lines written at one time: each gets the time.
            let ok = if timestamps {
                e.data.split_inclusive(|b| *b == b'\n').all(|l| {
                    w.write_all(e.time.as_bytes()).is_ok()
                        && w.write_all(b" ").is_ok()
                        && w.write_all(l).is_ok()
                })
            } else {
                w.write_all(&e.data).is_ok()
            };
            if !ok {
                // Our reader went away (`| head`): stop quietly.
                return Ok(());
            }
        }
        let _ = out.flush();
        let _ = err.flush();
        if end {
            // The node's word that nothing follows: no need to wait for the stream's close.
            break;
        }
    }
    Ok(())
}

impl RunArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let (id, node) = match self.create.create(ctx).await {
            Ok(r) => r,
            Err(code) => return code,
        };
        let mut c = node.containers.clone();
        if self.detach {
            if let Err(s) = c
                .start(pb::StartRequest {
                    container: id.clone(),
                })
                .await
            {
                return node.fail(s);
            }
            crate::output::print_str(&format!("{id}\n"));
            return 0;
        }
        let interactive = self.create.interactive;
        let tty = self.create.tty;
        // Without input to attach first, the output is attached and the container started in
        // one call (StartAttached); a node without it gets Logs, then Start.
        let mut attached = None;
        if !interactive {
            match c
                .start_attached(pb::StartRequest {
                    container: id.clone(),
                })
                .await
            {
                Ok(s) => attached = Some(s.into_inner()),
                Err(s) if s.code() == tonic::Code::Unimplemented => {}
                Err(s) => return self.start_failed(&node, &mut c, id, s).await,
            }
        }
        let started = attached.is_some();
        let logs = match attached {
            Some(s) => s,
            None => match c
                .logs(pb::LogsRequest {
                    container: id.clone(),
                    follow: true,
                    ..Default::default()
                })
                .await
            {
                Ok(s) => s.into_inner(),
                Err(s) => return node.fail(s),
            },
        };
        let copier = tokio::spawn(copy_logs(logs, false));
        let mut input_tasks = Vec::new();
        if interactive {
            input_tasks = attach_input(&c, &id, tty);
        }
        // Raw mode for an interactive terminal: keys (Ctrl-C too) go to the container.
        let raw = RawMode::enter(interactive && tty);
        if !started {
            if let Err(s) = c
                .start(pb::StartRequest {
                    container: id.clone(),
                })
                .await
            {
                copier.abort();
                drop(raw);
                return self.start_failed(&node, &mut c, id, s).await;
            }
        }
        // Ctrl-C while attached: stop the container, as docker run's signal proxy would
        // deliver SIGINT to it; the output and the exit follow as usual.
        let mut c2 = c.clone();
        let id2 = id.clone();
        let proxy_wanted = !(interactive && tty);
        let proxy = tokio::spawn(async move {
            if !proxy_wanted {
                return;
            }
            while tokio::signal::ctrl_c().await.is_ok() {
                let _ = c2
                    .kill(pb::KillRequest {
                        container: id2.clone(),
                        signal: "SIGINT".into(),
                        all: false,
                    })
                    .await;
            }
        });
        // With --rm, return once the container is gone, as `docker run --rm` does (the node
        // keeps its exit for the answer).
        let condition = if self.create.rm {
            "removed"
        } else {
            "not-running"
        };
        let exit = c
            .wait(pb::WaitRequest {
                container: id.clone(),
                condition: condition.into(),
            })
            .await;
        proxy.abort();
        let copied = copier.await;
        for t in input_tasks {
            t.abort();
        }
        drop(raw);
        match exit {
            Ok(w) => {
                if let Ok(Err(s)) = copied {
                    eprintln!("minictl: the log stream broke: {}", s.message());
                }
                super::exit_of(w.get_ref())
            }
            Err(s) => node.fail(s),
        }
    }

    /// A start that failed: says why (Docker's exit code for it) and, with `--rm`, removes the
    /// container.
    async fn start_failed(
        &self,
        node: &crate::client::Client,
        c: &mut mini_proto::v1::container_service_client::ContainerServiceClient<
            crate::client::Traced,
        >,
        id: String,
        s: tonic::Status,
    ) -> i32 {
        let code = node.fail(s);
        if self.create.rm {
            let _ = c
                .remove(pb::RemoveRequest {
                    container: id,
                    force: true,
                })
                .await;
        }
        code
    }
}

/// Sends our stdin (and, for a terminal, its size and resizes) to the container through the
/// Attach rpc; our stdin's end closes the container's.
fn attach_input(
    c: &mini_proto::v1::container_service_client::ContainerServiceClient<crate::client::Traced>,
    id: &str,
    tty: bool,
) -> Vec<tokio::task::JoinHandle<()>> {
    use pb::attach_request::Msg;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::AttachRequest>(16);
    let mut tasks = Vec::new();
    let first = pb::AttachRequest {
        msg: Some(Msg::Container(id.to_string())),
    };
    let size = if tty { term_size() } else { None };
    let tx0 = tx.clone();
    // The container first, then the size, then input: one task keeps the order.
    tasks.push(tokio::spawn(async move {
        if tx0.send(first).await.is_err() {
            return;
        }
        if let Some((rows, cols)) = size {
            let _ = tx0
                .send(pb::AttachRequest {
                    msg: Some(Msg::Resize(pb::TerminalSize { rows, cols })),
                })
                .await;
        }
        let _ = forward_stdin(
            tx0,
            |b| pb::AttachRequest {
                msg: Some(Msg::Stdin(b)),
            },
            pb::AttachRequest {
                msg: Some(Msg::StdinClose(true)),
            },
        )
        .await;
    }));
    if tty {
        tasks.push(forward_resizes(tx.clone(), |rows, cols| {
            pb::AttachRequest {
                msg: Some(Msg::Resize(pb::TerminalSize { rows, cols })),
            }
        }));
    }
    drop(tx);
    let mut c = c.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(s) = c
            .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
        {
            eprintln!("minictl: attaching stdin: {}", s.message());
        }
    }));
    tasks
}
