//! Mount options of the runtime spec, parsed into `mount(2)` flags, propagation and data.
//!
//! The option words are those of mount(8); anything that is not a flag word is passed to the
//! filesystem as data (`mode=755,size=65536k`). Words we cannot honour are refused by name.

use nix::mount::MsFlags;

use crate::engine::error::{EngineError, Result};

/// One spec mount's options, split the way the kernel wants them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Flags for the mount call itself.
    pub flags: MsFlags,
    /// Propagation changes, applied with separate mount calls after the mount.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific data (comma-joined).
    pub data: String,
    /// `bind` or `rbind` was given.
    pub bind: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            bind: false,
        }
    }
}

impl Options {
    /// Flags beyond a plain bind that need a remount (a bind ignores them on the first call).
    pub fn remount_flags(&self) -> MsFlags {
        self.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)
    }
}

pub fn parse(opts: &[String]) -> Result<Options> {
    let mut o = Options::default();
    let mut data = Vec::new();
    for word in opts {
        let (set, clear) = match word.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                (MsFlags::MS_BIND, MsFlags::empty())
            }
            "rbind" => {
                o.bind = true;
                (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty())
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                o.propagation
                    .push(propagation(word).unwrap_or(MsFlags::empty()));
                continue;
            }
            "tmpcopyup" | "idmap" | "ridmap" | "rro" | "rrw" | "rnosuid" | "rnodev" | "rnoexec"
            | "rnoatime" | "rrelatime" | "rstrictatime" | "rnosymfollow" | "nosymfollow"
            | "copy-symlink" | "src-nofollow" | "recursive" => {
                return Err(EngineError::Unsupported(format!("mount option {word:?}")));
            }
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
    }
    o.data = data.join(",");
    Ok(o)
}

/// A propagation word (`rprivate`, `shared`, ...) as mount flags.
pub fn propagation(word: &str) -> Option<MsFlags> {
    Some(match word {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(',').map(String::from).collect()
    }

    #[test]
    fn flags_data_and_propagation_are_split() {
        let o = parse(&words("nosuid,strictatime,mode=755,size=65536k,rprivate")).expect("parse");
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert!(!o.bind);
    }

    #[test]
    fn later_words_win_and_bind_remount_flags_exclude_bind() {
        let o = parse(&words("ro,rw,rbind,nodev,ro")).expect("parse");
        assert!(o.bind);
        assert_eq!(o.remount_flags(), MsFlags::MS_RDONLY | MsFlags::MS_NODEV);
    }

    #[test]
    fn unsupported_words_are_refused_by_name() {
        let err = parse(&words("rbind,idmap")).unwrap_err();
        assert!(err.to_string().contains("\"idmap\""), "{err}");
    }
}
