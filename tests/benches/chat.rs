//! Chat benchmarks with real processes on loopback (harness = false; prints tables):
//!
//! 1. Message latency node to node: `chat.send` on alice's local API until `message.received`
//!    on bob's, p50/p99 over `CHAT_BENCH_ROUNDS` (default 1000) messages one at a time; next to
//!    the floor a message cannot beat, measured in the same run: a local API round trip on
//!    each node (`ping`) plus a raw QUIC request/response between two endpoints.
//! 2. Throughput to a group of 10: `CHAT_BENCH_GROUP_MESSAGES` (default 300) messages sent as
//!    fast as alice's API takes them to a group of alice and 10 members (11 daemons), until
//!    every member has every message; next to the same count sent to one contact.
//!
//! `cargo build --release --bins && cargo bench -p allpeers-tests --bench chat`

use std::time::{Duration, Instant};

use allpeers_net::{Endpoint, EndpointConfig, Identity, Namespace, ServiceFn};
use allpeers_tests::percentile_ms;
use allpeers_tests::social::*;
use serde_json::json;

async fn quic_rtt(rounds: usize) -> Vec<Duration> {
    let ns = Namespace::allpeers("bench-echo", 1).unwrap();
    let a = Endpoint::bind(Identity::generate(), EndpointConfig::loopback())
        .await
        .unwrap();
    let b = Endpoint::bind(Identity::generate(), EndpointConfig::loopback())
        .await
        .unwrap();
    b.register(
        ns.clone(),
        ServiceFn::new().on_request(|_ctx, body: Vec<u8>| async move {
            Ok::<_, allpeers_net::RemoteError>(body)
        }),
    );
    for addr in b.local_addresses() {
        if addr.transport == allpeers_net::TransportKind::Quic {
            a.add_peer_address(b.peer_id(), addr);
        }
    }
    let body = vec![0u8; 200];
    let _: Vec<u8> = a.request(b.peer_id(), &ns, &body).await.unwrap();
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let _: Vec<u8> = a.request(b.peer_id(), &ns, &body).await.unwrap();
        samples.push(t.elapsed());
    }
    a.close();
    b.close();
    samples.sort();
    samples
}

async fn api_rtt(node: &mut Node, rounds: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let t = Instant::now();
        node.call("ping", json!({"n": i})).await;
        samples.push(t.elapsed());
    }
    samples.sort();
    samples
}

async fn count_in(node: &mut Node, chat: &str) -> u64 {
    node.call(
        "resources.count",
        json!({"query": {"type": "Message", "where": [{"prop": {"name": "chat", "op": "=", "value": chat}}]}}),
    )
    .await
    .as_u64()
    .unwrap()
}

/// Sends `n` messages as fast as the API takes them; returns the time until every member
/// stored all of them.
async fn blast(sender: &mut Node, members: &mut [Node], chat: &str, n: u64) -> Duration {
    let mut before = Vec::new();
    for m in members.iter_mut() {
        before.push(count_in(m, chat).await);
    }
    let t = Instant::now();
    for i in 0..n {
        sender
            .call("chat.send", json!({"chat": chat, "body": format!("b{i}")}))
            .await;
    }
    for (m, before) in members.iter_mut().zip(before) {
        loop {
            if count_in(m, chat).await >= before + n {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), m.client.read_notification())
                .await;
        }
    }
    t.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("CHAT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let group_messages: u64 = std::env::var("CHAT_BENCH_GROUP_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let Pair {
        hub_dir: _hub_dir,
        hub,
        mut alice,
        mut bob,
        chat: chat_id,
    } = Pair::start().await;

    // 1. Latency, one message at a time.
    let mut samples = Vec::with_capacity(rounds);
    let mut send_calls = Vec::with_capacity(rounds);
    for i in 0..rounds + 20 {
        let body = format!("lat{i}");
        let t = Instant::now();
        alice
            .call("chat.send", json!({"chat": chat_id, "body": body}))
            .await;
        let stored = t.elapsed();
        wait_event(&mut bob.client, "message.received", |d| {
            d["body"] == body.as_str()
        })
        .await;
        if i >= 20 {
            samples.push(t.elapsed());
            send_calls.push(stored);
        }
    }
    samples.sort();
    send_calls.sort();
    let ping_a = api_rtt(&mut alice, rounds).await;
    let ping_b = api_rtt(&mut bob, rounds).await;
    let quic = quic_rtt(rounds).await;
    let floor50 =
        percentile_ms(&ping_a, 0.5) + percentile_ms(&ping_b, 0.5) + percentile_ms(&quic, 0.5);
    let floor99 =
        percentile_ms(&ping_a, 0.99) + percentile_ms(&ping_b, 0.99) + percentile_ms(&quic, 0.99);
    println!("\n## Message latency node to node on loopback ({rounds} messages, one at a time)\n");
    println!("| | p50 ms | p99 ms |");
    println!("|---|---:|---:|");
    println!(
        "| chat.send (alice) -> message.received (bob) | {:.3} | {:.3} |",
        percentile_ms(&samples, 0.5),
        percentile_ms(&samples, 0.99)
    );
    println!(
        "| of which chat.send's answer (stored at alice) | {:.3} | {:.3} |",
        percentile_ms(&send_calls, 0.5),
        percentile_ms(&send_calls, 0.99)
    );
    println!(
        "| baseline: local API ping alice | {:.3} | {:.3} |",
        percentile_ms(&ping_a, 0.5),
        percentile_ms(&ping_a, 0.99)
    );
    println!(
        "| baseline: local API ping bob | {:.3} | {:.3} |",
        percentile_ms(&ping_b, 0.5),
        percentile_ms(&ping_b, 0.99)
    );
    println!(
        "| baseline: raw QUIC request/response (allpeers-net, TLS 1.3) | {:.3} | {:.3} |",
        percentile_ms(&quic, 0.5),
        percentile_ms(&quic, 0.99)
    );
    println!(
        "| ratio to the floor (sum of the three baselines) | {:.1}x | {:.1}x |",
        percentile_ms(&samples, 0.5) / floor50,
        percentile_ms(&samples, 0.99) / floor99
    );

    // 2. Throughput: one contact, then a group of ten.
    let one = blast(
        &mut alice,
        std::slice::from_mut(&mut bob),
        &chat_id,
        group_messages,
    )
    .await;
    let invite = alice.call("contacts.invite", json!({})).await["code"]
        .as_str()
        .unwrap()
        .to_string();
    let mut members = Vec::new();
    for i in 0..10 {
        let mut m = Node::start(&hub, &format!("member{i}")).await;
        m.call("contacts.add", json!({"who": invite})).await;
        let alice_id = alice.id.clone();
        wait_event(&mut m.client, "contact.changed", |d| {
            d["peer_id"] == alice_id && d["state"] == "accepted"
        })
        .await;
        members.push(m);
    }
    let ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    let group = alice
        .call(
            "chat.create_group",
            json!({"title": "bench", "members": ids}),
        )
        .await;
    let group_id = group["id"].as_str().unwrap().to_string();
    // Warm the connections to every member.
    alice
        .call("chat.send", json!({"chat": group_id, "body": "warm-up"}))
        .await;
    for m in members.iter_mut() {
        wait_event(&mut m.client, "message.received", |d| {
            d["body"] == "warm-up"
        })
        .await;
    }
    let ten = blast(&mut alice, &mut members, &group_id, group_messages).await;
    println!(
        "\n## Messages per second one node sustains ({group_messages} sent as fast as the API takes them; until every recipient stored all)\n"
    );
    println!("| to | time | messages/s | deliveries/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| one contact | {:.2} s | {:.0} | {:.0} |",
        one.as_secs_f64(),
        group_messages as f64 / one.as_secs_f64(),
        group_messages as f64 / one.as_secs_f64()
    );
    println!(
        "| a group of 10 (11 daemons on this machine) | {:.2} s | {:.0} | {:.0} |",
        ten.as_secs_f64(),
        group_messages as f64 / ten.as_secs_f64(),
        10.0 * group_messages as f64 / ten.as_secs_f64()
    );
    for mut m in members {
        m.stop().await;
    }
    alice.stop().await;
    bob.stop().await;
}
