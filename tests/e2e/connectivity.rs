//! Connectivity discovery in a real node, through a real hub with a STUN server (RFC 5780
//! on 127.0.0.1 and 127.0.0.2), read through the local API (`net.status`, `net.changed`)
//! and the CLI (`allpeers net status`).

use allpeers_tests::*;
use serde_json::{Value, json};

#[tokio::test]
async fn net_status_shows_the_connectivity_found_through_the_hub() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start_with(
        hub_dir.path(),
        &[
            "--stun-primary",
            "127.0.0.1:0",
            "--stun-alternate",
            "127.0.0.2:0",
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    hub.node_config(dir.path());
    let node = Daemon::start(dir.path()).await;
    let mut client = node.client("t").await;
    let subscribed = client
        .call("events.subscribe", json!({"topics": ["net.changed"]}))
        .await;
    assert!(subscribed.result.is_some(), "{subscribed:?}");

    // The check runs once the hub line is up; its report arrives as a net.changed event
    // (unless it finished before we subscribed: then net.status already has it).
    let status = client.call("net.status", json!({})).await.result.unwrap();
    if status["connectivity"]["state"] != "done" {
        loop {
            let (_, event) = timeout("connectivity event", client.read_notification())
                .await
                .expect("an event");
            if event["topic"] == "net.changed" && event["data"].get("connectivity").is_some() {
                break;
            }
        }
    }
    let status = client.call("net.status", json!({})).await.result.unwrap();
    let c = &status["connectivity"];
    assert_eq!(c["state"], "done", "{status}");
    assert_eq!(c["nat_type"], "open", "{c}");
    assert_eq!(c["mapping"], "none");
    assert_eq!(c["filtering"], "endpoint-independent");
    assert_eq!(c["udp_mapped"], c["udp_local"]);
    assert_eq!(c["tcp"]["reachable"], true, "{c}");
    assert_eq!(c["quic_observed"], status["hub"]["observed"]);
    assert_eq!(c["errors"], json!([]));

    // The CLI prints it.
    let out = allpeers(dir.path())
        .args(["net", "status"])
        .output()
        .await
        .expect("allpeers net status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("nat:      open (mapping none, filtering endpoint-independent)"),
        "{text}"
    );
    assert!(text.contains("tcp:      reachable at 127.0.0.1:"), "{text}");
    drop(client);
    node.stop().await;
}

#[tokio::test]
async fn without_a_hub_connectivity_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let node = Daemon::start(dir.path()).await;
    let mut client = node.client("t").await;
    let status = client.call("net.status", json!({})).await.result.unwrap();
    assert_eq!(status["connectivity"]["state"], "unknown", "{status}");
    assert!(
        status["connectivity"]["reason"]
            .as_str()
            .unwrap()
            .contains("no home hub"),
        "{status}"
    );
    assert_eq!(status["hub"], Value::Null);
    drop(client);
    node.stop().await;
}
