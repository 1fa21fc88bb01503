//! Typed messages between the init process and its parent.
//!
//! A `SOCK_SEQPACKET` socketpair keeps message boundaries, so each `send` is one JSON document and
//! each `recv` returns exactly one. Both ends are close-on-exec: when the init `execve`s, its end
//! closes and the parent reads EOF. The init side runs after `clone` in a copy of a
//! single-threaded process, so allocating here is safe (no lock can be held by another thread).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::engine::error::{EngineError, Result};

/// What the init and its parent tell each other, in protocol order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// parent → init: user namespace maps are written and the init is in its cgroup. `pid` is
    /// the init's pid as the runtime sees it (inside a new pid namespace the init is 1), for
    /// the state the container-side hooks receive.
    Go { pid: i32 },
    /// init → parent: namespaces exist; the parent may run prestart/createRuntime hooks.
    NamespacesReady,
    /// parent → init: hooks ran, continue with the root filesystem.
    HooksDone,
    /// init → parent: everything up to `execve` is done; the init now waits to be started.
    Created,
    /// parent → init (when there is no exec fifo): the container is recorded, go on to
    /// `execve`. The init's end of the channel closes on exec, so the parent then reads EOF.
    Start,
    /// parent → standby init (cloned before its container was known): move into the cgroup
    /// made for you.
    Place,
    /// standby init → parent: it is in its cgroup and waits for [`Message::Prepare`].
    Placed,
    /// parent → standby init: you will be container `id`'s init; read its record and spec
    /// now (while the parent readies the cgroup), then wait for [`Message::Job`].
    Prepare { id: String },
    /// parent → standby init: become the init announced by [`Message::Prepare`]. The
    /// descriptors travel with the message (SCM_RIGHTS), in this order: stdin, stdout and
    /// stderr when `stdio`, the console socket when `console`, the exec fifo when `exec_fifo`.
    Job {
        stdio: bool,
        console: bool,
        exec_fifo: bool,
    },
    /// Either way: a step failed; the text says which and why.
    Error(String),
    /// init → parent: the process cannot be executed; `code` is 127 (not found) or 126
    /// (found but not executable), the exit codes shells and Docker use.
    ExecFailed { code: i32, msg: String },
}

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// A connected pair: `(parent end, init end)`.
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| EngineError::sys("socketpair for the init channel", e))?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    pub fn send(&self, msg: &Message) -> Result<()> {
        let data = serde_json::to_vec(msg)
            .map_err(|e| EngineError::Other(format!("failed to encode {msg:?}: {e}")))?;
        loop {
            match send(self.fd.as_raw_fd(), &data, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(EngineError::sys("send on the init channel", e)),
            }
        }
    }

    /// Sends `msg` with descriptors attached (SCM_RIGHTS): the receiver gets its own copies.
    pub fn send_with_fds(&self, msg: &Message, fds: &[RawFd]) -> Result<()> {
        use nix::sys::socket::{sendmsg, ControlMessage};
        let data = serde_json::to_vec(msg)
            .map_err(|e| EngineError::Other(format!("failed to encode {msg:?}: {e}")))?;
        let iov = [std::io::IoSlice::new(&data)];
        let cmsg = [ControlMessage::ScmRights(fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(EngineError::sys("send on the init channel", e)),
            }
        }
    }

    /// The next message and the descriptors that came with it (close-on-exec, ours to close);
    /// `None` when the other end closed.
    pub fn recv_with_fds(&self) -> Result<Option<(Message, Vec<OwnedFd>)>> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned};
        use std::os::fd::FromRawFd;
        let mut buf = vec![0u8; 64 * 1024];
        let mut space = nix::cmsg_space!([RawFd; 8]);
        loop {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let r = recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            );
            let (n, fds) = match r {
                Ok(m) => {
                    let mut fds = Vec::new();
                    for c in m.cmsgs().map_err(|e| EngineError::sys("recvmsg", e))? {
                        if let ControlMessageOwned::ScmRights(v) = c {
                            // SAFETY: the kernel just installed these descriptors for us.
                            fds.extend(v.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                        }
                    }
                    (m.bytes, fds)
                }
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(EngineError::sys("recv on the init channel", e)),
            };
            if n == 0 {
                return Ok(None);
            }
            let msg = serde_json::from_slice(&buf[..n]).map_err(|e| {
                EngineError::Other(format!("undecodable message on the init channel: {e}"))
            })?;
            return Ok(Some((msg, fds)));
        }
    }

    /// The next message, or `None` when the other end closed (init exec'd or died).
    pub fn recv(&self) -> Result<Option<Message>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    return serde_json::from_slice(&buf[..n]).map(Some).map_err(|e| {
                        EngineError::Other(format!("undecodable message from init: {e}"))
                    })
                }
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(EngineError::sys("recv on the init channel", e)),
            }
        }
    }

    /// Waits for `want`; an `Error` or EOF becomes an error that says what happened.
    pub fn expect(&self, want: Message) -> Result<()> {
        match self.recv()? {
            Some(m) if m == want => Ok(()),
            Some(Message::Error(e)) => Err(EngineError::Init(e)),
            Some(Message::ExecFailed { code, msg }) => Err(EngineError::Exec { code, msg }),
            Some(other) => Err(EngineError::Init(format!(
                "protocol error: expected {want:?}, got {other:?}"
            ))),
            None => Err(EngineError::Init(format!(
                "init exited before sending {want:?}"
            ))),
        }
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_boundaries_and_eof_is_none() {
        let (a, b) = Channel::pair().expect("pair");
        a.send(&Message::Go { pid: 7 }).expect("send");
        a.send(&Message::Error("mount /proc: EPERM".into()))
            .expect("send");
        assert_eq!(b.recv().expect("recv"), Some(Message::Go { pid: 7 }));
        let err = b.expect(Message::Created).unwrap_err();
        assert!(err.to_string().contains("mount /proc: EPERM"), "{err}");
        drop(a);
        assert_eq!(b.recv().expect("recv"), None);
    }

    #[test]
    fn descriptors_travel_with_a_message() {
        use std::io::{Read, Write};
        let (a, b) = Channel::pair().expect("pair");
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let job = Message::Job {
            stdio: false,
            console: false,
            exec_fifo: true,
        };
        a.send_with_fds(&job, &[w.as_raw_fd()]).expect("send");
        drop(w);
        let (m, fds) = b.recv_with_fds().expect("recv").expect("a message");
        assert_eq!(m, job);
        assert_eq!(fds.len(), 1);
        // The copy we received is the pipe's write end: what goes in comes out of `r`.
        let mut f = std::fs::File::from(fds.into_iter().next().expect("fd"));
        f.write_all(b"ok").expect("write");
        drop(f);
        let mut got = String::new();
        std::fs::File::from(r)
            .read_to_string(&mut got)
            .expect("read");
        assert_eq!(got, "ok");
    }
}
