//! Cluster mode against a real PostgreSQL (Debian's `postgresql`, started by the test in
//! a temporary directory on a loopback port): two `allpeers-hub` instances behind one key
//! and one database; peers on different instances see each other, chat, signal and get
//! their letters; an instance killed, its peers move to the other and nothing acknowledged
//! is lost; a database connection killed mid-deposit leaves no half-applied letter.

mod common;
#[path = "common/postgres.rs"]
mod postgres;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allpeers_hub_client::proto::code;
use allpeers_hub_client::{AcceptAll, Availability, HubError, HubEvent, PeerStatus};
use allpeers_net::{Address, Identity};
use common::*;
use postgres::Postgres;

const SECONDS: Duration = Duration::from_secs(1);
/// An instance of the hub `hub.test` on `pg`: config file, data dir (`key`: the shared
/// hub key, copied in), on free loopback ports.
fn instance(pg: &Postgres, root: &Path, name: &str, key: Option<&Path>) -> HubProc {
    let any = "127.0.0.1:0".parse().unwrap();
    instance_at(pg, root, name, key, any, any)
}

fn instance_at(
    pg: &Postgres,
    root: &Path,
    name: &str,
    key: Option<&Path>,
    quic: std::net::SocketAddr,
    tcp: std::net::SocketAddr,
) -> HubProc {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(key) = key {
        std::fs::copy(key, dir.join("hub.key")).unwrap();
    }
    let config = serde_json::json!({
        "mailbox": {"max_letters_per_sender": 3},
        "backend": {"postgres": {
            "url": pg.url(),
            "instance": name,
            "pool_size": 4,
            "heartbeat_ms": 200,
            "instance_timeout_ms": 1500,
        }}
    });
    let path = dir.join("hub.json");
    std::fs::write(&path, config.to_string()).unwrap();
    HubProc::spawn_at(&dir, quic, tcp, &["--config", path.to_str().unwrap()])
}

fn key_of(hub: &HubProc) -> PathBuf {
    hub.dir.join("hub.key")
}

async fn presence_of(
    rx: &mut tokio::sync::broadcast::Receiver<HubEvent>,
    peer: allpeers_model::PeerId,
    online: bool,
    within: Duration,
) -> bool {
    wait_event(rx, within, |e| {
        matches!(e, HubEvent::PresenceChanged { peer: p, online: o, .. } if *p == peer && *o == online)
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_presence_signals_and_letters_and_survive_one_dying() {
    bounded(async {
        let started = Instant::now();
        let pg = Postgres::start();
        eprintln!("postgres up in {:?}", started.elapsed());
        let root = tempfile::tempdir().unwrap();
        let mut a = instance(&pg, root.path(), "a", None);
        let b = instance(&pg, root.path(), "b", Some(&key_of(&a)));
        assert_eq!(a.peer, b.peer, "one hub key");
        let hub = a.peer;
        let (at_a, at_b) = (Address::tcp(a.tcp), Address::tcp(b.tcp));

        // alice and carol at A (carol knows only A), bob at B; alice and bob know both.
        let alice = node(fast_config(hub, vec![at_a, at_b]), Arc::new(AcceptAll)).await;
        let carol = node(fast_config(hub, vec![at_a]), Arc::new(AcceptAll)).await;
        let bob = node(fast_config(hub, vec![at_b, at_a]), Arc::new(AcceptAll)).await;
        for n in [&alice, &carol, &bob] {
            assert!(n.hub.wait_online(10 * SECONDS).await);
        }
        let mut bob_events = bob.hub.events();
        let mut alice_events = alice.hub.events();

        // One directory: registered at A, found at B.
        alice.hub.register("alice").await.unwrap();
        let rec = bob.hub.resolve("alice@hub.test").await.unwrap().unwrap();
        assert_eq!(rec.peer, alice.id());
        assert!(rec.online, "alice's line at A is seen from B");

        // Presence across instances, mutual rule intact.
        bob.hub.watch(&[alice.id(), carol.id()]).await;
        alice.hub.watch(&[bob.id()]).await;
        carol.hub.watch(&[bob.id()]).await;
        assert!(presence_of(&mut bob_events, alice.id(), true, 5 * SECONDS).await);
        assert!(presence_of(&mut alice_events, bob.id(), true, 5 * SECONDS).await);

        // Chat: bob finds alice's addresses through B and talks to her directly.
        bob.hub.resolve(&alice.id().to_string()).await.unwrap();
        let reply: String = bob
            .endpoint
            .request(alice.id(), &echo_ns(), &"hello from B".to_string())
            .await
            .unwrap();
        assert_eq!(reply, "hello from B");

        // B's listening connection is cut; a status change at A meanwhile is not lost: B
        // listens again and reads the tables.
        let admin = pg.client().await;
        let cut: i64 = admin
            .query_one(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = 'allpeers-hub b' AND query LIKE 'LISTEN%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(cut, 1, "B's listener found and cut");
        alice
            .hub
            .set_status(PeerStatus {
                availability: Availability::Away,
                text: "lunch".into(),
            })
            .await;
        let e = wait_event(&mut bob_events, 10 * SECONDS, |e| {
            matches!(e, HubEvent::PresenceChanged { peer, status, .. } if *peer == alice.id() && status.text == "lunch")
        })
        .await;
        assert!(e.is_some(), "bob hears alice's new status after B listens again");

        // A connection signal from A's peer reaches B's.
        alice.hub.signal(bob.id(), b"punch".to_vec()).await.unwrap();
        let e = wait_event(&mut bob_events, 5 * SECONDS, |e| matches!(e, HubEvent::Signal { .. })).await;
        assert!(
            matches!(&e, Some(HubEvent::Signal { from, body, .. }) if *from == alice.id() && body == b"punch"),
            "{e:?}"
        );

        // A letter deposited at A for bob (online at B): B tells him, he takes it.
        alice.hub.mail_deposit(bob.id(), b"sealed for bob".to_vec()).await.unwrap();
        assert!(
            wait_event(&mut bob_events, 5 * SECONDS, |e| matches!(e, HubEvent::MailWaiting { .. }))
                .await
                .is_some()
        );
        let items = bob.hub.mail_fetch(10).await.unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].sealed, b"sealed for bob");
        assert_eq!(bob.hub.mail_ack(&[items[0].id]).await.unwrap(), 1);

        // Relays are per instance: a clear refusal across instances.
        match alice.hub.connect_relayed(bob.id()).await {
            Err(HubError::Refused { message, .. }) => {
                assert!(message.contains("another instance"), "{message}")
            }
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }

        // Letters for erin (registered here, now offline), acknowledged by A: a hub takes
        // letters only for the peers it hosts.
        let erin_id = Identity::generate();
        let first = node_with(erin_id.clone(), fast_config(hub, vec![at_a, at_b]), Arc::new(AcceptAll)).await;
        first.hub.register("erin").await.unwrap();
        first.stop();
        let mut acknowledged = Vec::new();
        for i in 0..3 {
            let id = alice
                .hub
                .mail_deposit(erin_id.peer_id(), format!("letter {i}").into_bytes())
                .await
                .unwrap();
            acknowledged.push(id);
        }

        // A dies. carol (A only) goes offline for bob once A's heartbeat is overdue; alice
        // moves to B (her next address, same pinned key) and bob sees her online there.
        let killed = Instant::now();
        a.child.kill().unwrap();
        a.child.wait().unwrap();
        assert!(
            presence_of(&mut bob_events, carol.id(), false, 10 * SECONDS).await,
            "bob hears carol offline"
        );
        eprintln!("carol offline for bob {:?} after the kill", killed.elapsed());
        let back = wait_event(&mut alice_events, 10 * SECONDS, |e| matches!(e, HubEvent::Online { .. })).await;
        assert!(back.is_some(), "alice back online through B");
        eprintln!("alice online at B {:?} after the kill", killed.elapsed());
        let rec = bob.hub.resolve(&alice.id().to_string()).await.unwrap().unwrap();
        assert!(rec.online);
        let reply: String = alice
            .endpoint
            .request(bob.id(), &echo_ns(), &"still here".to_string())
            .await
            .unwrap();
        assert_eq!(reply, "still here");

        // erin comes online (A first in her list: it is dead, B answers): every letter A
        // acknowledged waits for her.
        let erin = node_with(erin_id, fast_config(hub, vec![at_a, at_b]), Arc::new(AcceptAll)).await;
        assert!(erin.hub.wait_online(10 * SECONDS).await);
        let items = erin.hub.mail_fetch(10).await.unwrap();
        let got: Vec<u64> = items.iter().map(|i| i.id).collect();
        assert_eq!(got, acknowledged);

        // A comes back on its address under the same instance name (its old lines were
        // ended at its start); carol, who knows only A, is back, and bob at B sees her.
        let mut a = instance_at(&pg, root.path(), "a", None, a.quic, a.tcp);
        assert!(
            presence_of(&mut bob_events, carol.id(), true, 10 * SECONDS).await,
            "bob sees carol again, at the restarted A"
        );
        // A stops cleanly: it leaves the cluster at once, bob hears carol offline well
        // before the heartbeat timeout would tell.
        let stopping = Instant::now();
        assert!(a.terminate(), "A exits cleanly");
        assert!(presence_of(&mut bob_events, carol.id(), false, 5 * SECONDS).await);
        eprintln!("carol offline for bob {:?} after A's SIGTERM", stopping.elapsed());
        eprintln!("whole test {:?}", started.elapsed());
    })
    .await
}

/// A database connection killed while a deposit's transaction is half done (its letter
/// inserted, the commit not reached): nothing of it stays, the peer gets a clear error,
/// and the hub carries on with a fresh connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_mid_deposit_leaves_no_half_applied_letter() {
    bounded(async {
        let pg = Postgres::start();
        let root = tempfile::tempdir().unwrap();
        let a = instance(&pg, root.path(), "solo", None);
        let alice = node(fast_config(a.peer, a.addresses()), Arc::new(AcceptAll)).await;
        assert!(alice.hub.wait_online(10 * SECONDS).await);
        // The letters' recipient: registered here (a hub takes letters only for its peers), offline.
        let bob_node = node(fast_config(a.peer, a.addresses()), Arc::new(AcceptAll)).await;
        bob_node.hub.register("bob").await.unwrap();
        let bob = bob_node.id();
        bob_node.stop();

        // A trigger holds each deposit after its insert until the test lets go.
        let admin = pg.client().await;
        admin
            .batch_execute(
                "CREATE FUNCTION hold_deposit() RETURNS trigger AS $$
                 BEGIN PERFORM pg_advisory_lock_shared(4242); RETURN NEW; END $$ LANGUAGE plpgsql;
                 CREATE TRIGGER hold AFTER INSERT ON hub_letters
                 FOR EACH ROW EXECUTE FUNCTION hold_deposit();
                 SELECT pg_advisory_lock(4242);",
            )
            .await
            .unwrap();
        let deposit = {
            let hub = alice.hub.clone();
            tokio::spawn(async move { hub.mail_deposit(bob, b"half".to_vec()).await })
        };
        // The hub's backend waiting in the trigger, mid-transaction.
        let deadline = Instant::now() + 10 * SECONDS;
        let pid: i32 = loop {
            let row = admin
                .query_opt(
                    "SELECT pid FROM pg_stat_activity
                     WHERE application_name LIKE 'allpeers-hub%' AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap();
            if let Some(row) = row {
                break row.get(0);
            }
            assert!(
                Instant::now() < deadline,
                "the deposit never reached the trigger"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let killed: bool = admin
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap()
            .get(0);
        assert!(killed);
        match deposit.await.unwrap() {
            Err(HubError::Refused { message, .. }) => {
                assert!(message.contains("could not store the letter"), "{message}")
            }
            other => panic!("expected a clear error, got {other:?}"),
        }
        let n: i64 = admin
            .query_one("SELECT COUNT(*) FROM hub_letters", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "no half-deposited letter");

        // The hub is alive and its pool replaced the killed connection.
        admin
            .batch_execute("DROP TRIGGER hold ON hub_letters; SELECT pg_advisory_unlock(4242);")
            .await
            .unwrap();
        let id = alice
            .hub
            .mail_deposit(bob, b"whole".to_vec())
            .await
            .unwrap();
        let n: i64 = admin
            .query_one(
                "SELECT COUNT(*) FROM hub_letters WHERE id = $1",
                &[&(id as i64)],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 1);
        assert!(alice.hub.register("alice").await.is_ok());

        // The mailbox quotas hold in PostgreSQL too (3 letters per sender and recipient).
        for _ in 0..2 {
            alice.hub.mail_deposit(bob, b"more".to_vec()).await.unwrap();
        }
        match alice.hub.mail_deposit(bob, b"one too many".to_vec()).await {
            Err(e) => assert_eq!(e.app_code(), Some(code::MAILBOX_FULL), "{e}"),
            Ok(id) => panic!("a fourth letter was taken ({id})"),
        }
    })
    .await
}
