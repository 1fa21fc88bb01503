//! Reading a container's CRI log back: history, tail, time window, and following.
//!
//! The shim writes `<RFC3339Nano> <stream> <P|F> <bytes>\n` entries to `ctr.log` and rotates
//! it to `ctr.log.1 .. ctr.log.N` by renaming ([`crate::shim::log`]). A reader therefore:
//!
//! - reads the rotated files oldest first, then the live one, for history and `tail`;
//! - follows by holding the live file's descriptor: when it reaches the end and the path has
//!   become a new file (the shim rotated), everything the shim wrote to the old file is
//!   already there, so it drains the old descriptor once more and switches to the new file
//!   from its start. No entry is read twice and none is skipped, however late it joined;
//! - stops following once [`Follow::done`] says the container has exited *and* a last read
//!   found nothing new: the shim writes the exit record only after draining the container's
//!   pipes into the log, so nothing can come after that.
//!
//! Times in the log are fixed-width UTC (`humantime`'s nanosecond format), so the `since` and
//! `until` window compares them as strings once the bounds are formatted the same way.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// One log entry: the bytes of a line (newline included unless `partial`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub time: String,
    pub stderr: bool,
    pub data: Vec<u8>,
    pub partial: bool,
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub follow: bool,
    /// Only the last N full lines of the history (None: all).
    pub tail: Option<usize>,
    /// Formatted bounds (see [`format_time`]); entries with `since <= time < until` pass.
    pub since: Option<String>,
    pub until: Option<String>,
    pub stdout: bool,
    pub stderr: bool,
}

impl Query {
    fn wants(&self, (time, stderr, _, _): &LineRef<'_>) -> bool {
        let stream_ok = match (self.stdout, self.stderr) {
            (false, false) | (true, true) => true,
            (true, false) => !stderr,
            (false, true) => *stderr,
        };
        stream_ok
            && self.since.as_deref().is_none_or(|s| *time >= s)
            && self.until.as_deref().is_none_or(|u| *time < u)
    }
}

/// Formats a time as the shim does, for comparisons with entry times.
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Parses `since`/`until` as Docker does: RFC 3339, Unix seconds (with fraction), or a
/// duration back from now (`10m`, `1h30m`).
pub fn parse_time(s: &str, now: SystemTime) -> Result<SystemTime, String> {
    let s = s.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(secs));
        }
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return now
            .checked_sub(d)
            .ok_or_else(|| format!("{s:?} reaches back before 1970"));
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2026-11-29T10:00:00Z), Unix seconds, or a duration such as 10m"
    ))
}

/// One log line, borrowed: (time, stderr, partial, content without the newline).
pub type LineRef<'a> = (&'a str, bool, bool, &'a [u8]);

/// Splits one log line (without its newline) into its parts, without copying.
pub fn parse_ref(line: &[u8]) -> Option<LineRef<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let content = parts.next().unwrap_or(&[]);
    let stderr = match stream {
        b"stdout" => false,
        b"stderr" => true,
        _ => return None,
    };
    let partial = match tag {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some((time, stderr, partial, content))
}

fn owned((time, stderr, partial, content): LineRef<'_>) -> Entry {
    let mut data = Vec::with_capacity(content.len() + 1);
    data.extend_from_slice(content);
    if !partial {
        data.push(b'\n');
    }
    Entry {
        time: time.to_string(),
        stderr,
        data,
        partial,
    }
}

/// Parses one log line (without its newline).
pub fn parse_line(line: &[u8]) -> Option<Entry> {
    parse_ref(line).map(owned)
}

/// The rotated files of `path`, oldest first, then `path` itself.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut rotated = Vec::new();
    for n in 1.. {
        let p = PathBuf::from(format!("{}.{n}", path.display()));
        if !p.exists() {
            break;
        }
        rotated.push(p);
    }
    rotated.reverse();
    rotated.push(path.to_path_buf());
    rotated
}

/// Reads complete lines from a file, keeping an incomplete last line for later.
struct LineReader {
    file: BufReader<File>,
    buf: Vec<u8>,
    /// `buf` holds a complete line already handed out.
    complete: bool,
    ino: u64,
}

impl LineReader {
    fn open(path: &Path) -> std::io::Result<LineReader> {
        LineReader::from_file(File::open(path)?)
    }

    fn from_file(f: File) -> std::io::Result<LineReader> {
        let ino = f.metadata()?.ino();
        Ok(LineReader {
            file: BufReader::with_capacity(256 << 10, f),
            buf: Vec::with_capacity(1024),
            complete: false,
            ino,
        })
    }

    /// Next complete line (without its newline), or None at the current end of the file.
    fn next_line(&mut self) -> std::io::Result<Option<&[u8]>> {
        if self.complete {
            self.buf.clear();
            self.complete = false;
        }
        self.file.read_until(b'\n', &mut self.buf)?;
        if self.buf.last() != Some(&b'\n') {
            return Ok(None);
        }
        self.complete = true;
        Ok(Some(&self.buf[..self.buf.len() - 1]))
    }
}

/// Opens the log's files oldest first, each once (a rotation between listing and opening can
/// make two names one file).
fn open_chain(path: &Path) -> Vec<LineReader> {
    let mut out: Vec<LineReader> = Vec::new();
    for p in files(path) {
        if let Ok(r) = LineReader::open(&p) {
            if !out.iter().any(|x| x.ino == r.ino) {
                out.push(r);
            }
        }
    }
    out
}

/// Where a follower learns that the container has exited.
pub trait Follow {
    fn done(&self) -> bool;
    /// Waits up to `timeout` for something to read or for the end; may return early.
    fn wait(&self, timeout: Duration) {
        std::thread::sleep(timeout);
    }
}

impl<F: Fn() -> bool> Follow for F {
    fn done(&self) -> bool {
        self()
    }
}

/// A follower woken by the kernel (inotify(7)) instead of by a timer: when the log's
/// directory changes (a write, a rotation) or the container's state directory does (the
/// shim's exit record appears), so new lines and the end arrive at once.
pub struct Watched<F: Fn() -> bool> {
    pub done: F,
    inotify: Option<nix::sys::inotify::Inotify>,
}

impl<F: Fn() -> bool> Watched<F> {
    /// Watches `log_dir` for writes and renames and `state_dir` for new files. Without
    /// inotify (no watches left) it falls back to polling.
    pub fn new(done: F, log_dir: &Path, state_dir: &Path) -> Watched<F> {
        use nix::sys::inotify::{AddWatchFlags as W, InitFlags, Inotify};
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .ok()
            .filter(|i| {
                i.add_watch(
                    log_dir,
                    W::IN_MODIFY | W::IN_CREATE | W::IN_MOVED_FROM | W::IN_MOVED_TO,
                )
                .is_ok()
                    && i.add_watch(state_dir, W::IN_CREATE | W::IN_MOVED_TO | W::IN_DELETE_SELF)
                        .is_ok()
            });
        Watched { done, inotify }
    }
}

impl<F: Fn() -> bool> Follow for Watched<F> {
    fn done(&self) -> bool {
        (self.done)()
    }

    fn wait(&self, timeout: Duration) {
        use std::os::fd::AsFd;
        let Some(i) = &self.inotify else {
            std::thread::sleep(timeout);
            return;
        };
        let ms = timeout.as_millis().min(u16::MAX as u128) as u16;
        let mut fds = [nix::poll::PollFd::new(
            i.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
        // Drain: the events only wake us; the files say what happened.
        while let Ok(ev) = i.read_events() {
            if ev.is_empty() {
                break;
            }
        }
    }
}

/// Reads the log at `path` as `q` asks, handing batches of entries to `emit` (which returns
/// false when the reader is gone). Blocks while following; run it on a blocking thread.
///
/// Consecutive lines of one stream that the shim wrote with one timestamp (one read of the
/// container's pipe) travel as one entry: the bytes are the same, the overhead per line is
/// gone. A client that shows timestamps repeats the entry's time on each of its lines.
pub fn read(
    path: &Path,
    q: &Query,
    follow: &dyn Follow,
    mut emit: impl FnMut(Vec<Entry>) -> bool,
) -> std::io::Result<()> {
    let mut out = Batcher {
        emit: &mut emit,
        batch: Vec::new(),
        bytes: 0,
    };
    // History: every rotated file, then the live file up to its current end. All are opened
    // first, so that rotations while we read cannot make us skip or repeat a file.
    let mut chain = open_chain(path);
    let mut cur = chain.pop();
    let mut history: std::collections::VecDeque<Entry> = Default::default();
    let mut lines_kept = 0usize;
    // With a tail, hold only the last N lines (a line = its P entries + the F).
    let mut keep = |e: LineRef<'_>, history: &mut std::collections::VecDeque<Entry>, n: usize| {
        if !e.2 {
            lines_kept += 1;
        }
        history.push_back(owned(e));
        while lines_kept > n {
            match history.pop_front() {
                Some(x) if !x.partial => lines_kept -= 1,
                Some(_) => {}
                None => break,
            }
        }
    };
    for r in chain.iter_mut().chain(cur.iter_mut()) {
        while let Some(line) = r.next_line()? {
            let Some(e) = parse_ref(line).filter(|e| q.wants(e)) else {
                continue;
            };
            match q.tail {
                Some(n) => keep(e, &mut history, n),
                None => {
                    if !out.push(e) {
                        return Ok(());
                    }
                }
            }
        }
    }
    drop(chain);
    while let Some(e) = history.pop_front() {
        if !out.push_owned(e) {
            return Ok(());
        }
    }
    if !q.follow {
        out.flush();
        return Ok(());
    }
    // Follow: new lines exactly once, across rotations, until the container is done.
    let mut idle = Duration::from_millis(1);
    loop {
        // Checked before reading: if it is done now, this read sees everything it wrote.
        let done = follow.done();
        let mut got = false;
        if let Some(r) = cur.as_mut() {
            while let Some(line) = r.next_line()? {
                got = true;
                if let Some(e) = parse_ref(line).filter(|e| q.wants(e)) {
                    if !out.push(e) {
                        return Ok(());
                    }
                }
            }
        }
        // Rotated (or created) since we opened it? The shim renames the file and starts a
        // new one, after its last write to the old one: what is left in ours is complete.
        let now_ino = std::fs::metadata(path).map(|m| m.ino()).ok();
        if now_ino.is_some() && now_ino != cur.as_ref().map(|r| r.ino) {
            if let Some(r) = cur.as_mut() {
                while let Some(line) = r.next_line()? {
                    if let Some(e) = parse_ref(line).filter(|e| q.wants(e)) {
                        if !out.push(e) {
                            return Ok(());
                        }
                    }
                }
            }
            // The next file is the one after ours in the chain (it may have been rotated
            // too, if we fell behind); ours gone from the chain means we fell behind past the
            // rotation limit, and the oldest file left is next.
            let ours = cur.as_ref().map(|r| r.ino);
            let mut chain = open_chain(path);
            let next = match chain.iter().position(|r| Some(r.ino) == ours) {
                Some(i) => i + 1,
                None => 0,
            };
            cur = if next < chain.len() {
                Some(chain.swap_remove(next))
            } else {
                None
            };
            continue;
        }
        if !out.flush() {
            return Ok(());
        }
        if done && !got {
            return Ok(());
        }
        if got {
            idle = Duration::from_millis(1);
        } else {
            follow.wait(idle);
            idle = (idle * 2).min(Duration::from_millis(100));
        }
    }
}

/// Collects entries into batches of about 64 KiB for `emit`.
struct Batcher<'a, F: FnMut(Vec<Entry>) -> bool> {
    emit: &'a mut F,
    batch: Vec<Entry>,
    bytes: usize,
}

impl<F: FnMut(Vec<Entry>) -> bool> Batcher<'_, F> {
    const BATCH_BYTES: usize = 64 << 10;

    /// Adds a line, merged into the last entry when it has the same time and stream;
    /// false once the receiver is gone.
    fn push(&mut self, (time, stderr, partial, content): LineRef<'_>) -> bool {
        match self.batch.last_mut() {
            Some(last) if last.stderr == stderr && last.time == time => {
                last.data.extend_from_slice(content);
                if !partial {
                    last.data.push(b'\n');
                }
                last.partial = partial;
                self.bytes += content.len() + 1;
            }
            _ => {
                let e = owned((time, stderr, partial, content));
                self.bytes += e.data.len() + 40;
                self.batch.push(e);
            }
        }
        if self.bytes >= Self::BATCH_BYTES {
            return self.flush();
        }
        true
    }

    /// Adds an entry as it is.
    fn push_owned(&mut self, e: Entry) -> bool {
        self.bytes += e.data.len() + 40;
        self.batch.push(e);
        if self.bytes >= Self::BATCH_BYTES {
            return self.flush();
        }
        true
    }

    /// Sends what is collected; false once the receiver is gone.
    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        self.bytes = 0;
        (self.emit)(std::mem::take(&mut self.batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(t: &str, s: &str, tag: &str, c: &str) -> String {
        format!("{t} {s} {tag} {c}\n")
    }

    fn collect(path: &Path, q: &Query) -> Vec<Entry> {
        let mut out = Vec::new();
        read(path, q, &|| true, |b| {
            out.extend(b);
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn lines_parse_with_bytes_kept() {
        let e = parse_line(b"2026-01-01T00:00:00.000000001Z stdout F caf\xc3\xa9 \xff").unwrap();
        assert_eq!(e.data, b"caf\xc3\xa9 \xff\n");
        assert!(!e.stderr && !e.partial);
        let e = parse_line(b"2026-01-01T00:00:00.000000001Z stderr P $ ").unwrap();
        assert_eq!(e.data, b"$ ");
        assert!(e.stderr && e.partial);
        let e = parse_line(b"2026-01-01T00:00:00.000000001Z stdout F ").unwrap();
        assert_eq!(e.data, b"\n");
        assert!(parse_line(b"garbage").is_none());
    }

    #[test]
    fn history_tail_window_streams_and_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ctr.log");
        let t = |n: u32| format!("2026-01-01T00:00:{n:02}.000000000Z");
        std::fs::write(
            d.path().join("ctr.log.1"),
            line(&t(1), "stdout", "F", "one") + &line(&t(2), "stderr", "F", "two"),
        )
        .unwrap();
        std::fs::write(
            &p,
            line(&t(3), "stdout", "P", "thr")
                + &line(&t(3), "stdout", "F", "ee")
                + &line(&t(4), "stdout", "F", "four"),
        )
        .unwrap();
        let all = collect(&p, &Query::default());
        let text: Vec<u8> = all.iter().flat_map(|e| e.data.clone()).collect();
        assert_eq!(text, b"one\ntwo\nthree\nfour\n");
        let tail2 = collect(
            &p,
            &Query {
                tail: Some(2),
                ..Default::default()
            },
        );
        let text: Vec<u8> = tail2.iter().flat_map(|e| e.data.clone()).collect();
        assert_eq!(text, b"three\nfour\n", "a tail counts whole lines");
        let tail0 = collect(
            &p,
            &Query {
                tail: Some(0),
                ..Default::default()
            },
        );
        assert!(tail0.is_empty());
        let errs = collect(
            &p,
            &Query {
                stderr: true,
                ..Default::default()
            },
        );
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].data, b"two\n");
        let window = collect(
            &p,
            &Query {
                since: Some(t(2)),
                until: Some(t(4)),
                ..Default::default()
            },
        );
        let text: Vec<u8> = window.iter().flat_map(|e| e.data.clone()).collect();
        assert_eq!(text, b"two\nthree\n");
    }

    #[test]
    fn follow_sees_each_new_line_once_across_a_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ctr.log");
        let t = "2026-01-01T00:00:00.000000000Z";
        std::fs::write(&p, line(t, "stdout", "F", "a")).unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p2, done2) = (p.clone(), done.clone());
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&p2).unwrap();
            f.write_all(line(t, "stdout", "F", "b").as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            // Rotate as the shim does: rename, then a new file.
            std::fs::rename(&p2, format!("{}.1", p2.display())).unwrap();
            f.write_all(line(t, "stdout", "F", "c").as_bytes()).unwrap();
            let mut g = std::fs::File::create(&p2).unwrap();
            g.write_all(line(t, "stdout", "F", "d").as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(30));
            g.write_all(line(t, "stdout", "F", "e").as_bytes()).unwrap();
            done2.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut out = Vec::new();
        let is_done = move || done.load(std::sync::atomic::Ordering::SeqCst);
        read(
            &p,
            &Query {
                follow: true,
                tail: Some(1),
                ..Default::default()
            },
            &is_done,
            |b| {
                out.extend(b.into_iter().flat_map(|e| e.data));
                true
            },
        )
        .unwrap();
        writer.join().unwrap();
        // "a" may or may not be in the tail depending on when "b" landed; every later line
        // is there exactly once, in order.
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with("c\nd\ne\n"), "{s:?}");
        assert_eq!(s.matches("b\n").count(), 1, "{s:?}");
    }

    #[test]
    fn a_follower_that_falls_two_rotations_behind_loses_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ctr.log");
        let t = "2026-01-01T00:00:00.000000000Z";
        std::fs::write(&p, line(t, "stdout", "F", "a")).unwrap();
        let calls = std::cell::Cell::new(0);
        let p2 = p.clone();
        let rotate = |next: &str| {
            // As the shim does: shift .1 to .2, the live file to .1, start a new one.
            let one = format!("{}.1", p2.display());
            let two = format!("{}.2", p2.display());
            if std::path::Path::new(&one).exists() {
                std::fs::rename(&one, &two).unwrap();
            }
            std::fs::rename(&p2, &one).unwrap();
            std::fs::write(&p2, line(t, "stdout", "F", next)).unwrap();
        };
        let done = || {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                // Between two reads of the follower: more in the live file, two rotations.
                let mut f = std::fs::OpenOptions::new().append(true).open(&p2).unwrap();
                std::io::Write::write_all(&mut f, line(t, "stdout", "F", "b").as_bytes()).unwrap();
                rotate("c");
                rotate("d");
                false
            } else {
                true
            }
        };
        let mut out = Vec::new();
        read(
            &p,
            &Query {
                follow: true,
                ..Default::default()
            },
            &done,
            |b| {
                out.extend(b.into_iter().flat_map(|e| e.data));
                true
            },
        )
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a\nb\nc\nd\n");
    }

    #[test]
    fn lines_of_one_write_travel_as_one_entry() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ctr.log");
        let t = "2026-01-01T00:00:00.000000000Z";
        let u = "2026-01-01T00:00:01.000000000Z";
        std::fs::write(
            &p,
            line(t, "stdout", "F", "1")
                + &line(t, "stdout", "F", "2")
                + &line(t, "stderr", "F", "e")
                + &line(u, "stdout", "P", "3"),
        )
        .unwrap();
        let all = collect(&p, &Query::default());
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(all[0].data, b"1\n2\n");
        assert_eq!(all[1].data, b"e\n");
        assert!(all[2].partial);
    }

    #[test]
    fn times_parse_like_docker() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(
            parse_time("600", now).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(600)
        );
        assert_eq!(
            parse_time("10m", now).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(9_400)
        );
        assert!(parse_time("1970-01-01T00:10:00Z", now).is_ok());
        assert!(parse_time("yesterday", now)
            .unwrap_err()
            .contains("not a time"));
    }
}
