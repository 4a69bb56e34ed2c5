//! Hostile peers beside an honest one: a peer that claims every piece and answers every request with garbage, and a
//! peer that sends an oversized frame. The download still completes byte for byte from the honest aria2c seeder, the
//! liar is banned (and only the liar), the garbage peer is dropped, and nothing bad reaches the disk.

use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use allpeers_transfer::bt::engine::{Engine, EngineConfig, Target};
use allpeers_transfer::bt::metainfo::Torrent;
use allpeers_transfer::bt::wire::{self, HANDSHAKE_LEN, OutMessage, PeerMessage};
use allpeers_transfer::swarm::geometry::PieceSet;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const DEADLINE: Duration = Duration::from_secs(60);

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn content(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

async fn answer_handshake(stream: &mut TcpStream) -> Option<()> {
    let mut theirs = [0u8; HANDSHAKE_LEN];
    stream.read_exact(&mut theirs).await.ok()?;
    let handshake = wire::decode_handshake(&theirs).ok()?;
    stream
        .write_all(&wire::encode_handshake(
            handshake.info_hash,
            *b"-XX0001-liarliarliar",
        ))
        .await
        .ok()
}

/// Claims every piece, unchokes, and answers each request with garbage of the right length.
async fn liar(listener: TcpListener, pieces: u32, connections: Arc<AtomicUsize>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        connections.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            answer_handshake(&mut stream).await?;
            let mut out = BytesMut::new();
            wire::encode(
                &OutMessage::Bitfield(Bytes::copy_from_slice(PieceSet::full(pieces).as_wire())),
                &mut out,
            );
            wire::encode(&OutMessage::Unchoke, &mut out);
            stream.write_all(&out).await.ok()?;
            let mut buf = BytesMut::new();
            loop {
                if stream.read_buf(&mut buf).await.ok()? == 0 {
                    return Some(());
                }
                let mut out = BytesMut::new();
                while let Some(message) = wire::decode_frame(&mut buf).ok()? {
                    if let PeerMessage::Request(block) = message {
                        let data = Bytes::from(vec![0xAA; block.len as usize]);
                        wire::encode(&OutMessage::Piece { block, data }, &mut out);
                    }
                }
                stream.write_all(&out).await.ok()?;
            }
        });
    }
}

/// Sends a frame far past the size limit, then waits to be dropped; counts the drops.
async fn garbage(listener: TcpListener, dropped: Arc<AtomicUsize>) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let dropped = dropped.clone();
        tokio::spawn(async move {
            answer_handshake(&mut stream).await?;
            stream
                .write_all(&[0xff, 0xff, 0xff, 0xf0, 7, 0, 0, 0])
                .await
                .ok()?;
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await.ok()? > 0 {}
            dropped.fetch_add(1, Ordering::SeqCst);
            Some(())
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liars_are_banned_garbage_is_dropped_and_the_download_is_exact() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let data = content(6 * 1024 * 1024 + 4321);
    std::fs::write(source.join("movie.bin"), &data).unwrap();
    let torrent_path = work.path().join("movie.torrent");
    let status = Command::new("mktorrent")
        .args(["-a", "http://127.0.0.1:1/announce", "-l", "16", "-p", "-o"])
        .arg(&torrent_path)
        .arg(source.join("movie.bin"))
        .stdout(Stdio::null())
        .status()
        .expect("mktorrent is installed (tests/run.sh)");
    assert!(status.success());
    let torrent = Torrent::from_bytes(&std::fs::read(&torrent_path).unwrap()).unwrap();

    let liar_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let liar_addr = liar_listener.local_addr().unwrap();
    let liar_connections = Arc::new(AtomicUsize::new(0));
    tokio::spawn(liar(
        liar_listener,
        torrent.geometry.piece_count(),
        liar_connections.clone(),
    ));
    let garbage_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let garbage_addr = garbage_listener.local_addr().unwrap();
    let garbage_dropped = Arc::new(AtomicUsize::new(0));
    tokio::spawn(garbage(garbage_listener, garbage_dropped.clone()));

    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _seeder = Killed(
        Command::new("aria2c")
            .arg(format!("--dir={}", source.display()))
            .arg(format!("--listen-port={port}"))
            .args([
                "--seed-ratio=0.0",
                "--bt-seed-unverified=true",
                "--enable-dht=false",
                "--enable-dht6=false",
            ])
            .args([
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--bt-min-crypto-level=plain",
            ])
            .args([
                "--bt-exclude-tracker=*",
                "--console-log-level=warn",
                "--summary-interval=0",
            ])
            .arg(&torrent_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aria2c is installed (tests/run.sh)"),
    );
    let deadline = Instant::now() + DEADLINE;
    while StdStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "aria2c never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut config = EngineConfig::new("127.0.0.1:0".parse().unwrap(), work.path().join("state"));
    config.use_trackers = false;
    let engine = Engine::start(config).await.unwrap();
    let out = work.path().join("out");
    let seeder: SocketAddr = ([127, 0, 0, 1], port).into();
    // The liar and the garbage peer first: they are dialed before the honest seeder.
    let peers = vec![liar_addr, garbage_addr, seeder];
    let handle = engine
        .add(
            torrent,
            Target::Download {
                dir: out.clone(),
                sequential: false,
            },
            peers,
            Default::default(),
        )
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, handle.wait_complete())
        .await
        .expect("in time")
        .expect("complete");

    assert!(
        std::fs::read(out.join("movie.bin")).unwrap() == data,
        "the download differs from the source"
    );
    let progress = handle.progress();
    assert!(
        progress.hash_failures >= 1,
        "the liar's garbage was never detected: {progress:?}"
    );
    assert_eq!(
        progress.banned_peers, 1,
        "exactly the liar is banned: {progress:?}"
    );
    assert!(
        progress.peers.iter().all(|p| p.addr != liar_addr),
        "the liar is still connected"
    );
    let deadline = Instant::now() + DEADLINE;
    while garbage_dropped.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the garbage peer was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(liar_connections.load(Ordering::SeqCst) >= 1);
}
