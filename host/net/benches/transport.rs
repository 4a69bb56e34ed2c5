//! Transport benchmark, two processes on loopback (this binary re-runs itself as the server).
//!
//! `cargo bench -p allpeers-net --bench transport [-- --size-mib N --rounds R]` prints tables
//! (bulk numbers are medians of R interleaved rounds, default 3):
//! * bulk transfer of N MiB (default 1024) over one QUIC stream, over one TCP+TLS (yamux)
//!   stream, and over a raw rustls-over-TCP stream with no framing (the baseline): MB/s and
//!   CPU seconds per GB (client + server);
//! * request/response latency p50/p99, each transport;
//! * handshake time (fresh endpoint, full TLS 1.3 mutual handshake), each transport;
//! * 1,000 concurrent requests on one connection, each transport.
//!
//! `--bulk-only` stops after the bulk table; `--skip-yamux` leaves the TCP+TLS+yamux row out.
//! Across a real link: `ALLPEERS_BENCH_SERVER_NETNS=ns` starts the server with `ip netns exec
//! ns`, `ALLPEERS_BENCH_SERVER_IP` / `ALLPEERS_BENCH_CLIENT_IP` are the addresses each end
//! binds (default 127.0.0.1) — e.g. the two ends of a veth pair with MTU 1500
//! (docs/benchmarks.md, "QUIC at a real path MTU").

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use allpeers_model::PeerId;
use allpeers_net::{
    Address, Endpoint, EndpointConfig, Identity, Namespace, ServiceFn, TransportKind, tls,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const CHUNK: usize = 1 << 20;

fn sink_ns() -> Namespace {
    Namespace::allpeers("bench-sink", 1).unwrap()
}
fn echo_ns() -> Namespace {
    Namespace::allpeers("bench-echo", 1).unwrap()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if std::env::var("ALLPEERS_BENCH_ROLE").as_deref() == Ok("server") {
        rt.block_on(server());
    } else {
        rt.block_on(client());
    }
}

/// The address this end binds (`ALLPEERS_BENCH_SERVER_IP` or `_CLIENT_IP`; default loopback).
fn bind_ip(var: &str) -> std::net::IpAddr {
    std::env::var(var)
        .ok()
        .map(|ip| ip.parse().expect("an IP address"))
        .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into())
}

fn endpoint_config(var: &str) -> EndpointConfig {
    let ip = bind_ip(var);
    EndpointConfig {
        quic: Some((ip, 0).into()),
        tcp: Some((ip, 0).into()),
        ..Default::default()
    }
}

async fn server() {
    let identity = Identity::generate();
    let tls_config = Arc::new(tls::server_config(&identity).unwrap());
    let endpoint = Endpoint::bind(identity, endpoint_config("ALLPEERS_BENCH_SERVER_IP"))
        .await
        .unwrap();
    endpoint.register(
        sink_ns(),
        ServiceFn::new().on_stream(|_ctx, mut send, mut recv| async move {
            let mut buf = vec![0u8; CHUNK];
            let mut total = 0u64;
            while let Ok(n) = recv.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            let _ = send.write_all(&total.to_be_bytes()).await;
            let _ = send.finish().await;
        }),
    );
    endpoint.register(
        echo_ns(),
        ServiceFn::new().on_request(|_ctx, text: String| async move { Ok(text) }),
    );
    // The baseline: rustls over TCP, the same certificates, no framing, no multiplexing.
    let raw = tokio::net::TcpListener::bind((bind_ip("ALLPEERS_BENCH_SERVER_IP"), 0))
        .await
        .unwrap();
    let raw_addr = raw.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = raw.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let mut tls = acceptor.accept(tcp).await.unwrap();
                let mut buf = vec![0u8; CHUNK];
                let mut total = 0u64;
                loop {
                    let n = tls.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = tls.write_all(&total.to_be_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    let quic = endpoint.local_address(TransportKind::Quic).unwrap().addr;
    let tcp = endpoint.local_address(TransportKind::Tcp).unwrap().addr;
    println!("READY {} {quic} {tcp} {raw_addr}", endpoint.peer_id());
    let mut sink = Vec::new();
    let _ = tokio::io::stdin().read_to_end(&mut sink).await;
}

/// User + system CPU seconds of a process (Linux /proc, 100 ticks per second).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 14 and 15 of the stat line are 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

struct Bulk {
    name: &'static str,
    mb_per_s: f64,
    cpu_per_gb: f64,
}

async fn measure_bulk<F, Fut>(name: &'static str, server_pid: &str, size: u64, run: F) -> Bulk
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let cpu0 = cpu_seconds("self") + cpu_seconds(server_pid);
    let start = Instant::now();
    let got = run().await;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds("self") + cpu_seconds(server_pid) - cpu0;
    assert_eq!(got, size, "{name}: the server counted {got} bytes");
    let gb = size as f64 / 1e9;
    Bulk {
        name,
        mb_per_s: size as f64 / 1e6 / secs,
        cpu_per_gb: cpu / gb,
    }
}

async fn bulk_stream(endpoint: &Endpoint, peer: PeerId, size: u64) -> u64 {
    let (mut send, mut recv) = endpoint.open_stream(peer, &sink_ns()).await.unwrap();
    let data = vec![0x5au8; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        send.write_all(&data[..n]).await.unwrap();
        left -= n as u64;
    }
    send.finish().await.unwrap();
    let mut count = [0u8; 8];
    let mut have = 0;
    while have < 8 {
        let n = recv.read(&mut count[have..]).await.unwrap();
        assert!(n > 0, "no count");
        have += n;
    }
    u64::from_be_bytes(count)
}

async fn bulk_raw(client: &Identity, peer: PeerId, addr: std::net::SocketAddr, size: u64) -> u64 {
    let config = Arc::new(tls::client_config(client).unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = tcp.set_nodelay(true);
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(tls::server_name(&peer), tcp)
        .await
        .unwrap();
    let data = vec![0x5au8; CHUNK];
    let mut left = size;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        tls.write_all(&data[..n]).await.unwrap();
        left -= n as u64;
    }
    tls.shutdown().await.unwrap();
    let mut count = [0u8; 8];
    tls.read_exact(&mut count).await.unwrap();
    u64::from_be_bytes(count)
}

/// The QUIC connection's path and packet counters, as the sending side sees them.
fn print_quic(when: &str, endpoint: &Endpoint, peer: PeerId) {
    let Some(stats) = endpoint.connection(&peer).map(|c| c.stats()) else {
        return;
    };
    let Some(q) = stats.quic else { return };
    println!(
        "(QUIC {when}: path MTU {:?} bytes, RTT {:.3} ms, {} datagrams sent in {} send calls \
         ({:.1} per call), {} ACK frames received, {} lost, {} congestion events, \
         {} black holes, cwnd {} bytes)",
        stats.path_mtu,
        stats.rtt_ms.unwrap_or(0.0),
        q.datagrams_sent,
        q.send_calls,
        q.datagrams_sent as f64 / q.send_calls.max(1) as f64,
        q.acks_received,
        q.lost_packets,
        q.congestion_events,
        q.black_holes,
        q.cwnd
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn client_for(peer: PeerId, address: Address) -> Endpoint {
    let endpoint = Endpoint::bind(
        Identity::generate(),
        endpoint_config("ALLPEERS_BENCH_CLIENT_IP"),
    )
    .await
    .unwrap();
    endpoint.add_peer_address(peer, address);
    endpoint
}

async fn client() {
    let mut size_mib: u64 = std::env::var("ALLPEERS_BENCH_SIZE_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let mut rounds = 3;
    let (mut bulk_only, mut skip_yamux) = (false, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--bulk-only" {
            bulk_only = true;
        } else if arg == "--skip-yamux" {
            skip_yamux = true;
        } else if arg == "--rounds" {
            rounds = args
                .next()
                .and_then(|s| s.parse().ok())
                .expect("--rounds N");
        } else if arg == "--size-mib" {
            size_mib = args
                .next()
                .and_then(|s| s.parse().ok())
                .expect("--size-mib N");
        }
    }
    let size = size_mib << 20;

    let exe = std::env::current_exe().unwrap();
    let mut command = match std::env::var("ALLPEERS_BENCH_SERVER_NETNS") {
        Ok(ns) => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", &ns]).arg(exe);
            c
        }
        Err(_) => tokio::process::Command::new(exe),
    };
    let mut child = command
        .env("ALLPEERS_BENCH_ROLE", "server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let server_pid = child.id().unwrap().to_string();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().expect("READY");
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts[0], "READY");
    let peer: PeerId = parts[1].parse().unwrap();
    let quic: std::net::SocketAddr = parts[2].parse().unwrap();
    let tcp: std::net::SocketAddr = parts[3].parse().unwrap();
    let raw: std::net::SocketAddr = parts[4].parse().unwrap();

    let over_quic = client_for(peer, Address::quic(quic)).await;
    let over_tcp = client_for(peer, Address::tcp(tcp)).await;
    let raw_identity = Identity::generate();
    // Warm up (connections, windows) with a small transfer each.
    bulk_stream(&over_quic, peer, 8 << 20).await;
    bulk_stream(&over_tcp, peer, 8 << 20).await;
    bulk_raw(&raw_identity, peer, raw, 8 << 20).await;
    print_quic("after warm-up", &over_quic, peer);

    println!(
        "\nallpeers-net transport benchmark: two processes on loopback, {size_mib} MiB bulk, \
         median of {rounds} interleaved rounds\n"
    );
    let mut runs: [Vec<Bulk>; 3] = Default::default();
    for _ in 0..rounds {
        runs[0].push(
            measure_bulk("raw rustls over TCP (baseline)", &server_pid, size, || {
                bulk_raw(&raw_identity, peer, raw, size)
            })
            .await,
        );
        if !skip_yamux {
            runs[1].push(
                measure_bulk("TCP+TLS+yamux, one stream", &server_pid, size, || {
                    bulk_stream(&over_tcp, peer, size)
                })
                .await,
            );
        }
        runs[2].push(
            measure_bulk("QUIC (quinn), one stream", &server_pid, size, || {
                bulk_stream(&over_quic, peer, size)
            })
            .await,
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    print_quic("after the transfers", &over_quic, peer);
    let mut rows = Vec::new();
    for r in runs.iter().filter(|r| !r.is_empty()) {
        let mut speeds: Vec<f64> = r.iter().map(|b| b.mb_per_s).collect();
        let mut cpus: Vec<f64> = r.iter().map(|b| b.cpu_per_gb).collect();
        let all = speeds
            .iter()
            .map(|s| format!("{s:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        rows.push((r[0].name, median(&mut speeds), median(&mut cpus), all));
    }
    println!(
        "| bulk transfer | MB/s (median) | % of baseline | CPU s per GB (both processes) | all rounds, MB/s |"
    );
    println!("|---|---:|---:|---:|---|");
    let base = rows[0].1;
    for (name, speed, cpu, all) in &rows {
        println!(
            "| {name} | {speed:.0} | {:.0}% | {cpu:.2} | {all} |",
            100.0 * speed / base
        );
    }

    if bulk_only {
        drop(child.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        return;
    }
    println!("\n| request/response (32 B, sequential, 5,000) | p50 µs | p99 µs | mean µs |");
    println!("|---|---:|---:|---:|");
    for (name, endpoint) in [("QUIC", &over_quic), ("TCP+TLS", &over_tcp)] {
        let text = "x".repeat(32);
        for _ in 0..200 {
            let _: String = endpoint.request(peer, &echo_ns(), &text).await.unwrap();
        }
        let mut times = Vec::with_capacity(5000);
        for _ in 0..5000 {
            let t = Instant::now();
            let _: String = endpoint.request(peer, &echo_ns(), &text).await.unwrap();
            times.push(t.elapsed());
        }
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        times.sort();
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            percentile(&times, 0.5).as_secs_f64() * 1e6,
            percentile(&times, 0.99).as_secs_f64() * 1e6,
            mean.as_secs_f64() * 1e6
        );
    }

    println!("\n| handshake (fresh endpoint, mutual TLS 1.3, 30 runs) | p50 ms | p90 ms |");
    println!("|---|---:|---:|");
    for (name, address) in [
        ("QUIC", Address::quic(quic)),
        ("TCP+TLS", Address::tcp(tcp)),
    ] {
        let mut times = Vec::new();
        for _ in 0..30 {
            let endpoint = Endpoint::bind(
                Identity::generate(),
                endpoint_config("ALLPEERS_BENCH_CLIENT_IP"),
            )
            .await
            .unwrap();
            let t = Instant::now();
            endpoint.connect_addr(peer, address).await.unwrap();
            times.push(t.elapsed());
            endpoint.close();
        }
        times.sort();
        println!(
            "| {name} | {:.2} | {:.2} |",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.9).as_secs_f64() * 1e3
        );
    }

    println!("\n| 1,000 concurrent requests on one connection (5 runs) | median ms | requests/s |");
    println!("|---|---:|---:|");
    for (name, endpoint) in [("QUIC", &over_quic), ("TCP+TLS", &over_tcp)] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let all = (0..1000).map(|i| {
                let endpoint = endpoint.clone();
                async move {
                    let r: String = endpoint
                        .request(peer, &echo_ns(), &format!("{i}"))
                        .await
                        .unwrap();
                    assert_eq!(r, format!("{i}"));
                }
            });
            futures::future::join_all(all).await;
            times.push(t.elapsed());
        }
        times.sort();
        let median = times[2];
        println!(
            "| {name} | {:.1} | {:.0} |",
            median.as_secs_f64() * 1e3,
            1000.0 / median.as_secs_f64()
        );
    }
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}
