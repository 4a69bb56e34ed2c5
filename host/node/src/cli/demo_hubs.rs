//! The demo's two-hub part (issue 18, cross-hub reach): a second hub on loopback with a node
//! homed there, carol@other.hub. Alice (homed at demo.hub) adds carol by her invite code,
//! which names carol's hub and its key; alice then watches carol at carol's hub over a light
//! guest line (the hubs never talk to each other), they chat directly, and while carol is
//! offline alice's letter is deposited at carol's hub, where carol fetches it.

use std::path::Path;
use std::time::Instant;

use allpeers_model::api::methods::{self as m, topics};
use serde_json::{Value, json};

use super::demo::{Node, start_named_hub, start_node, step, wait_event};

pub(super) async fn run(exe: &Path, dir: &Path, alice: &Node) -> anyhow::Result<()> {
    println!("\n[12b/14] A second hub, other.hub, and carol homed there: contacts across hubs");
    let hub_dir = dir.join("other-hub");
    std::fs::create_dir_all(&hub_dir)?;
    let hub = start_named_hub(exe, &hub_dir, "other.hub", &[]).await?;
    println!(
        "      hub other.hub, key {}, quic {}",
        super::demo::short(&hub.ready["peer_id"]),
        hub.ready["quic"].as_str().unwrap_or("?")
    );
    let carol_dir = dir.join("carol");
    let mut carol = start_node(exe, &carol_dir, &hub, "carol").await?;
    let cert = carol
        .api
        .call(m::HUB_REGISTER, json!({"name": "carol"}))
        .await?;
    println!(
        "      carol -> {}",
        cert["certificate"]["full_name"].as_str().unwrap_or("?")
    );

    let alice_id = json!(alice.api.hello().peer_id);
    let carol_id = json!(carol.api.hello().peer_id);
    let invite = carol.api.call(m::CONTACTS_INVITE, json!({})).await?;
    let code = invite["code"].as_str().unwrap_or_default();
    println!(
        "      carol's invite code names her hub's key and addresses: {}…",
        &code[..code.len().min(24)]
    );
    let t = Instant::now();
    let added = alice
        .api
        .call(m::CONTACTS_ADD, json!({"who": code}))
        .await?;
    println!(
        "      alice adds it: {} ({}; the code is carol's consent in advance)",
        added["state"].as_str().unwrap_or("?"),
        added["delivered"].as_str().unwrap_or("?")
    );
    wait_event(&alice.api, topics::PRESENCE_CHANGED, |d| {
        d["peer_id"] == carol_id && d["online"] == true
    })
    .await?;
    println!(
        "      alice sees carol online {:.0} ms later: she watches carol at other.hub over a guest line",
        t.elapsed().as_secs_f64() * 1e3
    );
    // Carol learns alice's name from her certificate, checked against demo.hub's key.
    let named = wait_event(&carol.api, topics::CONTACT_CHANGED, |d| {
        d["peer_id"] == alice_id && d["name"].is_string()
    })
    .await?;
    println!(
        "      carol sees {} as her contact (its certificate checked against demo.hub's key)",
        named.data["name"].as_str().unwrap_or("?")
    );

    let chat = alice
        .api
        .call(m::CHAT_OPEN, json!({"peer": carol_id}))
        .await?;
    let chat_id = chat["id"].clone();
    let t = Instant::now();
    alice
        .api
        .call(
            m::CHAT_SEND,
            json!({"chat": chat_id, "body": "Hi Carol, greetings from demo.hub"}),
        )
        .await?;
    let got = wait_event(&carol.api, topics::MESSAGE_RECEIVED, |d| {
        d["chat"] == chat_id
    })
    .await?;
    println!(
        "      carol got \"{}\" in {:.1} ms (direct, as between peers of one hub)",
        got.data["body"].as_str().unwrap_or(""),
        t.elapsed().as_secs_f64() * 1e3
    );

    carol.api.call(m::DAEMON_SHUTDOWN, json!({})).await?;
    step("carol exit", async { Ok(carol.child.wait().await?) }).await?;
    wait_event(&alice.api, topics::PRESENCE_CHANGED, |d| {
        d["peer_id"] == carol_id && d["online"] == false
    })
    .await?;
    let body = "Call me when you are back";
    alice
        .api
        .call(m::CHAT_SEND, json!({"chat": chat_id, "body": body}))
        .await?;
    wait_event(&alice.api, topics::CHAT_RECEIPT, |d| d["via"] == "mailed").await?;
    println!(
        "      carol goes offline; alice's next message is sealed to carol and deposited at other.hub (her hub, not alice's)"
    );
    drop(carol);
    let carol = start_node(exe, &carol_dir, &hub, "carol").await?;
    carol
        .api
        .call(
            m::EVENTS_SUBSCRIBE,
            json!({"topics": [topics::MESSAGE_RECEIVED]}),
        )
        .await?;
    let has_it = |h: &Value| {
        h.as_array()
            .into_iter()
            .flatten()
            .any(|m| m["body"] == body)
    };
    let history = carol
        .api
        .call(m::CHAT_HISTORY, json!({"chat": chat_id}))
        .await?;
    if !has_it(&history) {
        wait_event(&carol.api, topics::MESSAGE_RECEIVED, |d| d["body"] == body).await?;
    }
    println!("      carol is back, fetches at other.hub only, and reads \"{body}\"");
    let mut carol = carol;
    carol.api.call(m::DAEMON_SHUTDOWN, json!({})).await?;
    step("carol exit", async { Ok(carol.child.wait().await?) }).await?;
    Ok(())
}
