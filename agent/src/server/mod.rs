//! `minid serve`: the node's gRPC API over mutual TLS.
//!
//! Services are thin (ContainerService, ImageService, NodeService and `grpc.health.v1`): they
//! check the caller's role ([`auth`]), convert ([`convert`]) and call the [`Daemon`]; errors
//! become statuses in one place ([`status`]). TLS is terminated by [`crate::tls`], which hands
//! tonic verified connections. SIGHUP re-reads certificate, key, CA and CRL (the listener stays
//! up; new connections get the new files); SIGTERM and SIGINT stop serving and exit, and the
//! containers keep running under their shims, to be picked up by the next `minid serve`.

pub mod auth;
pub mod container;
pub mod convert;
pub mod exec;
pub mod image;
pub mod node;
pub mod status;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use mini_proto::v1::container_service_server::ContainerServiceServer;
use mini_proto::v1::image_service_server::ImageServiceServer;
use mini_proto::v1::node_service_server::NodeServiceServer;

use crate::daemon::{Daemon, DaemonConfig};
use crate::tls::{Reloadable, TlsPaths};

/// Largest gRPC message either way (an image import chunk, a batch of log entries).
pub const MAX_MESSAGE: usize = 16 << 20;

/// `minid serve` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:7000", env = "MINID_LISTEN")]
    pub listen: SocketAddr,
    /// Live container state (a tmpfs; gone at reboot)
    #[arg(long, default_value = "/run/minid/daemon")]
    pub run_root: PathBuf,
    /// This node's certificate (PEM); default: the development PKI in <state-dir>/pki
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM)
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// CA that signs client certificates (PEM)
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// Certificate revocation list (PEM), re-read on SIGHUP
    #[arg(long)]
    pub tls_crl: Option<PathBuf>,
    /// Node name (default: the host name)
    #[arg(long)]
    pub node_name: Option<String>,
    /// Node label KEY=VALUE, for placement constraints (repeatable)
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// CPUs offered to containers (default: every online CPU)
    #[arg(long)]
    pub capacity_cpus: Option<f64>,
    /// Memory offered to containers, e.g. 8g (default: all of it)
    #[arg(long, value_parser = parse_size)]
    pub capacity_memory: Option<i64>,
    /// Parent cgroup of containers (default: nested under minid's own cgroup)
    #[arg(long)]
    pub cgroup_parent: Option<String>,
    /// Where the cgroup hierarchies are mounted
    #[arg(long, default_value = "/sys/fs/cgroup")]
    pub cgroup_root: PathBuf,
    /// Rotate a container's log when it reaches this size
    #[arg(long, default_value = "100m", value_parser = parse_size)]
    pub log_max_size: i64,
    /// Rotated log files kept per container
    #[arg(long, default_value_t = 3)]
    pub log_max_files: u32,
    /// The node's bridge for containers in bridge mode (the default network)
    #[arg(long, default_value = "mini0")]
    pub bridge: String,
    /// The bridge's subnet: the bridge takes the first address, containers the others. In a
    /// cluster, each node gets its own part of the cluster's range
    #[arg(long, default_value = "10.88.0.0/16")]
    pub subnet: crate::engine::network::Subnet,
    /// minid's nftables table (masquerade and published ports; nothing else is touched)
    #[arg(long, default_value = "minid")]
    pub nft_table: String,
    /// No bridge network: containers use --network none or host
    #[arg(long, conflicts_with_all = ["bridge", "subnet", "nft_table"])]
    pub no_bridge: bool,
    /// Shims to keep started ahead of creates, so that a create hands its container to a
    /// waiting shim (on cgroup v1 with the init already in a cgroup), and as many network
    /// namespaces for `--network none`; 0 makes each when a create needs it
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=16))]
    pub standby_shims: u8,
    /// The cluster's whole container range (every node's --subnet is part of it): traffic
    /// between containers of different nodes keeps its source address
    #[arg(long)]
    pub cluster_cidr: Option<crate::engine::network::Subnet>,
    /// Push container metrics and the agent's traces to this OpenTelemetry collector
    /// (OTLP/gRPC, http://host:4317); else OTEL_EXPORTER_OTLP_ENDPOINT (and the signal-specific
    /// variables). OTEL_METRIC_EXPORT_INTERVAL (ms) sets the metrics interval
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Serve Prometheus metrics (cAdvisor's names, and the agent's own) on this address, at
    /// /metrics, plain HTTP
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// A route to another node's subnet: SUBNET=NODE_ADDRESS (repeatable)
    #[arg(long = "route", value_parser = parse_route)]
    pub routes: Vec<(crate::engine::network::Subnet, std::net::Ipv4Addr)>,
}

fn parse_route(s: &str) -> Result<(crate::engine::network::Subnet, std::net::Ipv4Addr), String> {
    let (dst, via) = s
        .split_once('=')
        .ok_or_else(|| format!("route {s:?} is not SUBNET=NODE_ADDRESS"))?;
    Ok((
        dst.parse()?,
        via.parse()
            .map_err(|_| format!("route {s:?}: {via:?} is not an IPv4 address"))?,
    ))
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label {s:?} is not KEY=VALUE"))
}

fn parse_size(s: &str) -> Result<i64, String> {
    crate::cli::overrides::parse_size(s)
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(state_dir: PathBuf, args: ServeArgs) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        anyhow::bail!("minid serve runs containers and must run as root");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("minid")
        .build()
        .context("starting the async runtime")?;
    // Traces, when configured: the exporter is made inside the runtime that drives it.
    let host = args.node_name.clone().unwrap_or_else(hostname);
    let provider = match crate::telemetry::traces::endpoint(args.otlp_endpoint.as_deref(), |k| {
        std::env::var(k).ok()
    }) {
        Some(endpoint) => {
            let _in_rt = rt.enter();
            Some(
                crate::telemetry::traces::provider(&endpoint, &host)
                    .with_context(|| format!("OTLP traces to {endpoint}"))?,
            )
        }
        None => None,
    };
    init_logging(provider.as_ref());
    let r = rt.block_on(serve(state_dir, args));
    if let Some(p) = provider {
        // The last spans (the shutdown) go out before the process ends.
        let _ = p.shutdown();
    }
    r
}

/// The agent's log on stderr (a service log: timestamps, `MINID_LOG` filters), and its spans
/// to the OTLP exporter when there is one.
fn init_logging(provider: Option<&opentelemetry_sdk::trace::SdkTracerProvider>) {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_env("MINID_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,h2=warn,tower=warn,opentelemetry=warn")
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let otel = provider.map(crate::telemetry::traces::layer);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
}

async fn serve(state_dir: PathBuf, args: ServeArgs) -> anyhow::Result<()> {
    let node_name = args.node_name.clone().unwrap_or_else(hostname);
    let paths = match (&args.tls_cert, &args.tls_key, &args.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => TlsPaths {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
            crl: args.tls_crl.clone(),
        },
        _ => {
            let dir = state_dir.join("pki");
            let extra: Vec<std::net::IpAddr> = if args.listen.ip().is_unspecified() {
                Vec::new()
            } else {
                vec![args.listen.ip()]
            };
            if minictl::pki::bootstrap_dev(&dir, &node_name, &extra)
                .with_context(|| format!("creating the development PKI in {}", dir.display()))?
            {
                tracing::warn!(
                    dir = %dir.display(),
                    "no PKI configured: created a development CA, a node certificate and an operator client certificate (admin.pem); for a cluster, make your own with `minictl pki`"
                );
            }
            TlsPaths {
                ca: dir.join("ca.pem"),
                cert: dir.join("node.pem"),
                key: dir.join("node-key.pem"),
                crl: args
                    .tls_crl
                    .clone()
                    .or_else(|| Some(dir.join("crl.pem")).filter(|p| p.exists())),
            }
        }
    };
    let tls = Reloadable::new(paths.clone()).context("loading the TLS files")?;
    let daemon = Daemon::open(DaemonConfig {
        state_dir: state_dir.clone(),
        run_root: args.run_root.clone(),
        cgroup_root: args.cgroup_root.clone(),
        cgroup_parent: args.cgroup_parent.clone(),
        node_name: node_name.clone(),
        labels: args.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        capacity_cpu_millis: args.capacity_cpus.map(|c| (c * 1000.0).round() as i64),
        capacity_memory: args.capacity_memory,
        log_max_size: args.log_max_size.max(0) as u64,
        log_max_files: args.log_max_files.max(1),
        network: (!args.no_bridge).then(|| crate::engine::network::NetworkConfig {
            bridge: args.bridge.clone(),
            subnet: args.subnet,
            table: args.nft_table.clone(),
            state_dir: state_dir.join("network"),
            netns_dir: args.run_root.join("netns"),
            cluster_cidr: args.cluster_cidr,
            routes: args.routes.clone(),
        }),
        standby_shims: usize::from(args.standby_shims),
    })
    .with_context(|| format!("opening the state in {}", state_dir.display()))?;
    daemon.supervise_all();

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, node = %node_name, state_dir = %state_dir.display(), "minid serving");
    // Scripts and tests wait for this line to know the port (with --listen 127.0.0.1:0).
    println!("minid listening on {local}");

    // SIGHUP: reload the TLS files, keep the listener.
    {
        let tls = tls.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: reloaded certificate, key, CA and CRL"),
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "SIGHUP: reload failed; the previous TLS files stay in use")
                    }
                }
            }
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping; containers keep running under their shims");
        let _ = stopping_tx.send(true);
    };

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ContainerServiceServer<container::Containers>>()
        .await;
    let containers = ContainerServiceServer::new(container::Containers {
        daemon: daemon.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE)
    .max_encoding_message_size(MAX_MESSAGE);
    let images = ImageServiceServer::new(image::Images {
        daemon: daemon.clone(),
    })
    .max_decoding_message_size(MAX_MESSAGE)
    .max_encoding_message_size(MAX_MESSAGE);
    let node = NodeServiceServer::new(node::Node {
        daemon: daemon.clone(),
    });
    let rpc = std::sync::Arc::new(crate::telemetry::rpc::RpcMetrics::default());
    let otlp = crate::telemetry::otlp::OtlpConfig::from_env(args.otlp_endpoint.as_deref(), |k| {
        std::env::var(k).ok()
    })?
    .map(|cfg| {
        let stats = std::sync::Arc::new(crate::telemetry::otlp::ExportStats::default());
        tokio::spawn(crate::telemetry::otlp::run(
            cfg,
            daemon.clone(),
            stats.clone(),
        ));
        stats
    });
    if let Some(addr) = args.metrics_listen {
        let src = std::sync::Arc::new(crate::telemetry::prometheus::Source {
            daemon: daemon.clone(),
            rpc: rpc.clone(),
            cert: paths.cert.clone(),
            otlp: otlp.clone(),
        });
        // Bound here, so that a taken address fails the start instead of a log line later.
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--metrics-listen {addr}: cannot listen"))?;
        tokio::spawn(async move {
            if let Err(e) = crate::telemetry::prometheus::serve(listener, src).await {
                tracing::error!(error = %format!("{e:#}"), "the metrics endpoint stopped");
            }
        });
    }
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .layer(crate::telemetry::rpc::RpcLayer(rpc))
        .add_service(health)
        .add_service(containers)
        .add_service(images)
        .add_service(node)
        .serve_with_incoming_shutdown(crate::tls::incoming(listener, tls), shutdown);
    // A graceful stop waits for open calls; streams that never end by themselves (a log
    // follower, an event watcher) get a few seconds, then the agent exits anyway.
    let grace = async {
        let _ = stopping.wait_for(|s| *s).await;
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    };
    tokio::select! {
        r = server => r.context("serving")?,
        _ = grace => tracing::warn!("open streams did not end within 5 s of the stop signal; exiting"),
    }
    let d = daemon.clone();
    let _ = tokio::task::spawn_blocking(move || d.shutdown()).await;
    Ok(())
}
