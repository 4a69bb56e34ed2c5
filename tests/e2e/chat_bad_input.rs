//! Hostile peers against a real node: Mallory, a stranger with her own endpoint and hub
//! client in this test process, tries to get messages into Bob's chats — as herself, as
//! Alice with a forged signature, by passing on a letter Alice really wrote, with garbage and
//! oversized letters, and by replaying Alice's letter through Bob's mailbox at the hub. Every
//! attempt gets a clear refusal (or is dropped) and nothing shows up twice or at all; Bob keeps
//! working.

use std::sync::Arc;
use std::time::Duration;

use allpeers_hub_client::{HubClient, HubClientConfig, RefuseAll};
use allpeers_model::PeerId;
use allpeers_model::hlc::Hlc;
use allpeers_net::mail::{self, Letter, SignedLetter};
use allpeers_net::service::ErrorCode;
use allpeers_net::{Address, Endpoint, EndpointConfig, Identity, KeyFile, Namespace, NetError};
use allpeers_node::social::chat::dm_id;
use allpeers_node::social::wire::{self, ChatPayload, ChatRef};
use allpeers_tests::social::*;
use allpeers_tests::*;
use serde_json::{Value, json};

fn letters_ns() -> Namespace {
    Namespace::allpeers("letters", 1).unwrap()
}

fn chat_letter(author: &Identity, to: PeerId, other: PeerId, id: &str, body: &str) -> Letter {
    let mut clock = Hlc::new("t");
    let payload = ChatPayload::Message {
        chat: ChatRef {
            id: dm_id(&to, &other),
            group: false,
            title: None,
            creator: other,
            members: vec![other, to],
        },
        id: id.into(),
        hlc: clock.tick(allpeers_model::hlc::now_ms()).to_string(),
        sent_ms: allpeers_model::hlc::now_ms(),
        body: body.into(),
        link: None,
        via: None,
    };
    Letter::new(author.peer_id(), to, wire::CHAT, wire::encode(&payload))
}

async fn deliver(mallory: &Endpoint, bob: PeerId, bytes: Vec<u8>) -> Result<(), NetError> {
    mallory
        .request_bytes(
            bob,
            &letters_ns(),
            bytes.into(),
            1024,
            Duration::from_secs(10),
        )
        .await
        .map(|_| ())
}

async fn messages_from(node: &mut Node, sender: &PeerId) -> u64 {
    node.call(
        "resources.count",
        json!({"query": {"type": "Message", "where": [{"prop": {"name": "sender", "op": "=", "value": sender.to_string()}}]}}),
    )
    .await
    .as_u64()
    .unwrap()
}

#[tokio::test]
async fn forged_replayed_and_garbage_letters_are_refused() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = Node::start(&hub, "bob").await;
    befriend(&mut alice, &mut bob, "bob@hub.test").await;
    let bob_id: PeerId = bob.id.parse().unwrap();
    let alice_id: PeerId = alice.id.parse().unwrap();
    // Alice's real key (her test identity is not sealed): letters she truly wrote.
    let alice_key = KeyFile::read(&alice.dir.path().join("identity.json"))
        .unwrap()
        .open(None, "alice")
        .unwrap();

    let mallory_key = Identity::generate();
    let mallory = Endpoint::bind(mallory_key.clone(), EndpointConfig::loopback())
        .await
        .unwrap();
    mallory.add_peer_address(bob_id, bob.quic_address().await);

    // 1. Mallory as herself: not a contact.
    let own = chat_letter(&mallory_key, bob_id, mallory_key.peer_id(), "m1", "buy now")
        .sign(&mallory_key)
        .unwrap();
    let refused = deliver(&mallory, bob_id, own.to_bytes()).await;
    assert!(
        matches!(&refused, Err(NetError::Remote { code: ErrorCode::Refused, message }) if message.contains("not a contact")),
        "{refused:?}"
    );

    // 2. Claiming to be Alice, signed by Mallory: the signature does not hold.
    let mut forged = chat_letter(
        &mallory_key,
        bob_id,
        alice_id,
        "m2",
        "send me your password",
    )
    .sign(&mallory_key)
    .unwrap();
    let mut inner: Letter = postcard::from_bytes(&forged.letter).unwrap();
    inner.from = alice_id;
    forged.letter = postcard::to_allocvec(&inner).unwrap();
    let refused = deliver(&mallory, bob_id, forged.to_bytes()).await;
    assert!(
        matches!(&refused, Err(NetError::Remote { code: ErrorCode::BadRequest, message }) if message.contains("signature")),
        "{refused:?}"
    );

    // 3. A letter Alice really wrote, handed over by Mallory: the author must be the peer at
    //    the other end of the connection.
    let genuine = chat_letter(&alice_key, bob_id, alice_id, "a1", "genuine, passed on")
        .sign(&alice_key)
        .unwrap();
    let refused = deliver(&mallory, bob_id, genuine.to_bytes()).await;
    assert!(
        matches!(&refused, Err(NetError::Remote { code: ErrorCode::Refused, message }) if message.contains("author")),
        "{refused:?}"
    );

    // 4. Garbage, and a letter over the size limit.
    let refused = deliver(&mallory, bob_id, b"\xff\x00 not a letter".to_vec()).await;
    assert!(
        matches!(
            &refused,
            Err(NetError::Remote {
                code: ErrorCode::BadRequest,
                ..
            })
        ),
        "{refused:?}"
    );
    let refused = deliver(&mallory, bob_id, vec![7u8; mail::MAX_SIGNED + 1]).await;
    assert!(refused.is_err(), "an oversized letter is refused");
    assert_eq!(messages_from(&mut bob, &mallory_key.peer_id()).await, 0);
    assert_eq!(messages_from(&mut bob, &alice_id).await, 0);

    // 5. Through Bob's mailbox at the hub: garbage, then Alice's genuine letter twice (a replay).
    let hub_client = HubClient::start(
        mallory.clone(),
        HubClientConfig::new(
            hub.peer_id.parse().unwrap(),
            vec![Address::quic(hub.quic.parse().unwrap())],
        ),
        Arc::new(RefuseAll),
    )
    .await
    .unwrap();
    assert!(hub_client.wait_online(Duration::from_secs(10)).await);
    hub_client
        .mail_deposit(bob_id, b"garbage that is not sealed".to_vec())
        .await
        .unwrap();
    let oversized = hub_client
        .mail_deposit(bob_id, vec![0u8; mail::MAX_SEALED + 1])
        .await;
    assert!(oversized.is_err(), "the hub refuses oversized letters");
    let sealed = mail::seal(&genuine, &bob_id).unwrap();
    hub_client
        .mail_deposit(bob_id, sealed.clone())
        .await
        .unwrap();
    hub_client.mail_deposit(bob_id, sealed).await.unwrap();
    let got = wait_event(&mut bob.client, "message.received", |d| {
        d["body"] == "genuine, passed on"
    })
    .await;
    assert_eq!(got["sender"], alice.id);
    // A letter mallory sealed for bob claiming alice's name fails too.
    let resealed = SignedLetter {
        letter: forged.letter.clone(),
        signature: forged.signature.clone(),
    };
    hub_client
        .mail_deposit(bob_id, mail::seal(&resealed, &bob_id).unwrap())
        .await
        .unwrap();
    // Bob still works: a normal message from Alice arrives after all of that, and the replayed
    // one is there once.
    let chat = alice.call("chat.open", json!({"peer": bob.id})).await;
    alice
        .call(
            "chat.send",
            json!({"chat": chat["id"], "body": "still there?"}),
        )
        .await;
    let mut replays = 0;
    loop {
        let event = wait_event(&mut bob.client, "message.received", |_| true).await;
        if event["body"] == "genuine, passed on" {
            replays += 1;
        }
        if event["body"] == "still there?" {
            break;
        }
    }
    assert_eq!(replays, 0, "the replayed letter is not shown again");
    let history: Value = bob.call("chat.history", json!({"chat": chat["id"]})).await;
    let bodies: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["genuine, passed on", "still there?"]);
    assert_eq!(messages_from(&mut bob, &mallory_key.peer_id()).await, 0);

    hub_client.stop();
    mallory.close();
    alice.stop().await;
    bob.stop().await;
}
