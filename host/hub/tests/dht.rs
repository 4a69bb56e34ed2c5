//! A hub publishes its addresses on the Mainline DHT under its own key (`dht` in its
//! config), and a node that knows only the key (from a `name@hub` certificate) finds it
//! there and comes online with it pinned. A local DHT testnet on 127.0.0.1, never the
//! real DHT.

mod common;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use allpeers_discovery::dht::{DhtConfig, DhtDiscovery};
use allpeers_hub_client::{HubClient, HubClientConfig, RefuseAll};
use allpeers_net::{Address, Endpoint, EndpointConfig, Identity};
use common::{HubProc, bounded};

/// How long the hub's first publish may take to show up.
const PUBLISHED: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_finds_a_hub_by_its_key_on_the_dht() {
    let net = tokio::task::spawn_blocking(|| mainline::Testnet::builder(10).build())
        .await
        .unwrap()
        .expect("local DHT testnet");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hub.json");
    std::fs::write(
        &config,
        serde_json::json!({"dht": {"bootstrap": net.bootstrap, "bind": "127.0.0.1"}}).to_string(),
    )
    .unwrap();
    let hub = HubProc::spawn(dir.path(), &["--config", config.to_str().unwrap()]);

    let reader = DhtDiscovery::start(
        Identity::generate(),
        DhtConfig {
            bootstrap: Some(net.bootstrap.clone()),
            bind: Some(Ipv4Addr::LOCALHOST),
            lookup_timeout: Duration::from_secs(5),
            ..DhtConfig::default()
        },
    )
    .unwrap();
    // The hub publishes once it has joined: ask until its record is there (each lookup is
    // bounded by the lookup timeout, the whole wait by PUBLISHED).
    let started = Instant::now();
    let record = loop {
        match reader.resolve(&hub.peer).await {
            Ok(record) => break record,
            Err(e) => assert!(
                started.elapsed() < PUBLISHED,
                "the hub's record never appeared: {e}"
            ),
        }
    };
    assert_eq!(record.peer, hub.peer);
    let found = record.dialable();
    assert!(found.contains(&Address::quic(hub.quic)), "{found:?}");
    assert!(found.contains(&Address::tcp(hub.tcp)), "{found:?}");

    // A node with only the key and what the DHT said: its line, pinned to the key, comes up.
    let endpoint = Endpoint::bind(Identity::generate(), EndpointConfig::loopback())
        .await
        .unwrap();
    let client = HubClient::start(
        endpoint.clone(),
        HubClientConfig::new(hub.peer, found),
        Arc::new(RefuseAll),
    )
    .await
    .unwrap();
    assert!(bounded(client.wait_online(Duration::from_secs(10))).await);
    client.stop();
    endpoint.close();
}
