//! Who may call what: the caller's identity and role come from the verified client
//! certificate ([`crate::tls::Peer`], put into each request by the TLS acceptor).
//!
//! `viewer` may list, inspect, read logs, stats and events and call the node service;
//! `operator` may do everything. A mutating call from anyone else is `PERMISSION_DENIED`,
//! with a message that says which role it needs.

use tonic::{Request, Status};

use crate::tls::Peer;

/// The caller of a request (every request that reached a service passed mutual TLS).
pub fn peer<T>(req: &Request<T>) -> Result<Peer, Status> {
    req.extensions()
        .get::<Peer>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no verified client certificate on this connection"))
}

/// Refuses `what` unless the caller is an operator.
pub fn operator<T>(req: &Request<T>, what: &str) -> Result<Peer, Status> {
    let p = peer(req)?;
    if p.may_mutate() {
        Ok(p)
    } else {
        Err(Status::permission_denied(format!(
            "{what} needs the operator role; the certificate of {:?} grants {}",
            p.name,
            p.role.map(|r| r.as_str()).unwrap_or("no role")
        )))
    }
}
