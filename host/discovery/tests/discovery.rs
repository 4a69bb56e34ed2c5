//! Discovery without a hub, in one process: records on an in-process Mainline testnet
//! (never the real DHT) and LAN multicast on loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use allpeers_discovery::DiscoveryError;
use allpeers_discovery::dht::{DhtConfig, DhtDiscovery, SALT};
use allpeers_discovery::lan::{LanConfig, LanDiscovery, LanPacket};
use allpeers_model::PeerId;
use allpeers_net::record::{AddressKind, AddressRecord, RecordAddress, RecordError};
use allpeers_net::{Address, Endpoint, EndpointConfig, Identity};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Every wait is bounded by this.
const WAIT: Duration = Duration::from_secs(20);

async fn testnet(nodes: usize) -> mainline::Testnet {
    tokio::task::spawn_blocking(move || mainline::Testnet::builder(nodes).build())
        .await
        .unwrap()
        .expect("local DHT testnet")
}

fn dht_config(testnet: &mainline::Testnet) -> DhtConfig {
    DhtConfig {
        bootstrap: Some(testnet.bootstrap.clone()),
        bind: Some(Ipv4Addr::LOCALHOST),
        lookup_timeout: Duration::from_secs(10),
        ..DhtConfig::default()
    }
}

fn local(addr: &str) -> RecordAddress {
    RecordAddress {
        kind: AddressKind::Local,
        address: Address::quic(addr.parse().unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_published_on_the_dht_is_resolved_and_feeds_the_endpoint() {
    let net = testnet(20).await;
    let alice = Identity::generate();
    let publisher = DhtDiscovery::start(alice.clone(), dht_config(&net)).unwrap();
    assert!(publisher.wait_bootstrapped().await, "joined the testnet");
    let addresses = vec![local("127.0.0.1:4433"), local("198.18.3.2:4433")];
    let stored_at = publisher.publish(&addresses).await.unwrap();
    assert!(stored_at > 0);
    assert_eq!(publisher.status().published, addresses);

    let reader = DhtDiscovery::start(Identity::generate(), dht_config(&net)).unwrap();
    let endpoint = Endpoint::bind(Identity::generate(), EndpointConfig::loopback())
        .await
        .unwrap();
    let record = reader
        .resolve_into(&endpoint, &alice.peer_id())
        .await
        .unwrap();
    assert_eq!(record.peer, alice.peer_id());
    assert_eq!(record.addresses, addresses);
    assert_eq!(
        endpoint.peer_addresses(&alice.peer_id()),
        record.dialable(),
        "the endpoint can dial what the DHT said"
    );
    assert_eq!(reader.status().lookups_found, 1);

    // Nobody published for this one: a clean "not found", within the timeout.
    let nobody = Identity::generate().peer_id();
    assert!(matches!(
        reader.resolve(&nobody).await,
        Err(DiscoveryError::NotFound(p)) if p == nobody
    ));
    endpoint.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_by_another_key_are_refused() {
    let net = testnet(20).await;
    let victim = Identity::generate();
    // The attacker writes to the DHT with `mainline` directly, with a key of its own.
    let attacker_key = mainline::SigningKey::from_bytes(&[7; 32]);
    let attacker = PeerId::from_public_key(attacker_key.verifying_key().to_bytes());
    let raw = mainline::Dht::builder()
        .bootstrap(&net.bootstrap)
        .bind_address(Ipv4Addr::LOCALHOST)
        .build()
        .unwrap()
        .as_async();

    // 1. An item for the victim's target (the victim's key), signed by the attacker: the
    //    DHT nodes themselves refuse to store it.
    let forged_value = AddressRecord::new(victim.peer_id(), now_ms(), &[local("203.0.113.66:1")])
        .sign(&victim)
        .unwrap();
    let honest = mainline::MutableItem::new(attacker_key.clone(), &forged_value, 5, Some(SALT));
    let forged = mainline::MutableItem::new_signed_unchecked(
        *victim.peer_id().public_key(),
        *honest.signature(),
        &forged_value,
        5,
        Some(SALT),
    );
    assert!(
        raw.put_mutable(forged, None).await.is_err(),
        "DHT nodes must refuse a signature by another key"
    );
    let reader = DhtDiscovery::start(Identity::generate(), dht_config(&net)).unwrap();
    assert!(matches!(
        reader.resolve(&victim.peer_id()).await,
        Err(DiscoveryError::NotFound(_))
    ));

    // 2. The victim's genuine record replayed under the attacker's own key: found under
    //    the attacker's target, but it is not the attacker's record.
    let replay = mainline::MutableItem::new(
        attacker_key.clone(),
        &forged_value,
        now_ms() as i64,
        Some(SALT),
    );
    raw.put_mutable(replay, None).await.unwrap();
    match reader.resolve(&attacker).await {
        Err(DiscoveryError::Record(RecordError::WrongSigner { expected, signer })) => {
            assert_eq!(expected, attacker);
            assert_eq!(signer, victim.peer_id());
        }
        other => panic!("expected a wrong-signer refusal, got {other:?}"),
    }
    let shown = reader.status().last_lookup_error.unwrap();
    assert!(
        shown.contains("not by the key it was looked up for"),
        "{shown}"
    );

    // 3. Garbage under the attacker's key: refused with a reason, no crash.
    let garbage = mainline::MutableItem::new(
        attacker_key,
        b"not a record at all",
        now_ms() as i64 + 1,
        Some(SALT),
    );
    raw.put_mutable(garbage, None).await.unwrap();
    assert!(matches!(
        reader.resolve(&attacker).await,
        Err(DiscoveryError::Record(RecordError::BadMagic))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_republishes_when_addresses_change() {
    let net = testnet(20).await;
    let alice = Identity::generate();
    let publisher = DhtDiscovery::start(alice.clone(), dht_config(&net)).unwrap();
    let (addresses, watched) = watch::channel(vec![local("127.0.0.1:1111")]);
    let cancel = CancellationToken::new();
    let task = publisher.spawn_publisher(watched, cancel.clone());
    let mut status = publisher.watch_status();
    let first = vec![local("127.0.0.1:1111")];
    tokio::time::timeout(WAIT, status.wait_for(|s| s.published == first))
        .await
        .expect("first publish")
        .unwrap();
    let reader = DhtDiscovery::start(Identity::generate(), dht_config(&net)).unwrap();
    assert_eq!(
        reader.resolve(&alice.peer_id()).await.unwrap().addresses,
        first
    );

    let moved = vec![local("127.0.0.1:2222"), local("198.18.3.9:2222")];
    addresses.send(moved.clone()).unwrap();
    tokio::time::timeout(WAIT, status.wait_for(|s| s.published == moved))
        .await
        .expect("republished after the change")
        .unwrap();
    let record = reader.resolve(&alice.peer_id()).await.unwrap();
    assert_eq!(record.addresses, moved, "the newest record wins");
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_peers_find_each_other_and_forged_announcements_are_refused() {
    // Loopback multicast, a port of our own so parallel runs do not meet.
    let port = free_udp_port();
    let config = LanConfig {
        interface: Ipv4Addr::LOCALHOST,
        port,
        ..LanConfig::default()
    };
    let cancel = CancellationToken::new();
    let alice = Identity::generate();
    let bob = Identity::generate();
    let bob_endpoint = Endpoint::bind(bob.clone(), EndpointConfig::loopback())
        .await
        .unwrap();
    let (_bob_addresses, bob_watch) = watch::channel(vec![local("127.0.0.1:3333")]);
    let bob_lan = match LanDiscovery::start(bob.clone(), config.clone(), bob_watch, cancel.clone())
    {
        Ok(lan) => lan,
        Err(e) => panic!("LAN discovery on loopback: {e}"),
    };
    let mut bob_events = bob_lan.events();
    let alice_addresses = vec![local("127.0.0.1:4444")];
    let (_alice_tx, alice_watch) = watch::channel(alice_addresses.clone());
    let alice_lan =
        LanDiscovery::start(alice.clone(), config.clone(), alice_watch, cancel.clone()).unwrap();
    let mut alice_events = alice_lan.events();

    let seen = tokio::time::timeout(WAIT, bob_events.recv())
        .await
        .expect("bob hears alice")
        .unwrap();
    assert_eq!(seen.peer, alice.peer_id());
    assert_eq!(seen.addresses, alice_addresses);
    assert!(seen.new);
    bob_lan
        .lookup_into(&bob_endpoint, &alice.peer_id())
        .expect("alice is in bob's LAN cache");
    assert_eq!(
        bob_endpoint.peer_addresses(&alice.peer_id()),
        vec![Address::quic("127.0.0.1:4444".parse().unwrap())]
    );
    // Alice started second: her query made Bob announce at once. Bob's answer can reach
    // her cache before this test subscribes to her events: take either.
    let heard_bob = async {
        loop {
            if alice_lan.lookup(&bob.peer_id()).is_some() {
                return;
            }
            match alice_events.recv().await {
                Ok(event) if event.peer == bob.peer_id() => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("alice's events ended: {e}"),
            }
        }
    };
    tokio::time::timeout(WAIT, heard_bob)
        .await
        .expect("alice hears bob");
    assert!(
        alice_lan.lookup(&alice.peer_id()).is_none(),
        "our own announcements are ignored"
    );

    // Mallory announces Alice's PeerId with his own signature: refused, Alice's entry
    // unchanged.
    let mallory = Identity::generate();
    let mut forged =
        AddressRecord::new(mallory.peer_id(), now_ms() + 1, &[local("203.0.113.66:1")])
            .sign(&mallory)
            .unwrap();
    forged[5..37].copy_from_slice(alice.peer_id().public_key());
    let mut bob_stats = bob_lan.watch_stats();
    let refused_before = bob_stats.borrow_and_update().refused;
    let sender = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    sender.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    let sender: std::net::UdpSocket = sender.into();
    let group = SocketAddr::from((config.group, port));
    sender
        .send_to(&LanPacket::encode_announce(&forged), group)
        .unwrap();
    tokio::time::timeout(WAIT, bob_stats.wait_for(|s| s.refused > refused_before))
        .await
        .expect("bob refuses the forgery")
        .unwrap();
    assert_eq!(
        bob_lan.lookup(&alice.peer_id()).unwrap().addresses,
        alice_addresses,
        "a forged announcement never replaces the real one"
    );
    assert!(bob_lan.stats().last_refusal.unwrap().contains("signature"));
    cancel.cancel();
    bob_endpoint.close();
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn now_ms() -> u64 {
    allpeers_model::hlc::now_ms()
}
