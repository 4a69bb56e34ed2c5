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
use std::io::{Read, Write};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
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
    let mut stdout = raw_stdout()?;
    let log = crate::config::NodeConfig::load(&paths.config()).and_then(|config| {
        Ok(allpeers_log::init(
            &config.log_config(&paths.logs(), "native-host"),
        )?)
    });
    let log = match log {
        Ok(log) => log,
        Err(e) => {
            let notice = json!({"jsonrpc": "2.0", "method": "bridge.error", "params": {"message": format!("{e:#}")}});
            write_browser_frame(&mut stdout, notice.to_string().as_bytes())?;
            return Err(e);
        }
    };
    let caller = Caller::from_args(&args);
    allpeers_log::flesh!(?caller, "native host started");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let socket = match runtime.block_on(connect_or_start(&paths)) {
        Ok(socket) => socket,
        Err(e) => {
            allpeers_log::skin!("cannot reach the daemon: {e:#}");
            // Tell the extension why, in a form it can show the user.
            let notice = json!({"jsonrpc": "2.0", "method": "bridge.error", "params": {"message": format!("{e:#}")}});
            write_browser_frame(&mut stdout, notice.to_string().as_bytes())?;
            return Err(e);
        }
    };
    drop(runtime);
    let socket = socket.into_std()?;
    socket.set_nonblocking(false)?;
    let result = pipe(socket, raw_stdin()?, stdout);
    allpeers_log::flesh!("native host exiting");
    drop(log);
    result
}

/// stdin without std's buffering: the relay has its own buffer.
fn raw_stdin() -> std::io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    Ok(std::fs::File::from(
        std::io::stdin().as_fd().try_clone_to_owned()?,
    ))
}

/// stdout without std's line buffering: frames are written whole, then flushed.
fn raw_stdout() -> std::io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    Ok(std::fs::File::from(
        std::io::stdout().as_fd().try_clone_to_owned()?,
    ))
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

/// Pipes frames browser <-> daemon until either side closes, on two plain threads with
/// blocking I/O: a pure relay, where one blocking read per message beats an event loop's
/// poll-read-poll (measured in `docs/benchmarks.md`).
///
/// When the daemon goes, the browser is told (`bridge.closed`) and the bridge keeps reading
/// stdin until the browser closes the port, at most [`BROWSER_CLOSE_WAIT`]: exiting at once
/// would make a message the browser writes meanwhile fail with a broken pipe, which Chromium
/// reports as "Error when communicating", indistinguishable from garbage.
pub fn pipe<R, W>(
    socket: std::os::unix::net::UnixStream,
    mut browser_in: R,
    mut browser_out: W,
) -> anyhow::Result<()>
where
    R: Read + Send + 'static,
    W: Write + Send + 'static,
{
    use std::net::Shutdown;
    let mut daemon_out = socket.try_clone()?;
    let mut daemon_in = socket.try_clone()?;
    let (end_tx, end_rx) = std::sync::mpsc::channel::<anyhow::Result<BridgeEnd>>();

    let to_daemon_end = end_tx.clone();
    std::thread::Builder::new()
        .name("browser->daemon".into())
        .spawn(move || {
            let mut relay = || -> anyhow::Result<BridgeEnd> {
                let mut decoder = FrameDecoder::new(API_MAX_FRAME);
                let mut buf = vec![0u8; 64 * 1024];
                let mut daemon_gone = false;
                loop {
                    let n = browser_in.read(&mut buf)?;
                    if n == 0 {
                        return Ok(BridgeEnd::BrowserClosed);
                    }
                    decoder.push(&buf[..n]);
                    loop {
                        match decoder.next_frame() {
                            Ok(Some(_)) if daemon_gone => {}
                            Ok(Some(frame)) => {
                                if daemon_out.write_all(&encode_frame(&frame)).is_err() {
                                    // The daemon went: the other thread's read ends and says
                                    // so to the browser; this one drains stdin until it closes.
                                    daemon_gone = true;
                                    let _ = daemon_out.shutdown(Shutdown::Both);
                                }
                            }
                            Ok(None) => break,
                            Err(e) => return Ok(BridgeEnd::BadBrowserFrame(e.to_string())),
                        }
                    }
                }
            };
            let _ = to_daemon_end.send(relay());
        })?;

    std::thread::Builder::new().name("daemon->browser".into()).spawn(move || {
        let mut relay = || -> anyhow::Result<BridgeEnd> {
            let mut decoder = FrameDecoder::new(MAX_DAEMON_FRAME);
            let mut buf = vec![0u8; 64 * 1024];
            let mut sequence = 0u64;
            let mut out = Vec::new();
            loop {
                // A reset reads as an error rather than end of stream; either way the
                // browser is told why the port is about to close.
                let (n, reason) = match daemon_in.read(&mut buf) {
                    Ok(0) => (0, "the daemon closed the connection".to_string()),
                    Ok(n) => (n, String::new()),
                    Err(e) => (0, format!("the connection to the daemon failed: {e}")),
                };
                if n == 0 {
                    let notice = json!({"jsonrpc": "2.0", "method": "bridge.closed", "params": {"reason": reason}});
                    write_browser_frame(&mut browser_out, notice.to_string().as_bytes())?;
                    return Ok(BridgeEnd::DaemonClosed);
                }
                decoder.push(&buf[..n]);
                out.clear();
                while let Some(frame) = decoder.next_frame()? {
                    sequence += 1;
                    for piece in split_for_browser(frame, sequence) {
                        out.extend_from_slice(&encode_frame(&piece));
                    }
                }
                // Everything that arrived together leaves in one write.
                browser_out.write_all(&out)?;
                browser_out.flush()?;
            }
        };
        let _ = end_tx.send(relay());
    })?;

    let end = end_rx.recv().expect("a relay thread reports")?;
    // Unblock the other thread's socket read; a parked stdin read ends with the process.
    let _ = socket.shutdown(Shutdown::Both);
    match end {
        BridgeEnd::BrowserClosed => Ok(()),
        BridgeEnd::DaemonClosed => {
            allpeers_log::marrow!("the daemon closed the connection");
            // The browser closes the port once told; until then its writes are drained.
            if end_rx.recv_timeout(BROWSER_CLOSE_WAIT).is_err() {
                allpeers_log::marrow!(
                    "the browser kept the port open {BROWSER_CLOSE_WAIT:?} after the notice"
                );
            }
            Ok(())
        }
        BridgeEnd::BadBrowserFrame(reason) => {
            allpeers_log::marrow!("bad frame from the browser: {reason}");
            let response = Response::err(
                Value::Null,
                RpcError::new(ErrorCode::FrameTooLarge, reason.clone()),
            );
            let mut stdout = raw_stdout()?;
            write_browser_frame(&mut stdout, &serde_json::to_vec(&response)?)?;
            bail!("bad frame from the browser: {reason}")
        }
    }
}

/// How long the bridge waits, after telling the browser the daemon closed, for the
/// browser to close the port; an extension that does not close it is left after this.
const BROWSER_CLOSE_WAIT: Duration = Duration::from_secs(5);

enum BridgeEnd {
    BrowserClosed,
    DaemonClosed,
    BadBrowserFrame(String),
}

fn write_browser_frame<W: Write>(out: &mut W, payload: &[u8]) -> anyhow::Result<()> {
    out.write_all(&encode_frame(payload))?;
    out.flush()?;
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
