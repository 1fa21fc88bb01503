//! `minictl exec` against a real agent: streams, stdin, identity, exit codes, and an
//! interactive session through a real pty on both ends.

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use mini_e2e::{require_root, stderr, stdout, Node, PtySession};

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

    // A client that goes away ends its session: the command is killed in the container.
    let mut c = n.ctl_spawn(&["exec", "box", "sleep", "4242"]);
    n.until(Duration::from_secs(5), "the exec'd sleep", || {
        n.ok(&["top", "box"]).contains("sleep 4242")
    });
    let _ = c.kill();
    let _ = c.wait();
    n.until(
        Duration::from_secs(5),
        "the exec'd sleep to be gone",
        || !n.ok(&["top", "box"]).contains("sleep 4242"),
    );

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
    let mut t = PtySession::spawn(n.ctl_command(&["exec", "-it", "box", "sh"]), 30, 100);
    t.read_until("# ");
    t.write(b"stty size; tty; echo mark-$((40+2))\n");
    let s = t.read_until("mark-42");
    assert!(
        s.contains("30 100"),
        "the terminal size did not reach the container: {s:?}"
    );
    assert!(
        s.contains("/dev/pts/"),
        "no terminal in the container: {s:?}"
    );
    // Ctrl-C reaches the process in the container (raw mode): it interrupts sleep, not minictl.
    t.write(b"sleep 30\n");
    std::thread::sleep(Duration::from_millis(500));
    t.write(&[3]);
    t.write(b"echo after-$((1+1))\n");
    let s = t.read_until("after-2");
    assert!(s.contains("after-2"), "{s:?}");
    t.write(b"exit 3\n");
    let status = t.wait();
    assert_eq!(status.code(), Some(3));
}
