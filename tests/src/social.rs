//! Helpers for the contacts/presence/chat tests: a node with its hub registration and an
//! API client subscribed to the social events.

use std::path::Path;
use std::time::Duration;

use allpeers_model::api::Response;
use serde_json::{Value, json};

use crate::{Daemon, HubProcess, RawClient, timeout};

pub type Client = RawClient<tokio::net::unix::OwnedReadHalf, tokio::net::unix::OwnedWriteHalf>;

pub const TOPICS: &[&str] = &[
    "hub.changed",
    "presence.changed",
    "presence.refused",
    "contact.request",
    "contact.changed",
    "message.received",
    "message.updated",
    "chat.receipt",
    "chat.changed",
    "chat.typing",
];

pub async fn wait_event(client: &mut Client, topic: &str, check: impl Fn(&Value) -> bool) -> Value {
    let wait = async {
        loop {
            let (_, event) = timeout(topic, client.read_notification())
                .await
                .expect("an event");
            if event["topic"] == topic && check(&event["data"]) {
                return event["data"].clone();
            }
        }
    };
    // Each read is bounded; the whole wait too, or events that keep coming (progress, presence) would hold a test
    // whose awaited event never comes until the runner kills it.
    tokio::time::timeout(EVENT_WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("{topic}: no matching event within {EVENT_WAIT:?}"))
}

/// The longest wait for one matching event (the slowest awaited in the tests: a download's second retry, ~25 s).
const EVENT_WAIT: Duration = Duration::from_secs(120);

/// Events on `topic` matching `check` that arrive within `window` (for "must not see").
pub async fn none_within(
    client: &mut Client,
    window: Duration,
    topic: &str,
    check: impl Fn(&Value) -> bool,
) {
    let deadline = tokio::time::Instant::now() + window;
    loop {
        match tokio::time::timeout_at(deadline, client.read_notification()).await {
            Err(_) => return,
            Ok(None) => return,
            Ok(Some((_, event))) => {
                assert!(
                    !(event["topic"] == topic && check(&event["data"])),
                    "unexpected {topic}: {event}"
                );
            }
        }
    }
}

pub fn ok(response: Response) -> Value {
    match (response.result, response.error) {
        (Some(r), _) => r,
        (None, e) => panic!("call failed: {e:?}"),
    }
}

/// How long a starting node's hub line may take (under [`crate::STEP`], each read's limit).
const HUB_LINE_WAIT: Duration = Duration::from_secs(15);

/// Set (to anything) to keep every test node's data directory — its `logs/` above all — after
/// the test, e.g. `ALLPEERS_TEST_KEEP=1 ALLPEERS_LOG=flesh,allpeers_node=bone cargo nextest run ...`
/// (the daemons inherit `ALLPEERS_LOG`): a failed cross-process test otherwise takes its daemons'
/// logs with it.
pub const KEEP_DIRS_ENV: &str = "ALLPEERS_TEST_KEEP";

/// A fresh data directory for node `name`; kept (and its path printed) under [`KEEP_DIRS_ENV`].
pub fn node_dir(name: &str) -> tempfile::TempDir {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("allpeers-{name}-"))
        .tempdir()
        .unwrap();
    if std::env::var_os(KEEP_DIRS_ENV).is_some() {
        dir.disable_cleanup(true);
        eprintln!("{name}'s data directory, kept: {}", dir.path().display());
    }
    dir
}

pub struct Node {
    pub daemon: Option<Daemon>,
    pub client: Client,
    pub id: String,
    pub dir: tempfile::TempDir,
}

impl Node {
    pub async fn start(hub: &HubProcess, name: &str) -> Node {
        let dir = node_dir(name);
        hub.node_config(dir.path());
        Self::start_in(dir, name).await
    }

    /// A node in `dir`, whose `config.json` the caller wrote; registers `name`.
    pub async fn start_in(dir: tempfile::TempDir, name: &str) -> Node {
        let (daemon, client, id) = Self::run(dir.path(), name).await;
        let mut node = Node {
            daemon: Some(daemon),
            client,
            id,
            dir,
        };
        ok(node
            .client
            .call("hub.register", json!({"name": name}))
            .await);
        node
    }

    async fn run(dir: &Path, name: &str) -> (Daemon, Client, String) {
        let daemon = Daemon::start(dir).await;
        let mut client = daemon.connect().await;
        let id = client.hello(name).await["peer_id"]
            .as_str()
            .unwrap()
            .to_string();
        ok(client
            .call("events.subscribe", json!({"topics": TOPICS}))
            .await);
        let status = ok(client.call("net.status", json!({})).await);
        if status["hub"]["state"] != "online" {
            // Within less than a read's own timeout, so a line that never comes up fails here,
            // with the daemon's log (its directory may go with the test).
            let online = wait_event(&mut client, "hub.changed", |d| d["state"] == "online");
            if tokio::time::timeout(HUB_LINE_WAIT, online).await.is_err() {
                panic!(
                    "{name}'s hub line not up within {HUB_LINE_WAIT:?}; its log ends:\n{}",
                    allpeers_log::tail(&dir.join("logs/daemon.log"), 40)
                );
            }
        }
        (daemon, client, id)
    }

    pub async fn restart(&mut self, name: &str) {
        let (daemon, client, _) = Self::run(self.dir.path(), name).await;
        self.daemon = Some(daemon);
        self.client = client;
    }

    pub async fn stop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
    }

    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        ok(self.client.call(method, params).await)
    }

    /// Where the node listens for peers over QUIC (from `net.status`).
    pub async fn quic_address(&mut self) -> allpeers_net::Address {
        let status = self.call("net.status", json!({})).await;
        let addr = status["listening"]
            .as_array()
            .and_then(|all| all.iter().find(|l| l["transport"] == "quic"))
            .and_then(|l| l["addr"].as_str())
            .and_then(|a| a.parse().ok())
            .expect("a QUIC listener in net.status");
        allpeers_net::Address::quic(addr)
    }
}

/// `a` asks `b` by name; `b` accepts; both see each other online.
pub async fn befriend(a: &mut Node, b: &mut Node, b_name: &str) {
    let added = a
        .call(
            "contacts.add",
            json!({"who": b_name, "message": "hi, it's me"}),
        )
        .await;
    assert_eq!(added["state"], "outgoing", "{added}");
    let request = wait_event(&mut b.client, "contact.request", |d| d["peer_id"] == a.id).await;
    assert_eq!(request["message"], "hi, it's me");
    let accepted = b.call("contacts.accept", json!({"peer": a.id})).await;
    assert_eq!(accepted["state"], "accepted");
    let a_id = a.id.clone();
    let b_id = b.id.clone();
    // The acceptance letter and the hub's presence line race: either may come first.
    wait_all(
        &mut a.client,
        vec![
            (
                "contact.changed",
                Box::new(|d: &Value| d["peer_id"] == b_id && d["state"] == "accepted"),
            ),
            (
                "presence.changed",
                Box::new(|d: &Value| d["peer_id"] == b_id && d["online"] == true),
            ),
        ],
    )
    .await;
    wait_event(&mut b.client, "presence.changed", |d| {
        d["peer_id"] == a_id && d["online"] == true
    })
    .await;
}

/// A check of an event's data.
pub type Check<'a> = Box<dyn Fn(&Value) -> bool + 'a>;

/// Waits until an event matching each `(topic, check)` has come, in any order.
pub async fn wait_all(client: &mut Client, mut wanted: Vec<(&str, Check<'_>)>) {
    while !wanted.is_empty() {
        let (_, event) = timeout("events", client.read_notification())
            .await
            .expect("an event");
        if let Some(i) = wanted
            .iter()
            .position(|(topic, check)| event["topic"] == *topic && check(&event["data"]))
        {
            drop(wanted.remove(i));
        }
    }
}

/// A hub and two nodes, alice and bob, who are contacts, with their 1:1 chat open.
pub struct Pair {
    pub hub_dir: tempfile::TempDir,
    pub hub: HubProcess,
    pub alice: Node,
    pub bob: Node,
    pub chat: String,
}

impl Pair {
    pub async fn start() -> Pair {
        let hub_dir = tempfile::tempdir().unwrap();
        let hub = HubProcess::start(hub_dir.path()).await;
        let mut alice = Node::start(&hub, "alice").await;
        let mut bob = Node::start(&hub, "bob").await;
        befriend(&mut alice, &mut bob, "bob@hub.test").await;
        let chat = alice.call("chat.open", json!({"peer": bob.id})).await;
        let chat = chat["id"].as_str().unwrap().to_string();
        Pair {
            hub_dir,
            hub,
            alice,
            bob,
            chat,
        }
    }
}
