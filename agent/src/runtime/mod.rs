//! `minid runtime`: the OCI runtime command line (runtime-tools `docs/command-line-interface.md`).
//!
//! The verbs and flags follow runc's, so tools that drive a runc-compatible runtime can drive
//! ours: podman's `--runtime` calls `create --bundle B --pid-file F ID`, `start ID`,
//! `delete --force ID` with runc's global `--root`, `--log` and `--log-format`; containerd's runc
//! shim does the same plus `state`, `kill` and `ps`. Invoked through a link named
//! `minid-runtime`, the binary behaves as `minid runtime`.
//!
//! Exit status: 0 on success, 1 on a runtime error (as runc), and for `run` the container's
//! status (128+N when a signal N killed it); an executable that cannot be found or run gives
//! 127 or 126, as a shell and Docker do.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand, ValueEnum};

use crate::engine::container::create::{self, CreateOptions, LogConfig, Monitor, StdioMode};
use crate::engine::container::run::{self as run_verb, RunOptions};
use crate::engine::container::{delete, kill, start, state, Runtime, DEFAULT_ROOT};
use crate::engine::error::EngineError;
use crate::engine::{fsutil, spec};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The runtime's global flags (runc's).
#[derive(Debug, Parser)]
#[command(
    name = "minid runtime",
    about = "OCI runtime command line of minid (runc-compatible verbs and flags)"
)]
pub struct RuntimeCli {
    /// Directory for container state (runc: --root)
    #[arg(long, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Also write errors to this file (runc: --log)
    #[arg(long)]
    pub log: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Accepted for runc compatibility; minid logs the same either way
    #[arg(long)]
    pub debug: bool,
    /// Refused: minid manages cgroupfs paths, not systemd units
    #[arg(long)]
    pub systemd_cgroup: bool,
    /// runc's rootless mode: "auto" and "false" are accepted; minid runs as root
    #[arg(long)]
    pub rootless: Option<String>,
    /// Who parents the container after `create`: a minid shim (minid's model: logs and exit
    /// status kept by the shim), or the caller's subreaper, as with runc (what podman and
    /// containerd's runc shim expect). Default: shim; `caller` when invoked as minid-runtime.
    #[arg(long, value_enum)]
    pub monitor: Option<Monitor>,
    /// Mount point of the cgroup hierarchy to use (v1 or v2 is detected there)
    #[arg(long, default_value = crate::engine::cgroups::DEFAULT_ROOT)]
    pub cgroup_root: PathBuf,
    /// Parent cgroup for containers without an absolute linux.cgroupsPath
    /// (default: minid/ under the caller's own cgroup)
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    #[command(subcommand)]
    pub command: Verb,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Create a container from a bundle; its process waits for `start`
    Create {
        id: String,
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Unix socket that receives the pty master (when process.terminal is true)
        #[arg(long)]
        console_socket: Option<PathBuf>,
        /// Write the container's pid to this file
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Pass descriptors 3..3+N to the container
        #[arg(long, default_value_t = 0)]
        preserve_fds: i32,
        /// Refused: minid always uses pivot_root
        #[arg(long)]
        no_pivot: bool,
        /// Accepted: minid never creates a session keyring
        #[arg(long)]
        no_new_keyring: bool,
        /// minid extension: write the container's output to this CRI log (the shim holds
        /// the pipes) instead of passing our stdio through
        #[arg(long)]
        container_log: Option<PathBuf>,
        /// Rotate the CRI log past this many bytes (0: never)
        #[arg(long, default_value_t = 0)]
        container_log_max_size: u64,
        /// Rotated CRI log files to keep
        #[arg(long, default_value_t = 1)]
        container_log_max_files: u32,
    },
    /// Start a created container
    Start { id: String },
    /// Print a container's state as JSON
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init, or with --all to all its processes
    Kill {
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a stopped container (--force: kill it first)
    Delete {
        id: String,
        #[arg(short, long)]
        force: bool,
    },
    /// Create, start and wait for a container; exit with its status
    Run {
        id: String,
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Do not wait: leave the container running under its shim
        #[arg(short, long)]
        detach: bool,
        /// Keep the stopped container instead of deleting it
        #[arg(long)]
        keep: bool,
        #[arg(long, default_value_t = 0)]
        preserve_fds: i32,
        #[arg(long)]
        no_pivot: bool,
        #[arg(long)]
        no_new_keyring: bool,
    },
    /// Write a default config.json into the bundle directory
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        rootless: bool,
    },
    /// List containers
    List {
        #[arg(short, long)]
        quiet: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// List the processes of a container
    Ps {
        id: String,
        #[arg(short, long, value_enum, default_value = "table")]
        format: OutputFormat,
    },
    /// Print the container's resource usage from its cgroup as JSON lines (runc's `events`):
    /// once with --stats, else every --interval until the container stops
    Events {
        id: String,
        #[arg(long)]
        stats: bool,
        /// Seconds between samples
        #[arg(long, default_value_t = 5.0)]
        interval: f64,
    },
    /// Freeze every process of a container
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
}

/// Runs the CLI as `minid runtime`; returns the process exit code (`as_minid_runtime`: invoked through the `minid-runtime`
/// link, where the caller is a runc-driving tool and the default monitor is the caller).
pub fn main(cli: RuntimeCli) -> i32 {
    main_as(cli, false)
}

pub fn main_as(mut cli: RuntimeCli, as_minid_runtime: bool) -> i32 {
    if cli.monitor.is_none() {
        cli.monitor = Some(if as_minid_runtime {
            Monitor::Caller
        } else {
            Monitor::Shim
        });
    }
    let log = cli.log.clone();
    let fmt = cli.log_format;
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let code = match &e {
                EngineError::Exec { code, .. } => *code,
                _ => 1,
            };
            report_error(&e.to_string(), log.as_deref(), fmt);
            code
        }
    }
}

fn report_error(msg: &str, log: Option<&Path>, fmt: LogFormat) {
    eprintln!("minid runtime: {msg}");
    let Some(path) = log else {
        return;
    };
    let line = match fmt {
        LogFormat::Json => serde_json::json!({
            "level": "error",
            "msg": msg,
            "time": crate::engine::container::now_rfc3339(),
        })
        .to_string(),
        LogFormat::Text => format!(
            "time=\"{}\" level=error msg={:?}",
            crate::engine::container::now_rfc3339(),
            msg
        ),
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

fn dispatch(cli: RuntimeCli) -> Result<i32, EngineError> {
    if cli.systemd_cgroup {
        return Err(EngineError::Unsupported(
            "--systemd-cgroup (minid manages cgroupfs paths itself)".into(),
        ));
    }
    if let Some(r) = cli.rootless.as_deref() {
        if !matches!(r, "auto" | "false") {
            return Err(EngineError::Unsupported(format!(
                "--rootless {r} (minid runs as root)"
            )));
        }
    }
    let monitor = cli.monitor.unwrap_or(Monitor::Shim);
    let rt = Runtime {
        cgroup_parent: cli.cgroup_parent.clone(),
        cgroup_root: cli.cgroup_root.clone(),
        ..Runtime::new(&cli.root)
    };
    match cli.command {
        Verb::Create {
            id,
            bundle,
            console_socket,
            pid_file,
            preserve_fds,
            no_pivot,
            no_new_keyring: _,
            container_log,
            container_log_max_size,
            container_log_max_files,
        } => {
            refuse_no_pivot(no_pivot)?;
            let stdio = match container_log {
                Some(path) => StdioMode::Log(LogConfig {
                    path,
                    max_size: container_log_max_size,
                    max_files: container_log_max_files,
                    open_stdin: false,
                }),
                None => StdioMode::Inherit,
            };
            create::create(
                &rt,
                &id,
                &CreateOptions {
                    monitor,
                    bundle,
                    console_socket,
                    pid_file,
                    preserve_fds,
                    stdio,
                    standby: None,
                    spec: None,
                },
            )?;
            Ok(0)
        }
        Verb::Start { id } => {
            for w in start::start(&rt, &id)? {
                eprintln!("minid runtime: warning: {w}");
            }
            Ok(0)
        }
        Verb::State { id } => {
            let c = rt.load(&id)?;
            let mut v = serde_json::to_value(c.oci_state())
                .map_err(|e| EngineError::Other(format!("encode state: {e}")))?;
            if let Some(rec) = &c.record {
                v["rootfs"] = serde_json::json!(rec.rootfs);
                v["created"] = serde_json::json!(rec.created);
                v["owner"] = serde_json::json!("");
            }
            v["status"] = serde_json::json!(c.status().as_str());
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            Ok(0)
        }
        Verb::Kill { id, signal, all } => {
            let sig = kill::parse_signal(&signal)?;
            kill::kill(&rt, &id, sig, all)?;
            Ok(0)
        }
        Verb::Delete { id, force } => {
            match delete::delete(&rt, &id, force) {
                Ok(warnings) => {
                    for w in warnings {
                        eprintln!("minid runtime: warning: {w}");
                    }
                }
                // runc: deleting a container that does not exist with --force succeeds.
                Err(EngineError::ContainerNotFound(_)) if force => {}
                Err(e) => return Err(e),
            }
            Ok(0)
        }
        Verb::Run {
            id,
            bundle,
            console_socket,
            pid_file,
            detach,
            keep,
            preserve_fds,
            no_pivot,
            no_new_keyring: _,
        } => {
            refuse_no_pivot(no_pivot)?;
            if detach {
                create::create(
                    &rt,
                    &id,
                    &CreateOptions {
                        monitor,
                        bundle,
                        console_socket,
                        pid_file,
                        preserve_fds,
                        stdio: StdioMode::Inherit,
                        standby: None,
                        spec: None,
                    },
                )?;
                for w in start::start(&rt, &id)? {
                    eprintln!("minid runtime: warning: {w}");
                }
                return Ok(0);
            }
            let exit = run_verb::run(
                &rt,
                &id,
                &RunOptions {
                    bundle,
                    pid_file,
                    preserve_fds,
                    console_socket,
                    keep,
                },
            )?;
            Ok(exit.status)
        }
        Verb::Spec { bundle, rootless } => {
            if rootless {
                return Err(EngineError::Unsupported(
                    "spec --rootless (minid runs as root)".into(),
                ));
            }
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(EngineError::ContainerExists(format!(
                    "{} (remove it first)",
                    path.display()
                )));
            }
            fsutil::write_json_atomic(&path, &spec::default_spec())?;
            Ok(0)
        }
        Verb::List { quiet, format } => {
            let mut rows = Vec::new();
            for c in rt.list()? {
                match c {
                    Ok(c) => rows.push(c),
                    Err(e) => eprintln!("minid runtime: warning: {e}"),
                }
            }
            if quiet {
                for c in &rows {
                    println!("{}", c.id);
                }
            } else if format == OutputFormat::Json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|c| {
                        let rec = c.record.as_ref();
                        serde_json::json!({
                            "id": c.id,
                            "pid": rec.map(|r| r.pid).unwrap_or(0),
                            "status": c.status().as_str(),
                            "bundle": rec.map(|r| r.bundle.clone()),
                            "rootfs": rec.map(|r| r.rootfs.clone()),
                            "created": rec.map(|r| r.created.clone()),
                            "annotations": rec.map(|r| r.annotations.clone()),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                println!(
                    "{:<24} {:<8} {:<8} {:<40} CREATED",
                    "ID", "PID", "STATUS", "BUNDLE"
                );
                for c in &rows {
                    let (pid, bundle, created) = c
                        .record
                        .as_ref()
                        .map(|r| (r.pid, r.bundle.display().to_string(), r.created.clone()))
                        .unwrap_or_default();
                    let status = c.status();
                    let pid = if status == crate::engine::container::Status::Stopped {
                        0
                    } else {
                        pid
                    };
                    println!(
                        "{:<24} {:<8} {:<8} {:<40} {}",
                        c.id, pid, status, bundle, created
                    );
                }
            }
            Ok(0)
        }
        Verb::Ps { id, format } => {
            let c = rt.load(&id)?;
            let pids = c.cgroup()?.pids()?;
            if format == OutputFormat::Json {
                println!("{}", serde_json::json!(pids));
            } else {
                println!("PID");
                for p in pids {
                    println!("{p}");
                }
            }
            Ok(0)
        }
        Verb::Events {
            id,
            stats,
            interval,
        } => {
            if !(interval.is_finite() && interval > 0.0) {
                return Err(EngineError::Other(format!(
                    "--interval {interval} must be positive"
                )));
            }
            loop {
                let c = rt.load(&id)?;
                if c.status() == crate::engine::container::Status::Stopped {
                    return Ok(0);
                }
                let data = c.cgroup()?.stats()?;
                let line = serde_json::json!({"type": "stats", "id": id, "data": data});
                println!("{line}");
                if stats {
                    return Ok(0);
                }
                std::thread::sleep(std::time::Duration::from_secs_f64(interval));
            }
        }
        Verb::Pause { id } => {
            state::pause(&rt, &id)?;
            Ok(0)
        }
        Verb::Resume { id } => {
            state::resume(&rt, &id)?;
            Ok(0)
        }
    }
}

fn refuse_no_pivot(no_pivot: bool) -> Result<(), EngineError> {
    if no_pivot {
        return Err(EngineError::Unsupported(
            "--no-pivot (minid always uses pivot_root)".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        RuntimeCli::command().debug_assert();
    }

    #[test]
    fn podman_and_containerd_invocations_parse() {
        let c = RuntimeCli::try_parse_from([
            "minid-runtime",
            "--root",
            "/run/x",
            "--log",
            "/tmp/l.json",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "c1",
        ])
        .expect("podman create");
        assert_eq!(c.root, PathBuf::from("/run/x"));
        assert!(matches!(c.command, Verb::Create { ref id, .. } if id == "c1"));
        let c = RuntimeCli::try_parse_from(["minid-runtime", "delete", "--force", "c1"])
            .expect("delete");
        assert!(matches!(c.command, Verb::Delete { force: true, .. }));
        let c = RuntimeCli::try_parse_from(["minid-runtime", "kill", "--all", "c1", "KILL"])
            .expect("kill");
        assert!(matches!(c.command, Verb::Kill { all: true, ref signal, .. } if signal == "KILL"));
        assert!(RuntimeCli::try_parse_from(["minid-runtime", "checkpoint", "c1"]).is_err());
    }
}
