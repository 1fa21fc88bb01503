//! The `minictl` binary: parse, run one command, exit with its status.

use clap::Parser;

fn main() {
    let cli = minictl::commands::Cli::parse();
    let code = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => {
            let code = rt.block_on(minictl::commands::run(cli));
            // Not a graceful shutdown: a task blocked reading our stdin (exec -i, an
            // attached run) would hold it forever.
            rt.shutdown_background();
            code
        }
        Err(e) => {
            eprintln!("minictl: cannot start: {e}");
            minictl::EXIT_FAILURE
        }
    };
    std::process::exit(code);
}
