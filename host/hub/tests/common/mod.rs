#![allow(dead_code)]
//! Shared by the hub tests: the real `allpeers-hub` binary as a child process, nodes (an
//! endpoint + hub client) in the test process, an in-test HTTP CONNECT proxy with failure
//! modes, and event waits with time bounds (no sleeps as synchronisation); [`postgres`] a
//! PostgreSQL of the test's own and [`cluster`] a hub's instances over it.

pub mod cluster;
pub mod postgres;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use allpeers_hub_client::{HubClient, HubClientConfig, HubEvent, RelayPolicy};
use allpeers_model::PeerId;
use allpeers_net::service::ServiceError;
use allpeers_net::{Address, Endpoint, EndpointConfig, Identity, Namespace, ServiceFn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const BOUND: Duration = Duration::from_secs(60);

pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("test step timed out")
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A running `allpeers-hub` child process.
pub struct HubProc {
    pub child: Child,
    pub peer: PeerId,
    pub quic: SocketAddr,
    pub tcp: SocketAddr,
    pub dir: PathBuf,
    pub args: Vec<String>,
    /// The ready line (e.g. `stun`: the STUN sockets).
    pub ready: serde_json::Value,
}

impl Drop for HubProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl HubProc {
    /// Starts a hub on loopback, ephemeral ports, data in `dir`, with extra flags.
    pub fn spawn(dir: &Path, extra: &[&str]) -> HubProc {
        Self::spawn_at(
            dir,
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
            extra,
        )
    }

    pub fn spawn_at(dir: &Path, quic: SocketAddr, tcp: SocketAddr, extra: &[&str]) -> HubProc {
        Self::spawn_named_at(dir, "hub.test", quic, tcp, extra)
    }

    /// A hub called `name` on loopback, ephemeral ports.
    pub fn spawn_named(dir: &Path, name: &str, extra: &[&str]) -> HubProc {
        let any = "127.0.0.1:0".parse().unwrap();
        Self::spawn_named_at(dir, name, any, any, extra)
    }

    pub fn spawn_named_at(
        dir: &Path,
        name: &str,
        quic: SocketAddr,
        tcp: SocketAddr,
        extra: &[&str],
    ) -> HubProc {
        let mut args: Vec<String> = vec![
            "--data-dir".into(),
            dir.display().to_string(),
            "--name".into(),
            name.into(),
            "--quic".into(),
            quic.to_string(),
            "--tcp".into(),
            tcp.to_string(),
            "--presence-timeout".into(),
            "2".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(kept_log_dir(name, dir).unwrap_or_default());
        let mut child = Command::new(env!("CARGO_BIN_EXE_allpeers-hub"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start allpeers-hub");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("hub ready line");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("hub ready line {line:?}: {e}"));
        HubProc {
            child,
            peer: v["peer_id"].as_str().unwrap().parse().unwrap(),
            quic: v["quic"].as_str().unwrap().parse().unwrap(),
            tcp: v["tcp"].as_str().unwrap().parse().unwrap(),
            dir: dir.to_path_buf(),
            args,
            ready: v,
        }
    }

    pub fn addresses(&self) -> Vec<Address> {
        vec![Address::quic(self.quic), Address::tcp(self.tcp)]
    }

    /// SIGTERM, then waits (bounded) for the exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        false
    }
}

/// Where a hub child logs: its data dir (`logs/`), or with
/// `ALLPEERS_HUB_TEST_LOGS=<dir>` a directory of its own in there, kept after the test
/// (its temporary data dir is not) to look into a failure.
fn kept_log_dir(name: &str, dir: &Path) -> Option<Vec<String>> {
    let logs = std::env::var_os("ALLPEERS_HUB_TEST_LOGS")?;
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let data = dir.file_name().unwrap_or_default().to_string_lossy();
    let path = Path::new(&logs).join(format!("{}-{n}-{name}-{data}", std::process::id()));
    Some(vec!["--log-dir".into(), path.display().to_string()])
}

/// A node: endpoint + hub client.
pub struct Node {
    pub endpoint: Endpoint,
    pub hub: HubClient,
}

pub fn fast_config(hub: PeerId, addrs: Vec<Address>) -> HubClientConfig {
    let mut c = HubClientConfig::new(hub, addrs);
    c.ping_interval = Duration::from_millis(500);
    c.line_timeout = Duration::from_secs(2);
    c.backoff_min = Duration::from_millis(100);
    c.backoff_max = Duration::from_millis(1000);
    c.request_timeout = Duration::from_secs(10);
    c
}

pub async fn node(config: HubClientConfig, policy: Arc<dyn RelayPolicy>) -> Node {
    node_with(Identity::generate(), config, policy).await
}

pub async fn node_with(
    identity: Identity,
    config: HubClientConfig,
    policy: Arc<dyn RelayPolicy>,
) -> Node {
    init_logs();
    let endpoint = Endpoint::bind(identity, EndpointConfig::loopback())
        .await
        .unwrap();
    endpoint.register(echo_ns(), echo());
    let hub = HubClient::start(endpoint.clone(), config, policy)
        .await
        .unwrap();
    Node { endpoint, hub }
}

impl Node {
    pub fn id(&self) -> PeerId {
        self.endpoint.peer_id()
    }
    pub fn stop(&self) {
        self.hub.stop();
        self.endpoint.close();
    }
}

pub fn echo_ns() -> Namespace {
    Namespace::allpeers("echo", 1).unwrap()
}

pub fn echo() -> ServiceFn {
    ServiceFn::new()
        .max_message_size(4 * 1024 * 1024)
        .on_request(|_ctx, text: String| async move {
            if text == "fail" {
                Err(ServiceError::refused("asked to fail"))
            } else {
                Ok(text)
            }
        })
}

/// Waits for an event matching `pred`, bounded by `timeout`.
pub async fn wait_event(
    rx: &mut tokio::sync::broadcast::Receiver<HubEvent>,
    timeout: Duration,
    pred: impl Fn(&HubEvent) -> bool,
) -> Option<HubEvent> {
    tokio::time::timeout(timeout, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return Some(e),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// Polls `done` (cheap, local) every 20 ms until it holds, for at most `within`.
pub async fn until(what: &str, within: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An in-test HTTP CONNECT proxy whose behaviour can change at run time.
pub struct TestProxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProxyMode {
    /// Tunnels.
    Forward = 0,
    /// Answers 403.
    Refuse = 1,
    /// Closes new connections without a word.
    Drop = 2,
    /// Keeps every tunnel open but forwards nothing more (a silent network loss).
    Freeze = 3,
}

impl TestProxy {
    pub async fn start() -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(ProxyMode::Forward as u8));
        let m = mode.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(proxy_conn(s, m.clone()));
            }
        });
        TestProxy { addr, mode, task }
    }

    pub fn set(&self, mode: ProxyMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

async fn proxy_conn(mut s: TcpStream, mode: Arc<AtomicU8>) {
    let m = mode.load(Ordering::SeqCst);
    if m == ProxyMode::Drop as u8 {
        return;
    }
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || s.read(&mut b).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(b[0]);
    }
    if m == ProxyMode::Refuse as u8 {
        let _ = s
            .write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let target = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let Ok(mut up) = TcpStream::connect(&target).await else {
        let _ = s.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    let _ = s
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await;
    let (mut cr, mut cw) = s.into_split();
    let (mut ur, mut uw) = up.split();
    let frozen = || mode.load(Ordering::SeqCst) == ProxyMode::Freeze as u8;
    let a = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = cr.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            if frozen() {
                std::future::pending::<()>().await;
            }
            if uw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = uw.shutdown().await;
    };
    let b2 = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = ur.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            if frozen() {
                std::future::pending::<()>().await;
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(a, b2);
}

/// A minimal in-test SOCKS5 server (no authentication, CONNECT to IPv4 only).
pub struct Socks5 {
    pub addr: SocketAddr,
    count: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Socks5 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Socks5 {
    pub async fn start() -> Socks5 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count: Arc<std::sync::atomic::AtomicUsize> = Default::default();
        let c = count.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let c = c.clone();
                tokio::spawn(async move {
                    let mut g = [0u8; 3];
                    if s.read_exact(&mut g).await.is_err() || g != [5, 1, 0] {
                        return;
                    }
                    s.write_all(&[5, 0]).await.ok();
                    let mut r = [0u8; 10];
                    if s.read_exact(&mut r).await.is_err() || r[..4] != [5, 1, 0, 1] {
                        return;
                    }
                    let target = SocketAddr::from((
                        [r[4], r[5], r[6], r[7]],
                        u16::from_be_bytes([r[8], r[9]]),
                    ));
                    let Ok(mut up) = TcpStream::connect(target).await else {
                        let _ = s.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
                        return;
                    };
                    c.fetch_add(1, Ordering::SeqCst);
                    s.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]).await.ok();
                    let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
                });
            }
        });
        Socks5 { addr, count, task }
    }

    pub fn tunnels(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}
