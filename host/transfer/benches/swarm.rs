//! The private swarm against one-to-one, in one process on loopback (TCP+TLS+yamux, as the node's peer streams):
//! one seeder whose upload is limited serves the same file (a) to one downloader alone, then (b) to three
//! downloaders at once, each of which also serves the others what it holds so far (`blob::partial`). If downloaders
//! serve each other, (b) takes little longer than (a): the seeder sends each chunk about once and the downloaders
//! spread it. Issue 17's goal: (b) ≤ 1.5 × (a).
//!
//! `cargo bench -p allpeers-transfer --bench swarm [-- --size-mib N --limit-mib N --bystanders N]` (defaults 128 MiB,
//! 32 MiB/s, 0) prints both times, their ratio, where each downloader's bytes came from, and the requests the
//! downloaders answered each other (and the bystanders answered: members of the share that never fetch the file).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use allpeers_net::{Endpoint, EndpointConfig, Identity, Namespace, ServiceFn, TransportKind};
use allpeers_transfer::blob::download::{self, FileHandle};
use allpeers_transfer::blob::http::{self, Lookup, Refusal, StatusCode};
use allpeers_transfer::blob::outboards::Outboards;
use allpeers_transfer::blob::partial::{Partials, Serving};
use allpeers_transfer::blob::{ContentHash, Dial, FileSpec, PeerIo};
use allpeers_transfer::cache::storage::SpaceAccount;
use allpeers_transfer::throttle::{Limits, Throttle, Throttles};

/// Longest a round may take before the bench gives up (a stall is a failure, not a number).
const ROUND_TIMEOUT: Duration = Duration::from_secs(300);

fn files_ns() -> Namespace {
    Namespace::allpeers("files", 1).unwrap()
}

/// A node of the bench: its endpoint, serving `lookup` under `throttles`.
async fn node(lookup: Lookup, throttles: Throttles) -> Endpoint {
    let endpoint = Endpoint::bind(Identity::generate(), EndpointConfig::loopback())
        .await
        .unwrap();
    endpoint.register(
        files_ns(),
        ServiceFn::new().on_stream(move |_ctx, send, recv| {
            let lookup = lookup.clone();
            let throttles = throttles.clone();
            async move {
                let _ = http::serve(tokio::io::join(recv, send), lookup, throttles).await;
            }
        }),
    );
    endpoint
}

/// Dials the others by the peer id a source is named by, over TCP.
fn dial(from: &Endpoint, others: &[&Endpoint]) -> Dial {
    for other in others {
        from.add_peer_address(
            other.peer_id(),
            other.local_address(TransportKind::Tcp).unwrap(),
        );
    }
    let ids: Arc<HashMap<String, _>> = Arc::new(
        others
            .iter()
            .map(|o| (o.peer_id().to_string(), o.peer_id()))
            .collect(),
    );
    let from = from.clone();
    Arc::new(move |name: String| {
        let from = from.clone();
        let peer = ids.get(&name).copied();
        Box::pin(async move {
            let peer = peer.ok_or_else(|| std::io::Error::other("not in the bench"))?;
            let (send, recv) = from
                .open_stream(peer, &files_ns())
                .await
                .map_err(std::io::Error::other)?;
            Ok(Box::new(tokio::io::join(recv, send)) as Box<dyn PeerIo>)
        })
    })
}

/// Requests (`HEAD` and `GET`) the downloaders answered as sources: what asking each other what they hold costs.
static ANSWERED_BY_DOWNLOADERS: AtomicU64 = AtomicU64::new(0);
/// Requests the bystanders answered: members of the share that never fetch the file, asked all the same.
static ANSWERED_BY_BYSTANDERS: AtomicU64 = AtomicU64::new(0);

/// A member serving what its downloads under way hold; each request it answers counted in `answered`.
fn partial_lookup(partials: &Partials, answered: &'static AtomicU64) -> Lookup {
    let partials = partials.clone();
    Arc::new(move |hash| {
        answered.fetch_add(1, Ordering::Relaxed);
        match partials.open_source(&hash) {
            Serving::Held(Ok(source)) => Ok(source),
            Serving::Held(Err(error)) => {
                Err(Refusal::new(StatusCode::NOT_FOUND, error.to_string()))
            }
            Serving::NothingYet(news) => Err(Refusal::not_yet("nothing yet", news)),
        }
    })
}

struct Downloaded {
    secs: f64,
    from_seeder: u64,
    from_others: u64,
    wasted: u64,
}

/// One round: a fresh seeder limited to `limit` bytes/s and `count` downloaders, each asking the seeder and every
/// other downloader; the time each took to hold the file whole.
async fn round(
    outboards: &Outboards,
    hash: ContentHash,
    size: u64,
    limit: u64,
    count: usize,
    bystanders: usize,
) -> Vec<Downloaded> {
    let seeder_lookup: Lookup = {
        let outboards = outboards.clone();
        Arc::new(move |hash| {
            outboards
                .open_source(&hash)
                .map_err(|e| Refusal::new(StatusCode::NOT_FOUND, e.to_string()))
        })
    };
    let upload = Arc::new(Throttle::new(Limits {
        down: None,
        up: Some(limit),
    }));
    let seeder = node(seeder_lookup, Throttles(vec![upload])).await;
    let mut downloaders = Vec::new();
    for _ in 0..count {
        let partials = Partials::default();
        let endpoint = node(
            partial_lookup(&partials, &ANSWERED_BY_DOWNLOADERS),
            Throttles(vec![]),
        )
        .await;
        downloaders.push((endpoint, partials));
    }
    let mut idle = Vec::new();
    for _ in 0..bystanders {
        let lookup = partial_lookup(&Partials::default(), &ANSWERED_BY_BYSTANDERS);
        idle.push(node(lookup, Throttles(vec![])).await);
    }
    let landing = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut handles: Vec<FileHandle> = Vec::new();
    for (i, (endpoint, partials)) in downloaders.iter().enumerate() {
        let mut others: Vec<&Endpoint> = vec![&seeder];
        others.extend(
            downloaders
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (e, _))| e),
        );
        others.extend(&idle);
        let spec = FileSpec {
            hash,
            size,
            name: "film.mkv".into(),
            sources: others.iter().map(|o| o.peer_id().to_string()).collect(),
        };
        handles.push(download::start(
            spec,
            download::Target {
                dir: landing.path().join(format!("d{i}")),
                state_dir: landing.path().join(format!("d{i}-state")),
                partials: partials.clone(),
                outboards: None,
                space: Arc::new(SpaceAccount::new(None)),
            },
            dial(endpoint, &others),
            Arc::new(Throttle::default()),
            Limits::default(),
        ));
    }
    let seeder_id = seeder.peer_id().to_string();
    // Each download timed by a task of its own, so every time is its own end, whichever finishes first.
    let waits: Vec<_> = handles
        .iter()
        .map(|handle| {
            let (handle, seeder_id) = (handle.clone(), seeder_id.clone());
            tokio::spawn(async move {
                tokio::time::timeout(ROUND_TIMEOUT, handle.wait_complete())
                    .await
                    .expect("the round stalled")
                    .expect("the download failed");
                let secs = started.elapsed().as_secs_f64();
                let sources = handle.sources();
                let from = |seeder: bool| -> u64 {
                    sources
                        .iter()
                        .filter(|(name, _)| (*name == seeder_id) == seeder)
                        .map(|(_, bytes)| bytes)
                        .sum()
                };
                Downloaded {
                    secs,
                    from_seeder: from(true),
                    from_others: from(false),
                    wasted: handle.progress().wasted,
                }
            })
        })
        .collect();
    let mut done = Vec::new();
    for wait in waits {
        done.push(wait.await.expect("a download's timer"));
    }
    for handle in &handles {
        handle.stop().await;
    }
    done
}

fn main() {
    let (mut size_mib, mut limit_mib, mut bystanders): (u64, u64, usize) = (128, 32, 0);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().and_then(|s| s.parse().ok()).expect("a number");
        match arg.as_str() {
            "--size-mib" => size_mib = value(),
            "--limit-mib" => limit_mib = value(),
            "--bystanders" => bystanders = value() as usize,
            _ => {}
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(size_mib << 20, limit_mib << 20, bystanders));
}

async fn run(size: u64, limit: u64, bystanders: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.bin");
    let data: Vec<u8> = (0..size as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &data).unwrap();
    drop(data);
    let outboards = Outboards::open(&dir.path().join("outboards")).unwrap();
    let shared = outboards.add_file(&path).unwrap();

    let alone = round(&outboards, shared.hash, shared.size, limit, 1, 0).await;
    let before = ANSWERED_BY_DOWNLOADERS.load(Ordering::Relaxed);
    let three = round(&outboards, shared.hash, shared.size, limit, 3, bystanders).await;
    let answered = ANSWERED_BY_DOWNLOADERS.load(Ordering::Relaxed) - before;
    let by_bystanders = ANSWERED_BY_BYSTANDERS.load(Ordering::Relaxed);
    let one = alone[0].secs;
    let all = three.iter().map(|d| d.secs).fold(0.0, f64::max);
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!(
        "private swarm, {} MiB, seeder upload limited to {} MiB/s, loopback TCP+TLS+yamux, one process",
        size >> 20,
        limit >> 20
    );
    println!(
        "{:<36} {:>8} {:>10} {:>12} {:>10}",
        "", "time s", "from seed", "from others", "wasted"
    );
    println!(
        "{:<36} {:>8.2} {:>10.1} {:>12.1} {:>10.1}",
        "one downloader alone",
        one,
        mib(alone[0].from_seeder),
        mib(alone[0].from_others),
        mib(alone[0].wasted)
    );
    for (i, d) in three.iter().enumerate() {
        println!(
            "{:<36} {:>8.2} {:>10.1} {:>12.1} {:>10.1}",
            format!("three at once: downloader {}", i + 1),
            d.secs,
            mib(d.from_seeder),
            mib(d.from_others),
            mib(d.wasted)
        );
    }
    println!("requests the three answered each other (HEAD and GET): {answered}");
    if bystanders > 0 {
        println!(
            "requests {bystanders} bystanders (members that never fetch it) answered: {by_bystanders}, {:.1} per second of the round",
            by_bystanders as f64 / three.iter().map(|d| d.secs).fold(0.0, f64::max)
        );
    }
    println!(
        "all three whole after {all:.2} s vs {one:.2} s alone: {:.2}x (goal <= 1.5x: {})",
        all / one,
        if all / one <= 1.5 { "met" } else { "missed" }
    );
}
