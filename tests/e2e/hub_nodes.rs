//! A real hub and two real nodes on loopback, driven through the nodes' local API: register,
//! resolve (signed answers), presence both ways, a direct connection, presence lost when a
//! node stops.

use allpeers_tests::social::{Client, wait_event};
use allpeers_tests::*;
use serde_json::{Value, json};

/// Subscribes to hub events and waits until the node's hub line is up.
async fn online(client: &mut Client) {
    let subscribed = client
        .call(
            "events.subscribe",
            json!({"topics": ["hub.changed", "presence.changed", "presence.refused"]}),
        )
        .await;
    assert!(subscribed.result.is_some(), "{subscribed:?}");
    let status = client.call("net.status", json!({})).await.result.unwrap();
    if status["hub"]["state"] != "online" {
        wait_event(client, "hub.changed", |d| d["state"] == "online").await;
    }
}

#[tokio::test]
async fn two_nodes_meet_through_a_hub() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(hub_dir.path()).await;
    let (alice_dir, bob_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    hub.node_config(alice_dir.path());
    hub.node_config(bob_dir.path());
    let alice_node = Daemon::start(alice_dir.path()).await;
    let bob_node = Daemon::start(bob_dir.path()).await;
    let mut alice = alice_node.client("alice").await;
    let mut bob = bob_node.client("bob").await;
    online(&mut alice).await;
    online(&mut bob).await;

    let cert = alice
        .call("hub.register", json!({"name": "Alice"}))
        .await
        .result
        .expect("registered");
    assert_eq!(
        cert["certificate"]["full_name"], "alice@hub.test",
        "names are case-folded"
    );
    bob.call("hub.register", json!({"name": "bob@hub.test"}))
        .await
        .result
        .expect("registered");
    let taken = bob.call("hub.register", json!({"name": "alice"})).await;
    assert_eq!(
        error_code(&taken),
        -32020,
        "a name held by another key is refused"
    );
    let bad = bob.call("hub.register", json!({"name": "b*b"})).await;
    assert_eq!(error_code(&bad), -32021);

    let found = alice
        .call("hub.resolve", json!({"query": "bob@hub.test"}))
        .await
        .result
        .unwrap();
    let bob_id = bob.hello("bob").await["peer_id"].clone();
    assert_eq!(found["found"], true);
    assert_eq!(found["verified"], true);
    assert_eq!(found["peer_id"], bob_id);
    assert_eq!(found["online"], true);
    assert!(!found["addresses"].as_array().unwrap().is_empty());
    let missing = alice
        .call("hub.resolve", json!({"query": "carol"}))
        .await
        .result
        .unwrap();
    assert_eq!(missing["found"], false);

    // Presence is shown when both watch each other (the hub's default rule).
    let alice_id = alice.hello("alice").await["peer_id"].clone();
    alice
        .call("hub.watch", json!({"peers": [bob_id]}))
        .await
        .result
        .unwrap();
    bob.call("hub.watch", json!({"peers": [alice_id]}))
        .await
        .result
        .unwrap();
    wait_event(&mut alice, "presence.changed", |d| {
        d["peer_id"] == bob_id && d["online"] == true
    })
    .await;
    wait_event(&mut bob, "presence.changed", |d| {
        d["peer_id"] == alice_id && d["online"] == true
    })
    .await;

    // The resolve taught alice's endpoint bob's addresses: a direct, key-pinned connection.
    let connected = alice
        .call("net.connect", json!({"peer": bob_id}))
        .await
        .result
        .expect("connected");
    assert_eq!(connected["path"], "direct", "{connected}");
    let status = alice.call("net.status", json!({})).await.result.unwrap();
    assert_eq!(status["hub"]["state"], "online");
    assert!(
        status["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["peer"] == bob_id)
    );

    // Bob goes away: alice hears it from the hub within seconds.
    bob_node.stop().await;
    wait_event(&mut alice, "presence.changed", |d| {
        d["peer_id"] == bob_id && d["online"] == false
    })
    .await;
    alice_node.stop().await;
}

#[tokio::test]
async fn without_a_hub_the_hub_methods_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    let mut client = daemon.client("t").await;
    let answer = client.call("hub.register", json!({"name": "x"})).await;
    assert_eq!(error_code(&answer), -32027);
    assert!(answer.error.unwrap().message.contains("no home hub"));
    let status = client.call("net.status", json!({})).await.result.unwrap();
    assert_eq!(status["hub"], Value::Null);
    daemon.stop().await;
}

/// How many peers the node asks its hub to watch (`net.status`).
async fn watching(client: &mut Client) -> Value {
    let status = client.call("net.status", json!({})).await.result.unwrap();
    status["hub"]["watching"].clone()
}

#[tokio::test]
async fn a_clients_hub_watches_end_with_its_session() {
    let (hub_dir, alice_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let hub = HubProcess::start(hub_dir.path()).await;
    hub.node_config(alice_dir.path());
    let alice_node = Daemon::start(alice_dir.path()).await;
    // Peers watched need not be online, nor known to the hub.
    let [bob_id, carol_id] = [(); 2].map(|()| allpeers_net::Identity::generate().peer_id());

    // A watcher of the daemon's clients, told when each goes (after its watches are ended).
    let mut panel = alice_node.client("panel").await;
    online(&mut panel).await;
    panel
        .call("events.subscribe", json!({"topics": ["clients.changed"]}))
        .await
        .result
        .unwrap();
    let mut app = alice_node.client("app").await;
    let mut tool = alice_node.client("tool").await;
    app.call("hub.watch", json!({"peers": [bob_id, carol_id]}))
        .await
        .result
        .unwrap();
    tool.call("hub.watch", json!({"peers": [bob_id]}))
        .await
        .result
        .unwrap();
    assert_eq!(watching(&mut panel).await, 2);

    // The app goes: carol, watched by it alone, is unwatched; bob stays, the tool holds him.
    drop(app);
    wait_event(&mut panel, "clients.changed", |d| {
        d["client"] == "app" && d["connected"] == false
    })
    .await;
    assert_eq!(watching(&mut panel).await, 1);

    drop(tool);
    wait_event(&mut panel, "clients.changed", |d| {
        d["client"] == "tool" && d["connected"] == false
    })
    .await;
    assert_eq!(watching(&mut panel).await, 0);
    alice_node.stop().await;
}
