//! Address management for the node's bridge subnet, persisted so that no address is handed out
//! twice across minid restarts.
//!
//! The subnet's first usable address is the bridge's (the containers' gateway); containers get
//! the others. Allocation goes round the subnet from just after the last address handed out
//! (as Docker's IPAM does), so a freed address is not reused at once, where a stale ARP entry
//! or a client's connection could still point at it. A container asking again gets the
//! address it already holds. The table is written atomically (`write_json_atomic`) after every
//! change, before the address is used.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::engine::fsutil;
use crate::engine::{EngineError, Result};

/// An IPv4 subnet, `a.b.c.d/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// Whether `ip` lies inside.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    /// The bridge's address: the first usable one.
    pub fn gateway(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Addresses containers may get: after the gateway, before the broadcast address.
    fn usable(self) -> (u32, u32) {
        let first = u32::from(self.network) + 2;
        let last = (u32::from(self.network) | !self.mask()) - 1;
        (first, last)
    }

    /// Whether two subnets share an address.
    pub fn overlaps(self, o: Subnet) -> bool {
        let m = self.mask() & o.mask();
        u32::from(self.network) & m == u32::from(o.network) & m
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a subnet (a.b.c.d/len)"))?;
        let ip: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{s:?}: {a:?} is not an IPv4 address"))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| (8..=29).contains(p))
            .ok_or_else(|| format!("{s:?}: the prefix length must be 8 to 29"))?;
        let sub = Subnet {
            network: ip,
            prefix,
        };
        if u32::from(ip) & sub.mask() != u32::from(ip) {
            let net = Ipv4Addr::from(u32::from(ip) & sub.mask());
            return Err(format!(
                "{s:?} has host bits set: did you mean {net}/{prefix}?"
            ));
        }
        Ok(sub)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Table {
    subnet: String,
    /// Address → container id.
    allocations: BTreeMap<Ipv4Addr, String>,
    /// The address handed out last; the next search starts after it.
    last: Option<Ipv4Addr>,
}

/// The allocation table of one subnet, backed by a file.
pub struct Ipam {
    path: PathBuf,
    subnet: Subnet,
    table: Table,
}

impl Ipam {
    /// Opens (or starts) the table at `path` for `subnet`. A table written for another subnet
    /// is refused: its containers' addresses would be outside the bridge's.
    pub fn open(path: &Path, subnet: Subnet) -> Result<Ipam> {
        let table = match std::fs::read(path) {
            Ok(b) => {
                let t: Table = serde_json::from_slice(&b).map_err(|e| {
                    EngineError::InvalidArgument(format!(
                        "{}: not an address table: {e}",
                        path.display()
                    ))
                })?;
                if t.subnet != subnet.to_string() && !t.allocations.is_empty() {
                    return Err(EngineError::InvalidArgument(format!(
                        "{} holds addresses of subnet {} for {} containers, but the node's subnet is now {subnet}: \
                         remove those containers (or go back to {}) before changing it",
                        path.display(),
                        t.subnet,
                        t.allocations.len(),
                        t.subnet
                    )));
                }
                t
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Table::default(),
            Err(e) => return Err(EngineError::io("read", path, e)),
        };
        Ok(Ipam {
            path: path.to_path_buf(),
            subnet,
            table: Table {
                subnet: subnet.to_string(),
                ..table
            },
        })
    }

    fn save(&self) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| EngineError::io("create", dir, e))?;
        }
        fsutil::write_json_atomic(&self.path, &self.table)
    }

    /// The address of container `id`: the one it holds, else a new one (saved before it is
    /// returned). `RESOURCE_EXHAUSTED`-kind error when the subnet is full.
    pub fn allocate(&mut self, id: &str) -> Result<Ipv4Addr> {
        if let Some(ip) = self.address_of(id) {
            return Ok(ip);
        }
        let (first, last) = self.subnet.usable();
        let n = last - first + 1;
        let start = self
            .table
            .last
            .map(u32::from)
            .filter(|l| (first..=last).contains(l))
            .map_or(first, |l| if l == last { first } else { l + 1 });
        for k in 0..n {
            let cand = first + (start - first + k) % n;
            let ip = Ipv4Addr::from(cand);
            if let std::collections::btree_map::Entry::Vacant(slot) =
                self.table.allocations.entry(ip)
            {
                slot.insert(id.to_string());
                self.table.last = Some(ip);
                if let Err(e) = self.save() {
                    self.table.allocations.remove(&ip);
                    return Err(e);
                }
                return Ok(ip);
            }
        }
        Err(EngineError::Exhausted(format!(
            "no free address left in {} ({} containers hold them all)",
            self.subnet, n
        )))
    }

    /// Frees container `id`'s address, if it holds one.
    pub fn release(&mut self, id: &str) -> Result<()> {
        let before = self.table.allocations.len();
        self.table.allocations.retain(|_, v| v != id);
        if self.table.allocations.len() != before {
            self.save()?;
        }
        Ok(())
    }

    pub fn address_of(&self, id: &str) -> Option<Ipv4Addr> {
        self.table
            .allocations
            .iter()
            .find(|(_, v)| *v == id)
            .map(|(ip, _)| *ip)
    }

    /// Every `(address, container id)` held.
    pub fn held(&self) -> impl Iterator<Item = (Ipv4Addr, &str)> {
        self.table
            .allocations
            .iter()
            .map(|(ip, id)| (*ip, id.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_refuse_mistakes() {
        let s: Subnet = "10.88.0.0/16".parse().unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 88, 0, 1));
        assert!(s.contains(Ipv4Addr::new(10, 88, 255, 254)));
        assert!(!s.contains(Ipv4Addr::new(10, 89, 0, 1)));
        assert!("10.88.0.1/16"
            .parse::<Subnet>()
            .unwrap_err()
            .contains("did you mean 10.88.0.0/16"));
        assert!("10.88.0.0/31".parse::<Subnet>().is_err());
        assert!("10.88.0.0".parse::<Subnet>().is_err());
        assert!("10.88.0.0/16"
            .parse::<Subnet>()
            .unwrap()
            .overlaps("10.88.4.0/24".parse().unwrap()));
        assert!(!"10.88.0.0/24"
            .parse::<Subnet>()
            .unwrap()
            .overlaps("10.88.1.0/24".parse().unwrap()));
    }

    #[test]
    fn addresses_are_unique_persisted_and_not_reused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net/ipam.json");
        let sub: Subnet = "10.9.0.0/29".parse().unwrap(); // usable: .2 to .6
        let mut ipam = Ipam::open(&path, sub).unwrap();
        let a = ipam.allocate("a").unwrap();
        let b = ipam.allocate("b").unwrap();
        assert_eq!(
            (a, b),
            (Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 3))
        );
        assert_eq!(
            ipam.allocate("a").unwrap(),
            a,
            "the same container keeps its address"
        );
        ipam.release("a").unwrap();
        // A restart reads the table back: b keeps .3, and .2 is not handed out next.
        let mut ipam = Ipam::open(&path, sub).unwrap();
        assert_eq!(ipam.address_of("b"), Some(b));
        assert_eq!(ipam.allocate("c").unwrap(), Ipv4Addr::new(10, 9, 0, 4));
        assert_eq!(ipam.allocate("d").unwrap(), Ipv4Addr::new(10, 9, 0, 5));
        assert_eq!(ipam.allocate("e").unwrap(), Ipv4Addr::new(10, 9, 0, 6));
        // Round again: .2 is free now.
        assert_eq!(ipam.allocate("f").unwrap(), Ipv4Addr::new(10, 9, 0, 2));
        let full = ipam.allocate("g").unwrap_err();
        assert!(
            full.to_string()
                .contains("no free address left in 10.9.0.0/29"),
            "{full}"
        );
        let held: Vec<_> = ipam.held().map(|(_, id)| id.to_string()).collect();
        assert_eq!(held, ["f", "b", "c", "d", "e"]);
        // Another subnet with containers still holding addresses is refused.
        let e = Ipam::open(&path, "10.10.0.0/24".parse().unwrap())
            .err()
            .unwrap();
        assert!(e.to_string().contains("remove those containers"), "{e}");
    }
}
