//! Discovery benchmark, in one process on loopback:
//! `cargo bench -p allpeers-net --bench discovery [-- --nodes N --rounds R
//! --request-timeout-ms T]` (T: the DHT's per-request timeout; default mainline's 2 s).
//!
//! * a local Mainline testnet of N nodes (default 20; never the real DHT): time to join,
//!   to publish a record (BEP 44 put) and to resolve it from another node, R rounds each
//!   (default 10), each round a fresh identity; p50 and max;
//! * LAN multicast on loopback: time from a node starting to another node's event that it
//!   was seen, R rounds.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use allpeers_discovery::dht::{DhtConfig, DhtDiscovery};
use allpeers_discovery::lan::{LanConfig, LanDiscovery};
use allpeers_net::Address;
use allpeers_net::Identity;
use allpeers_net::record::{AddressKind, RecordAddress};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn summary(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {label} | {} | {:.1} | {:.1} |",
        samples.len(),
        ms(samples[samples.len() / 2]),
        ms(*samples.last().unwrap())
    );
}

fn addresses(port: u16) -> Vec<RecordAddress> {
    vec![RecordAddress {
        kind: AddressKind::Local,
        address: Address::quic((Ipv4Addr::LOCALHOST, port).into()),
    }]
}

fn main() {
    let nodes = arg("--nodes", 20);
    let rounds = arg("--rounds", 10);
    let request_timeout_ms = arg("--request-timeout-ms", 0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let started = Instant::now();
        let testnet = mainline::Testnet::builder(nodes).build().unwrap();
        println!("testnet of {nodes} nodes up in {:?}\n", started.elapsed());
        println!("| step | rounds | p50 ms | max ms |\n|---|---|---|---|");
        let config = DhtConfig {
            bootstrap: Some(testnet.bootstrap.clone()),
            bind: Some(Ipv4Addr::LOCALHOST),
            request_timeout: (request_timeout_ms > 0)
                .then(|| Duration::from_millis(request_timeout_ms as u64)),
            ..DhtConfig::default()
        };
        let reader = DhtDiscovery::start(Identity::generate(), config.clone()).unwrap();
        reader.wait_bootstrapped().await;
        let (mut join, mut publish, mut resolve) = (vec![], vec![], vec![]);
        for round in 0..rounds {
            let identity = Identity::generate();
            let t = Instant::now();
            let publisher = DhtDiscovery::start(identity.clone(), config.clone()).unwrap();
            assert!(publisher.wait_bootstrapped().await);
            join.push(t.elapsed());
            let t = Instant::now();
            publisher
                .publish(&addresses(1000 + round as u16))
                .await
                .unwrap();
            publish.push(t.elapsed());
            let t = Instant::now();
            let record = reader.resolve(&identity.peer_id()).await.unwrap();
            resolve.push(t.elapsed());
            assert_eq!(record.peer, identity.peer_id());
        }
        summary("DHT join (bootstrap query)", join);
        summary("DHT publish (BEP 44 put)", publish);
        summary("DHT resolve (BEP 44 get, verified)", resolve);

        let mut lan = vec![];
        for _ in 0..rounds {
            let port = std::net::UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let lan_config = LanConfig {
                interface: Ipv4Addr::LOCALHOST,
                port,
                ..LanConfig::default()
            };
            let cancel = CancellationToken::new();
            let (_a_tx, a_rx) = watch::channel(addresses(1));
            let listener = LanDiscovery::start(
                Identity::generate(),
                lan_config.clone(),
                a_rx,
                cancel.clone(),
            )
            .unwrap();
            let mut events = listener.events();
            let t = Instant::now();
            let (_b_tx, b_rx) = watch::channel(addresses(2));
            let _newcomer =
                LanDiscovery::start(Identity::generate(), lan_config, b_rx, cancel.clone())
                    .unwrap();
            tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .unwrap()
                .unwrap();
            lan.push(t.elapsed());
            cancel.cancel();
        }
        summary("LAN: newcomer seen by multicast", lan);
    });
}
