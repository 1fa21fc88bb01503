//! `minictl pki` as a user runs it: files, permissions, refusals, revocation.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn pki(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_minictl"))
        .arg("pki")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run minictl pki")
}

#[test]
fn ca_certs_info_and_revocation_from_the_command_line() {
    let d = tempfile::tempdir().expect("tempdir");
    let ok = |args: &[&str]| {
        let o = pki(d.path(), args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&["ca", "create"]);
    let again = pki(d.path(), &["ca", "create"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
    ok(&[
        "cert",
        "create",
        "--node",
        "n1",
        "--ip",
        "10.0.0.5",
        "--dns",
        "n1.example",
    ]);
    ok(&["cert", "create", "--client", "alice", "--role", "operator"]);
    let key_mode = std::fs::metadata(d.path().join("alice-key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    let info = ok(&["info", d.path().join("n1.pem").to_str().expect("utf-8")]);
    assert!(info.contains("role:       node"), "{info}");
    assert!(
        info.contains("10.0.0.5") && info.contains("n1.example"),
        "{info}"
    );
    // A node certificate needs a name clients can check.
    let o = pki(d.path(), &["cert", "create", "--node", "n2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--dns or --ip"));
    let alice = d.path().join("alice.pem");
    let out = ok(&["revoke", alice.to_str().expect("utf-8")]);
    assert!(out.contains("revoked serial"), "{out}");
    let info = ok(&["info", alice.to_str().expect("utf-8")]);
    assert!(info.contains("revoked:    yes"), "{info}");
    assert!(std::fs::read_to_string(d.path().join("crl.pem"))
        .expect("crl")
        .starts_with("-----BEGIN X509 CRL-----"));
}
