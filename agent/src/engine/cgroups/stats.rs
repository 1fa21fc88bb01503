//! Reading [`Stats`] out of the kernel's statistics files, v1 and v2.
//!
//! Formats: cgroup-v2.rst "Interface Files" (flat keyed `cpu.stat`, `memory.stat`,
//! `memory.events`; nested keyed `io.stat`) and cgroup-v1 `memory.rst`, `cpuacct.rst`,
//! `blkio-controller.rst`. A controller that is absent reads as zeros, so `stats` works on a
//! cgroup with only some controllers; a file that exists but cannot be parsed is an error.

use std::path::{Path, PathBuf};

use super::files::{self, flat_keyed};
use super::{CgroupError, Stats};

/// Values ≥ this in a v1 `*limit_in_bytes` file mean "unlimited" (the kernel reports
/// PAGE_COUNTER_MAX × page size, 9223372036854771712 with 4 KiB pages).
const V1_UNLIMITED: u64 = 1 << 62;

fn key(path: &Path, content: &Option<String>, k: &str) -> Result<u64, CgroupError> {
    match content {
        Some(c) => Ok(flat_keyed(path, c, k)?.unwrap_or(0)),
        None => Ok(0),
    }
}

/// Statistics of the v2 cgroup at `dir`.
pub fn v2_stats(dir: &Path) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    let p = dir.join("cpu.stat");
    let cpu = files::read_opt(&p)?;
    s.cpu_usage_ns = key(&p, &cpu, "usage_usec")?.saturating_mul(1000);
    s.cpu_user_ns = key(&p, &cpu, "user_usec")?.saturating_mul(1000);
    s.cpu_system_ns = key(&p, &cpu, "system_usec")?.saturating_mul(1000);
    s.cpu_nr_periods = key(&p, &cpu, "nr_periods")?;
    s.cpu_nr_throttled = key(&p, &cpu, "nr_throttled")?;
    s.cpu_throttled_ns = key(&p, &cpu, "throttled_usec")?.saturating_mul(1000);

    s.memory_usage = files::read_u64_or_zero(&dir.join("memory.current"))?;
    let p = dir.join("memory.stat");
    let mem = files::read_opt(&p)?;
    s.memory_rss = key(&p, &mem, "anon")?;
    s.memory_cache = key(&p, &mem, "file")?;
    s.page_faults = key(&p, &mem, "pgfault")?;
    s.major_page_faults = key(&p, &mem, "pgmajfault")?;
    s.memory_working_set = s
        .memory_usage
        .saturating_sub(key(&p, &mem, "inactive_file")?);
    s.memory_limit = read_max_opt(&dir.join("memory.max"))?;
    s.memory_swap_usage = files::read_u64_or_zero(&dir.join("memory.swap.current"))?;
    // memory.peak appeared in Linux 5.19; older kernels have no high-water mark.
    s.memory_max_usage = files::read_u64_or_zero(&dir.join("memory.peak"))?;
    let p = dir.join("memory.events");
    s.oom_kill_count = key(&p, &files::read_opt(&p)?, "oom_kill")?;

    s.pids_current = files::read_u64_or_zero(&dir.join("pids.current"))?;
    s.pids_limit = read_max_opt(&dir.join("pids.max"))?;
    s.cpu_pressure = pressure(&dir.join("cpu.pressure"))?;
    s.memory_pressure = pressure(&dir.join("memory.pressure"))?;
    s.io_pressure = pressure(&dir.join("io.pressure"))?;

    let p = dir.join("io.stat");
    if let Some(io) = files::read_opt(&p)? {
        for line in io.lines() {
            // "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0"
            for field in line.split_whitespace().skip(1) {
                let Some((k, v)) = field.split_once('=') else {
                    continue;
                };
                let v = files::parse_u64(&p, v)?;
                match k {
                    "rbytes" => s.io_read_bytes = s.io_read_bytes.saturating_add(v),
                    "wbytes" => s.io_write_bytes = s.io_write_bytes.saturating_add(v),
                    "rios" => s.io_read_ops = s.io_read_ops.saturating_add(v),
                    "wios" => s.io_write_ops = s.io_write_ops.saturating_add(v),
                    _ => {}
                }
            }
        }
    }
    Ok(s)
}

/// The "some avg10" of a PSI file, in hundredths of a percent ("some avg10=1.25 ..." → 125);
/// None when the file is absent (kernel without PSI).
fn pressure(path: &Path) -> Result<Option<u64>, CgroupError> {
    let Some(text) = files::read_opt(path)? else {
        return Ok(None);
    };
    let avg10 = text
        .lines()
        .find(|l| l.starts_with("some "))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("avg10=")))
        .and_then(|v| v.parse::<f64>().ok());
    Ok(avg10.map(|v| (v * 100.0).round() as u64))
}

fn read_max_opt(path: &Path) -> Result<Option<u64>, CgroupError> {
    match files::read_max(path) {
        Err(e) if e.is_not_found() => Ok(None),
        r => r,
    }
}

/// Statistics of a v1 cgroup; `dir(controller)` is the cgroup's directory in that
/// controller's hierarchy, None when the hierarchy is not mounted.
pub fn v1_stats(dir: impl Fn(&str) -> Option<PathBuf>) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    if let Some(d) = dir("cpuacct") {
        s.cpu_usage_ns = files::read_u64_or_zero(&d.join("cpuacct.usage"))?;
        // cpuacct.stat is in USER_HZ ticks.
        let p = d.join("cpuacct.stat");
        let c = files::read_opt(&p)?;
        let hz = clock_ticks();
        // In u128: ticks × 1e9 overflows u64 after ~1.8e10 ticks (a month of 64 CPUs).
        let ns = |t: u64| (u128::from(t) * 1_000_000_000 / u128::from(hz.max(1))) as u64;
        s.cpu_user_ns = ns(key(&p, &c, "user")?);
        s.cpu_system_ns = ns(key(&p, &c, "system")?);
    }
    if let Some(d) = dir("cpu") {
        let p = d.join("cpu.stat");
        let c = files::read_opt(&p)?;
        s.cpu_nr_periods = key(&p, &c, "nr_periods")?;
        s.cpu_nr_throttled = key(&p, &c, "nr_throttled")?;
        s.cpu_throttled_ns = key(&p, &c, "throttled_time")?;
    }
    if let Some(d) = dir("memory") {
        s.memory_usage = files::read_u64_or_zero(&d.join("memory.usage_in_bytes"))?;
        s.memory_max_usage = files::read_u64_or_zero(&d.join("memory.max_usage_in_bytes"))?;
        let p = d.join("memory.stat");
        let c = files::read_opt(&p)?;
        // The total_* keys include descendants, which is what a container's numbers mean.
        let pick = |total: &str, local: &str| -> Result<u64, CgroupError> {
            match &c {
                Some(c) => Ok(match flat_keyed(&p, c, total)? {
                    Some(v) => v,
                    None => flat_keyed(&p, c, local)?.unwrap_or(0),
                }),
                None => Ok(0),
            }
        };
        s.memory_rss = pick("total_rss", "rss")?;
        s.memory_cache = pick("total_cache", "cache")?;
        s.page_faults = pick("total_pgfault", "pgfault")?;
        s.major_page_faults = pick("total_pgmajfault", "pgmajfault")?;
        let inactive = pick("total_inactive_file", "inactive_file")?;
        s.memory_working_set = s.memory_usage.saturating_sub(inactive);
        let p = d.join("memory.limit_in_bytes");
        s.memory_limit = match files::read_opt(&p)? {
            Some(v) => Some(files::parse_u64(&p, v.trim())?).filter(|&v| v < V1_UNLIMITED),
            None => None,
        };
        let memsw = files::read_u64_or_zero(&d.join("memory.memsw.usage_in_bytes"))?;
        s.memory_swap_usage = memsw.saturating_sub(s.memory_usage);
        let p = d.join("memory.oom_control");
        s.oom_kill_count = key(&p, &files::read_opt(&p)?, "oom_kill")?;
    }
    if let Some(d) = dir("pids") {
        s.pids_current = files::read_u64_or_zero(&d.join("pids.current"))?;
        s.pids_limit = read_max_opt(&d.join("pids.max"))?;
    }
    if let Some(d) = dir("blkio") {
        // The throttle files count every bio, whatever the I/O scheduler; the *_recursive
        // variants include descendants.
        let (rb, wb) = blkio_pair(&d, "blkio.throttle.io_service_bytes")?;
        let (ro, wo) = blkio_pair(&d, "blkio.throttle.io_serviced")?;
        (
            s.io_read_bytes,
            s.io_write_bytes,
            s.io_read_ops,
            s.io_write_ops,
        ) = (rb, wb, ro, wo);
    }
    Ok(s)
}

/// Sums the "MAJ:MIN Read N" and "MAJ:MIN Write N" lines of a blkio statistics file.
fn blkio_pair(dir: &Path, base: &str) -> Result<(u64, u64), CgroupError> {
    let rec = dir.join(format!("{base}_recursive"));
    let (p, content) = match files::read_opt(&rec)? {
        Some(c) => (rec, c),
        None => {
            let p = dir.join(base);
            match files::read_opt(&p)? {
                Some(c) => (p, c),
                None => return Ok((0, 0)),
            }
        }
    };
    let (mut r, mut w) = (0u64, 0u64);
    for line in content.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [_dev, op, v] = f.as_slice() {
            match *op {
                "Read" => r += files::parse_u64(&p, v)?,
                "Write" => w += files::parse_u64(&p, v)?,
                _ => {}
            }
        }
    }
    Ok((r, w))
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a constant of the C library.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::engine::cgroups::testutil::{write_files, V1_MEMORY_STAT, V2_MEMORY_STAT};

    #[test]
    fn v2_stats_from_fixture() {
        let d = tempfile::tempdir().unwrap();
        write_files(
            d.path(),
            &[
                (
                    "cpu.stat",
                    "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\ncore_sched.force_idle_usec 0\n\
                     nr_periods 10\nnr_throttled 3\nthrottled_usec 700\nnr_bursts 0\nburst_usec 0\n",
                ),
                ("memory.current", "104857600\n"),
                ("memory.stat", V2_MEMORY_STAT),
                ("memory.max", "268435456\n"),
                ("memory.swap.current", "4096\n"),
                ("memory.peak", "209715200\n"),
                (
                    "memory.events",
                    "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n",
                ),
                ("pids.current", "7\n"),
                ("pids.max", "max\n"),
                (
                    "cpu.pressure",
                    "some avg10=1.25 avg60=0.50 avg300=0.10 total=123456\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
                ),
                (
                    "io.stat",
                    "8:0 rbytes=1048576 wbytes=2097152 rios=16 wios=32 dbytes=0 dios=0\n\
                     253:1 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n",
                ),
            ],
        );
        let s = v2_stats(d.path()).unwrap();
        assert_eq!(s.cpu_usage_ns, 2_500_000);
        assert_eq!(s.cpu_user_ns, 2_000_000);
        assert_eq!(s.cpu_system_ns, 500_000);
        assert_eq!((s.cpu_nr_periods, s.cpu_nr_throttled), (10, 3));
        assert_eq!(s.cpu_throttled_ns, 700_000);
        assert_eq!(s.memory_usage, 104_857_600);
        // inactive_file in the fixture is 20971520.
        assert_eq!(s.memory_working_set, 104_857_600 - 20_971_520);
        assert_eq!(s.memory_rss, 52_428_800);
        assert_eq!(s.memory_cache, 41_943_040);
        assert_eq!(s.memory_limit, Some(268_435_456));
        assert_eq!(s.memory_swap_usage, 4096);
        assert_eq!(s.memory_max_usage, 209_715_200);
        assert_eq!(s.oom_kill_count, 2);
        assert_eq!((s.pids_current, s.pids_limit), (7, None));
        assert_eq!((s.io_read_bytes, s.io_write_bytes), (1_048_577, 2_097_154));
        assert_eq!((s.io_read_ops, s.io_write_ops), (19, 36));
        // PSI where the file is, None where it is not.
        assert_eq!(s.cpu_pressure, Some(125));
        assert_eq!((s.page_faults, s.major_page_faults), (13_520, 3));
        assert_eq!(s.memory_pressure, None);
    }

    #[test]
    fn v2_working_set_floors_at_zero_and_missing_controllers_are_zero() {
        let d = tempfile::tempdir().unwrap();
        write_files(
            d.path(),
            &[
                ("memory.current", "1000\n"),
                ("memory.stat", "anon 0\nfile 5000\ninactive_file 5000\n"),
                ("memory.max", "max\n"),
            ],
        );
        let s = v2_stats(d.path()).unwrap();
        assert_eq!(s.memory_working_set, 0);
        assert_eq!(s.memory_limit, None);
        assert_eq!(s.cpu_usage_ns, 0);
        assert_eq!(s.pids_limit, None);
    }

    #[test]
    fn v2_garbage_is_an_error_naming_the_file() {
        let d = tempfile::tempdir().unwrap();
        write_files(d.path(), &[("memory.current", "lots\n")]);
        let e = v2_stats(d.path()).unwrap_err();
        assert!(e.to_string().contains("memory.current"), "{e}");
    }

    #[test]
    fn v1_stats_from_fixture() {
        let d = tempfile::tempdir().unwrap();
        for c in ["cpu", "cpuacct", "memory", "pids", "blkio"] {
            std::fs::create_dir(d.path().join(c)).unwrap();
        }
        let hz = clock_ticks();
        write_files(
            &d.path().join("cpuacct"),
            &[
                ("cpuacct.usage", "123456789\n"),
                ("cpuacct.stat", &format!("user {}\nsystem {}\n", 2 * hz, hz)),
            ],
        );
        write_files(
            &d.path().join("cpu"),
            &[(
                "cpu.stat",
                "nr_periods 5\nnr_throttled 1\nthrottled_time 999\n",
            )],
        );
        write_files(
            &d.path().join("memory"),
            &[
                ("memory.usage_in_bytes", "73728000\n"),
                ("memory.max_usage_in_bytes", "80000000\n"),
                ("memory.limit_in_bytes", "9223372036854771712\n"),
                ("memory.memsw.usage_in_bytes", "73732096\n"),
                ("memory.stat", V1_MEMORY_STAT),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
                ),
            ],
        );
        write_files(
            &d.path().join("pids"),
            &[("pids.current", "4\n"), ("pids.max", "100\n")],
        );
        write_files(
            &d.path().join("blkio"),
            &[
                (
                    "blkio.throttle.io_service_bytes_recursive",
                    "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n\
                     8:0 Total 12288\n8:16 Read 1\n8:16 Write 1\nTotal 12290\n",
                ),
                (
                    "blkio.throttle.io_serviced_recursive",
                    "8:0 Read 1\n8:0 Write 2\n8:0 Total 3\nTotal 3\n",
                ),
            ],
        );
        let root = d.path().to_path_buf();
        let s = v1_stats(|c| Some(root.join(c))).unwrap();
        assert_eq!(s.cpu_usage_ns, 123_456_789);
        assert_eq!(s.cpu_user_ns, 2_000_000_000);
        assert_eq!(s.cpu_system_ns, 1_000_000_000);
        assert_eq!(
            (s.cpu_nr_periods, s.cpu_nr_throttled, s.cpu_throttled_ns),
            (5, 1, 999)
        );
        assert_eq!(s.memory_usage, 73_728_000);
        assert_eq!(s.memory_max_usage, 80_000_000);
        assert_eq!(s.memory_limit, None);
        // total_inactive_file is 12288000 in the fixture (inactive_file, the local one, 4096).
        assert_eq!(s.memory_working_set, 73_728_000 - 12_288_000);
        assert_eq!(s.memory_rss, 40_960_000);
        assert_eq!(
            (s.page_faults, s.major_page_faults),
            (30_000, 2),
            "the total_ keys"
        );
        assert_eq!(s.cpu_pressure, None);
        assert_eq!(s.memory_cache, 20_480_000);
        assert_eq!(s.memory_swap_usage, 4096);
        assert_eq!(s.oom_kill_count, 3);
        assert_eq!((s.pids_current, s.pids_limit), (4, Some(100)));
        assert_eq!((s.io_read_bytes, s.io_write_bytes), (4097, 8193));
        assert_eq!((s.io_read_ops, s.io_write_ops), (1, 2));
    }

    #[test]
    fn v1_without_hierarchies_is_all_zero() {
        assert_eq!(v1_stats(|_| None).unwrap(), Stats::default());
    }
}
