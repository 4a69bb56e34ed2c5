//! Cluster mode against a real PostgreSQL (Debian's `postgresql`, started by the test in
//! a temporary directory on a loopback port): two `allpeers-hub` instances behind one key
//! and one database; peers on different instances see each other, chat, signal and get
//! their letters; an instance killed, its peers move to the other and nothing acknowledged
//! is lost; a database connection killed mid-deposit leaves no half-applied letter; the
//! e-mail gateway's queue shared (Debian's aiosmtpd), each mail sent once, a dead
//! instance's mails sent by the other; a relay between peers at two instances (a hop
//! between the instances, single-use tickets, quotas counted in the database), the hop's
//! instance killed mid-relay, and the round trips of a relay within one instance and across
//! two.

mod common;
#[path = "../../../tests/fixtures/smtpd.rs"]
mod smtpd;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use allpeers_hub::mail::proto::{MailRequest, MailResponse, mail_ns};
use allpeers_hub_client::proto::code;
use allpeers_hub_client::{AcceptAll, Availability, HubError, HubEvent, PeerStatus, WatchHolder};
use allpeers_net::{Address, Identity};
use common::cluster::{PgHub, online_at, presence_of, sees_online};
use common::*;
use mailparse::MailHeaderMap as _;

const SECONDS: Duration = Duration::from_secs(1);

/// The hub `hub.test` on a fresh PostgreSQL, its instances keeping at most 3 letters per
/// sender and recipient.
fn mailbox_hub() -> PgHub {
    PgHub::start(
        "hub.test",
        |_| serde_json::json!({"mailbox": {"max_letters_per_sender": 3}}),
    )
}

/// The hub for the relay tests: open watch policy (presence tells the test when an
/// instance's mirror has a peer), one relay per peer at once, every relayed byte tapped
/// (`<data dir>/relay.tap`).
fn relay_hub() -> PgHub {
    PgHub::start("hub.test", |dir: &Path| {
        serde_json::json!({
            "watch_policy": "open",
            "relay": {"max_concurrent_per_peer": 1, "tap": dir.join("relay.tap")},
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_presence_signals_and_letters_and_survive_one_dying() {
    bounded(async {
        let started = Instant::now();
        let cluster = mailbox_hub();
        eprintln!("postgres up in {:?}", started.elapsed());
        let mut a = cluster.instance("a");
        let b = cluster.instance("b");
        assert_eq!(a.peer, b.peer, "one hub key");
        let hub = a.peer;
        let (at_a, at_b) = (Address::tcp(a.tcp), Address::tcp(b.tcp));

        // alice and carol at A (carol knows only A), bob at B; alice and bob know both.
        let alice = online_at(hub, &[at_a, at_b]).await;
        let carol = online_at(hub, &[at_a]).await;
        let bob = online_at(hub, &[at_b, at_a]).await;
        let mut bob_events = bob.hub.events();
        let mut alice_events = alice.hub.events();

        // One directory: registered at A, found at B.
        alice.hub.register("alice").await.unwrap();
        // B learns of lines at A through NOTIFY: asked at once, it may not have heard yet.
        until("alice's line at A seen from B", 10 * SECONDS, async || {
            bob.hub
                .resolve("alice@hub.test")
                .await
                .ok()
                .flatten()
                .is_some_and(|rec| rec.peer == alice.id() && rec.online)
        })
        .await;

        // Presence across instances, mutual rule intact.
        bob.hub.watch(WatchHolder::Contacts, &[alice.id(), carol.id()]).await;
        alice.hub.watch(WatchHolder::Contacts, &[bob.id()]).await;
        carol.hub.watch(WatchHolder::Contacts, &[bob.id()]).await;
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
        let admin = cluster.pg.client().await;
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
        let mut a = cluster.instance_at("a", a.quic, a.tcp);
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
        let cluster = mailbox_hub();
        let a = cluster.instance("solo");
        let alice = online_at(a.peer, &a.addresses()).await;
        // The letters' recipient: registered here (a hub takes letters only for its peers), offline.
        let bob_node = online_at(a.peer, &a.addresses()).await;
        bob_node.hub.register("bob").await.unwrap();
        let bob = bob_node.id();
        bob_node.stop();

        // A trigger holds each deposit after its insert until the test lets go.
        let admin = cluster.pg.client().await;
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

/// The e-mail gateway on PostgreSQL: two instances deliver from the one queue, each mail
/// exactly once. The SMTP server leaves the first two mails' RCPT unanswered (stuck before
/// any message data); the instance sending them is killed, and the other sends them as soon
/// as the cluster finds it dead, well before their lease would run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_queue_shared_by_two_instances_each_mail_once_and_a_dead_ones_taken_over() {
    if !smtpd::have_aiosmtpd() {
        eprintln!("SKIPPED: python3-aiosmtpd is not installed (tests/run.sh installs it)");
        return;
    }
    bounded(async {
        let started = Instant::now();
        let smtp_dir = tempfile::tempdir().unwrap();
        let cert = smtpd::make_cert(smtp_dir.path());
        let hold = smtpd::SmtpdOptions {
            hold: 2,
            ..smtpd::SmtpdOptions::default()
        };
        let smtp = smtpd::Smtpd::start(smtp_dir.path(), smtpd::free_port(), &cert, &hold)
            .expect("start aiosmtpd");
        // timeout_secs 8: a held mail at the surviving instance is retried after 8 s; the
        // lease is 2 x 8 + 10 = 26 s, so a takeover within 20 s is the dead-instance rule.
        let mail = serde_json::json!({
            "smtp": {"host": "localhost", "port": smtp.port, "security": "starttls",
                     "root_certs": [cert.0], "pool_max": 4, "timeout_secs": 8},
            "http": {"listen": "127.0.0.1:0"},
            "retry": {"first_ms": 200, "max_ms": 1000, "give_up_after_secs": 60},
        });
        let cluster = PgHub::start("hub.test", move |_| serde_json::json!({"mail": mail}));
        let a = cluster.instance("a");
        let b = cluster.instance("b");
        let alice = online_at(a.peer, &[Address::tcp(a.tcp)]).await;
        alice.hub.register("alice").await.unwrap();

        const MAILS: usize = 8;
        for i in 0..MAILS {
            let invite = MailRequest::Invite {
                address: format!("guest{i}@peer.test"),
                invite_code: "apinvite1mfrggzdfmztwq2lknnwg23tpobyxe43uov3ho6dzpi".into(),
                note: None,
            };
            let answer: MailResponse = alice
                .endpoint
                .request(a.peer, &mail_ns(), &invite)
                .await
                .unwrap();
            assert_eq!(answer, MailResponse::Invited);
        }
        let admin = cluster.pg.client().await;
        let states = async || -> (i64, i64) {
            let r = admin
                .query_one(
                    "SELECT COUNT(*) FILTER (WHERE state = 'sent'),
                            COUNT(*) FILTER (WHERE state = 'queued') FROM hub_mail_queue",
                    &[],
                )
                .await
                .unwrap();
            (r.get(0), r.get(1))
        };
        until("two mails held, the rest sent", 20 * SECONDS, async || {
            smtp.held() == 2 && states().await == (MAILS as i64 - 2, 2)
        })
        .await;
        let senders: Vec<(String, i64)> = admin
            .query(
                "SELECT lease_owner, COUNT(*) FROM hub_mail_queue GROUP BY 1 ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        eprintln!("attempts by instance before the kill: {senders:?}");
        let (held, held_by): (Vec<i64>, Vec<String>) = admin
            .query(
                "SELECT id, lease_owner FROM hub_mail_queue WHERE state = 'queued' ORDER BY 2",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
            .unzip();
        // Kill the instance holding the first held mail (both, often).
        let (mut victim, survivor) = if held_by[0] == "a" {
            (a, "b")
        } else {
            (b, "a")
        };
        let killed = Instant::now();
        victim.child.kill().unwrap();
        victim.child.wait().unwrap();
        until("every mail sent", 30 * SECONDS, async || {
            states().await == (MAILS as i64, 0)
        })
        .await;
        let taken_over = killed.elapsed();
        eprintln!("all sent {taken_over:?} after the kill (held by {held_by:?})");
        let sent_by: Vec<String> = admin
            .query(
                "SELECT lease_owner FROM hub_mail_queue WHERE id = ANY($1)",
                &[&held],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(sent_by, [survivor; 2], "the survivor sent the held mails");
        // Each mail exactly once: nothing is queued any more, so nothing more is sent.
        let mut to: Vec<String> = smtp
            .mails()
            .iter()
            .map(|m| {
                let raw = std::fs::read(m).unwrap();
                let parsed = mailparse::parse_mail(&raw).unwrap();
                parsed.headers.get_first_value("To").unwrap()
            })
            .collect();
        to.sort();
        let expected: Vec<String> = (0..MAILS).map(|i| format!("guest{i}@peer.test")).collect();
        assert_eq!(to, expected, "every invitation delivered once");
        // Taken over when the cluster found the instance dead (1.5 s here), not at the
        // lease's end (26 s), unless the survivor had held one too (then its 8 s deadline).
        assert!(taken_over < 20 * SECONDS, "{taken_over:?}");
        eprintln!("whole test {:?}", started.elapsed());
    })
    .await
}

/// A guest line (a peer homed at another hub) is recorded for the cluster's other
/// instances without being presence: a signal from a peer at one instance reaches a guest
/// whose line is at the other, and once the guest's line ends the signal answers
/// "offline".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_reaches_a_guest_whose_line_is_at_another_instance() {
    bounded(async {
        let cluster = mailbox_hub();
        let a = cluster.instance("a");
        let b = cluster.instance("b");
        let alice = online_at(a.peer, &[Address::tcp(a.tcp)]).await;
        let mut guest_config = fast_config(b.peer, vec![Address::tcp(b.tcp)]);
        guest_config.guest = true;
        let guest = node(guest_config, Arc::new(AcceptAll)).await;
        assert!(guest.hub.wait_online(10 * SECONDS).await);
        alice.hub.register("alice").await.unwrap();
        let mut guest_events = guest.hub.events();

        // The guest's line is up at B; A learns of it through the cluster (bounded retry:
        // the line's event travels through PostgreSQL).
        let deadline = Instant::now() + 10 * SECONDS;
        loop {
            match alice.hub.signal(guest.id(), b"to the guest".to_vec()).await {
                Ok(()) => break,
                Err(e) if e.app_code() == Some(code::OFFLINE) && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("signal to the guest at B: {e}"),
            }
        }
        let e = wait_event(&mut guest_events, 5 * SECONDS, |e| matches!(e, HubEvent::Signal { .. })).await;
        assert!(
            matches!(&e, Some(HubEvent::Signal { from, body, .. }) if *from == alice.id() && body == b"to the guest"),
            "{e:?}"
        );

        // Not presence: alice, watching the guest, never sees it online.
        let mut alice_events = alice.hub.events();
        alice.hub.watch(WatchHolder::Contacts, &[guest.id()]).await;
        assert!(
            !presence_of(&mut alice_events, guest.id(), true, SECONDS).await,
            "a guest line is not presence"
        );

        // The guest leaves: the signal answers "offline" again once B's line end arrives.
        guest.stop();
        let deadline = Instant::now() + 10 * SECONDS;
        loop {
            match alice.hub.signal(guest.id(), b"gone?".to_vec()).await {
                Err(e) if e.app_code() == Some(code::OFFLINE) => break,
                _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
                other => panic!("expected offline, got {other:?}"),
            }
        }
    })
    .await
}

/// Presents `ticket` as a hop from another instance would, from a stranger's key, to the
/// instance at `at`: its answer.
async fn present_ticket(
    hub: allpeers_model::PeerId,
    at: std::net::SocketAddr,
    ticket: [u8; 16],
) -> allpeers_hub_client::proto::RelayReady {
    use allpeers_hub::cluster::relay::{InstanceJoin, instance_relay_ns};
    let stranger = allpeers_net::Endpoint::bind(
        Identity::generate(),
        allpeers_net::EndpointConfig::loopback(),
    )
    .await
    .unwrap();
    stranger.add_peer_address(hub, Address::tcp(at));
    let (mut send, mut recv) = stranger
        .open_stream(hub, &instance_relay_ns())
        .await
        .unwrap();
    send.write_frame(
        &allpeers_net::service::encode(&InstanceJoin { ticket }).unwrap(),
        1024,
    )
    .await
    .unwrap();
    let f = tokio::time::timeout(10 * SECONDS, recv.read_frame(1024))
        .await
        .expect("an answer")
        .unwrap()
        .unwrap();
    allpeers_net::service::decode(&f).unwrap()
}

/// The ticket of the relay from `from` to `to`, and whether it was used.
async fn ticket_of(
    admin: &tokio_postgres::Client,
    from: allpeers_model::PeerId,
    to: allpeers_model::PeerId,
) -> ([u8; 16], bool) {
    let row = admin
        .query_one(
            "SELECT ticket, used FROM hub_relay_tickets WHERE from_peer = $1 AND to_peer = $2",
            &[&from.to_string(), &to.to_string()],
        )
        .await
        .unwrap();
    let ticket: Vec<u8> = row.get(0);
    (ticket.try_into().unwrap(), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_at_two_instances_get_a_relay_through_a_hop_with_single_use_tickets() {
    use allpeers_hub_client::proto::{self, HubRequest, HubResponse, RelayReady};
    bounded(async {
        let cluster = relay_hub();
        let a = cluster.instance("a");
        let b = cluster.instance("b");
        let hub = a.peer;
        let (at_a, at_b) = ([Address::tcp(a.tcp)], [Address::tcp(b.tcp)]);
        // alice, dave, mallory at A; bob, carol, erin at B.
        let alice = online_at(hub, &at_a).await;
        let dave = online_at(hub, &at_a).await;
        let mallory = online_at(hub, &at_a).await;
        let bob = online_at(hub, &at_b).await;
        let carol = online_at(hub, &at_b).await;
        let erin = online_at(hub, &at_b).await;
        // A's mirror has bob's and carol's lines once alice and dave see them online.
        sees_online(&alice, bob.id()).await;
        sees_online(&dave, carol.id()).await;
        let admin = cluster.pg.client().await;

        // dave asks A for a relay to carol at B (raw, to hold the session): granted once
        // carol agreed at B.
        let granted: HubResponse = dave
            .endpoint
            .request(hub, &proto::registry_ns(), &HubRequest::Relay { target: carol.id() })
            .await
            .unwrap();
        let HubResponse::Relay(session) = granted else { panic!("{granted:?}") };
        // A session is its peer's: mallory (at A too) cannot join dave's.
        let (mut send, mut recv) = mallory.endpoint.open_stream(hub, &proto::relay_ns()).await.unwrap();
        send.write_frame(&allpeers_net::service::encode(&proto::RelayJoin { session: session.session }).unwrap(), 1024)
            .await
            .unwrap();
        let f = recv.read_frame(1024).await.unwrap().unwrap();
        let ready: RelayReady = allpeers_net::service::decode(&f).unwrap();
        assert!(matches!(&ready, RelayReady::Refused(why) if why.contains("not your")), "{ready:?}");
        // The ticket A wrote is for B: presented at A it is refused (and stays unused).
        let (ticket, used) = ticket_of(&admin, dave.id(), carol.id()).await;
        assert!(!used);
        let r = present_ticket(hub, a.tcp, ticket).await;
        assert!(matches!(r, RelayReady::Refused(_)), "{r:?}");
        // Expired before dave joins: B refuses A's hop, dave's join is refused.
        admin
            .execute(
                "UPDATE hub_relay_tickets SET expires = now() - interval '1 second' WHERE ticket = $1",
                &[&ticket.as_slice()],
            )
            .await
            .unwrap();
        let (mut send, mut recv) = dave.endpoint.open_stream(hub, &proto::relay_ns()).await.unwrap();
        send.write_frame(&allpeers_net::service::encode(&proto::RelayJoin { session: session.session }).unwrap(), 1024)
            .await
            .unwrap();
        let f = tokio::time::timeout(20 * SECONDS, recv.read_frame(1024)).await.unwrap().unwrap().unwrap();
        let ready: RelayReady = allpeers_net::service::decode(&f).unwrap();
        assert!(matches!(&ready, RelayReady::Refused(why) if why.contains("expired")), "{ready:?}");

        // alice (A) and bob (B): a relayed connection, TLS end to end between them.
        assert!(alice.endpoint.peer_addresses(&bob.id()).is_empty());
        let conn = alice.hub.connect_relayed(bob.id()).await.unwrap();
        assert_eq!(conn.path(), allpeers_net::PathKind::Relayed);
        assert_eq!(conn.remote_peer(), bob.id());
        let marker = "PLAINTEXT-MARKER-0123456789-".repeat(4096);
        let reply: String = alice.endpoint.request(bob.id(), &echo_ns(), &marker).await.unwrap();
        assert_eq!(reply, marker);
        let back = bob.endpoint.wait_connection(&alice.id(), 5 * SECONDS).await.unwrap();
        assert_eq!(back.path(), allpeers_net::PathKind::Relayed);
        let r: String = bob.endpoint.request(alice.id(), &echo_ns(), &"hi back".to_string()).await.unwrap();
        assert_eq!(r, "hi back");
        // Both instances forwarded the bytes (each taps what it copies): no plaintext.
        for tap in [a.dir.join("relay.tap"), b.dir.join("relay.tap")] {
            let tapped = std::fs::read(&tap).unwrap();
            assert!(tapped.len() > 2 * marker.len(), "{}: {} bytes", tap.display(), tapped.len());
            let needle = b"PLAINTEXT-MARKER";
            assert!(!tapped.windows(needle.len()).any(|w| w == needle), "plaintext crossed {}", tap.display());
            assert!(!tapped.windows(7).any(|w| w == b"hi back"));
        }

        // Its ticket was used: presented again (at B, where it was for) it is refused.
        let (ticket, used) = ticket_of(&admin, alice.id(), bob.id()).await;
        assert!(used);
        let r = present_ticket(hub, b.tcp, ticket).await;
        assert!(matches!(&r, RelayReady::Refused(why) if why.contains("used")), "{r:?}");

        // Quotas are the cluster's: bob's one relay was granted by A, and B refuses erin
        // a relay to him (B alone has granted bob nothing).
        let e = erin.hub.connect_relayed(bob.id()).await.unwrap_err();
        assert_eq!(e.app_code(), Some(code::QUOTA), "{e}");
        assert!(e.to_string().contains(&bob.id().to_string()), "{e}");
        // The relay still carries.
        let r: String = alice.endpoint.request(bob.id(), &echo_ns(), &"still".to_string()).await.unwrap();
        assert_eq!(r, "still");
    })
    .await
}

/// A hop dying mid-relay: alice (A) and bob (B) talk through a relay across instances and B
/// is killed (SIGKILL) while requests go back and forth. Both relayed connections close
/// with an error, bounded by the cluster's instance timeout rather than QUIC's idle timeout
/// (the hop is QUIC between the instances, and a dead process sends nothing); every request
/// answered before was answered right, the one in flight fails instead of hanging; bob moves
/// to A, and they relay again through A (alice's one relay slot was freed by the cut).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hop_dying_mid_relay_closes_both_ends_and_the_peers_relay_again_through_the_survivor() {
    bounded(async {
        let cluster = relay_hub();
        let a = cluster.instance("a");
        let mut b = cluster.instance("b");
        let hub = a.peer;
        let (at_a, at_b) = (Address::tcp(a.tcp), Address::tcp(b.tcp));
        let alice = online_at(hub, &[at_a]).await;
        let bob = online_at(hub, &[at_b, at_a]).await;
        let mut bob_events = bob.hub.events();
        sees_online(&alice, bob.id()).await;

        let conn = alice.hub.connect_relayed(bob.id()).await.unwrap();
        assert_eq!(conn.path(), allpeers_net::PathKind::Relayed);
        let back = bob.endpoint.wait_connection(&alice.id(), 5 * SECONDS).await.unwrap();
        assert_eq!(back.path(), allpeers_net::PathKind::Relayed);

        // Requests back and forth, each answered (acknowledged) or failed, never hanging
        // past the endpoint's own request timeout.
        let talker = alice.endpoint.clone();
        let to = bob.id();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        let talking = tokio::spawn(async move {
            let mut answered = Vec::new();
            for i in 0u32.. {
                let text = format!("message {i}");
                let sent = Instant::now();
                match talker.request::<String, String>(to, &echo_ns(), &text).await {
                    Ok(reply) => {
                        assert_eq!(reply, text, "an answer is the right one");
                        answered.push(i);
                        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Err(e) => return (answered, Some((i, e.to_string(), sent.elapsed()))),
                }
                if stop_rx.try_recv().is_ok() {
                    return (answered, None);
                }
            }
            unreachable!()
        });
        // Some requests through the hop first.
        until("requests through the hop", 10 * SECONDS, async || {
            count.load(std::sync::atomic::Ordering::SeqCst) >= 5
        })
        .await;

        let killed = Instant::now();
        b.child.kill().unwrap();
        let _ = b.child.wait();
        let closes = |c: allpeers_net::Connection| async move {
            let why = tokio::time::timeout(40 * SECONDS, c.closed()).await;
            (why.expect("the relayed connection closes"), killed.elapsed())
        };
        let ((alice_closed, alice_after), (bob_closed, bob_after)) =
            tokio::join!(closes(conn.clone()), closes(back.clone()));
        eprintln!(
            "after the kill: alice's relayed connection closed in {alice_after:?} ({alice_closed}), \
             bob's in {bob_after:?} ({bob_closed})"
        );
        // The cut comes with the cluster finding B dead (instance_timeout_ms 1500, heartbeat
        // 200), well before QUIC's 30 s idle timeout.
        assert!(alice_after < 8 * SECONDS, "alice waited {alice_after:?}");
        assert!(bob_after < 8 * SECONDS, "bob waited {bob_after:?}");
        let _ = stop_tx.send(());
        let (answered, failed) = tokio::time::timeout(20 * SECONDS, talking)
            .await
            .expect("the request in flight ends")
            .unwrap();
        assert!(answered.len() >= 2, "{answered:?}");
        assert_eq!(answered, (0..answered.len() as u32).collect::<Vec<_>>());
        let (failed_at, why, took) = failed.expect("the request in flight failed");
        eprintln!("{} answered; request {failed_at} failed after {took:?}: {why}", answered.len());

        // bob's line moves to A (a newer line: A takes it over B's, with no offline flap
        // if it comes before A finds B dead).
        assert!(
            wait_event(&mut bob_events, 15 * SECONDS, |e| matches!(e, HubEvent::Online { .. }))
                .await
                .is_some()
        );
        until("bob's line at A", 15 * SECONDS, async || {
            bob.hub.state() == allpeers_hub_client::HubState::Online
                && bob.endpoint.connection(&hub).is_some_and(|c| c.remote_addr() == a.tcp)
        })
        .await;
        // A relay again, now within A: alice's only slot (max_concurrent_per_peer 1) was
        // freed when the cut ended the first splice.
        let again = alice.hub.connect_relayed(bob.id()).await.unwrap();
        assert_eq!(again.path(), allpeers_net::PathKind::Relayed);
        let text = format!("message {failed_at}");
        let reply: String = alice.endpoint.request(bob.id(), &echo_ns(), &text).await.unwrap();
        assert_eq!(reply, text, "the failed request, sent again, gets through");
        let admin = cluster.pg.client().await;
        let rows: i64 = admin
            .query_one("SELECT COUNT(*) FROM hub_relays", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 2, "only the new relay holds slots");
    })
    .await
}

/// The latency a hop adds: round trips of small requests over a relay within one instance
/// (alice and carol at A) and across two (dave at A, bob at B), interleaved so load on the
/// machine hits both alike. Printed (`--no-capture`); recorded in docs/benchmarks.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_round_trips_within_one_instance_and_across_two() {
    const ROUNDS: usize = 300;
    bounded(async {
        let cluster = relay_hub();
        let a = cluster.instance("a");
        let b = cluster.instance("b");
        let hub = a.peer;
        let (at_a, at_b) = ([Address::tcp(a.tcp)], [Address::tcp(b.tcp)]);
        let alice = online_at(hub, &at_a).await;
        let carol = online_at(hub, &at_a).await;
        let dave = online_at(hub, &at_a).await;
        let bob = online_at(hub, &at_b).await;
        sees_online(&dave, bob.id()).await;
        let within = alice.hub.connect_relayed(carol.id()).await.unwrap();
        let across = dave.hub.connect_relayed(bob.id()).await.unwrap();
        for c in [&within, &across] {
            assert_eq!(c.path(), allpeers_net::PathKind::Relayed);
        }
        let text = "x".repeat(64);
        let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
        // A few rounds to warm both paths up, then the measured ones, alternating.
        for round in 0..ROUNDS + 20 {
            for (i, (from, to)) in [(&alice, carol.id()), (&dave, bob.id())].iter().enumerate() {
                let t = Instant::now();
                let reply: String = from.endpoint.request(*to, &echo_ns(), &text).await.unwrap();
                let took = t.elapsed();
                assert_eq!(reply, text);
                if round >= 20 {
                    times[i].push(took);
                }
            }
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        for (what, t) in ["within one instance", "across two instances"]
            .iter()
            .zip(times.iter_mut())
        {
            t.sort();
            let pick = |q: f64| t[((t.len() as f64 * q) as usize).min(t.len() - 1)];
            eprintln!(
                "relay round trip {what}: {} rounds, p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
                t.len(),
                pick(0.50),
                pick(0.90),
                pick(0.99),
                t[t.len() - 1]
            );
        }
        eprintln!("load average: {}", load.trim());
    })
    .await
}
