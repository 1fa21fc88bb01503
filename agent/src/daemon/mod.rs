//! The node's containers as `minid serve` manages them: names, images, admission, restart
//! policies, logs, and recovery after a restart of minid.
//!
//! This layer sits between the gRPC services ([`crate::server`]) and the synchronous engine:
//! it turns a [`ContainerConfig`] into an image bundle and an engine container owned by a shim,
//! and keeps what the engine does not know (name, config, restart count, the last exit) in
//! `<state-dir>/containers/<id>/meta.json`, replaced atomically. Engine calls block, so they
//! run on tokio's blocking pool; nothing here forks: the engine starts each container's shim
//! with `fork`+`exec` of minid's own binary.
//!
//! **Who knows what.** The shim is the container's parent: it writes the CRI log
//! (`<state-dir>/containers/<id>/ctr.log`) and, when the container exits, its exit record.
//! minid learns of that exit from a pidfd on the shim (readable when the shim exits, which it
//! does right after recording the exit), never by polling a pid. Status is derived from the
//! engine's files each time it is asked, so it is right after minid restarts too: at start
//! minid re-reads every `meta.json` (a corrupt one is moved to `<state-dir>/quarantine` and
//! reported; its container stays listed by id with the reason, so it can be removed; the
//! others load normally), and a supervisor task per container resumes waiting on its
//! shim, handles an exit that happened while minid was down, and applies the restart policy.
//!
//! **Admission.** Create admits a container only if the node's unallocated CPU and memory
//! cover its limits (a container without a limit asks for nothing), under one lock so that
//! two concurrent creates cannot both take the last room; the loser gets
//! `ResourceExhausted`, and a cluster client tries its next-best node.

pub mod config;
pub mod logs;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch, Notify};

pub use config::{ContainerConfig, MountSpec, Resources, RestartPolicy};

use crate::engine::container::create::{CreateOptions, LogConfig, Monitor, StdioMode};
use crate::engine::container::standby::ShimPool;
use crate::engine::container::{self, kill::parse_signal, Runtime, Status};
use crate::engine::error::{EngineError, Result};
use crate::engine::fsutil;
use crate::engine::image::{self, Image, ImageStore, ProcessOverrides};
use crate::engine::network::{Network, NetworkConfig, Publish};

/// How minid serve is set up.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    /// Where the engine keeps live container state (tmpfs; gone at reboot).
    pub run_root: PathBuf,
    pub cgroup_root: PathBuf,
    pub cgroup_parent: Option<String>,
    pub node_name: String,
    pub labels: BTreeMap<String, String>,
    /// Overrides of what the node offers (default: every online CPU, all memory).
    pub capacity_cpu_millis: Option<i64>,
    pub capacity_memory: Option<i64>,
    pub log_max_size: u64,
    pub log_max_files: u32,
    /// The bridge network; `None` turns bridge mode off (`none` and `host` still work).
    pub network: Option<NetworkConfig>,
    /// How many shims to keep started ahead of creates (see `container::standby`); 0: none.
    pub standby_shims: usize,
}

/// What the daemon remembers of a container besides the engine's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub id: String,
    pub name: String,
    pub config: ContainerConfig,
    pub image_id: String,
    /// The process as it runs (entrypoint + cmd after the image's defaults).
    pub command: Vec<String>,
    pub created_at: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub restart_count: u32,
    /// Stopped by a user: restart policies leave it alone until it is started again.
    #[serde(default)]
    pub manually_stopped: bool,
    /// The last exit minid has handled (events sent, policy applied).
    #[serde(default)]
    pub last_exit: Option<ExitInfo>,
    #[serde(default)]
    pub error: Option<String>,
    /// The ports as published by the last start (host ports chosen), for a restarted minid.
    #[serde(default)]
    pub published: Vec<Publish>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// 0..255, or 128+signal.
    pub code: i32,
    pub signal: i32,
    pub oom_killed: bool,
    pub finished_at: String,
}

impl From<&container::ExitRecord> for ExitInfo {
    fn from(e: &container::ExitRecord) -> Self {
        ExitInfo {
            code: e.status,
            signal: e.signal.unwrap_or(0),
            oom_killed: e.oom_killed,
            finished_at: e.finished_at.clone(),
        }
    }
}

/// A container as a client sees it.
#[derive(Debug, Clone)]
pub struct View {
    pub meta: Meta,
    /// Docker's words: created, running, paused, restarting, exited, dead.
    pub status: &'static str,
    pub pid: i32,
    pub exit: Option<ExitInfo>,
}

/// One process of a container, from `/proc/<pid>` (proc(5)).
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    pub pid: i32,
    pub ppid: i32,
    pub uid: u32,
    pub state: String,
    pub cpu_ns: u64,
    pub started_at: SystemTime,
    pub cmd: String,
}

impl ProcessInfo {
    /// None when the process is gone meanwhile.
    pub fn read(pid: i32) -> Option<ProcessInfo> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // comm is in parentheses and may contain anything: split at the last ')'.
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(').map(|(_, c)| c).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After ')': state(0) ppid(1) ... utime(11) stime(12) ... starttime(19)
        let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100) as u64;
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = if cmdline.is_empty() {
            format!("[{comm}]")
        } else {
            cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("btime "))
                .and_then(|l| l[6..].trim().parse::<u64>().ok())
        })?;
        let started_at = SystemTime::UNIX_EPOCH
            + Duration::from_secs(boot)
            + Duration::from_millis(num(19) * 1000 / tick);
        Some(ProcessInfo {
            pid,
            ppid: num(1) as i32,
            uid,
            state: f.first().unwrap_or(&"?").to_string(),
            cpu_ns: (num(11) + num(12)) * 1_000_000_000 / tick,
            started_at,
            cmd,
        })
    }
}

/// A live resource change (`update`): only the fields that are set change.
#[derive(Debug, Clone, Default)]
pub struct ResourceUpdate {
    pub cpu_millis: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub memory_swap_bytes: Option<i64>,
    pub pids_limit: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub io_weight: Option<u32>,
}

/// What waiters watch.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Exits handled so far.
    pub exits: u64,
    pub last_exit: Option<ExitInfo>,
    pub removed: bool,
    /// An auto-remove failed: waiting for removal would wait forever.
    pub remove_failed: bool,
}

/// A lifecycle event (Docker's `events`).
#[derive(Debug, Clone)]
pub struct Event {
    pub time: String,
    pub action: String,
    pub id: String,
    pub name: String,
    pub image: String,
    pub attributes: BTreeMap<String, String>,
}

pub struct Entry {
    pub id: String,
    meta: Mutex<Meta>,
    /// Held while a change to `meta` is saved.
    saving: Mutex<()>,
    /// Serializes lifecycle operations on this container.
    op: tokio::sync::Mutex<()>,
    observed: watch::Sender<Observed>,
    /// Wakes the supervisor: a new shim to watch, or the container is gone.
    kick: Notify,
    restarting: AtomicBool,
    removing: AtomicBool,
}

impl Entry {
    pub fn meta(&self) -> Meta {
        lock(&self.meta).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Default)]
struct Registry {
    by_id: BTreeMap<String, Arc<Entry>>,
    /// Names of containers and of creates in progress.
    names: HashMap<String, String>,
    /// Creates in progress: what they were admitted with, counted as allocated.
    reserved: HashMap<String, Usage>,
}

/// The node's capacity and what is allocated of it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

/// The scheduler's non-zero defaults (see `minisim::policy::NONZERO_CPU_MILLI`), in this
/// crate's units.
const NONZERO_CPU_MILLIS: i64 = minisim::policy::NONZERO_CPU_MILLI as i64;
const NONZERO_MEMORY_BYTES: i64 = (minisim::policy::NONZERO_MEMORY_MIB as i64) << 20;

/// See [`Daemon::allocated`].
#[derive(Debug, Default)]
pub struct Allocated {
    /// The sum of limits: what admission checks against capacity.
    pub limits: Usage,
    /// Limits, with the non-zero defaults standing in for a limit a container did not set:
    /// placement's utilisation.
    pub requested: Usage,
    pub running: u32,
    pub total: u32,
}

pub struct Daemon {
    pub cfg: DaemonConfig,
    pub rt: Runtime,
    /// Shims started ahead of creates.
    standby: Option<Arc<ShimPool>>,
    /// Network namespaces made ahead for `--network none` containers (as many as standbys).
    netns_pool: Option<Arc<crate::engine::network::netlink::NetnsPool>>,
    pub images: ImageStore,
    registry: Mutex<Registry>,
    admission: tokio::sync::Mutex<()>,
    events: broadcast::Sender<Event>,
    recent: Mutex<VecDeque<Event>>,
    pub capacity: Usage,
    /// Containers whose state could not be read at start (id and reason).
    pub quarantined: Mutex<Vec<String>>,
    /// How recently removed containers ended, by id and name, so that a client that asks
    /// for the exit of an auto-removed container (`run --rm`) just after it went still gets it.
    tombstones: Mutex<HashMap<String, (Option<ExitInfo>, Instant)>>,
    /// The bridge network, or why there is none on this node.
    net: std::result::Result<Network, String>,
    /// Removed containers whose directories (rootfs mount, snapshot, log) are still being
    /// deleted in the background (see [`Daemon::destroy`]), and the signal that one finished.
    deleting: Mutex<usize>,
    deleted: std::sync::Condvar,
    /// Background deletions run one at a time; true when one failed and left something
    /// behind, which the next one tries again (see [`Daemon::sweep_leftovers`]).
    deletion_failed: Mutex<bool>,
}

/// What a removed container's directory is renamed to until it is deleted.
const DELETING_PREFIX: &str = ".deleting-";

/// What a removal leaves to delete once the caller has its answer (see [`Daemon::destroy`]).
struct Leftovers {
    engine: Option<container::delete::Retired>,
    files: PathBuf,
}

/// How long a removed container's exit stays answerable.
const TOMBSTONE_TTL: Duration = Duration::from_secs(300);

const META_FILE: &str = "meta.json";
const LOG_FILE: &str = "ctr.log";
const RECENT_EVENTS: usize = 1024;

/// Runs blocking engine work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    // The engine's work belongs to the span of the call that asked for it.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| EngineError::Other(format!("engine task failed: {e}")))?
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    let p = Path::new("/dev/urandom");
    let mut f = std::fs::File::open(p).map_err(|e| EngineError::io("open", p, e))?;
    std::io::Read::read_exact(&mut f, &mut b).map_err(|e| EngineError::io("read", p, e))?;
    Ok(hex::encode(b))
}

/// Docker's container name rule.
fn validate_name(name: &str) -> Result<()> {
    let ok = name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::InvalidArgument(format!(
            "invalid container name {name:?}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*"
        )))
    }
}

const ADJECTIVES: [&str; 16] = [
    "brave", "calm", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry", "nifty",
    "proud", "quiet", "sharp", "tender", "vivid", "witty",
];
const SURNAMES: [&str; 16] = [
    "babbage",
    "curie",
    "dijkstra",
    "engelbart",
    "hopper",
    "kay",
    "knuth",
    "lamport",
    "liskov",
    "lovelace",
    "mccarthy",
    "ritchie",
    "shannon",
    "thompson",
    "turing",
    "wirth",
];

fn mem_total() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<i64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn online_cpus() -> i64 {
    std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1)
}

impl Daemon {
    /// Opens the state directory and loads every container's record.
    pub fn open(cfg: DaemonConfig) -> Result<Arc<Daemon>> {
        let images = ImageStore::open(&cfg.state_dir)?;
        let mut rt = Runtime::new(&cfg.run_root);
        rt.cgroup_root = cfg.cgroup_root.clone();
        rt.cgroup_parent = cfg.cgroup_parent.clone();
        let capacity = Usage {
            cpu_millis: cfg.capacity_cpu_millis.unwrap_or(online_cpus() * 1000),
            memory_bytes: cfg.capacity_memory.unwrap_or_else(mem_total),
        };
        let (events, _) = broadcast::channel(1024);
        let net = match cfg.network.clone() {
            None => Err(
                "bridge networking is turned off on this node (minid serve --no-bridge)"
                    .to_string(),
            ),
            Some(n) => {
                let what = format!("bridge {} ({})", n.bridge, n.subnet);
                Network::open(n).map_err(|e| {
                    tracing::error!(error = %e, "bridge networking is unavailable; containers can use --network none or host");
                    format!("bridge networking is unavailable on this node: setting up {what} failed: {e}")
                })
            }
        };
        let standby = match cfg.standby_shims {
            0 => None,
            n => match ShimPool::new(&rt, n) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "no standby shims; every create starts its own");
                    None
                }
            },
        };
        let netns_pool = (cfg.standby_shims > 0)
            .then(|| crate::engine::network::netlink::NetnsPool::new(cfg.standby_shims));
        let d = Daemon {
            cfg,
            rt,
            standby,
            netns_pool,
            images,
            registry: Mutex::new(Registry::default()),
            admission: tokio::sync::Mutex::new(()),
            events,
            recent: Mutex::new(VecDeque::new()),
            capacity,
            quarantined: Mutex::new(Vec::new()),
            tombstones: Mutex::new(HashMap::new()),
            net,
            deleting: Mutex::new(0),
            deleted: std::sync::Condvar::new(),
            deletion_failed: Mutex::new(false),
        };
        // Containers removed before minid stopped whose cgroups, state and files were still
        // going.
        d.sweep_leftovers();
        d.load_all()?;
        if let Ok(n) = &d.net {
            let known: std::collections::HashSet<String> =
                lock(&d.registry).by_id.keys().cloned().collect();
            n.reconcile(&known);
        }
        Ok(Arc::new(d))
    }

    /// Lets the standby shims go (each cleans up after itself) and finishes deleting removed
    /// containers' files; called when minid stops.
    pub fn shutdown(&self) {
        if let Some(p) = &self.standby {
            p.shutdown(Duration::from_secs(2));
        }
        self.settle_deletions(Duration::from_secs(5));
    }

    fn containers_dir(&self) -> PathBuf {
        self.cfg.state_dir.join("containers")
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join(LOG_FILE)
    }

    fn bundle_dir(&self, id: &str) -> PathBuf {
        self.dir(id).join("bundle")
    }

    fn load_all(&self) -> Result<()> {
        let dir = self.containers_dir();
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("create", &dir, e))?;
        let rd = std::fs::read_dir(&dir).map_err(|e| EngineError::io("read", &dir, e))?;
        let mut reg = lock(&self.registry);
        for ent in rd.flatten() {
            let id = ent.file_name().to_string_lossy().into_owned();
            if id.starts_with(DELETING_PREFIX) {
                continue; // removed: its files are left to sweep_leftovers
            }
            let path = ent.path().join(META_FILE);
            let meta: Result<Meta> = fsutil::read_json(&path);
            match meta {
                Ok(mut m) if m.id == id => {
                    // Records from before bridge mode was the default: an empty mode meant
                    // none then (creates now record the mode they resolved).
                    if m.config.network_mode.is_empty() {
                        m.config.network_mode = "none".into();
                    }
                    reg.names.insert(m.name.clone(), id.clone());
                    reg.by_id.insert(id.clone(), Arc::new(new_entry(m)));
                }
                Ok(_) | Err(_) => {
                    let why = match meta {
                        Err(e) => e.to_string(),
                        Ok(m) => format!("{} names container {:?}", path.display(), m.id),
                    };
                    if container::validate_id(&id).is_err() {
                        tracing::error!(dir = %ent.path().display(), "not a container directory; left alone");
                        continue;
                    }
                    // The unreadable file goes to the quarantine for a person to look at; the
                    // container stays listed under its id, with the reason, so that it can be
                    // removed (its rootfs, cgroups and processes are still real).
                    let q = self.cfg.state_dir.join("quarantine");
                    let dest = q.join(format!(
                        "{id}-{}.json",
                        SystemTime::now()
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(0)
                    ));
                    let moved =
                        std::fs::create_dir_all(&q).and_then(|_| std::fs::rename(&path, &dest));
                    tracing::error!(
                        container_id = %id,
                        error = %why,
                        quarantine = %dest.display(),
                        moved = moved.is_ok(),
                        "container state is unreadable; quarantined, the other containers load"
                    );
                    let placeholder = Meta {
                        id: id.clone(),
                        name: id.chars().take(12).collect(),
                        config: ContainerConfig::default(),
                        image_id: String::new(),
                        command: Vec::new(),
                        created_at: String::new(),
                        started_at: None,
                        restart_count: 0,
                        manually_stopped: true,
                        last_exit: None,
                        published: Vec::new(),
                        error: Some(format!(
                            "its state file was unreadable ({why}) and was moved to {}; remove the container",
                            dest.display()
                        )),
                    };
                    if let Err(e) = self.save(&placeholder) {
                        tracing::error!(container_id = %id, error = %e, "writing a placeholder state");
                    }
                    reg.names.insert(placeholder.name.clone(), id.clone());
                    reg.by_id
                        .insert(id.clone(), Arc::new(new_entry(placeholder)));
                    lock(&self.quarantined).push(format!("{id}: {why}"));
                }
            }
        }
        Ok(())
    }

    /// Starts a supervisor for every loaded container (call once, inside the tokio runtime).
    pub fn supervise_all(self: &Arc<Self>) {
        let entries: Vec<_> = lock(&self.registry).by_id.values().cloned().collect();
        // The bridge's table was rebuilt at open: running containers publish again.
        for e in &entries {
            let v = self.view(e);
            if matches!(v.status, "running" | "paused") && !v.meta.published.is_empty() {
                if let Err(err) = self.publish(&e.id, &v.meta.published) {
                    tracing::error!(container_id = %e.id, error = %err, "publishing ports again after a restart");
                }
            }
        }
        for e in entries {
            // An auto-removed container whose run a reboot ended (the engine's state, on
            // tmpfs, is gone) is removed, as Docker does at its start.
            if e.meta().config.auto_remove
                && matches!(self.rt.load(&e.id), Err(EngineError::ContainerNotFound(_)))
            {
                let d = self.clone();
                tokio::spawn(async move {
                    if let Err(err) = d.remove(&e.id, true).await {
                        tracing::error!(container_id = %e.id, error = %err, "auto-remove after a reboot");
                        d.spawn_supervisor(e);
                    }
                });
                continue;
            }
            self.clone().spawn_supervisor(e);
        }
    }

    // ---- network -----------------------------------------------------------------------

    /// The bridge network, or why a container cannot have one.
    fn bridge(&self) -> Result<&Network> {
        self.net
            .as_ref()
            .map_err(|why| EngineError::Precondition(format!("{why}; use --network none or host")))
    }

    /// Where container `id`'s network namespace is kept (bridge and none modes).
    fn netns_file(&self, id: &str) -> PathBuf {
        self.cfg.run_root.join("netns").join(id)
    }

    /// The network namespace of a `none` container: made when missing (at create, after a
    /// reboot), kept when there.
    fn own_netns(&self, id: &str) -> Result<PathBuf> {
        let path = self.netns_file(id);
        if fsutil::is_mountpoint(&path) {
            return Ok(path);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| EngineError::io("create", dir, e))?;
        }
        let _ = crate::engine::network::netlink::delete_netns(&path);
        match &self.netns_pool {
            Some(pool) => pool.create_at(&path)?,
            None => crate::engine::network::netlink::create_netns(&path)?,
        }
        Ok(path)
    }

    /// Makes the network namespaces taken from the pool again, in the background: called once
    /// the create (or start) that took one is done.
    fn refill_netns(&self) {
        if let Some(p) = &self.netns_pool {
            p.refill();
        }
    }

    /// Publishes `ports` for bridged container `id` (replacing what it published).
    fn publish(&self, id: &str, ports: &[Publish]) -> Result<Vec<Publish>> {
        let n = self.bridge()?;
        let ip = n.address_of(id).ok_or_else(|| {
            EngineError::Other(format!("container {id} has no address on the bridge"))
        })?;
        n.unpublish(id)?;
        n.publish(id, ip, ports)
    }

    /// The bridge's address (the containers' gateway), when the node has a bridge.
    pub fn bridge_gateway(&self) -> Option<std::net::Ipv4Addr> {
        self.net.as_ref().ok().map(|n| n.config().subnet.gateway())
    }

    /// The container's address on the bridge and its published ports, if bridged.
    pub fn net_info(&self, id: &str) -> (Option<std::net::Ipv4Addr>, Vec<Publish>) {
        match &self.net {
            Ok(n) => (n.address_of(id), n.published(id)),
            Err(_) => (None, Vec::new()),
        }
    }

    // ---- lookup ------------------------------------------------------------------------

    /// By exact id, exact name, or unique id prefix (Docker's order).
    pub fn find(&self, key: &str) -> Result<Arc<Entry>> {
        let reg = lock(&self.registry);
        if key.is_empty() {
            return Err(EngineError::InvalidArgument("no container given".into()));
        }
        if let Some(e) = reg.by_id.get(key) {
            return Ok(e.clone());
        }
        if let Some(id) = reg.names.get(key) {
            if let Some(e) = reg.by_id.get(id) {
                return Ok(e.clone());
            }
        }
        let mut hits = reg
            .by_id
            .range(key.to_string()..)
            .take_while(|(k, _)| k.starts_with(key));
        match (hits.next(), hits.next()) {
            (Some((_, e)), None) => Ok(e.clone()),
            (Some(_), Some(_)) => Err(EngineError::InvalidArgument(format!(
                "container id prefix {key:?} is ambiguous: give more of it"
            ))),
            _ => Err(EngineError::ContainerNotFound(key.to_string())),
        }
    }

    pub fn entries(&self) -> Vec<Arc<Entry>> {
        lock(&self.registry).by_id.values().cloned().collect()
    }

    // ---- status ------------------------------------------------------------------------

    /// Reads the container's status from the engine's files.
    pub fn view(&self, e: &Entry) -> View {
        let meta = e.meta();
        let (status, pid, exit) = match self.rt.load(&e.id) {
            Ok(c) => {
                let st = c.status();
                let pid = c.record.as_ref().map(|r| r.pid).unwrap_or(0);
                match st {
                    Status::Creating | Status::Created => ("created", 0, meta.last_exit.clone()),
                    Status::Running => ("running", pid, None),
                    Status::Paused => ("paused", pid, None),
                    Status::Stopped => match c.exit() {
                        Ok(Some(x)) => ("exited", 0, Some(ExitInfo::from(&x))),
                        _ => ("dead", 0, meta.last_exit.clone()),
                    },
                }
            }
            // No engine container: never created on this boot (minid restarted after a
            // reboot, or a restart failed half-way).
            Err(_) => match &meta.last_exit {
                Some(x) => ("exited", 0, Some(x.clone())),
                None if meta.started_at.is_some() => ("dead", 0, None),
                None => ("created", 0, None),
            },
        };
        let status = if e.restarting.load(Ordering::SeqCst) && status != "running" {
            "restarting"
        } else {
            status
        };
        View {
            meta,
            status,
            pid,
            exit,
        }
    }

    /// What admission counts (limits of containers that are not stopped, and reservations
    /// of creates in flight) and what placement scores by, with the container counts.
    pub fn allocated(&self) -> Allocated {
        let mut a = Allocated::default();
        let mut count = |cpu: i64, mem: i64| {
            a.limits.cpu_millis += cpu;
            a.limits.memory_bytes += mem;
            // Kubernetes' non-zero requests: the default stands in only for what was not set.
            a.requested.cpu_millis += if cpu == 0 { NONZERO_CPU_MILLIS } else { cpu };
            a.requested.memory_bytes += if mem == 0 { NONZERO_MEMORY_BYTES } else { mem };
        };
        for r in lock(&self.registry).reserved.values() {
            count(r.cpu_millis, r.memory_bytes);
        }
        let (mut running, mut total) = (0, 0);
        for e in self.entries() {
            total += 1;
            let v = self.view(&e);
            if matches!(v.status, "created" | "running" | "paused" | "restarting") {
                let r = &v.meta.config.resources;
                count(r.cpu_millis, r.memory_bytes);
            }
            if matches!(v.status, "running" | "paused") {
                running += 1;
            }
        }
        a.running = running;
        a.total = total;
        a
    }

    // ---- events ------------------------------------------------------------------------

    fn emit(&self, action: &str, m: &Meta, attributes: BTreeMap<String, String>) {
        let ev = Event {
            time: logs::format_time(SystemTime::now()),
            action: action.into(),
            id: m.id.clone(),
            name: m.name.clone(),
            image: m.config.image.clone(),
            attributes,
        };
        tracing::info!(container_id = %m.id, name = %m.name, action, "event");
        {
            let mut r = lock(&self.recent);
            r.push_back(ev.clone());
            while r.len() > RECENT_EVENTS {
                r.pop_front();
            }
        }
        let _ = self.events.send(ev);
    }

    /// An exec session's start or end, as an event of its container.
    pub fn exec_event(&self, action: &str, e: &Entry, cmd: &str, code: Option<i32>) {
        let mut attrs = BTreeMap::new();
        attrs.insert("execCommand".to_string(), cmd.to_string());
        if let Some(c) = code {
            attrs.insert("exitCode".to_string(), c.to_string());
        }
        self.emit(action, &e.meta(), attrs);
    }

    /// Recent events (for `since`) and a receiver of new ones, taken together so that none
    /// falls between them.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let r = lock(&self.recent);
        let rx = self.events.subscribe();
        (r.iter().cloned().collect(), rx)
    }

    fn save(&self, m: &Meta) -> Result<()> {
        self.save_with(m, fsutil::Durability::Durable)
    }

    fn save_with(&self, m: &Meta, d: fsutil::Durability) -> Result<()> {
        fsutil::write_json_atomic_with(&self.dir(&m.id).join(META_FILE), m, d)
    }

    /// Changes and saves what a user decided (config, a stop): durably.
    fn update_meta(&self, e: &Entry, f: impl FnOnce(&mut Meta)) -> Result<Meta> {
        self.update_meta_with(e, fsutil::Durability::Durable, f)
    }

    /// Changes and saves what minid can learn again from the engine's own records (start
    /// time, last exit, restart count, an error): atomically but without waiting for the
    /// disk, so that starts and exits do not pay an fsync.
    fn note_meta(&self, e: &Entry, f: impl FnOnce(&mut Meta)) -> Result<Meta> {
        self.update_meta_with(e, fsutil::Durability::Volatile, f)
    }

    /// [`Self::note_meta`] for a change nobody waits to see on disk (a start time): made in
    /// memory now, saved on a blocking thread (a failure there is logged). What is saved is
    /// the meta as it is by then, so a later change saved first is never undone.
    fn note_meta_soon(self: &Arc<Self>, e: &Arc<Entry>, f: impl FnOnce(&mut Meta)) -> Meta {
        let m = {
            let mut g = lock(&e.meta);
            f(&mut g);
            g.clone()
        };
        let d = self.clone();
        let e = e.clone();
        tokio::task::spawn_blocking(move || {
            let _saving = lock(&e.saving);
            if e.removing.load(Ordering::SeqCst) || e.observed.borrow().removed {
                return; // its directory is going
            }
            if let Err(err) = d.save_with(&e.meta(), fsutil::Durability::Volatile) {
                tracing::error!(container_id = %e.id, error = %err, "saving a container's state");
            }
        });
        m
    }

    fn update_meta_with(
        &self,
        e: &Entry,
        d: fsutil::Durability,
        f: impl FnOnce(&mut Meta),
    ) -> Result<Meta> {
        // Changes are saved in the order they were made: a later change's file never gets
        // overwritten by an earlier one's.
        let _saving = lock(&e.saving);
        let m = {
            let mut g = lock(&e.meta);
            f(&mut g);
            g.clone()
        };
        self.save_with(&m, d)?;
        Ok(m)
    }

    // ---- create ------------------------------------------------------------------------

    /// Creates a container; returns its id and warnings.
    pub async fn create(
        self: &Arc<Self>,
        name: String,
        mut cfg: ContainerConfig,
    ) -> Result<String> {
        cfg.validate()?;
        // The record says the mode in force, so a later change of default cannot change it.
        cfg.network_mode = cfg.network().to_string();
        if !name.is_empty() {
            validate_name(&name)?;
        }
        let d = self.clone();
        let image_ref = cfg.image.clone();
        let node = self.cfg.node_name.clone();
        let img = blocking(move || {
            let _s =
                tracing::info_span!("image resolve", container.image.name = %image_ref).entered();
            match d.images.get(&image_ref) {
                Ok(i) => Ok(i),
                Err(image::ImageError::NotFound(_)) => Err(EngineError::Missing(format!(
                    "image {image_ref:?} not found on node {node}"
                ))),
                Err(e) => Err(e.into()),
            }
        })
        .await?;
        // Admission and the name are decided under one lock, before anything is made.
        let _adm = self.admission.lock().await;
        let alloc = self.allocated().limits;
        let r = &cfg.resources;
        let free_cpu = self.capacity.cpu_millis - alloc.cpu_millis;
        let free_mem = self.capacity.memory_bytes - alloc.memory_bytes;
        if r.cpu_millis > free_cpu {
            return Err(EngineError::Exhausted(format!(
                "node {} has {}m CPU unallocated; the container asks for {}m",
                self.cfg.node_name,
                free_cpu.max(0),
                r.cpu_millis
            )));
        }
        if r.memory_bytes > free_mem {
            return Err(EngineError::Exhausted(format!(
                "node {} has {} MiB of memory unallocated; the container asks for {} MiB",
                self.cfg.node_name,
                free_mem.max(0) >> 20,
                r.memory_bytes >> 20
            )));
        }
        let id = random_hex(32)?;
        let name = {
            let reg = lock(&self.registry);
            if name.is_empty() {
                let mut n = String::new();
                for i in 0.. {
                    let b =
                        u8::from_str_radix(&id[2 * (i % 16)..2 * (i % 16) + 2], 16).unwrap_or(0);
                    let c = format!(
                        "{}_{}",
                        ADJECTIVES[(b >> 4) as usize],
                        SURNAMES[(b & 15) as usize]
                    );
                    let c = if i < 16 { c } else { format!("{c}{i}") };
                    if !reg.names.contains_key(&c) {
                        n = c;
                        break;
                    }
                }
                n
            } else if let Some(other) = reg.names.get(&name) {
                return Err(EngineError::Conflict(format!(
                    "the container name {name:?} is already in use by container {}",
                    &other[..12.min(other.len())]
                )));
            } else {
                name
            }
        };
        // The name and the resources are reserved; the making runs without the lock, so
        // creates proceed in parallel.
        {
            let mut reg = lock(&self.registry);
            reg.names.insert(name.clone(), id.clone());
            reg.reserved.insert(
                id.clone(),
                Usage {
                    cpu_millis: r.cpu_millis,
                    memory_bytes: r.memory_bytes,
                },
            );
        }
        drop(_adm);
        let d = self.clone();
        let (id2, name2, cfg2) = (id.clone(), name.clone(), cfg.clone());
        let made = blocking(move || d.make(&id2, &name2, &cfg2, &img)).await;
        self.refill_netns();
        let mut reg = lock(&self.registry);
        reg.reserved.remove(&id);
        let meta = match made {
            Ok(m) => m,
            Err(e) => {
                reg.names.remove(&name);
                return Err(e);
            }
        };
        let entry = Arc::new(new_entry(meta.clone()));
        reg.by_id.insert(id.clone(), entry.clone());
        drop(reg);
        self.emit("create", &meta, BTreeMap::new());
        self.clone().spawn_supervisor(entry);
        Ok(id)
    }

    /// Bundle, engine container (shim waiting to start), meta. Undone on failure.
    fn make(&self, id: &str, name: &str, cfg: &ContainerConfig, img: &Image) -> Result<Meta> {
        let mut standby = self.take_standby();
        // An auto-removed container ends with its run: its bundle's files are not fsynced (a
        // reboot ends the run, and what it left is removed at the next start). Written
        // atomically all the same.
        let durability = if cfg.auto_remove {
            fsutil::Durability::Volatile
        } else {
            fsutil::Durability::Durable
        };
        let dir = self.dir(id);
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("create", &dir, e))?;
        let res = (|| {
            let bundle_dir = self.bundle_dir(id);
            let overrides = ProcessOverrides {
                cmd: (!cfg.cmd.is_empty()).then(|| cfg.cmd.clone()),
                entrypoint: (!cfg.entrypoint.is_empty()).then(|| cfg.entrypoint.clone()),
                user: (!cfg.user.is_empty()).then(|| cfg.user.clone()),
                workdir: (!cfg.workdir.is_empty()).then(|| cfg.workdir.clone()),
                env: cfg.env.clone(),
            };
            let _snap = tracing::info_span!("snapshot prepare", container.id = %id).entered();
            // config.json is written once the container's settings are in the spec.
            let b = image::prepare_bundle(
                &self.images,
                img,
                &bundle_dir,
                id,
                &overrides,
                false,
                durability,
            )
            .map_err(|e| match e {
                image::ImageError::InvalidConfig(m) => EngineError::InvalidArgument(m),
                other => other.into(),
            })?;
            let mut spec = b.spec;
            let bridged = cfg.network() == "bridge";
            let made = (|| {
                drop(_snap);
                let net = if cfg.network() == "none" {
                    // A namespace of minid's making, joined by path: made here it costs well
                    // under a millisecond, where the init's own unshare waits on the kernel
                    // (RCU grace periods) for several.
                    let netns = self.own_netns(id)?;
                    Some(config::NetSetup {
                        netns,
                        files: Vec::new(),
                    })
                } else if bridged {
                    let _s = tracing::info_span!("network attach", container.id = %id).entered();
                    let n = self.bridge()?;
                    let ep = n.attach(id)?;
                    let hostname = if cfg.hostname.is_empty() {
                        id.chars().take(12).collect()
                    } else {
                        cfg.hostname.clone()
                    };
                    Some(config::NetSetup {
                        files: n.write_files(&dir, &hostname, ep.ip)?,
                        netns: ep.netns,
                    })
                } else {
                    None
                };
                config::apply(cfg, id, &mut spec, net.as_ref())?;
                fsutil::write_json_atomic_with(&bundle_dir.join("config.json"), &spec, durability)?;
                let command = spec
                    .process()
                    .as_ref()
                    .and_then(|p| p.args().clone())
                    .unwrap_or_default();
                let meta = Meta {
                    id: id.to_string(),
                    name: name.to_string(),
                    config: cfg.clone(),
                    image_id: img.id.clone(),
                    command,
                    created_at: logs::format_time(SystemTime::now()),
                    started_at: None,
                    restart_count: 0,
                    manually_stopped: false,
                    last_exit: None,
                    published: Vec::new(),
                    error: None,
                };
                // Saved (durably even for an auto-removed container: it is what tells the next
                // start to remove it) while the engine creates the container; a crash in
                // between leaves a container without a readable meta, which the next start
                // reports and sets aside like a torn one, for `rm` to remove.
                let (saved, created) = std::thread::scope(|sc| {
                    let saving = sc.spawn(|| self.save(&meta));
                    let created =
                        self.engine_create(id, cfg.open_stdin, standby.take(), Some(spec));
                    let saved = saving.join().unwrap_or_else(|_| {
                        Err(EngineError::Other(
                            "saving the container's state panicked".into(),
                        ))
                    });
                    (saved, created)
                });
                created?;
                if let Err(e) = saved {
                    let _ = container::delete::delete(&self.rt, id, true);
                    return Err(e);
                }
                Ok(meta)
            })();
            if made.is_err() {
                let _ = image::remove_bundle(&self.images, &bundle_dir);
                let _ = crate::engine::network::netlink::delete_netns(&self.netns_file(id));
                if bridged {
                    if let Ok(n) = self.bridge() {
                        let _ = n.detach(id);
                    }
                }
            }
            made
        })();
        if res.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        res
    }

    /// A standby shim for a create that begins now (told at once, so that it leaves idle
    /// priority while the container's files are made).
    fn take_standby(&self) -> Option<container::standby::Taken> {
        self.standby.as_ref().and_then(|p| p.take())
    }

    fn engine_create(
        &self,
        id: &str,
        open_stdin: bool,
        standby: Option<container::standby::Taken>,
        spec: Option<oci_spec::runtime::Spec>,
    ) -> Result<i32> {
        let _s = tracing::info_span!("shim spawn", container.id = %id).entered();
        container::create::create(
            &self.rt,
            id,
            &CreateOptions {
                monitor: Monitor::Shim,
                bundle: self.bundle_dir(id),
                console_socket: None,
                pid_file: None,
                preserve_fds: 0,
                stdio: StdioMode::Log(LogConfig {
                    path: self.log_path(id),
                    max_size: self.cfg.log_max_size,
                    max_files: self.cfg.log_max_files,
                    open_stdin,
                }),
                standby,
                spec,
            },
        )
    }

    // ---- start / stop / kill / remove --------------------------------------------------------

    /// Starts a created container, or runs an exited one again (Docker's `start`). Returns
    /// the init's pid.
    pub async fn start(self: &Arc<Self>, key: &str) -> Result<i32> {
        let e = self.find(key)?;
        let _op = e.op.lock().await;
        if e.meta().manually_stopped {
            self.update_meta(&e, |m| m.manually_stopped = false)?;
        }
        let pid = self.start_locked(&e).await?;
        Ok(pid)
    }

    async fn start_locked(self: &Arc<Self>, e: &Arc<Entry>) -> Result<i32> {
        // An exited container holds no allocation: running it again is admitted anew (and
        // the admission lock is held until it counts again).
        let v = self.view(e);
        let _adm = if matches!(v.status, "exited" | "dead") {
            let adm = self.admission.lock().await;
            let alloc = self.allocated().limits;
            let r = &v.meta.config.resources;
            if alloc.cpu_millis + r.cpu_millis > self.capacity.cpu_millis
                || alloc.memory_bytes + r.memory_bytes > self.capacity.memory_bytes
            {
                return Err(EngineError::Exhausted(format!(
                    "node {} has {}m CPU and {} MiB unallocated; container {} needs {}m and {} MiB",
                    self.cfg.node_name,
                    (self.capacity.cpu_millis - alloc.cpu_millis).max(0),
                    (self.capacity.memory_bytes - alloc.memory_bytes).max(0) >> 20,
                    v.meta.name,
                    r.cpu_millis,
                    r.memory_bytes >> 20
                )));
            }
            Some(adm)
        } else {
            None
        };
        let d = self.clone();
        let id = e.id.clone();
        let open_stdin = v.meta.config.open_stdin;
        let cfg = v.meta.config.clone();
        let started = blocking(move || {
            // The init of a created container is the one that runs: its pid is known now.
            let (status, created_pid) = match d.rt.load(&id) {
                Ok(c) => {
                    let st = c.status();
                    let pid = c.record.as_ref().map(|r| r.pid);
                    (Ok(st), pid.filter(|_| st == Status::Created))
                }
                Err(e) => (Err(e), None),
            };
            if let Ok(Status::Running) | Ok(Status::Paused) = status {
                return Ok((d.rt.load(&id)?.record()?.pid, None));
            }
            // The namespace first (made again after a reboot; bridge: with the same address),
            // since the init joins it.
            match cfg.network() {
                "bridge" => {
                    d.bridge()?.attach(&id)?;
                }
                "none" => {
                    d.own_netns(&id)?;
                }
                _ => {}
            }
            match status {
                Ok(Status::Running) | Ok(Status::Paused) | Ok(Status::Created) => {}
                Ok(Status::Stopped) | Ok(Status::Creating) => {
                    container::delete::delete(&d.rt, &id, true)?;
                    d.ensure_rootfs(&id)?;
                    d.engine_create(&id, open_stdin, d.take_standby(), None)?;
                }
                Err(EngineError::ContainerNotFound(_)) => {
                    d.ensure_rootfs(&id)?;
                    d.engine_create(&id, open_stdin, d.take_standby(), None)?;
                }
                Err(other) => return Err(other),
            }
            // The ports, withdrawn again if the start fails.
            let published = if cfg.ports.is_empty() {
                None
            } else {
                let ports = cfg
                    .ports
                    .iter()
                    .map(|p| p.to_publish())
                    .collect::<Result<Vec<_>>>()?;
                Some(d.publish(&id, &ports)?)
            };
            let started = {
                let _s = tracing::info_span!("start", container.id = %id).entered();
                container::start::start(&d.rt, &id)
            };
            if let Err(e) = started {
                if published.is_some() {
                    let _ = d.bridge().and_then(|n| n.unpublish(&id));
                }
                return Err(e);
            }
            let pid = match created_pid {
                Some(p) => p,
                None => d.rt.load(&id)?.record()?.pid,
            };
            Ok((pid, published))
        })
        .await;
        self.refill_netns();
        let (pid, published) = started?;
        let m = self.note_meta_soon(e, |m| {
            m.started_at = Some(logs::format_time(SystemTime::now()));
            m.error = None;
            if let Some(p) = &published {
                // Host ports chosen now (for `-p 80`) are the ones a restart of minid
                // publishes again.
                m.published = p.clone();
            }
        });
        self.emit("start", &m, BTreeMap::new());
        e.kick.notify_one();
        Ok(pid)
    }

    /// After a reboot the bundle's rootfs is no longer mounted: mount the snapshot again.
    fn ensure_rootfs(&self, id: &str) -> Result<()> {
        let rootfs = self.bundle_dir(id).join("rootfs");
        if fsutil::is_mountpoint(&rootfs) {
            return Ok(());
        }
        use crate::engine::snapshot::Snapshotter;
        let mounts = self.images.snapshotter().mounts(id)?;
        crate::engine::snapshot::mount_all(&mounts, &rootfs)?;
        Ok(())
    }

    /// Sends the stop signal, waits up to the timeout, then SIGKILLs every process.
    pub async fn stop(
        self: &Arc<Self>,
        key: &str,
        timeout: Option<u32>,
        signal: &str,
    ) -> Result<()> {
        let e = self.find(key)?;
        let m = self.update_meta(&e, |m| m.manually_stopped = true)?;
        // A restart waiting out its back-off will see manually_stopped and give up; one in
        // the middle of starting finishes first (the lock), and is then stopped here.
        let _op = e.op.lock().await;
        let sig_name = if !signal.is_empty() {
            signal.to_string()
        } else if !m.config.stop_signal.is_empty() {
            m.config.stop_signal.clone()
        } else {
            "SIGTERM".into()
        };
        let sig = parse_signal(&sig_name)
            .map_err(|_| EngineError::InvalidArgument(format!("{sig_name:?} is not a signal")))?;
        let timeout =
            Duration::from_secs(timeout.or(m.config.stop_timeout_secs).unwrap_or(10) as u64);
        let Some(shim) = self.live_shim(&e.id) else {
            return Ok(()); // not running: stopping is idempotent
        };
        let id = e.id.clone();
        let d = self.clone();
        let sent = blocking(move || {
            let c = d.rt.load(&id)?;
            if c.status() == Status::Paused {
                // A frozen process cannot act on a signal; Docker thaws too.
                let _ = c.cgroup()?.thaw();
            }
            match container::kill::kill(&d.rt, &id, sig, false) {
                Ok(()) => Ok(true),
                Err(EngineError::WrongState { .. }) => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await?;
        if sent
            && tokio::time::timeout(timeout, wait_pid_exit(shim))
                .await
                .is_ok()
        {
            self.emit("stop", &m, BTreeMap::new());
            return Ok(());
        }
        let id = e.id.clone();
        let d = self.clone();
        blocking(move || {
            match container::kill::kill(&d.rt, &id, nix::sys::signal::Signal::SIGKILL, true) {
                Ok(()) | Err(EngineError::WrongState { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await?;
        let _ = tokio::time::timeout(Duration::from_secs(10), wait_pid_exit(shim)).await;
        self.emit("stop", &m, BTreeMap::new());
        Ok(())
    }

    pub async fn kill(self: &Arc<Self>, key: &str, signal: &str, all: bool) -> Result<()> {
        let e = self.find(key)?;
        let sig_name = if signal.is_empty() { "SIGKILL" } else { signal };
        let sig = parse_signal(sig_name)
            .map_err(|_| EngineError::InvalidArgument(format!("{sig_name:?} is not a signal")))?;
        let id = e.id.clone();
        let d = self.clone();
        blocking(move || {
            let st =
                d.rt.load(&id)
                    .map(|c| c.status())
                    .unwrap_or(Status::Stopped);
            if !matches!(st, Status::Running | Status::Paused) {
                return Err(EngineError::Precondition(format!(
                    "container {} is not running",
                    &id[..12]
                )));
            }
            container::kill::kill(&d.rt, &id, sig, all)
        })
        .await?;
        let mut attrs = BTreeMap::new();
        attrs.insert("signal".into(), (sig as i32).to_string());
        self.emit("kill", &e.meta(), attrs);
        Ok(())
    }

    /// Removes the container (killing it first with `force`); false when it did not exist.
    pub async fn remove(self: &Arc<Self>, key: &str, force: bool) -> Result<Option<String>> {
        let e = match self.find(key) {
            Ok(e) => e,
            Err(EngineError::ContainerNotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let _op = e.op.lock().await;
        if !force {
            let v = self.view(&e);
            if matches!(v.status, "running" | "paused" | "restarting") {
                return Err(EngineError::Precondition(format!(
                    "container {} is {}: stop it first or remove with force",
                    v.meta.name, v.status
                )));
            }
        }
        {
            // Under the save lock: a state save in flight (note_meta_soon) ends before the
            // directory goes, and none starts after.
            let _saving = lock(&e.saving);
            e.removing.store(true, Ordering::SeqCst);
        }
        // A live container is killed first and its exit noted, so that waiters (and the
        // tombstone) learn how it ended (137) rather than nothing.
        if let Some(shim) = self.live_shim(&e.id) {
            let d = self.clone();
            let id = e.id.clone();
            let _ = blocking(move || {
                let c = d.rt.load(&id)?;
                let _ = c.cgroup()?.thaw();
                container::kill::kill(&d.rt, &id, nix::sys::signal::Signal::SIGKILL, true)
            })
            .await;
            let _ = tokio::time::timeout(Duration::from_secs(10), wait_pid_exit(shim)).await;
            if let Some(exit) = self.unhandled_exit(&e) {
                lock(&e.meta).last_exit = Some(exit.clone());
                e.observed.send_modify(|o| {
                    o.exits += 1;
                    o.last_exit = Some(exit);
                });
            }
        }
        let d = self.clone();
        let id = e.id.clone();
        let res = blocking(move || d.destroy(&id)).await;
        let leftovers = match res {
            Ok(l) => l,
            Err(err) => {
                e.removing.store(false, Ordering::SeqCst);
                e.kick.notify_one();
                return Err(err);
            }
        };
        // The tombstone first: a waiter that no longer finds the container finds how it ended.
        {
            let m = e.meta();
            let exit = self.view(&e).exit.or(m.last_exit.clone());
            let mut t = lock(&self.tombstones);
            t.retain(|_, (_, at)| at.elapsed() < TOMBSTONE_TTL);
            t.insert(m.id.clone(), (exit.clone(), Instant::now()));
            t.insert(m.name.clone(), (exit, Instant::now()));
        }
        {
            let mut reg = lock(&self.registry);
            reg.by_id.remove(&e.id);
            let name = e.meta().name;
            if reg.names.get(&name) == Some(&e.id) {
                reg.names.remove(&name);
            }
        }
        // Counted before anyone hears of the removal: an image removal that follows waits
        // for these files (see settle_deletions).
        *lock(&self.deleting) += 1;
        e.observed.send_modify(|o| o.removed = true);
        e.kick.notify_one();
        self.emit("destroy", &e.meta(), BTreeMap::new());
        // The container is gone for every caller; its files go after the answer.
        let d = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut failed = lock(&d.deletion_failed);
            if *failed {
                *failed = !d.sweep_leftovers();
            }
            let dir = leftovers.files.clone();
            if let Err(err) = d.delete_leftovers(leftovers) {
                tracing::error!(dir = %dir.display(), error = %err, "deleting a removed container's cgroup and files (tried again after the next removal)");
                *failed = true;
            }
            drop(failed);
            *lock(&d.deleting) -= 1;
            d.deleted.notify_all();
        });
        Ok(Some(e.id.clone()))
    }

    /// Waits (at most `limit`) until the files of removed containers are deleted: their
    /// snapshots still hold their images' layers.
    pub fn settle_deletions(&self, limit: Duration) {
        let g = lock(&self.deleting);
        let _ = self.deleted.wait_timeout_while(g, limit, |n| *n > 0);
    }

    /// Removes the container from the engine (retired: see [`container::delete::retire`]) and
    /// the network, and renames its directory out of the way (the container no longer exists
    /// from here on); returns what [`Self::delete_leftovers`] deletes after the caller has its
    /// answer: the engine's retired container (its cgroup, its state) and the renamed
    /// directory (the rootfs mount, the snapshot, the log). A crash in between leaves both
    /// renamed, and the next start deletes them.
    fn destroy(&self, id: &str) -> Result<Leftovers> {
        let engine = match container::delete::retire(&self.rt, id, true) {
            Ok(r) => Some(r),
            Err(EngineError::ContainerNotFound(_)) => None,
            Err(e) => return Err(e),
        };
        let rest = (|| {
            // The namespace of a bridge or none container, then (bridge) its address and veth.
            let _ = crate::engine::network::netlink::delete_netns(&self.netns_file(id));
            if let Ok(n) = &self.net {
                if n.address_of(id).is_some() {
                    n.detach(id)?;
                }
            }
            let dir = self.dir(id);
            let gone = self.containers_dir().join(format!("{DELETING_PREFIX}{id}"));
            match std::fs::rename(&dir, &gone) {
                Ok(()) => Ok(gone),
                // Where it cannot be renamed, the files go now.
                Err(_) => self.delete_files(&dir).map(|()| dir),
            }
        })();
        match rest {
            Ok(files) => Ok(Leftovers { engine, files }),
            Err(e) => {
                // The engine's part is retired already: it goes now, not with nobody to end it.
                if let Some(r) = engine {
                    if let Err(fe) = r.finish(None) {
                        tracing::error!(container_id = %id, error = %fe, "finishing a removed container's cgroup and state");
                    }
                }
                Err(e)
            }
        }
    }

    /// Deletes what a removal left (see [`Self::destroy`]): the engine's part first (its cgroup
    /// is empty once the container's processes are gone), then the files.
    fn delete_leftovers(&self, l: Leftovers) -> Result<()> {
        let engine = l.engine.map_or(Ok(Vec::new()), |r| r.finish(None));
        let files = self.delete_files(&l.files);
        engine.and(files)
    }

    /// Deletes what removals left behind (minid stopped first, or a deletion failed): the
    /// engine's retired containers and the renamed container directories. False if
    /// something is still left.
    fn sweep_leftovers(&self) -> bool {
        let mut clean = true;
        for (dir, e) in container::delete::finish_retired(&self.rt) {
            tracing::error!(dir = %dir.display(), error = %e, "finishing a removed container's cgroup and state");
            clean = false;
        }
        let dir = self.containers_dir();
        for ent in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if !ent
                .file_name()
                .to_string_lossy()
                .starts_with(DELETING_PREFIX)
            {
                continue;
            }
            if let Err(e) = self.delete_files(&ent.path()) {
                tracing::error!(dir = %ent.path().display(), error = %e, "deleting a removed container's files");
                clean = false;
            }
        }
        clean
    }

    /// Deletes a removed container's directory: unmounts its rootfs, removes its snapshot,
    /// then the rest. A directory already gone is deleted.
    fn delete_files(&self, dir: &Path) -> Result<()> {
        let bundle = dir.join("bundle");
        if bundle.join(image::bundle::SNAPSHOT_FILE).exists() {
            // minid's bundles use the container id as their snapshot's key: a snapshot.json
            // torn by a crash (an auto-removed container's is not fsynced) still finds it.
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let id = name.strip_prefix(DELETING_PREFIX).unwrap_or(&name);
            image::remove_bundle_or(&self.images, &bundle, Some(id))?;
        }
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io("remove", dir, e)),
        }
    }

    pub async fn pause(self: &Arc<Self>, key: &str, pause: bool) -> Result<()> {
        let e = self.find(key)?;
        let d = self.clone();
        let id = e.id.clone();
        blocking(move || {
            if pause {
                container::state::pause(&d.rt, &id)
            } else {
                container::state::resume(&d.rt, &id)
            }
        })
        .await?;
        self.emit(
            if pause { "pause" } else { "unpause" },
            &e.meta(),
            BTreeMap::new(),
        );
        Ok(())
    }

    // ---- waiting -----------------------------------------------------------------------

    /// Waits for `condition` ("not-running", "next-exit", "removed"); returns the exit.
    pub async fn wait(self: &Arc<Self>, key: &str, condition: &str) -> Result<Option<ExitInfo>> {
        let e = match self.find(key) {
            Ok(e) => e,
            Err(EngineError::ContainerNotFound(k)) => {
                let t = lock(&self.tombstones);
                return match t.get(&k) {
                    Some((x, _)) => Ok(x.clone()),
                    None => Err(EngineError::ContainerNotFound(k)),
                };
            }
            Err(e) => return Err(e),
        };
        let mut rx = e.observed.subscribe();
        let start = rx.borrow().exits;
        loop {
            let o = rx.borrow_and_update().clone();
            let done = match condition {
                "" | "not-running" => {
                    let v = self.view(&e);
                    if !matches!(v.status, "running" | "paused" | "restarting") {
                        // An exit not yet handled by the supervisor is read from the engine.
                        return Ok(v.exit.or(o.last_exit));
                    }
                    false
                }
                "next-exit" => o.exits > start,
                "removed" => o.removed || o.remove_failed,
                other => {
                    return Err(EngineError::InvalidArgument(format!(
                        "wait condition {other:?} is not not-running, next-exit or removed"
                    )))
                }
            };
            if done || o.removed {
                return Ok(o.last_exit);
            }
            if rx.changed().await.is_err() {
                return Ok(o.last_exit);
            }
        }
    }

    /// Whether a follower of this container's log should stop at the end of the file.
    pub fn log_done(&self, id: &str) -> bool {
        match self.find(id) {
            Ok(e) => !matches!(
                self.view(&e).status,
                "created" | "running" | "paused" | "restarting"
            ),
            Err(_) => true,
        }
    }

    // ---- supervision -------------------------------------------------------------------

    fn live_shim(&self, id: &str) -> Option<(i32, u64)> {
        let c = self.rt.load(id).ok()?;
        let r = c.record.as_ref()?;
        if r.shim_pid > 0
            && c.status() != Status::Stopped
            && container::pid_is_ours(r.shim_pid, r.shim_start_time)
        {
            Some((r.shim_pid, r.shim_start_time))
        } else {
            None
        }
    }

    fn spawn_supervisor(self: Arc<Self>, e: Arc<Entry>) {
        tokio::spawn(async move { self.supervise(e).await });
    }

    async fn supervise(self: Arc<Self>, e: Arc<Entry>) {
        let m = e.meta();
        // After a reboot the engine's state (on tmpfs) is gone: containers whose policy says
        // always or unless-stopped, and that the user had not stopped, run again.
        if m.started_at.is_some()
            && !m.manually_stopped
            && matches!(
                m.config.restart,
                RestartPolicy::Always | RestartPolicy::UnlessStopped
            )
            && matches!(self.rt.load(&e.id), Err(EngineError::ContainerNotFound(_)))
        {
            let _op = e.op.lock().await;
            if let Err(err) = self.start_locked(&e).await {
                tracing::error!(container_id = %e.id, error = %err, "restart after a reboot failed");
                let _ = self.note_meta(&e, |m| m.error = Some(err.to_string()));
            }
        }
        loop {
            if e.observed.borrow().removed {
                return;
            }
            if e.removing.load(Ordering::SeqCst) {
                // A removal in progress: it either completes (removed) or fails, and then
                // this container is still ours to supervise.
                e.kick.notified().await;
                continue;
            }
            // An exit to handle (also one that happened while minid was down)?
            if let Some(exit) = self.unhandled_exit(&e) {
                self.clone().on_exit(&e, exit).await;
                continue;
            }
            match self.live_shim(&e.id) {
                Some(shim) => wait_pid_exit(shim).await,
                None => e.kick.notified().await,
            }
        }
    }

    fn unhandled_exit(&self, e: &Entry) -> Option<ExitInfo> {
        let c = self.rt.load(&e.id).ok()?;
        if c.status() != Status::Stopped {
            return None;
        }
        let x = match c.exit() {
            Ok(Some(x)) => ExitInfo::from(&x),
            // The shim died without recording an exit: nothing will ever record it.
            _ => ExitInfo {
                code: 255,
                signal: 0,
                oom_killed: false,
                finished_at: c
                    .record
                    .as_ref()
                    .map(|r| r.created.clone())
                    .unwrap_or_default(),
            },
        };
        let m = e.meta();
        // Started: minid noted it, or the engine says so (a start whose note had not reached
        // the disk when minid stopped). An init that died before its start is no exit to act
        // on.
        let started = m.started_at.is_some() || c.started();
        if !started || m.last_exit.as_ref() == Some(&x) {
            return None;
        }
        Some(x)
    }

    async fn on_exit(self: Arc<Self>, e: &Arc<Entry>, exit: ExitInfo) {
        let _op = e.op.lock().await;
        if e.removing.load(Ordering::SeqCst) || self.unhandled_exit(e).as_ref() != Some(&exit) {
            return;
        }
        // A stopped container publishes nothing (Docker withdraws its ports too).
        if let Ok(n) = &self.net {
            if let Err(err) = n.unpublish(&e.id) {
                tracing::error!(container_id = %e.id, error = %err, "withdrawing published ports");
            }
        }
        // Waiters first (their answer comes from the exit record itself), then the disk.
        e.observed.send_modify(|o| {
            o.exits += 1;
            o.last_exit = Some(exit.clone());
        });
        let before = e.meta();
        let removed_next = before.config.auto_remove
            && (before.manually_stopped
                || !before
                    .config
                    .restart
                    .should_restart(exit.code, before.restart_count));
        let m = if removed_next {
            // Its meta file goes next (a failed removal saves it, error and all).
            lock(&e.meta).last_exit = Some(exit.clone());
            e.meta()
        } else {
            match self.note_meta(e, |m| m.last_exit = Some(exit.clone())) {
                Ok(m) => m,
                Err(err) => {
                    tracing::error!(container_id = %e.id, error = %err, "recording an exit");
                    lock(&e.meta).last_exit = Some(exit.clone());
                    e.meta()
                }
            }
        };
        if exit.oom_killed {
            self.emit("oom", &m, BTreeMap::new());
        }
        let mut attrs = BTreeMap::new();
        attrs.insert("exitCode".into(), exit.code.to_string());
        self.emit("die", &m, attrs);
        let restart =
            !m.manually_stopped && m.config.restart.should_restart(exit.code, m.restart_count);
        if !restart {
            if m.config.auto_remove {
                drop(_op);
                if let Err(err) = self.remove(&e.id, true).await {
                    tracing::error!(container_id = %e.id, error = %err, "auto-remove");
                    let _ =
                        self.note_meta(e, |m| m.error = Some(format!("auto-remove failed: {err}")));
                    e.observed.send_modify(|o| o.remove_failed = true);
                }
            }
            return;
        }
        // Docker's back-off: 100 ms doubling per consecutive restart, at most a minute; a
        // container that ran for 10 s or more starts again from 100 ms.
        let ran = m
            .started_at
            .as_deref()
            .and_then(|s| humantime::parse_rfc3339_weak(s).ok())
            .and_then(|s| SystemTime::now().duration_since(s).ok())
            .unwrap_or_default();
        let streak = if ran >= Duration::from_secs(10) {
            0
        } else {
            m.restart_count.min(10)
        };
        let delay = Duration::from_millis(100u64 << streak).min(Duration::from_secs(60));
        e.restarting.store(true, Ordering::SeqCst);
        drop(_op);
        let deadline = Instant::now() + delay;
        tokio::time::sleep_until(deadline.into()).await;
        let _op = e.op.lock().await;
        e.restarting.store(false, Ordering::SeqCst);
        if e.removing.load(Ordering::SeqCst) || e.meta().manually_stopped {
            return;
        }
        let _ = self.note_meta(e, |m| m.restart_count += 1);
        self.emit("restart", &e.meta(), BTreeMap::new());
        if let Err(err) = self.start_locked(e).await {
            tracing::error!(container_id = %e.id, error = %err, "restart failed");
            let _ = self.note_meta(e, |m| m.error = Some(err.to_string()));
        }
    }

    // ---- processes ---------------------------------------------------------------------------

    /// The processes in the container's cgroup (`top`), read from `/proc`.
    pub fn top(&self, e: &Entry) -> Result<Vec<ProcessInfo>> {
        let c = self.rt.load(&e.id)?;
        if !matches!(c.status(), Status::Running | Status::Paused) {
            return Err(EngineError::Precondition(format!(
                "container {} is not running",
                e.meta().name
            )));
        }
        let mut out = Vec::new();
        for pid in c.cgroup()?.pids()? {
            if let Some(p) = ProcessInfo::read(pid) {
                out.push(p);
            }
        }
        out.sort_by_key(|p| p.pid);
        Ok(out)
    }

    // ---- stats and live updates ------------------------------------------------------------

    /// The container's cgroup statistics now, and its network bytes (received, sent).
    pub fn stats(&self, e: &Entry) -> Result<(crate::engine::cgroups::Stats, (u64, u64))> {
        let c = self.rt.load(&e.id)?;
        let s = c.cgroup()?.stats()?;
        let pid = c.record.as_ref().map(|r| r.pid).unwrap_or(0);
        Ok((s, net_io(pid)))
    }

    /// Changes limits of a live container (its cgroup) and remembers them, and the restart
    /// policy. Raising CPU or memory is admitted against the node's free capacity.
    pub async fn update(
        self: &Arc<Self>,
        key: &str,
        change: ResourceUpdate,
        restart: Option<RestartPolicy>,
    ) -> Result<()> {
        let e = self.find(key)?;
        let _op = e.op.lock().await;
        let _adm = self.admission.lock().await;
        let mut cfg = e.meta().config;
        let old = cfg.resources.clone();
        let r = &mut cfg.resources;
        if let Some(v) = change.cpu_millis {
            r.cpu_millis = v;
        }
        if let Some(v) = change.memory_bytes {
            r.memory_bytes = v;
        }
        if let Some(v) = change.memory_swap_bytes {
            r.memory_swap_bytes = v;
        }
        if let Some(v) = change.pids_limit {
            r.pids_limit = v;
        }
        if let Some(v) = &change.cpuset_cpus {
            r.cpuset_cpus = v.clone();
        }
        if let Some(v) = change.io_weight {
            r.io_weight = v;
        }
        if let Some(p) = restart {
            cfg.restart = p;
        }
        cfg.validate()?;
        let alloc = self.allocated().limits;
        let v = self.view(&e);
        let counted = matches!(v.status, "created" | "running" | "paused" | "restarting");
        let extra_cpu = cfg.resources.cpu_millis - if counted { old.cpu_millis } else { 0 };
        let extra_mem = cfg.resources.memory_bytes - if counted { old.memory_bytes } else { 0 };
        if extra_cpu > 0 && alloc.cpu_millis + extra_cpu > self.capacity.cpu_millis {
            return Err(EngineError::Exhausted(format!(
                "node {} cannot give {}m more CPU",
                self.cfg.node_name, extra_cpu
            )));
        }
        if extra_mem > 0 && alloc.memory_bytes + extra_mem > self.capacity.memory_bytes {
            return Err(EngineError::Exhausted(format!(
                "node {} cannot give {} MiB more memory",
                self.cfg.node_name,
                extra_mem >> 20
            )));
        }
        if matches!(v.status, "created" | "running" | "paused") {
            let mut spec = crate::engine::spec::default_spec();
            config::apply(&cfg, &e.id, &mut spec, None)?;
            let mut res = spec
                .linux()
                .as_ref()
                .and_then(|l| l.resources().clone())
                .unwrap_or_default();
            // Devices are set once at create; an update must not reset them.
            res.set_devices(None);
            let d = self.clone();
            let id = e.id.clone();
            blocking(move || {
                let c = d.rt.load(&id)?;
                c.cgroup()?.apply(&res)?;
                Ok(())
            })
            .await?;
        }
        // The bundle's spec follows, so a restart keeps the new limits.
        let bundle_cfg = self.bundle_dir(&e.id).join("config.json");
        if let Ok(mut spec) = crate::engine::spec::load(&self.bundle_dir(&e.id)) {
            config::apply(&cfg, &e.id, &mut spec, None)?;
            fsutil::write_json_atomic(&bundle_cfg, &spec)?;
        }
        let m = self.update_meta(&e, |m| m.config = cfg)?;
        self.emit("update", &m, BTreeMap::new());
        Ok(())
    }

    // ---- images ------------------------------------------------------------------------

    /// Containers that use the image with `image_id`.
    pub fn image_users(&self, image_id: &str) -> Vec<String> {
        self.entries()
            .iter()
            .map(|e| e.meta())
            .filter(|m| m.image_id == image_id)
            .map(|m| m.name)
            .collect()
    }
}

fn new_entry(meta: Meta) -> Entry {
    let (observed, _) = watch::channel(Observed {
        exits: 0,
        last_exit: meta.last_exit.clone(),
        removed: false,
        remove_failed: false,
    });
    Entry {
        id: meta.id.clone(),
        meta: Mutex::new(meta),
        saving: Mutex::new(()),
        op: tokio::sync::Mutex::new(()),
        observed,
        kick: Notify::new(),
        restarting: AtomicBool::new(false),
        removing: AtomicBool::new(false),
    }
}

/// Bytes received and sent on the interfaces of `pid`'s network namespace, loopback
/// excluded (proc(5), /proc/PID/net/dev); zero when it shares the host's namespace, whose
/// traffic is not the container's (Docker shows none for `--network host` either).
fn net_io(pid: i32) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    if pid <= 0 {
        return (0, 0);
    }
    let ns = |p: String| std::fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
    if ns(format!("/proc/{pid}/ns/net")) == ns("/proc/self/ns/net".into()) {
        return (0, 0);
    }
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else {
        return (0, 0);
    };
    let (mut rx, mut tx) = (0u64, 0u64);
    for line in text.lines().skip(2) {
        let Some((iface, rest)) = line.split_once(':') else {
            continue;
        };
        if iface.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() >= 9 {
            rx = rx.saturating_add(f[0]);
            tx = tx.saturating_add(f[8]);
        }
    }
    (rx, tx)
}

/// Resolves when the process exits: a pidfd polls readable then (pidfd_open(2)). The start
/// time is checked after the pidfd is open, so a recycled pid cannot be mistaken for it.
pub async fn wait_pid_exit((pid, start_time): (i32, u64)) {
    // SAFETY: pidfd_open(2) with a pid and no flags; the result is checked and owned.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return; // already gone
        }
        // No pidfd (EMFILE, ENOMEM, an old kernel): watch the start time instead.
        while container::pid_is_ours(pid, start_time) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        return;
    }
    // SAFETY: the kernel just returned this descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if !container::pid_is_ours(pid, start_time) {
        return;
    }
    // SAFETY: `fd` is an OwnedFd moved into the AsyncFd, so it stays open and refers to the
    // same pidfd for the AsyncFd's whole life.
    let registered = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    };
    match registered {
        Ok(afd) => {
            let _ = afd.readable().await;
        }
        Err(_) => {
            // Cannot register the pidfd: fall back to checking the start time.
            while container::pid_is_ours(pid, start_time) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
