//! Hub benchmarks (harness = false; prints a table).
//!
//! 1. Throughput on loopback in one run: direct QUIC, direct TCP, and relayed through a real
//!    `allpeers-hub` process (peers on QUIC to the hub, TLS + yamux end to end inside).
//! 2. Presence capacity: a separate load-generator process (this binary re-run with
//!    `ALLPEERS_HUB_BENCH_LOADGEN`) opens N presence lines, each from its own identity and
//!    endpoint; the hub's RSS is read from /proc before and after.
//!
//! 3. Presence fan-out: every load-generator line watches one more peer (the "popular" one,
//!    in this process); it changes its status once, and the load generator measures the time
//!    until all N watchers heard it. The hub runs the `open` watch policy here: under the
//!    default mutual rule the popular peer would have to watch all N back, past the per-peer
//!    watch cap of 4,096.
//!
//! 4. Cluster mode: the same lines and fan-out with the hub's state in PostgreSQL (a server
//!    the bench starts in a temporary directory), on one instance and split over 2-4
//!    instances sharing the key and the database (one load generator per instance; the
//!    popular peer on the first, so the other instances' watchers hear it through `NOTIFY`).
//!
//! 5. Letters: the added latency of a letter deposited at the recipient's hub over a guest
//!    line (cold: the line opened for it; warm) against one deposited at one's own hub, and
//!    in cluster mode a letter deposited at another instance than the recipient's line.
//!    Each timed twice: the deposit's round trip, and until the recipient's line hears
//!    `MailWaiting`.
//!
//! `HUB_BENCH_LINES` (default 10000), `HUB_BENCH_MIB` (default 128),
//! `HUB_BENCH_TRANSPORT` (quic or tcp, default quic) and `HUB_BENCH_INSTANCES` (default
//! `1,2,3,4`: the cluster rows) change the sizes; `HUB_BENCH_SECTIONS` (default
//! `throughput,presence,cluster,letters`) picks the parts.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allpeers_hub_client::{AcceptAll, HubClient, HubClientConfig, WatchHolder};
use allpeers_model::PeerId;
use allpeers_net::service::{BoxFuture, StreamKind};
use allpeers_net::transport::{RecvStream, SendStream};
use allpeers_net::{
    Address, Context, Endpoint, EndpointConfig, Identity, Namespace, Service, TransportKind,
};

#[path = "../tests/common/postgres.rs"]
mod postgres;

const LOADGEN: &str = "ALLPEERS_HUB_BENCH_LOADGEN";

struct Sink;
impl Service for Sink {
    fn accepts(&self, kind: StreamKind) -> bool {
        kind == StreamKind::Stream
    }
    fn stream(&self, _ctx: Context, mut send: SendStream, mut recv: RecvStream) -> BoxFuture<()> {
        Box::pin(async move {
            let mut buf = vec![0u8; 256 * 1024];
            let mut n = 0u64;
            while let Ok(k) = recv.read(&mut buf).await {
                if k == 0 {
                    break;
                }
                n += k as u64;
            }
            let _ = send.write_all(&n.to_le_bytes()).await;
            let _ = send.finish().await;
        })
    }
}

fn sink_ns() -> Namespace {
    Namespace::allpeers("bench-sink", 1).unwrap()
}

fn raise_nofile() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let max = lim.maximum.unwrap_or(1 << 20);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(max),
            maximum: lim.maximum,
        },
    );
    getrlimit(Resource::Nofile).current.unwrap_or(0)
}

struct HubChild {
    child: std::process::Child,
    peer: PeerId,
    quic: SocketAddr,
    tcp: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for HubChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_hub(extra: &[&str]) -> HubChild {
    spawn_hub_in(tempfile::tempdir().unwrap(), extra)
}

fn spawn_hub_in(dir: tempfile::TempDir, extra: &[&str]) -> HubChild {
    let mut child = Command::new(env!("CARGO_BIN_EXE_allpeers-hub"))
        .args([
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--name",
            "bench.hub",
            "--quic",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--log",
            "marrow",
        ])
        .args(extra)
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
        _dir: dir,
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn push(from: &Endpoint, to: PeerId, bytes: u64) -> f64 {
    let (mut send, mut recv) = from.open_stream(to, &sink_ns()).await.unwrap();
    let chunk = vec![0x5au8; 1024 * 1024];
    let t = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        send.write_all(&chunk[..n]).await.unwrap();
        left -= n as u64;
    }
    send.finish().await.unwrap();
    let got = recv.read_to_end(16).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(u64::from_le_bytes(got[..8].try_into().unwrap()), bytes);
    bytes as f64 / secs / (1024.0 * 1024.0)
}

async fn endpoint(quic: bool) -> Endpoint {
    let mut c = EndpointConfig::loopback();
    if !quic {
        c.quic = None;
    }
    let e = Endpoint::bind(Identity::generate(), c).await.unwrap();
    e.register(sink_ns(), Sink);
    e
}

async fn throughput(mib: u64) -> Vec<(String, f64)> {
    let bytes = mib * 1024 * 1024;
    let hub = spawn_hub(&[]);
    let hub_addrs = vec![Address::quic(hub.quic), Address::tcp(hub.tcp)];
    let mut rows: Vec<(String, Vec<f64>)> = vec![
        ("direct QUIC".into(), vec![]),
        ("direct TCP+TLS+yamux".into(), vec![]),
        (
            "relayed via hub (QUIC to hub, TLS+yamux inside)".into(),
            vec![],
        ),
    ];
    // Direct pairs.
    let (a, b) = (endpoint(true).await, endpoint(true).await);
    a.add_peer_address(b.peer_id(), b.local_address(TransportKind::Quic).unwrap());
    let (c, d) = (endpoint(false).await, endpoint(false).await);
    c.add_peer_address(d.peer_id(), d.local_address(TransportKind::Tcp).unwrap());
    // Relayed pair: no addresses of each other.
    let (e, f) = (endpoint(true).await, endpoint(true).await);
    let he = HubClient::start(
        e.clone(),
        HubClientConfig::new(hub.peer, hub_addrs.clone()),
        Arc::new(AcceptAll),
    )
    .await
    .unwrap();
    let hf = HubClient::start(
        f.clone(),
        HubClientConfig::new(hub.peer, hub_addrs.clone()),
        Arc::new(AcceptAll),
    )
    .await
    .unwrap();
    assert!(he.wait_online(Duration::from_secs(10)).await);
    assert!(hf.wait_online(Duration::from_secs(10)).await);
    he.connect_relayed(f.peer_id()).await.unwrap();
    // Warm-up, then interleaved rounds.
    push(&a, b.peer_id(), 8 << 20).await;
    push(&c, d.peer_id(), 8 << 20).await;
    push(&e, f.peer_id(), 8 << 20).await;
    for _ in 0..3 {
        rows[0].1.push(push(&a, b.peer_id(), bytes).await);
        rows[1].1.push(push(&c, d.peer_id(), bytes).await);
        rows[2].1.push(push(&e, f.peer_id(), bytes).await);
    }
    rows.into_iter()
        .map(|(name, mut v)| {
            v.sort_by(|x, y| x.partial_cmp(y).unwrap());
            (name, v[v.len() / 2])
        })
        .collect()
}

/// The load generator: N nodes with presence lines to the hub; prints progress and
/// `ALL_UP <n> <secs>`, then holds the lines until stdin closes.
fn loadgen(spec: &str) {
    let mut parts = spec.split(',');
    let n: usize = parts.next().unwrap().parse().unwrap();
    let hub: PeerId = parts.next().unwrap().parse().unwrap();
    let addr: SocketAddr = parts.next().unwrap().parse().unwrap();
    let transport = parts.next().unwrap_or("quic");
    let popular: Option<PeerId> = parts.next().map(|p| p.parse().unwrap());
    raise_nofile();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let t = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(128));
        let mut tasks = Vec::new();
        for _ in 0..n {
            let sem = sem.clone();
            let quic = transport == "quic";
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.unwrap();
                let cfg = EndpointConfig {
                    quic: quic.then(|| SocketAddr::from(([127, 0, 0, 1], 0))),
                    tcp: None,
                    ..EndpointConfig::default()
                };
                let ep = Endpoint::bind(Identity::generate(), cfg).await.unwrap();
                let a = if quic {
                    Address::quic(addr)
                } else {
                    Address::tcp(addr)
                };
                let mut hc = HubClientConfig::new(hub, vec![a]);
                hc.ping_interval = Duration::from_secs(5);
                hc.line_timeout = Duration::from_secs(20);
                hc.backoff_min = Duration::from_secs(1);
                hc.request_timeout = Duration::from_secs(60);
                let client = HubClient::start(ep.clone(), hc, Arc::new(AcceptAll))
                    .await
                    .unwrap();
                let ok = client.wait_online(Duration::from_secs(120)).await;
                let mut heard = None;
                if let Some(p) = popular {
                    let mut events = client.events();
                    client.watch(WatchHolder::Contacts, &[p]).await;
                    let (tx, rx) = tokio::sync::oneshot::channel::<Instant>();
                    tokio::spawn(async move {
                        while let Ok(e) = events.recv().await {
                            if let allpeers_hub_client::HubEvent::PresenceChanged {
                                peer,
                                status,
                                ..
                            } = e
                                && peer == p
                                && status.text == "fanout"
                            {
                                let _ = tx.send(Instant::now());
                                return;
                            }
                        }
                    });
                    heard = Some(rx);
                }
                (ep, client, ok, heard)
            }));
        }
        let mut held = Vec::new();
        let mut up = 0;
        let mut heard = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            let (ep, client, ok, rx) = t.await.unwrap();
            up += ok as usize;
            held.push((ep, client));
            heard.extend(rx);
            if (i + 1) % 1000 == 0 {
                eprintln!("loadgen: {} started, {up} online", i + 1);
            }
        }
        println!("ALL_UP {up} {:.1}", t.elapsed().as_secs_f64());
        std::io::stdout().flush().unwrap();
        if popular.is_some() {
            // "GO" on stdin: the popular peer is about to change its status.
            let go = tokio::task::spawn_blocking(|| {
                let mut s = String::new();
                let _ = std::io::stdin().read_line(&mut s);
                Instant::now()
            })
            .await
            .unwrap();
            let mut last = go;
            let mut got = 0;
            for rx in heard {
                if let Ok(Ok(at)) = tokio::time::timeout(Duration::from_secs(30), rx).await {
                    got += 1;
                    last = last.max(at);
                }
            }
            println!(
                "FANOUT {got} {:.1}",
                last.duration_since(go).as_secs_f64() * 1e3
            );
            std::io::stdout().flush().unwrap();
        }
        // Hold until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await
        .unwrap();
        drop(held);
    });
}

/// One presence run: `lines` lines split over `hubs` (one load generator each), every line
/// watching `popular` (online at the first hub), which then changes its status once.
struct PresenceRun {
    up: usize,
    secs: f64,
    rss_before: Vec<u64>,
    rss_after: Vec<u64>,
    heard: usize,
    fan_ms: f64,
    gen_rss: u64,
}

fn presence_run(hubs: &[&HubChild], lines: usize, transport: &str) -> PresenceRun {
    let hub_peer = hubs[0].peer;
    let popular_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let popular = popular_rt.block_on(async {
        let ep = endpoint(true).await;
        let cfg = HubClientConfig::new(hub_peer, vec![Address::quic(hubs[0].quic)]);
        let client = HubClient::start(ep.clone(), cfg, Arc::new(AcceptAll))
            .await
            .unwrap();
        assert!(client.wait_online(Duration::from_secs(30)).await);
        (ep, client)
    });
    std::thread::sleep(Duration::from_millis(300));
    let rss_before: Vec<u64> = hubs.iter().map(|h| rss_kib(h.child.id())).collect();
    let mut generators = Vec::new();
    for (i, hub) in hubs.iter().enumerate() {
        let addr = if transport == "quic" {
            hub.quic
        } else {
            hub.tcp
        };
        let share = lines / hubs.len() + usize::from(i < lines % hubs.len());
        let mut generator = Command::new(std::env::current_exe().unwrap())
            .env(
                LOADGEN,
                format!(
                    "{share},{hub_peer},{addr},{transport},{}",
                    popular.0.peer_id()
                ),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let out = BufReader::new(generator.stdout.take().unwrap());
        generators.push((generator, out));
    }
    let (mut up, mut secs) = (0, 0f64);
    for (_, out) in &mut generators {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let mut parts = line.split_whitespace().skip(1);
        up += parts.next().unwrap_or("0").parse::<usize>().unwrap_or(0);
        secs = secs.max(parts.next().unwrap_or("0").parse().unwrap_or(0.0));
    }
    // Let the lines settle (pings flowing), then read the hubs' memory.
    std::thread::sleep(Duration::from_secs(6));
    let rss_after: Vec<u64> = hubs.iter().map(|h| rss_kib(h.child.id())).collect();
    let gen_rss = generators.iter().map(|(g, _)| rss_kib(g.id())).sum();
    let mut stdins = Vec::new();
    for (generator, _) in &mut generators {
        let mut stdin = generator.stdin.take().unwrap();
        stdin.write_all(b"GO\n").unwrap();
        stdin.flush().unwrap();
        stdins.push(stdin);
    }
    popular_rt.block_on(popular.1.set_status(allpeers_hub_client::PeerStatus {
        availability: allpeers_hub_client::Availability::Away,
        text: "fanout".into(),
    }));
    let (mut heard, mut fan_ms) = (0, 0f64);
    for (_, out) in &mut generators {
        let mut fan = String::new();
        out.read_line(&mut fan).unwrap();
        let mut parts = fan.split_whitespace().skip(1);
        heard += parts.next().unwrap_or("0").parse::<usize>().unwrap_or(0);
        fan_ms = fan_ms.max(parts.next().unwrap_or("0").parse().unwrap_or(0.0));
    }
    drop(stdins);
    for (mut generator, _) in generators {
        let _ = generator.wait();
    }
    drop(popular);
    PresenceRun {
        up,
        secs,
        rss_before,
        rss_after,
        heard,
        fan_ms,
        gen_rss,
    }
}

/// A hub instance on `database` of `pg` (watch policy `open`, long presence timeout);
/// `key`: the first instance's key file, shared.
fn spawn_instance(
    pg: &postgres::Postgres,
    database: &str,
    instance: &str,
    key: Option<&std::path::Path>,
) -> HubChild {
    let dir = tempfile::tempdir().unwrap();
    if let Some(key) = key {
        std::fs::copy(key, dir.path().join("hub.key")).unwrap();
    }
    let config = serde_json::json!({
        "backend": {"postgres": {
            "url": pg.url().replace("dbname=postgres", &format!("dbname={database}")),
            "instance": instance,
        }}
    });
    let path = dir.path().join("hub.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let path = path.to_str().unwrap().to_string();
    spawn_hub_in(
        dir,
        &[
            "--config",
            &path,
            "--presence-timeout",
            "30",
            "--watch-policy",
            "open",
        ],
    )
}

/// Letters deposited for one recipient: each deposit's round trip and the time until the
/// recipient's line heard `MailWaiting`, plus (guests) the first deposit with its line.
#[derive(Default)]
struct LetterRun {
    deposit: Vec<Duration>,
    heard: Vec<Duration>,
    cold: Vec<Duration>,
}

/// Median and 90th percentile, in ms.
fn quantiles(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    format!("{:.2} / {:.2} ms", at(0.5), at(0.9))
}

/// A hub client for `hub` (its key `key`), online.
async fn line_to(hub: &HubChild, key: PeerId, guest: bool) -> (Endpoint, HubClient) {
    let ep = endpoint(true).await;
    let mut cfg = HubClientConfig::new(key, vec![Address::quic(hub.quic)]);
    cfg.guest = guest;
    let client = HubClient::start(ep.clone(), cfg, Arc::new(AcceptAll))
        .await
        .unwrap();
    assert!(client.wait_online(Duration::from_secs(30)).await);
    (ep, client)
}

/// One letter from `sender` to `to`: when it was sent and its round trip.
async fn deposit(sender: &HubClient, to: PeerId) -> (Instant, Duration) {
    let t = Instant::now();
    sender.mail_deposit(to, vec![7u8; 1024]).await.unwrap();
    (t, t.elapsed())
}

/// Bob (named, home line at `home`) gets `rounds` letters from one sender with a home line at
/// `sender_hub` (`guests` == 0), or from `guests` senders with guest lines there, each
/// opening its line for its first letter and then depositing `rounds` more (within the
/// per-guest burst of 30).
async fn letters(
    home: &HubChild,
    sender_hub: &HubChild,
    key: PeerId,
    guests: usize,
    rounds: usize,
) -> LetterRun {
    let (bob_ep, bob) = line_to(home, key, false).await;
    bob.register(&format!("bob{}", rand::random::<u32>()))
        .await
        .unwrap();
    let bob_id = bob_ep.peer_id();
    let mut events = bob.events();
    let (heard_tx, mut heard_rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            if let allpeers_hub_client::HubEvent::MailWaiting { .. } = e {
                let _ = heard_tx.send(Instant::now());
            }
        }
    });
    let mut heard = async || {
        tokio::time::timeout(Duration::from_secs(10), heard_rx.recv())
            .await
            .expect("the recipient hears of the letter")
            .unwrap()
    };
    let mut run = LetterRun::default();
    let mut senders = Vec::new();
    if guests == 0 {
        senders.push(line_to(sender_hub, key, false).await);
    }
    for _ in 0..guests.max(1) {
        if guests > 0 {
            let t = Instant::now();
            let (ep, client) = line_to(sender_hub, key, true).await;
            deposit(&client, bob_id).await;
            run.cold.push(t.elapsed());
            heard().await;
            senders.push((ep, client));
        }
        let sender = &senders.last().unwrap().1;
        for _ in 0..rounds {
            let (at, took) = deposit(sender, bob_id).await;
            let when = heard().await;
            run.deposit.push(took);
            run.heard.push(when.duration_since(at));
        }
    }
    listener.abort();
    run
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn main() {
    if let Ok(spec) = std::env::var(LOADGEN) {
        loadgen(&spec);
        return;
    }
    let nofile = raise_nofile();
    let lines: usize = std::env::var("HUB_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mib_per_run: u64 = std::env::var("HUB_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128);
    let transport = std::env::var("HUB_BENCH_TRANSPORT").unwrap_or_else(|_| "quic".into());
    let sections = std::env::var("HUB_BENCH_SECTIONS")
        .unwrap_or_else(|_| "throughput,presence,cluster,letters".into());
    let section = |name: &str| sections.split(',').any(|s| s.trim() == name);
    if section("throughput") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let rows = rt.block_on(throughput(mib_per_run));
        drop(rt);
        println!(
            "\n## Throughput on loopback ({mib_per_run} MiB per run, median of 3 interleaved rounds)\n"
        );
        println!("| path | MiB/s |");
        println!("|---|---:|");
        for (name, v) in &rows {
            println!("| {name} | {v:.0} |");
        }
    }
    if section("presence") {
        // Presence capacity, then fan-out of one status change to every line.
        let hub = spawn_hub(&["--presence-timeout", "30", "--watch-policy", "open"]);
        let run = presence_run(&[&hub], lines, &transport);
        let per = (run.rss_after[0].saturating_sub(run.rss_before[0])) as f64 * 1024.0
            / run.up.max(1) as f64;
        println!(
            "\n## Presence lines held by one hub ({transport}; load from a separate process; RLIMIT_NOFILE {nofile})\n"
        );
        println!(
            "| lines asked | lines online | time to bring up | hub RSS before | hub RSS after | per line | load generator RSS |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        println!(
            "| {lines} | {} | {:.1} s | {} | {} | {:.1} KiB | {:.0} MiB |",
            run.up,
            run.secs,
            mib(run.rss_before[0]),
            mib(run.rss_after[0]),
            per / 1024.0,
            run.gen_rss as f64 / 1024.0
        );
        println!(
            "\n## Presence fan-out: one status change to {} watchers on one hub ({transport})\n",
            run.up
        );
        println!("| watchers | heard it | time until the last heard it |");
        println!("|---:|---:|---:|");
        println!("| {} | {} | {:.0} ms |", run.up, run.heard, run.fan_ms);
    }
    let instances: Vec<usize> = std::env::var("HUB_BENCH_INSTANCES")
        .unwrap_or_else(|_| "1,2,3,4".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|n| (1..=8).contains(n))
        .collect();
    let pg = (section("cluster") || section("letters")).then(postgres::Postgres::start);
    // One database per cluster row (CREATE DATABASE refuses a multi-statement transaction).
    let database = |name: &str| {
        let pg = pg.as_ref().unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                pg.client()
                    .await
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
            });
        name.to_string()
    };
    // `n` instances of one hub (one key) on a fresh database.
    let cluster = |n: usize| {
        let pg = pg.as_ref().unwrap();
        let db = database(&format!("c{n}_{}", rand::random::<u32>()));
        let first = spawn_instance(pg, &db, &format!("i{n}-0"), None);
        let key = first._dir.path().join("hub.key");
        let mut hubs = vec![first];
        for k in 1..n {
            hubs.push(spawn_instance(pg, &db, &format!("i{n}-{k}"), Some(&key)));
        }
        hubs
    };
    if section("cluster") {
        println!(
            "\n## Cluster mode (PostgreSQL): {lines} presence lines and fan-out to all of them, over {instances:?} instances ({transport})\n"
        );
        println!(
            "| instances | lines online | time to bring up | RSS per instance before | RSS per instance after | per line (sum) | heard it | fan-out time |"
        );
        println!("|---:|---:|---:|---|---|---:|---:|---:|");
        for &n in &instances {
            let hubs = cluster(n);
            let refs: Vec<&HubChild> = hubs.iter().collect();
            let run = presence_run(&refs, lines, &transport);
            let grown: u64 = run
                .rss_after
                .iter()
                .zip(&run.rss_before)
                .map(|(a, b)| a.saturating_sub(*b))
                .sum();
            let list = |v: &[u64]| v.iter().map(|k| mib(*k)).collect::<Vec<_>>().join(" / ");
            println!(
                "| {n} | {} | {:.1} s | {} | {} | {:.1} KiB | {} | {:.0} ms |",
                run.up,
                run.secs,
                list(&run.rss_before),
                list(&run.rss_after),
                grown as f64 / run.up.max(1) as f64,
                run.heard,
                run.fan_ms
            );
        }
    }
    if section("letters") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // SQLite hubs: "home" is the recipient's, "other" the sender's.
        let home = spawn_hub(&[]);
        let pair = cluster(2);
        let rows = rt.block_on(async {
            vec![
                (
                    "sender and recipient at the same hub (SQLite)",
                    letters(&home, &home, home.peer, 0, 100).await,
                ),
                (
                    "sender homed elsewhere: guest line to the recipient's hub (SQLite), 4 guests x (1 cold + 25)",
                    letters(&home, &home, home.peer, 4, 25).await,
                ),
                (
                    "cluster, sender on the recipient's instance (PostgreSQL)",
                    letters(&pair[0], &pair[0], pair[0].peer, 0, 100).await,
                ),
                (
                    "cluster, sender on the other instance: `NOTIFY` to the recipient's (PostgreSQL)",
                    letters(&pair[0], &pair[1], pair[0].peer, 0, 100).await,
                ),
                (
                    "cluster, guest line to the other instance (PostgreSQL), 4 guests x (1 cold + 25)",
                    letters(&pair[0], &pair[1], pair[0].peer, 4, 25).await,
                ),
            ]
        });
        println!(
            "\n## Letters (1 KiB): deposit round trip and until the recipient's line hears of it (median / p90)\n"
        );
        println!(
            "| sender | deposits | deposit round trip | recipient hears it | first letter with its guest line (cold) |"
        );
        println!("|---|---:|---:|---:|---:|");
        for (name, run) in rows {
            println!(
                "| {name} | {} | {} | {} | {} |",
                run.deposit.len(),
                quantiles(run.deposit),
                quantiles(run.heard),
                quantiles(run.cold)
            );
        }
    }
}
