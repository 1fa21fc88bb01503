//! Mutual TLS against a real agent: who is refused, what minictl says about it, roles, and
//! certificate rotation by SIGHUP without a restart.

#![allow(clippy::unwrap_used)] // test helpers

use std::path::Path;
use std::time::Duration;

use mini_e2e::{cluster_pki, issue_node, require_root, stderr, stdout, Identity, Node};
use minictl::pki::{self, Role, Subject, Validity};

fn id(dir: &Path, name: &str) -> Identity {
    mini_e2e::identity(dir, name)
}

fn start(dir: &Path) -> Node {
    mini_e2e::start_in_cluster(dir, &[])
}

#[test]
fn refusals_are_explained_and_roles_enforced() {
    require_root!();
    let pkid = tempfile::tempdir().unwrap();
    let dir = pkid.path();
    cluster_pki(dir);
    let n = start(dir);
    let addr = n.addr();

    // A good operator: accepted.
    let ops = id(dir, "ops");
    let out = n.ctl_as(&ops, &addr, &["--format", "json", "nodes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("\"CallerRole\":\"operator\""),
        "{}",
        stdout(&out)
    );

    // No client certificate.
    let anon = Identity {
        ca: dir.join("ca.pem"),
        cert: None,
        key: None,
    };
    let out = n.ctl_as(&anon, &addr, &["ps"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("requires a client certificate"),
        "{}",
        stderr(&out)
    );

    // A certificate from another CA.
    let other = tempfile::tempdir().unwrap();
    cluster_pki(other.path());
    let foreign = Identity {
        ca: dir.join("ca.pem"),
        ..id(other.path(), "ops")
    };
    let out = n.ctl_as(&foreign, &addr, &["ps"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("does not trust the CA"),
        "{}",
        stderr(&out)
    );

    // An expired certificate.
    let (c, k) = pki::cert_paths(dir, "old");
    let now = time::OffsetDateTime::now_utc();
    pki::issue(
        dir,
        &Subject::Client {
            name: "old".into(),
            role: Role::Operator,
        },
        Validity {
            not_before: now - time::Duration::days(10),
            not_after: now - time::Duration::days(1),
        },
        &c,
        &k,
        false,
    )
    .unwrap();
    let out = n.ctl_as(&id(dir, "old"), &addr, &["ps"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stderr(&out).contains("expired"), "{}", stderr(&out));

    // A viewer may look but not change anything.
    let viewer = id(dir, "watcher");
    let out = n.ctl_as(&viewer, &addr, &["ps", "-a"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = n.ctl_as(&viewer, &addr, &["create", "busybox", "true"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("needs the operator role"),
        "{}",
        stderr(&out)
    );
    // StartAttached (what `run` uses) is a mutation as Start is: refused before anything
    // is looked up; an operator gets as far as the unknown container.
    let call = |who: &Identity| {
        let files = minictl::tls::TlsFiles {
            ca: Some(who.ca.clone()),
            cert: who.cert.clone(),
            key: who.key.clone(),
        };
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let c = minictl::client::Client::connect(&addr, &files).unwrap();
                c.containers
                    .clone()
                    .start_attached(mini_proto::v1::StartRequest {
                        container: "no-such-container".into(),
                    })
                    .await
                    .map(|_| ())
            })
    };
    assert_eq!(
        call(&viewer).unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    assert_eq!(call(&ops).unwrap_err().code(), tonic::Code::NotFound);

    // The node's certificate does not name "localhost": the client refuses the node.
    let out = n.ctl_as(&ops, &format!("localhost:{}", n.port), &["ps"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("does not name the address"),
        "{}",
        stderr(&out)
    );

    // Revoked: after the CRL is rewritten and the node told (SIGHUP), the operator is out.
    pki::revoke(dir, &pki::cert_paths(dir, "ops").0).unwrap();
    n.signal(nix::sys::signal::Signal::SIGHUP);
    n.until(
        Duration::from_secs(5),
        "the revocation to take effect",
        || {
            let out = n.ctl_as(&ops, &addr, &["ps"]);
            out.status.code() == Some(125) && stderr(&out).contains("revoked")
        },
    );
    // The listener survived the reload: the viewer still gets in.
    let out = n.ctl_as(&viewer, &addr, &["ps"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn sighup_serves_a_rotated_certificate_without_a_restart() {
    require_root!();
    let pkid = tempfile::tempdir().unwrap();
    let dir = pkid.path();
    cluster_pki(dir);
    let n = start(dir);
    let pid = n.pid();
    let ops = id(dir, "ops");
    let before = served_serial(&n.addr(), dir);
    let c = pki::cert_paths(dir, "node").0;
    issue_node(dir, true);
    n.signal(nix::sys::signal::Signal::SIGHUP);
    n.until(
        Duration::from_secs(5),
        "the new certificate to be served",
        || served_serial(&n.addr(), dir) != before,
    );
    assert_eq!(n.pid(), pid, "the agent was not restarted");
    assert_eq!(
        served_serial(&n.addr(), dir),
        pki::inspect(&c).unwrap().serial
    );
    let out = n.ctl_as(&ops, &n.addr(), &["ps"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The serial of the certificate the node serves now (a fresh TLS connection).
fn served_serial(addr: &str, dir: &Path) -> String {
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(dir.join("ca.pem")).unwrap();
    for c in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let (cp, kp) = pki::cert_paths(dir, "watcher");
    let certs: Vec<rustls_pki_types::CertificateDer> =
        rustls_pki_types::pem::PemObject::pem_slice_iter(&std::fs::read(cp).unwrap())
            .map(|c| c.unwrap())
            .collect();
    let key =
        <rustls_pki_types::PrivateKeyDer as rustls_pki_types::pem::PemObject>::from_pem_slice(
            &std::fs::read(kp).unwrap(),
        )
        .unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .unwrap();
    let mut conn = rustls::ClientConnection::new(
        Arc::new(cfg),
        rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap(),
    )
    .unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    let der = conn.peer_certificates().unwrap()[0].clone();
    pki::parse_der(der.as_ref()).unwrap().serial
}

#[test]
fn ps_and_nodes_look_across_nodes() {
    require_root!();
    let pkid = tempfile::tempdir().unwrap();
    let dir = pkid.path();
    cluster_pki(dir);
    let mut a = start(dir);
    let mut b = start(dir);
    a.operator = Some(id(dir, "ops"));
    b.operator = Some(id(dir, "ops"));
    let tar = mini_e2e::busybox_tar(a.dir.path());
    for (n, name) in [(&a, "on-a"), (&b, "on-b")] {
        n.ok(&["import", tar.to_str().unwrap(), "busybox"]);
        n.ok(&["run", "-d", "--name", name, "busybox", "sleep", "100"]);
    }
    let both = format!("{},{}", a.addr(), b.addr());
    let out = a.ctl_as(&id(dir, "ops"), &both, &["ps"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.lines().next().unwrap().ends_with("NODE"), "{table}");
    assert!(table.contains("on-a") && table.contains("on-b"), "{table}");
    let out = a.ctl_as(&id(dir, "ops"), &both, &["nodes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().filter(|l| l.contains("ready")).count(),
        2,
        "{}",
        stdout(&out)
    );
    // A command on one container finds the node that holds it.
    let out = a.ctl_as(&id(dir, "ops"), &both, &["stop", "-t", "0", "on-b"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(b.inspect("on-b")["State"]["Status"], "exited");
    // A command that shows one node's stream refuses several instead of guessing.
    let out = a.ctl_as(&id(dir, "ops"), &both, &["events"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(
        stderr(&out).contains("acts on one node"),
        "{}",
        stderr(&out)
    );
    // One node down: the other is still listed, the failure reported.
    b.kill9();
    let out = a.ctl_as(&id(dir, "ops"), &both, &["ps"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(stdout(&out).contains("on-a"), "{}", stdout(&out));
    assert!(stderr(&out).contains(&b.addr()), "{}", stderr(&out));
    b.launch();
}
