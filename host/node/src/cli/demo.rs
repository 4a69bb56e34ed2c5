//! `allpeers demo`: the tour, with real processes on loopback in temporary dirs — a hub
//! (`allpeers-hub`) and two nodes (`allpeers daemon`, "alice" and "bob") that register, find
//! each other, see each other online and connect; alice's resources; a browser's view of
//! alice through the native-messaging host. It grows as features land.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use allpeers_model::api::methods::{self as m, ClientsChanged, topics};
use allpeers_model::api::{Event, FrameDecoder, Incoming, Request, encode_frame};
use allpeers_node::client::ApiClient;
use allpeers_node::paths::NodePaths;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

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

fn short(id: &Value) -> String {
    id.as_str()
        .map(|s| format!("{}…", &s[..s.len().min(16)]))
        .unwrap_or_else(|| "?".into())
}

struct Hub {
    _child: Child,
    peer_id: String,
    quic: String,
    tcp: String,
}

async fn start_hub(exe: &Path, dir: &Path) -> anyhow::Result<Hub> {
    let hub_exe = exe.with_file_name("allpeers-hub");
    if !hub_exe.exists() {
        bail!(
            "{} is missing: build both binaries (cargo build --release --bins)",
            hub_exe.display()
        );
    }
    let mut child = Command::new(&hub_exe)
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--name",
            "demo.hub",
            "--quic",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--presence-timeout",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", hub_exe.display()))?;
    let mut line = String::new();
    step("hub start", async {
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .await?;
        anyhow::Ok(())
    })
    .await?;
    let ready: Value =
        serde_json::from_str(&line).with_context(|| format!("the hub did not start: {line:?}"))?;
    Ok(Hub {
        _child: child,
        peer_id: ready["peer_id"].as_str().unwrap_or_default().to_string(),
        quic: ready["quic"].as_str().unwrap_or_default().to_string(),
        tcp: ready["tcp"].as_str().unwrap_or_default().to_string(),
    })
}

struct Node {
    child: Child,
    paths: NodePaths,
    api: ApiClient,
    peer_id: Value,
}

async fn start_node(exe: &Path, dir: &Path, hub: &Hub, name: &str) -> anyhow::Result<Node> {
    let paths = NodePaths::resolve(Some(dir))?;
    // Demo nodes listen for peers on loopback only, and use the demo hub as home hub.
    let config = json!({
        "net": {"quic": "127.0.0.1:0", "tcp": "127.0.0.1:0"},
        "hub": {"peer_id": hub.peer_id, "addresses": [format!("quic://{}", hub.quic), format!("tcp://{}", hub.tcp)]},
    });
    std::fs::write(paths.config(), config.to_string())?;
    let started = Instant::now();
    let mut child = Command::new(exe)
        .arg("--data-dir")
        .arg(&paths.data_dir)
        .args(["daemon", "--notify-ready"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut ready = String::new();
    step("daemon start", async {
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut ready)
            .await?;
        anyhow::Ok(())
    })
    .await?;
    if !ready.starts_with("READY") {
        bail!(
            "the {name} node did not start (see {})",
            paths.logs().display()
        );
    }
    let ready_ms = started.elapsed().as_millis();
    let api = step("hello", async {
        Ok(ApiClient::connect(&paths.socket, "demo").await?)
    })
    .await?;
    api.call(
        m::EVENTS_SUBSCRIBE,
        json!({"topics": [topics::HUB_CHANGED, topics::PRESENCE_CHANGED, topics::CLIENTS_CHANGED]}),
    )
    .await?;
    let status = api.call(m::NET_STATUS, json!({})).await?;
    if status["hub"]["state"] != "online" {
        wait_event(&api, topics::HUB_CHANGED, |d| d["state"] == "online").await?;
    }
    let peer_id = json!(api.hello().peer_id);
    let listening = super::listening_addresses(&status);
    println!(
        "      {name}: ready in {ready_ms} ms, identity {} (made on first run)",
        short(&peer_id)
    );
    println!(
        "      {name}: listens for peers on {}; presence line to the hub is up",
        listening
    );
    Ok(Node {
        child,
        paths,
        api,
        peer_id,
    })
}

async fn wait_event(
    api: &ApiClient,
    topic: &str,
    check: impl Fn(&Value) -> bool,
) -> anyhow::Result<Event> {
    step(topic, async {
        loop {
            let event = api
                .next_event()
                .await
                .context("the node closed the connection")?;
            if event.topic == topic && check(&event.data) {
                return Ok(event);
            }
        }
    })
    .await
}

async fn demo() -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let dir = tempfile::Builder::new()
        .prefix("allpeers-demo-")
        .tempdir()?;
    for sub in ["hub", "alice", "bob"] {
        std::fs::create_dir_all(dir.path().join(sub))?;
    }
    println!(
        "AllPeers demo: a hub and two nodes on loopback, in {}\n",
        dir.path().display()
    );

    println!("[1/8] A hub starts (allpeers-hub): the meeting point; it never sees content");
    let hub = start_hub(&exe, &dir.path().join("hub")).await?;
    println!(
        "      hub demo.hub, key {}, quic {}, tcp {}",
        short(&json!(hub.peer_id)),
        hub.quic,
        hub.tcp
    );

    println!("\n[2/8] Two nodes start (allpeers daemon), each with its home hub pinned by key");
    let alice = start_node(&exe, &dir.path().join("alice"), &hub, "alice").await?;
    let mut bob = start_node(&exe, &dir.path().join("bob"), &hub, "bob").await?;

    println!("\n[3/8] They register names; the hub signs a certificate binding name and key");
    for (node, name) in [(&alice, "alice"), (&bob, "bob")] {
        let cert = node
            .api
            .call(m::HUB_REGISTER, json!({"name": name}))
            .await?;
        println!(
            "      {} -> {}",
            cert["certificate"]["full_name"].as_str().unwrap_or("?"),
            short(&cert["certificate"]["peer_id"])
        );
    }
    let taken = bob
        .api
        .call(m::HUB_REGISTER, json!({"name": "alice"}))
        .await;
    println!(
        "      bob tries to take \"alice\": refused ({})",
        taken.err().map(|e| e.to_string()).unwrap_or_default()
    );

    println!(
        "\n[4/8] Alice looks bob up; the hub's answer is signed and fresh, and alice checks it"
    );
    let found = alice
        .api
        .call(m::HUB_RESOLVE, json!({"query": "bob@demo.hub"}))
        .await?;
    println!(
        "      bob@demo.hub = {}, {}, at {}",
        short(&found["peer_id"]),
        if found["online"] == true {
            "online"
        } else {
            "offline"
        },
        found["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );

    println!(
        "\n[5/8] Presence: they watch each other (the hub shows presence only when both agree)"
    );
    alice
        .api
        .call(m::HUB_WATCH, json!({"peers": [bob.peer_id]}))
        .await?;
    bob.api
        .call(m::HUB_WATCH, json!({"peers": [alice.peer_id]}))
        .await?;
    let bob_id = bob.peer_id.clone();
    wait_event(&alice.api, topics::PRESENCE_CHANGED, |d| {
        d["peer_id"] == bob_id && d["online"] == true
    })
    .await?;
    println!("      alice sees bob online");

    println!("\n[6/8] Alice connects to bob: mutual TLS 1.3, each side checks the other's key");
    let connected = alice
        .api
        .call(m::NET_CONNECT, json!({"peer": bob.peer_id}))
        .await?;
    println!(
        "      path {} over {} ({})",
        connected["path"].as_str().unwrap_or("?"),
        connected["transport"].as_str().unwrap_or("?"),
        connected["why"].as_str().unwrap_or("")
    );

    println!("\n[7/8] Alice's resources: typed data in her node's SQLite store");
    alice
        .api
        .call(
            "resources.subscribe",
            json!({"filter": {"type": {"name": "File"}}}),
        )
        .await?;
    let photo = alice
        .api
        .call(
            "resources.create",
            json!({"resource": {"type": "Image", "properties": {"name": "beach.jpg", "size": 2_400_000, "width": 4000, "height": 3000}}}),
        )
        .await?;
    alice
        .api
        .call("resources.create", json!({"resource": {"type": "Link", "properties": {"url": "https://www.mozilla.org/", "title": "Mozilla"}}}))
        .await?;
    println!(
        "      created an Image ({}) and a Link",
        photo["id"].as_str().unwrap_or("?")
    );
    let event = wait_event(&alice.api, "resource.changed", |_| true).await?;
    println!(
        "      her subscription to File saw: {} ({} {})",
        event.topic,
        event.data["kind"].as_str().unwrap_or("?"),
        event.data["type"].as_str().unwrap_or("?")
    );
    let files = alice
        .api
        .call("resources.query", json!({"query": {"type": "File", "where": [{"prop": {"name": "size", "op": ">", "value": 1_000_000}}]}}))
        .await?;
    println!(
        "      query File with size > 1 MB: {} found (the Image: a query on a type includes its subtypes)",
        files["resources"].as_array().map(Vec::len).unwrap_or(0)
    );

    println!("\n[8/8] A browser opens alice's sidebar: it starts the native-messaging host");
    browser_round_trips(&exe, &alice.paths, &alice.api).await?;

    println!("\nBob goes offline; alice hears it from the hub within seconds");
    bob.api.call(m::DAEMON_SHUTDOWN, json!({})).await?;
    step("bob exit", async { Ok(bob.child.wait().await?) }).await?;
    let t = Instant::now();
    wait_event(&alice.api, topics::PRESENCE_CHANGED, |d| {
        d["peer_id"] == bob_id && d["online"] == false
    })
    .await?;
    println!(
        "      alice sees bob offline after {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let mut alice = alice;
    alice.api.call(m::DAEMON_SHUTDOWN, json!({})).await?;
    step("alice exit", async { Ok(alice.child.wait().await?) }).await?;
    println!(
        "\nDone: everything stopped. Next: `allpeers install` registers the host with your browsers; see README.md."
    );
    Ok(())
}

/// Plays the browser: starts the native host with Chromium's argv and pipes, says hello,
/// sees the pushed event on the CLI side, and measures round trips through the bridge.
async fn browser_round_trips(exe: &Path, paths: &NodePaths, cli: &ApiClient) -> anyhow::Result<()> {
    let mut host = Command::new(exe)
        .arg("chrome-extension://ccjfjlcndgkdlejcmgpopanpmdklkkpb/")
        .env(allpeers_node::paths::ENV_DATA_DIR, &paths.data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut to_host = host.stdin.take().expect("piped");
    let mut from_host = host.stdout.take().expect("piped");
    let mut decoder = FrameDecoder::new(1024 * 1024);
    let mut exchange = async |request: Request| -> anyhow::Result<Value> {
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
        "      the extension said hello through the bridge; it talks to {}",
        short(&hello["peer_id"])
    );
    let event = wait_event(cli, topics::CLIENTS_CHANGED, |d| d["connected"] == true).await?;
    let change: ClientsChanged = serde_json::from_value(event.data)?;
    println!(
        "      a pushed event: {} \"{}\" connected, {} clients now",
        event.topic, change.client, change.clients
    );
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
        "      200 round trips browser -> native host -> daemon -> browser: median {:.3} ms, p99 {:.3} ms",
        samples[100].as_secs_f64() * 1e3,
        samples[197].as_secs_f64() * 1e3
    );
    drop(to_host);
    let exit = step("host exit", async { Ok(host.wait().await?) }).await?;
    println!("      the browser closes: the native host exits ({exit}); the node keeps running");
    Ok(())
}
