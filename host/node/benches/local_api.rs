//! Local API benchmark: round-trip latency of a small request browser-side -> native host
//! -> daemon -> back, next to a bare Unix-socket echo (a separate process, same framing)
//! measured in the same run; daemon cold start to ready; idle RSS.
//!
//! `cargo bench -p allpeers-node --bench local_api` (set `ROUNDS` to change the count).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ECHO_ENV: &str = "ALLPEERS_BENCH_ECHO_SOCKET";

fn main() {
    if let Ok(path) = std::env::var(ECHO_ENV) {
        return echo_server(Path::new(&path));
    }
    // `cargo bench` passes `--bench`; nothing else to parse.
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20_000);
    let exe = env!("CARGO_BIN_EXE_allpeers");
    let request = br#"{"jsonrpc":"2.0","id":7,"method":"ping","params":{"n":1}}"#;

    // Baseline: a bare echo over a Unix socket, in its own process.
    let dir = tempfile::tempdir().unwrap();
    let echo_path = dir.path().join("echo.sock");
    let mut echo = Command::new(std::env::current_exe().unwrap())
        .env(ECHO_ENV, &echo_path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_line(&mut echo);
    let mut stream = UnixStream::connect(&echo_path).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let echo_samples = measure(rounds, &mut stream, &mut reader, request);
    drop(stream);
    echo.kill().ok();
    echo.wait().ok();

    // The real path: a native host started as Chromium starts it, against a daemon.
    let data = tempfile::tempdir().unwrap();
    let mut daemon = spawn_daemon(exe, data.path());
    let socket = wait_line(&mut daemon)
        .trim_start_matches("READY ")
        .trim()
        .to_string();
    let mut host = Command::new(exe)
        .arg("chrome-extension://ccjfjlcndgkdlejcmgpopanpmdklkkpb/")
        .env("ALLPEERS_DATA_DIR", data.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_host = host.stdin.take().unwrap();
    let mut from_host = host.stdout.take().unwrap();
    let hello =
        br#"{"jsonrpc":"2.0","id":1,"method":"hello","params":{"client":"bench","api_version":1}}"#;
    round_trip(&mut to_host, &mut from_host, hello);
    let bridge_samples = measure(rounds, &mut to_host, &mut from_host, request);

    // For context: the CLI's path, straight to the daemon's socket.
    let mut direct = UnixStream::connect(&socket).unwrap();
    let mut direct_reader = direct.try_clone().unwrap();
    round_trip(&mut direct, &mut direct_reader, hello);
    let direct_samples = measure(rounds, &mut direct, &mut direct_reader, request);

    std::thread::sleep(Duration::from_millis(500)); // let the daemon go idle before reading RSS
    let rss_kib = rss_kib(daemon.id());
    drop(to_host);
    host.wait().unwrap();
    shutdown(&mut direct, &mut direct_reader);
    daemon.wait().unwrap();

    // Cold start: a fresh data dir (identity created) and an existing one.
    let mut fresh = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        for samples in [&mut fresh, &mut warm] {
            let start = Instant::now();
            let mut child = spawn_daemon(exe, dir.path());
            let socket = wait_line(&mut child)
                .trim_start_matches("READY ")
                .trim()
                .to_string();
            samples.push(start.elapsed());
            let mut s = UnixStream::connect(&socket).unwrap();
            let mut r = s.try_clone().unwrap();
            round_trip(&mut s, &mut r, hello);
            shutdown(&mut s, &mut r);
            child.wait().unwrap();
        }
    }

    println!("local API round trip, {rounds} small requests each (µs)");
    println!(
        "{:<44} {:>8} {:>8} {:>8}",
        "path", "p50", "p99", "p99 ratio"
    );
    let (e50, e99) = percentiles(&echo_samples);
    for (name, samples) in [
        ("baseline: bare Unix-socket echo", &echo_samples),
        ("browser pipes -> native host -> daemon", &bridge_samples),
        ("CLI socket -> daemon", &direct_samples),
    ] {
        let (p50, p99) = percentiles(samples);
        println!("{name:<44} {:>8.1} {:>8.1} {:>7.2}x", p50, p99, p99 / e99);
    }
    let _ = e50;
    fresh.sort();
    warm.sort();
    println!(
        "daemon cold start to ready: first run (creates identity) median {:.1} ms, existing data dir median {:.1} ms",
        ms(fresh[5]),
        ms(warm[5])
    );
    println!("daemon idle RSS: {:.1} MB", rss_kib as f64 / 1024.0);
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn spawn_daemon(exe: &str, data: &Path) -> Child {
    Command::new(exe)
        .arg("--data-dir")
        .arg(data)
        .args(["daemon", "--notify-ready"])
        .env_remove("ALLPEERS_SOCKET")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    line
}

fn write_frame(w: &mut impl Write, payload: &[u8]) {
    let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(payload);
    w.write_all(&frame).unwrap();
    w.flush().unwrap();
}

fn read_frame(r: &mut impl Read) -> Vec<u8> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).unwrap();
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    r.read_exact(&mut body).unwrap();
    body
}

fn round_trip(w: &mut impl Write, r: &mut impl Read, payload: &[u8]) -> Vec<u8> {
    write_frame(w, payload);
    read_frame(r)
}

fn measure(rounds: usize, w: &mut impl Write, r: &mut impl Read, payload: &[u8]) -> Vec<Duration> {
    for _ in 0..rounds / 10 {
        round_trip(w, r, payload); // warm up
    }
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            let reply = round_trip(w, r, payload);
            let elapsed = start.elapsed();
            assert!(!reply.is_empty());
            elapsed
        })
        .collect()
}

fn percentiles(samples: &[Duration]) -> (f64, f64) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = |q: f64| {
        sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e6
    };
    (at(0.50), at(0.99))
}

fn shutdown(w: &mut impl Write, r: &mut impl Read) {
    round_trip(
        w,
        r,
        br#"{"jsonrpc":"2.0","id":99,"method":"daemon.shutdown"}"#,
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn echo_server(path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    let mut reader = stream.try_clone().unwrap();
    loop {
        let mut len = [0u8; 4];
        if reader.read_exact(&mut len).is_err() {
            return;
        }
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        reader.read_exact(&mut body).unwrap();
        write_frame(&mut stream, &body);
    }
}
