//! Replicated shares with a real hub and three real nodes on loopback, driven through their
//! local API: alice shares a list with bob (write) and carol (read); each accepts the offer
//! and the list syncs in; bob's edit reaches carol; alice's reordering reaches both; carol's
//! write is refused; a member offline during an edit catches up when back; after carol is revoked she is told (her copy shows no
//! level) and gets no further changes; bob leaves, and alice no longer counts him.
//! And an attack: Mallory, a stranger with her own endpoint, asks alice to reconcile the share
//! and gets the same answer as for a share that does not exist, and never an op; her flood of
//! frames is cut off with `Busy`. And bob, killed -9 in the middle of the initial sync of a
//! 1,000-item list (after 12 to 324 items here), comes back and ends with every item once, in
//! order, each whole.

use std::time::Duration;

use allpeers_model::PeerId;
use allpeers_net::service::ErrorCode;
use allpeers_net::{Endpoint, EndpointConfig, Identity, Namespace, NetError, Service};
use allpeers_replica::OpId;
use allpeers_replica::reconcile::{Items, MAX_MESSAGE_BYTES, Reconciler};
use allpeers_replica::sync::{Message, decode_frames, encode_frames};
use allpeers_tests::social::*;
use allpeers_tests::*;
use serde_json::json;
use tokio::sync::mpsc;

const SHARE_TOPICS: &[&str] = &["share.received", "share.changed", "sync.progress"];
/// A window in which a revoked member must hear nothing (pushes take milliseconds here).
const QUIET: Duration = Duration::from_secs(3);
/// Frames a flooding stranger sends at most: the node's burst (1,000) plus what its rate (200/s)
/// refills while they are sent, with room to spare.
const FLOOD: usize = 5000;

async fn subscribe(node: &mut Node, list: &str) {
    node.call("events.subscribe", json!({"topics": SHARE_TOPICS}))
        .await;
    node.call("resources.subscribe", json!({"filter": {"id": list}}))
        .await;
}

async fn items(node: &mut Node, list: &str) -> Vec<String> {
    let response = node.client.call("lists.items", json!({"id": list})).await;
    response
        .result
        .map(|r| {
            r["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits (on `list.changed` events, subscribed before) until the list's items are `wanted`.
async fn until_order(node: &mut Node, list: &str, wanted: &[&str]) {
    timeout("the list's order", async {
        loop {
            if items(node, list).await == wanted {
                return;
            }
            node.client.read_notification().await.expect("an event");
        }
    })
    .await
}

/// Waits (on `list.changed` events, subscribed before) until the list's items hold `item`.
async fn until_item(node: &mut Node, list: &str, item: &str) {
    timeout("the item to arrive", async {
        loop {
            if items(node, list).await.iter().any(|i| i == item) {
                return;
            }
            // Any event may be the list's change: look again.
            node.client.read_notification().await.expect("an event");
        }
    })
    .await
}

async fn link(node: &mut Node, url: &str) -> String {
    let link = node
        .call(
            "resources.create",
            json!({"resource": {"type": "Link", "properties": {"title": url, "url": url}}}),
        )
        .await;
    link["id"].as_str().unwrap().to_string()
}

async fn accept_offer(node: &mut Node, share: &str) {
    let offer = wait_event(&mut node.client, "share.received", |d| d["share"] == share).await;
    assert_eq!(offer["title"], "Holiday 2026");
    let accepted = node.call("shares.accept", json!({"share": share})).await;
    assert_eq!(accepted["state"], "accepted");
}

#[tokio::test]
async fn a_list_shared_with_two_members_stays_in_sync() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = Node::start(&hub, "bob").await;
    let mut carol = Node::start(&hub, "carol").await;
    befriend(&mut alice, &mut bob, "bob@hub.test").await;
    befriend(&mut alice, &mut carol, "carol@hub.test").await;

    let list = alice
        .call(
            "resources.create",
            json!({"resource": {"type": "List", "properties": {"title": "Holiday 2026"}}}),
        )
        .await;
    let list = list["id"].as_str().unwrap().to_string();
    let rome = link(&mut alice, "https://rome.example").await;
    alice
        .call("lists.insert", json!({"list": list, "item": rome}))
        .await;
    for node in [&mut alice, &mut bob, &mut carol] {
        subscribe(node, &list).await;
    }

    let share = alice
        .call(
            "shares.create",
            json!({"resource": list, "members": [
                {"peer": bob.id, "level": "write"},
                {"peer": carol.id, "level": "read"},
            ]}),
        )
        .await;
    let share_id = share["id"].as_str().unwrap().to_string();
    assert_eq!(share["members"].as_array().unwrap().len(), 3, "{share}");

    // Each accepts the offer; the list and its item sync in.
    accept_offer(&mut bob, &share_id).await;
    accept_offer(&mut carol, &share_id).await;
    until_item(&mut bob, &list, &rome).await;
    until_item(&mut carol, &list, &rome).await;
    let theirs = bob.call("resources.get", json!({"id": list})).await;
    assert_eq!(theirs["properties"]["title"], "Holiday 2026");

    // Bob (write) adds an item: carol and alice get it.
    let museum = link(&mut bob, "https://museum.example").await;
    bob.call("lists.insert", json!({"list": list, "item": museum}))
        .await;
    until_item(&mut carol, &list, &museum).await;
    until_item(&mut alice, &list, &museum).await;
    let got = carol.call("resources.get", json!({"id": museum})).await;
    assert_eq!(got["properties"]["url"], "https://museum.example");

    // The order replicates: alice moves the museum first, and both see it there.
    let moved = alice
        .call(
            "lists.move",
            json!({"list": list, "item": museum, "index": 0}),
        )
        .await;
    assert_eq!(moved, 0);
    until_order(&mut bob, &list, &[&museum, &rome]).await;
    until_order(&mut carol, &list, &[&museum, &rome]).await;

    // Carol (read) cannot write: refused with NotAllowed, nothing changes.
    let refused = carol
        .client
        .call(
            "resources.update",
            json!({"id": list, "patch": {"properties": {"title": "Mine now"}}}),
        )
        .await;
    assert_eq!(error_code(&refused), -32040, "{refused:?}");
    let title = alice.call("resources.get", json!({"id": list})).await;
    assert_eq!(title["properties"]["title"], "Holiday 2026");

    // Bob offline during an edit catches up when back. A stopped node tells its peers it is
    // going: alice drops her connection to bob at once, not at QUIC's idle timeout (30 s) — over
    // the dead one, what she sent the restarted bob timed out and he did not catch up in time.
    alice
        .call("events.subscribe", json!({"topics": ["net.changed"]}))
        .await;
    bob.stop().await;
    let bob_id = bob.id.clone();
    timeout("alice to see bob go", async {
        loop {
            let status = alice.call("net.status", json!({})).await;
            let connections = status["connections"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if !connections.iter().any(|c| c["peer"] == bob_id.as_str()) {
                return;
            }
            alice.client.read_notification().await.expect("an event");
        }
    })
    .await;
    alice
        .call(
            "resources.update",
            json!({"id": list, "patch": {"properties": {"title": "Holiday 2026 (final)"}}}),
        )
        .await;
    let beach = link(&mut alice, "https://beach.example").await;
    alice
        .call("lists.insert", json!({"list": list, "item": beach}))
        .await;
    bob.restart("bob").await;
    subscribe(&mut bob, &list).await;
    until_item(&mut bob, &list, &beach).await;
    let title = bob.call("resources.get", json!({"id": list})).await;
    assert_eq!(title["properties"]["title"], "Holiday 2026 (final)");

    // Alice revokes carol; once bob has seen the revocation, his edits no longer reach her.
    let carol_id = carol.id.clone();
    let revoked = alice
        .call(
            "shares.revoke",
            json!({"share": share_id, "peer": carol_id}),
        )
        .await;
    assert!(
        !revoked["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["peer"] == carol_id.as_str()),
        "{revoked}"
    );
    wait_event(&mut bob.client, "share.changed", |d| {
        d["id"] == share_id.as_str()
            && !d["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["peer"] == carol_id.as_str())
    })
    .await;
    // Carol is told: her copy of the share no longer gives her a level.
    wait_event(&mut carol.client, "share.changed", |d| {
        d["id"] == share_id.as_str() && d["level"].is_null()
    })
    .await;
    let zoo = link(&mut bob, "https://zoo.example").await;
    bob.call("lists.insert", json!({"list": list, "item": zoo}))
        .await;
    until_item(&mut alice, &list, &zoo).await;
    let zoo_id = zoo.clone();
    none_within(&mut carol.client, QUIET, "list.changed", |d| {
        d["item"] == zoo_id.as_str()
    })
    .await;
    assert!(!items(&mut carol, &list).await.contains(&zoo));

    let status = alice.call("sync.status", json!({})).await;
    assert_eq!(status["shares"][0]["share"], share_id.as_str(), "{status}");
    assert!(
        status["shares"][0]["ops"].as_u64().unwrap() >= 5,
        "{status}"
    );

    // Bob leaves: alice stops counting him, and the share is gone from his list.
    let left = bob
        .client
        .call("shares.leave", json!({"share": share_id}))
        .await;
    assert!(left.error.is_none(), "{left:?}");
    let bob_id = bob.id.clone();
    wait_event(&mut alice.client, "share.changed", |d| {
        d["id"] == share_id.as_str()
            && !d["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["peer"] == bob_id.as_str())
    })
    .await;
    let theirs = bob.call("shares.list", json!({})).await;
    assert!(
        theirs
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"] != share_id.as_str()),
        "{theirs}"
    );

    // A stranger asking alice to reconcile the share learns nothing.
    stranger_learns_nothing(&mut alice, &share_id).await;

    // A shared query-backed list refuses to be reordered or edited by hand, as it does before
    // sharing: its query decides its items (a move used to answer 0 and change nothing).
    let links = alice
        .call(
            "resources.create",
            json!({"resource": {"type": "List", "properties": {
                "title": "Every link", "query": "{\"type\":\"Link\"}"}}}),
        )
        .await;
    let links = links["id"].as_str().unwrap().to_string();
    let before = items(&mut alice, &links).await;
    assert!(before.len() >= 2, "{before:?}");
    let last = before.last().unwrap().clone();
    for (method, params) in [
        (
            "lists.move",
            json!({"list": links, "item": last, "index": 0}),
        ),
        ("lists.remove", json!({"list": links, "item": last})),
    ] {
        let unshared = alice.client.call(method, params).await;
        let error = unshared.error.expect("refused before sharing");
        assert!(error.message.contains("query-backed"), "{error:?}");
    }
    alice
        .call(
            "shares.create",
            json!({"resource": links, "members": [{"peer": carol.id, "level": "write"}]}),
        )
        .await;
    for (method, params) in [
        (
            "lists.move",
            json!({"list": links, "item": last, "index": 0}),
        ),
        ("lists.remove", json!({"list": links, "item": last})),
        ("lists.insert", json!({"list": links, "item": list})),
    ] {
        let shared = alice.client.call(method, params).await;
        let error = shared.error.expect("refused once shared");
        assert!(
            error.message.contains("query-backed"),
            "{method}: {error:?}"
        );
    }
    assert_eq!(items(&mut alice, &links).await, before);
}

/// Frames a peer sends us on `allpeers/sync/1`, collected.
struct Collect(mpsc::UnboundedSender<Vec<u8>>);

impl Service for Collect {
    fn request(
        &self,
        _ctx: allpeers_net::Context,
        body: bytes::Bytes,
    ) -> allpeers_net::service::BoxFuture<Result<bytes::Bytes, allpeers_net::RemoteError>> {
        let _ = self.0.send(body.to_vec());
        Box::pin(async { Ok(bytes::Bytes::new()) })
    }
}

async fn stranger_learns_nothing(alice: &mut Node, share_text: &str) {
    let alice_id: PeerId = alice.id.parse().unwrap();
    let mallory = Endpoint::bind(Identity::generate(), EndpointConfig::loopback())
        .await
        .unwrap();
    let ns = Namespace::allpeers("sync", 1).unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    mallory.register(ns.clone(), Collect(tx));
    mallory.add_peer_address(alice_id, alice.quic_address().await);
    let mut share = [0u8; 32];
    for (i, b) in share.iter_mut().enumerate() {
        *b = u8::from_str_radix(&share_text[2 * i..2 * i + 2], 16).unwrap();
    }
    let share = OpId(share);
    let unknown = OpId([0x5a; 32]);
    let mut answers = Vec::new();
    for asked in [share, unknown] {
        let payload = Reconciler::new(MAX_MESSAGE_BYTES, true)
            .unwrap()
            .initiate(&Items::default())
            .unwrap();
        for message in [
            Message::Reconcile {
                share: asked,
                payload,
            },
            Message::Want {
                share: asked,
                ids: vec![asked],
            },
        ] {
            // The envelope's tag for a batch of frames, then the batch.
            let mut body = vec![3u8];
            body.extend(encode_frames(&[message.encode()]));
            mallory
                .request_bytes(alice_id, &ns, body.into(), 64, Duration::from_secs(10))
                .await
                .unwrap();
            let frame = timeout("alice's answer", rx.recv()).await.unwrap();
            assert_eq!(frame[0], 3, "sync frames");
            let frames = decode_frames(&frame[1..]).unwrap();
            assert_eq!(frames.len(), 1, "one answer");
            let answer = Message::decode(frames[0]).unwrap();
            assert_eq!(answer, Message::Unknown { share: asked });
            answers.push(answer);
        }
    }
    // The same answer whether the share exists or not, and nothing else ever arrives.
    assert_eq!(answers.len(), 4);
    let more = tokio::time::timeout(QUIET, rx.recv()).await;
    assert!(more.is_err(), "an unexpected frame: {more:?}");

    // A flood of requests is cut off (each would take alice's store lock): `Busy` once the
    // burst is spent, and alice's daemon carries on.
    let mut body = vec![3u8];
    body.extend(encode_frames(&[Message::Want {
        share: unknown,
        ids: vec![unknown],
    }
    .encode()]));
    let mut refused_after = None;
    for sent in 0..FLOOD {
        match mallory
            .request_bytes(
                alice_id,
                &ns,
                body.clone().into(),
                64,
                Duration::from_secs(10),
            )
            .await
        {
            Ok(_) => {}
            Err(NetError::Remote {
                code: ErrorCode::Busy,
                ..
            }) => {
                refused_after = Some(sent);
                break;
            }
            Err(e) => panic!("frame {sent}: {e}"),
        }
    }
    let refused_after = refused_after.expect("the flood was cut off");
    assert!(refused_after >= 1000, "the burst allowed: {refused_after}");
    let status = alice.call("net.status", json!({})).await;
    assert!(status["listening"].is_array(), "{status}");
}

/// Items in the list the kill -9 test shares: enough that the initial sync is still running
/// when the first of them lands at bob.
const BIG_LIST: usize = 1000;

#[tokio::test]
async fn a_kill_9_during_the_initial_sync_loses_nothing_and_half_applies_nothing() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = Node::start(&hub, "bob").await;
    befriend(&mut alice, &mut bob, "bob@hub.test").await;

    let list = alice
        .call(
            "resources.create",
            json!({"resource": {"type": "List", "properties": {"title": "Holiday 2026"}}}),
        )
        .await;
    let list = list["id"].as_str().unwrap().to_string();
    let padding = "x".repeat(1500);
    let mut ids = Vec::with_capacity(BIG_LIST);
    for i in 0..BIG_LIST {
        let url = format!("https://example.test/{i}?{padding}");
        let item = link(&mut alice, &url).await;
        alice
            .call("lists.insert", json!({"list": list, "item": item}))
            .await;
        ids.push(item);
    }
    subscribe(&mut bob, &list).await;
    let share = alice
        .call(
            "shares.create",
            json!({"resource": list, "members": [{"peer": bob.id, "level": "read"}]}),
        )
        .await;
    let share_id = share["id"].as_str().unwrap().to_string();
    accept_offer(&mut bob, &share_id).await;
    // The first ops have landed: kill -9 bob in the middle of the sync.
    wait_event(&mut bob.client, "resource.changed", |_| true).await;
    let mut daemon = bob.daemon.take().expect("running");
    daemon.child.kill().await.expect("killed");
    drop(daemon);

    // Back, bob finishes the sync: every item, once, each a whole resource.
    bob.restart("bob").await;
    subscribe(&mut bob, &list).await;
    timeout("the whole list after the restart", async {
        loop {
            if items(&mut bob, &list).await.len() == BIG_LIST {
                return;
            }
            bob.client.read_notification().await.expect("an event");
        }
    })
    .await;
    let theirs = items(&mut bob, &list).await;
    assert_eq!(theirs, ids, "every item, in alice's order, once");
    for id in ids.iter().step_by(97) {
        let item = bob.call("resources.get", json!({"id": id})).await;
        assert!(
            item["properties"]["url"]
                .as_str()
                .unwrap()
                .ends_with(&padding),
            "{id}: a whole resource"
        );
    }
    let mine = alice.call("sync.status", json!({})).await;
    let theirs = bob.call("sync.status", json!({})).await;
    assert_eq!(
        mine["shares"][0]["ops"], theirs["shares"][0]["ops"],
        "the same ops at both"
    );
}
