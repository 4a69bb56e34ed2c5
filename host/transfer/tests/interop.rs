//! Our engine against real BitTorrent clients on loopback: it downloads a multi-file torrent from an aria2c seeder
//! and from a Transmission seeder, and seeds one of its own making to an aria2c leecher; every byte is compared with
//! the source.
//! Needs `aria2c`, `mktorrent` and `transmission-daemon` (installed by tests/run.sh).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use allpeers_transfer::bt::create::create_torrent;
use allpeers_transfer::bt::engine::{Engine, EngineConfig, Target};
use allpeers_transfer::bt::magnet::MagnetLink;
use allpeers_transfer::bt::metadata;
use allpeers_transfer::bt::metainfo::Torrent;
use allpeers_transfer::bt::mse::Encryption;
use allpeers_transfer::bt::session::TorrentHandle;
use allpeers_transfer::testing::{
    ARIA2C_RC4_ONLY, Killed, aria2c, aria2c_encrypted, content, free_port, wait_for_listener,
    wait_for_port,
};

/// A whole test's budget: the transfers are a few MiB on loopback and take well under a second each.
const DEADLINE: Duration = Duration::from_secs(60);

/// `<dir>/album/{a.bin, sub/b.bin, c.txt}`: sizes not aligned to pieces so pieces span files.
fn make_album(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let files = vec![
        (
            PathBuf::from("album/a.bin"),
            content(5 * 1024 * 1024 + 777, 1),
        ),
        (
            PathBuf::from("album/sub/b.bin"),
            content(3 * 1024 * 1024 + 12_345, 2),
        ),
        (PathBuf::from("album/c.txt"), content(1000, 3)),
    ];
    for (path, data) in &files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    files
}

fn mktorrent(content: &Path, out: &Path) -> Torrent {
    let status = Command::new("mktorrent")
        .args(["-a", "http://127.0.0.1:1/announce", "-l", "18", "-p", "-o"])
        .arg(out)
        .arg(content)
        .stdout(Stdio::null())
        .status()
        .expect("mktorrent is installed (tests/run.sh)");
    assert!(status.success());
    Torrent::from_bytes(&std::fs::read(out).unwrap()).unwrap()
}

/// Bytes of the files under `dir` (0 if it is not there yet).
fn walk_len(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(kind) if kind.is_dir() => walk_len(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

fn assert_same_files(root: &Path, files: &[(PathBuf, Vec<u8>)]) {
    for (path, data) in files {
        let got =
            std::fs::read(root.join(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(got == *data, "{} differs from the source", path.display());
    }
}

async fn engine(state: &Path) -> Engine {
    engine_with(state, Encryption::default()).await
}

async fn engine_with(state: &Path, encryption: Encryption) -> Engine {
    // ALLPEERS_LOG=bone shows the session's view when a client misbehaves.
    if let Ok(filter) = std::env::var("ALLPEERS_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter.replace("bone", "debug"))
            .with_test_writer()
            .try_init();
    }
    let mut config = EngineConfig::new("127.0.0.1:0".parse().unwrap(), state.to_path_buf());
    config.use_trackers = false;
    config.encryption = encryption;
    Engine::start(config).await.unwrap()
}

/// Downloads `torrent` with a fresh engine from the one seeder on loopback `seeder_port`, into
/// `work/out`; answers once complete (the engine is kept alive for the caller's checks).
async fn download_from(
    work: &Path,
    torrent: Torrent,
    seeder_port: u16,
) -> (Engine, TorrentHandle, PathBuf) {
    download_with(work, torrent, seeder_port, Encryption::default()).await
}

/// [`download_from`] with our side's encryption setting.
async fn download_with(
    work: &Path,
    torrent: Torrent,
    seeder_port: u16,
    encryption: Encryption,
) -> (Engine, TorrentHandle, PathBuf) {
    let engine = engine_with(&work.join("state"), encryption).await;
    let out = work.join("out");
    let seeder: SocketAddr = ([127, 0, 0, 1], seeder_port).into();
    let handle = engine
        .add(
            torrent,
            Target::Download {
                dir: out.clone(),
                sequential: false,
            },
            vec![seeder],
            Default::default(),
        )
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, handle.wait_complete())
        .await
        .expect("in time")
        .expect("complete");
    (engine, handle, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_a_multi_file_torrent_from_an_aria2c_seeder() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let files = make_album(&source);
    let torrent_path = work.path().join("album.torrent");
    let torrent = mktorrent(&source.join("album"), &torrent_path);
    let port = free_port();
    let _seeder = aria2c(&source, port, &torrent_path, false);
    wait_for_port(port, "aria2c");

    let (_engine, handle, out) = download_from(work.path(), torrent, port).await;
    let progress = handle.progress();
    assert_eq!(progress.hash_failures, 0);
    assert_eq!(progress.done_bytes, progress.total_bytes);
    assert_same_files(&out, &files);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A magnet link naming only the aria2c seeder (`x.pe`): the metadata comes from it over ut_metadata (BEP 9), then
/// the content; both verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnets_metadata_and_content_come_from_an_aria2c_seeder() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let files = make_album(&source);
    let torrent_path = work.path().join("album.torrent");
    let torrent = mktorrent(&source.join("album"), &torrent_path);
    let port = free_port();
    let _seeder = aria2c(&source, port, &torrent_path, false);
    wait_for_port(port, "aria2c");

    let link = MagnetLink::parse(&format!(
        "magnet:?xt=urn:btih:{}&dn=album&x.pe=127.0.0.1:{port}",
        hex(&torrent.info_hash)
    ))
    .unwrap();
    let fetcher = engine(&work.path().join("fetch-state")).await;
    let file = metadata::fetch(&link, &fetcher.fetch_options(DEADLINE))
        .await
        .expect("the metadata");
    let fetched = Torrent::from_bytes(&file).unwrap();
    assert_eq!(fetched.info_hash, torrent.info_hash);
    assert_eq!(fetched.info_bytes, torrent.info_bytes);

    let (_engine, handle, out) = download_from(work.path(), fetched, port).await;
    assert_eq!(handle.progress().hash_failures, 0);
    assert_same_files(&out, &files);
}

/// The other way: our engine seeds and announces to opentracker; an aria2c leecher given only a magnet link with
/// that tracker gets the metadata from us, then the content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aria2c_leecher_gets_a_magnets_metadata_from_our_seeder() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let files = make_album(&source);
    let (_tracker, announce, _torrent_path, torrent) =
        tracker_and_torrent(work.path(), &source, "http");
    let mut config = EngineConfig::new("127.0.0.1:0".parse().unwrap(), work.path().join("state"));
    config.use_trackers = true;
    let engine = Engine::start(config).await.unwrap();
    let info_hash = torrent.info_hash;
    let _handle = engine
        .add(
            torrent,
            Target::SeedInPlace {
                dir: source.clone(),
            },
            vec![],
            Default::default(),
        )
        .await
        .unwrap();
    wait_until_tracked(&announce, info_hash, engine.listen_addr().port()).await;

    let out = work.path().join("out");
    let magnet = format!("magnet:?xt=urn:btih:{}&tr={announce}", hex(&info_hash));
    let mut leecher = Command::new("aria2c");
    leecher
        .arg(format!("--dir={}", out.display()))
        .arg(format!("--listen-port={}", free_port()))
        .args([
            "--seed-time=0",
            "--file-allocation=none",
            "--bt-save-metadata=false",
        ])
        .args([
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
        ])
        .args([
            "--enable-peer-exchange=false",
            "--bt-min-crypto-level=plain",
        ])
        .args(["--console-log-level=warn", "--summary-interval=0"])
        .arg(&magnet)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut leecher = Killed(leecher.spawn().expect("aria2c"));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = leecher.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "aria2c did not finish in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "aria2c: {status}");
    assert_same_files(&out, &files);
}

/// Peer exchange (BEP 11): our engine is given only an aria2c leecher, which is slow and connected to an aria2c
/// seeder it found through opentracker. The leecher's `ut_pex` names the seeder; we dial it and finish from it. The
/// seeder lives on 127.0.0.2: aria2c never tells a peer of peers on the peer's own IP address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_a_seeder_through_an_aria2c_peers_exchange() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let files = make_album(&source);
    let (_tracker, announce, torrent_path, torrent) =
        tracker_and_torrent_of(work.path(), &source, "http", false);
    let aria2c_with_pex = |dir: &Path, port: u16, extra: &[&str]| {
        let mut command = Command::new("aria2c");
        command
            .arg(format!("--dir={}", dir.display()))
            .arg(format!("--listen-port={port}"))
            .args(["--seed-ratio=0.0", "--bt-seed-unverified=true"])
            .args([
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
            ])
            .args(["--enable-peer-exchange=true", "--bt-min-crypto-level=plain"])
            .args(["--console-log-level=warn", "--summary-interval=0"])
            .args(extra)
            .arg(&torrent_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Killed(command.spawn().expect("aria2c"))
    };
    let seeder_port = free_port();
    let _seeder = aria2c_with_pex(&source, seeder_port, &["--interface=127.0.0.2"]);
    wait_for_listener(([127, 0, 0, 2], seeder_port).into(), "aria2c seeder");
    wait_until_tracked(&announce, torrent.info_hash, seeder_port).await;
    // The leecher takes 20 KB/s at most: it stays connected to the seeder, and it has next to nothing for us.
    let leecher_port = free_port();
    let _leecher = aria2c_with_pex(
        &work.path().join("leecher"),
        leecher_port,
        &["--max-download-limit=20K", "--file-allocation=none"],
    );
    wait_for_port(leecher_port, "aria2c leecher");
    // aria2c tells a new peer of its peers at once, then a minute later: wait until the leecher has bytes from the
    // seeder (so it is connected to it) before we connect.
    let leeched = work.path().join("leecher/album");
    let deadline = Instant::now() + DEADLINE;
    while walk_len(&leeched) == 0 {
        assert!(Instant::now() < deadline, "the leecher never got a byte");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (_engine, handle, out) = download_from(work.path(), torrent, leecher_port).await;
    assert_same_files(&out, &files);
    let peers = handle.progress().peers;
    assert!(
        peers
            .iter()
            .any(|p| p.addr == ([127, 0, 0, 2], seeder_port).into() && p.downloaded > 0),
        "the seeder, named only by the leecher's peer exchange, sent us data: {peers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aria2c_leecher_downloads_from_our_seeder() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let files = make_album(&source);
    // The torrent of the folder is our own (one multi-file torrent): a real client must read it as we meant.
    let torrent_path = work.path().join("album.torrent");
    let (bytes, torrent) = create_torrent(&source.join("album"), &[]).unwrap();
    std::fs::write(&torrent_path, bytes).unwrap();
    let out = work.path().join("out");
    let port = free_port();
    let mut leecher = aria2c(&out, port, &torrent_path, true);
    wait_for_port(port, "aria2c");

    let engine = engine(&work.path().join("state")).await;
    let leecher_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let handle = engine
        .add(
            torrent,
            Target::SeedInPlace {
                dir: source.clone(),
            },
            vec![leecher_addr],
            Default::default(),
        )
        .await
        .unwrap();
    // aria2c exits 0 once it has every byte verified (--seed-time=0).
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = leecher.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "aria2c did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "aria2c failed: {status}");
    assert_same_files(&out, &files);
    wait_uploaded(&handle, files.iter().map(|(_, d)| d.len() as u64).sum()).await;
}

/// Takes ~15 s: Transmission unchokes a new peer only at its next choke round (every 10 s, not configurable); the
/// 8 MiB then arrive in ~3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_from_a_transmission_seeder() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let files = make_album(&source);
    let torrent_path = work.path().join("album.torrent");
    let torrent = mktorrent(&source.join("album"), &torrent_path);
    let (_daemon, rpc, peer_port) = start_transmission(&work.path().join("transmission"), &source);
    assert!(
        transmission_remote(rpc, &["-a", torrent_path.to_str().unwrap()])
            .status
            .success()
    );
    // Transmission verifies the files before seeding: wait until it reports 100%.
    wait_transmission_done(rpc).await;
    wait_for_port(peer_port, "transmission peer port");

    let (_engine, _handle, out) = download_from(work.path(), torrent, peer_port).await;
    assert_same_files(&out, &files);
}

/// A local opentracker over HTTP: the aria2c seeder announces to it, and our engine, given no peer at all, finds the
/// seeder through its announce and downloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_an_aria2c_seeder_through_opentracker() {
    finds_an_aria2c_seeder_through("http").await;
}

/// The same through opentracker's UDP port (BEP 15): aria2c and our engine both announce over UDP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_an_aria2c_seeder_through_opentracker_over_udp() {
    finds_an_aria2c_seeder_through("udp").await;
}

async fn finds_an_aria2c_seeder_through(scheme: &str) {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let files = make_album(&source);
    let (_tracker, announce, torrent_path, torrent) =
        tracker_and_torrent(work.path(), &source, scheme);

    let seeder_port = free_port();
    let mut seeder = Command::new("aria2c");
    seeder
        .arg(format!("--dir={}", source.display()))
        .arg(format!("--listen-port={seeder_port}"))
        .args(["--seed-ratio=0.0", "--bt-seed-unverified=true"])
        .args([
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--bt-min-crypto-level=plain",
        ])
        .args(["--console-log-level=warn", "--summary-interval=0"]);
    if scheme == "udp" {
        // aria2c speaks to UDP trackers through its DHT socket only: the DHT is on (with no node to reach
        // beyond loopback, and the torrent is private, so it stays local), its routing table in the test's dir.
        seeder
            .arg("--enable-dht=true")
            .arg(format!("--dht-listen-port={}", free_port()))
            .arg(format!(
                "--dht-file-path={}",
                work.path().join("dht.dat").display()
            ));
    } else {
        seeder.args(["--enable-dht=false", "--enable-dht6=false"]);
    }
    seeder
        .arg(&torrent_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _seeder = Killed(seeder.spawn().expect("aria2c"));
    wait_for_port(seeder_port, "aria2c");

    let mut config = EngineConfig::new("127.0.0.1:0".parse().unwrap(), work.path().join("state"));
    config.use_trackers = true;
    let engine = Engine::start(config).await.unwrap();
    let out = work.path().join("out");
    // The seeder's announce may land after ours: the session announces again on the tracker's interval, which
    // opentracker sets long, so wait for the seeder to be listed before adding the torrent.
    wait_until_tracked(&announce, torrent.info_hash, seeder_port).await;
    let handle = engine
        .add(
            torrent,
            Target::Download {
                dir: out.clone(),
                sequential: false,
            },
            vec![],
            Default::default(),
        )
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, handle.wait_complete())
        .await
        .expect("in time")
        .expect("complete");
    assert_same_files(&out, &files);
}

/// Announces as a watcher (left=0, no event) until the tracker lists the seeder's port.
async fn wait_until_tracked(announce: &str, info_hash: [u8; 20], seeder_port: u16) {
    use allpeers_transfer::bt::tracker::{self, AnnounceRequest};
    let deadline = Instant::now() + DEADLINE;
    loop {
        let request = AnnounceRequest {
            url: announce.to_owned(),
            info_hash,
            peer_id: *b"-XX0001-watcher00000",
            port: 1,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: None,
        };
        if let Ok(response) = tracker::announce(&request, &Default::default()).await
            && response.peers.iter().any(|p| p.port() == seeder_port)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the seeder never showed up on the tracker"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn start_transmission(config: &Path, dir: &Path) -> (Killed, u16, u16) {
    start_transmission_with(config, dir, "-et")
}

/// Transmission with its encryption flag: `-et` tolerates encryption, `-er` requires it (`"encryption": 2`).
fn start_transmission_with(config: &Path, dir: &Path, encryption: &str) -> (Killed, u16, u16) {
    let (rpc, peer_port) = (free_port(), free_port());
    let daemon = Killed(
        Command::new("transmission-daemon")
            .arg("-f")
            .arg("-g")
            .arg(config)
            .arg("-w")
            .arg(dir)
            .args([
                "-p",
                &rpc.to_string(),
                "-r",
                "127.0.0.1",
                "-T",
                "-O",
                "-Y",
                "--no-utp",
                "-M",
            ])
            .args(["-P", &peer_port.to_string(), "-i", "127.0.0.1", encryption])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("transmission-daemon is installed (tests/run.sh)"),
    );
    wait_for_port(rpc, "transmission-daemon RPC");
    (daemon, rpc, peer_port)
}

fn transmission_remote(rpc: u16, args: &[&str]) -> std::process::Output {
    Command::new("transmission-remote")
        .arg(format!("127.0.0.1:{rpc}"))
        .args(args)
        .output()
        .expect("transmission-remote (transmission-cli)")
}

/// Waits until Transmission lists the album at 100% (verified as a seeder, or downloaded as a leecher).
async fn wait_transmission_done(rpc: u16) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let list = String::from_utf8_lossy(&transmission_remote(rpc, &["-l"]).stdout).into_owned();
        if list
            .lines()
            .any(|l| l.contains("100%") && l.contains("album"))
        {
            return;
        }
        if Instant::now() > deadline {
            let info = transmission_remote(rpc, &["-t", "1", "-it", "-ip", "-i"]);
            panic!(
                "transmission never reached 100%: {list}\n{}",
                String::from_utf8_lossy(&info.stdout)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Our engine seeds in place and dials a Transmission leecher. (Through opentracker instead, Transmission 3.00 got
/// our address — "got a list of 3 peers" — but never connected to it; not diagnosed yet.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transmission_leecher_downloads_from_our_seeder() {
    transmission_leecher_downloads_from_our_seeder("-et", Encryption::default()).await;
}

/// The same with Transmission requiring encryption (`"encryption": 2`) and our side in `require`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypting_transmission_leecher_downloads_from_our_seeder_requiring_encryption() {
    transmission_leecher_downloads_from_our_seeder("-er", Encryption::Require).await;
}

async fn transmission_leecher_downloads_from_our_seeder(flag: &str, encryption: Encryption) {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let files = make_album(&source);
    let torrent_path = work.path().join("album.torrent");
    let torrent = mktorrent(&source.join("album"), &torrent_path);
    let out = work.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (_daemon, rpc, peer_port) =
        start_transmission_with(&work.path().join("transmission"), &out, flag);
    assert!(
        transmission_remote(rpc, &["-a", torrent_path.to_str().unwrap()])
            .status
            .success()
    );
    wait_for_port(peer_port, "transmission peer port");

    let engine = engine_with(&work.path().join("state"), encryption).await;
    let leecher: SocketAddr = ([127, 0, 0, 1], peer_port).into();
    let handle = engine
        .add(
            torrent,
            Target::SeedInPlace {
                dir: source.clone(),
            },
            vec![leecher],
            Default::default(),
        )
        .await
        .unwrap();
    wait_transmission_done(rpc).await;
    assert_same_files(&out, &files);
    wait_uploaded(&handle, files.iter().map(|(_, d)| d.len() as u64).sum()).await;
}

/// A torrent of `<source>/album` announcing to a fresh opentracker that whitelists it, over `scheme` (`http` or
/// `udp`: opentracker serves both on one port number).
fn tracker_and_torrent(
    work: &Path,
    source: &Path,
    scheme: &str,
) -> (Killed, String, PathBuf, Torrent) {
    tracker_and_torrent_of(work, source, scheme, true)
}

/// [`tracker_and_torrent`], the torrent private (no peer exchange, BEP 27) or not.
fn tracker_and_torrent_of(
    work: &Path,
    source: &Path,
    scheme: &str,
    private: bool,
) -> (Killed, String, PathBuf, Torrent) {
    let tracker_port = free_port();
    let announce = format!("{scheme}://127.0.0.1:{tracker_port}/announce");
    let torrent_path = work.join("album.torrent");
    let status = Command::new("mktorrent")
        .args(["-a", &announce, "-l", "18"])
        .args(private.then_some("-p"))
        .arg("-o")
        .arg(&torrent_path)
        .arg(source.join("album"))
        .stdout(Stdio::null())
        .status()
        .expect("mktorrent is installed (tests/run.sh)");
    assert!(status.success());
    let torrent = Torrent::from_bytes(&std::fs::read(&torrent_path).unwrap()).unwrap();
    assert_eq!(torrent.trackers, vec![announce.clone()]);

    // Debian's opentracker serves only whitelisted info-hashes; it chroots into -d, so -w is relative to it.
    let tracker_dir = work.join("tracker");
    std::fs::create_dir_all(&tracker_dir).unwrap();
    let hex: String = torrent
        .info_hash
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(tracker_dir.join("whitelist.txt"), format!("{hex}\n")).unwrap();
    let tracker = Killed(
        Command::new("opentracker")
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &tracker_port.to_string(),
                "-P",
                &tracker_port.to_string(),
            ])
            .arg("-d")
            .arg(&tracker_dir)
            .args(["-w", "whitelist.txt"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("opentracker is installed (tests/run.sh)"),
    );
    wait_for_port(tracker_port, "opentracker");
    (tracker, announce, torrent_path, torrent)
}

/// Waits until the session's progress (published once a second) counts at least `bytes` uploaded.
async fn wait_uploaded(handle: &TorrentHandle, bytes: u64) {
    let mut progress = handle.watch();
    tokio::time::timeout(DEADLINE, async {
        while progress.borrow_and_update().uploaded < bytes {
            progress.changed().await.expect("the session is alive");
        }
    })
    .await
    .expect("the upload was counted in time");
}

/// Message Stream Encryption against aria2c requiring it (RC4 only, no plain handshake): our engine in `require`
/// dials the seeder (we are the MSE initiator) and downloads every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_from_an_aria2c_seeder_that_requires_encryption() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let files = make_album(&source);
    let torrent_path = work.path().join("album.torrent");
    let torrent = mktorrent(&source.join("album"), &torrent_path);
    let port = free_port();
    let _seeder = aria2c_encrypted(&source, port, &torrent_path, false);
    wait_for_port(port, "aria2c");

    let (_engine, handle, out) =
        download_with(work.path(), torrent, port, Encryption::Require).await;
    let progress = handle.progress();
    assert_eq!(progress.hash_failures, 0);
    assert_eq!(progress.done_bytes, progress.total_bytes);
    assert_same_files(&out, &files);
}

/// The other way: our engine in `require` seeds and announces to opentracker; an aria2c leecher requiring
/// encryption finds us there and dials us (we are the MSE responder, finding the torrent by its obfuscated hash).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aria2c_leecher_that_requires_encryption_downloads_from_our_seeder() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let files = make_album(&source);
    let (_tracker, announce, torrent_path, torrent) =
        tracker_and_torrent(work.path(), &source, "http");
    let mut config = EngineConfig::new("127.0.0.1:0".parse().unwrap(), work.path().join("state"));
    config.use_trackers = true;
    config.encryption = Encryption::Require;
    let engine = Engine::start(config).await.unwrap();
    let info_hash = torrent.info_hash;
    let handle = engine
        .add(
            torrent,
            Target::SeedInPlace {
                dir: source.clone(),
            },
            vec![],
            Default::default(),
        )
        .await
        .unwrap();
    wait_until_tracked(&announce, info_hash, engine.listen_addr().port()).await;

    let out = work.path().join("out");
    let mut leecher = Command::new("aria2c");
    leecher
        .arg(format!("--dir={}", out.display()))
        .arg(format!("--listen-port={}", free_port()))
        .args(["--seed-time=0", "--file-allocation=none"])
        .args([
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
        ])
        .args(ARIA2C_RC4_ONLY)
        .args(["--console-log-level=warn", "--summary-interval=0"])
        .arg(&torrent_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut leecher = Killed(leecher.spawn().expect("aria2c"));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = leecher.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "aria2c did not finish in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "aria2c: {status}");
    assert_same_files(&out, &files);
    wait_uploaded(&handle, files.iter().map(|(_, d)| d.len() as u64).sum()).await;
}

/// Our engines against each other's settings: `off` is a plain-only peer (it drops a connection that does not start
/// with the plain handshake). `require` cannot reach it and refuses its plain handshake in turn; `prefer` falls back
/// to plain with it and encrypts with `require`; `off` talks to `off` and downloads every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_refuses_a_plain_only_peer_and_off_talks_to_one() {
    use allpeers_transfer::bt::connection::{self, ConnectError};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let files = make_album(&source);
    let (bytes, torrent) = create_torrent(&source.join("album"), &[]).unwrap();
    let info_hash = torrent.info_hash;
    let seed = |name: &'static str, encryption| {
        let (work, source, torrent) = (work.path().to_owned(), source.clone(), torrent.clone());
        async move {
            let engine = engine_with(&work.join(name), encryption).await;
            let target = Target::SeedInPlace { dir: source };
            engine
                .add(torrent, target, vec![], Default::default())
                .await
                .unwrap();
            engine
        }
    };
    let plain_only = seed("plain", Encryption::Off).await;
    let strict = seed("strict", Encryption::Require).await;
    let id = *b"-XX0001-setting-test";
    let dial = |engine: &Engine, encryption| {
        connection::dial(engine.listen_addr(), info_hash, id, encryption)
    };

    let refused = dial(&plain_only, Encryption::Require).await.err();
    assert!(
        matches!(refused, Some(ConnectError::Closed | ConnectError::Io(_))),
        "{refused:?}"
    );
    let (plain, _) = dial(&plain_only, Encryption::Off).await.unwrap();
    assert!(!plain.is_encrypted());
    let (fell_back, _) = dial(&plain_only, Encryption::Prefer).await.unwrap();
    assert!(!fell_back.is_encrypted());
    let (encrypted, handshake) = dial(&strict, Encryption::Prefer).await.unwrap();
    assert!(encrypted.is_encrypted());
    assert_eq!(handshake.info_hash, info_hash);
    let refused = dial(&strict, Encryption::Off).await.err();
    assert!(
        matches!(refused, Some(ConnectError::Closed | ConnectError::Io(_))),
        "{refused:?}"
    );
    // A plain handshake to `require` is answered by closing the connection, nothing sent.
    let mut raw = tokio::net::TcpStream::connect(strict.listen_addr())
        .await
        .unwrap();
    raw.write_all(&allpeers_transfer::bt::wire::encode_handshake(
        info_hash, id,
    ))
    .await
    .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(DEADLINE, raw.read_to_end(&mut answer)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "{read:?} {answer:?}"
    );

    let torrent = Torrent::from_bytes(&bytes).unwrap();
    let (_engine, handle, out) = download_with(
        work.path(),
        torrent,
        plain_only.listen_addr().port(),
        Encryption::Off,
    )
    .await;
    assert_eq!(handle.progress().hash_failures, 0);
    assert_same_files(&out, &files);
}
