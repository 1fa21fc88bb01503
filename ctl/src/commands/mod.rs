//! minictl's commands, one per file, each a clap struct with an `async fn run`.
//!
//! Global options name the node and the TLS files; a command gets a [`Ctx`] with a connected
//! [`Client`] and the output format. A command returns its exit status: the container's for
//! `run`, `wait` and `exec`; 0 on success; [`crate::EXIT_FAILURE`] (125) when minictl or the
//! node failed, with the reason on stderr.

mod container_ops;
mod create;
mod events;
mod exec;
mod images;
mod import;
mod inspect;
mod logs;
mod nodes;
mod pki;
mod ps;
mod rm;
mod run;
mod stats;
mod terminal;
mod top;
mod update;
mod wait;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use mini_proto::v1 as pb;

use crate::client::Client;
use crate::cluster::Inventory;
use crate::output::Format;
use crate::tls::TlsFiles;

#[derive(Debug, Parser)]
#[command(
    name = "minictl",
    version,
    about = "Run and manage containers on mini nodes",
    after_help = "Without --node and --cluster, minictl talks to the local node (127.0.0.1:7000) \
                  with the development certificates a local `minid serve` writes to \
                  /var/lib/minid/pki; with a cluster inventory (--cluster, or \
                  ~/.config/minictl/cluster.toml) run places containers on its nodes and the \
                  other commands find or list them across the nodes."
)]
pub struct Cli {
    /// Node to talk to: host:port, or a node's name in the cluster inventory. Repeat (or
    /// separate with commas) to act across several. Before the command: `pki cert create
    /// --node` names a node.
    #[arg(long, env = "MINICTL_NODE", value_delimiter = ',')]
    pub node: Vec<String>,
    /// Cluster inventory (TOML: nodes with names, addresses, labels, taints; and TLS files).
    /// Default: ~/.config/minictl/cluster.toml when it exists.
    #[arg(long, global = true, env = "MINICTL_CLUSTER")]
    pub cluster: Option<PathBuf>,
    /// CA certificate that signs the nodes' certificates (PEM)
    #[arg(long, global = true, env = "MINICTL_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Our client certificate (PEM)
    #[arg(long, global = true, env = "MINICTL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Our client key (PEM)
    #[arg(long, global = true, env = "MINICTL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Output format
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and start a container; attached, exits with the container's status
    #[command(disable_help_flag = true)]
    Run(run::RunArgs),
    /// Create a container without starting it
    #[command(disable_help_flag = true)]
    Create(create::CreateArgs),
    /// Start one or more created or stopped containers
    Start(container_ops::StartArgs),
    /// Stop containers: the stop signal, then SIGKILL after the timeout
    Stop(container_ops::StopArgs),
    /// Restart containers
    Restart(container_ops::StopArgs),
    /// Send a signal to containers
    Kill(container_ops::KillArgs),
    /// Freeze every process of containers
    Pause(container_ops::Targets),
    /// Thaw paused containers
    Unpause(container_ops::Targets),
    /// Remove containers
    Rm(rm::RmArgs),
    /// List containers
    Ps(ps::PsArgs),
    /// Show a container's output
    Logs(logs::LogsArgs),
    /// Show containers' details as JSON
    Inspect(inspect::InspectArgs),
    /// Block until containers stop; print their exit codes
    Wait(wait::WaitArgs),
    /// Live resource usage of containers
    Stats(stats::StatsArgs),
    /// Run a command in a running container
    Exec(exec::ExecArgs),
    /// The processes of a running container
    Top(top::TopArgs),
    /// Change a container's limits or restart policy while it runs
    Update(update::UpdateArgs),
    /// Lifecycle events as they happen
    Events(events::EventsArgs),
    /// List images
    Images(images::ImagesArgs),
    /// Import an image from a rootfs tar, docker-archive or OCI archive
    Import(import::ImportArgs),
    /// Remove images
    Rmi(images::RmiArgs),
    /// Give an image another name
    Tag(images::TagArgs),
    /// Capacity, allocations and facts of the node
    Nodes(nodes::NodesArgs),
    /// Versions of minictl and the node
    Version,
    /// Manage the cluster's certificates (CA, nodes, clients, revocation)
    Pki(pki::PkiArgs),
}

/// The node `minictl` talks to when given neither `--node` nor an inventory.
pub const DEFAULT_NODE: &str = "127.0.0.1:7000";

/// What a command runs with.
pub struct Ctx {
    /// The (first) node.
    pub client: Client,
    /// Every node given, for the commands that act across nodes.
    pub clients: Vec<Client>,
    pub format: Format,
    /// `run` and `create` choose a node with a policy (several nodes, or an inventory).
    pub placing: bool,
}

impl Ctx {
    /// Reports a failed call on stderr; returns the exit status for it.
    pub fn fail(&self, s: tonic::Status) -> i32 {
        self.client.fail(s)
    }

    /// [`Ctx::locate`], with a failure reported on stderr: the node, or the exit status.
    pub async fn node_of(&self, reference: &str) -> Result<Client, i32> {
        self.locate(reference).await.map_err(|s| {
            eprintln!("minictl: {}", s.message());
            exit_for(&s)
        })
    }

    /// [`Ctx::node_of`] for a loop over targets: a failure sets `code` and gives `None`.
    pub async fn node_for(&self, reference: &str, code: &mut i32) -> Option<Client> {
        match self.node_of(reference).await {
            Ok(cl) => Some(cl),
            Err(e) => {
                *code = e;
                None
            }
        }
    }

    /// The node holding container `reference` (name, id or id prefix): the only node when
    /// there is one, else the one node of all that knows it (asked at once). Not found
    /// anywhere is `NOT_FOUND`; not found while some node did not answer is `UNAVAILABLE`
    /// naming them (the container may be there); found on several is `FAILED_PRECONDITION`
    /// naming them.
    pub async fn locate(&self, reference: &str) -> Result<Client, tonic::Status> {
        if self.clients.len() == 1 {
            return Ok(self.client.clone());
        }
        let answers =
            futures::future::join_all(self.clients.iter().map(|cl| {
                let mut c = cl.containers.clone();
                let req = pb::InspectRequest {
                    container: reference.to_string(),
                };
                async move {
                    tokio::time::timeout(crate::placement::SURVEY_TIMEOUT, c.inspect(req)).await
                }
            }))
            .await;
        let mut found = Vec::new();
        let mut silent = Vec::new();
        for (cl, a) in self.clients.iter().zip(answers) {
            match a {
                Ok(Ok(_)) => found.push(cl),
                Ok(Err(s)) if s.code() == tonic::Code::NotFound => {}
                // A prefix that is ambiguous on one node is the user's to fix.
                Ok(Err(s)) if s.code() == tonic::Code::InvalidArgument => {
                    return Err(tonic::Status::invalid_argument(format!(
                        "node {}: {}",
                        cl.name,
                        s.message()
                    )))
                }
                Ok(Err(s)) => silent.push(format!(
                    "{} ({})",
                    cl.name,
                    crate::client::call_error(&cl.addr, s).message
                )),
                Err(_) => silent.push(format!("{} (no answer)", cl.name)),
            }
        }
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] if silent.is_empty() => Err(tonic::Status::not_found(format!(
                "no such container: {reference} (on none of {} nodes)",
                self.clients.len()
            ))),
            [] => Err(tonic::Status::unavailable(format!(
                "no container {reference} on the nodes that answered, and some did not: {}",
                silent.join(", ")
            ))),
            many => {
                Err(tonic::Status::failed_precondition(format!(
                "{reference} names containers on several nodes ({}): give --node NAME, or the id",
                many.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
            )))
            }
        }
    }
}

/// Reports a node's failed call, naming the node when there are several; the exit status.
pub fn node_failure(cl: &Client, s: tonic::Status, several: bool) -> i32 {
    if several {
        let code = exit_for(&s);
        eprintln!("minictl: node {}: {}", cl.name, cl.explain(s));
        code
    } else {
        cl.fail(s)
    }
}

/// The exit status a Wait answer stands for: the container's code, or 125 (with the reason on
/// stderr) when the node does not know how it ended.
pub fn exit_of(w: &mini_proto::v1::WaitResponse) -> i32 {
    if w.error.is_empty() {
        w.exit_code
    } else {
        eprintln!("minictl: {}", w.error);
        crate::EXIT_FAILURE
    }
}

/// Docker's statuses for a command that could not be run: 126 (cannot be invoked), 127 (not
/// found), as the node says in the status's `mini-exec-code` metadata; otherwise 125.
pub fn exit_for(s: &tonic::Status) -> i32 {
    match s
        .metadata()
        .get("mini-exec-code")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
    {
        Some(c @ (126 | 127)) => c,
        _ => crate::EXIT_FAILURE,
    }
}

pub async fn run(cli: Cli) -> i32 {
    let command = match cli.command {
        Command::Pki(p) => return pki::run(p),
        other => other,
    };
    // The command's span, when traces are on (MINICTL_OTLP_ENDPOINT): every call carries it.
    let name = format!("{command:?}")
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_lowercase();
    let trace = crate::trace::start(&name);
    let parts = CliParts {
        node: cli.node,
        cluster: cli.cluster,
        tls_ca: cli.tls_ca,
        tls_cert: cli.tls_cert,
        tls_key: cli.tls_key,
        format: cli.format,
    };
    let code = run_command(parts, command).await;
    if let Some(t) = trace {
        t.finish(code).await;
    }
    code
}

/// The global options, once the command is taken out.
struct CliParts {
    node: Vec<String>,
    cluster: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    format: Format,
}

async fn run_command(cli: CliParts, command: Command) -> i32 {
    let files = TlsFiles {
        ca: cli.tls_ca,
        cert: cli.tls_cert,
        key: cli.tls_key,
    };
    let (clients, placing) = match connect(&cli.node, cli.cluster.as_deref(), files) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("minictl: {e:#}");
            return crate::EXIT_FAILURE;
        }
    };
    let one_node_only = matches!(
        command,
        Command::Stats(_) | Command::Events(_) | Command::Version
    );
    if clients.len() > 1 && one_node_only {
        eprintln!(
            "minictl: this command acts on one node; give --node (one of: {})",
            clients
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return crate::EXIT_FAILURE;
    }
    let ctx = Ctx {
        client: clients[0].clone(),
        clients,
        format: cli.format,
        placing,
    };
    match command {
        Command::Run(a) => a.run(&ctx).await,
        Command::Create(a) => a.run(&ctx).await,
        Command::Start(a) => a.run(&ctx).await,
        Command::Stop(a) => a.run(&ctx, false).await,
        Command::Restart(a) => a.run(&ctx, true).await,
        Command::Kill(a) => a.run(&ctx).await,
        Command::Pause(a) => a.pause(&ctx, true).await,
        Command::Unpause(a) => a.pause(&ctx, false).await,
        Command::Rm(a) => a.run(&ctx).await,
        Command::Ps(a) => a.run(&ctx).await,
        Command::Logs(a) => a.run(&ctx).await,
        Command::Inspect(a) => a.run(&ctx).await,
        Command::Wait(a) => a.run(&ctx).await,
        Command::Stats(a) => a.run(&ctx).await,
        Command::Exec(a) => a.run(&ctx).await,
        Command::Top(a) => a.run(&ctx).await,
        Command::Update(a) => a.run(&ctx).await,
        Command::Events(a) => a.run(&ctx).await,
        Command::Images(a) => a.run(&ctx).await,
        Command::Import(a) => a.run(&ctx).await,
        Command::Rmi(a) => a.run(&ctx).await,
        Command::Tag(a) => a.run(&ctx).await,
        Command::Nodes(a) => a.run(&ctx).await,
        Command::Version => nodes::version(&ctx).await,
        Command::Pki(p) => pki::run(p),
    }
}

/// The clients a command talks to, and whether `run` places: `--node` entries (names from the
/// inventory, or addresses), else every node of the inventory (`--cluster`, or the default
/// file when it exists), else the local node. TLS files given win over the inventory's.
fn connect(
    nodes: &[String],
    cluster: Option<&std::path::Path>,
    files: TlsFiles,
) -> anyhow::Result<(Vec<Client>, bool)> {
    // The default inventory names nodes for --node too; when --node is given, a broken
    // default file is only a warning (the addresses given may not need it).
    let inventory = match cluster {
        Some(p) => Some(Inventory::load(p)?),
        None => match crate::cluster::default_path() {
            Some(p) if p.exists() => match Inventory::load(&p) {
                Ok(inv) => Some(inv),
                Err(e) if !nodes.is_empty() => {
                    eprintln!("minictl: warning: ignoring {}: {e:#}", p.display());
                    None
                }
                Err(e) => return Err(e),
            },
            _ => None,
        },
    };
    let files = match &inventory {
        Some(inv) => inv.tls_under(files),
        None => files,
    }
    .resolve()?;
    let clients = match (&inventory, nodes.is_empty()) {
        (Some(inv), true) => inv
            .nodes
            .iter()
            .map(|m| Client::to_member(m, &files))
            .collect::<anyhow::Result<Vec<_>>>()?,
        (None, true) => vec![Client::connect(DEFAULT_NODE, &files)?],
        (_, false) => nodes
            .iter()
            .map(|n| match inventory.as_ref().and_then(|inv| inv.find(n)) {
                Some(m) => Client::to_member(m, &files),
                None if inventory.is_some() && !n.contains(':') => Err(anyhow::anyhow!(
                    "node {n:?} is not in the inventory {} (nodes: {})",
                    inventory
                        .as_ref()
                        .map(|i| i.path.display().to_string())
                        .unwrap_or_default(),
                    inventory
                        .as_ref()
                        .map(|i| i
                            .nodes
                            .iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                )),
                None => Client::connect(n, &files),
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
    };
    let placing = clients.len() > 1 || (nodes.is_empty() && inventory.is_some());
    Ok((clients, placing))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn docker_flags_parse() {
        let c = Cli::try_parse_from([
            "minictl",
            "--node",
            "10.0.0.5:7000",
            "run",
            "-d",
            "--name",
            "web",
            "-m",
            "64m",
            "--cpus",
            "0.5",
            "-e",
            "A=1",
            "-l",
            "tier=web",
            "--restart",
            "on-failure:3",
            "busybox",
            "sh",
            "-c",
            "echo hi",
        ])
        .unwrap();
        assert_eq!(c.node, vec!["10.0.0.5:7000"]);

        match c.command {
            Command::Run(r) => {
                assert!(r.detach);
                assert_eq!(r.create.image, "busybox");
                assert_eq!(r.create.cmd, vec!["sh", "-c", "echo hi"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            Cli::try_parse_from(["minictl", "run"]).is_err(),
            "an image is required"
        );
        assert!(Cli::try_parse_from(["minictl", "logs", "--tail", "x", "web"]).is_err());
    }
}
