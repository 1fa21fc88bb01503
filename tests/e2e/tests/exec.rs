//! `minictl exec` against a real agent: streams, stdin, identity, exit codes, and an
//! interactive session through a real pty on both ends.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mini_e2e::{require_root, stderr, stdout, Node};

#[test]
fn exec_streams_identity_and_exit_codes() {
    require_root!();
    let n = Node::start();
    n.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "1000"]);
    let out = n.ctl(&["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");

    // The container's namespaces: its hostname, its pid 1.
    let host = n.inspect("box")["Id"].as_str().unwrap_or("")[..12].to_string();
    assert_eq!(n.ok(&["exec", "box", "hostname"]).trim(), host);
    assert_eq!(
        n.ok(&["exec", "box", "cat", "/proc/1/cmdline"]),
        "sleep\u{0}1000\u{0}"
    );

    assert_eq!(
        n.ok(&["exec", "-u", "65534", "box", "id", "-u"]).trim(),
        "65534"
    );
    assert_eq!(
        n.ok(&["exec", "-u", "nobody", "box", "id", "-un"]).trim(),
        "nobody"
    );
    assert_eq!(
        n.ok(&[
            "exec",
            "-w",
            "/etc",
            "-e",
            "FOO=bar",
            "box",
            "sh",
            "-c",
            "echo $PWD $FOO"
        ])
        .trim(),
        "/etc bar"
    );

    let out = n.ctl(&["exec", "box", "/no/such/thing"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(stderr(&out).contains("/no/such/thing"), "{}", stderr(&out));

    // stdin, byte for byte, and its end.
    let out = {
        let mut cmd = n.ctl_command(&["exec", "-i", "box", "sh", "-c", "cat; echo done"]);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut c = cmd.spawn().expect("exec -i");
        c.stdin
            .take()
            .expect("stdin")
            .write_all(b"bin\xff\x00ary\n")
            .expect("write stdin");
        c.wait_with_output().expect("exec -i output")
    };
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"bin\xff\x00ary\ndone\n");

    // Not running: refused with a reason.
    n.ok(&["stop", "-t", "1", "box"]);
    let out = n.ctl(&["exec", "box", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("needs it running"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn interactive_tty_exec_through_a_real_pty() {
    require_root!();
    let n = Node::start();
    n.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "1000"]);
    // minictl runs on a pty of ours, as it would in a terminal.
    let pty = nix::pty::openpty(
        Some(&nix::pty::Winsize {
            ws_row: 30,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }),
        None,
    )
    .expect("openpty");
    let slave = std::fs::File::from(pty.slave);
    let mut cmd = n.ctl_command(&["exec", "-it", "box", "sh"]);
    cmd.stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave);
    let mut child = cmd.spawn().expect("exec -it");
    drop(cmd);
    let mut master = std::fs::File::from(pty.master);
    // Read what comes until `want` shows up (or time runs out).
    let fd = master.as_raw_fd();
    let mut seen = Vec::new();
    let mut read_until = |master: &mut std::fs::File, want: &str| {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && !String::from_utf8_lossy(&seen).contains(want) {
            let mut fds = [libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: poll on one pollfd we own.
            if unsafe { libc::poll(fds.as_mut_ptr(), 1, 100) } > 0 {
                let mut b = [0u8; 4096];
                match master.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => seen.extend_from_slice(&b[..k]),
                }
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    };
    read_until(&mut master, "# ");
    master
        .write_all(b"stty size; tty; echo mark-$((40+2))\n")
        .expect("type");
    let s = read_until(&mut master, "mark-42");
    assert!(
        s.contains("30 100"),
        "the terminal size did not reach the container: {s:?}"
    );
    assert!(
        s.contains("/dev/pts/"),
        "no terminal in the container: {s:?}"
    );
    // Ctrl-C reaches the process in the container (raw mode): it interrupts sleep, not minictl.
    master.write_all(b"sleep 30\n").expect("type");
    std::thread::sleep(Duration::from_millis(500));
    master.write_all(&[3]).expect("ctrl-c");
    master.write_all(b"echo after-$((1+1))\n").expect("type");
    let s = read_until(&mut master, "after-2");
    assert!(s.contains("after-2"), "{s:?}");
    master.write_all(b"exit 3\n").expect("type");
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < end, "exec -it did not end");
        let _ = read_until(&mut master, "\u{0}");
    };
    assert_eq!(status.code(), Some(3));
}
