//! The Exec rpc: a `minid exec-helper` process per session, its stdio bridged to the stream.
//!
//! Without a terminal the helper gets three pipes (stdin `/dev/null` unless the client said it
//! will send stdin); with one, the helper opens a pty inside the container (so the process
//! sees a terminal of its own devpts) and sends the master back over a socket: client bytes
//! are written to it, resizes become `TIOCSWINSZ` on it, and what is read from it goes back
//! as stdout. The exit is sent last,
//! after every byte of output: the pipes (or the pty) are read to their end first.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;

use mini_proto::v1 as pb;
use mini_proto::v1::exec_request::Msg as In;
use mini_proto::v1::exec_response::Msg as Out;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use crate::daemon::Daemon;

type Tx = mpsc::Sender<Result<pb::ExecResponse, Status>>;

fn set_size(master: &OwnedFd, rows: u32, cols: u32) {
    if rows == 0 || cols == 0 {
        return;
    }
    let ws = libc::winsize {
        ws_row: rows.min(u16::MAX as u32) as u16,
        ws_col: cols.min(u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize we own from a pty master we own.
    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// Copies what `r` yields to the client as `wrap(bytes)` until its end (or the client's).
fn pump<R>(mut r: R, tx: &Tx, wrap: fn(Vec<u8>) -> Out) -> tokio::task::JoinHandle<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    let tx = tx.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 << 10];
        // A pty master reads EIO once the last slave descriptor is closed: the end too.
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 || !send(&tx, wrap(buf[..n].to_vec())).await {
                break;
            }
        }
    })
}

async fn send(tx: &Tx, m: Out) -> bool {
    tx.send(Ok(pb::ExecResponse { msg: Some(m) })).await.is_ok()
}

/// Starts the session described by `start`; output goes to `tx`, input comes from `input`.
pub async fn run(
    daemon: Arc<Daemon>,
    start: pb::ExecStart,
    mut input: Streaming<pb::ExecRequest>,
    tx: Tx,
) -> Result<(), Status> {
    let e = daemon
        .find(&start.container)
        .map_err(|e| super::status::to_status(e, true))?;
    let v = daemon.view(&e);
    if v.status != "running" {
        return Err(Status::failed_precondition(format!(
            "container {} is {}: exec needs it running",
            v.meta.name, v.status
        )));
    }
    if start.cmd.is_empty() {
        return Err(Status::invalid_argument("no command to exec"));
    }
    let exe = std::fs::read_link("/proc/self/exe")
        .map_err(|e| Status::internal(format!("cannot find our own binary: {e}")))?;
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("exec-helper")
        .arg("--root")
        .arg(&daemon.rt.root)
        .arg("--id")
        .arg(&e.id);
    if start.tty {
        cmd.arg("--tty");
    }
    if !start.user.is_empty() {
        cmd.arg("--user").arg(&start.user);
    }
    if !start.workdir.is_empty() {
        cmd.arg("--cwd").arg(&start.workdir);
    }
    for kv in &start.env {
        if !kv.contains('=') {
            return Err(Status::invalid_argument(format!(
                "environment variable {kv:?} is not KEY=VALUE"
            )));
        }
        cmd.arg("--env").arg(kv);
    }
    cmd.arg("--").args(&start.cmd).kill_on_drop(false);
    let mut master = None;
    if start.detach {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    } else if start.tty {
        // The helper opens the pty inside the container and sends us the master over this
        // socket (its stdin); its own early errors come on the stderr pipe.
        let (ours, theirs) =
            crate::shim::monitor::console_pair().map_err(|e| super::status::to_status(e, true))?;
        cmd.stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        master = Some(ours);
    } else {
        cmd.stdin(if start.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Status::internal(format!("starting the exec helper: {e}")))?;
    drop(cmd); // our copy of the helper's end of the socket
    if let Some(sock) = master.take() {
        let got = tokio::task::spawn_blocking(move || {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            use std::os::fd::AsFd;
            let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(10_000u16)) {
                Ok(n) if n > 0 => crate::shim::monitor::recv_fd(&sock).ok().flatten(),
                _ => None,
            }
        })
        .await
        .ok()
        .flatten();
        // None: the helper failed before it had a terminal; its stderr says why.
        if let Some(m) = got {
            set_size(&m, start.rows, start.cols);
            master = Some(m);
        }
    }
    let pid = child.id().unwrap_or(0) as i32;
    daemon.exec_event("exec_start", &e, &start.cmd.join(" "), None);
    if !send(&tx, Out::Started(pid)).await {
        return Ok(());
    }
    if start.detach {
        drop(tx);
        let status = child.wait().await;
        let code = exit_code(status);
        daemon.exec_event("exec_die", &e, &start.cmd.join(" "), Some(code));
        return Ok(());
    }
    // Output pumps.
    let mut pumps = Vec::new();
    let mut stdin_w: Option<Box<dyn tokio::io::AsyncWrite + Unpin + Send>> = None;
    let mut master_ctl = None;
    if let Some(m) = master {
        let reader = m
            .try_clone()
            .map_err(|e| Status::internal(format!("dup pty: {e}")))?;
        master_ctl = Some(
            m.try_clone()
                .map_err(|e| Status::internal(format!("dup pty: {e}")))?,
        );
        stdin_w = Some(Box::new(tokio::fs::File::from_std(std::fs::File::from(m))));
        if let Some(o) = child.stderr.take() {
            pumps.push(pump(o, &tx, Out::Stderr));
        }
        pumps.push(pump(
            tokio::fs::File::from_std(std::fs::File::from(reader)),
            &tx,
            Out::Stdout,
        ));
    } else {
        // No terminal (or the helper failed before it had one).
        if let Some(i) = child.stdin.take() {
            stdin_w = Some(Box::new(i));
        }
        if let Some(o) = child.stdout.take() {
            pumps.push(pump(o, &tx, Out::Stdout));
        }
        if let Some(o) = child.stderr.take() {
            pumps.push(pump(o, &tx, Out::Stderr));
        }
    }
    // Input: stdin bytes, close, resizes.
    let input_task = tokio::spawn(async move {
        while let Ok(Some(m)) = input.message().await {
            match m.msg {
                Some(In::Stdin(b)) => {
                    if let Some(w) = stdin_w.as_mut() {
                        if w.write_all(&b).await.is_err() {
                            stdin_w = None;
                        }
                        if let Some(w) = stdin_w.as_mut() {
                            let _ = w.flush().await;
                        }
                    }
                }
                Some(In::StdinClose(true)) => {
                    if master_ctl.is_some() {
                        // A terminal has no end of input but ^D at the start of a line.
                        if let Some(w) = stdin_w.as_mut() {
                            let _ = w.write_all(&[4]).await;
                            let _ = w.flush().await;
                        }
                    } else {
                        stdin_w = None;
                    }
                }
                Some(In::Resize(sz)) => {
                    if let Some(m) = &master_ctl {
                        set_size(m, sz.rows, sz.cols);
                    }
                }
                _ => {}
            }
        }
    });
    // A client that goes away ends the session: the helper is killed, and its child (the
    // command, which dies with it: PR_SET_PDEATHSIG) releases the pty or the pipes.
    let status = tokio::select! {
        st = child.wait() => st,
        _ = tx.closed() => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    for p in pumps {
        let _ = p.await;
    }
    input_task.abort();
    let code = exit_code(status);
    daemon.exec_event("exec_die", &e, &start.cmd.join(" "), Some(code));
    send(
        &tx,
        // The helper reports a signal as 128+N, like a shell; that cannot be told apart from
        // an exit with that code, so no signal is claimed.
        Out::Exit(pb::ExecExit {
            exit_code: code,
            signal: 0,
        }),
    )
    .await;
    Ok(())
}

fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> i32 {
    match status {
        Ok(s) => s
            .code()
            .or_else(|| std::os::unix::process::ExitStatusExt::signal(&s).map(|n| 128 + n))
            .unwrap_or(255),
        Err(_) => 255,
    }
}
