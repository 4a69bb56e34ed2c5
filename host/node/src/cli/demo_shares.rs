//! `allpeers demo`'s shares part: alice shares a list "Holiday 2026" with bob (write); bob
//! accepts, the list syncs in; bob adds an item; alice sees it; alice moves it to the top and
//! bob sees the new order. Every op signed, no server.

use std::time::Instant;

use allpeers_model::api::shares::{self as sh, topics};
use allpeers_model::resource::api::{self as r, topics as resource_topics};
use allpeers_node::client::ApiClient;
use serde_json::{Value, json};

use super::demo::{short, wait_event};

/// The list's items; none while the list has not arrived yet.
async fn items(api: &ApiClient, list: &Value) -> anyhow::Result<Vec<Value>> {
    Ok(match api.call(r::LISTS_ITEMS, json!({"id": list})).await {
        Ok(items) => items["items"].as_array().cloned().unwrap_or_default(),
        Err(_) => Vec::new(),
    })
}

/// Waits until `list` holds `item` on `api`'s node (subscribed to the list before).
async fn until_item(api: &ApiClient, list: &Value, item: &Value) -> anyhow::Result<()> {
    if !items(api, list).await?.contains(item) {
        wait_event(api, resource_topics::LIST_CHANGED, |d| d["item"] == *item).await?;
    }
    Ok(())
}

async fn link(api: &ApiClient, title: &str, url: &str) -> anyhow::Result<Value> {
    let link = api
        .call(
            r::RESOURCES_CREATE,
            json!({"resource": {"type": "Link", "properties": {"title": title, "url": url}}}),
        )
        .await?;
    Ok(link["id"].clone())
}

pub(super) async fn run(alice: &ApiClient, bob: &ApiClient, bob_id: &Value) -> anyhow::Result<()> {
    println!("\n[10/16] Alice shares a list with bob; they edit it together with no server");
    let list = alice
        .call(
            r::RESOURCES_CREATE,
            json!({"resource": {"type": "List", "properties": {"title": "Holiday 2026"}}}),
        )
        .await?["id"]
        .clone();
    let rome = link(alice, "Rome", "https://rome.example").await?;
    alice
        .call(r::LISTS_INSERT, json!({"list": list, "item": rome}))
        .await?;
    for api in [alice, bob] {
        api.call(r::RESOURCES_SUBSCRIBE, json!({"filter": {"id": list}}))
            .await?;
    }
    bob.call(
        allpeers_model::api::methods::EVENTS_SUBSCRIBE,
        json!({"topics": [topics::SHARE_RECEIVED]}),
    )
    .await?;
    let t = Instant::now();
    let share = alice
        .call(
            sh::SHARES_CREATE,
            json!({"resource": list, "members": [{"peer": bob_id, "level": "write"}]}),
        )
        .await?;
    println!(
        "      alice shares \"Holiday 2026\" (1 item) with bob as writer: share {}",
        short(&share["id"])
    );
    let offer = wait_event(bob, topics::SHARE_RECEIVED, |d| d["share"] == share["id"]).await?;
    println!(
        "      bob is offered \"{}\" by {} and accepts",
        offer.data["title"].as_str().unwrap_or("?"),
        short(&offer.data["from"])
    );
    bob.call(sh::SHARES_ACCEPT, json!({"share": share["id"]}))
        .await?;
    until_item(bob, &list, &rome).await?;
    println!(
        "      the list and its item sync in to bob: {:.0} ms from sharing (signed ops, set reconciliation)",
        t.elapsed().as_secs_f64() * 1e3
    );
    let museum = link(bob, "Vatican Museums", "https://museum.example").await?;
    let t = Instant::now();
    bob.call(r::LISTS_INSERT, json!({"list": list, "item": museum}))
        .await?;
    until_item(alice, &list, &museum).await?;
    let got = alice.call(r::RESOURCES_GET, json!({"id": museum})).await?;
    println!(
        "      bob adds \"{}\"; alice sees it {:.0} ms later; her list now has {} items",
        got["properties"]["title"].as_str().unwrap_or("?"),
        t.elapsed().as_secs_f64() * 1e3,
        items(alice, &list).await?.len()
    );
    let t = Instant::now();
    alice
        .call(
            r::LISTS_MOVE,
            json!({"list": list, "item": museum, "index": 0}),
        )
        .await?;
    let wanted = vec![museum.clone(), rome.clone()];
    while items(bob, &list).await? != wanted {
        wait_event(bob, resource_topics::LIST_CHANGED, |_| true).await?;
    }
    println!(
        "      alice moves it to the top; bob sees the new order {:.0} ms later (positions replicate too)",
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
