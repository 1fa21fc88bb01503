//! The cgroupfs file protocol shared by both backends: write one value per `write(2)`, read
//! small files, make and remove directories, and wait for a state to show up.
//!
//! Writes never create files: on cgroupfs a missing control file means the controller is not
//! enabled (v2) or not mounted (v1), and creating a regular file would hide that. Fixture trees
//! in tests therefore contain every file a kernel would have. Under `cfg(test)` each write is
//! also appended to a thread-local log so tests can assert the exact sequence of bytes written.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::CgroupError;

/// Writes `value` to the control file `path` in a single write.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    #[cfg(test)]
    record::push(path, value);
    let err = |source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|source| CgroupError::Io {
        op: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a file holding one unsigned number.
pub(crate) fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    parse_u64(path, read(path)?.trim())
}

/// Reads a file holding a number or "max" (None).
pub(crate) fn read_max(path: &Path) -> Result<Option<u64>, CgroupError> {
    let s = read(path)?;
    match s.trim() {
        "max" => Ok(None),
        v => parse_u64(path, v).map(Some),
    }
}

/// Like [`read_u64`], but a missing file (controller absent) reads as 0.
pub(crate) fn read_u64_or_zero(path: &Path) -> Result<u64, CgroupError> {
    match read_u64(path) {
        Err(e) if e.is_not_found() => Ok(0),
        r => r,
    }
}

/// Reads a file, None if it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match read(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn parse_u64(path: &Path, v: &str) -> Result<u64, CgroupError> {
    v.parse().map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        reason: format!("expected a number, found {v:?}"),
    })
}

/// Reads the pids listed in a `cgroup.procs` file.
pub(crate) fn read_pids(path: &Path) -> Result<Vec<i32>, CgroupError> {
    read(path)?
        .split_whitespace()
        .map(|p| {
            p.parse().map_err(|_| CgroupError::Parse {
                path: path.to_path_buf(),
                reason: format!("expected a pid, found {p:?}"),
            })
        })
        .collect()
}

/// Collects the pids of `dir` and every cgroup below it.
pub(crate) fn pids_recursive(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    match read_pids(&dir.join("cgroup.procs")) {
        Ok(p) => out.extend(p),
        // The cgroup vanished (or never existed in this hierarchy): no processes.
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    }
    for child in subdirs(dir)? {
        pids_recursive(&child, out)?;
    }
    Ok(())
}

pub(crate) fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::Io {
                op: "list",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for entry in rd.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(entry.path());
        }
    }
    Ok(out)
}

pub(crate) fn mkdir_p(path: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(path).map_err(|source| CgroupError::Io {
        op: "create cgroup",
        path: path.to_path_buf(),
        source,
    })
}

/// How long `remove` keeps retrying EBUSY: processes that were just killed need a moment to
/// leave the cgroup (their exit is asynchronous to our waitpid of a different process).
const RMDIR_RETRY: Duration = Duration::from_secs(2);

/// Removes the cgroup directory `dir` and every cgroup below it, deepest first. A cgroup that
/// is already gone is fine; EBUSY is retried for [`RMDIR_RETRY`].
pub(crate) fn rmdir_tree(dir: &Path) -> Result<(), CgroupError> {
    for child in subdirs(dir)? {
        rmdir_tree(&child)?;
    }
    let start = Instant::now();
    let mut delay = Duration::from_millis(5);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < RMDIR_RETRY => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(source) => {
                return Err(CgroupError::Io {
                    op: "remove cgroup",
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// How long freeze/thaw wait for the kernel to report the new state.
pub(crate) const STATE_WAIT: Duration = Duration::from_secs(5);

/// Polls `check` until it returns true or [`STATE_WAIT`] passes; `nudge` runs between polls
/// (v1 re-writes FROZEN, as the freezer documentation recommends for a FREEZING cgroup).
pub(crate) fn wait_for(
    path: &Path,
    state: &'static str,
    mut check: impl FnMut() -> Result<bool, CgroupError>,
    mut nudge: impl FnMut() -> Result<(), CgroupError>,
) -> Result<(), CgroupError> {
    let start = Instant::now();
    let mut delay = Duration::from_micros(500);
    loop {
        if check()? {
            return Ok(());
        }
        if start.elapsed() >= STATE_WAIT {
            return Err(CgroupError::Timeout {
                path: path.to_path_buf(),
                state,
                waited_ms: start.elapsed().as_millis(),
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(20));
        nudge()?;
    }
}

/// Sends `signal` to `pid`; a process that already exited is not an error.
pub(crate) fn signal(pid: i32, signal: i32) -> Result<(), CgroupError> {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let r = unsafe { libc::kill(pid, signal) };
    if r == 0 {
        return Ok(());
    }
    match nix::Error::last() {
        nix::Error::ESRCH => Ok(()),
        e => Err(CgroupError::Sys {
            op: format!("send signal {signal} to {pid}"),
            source: e,
        }),
    }
}

/// A key/value line file ("key value" per line, e.g. memory.stat, cpu.stat, memory.events).
pub(crate) fn flat_keyed(
    path: &Path,
    content: &str,
    key: &str,
) -> Result<Option<u64>, CgroupError> {
    for line in content.lines() {
        let mut it = line.split_whitespace();
        if it.next() == Some(key) {
            let v = it.next().unwrap_or("");
            return parse_u64(path, v).map(Some);
        }
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod record {
    //! Test-only log of every write made on this thread.
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    thread_local! {
        static LOG: RefCell<Option<Vec<(PathBuf, String)>>> = const { RefCell::new(None) };
    }

    pub(crate) fn push(path: &Path, value: &str) {
        LOG.with(|l| {
            if let Some(v) = l.borrow_mut().as_mut() {
                v.push((path.to_path_buf(), value.to_string()));
            }
        });
    }

    /// Runs `f` and returns what it wrote, in order.
    pub(crate) fn capture<T>(f: impl FnOnce() -> T) -> (T, Vec<(PathBuf, String)>) {
        LOG.with(|l| *l.borrow_mut() = Some(Vec::new()));
        let r = f();
        let log = LOG.with(|l| l.borrow_mut().take()).unwrap_or_default();
        (r, log)
    }
}
