//! The server side of mutual TLS: rustls with client certificates required, a CRL, reload on
//! SIGHUP, and the caller's identity taken from the verified certificate.
//!
//! tonic's own TLS option can neither check a CRL nor swap certificates without a restart, so
//! minid terminates TLS itself: it accepts TCP connections, runs the rustls handshake with the
//! *current* [`ServerConfig`] (an `ArcSwap`, replaced on SIGHUP; the listener and the
//! connections already open are untouched), and hands tonic a stream of [`TlsConn`]s. Each
//! carries a [`Peer`] — the common name and role (organizational unit) of the client's
//! certificate, see `minictl::pki` — which tonic puts into every request's extensions.
//!
//! Only TLS 1.3 is offered. A client without a certificate, with one from another CA, an
//! expired or a revoked one fails the handshake; rustls sends the matching alert
//! (certificate_required, unknown_ca, certificate_expired, certificate_revoked), which
//! minictl turns into a sentence. The failure is logged here with the peer's address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use arc_swap::ArcSwap;
use rustls::pki_types::CertificateRevocationListDer;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

pub use minictl::pki::Role;
use minictl::tls::{read_certs, read_key};

/// The PEM files of a node's TLS identity.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Optional; without it no certificate is considered revoked.
    pub crl: Option<PathBuf>,
}

/// Who is calling, from the verified client certificate.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub name: String,
    /// None when the certificate carries no role we know: such a caller may only read.
    pub role: Option<Role>,
}

impl Peer {
    pub fn may_mutate(&self) -> bool {
        self.role == Some(Role::Operator)
    }
}

/// Builds the server configuration from the files as they are now.
pub fn server_config(p: &TlsPaths) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(&p.ca)? {
        roots
            .add(c)
            .map_err(|e| anyhow!("{}: not a usable CA certificate: {e}", p.ca.display()))?;
    }
    let mut crls = Vec::new();
    if let Some(crl) = &p.crl {
        let data =
            std::fs::read(crl).with_context(|| format!("failed to read {}", crl.display()))?;
        for c in CertificateRevocationListDer::pem_slice_iter(&data) {
            crls.push(c.map_err(|e| anyhow!("{}: not a PEM CRL: {e}", crl.display()))?);
        }
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .build()
        .map_err(|e| anyhow!("client certificate verifier: {e}"))?;
    let key = read_key(&p.key)?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| anyhow!("TLS 1.3: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs(&p.cert)?, key)
        .map_err(|e| {
            anyhow!(
                "{} and {} do not belong together: {e}",
                p.cert.display(),
                p.key.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    // No session tickets: clients never resume (a minictl is one process per command; a
    // long-lived client keeps its connection), and a resumed session would skip the CRL.
    cfg.send_tls13_tickets = 0;
    Ok(cfg)
}

/// The live configuration, swapped on reload.
#[derive(Clone)]
pub struct Reloadable {
    paths: TlsPaths,
    current: Arc<ArcSwap<ServerConfig>>,
}

impl Reloadable {
    pub fn new(paths: TlsPaths) -> anyhow::Result<Reloadable> {
        let cfg = server_config(&paths)?;
        Ok(Reloadable {
            paths,
            current: Arc::new(ArcSwap::from_pointee(cfg)),
        })
    }

    /// Re-reads every file; on any error the old configuration stays in force.
    pub fn reload(&self) -> anyhow::Result<()> {
        let cfg = server_config(&self.paths)?;
        self.current.store(Arc::new(cfg));
        Ok(())
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }
}

/// A TLS connection with its verified peer.
pub struct TlsConn {
    inner: TlsStream<TcpStream>,
    peer: Peer,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = Peer;
    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

fn peer_of(addr: SocketAddr, s: &TlsStream<TcpStream>) -> Peer {
    let (_, conn) = s.get_ref();
    let info = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| minictl::pki::parse_der(c.as_ref()).ok());
    Peer {
        addr,
        name: info
            .as_ref()
            .map(|i| i.common_name.clone())
            .unwrap_or_default(),
        role: info.and_then(|i| i.role).filter(|r| *r != Role::Node),
    }
}

/// Handshakes in progress at most.
pub const MAX_HANDSHAKES: usize = 256;

/// Accepts connections and completes handshakes concurrently (a slow or hostile client
/// cannot hold up others; each handshake has 10 s), yielding the verified ones.
pub fn incoming(
    listener: TcpListener,
    tls: Reloadable,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(64);
    // At most this many handshakes at once: unauthenticated peers cannot hold an unbounded
    // number of descriptors and tasks (each has 10 s); accepting waits for a free slot.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (tcp, addr) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = tls.acceptor();
            let conn_tx = tx.clone();
            tokio::spawn(async move {
                let _slot = slot;
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => {
                        let peer = peer_of(addr, &s);
                        tracing::debug!(peer = %addr, client = %peer.name, "connection accepted");
                        let _ = conn_tx.send(Ok(TlsConn { inner: s, peer })).await;
                    }
                    Ok(Err(e)) => {
                        tracing::info!(peer = %addr, error = %e, "TLS handshake refused");
                    }
                    Err(_) => tracing::info!(peer = %addr, "TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
