//! What a connect is given and what it tells: the connector's settings, each attempt, the
//! report of a connect that worked and the error of one that did not.

use std::time::Duration;

use allpeers_model::PeerId;
use allpeers_net::transport::{PathKind, TransportKind};
use serde::Serialize;

use super::plan::Facts;

/// Timings and sizes of the connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorConfig {
    /// Longest a direct handshake to a known address may take.
    pub direct_timeout: Duration,
    /// Longest to wait for the target's answer to a Connect signal.
    pub answer_timeout: Duration,
    /// Relay if nothing has connected by then (unless the plan says relay at once).
    pub relay_after: Duration,
    /// How long punching goes on (also behind a relay, to upgrade it).
    pub punch_window: Duration,
    /// Sockets the hard side of a birthday punch opens.
    pub birthday_sockets: usize,
    /// Probes the easy side sprays.
    pub spray_probes: usize,
    /// Punch sessions we take part in as the target at once; more are refused.
    pub max_target_sessions: usize,
    /// Longest one discovery source may take to answer before the next is asked.
    pub lookup_timeout: Duration,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        ConnectorConfig {
            direct_timeout: Duration::from_secs(3),
            answer_timeout: Duration::from_secs(3),
            relay_after: Duration::from_secs(4),
            punch_window: Duration::from_secs(12),
            birthday_sockets: 256,
            spray_probes: 2048,
            max_target_sessions: 16,
            // The DHT's own bound (15 s by default) is for background lookups; a connect
            // that waits on one is worth less after this.
            lookup_timeout: Duration::from_secs(10),
        }
    }
}

/// One thing the connector tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub method: String,
    pub outcome: String,
    /// Milliseconds after the start of the connect.
    pub at_ms: u64,
}

/// The outcome of one connect: the path that won, why, and every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectReport {
    pub peer: PeerId,
    pub path: PathKind,
    pub transport: TransportKind,
    pub why: String,
    pub elapsed_ms: u64,
    pub local: Option<Facts>,
    pub remote: Option<Facts>,
    pub attempts: Vec<Attempt>,
}

/// Why a connect failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot reach {peer:?}: {}", summary(.attempts))]
pub struct ConnectError {
    pub peer: PeerId,
    pub attempts: Vec<Attempt>,
}

fn summary(attempts: &[Attempt]) -> String {
    if attempts.is_empty() {
        return "no address, no hub".into();
    }
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.method, a.outcome))
        .collect::<Vec<_>>()
        .join("; ")
}
