//! NAT type detection behind real Linux NAT, in network namespaces this test creates
//! (root only; skipped loudly otherwise).
//!
//! Topology (RECIPES.md, "NAT simulation"): `inet` holds a bridge (the "internet",
//! 203.0.113.0/24); `pub` is on it with 203.0.113.10 and .11 and runs the hub's STUN server
//! (RFC 5780: 203.0.113.10:3478 / 203.0.113.11:3479); the router `nat` is on it with
//! 203.0.113.20 and serves the LAN 198.18.1.0/24, where the host `h` (198.18.1.2) runs our
//! discovery. The router masquerades (`MASQUERADE`: port-preserving, endpoint-independent
//! mapping) or `MASQUERADE --random-fully` (a new random port per destination: symmetric),
//! and filters like a home router (only ESTABLISHED/RELATED in from the WAN).
//!
//! The STUN server and the client run in this process: a thread enters a namespace
//! (`setns`), and the sockets it creates stay there. The only processes started are
//! `ip`/`iptables`/`sysctl` (each waited for) and `turnutils_natdiscovery` (killed by PID);
//! the namespaces are deleted at the end, also on failure.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use allpeers_hub::stun::{StunConfig, StunServer};
use allpeers_nat::connectivity::nat::{self, Filtering, Mapping, NatType};
use allpeers_nat::connectivity::stun::Retransmit;
use allpeers_nat::connectivity::{self as conn, TestResults};

fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn which(name: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin"])
        .any(|d| std::path::Path::new(d).join(name).is_file())
}

/// The namespaces of one topology; deleted on drop.
struct Topology {
    names: Vec<String>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = run(&["ip", "netns", "del", n]);
        }
    }
}

impl Topology {
    fn ns(&self, which: &str) -> String {
        self.names
            .iter()
            .find(|n| n.ends_with(&format!("-{which}")))
            .unwrap()
            .clone()
    }

    /// Builds inet/pub/nat/h; `random_fully` picks the symmetric NAT.
    fn build(tag: &str, random_fully: bool) -> Result<Topology, String> {
        let p = format!("ap{}{tag}", std::process::id());
        let [inet, publ, nat, h] = ["inet", "pub", "nat", "h"].map(|s| format!("{p}-{s}"));
        let topo = Topology { names: Vec::new() };
        let mut topo = topo;
        for n in [&inet, &publ, &nat, &h] {
            run(&["ip", "netns", "add", n])?;
            topo.names.push(n.clone());
        }
        let ip = |ns: &str, rest: &str| -> Result<(), String> {
            let mut args = vec!["ip", "-n", ns];
            args.extend(rest.split_whitespace());
            run(&args)
        };
        let exec = |ns: &str, rest: &str| -> Result<(), String> {
            let mut args = vec!["ip", "netns", "exec", ns];
            args.extend(rest.split_whitespace());
            run(&args)
        };
        ip(&inet, "link add br0 type bridge")?;
        ip(&inet, "link set br0 up")?;
        for ns in [&inet, &publ, &nat, &h] {
            ip(ns, "link set lo up")?;
        }
        // pub: two addresses for STUN's RFC 5780 pair.
        ip(
            &publ,
            &format!("link add wan type veth peer name pub netns {inet}"),
        )?;
        ip(&inet, "link set pub master br0 up")?;
        ip(&publ, "addr add 203.0.113.10/24 dev wan")?;
        ip(&publ, "addr add 203.0.113.11/24 dev wan")?;
        ip(&publ, "link set wan up")?;
        // The router.
        ip(
            &nat,
            &format!("link add wan type veth peer name nat netns {inet}"),
        )?;
        ip(&inet, "link set nat master br0 up")?;
        ip(&nat, "addr add 203.0.113.20/24 dev wan")?;
        ip(&nat, "link set wan up")?;
        ip(
            &nat,
            &format!("link add lan type veth peer name lan netns {h}"),
        )?;
        ip(&nat, "addr add 198.18.1.1/24 dev lan")?;
        ip(&nat, "link set lan up")?;
        ip(&h, "addr add 198.18.1.2/24 dev lan")?;
        ip(&h, "link set lan up")?;
        ip(&h, "route add default via 198.18.1.1")?;
        exec(&nat, "sysctl -qw net.ipv4.ip_forward=1")?;
        exec(
            &nat,
            &format!(
                "iptables -t nat -A POSTROUTING -o wan -j MASQUERADE{}",
                if random_fully { " --random-fully" } else { "" }
            ),
        )?;
        exec(
            &nat,
            "iptables -A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        )?;
        exec(&nat, "iptables -A FORWARD -i wan -j DROP")?;
        exec(
            &nat,
            "iptables -A INPUT -i wan -m conntrack --ctstate NEW -j DROP",
        )?;
        Ok(topo)
    }
}

/// Runs `f` on a thread that has entered network namespace `ns`, with its own runtime.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns");
        f()
    })
}

/// Starts the STUN server inside `pub`; it runs until `stop` is sent.
fn stun_in(
    ns: &str,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let handle = in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let server = StunServer::start(&StunConfig {
                primary: "203.0.113.10:3478".parse().unwrap(),
                alternate: Some("203.0.113.11:3479".parse().unwrap()),
                ..StunConfig::default()
            })
            .await
            .expect("STUN server in pub");
            ready_tx.send(()).unwrap();
            // Serve until told to stop, or 60 s at most.
            let _ = tokio::time::timeout(Duration::from_secs(60), stop_rx).await;
            drop(server);
        });
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("STUN server ready");
    (stop_tx, handle)
}

/// Our RFC 5780 tests from `h`: from fresh sockets, and with the mapping tests on a real
/// endpoint's QUIC socket (the STUN demultiplexer in front of quinn).
fn discover_in(ns: &str) -> (TestResults, TestResults, Vec<String>, Duration) {
    in_netns(ns, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let server: SocketAddr = "203.0.113.10:3478".parse().unwrap();
            let any = IpAddr::from([0, 0, 0, 0]);
            let start = Instant::now();
            let (plain, mut errors) = conn::stun_tests(any, server, &Retransmit::default()).await;
            let took = start.elapsed();
            let endpoint = allpeers_net::Endpoint::bind(
                allpeers_net::Identity::generate(),
                allpeers_net::EndpointConfig {
                    quic: Some(SocketAddr::new(any, 0)),
                    tcp: None,
                    ..Default::default()
                },
            )
            .await
            .expect("endpoint in h");
            let (quic, e2) =
                conn::stun_tests_via(any, Some(&endpoint), server, &Retransmit::default()).await;
            errors.extend(e2);
            let quic_port = endpoint
                .local_address(allpeers_net::TransportKind::Quic)
                .unwrap()
                .addr
                .port();
            assert_eq!(quic.local.map(|l| l.port()), Some(quic_port));
            endpoint.close();
            (plain, quic, errors, took)
        })
    })
    .join()
    .expect("discovery thread")
}

/// `turnutils_natdiscovery -m` from `h` (killed by PID if it outlives 30 s).
fn natdiscovery_in(ns: &str) -> Option<String> {
    if !which("turnutils_natdiscovery") {
        eprintln!(
            "*** turnutils_natdiscovery missing: its cross-check is skipped (apt-get install coturn) ***"
        );
        return None;
    }
    let mut child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "turnutils_natdiscovery",
            "-m",
            "-p",
            "3478",
            "203.0.113.10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start turnutils_natdiscovery");
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut s = String::new();
        let _ = std::io::BufReader::new(stdout).read_to_string(&mut s);
        let _ = tx.send(s);
    });
    // Its output ends when it exits (stdout closed); if that takes over 30 s, kill it.
    let out = rx.recv_timeout(Duration::from_secs(30)).ok();
    if out.is_none() {
        eprintln!("killing turnutils_natdiscovery (pid {pid}): no result in 30 s");
        let _ = child.kill();
    }
    let _ = child.wait();
    out
}

fn skip_reason() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root (network namespaces and iptables need it)".into());
    }
    for bin in ["ip", "iptables", "sysctl"] {
        if !which(bin) {
            return Some(format!(
                "{bin} is missing (apt-get install iproute2 iptables procps)"
            ));
        }
    }
    let probe = format!("ap{}-probe", std::process::id());
    if let Err(e) = run(&["ip", "netns", "add", &probe]) {
        return Some(format!("cannot create a network namespace: {e}"));
    }
    let _ = run(&["ip", "netns", "del", &probe]);
    None
}

fn check(tag: &str, random_fully: bool) -> Option<(TestResults, Option<String>)> {
    if let Some(why) = skip_reason() {
        eprintln!("\n\n*** SKIPPED netns NAT test ({tag}): {why} ***\n");
        return None;
    }
    let topo = Topology::build(tag, random_fully).unwrap_or_else(|e| panic!("topology: {e}"));
    let (stop, server) = stun_in(&topo.ns("pub"));
    let (tests, quic, errors, took) = discover_in(&topo.ns("h"));
    let coturn = natdiscovery_in(&topo.ns("h"));
    let _ = stop.send(());
    server.join().expect("STUN thread");
    eprintln!(
        "{tag}: discovery took {took:?}: {tests:?} (on the QUIC socket: {quic:?}) {errors:?}"
    );
    assert!(errors.is_empty(), "{errors:?}");
    // The same mapping behaviour seen from the QUIC socket.
    assert_eq!(nat::mapping(&quic), nat::mapping(&tests), "{quic:?}");
    assert_eq!(
        quic.primary.map(|a| a.ip()),
        Some(IpAddr::from([203, 0, 113, 20]))
    );
    drop(topo);
    Some((tests, coturn))
}

#[test]
fn masquerade_is_endpoint_independent_mapping() {
    let Some((tests, coturn)) = check("m", false) else {
        return;
    };
    let mapped = tests.primary.expect("mapped");
    assert_eq!(
        mapped.ip(),
        IpAddr::from([203, 0, 113, 20]),
        "the router's WAN IP"
    );
    let class = nat::classify(&tests);
    assert_eq!(class.mapping, Mapping::EndpointIndependent, "{tests:?}");
    // A home router's conntrack lets in only replies from where we sent.
    assert_eq!(
        class.filtering,
        Filtering::AddressAndPortDependent,
        "{tests:?}"
    );
    assert_eq!(class.nat_type, NatType::PortRestrictedCone);
    if let Some(out) = coturn {
        assert!(
            out.contains("Endpoint Independent Mapping"),
            "coturn says:\n{out}"
        );
    }
}

#[test]
fn random_fully_is_symmetric() {
    let Some((tests, coturn)) = check("r", true) else {
        return;
    };
    assert_eq!(
        tests.primary.map(|a| a.ip()),
        Some(IpAddr::from([203, 0, 113, 20]))
    );
    let class = nat::classify(&tests);
    assert_eq!(class.mapping, Mapping::AddressAndPortDependent, "{tests:?}");
    assert_eq!(class.nat_type, NatType::Symmetric);
    if let Some(out) = coturn {
        assert!(
            out.contains("Address and Port Dependent Mapping"),
            "coturn says:\n{out}"
        );
    }
}

/// A whole hub (`Hub::start`) inside `ns` at 203.0.113.10:7700; runs until `stop` is sent.
fn hub_in(
    ns: &str,
    data_dir: std::path::PathBuf,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
    allpeers_model::PeerId,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = in_netns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut config = allpeers_hub::HubConfig {
                data_dir,
                quic: Some("203.0.113.10:7700".parse().unwrap()),
                tcp: Some("203.0.113.10:7700".parse().unwrap()),
                ..Default::default()
            };
            config.probe.timeout_secs = 2;
            let hub = allpeers_hub::Hub::start(config).await.expect("hub in pub");
            ready_tx.send(hub.endpoint.peer_id()).unwrap();
            let _ = tokio::time::timeout(Duration::from_secs(60), stop_rx).await;
            hub.endpoint.shutdown().await;
        });
    });
    let peer = ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("hub ready");
    (stop_tx, handle, peer)
}

#[test]
fn tcp_probe_behind_nat_fails_until_the_port_is_forwarded() {
    if let Some(why) = skip_reason() {
        eprintln!("\n\n*** SKIPPED netns TCP probe test: {why} ***\n");
        return;
    }
    let topo = Topology::build("p", false).unwrap_or_else(|e| panic!("topology: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let (stop, hub_thread, hub) = hub_in(&topo.ns("pub"), dir.path().to_path_buf());
    let nat_ns = topo.ns("nat");
    let (before, after) = in_netns(&topo.ns("h"), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let endpoint = allpeers_net::Endpoint::bind(
                allpeers_net::Identity::generate(),
                allpeers_net::EndpointConfig {
                    quic: Some("0.0.0.0:0".parse().unwrap()),
                    tcp: Some("0.0.0.0:7001".parse().unwrap()),
                    ..Default::default()
                },
            )
            .await
            .expect("endpoint in h");
            endpoint.add_peer_address(
                hub,
                allpeers_net::Address::quic("203.0.113.10:7700".parse().unwrap()),
            );
            let timeout = Duration::from_secs(20);
            let before = conn::probe_tcp(&endpoint, hub, 7001, timeout)
                .await
                .expect("probe answered");
            // Forward the port on the router, as a user would.
            for rule in [
                "iptables -t nat -A PREROUTING -i wan -p tcp --dport 7001 -j DNAT --to-destination 198.18.1.2:7001",
                "iptables -I FORWARD -i wan -p tcp -d 198.18.1.2 --dport 7001 -j ACCEPT",
            ] {
                let mut args = vec!["ip", "netns", "exec", nat_ns.as_str()];
                args.extend(rule.split_whitespace());
                run(&args).unwrap();
            }
            let after = conn::probe_tcp(&endpoint, hub, 7001, timeout)
                .await
                .expect("probe answered");
            endpoint.close();
            (before, after)
        })
    })
    .join()
    .expect("h thread");
    let _ = stop.send(());
    hub_thread.join().expect("hub thread");
    eprintln!("before forwarding: {before:?}\nafter: {after:?}");
    let public: SocketAddr = "203.0.113.20:7001".parse().unwrap();
    // The hub probes the address it sees us at: the router's public IP.
    assert_eq!(before.target, public);
    assert_eq!(before.outcome, conn::ProbeOutcome::TimedOut);
    assert_eq!(after.target, public);
    assert_eq!(after.outcome, conn::ProbeOutcome::Reachable);
    drop(topo);
}
