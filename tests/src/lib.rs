//! Helpers for the cross-process tests: find the built binaries, start a daemon in a temp
//! data dir, speak the local API over a raw socket or through a native host's pipes.
//!
//! The binaries are those of the same build as the test (`target/<profile>/`), which
//! `cargo nextest run --workspace` builds (allpeers-node has integration tests of its own).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

pub mod netns;
/// The SMTP server fixture shared with the hub's tests (`tests/fixtures/smtpd.rs`).
#[path = "../fixtures/smtpd.rs"]
pub mod smtpd;
pub mod social;

use allpeers_model::api::{FrameDecoder, Incoming, Response, encode_frame};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

/// Upper bound for any single step of a test.
pub const STEP: Duration = Duration::from_secs(20);

/// The Chromium extension id fixed by the key in `extension/identity.json`.
pub const CHROMIUM_ORIGIN: &str = "chrome-extension://ccjfjlcndgkdlejcmgpopanpmdklkkpb/";
pub const FIREFOX_ID: &str = "allpeers@allpeers.net";

/// Path of a binary built alongside this test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` or `cargo nextest run --workspace`",
        path.display()
    );
    path
}

/// Tests listen on loopback only: writes a `config.json` saying so unless the test wrote
/// its own.
pub fn use_loopback(data_dir: &Path) {
    let config = data_dir.join("config.json");
    if !config.exists() {
        std::fs::write(
            config,
            r#"{"net": {"quic": "127.0.0.1:0", "tcp": "127.0.0.1:0"}}"#,
        )
        .expect("write config.json");
    }
}

/// `allpeers` with a clean environment pointing at `data_dir`.
pub fn allpeers(data_dir: &Path) -> Command {
    let mut command = Command::new(bin("allpeers"));
    command
        .env_remove("ALLPEERS_SOCKET")
        .env_remove("ALLPEERS_PASSPHRASE")
        .env_remove("ALLPEERS_BACKUP_PASSPHRASE")
        .env("ALLPEERS_DATA_DIR", data_dir)
        .kill_on_drop(true);
    command
}

/// The `p` quantile (0..=1) of sorted samples, in milliseconds: the benches' tables.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

pub async fn timeout<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {STEP:?}"))
}

/// The socket of the daemon for `data_dir`, as the daemon reports it.
pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub data_dir: PathBuf,
}

impl Daemon {
    /// Starts `allpeers daemon` and waits for it to report ready.
    pub async fn start(data_dir: &Path) -> Daemon {
        Self::start_with(data_dir, &[]).await
    }

    pub async fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Daemon {
        use_loopback(data_dir);
        let mut command = allpeers(data_dir);
        command
            .args(["daemon", "--notify-ready"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn daemon");
        let mut line = String::new();
        timeout(
            "daemon ready",
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line),
        )
        .await
        .unwrap();
        if !line.starts_with("READY ") {
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err).await;
            panic!("daemon did not start: {err}");
        }
        Daemon {
            child,
            socket: PathBuf::from(line.trim_start_matches("READY ").trim()),
            data_dir: data_dir.to_path_buf(),
        }
    }

    pub async fn connect(
        &self,
    ) -> RawClient<tokio::net::unix::OwnedReadHalf, tokio::net::unix::OwnedWriteHalf> {
        let stream = timeout("connect", UnixStream::connect(&self.socket))
            .await
            .expect("connect");
        let (r, w) = stream.into_split();
        RawClient::new(r, w)
    }

    /// A raw connection that has said hello.
    pub async fn client(
        &self,
        name: &str,
    ) -> RawClient<tokio::net::unix::OwnedReadHalf, tokio::net::unix::OwnedWriteHalf> {
        let mut client = self.connect().await;
        client.hello(name).await;
        client
    }

    pub async fn stop(mut self) {
        let mut client = self.client("stopper").await;
        client
            .call("daemon.shutdown", json!({}))
            .await
            .result
            .expect("shutdown accepted");
        let status = timeout("daemon exit", self.child.wait()).await.unwrap();
        assert!(status.success(), "daemon exit: {status}");
    }
}

/// Frames over any byte stream: a socket, or a native host's stdin/stdout.
pub struct RawClient<R, W> {
    pub reader: R,
    pub writer: W,
    decoder: FrameDecoder,
    next_id: u64,
    /// Notifications received while waiting for a response.
    pub notifications: Vec<(String, Value)>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> RawClient<R, W> {
    pub fn new(reader: R, writer: W) -> Self {
        RawClient {
            reader,
            writer,
            decoder: FrameDecoder::new(512 * 1024 * 1024),
            next_id: 1,
            notifications: Vec::new(),
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
        self.writer.flush().await.expect("flush");
    }

    pub async fn send_json(&mut self, value: &Value) {
        self.send_raw(&encode_frame(value.to_string().as_bytes()))
            .await;
    }

    /// The next frame, `None` at end of stream.
    pub async fn read_frame(&mut self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(frame) = self.decoder.next_frame().expect("frame from the daemon") {
                return Some(frame);
            }
            let n = timeout("read", self.reader.read(&mut buf)).await.ok()?;
            if n == 0 {
                return None;
            }
            self.decoder.push(&buf[..n]);
        }
    }

    /// The next response, keeping notifications aside.
    pub async fn read_response(&mut self) -> Option<Response> {
        loop {
            let frame = self.read_frame().await?;
            match Incoming::parse(&frame).expect("daemon frames parse") {
                Incoming::Response(response) => return Some(response),
                Incoming::Notification { method, params } => {
                    self.notifications.push((method, params))
                }
            }
        }
    }

    /// The next notification (one seen already first).
    pub async fn read_notification(&mut self) -> Option<(String, Value)> {
        if !self.notifications.is_empty() {
            return Some(self.notifications.remove(0));
        }
        loop {
            let frame = self.read_frame().await?;
            if let Incoming::Notification { method, params } =
                Incoming::parse(&frame).expect("daemon frames parse")
            {
                return Some((method, params));
            }
        }
    }

    pub async fn call(&mut self, method: &str, params: Value) -> Response {
        let id = self.next_id;
        self.next_id += 1;
        self.send_json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        let response = self.read_response().await.expect("a response");
        assert_eq!(response.id, json!(id));
        response
    }

    pub async fn hello(&mut self, name: &str) -> Value {
        let response = self
            .call("hello", json!({"client": name, "api_version": 1}))
            .await;
        response
            .result
            .unwrap_or_else(|| panic!("hello failed: {:?}", response.error))
    }
}

/// A native host started exactly as Chromium starts it: argv = [origin], pipes for stdio.
pub fn spawn_native_host(
    data_dir: &Path,
    argv: &[&str],
) -> (
    Child,
    RawClient<tokio::process::ChildStdout, tokio::process::ChildStdin>,
) {
    let mut child = allpeers(data_dir)
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn native host");
    let client = RawClient::new(child.stdout.take().unwrap(), child.stdin.take().unwrap());
    (child, client)
}

/// The error code of a response, panicking if it succeeded.
pub fn error_code(response: &Response) -> i32 {
    response
        .error
        .as_ref()
        .unwrap_or_else(|| panic!("expected an error, got {:?}", response.result))
        .code
}

/// A real `allpeers-hub` on loopback, ephemeral ports, data in its own dir.
pub struct HubProcess {
    pub child: Child,
    pub peer_id: String,
    pub quic: String,
    pub tcp: String,
}

impl HubProcess {
    pub async fn start(dir: &Path) -> HubProcess {
        Self::start_on(dir, "127.0.0.1:0", "127.0.0.1:0").await
    }

    /// With extra flags (e.g. `--stun-primary 127.0.0.1:0`).
    pub async fn start_with(dir: &Path, extra: &[&str]) -> HubProcess {
        Self::start_on_with(dir, "127.0.0.1:0", "127.0.0.1:0", extra).await
    }

    /// A hub on given addresses (e.g. to restart one where its peers expect it).
    pub async fn start_on(dir: &Path, quic: &str, tcp: &str) -> HubProcess {
        Self::start_on_with(dir, quic, tcp, &[]).await
    }

    pub async fn start_on_with(dir: &Path, quic: &str, tcp: &str, extra: &[&str]) -> HubProcess {
        Self::spawn(dir, "hub.test", quic, tcp, extra).await
    }

    /// A hub with its own name (`alice@<name>`), for tests with several hubs.
    pub async fn start_named(dir: &Path, name: &str) -> HubProcess {
        Self::spawn(dir, name, "127.0.0.1:0", "127.0.0.1:0", &[]).await
    }

    /// A named hub with extra flags (e.g. `--config FILE`).
    pub async fn start_named_with(dir: &Path, name: &str, extra: &[&str]) -> HubProcess {
        Self::spawn(dir, name, "127.0.0.1:0", "127.0.0.1:0", extra).await
    }

    async fn spawn(dir: &Path, name: &str, quic: &str, tcp: &str, extra: &[&str]) -> HubProcess {
        let mut child = Command::new(bin("allpeers-hub"))
            .arg("--data-dir")
            .arg(dir)
            .args([
                "--name",
                name,
                "--quic",
                quic,
                "--tcp",
                tcp,
                "--presence-timeout",
                "2",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start allpeers-hub");
        let mut line = String::new();
        timeout(
            "hub ready",
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line),
        )
        .await
        .unwrap();
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("hub ready line {line:?}: {e}"));
        HubProcess {
            child,
            peer_id: ready["peer_id"].as_str().unwrap().to_string(),
            quic: ready["quic"].as_str().unwrap().to_string(),
            tcp: ready["tcp"].as_str().unwrap().to_string(),
        }
    }

    /// A node `config.json` with this hub as home hub, listening on loopback.
    pub fn node_config(&self, data_dir: &Path) {
        self.node_config_net(
            data_dir,
            json!({"quic": "127.0.0.1:0", "tcp": "127.0.0.1:0"}),
        );
    }

    /// The same with the node's own `net` section (e.g. `{"quic": null, "tcp": null}`: no
    /// QUIC at all, no listener, so it reaches peers and the hub only by dialling TCP).
    pub fn node_config_net(&self, data_dir: &Path, net: Value) {
        let config = json!({
            "net": net,
            "hub": {"peer_id": self.peer_id, "addresses": [format!("quic://{}", self.quic), format!("tcp://{}", self.tcp)]},
        });
        std::fs::write(data_dir.join("config.json"), config.to_string())
            .expect("write config.json");
    }
}
