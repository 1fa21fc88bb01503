//! The container log in the CRI format, with size-based rotation.
//!
//! Each entry is `<RFC3339Nano> <stream> <tag> <bytes>\n` (kubelet's
//! `pkg/kubelet/kuberuntime/logs`): tag `F` ends a line (the newline itself is not written),
//! tag `P` is a piece of a line whose end is still to come. Bytes are written as they arrive —
//! a chunk that does not end in a newline becomes a `P` entry at once — so a reader that
//! appends a newline after each `F` gets the output back byte for byte, partial lines
//! included, and a follower sees a prompt without waiting for its newline.
//!
//! When the file would grow past `max_size`, it is renamed to `<path>.1` (older files shift up
//! to `<path>.<max_files>`, the oldest dropped) and a new file is started, as the kubelet's
//! container log manager does.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Longest single entry; a longer line is split into `P` entries (kubelet uses 16 KiB).
pub const MAX_ENTRY: usize = 16 * 1024;

pub struct CriLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
    /// Writes that failed (a full disk): counted, the container keeps running.
    pub write_errors: u64,
}

impl CriLog {
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> std::io::Result<CriLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(CriLog {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_files,
            write_errors: 0,
        })
    }

    /// (path, max_size, max_files), to reopen the same log elsewhere.
    pub fn config(&self) -> (&Path, u64, u32) {
        (&self.path, self.max_size, self.max_files)
    }

    /// Writes one chunk read from `stream`.
    pub fn write(&mut self, stream: Stream, data: &[u8]) {
        let ts = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
        let mut out = Vec::with_capacity(data.len() + 64);
        let mut rest = data;
        while !rest.is_empty() {
            let (piece, tag, consumed) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) if i <= MAX_ENTRY => (&rest[..i], "F", i + 1),
                _ if rest.len() > MAX_ENTRY => (&rest[..MAX_ENTRY], "P", MAX_ENTRY),
                _ => (rest, "P", rest.len()),
            };
            out.extend_from_slice(ts.as_bytes());
            out.push(b' ');
            out.extend_from_slice(stream.as_str().as_bytes());
            out.push(b' ');
            out.extend_from_slice(tag.as_bytes());
            out.push(b' ');
            out.extend_from_slice(piece);
            out.push(b'\n');
            rest = &rest[consumed..];
        }
        self.append(&out);
    }

    fn append(&mut self, out: &[u8]) {
        if self.max_size > 0 && self.size > 0 && self.size + out.len() as u64 > self.max_size {
            if let Err(e) = self.rotate() {
                self.write_errors += 1;
                eprintln!("minid shim: rotating {}: {e}", self.path.display());
            }
        }
        match self.file.write_all(out) {
            Ok(()) => self.size += out.len() as u64,
            Err(e) => {
                // A full disk must not kill the container: count and keep going.
                self.write_errors += 1;
                if self.write_errors == 1 {
                    eprintln!("minid shim: writing {}: {e}", self.path.display());
                }
            }
        }
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let name = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.max_files == 0 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(name(self.max_files));
        for n in (1..self.max_files).rev() {
            let _ = std::fs::rename(name(n), name(n + 1));
        }
        std::fs::rename(&self.path, name(1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Parses CRI log text back into (stream, bytes) with newlines restored; for tests and for
/// readers of the log (`minid serve`'s Logs).
pub fn parse(text: &[u8]) -> Vec<(Stream, Vec<u8>)> {
    let mut out = Vec::new();
    for line in text.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let mut parts = line.splitn(4, |b| *b == b' ');
        let (Some(_ts), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let body = parts.next().unwrap_or_default();
        let stream = if stream == b"stderr" {
            Stream::Stderr
        } else {
            Stream::Stdout
        };
        let mut bytes = body.to_vec();
        if tag == b"F" {
            bytes.push(b'\n');
        }
        out.push((stream, bytes));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(entries: &[(Stream, Vec<u8>)], s: Stream) -> Vec<u8> {
        entries
            .iter()
            .filter(|(st, _)| *st == s)
            .flat_map(|(_, b)| b.clone())
            .collect()
    }

    #[test]
    fn partial_and_full_lines_round_trip_byte_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.log");
        let mut log = CriLog::open(&p, 0, 0).expect("open");
        log.write(Stream::Stdout, b"hello\nwor");
        log.write(Stream::Stdout, b"ld\n\xff\x00binary");
        log.write(Stream::Stderr, b"oops\n");
        let text = std::fs::read(&p).expect("read");
        let lines: Vec<&[u8]> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        assert!(
            lines[0].ends_with(b" stdout F hello"),
            "{:?}",
            String::from_utf8_lossy(lines[0])
        );
        assert!(lines[1].ends_with(b" stdout P wor"));
        let e = parse(&text);
        assert_eq!(
            joined(&e, Stream::Stdout),
            b"hello\nworld\n\xff\x00binary".to_vec()
        );
        assert_eq!(joined(&e, Stream::Stderr), b"oops\n".to_vec());
    }

    #[test]
    fn long_lines_are_split_and_files_rotate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.log");
        let mut log = CriLog::open(&p, 64 * 1024, 2).expect("open");
        let mut big = vec![b'x'; MAX_ENTRY * 2 + 10];
        big.push(b'\n');
        for _ in 0..5 {
            log.write(Stream::Stdout, &big);
        }
        assert!(p.exists());
        assert!(dir.path().join("c.log.1").exists());
        assert!(dir.path().join("c.log.2").exists());
        assert!(!dir.path().join("c.log.3").exists());
        let cur = std::fs::read(&p).expect("read");
        assert!(cur.len() as u64 <= 64 * 1024);
        let e = parse(&cur);
        assert!(e.iter().all(|(_, b)| b.len() <= MAX_ENTRY + 1));
    }
}
