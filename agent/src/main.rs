//! The `minid` binary: argument parsing and dispatch only.
//!
//! `minid runtime ...` is the OCI runtime CLI, `minid image ...` the image store, and
//! `minid shim` the per-container monitor that `create` starts, `minid serve` the gRPC agent. Invoked through a link named
//! `minid-runtime`, the binary is the runtime CLI itself (so it can be given to podman
//! `--runtime` or containerd as a runc replacement).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use minid::runtime::RuntimeCli;

#[derive(Debug, Parser)]
#[command(
    name = "minid",
    version,
    about = "mini node agent: containers with namespaces, cgroups and overlay layers"
)]
struct Cli {
    /// Where images, snapshots and agent state live
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/minid",
        env = "MINID_STATE_DIR"
    )]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The OCI runtime command line (runc-compatible)
    #[command(disable_help_flag = true)]
    Runtime {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Manage images: import, ls, rm, tag, bundle, unbundle
    Image {
        #[command(subcommand)]
        command: minid::cli::image::ImageCommand,
    },
    /// Run a process in a running container (started by minid serve; not for direct use)
    #[command(hide = true)]
    ExecHelper(minid::engine::container::exec::ExecArgs),
    /// Serve the node's gRPC API (ContainerService, ImageService, NodeService) over mutual TLS
    Serve(Box<minid::server::ServeArgs>),
    /// Per-container monitor (started by `runtime create`; not for direct use)
    #[command(hide = true)]
    Shim(minid::shim::ShimArgs),
    /// A shim started ahead of its container (by minid serve; not for direct use)
    #[command(hide = true)]
    ShimStandby(minid::shim::StandbyArgs),
}

/// Warnings from the engine (`tracing::warn!`) go to stderr, one plain line each; the runtime
/// CLI's stdout stays machine-readable (`state`, `list --format json`). (`serve` sets up its
/// own service log, with traces: `minid::server::run`.)
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MINID_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .without_time()
        .try_init();
}

fn main() {
    // The shim's lean monitor image: decided before anything else runs, so that it touches
    // as little of the binary as it can (see shim::lean_main).
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(minid::shim::monitor::LEAN_VERB))
    {
        let args: Vec<String> = std::env::args().skip(2).collect();
        std::process::exit(minid::shim::lean_main(&args));
    }
    let argv0 = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if argv0 == "minid-runtime" {
        init_logging();
        let cli = RuntimeCli::parse();
        std::process::exit(minid::runtime::main_as(cli, true));
    }
    let cli = Cli::parse();
    // `serve` sets its own up (it adds the traces exporter).
    if !matches!(cli.command, Command::Serve(_)) {
        init_logging();
    }
    let code = match cli.command {
        Command::Runtime { args } => {
            let mut full = vec!["minid runtime".to_string()];
            full.extend(args);
            let rt = RuntimeCli::parse_from(full);
            minid::runtime::main(rt)
        }
        Command::Image { command } => match minid::cli::image::run(command, &cli.state_dir) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("minid image: {e:#}");
                1
            }
        },
        Command::Shim(args) => minid::shim::main(args),
        Command::ShimStandby(args) => minid::shim::standby_main(args),
        Command::ExecHelper(args) => minid::engine::container::exec::main(args),
        Command::Serve(args) => match minid::server::run(cli.state_dir, *args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("minid serve: {e:#}");
                1
            }
        },
    };
    std::process::exit(code);
}
