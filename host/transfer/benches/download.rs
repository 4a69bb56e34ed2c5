//! Download speed against aria2c, side by side: 256 MiB (1 MiB pieces) from one aria2c seeder on loopback, fetched by
//! our engine and by an aria2c leecher in alternating runs, each a whole process timed by GNU time (`/usr/bin/time`:
//! wall, CPU, peak RSS): one warm-up each, then five pairs, medians and the pairwise median of the ratios.
//! aria2c cannot be given a peer's address, so a local opentracker introduces the aria2c leecher to the seeder (the
//! seeder re-announces every second so its entry never expires); our engine is given the seeder's address.
//!
//! With `RQBIT=/path/to/rqbit` (`cargo install rqbit`) a second comparison follows against rqbit, leeching from the
//! same seeder (given its address with `--initial-peers`, as ours is); without it that side is skipped, saying so.
//! The rqbit command line is rqbit 9.1's (`rqbit --help`, `rqbit download --help`).
//!
//! `cargo bench -p allpeers-transfer --bench download` (needs aria2c, mktorrent, opentracker and GNU time).
//! `BENCH_MIB=1024` changes the size. `BENCH_SYNC=1` ends every timed side with `sync`, so each timing includes
//! writing its download to the disk: ours makes its pieces durable before it says "complete" (the crash rule), the
//! others leave dirty pages for the kernel to write after they exit, which favours them at sizes the page cache
//! holds. The binary re-runs itself as the leecher: `download leech <torrent> <out> <peer>`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use allpeers_transfer::bt::engine::{Engine, EngineConfig, Target};
use allpeers_transfer::bt::metainfo::Torrent;
use allpeers_transfer::bt::tracker::{self, AnnounceEvent, AnnounceRequest};

/// aria2c options shared by the seeder and the leecher: plain TCP, no DHT/LPD/PEX.
const ARIA2_COMMON: &[&str] = &[
    "--enable-dht=false",
    "--enable-dht6=false",
    "--bt-enable-lpd=false",
    "--enable-peer-exchange=false",
    "--bt-min-crypto-level=plain",
    "--console-log-level=warn",
    "--summary-interval=0",
];

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("leech") {
        leech(
            Path::new(&args[2]),
            Path::new(&args[3]),
            args[4].parse().expect("peer address"),
        );
        return;
    }
    if args.iter().any(|a| a == "--list") {
        // `cargo bench -- --list` (and test discovery) must not start a benchmark.
        return;
    }
    compare();
}

/// Our engine as a process: download `torrent` from `peer` into `out` (emptied first), verify, exit.
fn leech(torrent: &Path, out: &Path, peer: SocketAddr) {
    let _ = std::fs::remove_dir_all(out);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config = EngineConfig::new("127.0.0.1:0".parse().unwrap(), out.join(".state"));
        config.use_trackers = false;
        let engine = Engine::start(config).await.unwrap();
        let torrent = Torrent::from_bytes(&std::fs::read(torrent).unwrap()).unwrap();
        let target = Target::Download {
            dir: out.to_path_buf(),
            sequential: false,
        };
        let handle = engine
            .add(torrent, target, vec![peer], Default::default())
            .await
            .unwrap();
        handle.wait_complete().await.expect("download complete");
        let progress = handle.progress();
        eprintln!(
            "ours: {} bytes, {} wasted, {} hash failures",
            progress.done_bytes, progress.wasted, progress.hash_failures
        );
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} never listened on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the tracker lists the seeder, asking as a leecher on port 1, then says `stopped` so that watcher is
/// not handed out to the leechers (opentracker answers a `stopped` announce with no peers, so it cannot ask that way).
fn wait_until_tracked(announce: &str, info_hash: [u8; 20], seeder_port: u16) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let request = |event| AnnounceRequest {
        url: announce.to_owned(),
        info_hash,
        peer_id: *b"-XX0001-watcher00000",
        port: 1,
        uploaded: 0,
        downloaded: 0,
        left: 1,
        event,
    };
    loop {
        if let Ok(response) =
            runtime.block_on(tracker::announce(&request(None), &Default::default()))
            && response.peers.iter().any(|p| p.port() == seeder_port)
        {
            let _ = runtime.block_on(tracker::announce(
                &request(Some(AnnounceEvent::Stopped)),
                &Default::default(),
            ));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the seeder never showed up on the tracker"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn compare() {
    let mib: u64 = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    std::fs::create_dir_all(&source).unwrap();
    let content = source.join("payload.bin");
    write_content(&content, mib << 20);
    let torrent = work.path().join("payload.torrent");
    let tracker_port = free_port();
    let announce = format!("http://127.0.0.1:{tracker_port}/announce");
    let status = Command::new("mktorrent")
        .args(["-a", &announce, "-l", "20", "-p", "-o"])
        .arg(&torrent)
        .arg(&content)
        .stdout(Stdio::null())
        .status()
        .expect("mktorrent");
    assert!(status.success());
    let info_hash = Torrent::from_bytes(&std::fs::read(&torrent).unwrap())
        .unwrap()
        .info_hash;

    // Debian's opentracker serves only whitelisted info-hashes; it chroots into -d, so -w is relative to it.
    let tracker_dir = work.path().join("tracker");
    std::fs::create_dir_all(&tracker_dir).unwrap();
    let hex: String = info_hash.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(tracker_dir.join("whitelist.txt"), format!("{hex}\n")).unwrap();
    let _tracker = Killed(
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
            .expect("opentracker"),
    );
    wait_for_port(tracker_port, "opentracker");

    let port = free_port();
    let _seeder = Killed(
        Command::new("aria2c")
            .arg(format!("--dir={}", source.display()))
            .arg(format!("--listen-port={port}"))
            .args([
                "--seed-ratio=0.0",
                "--bt-seed-unverified=true",
                "--bt-tracker-interval=1",
            ])
            .args(ARIA2_COMMON)
            .arg(&torrent)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aria2c"),
    );
    wait_for_port(port, "the aria2c seeder");
    wait_until_tracked(&announce, info_hash, port);

    let ours_out = work.path().join("ours");
    let aria_out = work.path().join("aria");
    let me = std::env::current_exe().unwrap();
    let ours = format!(
        "{} leech {} {} 127.0.0.1:{port}",
        me.display(),
        torrent.display(),
        ours_out.display()
    );
    let aria = format!(
        "rm -rf {out} && aria2c --dir={out} --listen-port={leech_port} --seed-time=0 --file-allocation=none {common} {torrent}",
        out = aria_out.display(),
        leech_port = free_port(),
        common = ARIA2_COMMON.join(" "),
        torrent = torrent.display(),
    );
    println!(
        "Transfers: {mib} MiB, 1 MiB pieces, from one aria2c seeder on loopback; A = our engine, B = aria2c{}",
        if std::env::var_os("BENCH_SYNC").is_some() {
            "; each side ends with `sync`"
        } else {
            ""
        }
    );
    println!(
        "load average before the run: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let (ours, aria) = (then_sync(&ours), then_sync(&aria));
    let ours = ["sh", "-c", ours.as_str()];
    let report = work.path().join("time-report");
    side_by_side("aria2c", &ours, &["sh", "-c", &aria], &report);
    verify_same(&content, &ours_out.join("payload.bin"));
    verify_same(&content, &aria_out.join("payload.bin"));
    println!("both copies verified byte for byte");

    let Some(rqbit) = std::env::var_os("RQBIT") else {
        println!(
            "rqbit skipped: set RQBIT=/path/to/rqbit (cargo install rqbit) to compare with it too"
        );
        return;
    };
    let rqbit_out = work.path().join("rqbit");
    // rqbit's HTTP API, DHT, trackers, local discovery and UPnP are turned off: like ours, it is handed the seeder's
    // address and finds no one else.
    let rqbit = format!(
        "rm -rf {out} && {rqbit} --disable-dht --disable-dht-persistence --disable-trackers --disable-lsd --disable-upnp-port-forward --listen-ip 127.0.0.1 download --disable-http-api --initial-peers 127.0.0.1:{port} --output-folder {out} --exit-on-finish {torrent}",
        out = rqbit_out.display(),
        rqbit = Path::new(&rqbit).display(),
        torrent = torrent.display(),
    );
    let rqbit = then_sync(&rqbit);
    println!("Transfers: {mib} MiB from the same aria2c seeder; A = our engine, B = rqbit");
    println!(
        "load average before the run: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    side_by_side("rqbit", &ours, &["sh", "-c", &rqbit], &report);
    verify_same(&content, &ours_out.join("payload.bin"));
    verify_same(&content, &rqbit_out.join("payload.bin"));
    println!("rqbit's copy verified byte for byte");
}

/// `command` as a shell line, followed by `sync` when `BENCH_SYNC` is set (see the module's comment).
fn then_sync(command: &str) -> String {
    if std::env::var_os("BENCH_SYNC").is_some() {
        // Not `exec`ed, so the shell is still there to run `sync` once the download has exited.
        format!("{command} && sync")
    } else {
        command.to_owned()
    }
}

/// Measured pairs after one warm-up of each side.
const RUNS: usize = 5;

/// One whole process as GNU time accounts it: wall seconds, CPU seconds (user + system), peak RSS in MiB.
struct Run {
    wall: f64,
    cpu: f64,
    peak_mib: f64,
}

fn timed(command: &[&str], report: &Path) -> Run {
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(report)
        .args(command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("GNU time at /usr/bin/time (Debian package `time`)");
    assert!(status.success(), "{command:?} failed");
    let text = std::fs::read_to_string(report).unwrap();
    let figures: Vec<f64> = text
        .split_whitespace()
        .map(|v| v.parse().expect("a GNU time figure"))
        .collect();
    Run {
        wall: figures[0],
        cpu: figures[1] + figures[2],
        peak_mib: figures[3] / 1024.0,
    }
}

/// One figure of a run, by name in the table.
type Figure = fn(&Run) -> f64;

/// Ours (A) and `other` (B) in turn, A B A B …: the median of each figure, its spread, and the median of the
/// pairwise ratios A/B (pairing keeps the ratio meaningful while the machine's speed drifts).
fn side_by_side(other: &str, ours: &[&str], theirs: &[&str], report: &Path) {
    timed(ours, report);
    timed(theirs, report);
    let pairs: Vec<(Run, Run)> = (0..RUNS)
        .map(|_| (timed(ours, report), timed(theirs, report)))
        .collect();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    println!("| median of {RUNS} | ours (A) | {other} (B) | A/B (pairwise median) |");
    println!("|---|---|---|---|");
    let figures: [(&str, Figure); 3] = [
        ("wall s", |r| r.wall),
        ("CPU s (user + sys)", |r| r.cpu),
        ("peak RSS MiB", |r| r.peak_mib),
    ];
    for (name, figure) in figures {
        let (a, a_min, a_max) = median(pairs.iter().map(|(a, _)| figure(a)).collect());
        let (b, b_min, b_max) = median(pairs.iter().map(|(_, b)| figure(b)).collect());
        let (ratio, _, _) = median(
            pairs
                .iter()
                .map(|(a, b)| figure(a) / figure(b).max(1e-9))
                .collect(),
        );
        println!(
            "| {name} | {a:.2} ({a_min:.2}-{a_max:.2}) | {b:.2} ({b_min:.2}-{b_max:.2}) | **{ratio:.2}** |"
        );
    }
}

/// Pseudo-random content, written in chunks (the benchmark's own memory stays small).
fn write_content(path: &Path, len: u64) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut chunk = vec![0u8; 1 << 20];
    let mut written = 0;
    while written < len {
        for word in chunk.chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        let take = (len - written).min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..take]).unwrap();
        written += take as u64;
    }
}

fn verify_same(a: &Path, b: &Path) {
    use std::io::Read;
    let (mut fa, mut fb) = (
        std::fs::File::open(a).unwrap(),
        std::fs::File::open(b).unwrap(),
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = fa.read(&mut ba).unwrap();
        let mut nb = 0;
        while nb < na {
            let n = fb.read(&mut bb[nb..na]).unwrap();
            assert!(n > 0, "{} is shorter", b.display());
            nb += n;
        }
        assert!(ba[..na] == bb[..na], "{} differs", b.display());
        if na == 0 {
            assert_eq!(fb.read(&mut bb).unwrap(), 0, "{} is longer", b.display());
            return;
        }
    }
}
