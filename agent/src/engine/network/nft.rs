//! minid's nftables table: masquerade for the node subnet and DNAT for published ports.
//!
//! Everything lives in one table of minid's own (`ip minid` by default), so the host's rules
//! are never touched and removing the table removes all of minid's. Published ports are
//! elements of two maps, not rules: publishing and unpublishing add and delete elements
//! atomically, and a restart that rebuilds the table cannot duplicate anything.
//!
//! ```text
//! prerouting, output (nat): to a local address → publish
//! publish: dnat via @ports_ip (host ip . proto . port) or @ports_any (proto . port)
//! postrouting (nat): from the subnet leaving by another interface → masquerade;
//!                    from 127/8 towards the bridge (published on localhost) → masquerade;
//!                    DNATed from the subnet back onto the bridge (hairpin) → masquerade
//! forward (filter): accept to and from the bridge
//! raw (prerouting): from the bridge to 127/8 → drop (route_localnet must not open the
//!                   host's loopback services to containers)
//! ```
//!
//! Changes go through `nft -f -` (one transaction each).

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use super::ipam::Subnet;
use crate::engine::{EngineError, Result};

/// A published port.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Publish {
    /// `None`: every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_port: u16,
    pub udp: bool,
}

impl Publish {
    fn proto(&self) -> &'static str {
        if self.udp {
            "udp"
        } else {
            "tcp"
        }
    }
}

/// The whole table for `bridge` and `subnet`, replacing any earlier one in the same
/// transaction (so a restart starts clean: published ports are added again by the caller).
pub fn table_script(table: &str, bridge: &str, subnet: Subnet, cluster: Option<Subnet>) -> String {
    // Within the cluster's range, containers of other nodes see the real source address.
    let not_cluster = cluster
        .map(|c| format!("ip daddr != {c} "))
        .unwrap_or_default();
    format!(
        "table ip {table} {{}}
delete table ip {table}
table ip {table} {{
    map ports_any {{
        type inet_proto . inet_service : ipv4_addr . inet_service
    }}
    map ports_ip {{
        type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service
    }}
    chain publish {{
        fib daddr type != local return
        dnat ip to ip daddr . meta l4proto . th dport map @ports_ip
        dnat ip to meta l4proto . th dport map @ports_any
    }}
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        jump publish
    }}
    chain output {{
        type nat hook output priority -100; policy accept;
        jump publish
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {subnet} {not_cluster}oifname != \"{bridge}\" masquerade
        ip saddr 127.0.0.0/8 oifname \"{bridge}\" masquerade
        ct status dnat ip saddr {subnet} oifname \"{bridge}\" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname \"{bridge}\" accept
        oifname \"{bridge}\" accept
    }}
    chain guard {{
        type filter hook prerouting priority raw; policy accept;
        iifname \"{bridge}\" ip daddr 127.0.0.0/8 drop
    }}
}}
"
    )
}

fn element_key(p: &Publish) -> String {
    match p.host_ip {
        Some(ip) => format!("{ip} . {} . {}", p.proto(), p.host_port),
        None => format!("{} . {}", p.proto(), p.host_port),
    }
}

fn map_of(p: &Publish) -> &'static str {
    if p.host_ip.is_some() {
        "ports_ip"
    } else {
        "ports_any"
    }
}

/// Adds the elements publishing `ports` to container address `ip`.
pub fn publish_script(table: &str, ip: Ipv4Addr, ports: &[Publish]) -> String {
    ports
        .iter()
        .map(|p| {
            format!(
                "add element ip {table} {} {{ {} : {ip} . {} }}\n",
                map_of(p),
                element_key(p),
                p.container_port
            )
        })
        .collect()
}

/// Deletes the elements of `ports`.
pub fn unpublish_script(table: &str, ports: &[Publish]) -> String {
    ports
        .iter()
        .map(|p| {
            format!(
                "delete element ip {table} {} {{ {} }}\n",
                map_of(p),
                element_key(p)
            )
        })
        .collect()
}

/// Runs `script` as one nft transaction.
pub fn apply(script: &str) -> Result<()> {
    if script.is_empty() {
        return Ok(());
    }
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            EngineError::Other(format!(
                "cannot run nft (install the nftables package): {e}"
            ))
        })?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(script.as_bytes())
            .map_err(|e| EngineError::Other(format!("writing to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| EngineError::Other(format!("waiting for nft: {e}")))?;
    if !out.status.success() {
        return Err(EngineError::Other(format!(
            "nft refused the change: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Removes the whole table (nothing when it does not exist).
pub fn remove_table(table: &str) -> Result<()> {
    apply(&format!("table ip {table} {{}}\ndelete table ip {table}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_name_the_table_bridge_subnet_and_ports() {
        let t = table_script("minid", "mini0", "10.88.0.0/16".parse().unwrap(), None);
        assert!(t.starts_with("table ip minid {}\ndelete table ip minid\n"));
        assert!(t.contains("ip saddr 10.88.0.0/16 oifname != \"mini0\" masquerade"));
        assert!(t.contains("iifname \"mini0\" ip daddr 127.0.0.0/8 drop"));
        assert!(t.contains("ct status dnat ip saddr 10.88.0.0/16 oifname \"mini0\" masquerade"));
        let t = table_script(
            "minid",
            "mini0",
            "10.88.2.0/24".parse().unwrap(),
            Some("10.88.0.0/16".parse().unwrap()),
        );
        assert!(t.contains(
            "ip saddr 10.88.2.0/24 ip daddr != 10.88.0.0/16 oifname != \"mini0\" masquerade"
        ));
        let ports = [
            Publish {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                udp: false,
            },
            Publish {
                host_ip: Some(Ipv4Addr::new(127, 0, 0, 1)),
                host_port: 5353,
                container_port: 53,
                udp: true,
            },
        ];
        assert_eq!(
            publish_script("minid", Ipv4Addr::new(10, 88, 0, 5), &ports),
            "add element ip minid ports_any { tcp . 8080 : 10.88.0.5 . 80 }\n\
             add element ip minid ports_ip { 127.0.0.1 . udp . 5353 : 10.88.0.5 . 53 }\n"
        );
        assert_eq!(
            unpublish_script("minid", &ports),
            "delete element ip minid ports_any { tcp . 8080 }\n\
             delete element ip minid ports_ip { 127.0.0.1 . udp . 5353 }\n"
        );
    }
}
