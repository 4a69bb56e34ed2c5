//! NAT traversal, first part: the hub's STUN server (RFC 5389 + RFC 5780) and TCP probe,
//! and the node-side discovery, cross-process against the real `allpeers-hub` binary and,
//! where installed, coturn (`turnserver`, `turnutils_stunclient`, `turnutils_natdiscovery`).
//! Loopback only (127.0.0.1, .2, .3).

mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allpeers_hub_client::AcceptAll;
use allpeers_hub_client::connectivity::code as conn_code;
use allpeers_nat::connectivity::stun::{
    self, CHANGE_IP, CHANGE_PORT, MAX_PACKET, Retransmit, binding_request, new_transaction,
    parse_binding_response,
};
use allpeers_nat::connectivity::{
    self as conn, ConnectivityRequest, ConnectivityResponse, DiscoveryConfig, Filtering, Mapping,
    NatType, ProbeOutcome,
};
use allpeers_net::service::ErrorCode;
use allpeers_net::{Endpoint, EndpointConfig, Identity, NetError};
use common::*;
use tokio::net::UdpSocket;

const SECONDS: Duration = Duration::from_secs(1);
const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn stun_args() -> [&'static str; 4] {
    [
        "--stun-primary",
        "127.0.0.1:0",
        "--stun-alternate",
        "127.0.0.2:0",
    ]
}

/// The hub's four STUN sockets from its ready line: IP1:P1, IP1:P2, IP2:P1, IP2:P2.
fn stun_sockets(hub: &HubProc) -> Vec<SocketAddr> {
    hub.ready["stun"]
        .as_array()
        .expect("the ready line lists the STUN sockets")
        .iter()
        .map(|v| v.as_str().unwrap().parse().unwrap())
        .collect()
}

/// Receives the next STUN packet on `socket` (bounded).
async fn next_packet(socket: &UdpSocket, within: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; MAX_PACKET + 1];
    match tokio::time::timeout(within, socket.recv_from(&mut buf)).await {
        Ok(Ok((n, from))) => Some((buf[..n].to_vec(), from)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc5780_tests_against_the_hub_and_discovery_through_a_node() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &stun_args());
        let s = stun_sockets(&hub);
        assert_eq!(s.len(), 4);
        assert_eq!((s[0].ip(), s[3].ip()), (LO, "127.0.0.2".parse().unwrap()));
        assert_eq!((s[0].port(), s[1].port()), (s[2].port(), s[3].port()));

        // The RFC 5780 tests straight against the hub's STUN server.
        let (tests, errors) = conn::stun_tests(LO, s[0], &Retransmit::default()).await;
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(tests.primary, tests.local, "loopback: mapped == local");
        assert_eq!(tests.other, Some(s[3]));
        assert_eq!(tests.alternate_ip, tests.primary);
        assert_eq!(tests.change_ip_port_answered, Some(true));
        let class = conn::nat::classify(&tests);
        assert_eq!(
            (class.mapping, class.filtering, class.nat_type),
            (Mapping::None, Filtering::EndpointIndependent, NatType::Open)
        );

        // Each CHANGE-REQUEST is answered from the socket it names, to our socket.
        let sock = UdpSocket::bind((LO, 0)).await.unwrap();
        for (flags, from) in [
            (0, s[0]),
            (CHANGE_PORT, s[1]),
            (CHANGE_IP, s[2]),
            (CHANGE_IP | CHANGE_PORT, s[3]),
        ] {
            let (r, src) = stun::binding(&sock, s[0], flags, &Retransmit::default())
                .await
                .unwrap();
            assert_eq!(src, from, "flags {flags}");
            assert_eq!(r.origin, Some(from));
            assert_eq!(r.mapped, sock.local_addr().unwrap());
        }

        // Discovery through a node's hub connection: STUN, the TCP probe, the QUIC mapping.
        let node = node(fast_config(hub.peer, hub.addresses()), Arc::new(AcceptAll)).await;
        assert!(node.hub.wait_online(10 * SECONDS).await);
        let observed = node.hub.status().observed;
        let report = conn::discover(
            &node.endpoint,
            hub.peer,
            observed,
            &DiscoveryConfig::default(),
        )
        .await;
        assert!(report.errors.is_empty(), "{report:?}");
        assert_eq!(report.stun_server, Some(s[0]));
        assert_eq!(report.nat_type, NatType::Open, "{report:?}");
        assert_eq!(report.udp_mapped, report.udp_local);
        assert_eq!(report.quic_observed, observed);
        // The mapping tests ran on the endpoint's own QUIC socket: STUN sees the address the
        // hub sees on the QUIC connection, and QUIC traffic on that socket carries on.
        assert!(report.stun_on_quic);
        let quic_local = node
            .endpoint
            .local_address(allpeers_net::TransportKind::Quic)
            .unwrap()
            .addr;
        assert_eq!(report.udp_mapped, Some(quic_local));
        assert_eq!(report.udp_mapped, observed);
        assert_eq!(node.hub.info().await.unwrap().peer, hub.peer);
        let again = conn::discover(
            &node.endpoint,
            hub.peer,
            observed,
            &DiscoveryConfig {
                probe_tcp: false,
                ..DiscoveryConfig::default()
            },
        )
        .await;
        assert_eq!(again.udp_mapped, Some(quic_local), "{again:?}");
        assert!(node.hub.wait_online(SECONDS).await);
        let tcp = report.tcp.as_ref().expect("TCP probed");
        assert!(tcp.reachable, "{tcp:?}");
        assert_eq!(
            Some(tcp.target.unwrap().port()),
            node.endpoint
                .local_address(allpeers_net::TransportKind::Tcp)
                .map(|a| a.addr.port())
        );
        eprintln!(
            "discovery on loopback took {} ms: {}",
            report.duration_ms,
            serde_json::to_string(&report).unwrap()
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_spoofed_stun_packets_get_no_answer_and_the_hub_keeps_serving() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &stun_args());
        let s = stun_sockets(&hub);
        // Each part sends from its own loopback IP: the per-source bucket is per IP.
        let on = |last: u8| SocketAddr::from(([127, 0, 0, last], 0));
        let good = binding_request(new_transaction(), 0);

        let mut bad: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("garbage", b"GET / HTTP/1.1\r\n\r\n".to_vec()),
            ("short header", good[..12].to_vec()),
        ];
        let mut cookie = good.clone();
        cookie[4] = 0;
        bad.push(("wrong magic cookie", cookie));
        let mut top = good.clone();
        top[0] |= 0xc0;
        bad.push(("top bits set", top));
        let mut trunc = binding_request(new_transaction(), CHANGE_IP);
        trunc[22..24].copy_from_slice(&200u16.to_be_bytes());
        bad.push(("attribute longer than the message", trunc));
        let mut cut = binding_request(new_transaction(), CHANGE_IP);
        cut.truncate(cut.len() - 4);
        bad.push(("message shorter than its length field", cut));
        let mut fp = good.clone();
        let last = fp.len() - 1;
        fp[last] ^= 0xff;
        bad.push(("bad fingerprint", fp));
        let mut big = good.clone();
        big.resize(1600, 0);
        big[2..4].copy_from_slice(&((1600 - 20) as u16).to_be_bytes());
        bad.push(("oversized (1600 bytes)", big));
        // Spoofed: a binding *response* and an indication sent to the server, as a reflector
        // or another server would; answering them would loop or reflect.
        let t = new_transaction();
        let (resp, _) = {
            let probe = UdpSocket::bind(on(9)).await.unwrap();
            probe.send_to(&binding_request(t, 0), s[0]).await.unwrap();
            next_packet(&probe, 10 * SECONDS).await.expect("an answer")
        };
        assert!(parse_binding_response(&resp, &t).is_ok());
        bad.push(("a binding response", resp));
        let mut ind = binding_request(new_transaction(), 0);
        ind.truncate(20);
        ind[2..4].copy_from_slice(&0u16.to_be_bytes());
        ind[1] = 0x11;
        bad.push(("a binding indication", ind));

        // Every bad packet, then one good request: the server reads one socket's packets in
        // order, so if the first thing we get back is the good answer, no bad one was
        // answered. Done on each of the four sockets.
        for (i, target) in s.iter().enumerate() {
            let sock = UdpSocket::bind(on(10 + i as u8)).await.unwrap();
            for (_, p) in &bad {
                sock.send_to(p, target).await.unwrap();
            }
            let t = new_transaction();
            sock.send_to(&binding_request(t, 0), target).await.unwrap();
            let (first, from) = next_packet(&sock, 10 * SECONDS)
                .await
                .expect("served after garbage");
            assert_eq!(from, *target);
            let r = parse_binding_response(&first, &t).unwrap_or_else(|e| {
                panic!("the first packet back from {target} is not the good answer: {e}")
            });
            assert_eq!(r.mapped, sock.local_addr().unwrap());
        }

        // RESPONSE-PORT (answer to another port) is refused with a 420 to the source; the
        // socket it named hears nothing (checked by order again: its own request comes
        // back first).
        let sock = UdpSocket::bind(on(20)).await.unwrap();
        let other = UdpSocket::bind(on(20)).await.unwrap();
        let mut m = rtc_stun::message::Message::new();
        m.typ = rtc_stun::message::BINDING_REQUEST;
        m.transaction_id = rtc_stun::message::TransactionId(new_transaction());
        m.write_header();
        m.add(
            rtc_stun::attributes::ATTR_RESPONSE_PORT,
            &[
                &other.local_addr().unwrap().port().to_be_bytes()[..],
                &[0, 0],
            ]
            .concat(),
        );
        sock.send_to(&m.raw, s[0]).await.unwrap();
        let (err, _) = next_packet(&sock, 10 * SECONDS).await.expect("a 420");
        assert_eq!(
            stun::decode(&err).unwrap().typ,
            rtc_stun::message::BINDING_ERROR
        );
        let t = new_transaction();
        other.send_to(&binding_request(t, 0), s[0]).await.unwrap();
        let (first, _) = next_packet(&other, 10 * SECONDS).await.unwrap();
        assert!(parse_binding_response(&first, &t).is_ok());

        // A flood from one source is cut by its token bucket (20/s, burst 40); another
        // source is still served at once.
        let flood = UdpSocket::bind(on(30)).await.unwrap();
        let start = Instant::now();
        for _ in 0..300 {
            flood.send_to(&good, s[0]).await.unwrap();
        }
        let mut answers = 0;
        while next_packet(&flood, Duration::from_millis(500))
            .await
            .is_some()
        {
            answers += 1;
        }
        let allowed = 40 + (start.elapsed().as_secs_f64() * 20.0).ceil() as usize;
        assert!(
            answers >= 1 && answers <= allowed && answers < 300,
            "{answers} answers to a flood of 300 (allowed {allowed})"
        );
        let fresh = UdpSocket::bind(on(31)).await.unwrap();
        let (r, _) = stun::binding(&fresh, s[0], 0, &Retransmit::default())
            .await
            .unwrap();
        assert_eq!(r.mapped, fresh.local_addr().unwrap());
        eprintln!("flood of 300 from one source: {answers} answered");
    })
    .await
}

/// An endpoint whose listeners (and so its QUIC connection to the hub) are on `ip`.
async fn endpoint_on(ip: &str) -> Endpoint {
    let ip: IpAddr = ip.parse().unwrap();
    Endpoint::bind(
        Identity::generate(),
        EndpointConfig {
            quic: Some(SocketAddr::new(ip, 0)),
            tcp: Some(SocketAddr::new(ip, 0)),
            ..EndpointConfig::default()
        },
    )
    .await
    .unwrap()
}

async fn probe(ep: &Endpoint, hub: &HubProc, port: u16) -> Result<conn::ProbeReport, NetError> {
    conn::probe_tcp(ep, hub.peer, port, 20 * SECONDS).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_reaches_only_the_requesters_own_address() {
    bounded(async {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &["--stun-primary", "127.0.0.1:0"]);
        // The asker is at 127.0.0.3; the hub at 127.0.0.1.
        let ep = endpoint_on("127.0.0.3").await;
        for a in hub.addresses() {
            ep.add_peer_address(hub.peer, a);
        }
        let my_tcp = ep.local_address(allpeers_net::TransportKind::Tcp).unwrap().addr;

        // Its own listener: reachable, and the TLS handshake proved its key.
        let r = probe(&ep, &hub, my_tcp.port()).await.unwrap();
        assert_eq!(r.target, my_tcp);
        assert_eq!(r.outcome, ProbeOutcome::Reachable);

        // A decoy on another IP, at a port free on the asker's IP: the hub goes to the
        // asker's IP (refused) and never to the decoy. A completed TCP handshake would sit
        // in the decoy's backlog before the hub answered, so "nothing to accept" is exact.
        let decoy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        decoy.set_nonblocking(true).unwrap();
        let port = decoy.local_addr().unwrap().port();
        let free_on_mine = std::net::TcpListener::bind(("127.0.0.3", port)).is_ok();
        let r = probe(&ep, &hub, port).await.unwrap();
        assert_eq!(r.target, SocketAddr::new("127.0.0.3".parse().unwrap(), port));
        if free_on_mine {
            assert_eq!(r.outcome, ProbeOutcome::Refused);
        }
        assert!(
            matches!(decoy.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the hub connected to an address the asker does not have"
        );

        // Something else listening at the asker's IP: reached, but it is not the asker.
        let other = tokio::net::TcpListener::bind("127.0.0.3:0").await.unwrap();
        let other_port = other.local_addr().unwrap().port();
        let other_task = tokio::spawn(async move {
            while let Ok((mut s, _)) = other.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(b"SSH-2.0-not-allpeers\r\n").await;
            }
        });
        // The rate limit (3 in a burst, 6 a minute) stops the fourth probe in a row.
        let r = probe(&ep, &hub, other_port).await.unwrap();
        assert!(matches!(r.outcome, ProbeOutcome::WrongPeer(_)), "{r:?}");
        let e = probe(&ep, &hub, my_tcp.port()).await.unwrap_err();
        assert!(
            matches!(e, NetError::Remote { code: ErrorCode::Application(c), .. } if c == conn_code::RATE_LIMITED),
            "{e}"
        );
        other_task.abort();

        // Another peer is not limited by the first one's probes; port 0 and garbage are
        // bad requests; the hub serves on.
        let ep2 = endpoint_on("127.0.0.1").await;
        for a in hub.addresses() {
            ep2.add_peer_address(hub.peer, a);
        }
        let e = probe(&ep2, &hub, 0).await.unwrap_err();
        assert!(matches!(e, NetError::Remote { code: ErrorCode::BadRequest, .. }), "{e}");
        let raw = ep2
            .request_bytes(hub.peer, &conn::connectivity_ns(), bytes::Bytes::from_static(&[0xff; 9]), 1024, 5 * SECONDS)
            .await;
        assert!(matches!(raw, Err(NetError::Remote { code: ErrorCode::BadRequest, .. })), "{raw:?}");
        let r: ConnectivityResponse = ep2
            .request(hub.peer, &conn::connectivity_ns(), &ConnectivityRequest::StunServers)
            .await
            .unwrap();
        let ConnectivityResponse::StunServers(servers) = r else { panic!("{r:?}") };
        assert!(servers.primary.is_some() && servers.alternate.is_none());
        let port2 = ep2.local_address(allpeers_net::TransportKind::Tcp).unwrap().addr.port();
        let r = probe(&ep2, &hub, port2).await.unwrap();
        assert_eq!(r.outcome, ProbeOutcome::Reachable);
    })
    .await
}

// ---- coturn ----

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn coturn_missing(test: &str, bins: &[&str]) -> bool {
    let missing: Vec<&str> = bins
        .iter()
        .copied()
        .filter(|b| which(b).is_none())
        .collect();
    if missing.is_empty() {
        return false;
    }
    eprintln!(
        "\n\n*** SKIPPED {test}: coturn binaries missing: {missing:?} (apt-get install coturn; tests/run.sh installs it) ***\n"
    );
    true
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two ports free for UDP and TCP on both 127.0.0.1 and 127.0.0.2.
fn free_port_pair() -> (u16, u16) {
    let free = |p: u16| {
        ["127.0.0.1", "127.0.0.2"].iter().all(|ip| {
            std::net::UdpSocket::bind((*ip, p)).is_ok()
                && std::net::TcpListener::bind((*ip, p)).is_ok()
        })
    };
    let mut ports = Vec::new();
    while ports.len() < 2 {
        let p = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !ports.contains(&p) && free(p) {
            ports.push(p);
        }
    }
    (ports[0], ports[1])
}

/// coturn's STUN server on 127.0.0.1:P1 and 127.0.0.2:P2 (RFC 5780 on), answering.
async fn start_coturn(dir: &std::path::Path) -> (Kill, SocketAddr, SocketAddr) {
    let (p1, p2) = free_port_pair();
    let log = std::fs::File::create(dir.join("turnserver.log")).unwrap();
    let child = Command::new(which("turnserver").unwrap())
        .args([
            "-n",
            "-L",
            "127.0.0.1",
            "-L",
            "127.0.0.2",
            &format!("--listening-port={p1}"),
            &format!("--alt-listening-port={p2}"),
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--log-file=stdout",
            "--simple-log",
            "--no-auth",
            "--stun-only",
            &format!("--userdb={}", dir.join("turndb").display()),
            &format!("--pidfile={}", dir.join("turnserver.pid").display()),
        ])
        .stdout(Stdio::from(log))
        .stderr(Stdio::null())
        .spawn()
        .expect("start turnserver");
    let guard = Kill(child);
    let primary = SocketAddr::from(([127, 0, 0, 1], p1));
    // Ready when it answers a binding request (bounded: 20 tries of 1.5 s).
    let sock = UdpSocket::bind((LO, 0)).await.unwrap();
    for _ in 0..20 {
        if stun::binding(&sock, primary, 0, &Retransmit::default())
            .await
            .is_ok()
        {
            return (guard, primary, SocketAddr::from(([127, 0, 0, 2], p2)));
        }
    }
    panic!(
        "turnserver did not answer; its log:\n{}",
        std::fs::read_to_string(dir.join("turnserver.log")).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_stun_client_agrees_with_coturn() {
    if coturn_missing("our_stun_client_agrees_with_coturn", &["turnserver"]) {
        return;
    }
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (_coturn, primary, alternate) = start_coturn(dir.path()).await;
        let sock = UdpSocket::bind((LO, 0)).await.unwrap();
        let (r, from) = stun::binding(&sock, primary, 0, &Retransmit::default())
            .await
            .unwrap();
        assert_eq!(
            r.mapped,
            sock.local_addr().unwrap(),
            "coturn's mapped address is our socket"
        );
        assert_eq!(from, primary);
        assert_eq!(r.other, Some(alternate));
        let (tests, errors) = conn::stun_tests(LO, primary, &Retransmit::default()).await;
        assert!(errors.is_empty(), "{errors:?}");
        let class = conn::nat::classify(&tests);
        assert_eq!(
            (class.mapping, class.filtering, class.nat_type),
            (Mapping::None, Filtering::EndpointIndependent, NatType::Open),
            "{tests:?}"
        );
    })
    .await
}

/// Runs a coturn client, collecting its output until `done` matches a line or it exits
/// (bounded by `within`); kills it if it is still running.
fn run_client(bin: &str, args: &[String], within: Duration, done: impl Fn(&str) -> bool) -> String {
    let mut child = Command::new(which(bin).unwrap())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the coturn client");
    let stdout = child.stdout.take().unwrap();
    let guard = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + within;
    let mut out = String::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                out.push_str(&line);
                out.push('\n');
                if done(&line) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    drop(guard);
    out
}

/// `(local, reflexive)` pairs as turnutils prints them.
fn reflexive_pairs(out: &str) -> (Vec<SocketAddr>, Vec<SocketAddr>) {
    let grab = |key: &str| -> Vec<SocketAddr> {
        out.lines()
            .filter_map(|l| {
                l.split_once(key)
                    .map(|(_, r)| r.trim().trim_start_matches(':').trim().to_string())
            })
            .filter_map(|a| a.parse().ok())
            .collect()
    };
    (grab("Local addr:"), grab("UDP reflexive addr:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_clients_agree_with_our_stun_server() {
    if coturn_missing(
        "coturn_clients_agree_with_our_stun_server",
        &["turnutils_stunclient", "turnutils_natdiscovery"],
    ) {
        return;
    }
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &stun_args());
        let s = stun_sockets(&hub);
        let port = s[0].port().to_string();

        // turnutils_stunclient: its first answer gives the reflexive address, the
        // response origin and the other address. (Its next test asks for RESPONSE-PORT,
        // which this server refuses with a 420 — it answers only to the source — so the
        // client is stopped once the first answer is printed.)
        let out = tokio::task::spawn_blocking({
            let port = port.clone();
            move || {
                run_client(
                    "turnutils_stunclient",
                    &["-p".into(), port, "127.0.0.1".into()],
                    20 * SECONDS,
                    |l| l.contains("UDP reflexive addr"),
                )
            }
        })
        .await
        .unwrap();
        let (_, mapped) = reflexive_pairs(&out);
        assert_eq!(mapped.len(), 1, "turnutils_stunclient said:\n{out}");
        assert_eq!(mapped[0].ip(), LO, "{out}");
        assert!(
            out.contains(&format!("Response origin: : {}", s[0])),
            "{out}"
        );
        assert!(out.contains(&format!("Other addr: : {}", s[3])), "{out}");

        // turnutils_natdiscovery: mapping and filtering behaviour.
        let out = tokio::task::spawn_blocking(move || {
            run_client(
                "turnutils_natdiscovery",
                &[
                    "-m".into(),
                    "-f".into(),
                    "-p".into(),
                    port,
                    "127.0.0.1".into(),
                ],
                40 * SECONDS,
                |l| l.contains("Filtering!"),
            )
        })
        .await
        .unwrap();
        assert!(
            out.contains("Endpoint Independent Mapping"),
            "turnutils_natdiscovery said:\n{out}"
        );
        assert!(
            out.contains("Endpoint Independent Filtering"),
            "turnutils_natdiscovery said:\n{out}"
        );
        // Every reflexive address it got is its own local port on 127.0.0.1 (no NAT).
        let (local, mapped) = reflexive_pairs(&out);
        assert!(!mapped.is_empty() && local.len() == mapped.len(), "{out}");
        for (l, m) in local.iter().zip(&mapped) {
            assert_eq!((m.ip(), m.port()), (LO, l.port()), "{out}");
        }
        // And our own discovery of the same server agrees.
        let (tests, _) = conn::stun_tests(LO, s[0], &Retransmit::default()).await;
        let class = conn::nat::classify(&tests);
        assert_eq!(class.filtering, Filtering::EndpointIndependent);
        assert_eq!(
            class.mapping,
            Mapping::None,
            "no NAT is endpoint-independent trivially"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_rechecks_on_address_changes_and_when_the_line_comes_back() {
    use allpeers_nat::connectivity::monitor::{ConnectivityMonitor, MonitorConfig};
    use allpeers_net::status::StatusMonitor;
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &stun_args());
        let node = node(fast_config(hub.peer, hub.addresses()), Arc::new(AcceptAll)).await;
        let status = StatusMonitor::new(node.endpoint.local_addresses());
        let monitor = ConnectivityMonitor::start(
            node.endpoint.clone(),
            node.hub.clone(),
            &status,
            MonitorConfig {
                min_interval: Duration::ZERO,
                every: Duration::from_secs(3600),
                discovery: DiscoveryConfig {
                    probe_tcp: false,
                    ..DiscoveryConfig::default()
                },
            },
        );
        let mut w = monitor.watch();
        let runs =
            |n: u64| move |s: &allpeers_nat::connectivity::monitor::MonitorState| s.runs >= n;
        // First run when the line comes up.
        w.wait_for(runs(1)).await.unwrap();
        let first = monitor.current().last.unwrap();
        assert_eq!(first.nat_type, NatType::Open, "{first:?}");
        // An interface address appears (as the StatusMonitor's polling would report it).
        let mut addrs = status.current().addresses;
        addrs.push("192.0.2.77".parse().unwrap());
        assert!(!status.update(addrs).is_empty());
        w.wait_for(runs(2)).await.unwrap();
        // The hub line drops and comes back (the hub restarts on the same ports): again.
        let mut hub = hub;
        assert!(hub.terminate());
        let mut events = node.hub.events();
        let again = HubProc::spawn_at(dir.path(), hub.quic, hub.tcp, &stun_args());
        wait_event(&mut events, 30 * SECONDS, |e| {
            matches!(e, allpeers_hub_client::HubEvent::Online { .. })
        })
        .await
        .expect("the line came back");
        w.wait_for(runs(3)).await.unwrap();
        let last = monitor.current().last.unwrap();
        // The restarted hub has new STUN ports: the report used them.
        assert_eq!(last.stun_server, Some(stun_sockets(&again)[0]));
        assert!(last.errors.is_empty(), "{last:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_binding_on_loopback() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("\n\n*** SKIPPED ipv6_binding_on_loopback: no IPv6 loopback here ***\n");
        return;
    }
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &["--stun-primary", "[::1]:0"]);
        let s = stun_sockets(&hub);
        assert_eq!(s.len(), 1);
        let sock = UdpSocket::bind("[::1]:0").await.unwrap();
        let (r, from) = stun::binding(&sock, s[0], 0, &Retransmit::default())
            .await
            .unwrap();
        assert_eq!(
            (r.mapped, from, r.other),
            (sock.local_addr().unwrap(), s[0], None)
        );
        // Without an alternate address, CHANGE-REQUEST is refused (420), not answered
        // from elsewhere.
        let err = stun::binding(&sock, s[0], CHANGE_IP, &Retransmit::default()).await;
        assert!(
            matches!(err, Err(stun::StunError::Refused { code: 420, .. })),
            "{err:?}"
        );
    })
    .await
}

#[test]
fn bad_stun_configuration_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--stun-primary", "0.0.0.0:3478"], "give a specific IP"),
        (
            &[
                "--stun-primary",
                "127.0.0.1:0",
                "--stun-alternate",
                "127.0.0.1:0",
            ],
            "another specific IP and another port",
        ),
        (&["--stun-alternate", "127.0.0.2:0"], "--stun-primary"),
        (&["--stun-primary", "127.0.0.1:x"], "invalid"),
    ];
    for (i, (args, expect)) in cases.iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_allpeers-hub"))
            .args(["--data-dir"])
            .arg(dir.path().join(format!("d{i}")))
            .args([
                "--quic",
                "127.0.0.1:0",
                "--tcp",
                "127.0.0.1:0",
                "--log-stderr",
            ])
            .args(*args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A bad configuration exits at once; bound the wait (kill by PID otherwise).
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let _ = child.wait();
        assert!(
            matches!(status, Some(s) if !s.success()),
            "{args:?} started: {err}"
        );
        assert!(
            err.contains(expect),
            "{args:?}: expected {expect:?} in:\n{err}"
        );
    }
}
