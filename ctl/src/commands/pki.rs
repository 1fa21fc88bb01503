//! `minictl pki`: the cluster's certificates, like `nomad tls` / `consul tls`.
//!
//! ```text
//! minictl pki ca create [--dir D] [--name N] [--days 3650]
//! minictl pki cert create --node NAME --ip IP --dns NAME [--days 825]
//! minictl pki cert create --client NAME --role operator|viewer [--days 825]
//! minictl pki revoke CERT.pem        # adds it to revoked.json, rewrites crl.pem
//! minictl pki crl                    # rewrites crl.pem (refresh before it expires)
//! minictl pki info CERT.pem
//! ```
//! After `revoke` or `crl`, copy `crl.pem` to the nodes and send them SIGHUP.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::output::print_str;
use crate::pki::{self, Role, Subject, Validity};

#[derive(Debug, Args)]
pub struct PkiArgs {
    /// Directory of the CA and certificates
    #[arg(long, global = true, default_value = ".")]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub command: PkiCommand,
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// The certificate authority
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Node and client certificates
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Revoke a certificate and rewrite crl.pem
    Revoke { cert: PathBuf },
    /// Rewrite crl.pem from the revoked list (valid 30 days)
    Crl,
    /// Show what a certificate says
    Info { cert: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create ca.pem and ca-key.pem
    Create {
        /// Common name of the CA
        #[arg(long, default_value = "mini cluster CA")]
        name: String,
        #[arg(long, default_value_t = 3650)]
        days: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue NAME.pem and NAME-key.pem signed by the CA
    Create {
        /// A node certificate for this node name
        #[arg(long, conflicts_with = "client", required_unless_present = "client")]
        node: Option<String>,
        /// A client certificate for this identity
        #[arg(long)]
        client: Option<String>,
        /// Client role
        #[arg(long, value_enum, default_value_t = Role::Viewer)]
        role: Role,
        /// IP addresses clients use to reach the node (repeatable)
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        /// DNS names clients use to reach the node (repeatable)
        #[arg(long = "dns")]
        dns: Vec<String>,
        #[arg(long, default_value_t = 825)]
        days: i64,
        /// Output file base name (default: the node or client name)
        #[arg(long)]
        out: Option<String>,
    },
}

pub fn run(a: PkiArgs) -> i32 {
    match run_inner(a) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("minictl pki: {e}");
            1
        }
    }
}

fn run_inner(a: PkiArgs) -> Result<(), pki::PkiError> {
    match a.command {
        PkiCommand::Ca {
            command: CaCommand::Create { name, days },
        } => {
            pki::create_ca(&a.dir, &name, Validity::days(days))?;
            print_str(&format!(
                "created {} and {} (keep the key safe), and an empty {}\n",
                a.dir.join("ca.pem").display(),
                a.dir.join("ca-key.pem").display(),
                a.dir.join("crl.pem").display()
            ));
        }
        PkiCommand::Cert {
            command:
                CertCommand::Create {
                    node,
                    client,
                    role,
                    ips,
                    dns,
                    days,
                    out,
                },
        } => {
            let (subject, base) = match (node, client) {
                (Some(n), _) => (
                    Subject::Node {
                        name: n.clone(),
                        dns,
                        ips,
                    },
                    n,
                ),
                (None, Some(c)) => (
                    Subject::Client {
                        name: c.clone(),
                        role,
                    },
                    c,
                ),
                (None, None) => {
                    return Err(pki::PkiError::Usage(
                        "give --node NAME or --client NAME".into(),
                    ))
                }
            };
            let base = out.unwrap_or(base);
            let (cert, key) = pki::cert_paths(&a.dir, &base);
            pki::issue(&a.dir, &subject, Validity::days(days), &cert, &key, false)?;
            print_str(&format!(
                "created {} and {}\n",
                cert.display(),
                key.display()
            ));
        }
        PkiCommand::Revoke { cert } => {
            let r = pki::revoke(&a.dir, &cert)?;
            print_str(&format!(
                "revoked serial {} ({}); wrote {}: copy it to every node and send minid SIGHUP\n",
                r.serial,
                r.subject,
                a.dir.join("crl.pem").display()
            ));
        }
        PkiCommand::Crl => {
            let p = pki::write_crl(&a.dir)?;
            print_str(&format!("wrote {}\n", p.display()));
        }
        PkiCommand::Info { cert } => {
            let i = pki::inspect(&cert)?;
            let revoked = pki::revoked(&a.dir)
                .map(|l| l.iter().any(|r| r.serial == i.serial))
                .unwrap_or(false);
            print_str(&format!(
                "subject:    {}\nissuer:     {}\nrole:       {}\nserial:     {}\nvalid:      {} .. {}{}\nCA:         {}\nDNS names:  {}\nIPs:        {}\nrevoked:    {}\n",
                i.subject,
                i.issuer,
                i.role.map(|r| r.as_str()).unwrap_or("-"),
                i.serial,
                i.not_before,
                i.not_after,
                if i.expired { " (NOT VALID NOW)" } else { "" },
                i.is_ca,
                i.dns_names.join(", "),
                i.ip_addresses.join(", "),
                if revoked { "yes (in this directory's revoked.json)" } else { "no" },
            ));
        }
    }
    Ok(())
}
