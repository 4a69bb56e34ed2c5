//! `allpeers/hub-connectivity/1` on the hub: the STUN server's addresses, and the TCP
//! reachability probe.
//!
//! A probe names only a port. The hub connects to that port on the IP it sees the asker's
//! connection come from (`Connection::remote_addr`), never to an address the asker names,
//! so it cannot be turned into a port scanner of third parties. It then runs a TLS 1.3
//! handshake that must prove the asker's PeerId (the node's endpoint accepts TLS on its
//! TCP listener). It dials with a throw-away identity made at start, not the hub's: the
//! node's endpoint keeps one connection per peer, and a probe that looked like the hub
//! would replace the node's real hub connection. Probes are rate-limited per peer and
//! bounded in number and time.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use allpeers_hub_client::connectivity::{
    CONNECTIVITY_LIMIT, ConnectivityRequest, ConnectivityResponse, ProbeOutcome, ProbeReport,
    StunServers, code,
};
use allpeers_hub_client::proto::app_error;
use allpeers_model::PeerId;
use allpeers_net::service::{BoxFuture, ErrorCode, decode, encode};
use allpeers_net::{Context, Identity, RemoteError, Service, tls};
use bytes::Bytes;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// The `probe` section of the hub's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProbeConfig {
    pub enabled: bool,
    /// Probes one peer may ask per minute, and its burst.
    pub per_peer_per_minute: u32,
    pub per_peer_burst: u32,
    /// Seconds one probe (TCP connect + TLS handshake) may take.
    pub timeout_secs: u64,
    /// Probes in progress at once (more are answered `Busy`).
    pub max_concurrent: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            enabled: true,
            per_peer_per_minute: 6,
            per_peer_burst: 3,
            timeout_secs: 5,
            max_concurrent: 64,
        }
    }
}

#[derive(Debug, Default)]
pub struct ProbeCounters {
    pub probes: AtomicU64,
    pub reachable: AtomicU64,
    pub rate_limited: AtomicU64,
}

pub struct ConnectivityCore {
    stun: StunServers,
    config: ProbeConfig,
    connector: tokio_rustls::TlsConnector,
    per_peer: DefaultKeyedRateLimiter<PeerId>,
    in_flight: Arc<Semaphore>,
    pub counters: ProbeCounters,
}

impl ConnectivityCore {
    pub fn new(stun: StunServers, config: ProbeConfig) -> anyhow::Result<Arc<Self>> {
        let prober = Identity::generate();
        let tls = tls::client_config(&prober)?;
        let quota = Quota::per_minute(NonZeroU32::new(config.per_peer_per_minute.max(1)).unwrap())
            .allow_burst(NonZeroU32::new(config.per_peer_burst.max(1)).unwrap());
        Ok(Arc::new(ConnectivityCore {
            stun,
            in_flight: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
            config,
            connector: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            per_peer: RateLimiter::keyed(quota),
            counters: ProbeCounters::default(),
        }))
    }

    /// Connects to `target` and checks it is `peer` (TLS with the PeerId pinned).
    pub async fn probe_target(&self, peer: PeerId, target: SocketAddr) -> ProbeReport {
        let start = Instant::now();
        let timeout = Duration::from_secs(self.config.timeout_secs.max(1));
        let attempt = async {
            let tcp = match TcpStream::connect(target).await {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return ProbeOutcome::Refused;
                }
                Err(e) => return ProbeOutcome::Failed(e.to_string()),
            };
            let _ = tcp.set_nodelay(true);
            match self.connector.connect(tls::server_name(&peer), tcp).await {
                Ok(mut stream) => {
                    let alpn = stream.get_ref().1.alpn_protocol() == Some(tls::ALPN);
                    let _ = stream.shutdown().await;
                    if alpn {
                        ProbeOutcome::Reachable
                    } else {
                        ProbeOutcome::WrongPeer("no allpeers ALPN".into())
                    }
                }
                Err(e) => ProbeOutcome::WrongPeer(format!("TLS: {e}")),
            }
        };
        let outcome = tokio::time::timeout(timeout, attempt)
            .await
            .unwrap_or(ProbeOutcome::TimedOut);
        ProbeReport {
            target,
            outcome,
            elapsed_ms: start.elapsed().as_millis() as u64,
        }
    }

    async fn probe(&self, ctx: &Context, port: u16) -> Result<ConnectivityResponse, RemoteError> {
        if !self.config.enabled {
            return Err(RemoteError::unsupported("TCP probes (off on this hub)"));
        }
        if port == 0 {
            return Err(RemoteError::bad_request("port 0"));
        }
        if self.per_peer.check_key(&ctx.peer).is_err() {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Err(app_error(
                code::RATE_LIMITED,
                format!(
                    "at most {} probes per minute: try later",
                    self.config.per_peer_per_minute
                ),
            ));
        }
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            return Err(RemoteError::new(ErrorCode::Busy, "too many probes at once"));
        };
        // The asker's own IP, as this connection shows it: never one it names.
        let ip = ctx.connection.remote_addr().ip().to_canonical();
        let target = SocketAddr::new(ip, port);
        self.counters.probes.fetch_add(1, Ordering::Relaxed);
        let report = self.probe_target(ctx.peer, target).await;
        if report.outcome.reachable() {
            self.counters.reachable.fetch_add(1, Ordering::Relaxed);
        }
        allpeers_log::flesh!(peer = ?ctx.peer, %target, outcome = ?report.outcome, "TCP probe");
        Ok(ConnectivityResponse::Probe(report))
    }

    async fn handle(self: Arc<Self>, ctx: Context, body: Bytes) -> Result<Bytes, RemoteError> {
        let req: ConnectivityRequest =
            decode(&body).map_err(|e| RemoteError::bad_request(e.to_string()))?;
        let resp = match req {
            ConnectivityRequest::StunServers => ConnectivityResponse::StunServers(self.stun),
            ConnectivityRequest::ProbeTcp { port } => self.probe(&ctx, port).await?,
        };
        encode(&resp).map_err(|e| RemoteError::internal(e.to_string()))
    }
}

/// The connectivity service (`allpeers/hub-connectivity/1`).
pub struct ConnectivityService(pub Arc<ConnectivityCore>);
impl Service for ConnectivityService {
    fn max_message_size(&self) -> usize {
        CONNECTIVITY_LIMIT
    }
    fn request(&self, ctx: Context, body: Bytes) -> BoxFuture<Result<Bytes, RemoteError>> {
        Box::pin(self.0.clone().handle(ctx, body))
    }
}
