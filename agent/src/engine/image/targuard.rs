//! A guard on a layer's tar stream: bounds what the tar reader would hold in memory.
//!
//! The `tar` crate reads a PAX extended header (`x`, `g`) or a GNU long name/link (`L`, `K`)
//! whole into memory, at whatever size its header claims; a few hundred bytes of gzip can
//! claim gigabytes. This reader sits between the decompressor and the tar reader, follows the
//! 512-byte block structure of the archive as it streams past (header, data rounded up to a
//! block, next header), and fails the read when such a record is larger than
//! [`MAX_EXTENSION`] or the layer has more than [`MAX_ENTRIES`] entries. It follows a PAX
//! `size=` override for the next entry so it stays in step with the reader behind it.
//! Regular file data is not limited here: it goes to disk, where a full disk fails the
//! import cleanly (and it is all undone).

use std::io::{self, Read};

/// The largest PAX or GNU long-name record accepted (real ones are a few hundred bytes).
pub const MAX_EXTENSION: u64 = 1 << 20;
/// The most entries one layer may have.
pub const MAX_ENTRIES: u64 = 10_000_000;

pub struct TarGuard<R> {
    inner: R,
    header: [u8; 512],
    filled: usize,
    /// Data bytes (with padding) of the current entry still to pass.
    skip: u64,
    /// Collecting a PAX record's data (bounded by MAX_EXTENSION), to read its `size=`.
    pax: Option<Vec<u8>>,
    pax_left: u64,
    /// A `size=` from the last PAX header, for the next entry.
    size_override: Option<u64>,
    entries: u64,
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R) -> Self {
        TarGuard {
            inner,
            header: [0; 512],
            filled: 0,
            skip: 0,
            pax: None,
            pax_left: 0,
            size_override: None,
            entries: 0,
        }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    fn refuse(msg: String) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    fn on_header(&mut self) -> io::Result<()> {
        if self.header.iter().all(|b| *b == 0) {
            return Ok(()); // end-of-archive blocks
        }
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(Self::refuse(format!(
                "layer has more than {MAX_ENTRIES} entries"
            )));
        }
        let typ = self.header[156];
        let mut size = parse_size(&self.header[124..136])
            .ok_or_else(|| Self::refuse("tar header with an unreadable size".into()))?;
        let extension = matches!(typ, b'x' | b'g' | b'L' | b'K');
        if !extension {
            if let Some(s) = self.size_override.take() {
                size = s;
            }
        }
        if extension && size > MAX_EXTENSION {
            return Err(Self::refuse(format!(
                "tar extension record ({}) of {size} bytes exceeds {MAX_EXTENSION} bytes",
                typ as char
            )));
        }
        if typ == b'x' {
            self.pax = Some(Vec::with_capacity(size as usize));
            self.pax_left = size;
        }
        self.skip = size.div_ceil(512) * 512;
        Ok(())
    }

    /// Accounts for `data` of the archive passing through.
    fn track(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.skip > 0 {
                let k = (self.skip.min(data.len() as u64)) as usize;
                if let Some(p) = &mut self.pax {
                    let take = (self.pax_left.min(k as u64)) as usize;
                    p.extend_from_slice(&data[..take]);
                    self.pax_left -= take as u64;
                }
                self.skip -= k as u64;
                data = &data[k..];
                if self.skip == 0 {
                    if let Some(p) = self.pax.take() {
                        self.size_override = pax_size(&p);
                    }
                }
                continue;
            }
            let k = (512 - self.filled).min(data.len());
            self.header[self.filled..self.filled + k].copy_from_slice(&data[..k]);
            self.filled += k;
            data = &data[k..];
            if self.filled == 512 {
                self.filled = 0;
                self.on_header()?;
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.track(&buf[..n])?;
        Ok(n)
    }
}

/// A ustar size field: octal digits (NUL/space padded), or GNU base-256 when the high bit of
/// the first byte is set.
fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(|b| *b != 0 && *b != b' ')
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&s).ok()?, 8).ok()
}

/// The `size` of PAX records (`"<len> size=<n>\n"`), if present.
fn pax_size(data: &[u8]) -> Option<u64> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|rec| {
        let (_, kv) = rec.split_once(' ')?;
        kv.strip_prefix("size=")?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, typ: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).expect("path");
        h.set_size(size);
        h.set_entry_type(tar::EntryType::new(typ));
        h.set_mode(0o644);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn pad(mut v: Vec<u8>) -> Vec<u8> {
        let n = v.len().div_ceil(512) * 512;
        v.resize(n, 0);
        v
    }

    fn read_all(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        // Small reads, so headers straddle read boundaries.
        let mut g = TarGuard::new(io::Cursor::new(data.to_vec()));
        let mut buf = [0u8; 97];
        loop {
            let n = g.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn a_normal_archive_passes_through_unchanged() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "a/very/long/".repeat(20) + "name", &b"abc"[..])
            .expect("append");
        let data = b.into_inner().expect("tar");
        assert_eq!(read_all(&data).expect("passes"), data);
        // And the tar reader behind it still sees the entry.
        let mut a = tar::Archive::new(TarGuard::new(io::Cursor::new(data)));
        assert_eq!(a.entries().expect("entries").count(), 1);
    }

    #[test]
    fn a_huge_extension_record_is_refused_before_it_is_read() {
        for typ in [b'x', b'L', b'K', b'g'] {
            let mut data = header("././@LongLink", typ, 8 << 30);
            data.extend(vec![0u8; 4096]);
            let err = read_all(&data).expect_err("refused");
            assert!(err.to_string().contains("exceeds"), "{err}");
        }
    }

    #[test]
    fn a_pax_size_override_keeps_the_guard_in_step() {
        // PAX says the next file has 1024 bytes although its ustar header says 0; a second
        // huge long-name record after it must still be seen as a header.
        let rec = b"13 size=1024\n".to_vec();
        let mut data = header("pax", b'x', rec.len() as u64);
        data.extend(pad(rec));
        data.extend(header("file", b'0', 0));
        data.extend(vec![b'z'; 1024]);
        data.extend(header("././@LongLink", b'L', 8 << 30));
        let err = read_all(&data).expect_err("refused");
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    #[test]
    fn sizes_parse_in_octal_and_base_256() {
        assert_eq!(parse_size(b"00000001750\0"), Some(1000));
        assert_eq!(parse_size(b"           \0"), Some(0));
        let mut b = [0u8; 12];
        b[0] = 0x80;
        b[11] = 2;
        b[10] = 1;
        assert_eq!(parse_size(&b), Some(258));
        assert_eq!(parse_size(b"0000000999x\0"), None);
    }
}
