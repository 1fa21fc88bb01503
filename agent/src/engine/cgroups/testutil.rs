//! Test helpers: fixture files, guards that clean up cgroups and children, and the checks that
//! decide whether a privileged test can run here.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::{detect, Cgroup, CgroupVersion, DEFAULT_ROOT};

/// Writes `files` (name, content) into `dir`, creating it.
pub(crate) fn write_files(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
}

/// Reads a fixture file.
pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// A memory.stat as a 6.x kernel writes it for a cgroup v2 leaf.
pub(crate) const V2_MEMORY_STAT: &str = "anon 52428800
file 41943040
kernel 3145728
kernel_stack 98304
pagetables 262144
sec_pagetables 0
percpu 1440
sock 0
vmalloc 0
shmem 0
zswap 0
zswapped 0
file_mapped 8388608
file_dirty 4096
file_writeback 0
swapcached 0
anon_thp 0
file_thp 0
shmem_thp 0
inactive_anon 52428800
active_anon 0
inactive_file 20971520
active_file 20971520
unevictable 0
slab_reclaimable 2097152
slab_unreclaimable 524288
slab 2621440
workingset_refault_anon 0
workingset_refault_file 0
workingset_activate_anon 0
workingset_activate_file 0
workingset_restore_anon 0
workingset_restore_file 0
workingset_nodereclaim 0
pgscan 0
pgsteal 0
pgfault 13520
pgmajfault 3
thp_fault_alloc 0
thp_collapse_alloc 0
";

/// A v1 memory.stat: local counters first, then the hierarchical total_* ones.
pub(crate) const V1_MEMORY_STAT: &str = "cache 4096
rss 8192
rss_huge 0
shmem 0
mapped_file 0
dirty 0
writeback 0
swap 0
pgpgin 100
pgpgout 90
pgfault 300
pgmajfault 0
inactive_anon 8192
active_anon 0
inactive_file 4096
active_file 0
unevictable 0
hierarchical_memory_limit 9223372036854771712
hierarchical_memsw_limit 9223372036854771712
total_cache 20480000
total_rss 40960000
total_rss_huge 0
total_shmem 0
total_mapped_file 1024000
total_dirty 0
total_writeback 0
total_swap 4096
total_pgpgin 10000
total_pgpgout 9000
total_pgfault 30000
total_pgmajfault 2
total_inactive_anon 40960000
total_active_anon 0
total_inactive_file 12288000
total_active_file 8192000
total_unevictable 0
";

/// A name no other test (or test run) uses.
pub(crate) fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "minid-test-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Removes the cgroup when the test ends, whether it passed or not.
pub(crate) struct CgroupGuard(pub Box<dyn Cgroup>);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.remove() {
            eprintln!("cleanup: failed to remove cgroup {}: {e}", self.0.path());
        }
    }
}

/// A v1 parent cgroup of a unique name (tagged `tag`) under `own`, for a test's cgroups
/// (`--cgroup-parent` style: relative); removed, with what is left under it, when dropped.
pub(crate) fn v1_parent(root: &Path, own: &str, tag: &str) -> (String, CgroupGuard) {
    let name = unique(tag);
    let path =
        super::resolve_path(own, CgroupVersion::V1, Some(Path::new(&name)), None, "x").unwrap();
    (
        name,
        CgroupGuard(super::open_path(root, CgroupVersion::V1, &path)),
    )
}

/// Kills and reaps the child when the test ends, unless the test reaped it already.
pub(crate) struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    pub(crate) fn spawn(cmd: &mut Command) -> Self {
        ChildGuard(Some(cmd.spawn().unwrap()))
    }
    pub(crate) fn sleep() -> Self {
        Self::spawn(
            Command::new("sleep")
                .arg("600")
                .stdin(Stdio::null())
                .stdout(Stdio::null()),
        )
    }
    pub(crate) fn pid(&self) -> i32 {
        self.0.as_ref().unwrap().id() as i32
    }
    pub(crate) fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }
    pub(crate) fn wait(&mut self) -> std::process::ExitStatus {
        let st = self.child().wait().unwrap();
        self.0 = None;
        st
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The root and `/proc/self/cgroup` for a privileged test of `version`, or None after printing
/// why it cannot run here. v2 runs on `/sys/fs/cgroup` if that is cgroup2, else on the hybrid
/// `/sys/fs/cgroup/unified`.
pub(crate) fn privileged(version: CgroupVersion, need: &[&str]) -> Option<(PathBuf, String)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipping: not running as root");
        return None;
    }
    let root = Path::new(DEFAULT_ROOT);
    let host = match detect(root) {
        Ok(v) => v,
        Err(e) => {
            println!("skipping: cannot detect cgroups: {e}");
            return None;
        }
    };
    let dir = match (version, host) {
        (CgroupVersion::V1, CgroupVersion::V1) => root.to_path_buf(),
        (CgroupVersion::V2, CgroupVersion::V2) => root.to_path_buf(),
        (CgroupVersion::V2, CgroupVersion::V1) => {
            let u = root.join("unified");
            if !matches!(detect(&u), Ok(CgroupVersion::V2)) {
                println!(
                    "skipping: v1 host without a cgroup2 mount at {}",
                    u.display()
                );
                return None;
            }
            u
        }
        (CgroupVersion::V1, CgroupVersion::V2) => {
            println!("skipping: this host has no cgroup v1 hierarchies");
            return None;
        }
    };
    for f in need {
        if !dir.join(f).exists() {
            println!("skipping: {} does not exist", dir.join(f).display());
            return None;
        }
    }
    let own = match std::fs::read_to_string("/proc/self/cgroup") {
        Ok(s) => s,
        Err(e) => {
            println!("skipping: cannot read /proc/self/cgroup: {e}");
            return None;
        }
    };
    Some((dir, own))
}

/// Parses a spec fragment.
pub(crate) fn resources(json: &str) -> oci_spec::runtime::LinuxResources {
    serde_json::from_str(json).unwrap()
}
