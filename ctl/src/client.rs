//! A connection to one node: the three service clients over one mutual-TLS channel, and
//! errors turned into what a user can act on.

use mini_proto::v1::container_service_client::ContainerServiceClient;
use mini_proto::v1::image_service_client::ImageServiceClient;
use mini_proto::v1::node_service_client::NodeServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Every call goes through [`crate::trace::inject`] (the command's `traceparent`).
pub type Traced = InterceptedService<Channel, crate::trace::Inject>;

use crate::tls::{self, TlsFiles};

/// Largest message accepted from a node (matches the agent's limit).
pub const MAX_MESSAGE: usize = 16 << 20;

#[derive(Clone)]
pub struct Client {
    pub addr: String,
    /// The node's inventory name, else its address: what tables show.
    pub name: String,
    /// The node's inventory entry (labels, taints), when it came from one.
    pub member: Option<crate::cluster::Member>,
    /// Kept to diagnose a refused connection.
    tls: std::sync::Arc<rustls::ClientConfig>,
    has_cert: bool,
    pub containers: ContainerServiceClient<Traced>,
    pub images: ImageServiceClient<Traced>,
    pub node: NodeServiceClient<Traced>,
}

impl Client {
    /// Prepares a connection to `addr` (dialled on the first call).
    pub fn connect(addr: &str, files: &TlsFiles) -> anyhow::Result<Client> {
        let cfg = tls::client_config(files)?;
        let ch = tls::channel(addr, cfg.clone())?;
        let inject: crate::trace::Inject = crate::trace::inject;
        Ok(Client {
            addr: addr.to_string(),
            name: addr.to_string(),
            member: None,
            tls: std::sync::Arc::new(cfg),
            has_cert: files.cert.is_some(),
            containers: ContainerServiceClient::with_interceptor(ch.clone(), inject)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            images: ImageServiceClient::with_interceptor(ch.clone(), inject)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            node: NodeServiceClient::with_interceptor(ch, inject),
        })
    }

    /// A connection to an inventory member, named after it.
    pub fn to_member(m: &crate::cluster::Member, files: &TlsFiles) -> anyhow::Result<Client> {
        let mut c = Self::connect(&m.address, files)?;
        c.name = m.name.clone();
        c.member = Some(m.clone());
        Ok(c)
    }

    /// Reports a failed call on stderr; returns the exit status for it.
    pub fn fail(&self, s: tonic::Status) -> i32 {
        let code = crate::commands::exit_for(&s);
        let e = self.explain(s);
        eprintln!("minictl: {e}");
        code
    }

    /// A failed call, said for a person (see [`call_error`]); a connection the node dropped
    /// without an alert we saw is dialled again to hear the node's reason.
    pub fn explain(&self, s: tonic::Status) -> CallError {
        let mut e = call_error(&self.addr, s);
        if e.transport && !e.explained {
            let why = tls::diagnose(
                &self.addr,
                self.tls.clone(),
                std::time::Duration::from_secs(2),
            );
            match why {
                Some(w) => e.message = format!("cannot talk to node {}: {w}", self.addr),
                None if !self.has_cert => {
                    e.message = format!(
                        "{} (no client certificate was given: give --tls-cert and --tls-key)",
                        e.message
                    )
                }
                None => {}
            }
        }
        e
    }
}

/// A failed call, said for a person: the node's message for an error the node sent, or
/// what went wrong with the connection (TLS refusals explained).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub code: tonic::Code,
    pub message: String,
    /// The call never reached the node's service (connection or TLS failure).
    pub transport: bool,
    /// A TLS refusal was recognised and explained.
    pub explained: bool,
}

pub fn call_error(addr: &str, s: tonic::Status) -> CallError {
    use std::error::Error;
    // A status the node sent carries its response metadata; one made here on a broken
    // connection has none (and often the transport error as its source).
    let transport = matches!(
        s.code(),
        tonic::Code::Unavailable
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::Internal
    ) && (s.source().is_some() || s.metadata().is_empty());
    let why = tls::explain(&s);
    let explained = why.is_some();
    let message = if let Some(why) = why {
        format!("cannot talk to node {addr}: {why}")
    } else if transport {
        let mut chain = Vec::new();
        let mut cur: Option<&(dyn Error + 'static)> = s.source();
        while let Some(e) = cur {
            // hyper and std often say the same thing at two levels: say it once.
            let m = e.to_string();
            if !chain.last().is_some_and(|l: &String| l.ends_with(&m)) {
                chain.push(m);
            }
            cur = e.source();
        }
        format!("cannot talk to node {addr}: {}", chain.join(": "))
    } else {
        s.message().to_string()
    };
    CallError {
        code: s.code(),
        message,
        transport,
        explained,
    }
}
