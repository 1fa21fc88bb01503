//! Bridge networking through a real agent: a busybox httpd answers through a published port
//! from the host (localhost) and from another network namespace acting as a remote client,
//! containers reach each other and (masqueraded) a server outside, a taken port is refused,
//! ports come back after the agent restarts, and removal leaves no veth. Traffic stays on
//! 127.0.0.1 and in namespaces the test made.

#![allow(clippy::unwrap_used)] // test code

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use mini_e2e::{require_root, stderr, stdout, Node};

/// `GET /` over plain TCP; the body.
fn http_get(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string())
}

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap()
}

/// A network namespace with a veth to the host (`10.198.<n>.1` host side, `.2` inside): a
/// machine "outside" the node. Removed on drop.
struct Remote {
    ns: String,
    host_if: String,
    host_ip: String,
    ip: String,
}

impl Remote {
    fn new(n: u32) -> Remote {
        let r = Remote {
            ns: format!("mtremote{n}"),
            host_if: format!("mtrh{n}"),
            host_ip: format!("10.198.{n}.1"),
            ip: format!("10.198.{n}.2"),
        };
        r.clean();
        let peer = format!("mtrp{n}");
        for cmd in [
            vec!["ip", "netns", "add", &r.ns],
            vec![
                "ip", "link", "add", &r.host_if, "type", "veth", "peer", "name", &peer,
            ],
            vec!["ip", "link", "set", &peer, "netns", &r.ns],
            vec![
                "ip",
                "addr",
                "add",
                &format!("{}/30", r.host_ip),
                "dev",
                &r.host_if,
            ],
            vec!["ip", "link", "set", &r.host_if, "up"],
            vec![
                "ip",
                "-n",
                &r.ns,
                "addr",
                "add",
                &format!("{}/30", r.ip),
                "dev",
                &peer,
            ],
            vec!["ip", "-n", &r.ns, "link", "set", &peer, "up"],
            vec!["ip", "-n", &r.ns, "link", "set", "lo", "up"],
        ] {
            let out = sh(&cmd);
            assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
        }
        r
    }

    /// Runs `args` inside the remote namespace.
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .output()
            .unwrap()
    }

    fn clean(&self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.clean();
    }
}

const HTTPD: &str =
    "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 80 -h /www";

/// The host port `container_port/tcp` is published on, from inspect.
fn host_port(n: &Node, c: &str) -> u16 {
    let v = n.inspect(c);
    v["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
        .as_str()
        .unwrap_or_else(|| panic!("no published port: {v}"))
        .parse()
        .unwrap()
}

#[test]
fn published_ports_reach_the_container_from_the_host_and_from_outside() {
    require_root!();
    let mut n = Node::start();
    let slot = n.net.as_ref().unwrap().n;
    let remote = Remote::new(slot);

    n.ok(&[
        "run", "-d", "--name", "web", "-h", "web", "-p", "80", "busybox", "sh", "-c", HTTPD,
    ]);
    let port = host_port(&n, "web");
    let v = n.inspect("web");
    let ip = v["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ip.starts_with(&format!("10.199.{slot}.")), "{v}");
    assert_eq!(
        v["NetworkSettings"]["Gateway"],
        format!("10.199.{slot}.1").as_str()
    );
    let ps = n.ok(&["ps"]);
    assert!(ps.contains(&format!("0.0.0.0:{port}->80/tcp")), "{ps}");

    // From the host, on localhost (httpd may need a moment to listen).
    let mut body = String::new();
    n.until(Duration::from_secs(5), "httpd answering", || {
        body = http_get(&format!("127.0.0.1:{port}")).unwrap_or_default();
        !body.is_empty()
    });
    assert_eq!(body, "hello from web\n");
    // From a remote machine, to the node's address on its link.
    // (busybox 1.35's wget crashes with -T: time limits come from `timeout`.)
    let out = remote.run(&[
        "busybox",
        "timeout",
        "5",
        "busybox",
        "wget",
        "-qO-",
        &format!("http://{}:{port}/", remote.host_ip),
    ]);
    assert_eq!(stdout(&out), "hello from web\n", "{}", stderr(&out));
    // Container to container, by address.
    let out = n.ok(&[
        "run",
        "--rm",
        "busybox",
        "timeout",
        "5",
        "wget",
        "-qO-",
        &format!("http://{ip}/"),
    ]);
    assert_eq!(out, "hello from web\n");
    // Hairpin: a container reaching a published port through the node's address (the
    // gateway), from another container and from the published container itself.
    let gw = format!("10.199.{slot}.1");
    let out = n.ok(&[
        "run",
        "--rm",
        "busybox",
        "timeout",
        "5",
        "wget",
        "-qO-",
        &format!("http://{gw}:{port}/"),
    ]);
    assert_eq!(out, "hello from web\n");
    let out = n.ok(&[
        "exec",
        "web",
        "timeout",
        "5",
        "wget",
        "-qO-",
        &format!("http://{gw}:{port}/"),
    ]);
    assert_eq!(out, "hello from web\n");
    // 0.0.0.0 as the host address is every address, as Docker reads it.
    let out = n.ok(&[
        "run",
        "-d",
        "--name",
        "web2",
        "-p",
        "0.0.0.0::80",
        "busybox",
        "sh",
        "-c",
        HTTPD,
    ]);
    assert!(!out.trim().is_empty());
    let port2 = host_port(&n, "web2");
    n.until(
        Duration::from_secs(5),
        "web2 answering on localhost",
        || http_get(&format!("127.0.0.1:{port2}")).is_ok_and(|b| b.starts_with("hello from")),
    );
    n.ok(&["rm", "-f", "web2"]);

    // Outbound: a server on the remote machine has no route back to the container subnet,
    // so this works only through the node's masquerade.
    let mut server = Command::new("ip")
        .args(["netns", "exec", &remote.ns, "busybox", "sh", "-c"])
        .arg("mkdir -p /tmp/mtout && echo outside > /tmp/mtout/index.html && exec busybox httpd -f -p 8000 -h /tmp/mtout")
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = n.ctl(&[
        "run",
        "--rm",
        "busybox",
        "timeout",
        "5",
        "wget",
        "-qO-",
        &format!("http://{}:8000/", remote.ip),
    ]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(stdout(&out), "outside\n", "{}", stderr(&out));

    // The same host port again: refused, naming it; nothing is left of the second container's
    // network.
    let out = n.ctl(&[
        "run",
        "-d",
        "--name",
        "clash",
        "-p",
        &format!("{port}:80"),
        "busybox",
        "sleep",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains(&format!("host port 0.0.0.0:{port}/tcp is already in use")),
        "{}",
        stderr(&out)
    );
    n.ok(&["rm", "-f", "clash"]);

    // ps shows the address; a stopped container publishes nothing, and again when started.
    let ps = n.ok(&["ps"]);
    assert!(
        ps.lines().next().unwrap().contains("ADDRESS") && ps.contains(&ip),
        "{ps}"
    );
    n.ok(&["stop", "-t", "1", "web"]);
    assert!(
        http_get(&format!("127.0.0.1:{port}")).is_err(),
        "withdrawn on stop"
    );
    assert!(n.inspect("web")["NetworkSettings"]["Ports"]
        .as_object()
        .unwrap()
        .is_empty());
    n.ok(&["start", "web"]);
    let port = host_port(&n, "web");
    n.until(Duration::from_secs(5), "httpd answering again", || {
        http_get(&format!("127.0.0.1:{port}")).is_ok_and(|b| b == "hello from web\n")
    });
    assert_eq!(
        n.inspect("web")["NetworkSettings"]["IPAddress"],
        ip.as_str(),
        "the address is kept across a restart"
    );

    // The agent killed and started again: the container keeps running and its port works.
    n.kill9();
    n.launch();
    let got = http_get(&format!("127.0.0.1:{port}"));
    assert!(
        matches!(&got, Ok(b) if b == "hello from web\n"),
        "{got:?}\n{}",
        n.log()
    );
    // The table was rebuilt, not added to: one element for the port, three masquerades.
    let table = n.net.as_ref().unwrap().table();
    let rules = stdout(&sh(&["nft", "list", "table", "ip", &table]));
    assert_eq!(
        rules.matches(&format!("tcp . {port} :")).count(),
        1,
        "{rules}"
    );
    assert_eq!(rules.matches("masquerade").count(), 3, "{rules}");

    // Removal: the veth goes, the port is free again.
    let id = n.inspect("web")["Id"].as_str().unwrap().to_string();
    n.ok(&["rm", "-f", "web"]);
    let veth = format!("mv{}", &id[..13]);
    // (deleted in the background: a link's deletion waits for RCU grace periods)
    n.until(Duration::from_secs(3), "the veth to go", || {
        !sh(&["ip", "link", "show", &veth]).status.success()
    });
    assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_ok());
}

#[test]
fn network_modes_none_and_host_and_bad_ports() {
    require_root!();
    let mut n = Node::start();
    // A record from before bridge mode was the default (an empty mode) still means none.
    let id = n
        .ok(&["run", "-d", "--network", "none", "busybox", "sleep", "300"])
        .trim()
        .to_string();
    n.kill9();
    let meta = n.state.join("containers").join(&id).join("meta.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    assert_eq!(v["config"]["network_mode"], "none", "{v}");
    v["config"]["network_mode"] = serde_json::Value::String(String::new());
    std::fs::write(&meta, serde_json::to_vec(&v).unwrap()).unwrap();
    n.launch();
    assert_eq!(n.inspect(&id)["HostConfig"]["NetworkMode"], "none");
    n.ok(&["rm", "-f", &id]);
    let out = n.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "ip",
        "-o",
        "addr",
    ]);
    assert!(!out.contains("eth0"), "{out}");
    // none: a namespace of the agent's making, with loopback up, gone with the container.
    let out = n.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "ip -o link show lo; wget -qO- http://127.0.0.1:1/ 2>&1; true",
    ]);
    assert!(out.contains(",UP"), "{out}");
    assert!(
        out.contains("refused"),
        "loopback answers (refused, not unreachable): {out}"
    );
    let left: Vec<_> = std::fs::read_dir(n.run.join("netns"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    let out = n.ctl(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-p",
        "80",
        "busybox",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("nothing to publish"),
        "{}",
        stderr(&out)
    );
    let out = n.ctl(&["run", "--rm", "-p", "80/sctp", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("tcp or udp"), "{}", stderr(&out));
    // bridge (the default): eth0 with an address of the node's subnet, /etc/hosts naming it.
    let slot = n.net.as_ref().unwrap().n;
    let out = n.ok(&[
        "run",
        "--rm",
        "-h",
        "box1",
        "busybox",
        "sh",
        "-c",
        "ip -o -4 addr show eth0; cat /etc/hosts",
    ]);
    assert!(out.contains(&format!("10.199.{slot}.")), "{out}");
    assert!(out.contains("\tbox1\n"), "{out}");
}
