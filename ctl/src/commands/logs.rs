//! `minictl logs`: `-f`, `--tail N`, `--since`, `--until`, `-t`; bytes as the container wrote
//! them, stdout to stdout and stderr to stderr.

use clap::Args;
use mini_proto::v1 as pb;

use super::Ctx;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow the output until the container exits
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines from the end ("all" for everything)
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: TailArg,
    /// Only entries since a time (RFC 3339, Unix seconds, or 10m for ten minutes ago)
    #[arg(long)]
    pub since: Option<String>,
    /// Only entries before a time
    #[arg(long)]
    pub until: Option<String>,
    /// Show the time of each entry
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// The container
    pub container: String,
}

#[derive(Debug, Clone, Copy)]
pub struct TailArg(pub Option<i64>);

impl std::str::FromStr for TailArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "all" {
            return Ok(TailArg(None));
        }
        s.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| TailArg(Some(n)))
            .ok_or_else(|| format!("{s:?} is not a number of lines or \"all\""))
    }
}

impl LogsArgs {
    pub async fn run(&self, ctx: &Ctx) -> i32 {
        let cl = match ctx.node_of(&self.container).await {
            Ok(cl) => cl,
            Err(code) => return code,
        };
        let mut c = cl.containers.clone();
        let s = match c
            .logs(pb::LogsRequest {
                container: self.container.clone(),
                follow: self.follow,
                tail: self.tail.0,
                since: self.since.clone().unwrap_or_default(),
                until: self.until.clone().unwrap_or_default(),
                stdout: false,
                stderr: false,
            })
            .await
        {
            Ok(s) => s.into_inner(),
            Err(s) => return cl.fail(s),
        };
        match super::run::copy_logs(s, self.timestamps).await {
            Ok(()) => 0,
            Err(s) => cl.fail(s),
        }
    }
}
