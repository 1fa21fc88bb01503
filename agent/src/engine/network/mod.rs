//! Container networking in `bridge` mode (the default, as in Docker; `none` and `host` need
//! nothing from here).
//!
//! - The node has one Linux bridge (`mini0`) holding the subnet's first address, which is the
//!   containers' gateway; IPv4 forwarding is on, and the bridge accepts 127/8 sources
//!   (`route_localnet`) so ports published on localhost work without a userland proxy.
//! - Each container gets a network namespace of its own, made by minid and kept by a bind
//!   mount at `<run-root>/netns/<id>`, which the container joins by path; it outlives the
//!   container's processes, so a restart keeps the address and the interface.
//! - A veth pair links it to the bridge: `mv<id>` on the host, `eth0` inside with an address
//!   from the [`ipam`] and a default route via the gateway.
//! - Outbound traffic is masqueraded and published ports are DNAT map elements, all in
//!   minid's own nftables table ([`nft`]). A published host port is also held by a socket of
//!   minid's (bound, never accepted on), as Docker's proxy holds it: a port another program
//!   uses is refused with a clear error, and no program can take it afterwards.
//! - `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf` are written into the container's
//!   state directory and bind-mounted.
//!
//! Every step that fails is undone before the error is returned: no veth, namespace, address
//! or rule is left behind.

pub mod ipam;
pub mod netlink;
pub mod nft;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use ipam::Subnet;
pub use nft::Publish;

use crate::engine::{fsutil, EngineError, Result};

/// How the node's bridge network is set up.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    /// The bridge's name (at most 15 bytes).
    pub bridge: String,
    pub subnet: Subnet,
    /// minid's nftables table (family `ip`).
    pub table: String,
    /// Where the address table lives (`<state-dir>/network`).
    pub state_dir: PathBuf,
    /// Where container namespaces are kept (`<run-root>/netns`).
    pub netns_dir: PathBuf,
    /// The whole cluster's container range (each node's subnet is part of it): traffic to
    /// it keeps its source address instead of being masqueraded.
    pub cluster_cidr: Option<Subnet>,
    /// Routes to other nodes' subnets: (their subnet, their address).
    pub routes: Vec<(Subnet, Ipv4Addr)>,
}

/// A container's place on the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// The namespace file the container joins.
    pub netns: PathBuf,
}

/// A socket holding a published host port.
enum Holder {
    Tcp(#[allow(dead_code)] TcpListener),
    Udp(#[allow(dead_code)] UdpSocket),
}

/// The node's bridge network.
pub struct Network {
    cfg: NetworkConfig,
    ipam: Mutex<ipam::Ipam>,
    /// Per container: its published ports and the sockets holding them.
    published: Mutex<HashMap<String, Vec<(Publish, Holder)>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The host end of container `id`'s veth (15 bytes, the kernel's limit).
pub fn host_if(id: &str) -> String {
    format!("mv{}", &id[..13.min(id.len())])
}

impl Network {
    /// Opens the address table and sets the host up: the bridge with its address, forwarding
    /// and minid's nftables table (rebuilt empty of published ports; the caller publishes
    /// running containers' ports again).
    pub fn open(cfg: NetworkConfig) -> Result<Network> {
        if cfg.bridge.is_empty()
            || cfg.bridge.len() > 15
            || !cfg
                .bridge
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(EngineError::InvalidArgument(format!(
                "bridge name {:?}: 1 to 15 letters, digits, '-', '_' or '.'",
                cfg.bridge
            )));
        }
        let ipam = ipam::Ipam::open(&cfg.state_dir.join("ipam.json"), cfg.subnet)?;
        std::fs::create_dir_all(&cfg.netns_dir)
            .map_err(|e| EngineError::io("create", &cfg.netns_dir, e))?;
        netlink::ensure_bridge(&cfg.bridge, cfg.subnet.gateway(), cfg.subnet.prefix)?;
        netlink::sysctl("net/ipv4/ip_forward", "1")?;
        netlink::sysctl(&format!("net/ipv4/conf/{}/route_localnet", cfg.bridge), "1")?;
        if let Some(c) = cfg.cluster_cidr {
            if !c.overlaps(cfg.subnet) || c.prefix > cfg.subnet.prefix {
                return Err(EngineError::InvalidArgument(format!(
                    "the node's subnet {} is not part of the cluster range {c}",
                    cfg.subnet
                )));
            }
        }
        for (dst, via) in &cfg.routes {
            if dst.overlaps(cfg.subnet) {
                return Err(EngineError::InvalidArgument(format!(
                    "route to {dst} overlaps this node's own subnet {}",
                    cfg.subnet
                )));
            }
            netlink::ensure_route(dst.network, dst.prefix, *via)?;
        }
        nft::apply(&nft::table_script(
            &cfg.table,
            &cfg.bridge,
            cfg.subnet,
            cfg.cluster_cidr,
        ))?;
        Ok(Network {
            cfg,
            ipam: Mutex::new(ipam),
            published: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.cfg
    }

    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.cfg.netns_dir.join(id)
    }

    /// The address container `id` holds, if any.
    pub fn address_of(&self, id: &str) -> Option<Ipv4Addr> {
        lock(&self.ipam).address_of(id)
    }

    /// Puts container `id` on the bridge (idempotent: a namespace that exists is kept, with
    /// the address the container holds). Undone on failure.
    pub fn attach(&self, id: &str) -> Result<Endpoint> {
        let held_before = self.address_of(id).is_some();
        let ip = lock(&self.ipam).allocate(id)?;
        let ep = Endpoint {
            ip,
            prefix: self.cfg.subnet.prefix,
            gateway: self.cfg.subnet.gateway(),
            netns: self.netns_path(id),
        };
        if fsutil::is_mountpoint(&ep.netns) && netlink::link_exists(&host_if(id))? {
            return Ok(ep);
        }
        // A half-made namespace (a crash between steps, or a reboot) is made again.
        let _ = netlink::delete_netns(&ep.netns);
        let _ = netlink::delete_link(&host_if(id));
        let made = netlink::create_netns(&ep.netns).and_then(|()| {
            netlink::attach_veth(&netlink::VethPlan {
                bridge: &self.cfg.bridge,
                netns: &ep.netns,
                host_if: &host_if(id),
                ip,
                prefix: ep.prefix,
                gateway: ep.gateway,
                mtu: None,
            })
            .inspect_err(|_| {
                let _ = netlink::delete_netns(&ep.netns);
            })
        });
        if let Err(e) = made {
            if !held_before {
                let _ = lock(&self.ipam).release(id);
            }
            return Err(e);
        }
        // Hairpin: a container reaching its own published port goes out of its bridge port
        // and back in. Best effort: a node in a network namespace of its own (local-cluster)
        // does not see its links in /sys.
        let _ = std::fs::write(
            format!("/sys/class/net/{}/brport/hairpin_mode", host_if(id)),
            "1",
        );
        Ok(ep)
    }

    /// Frees what belongs to no container in `known`: addresses in the table, namespaces
    /// under the run root and their veths (a crash between making a container's network and
    /// recording the container, or containers removed while the bridge was unavailable).
    /// Returns how many containers' leftovers were freed.
    pub fn reconcile(&self, known: &std::collections::HashSet<String>) -> usize {
        let mut stale: std::collections::BTreeSet<String> = lock(&self.ipam)
            .held()
            .filter(|(_, id)| !known.contains(*id))
            .map(|(_, id)| id.to_string())
            .collect();
        if let Ok(rd) = std::fs::read_dir(&self.cfg.netns_dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !known.contains(&name) {
                    stale.insert(name);
                }
            }
        }
        for id in &stale {
            tracing::warn!(container_id = %id, "freeing the network of a container minid does not know");
            let _ = netlink::delete_netns(&self.netns_path(id));
            let _ = netlink::delete_link(&host_if(id));
            let _ = lock(&self.ipam).release(id);
        }
        stale.len()
    }

    /// Takes container `id` off the bridge: its published ports, its namespace, its address,
    /// and its veth. Idempotent. The veth is deleted on a thread of its own: deleting a link
    /// waits for RCU grace periods (tens of milliseconds), which a `run --rm` need not wait
    /// for; the name is the container's own, so nothing can take it meanwhile, and the kernel
    /// would remove the pair with the namespace anyway.
    pub fn detach(&self, id: &str) -> Result<()> {
        self.unpublish(id)?;
        netlink::delete_netns(&self.netns_path(id))?;
        lock(&self.ipam).release(id)?;
        let link = host_if(id);
        std::thread::spawn(move || {
            if let Err(e) = netlink::delete_link(&link) {
                tracing::warn!(link = %link, error = %e, "deleting a container's veth");
            }
        });
        Ok(())
    }

    /// Publishes `ports` of container `id` (address `ip`): holds each host port with a socket
    /// (a port in use is refused, naming it), then adds the DNAT elements. A host port of 0
    /// takes a free one. Returns the ports as published. Undone on failure.
    pub fn publish(&self, id: &str, ip: Ipv4Addr, ports: &[Publish]) -> Result<Vec<Publish>> {
        if ports.is_empty() {
            return Ok(Vec::new());
        }
        let mut held: Vec<(Publish, Holder)> = Vec::with_capacity(ports.len());
        for p in ports {
            let addr = SocketAddrV4::new(p.host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED), p.host_port);
            let bound = if p.udp {
                UdpSocket::bind(addr).and_then(|s| Ok((s.local_addr()?.port(), Holder::Udp(s))))
            } else {
                TcpListener::bind(addr).and_then(|s| Ok((s.local_addr()?.port(), Holder::Tcp(s))))
            };
            match bound {
                Ok((port, h)) => held.push((
                    Publish {
                        host_port: port,
                        ..*p
                    },
                    h,
                )),
                Err(e) => {
                    let proto = if p.udp { "udp" } else { "tcp" };
                    return Err(if e.kind() == std::io::ErrorKind::AddrInUse {
                        EngineError::Conflict(format!(
                            "host port {}:{}/{proto} is already in use on this node",
                            addr.ip(),
                            p.host_port
                        ))
                    } else {
                        EngineError::InvalidArgument(format!(
                            "cannot publish on {addr}/{proto}: {e}"
                        ))
                    });
                }
            }
        }
        let done: Vec<Publish> = held.iter().map(|(p, _)| *p).collect();
        nft::apply(&nft::publish_script(&self.cfg.table, ip, &done))?;
        lock(&self.published)
            .entry(id.to_string())
            .or_default()
            .extend(held);
        Ok(done)
    }

    /// The ports container `id` has published now.
    pub fn published(&self, id: &str) -> Vec<Publish> {
        lock(&self.published)
            .get(id)
            .map(|v| v.iter().map(|(p, _)| *p).collect())
            .unwrap_or_default()
    }

    /// Withdraws container `id`'s published ports and frees the host ports. Idempotent.
    pub fn unpublish(&self, id: &str) -> Result<()> {
        let Some(held) = lock(&self.published).remove(id) else {
            return Ok(());
        };
        let ports: Vec<Publish> = held.iter().map(|(p, _)| *p).collect();
        if let Err(e) = nft::apply(&nft::unpublish_script(&self.cfg.table, &ports)) {
            // The DNAT may still be there: keep holding the host ports so that no program
            // takes one and meets the container's traffic.
            lock(&self.published).insert(id.to_string(), held);
            return Err(e);
        }
        Ok(())
    }

    /// Writes `hosts`, `hostname` and `resolv.conf` for a container into `dir`; returns
    /// `(file, path in the container)` pairs to bind-mount.
    pub fn write_files(
        &self,
        dir: &Path,
        hostname: &str,
        ip: Ipv4Addr,
    ) -> Result<Vec<(PathBuf, &'static str)>> {
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{hostname}\n"
        );
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let files = [
            (dir.join("hosts"), "/etc/hosts", hosts),
            (
                dir.join("hostname"),
                "/etc/hostname",
                format!("{hostname}\n"),
            ),
            (
                dir.join("resolv.conf"),
                "/etc/resolv.conf",
                resolv_conf(&host_resolv),
            ),
        ];
        let mut out = Vec::new();
        for (path, target, text) in files {
            fsutil::write_atomic(&path, text.as_bytes())?;
            out.push((path, target));
        }
        Ok(out)
    }
}

/// The host's resolv.conf without loopback name servers (a resolver on the host's 127.0.0.x
/// is not reachable from a container's namespace); Docker's public fallback when none is
/// left.
pub fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let t = line.trim();
        if let Some(ns) = t.strip_prefix("nameserver") {
            let ns = ns.trim();
            if ns.starts_with("127.") || ns == "::1" {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_servers() {
        assert_eq!(
            resolv_conf("search lan\nnameserver 127.0.0.53\nnameserver 10.0.0.1\n"),
            "search lan\nnameserver 10.0.0.1\n"
        );
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\noptions edns0\n"),
            "options edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn interface_names_fit_the_kernel_limit() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(host_if(id), "mv0123456789abc");
        assert!(host_if(id).len() <= 15);
    }
}
