//! Peers from the Mainline DHT (BEP 5), on loopback only: a local `mainline` testnet stands in for the public DHT
//! (our nodes are never given a public bootstrap address), an aria2c seeder announces on it, and hand-made KRPC
//! nodes answer lookups with floods and garbage.
//! Needs `aria2c` and `mktorrent` (installed by tests/run.sh).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allpeers_transfer::bt::dht::{
    DhtError, DhtNodeConfig, MAX_PEERS_PER_LOOKUP, MainlineDht, PeerFinder,
};
use allpeers_transfer::bt::engine::{Engine, EngineConfig, Target};
use allpeers_transfer::bt::metainfo::Torrent;
use allpeers_transfer::manager::{AddMagnet, Manager, ManagerConfig, Status, TransferEvent};
use allpeers_transfer::testing::{
    aria2c_dht_seeder, content, dht_lookup, free_udp_port, wait_announced,
};
use allpeers_transfer::throttle::Limits;
use futures::stream::BoxStream;
use librqbit_bencode::BencodeValue;
use mainline::Testnet;
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// A whole test's budget (each takes a few seconds).
const DEADLINE: Duration = Duration::from_secs(60);

fn log() {
    // ALLPEERS_LOG=debug shows the DHT's and the sessions' view when a test fails.
    if let Ok(filter) = std::env::var("ALLPEERS_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A DHT node of our own that joins through `bootstrap` only, on loopback.
fn local_dht(bootstrap: &[String]) -> MainlineDht {
    MainlineDht::new(DhtNodeConfig {
        bootstrap: Some(bootstrap.to_vec()),
        bind: Some(Ipv4Addr::LOCALHOST),
        port: None,
    })
}

/// A loopback testnet of `mainline` server nodes (bound to 127.0.0.1, never to every interface).
fn testnet() -> Testnet {
    Testnet::builder(3).build().expect("a loopback testnet")
}

/// `<dir>/album/{a.bin, b.bin}` and its torrent (`private` or not) by mktorrent.
fn album(dir: &Path, private: bool) -> (Vec<(PathBuf, Vec<u8>)>, PathBuf, Torrent) {
    let files = vec![
        (
            PathBuf::from("album/a.bin"),
            content(3 * 1024 * 1024 + 5, 7),
        ),
        (PathBuf::from("album/b.bin"), content(700_000, 8)),
    ];
    for (path, data) in &files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
    let out = dir.join(if private {
        "private.torrent"
    } else {
        "album.torrent"
    });
    let mut command = Command::new("mktorrent");
    command.args(["-a", "http://127.0.0.1:1/announce", "-l", "18"]);
    if private {
        command.arg("-p");
    }
    let status = command
        .arg("-o")
        .arg(&out)
        .arg(dir.join("album"))
        .stdout(Stdio::null())
        .status()
        .expect("mktorrent is installed (tests/run.sh)");
    assert!(status.success());
    let torrent = Torrent::from_bytes(&std::fs::read(&out).unwrap()).unwrap();
    (files, out, torrent)
}

/// One lookup through `finder`, every address it yields.
async fn lookup(finder: &dyn PeerFinder, info_hash: [u8; 20]) -> Vec<SocketAddr> {
    dht_lookup(finder, info_hash).await
}

/// The whole path with a real client: aria2c seeds a torrent and announces it on a local DHT; our manager is given
/// a magnet link with nothing but the info-hash (no tracker, no `x.pe`), finds aria2c on the DHT, fetches the
/// metadata from it (ut_metadata), downloads, and every byte matches the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_with_only_its_info_hash_is_resolved_and_downloaded_through_the_dht() {
    log();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let (files, torrent_path, torrent) = album(&source, false);
    let testnet = testnet();
    let entry: SocketAddr = testnet.bootstrap[0].parse().unwrap();
    let (_seeder, seeder_port) = aria2c_dht_seeder(
        &source,
        &torrent_path,
        entry,
        free_udp_port(),
        &work.path().join("aria2-dht.dat"),
    );
    let dht = Arc::new(local_dht(&testnet.bootstrap));
    let seeder: SocketAddr = ([127, 0, 0, 1], seeder_port).into();
    wait_announced(dht.as_ref(), torrent.info_hash, seeder, DEADLINE).await;

    let mut engine = EngineConfig::new("127.0.0.1:0".parse().unwrap(), work.path().join("state"));
    engine.use_trackers = false;
    engine.dht = Some(dht);
    let manager = Manager::start(ManagerConfig::new(engine)).await.unwrap();
    let mut events = manager.subscribe();
    let out = work.path().join("out");
    let id = manager
        .add_magnet(AddMagnet {
            link: format!("magnet:?xt=urn:btih:{}", hex(&torrent.info_hash)),
            dir: out.clone(),
            peers: vec![],
            priority: 0,
            sequential: false,
            limits: Limits::default(),
            paused: false,
        })
        .await
        .unwrap();
    tokio::time::timeout(DEADLINE, async {
        loop {
            match events.recv().await {
                Ok(TransferEvent::Status { id: i, status }) if i == id => match status {
                    Status::Seeding => return,
                    Status::Failed(error) => panic!("the download failed: {error}"),
                    _ => {}
                },
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(error) => panic!("the manager is gone: {error}"),
            }
        }
    })
    .await
    .expect("downloaded in time");
    for (path, data) in &files {
        let got = std::fs::read(out.join(path)).unwrap();
        assert!(got == *data, "{} differs from the source", path.display());
    }
    let info = manager.get(id).unwrap();
    assert_eq!(info.name, "album", "named by the fetched metadata");
    let progress = info.progress.expect("it ran");
    assert_eq!(progress.hash_failures, 0);
    assert!(
        progress.peer_sources.dht >= 1,
        "{:?}",
        progress.peer_sources
    );
    assert_eq!(
        (progress.peer_sources.given, progress.peer_sources.tracker),
        (0, 0)
    );
    manager.shutdown().await;
}

/// The real DHT node, with a record of what it was asked for: what the engine looks up and announces.
#[derive(Debug)]
struct Recorded {
    dht: MainlineDht,
    looked_up: Mutex<Vec<[u8; 20]>>,
    announced: watch::Sender<Vec<[u8; 20]>>,
}

impl PeerFinder for Recorded {
    fn get_peers(
        &self,
        info_hash: [u8; 20],
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<BoxStream<'static, Vec<SocketAddr>>, DhtError>> + Send + '_>,
    > {
        self.looked_up.lock().unwrap().push(info_hash);
        self.dht.get_peers(info_hash)
    }

    fn announce(
        &self,
        info_hash: [u8; 20],
        port: u16,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), DhtError>> + Send + '_>> {
        Box::pin(async move {
            let result = self.dht.announce(info_hash, port).await;
            self.announced.send_modify(|all| all.push(info_hash));
            result
        })
    }
}

/// BEP 27: a private torrent is neither looked up nor announced on the DHT, while a public one beside it (the same
/// files) is both — as the engine's calls show, and as another node's lookup confirms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_torrent_never_touches_the_dht() {
    log();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let (_, _, public) = album(&source, false);
    let (_, _, private) = album(&source, true);
    assert!(private.private && !public.private);
    let testnet = testnet();
    let recorded = Arc::new(Recorded {
        dht: local_dht(&testnet.bootstrap),
        looked_up: Mutex::new(Vec::new()),
        announced: watch::Sender::new(Vec::new()),
    });
    let mut announced = recorded.announced.subscribe();
    let mut config = EngineConfig::new("127.0.0.1:0".parse().unwrap(), work.path().join("state"));
    config.use_trackers = false;
    config.dht = Some(recorded.clone());
    let engine = Engine::start(config).await.unwrap();
    let port = engine.listen_addr().port();
    // The private one first: had it been looked up, that would have come before the public one's announce.
    for torrent in [private.clone(), public.clone()] {
        engine
            .add(
                torrent,
                Target::SeedInPlace {
                    dir: source.clone(),
                },
                vec![],
                Limits::default(),
            )
            .await
            .unwrap();
    }
    tokio::time::timeout(
        DEADLINE,
        announced.wait_for(|all| all.contains(&public.info_hash)),
    )
    .await
    .expect("the public torrent is announced in time")
    .unwrap();
    assert_eq!(*recorded.looked_up.lock().unwrap(), vec![public.info_hash]);
    assert_eq!(*recorded.announced.borrow(), vec![public.info_hash]);

    let other = local_dht(&testnet.bootstrap);
    let us: SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(lookup(&other, public.info_hash).await.contains(&us));
    assert!(lookup(&other, private.info_hash).await.is_empty());
}

/// What a hand-made KRPC node puts in its `get_peers` answers' `values`.
#[derive(Clone)]
struct Answer(Vec<Vec<u8>>);

fn compact(addr: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(v4) = addr else {
        unreachable!("IPv4 only")
    };
    let mut out = v4.ip().octets().to_vec();
    out.extend_from_slice(&v4.port().to_be_bytes());
    out
}

fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(format!("{}:", bytes.len()).as_bytes());
    out.extend_from_slice(bytes);
}

/// DHT nodes on 127.0.0.{2,3,…} that answer every query with each other's addresses and, to `get_peers`, with their
/// [`Answer`]. Returns the first one's address (the bootstrap). Dropping the runtime ends them.
async fn krpc_nodes(answers: Vec<Answer>) -> String {
    let mut sockets = Vec::new();
    let mut contacts = Vec::new();
    for (i, _) in answers.iter().enumerate() {
        let ip = Ipv4Addr::new(127, 0, 0, 2 + i as u8);
        let socket = UdpSocket::bind((ip, 0)).await.unwrap();
        let mut id = [0u8; 20];
        id[0] = (i as u8) << 5;
        id[19] = 1 + i as u8;
        let mut contact = id.to_vec();
        contact.extend(compact(socket.local_addr().unwrap()));
        contacts.push(contact);
        sockets.push((socket, id));
    }
    let bootstrap = sockets[0].0.local_addr().unwrap().to_string();
    for (i, ((socket, id), answer)) in sockets.into_iter().zip(answers).enumerate() {
        let nodes: Vec<u8> = contacts
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, c)| c.clone())
            .collect();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let Ok(BencodeValue::Dict(query)) =
                    librqbit_bencode::dyn_from_bytes::<&[u8]>(&buf[..len])
                else {
                    continue;
                };
                let (Some(BencodeValue::Bytes(t)), Some(BencodeValue::Bytes(q))) =
                    (query.get(&b"t"[..]), query.get(&b"q"[..]))
                else {
                    continue;
                };
                // Keys in sorted order, as bencode requires.
                let mut out = b"d1:rd2:id".to_vec();
                string(&mut out, &id);
                out.extend_from_slice(b"5:nodes");
                string(&mut out, &nodes);
                if *q == b"get_peers" {
                    out.extend_from_slice(b"5:token4:tokn6:valuesl");
                    for value in &answer.0 {
                        string(&mut out, value);
                    }
                    out.push(b'e');
                }
                out.extend_from_slice(b"e1:t");
                string(&mut out, t);
                out.extend_from_slice(b"1:y1:re");
                let _ = socket.send_to(&out, from).await;
            }
        });
    }
    bootstrap
}

/// Distinct addresses 10.<node>.x.y:6881.
fn peers_of(node: u8, count: u16) -> Answer {
    Answer(
        (0..count)
            .map(|i| {
                let [hi, lo] = i.to_be_bytes();
                compact(([10, node, hi, lo], 6881).into())
            })
            .collect(),
    )
}

/// Nodes that each name 150 different peers (as many as fit a datagram): one lookup takes no more than its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_peers_is_cut_at_the_lookups_bound() {
    log();
    let answers = (1..=6).map(|node| peers_of(node, 150)).collect();
    let bootstrap = krpc_nodes(answers).await;
    let dht = local_dht(&[bootstrap]);
    let found = tokio::time::timeout(DEADLINE, lookup(&dht, [0x5a; 20]))
        .await
        .expect("the lookup ends in time");
    assert_eq!(found.len(), MAX_PEERS_PER_LOOKUP, "900 were offered");
    let distinct: HashSet<_> = found.iter().collect();
    assert_eq!(distinct.len(), found.len());
    assert!(found.iter().all(|peer| peer.port() == 6881
        && matches!(peer.ip(), std::net::IpAddr::V4(ip) if ip.octets()[0] == 10)));
}

/// A node whose compact peer list holds an entry of the wrong length has its whole answer dropped; a node that names
/// addresses no peer can have (port 0, unspecified, multicast, broadcast) has those dropped; the good peers of both
/// other nodes come through, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_compact_peer_lists_is_dropped() {
    log();
    let good = peers_of(1, 3);
    let mut garbage = peers_of(2, 3);
    garbage.0.push(vec![1, 2, 3, 4, 5]);
    let junk = Answer(vec![
        compact(([0, 0, 0, 0], 6881).into()),
        compact(([1, 2, 3, 4], 0).into()),
        compact(([224, 0, 0, 1], 6881).into()),
        compact(([255, 255, 255, 255], 6881).into()),
        compact(([10, 3, 0, 1], 6881).into()),
        // Named by the good node too: taken once.
        compact(([10, 1, 0, 0], 6881).into()),
    ]);
    let bootstrap = krpc_nodes(vec![good, garbage, junk]).await;
    let dht = local_dht(&[bootstrap]);
    let found = tokio::time::timeout(DEADLINE, lookup(&dht, [0xa5; 20]))
        .await
        .expect("the lookup ends in time");
    let found: HashSet<SocketAddr> = found.into_iter().collect();
    let expected: HashSet<SocketAddr> = [
        "10.1.0.0:6881",
        "10.1.0.1:6881",
        "10.1.0.2:6881",
        "10.3.0.1:6881",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    assert_eq!(found, expected);
}
