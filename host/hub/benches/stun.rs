//! STUN and discovery benchmarks (harness = false; prints a table).
//!
//! 1. Binding requests per second a real `allpeers-hub` process answers on loopback, its
//!    rate limits lifted (config file): `STUN_BENCH_SOCKETS` client sockets (default 8),
//!    each keeping `STUN_BENCH_WINDOW` requests in flight (default 16), for
//!    `STUN_BENCH_SECS` seconds (default 5). The load generator runs in this process on
//!    the same 2 cores, so the number is a floor for the server alone.
//! 2. The same with the default per-source limit (20/s, burst 40): what one flooding
//!    source gets.
//! 3. Discovery time on loopback: `allpeers_nat::connectivity::discover` through a node's
//!    hub connection (STUN mapping + filtering tests, TCP probe), and the STUN tests alone;
//!    median and max of 20 runs.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use allpeers_hub_client::{AcceptAll, HubClient, HubClientConfig};
use allpeers_model::PeerId;
use allpeers_nat::connectivity::stun::{MAX_PACKET, Retransmit, binding_request};
use allpeers_nat::connectivity::{self as conn, DiscoveryConfig};
use allpeers_net::{Address, Endpoint, EndpointConfig, Identity};
use tokio::net::UdpSocket;

struct HubChild {
    child: std::process::Child,
    peer: PeerId,
    quic: SocketAddr,
    tcp: SocketAddr,
    stun: Vec<SocketAddr>,
    _dir: tempfile::TempDir,
}

impl Drop for HubChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_hub(config: serde_json::Value) -> HubChild {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_allpeers-hub"))
        .args([
            "--config",
            path.to_str().unwrap(),
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--quic",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--log",
            "marrow",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    HubChild {
        child,
        peer: v["peer_id"].as_str().unwrap().parse().unwrap(),
        quic: v["quic"].as_str().unwrap().parse().unwrap(),
        tcp: v["tcp"].as_str().unwrap().parse().unwrap(),
        stun: v["stun"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().parse().unwrap())
            .collect(),
        _dir: dir,
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Closed loop: each socket keeps `window` requests outstanding; returns answers/s.
async fn load(server: SocketAddr, sockets: usize, window: usize, secs: u64) -> f64 {
    let answered = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for i in 0..sockets {
        let answered = answered.clone();
        // Spread sources over 127.0.0.0/8 so per-source state is exercised too.
        let ip = std::net::Ipv4Addr::new(127, 0, 1, 1 + i as u8);
        tasks.push(tokio::spawn(async move {
            let sock = UdpSocket::bind((ip, 0)).await.unwrap();
            let req = binding_request([i as u8; 12], 0);
            for _ in 0..window {
                let _ = sock.send_to(&req, server).await;
            }
            let mut buf = vec![0u8; MAX_PACKET + 1];
            while Instant::now() < stop {
                match tokio::time::timeout(Duration::from_millis(200), sock.recv_from(&mut buf))
                    .await
                {
                    Ok(Ok(_)) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                        let _ = sock.send_to(&req, server).await;
                    }
                    // A lost packet: put one back in flight.
                    _ => {
                        let _ = sock.send_to(&req, server).await;
                    }
                }
            }
        }));
    }
    let start = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    answered.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn stats(mut v: Vec<u64>) -> (u64, u64) {
    v.sort_unstable();
    (v[v.len() / 2], *v.last().unwrap())
}

fn main() {
    let sockets = env_or("STUN_BENCH_SOCKETS", 8) as usize;
    let window = env_or("STUN_BENCH_WINDOW", 16) as usize;
    let secs = env_or("STUN_BENCH_SECS", 5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let open = spawn_hub(serde_json::json!({
            "name": "bench.hub",
            "stun": {"primary": "127.0.0.1:0", "alternate": "127.0.0.2:0",
                     "per_source_per_sec": 1_000_000_000u32, "per_source_burst": 1_000_000_000u32,
                     "total_per_sec": 1_000_000_000u32},
            "probe": {"per_peer_per_minute": 100000, "per_peer_burst": 100000},
        }));
        let rate = load(open.stun[0], sockets, window, secs).await;
        let limited = spawn_hub(serde_json::json!({
            "name": "bench.hub",
            "stun": {"primary": "127.0.0.1:0", "alternate": "127.0.0.2:0"},
        }));
        let one = load(limited.stun[0], 1, window, secs).await;
        drop(limited);

        // Discovery through a node.
        let endpoint = Endpoint::bind(Identity::generate(), EndpointConfig::loopback())
            .await
            .unwrap();
        let hub = HubClient::start(
            endpoint.clone(),
            HubClientConfig::new(
                open.peer,
                vec![Address::quic(open.quic), Address::tcp(open.tcp)],
            ),
            Arc::new(AcceptAll),
        )
        .await
        .unwrap();
        assert!(hub.wait_online(Duration::from_secs(10)).await);
        let mut full = Vec::new();
        let mut stun_only = Vec::new();
        for _ in 0..20 {
            let r = conn::discover(
                &endpoint,
                open.peer,
                hub.status().observed,
                &DiscoveryConfig::default(),
            )
            .await;
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            assert!(r.tcp.as_ref().is_some_and(|t| t.reachable));
            full.push(r.duration_ms);
            let t = Instant::now();
            let (_, errors) = conn::stun_tests(
                std::net::IpAddr::from([127, 0, 0, 1]),
                open.stun[0],
                &Retransmit::default(),
            )
            .await;
            assert!(errors.is_empty());
            stun_only.push(t.elapsed().as_micros() as u64);
        }
        hub.stop();
        let (fm, fx) = stats(full);
        let (sm, sx) = stats(stun_only);
        println!(
            "\n## STUN server (real allpeers-hub process, loopback, 2 cores shared with the load)\n"
        );
        println!("| load | answers/s |");
        println!("|---|---:|");
        println!("| {sockets} sources x {window} in flight, limits lifted, {secs} s | {rate:.0} |");
        println!("| 1 source x {window} in flight, default limit (20/s, burst 40) | {one:.1} |");
        println!("\n## Discovery on loopback (20 runs)\n");
        println!("| what | median | max |");
        println!("|---|---:|---:|");
        println!("| discover(): STUN mapping + filtering tests, TCP probe | {fm} ms | {fx} ms |");
        println!(
            "| STUN tests alone | {:.1} ms | {:.1} ms |",
            sm as f64 / 1000.0,
            sx as f64 / 1000.0
        );
    });
}
