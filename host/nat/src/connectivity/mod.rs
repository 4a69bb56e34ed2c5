//! Connectivity discovery: what kind of network this node is on, as seen from its hub.
//!
//! * [`stun`] — STUN binding requests (RFC 5389) with CHANGE-REQUEST (RFC 5780) on webrtc-rs's
//!   `rtc-stun` codec; a bounded, strict reader; a one-transaction UDP client.
//! * [`nat`] — the I/O-free classifier: RFC 5780 test results -> mapping behaviour,
//!   filtering behaviour, NAT type.
//! * [`responder`] — the I/O-free STUN server core (the hub owns the sockets).
//! * `allpeers/hub-connectivity/1` (its messages in `allpeers_hub_client::connectivity`): ask
//!   the hub for its STUN addresses, and ask it to probe our TCP port (it connects to the IP
//!   it sees us at, never elsewhere).
//! * [`monitor`] — [`monitor::ConnectivityMonitor`]: reruns discovery when the hub line comes
//!   up, when addresses change, and periodically.
//! * [`discover`] — runs it all: local addresses, the mapping tests and the filtering tests
//!   (two UDP sockets, concurrently), the TCP probe of the endpoint's listener, and the
//!   QUIC address the hub observed.
//!
//! The mapping tests run on the endpoint's own QUIC socket: a packet hook on it ([`demux`])
//! takes the answers to our STUN transactions out before quinn sees them,
//! so `udp_mapped` is the public address of the very port peers dial. The filtering tests
//! need a socket that has talked to nobody but the STUN server, so they use a fresh one.
//! The hub's own view of the QUIC socket (`Welcome{observed}`) is reported as
//! `quic_observed`; behind an endpoint-independent NAT the two agree.

pub mod demux;
pub mod monitor;
pub mod nat;
pub mod responder;
pub mod stun;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use allpeers_model::PeerId;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;

pub use allpeers_hub_client::connectivity::{
    ConnectivityRequest, ConnectivityResponse, ProbeOutcome, ProbeReport, StunServers,
    connectivity_ns,
};
use allpeers_net::endpoint::Endpoint;
use allpeers_net::transport::TransportKind;
pub use nat::{Classification, Filtering, Mapping, NatType, TestResults};
use stun::{CHANGE_IP, CHANGE_PORT, Retransmit, StunError};

/// Settings of one discovery run.
#[derive(Debug, Clone)]
pub struct DiscoveryConfig {
    /// Retransmissions and give-up time of each STUN transaction.
    pub stun: Retransmit,
    /// Time the hub request (STUN addresses, TCP probe) may take.
    pub request_timeout: Duration,
    /// Whether to ask the hub to probe the endpoint's TCP listener.
    pub probe_tcp: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            stun: Retransmit::default(),
            request_timeout: Duration::from_secs(10),
            probe_tcp: true,
        }
    }
}

/// The TCP reachability part of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpReachability {
    /// Our listener's port, as asked.
    pub port: u16,
    /// What the hub tried (our observed IP and that port).
    pub target: Option<SocketAddr>,
    pub reachable: bool,
    pub reason: String,
}

/// What discovery found. Every part is optional: what failed is in `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectivityReport {
    /// Unix milliseconds when the run finished.
    pub checked_at: u64,
    pub duration_ms: u64,
    /// The machine's non-loopback interface addresses.
    pub local_addresses: Vec<IpAddr>,
    /// The STUN server used (the hub's primary).
    pub stun_server: Option<SocketAddr>,
    /// The local and public (mapped) address of the socket that ran the mapping tests: the
    /// endpoint's QUIC socket when it has one (`stun_on_quic`), else a separate one.
    pub stun_on_quic: bool,
    pub udp_local: Option<SocketAddr>,
    pub udp_mapped: Option<SocketAddr>,
    pub mapping: Mapping,
    pub filtering: Filtering,
    pub nat_type: NatType,
    /// The QUIC socket's address as the hub sees it (from the presence line).
    pub quic_observed: Option<SocketAddr>,
    pub tcp: Option<TcpReachability>,
    /// The raw test results the classification came from.
    pub tests: TestResults,
    pub errors: Vec<String>,
}

/// The local IP a socket bound to `bind` would use towards `to` (no packet is sent).
async fn route_source(bind: IpAddr, to: SocketAddr) -> Option<IpAddr> {
    if !bind.is_unspecified() {
        return Some(bind);
    }
    let s = UdpSocket::bind(SocketAddr::new(bind, 0)).await.ok()?;
    s.connect(to).await.ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// Mapping tests I-III (RFC 5780 §4.3) from one socket. Fills `local`, `primary`, `other`,
/// `alternate_ip`, `alternate_both`.
pub async fn mapping_tests(
    bind: IpAddr,
    primary: SocketAddr,
    schedule: &Retransmit,
    results: &mut TestResults,
) -> Result<(), StunError> {
    let socket = UdpSocket::bind(SocketAddr::new(bind, 0))
        .await
        .map_err(|e| StunError::Io(e.to_string()))?;
    let port = socket
        .local_addr()
        .map_err(|e| StunError::Io(e.to_string()))?
        .port();
    results.local = route_source(bind, primary)
        .await
        .map(|ip| SocketAddr::new(ip, port));
    mapping_tests_with(
        |to| stun::binding(&socket, to, 0, schedule),
        primary,
        results,
    )
    .await
}

/// The mapping tests through the endpoint's QUIC socket (see [`demux`]): the mapped
/// address is then the QUIC socket's own.
pub async fn quic_mapping_tests(
    endpoint: &Endpoint,
    primary: SocketAddr,
    schedule: &Retransmit,
    results: &mut TestResults,
) -> Result<(), StunError> {
    let (Some(demux), Some(local)) = (
        demux::StunDemux::of(endpoint),
        endpoint.local_address(TransportKind::Quic),
    ) else {
        return Err(StunError::Io("the endpoint has no QUIC socket".into()));
    };
    results.local = route_source(local.addr.ip(), primary)
        .await
        .map(|ip| SocketAddr::new(ip, local.addr.port()));
    mapping_tests_with(
        |to| {
            let demux = demux.clone();
            async move { demux.binding(to, 0, schedule).await }
        },
        primary,
        results,
    )
    .await
}

async fn mapping_tests_with<F, Fut>(
    binding: F,
    primary: SocketAddr,
    results: &mut TestResults,
) -> Result<(), StunError>
where
    F: Fn(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<(stun::BindingResponse, SocketAddr), StunError>>,
{
    let (first, _) = binding(primary).await?;
    results.primary = Some(first.mapped);
    results.other = first.other;
    let Some(other) = first.other else {
        return Ok(());
    };
    let (second, _) = binding(SocketAddr::new(other.ip(), primary.port())).await?;
    results.alternate_ip = Some(second.mapped);
    if second.mapped == first.mapped {
        return Ok(());
    }
    let (third, _) = binding(other).await?;
    results.alternate_both = Some(third.mapped);
    Ok(())
}

/// Filtering tests (RFC 5780 §4.4) from a fresh socket (one that has sent to the primary
/// address only). Fills `change_ip_port_answered`, `change_port_answered`.
pub async fn filtering_tests(
    bind: IpAddr,
    primary: SocketAddr,
    schedule: &Retransmit,
    results: &mut TestResults,
) -> Result<(), StunError> {
    let socket = UdpSocket::bind(SocketAddr::new(bind, 0))
        .await
        .map_err(|e| StunError::Io(e.to_string()))?;
    let (first, _) = stun::binding(&socket, primary, 0, schedule).await?;
    if first.other.is_none() {
        return Ok(());
    }
    let answered = |r: Result<_, StunError>| match r {
        Ok(_) => Ok(true),
        Err(StunError::Timeout(_)) => Ok(false),
        Err(e) => Err(e),
    };
    let both = answered(stun::binding(&socket, primary, CHANGE_IP | CHANGE_PORT, schedule).await)?;
    results.change_ip_port_answered = Some(both);
    if both {
        return Ok(());
    }
    let port = answered(stun::binding(&socket, primary, CHANGE_PORT, schedule).await)?;
    results.change_port_answered = Some(port);
    Ok(())
}

/// Runs the mapping and filtering tests against `primary` concurrently (from fresh
/// sockets bound to `bind`).
pub async fn stun_tests(
    bind: IpAddr,
    primary: SocketAddr,
    schedule: &Retransmit,
) -> (TestResults, Vec<String>) {
    stun_tests_via(bind, None, primary, schedule).await
}

/// Like [`stun_tests`], with the mapping tests through `endpoint`'s QUIC socket when it has
/// one (the filtering tests always need a fresh socket).
pub async fn stun_tests_via(
    bind: IpAddr,
    endpoint: Option<&Endpoint>,
    primary: SocketAddr,
    schedule: &Retransmit,
) -> (TestResults, Vec<String>) {
    let mut m = TestResults::default();
    let mut f = TestResults::default();
    let mapping = async {
        match endpoint {
            Some(e) if e.quic_socket().is_some() => {
                quic_mapping_tests(e, primary, schedule, &mut m).await
            }
            _ => mapping_tests(bind, primary, schedule, &mut m).await,
        }
    };
    let (rm, rf) = tokio::join!(mapping, filtering_tests(bind, primary, schedule, &mut f));
    let mut errors = Vec::new();
    if let Err(e) = rm {
        errors.push(format!("STUN mapping tests: {e}"));
    }
    if let Err(e) = rf {
        errors.push(format!("STUN filtering tests: {e}"));
    }
    m.change_ip_port_answered = f.change_ip_port_answered;
    m.change_port_answered = f.change_port_answered;
    (m, errors)
}

/// Asks the hub for its STUN server addresses.
pub async fn hub_stun_servers(
    endpoint: &Endpoint,
    hub: PeerId,
    timeout: Duration,
) -> Result<StunServers, allpeers_net::NetError> {
    match endpoint
        .request_timeout(
            hub,
            &connectivity_ns(),
            &ConnectivityRequest::StunServers,
            timeout,
        )
        .await?
    {
        ConnectivityResponse::StunServers(s) => Ok(s),
        other => Err(allpeers_net::NetError::Decode(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

/// Asks the hub to connect to our TCP `port` (at the IP it sees us at).
pub async fn probe_tcp(
    endpoint: &Endpoint,
    hub: PeerId,
    port: u16,
    timeout: Duration,
) -> Result<ProbeReport, allpeers_net::NetError> {
    match endpoint
        .request_timeout(
            hub,
            &connectivity_ns(),
            &ConnectivityRequest::ProbeTcp { port },
            timeout,
        )
        .await?
    {
        ConnectivityResponse::Probe(p) => Ok(p),
        other => Err(allpeers_net::NetError::Decode(format!(
            "unexpected answer {other:?}"
        ))),
    }
}

/// One full discovery run through the hub `hub` (which the endpoint can reach).
/// `quic_observed` is the hub client's `observed` address, if the line is up.
pub async fn discover(
    endpoint: &Endpoint,
    hub: PeerId,
    quic_observed: Option<SocketAddr>,
    config: &DiscoveryConfig,
) -> ConnectivityReport {
    let start = Instant::now();
    let mut errors = Vec::new();
    let local_addresses = allpeers_net::status::interface_addresses();
    let bind = endpoint
        .local_address(TransportKind::Quic)
        .or_else(|| endpoint.local_address(TransportKind::Tcp))
        .map(|a| a.addr.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));

    let stun_fut = async {
        match hub_stun_servers(endpoint, hub, config.request_timeout).await {
            Ok(StunServers {
                primary: Some(primary),
                ..
            }) => {
                let (tests, errs) =
                    stun_tests_via(bind, Some(endpoint), primary, &config.stun).await;
                (Some(primary), tests, errs)
            }
            Ok(_) => (
                None,
                TestResults::default(),
                vec!["the hub runs no STUN server".to_string()],
            ),
            Err(e) => (
                None,
                TestResults::default(),
                vec![format!("asking the hub for its STUN server: {e}")],
            ),
        }
    };
    let tcp_fut = async {
        let port = endpoint.local_address(TransportKind::Tcp)?.addr.port();
        if !config.probe_tcp {
            return None;
        }
        Some(
            match probe_tcp(endpoint, hub, port, config.request_timeout).await {
                Ok(r) => TcpReachability {
                    port,
                    target: Some(r.target),
                    reachable: r.outcome.reachable(),
                    reason: r.outcome.reason(),
                },
                Err(e) => TcpReachability {
                    port,
                    target: None,
                    reachable: false,
                    reason: format!("the hub did not probe: {e}"),
                },
            },
        )
    };
    let ((stun_server, tests, stun_errors), tcp) = tokio::join!(stun_fut, tcp_fut);
    errors.extend(stun_errors);
    let class = nat::classify(&tests);
    ConnectivityReport {
        checked_at: allpeers_model::hlc::now_ms(),
        duration_ms: start.elapsed().as_millis() as u64,
        local_addresses,
        stun_server,
        stun_on_quic: endpoint.quic_socket().is_some(),
        udp_local: tests.local,
        udp_mapped: tests.primary,
        mapping: class.mapping,
        filtering: class.filtering,
        nat_type: if stun_server.is_none() {
            NatType::Unknown
        } else {
            class.nat_type
        },
        quic_observed,
        tcp,
        tests,
        errors,
    }
}
