//! `minictl import FILE NAME[:TAG]`: streams a rootfs tar, docker-archive or OCI archive to
//! the node, which detects the format and imports it all-or-nothing.

use std::path::PathBuf;

use clap::Args;
use mini_proto::v1 as pb;
use tokio::io::AsyncReadExt;

use super::Ctx;
use crate::client::Client;
use crate::output::print_str;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The archive ("-" for stdin)
    pub file: PathBuf,
    /// Name for the image (name[:tag]); an archive with its own names keeps them when omitted
    pub name: Option<String>,
}

const CHUNK: usize = 1 << 20;

impl ImportArgs {
    /// Imports on every node given (each reads the file itself, all at once); from stdin,
    /// only one node can be fed.
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let stdin = self.file.as_os_str() == "-";
        if stdin && ctx.clients.len() > 1 {
            eprintln!(
                "minictl: import from stdin goes to one node; give a file to import on all {} nodes, or one --node",
                ctx.clients.len()
            );
            return crate::EXIT_FAILURE;
        }
        let results =
            futures::future::join_all(ctx.clients.iter().map(|cl| self.import_to(cl, stdin))).await;
        let several = ctx.clients.len() > 1;
        let mut code = 0;
        let mut out = String::new();
        for (cl, r) in ctx.clients.iter().zip(results) {
            match r {
                Ok(id) if several => out.push_str(&format!("{}: {id}\n", cl.name)),
                Ok(id) => out.push_str(&format!("{id}\n")),
                Err(Failure::Local(e)) => {
                    eprintln!("minictl: {e}");
                    code = crate::EXIT_FAILURE;
                }
                Err(Failure::Node(s)) => code = super::node_failure(cl, s, several),
            }
        }
        print_str(&out);
        code
    }

    async fn import_to(&self, cl: &Client, stdin: bool) -> Result<String, Failure> {
        let mut reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if stdin {
            Box::new(tokio::io::stdin())
        } else {
            match tokio::fs::File::open(&self.file).await {
                Ok(f) => Box::new(f),
                Err(e) => {
                    return Err(Failure::Local(format!(
                        "cannot read {}: {e}",
                        self.file.display()
                    )))
                }
            }
        };
        let name = self.name.clone().unwrap_or_default();
        let file = self.file.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<pb::ImportRequest>(4);
        let reading = tokio::spawn(async move {
            let mut first = true;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = match reader.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => return Err(format!("reading {}: {e}", file.display())),
                };
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                let msg = pb::ImportRequest {
                    name: if first { name.clone() } else { String::new() },
                    data: buf,
                };
                first = false;
                if tx.send(msg).await.is_err() {
                    return Ok(());
                }
            }
        });
        let mut c = cl.images.clone();
        let res = c
            .import(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        if let Ok(Err(e)) = reading.await {
            return Err(Failure::Local(e));
        }
        match res {
            Ok(r) => Ok(r.into_inner().image.unwrap_or_default().id),
            Err(s) => Err(Failure::Node(s)),
        }
    }
}

enum Failure {
    /// Ours: the file.
    Local(String),
    /// The node's answer.
    Node(tonic::Status),
}
