//! Two real hubs and nodes homed at each (issue 18, cross-hub reach): contacts across hubs
//! see each other's presence, chat directly, get offline letters sealed at the recipient's
//! hub, and fall back to the recipient's hub's relay. Attacks: a letter for a peer a hub
//! does not host, a guest flooding a hub, a hub presenting another key than the one named.

use std::sync::Arc;
use std::time::Duration;

use allpeers_hub_client::proto::code;
use allpeers_hub_client::{HubClient, HubClientConfig, HubError, RefuseAll, WatchHolder};
use allpeers_net::{Address, Endpoint, EndpointConfig, Identity};
use allpeers_tests::social::{Node, wait_all, wait_event};
use allpeers_tests::*;
use serde_json::{Value, json};

fn hub_address(hub: &HubProcess) -> Address {
    Address::quic(hub.quic.parse().unwrap())
}

/// A bare peer (no node) with a guest line to `hub`, pinned to `pinned`.
async fn guest(hub: &HubProcess, pinned: &str) -> (Identity, HubClient) {
    let key = Identity::generate();
    let endpoint = Endpoint::bind(key.clone(), EndpointConfig::loopback())
        .await
        .unwrap();
    let mut config = HubClientConfig::new(pinned.parse().unwrap(), vec![hub_address(hub)]);
    config.guest = true;
    config.request_timeout = Duration::from_secs(5);
    let client = HubClient::start(endpoint, config, Arc::new(RefuseAll))
        .await
        .unwrap();
    (key, client)
}

#[tokio::test]
async fn contacts_homed_at_two_hubs_reach_each_other() {
    let (one_dir, two_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = HubProcess::start_named(one_dir.path(), "one.test").await;
    let two = HubProcess::start_named(two_dir.path(), "two.test").await;
    let mut alice = Node::start(&one, "alice").await;
    let mut bob = Node::start(&two, "bob").await;
    let (alice_id, bob_id) = (alice.id.clone(), bob.id.clone());

    // Alice adds Bob by his invite code, which names his home hub: consent given in advance.
    let invite = bob.call("contacts.invite", json!({})).await;
    let added = alice
        .call("contacts.add", json!({"who": invite["code"]}))
        .await;
    assert_eq!(added["state"], "accepted", "{added}");
    assert_eq!(added["delivered"], "direct", "{added}");
    wait_event(&mut bob.client, "contact.changed", |d| {
        d["peer_id"] == alice_id && d["state"] == "accepted"
    })
    .await;
    // Presence both ways, each side watching the other at the other's hub (mutual consent).
    wait_event(&mut alice.client, "presence.changed", |d| {
        d["peer_id"] == bob_id && d["online"] == true
    })
    .await;
    // Bob learns Alice's name from her certificate, checked against her hub's key.
    let alice_id2 = alice_id.clone();
    wait_all(
        &mut bob.client,
        vec![
            (
                "presence.changed",
                Box::new(|d: &Value| d["peer_id"] == alice_id && d["online"] == true),
            ),
            (
                "contact.changed",
                Box::new(move |d: &Value| {
                    d["peer_id"] == alice_id2 && d["name"] == "alice@one.test"
                }),
            ),
        ],
    )
    .await;

    // A direct chat.
    let chat = alice.call("chat.open", json!({"peer": bob_id})).await;
    let chat = chat["id"].as_str().unwrap().to_string();
    alice
        .call(
            "chat.send",
            json!({"chat": chat, "body": "hello across hubs"}),
        )
        .await;
    wait_event(&mut bob.client, "message.received", |d| {
        d["body"] == "hello across hubs"
    })
    .await;
    bob.call("chat.send", json!({"chat": chat, "body": "hello back"}))
        .await;
    wait_event(&mut alice.client, "message.received", |d| {
        d["body"] == "hello back"
    })
    .await;

    // The relay of Bob's hub, when asked for (the connector's last resort).
    let relayed = alice.call("hub.relay", json!({"peer": bob_id})).await;
    assert_eq!(relayed["path"], "relayed", "{relayed}");
    bob.call("chat.send", json!({"chat": chat, "body": "over the relay"}))
        .await;
    wait_event(&mut alice.client, "message.received", |d| {
        d["body"] == "over the relay"
    })
    .await;

    // Bob goes offline: Alice's letter is sealed into his mailbox at *his* hub, and he gets
    // it when he is back, fetching only at home.
    bob.stop().await;
    wait_event(&mut alice.client, "presence.changed", |d| {
        d["peer_id"] == bob_id && d["online"] == false
    })
    .await;
    alice
        .call(
            "chat.send",
            json!({"chat": chat, "body": "while you were away canary-91c2"}),
        )
        .await;
    wait_event(&mut alice.client, "chat.receipt", |d| {
        d["kind"] == "queued" && d["via"] == "mailed"
    })
    .await;
    assert!(
        files_contain(one_dir.path(), b"canary-91c2").is_empty()
            && files_contain(two_dir.path(), b"canary-91c2").is_empty(),
        "the letter is sealed"
    );
    bob.restart("bob").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let history = bob.call("chat.history", json!({"chat": chat})).await;
        if history
            .to_string()
            .contains("while you were away canary-91c2")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the mailed letter never came: {history}"
        );
        wait_event(&mut bob.client, "message.received", |_| true).await;
    }
}

/// Every file under `dir` that contains `needle`.
fn files_contain(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
            {
                out.push(path);
            }
        }
    }
    out
}

#[tokio::test]
async fn hubs_refuse_what_a_guest_may_not_do() {
    let (one_dir, two_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = HubProcess::start_named(one_dir.path(), "one.test").await;
    let two = HubProcess::start_named(two_dir.path(), "two.test").await;
    let bob = Node::start(&two, "bob").await;
    let bob_id: allpeers_model::PeerId = bob.id.parse().unwrap();

    // A hub presenting another key than the one named is refused by the handshake: a line
    // to hub two's address pinned to hub one's key never comes up, nothing is deposited.
    let (_, impostor) = guest(&two, &one.peer_id).await;
    let refused = impostor.mail_deposit(bob_id, vec![1; 64]).await;
    assert!(
        matches!(refused, Err(HubError::Net(_))),
        "a hub with the wrong key: {refused:?}"
    );
    impostor.stop();

    let (_, mallory) = guest(&two, &two.peer_id).await;
    assert!(mallory.wait_online(Duration::from_secs(10)).await);
    // A guest cannot register.
    let register = mallory.register("mallory").await;
    assert_eq!(
        register.as_ref().err().and_then(HubError::app_code),
        Some(code::GUEST_REFUSED),
        "{register:?}"
    );
    // A letter for a peer hub two does not host.
    let stranger = Identity::generate().peer_id();
    let not_hosted = mallory.mail_deposit(stranger, vec![1; 64]).await;
    assert_eq!(
        not_hosted.as_ref().err().and_then(HubError::app_code),
        Some(code::NOT_HOSTED),
        "{not_hosted:?}"
    );
    // A letter for Bob, whom it hosts, is taken.
    mallory.mail_deposit(bob_id, vec![2; 64]).await.unwrap();

    // A flood of lookups is cut by the guest rate limit; Bob, at home, is not limited.
    let mut limited = 0;
    for _ in 0..200 {
        match mallory.resolve(&bob_id.to_string()).await {
            Ok(_) => {}
            Err(e) if e.app_code() == Some(code::RATE_LIMITED) => limited += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert!(limited > 100, "only {limited} of 200 lookups were limited");
    // Watching a peer not hosted here is refused on the line.
    let mut events = mallory.events();
    mallory.watch(WatchHolder::Contacts, &[stranger]).await;
    timeout("watch refused", async {
        loop {
            if let Ok(allpeers_hub_client::HubEvent::WatchRefused { peer }) = events.recv().await
                && peer == stranger
            {
                break;
            }
        }
    })
    .await;
}

// ---- the network-namespace matrix with peers homed at different hubs ----

/// The connector's way to B: a guest line to B's hub (what the node's `ForeignHubs` does).
struct ToHub {
    target: allpeers_model::PeerId,
    line: HubClient,
}

impl allpeers_nat::connector::HubRouter for ToHub {
    fn hub_for(
        &self,
        peer: allpeers_model::PeerId,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<HubClient>> + Send + '_>> {
        Box::pin(async move { (peer == self.target).then(|| self.line.clone()) })
    }
}

/// A behind `a`, homed at the first hub; B behind `b`, homed at the second: A connects to B
/// through B's hub. The path the connector chose, or None when skipped.
fn cross_hub_cell(
    tag: &str,
    a: allpeers_tests::netns::NatBehaviour,
    b: allpeers_tests::netns::NatBehaviour,
) -> Option<allpeers_net::PathKind> {
    use allpeers_tests::netns::{self, Side, Site, Topology};
    if let Some(why) = netns::skip_reason() {
        netns::announce_skip(&format!("cross-hub NAT cell {tag}"), &why);
        return None;
    }
    let topo = Topology::build(tag, Site::behind(a), Site::behind(b))
        .unwrap_or_else(|e| panic!("topology {tag}: {e}"));
    let (one_dir, two_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = topo.hub(one_dir.path());
    let two = topo.second_hub(two_dir.path());
    let (one_id, two_id) = (one.peer_id, two.peer_id);
    let (b_ready_tx, b_ready_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let b_thread = netns::in_netns_async(topo.host_ns(Side::B), move || async move {
        match netns::netns_peer(two_id, netns::SECOND_HUB_ADDR, 0).await {
            Ok(netns::NetnsPeer { endpoint, hub, .. }) => {
                let _ = b_ready_tx.send(Ok(endpoint.peer_id()));
                let _ = tokio::time::timeout(Duration::from_secs(120), done_rx).await;
                hub.stop();
                endpoint.close();
            }
            Err(e) => {
                let _ = b_ready_tx.send(Err(e));
            }
        }
    });
    let b_id = b_ready_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("B ready in time")
        .unwrap_or_else(|e| panic!("B: {e}"));
    let cell = tag.to_string();
    let a_thread = netns::in_netns_async(topo.host_ns(Side::A), move || async move {
        let netns::NetnsPeer {
            endpoint,
            hub,
            connector,
            ..
        } = netns::netns_peer(one_id, netns::HUB_ADDR, 0)
            .await
            .unwrap_or_else(|e| panic!("A: {e}"));
        let mut config = HubClientConfig::new(
            two_id,
            vec![
                Address::quic(netns::SECOND_HUB_ADDR),
                Address::tcp(netns::SECOND_HUB_ADDR),
            ],
        );
        config.guest = true;
        let line = HubClient::start(endpoint.clone(), config, Arc::new(RefuseAll))
            .await
            .unwrap();
        assert!(
            line.wait_online(Duration::from_secs(20)).await,
            "guest line"
        );
        connector.listen_on(line.clone());
        connector.set_router(Arc::new(ToHub {
            target: b_id,
            line: line.clone(),
        }));
        let (_, report) = tokio::time::timeout(Duration::from_secs(60), connector.connect(b_id))
            .await
            .expect("connect within 60 s")
            .unwrap_or_else(|e| panic!("A cannot reach B: {e}"));
        let echo: String = endpoint
            .request(
                b_id,
                &allpeers_net::Namespace::allpeers("echo", 1).unwrap(),
                "across hubs and NATs",
            )
            .await
            .unwrap_or_else(|e| panic!("request over {:?}: {e}", report.path));
        assert_eq!(echo, "across hubs and NATs");
        eprintln!("CROSS-HUB CELL {cell}: {:?} — {}", report.path, report.why);
        for at in &report.attempts {
            eprintln!("    {:>6} ms  {}: {}", at.at_ms, at.method, at.outcome);
        }
        line.stop();
        hub.stop();
        endpoint.close();
        report.path
    });
    let path = a_thread.join().expect("A thread");
    let _ = done_tx.send(());
    b_thread.join().expect("B thread");
    drop((one, two, topo));
    Some(path)
}

#[test]
fn callback_through_the_targets_hub() {
    use allpeers_tests::netns::NatBehaviour::*;
    if let Some(path) = cross_hub_cell("xfp", FullCone, PortRestricted) {
        assert_eq!(path, allpeers_net::PathKind::Callback);
    }
}

#[test]
fn hole_punch_through_the_targets_hub() {
    use allpeers_tests::netns::NatBehaviour::*;
    if let Some(path) = cross_hub_cell("xpp", PortRestricted, PortRestricted) {
        assert_eq!(path, allpeers_net::PathKind::HolePunched);
    }
}

#[test]
fn relay_of_the_targets_hub_between_symmetric_nats() {
    use allpeers_tests::netns::NatBehaviour::*;
    if let Some(path) = cross_hub_cell("xss", Symmetric, Symmetric) {
        assert_eq!(path, allpeers_net::PathKind::Relayed);
    }
}

/// The added latency of a cross-hub letter: depositing at the recipient's hub over a guest
/// line (cold: the line opened for it; warm: open) against a deposit at one's own hub.
/// Printed for docs/benchmarks.md ("Cross-hub letters").
#[tokio::test]
async fn cross_hub_letter_latency() {
    let two_dir = tempfile::tempdir().unwrap();
    let two = HubProcess::start_named(two_dir.path(), "two.test").await;
    let bob = Node::start(&two, "bob").await;
    let bob_id: allpeers_model::PeerId = bob.id.parse().unwrap();
    let letter = vec![7u8; 1024];
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };

    // A neighbour of Bob's at his hub (a home line: hosted there).
    let key = Identity::generate();
    let endpoint = Endpoint::bind(key, EndpointConfig::loopback())
        .await
        .unwrap();
    let home = HubClient::start(
        endpoint,
        HubClientConfig::new(two.peer_id.parse().unwrap(), vec![hub_address(&two)]),
        Arc::new(RefuseAll),
    )
    .await
    .unwrap();
    assert!(home.wait_online(Duration::from_secs(10)).await);
    let mut at_home = Vec::new();
    for _ in 0..20 {
        let t = std::time::Instant::now();
        home.mail_deposit(bob_id, letter.clone()).await.unwrap();
        at_home.push(t.elapsed());
    }

    // A peer homed elsewhere: the first letter opens the guest line.
    let t = std::time::Instant::now();
    let (_, guest_line) = guest(&two, &two.peer_id).await;
    assert!(guest_line.wait_online(Duration::from_secs(10)).await);
    guest_line
        .mail_deposit(bob_id, letter.clone())
        .await
        .unwrap();
    let cold = t.elapsed();
    let mut warm = Vec::new();
    for _ in 0..20 {
        let t = std::time::Instant::now();
        guest_line
            .mail_deposit(bob_id, letter.clone())
            .await
            .unwrap();
        warm.push(t.elapsed());
    }
    eprintln!(
        "CROSS-HUB LETTER: at own hub median {:?}; at the recipient's hub over a guest line: cold (line opened) {:?}, warm median {:?}",
        median(at_home),
        cold,
        median(warm)
    );
}

/// `name@hub` for a hub no invite introduced (issue 18): the hub's key from a contact's
/// certificate, its addresses from the signed record it publishes on the DHT under that key
/// (a local Mainline testnet). Hub two moves to new ports after Alice met Carol there, so
/// the addresses Carol gave are stale and only the DHT knows where dave@two.test lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_at_another_hub_is_found_through_its_record_on_the_dht() {
    use allpeers_discovery::dht::{DhtConfig, DhtDiscovery};
    let net = tokio::task::spawn_blocking(|| mainline::Testnet::builder(10).build())
        .await
        .unwrap()
        .expect("local DHT testnet");
    let dht = json!({"bootstrap": net.bootstrap, "bind": "127.0.0.1"});
    let (one_dir, two_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let two_config = two_dir.path().join("hub.json");
    std::fs::write(&two_config, json!({ "dht": dht }).to_string()).unwrap();
    let two_config = two_config.to_str().unwrap().to_string();
    let one = HubProcess::start_named(one_dir.path(), "one.test").await;
    let two =
        HubProcess::start_named_with(two_dir.path(), "two.test", &["--config", &two_config]).await;
    let alice_dir = tempfile::tempdir().unwrap();
    one.node_config(alice_dir.path());
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(alice_dir.path().join("config.json")).unwrap(),
    )
    .unwrap();
    config["discovery"] =
        json!({"dht": {"enabled": true, "bootstrap": net.bootstrap, "bind": "127.0.0.1"}});
    std::fs::write(alice_dir.path().join("config.json"), config.to_string()).unwrap();
    let mut alice = Node::start_in(alice_dir, "alice").await;
    let mut carol = Node::start(&two, "carol").await;
    let dave = Node::start(&two, "dave").await;

    // Before Alice knows hub two: the name is not found (our hub answers only for its own).
    let unknown = alice
        .client
        .call("contacts.add", json!({"who": "dave@two.test"}))
        .await;
    assert!(unknown.error.is_some(), "{unknown:?}");

    // Alice meets Carol by invite; Carol's home letter carries her certificate, signed by
    // hub two's key: Alice learns "two.test" is that key.
    let carol_id = carol.id.clone();
    let invite = carol.call("contacts.invite", json!({})).await;
    alice
        .call("contacts.add", json!({"who": invite["code"]}))
        .await;
    // Carol's home letter comes after her acceptance: until it is taken, a name at two.test
    // is looked up at our hub only. Asked again after each contact change (bounded).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let probe = alice
            .client
            .call("contacts.add", json!({"who": "erin@two.test"}))
            .await;
        let why = probe.error.map(|e| e.message).unwrap_or_default();
        if why == "erin@two.test is not registered" {
            break; // asked at hub two itself: its key is known
        }
        assert!(why.contains("no contact's certificate"), "{why}");
        assert!(
            std::time::Instant::now() < deadline,
            "hub two's key never learned"
        );
        wait_event(&mut alice.client, "contact.changed", |d| {
            d["peer_id"] == carol_id
        })
        .await;
    }

    // Hub two moves (same key, same names, new ports).
    let two_peer = two.peer_id.clone();
    drop(two);
    let two =
        HubProcess::start_named_with(two_dir.path(), "two.test", &["--config", &two_config]).await;
    assert_eq!(two.peer_id, two_peer);
    let moved = Address::quic(two.quic.parse().unwrap());
    // Wait (bounded) until its new record is what the DHT answers.
    let reader = DhtDiscovery::start(
        Identity::generate(),
        DhtConfig {
            bootstrap: Some(net.bootstrap.clone()),
            bind: Some(std::net::Ipv4Addr::LOCALHOST),
            lookup_timeout: Duration::from_secs(5),
            ..DhtConfig::default()
        },
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found = reader.resolve(&two_peer.parse().unwrap()).await;
        if found.as_ref().is_ok_and(|r| r.dialable().contains(&moved)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hub two's new record never appeared: {found:?}"
        );
    }

    // Now by name alone: hub two's key from Carol's certificate, its addresses from the DHT,
    // Dave's certificate from hub two's directory over a guest line, checked against the key.
    let added = alice
        .call("contacts.add", json!({"who": "dave@two.test"}))
        .await;
    assert_eq!(added["peer_id"], dave.id, "{added}");
    assert_eq!(added["name"], "dave@two.test", "{added}");
    // A hub name nobody's certificate taught: still not found.
    let nowhere = alice
        .client
        .call("contacts.add", json!({"who": "erin@three.test"}))
        .await;
    assert!(nowhere.error.is_some(), "{nowhere:?}");
    drop((one, two));
}

/// `name@otherhub` through our own hub's directory (no DHT, no contact at that hub): Alice's
/// guest line to hub two hands hub one two's own signed record; Bob, at hub one, then adds
/// Dave at two by name alone — the key and addresses from one's directory, Dave's
/// certificate from two's, checked against that key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_at_another_hub_is_found_through_our_hubs_directory() {
    let (one_dir, two_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = HubProcess::start_named(one_dir.path(), "one.test").await;
    let two = HubProcess::start_named(two_dir.path(), "two.test").await;
    let mut alice = Node::start(&one, "alice").await;
    let mut bob = Node::start(&one, "bob").await;
    let mut carol = Node::start(&two, "carol").await;
    let dave = Node::start(&two, "dave").await;

    let unknown = bob
        .client
        .call("contacts.add", json!({"who": "dave@two.test"}))
        .await;
    let why = unknown.error.map(|e| e.message).unwrap_or_default();
    assert!(why.contains("nor our hub's directory"), "{why}");

    // Alice meets Carol by invite: her node opens a guest line to hub two and introduces it.
    let invite = carol.call("contacts.invite", json!({})).await;
    alice
        .call("contacts.add", json!({"who": invite["code"]}))
        .await;
    // Wait (bounded, a lookup every 250 ms: under the 5/s limit) until hub one knows two.
    let endpoint = Endpoint::bind(Identity::generate(), EndpointConfig::loopback())
        .await
        .unwrap();
    let at_one = HubClient::start(
        endpoint,
        HubClientConfig::new(one.peer_id.parse().unwrap(), vec![hub_address(&one)]),
        Arc::new(RefuseAll),
    )
    .await
    .unwrap();
    assert!(at_one.wait_online(Duration::from_secs(10)).await);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let record = loop {
        if let Ok(Some(r)) = at_one.lookup_hub_name("two.test").await {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hub two never introduced at one"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(record.hub.to_string(), two.peer_id);

    let added = bob
        .call("contacts.add", json!({"who": "dave@two.test"}))
        .await;
    assert_eq!(added["peer_id"], dave.id, "{added}");
    assert_eq!(added["name"], "dave@two.test", "{added}");
    at_one.stop();
    drop((one, two));
}
