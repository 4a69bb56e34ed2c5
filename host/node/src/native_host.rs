//! `allpeers native-host`: what the browser launches through native messaging.
//!
//! It connects to the daemon's socket (starting the daemon if none runs) and pipes frames
//! both ways. Browsers drop the port on a host->browser frame over 1 MiB, so larger
//! messages are split into `chunk` notifications (see `allpeers_model::api::chunk`). The
//! bridge exits when the browser closes stdin; the daemon keeps running for other clients.

use std::process::Stdio;
use std::time::Duration;

use allpeers_model::api::chunk::split_for_browser;
use allpeers_model::api::frame::API_MAX_FRAME;
use allpeers_model::api::{ErrorCode, FrameDecoder, Response, RpcError, encode_frame};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::lock::DataDirLock;
use crate::paths::NodePaths;

/// How long a freshly spawned daemon may take to become ready.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest frame taken from the daemon (it is re-chunked for the browser).
const MAX_DAEMON_FRAME: usize = 256 * 1024 * 1024;

/// Who launched us, from the arguments browsers pass: Chromium passes the caller's origin
/// (`chrome-extension://<id>/`, and on Windows `--parent-window=<n>`); Firefox passes the
/// manifest path and the extension id.
#[derive(Debug, PartialEq, Eq)]
pub enum Caller {
    Chromium {
        origin: String,
    },
    Firefox {
        manifest: String,
        extension_id: String,
    },
    Unknown,
}

impl Caller {
    pub fn from_args(args: &[String]) -> Caller {
        let args: Vec<&String> = args
            .iter()
            .filter(|a| !a.starts_with("--parent-window"))
            .collect();
        match args.as_slice() {
            [origin, ..] if origin.starts_with("chrome-extension://") => Caller::Chromium {
                origin: (*origin).clone(),
            },
            [manifest, id, ..] => Caller::Firefox {
                manifest: (*manifest).clone(),
                extension_id: (*id).clone(),
            },
            _ => Caller::Unknown,
        }
    }

    /// True when argv looks like a browser launching the binary directly (the manifest
    /// points at `allpeers` itself, so no `native-host` word is there).
    pub fn is_browser_argv(args: &[String]) -> bool {
        match args {
            [first, ..] if first.starts_with("chrome-extension://") => true,
            [manifest, id, ..] => {
                manifest.ends_with(".json") && !id.starts_with('-') && !id.contains('/')
            }
            _ => false,
        }
    }
}

pub fn run(paths: NodePaths, args: Vec<String>) -> anyhow::Result<()> {
    // stdout belongs to the browser: log to a file only.
    let log = allpeers_log::init(&allpeers_log::LogConfig::new(paths.logs(), "native-host"))?;
    let caller = Caller::from_args(&args);
    allpeers_log::flesh!(?caller, "native host started");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let mut stdout = tokio::io::stdout();
        let socket = match connect_or_start(&paths).await {
            Ok(socket) => socket,
            Err(e) => {
                allpeers_log::skin!("cannot reach the daemon: {e:#}");
                // Tell the extension why, in a form it shows the user.
                let notice = json!({"jsonrpc": "2.0", "method": "bridge.error", "params": {"message": format!("{e:#}")}});
                write_browser_frame(&mut stdout, notice.to_string().into_bytes()).await?;
                return Err(e);
            }
        };
        drop(stdout);
        match (pipe_stdin(), pipe_stdout()) {
            // Browsers give us pipes: use them non-blocking on our own thread, skipping
            // the hop through tokio's blocking pool that plain stdin/stdout take.
            (Ok(input), Ok(output)) => pipe(socket, input, output).await,
            _ => pipe(socket, tokio::io::stdin(), tokio::io::stdout()).await,
        }
    });
    allpeers_log::flesh!("native host exiting");
    drop(log);
    // A read on stdin may still be parked on tokio's blocking thread; do not wait for it.
    runtime.shutdown_background();
    result
}

fn pipe_stdin() -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    use std::os::fd::AsFd;
    tokio::net::unix::pipe::Receiver::from_owned_fd(std::io::stdin().as_fd().try_clone_to_owned()?)
}

fn pipe_stdout() -> std::io::Result<tokio::net::unix::pipe::Sender> {
    use std::os::fd::AsFd;
    tokio::net::unix::pipe::Sender::from_owned_fd(std::io::stdout().as_fd().try_clone_to_owned()?)
}

/// Connects to the running daemon, or starts one. Two bridges starting at once serialise
/// on the spawn lock, so exactly one daemon is started and both connect to it.
pub async fn connect_or_start(paths: &NodePaths) -> anyhow::Result<UnixStream> {
    if let Ok(stream) = UnixStream::connect(&paths.socket).await {
        return Ok(stream);
    }
    let lock_path = paths.spawn_lock();
    let spawn_lock = tokio::task::spawn_blocking(move || -> anyhow::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        file.lock()?;
        Ok(file)
    })
    .await??;
    // Whoever held the lock before us may have started the daemon already.
    if let Ok(stream) = UnixStream::connect(&paths.socket).await {
        return Ok(stream);
    }
    let started = start_daemon(paths).await;
    drop(spawn_lock);
    match started {
        Ok(()) => UnixStream::connect(&paths.socket).await.with_context(|| {
            format!(
                "daemon reported ready but {} refuses connections",
                paths.socket.display()
            )
        }),
        Err(e) if DataDirLock::is_held(paths) => {
            // A daemon started outside of us owns the data dir and is still coming up.
            allpeers_log::marrow!("{e:#}; waiting for the running daemon");
            wait_for_socket(paths).await
        }
        Err(e) => Err(e),
    }
}

async fn start_daemon(paths: &NodePaths) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the allpeers binary")?;
    allpeers_log::flesh!(exe = %exe.display(), "starting the daemon");
    let mut child = tokio::process::Command::new(&exe)
        .arg("--data-dir")
        .arg(&paths.data_dir)
        .args(["daemon", "--notify-ready"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: signals aimed at the browser's group leave it running.
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .with_context(|| format!("cannot start {}", exe.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let mut line = String::new();
    let ready = tokio::time::timeout(
        DAEMON_START_TIMEOUT,
        BufReader::new(stdout).read_line(&mut line),
    )
    .await;
    match ready {
        Ok(Ok(_)) if line.starts_with("READY") => {
            // The daemon runs on without us; reap it in the background if it ever exits
            // while we live, so it does not linger as a zombie.
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            Ok(())
        }
        Ok(_) => {
            let mut reason = String::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(2), stderr.read_to_string(&mut reason))
                    .await;
            let _ = child.wait().await;
            bail!("the daemon did not start: {}", reason.trim())
        }
        Err(_) => {
            let _ = child.start_kill();
            bail!("the daemon did not become ready within {DAEMON_START_TIMEOUT:?}")
        }
    }
}

async fn wait_for_socket(paths: &NodePaths) -> anyhow::Result<UnixStream> {
    let deadline = tokio::time::Instant::now() + DAEMON_START_TIMEOUT;
    let mut delay = Duration::from_millis(5);
    loop {
        match UnixStream::connect(&paths.socket).await {
            Ok(stream) => return Ok(stream),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e).with_context(|| {
                    format!("the daemon never opened {}", paths.socket.display())
                });
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// Pipes frames browser <-> daemon until either side closes.
pub async fn pipe<R, W>(
    socket: UnixStream,
    mut browser_in: R,
    mut browser_out: W,
) -> anyhow::Result<()>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut daemon_in, mut daemon_out) = socket.into_split();
    let to_daemon = async {
        let mut decoder = FrameDecoder::new(API_MAX_FRAME);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = browser_in.read(&mut buf).await?;
            if n == 0 {
                return anyhow::Ok(BridgeEnd::BrowserClosed);
            }
            decoder.push(&buf[..n]);
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => daemon_out.write_all(&encode_frame(&frame)).await?,
                    Ok(None) => break,
                    Err(e) => return Ok(BridgeEnd::BadBrowserFrame(e.to_string())),
                }
            }
        }
    };
    let mut sequence = 0u64;
    let to_browser = async {
        let mut decoder = FrameDecoder::new(MAX_DAEMON_FRAME);
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending = Vec::new();
        loop {
            let n = daemon_in.read(&mut buf).await?;
            if n == 0 {
                return anyhow::Ok(BridgeEnd::DaemonClosed);
            }
            decoder.push(&buf[..n]);
            while let Some(frame) = decoder.next_frame()? {
                pending.push(frame);
            }
            for frame in pending.drain(..) {
                sequence += 1;
                for piece in split_for_browser(frame, sequence) {
                    browser_out.write_all(&encode_frame(&piece)).await?;
                }
            }
            browser_out.flush().await?;
        }
    };
    let end = tokio::select! {
        end = to_daemon => end?,
        end = to_browser => end?,
    };
    match end {
        BridgeEnd::BrowserClosed => Ok(()),
        BridgeEnd::DaemonClosed => {
            let notice = json!({"jsonrpc": "2.0", "method": "bridge.closed", "params": {"reason": "the daemon closed the connection"}});
            write_browser_frame(&mut browser_out, notice.to_string().into_bytes()).await?;
            allpeers_log::marrow!("the daemon closed the connection");
            Ok(())
        }
        BridgeEnd::BadBrowserFrame(reason) => {
            let response = Response::err(
                Value::Null,
                RpcError::new(ErrorCode::FrameTooLarge, reason.clone()),
            );
            write_browser_frame(&mut browser_out, serde_json::to_vec(&response)?).await?;
            bail!("bad frame from the browser: {reason}")
        }
    }
}

enum BridgeEnd {
    BrowserClosed,
    DaemonClosed,
    BadBrowserFrame(String),
}

async fn write_browser_frame<W: AsyncWrite + Unpin>(
    out: &mut W,
    payload: Vec<u8>,
) -> anyhow::Result<()> {
    out.write_all(&encode_frame(&payload)).await?;
    out.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn browser_arguments_are_recognised() {
        assert_eq!(
            Caller::from_args(&args(&["chrome-extension://abc/", "--parent-window=0"])),
            Caller::Chromium {
                origin: "chrome-extension://abc/".into()
            }
        );
        assert_eq!(
            Caller::from_args(&args(&[
                "/home/u/.mozilla/native-messaging-hosts/net.allpeers.host.json",
                "allpeers@allpeers.net"
            ])),
            Caller::Firefox {
                manifest: "/home/u/.mozilla/native-messaging-hosts/net.allpeers.host.json".into(),
                extension_id: "allpeers@allpeers.net".into()
            }
        );
        assert!(Caller::is_browser_argv(&args(&["chrome-extension://abc/"])));
        assert!(Caller::is_browser_argv(&args(&[
            "/x/net.allpeers.host.json",
            "allpeers@allpeers.net"
        ])));
        assert!(!Caller::is_browser_argv(&args(&["status"])));
        assert!(!Caller::is_browser_argv(&args(&["install", "--browser"])));
    }
}
