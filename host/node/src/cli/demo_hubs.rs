//! The demo's two-hub part (issue 18, cross-hub reach): a second hub on loopback with a node
//! homed there, erin@other.hub. Alice (homed at demo.hub) adds erin by her invite code,
//! which names erin's hub and its key; alice then watches erin at erin's hub over a light
//! guest line (the hubs never talk to each other), they chat directly, and while erin is
//! offline alice's letter is deposited at erin's hub, where erin fetches it.

use std::path::Path;
use std::time::Instant;

use allpeers_model::api::methods::{self as m, topics};
use serde_json::{Value, json};

use super::demo::{Node, start_named_hub, start_node, step, wait_event};

pub(super) async fn run(exe: &Path, dir: &Path, alice: &Node) -> anyhow::Result<()> {
    println!("\n[13/16] A second hub, other.hub, and erin homed there: contacts across hubs");
    let hub_dir = dir.join("other-hub");
    std::fs::create_dir_all(&hub_dir)?;
    let hub = start_named_hub(exe, &hub_dir, "other.hub", &[]).await?;
    println!(
        "      hub other.hub, key {}, quic {}",
        super::demo::short(&hub.ready["peer_id"]),
        hub.ready["quic"].as_str().unwrap_or("?")
    );
    let erin_dir = dir.join("erin");
    let mut erin = start_node(exe, &erin_dir, &hub, "erin").await?;
    let cert = erin
        .api
        .call(m::HUB_REGISTER, json!({"name": "erin"}))
        .await?;
    println!(
        "      erin -> {}",
        cert["certificate"]["full_name"].as_str().unwrap_or("?")
    );

    let alice_id = json!(alice.api.hello().peer_id);
    let erin_id = json!(erin.api.hello().peer_id);
    let invite = erin.api.call(m::CONTACTS_INVITE, json!({})).await?;
    let code = invite["code"].as_str().unwrap_or_default();
    println!(
        "      erin's invite code names her hub's key and addresses: {}…",
        &code[..code.len().min(24)]
    );
    let t = Instant::now();
    let added = alice
        .api
        .call(m::CONTACTS_ADD, json!({"who": code}))
        .await?;
    println!(
        "      alice adds it: {} ({}; the code is erin's consent in advance)",
        added["state"].as_str().unwrap_or("?"),
        added["delivered"].as_str().unwrap_or("?")
    );
    wait_event(&alice.api, topics::PRESENCE_CHANGED, |d| {
        d["peer_id"] == erin_id && d["online"] == true
    })
    .await?;
    println!(
        "      alice sees erin online {:.0} ms later: she watches erin at other.hub over a guest line",
        t.elapsed().as_secs_f64() * 1e3
    );
    // Erin learns alice's name from her certificate, checked against demo.hub's key.
    let named = wait_event(&erin.api, topics::CONTACT_CHANGED, |d| {
        d["peer_id"] == alice_id && d["name"].is_string()
    })
    .await?;
    println!(
        "      erin sees {} as her contact (its certificate checked against demo.hub's key)",
        named.data["name"].as_str().unwrap_or("?")
    );

    let chat = alice
        .api
        .call(m::CHAT_OPEN, json!({"peer": erin_id}))
        .await?;
    let chat_id = chat["id"].clone();
    let t = Instant::now();
    alice
        .api
        .call(
            m::CHAT_SEND,
            json!({"chat": chat_id, "body": "Hi Erin, greetings from demo.hub"}),
        )
        .await?;
    let got = wait_event(&erin.api, topics::MESSAGE_RECEIVED, |d| {
        d["chat"] == chat_id
    })
    .await?;
    println!(
        "      erin got \"{}\" in {:.1} ms (direct, as between peers of one hub)",
        got.data["body"].as_str().unwrap_or(""),
        t.elapsed().as_secs_f64() * 1e3
    );

    erin.api.call(m::DAEMON_SHUTDOWN, json!({})).await?;
    step("erin exit", async { Ok(erin.child.wait().await?) }).await?;
    wait_event(&alice.api, topics::PRESENCE_CHANGED, |d| {
        d["peer_id"] == erin_id && d["online"] == false
    })
    .await?;
    let body = "Call me when you are back";
    alice
        .api
        .call(m::CHAT_SEND, json!({"chat": chat_id, "body": body}))
        .await?;
    wait_event(&alice.api, topics::CHAT_RECEIPT, |d| d["via"] == "mailed").await?;
    println!(
        "      erin goes offline; alice's next message is sealed to erin and deposited at other.hub (her hub, not alice's)"
    );
    drop(erin);
    let erin = start_node(exe, &erin_dir, &hub, "erin").await?;
    erin.api
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
    let history = erin
        .api
        .call(m::CHAT_HISTORY, json!({"chat": chat_id}))
        .await?;
    if !has_it(&history) {
        wait_event(&erin.api, topics::MESSAGE_RECEIVED, |d| d["body"] == body).await?;
    }
    println!("      erin is back, fetches at other.hub only, and reads \"{body}\"");
    let mut erin = erin;
    erin.api.call(m::DAEMON_SHUTDOWN, json!({})).await?;
    step("erin exit", async { Ok(erin.child.wait().await?) }).await?;
    Ok(())
}
