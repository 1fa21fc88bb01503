//! The `minisim` command line: `run` replays a trace under one policy, `compare` under
//! several side by side. One command struct per file in `commands/`, each running itself.

mod commands;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = commands::Cli::parse();
    match cli.command.run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("minisim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
