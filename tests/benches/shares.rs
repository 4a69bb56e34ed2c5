//! Shares between real daemons on loopback (harness = false; prints tables), issue 14's goals
//! (3) and (4) at the node level:
//!
//! 1. One edit reaching two online members: alice inserts a link into a list shared with bob
//!    and carol; the time until both have a `list.changed` for it, p50/p99 over
//!    `SHARES_BENCH_EDITS` (default 300) edits one at a time; next to a local API round trip on
//!    alice (`ping`), the floor any edit pays.
//! 2. Initial sync of a list of `SHARES_BENCH_ITEMS` (default 10,000) links to a fresh member,
//!    every op signature verified and every resource stored, from `shares.create` until the
//!    member's list holds every item (its accept included: it accepts the moment the offer
//!    arrives); next to `Store::create_many` of the same resources in a fresh store file (the
//!    baseline: the same rows, written locally with nothing to verify).
//!
//! `cargo build --release --bins && cargo bench -p allpeers-tests --bench shares`

use std::time::{Duration, Instant};

use allpeers_model::resource::Resource;
use allpeers_store::Store;
use allpeers_tests::social::*;
use allpeers_tests::*;
use serde_json::{Value, json};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn url(i: usize) -> String {
    format!("https://example.test/holiday/{i}")
}

async fn link(node: &mut Node, i: usize) -> String {
    let url = url(i);
    let link = node
        .call(
            "resources.create",
            json!({"resource": {"type": "Link", "properties": {"title": url, "url": url}}}),
        )
        .await;
    link["id"].as_str().unwrap().to_string()
}

async fn new_list(node: &mut Node, title: &str) -> String {
    let list = node
        .call(
            "resources.create",
            json!({"resource": {"type": "List", "properties": {"title": title}}}),
        )
        .await;
    list["id"].as_str().unwrap().to_string()
}

async fn list_len(node: &mut Node, list: &str) -> usize {
    let response = node.client.call("lists.items", json!({"id": list})).await;
    response
        .result
        .and_then(|r| r["items"].as_array().map(Vec::len))
        .unwrap_or(0)
}

async fn accept(node: &mut Node, share: &str) {
    wait_event(&mut node.client, "share.received", |d| d["share"] == share).await;
    node.call("shares.accept", json!({"share": share})).await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let edits = env("SHARES_BENCH_EDITS", 300);
    let items = env("SHARES_BENCH_ITEMS", 10_000);
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = Node::start(&hub, "bob").await;
    let mut carol = Node::start(&hub, "carol").await;
    let mut dave = Node::start(&hub, "dave").await;
    befriend(&mut alice, &mut bob, "bob@hub.test").await;
    befriend(&mut alice, &mut carol, "carol@hub.test").await;
    befriend(&mut alice, &mut dave, "dave@hub.test").await;
    let topics = json!({"topics": ["share.received", "share.changed"]});
    for node in [&mut bob, &mut carol, &mut dave] {
        node.call("events.subscribe", topics.clone()).await;
    }

    // 1. One edit reaching two online members.
    let list = new_list(&mut alice, "Holiday 2026").await;
    let share = alice
        .call(
            "shares.create",
            json!({"resource": list, "members": [
                {"peer": bob.id, "level": "write"},
                {"peer": carol.id, "level": "write"},
            ]}),
        )
        .await;
    let share = share["id"].as_str().unwrap().to_string();
    for node in [&mut bob, &mut carol] {
        accept(node, &share).await;
        node.call("resources.subscribe", json!({"filter": {"id": list}}))
            .await;
    }
    let mut samples = Vec::with_capacity(edits);
    for i in 0..edits + 20 {
        let item = link(&mut alice, i).await;
        let t = Instant::now();
        alice
            .call("lists.insert", json!({"list": list, "item": item}))
            .await;
        for node in [&mut bob, &mut carol] {
            wait_event(&mut node.client, "list.changed", |d: &Value| {
                d["item"] == item.as_str()
            })
            .await;
        }
        if i >= 20 {
            samples.push(t.elapsed());
        }
    }
    samples.sort();
    let mut pings = Vec::with_capacity(edits);
    for i in 0..edits {
        let t = Instant::now();
        alice.call("ping", json!({"n": i})).await;
        pings.push(t.elapsed());
    }
    pings.sort();
    println!("## One edit reaching two online members ({edits} edits, one at a time)\n");
    println!("| | p50 ms | p99 ms |");
    println!("|---|---:|---:|");
    println!(
        "| lists.insert (alice) -> list.changed at bob and carol | {:.2} | {:.2} |",
        percentile_ms(&samples, 0.5),
        percentile_ms(&samples, 0.99)
    );
    println!(
        "| floor: a local API round trip (alice, ping) | {:.2} | {:.2} |\n",
        percentile_ms(&pings, 0.5),
        percentile_ms(&pings, 0.99)
    );

    // 2. Initial sync of a big list to a fresh member, against create_many locally.
    let big = new_list(&mut alice, "Everything").await;
    let made = Instant::now();
    for i in 0..items {
        let item = link(&mut alice, 1_000_000 + i).await;
        alice
            .call("lists.insert", json!({"list": big, "item": item}))
            .await;
    }
    let made = made.elapsed();
    let t = Instant::now();
    let share = alice
        .call(
            "shares.create",
            json!({"resource": big, "members": [{"peer": dave.id, "level": "read"}]}),
        )
        .await;
    let created = t.elapsed();
    let share = share["id"].as_str().unwrap().to_string();
    accept(&mut dave, &share).await;
    dave.call("resources.subscribe", json!({"filter": {"id": big}}))
        .await;
    loop {
        if list_len(&mut dave, &big).await >= items {
            break;
        }
        let _ =
            tokio::time::timeout(Duration::from_millis(200), dave.client.read_notification()).await;
    }
    let synced = t.elapsed();

    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path().join("baseline.db"), "baseline").expect("open");
    let resources: Vec<Resource> = (0..items)
        .map(|i| {
            let url = url(1_000_000 + i);
            Resource::new("Link")
                .with("title", url.clone())
                .with("url", url)
        })
        .collect();
    let t = Instant::now();
    for chunk in resources.chunks(1000) {
        store.create_many(chunk.to_vec()).expect("create_many");
    }
    let baseline = t.elapsed();
    println!("## Initial sync of a {items}-link list to a fresh member\n");
    println!("| | ms | per item µs |");
    println!("|---|---:|---:|");
    let row = |what: &str, d: Duration| {
        println!(
            "| {what} | {:.0} | {:.1} |",
            d.as_secs_f64() * 1e3,
            d.as_secs_f64() * 1e6 / items as f64
        )
    };
    row(
        "baseline: Store::create_many, 1,000 a transaction",
        baseline,
    );
    row("shares.create at alice (signs every op)", created);
    row("shares.create -> every item at dave", synced);
    row("(making the list through alice's API, for scale)", made);
    println!(
        "\nsync / create_many: {:.1}x (issue 14's goal: <= 3x)",
        synced.as_secs_f64() / baseline.as_secs_f64()
    );
}
