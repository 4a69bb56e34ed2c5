//! Files one-to-one, in one process on loopback: a shared file fetched with HTTP over a peer stream (a stream on the
//! TCP+TLS+yamux connection, a TCP+TLS connection of its own — `Endpoint::open_bulk_stream`, what the node uses over
//! TCP — and a QUIC stream; as the node does: `blob::download`, every block verified, written and journaled) against
//! two baselines: raw rustls over TCP moving the same number of bytes (no framing, nothing verified or written: the
//! ceiling), and raw rustls doing the work a verified download must (the sender reads the file; the receiver hashes
//! every byte with BLAKE3 and `pwrite`s it into a file, starting its writeback at once, with an `fdatasync` every 16
//! MiB, on a thread of its own as our decoder does) — "raw + the same work": what is left between it and our rows is protocol overhead.
//!
//! Beside HTTP, the swarm's own protocol from its one source (`blob::swarm`, `download::Route::Swarm`) over a TCP+TLS
//! connection of its own, as the node dials it: what a swarm download pays per byte before a second source helps.
//!
//! `cargo bench -p allpeers-transfer --bench files [-- --size-mib N] [--only yamux|bulk|quic|swarm]` (default 256 MiB, every
//! path) prints MB/s, CPU seconds per GB (both ends: one process) and the ratio to each baseline, which always run.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use allpeers_net::{
    Address, Endpoint, EndpointConfig, Identity, Namespace, ServiceFn, TransportKind, tls,
};
use allpeers_transfer::blob::download;
use allpeers_transfer::blob::http::{self, Lookup, Refusal, StatusCode};
use allpeers_transfer::blob::outboards::Outboards;
use allpeers_transfer::blob::{Dial, FileSpec, PeerIo};
use allpeers_transfer::cache::storage::SpaceAccount;
use allpeers_transfer::throttle::{Limits, Throttle, Throttles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHUNK: usize = 1 << 20;
/// The "same work" baseline's reads of the file and of the socket: the size of our encoder's and decoder's buffers.
const WORK_BUFFER: usize = 256 * 1024;
/// Buffers between its socket reader and its hashing + writing thread: as deep as our body-to-decoder channel.
const WORK_DEPTH: usize = 8;
/// Bytes written between two syncs: our landing's `COMMIT_BYTES`.
const WORK_SYNC_EVERY: u64 = 16 << 20;

fn files_ns() -> Namespace {
    Namespace::allpeers("files", 1).unwrap()
}

/// User + system CPU seconds of this process (Linux /proc, 100 ticks per second).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// How the HTTP connection reaches the server.
#[derive(Clone, Copy)]
enum Path {
    /// A stream on the TCP+TLS+yamux connection.
    Yamux,
    /// A TCP+TLS connection of its own (`Endpoint::open_bulk_stream`).
    Bulk,
    /// A stream on the QUIC connection.
    Quic,
    /// The swarm from its one source, over TCP+TLS connections of their own.
    Swarm,
}

struct Row {
    name: String,
    mb_per_s: f64,
    cpu_per_gb: f64,
}

async fn measure<F, Fut>(name: &str, size: u64, run: F) -> Row
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    run().await;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    Row {
        name: name.to_string(),
        mb_per_s: size as f64 / 1e6 / secs,
        cpu_per_gb: cpu / (size as f64 / 1e9),
    }
}

fn main() {
    let mut size_mib: u64 = 256;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--size-mib" {
            size_mib = args
                .next()
                .and_then(|s| s.parse().ok())
                .expect("--size-mib N");
        } else if arg == "--only" {
            only = Some(match args.next().as_deref() {
                Some("yamux") => Path::Yamux,
                Some("bulk") => Path::Bulk,
                Some("quic") => Path::Quic,
                Some("swarm") => Path::Swarm,
                _ => panic!("--only yamux|bulk|quic|swarm"),
            });
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(size_mib << 20, only));
}

async fn run(size: u64, only: Option<Path>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.bin");
    let data: Vec<u8> = (0..size as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &data).unwrap();
    drop(data);
    let outboards = Outboards::open(&dir.path().join("outboards")).unwrap();
    let started = Instant::now();
    let shared = outboards.add_file(&path).unwrap();
    let hashing = size as f64 / 1e6 / started.elapsed().as_secs_f64();

    // The server: the files service over the endpoint, and the raw rustls baseline sending the same bytes.
    let identity = Identity::generate();
    let tls_config = Arc::new(tls::server_config(&identity).unwrap());
    let server = Endpoint::bind(identity, EndpointConfig::loopback())
        .await
        .unwrap();
    let lookup: Lookup = {
        let outboards = outboards.clone();
        Arc::new(move |hash| {
            outboards
                .open_source(&hash)
                .map_err(|e| Refusal::new(StatusCode::NOT_FOUND, e.to_string()))
        })
    };
    server.register(
        files_ns(),
        ServiceFn::new().on_stream(move |_ctx, send, recv| {
            let lookup = lookup.clone();
            async move {
                let _ = http::serve(tokio::io::join(recv, send), lookup, Throttles(vec![])).await;
            }
        }),
    );
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raw_addr = raw.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = raw.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let mut tls = acceptor.accept(tcp).await.unwrap();
                let data = vec![0x5au8; CHUNK];
                let mut left = size;
                while left > 0 {
                    let n = left.min(CHUNK as u64) as usize;
                    tls.write_all(&data[..n]).await.unwrap();
                    left -= n as u64;
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    // The same work's sender: the bytes read from the shared file, a buffer at a time.
    let work = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let work_addr = work.local_addr().unwrap();
    let work_acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let file = Arc::new(std::fs::File::open(&path).unwrap());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = work.accept().await.unwrap();
            let acceptor = work_acceptor.clone();
            let file = file.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                let mut tls = acceptor.accept(tcp).await.unwrap();
                let mut buf = vec![0u8; WORK_BUFFER];
                let mut at = 0u64;
                while at < size {
                    let n = (size - at).min(WORK_BUFFER as u64) as usize;
                    file.read_exact_at(&mut buf[..n], at).unwrap();
                    tls.write_all(&buf[..n]).await.unwrap();
                    at += n as u64;
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    let peer = server.peer_id();

    let mut rows = Vec::new();
    let client_identity = Identity::generate();
    rows.push(
        measure("raw rustls over TCP (baseline)", size, || async {
            let config = Arc::new(tls::client_config(&client_identity).unwrap());
            let tcp = tokio::net::TcpStream::connect(raw_addr).await.unwrap();
            let _ = tcp.set_nodelay(true);
            let mut tls = tokio_rustls::TlsConnector::from(config)
                .connect(tls::server_name(&peer), tcp)
                .await
                .unwrap();
            let mut buf = vec![0u8; CHUNK];
            let mut got = 0u64;
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n as u64,
                }
            }
            assert_eq!(got, size);
        })
        .await,
    );
    let work_dir = tempfile::tempdir().unwrap();
    rows.push(
        measure(
            "raw rustls over TCP + the same work (hash, write, sync)",
            size,
            || async {
                let config = Arc::new(tls::client_config(&client_identity).unwrap());
                let tcp = tokio::net::TcpStream::connect(work_addr).await.unwrap();
                let _ = tcp.set_nodelay(true);
                let mut tls = tokio_rustls::TlsConnector::from(config)
                    .connect(tls::server_name(&peer), tcp)
                    .await
                    .unwrap();
                let (full_tx, mut full_rx) =
                    tokio::sync::mpsc::channel::<(Vec<u8>, usize)>(WORK_DEPTH);
                let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
                let out = std::fs::File::create(work_dir.path().join("copy.bin")).unwrap();
                let writer = tokio::task::spawn_blocking(move || {
                    let mut hasher = blake3::Hasher::new();
                    let (mut at, mut unsynced) = (0u64, 0u64);
                    while let Some((buf, len)) = full_rx.blocking_recv() {
                        hasher.update(&buf[..len]);
                        out.write_all_at(&buf[..len], at).unwrap();
                        // As our landing does: the disk starts writing at once, not at the sync.
                        let _ = rustix::fs::fadvise(
                            &out,
                            at,
                            std::num::NonZeroU64::new(len as u64),
                            rustix::fs::Advice::DontNeed,
                        );
                        at += len as u64;
                        unsynced += len as u64;
                        if unsynced >= WORK_SYNC_EVERY {
                            out.sync_data().unwrap();
                            unsynced = 0;
                        }
                        let _ = empty_tx.send(buf);
                    }
                    out.sync_data().unwrap();
                    (at, hasher.finalize())
                });
                loop {
                    let mut buf = empty_rx
                        .try_recv()
                        .unwrap_or_else(|_| vec![0u8; WORK_BUFFER]);
                    // Fill the buffer (or take what the stream has when it ends), as our body reader does.
                    let mut len = 0;
                    while len < buf.len() {
                        match tls.read(&mut buf[len..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => len += n,
                        }
                    }
                    if len == 0 {
                        break;
                    }
                    full_tx.send((buf, len)).await.unwrap();
                }
                drop(full_tx);
                let (got, hash) = writer.await.unwrap();
                assert_eq!(got, size);
                assert_eq!(
                    hash.to_hex().as_str(),
                    shared.hash.to_hex(),
                    "the same bytes"
                );
            },
        )
        .await,
    );
    let paths = only.map_or(
        vec![Path::Yamux, Path::Bulk, Path::Quic, Path::Swarm],
        |path| vec![path],
    );
    for path in paths {
        let kind = match path {
            Path::Yamux | Path::Bulk | Path::Swarm => TransportKind::Tcp,
            Path::Quic => TransportKind::Quic,
        };
        let address: Address = server.local_address(kind).unwrap();
        let client = Endpoint::bind(Identity::generate(), EndpointConfig::loopback())
            .await
            .unwrap();
        client.add_peer_address(peer, address);
        let dial: Dial = {
            let client = client.clone();
            Arc::new(move |_peer: String| {
                let client = client.clone();
                Box::pin(async move {
                    let opened = match path {
                        Path::Bulk | Path::Swarm => {
                            client.open_bulk_stream(peer, &files_ns()).await
                        }
                        Path::Yamux | Path::Quic => client.open_stream(peer, &files_ns()).await,
                    };
                    let (send, recv) = opened.map_err(std::io::Error::other)?;
                    Ok(Box::new(tokio::io::join(recv, send)) as Box<dyn PeerIo>)
                })
            })
        };
        let landing = tempfile::tempdir().unwrap();
        let name = match path {
            Path::Yamux => "HTTP one-to-one, TCP+TLS+yamux (verified, on disk)",
            Path::Bulk => "HTTP one-to-one, TCP+TLS of its own (verified, on disk)",
            Path::Quic => "HTTP one-to-one, QUIC (verified, on disk)",
            Path::Swarm => "swarm, one source, TCP+TLS of its own (verified, on disk)",
        };
        let route = match path {
            Path::Swarm => download::Route::Swarm,
            Path::Yamux | Path::Bulk | Path::Quic => download::Route::Auto,
        };
        let spec = FileSpec {
            hash: shared.hash,
            size: shared.size,
            name: "copy.bin".into(),
            sources: vec![peer.to_string()],
        };
        rows.push(
            measure(name, size, || async {
                let handle = download::start_by(
                    route,
                    spec,
                    download::Target {
                        dir: landing.path().join("out"),
                        state_dir: landing.path().join("state"),
                        partials: Default::default(),
                        outboards: None,
                        space: Arc::new(SpaceAccount::new(None)),
                    },
                    dial,
                    Arc::new(Throttle::default()),
                    Limits::default(),
                );
                handle.wait_complete().await.unwrap();
                handle.stop().await;
            })
            .await,
        );
    }

    println!(
        "files one-to-one, {} MiB on loopback, one process (CPU: both ends)",
        size >> 20
    );
    println!("hashing (outboard, once per shared file): {hashing:.0} MB/s");
    println!(
        "{:<58} {:>9} {:>11} {:>9} {:>13}",
        "path", "MB/s", "CPU s/GB", "of raw", "of raw+work"
    );
    let (raw, work) = (rows[0].mb_per_s, rows[1].mb_per_s);
    for row in &rows {
        println!(
            "{:<58} {:>9.0} {:>11.2} {:>8.0}% {:>12.0}%",
            row.name,
            row.mb_per_s,
            row.cpu_per_gb,
            100.0 * row.mb_per_s / raw,
            100.0 * row.mb_per_s / work
        );
    }
}
