//! `minid image ...`: the image store from the command line.
//!
//! `import`, `ls`, `rm`, `tag` manage the store under `--state-dir` (the library's
//! [`ImageStore`]); `bundle` / `unbundle` make an OCI bundle from an image for
//! `minid runtime` (or runc, crun) and tear it down again. Output follows `docker images`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};

use crate::engine::image::store::display_name;
use crate::engine::image::{
    create_bundle, parse_rfc3339, remove_bundle, Image, ImageStore, ImportFormat,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Auto,
    Rootfs,
    DockerArchive,
    OciArchive,
}

impl From<FormatArg> for ImportFormat {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Auto => ImportFormat::Auto,
            FormatArg::Rootfs => ImportFormat::RootfsTar,
            FormatArg::DockerArchive => ImportFormat::DockerArchive,
            FormatArg::OciArchive => ImportFormat::OciArchive,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import a rootfs tar, a docker-archive or an OCI archive/layout (gzip/zstd accepted)
    Import {
        /// The tar file (or OCI layout directory)
        file: PathBuf,
        /// Name the imported image (required to name a rootfs tar, else imported:<id>)
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_enum, default_value = "auto")]
        format: FormatArg,
    },
    /// List images
    #[command(alias = "list")]
    Ls {
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
        /// Only show image ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove (untag) images; unused layers are deleted
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        refs: Vec<String>,
    },
    /// Give an image another name
    Tag { src: String, dst: String },
    /// Make an OCI bundle (rootfs mounted + config.json) from an image
    Bundle {
        image: String,
        dir: PathBuf,
        /// Snapshot key (default: derived from the bundle directory)
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        overrides: crate::cli::overrides::SpecOverrides,
        /// Command to run instead of the image's Cmd
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Unmount and remove a bundle made by `bundle`
    Unbundle { dir: PathBuf },
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// `1.2MB`, as docker prints sizes (SI units).
pub fn human_size(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        return format!("{n}B");
    }
    // Four significant digits, like Go's %.4g that docker uses.
    let int_digits = (v.log10().floor() as i32 + 1).max(1);
    let decimals = (4 - int_digits).max(0) as usize;
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    s + units[i]
}

/// `3 hours ago`.
pub fn human_age(created: Option<&str>, now: SystemTime) -> String {
    let Some(t) = created.and_then(parse_rfc3339) else {
        return "N/A".into();
    };
    let s = now.duration_since(t).map(|d| d.as_secs()).unwrap_or(0);
    let (n, unit) = match s {
        0..=59 => return "Less than a minute ago".into(),
        60..=3599 => (s / 60, "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        86_400..=604_799 => (s / 86_400, "day"),
        604_800..=2_591_999 => (s / 604_800, "week"),
        2_592_000..=31_535_999 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    if n == 1 {
        format!("{} {unit} ago", if unit == "hour" { "An" } else { "1" })
    } else {
        format!("{n} {unit}s ago")
    }
}

fn table(out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let cols = rows.first().map(Vec::len).unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == cols {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[c]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn image_json(i: &Image) -> serde_json::Value {
    let (repo, tag) = display_name(&i.name);
    serde_json::json!({
        "name": i.name,
        "repository": repo,
        "tag": tag,
        "id": i.id,
        "manifest_digest": i.manifest_digest,
        "created": i.created,
        "size": i.size,
        "layers": i.layers,
    })
}

/// The default snapshot key of a bundle: stable per directory, unique across directories.
fn bundle_key(dir: &Path) -> anyhow::Result<String> {
    let abs =
        std::path::absolute(dir).with_context(|| format!("failed to resolve {}", dir.display()))?;
    let d = crate::engine::image::content::sha256_digest(abs.as_os_str().as_encoded_bytes());
    Ok(format!(
        "bundle-{}",
        &d["sha256:".len().."sha256:".len() + 16]
    ))
}

/// Runs one `minid image` command against the store in `state_dir`.
pub fn run(cmd: ImageCommand, state_dir: &Path) -> anyhow::Result<()> {
    let store = ImageStore::open(state_dir)
        .with_context(|| format!("failed to open the image store in {}", state_dir.display()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cmd {
        ImageCommand::Import { file, name, format } => {
            let images = store.import(&file, format.into(), name.as_deref())?;
            for i in images {
                let (repo, tag) = display_name(&i.name);
                writeln!(out, "imported {repo}:{tag} {}", i.id)?;
            }
        }
        ImageCommand::Ls { format, quiet } => {
            let images = store.list()?;
            if quiet {
                let mut seen = std::collections::HashSet::new();
                for i in &images {
                    if seen.insert(i.id.clone()) {
                        writeln!(out, "{}", short_id(&i.id))?;
                    }
                }
            } else if format == OutputFormat::Json {
                let v: Vec<_> = images.iter().map(image_json).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                let now = SystemTime::now();
                let mut rows = vec![["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
                    .map(String::from)
                    .to_vec()];
                for i in &images {
                    let (repo, tag) = display_name(&i.name);
                    rows.push(vec![
                        repo,
                        tag,
                        short_id(&i.id).to_string(),
                        human_age(i.created.as_deref(), now),
                        human_size(i.size),
                    ]);
                }
                table(&mut out, &rows)?;
            }
        }
        ImageCommand::Rm { refs } => {
            let mut failed = 0;
            for r in &refs {
                match store.remove(r) {
                    Ok(()) => writeln!(out, "Untagged: {r}")?,
                    Err(e) => {
                        eprintln!("Error: {e}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                anyhow::bail!("failed to remove {failed} of {} images", refs.len());
            }
        }
        ImageCommand::Tag { src, dst } => store.tag(&src, &dst)?,
        ImageCommand::Bundle {
            image,
            dir,
            key,
            overrides,
            cmd,
        } => {
            let img = store.get(&image)?;
            let key = match key {
                Some(k) => k,
                None => bundle_key(&dir)?,
            };
            let args = if cmd.is_empty() { None } else { Some(cmd) };
            let b = create_bundle(&store, &img, &dir, &key, args)?;
            if !overrides.is_empty() {
                let mut spec = b.spec.clone();
                let applied = overrides.apply(&mut spec).and_then(|()| {
                    crate::engine::fsutil::write_json_atomic(&b.dir.join("config.json"), &spec)
                        .map_err(anyhow::Error::from)
                });
                if let Err(e) = applied {
                    // Leave nothing half-made behind: the bundle is unusable without its limits.
                    let _ = remove_bundle(&store, &b.dir);
                    return Err(e);
                }
            }
            writeln!(out, "{}", b.dir.display())?;
        }
        ImageCommand::Unbundle { dir } => remove_bundle(&store, &dir)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: ImageCommand,
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn bundle_takes_a_trailing_command() {
        let c = Cli::try_parse_from(["x", "bundle", "busybox", "/tmp/b", "sh", "-c", "echo hi"])
            .expect("parse");
        match c.cmd {
            ImageCommand::Bundle { image, cmd, .. } => {
                assert_eq!(image, "busybox");
                assert_eq!(cmd, vec!["sh", "-c", "echo hi"]);
            }
            other => panic!("parsed as {other:?}"),
        }
        let c = Cli::try_parse_from(["x", "import", "f.tar", "--format", "docker-archive"])
            .expect("parse");
        assert!(matches!(
            c.cmd,
            ImageCommand::Import {
                format: FormatArg::DockerArchive,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["x", "rm"]).is_err());
    }

    #[test]
    fn sizes_and_ages_read_like_docker() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_234_567), "1.235MB");
        assert_eq!(human_size(123_456_789), "123.5MB");
        assert_eq!(human_size(4_260_000), "4.26MB");
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_714_564_800 + 7200);
        assert_eq!(human_age(Some("2024-05-01T12:00:00Z"), now), "2 hours ago");
        assert_eq!(human_age(None, now), "N/A");
    }
}
