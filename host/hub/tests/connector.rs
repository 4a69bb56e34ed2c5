//! The connector on loopback, with the real `allpeers-hub` binary: a direct connect and its
//! report, the upgrade of a relayed connection to a direct one under a running channel, and
//! forged or unwanted connection signals. The NAT cells (callback, punches, birthday, relay
//! between symmetric NATs) are in the network-namespace matrix, `tests/e2e/nat_matrix.rs`.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allpeers_hub_client::{AcceptAll, AcceptListed, HubEvent};
use allpeers_nat::connector::{Connector, ConnectorConfig, Facts, Signal, signal};
use allpeers_net::{Address, Namespace, PathKind, ServiceFn};
use common::*;

const SECONDS: Duration = Duration::from_secs(1);

fn connector(n: &Node) -> Connector {
    Connector::start(
        n.endpoint.clone(),
        Some(n.hub.clone()),
        None,
        Arc::new(AcceptAll),
        ConnectorConfig::default(),
    )
}

/// A hub process and `N` nodes online at it.
async fn hub_and_nodes<const N: usize>(dir: &std::path::Path) -> (HubProc, [Node; N]) {
    let hub = HubProc::spawn(dir, &[]);
    let mut nodes = Vec::with_capacity(N);
    for _ in 0..N {
        let n = node(fast_config(hub.peer, hub.addresses()), Arc::new(AcceptAll)).await;
        assert!(n.hub.wait_online(10 * SECONDS).await);
        nodes.push(n);
    }
    let Ok(nodes) = <[Node; N]>::try_from(nodes) else {
        unreachable!("N nodes made")
    };
    (hub, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reachable_peer_is_connected_directly_and_the_report_says_so() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (_hub, [a, b]) = hub_and_nodes(dir.path()).await;
        let (_b_connector, a_connector) = (connector(&b), connector(&a));
        let (conn, report) = a_connector.connect(b.id()).await.expect("connect");
        assert_eq!(conn.path(), PathKind::Direct, "{report:#?}");
        assert_eq!(report.path, PathKind::Direct);
        assert!(report.why.contains("our dial"), "{report:#?}");
        assert!(!report.attempts.is_empty());
        assert_eq!(a_connector.report(&b.id()).unwrap().path, PathKind::Direct);
        // Asked again: the live connection, at once.
        let (again, r2) = a_connector.connect(b.id()).await.unwrap();
        assert_eq!(again.id(), conn.id());
        assert!(r2.why.starts_with("already connected"), "{r2:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_connection_is_upgraded_under_a_running_channel() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (_hub, [a, b]) = hub_and_nodes(dir.path()).await;
        // B collects what arrives on its channel service.
        let got = Arc::new(Mutex::new(Vec::<u32>::new()));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let done_tx = Arc::new(Mutex::new(Some(done_tx)));
        let ns = Namespace::allpeers("counter", 1).unwrap();
        {
            let got = got.clone();
            b.endpoint.register(
                ns.clone(),
                ServiceFn::new().on_channel(move |_ctx, mut rx| {
                    let got = got.clone();
                    let done_tx = done_tx.clone();
                    async move {
                        while let Ok(Some(n)) = rx.recv::<u32>().await {
                            got.lock().unwrap().push(n);
                        }
                        if let Some(tx) = done_tx.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                    }
                }),
            );
        }
        let relayed = a.hub.connect_relayed(b.id()).await.unwrap();
        assert_eq!(relayed.path(), PathKind::Relayed);
        let mut channel = a.endpoint.open_channel(b.id(), &ns).await.unwrap();
        for n in 0..50u32 {
            channel.send(&n).await.unwrap();
        }
        // The connector hands back the relayed connection and looks for a direct path.
        let (_b_connector, a_connector) = (connector(&b), connector(&a));
        let (conn, _) = a_connector.connect(b.id()).await.unwrap();
        assert_eq!(conn.id(), relayed.id());
        let mut events = a.endpoint.events();
        let upgraded = tokio::time::timeout(20 * SECONDS, async {
            loop {
                if let Some(c) = a.endpoint.connection(&b.id())
                    && c.path() != PathKind::Relayed
                {
                    return c;
                }
                let _ = events.recv().await;
            }
        })
        .await
        .expect("upgraded to a direct connection");
        assert_eq!(upgraded.path(), PathKind::Direct);
        // The channel opened over the relay goes on as if nothing happened.
        assert!(!relayed.is_closed(), "retired while a stream was live");
        for n in 50..100u32 {
            channel.send(&n).await.unwrap();
        }
        channel.finish().await.unwrap();
        tokio::time::timeout(10 * SECONDS, done_rx)
            .await
            .expect("channel ended")
            .unwrap();
        assert_eq!(*got.lock().unwrap(), (0..100).collect::<Vec<_>>());
        // Once its last stream ended, the relayed connection is retired.
        tokio::time::timeout(10 * SECONDS, relayed.closed())
            .await
            .expect("the relayed connection closes once idle");
        // New requests use the direct connection.
        let echo: String = a
            .endpoint
            .request(b.id(), &echo_ns(), "after the switch")
            .await
            .unwrap();
        assert_eq!(echo, "after the switch");
        assert_eq!(a.endpoint.connection(&b.id()).unwrap().id(), upgraded.id());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_unwanted_signals_move_nothing() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        // Bob's connector answers signals from Alice only.
        let (_hub, [alice, mallory, bob]) = hub_and_nodes(dir.path()).await;
        let _bob_connector = Connector::start(
            bob.endpoint.clone(),
            Some(bob.hub.clone()),
            None,
            Arc::new(AcceptListed(Mutex::new([alice.id()].into_iter().collect()))),
            ConnectorConfig::default(),
        );
        // A UDP socket of Mallory's, named as a candidate: Bob must never send to it (it
        // could be a victim's address).
        let trap = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let trap_addr: SocketAddr = trap.local_addr().unwrap();
        let connect = |session: [u8; 16]| Signal::Connect {
            session,
            candidates: vec![Address::quic(trap_addr)],
            facts: Facts::unknown(),
            tcp_port: None,
        };
        let mut mallory_events = mallory.hub.events();
        let now = allpeers_model::hlc::now_ms();
        // 1. Signed by Mallory but claiming to be from Alice's key: the hub stamps Mallory.
        let forged_from =
            signal::seal(mallory.endpoint.identity(), bob.id(), now, connect([1; 16]));
        let mut tampered = forged_from.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        // 2. Garbage, 3. a tampered signal, 4. a signal addressed to Alice, 5. a stale one,
        // 6. an answer to a session Bob never started.
        let for_alice = signal::seal(
            mallory.endpoint.identity(),
            alice.id(),
            now,
            connect([2; 16]),
        );
        let stale = signal::seal(
            mallory.endpoint.identity(),
            bob.id(),
            now - 3_600_000,
            connect([3; 16]),
        );
        let stray_answer = signal::seal(
            mallory.endpoint.identity(),
            bob.id(),
            now,
            Signal::Accept {
                session: [4; 16],
                candidates: vec![Address::quic(trap_addr)],
                facts: Facts::unknown(),
                tcp_port: None,
            },
        );
        for body in [vec![0xff; 40], tampered, for_alice, stale, stray_answer] {
            mallory.hub.signal(bob.id(), body).await.unwrap();
        }
        // 7. Mallory's genuine Connect: refused by Bob's policy, with a Refuse answer.
        mallory.hub.signal(bob.id(), forged_from).await.unwrap();
        let refused = wait_event(
            &mut mallory_events,
            10 * SECONDS,
            |e| matches!(e, HubEvent::Signal { from, .. } if *from == bob.id()),
        )
        .await
        .expect("Bob answers Mallory's own signal");
        let HubEvent::Signal { body, .. } = refused else {
            unreachable!()
        };
        let answer = signal::open(
            &body,
            &bob.id(),
            &mallory.id(),
            allpeers_model::hlc::now_ms(),
        )
        .unwrap();
        assert!(matches!(answer, Signal::Refuse { .. }), "{answer:?}");
        // Nothing reached the trap: no punch, no dial. (A bounded wait for something that
        // must not happen; Bob answered the last signal, so the earlier ones were handled.)
        let mut buf = [0u8; 64];
        assert!(
            tokio::time::timeout(2 * SECONDS, trap.recv_from(&mut buf))
                .await
                .is_err(),
            "Bob sent packets to an address named by a signal he should have dropped"
        );
        // Over the limit: the hub refuses a flood of signals.
        let mut limited = false;
        for i in 0..200u32 {
            if let Err(e) = mallory.hub.signal(bob.id(), vec![i as u8; 10]).await {
                assert!(e.to_string().contains("signals per second"), "{e}");
                limited = true;
                break;
            }
        }
        assert!(limited, "no rate limit on signals");
        // Too large.
        let e = alice
            .hub
            .signal(
                bob.id(),
                vec![0; allpeers_hub_client::proto::MAX_SIGNAL + 1],
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
        // Bob still answers Alice.
        let alice_connector = connector(&alice);
        let (conn, report) = alice_connector
            .connect(bob.id())
            .await
            .expect("Alice reaches Bob");
        assert!(!conn.is_closed(), "{report:#?}");
    })
    .await
}
