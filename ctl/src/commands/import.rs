//! `minictl import FILE NAME[:TAG]`: streams a rootfs tar, docker-archive or OCI archive to
//! the node, which detects the format and imports it all-or-nothing.

use std::path::PathBuf;

use clap::Args;
use mini_proto::v1 as pb;
use tokio::io::AsyncReadExt;

use super::Ctx;
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
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let mut reader: Box<dyn tokio::io::AsyncRead + Unpin + Send> =
            if self.file.as_os_str() == "-" {
                Box::new(tokio::io::stdin())
            } else {
                match tokio::fs::File::open(&self.file).await {
                    Ok(f) => Box::new(f),
                    Err(e) => {
                        eprintln!("minictl: cannot read {}: {e}", self.file.display());
                        return crate::EXIT_FAILURE;
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
        let mut c = ctx.client.images.clone();
        let res = c
            .import(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await;
        if let Ok(Err(e)) = reading.await {
            eprintln!("minictl: {e}");
            return crate::EXIT_FAILURE;
        }
        match res {
            Ok(r) => {
                let img = r.into_inner().image.unwrap_or_default();
                print_str(&format!("{}\n", img.id));
                0
            }
            Err(s) => ctx.fail(s),
        }
    }
}
