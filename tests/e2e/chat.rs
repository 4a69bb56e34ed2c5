//! Contacts, presence and chat with a real hub and three real nodes on loopback, driven
//! through the nodes' local API: a contact request by name and one by invite code, presence
//! seen by contacts and not by strangers, 1:1 and group chat with receipts, edits and link
//! cards, a member offline during a group conversation who gets every message in order on
//! return (through the hub's mailbox, which holds no plaintext), and kill -9 of a sender
//! that loses no acknowledged message.

use std::path::Path;
use std::time::{Duration, Instant};

use allpeers_tests::social::*;
use allpeers_tests::*;
use serde_json::{Value, json};

fn bodies(history: &Value) -> Vec<String> {
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_string())
        .collect()
}

fn files_contain(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[tokio::test]
async fn contacts_presence_and_chat_with_three_nodes() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = Node::start(&hub, "bob").await;
    let mut carol = Node::start(&hub, "carol").await;

    // Contacts by name, accepted by the other side.
    befriend(&mut alice, &mut bob, "bob@hub.test").await;
    let contacts = alice.call("contacts.list", json!({})).await;
    assert_eq!(contacts[0]["name"], "bob@hub.test", "{contacts}");
    assert_eq!(contacts[0]["presence"]["online"], true);

    // Carol is a stranger: she cannot see alice's presence or chat with her.
    let refused = carol
        .client
        .call("hub.watch", json!({"peers": [alice.id]}))
        .await;
    assert!(refused.result.is_some());
    let alice_id = alice.id.clone();
    wait_event(&mut carol.client, "presence.refused", |d| {
        d["peer_id"] == alice_id
    })
    .await;
    let not_contact = carol
        .client
        .call("chat.open", json!({"peer": alice.id}))
        .await;
    assert_eq!(error_code(&not_contact), -32030);

    // A presence change reaches the contact within a second, and not the stranger.
    let started = Instant::now();
    alice
        .call("presence.set", json!({"state": "away", "text": "at lunch"}))
        .await;
    let seen = wait_event(&mut bob.client, "presence.changed", |d| {
        d["peer_id"] == alice_id && d["state"] == "away"
    })
    .await;
    let took = started.elapsed();
    assert_eq!(seen["text"], "at lunch");
    assert!(took < Duration::from_secs(1), "presence took {took:?}");
    none_within(
        &mut carol.client,
        Duration::from_millis(300),
        "presence.changed",
        |d| d["peer_id"] == alice_id,
    )
    .await;
    alice.call("presence.set", json!({"state": "online"})).await;

    // 1:1 chat both ways, with delivery and read receipts.
    let chat = alice.call("chat.open", json!({"peer": bob.id})).await;
    let chat_id = chat["id"].as_str().unwrap().to_string();
    let sent = alice
        .call("chat.send", json!({"chat": chat_id, "body": "hello bob"}))
        .await;
    let got = wait_event(&mut bob.client, "message.received", |d| {
        d["body"] == "hello bob"
    })
    .await;
    assert_eq!(got["chat"], chat_id, "both sides file it in the same chat");
    assert_eq!(got["sender"], alice.id);
    let sent_id = sent["id"].clone();
    wait_event(&mut alice.client, "chat.receipt", |d| {
        d["message"] == sent_id && d["kind"] == "delivered"
    })
    .await;
    bob.call("chat.send", json!({"chat": chat_id, "body": "hi alice"}))
        .await;
    wait_event(&mut alice.client, "message.received", |d| {
        d["body"] == "hi alice"
    })
    .await;
    bob.call("chat.read", json!({"chat": chat_id})).await;
    wait_event(&mut alice.client, "chat.receipt", |d| {
        d["message"] == sent_id && d["kind"] == "read"
    })
    .await;
    bob.call("chat.typing", json!({"chat": chat_id})).await;
    let bob_id = bob.id.clone();
    wait_event(&mut alice.client, "chat.typing", |d| d["peer_id"] == bob_id).await;

    // Edits and deletes of one's own messages; a link card.
    alice
        .call(
            "chat.edit",
            json!({"message": sent_id, "body": "hello, bob!"}),
        )
        .await;
    wait_event(&mut bob.client, "message.updated", |d| {
        d["body"] == "hello, bob!"
    })
    .await;
    let not_mine = bob
        .client
        .call("chat.edit", json!({"message": sent_id, "body": "forged"}))
        .await;
    assert!(not_mine.error.is_some(), "only the sender edits");
    alice
        .call(
            "chat.send",
            json!({"chat": chat_id, "link": {"url": "https://example.org/page", "title": "A page", "description": "worth reading"}}),
        )
        .await;
    let card = wait_event(&mut bob.client, "message.received", |d| {
        !d["link"].is_null()
    })
    .await;
    assert_eq!(
        card["link"]["properties"]["url"],
        "https://example.org/page"
    );
    assert_eq!(card["link"]["properties"]["title"], "A page");
    let js = alice
        .client
        .call(
            "chat.send",
            json!({"chat": chat_id, "link": {"url": "javascript:alert(1)"}}),
        )
        .await;
    assert_eq!(error_code(&js), -32602, "javascript: links are refused");
    let big = alice
        .client
        .call(
            "chat.send",
            json!({"chat": chat_id, "body": "x".repeat(17 * 1024)}),
        )
        .await;
    assert_eq!(error_code(&big), -32034);

    // Carol joins by invite code (accepted at once) and befriends bob by name.
    let invite = alice.call("contacts.invite", json!({})).await;
    let added = carol
        .call("contacts.add", json!({"who": invite["code"]}))
        .await;
    assert_eq!(added["peer_id"], alice.id);
    assert_eq!(
        added["state"], "accepted",
        "a valid invite is consent given in advance"
    );
    let carol_id = carol.id.clone();
    wait_event(&mut alice.client, "contact.changed", |d| {
        d["peer_id"] == carol_id && d["state"] == "accepted"
    })
    .await;
    wait_event(&mut carol.client, "contact.changed", |d| {
        d["peer_id"] == alice_id && d["state"] == "accepted"
    })
    .await;
    befriend(&mut carol, &mut bob, "bob@hub.test").await;

    // A group of three.
    let group = alice
        .call(
            "chat.create_group",
            json!({"title": "Trip", "members": [bob.id, carol.id]}),
        )
        .await;
    let group_id = group["id"].as_str().unwrap().to_string();
    alice
        .call("chat.send", json!({"chat": group_id, "body": "g1"}))
        .await;
    wait_event(&mut bob.client, "message.received", |d| d["body"] == "g1").await;
    wait_event(&mut carol.client, "message.received", |d| d["body"] == "g1").await;

    // Carol goes offline; the conversation goes on; she gets all of it, in order, on return.
    carol.stop().await;
    wait_event(&mut alice.client, "presence.changed", |d| {
        d["peer_id"] == carol_id && d["online"] == false
    })
    .await;
    alice
        .call(
            "chat.send",
            json!({"chat": group_id, "body": "g2 plaintext-canary-7f3a"}),
        )
        .await;
    wait_event(&mut bob.client, "message.received", |d| {
        d["body"] == "g2 plaintext-canary-7f3a"
    })
    .await;
    bob.call("chat.send", json!({"chat": group_id, "body": "g3"}))
        .await;
    wait_event(&mut alice.client, "message.received", |d| d["body"] == "g3").await;
    alice
        .call("chat.send", json!({"chat": group_id, "body": "g4"}))
        .await;
    wait_event(&mut bob.client, "message.received", |d| d["body"] == "g4").await;
    // The letters for carol wait at the hub as ciphertext only.
    let leaks = files_contain(hub_dir.path(), b"plaintext-canary-7f3a");
    assert!(leaks.is_empty(), "plaintext in the hub's files: {leaks:?}");

    carol.restart("carol").await;
    // Her mailbox may be emptied before this client subscribed: read the history, and wait
    // for events only while something is missing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let history = loop {
        let history = carol.call("chat.history", json!({"chat": group_id})).await;
        if bodies(&history).len() >= 4 {
            break history;
        }
        assert!(
            Instant::now() < deadline,
            "carol has only {:?}",
            bodies(&history)
        );
        let _ =
            tokio::time::timeout(Duration::from_secs(2), carol.client.read_notification()).await;
    };
    assert_eq!(
        bodies(&history),
        ["g1", "g2 plaintext-canary-7f3a", "g3", "g4"],
        "every message once, in order"
    );
    let alice_view = alice.call("chat.history", json!({"chat": group_id})).await;
    assert_eq!(bodies(&alice_view), bodies(&history));
    // The mailbox is emptied once carol took her letters.
    let list = carol.call("chat.list", json!({})).await;
    let trip = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == group_id)
        .expect("carol has the group");
    assert_eq!(trip["unread"], 4);

    // Remove: bob stops seeing alice.
    alice.call("contacts.remove", json!({"peer": bob.id})).await;
    wait_event(&mut bob.client, "contact.changed", |d| {
        d["peer_id"] == alice_id && d["state"] == "none"
    })
    .await;

    alice.stop().await;
    bob.stop().await;
    carol.stop().await;
}

#[tokio::test]
async fn kill_9_mid_conversation_loses_no_acknowledged_message() {
    let Pair {
        hub_dir: _hub_dir,
        hub: _hub,
        mut alice,
        mut bob,
        chat: chat_id,
    } = Pair::start().await;

    // Alice sends; every message whose chat.send returned is acknowledged. Then kill -9.
    let mut acknowledged = Vec::new();
    for i in 0..40 {
        let body = format!("m{i:02}");
        alice
            .call("chat.send", json!({"chat": chat_id, "body": body}))
            .await;
        acknowledged.push(body);
    }
    let mut daemon = alice.daemon.take().unwrap();
    daemon.child.start_kill().unwrap();
    daemon.child.wait().await.unwrap();

    // On restart alice's outbox delivers whatever had not gone out.
    alice.restart("alice").await;
    let expected = acknowledged.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let history = bob
            .call("chat.history", json!({"chat": chat_id, "limit": 100}))
            .await;
        let got = bodies(&history);
        if got == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bob has {} of {} messages: {got:?}",
            got.len(),
            expected.len()
        );
        // Wait for the next delivery rather than polling blindly.
        let _ = tokio::time::timeout(Duration::from_secs(2), bob.client.read_notification()).await;
    }
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test]
async fn a_flood_is_rate_limited_and_nothing_is_lost_or_doubled() {
    let Pair {
        hub_dir: _hub_dir,
        hub: _hub,
        mut alice,
        mut bob,
        chat: chat_id,
    } = Pair::start().await;
    // 600 messages as fast as the API takes them: more than bob's per-peer burst.
    for i in 0..600 {
        alice
            .call(
                "chat.send",
                json!({"chat": chat_id, "body": format!("f{i:03}")}),
            )
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = ok(bob
            .client
            .call(
                "resources.count",
                json!({"query": {"type": "Message", "where": [{"prop": {"name": "chat", "op": "=", "value": chat_id}}]}}),
            )
            .await);
        if n == 600 {
            break;
        }
        assert!(Instant::now() < deadline, "bob has {n} of 600");
        let _ = tokio::time::timeout(Duration::from_secs(2), bob.client.read_notification()).await;
    }
    let history = bob
        .call("chat.history", json!({"chat": chat_id, "limit": 500}))
        .await;
    let got = bodies(&history);
    let mut sorted = got.clone();
    sorted.dedup();
    assert_eq!(got.len(), sorted.len(), "no message shown twice");
    alice.stop().await;
    bob.stop().await;
}

#[tokio::test]
async fn presence_survives_a_hub_restart() {
    let hub_dir = tempfile::tempdir().unwrap();
    let mut hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = Node::start(&hub, "bob").await;
    befriend(&mut alice, &mut bob, "bob@hub.test").await;
    bob.call(
        "presence.set",
        json!({"state": "busy", "text": "in a meeting"}),
    )
    .await;
    let bob_id = bob.id.clone();
    wait_event(&mut alice.client, "presence.changed", |d| {
        d["peer_id"] == bob_id && d["state"] == "busy"
    })
    .await;

    // The hub restarts where the nodes expect it (same key, same addresses): the nodes
    // re-announce themselves, their status and their watches; the hub keeps no presence.
    let (quic, tcp) = (hub.quic.clone(), hub.tcp.clone());
    hub.child.start_kill().unwrap();
    hub.child.wait().await.unwrap();
    wait_event(&mut alice.client, "hub.changed", |d| {
        d["state"] == "offline"
    })
    .await;
    hub = HubProcess::start_on(hub_dir.path(), &quic, &tcp).await;
    wait_event(&mut alice.client, "hub.changed", |d| d["state"] == "online").await;
    let seen = wait_event(&mut alice.client, "presence.changed", |d| {
        d["peer_id"] == bob_id && d["online"] == true
    })
    .await;
    assert_eq!(seen["state"], "busy", "{seen}");
    assert_eq!(seen["text"], "in a meeting");
    // And changes flow again.
    bob.call("presence.set", json!({"state": "online"})).await;
    wait_event(&mut alice.client, "presence.changed", |d| {
        d["peer_id"] == bob_id && d["state"] == "online"
    })
    .await;
    drop(hub);
    alice.stop().await;
    bob.stop().await;
}
