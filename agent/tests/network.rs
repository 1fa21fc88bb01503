//! The bridge network against the real kernel: a namespace on a private bridge gets its
//! address and route, the host reaches it, a published port answers on localhost, a taken
//! port is refused, a failure midway is rolled back, and detaching leaves nothing behind.
//! Each test uses its own bridge, subnet and nftables table, removed at the end (also when
//! the test fails). Needs root; without it the tests print `skipping: <reason>`.

#![allow(clippy::unwrap_used)] // test code

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use minid::engine::network::{self, netlink, Network, NetworkConfig, Publish};

macro_rules! need_root {
    () => {
        if !nix::unistd::geteuid().is_root() {
            println!("skipping: needs root (network namespaces, bridges, nftables)");
            return;
        }
        if std::process::Command::new("nft")
            .arg("--version")
            .output()
            .is_err()
        {
            println!("skipping: nft (the nftables package) is not installed");
            return;
        }
    };
}

/// A private bridge network, torn down on drop.
struct Lab {
    dir: tempfile::TempDir,
    bridge: String,
    table: String,
    net: Option<Network>,
}

impl Lab {
    fn new(tag: &str, subnet: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let bridge = format!("mt{tag}{}", std::process::id() % 10000);
        let table = format!("minidt{tag}{}", std::process::id());
        let cfg = NetworkConfig {
            bridge: bridge.clone(),
            subnet: subnet.parse().unwrap(),
            table: table.clone(),
            state_dir: dir.path().join("state"),
            netns_dir: dir.path().join("netns"),
            cluster_cidr: None,
            routes: Vec::new(),
        };
        let mut lab = Lab {
            dir,
            bridge,
            table,
            net: None,
        };
        lab.net = Some(Network::open(cfg).unwrap());
        lab
    }

    fn net(&self) -> &Network {
        self.net.as_ref().unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = network::nft::remove_table(&self.table);
        let _ = netlink::delete_link(&self.bridge);
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("netns")) {
            for e in entries.flatten() {
                let _ = netlink::delete_netns(&e.path());
            }
        }
    }
}

/// Serves one `hello` on port 80 inside the namespace at `netns`, from a thread that entered
/// it (the listening socket belongs to that namespace).
fn serve_in(netns: &Path) -> std::thread::JoinHandle<()> {
    let ns = std::fs::File::open(netns).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind("0.0.0.0:80").unwrap();
        tx.send(()).unwrap();
        for _ in 0..2 {
            if let Ok((mut s, _)) = l.accept() {
                let _ = s.write_all(b"hello");
            }
        }
    });
    rx.recv().unwrap();
    h
}

fn fetch(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn link_exists(name: &str) -> bool {
    netlink::link_exists(name).unwrap()
}

/// Waits (up to 3 s) for link `name` to go: detach deletes veths in the background.
fn gone(name: &str) {
    let end = std::time::Instant::now() + Duration::from_secs(3);
    while link_exists(name) {
        assert!(std::time::Instant::now() < end, "{name} is still there");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_container_namespace_is_reachable_and_publishes_ports() {
    need_root!();
    let lab = Lab::new("a", "10.231.7.0/24");
    let id = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let ep = lab.net().attach(id).unwrap();
    assert_eq!(ep.ip, Ipv4Addr::new(10, 231, 7, 2));
    assert_eq!(ep.gateway, Ipv4Addr::new(10, 231, 7, 1));
    assert!(link_exists(&network::host_if(id)));
    // Attaching again keeps everything.
    assert_eq!(lab.net().attach(id).unwrap(), ep);

    let server = serve_in(&ep.netns);
    // The host reaches the container's address over the bridge.
    assert_eq!(fetch(&format!("{}:80", ep.ip)).unwrap(), "hello");
    // A published port answers on localhost (DNAT in output, route_localnet, masquerade).
    let free = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let p = Publish {
        host_ip: None,
        host_port: port,
        container_port: 80,
        udp: false,
    };
    assert_eq!(lab.net().publish(id, ep.ip, &[p]).unwrap(), vec![p]);
    assert_eq!(fetch(&format!("127.0.0.1:{port}")).unwrap(), "hello");
    server.join().unwrap();

    // The same host port again is refused, naming it.
    let e = lab.net().publish("other", ep.ip, &[p]).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("host port 0.0.0.0:{port}/tcp is already in use")),
        "{e}"
    );
    // A port some program holds is refused too.
    let taken = TcpListener::bind("0.0.0.0:0").unwrap();
    let tp = taken.local_addr().unwrap().port();
    let e = lab
        .net()
        .publish(id, ep.ip, &[Publish { host_port: tp, ..p }])
        .unwrap_err();
    assert!(e.to_string().contains("already in use"), "{e}");

    // Detach: ports withdrawn (the host port is free again), veth and namespace gone.
    lab.net().detach(id).unwrap();
    gone(&network::host_if(id));
    assert!(!ep.netns.exists());
    assert!(TcpListener::bind(("0.0.0.0", port)).is_ok());
    assert_eq!(lab.net().address_of(id), None);
    lab.net().detach(id).unwrap();

    // Leftovers of a container minid does not know (a crash mid-create) are freed at start.
    let ghost = "00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa00aa";
    let keep = "11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb11bb";
    let g = lab.net().attach(ghost).unwrap();
    let k = lab.net().attach(keep).unwrap();
    let known = [keep.to_string()].into_iter().collect();
    assert_eq!(lab.net().reconcile(&known), 1);
    assert_eq!(lab.net().address_of(ghost), None);
    assert!(!g.netns.exists());
    gone(&network::host_if(ghost));
    assert_eq!(lab.net().address_of(keep), Some(k.ip));
    assert!(link_exists(&network::host_if(keep)));
    lab.net().detach(keep).unwrap();
}

#[test]
fn a_failure_midway_leaves_nothing_behind() {
    need_root!();
    let lab = Lab::new("b", "10.231.8.0/24");
    let id = "ffeeddccbbaa00112233445566778899ffeeddccbbaa00112233445566778899";
    // The veth step fails after the pair was created (the default route's gateway is not on
    // the link): the pair is deleted again, at once.
    let ns = lab.dir.path().join("probe");
    netlink::create_netns(&ns).unwrap();
    let e = netlink::attach_veth(&netlink::VethPlan {
        bridge: &lab.bridge,
        netns: &ns,
        host_if: &network::host_if(id),
        ip: Ipv4Addr::new(10, 231, 8, 9),
        prefix: 24,
        gateway: Ipv4Addr::new(10, 99, 99, 1),
        mtu: None,
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("default route via 10.99.99.1"),
        "{e}"
    );
    assert!(!link_exists(&network::host_if(id)), "no veth left");
    netlink::delete_netns(&ns).unwrap();
    assert!(!ns.exists());

    // Through Network::attach: the namespace cannot be made (its directory is a file), after
    // the address was allocated: the address is released and no link is left.
    let dir = lab.dir.path().join("netns");
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    let e = lab.net().attach(id).unwrap_err();
    assert!(e.to_string().contains("netns"), "{e}");
    assert_eq!(lab.net().address_of(id), None, "address released");
    assert!(!link_exists(&network::host_if(id)));
    std::fs::remove_file(&dir).unwrap();
}

#[test]
fn namespaces_made_ahead_are_fresh_distinct_and_have_loopback_up() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        println!("skipping: needs root (network namespaces)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = netlink::NetnsPool::new(1);
    let filled = |what: &str| {
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while pool.ready() < 1 {
            assert!(
                std::time::Instant::now() < end,
                "the pool did not fill {what}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    filled("at first");
    let a = dir.path().join("a");
    pool.create_at(&a).unwrap();
    assert_eq!(pool.ready(), 0, "a take refills only when told");
    pool.refill();
    filled("again after a take");
    let b = dir.path().join("b");
    pool.create_at(&b).unwrap();
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_ne!(ino(&a), ino(&b), "two containers got one namespace");
    assert_ne!(
        ino(&a),
        ino(Path::new("/proc/self/ns/net")),
        "the host's namespace"
    );
    // Loopback is up inside: a listener on 127.0.0.1 takes a connection there.
    let ns = std::fs::File::open(&a).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        drop((c, l.accept().unwrap()));
    })
    .join()
    .unwrap();
    for p in [&a, &b] {
        netlink::delete_netns(p).unwrap();
        assert!(!p.exists());
    }
}
