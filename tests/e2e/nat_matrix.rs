//! The connector across real Linux NATs: a public hub and two peers behind routers in
//! network namespaces (`allpeers_tests::netns`), one cell per pair of NAT behaviours
//! (full cone, address-restricted, port-restricted, symmetric, UDP blocked), plus cells with
//! a forwarded TCP port. Each cell asserts the path the connector chose, checks the
//! connection end to end with a request, and prints the time to connect (the table in
//! docs/benchmarks.md). Root only; skipped loudly otherwise.
//!
//! A is the requester, B the target. Expected, and the reason:
//! * B full cone: A dials B's public address — direct.
//! * A full cone (B not): B calls A back after A's signal — callback.
//! * both cone (address- or port-restricted): B punches, A dials — hole punched.
//! * one symmetric, the other restricted cone: the easy side punches the hard side's IP and
//!   the hard side dials (address-restricted), or they meet through the birthday sockets
//!   (port-restricted) — hole punched.
//! * UDP blocked on either side: a TCP simultaneous open through both NATs — hole punched
//!   over TCP; relayed if the other NAT is symmetric (its TCP ports are random too).
//! * both symmetric: relayed.
//! * UDP blocked on one side, the other side's TCP port forwarded: direct over TCP (or a
//!   TCP callback).

use std::time::{Duration, Instant};

use NatBehaviour::*;
use allpeers_model::PeerId;
use allpeers_nat::connector::ConnectReport;
use allpeers_net::{PathKind, TransportKind};
use allpeers_tests::netns::{self, NatBehaviour, Side, Site, Topology, echo_ns};

struct Outcome {
    report: ConnectReport,
    connect_ms: u128,
    a_type: String,
    b_type: String,
}

/// Builds the topology, runs both peers, connects A to B; returns the report.
fn cell(tag: &str, a: Site, b: Site) -> Option<Outcome> {
    if let Some(why) = netns::skip_reason() {
        netns::announce_skip(&format!("NAT matrix cell {tag}"), &why);
        return None;
    }
    let topo = Topology::build(tag, a, b).unwrap_or_else(|e| panic!("topology {tag}: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let hub = topo.hub(dir.path());
    let hub_id = hub.peer_id;
    let (b_ready_tx, b_ready_rx) = std::sync::mpsc::channel::<Result<(PeerId, String), String>>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let b_port = b.forward_tcp.unwrap_or(0);
    let b_thread = netns::in_netns_async(topo.host_ns(Side::B), move || async move {
        match netns::netns_peer(hub_id, netns::HUB_ADDR, b_port).await {
            Ok(p) => {
                let _ = b_ready_tx.send(Ok((p.endpoint.peer_id(), p.nat_type.clone())));
                let _ = tokio::time::timeout(Duration::from_secs(120), done_rx).await;
                p.hub.stop();
                p.endpoint.close();
            }
            Err(e) => {
                let _ = b_ready_tx.send(Err(e));
            }
        }
    });
    let (b_id, b_type) = b_ready_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("B ready in time")
        .unwrap_or_else(|e| panic!("B: {e}"));
    let a_port = a.forward_tcp.unwrap_or(0);
    let a_thread = netns::in_netns_async(topo.host_ns(Side::A), move || async move {
        let p = netns::netns_peer(hub_id, netns::HUB_ADDR, a_port)
            .await
            .unwrap_or_else(|e| panic!("A: {e}"));
        let start = Instant::now();
        let (_, report) = tokio::time::timeout(Duration::from_secs(60), p.connector.connect(b_id))
            .await
            .expect("connect within 60 s")
            .unwrap_or_else(|e| panic!("A cannot reach B: {e}"));
        let connect_ms = start.elapsed().as_millis();
        // End to end over the connection that won.
        let echo: String = p
            .endpoint
            .request(b_id, &echo_ns(), "through the NATs")
            .await
            .unwrap_or_else(|e| panic!("request over {:?}: {e}", report.path));
        assert_eq!(echo, "through the NATs");
        p.hub.stop();
        p.endpoint.close();
        (report, connect_ms, p.nat_type)
    });
    let (report, connect_ms, a_type) = a_thread.join().expect("A thread");
    let _ = done_tx.send(());
    b_thread.join().expect("B thread");
    drop(hub);
    drop(topo);
    eprintln!(
        "CELL {tag}: A {} ({a_type}) -> B {} ({b_type}): {:?} over {:?} in {connect_ms} ms — {}",
        a.nat, b.nat, report.path, report.transport, report.why
    );
    for at in &report.attempts {
        eprintln!("    {:>6} ms  {}: {}", at.at_ms, at.method, at.outcome);
    }
    Some(Outcome {
        report,
        connect_ms,
        a_type,
        b_type,
    })
}

fn expected(a: NatBehaviour, b: NatBehaviour) -> PathKind {
    let cone = |n| matches!(n, AddressRestricted | PortRestricted);
    match (a, b) {
        // Without UDP: a TCP simultaneous open, unless the other NAT is symmetric.
        (UdpBlocked, Symmetric) | (Symmetric, UdpBlocked) => PathKind::Relayed,
        (UdpBlocked, _) | (_, UdpBlocked) => PathKind::HolePunched,
        (_, FullCone) => PathKind::Direct,
        (FullCone, _) => PathKind::Callback,
        (Symmetric, Symmetric) => PathKind::Relayed,
        (x, y) if cone(x) || cone(y) => PathKind::HolePunched,
        _ => unreachable!("every pair is covered above"),
    }
}

/// All cells with A behind `a`.
fn row(a: NatBehaviour) {
    let mut failures = Vec::new();
    for b in NatBehaviour::ALL {
        let tag = format!("{}{}", short(a), short(b));
        let Some(out) = cell(&tag, Site::behind(a), Site::behind(b)) else {
            return;
        };
        let want = expected(a, b);
        eprintln!(
            "| {a} | {b} | {} / {} | {:?} | {} |",
            out.a_type, out.b_type, out.report.path, out.connect_ms
        );
        if out.report.path != want {
            failures.push(format!(
                "{a} -> {b}: {:?}, expected {want:?}",
                out.report.path
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

fn short(n: NatBehaviour) -> &'static str {
    match n {
        FullCone => "f",
        AddressRestricted => "a",
        PortRestricted => "p",
        Symmetric => "s",
        UdpBlocked => "u",
    }
}

#[test]
fn from_behind_a_full_cone() {
    row(FullCone);
}

#[test]
fn from_behind_an_address_restricted_cone() {
    row(AddressRestricted);
}

#[test]
fn from_behind_a_port_restricted_cone() {
    row(PortRestricted);
}

#[test]
fn from_behind_a_symmetric_nat() {
    row(Symmetric);
}

#[test]
fn from_a_network_without_udp() {
    row(UdpBlocked);
}

#[test]
fn without_udp_a_forwarded_tcp_port_gives_a_direct_path() {
    // A has no UDP; B forwards its TCP port: A dials it.
    let Some(out) = cell(
        "ut",
        Site::behind(UdpBlocked),
        Site {
            nat: PortRestricted,
            forward_tcp: Some(7001),
        },
    ) else {
        return;
    };
    assert_eq!(out.report.path, PathKind::Direct, "{:#?}", out.report);
    assert_eq!(out.report.transport, TransportKind::Tcp);
    // The other way round: B (no UDP) is asked to connect to A, who forwards TCP: B dials
    // A's TCP address when A's signal arrives — a callback over TCP.
    let Some(out) = cell(
        "tu",
        Site {
            nat: PortRestricted,
            forward_tcp: Some(7001),
        },
        Site::behind(UdpBlocked),
    ) else {
        return;
    };
    assert_eq!(out.report.path, PathKind::Callback, "{:#?}", out.report);
    assert_eq!(out.report.transport, TransportKind::Tcp);
}
