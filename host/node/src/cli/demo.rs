//! `allpeers demo`: the tour, with real processes on loopback in temporary dirs — a hub
//! (`allpeers-hub`) and two nodes (`allpeers daemon`, "alice" and "bob") that register, find
//! each other, see each other online and connect; alice's resources; a browser's view of
//! alice through the native-messaging host; a second hub with a node homed there; a third
//! node, "carol", joins for shared files (a private swarm of alice and bob). It grows as
//! features land.

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

pub(super) async fn step<T>(
    what: &str,
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(STEP_TIMEOUT, future)
        .await
        .with_context(|| format!("{what} took over {STEP_TIMEOUT:?}"))?
}

pub(super) fn short(id: &Value) -> String {
    id.as_str()
        .map(|s| format!("{}…", &s[..s.len().min(16)]))
        .unwrap_or_else(|| "?".into())
}

pub(super) struct Hub {
    _child: Child,
    peer_id: String,
    quic: String,
    tcp: String,
    /// The hub's ready line (e.g. `mail_http` when it has a mail gateway).
    pub(super) ready: Value,
}

async fn start_hub(exe: &Path, dir: &Path) -> anyhow::Result<Hub> {
    start_hub_with(exe, dir, &[]).await
}

/// A hub with extra flags (e.g. `--config FILE`).
pub(super) async fn start_hub_with(exe: &Path, dir: &Path, extra: &[&str]) -> anyhow::Result<Hub> {
    start_named_hub(exe, dir, "demo.hub", extra).await
}

/// A hub named `name` (the part after `@`) with extra flags.
pub(super) async fn start_named_hub(
    exe: &Path,
    dir: &Path,
    name: &str,
    extra: &[&str],
) -> anyhow::Result<Hub> {
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
            name,
            "--quic",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--presence-timeout",
            "2",
        ])
        .args(extra)
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
        ready,
    })
}

pub(super) struct Node {
    pub(super) child: Child,
    pub(super) paths: NodePaths,
    pub(super) api: ApiClient,
    peer_id: Value,
}

pub(super) async fn start_node(
    exe: &Path,
    dir: &Path,
    hub: &Hub,
    name: &str,
) -> anyhow::Result<Node> {
    let paths = NodePaths::resolve(Some(dir))?;
    let fresh = !paths.identity().exists();
    // Demo nodes listen for peers on loopback only, and use the demo hub as home hub.
    let config = json!({
        "net": {"quic": "127.0.0.1:0", "tcp": "127.0.0.1:0"},
        "transfers": {"listen": "127.0.0.1:0", "dht": {"enabled": false}},
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
        json!({"topics": [topics::HUB_CHANGED, topics::PRESENCE_CHANGED, topics::CLIENTS_CHANGED, topics::CONTACT_REQUEST, topics::CONTACT_CHANGED, topics::MESSAGE_RECEIVED, topics::CHAT_RECEIPT]}),
    )
    .await?;
    let status = api.call(m::NET_STATUS, json!({})).await?;
    if status["hub"]["state"] != "online" {
        wait_event(&api, topics::HUB_CHANGED, |d| d["state"] == "online").await?;
    }
    let peer_id = json!(api.hello().peer_id);
    let listening = super::listening_addresses(&status);
    println!(
        "      {name}: ready in {ready_ms} ms, identity {}{}",
        short(&peer_id),
        if fresh { " (made on first run)" } else { "" }
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

pub(super) async fn wait_event(
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
    let dir = tempfile::Builder::new()
        .prefix("allpeers-demo-")
        .tempdir()?;
    let result = tour(&dir).await;
    if result.is_err() {
        print_log_tails(dir.path());
    }
    result
}

/// Lines of each process's log shown when the tour fails: its temporary directory (and the
/// logs in it) goes with the demo, and a failure seen only in CI must say why.
const FAILURE_LOG_LINES: usize = 40;

/// Prints the end of every log under the demo's directory (`<process dir>/logs/*.log`).
fn print_log_tails(dir: &Path) {
    let Ok(processes) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<_> = processes
        .flatten()
        .filter_map(|p| std::fs::read_dir(p.path().join("logs")).ok())
        .flat_map(|files| files.flatten().map(|f| f.path()))
        .filter(|f| f.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    for log in logs {
        eprintln!("\n--- the last lines of {} ---", log.display());
        eprintln!("{}", allpeers_log::tail(&log, FAILURE_LOG_LINES));
    }
}

async fn tour(dir: &tempfile::TempDir) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    for sub in ["hub", "alice", "bob"] {
        std::fs::create_dir_all(dir.path().join(sub))?;
    }
    println!(
        "AllPeers demo: a hub and two nodes on loopback, in {}\n",
        dir.path().display()
    );

    println!("[1/16] A hub starts (allpeers-hub): the meeting point; it never sees content");
    let hub = start_hub(&exe, &dir.path().join("hub")).await?;
    println!(
        "      hub demo.hub, key {}, quic {}, tcp {}",
        short(&json!(hub.peer_id)),
        hub.quic,
        hub.tcp
    );

    println!("\n[2/16] Two nodes start (allpeers daemon), each with its home hub pinned by key");
    let alice = start_node(&exe, &dir.path().join("alice"), &hub, "alice").await?;
    let mut bob = start_node(&exe, &dir.path().join("bob"), &hub, "bob").await?;

    println!("\n[3/16] They register names; the hub signs a certificate binding name and key");
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
        "\n[4/16] Alice asks bob@demo.hub to be her contact; bob accepts (the hub's signed directory finds him)"
    );
    let added = alice
        .api
        .call(
            m::CONTACTS_ADD,
            json!({"who": "bob@demo.hub", "message": "Hi Bob, it's Alice"}),
        )
        .await?;
    println!(
        "      alice -> bob: request {} ({})",
        added["state"].as_str().unwrap_or("?"),
        added["delivered"].as_str().unwrap_or("?")
    );
    let alice_id = alice.peer_id.clone();
    let request = wait_event(&bob.api, topics::CONTACT_REQUEST, |d| {
        d["peer_id"] == alice_id
    })
    .await?;
    println!(
        "      bob sees a request from {} saying {}",
        short(&request.data["peer_id"]),
        request.data["message"]
    );
    bob.api
        .call(m::CONTACTS_ACCEPT, json!({"peer": alice.peer_id}))
        .await?;
    let bob_id = bob.peer_id.clone();
    let t = Instant::now();
    wait_event(&alice.api, topics::PRESENCE_CHANGED, |d| {
        d["peer_id"] == bob_id && d["online"] == true
    })
    .await?;
    // Bob's presence can reach alice before his acceptance letter does: chat waits for both
    // (contact.changed is among the topics every demo node subscribes to at start).
    step("bob's acceptance", async {
        loop {
            let contacts = alice.api.call(m::CONTACTS_LIST, json!({})).await?;
            let accepted = contacts.as_array().is_some_and(|all| {
                all.iter()
                    .any(|c| c["peer_id"] == bob_id && c["state"] == "accepted")
            });
            if accepted {
                return anyhow::Ok(());
            }
            wait_event(&alice.api, topics::CONTACT_CHANGED, |_| true).await?;
        }
    })
    .await?;
    println!(
        "      accepted: alice sees bob online {:.0} ms later (the hub shows presence to contacts only)",
        t.elapsed().as_secs_f64() * 1e3
    );
    bob.api
        .call(m::PRESENCE_SET, json!({"state": "busy", "text": "cooking"}))
        .await?;
    let seen = wait_event(&alice.api, topics::PRESENCE_CHANGED, |d| {
        d["peer_id"] == bob_id && d["state"] == "busy"
    })
    .await?;
    println!(
        "      bob sets himself busy: alice sees \"{} ({})\"",
        seen.data["state"].as_str().unwrap_or("?"),
        seen.data["text"].as_str().unwrap_or("")
    );

    println!("\n[5/16] They chat: end-to-end over a direct, mutually authenticated connection");
    let chat = alice
        .api
        .call(m::CHAT_OPEN, json!({"peer": bob.peer_id}))
        .await?;
    let chat_id = chat["id"].clone();
    let t = Instant::now();
    let sent = alice
        .api
        .call(
            m::CHAT_SEND,
            json!({"chat": chat_id, "body": "Hi Bob! Dinner on Friday?"}),
        )
        .await?;
    let got = wait_event(&bob.api, topics::MESSAGE_RECEIVED, |d| d["chat"] == chat_id).await?;
    println!(
        "      bob got \"{}\" in {:.1} ms",
        got.data["body"].as_str().unwrap_or(""),
        t.elapsed().as_secs_f64() * 1e3
    );
    bob.api
        .call(
            m::CHAT_SEND,
            json!({"chat": chat_id, "body": "Sure! I'll bring dessert."}),
        )
        .await?;
    let reply = wait_event(&alice.api, topics::MESSAGE_RECEIVED, |d| {
        d["chat"] == chat_id && d["outgoing"] == false
    })
    .await?;
    println!(
        "      alice got \"{}\"",
        reply.data["body"].as_str().unwrap_or("")
    );
    bob.api.call(m::CHAT_READ, json!({"chat": chat_id})).await?;
    let sent_id = sent["id"].clone();
    wait_event(&alice.api, topics::CHAT_RECEIPT, |d| {
        d["message"] == sent_id && d["kind"] == "read"
    })
    .await?;
    println!("      alice's message shows \u{2713}\u{2713} read (a receipt from bob)");

    println!("\n[6/16] The connection under the chat: which path, which transport");
    // The connector's account: which way won (direct, callback, punched, relayed) and why.
    let connect = alice
        .api
        .call(m::NET_CONNECT, json!({"peer": bob.peer_id}))
        .await?;
    println!(
        "      connector: {} ({})",
        connect["path"].as_str().unwrap_or("?"),
        connect["why"].as_str().unwrap_or("?")
    );
    let status = alice.api.call(m::NET_STATUS, json!({})).await?;
    for c in status["connections"].as_array().into_iter().flatten() {
        if c["peer"] == bob.peer_id {
            println!(
                "      alice <-> bob: {} over {} (mutual TLS 1.3, each side checked the other's key)",
                c["path"].as_str().unwrap_or("?"),
                c["transport"].as_str().unwrap_or("?")
            );
        }
    }

    println!("\n[7/16] Alice's resources: typed data in her node's SQLite store");
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

    super::demo_media::run(&alice.api, &dir.path().join("media")).await?;

    println!("\n[9/16] A browser opens alice's sidebar: it starts the native-messaging host");
    browser_round_trips(&exe, &alice.paths, &alice.api).await?;

    super::demo_shares::run(&alice.api, &bob.api, &bob_id).await?;
    super::demo_apps::run(&alice, &bob, &bob_id).await?;

    println!("\n[12/16] Bob goes offline; alice writes anyway; bob gets it when he is back");
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
    alice
        .api
        .call(
            m::CHAT_SEND,
            json!({"chat": chat_id, "body": "See you Friday at 8!"}),
        )
        .await?;
    wait_event(&alice.api, topics::CHAT_RECEIPT, |d| d["via"] == "mailed").await?;
    println!(
        "      the message waits at the hub, sealed to bob's key and signed by alice (the hub cannot read it)"
    );
    let bob_dir = bob.paths.data_dir.clone();
    drop(bob);
    let bob = start_node(&exe, &bob_dir, &hub, "bob").await?;
    bob.api
        .call(
            m::EVENTS_SUBSCRIBE,
            json!({"topics": [topics::MESSAGE_RECEIVED]}),
        )
        .await?;
    let history = bob
        .api
        .call(m::CHAT_HISTORY, json!({"chat": chat_id}))
        .await?;
    let has_it = |h: &Value| {
        h.as_array()
            .into_iter()
            .flatten()
            .any(|m| m["body"] == "See you Friday at 8!")
    };
    if !has_it(&history) {
        wait_event(&bob.api, topics::MESSAGE_RECEIVED, |d| {
            d["body"] == "See you Friday at 8!"
        })
        .await?;
    }
    let history = bob
        .api
        .call(m::CHAT_HISTORY, json!({"chat": chat_id}))
        .await?;
    println!("      bob is back and reads the conversation:");
    for msg in history.as_array().into_iter().flatten() {
        let who = if msg["sender"] == bob.peer_id {
            "bob"
        } else {
            "alice"
        };
        println!("        {who}: {}", msg["body"].as_str().unwrap_or(""));
    }
    super::demo_hubs::run(&exe, dir.path(), &alice).await?;
    super::demo_transfers::run(&alice, &bob).await?;
    super::demo_files::run(&exe, dir.path(), &hub, &alice, &bob).await?;
    let mut bob = bob;
    bob.api.call(m::DAEMON_SHUTDOWN, json!({})).await?;
    step("bob exit", async { Ok(bob.child.wait().await?) }).await?;

    let mut alice = alice;
    alice.api.call(m::DAEMON_SHUTDOWN, json!({})).await?;
    step("alice exit", async { Ok(alice.child.wait().await?) }).await?;
    super::demo_mail::run(&exe, dir.path()).await?;
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
