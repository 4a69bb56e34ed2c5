//! Each NAT behaviour of `allpeers_tests::netns` is what it claims: our RFC 5780 discovery
//! (the node's own `connectivity::discover`, through a real hub in `pub`) classifies it so,
//! coturn's `turnutils_natdiscovery` agrees where it is installed, and raw UDP sockets see
//! the filtering and the hole punching the behaviours imply.
//!
//! Root only (network namespaces, iptables): without it every test prints a loud SKIPPED
//! message and passes. Each test builds its own namespaces (named after the process and a
//! tag), so tests run in parallel; every wait is bounded.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use allpeers_nat::connectivity::stun::{self, Retransmit};
use allpeers_nat::connectivity::{
    self as conn, ConnectivityReport, DiscoveryConfig, Filtering, Mapping, NatType,
};
use allpeers_tests::netns::{
    self, HUB_IP, NatBehaviour, STUN_PRIMARY, Side, Site, Topology, bind_udp_in,
};
use tokio::net::UdpSocket;

/// The TCP port host A listens on, forwarded by its router where a test asks for it.
const HOST_TCP_PORT: u16 = 7001;
/// How long a datagram that should arrive may take (it takes well under a millisecond).
const ARRIVES_WITHIN: Duration = Duration::from_secs(5);
/// How long a datagram that should be filtered is waited for before concluding it was.
const FILTERED_AFTER: Duration = Duration::from_secs(2);

/// The topology, or `None` (after a loud message) where namespaces cannot be made.
fn topology(test: &str, tag: &str, a: Site, b: Site) -> Option<Topology> {
    if let Some(why) = netns::skip_reason() {
        netns::announce_skip(test, &why);
        return None;
    }
    Some(Topology::build(tag, a, b).unwrap_or_else(|e| panic!("{test}: topology: {e}")))
}

/// What host A saw of the hub: whether QUIC reached it, and the node's discovery report.
struct HostView {
    quic_connected: bool,
    report: ConnectivityReport,
    /// Time to connect to the hub and to run the discovery.
    connect_took: Duration,
    discovery_took: Duration,
}

/// From host A: connects to the hub (QUIC, else TCP) and runs the node's connectivity
/// discovery through it (STUN tests against the hub's STUN server; the TCP probe if asked).
fn discover_from_host_a(topo: &Topology, hub: allpeers_model::PeerId, probe_tcp: bool) -> HostView {
    netns::in_netns_async(topo.host_ns(Side::A), move || async move {
        let endpoint = allpeers_net::Endpoint::bind(
            allpeers_net::Identity::generate(),
            allpeers_net::EndpointConfig {
                quic: Some("0.0.0.0:0".parse().unwrap()),
                tcp: Some(SocketAddr::from(([0, 0, 0, 0], HOST_TCP_PORT))),
                // A QUIC dial through a router that drops UDP is waited for this long.
                connect_timeout: Duration::from_secs(3),
                ..Default::default()
            },
        )
        .await
        .expect("endpoint in host A");
        let start = Instant::now();
        let quic_connected = endpoint
            .connect_addr(hub, allpeers_net::Address::quic(netns::HUB_ADDR))
            .await
            .is_ok();
        if !quic_connected {
            endpoint
                .connect_addr(hub, allpeers_net::Address::tcp(netns::HUB_ADDR))
                .await
                .expect("TCP to the hub, when QUIC does not get through");
        }
        let connect_took = start.elapsed();
        let start = Instant::now();
        let report = conn::discover(
            &endpoint,
            hub,
            None,
            &DiscoveryConfig {
                probe_tcp,
                ..Default::default()
            },
        )
        .await;
        let discovery_took = start.elapsed();
        endpoint.close();
        HostView {
            quic_connected,
            report,
            connect_took,
            discovery_took,
        }
    })
    .join()
    .expect("host A thread")
}

/// What coturn's `turnutils_natdiscovery -m -f` says from host A, if it is installed: its
/// output, or an error if it did not finish in time (it is then killed by PID).
fn coturn_from_host_a(topo: &Topology) -> Option<Result<String, String>> {
    if !netns::on_path("turnutils_natdiscovery") {
        eprintln!(
            "*** turnutils_natdiscovery missing: its cross-check is skipped (apt-get install coturn) ***"
        );
        return None;
    }
    let mut command = std::process::Command::new("turnutils_natdiscovery");
    command.args([
        "-m",
        "-f",
        "-p",
        &STUN_PRIMARY.port().to_string(),
        &HUB_IP.to_string(),
    ]);
    let start = Instant::now();
    let out = netns::spawn_in(topo.host_ns(Side::A), command)
        .expect("start turnutils_natdiscovery")
        .stdout_within(Duration::from_secs(30));
    eprintln!("turnutils_natdiscovery took {:?}", start.elapsed());
    Some(out)
}

/// Builds a topology with host A behind `nat`, runs the discovery and coturn from it.
fn classify(
    test: &str,
    tag: &str,
    a: Site,
    probe_tcp: bool,
) -> Option<(HostView, Option<Result<String, String>>)> {
    let topo = topology(test, tag, a, Site::behind(NatBehaviour::PortRestricted))?;
    let dir = tempfile::tempdir().unwrap();
    let hub = topo.hub(dir.path());
    let view = discover_from_host_a(&topo, hub.peer_id, probe_tcp);
    let coturn = coturn_from_host_a(&topo);
    drop(hub);
    let report = &view.report;
    eprintln!(
        "{}: hub connection ({}) took {:?}, discovery {:?}: mapping {:?}, filtering {:?}, {:?}; \
         tests {:?}; tcp {:?}; errors {:?}\ncoturn:\n{}",
        a.nat,
        if view.quic_connected { "QUIC" } else { "TCP" },
        view.connect_took,
        view.discovery_took,
        report.mapping,
        report.filtering,
        report.nat_type,
        report.tests,
        report.tcp,
        report.errors,
        match &coturn {
            Some(Ok(out)) => out.as_str(),
            Some(Err(e)) => e.as_str(),
            None => "(not run)",
        },
    );
    Some((view, coturn))
}

/// The checks every NAT that passes UDP shares: QUIC reached the hub, STUN answered from
/// the router's public IP, and (mapping permitting) the port was kept.
fn assert_udp_passes(view: &HostView) {
    let report = &view.report;
    assert!(view.quic_connected, "QUIC to the hub");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let mapped = report.udp_mapped.expect("a STUN answer");
    assert_eq!(mapped.ip(), IpAddr::from(Side::A.router_wan_ip()));
    assert_eq!(
        report.udp_local.map(|l| l.ip()),
        Some(IpAddr::from(Side::A.host_ip()))
    );
}

fn assert_coturn_says(coturn: &Option<Result<String, String>>, mapping: &str, filtering: &str) {
    if let Some(out) = coturn {
        let out = out.as_ref().unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.contains(&format!("NAT with {mapping} Mapping!")),
            "coturn should say {mapping} Mapping:\n{out}"
        );
        assert!(
            out.contains(&format!("NAT with {filtering} Filtering!")),
            "coturn should say {filtering} Filtering:\n{out}"
        );
    }
}

#[test]
fn full_cone_is_endpoint_independent_mapping_and_filtering() {
    let site = Site::behind(NatBehaviour::FullCone);
    let Some((view, coturn)) = classify("full cone", "fc", site, false) else {
        return;
    };
    assert_udp_passes(&view);
    let report = &view.report;
    assert_eq!(
        report.udp_mapped.map(|m| m.port()),
        report.udp_local.map(|l| l.port())
    );
    assert_eq!(report.mapping, Mapping::EndpointIndependent);
    assert_eq!(report.filtering, Filtering::EndpointIndependent);
    assert_eq!(report.nat_type, NatType::FullCone);
    assert_coturn_says(&coturn, "Endpoint Independent", "Endpoint Independent");
}

#[test]
fn address_restricted_is_endpoint_independent_mapping_address_dependent_filtering() {
    let site = Site::behind(NatBehaviour::AddressRestricted);
    let Some((view, coturn)) = classify("address-restricted", "ar", site, false) else {
        return;
    };
    assert_udp_passes(&view);
    let report = &view.report;
    assert_eq!(
        report.udp_mapped.map(|m| m.port()),
        report.udp_local.map(|l| l.port())
    );
    assert_eq!(report.mapping, Mapping::EndpointIndependent);
    assert_eq!(report.filtering, Filtering::AddressDependent);
    assert_eq!(report.nat_type, NatType::RestrictedCone);
    assert_coturn_says(&coturn, "Endpoint Independent", "Address Dependent");
}

#[test]
fn port_restricted_is_endpoint_independent_mapping_address_and_port_dependent_filtering() {
    let site = Site::behind(NatBehaviour::PortRestricted);
    let Some((view, coturn)) = classify("port-restricted", "pr", site, false) else {
        return;
    };
    assert_udp_passes(&view);
    let report = &view.report;
    assert_eq!(
        report.udp_mapped.map(|m| m.port()),
        report.udp_local.map(|l| l.port())
    );
    assert_eq!(report.mapping, Mapping::EndpointIndependent);
    assert_eq!(report.filtering, Filtering::AddressAndPortDependent);
    assert_eq!(report.nat_type, NatType::PortRestrictedCone);
    assert_coturn_says(
        &coturn,
        "Endpoint Independent",
        "Address and Port Dependent",
    );
}

#[test]
fn symmetric_is_address_and_port_dependent_mapping() {
    let site = Site::behind(NatBehaviour::Symmetric);
    let Some((view, coturn)) = classify("symmetric", "sy", site, false) else {
        return;
    };
    assert_udp_passes(&view);
    let report = &view.report;
    assert_eq!(report.mapping, Mapping::AddressAndPortDependent);
    assert_eq!(report.filtering, Filtering::AddressAndPortDependent);
    assert_eq!(report.nat_type, NatType::Symmetric);
    assert_coturn_says(
        &coturn,
        "Address and Port Dependent",
        "Address and Port Dependent",
    );
}

#[test]
fn udp_blocked_fails_stun_but_reaches_the_hub_over_tcp() {
    let site = Site {
        nat: NatBehaviour::UdpBlocked,
        forward_tcp: Some(HOST_TCP_PORT),
    };
    let Some((view, coturn)) = classify("UDP blocked", "ub", site, true) else {
        return;
    };
    let report = &view.report;
    assert!(!view.quic_connected, "QUIC must not get through");
    // The hub answered over TCP with its STUN servers; the STUN tests then got nothing.
    assert_eq!(report.stun_server, Some(STUN_PRIMARY));
    assert_eq!(report.udp_mapped, None);
    assert_eq!(report.nat_type, NatType::UdpBlocked);
    assert!(
        report.errors.iter().any(|e| e.contains("STUN")),
        "{:?}",
        report.errors
    );
    // The port forward: the hub reached our TCP listener at the router's public address.
    let tcp = report.tcp.as_ref().expect("the TCP probe ran");
    assert_eq!(
        tcp.target,
        Some(SocketAddr::from((Side::A.router_wan_ip(), HOST_TCP_PORT)))
    );
    assert!(tcp.reachable, "{tcp:?}");
    // coturn either gives up or is killed for taking too long; it must not classify.
    if let Some(Ok(out)) = coturn {
        assert!(!out.contains("NAT with"), "coturn got STUN answers:\n{out}");
    }
}

/// A tokio socket on `ns`'s host, and its public address as the hub's STUN server sees it.
async fn socket_and_mapping(ns: &str) -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::from_std(
        bind_udp_in(ns, "0.0.0.0:0".parse().unwrap()).unwrap_or_else(|e| panic!("{e}")),
    )
    .expect("tokio socket");
    let (answer, _) = stun::binding(&socket, STUN_PRIMARY, 0, &Retransmit::default())
        .await
        .unwrap_or_else(|e| panic!("STUN from {ns}: {e}"));
    (socket, answer.mapped)
}

/// The next datagram on `socket` within `limit`: its payload and sender.
async fn receive(socket: &UdpSocket, limit: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(limit, socket.recv_from(&mut buf))
        .await
        .ok()?
        .expect("recv");
    Some((buf[..n].to_vec(), from))
}

/// Hole punching as peers do it: send to the peer's public address (as STUN saw it) every
/// 100 ms until a datagram from the peer arrives, then answer once to where it came from
/// (ICE's peer-reflexive address: a symmetric NAT sends from a port STUN never saw), which
/// gets through because the peer's NAT has the mapping it came from, so the peer stops too.
/// Returns where the peer's datagram came from.
async fn punch(socket: &UdpSocket, peer: SocketAddr) -> SocketAddr {
    let mut buf = [0u8; 64];
    loop {
        socket.send_to(b"punch", peer).await.expect("send");
        if let Ok(received) =
            tokio::time::timeout(Duration::from_millis(100), socket.recv_from(&mut buf)).await
        {
            let (_, from) = received.expect("recv");
            socket.send_to(b"punch", from).await.expect("send");
            return from;
        }
    }
}

#[tokio::test]
async fn port_restricted_peers_punch_a_udp_hole() {
    let pr = Site::behind(NatBehaviour::PortRestricted);
    let Some(topo) = topology("UDP punch", "pu", pr, pr) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let _hub = topo.hub(dir.path());
    let (socket_a, mapped_a) = socket_and_mapping(topo.host_ns(Side::A)).await;
    let (socket_b, mapped_b) = socket_and_mapping(topo.host_ns(Side::B)).await;
    let start = Instant::now();
    let (from_b, from_a) = tokio::time::timeout(ARRIVES_WITHIN, async {
        tokio::join!(punch(&socket_a, mapped_b), punch(&socket_b, mapped_a))
    })
    .await
    .expect("the punch gets through both port-restricted NATs");
    eprintln!("punch {mapped_a} <-> {mapped_b} took {:?}", start.elapsed());
    // Endpoint-independent mapping: the peer is seen where STUN said it would be.
    assert_eq!(from_b, mapped_b);
    assert_eq!(from_a, mapped_a);
}

#[tokio::test]
async fn full_cone_takes_unsolicited_udp_port_restricted_does_not() {
    let Some(topo) = topology(
        "unsolicited UDP",
        "un",
        Site::behind(NatBehaviour::FullCone),
        Site::behind(NatBehaviour::PortRestricted),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let _hub = topo.hub(dir.path());
    // Each socket has talked to the hub's STUN server only.
    let (cone, cone_mapped) = socket_and_mapping(topo.host_ns(Side::A)).await;
    let (restricted, restricted_mapped) = socket_and_mapping(topo.host_ns(Side::B)).await;
    let (sender_b, sender_b_mapped) = socket_and_mapping(topo.host_ns(Side::B)).await;

    // Host B's second socket writes to the full cone's mapping out of the blue: it arrives.
    let start = Instant::now();
    sender_b.send_to(b"hello cone", cone_mapped).await.unwrap();
    let got = receive(&cone, ARRIVES_WITHIN).await;
    eprintln!(
        "unsolicited datagram into the full cone: {got:?} after {:?}",
        start.elapsed()
    );
    assert_eq!(got, Some((b"hello cone".to_vec(), sender_b_mapped)));

    // A full cone lets in only what is sent to a mapping: not to a port the host listens on
    // but never sent from.
    let silent = UdpSocket::from_std(
        bind_udp_in(topo.host_ns(Side::A), "0.0.0.0:0".parse().unwrap())
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let unmapped = SocketAddr::from((Side::A.router_wan_ip(), silent_port));
    sender_b.send_to(b"hello nobody", unmapped).await.unwrap();
    // The full cone host writes to the port-restricted mapping, which never sent to it.
    cone.send_to(b"hello restricted", restricted_mapped)
        .await
        .unwrap();
    let (into_unmapped, into_restricted) = tokio::join!(
        receive(&silent, FILTERED_AFTER),
        receive(&restricted, FILTERED_AFTER)
    );
    assert_eq!(
        into_unmapped, None,
        "the full cone let in a datagram to a port it never mapped"
    );
    assert_eq!(
        into_restricted, None,
        "a port-restricted NAT let an unsolicited datagram in"
    );

    // Control: once the restricted host has sent to the cone host, the same datagram passes.
    restricted.send_to(b"open up", cone_mapped).await.unwrap();
    assert_eq!(
        receive(&cone, ARRIVES_WITHIN).await,
        Some((b"open up".to_vec(), restricted_mapped))
    );
    cone.send_to(b"hello restricted", restricted_mapped)
        .await
        .unwrap();
    assert_eq!(
        receive(&restricted, ARRIVES_WITHIN).await,
        Some((b"hello restricted".to_vec(), cone_mapped))
    );
}

/// Whether two raw sockets behind these NATs can punch a hole (with the peer-reflexive
/// answer of [`punch`]; no port prediction): a full cone takes anything to its mapping; an
/// address-restricted NAT takes a symmetric peer's new port because it filters on the IP
/// only; a port-restricted one does not, and two symmetric NATs never meet.
fn punch_expected(a: NatBehaviour, b: NatBehaviour) -> bool {
    use NatBehaviour::*;
    match (a, b) {
        (UdpBlocked, _) | (_, UdpBlocked) => false,
        (FullCone, _) | (_, FullCone) => true,
        (Symmetric, Symmetric) | (Symmetric, PortRestricted) | (PortRestricted, Symmetric) => false,
        _ => true,
    }
}

/// Where peers behind `nat` would be told to send to: the STUN mapped address, or, where
/// STUN gets no answer, the router's address with the host's port (nothing will arrive).
async fn candidate(ns: &str, side: Side, nat: NatBehaviour) -> (UdpSocket, SocketAddr) {
    if nat != NatBehaviour::UdpBlocked {
        return socket_and_mapping(ns).await;
    }
    let socket = UdpSocket::from_std(
        bind_udp_in(ns, "0.0.0.0:0".parse().unwrap()).unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap();
    let guess = SocketAddr::from((side.router_wan_ip(), socket.local_addr().unwrap().port()));
    (socket, guess)
}

#[tokio::test]
async fn raw_udp_punch_matrix() {
    if let Some(why) = netns::skip_reason() {
        netns::announce_skip("UDP punch matrix", &why);
        return;
    }
    let mut failures = Vec::new();
    for (i, a) in NatBehaviour::ALL.into_iter().enumerate() {
        for (j, b) in NatBehaviour::ALL.into_iter().enumerate().skip(i) {
            let start = Instant::now();
            let topo = Topology::build(&format!("m{i}{j}"), Site::behind(a), Site::behind(b))
                .unwrap_or_else(|e| panic!("topology: {e}"));
            let dir = tempfile::tempdir().unwrap();
            let hub = topo.hub(dir.path());
            let built = start.elapsed();
            let (socket_a, candidate_a) = candidate(topo.host_ns(Side::A), Side::A, a).await;
            let (socket_b, candidate_b) = candidate(topo.host_ns(Side::B), Side::B, b).await;
            let expected = punch_expected(a, b);
            let start = Instant::now();
            let punched = tokio::time::timeout(
                if expected {
                    ARRIVES_WITHIN
                } else {
                    FILTERED_AFTER
                },
                async {
                    tokio::join!(punch(&socket_a, candidate_b), punch(&socket_b, candidate_a))
                },
            )
            .await
            .is_ok();
            eprintln!(
                "{a} / {b}: punch {} in {:?} (topology and hub up in {built:?})",
                if punched { "works" } else { "fails" },
                start.elapsed()
            );
            if punched != expected {
                failures.push(format!("{a} / {b}: punched {punched}, expected {expected}"));
            }
            drop(hub);
            drop(topo);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn address_restricted_filters_per_mapping_on_the_ip_only() {
    let Some(topo) = topology(
        "address-restricted filtering",
        "af",
        Site::behind(NatBehaviour::AddressRestricted),
        Site::behind(NatBehaviour::PortRestricted),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let _hub = topo.hub(dir.path());
    let (talked_to_b, talked_to_b_mapped) = socket_and_mapping(topo.host_ns(Side::A)).await;
    let (hub_only, hub_only_mapped) = socket_and_mapping(topo.host_ns(Side::A)).await;
    let (_b_first, b_first_mapped) = socket_and_mapping(topo.host_ns(Side::B)).await;
    let (b_second, b_second_mapped) = socket_and_mapping(topo.host_ns(Side::B)).await;
    assert_ne!(b_first_mapped.port(), b_second_mapped.port());

    // One of host A's mappings sends to host B's first port (B's router drops it: no matter).
    talked_to_b
        .send_to(b"hello b", b_first_mapped)
        .await
        .unwrap();
    // Host B writes from its other port to both of A's mappings: the one that sent to B's IP
    // takes it (any port of that IP); the one that only talked to the hub does not.
    b_second
        .send_to(b"same IP, other port", talked_to_b_mapped)
        .await
        .unwrap();
    b_second
        .send_to(b"never sent to", hub_only_mapped)
        .await
        .unwrap();
    let (into_talked, into_hub_only) = tokio::join!(
        receive(&talked_to_b, ARRIVES_WITHIN),
        receive(&hub_only, FILTERED_AFTER)
    );
    assert_eq!(
        into_talked,
        Some((b"same IP, other port".to_vec(), b_second_mapped))
    );
    assert_eq!(
        into_hub_only, None,
        "the filter let in an IP this mapping never sent to"
    );
}
