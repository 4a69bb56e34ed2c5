//! Fixtures for tests that run real BitTorrent clients on loopback (feature `testing`): this crate's interop tests and
//! the node's end-to-end tests share them. Needs `aria2c` on the path (installed by tests/run.sh).

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a client may take to start listening: it starts in well under a second on loopback.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// Kills the child when the test ends, however it ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("local address")
        .port()
}

/// Blocks until something accepts on `127.0.0.1:port`; panics past [`START_DEADLINE`].
pub fn wait_for_port(port: u16, what: &str) {
    wait_for_listener(([127, 0, 0, 1], port).into(), what);
}

/// Waits until something accepts connections at `addr`.
pub fn wait_for_listener(addr: std::net::SocketAddr, what: &str) {
    let port = addr.port();
    let deadline = Instant::now() + START_DEADLINE;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `len` reproducible pseudo-random bytes (xorshift from `seed`): incompressible, and different per seed.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// aria2c on `port` with only the peers it is given (no DHT, LPD, PEX or trackers), plain connections allowed: a
/// seeder of `torrent` from `dir`, or a leecher into `dir` that exits 0 once it has every byte verified.
pub fn aria2c(dir: &Path, port: u16, torrent: &Path, leecher: bool) -> Killed {
    aria2c_speaking(
        dir,
        port,
        torrent,
        leecher,
        &["--bt-min-crypto-level=plain"],
    )
}

/// [`aria2c`] that accepts and makes only RC4-encrypted connections (MSE, no plain handshake either way).
pub fn aria2c_encrypted(dir: &Path, port: u16, torrent: &Path, leecher: bool) -> Killed {
    aria2c_speaking(dir, port, torrent, leecher, &ARIA2C_RC4_ONLY)
}

/// aria2c's flags for RC4-encrypted connections only.
pub const ARIA2C_RC4_ONLY: [&str; 2] = ["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"];

fn aria2c_speaking(
    dir: &Path,
    port: u16,
    torrent: &Path,
    leecher: bool,
    crypto: &[&str],
) -> Killed {
    let mut command = Command::new("aria2c");
    command
        .arg(format!("--dir={}", dir.display()))
        .arg(format!("--listen-port={port}"))
        .args([
            "--seed-ratio=0.0",
            "--bt-seed-unverified=true",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--bt-exclude-tracker=*",
            "--console-log-level=warn",
            "--summary-interval=0",
        ])
        .args(crypto);
    if leecher {
        command.args(["--seed-time=0", "--file-allocation=none"]);
    }
    command
        .arg(torrent)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Killed(command.spawn().expect("aria2c is installed (tests/run.sh)"))
}

/// An aria2c seeder of the file `dir/<name>` described by `torrent`, listening on a free port once this returns.
pub fn aria2c_seeder(dir: &Path, torrent: &Path) -> (Killed, u16) {
    let port = free_port();
    let seeder = aria2c(dir, port, torrent, false);
    wait_for_port(port, "aria2c");
    (seeder, port)
}

/// A UDP port free on loopback right now.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("local address")
        .port()
}

/// An aria2c seeder of `torrent` from `dir` whose only peer source is the DHT: its DHT node (UDP `dht_port`) joins
/// through `entry` alone — a loopback testnet's node, never a public one — and keeps its routing table in
/// `dht_file`. Returns once it listens on its TCP port (the second value).
pub fn aria2c_dht_seeder(
    dir: &Path,
    torrent: &Path,
    entry: std::net::SocketAddr,
    dht_port: u16,
    dht_file: &Path,
) -> (Killed, u16) {
    let port = free_port();
    let mut command = Command::new("aria2c");
    command
        .arg(format!("--dir={}", dir.display()))
        .arg(format!("--listen-port={port}"))
        .arg(format!("--dht-listen-port={dht_port}"))
        .arg(format!("--dht-entry-point={entry}"))
        .arg(format!("--dht-file-path={}", dht_file.display()))
        .args([
            "--enable-dht=true",
            "--enable-dht6=false",
            "--seed-ratio=0.0",
            "--bt-seed-unverified=true",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--bt-min-crypto-level=plain",
            "--bt-exclude-tracker=*",
            "--console-log-level=warn",
            "--summary-interval=0",
        ])
        .arg(torrent)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let seeder = Killed(command.spawn().expect("aria2c is installed (tests/run.sh)"));
    wait_for_port(port, "aria2c");
    (seeder, port)
}

/// One lookup of `info_hash` through `finder` ([`crate::bt::dht::find_peers`]'s bounds and checks), every address it
/// yields.
pub async fn dht_lookup(
    finder: &dyn crate::bt::dht::PeerFinder,
    info_hash: [u8; 20],
) -> Vec<std::net::SocketAddr> {
    let (found, mut batches) = tokio::sync::mpsc::channel(4);
    let collect = async {
        let mut all = Vec::new();
        while let Some(batch) = batches.recv().await {
            all.extend(batch);
        }
        all
    };
    let lookup = async {
        let result = crate::bt::dht::find_peers(finder, info_hash, &found).await;
        drop(found);
        result
    };
    let (result, all) = tokio::join!(lookup, collect);
    assert_eq!(result.expect("the lookup runs"), all.len());
    all
}

/// Looks `info_hash` up through `finder` until `peer` is among the answers (it announced), panicking after
/// `deadline`. The DHT tells nobody when a peer announces, so asking it again is the only way to know; each lookup
/// waits for the nodes' answers, and a short pause between lookups keeps an empty answer from spinning.
pub async fn wait_announced(
    finder: &dyn crate::bt::dht::PeerFinder,
    info_hash: [u8; 20],
    peer: std::net::SocketAddr,
    deadline: Duration,
) {
    tokio::time::timeout(deadline, async {
        while !dht_lookup(finder, info_hash).await.contains(&peer) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{peer} never appeared on the DHT"));
}
