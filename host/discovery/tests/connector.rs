//! The connector consulting discovery when it has no hub: a peer heard on the LAN (loopback
//! multicast) and a peer published on the DHT (an in-process Mainline testnet) are reached
//! with no address given by hand, the DHT is not asked again within a minute, and the
//! connector's lock map is empty once no connect runs.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use allpeers_discovery::dht::{DhtConfig, DhtDiscovery};
use allpeers_discovery::lan::{LanConfig, LanDiscovery};
use allpeers_hub_client::AcceptAll;
use allpeers_nat::connector::{Connector, ConnectorConfig};
use allpeers_net::record::{AddressKind, RecordAddress};
use allpeers_net::{Endpoint, EndpointConfig, Identity, PathKind, TransportKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Every wait is bounded by this.
const WAIT: Duration = Duration::from_secs(20);

async fn endpoint() -> Endpoint {
    Endpoint::bind(Identity::generate(), EndpointConfig::loopback())
        .await
        .unwrap()
}

fn record_of(endpoint: &Endpoint) -> Vec<RecordAddress> {
    let quic = endpoint.local_address(TransportKind::Quic).unwrap();
    vec![RecordAddress {
        kind: AddressKind::Local,
        address: quic,
    }]
}

fn connector(endpoint: &Endpoint) -> Connector {
    Connector::start(
        endpoint.clone(),
        None,
        None,
        Arc::new(AcceptAll),
        ConnectorConfig::default(),
    )
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_heard_on_the_lan_is_reached_without_a_hub_and_the_dht_is_not_asked() {
    let config = LanConfig {
        interface: Ipv4Addr::LOCALHOST,
        port: free_udp_port(),
        // A lost packet costs a second, not the whole wait.
        announce_every: Duration::from_secs(1),
        ..LanConfig::default()
    };
    let cancel = CancellationToken::new();
    let (alice, bob) = (endpoint().await, endpoint().await);
    let (_alice_tx, alice_watch) = watch::channel(record_of(&alice));
    let _alice_lan = LanDiscovery::start(
        alice.identity().clone(),
        config.clone(),
        alice_watch,
        cancel.clone(),
    )
    .unwrap();
    let (_bob_tx, bob_watch) = watch::channel(record_of(&bob));
    let bob_lan =
        LanDiscovery::start(bob.identity().clone(), config, bob_watch, cancel.clone()).unwrap();
    // Alice may answer Bob's start-up query before we subscribe: look in the cache after
    // subscribing, and only then wait for an event.
    let mut heard = bob_lan.events();
    tokio::time::timeout(WAIT, async {
        while bob_lan.lookup(&alice.peer_id()).is_none() {
            if heard.recv().await.unwrap().peer == alice.peer_id() {
                break;
            }
        }
    })
    .await
    .expect("Bob hears Alice on the LAN");
    // A DHT source too, added first: the LAN cache is still asked first, and finds her.
    let net = tokio::task::spawn_blocking(|| mainline::Testnet::builder(10).build())
        .await
        .unwrap()
        .unwrap();
    let dht = DhtDiscovery::start(
        bob.identity().clone(),
        DhtConfig {
            bootstrap: Some(net.bootstrap.clone()),
            bind: Some(Ipv4Addr::LOCALHOST),
            ..DhtConfig::default()
        },
    )
    .unwrap();
    let bob_connector = connector(&bob);
    bob_connector.add_discovery(Arc::new(dht.clone()));
    bob_connector.add_discovery(Arc::new(bob_lan));
    assert!(bob.peer_addresses(&alice.peer_id()).is_empty());
    // Three connects at once: one connection, and no lock entry left after them.
    let connects = (0..3).map(|_| {
        let c = bob_connector.clone();
        let peer = alice.peer_id();
        tokio::spawn(async move { tokio::time::timeout(WAIT, c.connect(peer)).await })
    });
    let mut ids = Vec::new();
    for c in connects {
        let (conn, report) = c.await.unwrap().expect("in time").expect("connected");
        assert_eq!(conn.path(), PathKind::Direct, "{report:#?}");
        ids.push(conn.id());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let report = bob_connector.report(&alice.peer_id()).unwrap();
    let methods: Vec<&str> = report.attempts.iter().map(|a| a.method.as_str()).collect();
    assert_eq!(methods, ["lookup lan", "connected"], "{report:#?}");
    assert_eq!(
        dht.status().lookups,
        0,
        "the DHT was asked although the LAN knew"
    );
    assert!(
        !bob.peer_addresses(&alice.peer_id()).is_empty(),
        "fed to the address book"
    );
    assert_eq!(bob_connector.connects_running(), 0);
    cancel.cancel();
    alice.close();
    bob.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_on_the_dht_is_found_once_a_minute_and_failed_connects_leave_no_lock() {
    let net = tokio::task::spawn_blocking(|| mainline::Testnet::builder(20).build())
        .await
        .unwrap()
        .unwrap();
    let config = |id: &Identity| {
        DhtDiscovery::start(
            id.clone(),
            DhtConfig {
                bootstrap: Some(net.bootstrap.clone()),
                bind: Some(Ipv4Addr::LOCALHOST),
                lookup_timeout: Duration::from_secs(10),
                ..DhtConfig::default()
            },
        )
        .unwrap()
    };
    let (alice, bob) = (endpoint().await, endpoint().await);
    let alice_dht = config(alice.identity());
    assert!(alice_dht.wait_bootstrapped().await);
    alice_dht.publish(&record_of(&alice)).await.unwrap();
    let bob_dht = config(bob.identity());
    assert!(bob_dht.wait_bootstrapped().await);
    let bob_connector = connector(&bob);
    bob_connector.add_discovery(Arc::new(bob_dht.clone()));
    let (conn, report) = tokio::time::timeout(WAIT, bob_connector.connect(alice.peer_id()))
        .await
        .expect("in time")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(conn.path(), PathKind::Direct);
    assert_eq!(report.attempts[0].method, "lookup dht", "{report:#?}");
    assert_eq!(bob_dht.status().lookups, 1);
    // Alice goes; within the minute Bob's next connect dials what he knows and does not
    // ask the DHT again.
    alice.close();
    tokio::time::timeout(WAIT, conn.closed())
        .await
        .expect("closed");
    let e = tokio::time::timeout(WAIT, bob_connector.connect(alice.peer_id()))
        .await
        .expect("in time")
        .expect_err("Alice is gone");
    assert!(
        e.attempts
            .iter()
            .any(|a| a.method == "lookup dht" && a.outcome.contains("not asked")),
        "{e:#?}"
    );
    assert_eq!(bob_dht.status().lookups, 1);
    // Nobody at all: no address, no hub, fails at once; the lock map is empty again.
    let nobody = Identity::generate().peer_id();
    assert!(bob_connector.connect(nobody).await.is_err());
    assert_eq!(bob_connector.connects_running(), 0);
    bob.close();
}
