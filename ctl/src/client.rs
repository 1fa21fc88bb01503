//! A connection to one node: the three service clients over one mutual-TLS channel, and
//! errors turned into what a user can act on.

use mini_proto::v1::container_service_client::ContainerServiceClient;
use mini_proto::v1::image_service_client::ImageServiceClient;
use mini_proto::v1::node_service_client::NodeServiceClient;
use tonic::transport::Channel;

use crate::tls::{self, TlsFiles};

/// Largest message accepted from a node (matches the agent's limit).
pub const MAX_MESSAGE: usize = 16 << 20;

#[derive(Clone)]
pub struct Client {
    pub addr: String,
    pub containers: ContainerServiceClient<Channel>,
    pub images: ImageServiceClient<Channel>,
    pub node: NodeServiceClient<Channel>,
}

impl Client {
    /// Prepares a connection to `addr` (dialled on the first call).
    pub fn connect(addr: &str, files: &TlsFiles) -> anyhow::Result<Client> {
        let cfg = tls::client_config(files)?;
        let ch = tls::channel(addr, cfg)?;
        Ok(Client {
            addr: addr.to_string(),
            containers: ContainerServiceClient::new(ch.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            images: ImageServiceClient::new(ch.clone())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
            node: NodeServiceClient::new(ch),
        })
    }
}

/// A failed call, said for a person: the node's message for an error the node sent, or
/// what went wrong with the connection (TLS refusals explained).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub code: tonic::Code,
    pub message: String,
}

pub fn call_error(addr: &str, s: tonic::Status) -> CallError {
    use std::error::Error;
    let transport = matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal
    ) && s.source().is_some();
    let message = if let Some(why) = tls::explain(&s) {
        format!("cannot talk to node {addr}: {why}")
    } else if transport {
        let mut chain = Vec::new();
        let mut cur: Option<&(dyn Error + 'static)> = s.source();
        while let Some(e) = cur {
            chain.push(e.to_string());
            cur = e.source();
        }
        format!("cannot talk to node {addr}: {}", chain.join(": "))
    } else {
        s.message().to_string()
    };
    CallError {
        code: s.code(),
        message,
    }
}
