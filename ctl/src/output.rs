//! How results are shown: Docker's table columns, `--format json` (one object per line for
//! lists, an array for inspect), `-q` ids only. Nothing else in minictl prints results.

use std::io::Write;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// A table printed with columns padded to their widest cell, as `docker ps` does.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut w = vec![0; n];
        for r in std::iter::once(&self.header).chain(&self.rows) {
            for (i, c) in r.iter().enumerate().take(n) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in r.iter().enumerate().take(n) {
                if i + 1 == n {
                    line.push_str(c);
                } else {
                    line.push_str(&format!("{c:<width$}   ", width = w[i]));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print_str(&self.render());
    }
}

/// Prints to stdout; a closed stdout (`| head`) ends quietly.
pub fn print_str(s: &str) {
    let mut o = std::io::stdout().lock();
    if o.write_all(s.as_bytes()).and_then(|_| o.flush()).is_err() {
        std::process::exit(0);
    }
}

pub fn print_json_line(v: &serde_json::Value) {
    print_str(&format!("{v}\n"));
}

/// `2 minutes ago`, `About an hour ago`, as Docker says it.
pub fn ago(rfc3339: &str) -> String {
    let Ok(t) = humantime::parse_rfc3339_weak(rfc3339) else {
        return String::new();
    };
    let d = SystemTime::now().duration_since(t).unwrap_or_default();
    format!("{} ago", human_duration(d))
}

pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// `64MiB`, `1.5GiB` (binary units, as docker stats shows memory).
pub fn bytes_binary(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.3}{}", units[i]).replace(".000", "")
    }
}

/// `12.3MB` (decimal units, as docker shows image sizes and I/O).
pub fn bytes_decimal(b: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
            + units[i]
    }
}

/// Cuts an id to 12 characters unless `no_trunc`.
pub fn short_id(id: &str, no_trunc: bool) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    if no_trunc {
        id.to_string()
    } else {
        id.chars().take(12).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_units_read_like_docker() {
        let mut t = Table::new(&["CONTAINER ID", "NAMES"]);
        t.row(vec!["abc".into(), "web".into()]);
        assert_eq!(t.render(), "CONTAINER ID   NAMES\nabc            web\n");
        assert_eq!(bytes_binary(64 << 20), "64MiB");
        assert_eq!(bytes_decimal(1_500_000), "1.5MB");
        assert_eq!(human_duration(Duration::from_secs(150)), "2 minutes");
        assert_eq!(short_id("sha256:0123456789abcdef", false), "0123456789ab");
    }
}
