//! Our own hub's directory answers "which key and addresses is hub X" (issue 18), with real
//! hub processes on loopback: a hub learns another hub from the record a peer it hosts
//! fetched over a guest line to that hub, passes on only records signed by the hubs they
//! name, keeps its list to its own peers, and a forged record or a lying answer is refused.

mod common;

use std::sync::Arc;
use std::time::Duration;

use allpeers_hub_client::proto::{self, HubQuery, HubRequest, HubResponse, code};
use allpeers_hub_client::{HubClient, HubError, HubRecordError, RefuseAll, SignedHubRecord};
use allpeers_net::{Endpoint, EndpointConfig, Identity, ServiceFn};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_learns_other_hubs_from_its_peers_and_passes_on_only_their_own_records() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one = HubProc::spawn_named(d1.path(), "one.test", &[]);
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

    // Kept across a restart of one.
    drop(one);
    let one = HubProc::spawn_named(d1.path(), "one.test", &[]);
    let dave = homed_at(&one).await;
    assert_eq!(
        dave.hub
            .lookup_hub_key(two.peer)
            .await
            .unwrap()
            .unwrap()
            .hub,
        two.peer
    );

    for c in [&to_two, &bob_to_two, &carol_at_one] {
        c.stop();
    }
    for n in [&alice, &bob, &carol, &dave] {
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
