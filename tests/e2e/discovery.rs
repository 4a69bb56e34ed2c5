//! Discovery without a hub, with the real binaries: a contact found through a Mainline DHT
//! testnet (run in this test process on 127.0.0.1, never the real DHT) once the hub is
//! dead, and two daemons with no hub at all finding each other by LAN multicast — on
//! loopback, and across a real bridge between two network namespaces (root only).

use std::path::Path;

use allpeers_tests::social::{Client, Node, TOPICS, befriend, ok, wait_event};
use allpeers_tests::*;
use serde_json::{Value, json};

/// A node whose `config.json` is `config`; waits for the hub line when `hub_up`.
async fn start_node(dir: tempfile::TempDir, name: &str, hub_up: bool) -> Node {
    let (daemon, client, id) = run(dir.path(), name, hub_up).await;
    Node {
        daemon: Some(daemon),
        client,
        id,
        dir,
    }
}

async fn run(dir: &Path, name: &str, hub_up: bool) -> (Daemon, Client, String) {
    let daemon = Daemon::start(dir).await;
    let mut client = daemon.connect().await;
    let id = client.hello(name).await["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut topics: Vec<&str> = TOPICS.to_vec();
    topics.push("net.changed");
    ok(client
        .call("events.subscribe", json!({"topics": topics}))
        .await);
    if hub_up {
        let status = ok(client.call("net.status", json!({})).await);
        if status["hub"]["state"] != "online" {
            wait_event(&mut client, "hub.changed", |d| d["state"] == "online").await;
        }
    }
    (daemon, client, id)
}

fn write_config(dir: &Path, config: &Value) {
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config.json");
}

/// `hub.node_config`'s config with the DHT enabled and pointed at the testnet.
fn dht_node_dir(hub: &HubProcess, bootstrap: &[String]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    hub.node_config(dir.path());
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    config["discovery"] =
        json!({"dht": {"enabled": true, "bootstrap": bootstrap, "bind": "127.0.0.1"}});
    write_config(dir.path(), &config);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_is_found_through_the_dht_when_the_hub_is_down() {
    let testnet = tokio::task::spawn_blocking(|| mainline::Testnet::builder(20).build())
        .await
        .unwrap()
        .expect("local DHT testnet");
    let hub_dir = tempfile::tempdir().unwrap();
    let mut hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = start_node(dht_node_dir(&hub, &testnet.bootstrap), "alice", true).await;
    ok(alice
        .client
        .call("hub.register", json!({"name": "alice"}))
        .await);
    let mut bob = start_node(dht_node_dir(&hub, &testnet.bootstrap), "bob", true).await;
    ok(bob
        .client
        .call("hub.register", json!({"name": "bob"}))
        .await);
    befriend(&mut alice, &mut bob, "bob@hub.test").await;
    let chat = alice.call("chat.open", json!({"peer": bob.id})).await;
    let chat_id = chat["id"].as_str().unwrap().to_string();

    // Bob's record is on the DHT (published once his endpoint listened).
    let status = bob.call("net.status", json!({})).await;
    if status["discovery"]["dht"]["last_publish_ms"].is_null() {
        wait_event(&mut bob.client, "net.changed", |d| {
            d["dht_published"]["at_ms"].is_u64()
        })
        .await;
    }

    // The hub dies; Alice restarts, so she remembers no address of Bob's and has no
    // connection to him: only the DHT can tell her where he is.
    hub.child.kill().await.unwrap();
    alice.stop().await;
    let (daemon, client, _) = run(alice.dir.path(), "alice", false).await;
    alice.daemon = Some(daemon);
    alice.client = client;
    let status = alice.call("net.status", json!({})).await;
    assert_ne!(status["hub"]["state"], "online", "{status}");
    assert!(
        status["connections"].as_array().unwrap().is_empty(),
        "{status}"
    );

    let sent = alice
        .call(
            "chat.send",
            json!({"chat": chat_id, "body": "found you without the hub"}),
        )
        .await;
    let got = wait_event(&mut bob.client, "message.received", |d| {
        d["body"] == "found you without the hub"
    })
    .await;
    assert_eq!(got["sender"], alice.id);
    let sent_id = sent["id"].clone();
    let receipt = wait_event(&mut alice.client, "chat.receipt", |d| {
        d["message"] == sent_id && d["kind"] == "delivered"
    })
    .await;
    assert_eq!(receipt["via"], "direct", "{receipt}");
    let dht = &alice.call("net.status", json!({})).await["discovery"]["dht"];
    assert!(dht["lookups_found"].as_u64().unwrap() >= 1, "{dht}");
    alice.stop().await;
    bob.stop().await;
}

async fn wait_lan_peer(node: &mut Node, peer: &str) {
    let status = node.call("net.status", json!({})).await;
    let known = status["discovery"]["lan"]["peers"]
        .as_array()
        .is_some_and(|peers| peers.iter().any(|p| p["peer"] == peer));
    if !known {
        let seen = wait_event(&mut node.client, "net.changed", |d| {
            d["lan_peer"]["peer"] == peer
        })
        .await;
        assert_eq!(seen["lan_peer"]["new"], true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_without_a_hub_find_each_other_on_the_lan() {
    // Multicast on loopback (it loops back on Linux), on a port of this test's own so
    // parallel runs do not hear each other.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = json!({
        "net": {"quic": "127.0.0.1:0", "tcp": "127.0.0.1:0"},
        "discovery": {"lan": {"enabled": true, "port": port, "interface": "127.0.0.1"}},
    });
    let dir_a = tempfile::tempdir().unwrap();
    write_config(dir_a.path(), &config);
    let dir_b = tempfile::tempdir().unwrap();
    write_config(dir_b.path(), &config);
    let mut alice = start_node(dir_a, "alice", false).await;
    let mut bob = start_node(dir_b, "bob", false).await;

    // Bob started second: his query makes Alice announce at once, and he announces. Each
    // side may have heard the other before its client subscribed: the peer list in
    // net.status says so, else the event comes.
    let bob_id = bob.id.clone();
    let alice_id = alice.id.clone();
    wait_lan_peer(&mut alice, &bob_id).await;
    wait_lan_peer(&mut bob, &alice_id).await;

    let connected = alice.call("net.connect", json!({"peer": bob.id})).await;
    assert_eq!(connected["path"], "direct", "{connected}");
    let status = alice.call("net.status", json!({})).await;
    let lan = &status["discovery"]["lan"];
    assert_eq!(lan["running"], true, "{status}");
    assert!(
        lan["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["peer"] == bob.id),
        "{lan}"
    );
    assert_eq!(status["hub"], Value::Null, "no hub at all");

    // The CLI shows it.
    let out = allpeers(alice.dir.path())
        .args(["net", "status"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("lan:      1 peer(s) seen"), "{text}");
    alice.stop().await;
    bob.stop().await;
}

/// Two network namespaces on one bridge (in a third), 198.18.3.0/24 (a benchmarking range,
/// never a real network); deleted on drop, even when the test fails.
struct Lan {
    names: Vec<String>,
}

impl Lan {
    /// `None` (after saying so loudly) where namespaces cannot be made: not root, no `ip`.
    fn create(tag: &str) -> Option<Lan> {
        let base = format!("apd{}{tag}", std::process::id());
        let lan = Lan {
            names: vec![format!("{base}br"), format!("{base}a"), format!("{base}b")],
        };
        for name in &lan.names {
            if !ip(&["netns", "add", name]) {
                eprintln!(
                    "SKIPPED: cannot create network namespace {name} (needs root and iproute2)"
                );
                return None;
            }
        }
        let br = &lan.names[0];
        let setup = [
            vec![
                "-n",
                br,
                "link",
                "add",
                "br0",
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ],
            vec!["-n", br, "link", "set", "br0", "up"],
        ];
        for args in setup {
            assert!(ip(&args), "ip {args:?}");
        }
        for (i, host) in lan.names[1..].iter().enumerate() {
            let veth = format!("v{i}");
            let peer = format!("v{i}br");
            let addr = format!("198.18.3.{}/24", i + 1);
            let steps = [
                vec![
                    "-n", br, "link", "add", &veth, "type", "veth", "peer", "name", &peer,
                ],
                vec!["-n", br, "link", "set", &peer, "master", "br0", "up"],
                vec!["-n", br, "link", "set", &veth, "netns", host],
                vec!["-n", host, "addr", "add", &addr, "dev", &veth],
                vec!["-n", host, "link", "set", &veth, "up"],
                vec!["-n", host, "link", "set", "lo", "up"],
            ];
            for args in steps {
                assert!(ip(&args), "ip {args:?}");
            }
        }
        Some(lan)
    }

    /// `allpeers daemon` inside host namespace `i` (0 or 1), its config listening on the
    /// namespace's LAN address with LAN discovery on the default group and port.
    async fn start_node(&self, i: usize, name: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let ip = format!("198.18.3.{}", i + 1);
        write_config(
            dir.path(),
            &json!({
                "net": {"quic": format!("{ip}:0"), "tcp": format!("{ip}:0")},
                "discovery": {"lan": {"enabled": true, "interface": ip}},
            }),
        );
        let mut child = tokio::process::Command::new("ip")
            .args(["netns", "exec", &self.names[i + 1]])
            .arg(bin("allpeers"))
            .args(["daemon", "--notify-ready"])
            .env_remove("ALLPEERS_SOCKET")
            .env_remove("ALLPEERS_PASSPHRASE")
            .env("ALLPEERS_DATA_DIR", dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            // `ip netns exec` execs the daemon: this PID is the daemon's, killed on drop.
            .kill_on_drop(true)
            .spawn()
            .expect("start the daemon in its namespace");
        let mut line = String::new();
        use tokio::io::AsyncBufReadExt;
        timeout(
            "daemon ready",
            tokio::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line),
        )
        .await
        .unwrap();
        assert!(
            line.starts_with("READY "),
            "daemon in {}: {line:?}",
            self.names[i + 1]
        );
        let daemon = Daemon {
            child,
            socket: line.trim_start_matches("READY ").trim().into(),
            data_dir: dir.path().to_path_buf(),
        };
        let mut client = daemon.connect().await;
        let id = client.hello(name).await["peer_id"]
            .as_str()
            .unwrap()
            .to_string();
        ok(client
            .call("events.subscribe", json!({"topics": ["net.changed"]}))
            .await);
        Node {
            daemon: Some(daemon),
            client,
            id,
            dir,
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for name in &self.names {
            ip(&["netns", "del", name]);
        }
    }
}

fn ip(args: &[&str]) -> bool {
    std::process::Command::new("ip")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_a_bridged_lan_find_each_other_by_multicast() {
    let Some(lan) = Lan::create("m") else { return };
    let mut alice = lan.start_node(0, "alice").await;
    let mut bob = lan.start_node(1, "bob").await;
    let (alice_id, bob_id) = (alice.id.clone(), bob.id.clone());
    wait_lan_peer(&mut alice, &bob_id).await;
    wait_lan_peer(&mut bob, &alice_id).await;

    let connected = alice.call("net.connect", json!({"peer": bob.id})).await;
    assert_eq!(connected["path"], "direct", "{connected}");
    let status = alice.call("net.status", json!({})).await;
    let seen = status["discovery"]["lan"]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer"] == bob.id)
        .cloned()
        .unwrap_or_else(|| panic!("bob among alice's LAN peers: {status}"));
    assert!(
        seen["from"].as_str().unwrap().starts_with("198.18.3.2:"),
        "bob's announcement came over the bridge: {seen}"
    );
    assert_eq!(
        status["discovery"]["lan"]["group"], "239.255.70.80:41730",
        "the default group"
    );
    alice.stop().await;
    bob.stop().await;
    drop(lan);
}
