//! The client side of mutual TLS: which files, the rustls configuration, the connection, and
//! what to tell the user when a node refuses us.
//!
//! Files come from flags (`--tls-ca/--tls-cert/--tls-key`), then the environment
//! (`MINICTL_TLS_CA/CERT/KEY`), then `~/.config/minictl/config.json` (`{"tls_ca": ..}`), then
//! the development PKI a local `minid serve` writes (`/var/lib/minid/pki`), so that a local
//! minictl works with no flags. Only TLS 1.3 is offered. The node's certificate must be signed
//! by the CA and name the host we dialled (DNS name or IP), as a browser would check.
//!
//! In TLS 1.3 the server judges the client's certificate after the client thinks the handshake
//! is done, so a refusal reaches us as an alert on the first read, deep inside a transport
//! error. [`explain`] digs the alert out and says which of missing / unknown CA / expired /
//! revoked it most likely was.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tonic::transport::{Channel, Endpoint, Uri};

/// Where the development PKI of a local agent lives.
pub const DEV_PKI_DIR: &str = "/var/lib/minid/pki";

/// The three PEM files of a client identity.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct TlsFiles {
    #[serde(rename = "tls_ca")]
    pub ca: Option<PathBuf>,
    #[serde(rename = "tls_cert")]
    pub cert: Option<PathBuf>,
    #[serde(rename = "tls_key")]
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// Fills what the flags left unset from the config file and then the development PKI.
    pub fn resolve(mut self) -> anyhow::Result<TlsFiles> {
        if self.ca.is_none() || self.cert.is_none() || self.key.is_none() {
            if let Some(home) = std::env::var_os("HOME") {
                let p = Path::new(&home).join(".config/minictl/config.json");
                if let Ok(b) = std::fs::read(&p) {
                    let cfg: TlsFiles = serde_json::from_slice(&b)
                        .with_context(|| format!("{} is not valid JSON", p.display()))?;
                    self.ca = self.ca.or(cfg.ca);
                    self.cert = self.cert.or(cfg.cert);
                    self.key = self.key.or(cfg.key);
                }
            }
        }
        let dev = Path::new(DEV_PKI_DIR);
        if self.ca.is_none() && dev.join("ca.pem").exists() {
            self.ca = Some(dev.join("ca.pem"));
        }
        if self.cert.is_none() && self.key.is_none() && dev.join("admin.pem").exists() {
            self.cert = Some(dev.join("admin.pem"));
            self.key = Some(dev.join("admin-key.pem"));
        }
        Ok(self)
    }
}

/// The certificates of a PEM file (at least one); the agent reads its files with this too.
pub fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    let certs: Vec<_> = rustls_pki_types::pem::PemObject::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    <PrivateKeyDer as rustls_pki_types::pem::PemObject>::from_pem_slice(&pem)
        .map_err(|e| anyhow!("{}: not a PEM private key: {e}", path.display()))
}

/// The rustls client configuration for these files (TLS 1.3 only). Without a CA there is
/// nothing to verify the node against, so that is an error, not a fallback to no TLS.
pub fn client_config(files: &TlsFiles) -> anyhow::Result<rustls::ClientConfig> {
    let ca = files.ca.as_ref().ok_or_else(|| {
        anyhow!(
            "no CA certificate to verify the node with: give --tls-ca (or MINICTL_TLS_CA); \
             a local minid writes its development CA to {DEV_PKI_DIR}/ca.pem"
        )
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs(ca)? {
        roots
            .add(c)
            .map_err(|e| anyhow!("{}: not a usable CA certificate: {e}", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])?
    .with_root_certificates(roots);
    let mut cfg = match (&files.cert, &files.key) {
        (Some(c), Some(k)) => builder
            .with_client_auth_cert(read_certs(c)?, read_key(k)?)
            .map_err(|e| {
                anyhow!(
                    "{} and {} do not belong together: {e}",
                    c.display(),
                    k.display()
                )
            })?,
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(anyhow!("give both --tls-cert and --tls-key, or neither")),
    };
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

/// Splits `host:port` (or `[v6]:port`; port 7000 when missing) into host and port.
pub fn split_addr(addr: &str) -> anyhow::Result<(String, u16)> {
    let bad = || anyhow!("--node {addr:?} is not host:port");
    if let Some(rest) = addr.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if after.is_empty() => 7000,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    match addr.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h.to_string(), p.parse().map_err(|_| bad())?)),
        Some(_) => Err(bad()),
        None if !addr.is_empty() => Ok((addr.to_string(), 7000)),
        None => Err(bad()),
    }
}

/// A channel to the node at `addr` over mutual TLS. Connects lazily: the first call dials.
pub fn channel(addr: &str, cfg: rustls::ClientConfig) -> anyhow::Result<Channel> {
    let (host, port) = split_addr(addr)?;
    let server_name = ServerName::try_from(host.clone())
        .map_err(|_| anyhow!("--node {addr:?}: {host:?} is not a host name or IP address"))?
        .to_owned();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let endpoint = Endpoint::from_shared(format!("http://{}", display_host_port(&host, port)))
        .map_err(|e| anyhow!("--node {addr:?}: {e}"))?
        .connect_timeout(std::time::Duration::from_secs(10))
        .tcp_nodelay(true);
    let target = (host, port);
    let svc = tower::service_fn(move |_: Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let target = target.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect((target.0.as_str(), target.1)).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok(endpoint.connect_with_connector_lazy(svc))
}

fn display_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Dials the node again with nothing to send, only to hear why it refuses us: in TLS 1.3 the
/// node judges our certificate after our side of the handshake is done, and its alert can
/// lose the race with the first request's write (which then fails with a broken pipe).
/// Waiting quietly for the node's first word gets the alert itself. Blocks for at most
/// `timeout`; None when the node has nothing against us.
pub fn diagnose(
    addr: &str,
    cfg: Arc<rustls::ClientConfig>,
    timeout: std::time::Duration,
) -> Option<String> {
    use std::io::Read;
    let (host, port) = split_addr(addr).ok()?;
    let name = ServerName::try_from(host.clone()).ok()?.to_owned();
    let addrs = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port)).ok()?;
    let mut sock = addrs
        .into_iter()
        .find_map(|a| std::net::TcpStream::connect_timeout(&a, timeout).ok())?;
    sock.set_read_timeout(Some(timeout)).ok()?;
    let mut conn = rustls::ClientConnection::new(cfg, name).ok()?;
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let mut b = [0u8; 1];
    // Any byte, or a timeout, means the node accepted us; only an error carries a reason.
    let e = tls.read(&mut b).err()?;
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    inner.map(explain_rustls)
}

/// Finds a TLS failure in an error chain and says what it most likely means.
pub fn explain(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(explain_rustls(t));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                    return Some(explain_rustls(t));
                }
                if let Some(s) = explain(inner) {
                    return Some(s);
                }
            }
        }
        cur = e.source();
    }
    None
}

fn explain_rustls(e: &rustls::Error) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    match e {
        E::AlertReceived(A::CertificateRequired) => {
            "the node requires a client certificate and none was sent: give --tls-cert and --tls-key".into()
        }
        // decrypt_error: a CA with the same name but another key signed it (two clusters
        // whose CAs were both made with the default name).
        E::AlertReceived(A::UnknownCA | A::DecryptError) => {
            "the node does not trust the CA that signed our client certificate (a certificate from another cluster's CA?)".into()
        }
        E::AlertReceived(A::CertificateExpired) => {
            "the node refused our client certificate as expired (or not yet valid): issue a new one with `minictl pki cert create`".into()
        }
        E::AlertReceived(A::CertificateRevoked) => {
            "the node refused our client certificate: it has been revoked".into()
        }
        E::AlertReceived(A::BadCertificate | A::UnsupportedCertificate) => {
            "the node refused our client certificate (not a client certificate of this cluster?)".into()
        }
        E::AlertReceived(a) => format!("the node ended the TLS handshake: {a:?}"),
        E::InvalidCertificate(C::UnknownIssuer) => {
            "the node's certificate is not signed by our CA (--tls-ca): wrong cluster, or wrong CA file".into()
        }
        E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            "the node's certificate does not name the address we dialled: use a name or IP it was issued for (`minictl pki cert create --node NAME --dns .. --ip ..`)".into()
        }
        E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the node's certificate has expired".into()
        }
        E::InvalidCertificate(c) => format!("the node's certificate is not acceptable: {c:?}"),
        other => format!("TLS failure: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split() {
        assert_eq!(
            split_addr("10.0.0.5:7000").unwrap(),
            ("10.0.0.5".into(), 7000)
        );
        assert_eq!(split_addr("node1").unwrap(), ("node1".into(), 7000));
        assert_eq!(split_addr("[::1]:7001").unwrap(), ("::1".into(), 7001));
        assert!(split_addr("host:notaport").is_err());
        assert!(split_addr("").is_err());
    }
}
