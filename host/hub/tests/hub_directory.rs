//! Our own hub's directory answers "which key and addresses is hub X" (issue 18), with real
//! hub processes on loopback: a hub learns another hub from the record a peer it hosts
//! fetched over a guest line to that hub, passes on only records signed by the hubs they
//! name, keeps its list to its own peers, and a forged record or a lying answer is refused.
//! In both backends: SQLite (one process) and a real PostgreSQL (Debian's `postgresql`,
//! started by the test on a loopback port; the directory shared by a hub's instances),
//! through the hub processes and, for the bounds (keys per name, hubs in all), through
//! the store itself.

mod common;

use std::sync::Arc;
use std::time::Duration;

use allpeers_hub::config::PostgresConfig;
use allpeers_hub::db::{Db, KnownHub};
use allpeers_hub::hubs::{MAX_KEYS_PER_NAME, MAX_KNOWN_HUBS};
use allpeers_hub::mailbox::{Mailbox, MailboxConfig};
use allpeers_hub::store::Store;
use allpeers_hub::store::postgres::PgStore;
use allpeers_hub_client::proto::{self, HubQuery, HubRequest, HubResponse, code};
use allpeers_hub_client::{HubClient, HubError, HubRecordError, RefuseAll, SignedHubRecord};
use allpeers_net::{Endpoint, EndpointConfig, Identity, ServiceFn};
use common::cluster::PgHub;
use common::{HubProc, Node, bounded, fast_config, node};

const UP: Duration = Duration::from_secs(10);

async fn homed_at(hub: &HubProc) -> Node {
    let n = node(fast_config(hub.peer, hub.addresses()), Arc::new(RefuseAll)).await;
    assert!(bounded(n.hub.wait_online(UP)).await, "home line");
    n
}

/// A guest line from `from`'s endpoint to `hub` (its key pinned).
async fn guest_line(from: &Endpoint, hub: PeerAt) -> HubClient {
    let mut config = fast_config(hub.0, hub.1);
    config.guest = true;
    let client = HubClient::start(from.clone(), config, Arc::new(RefuseAll))
        .await
        .unwrap();
    assert!(bounded(client.wait_online(UP)).await, "guest line");
    client
}

type PeerAt = (allpeers_model::PeerId, Vec<allpeers_net::Address>);

fn refused_with(r: Result<impl std::fmt::Debug, HubError>, want: u32) {
    match r {
        Err(e) => assert_eq!(e.app_code(), Some(want), "{e}"),
        Ok(v) => panic!("expected refusal {want}, got {v:?}"),
    }
}

/// Where hub `one.test` keeps its directory: SQLite files in its data dir, or a
/// PostgreSQL shared by its instances.
enum One {
    Sqlite(tempfile::TempDir),
    Postgres(PgHub),
}

impl One {
    fn sqlite() -> One {
        One::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> One {
        One::Postgres(PgHub::start("one.test", |_| serde_json::json!({})))
    }

    /// Starts (or restarts, on its data) `one.test`; in PostgreSQL as `instance`.
    fn start(&self, instance: &str) -> HubProc {
        match self {
            One::Sqlite(dir) => HubProc::spawn_named(dir.path(), "one.test", &[]),
            One::Postgres(hub) => hub.instance(instance),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_learns_other_hubs_from_its_peers_and_passes_on_only_their_own_records() {
    learns_other_hubs_and_passes_on_only_their_own_records(One::sqlite()).await
}

/// The same, `one.test` keeping its directory in PostgreSQL: kept across a restart of its
/// instance, and answered by another instance of it from the same tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_postgres_a_hub_learns_other_hubs_and_its_instances_share_what_it_learnt() {
    learns_other_hubs_and_passes_on_only_their_own_records(One::postgres()).await
}

async fn learns_other_hubs_and_passes_on_only_their_own_records(backend: One) {
    let d2 = tempfile::tempdir().unwrap();
    let one = backend.start("a");
    let two = HubProc::spawn_named(d2.path(), "two.test", &[]);

    let alice = homed_at(&one).await;
    let bob = homed_at(&one).await;
    // Nothing known of two.test yet.
    assert_eq!(bob.hub.lookup_hub_name("two.test").await.unwrap(), None);
    assert_eq!(bob.hub.lookup_hub_key(two.peer).await.unwrap(), None);

    // Alice reaches two over a guest line (TLS pinned to two's key), takes its record and
    // introduces it at home.
    let to_two = guest_line(&alice.endpoint, (two.peer, two.addresses())).await;
    let record = to_two.hub_record().await.unwrap();
    alice.hub.introduce_hub(&record).await.unwrap();

    // Bob finds it by name (folded) and by key: two's own record, two's key, two's addresses.
    let by_name = bob.hub.lookup_hub_name("Two.Test").await.unwrap().unwrap();
    let by_key = bob.hub.lookup_hub_key(two.peer).await.unwrap().unwrap();
    for r in [&by_name, &by_key] {
        assert_eq!((r.hub, r.name.as_str()), (two.peer, "two.test"));
        assert!(
            r.addresses.contains(&allpeers_net::Address::quic(two.quic)),
            "{r:?}"
        );
    }
    // Our hub answers for itself from itself.
    let own = bob.hub.lookup_hub_name("one.test").await.unwrap().unwrap();
    assert_eq!(own.hub, one.peer);
    // What it told is enough to reach two: a guest line pinned to that key comes up there.
    let bob_to_two = guest_line(&bob.endpoint, (by_name.hub, by_name.addresses.clone())).await;

    // A guest at one (carol, homed at two) gets one's own record, not the hubs it knows.
    let carol = homed_at(&two).await;
    let carol_at_one = guest_line(&carol.endpoint, (one.peer, one.addresses())).await;
    assert_eq!(
        carol_at_one
            .hub_record()
            .await
            .unwrap()
            .verify(now())
            .unwrap()
            .hub,
        one.peer
    );
    refused_with(
        carol_at_one.lookup_hub_key(two.peer).await,
        code::GUEST_REFUSED,
    );
    refused_with(
        carol_at_one.introduce_hub(&record).await,
        code::GUEST_REFUSED,
    );

    // Forged introductions are refused by signature, and lies about one itself by name.
    let mallory = Identity::generate();
    let mut tampered = record.clone();
    let last = tampered.record.len() - 1;
    tampered.record[last] ^= 1;
    let mut stolen = record.clone();
    stolen.signature = mallory.sign(&record.record).to_vec();
    let claims_one = SignedHubRecord::sign(&mallory, "one.test", &one.addresses());
    let ones_own = bob.hub.hub_record().await.unwrap();
    for forged in [&tampered, &stolen, &claims_one, &ones_own] {
        refused_with(alice.hub.introduce_hub(forged).await, code::BAD_RECORD);
    }

    // A squatter hosted at one introduces its own key under two's name (self-signed, so it
    // verifies). By key nothing changes: only two's key signs two's records. By name the
    // name is now ambiguous, and refused rather than given to either key.
    let squat = SignedHubRecord::sign(&mallory, "two.test", &one.addresses());
    bob.hub.introduce_hub(&squat).await.unwrap();
    assert_eq!(
        bob.hub.lookup_hub_key(two.peer).await.unwrap().unwrap().hub,
        two.peer
    );
    match alice.hub.lookup_hub_name("two.test").await {
        Err(HubError::AmbiguousHub { keys: 2, .. }) => {}
        other => panic!("a name under two keys must be refused: {other:?}"),
    }

    // A record introduced again later replaces the older one (fresh addresses win), and an
    // old one replayed does not bring the old back.
    let newer = to_two.hub_record().await.unwrap();
    alice.hub.introduce_hub(&newer).await.unwrap();
    alice.hub.introduce_hub(&record).await.unwrap();
    let kept = bob.hub.lookup_hub_key(two.peer).await.unwrap().unwrap();
    assert_eq!(kept.issued_at, newer.verify(now()).unwrap().issued_at);

    // Kept across a restart of one, the squatter's record too (the name stays ambiguous).
    drop(one);
    let one = backend.start("a");
    let dave = homed_at(&one).await;
    // In PostgreSQL another instance of one answers from the same tables.
    let other = match &backend {
        One::Postgres(hub) => {
            let b = hub.instance("b");
            let erin = homed_at(&b).await;
            Some((b, erin))
        }
        One::Sqlite(_) => None,
    };
    let asked = std::iter::once(&dave).chain(other.as_ref().map(|(_, erin)| erin));
    for n in asked {
        let kept = n.hub.lookup_hub_key(two.peer).await.unwrap().unwrap();
        assert_eq!(
            (kept.hub, kept.issued_at),
            (two.peer, newer.verify(now()).unwrap().issued_at)
        );
        assert!(matches!(
            n.hub.lookup_hub_name("two.test").await,
            Err(HubError::AmbiguousHub { keys: 2, .. })
        ));
        n.stop();
    }

    for c in [&to_two, &bob_to_two, &carol_at_one] {
        c.stop();
    }
    for n in [&alice, &bob, &carol] {
        n.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_introductions_are_rate_limited_per_peer() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = HubProc::spawn_named(d1.path(), "one.test", &[]);
    let two = HubProc::spawn_named(d2.path(), "two.test", &[]);
    let alice = homed_at(&one).await;
    let to_two = guest_line(&alice.endpoint, (two.peer, two.addresses())).await;
    let record = to_two.hub_record().await.unwrap();
    let mut limited = 0;
    for _ in 0..60 {
        if let Err(e) = alice.hub.introduce_hub(&record).await {
            assert_eq!(e.app_code(), Some(code::RATE_LIMITED), "{e}");
            limited += 1;
        }
    }
    // A burst of 16 at 1 a second: most of 60 quick ones are refused.
    assert!(limited >= 30, "only {limited} of 60 refused");
    to_two.stop();
    alice.stop();
}

/// A hub (our pinned home, or any) that lies: its answers carry records of other keys or
/// altered ones. The client refuses each instead of passing a wrong key or address on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_directory_answer_is_refused_by_the_client() {
    common::init_logs();
    let liar = Identity::generate();
    let liar_id = liar.peer_id();
    let two = Identity::generate();
    let mallory = Identity::generate();
    let addr = allpeers_net::Address::quic("127.0.0.1:9".parse().unwrap());
    let twos = SignedHubRecord::sign(&two, "two.test", &[addr]);
    let mallorys = SignedHubRecord::sign(&mallory, "two.test", &[addr]);
    let mut altered = twos.clone();
    let last = altered.record.len() - 1;
    altered.record[last] ^= 1;
    let other_name = SignedHubRecord::sign(&two, "three.test", &[addr]);
    let too_many = vec![twos.clone(); proto::MAX_HUB_RECORDS + 1];

    let endpoint = Endpoint::bind(liar, EndpointConfig::loopback())
        .await
        .unwrap();
    let two_key = two.peer_id();
    let (m, a, o, t, tw) = (mallorys, altered, other_name, too_many, twos);
    endpoint.register(
        proto::registry_ns(),
        ServiceFn::new()
            .max_message_size(proto::REGISTRY_LIMIT)
            .on_request(move |_ctx, req: HubRequest| {
                let resp = match req {
                    // Its own record? Someone else's.
                    HubRequest::HubRecord => HubResponse::HubRecord(tw.clone()),
                    // Where is two? Mallory's record (another key).
                    HubRequest::LookupHub(HubQuery::Key(k)) if k == two_key => {
                        HubResponse::Hubs(vec![m.clone()])
                    }
                    HubRequest::LookupHub(HubQuery::Key(_)) => HubResponse::Hubs(vec![a.clone()]),
                    HubRequest::LookupHub(HubQuery::Name(n)) if n == "two.test" => {
                        HubResponse::Hubs(vec![o.clone()])
                    }
                    HubRequest::LookupHub(HubQuery::Name(_)) => HubResponse::Hubs(t.clone()),
                    _ => HubResponse::HubIntroduced,
                };
                async move { Ok(resp) }
            }),
    );
    let listening = endpoint.local_addresses();
    let n = node(fast_config(liar_id, listening), Arc::new(RefuseAll)).await;
    let hub = &n.hub;
    assert!(matches!(
        bounded(hub.hub_record()).await,
        Err(HubError::HubRecord(HubRecordError::WrongHub))
    ));
    assert!(matches!(
        bounded(hub.lookup_hub_key(two_key)).await,
        Err(HubError::HubRecord(HubRecordError::WrongHub))
    ));
    assert!(matches!(
        bounded(hub.lookup_hub_key(mallory.peer_id())).await,
        Err(HubError::HubRecord(_))
    ));
    assert!(matches!(
        bounded(hub.lookup_hub_name("two.test")).await,
        Err(HubError::HubRecord(HubRecordError::WrongHub))
    ));
    assert!(matches!(
        bounded(hub.lookup_hub_name("four.test")).await,
        Err(HubError::BadAnswer(_))
    ));
    n.stop();
    endpoint.close();
}

fn now() -> u64 {
    allpeers_model::hlc::now_ms()
}

/// The directory's store in one backend, opened on the same data each time.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(common::postgres::Postgres),
}

impl Backend {
    async fn open(&self) -> Store {
        match self {
            Backend::Sqlite(dir) => Store::sqlite(
                Db::open(&dir.path().join("hub.db")).unwrap(),
                Mailbox::open(
                    &dir.path().join("mail.db"),
                    MailboxConfig::default(),
                    [7; 32],
                )
                .unwrap(),
            ),
            Backend::Postgres(pg) => {
                let config = PostgresConfig {
                    url: pg.url(),
                    instance: "store-test".into(),
                    ..PostgresConfig::default()
                };
                Store::Postgres(
                    PgStore::open(config, MailboxConfig::default(), [7; 32])
                        .await
                        .unwrap(),
                )
            }
        }
    }

    /// Runs `sqlite` on the SQLite file, or `postgres` on the database.
    async fn execute(&self, sqlite: &str, postgres: &str) {
        match self {
            Backend::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(dir.path().join("hub.db")).unwrap();
                conn.execute_batch(sqlite).unwrap();
            }
            Backend::Postgres(pg) => pg.client().await.batch_execute(postgres).await.unwrap(),
        }
    }

    async fn count(&self) -> i64 {
        match self {
            Backend::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("hub.db"))
                .unwrap()
                .query_row("SELECT COUNT(*) FROM hubs", [], |r| r.get(0))
                .unwrap(),
            Backend::Postgres(pg) => pg
                .client()
                .await
                .query_one("SELECT COUNT(*) FROM hub_known_hubs", &[])
                .await
                .unwrap()
                .get(0),
        }
    }
}

/// A record of a fresh key under `name` (the store keeps the bytes as they came).
fn known(name: &str, issued_at: u64, introduced: u64) -> KnownHub {
    KnownHub {
        hub: Identity::generate().peer_id(),
        name: name.into(),
        record: format!("{name} {issued_at}").into_bytes(),
        issued_at,
        introduced,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_directory_keeps_newest_records_within_its_bounds_across_a_reopen() {
    directory_bounds(Backend::Sqlite(tempfile::tempdir().unwrap())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_directory_keeps_newest_records_within_its_bounds_across_a_reopen() {
    directory_bounds(Backend::Postgres(common::postgres::Postgres::start())).await
}

/// What [`Store`] keeps of other hubs, with the hub's own bounds: a newer record of a key
/// replaces an older one and an old one replayed does not come back; at most
/// [`MAX_KEYS_PER_NAME`] keys under a name and [`MAX_KNOWN_HUBS`] hubs in all, the least
/// recently introduced going first; all of it kept when the store is opened again.
async fn directory_bounds(backend: Backend) {
    bounded(async {
        let store = backend.open().await;
        let two = known("two.test", 10, 1);
        store.introduce_hub(&two).await.unwrap();
        let newer = KnownHub {
            record: b"two 20".to_vec(),
            issued_at: 20,
            introduced: 2,
            ..two
        };
        store.introduce_hub(&newer).await.unwrap();
        let replayed = KnownHub {
            record: b"two 10".to_vec(),
            issued_at: 10,
            introduced: 3,
            ..newer
        };
        store.introduce_hub(&replayed).await.unwrap();
        let key = replayed.hub;
        assert_eq!(store.hub_of_key(&key, 0).await.unwrap(), Some(b"two 20".to_vec()));
        assert_eq!(store.hub_of_key(&key, 20).await.unwrap(), None, "stale");

        // More keys under two.test than a name keeps: the least recently introduced (two's
        // own, introduced at 3) goes; the newest come first.
        let squatters: Vec<KnownHub> = (0..MAX_KEYS_PER_NAME as u64)
            .map(|i| known("two.test", 5, 10 + i))
            .collect();
        for s in &squatters {
            store.introduce_hub(s).await.unwrap();
        }
        let named = store.hubs_named("two.test", 0).await.unwrap();
        let newest_first: Vec<Vec<u8>> = squatters.iter().rev().map(|s| s.record.clone()).collect();
        assert_eq!(named, newest_first);
        assert_eq!(store.hub_of_key(&key, 0).await.unwrap(), None, "pushed out");
        drop(store);

        // Opened again: all there. Then filled to the cap (fillers introduced before
        // everything else, filler1 first): one more pushes out filler1 alone.
        let store = backend.open().await;
        assert_eq!(store.hubs_named("two.test", 0).await.unwrap(), newest_first);
        let fillers = MAX_KNOWN_HUBS - MAX_KEYS_PER_NAME;
        backend
            .execute(
                &format!(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {fillers})
                     INSERT INTO hubs (hub, name, record, issued_at, introduced)
                     SELECT 'filler' || i, 'filler' || i || '.test', X'00', 5, i - {fillers} FROM n;"
                ),
                &format!(
                    "INSERT INTO hub_known_hubs (hub, name, record, issued_at, introduced)
                     SELECT 'filler' || i, 'filler' || i || '.test', '\\x00', 5, i - {fillers}
                     FROM generate_series(1, {fillers}) i;"
                ),
            )
            .await;
        assert_eq!(backend.count().await, MAX_KNOWN_HUBS as i64);
        let three = known("three.test", 5, 100);
        store.introduce_hub(&three).await.unwrap();
        assert_eq!(backend.count().await, MAX_KNOWN_HUBS as i64, "capped");
        assert_eq!(
            store.hubs_named("three.test", 0).await.unwrap(),
            vec![three.record.clone()]
        );
        assert!(store.hubs_named("filler1.test", 0).await.unwrap().is_empty(), "oldest gone");
        assert_eq!(store.hubs_named("filler2.test", 0).await.unwrap().len(), 1);
        assert_eq!(store.hubs_named("two.test", 0).await.unwrap(), newest_first);
    })
    .await
}
