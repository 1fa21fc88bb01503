//! Links, addresses and routes over rtnetlink, and network namespaces kept by bind mounts.
//!
//! The engine is synchronous; each operation runs on a fresh thread with a current-thread
//! tokio runtime for rtnetlink. That thread is also where a namespace is entered: a netlink
//! socket belongs to the network namespace its thread was in when it was opened, so the
//! container side of a veth is configured over a socket opened after `setns`, while the host
//! side keeps a socket opened before. The thread ends with the operation, so no thread of
//! minid is ever left in a container's namespace.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::engine::{EngineError, Result};

fn nl_err(what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Other(format!("{what}: {e}"))
}

/// Runs `f` on a new thread with a tokio runtime; `f` may enter namespaces.
fn on_thread<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|_| Err(EngineError::Other("network thread panicked".into())))
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| nl_err("network runtime", e))
}

/// A netlink connection in this thread's current network namespace.
fn connect() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| nl_err("netlink socket", e))?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Whether `e` is the kernel's "no such device" (a link that does not exist, or no more).
fn is_enodev(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code().abs() == libc::ENODEV)
}

async fn index_of(h: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        // The kernel answers a lookup of a missing name with ENODEV.
        Err(e) if is_enodev(&e) => Ok(None),
        Err(e) => Err(nl_err(&format!("looking up link {name}"), e)),
    }
}

async fn need_index(h: &Handle, name: &str) -> Result<u32> {
    index_of(h, name)
        .await?
        .ok_or_else(|| EngineError::Other(format!("link {name} does not exist")))
}

/// Makes bridge `name` exist, up, with `gateway/prefix` on it. Idempotent.
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<()> {
    on_thread(|| {
        runtime()?.block_on(async {
            let h = connect()?;
            let idx = match index_of(&h, name).await? {
                Some(i) => i,
                None => {
                    h.link()
                        .add(LinkBridge::new(name).build())
                        .execute()
                        .await
                        .map_err(|e| nl_err(&format!("creating bridge {name}"), e))?;
                    need_index(&h, name).await?
                }
            };
            let mut addrs = h.address().get().set_link_index_filter(idx).execute();
            let mut has = false;
            while let Some(a) = addrs
                .try_next()
                .await
                .map_err(|e| nl_err("listing addresses", e))?
            {
                use rtnetlink::packet_route::address::AddressAttribute;
                has |= a.attributes.iter().any(|at| {
                    matches!(at, AddressAttribute::Address(std::net::IpAddr::V4(ip)) if *ip == gateway)
                });
            }
            if !has {
                h.address()
                    .add(idx, gateway.into(), prefix)
                    .execute()
                    .await
                    .map_err(|e| nl_err(&format!("adding {gateway}/{prefix} to {name}"), e))?;
            }
            h.link()
                .set(LinkUnspec::new_with_index(idx).up().build())
                .execute()
                .await
                .map_err(|e| nl_err(&format!("setting {name} up"), e))
        })
    })
}

/// Deletes link `name` if it exists (a veth takes its peer with it).
pub fn delete_link(name: &str) -> Result<()> {
    on_thread(|| {
        runtime()?.block_on(async {
            let h = connect()?;
            if let Some(i) = index_of(&h, name).await? {
                match h.link().del(i).execute().await {
                    // Gone meanwhile (its namespace's end took it along): as wanted.
                    Err(e) if is_enodev(&e) => {}
                    r => r.map_err(|e| nl_err(&format!("deleting link {name}"), e))?,
                }
            }
            Ok(())
        })
    })
}

/// Whether link `name` exists in the host's namespace.
pub fn link_exists(name: &str) -> Result<bool> {
    on_thread(|| runtime()?.block_on(async { Ok(index_of(&connect()?, name).await?.is_some()) }))
}

/// Creates a network namespace kept by a bind mount at `path` (an empty file is made), with
/// its loopback up.
pub fn create_netns(path: &Path) -> Result<()> {
    File::create(path).map_err(|e| EngineError::io("create", path, e))?;
    let made = on_thread(|| {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| EngineError::sys("unshare(CLONE_NEWNET)".to_string(), e))?;
        crate::engine::namespaces::loopback_up()?;
        mount(
            Some("/proc/thread-self/ns/net"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| EngineError::sys(format!("bind-mounting a netns on {}", path.display()), e))
    });
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Network namespaces made ahead of time (loopback up), each held by a descriptor, so that a
/// container's own namespace costs a bind mount when it is made: making one costs most of a
/// millisecond of the kernel's per-namespace setup. [`Self::refill`] makes the missing ones on
/// a thread of its own (at the caller's priority: setting a namespace up takes the kernel's
/// network locks); a caller refills once the create that took one is done, so that the next
/// one is not made while that create still runs.
#[derive(Debug)]
pub struct NetnsPool {
    size: usize,
    ready: Mutex<Vec<OwnedFd>>,
    filling: AtomicBool,
}

impl NetnsPool {
    /// A pool of `size` namespaces, made in the background.
    pub fn new(size: usize) -> Arc<NetnsPool> {
        let pool = Arc::new(NetnsPool {
            size,
            ready: Mutex::new(Vec::new()),
            filling: AtomicBool::new(false),
        });
        pool.refill();
        pool
    }

    /// Keeps a new namespace at `path`, as [`create_netns`] does: one of the pool's if it has
    /// one, else one made now.
    pub fn create_at(&self, path: &Path) -> Result<()> {
        let ready = self.ready.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let Some(ns) = ready else {
            return create_netns(path);
        };
        File::create(path).map_err(|e| EngineError::io("create", path, e))?;
        let src = format!("/proc/self/fd/{}", ns.as_raw_fd());
        let res = mount(
            Some(src.as_str()),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        );
        // The mount holds the namespace now; the descriptor goes.
        drop(ns);
        res.map_err(|e| {
            let _ = std::fs::remove_file(path);
            EngineError::sys(format!("bind-mounting a netns on {}", path.display()), e)
        })
    }

    /// How many namespaces wait in the pool.
    pub fn ready(&self) -> usize {
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Makes the missing namespaces in the background (nothing if the pool is full or being
    /// filled).
    pub fn refill(self: &Arc<Self>) {
        if self.filling.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = self.clone();
        let spawned = std::thread::Builder::new()
            .name("netns-pool".into())
            .spawn(move || loop {
                // Each unshare leaves this thread in a new namespace, held by the descriptor
                // opened on it; the thread's own reference goes when it ends.
                let mut failed = false;
                while pool.ready() < pool.size {
                    match make_held_netns() {
                        Ok(ns) => pool
                            .ready
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(ns),
                        Err(e) => {
                            // Creates make their own meanwhile; tried again after the next.
                            tracing::warn!(error = %e, "making a network namespace ahead");
                            failed = true;
                            break;
                        }
                    }
                }
                pool.filling.store(false, Ordering::SeqCst);
                // A take between the last check and now found us filling: fill for it.
                if failed || pool.ready() >= pool.size || pool.filling.swap(true, Ordering::SeqCst)
                {
                    break;
                }
            });
        if spawned.is_err() {
            self.filling.store(false, Ordering::SeqCst);
        }
    }
}

/// Moves the calling thread into a new network namespace with its loopback up; returns a
/// descriptor that holds it.
fn make_held_netns() -> Result<OwnedFd> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| EngineError::sys("unshare(CLONE_NEWNET)", e))?;
    crate::engine::namespaces::loopback_up()?;
    let f = File::open("/proc/thread-self/ns/net")
        .map_err(|e| EngineError::io("open", "/proc/thread-self/ns/net", e))?;
    Ok(f.into())
}

/// Releases the namespace kept at `path` (it ends with its last process) and removes the
/// file. Idempotent.
pub fn delete_netns(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(EngineError::sys(
                format!("unmounting netns {}", path.display()),
                e,
            ))
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::io("remove", path, e)),
    }
}

/// What [`attach_veth`] sets up.
pub struct VethPlan<'a> {
    pub bridge: &'a str,
    pub netns: &'a Path,
    /// The host end's name (at most 15 bytes); the container end is `eth0`.
    pub host_if: &'a str,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: Option<u32>,
}

/// Creates a veth pair: the host end joins the bridge, the other end moves into the
/// namespace as `eth0` with the address and a default route via the gateway. On failure the
/// pair is deleted (the caller owns the namespace and the address).
pub fn attach_veth(p: &VethPlan) -> Result<()> {
    let r = on_thread(|| runtime()?.block_on(attach_veth_async(p)));
    if r.is_err() {
        let _ = delete_link(p.host_if);
    }
    r
}

async fn attach_veth_async(p: &VethPlan<'_>) -> Result<()> {
    use rtnetlink::packet_route::link::{InfoData, InfoVeth};
    let host = connect()?;
    let br = need_index(&host, p.bridge).await?;
    let ns = File::open(p.netns).map_err(|e| EngineError::io("open", p.netns, e))?;
    // The pair is made with its container end already in the namespace and named eth0: no
    // move and no rename afterwards (each move waits for an RCU grace period).
    let peer = LinkUnspec::new_with_name("eth0")
        .setns_by_fd(ns.as_raw_fd())
        .build();
    let mut veth =
        LinkVeth::new(p.host_if, "eth0").set_info_data(InfoData::Veth(InfoVeth::Peer(peer)));
    if let Some(m) = p.mtu {
        veth = veth.mtu(m);
    }
    host.link()
        .add(veth.build())
        .execute()
        .await
        .map_err(|e| nl_err(&format!("creating veth {}", p.host_if), e))?;
    let hi = need_index(&host, p.host_if).await?;
    host.link()
        .set(LinkUnspec::new_with_index(hi).controller(br).up().build())
        .execute()
        .await
        .map_err(|e| nl_err(&format!("attaching {} to {}", p.host_if, p.bridge), e))?;
    // From here on this thread is in the container's namespace; `host` stays on the host's.
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|e| EngineError::sys("entering the container's netns".to_string(), e))?;
    let c = connect()?;
    let lo = need_index(&c, "lo").await?;
    c.link()
        .set(LinkUnspec::new_with_index(lo).up().build())
        .execute()
        .await
        .map_err(|e| nl_err("setting lo up", e))?;
    let idx = need_index(&c, "eth0").await?;
    c.address()
        .add(idx, p.ip.into(), p.prefix)
        .execute()
        .await
        .map_err(|e| nl_err(&format!("adding {}/{} to eth0", p.ip, p.prefix), e))?;
    c.link()
        .set(LinkUnspec::new_with_index(idx).up().build())
        .execute()
        .await
        .map_err(|e| nl_err("setting eth0 up", e))?;
    c.route()
        .add(
            RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(p.gateway)
                .build(),
        )
        .execute()
        .await
        .map_err(|e| nl_err(&format!("adding the default route via {}", p.gateway), e))
}

/// Routes `dst` via `gateway` in the host's main table (replacing a route to `dst` there).
pub fn ensure_route(dst: Ipv4Addr, prefix: u8, gateway: Ipv4Addr) -> Result<()> {
    on_thread(|| {
        runtime()?.block_on(async {
            connect()?
                .route()
                .add(
                    RouteMessageBuilder::<Ipv4Addr>::new()
                        .destination_prefix(dst, prefix)
                        .gateway(gateway)
                        .build(),
                )
                .replace()
                .execute()
                .await
                .map_err(|e| nl_err(&format!("routing {dst}/{prefix} via {gateway}"), e))
        })
    })
}

/// Writes `value` to a sysctl under /proc/sys (`net/ipv4/ip_forward`).
pub fn sysctl(key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key);
    std::fs::write(&path, value).map_err(|e| EngineError::io("write", &path, e))
}
