//! The cluster inventory: the nodes `minictl` places containers on and looks across.
//!
//! A TOML file, given with `--cluster FILE` (or `MINICTL_CLUSTER`), else
//! `$XDG_CONFIG_HOME/minictl/cluster.toml` (`~/.config/minictl/cluster.toml`) when it exists:
//!
//! ```toml
//! # Optional: the cluster's TLS files, relative to this file. Flags and MINICTL_TLS_* win.
//! [tls]
//! ca = "pki/ca.pem"
//! cert = "pki/admin.pem"
//! key = "pki/admin-key.pem"
//!
//! [[node]]
//! name = "node1"
//! address = "10.0.0.5:7000"
//! labels = { zone = "a", disk = "ssd" }
//! taints = ["gpu=t4:NoSchedule"]      # only containers tolerating it land here
//! ```
//!
//! `deploy/local-cluster` writes the same format. Names and addresses must be unique; every
//! problem is reported with the file's name (and the line, for TOML syntax errors).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use minisim::policy::Taint;
use serde::Deserialize;

use crate::tls::{split_addr, TlsFiles};

/// The inventory's file name under `~/.config/minictl/`.
pub const DEFAULT_FILE: &str = "cluster.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNode {
    name: String,
    address: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    taints: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls: Option<FileTls>,
    #[serde(default)]
    node: Vec<FileNode>,
}

/// One node of the inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    /// host:port
    pub address: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

/// A loaded, checked inventory.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub path: PathBuf,
    /// TLS files named by the inventory, made absolute.
    pub tls: TlsFiles,
    pub nodes: Vec<Member>,
}

/// `$XDG_CONFIG_HOME/minictl/cluster.toml`, else `$HOME/.config/minictl/cluster.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("minictl").join(DEFAULT_FILE))
}

impl Inventory {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<Inventory> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the cluster inventory {}", path.display()))?;
        Self::parse(path, &text)
    }

    /// Checks `text`, the contents of `path` (relative TLS paths are taken from its directory).
    pub fn parse(path: &Path, text: &str) -> anyhow::Result<Inventory> {
        let f: File = toml::from_str(text)
            .map_err(|e| anyhow!("{}: {}", path.display(), e.to_string().trim_end()))?;
        let bad = |msg: String| anyhow!("{}: {msg}", path.display());
        if f.node.is_empty() {
            return Err(bad(
                "no nodes: add [[node]] entries with a name and an address".into(),
            ));
        }
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        let mut nodes = Vec::with_capacity(f.node.len());
        for n in f.node {
            if n.name.is_empty()
                || !n
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                return Err(bad(format!(
                    "node name {:?}: use letters, digits, '.', '-' and '_'",
                    n.name
                )));
            }
            split_addr(&n.address).map_err(|_| {
                bad(format!(
                    "node {}: address {:?} is not host:port",
                    n.name, n.address
                ))
            })?;
            if !names.insert(n.name.clone()) {
                return Err(bad(format!("node {} is listed twice", n.name)));
            }
            if !addrs.insert(n.address.clone()) {
                return Err(bad(format!(
                    "address {} is listed for two nodes",
                    n.address
                )));
            }
            let taints = n
                .taints
                .iter()
                .map(|t| t.parse::<Taint>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(format!("node {}: {e}", n.name)))?;
            nodes.push(Member {
                name: n.name,
                address: n.address,
                labels: n.labels,
                taints,
            });
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let abs = |p: Option<PathBuf>| p.map(|p| if p.is_absolute() { p } else { dir.join(p) });
        let tls = match f.tls {
            Some(t) => TlsFiles {
                ca: abs(t.ca),
                cert: abs(t.cert),
                key: abs(t.key),
            },
            None => TlsFiles::default(),
        };
        Ok(Inventory {
            path: path.to_path_buf(),
            tls,
            nodes,
        })
    }

    /// The member named `name`, or listed at address `name`.
    pub fn find(&self, name: &str) -> Option<&Member> {
        self.nodes
            .iter()
            .find(|m| m.name == name)
            .or_else(|| self.nodes.iter().find(|m| m.address == name))
    }

    /// Fills what the caller did not give with the inventory's TLS files.
    pub fn tls_under(&self, given: TlsFiles) -> TlsFiles {
        let mut f = given;
        if f.ca.is_none() {
            f.ca = self.tls.ca.clone();
        }
        if f.cert.is_none() && f.key.is_none() {
            f.cert = self.tls.cert.clone();
            f.key = self.tls.key.clone();
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[tls]
ca = "pki/ca.pem"
cert = "/abs/admin.pem"
key = "/abs/admin-key.pem"

[[node]]
name = "node1"
address = "10.0.0.5:7000"
labels = { zone = "a" }

[[node]]
name = "node2"
address = "[fd00::2]:7000"
taints = ["gpu=t4:NoSchedule"]
"#;

    #[test]
    fn a_good_inventory_loads_with_paths_relative_to_it() {
        let inv = Inventory::parse(Path::new("/etc/mini/cluster.toml"), GOOD).unwrap();
        assert_eq!(inv.nodes.len(), 2);
        assert_eq!(
            inv.nodes[0].labels.get("zone").map(String::as_str),
            Some("a")
        );
        assert_eq!(inv.nodes[1].taints[0].to_string(), "gpu=t4:NoSchedule");
        assert_eq!(inv.tls.ca, Some(PathBuf::from("/etc/mini/pki/ca.pem")));
        assert_eq!(inv.tls.cert, Some(PathBuf::from("/abs/admin.pem")));
        assert_eq!(inv.find("node2").unwrap().address, "[fd00::2]:7000");
        assert_eq!(inv.find("10.0.0.5:7000").unwrap().name, "node1");
        assert!(inv.find("node9").is_none());
        // Given files win; a given cert without key does not get the inventory's key.
        let f = inv.tls_under(TlsFiles {
            ca: Some("/mine.pem".into()),
            cert: None,
            key: None,
        });
        assert_eq!(f.ca, Some(PathBuf::from("/mine.pem")));
        assert_eq!(f.key, Some(PathBuf::from("/abs/admin-key.pem")));
    }

    #[test]
    fn mistakes_are_named() {
        let err = |t: &str| {
            Inventory::parse(Path::new("c.toml"), t)
                .unwrap_err()
                .to_string()
        };
        assert!(err("").contains("no nodes"), "{}", err(""));
        let dup = "[[node]]\nname='a'\naddress='h:1'\n[[node]]\nname='a'\naddress='h:2'\n";
        assert!(err(dup).contains("node a is listed twice"));
        let dup_addr = "[[node]]\nname='a'\naddress='h:1'\n[[node]]\nname='b'\naddress='h:1'\n";
        assert!(err(dup_addr).contains("address h:1 is listed for two nodes"));
        let e = err("[[node]]\nname='a'\naddress='h:x'\n");
        assert!(e.contains("node a:") && e.contains("not host:port"), "{e}");
        let e = err("[[node]]\nname='a'\naddres='h:1'\n");
        assert!(e.starts_with("c.toml:") && e.contains("addres"), "{e}");
        let e = err("[[node]]\nname='a b'\naddress='h:1'\n");
        assert!(e.contains("node name \"a b\""), "{e}");
        let e = err("[[node]]\nname='a'\naddress='h:1'\ntaints=['x']\n");
        assert!(e.contains("node a: taint \"x\" has no effect"), "{e}");
        let e = err("[[node]\n");
        assert!(e.starts_with("c.toml:") && e.contains("line 1"), "{e}");
    }
}
