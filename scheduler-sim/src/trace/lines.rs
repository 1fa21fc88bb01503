//! The line loop shared by the headerless (or optionally headed) comma-separated trace
//! formats: Alibaba 2017/2018 and Google 2011. Files may be gzip-compressed (detected by their
//! magic bytes, not their name).
//!
//! A data line is split on commas and must have exactly the format's number of fields; fields
//! are trimmed. An empty file (no records at all) is an error. Corrupt or truncated gzip data
//! ends the read: it is reported as a malformed line at the line where it broke (an error with
//! [`LoadOptions::strict`]), keeping the records read before it otherwise.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::{LoadOptions, Loaded, Malformed, TraceError};

/// The shape of one format's lines.
pub(crate) struct Layout {
    /// Fields per line.
    pub fields: usize,
    /// A header line some copies carry: skipped when it is the first line (compared with all
    /// whitespace removed). Formats without one read their first line as data.
    pub header: Option<&'static str>,
}

pub(crate) fn open(path: &Path) -> Result<File, TraceError> {
    File::open(path).map_err(|source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads records from `r` (plain or gzip); `path` names it in messages. `parse` gets the
/// trimmed fields of each data line.
pub(crate) fn read_records<T>(
    r: impl Read,
    path: &Path,
    opts: LoadOptions,
    layout: &Layout,
    mut parse: impl FnMut(&[&str]) -> Result<T, String>,
) -> Result<Loaded<T>, TraceError> {
    let io_err = |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut plain = BufReader::new(r);
    let gz = plain.fill_buf().map_err(io_err)?.starts_with(&[0x1f, 0x8b]);
    let mut reader: Box<dyn BufRead> = if gz {
        Box::new(BufReader::new(MultiGzDecoder::new(plain)))
    } else {
        Box::new(plain)
    };
    let mut out = Loaded {
        items: Vec::new(),
        malformed: Vec::new(),
    };
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut records = 0u64;
    let header: Option<String> = layout
        .header
        .map(|h| h.chars().filter(|c| !c.is_whitespace()).collect());
    let report = |m: Malformed, out: &mut Loaded<T>| {
        if opts.strict {
            Err(TraceError::Malformed(m))
        } else {
            out.malformed.push(m);
            Ok(())
        }
    };
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if gz => {
                let m = Malformed {
                    path: path.to_path_buf(),
                    line: line_no + 1,
                    reason: format!("corrupt or truncated gzip data: {e}"),
                };
                report(m, &mut out)?;
                records += 1;
                break;
            }
            Err(e) => return Err(io_err(e)),
        }
        line_no += 1;
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']);
        if line_no == 1 {
            let first = line.trim_start_matches('\u{feff}');
            let squeezed: String = first.chars().filter(|c| !c.is_whitespace()).collect();
            if header.as_deref() == Some(squeezed.as_str()) {
                continue;
            }
        }
        if line.trim().is_empty() {
            continue;
        }
        records += 1;
        let result = if line.contains('\u{fffd}') {
            Err("not valid UTF-8".to_string())
        } else if line.contains('"') {
            Err("quoted fields are not supported".to_string())
        } else {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            if fields.len() != layout.fields {
                Err(format!(
                    "expected {} fields, found {}",
                    layout.fields,
                    fields.len()
                ))
            } else {
                parse(&fields)
            }
        };
        match result {
            Ok(item) => out.items.push(item),
            Err(reason) => report(
                Malformed {
                    path: path.to_path_buf(),
                    line: line_no,
                    reason,
                },
                &mut out,
            )?,
        }
    }
    if records == 0 {
        return Err(io_err(io::Error::new(
            io::ErrorKind::InvalidData,
            "no records: the file is empty",
        )));
    }
    Ok(out)
}

/// A non-negative integer field.
pub(crate) fn int<T: std::str::FromStr>(field: &str, name: &str) -> Result<T, String> {
    field
        .parse()
        .map_err(|_| format!("{name}: {field:?} is not a non-negative integer"))
}

/// A signed integer field.
pub(crate) fn signed(field: &str, name: &str) -> Result<i64, String> {
    field
        .parse()
        .map_err(|_| format!("{name}: {field:?} is not an integer"))
}

/// A finite number in `0..=max`.
pub(crate) fn fraction(field: &str, name: &str, max: f64) -> Result<f64, String> {
    match field.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=max).contains(&v) => Ok(v),
        _ => Err(format!("{name}: {field:?} is not a number in 0..={max}")),
    }
}

/// `None` for an empty field, else `f(field)`.
pub(crate) fn opt<T>(
    field: &str,
    f: impl FnOnce(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    if field.is_empty() {
        Ok(None)
    } else {
        f(field).map(Some)
    }
}

/// `fraction * unit`, rounded to the nearest integer.
pub(crate) fn scale(fraction: f64, unit: u64) -> u64 {
    // Both factors are finite and non-negative and the product is bounded by the caller's
    // range checks, so the conversion cannot wrap; `as` saturates in any case.
    (fraction * unit as f64).round() as u64
}

/// Test helpers shared by the loaders' tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::Write;
    use std::path::{Path, PathBuf};

    /// `shared/traces/{sub}` beside the repository (as CI lays it out) or at the workplace's
    /// absolute path; `None` (printing why) when neither exists.
    pub fn shared_traces(sub: &str) -> Option<PathBuf> {
        let beside = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/traces")
            .join(sub);
        let found = [beside, Path::new("/work/shared/traces").join(sub)]
            .into_iter()
            .find(|p| p.is_dir());
        if found.is_none() {
            println!("skipping: shared/traces/{sub} not found beside the repository");
        }
        found
    }

    pub fn gzip(text: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::gzip;
    use super::*;

    const TWO: Layout = Layout {
        fields: 2,
        header: Some("a, b"),
    };

    fn pairs(r: &[u8], strict: bool) -> Result<Loaded<(u32, u32)>, TraceError> {
        read_records(r, Path::new("f.csv"), LoadOptions { strict }, &TWO, |f| {
            Ok((int(f[0], "a")?, int(f[1], "b")?))
        })
    }

    #[test]
    fn optional_header_is_skipped_only_on_the_first_line() {
        let got = pairs(b"a,b\n1, 2\r\n\na,b\n", false).unwrap();
        assert_eq!(got.items, [(1, 2)]);
        assert_eq!(
            got.malformed[0].to_string(),
            "f.csv:4: a: \"a\" is not a non-negative integer"
        );
        assert_eq!(pairs(b"3,4\n", false).unwrap().items, [(3, 4)]);
    }

    #[test]
    fn empty_files_are_errors() {
        for text in [&b""[..], b"a,b\n", b"\n\n"] {
            let e = pairs(text, false).unwrap_err();
            assert_eq!(
                e.to_string(),
                "failed to read f.csv: no records: the file is empty"
            );
        }
        let e = pairs(&gzip(""), false).unwrap_err();
        assert!(matches!(e, TraceError::Io { .. }), "{e}");
    }

    #[test]
    fn gzip_is_read_and_corruption_is_reported_at_its_line() {
        let text: String = (0..2000).map(|i| format!("{i},{}\n", i * 7)).collect();
        let gz = gzip(&text);
        let got = pairs(&gz, true).unwrap();
        assert_eq!(got.items.len(), 2000);
        assert_eq!(got.items[1999], (1999, 13993));

        // Truncated: the lines before the break are kept, the break is one malformed record.
        let cut = &gz[..gz.len() / 2];
        let got = pairs(cut, false).unwrap();
        assert_eq!(got.malformed.len(), 1);
        let m = &got.malformed[0];
        assert_eq!(m.line, got.items.len() as u64 + 1);
        assert!(
            m.to_string().starts_with(&format!(
                "f.csv:{}: corrupt or truncated gzip data: ",
                m.line
            )),
            "{m}"
        );
        let e = pairs(cut, true).unwrap_err();
        assert!(matches!(e, TraceError::Malformed(_)), "{e}");

        // A flipped byte in the trailer's CRC.
        let mut bad = gz.clone();
        let n = bad.len();
        bad[n - 6] ^= 0xff;
        let got = pairs(&bad, false).unwrap();
        assert_eq!(got.malformed.len(), 1);
        assert!(
            got.malformed[0].reason.contains("gzip"),
            "{:?}",
            got.malformed
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(fraction("0.5", "x", 1.0), Ok(0.5));
        for bad in ["NaN", "inf", "-0.1", "1.5", "", "1e400"] {
            assert!(fraction(bad, "x", 1.0).is_err(), "{bad}");
        }
        assert_eq!(signed("-12", "t"), Ok(-12));
        assert_eq!(opt("", |s| int::<u8>(s, "x")), Ok(None));
        assert!(opt("300", |s| int::<u8>(s, "x")).is_err());
        assert_eq!(scale(0.5, 1001), 501);
    }
}
