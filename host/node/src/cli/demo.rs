//! `allpeers demo`: a node in a temporary data dir, walked through step by step with real
//! processes — the daemon, and a browser's view through the native-messaging host.

use std::process::Stdio;
use std::time::{Duration, Instant};

use allpeers_model::api::methods::{self as m, ClientsChanged, StatusResult, topics};
use allpeers_model::api::{FrameDecoder, Incoming, Request, encode_frame};
use allpeers_node::client::ApiClient;
use allpeers_node::paths::NodePaths;
use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

const STEP_TIMEOUT: Duration = Duration::from_secs(15);

pub fn run() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(demo())
}

async fn step<T>(
    what: &str,
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, future)
        .await
        .with_context(|| format!("{what} took over {STEP_TIMEOUT:?}"))?
}

async fn demo() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let dir = tempfile::Builder::new()
        .prefix("allpeers-demo-")
        .tempdir()?;
    let paths = NodePaths::resolve(Some(dir.path()))?;
    println!("AllPeers demo: one node in {}\n", paths.data_dir.display());

    println!("[1/5] Starting the daemon (allpeers daemon)");
    let started = Instant::now();
    let mut daemon = tokio::process::Command::new(&exe)
        .arg("--data-dir")
        .arg(&paths.data_dir)
        .args(["daemon", "--notify-ready"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut ready = String::new();
    step("daemon start", async {
        BufReader::new(daemon.stdout.take().expect("piped"))
            .read_line(&mut ready)
            .await?;
        anyhow::Ok(())
    })
    .await?;
    if !ready.starts_with("READY") {
        bail!("the daemon did not start (see {})", paths.logs().display());
    }
    println!(
        "      ready in {} ms, pid {}, socket {}",
        started.elapsed().as_millis(),
        daemon.id().unwrap_or(0),
        paths.socket.display()
    );

    println!("\n[2/5] The CLI connects to the local API and says hello");
    let cli = step("hello", async {
        Ok(ApiClient::connect(&paths.socket, "demo-cli").await?)
    })
    .await?;
    let hello = cli.hello();
    println!(
        "      server {} {} speaks API v{} ({} methods)",
        hello.server,
        hello.server_version,
        hello.api_version,
        hello.methods.len()
    );
    let status: StatusResult = cli.call_typed(m::STATUS_GET, json!({})).await?;
    println!(
        "      identity created on first run: {}",
        status.identity.peer_id
    );
    if let Some(sha) = &status.identity.certificate_sha256 {
        println!(
            "      its TLS certificate (self-signed, Ed25519): sha256 {}…",
            &sha[..16]
        );
    }
    cli.call(
        m::EVENTS_SUBSCRIBE,
        json!({"topics": [topics::CLIENTS_CHANGED]}),
    )
    .await?;
    println!("      subscribed to {} events", topics::CLIENTS_CHANGED);

    println!("\n[3/5] A browser starts the native-messaging host (argv: chrome-extension://<id>/)");
    let mut host = tokio::process::Command::new(&exe)
        .arg("chrome-extension://ccjfjlcndgkdlejcmgpopanpmdklkkpb/")
        .env(allpeers_node::paths::ENV_DATA_DIR, &paths.data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut to_host = host.stdin.take().expect("piped");
    let mut from_host = host.stdout.take().expect("piped");
    let mut decoder = FrameDecoder::new(1024 * 1024);
    let mut exchange = async |request: Request| -> anyhow::Result<serde_json::Value> {
        to_host
            .write_all(&encode_frame(&serde_json::to_vec(&request)?))
            .await?;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(frame) = decoder.next_frame()? {
                if let Incoming::Response(response) = Incoming::parse(&frame)? {
                    return match response.error {
                        Some(e) => Err(e.into()),
                        None => Ok(response.result.unwrap_or_default()),
                    };
                }
                continue;
            }
            let n = from_host.read(&mut buf).await?;
            if n == 0 {
                bail!("the native host closed its stdout");
            }
            decoder.push(&buf[..n]);
        }
    };
    let hello = step(
        "browser hello",
        exchange(Request::new(
            1,
            m::HELLO,
            json!({"client": "extension/chromium", "api_version": 1}),
        )),
    )
    .await?;
    println!(
        "      the extension said hello through the bridge; the node is {}",
        hello["peer_id"].as_str().unwrap_or("?")
    );
    let event = step("event", async {
        cli.next_event().await.context("no event")
    })
    .await?;
    let change: ClientsChanged = serde_json::from_value(event.data)?;
    println!(
        "      the CLI got a pushed event: {} \"{}\" connected, {} clients now",
        event.topic, change.client, change.clients
    );

    println!("\n[4/5] Round trips browser -> native host -> daemon -> browser");
    let mut samples = Vec::new();
    for i in 0..200u64 {
        let t = Instant::now();
        step(
            "ping",
            exchange(Request::new(100 + i, m::PING, json!({"n": i}))),
        )
        .await?;
        samples.push(t.elapsed());
    }
    samples.sort();
    println!(
        "      200 pings: median {:.3} ms, p99 {:.3} ms",
        samples[100].as_secs_f64() * 1e3,
        samples[197].as_secs_f64() * 1e3
    );

    println!("\n[5/5] The browser closes; the daemon keeps running until asked to stop");
    drop(to_host);
    let exit = step("host exit", async { Ok(host.wait().await?) }).await?;
    println!("      native host exited ({exit})");
    cli.call(m::DAEMON_SHUTDOWN, json!({})).await?;
    let exit = step("daemon exit", async { Ok(daemon.wait().await?) }).await?;
    println!("      daemon stopped ({exit})");
    println!(
        "\nDone. Next: `allpeers install` registers the host with your browsers; see README.md."
    );
    Ok(())
}
