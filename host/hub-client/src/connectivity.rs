//! `allpeers/hub-connectivity/1`: what a peer asks its hub about its own reachability.
//!
//! Request/response (postcard): [`ConnectivityRequest::StunServers`] -> the hub's STUN
//! addresses; [`ConnectivityRequest::ProbeTcp`] -> a [`ProbeReport`]. A probe names a *port*
//! only: the hub connects to that port on the IP it sees the asker's connection come from,
//! never to an address the asker chooses, so the hub cannot be used as a port scanner of
//! third parties.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use allpeers_net::service::Namespace;

/// Largest message of the namespace.
pub const CONNECTIVITY_LIMIT: usize = 4096;

pub fn connectivity_ns() -> Namespace {
    Namespace::allpeers("hub-connectivity", 1).expect("valid namespace")
}

/// Application error codes (besides the framework's `Busy`, `BadRequest`, `Unsupported`).
pub mod code {
    /// Too many probes from this peer: wait.
    pub const RATE_LIMITED: u32 = 20;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectivityRequest {
    /// The hub's STUN server addresses.
    StunServers,
    /// "Can you reach my TCP port `port`?" (on the IP the hub sees this connection from).
    ProbeTcp { port: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectivityResponse {
    StunServers(StunServers),
    Probe(ProbeReport),
}

/// The hub's STUN server: RFC 5389 on `primary`; RFC 5780 behaviour discovery when
/// `alternate` (another IP and another port) is there too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StunServers {
    pub primary: Option<SocketAddr>,
    pub alternate: Option<SocketAddr>,
}

/// The result of a TCP reachability probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// The address the hub tried: the asker's observed IP and the asked port.
    pub target: SocketAddr,
    pub outcome: ProbeOutcome,
    /// How long the attempt took, milliseconds.
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProbeOutcome {
    /// TCP connected and the TLS handshake proved the asker's PeerId.
    Reachable,
    /// TCP connected, but something else answered (another key or not our TLS).
    WrongPeer(String),
    /// The connection was refused (nothing listens, or a firewall rejects).
    Refused,
    /// No answer in time (filtered, or a NAT without a forwarded port).
    TimedOut,
    /// Any other failure (network unreachable, reset, ...).
    Failed(String),
}

impl ProbeOutcome {
    pub fn reachable(&self) -> bool {
        matches!(self, ProbeOutcome::Reachable)
    }

    /// A short reason for humans.
    pub fn reason(&self) -> String {
        match self {
            ProbeOutcome::Reachable => {
                "the hub connected and the TLS handshake proved our key".into()
            }
            ProbeOutcome::WrongPeer(why) => format!("something else answers on that port: {why}"),
            ProbeOutcome::Refused => "connection refused".into(),
            ProbeOutcome::TimedOut => "no answer (filtered or not forwarded)".into(),
            ProbeOutcome::Failed(why) => why.clone(),
        }
    }
}
