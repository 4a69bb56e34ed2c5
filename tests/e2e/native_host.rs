//! The real `allpeers` native host, started as browsers start it, against a real daemon.

use allpeers_model::api::chunk::{ChunkParams, Reassembler};
use allpeers_model::api::frame::BROWSER_MAX_FRAME;
use allpeers_tests::*;
use serde_json::json;

#[tokio::test]
async fn two_browsers_bridge_to_one_daemon_with_requests_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;

    // Chromium passes the caller's origin; Firefox passes the manifest path and its id.
    let (mut chromium_host, mut chromium) = spawn_native_host(dir.path(), &[CHROMIUM_ORIGIN]);
    let manifest = dir.path().join("net.allpeers.host.json");
    let (mut firefox_host, mut firefox) =
        spawn_native_host(dir.path(), &[manifest.to_str().unwrap(), FIREFOX_ID]);

    let hello = chromium.hello("extension/chromium").await;
    assert_eq!(hello["api_version"], 1);
    let subscribed = chromium
        .call("events.subscribe", json!({"topics": ["clients.changed"]}))
        .await;
    assert_eq!(
        subscribed.result.unwrap()["topics"],
        json!(["clients.changed"])
    );

    let firefox_hello = firefox.hello("extension/firefox").await;
    assert_eq!(
        firefox_hello["peer_id"], hello["peer_id"],
        "both browsers reach the same node"
    );

    // The daemon pushes the second browser's arrival to the first.
    let (method, params) = timeout("event", chromium.read_notification())
        .await
        .expect("an event");
    assert_eq!(method, "event");
    assert_eq!(params["topic"], "clients.changed");
    assert_eq!(params["data"]["client"], "extension/firefox");
    assert_eq!(params["data"]["connected"], true);
    assert_eq!(params["data"]["clients"], 2);

    let status = firefox.call("status.get", json!({})).await.result.unwrap();
    assert_eq!(status["clients"], 2);
    assert_eq!(status["pid"], daemon.child.id().unwrap());

    // Closing the browser's end stops the bridge, not the daemon.
    drop(firefox);
    let exit = timeout("firefox host exit", firefox_host.wait())
        .await
        .unwrap();
    assert!(exit.success(), "{exit}");
    let (_, left) = timeout("event", chromium.read_notification())
        .await
        .expect("an event");
    assert_eq!(left["data"]["connected"], false);
    assert_eq!(left["data"]["clients"], 1);
    let ping = chromium.call("ping", json!({"still": "here"})).await;
    assert_eq!(ping.result.unwrap(), json!({"still": "here"}));

    drop(chromium);
    assert!(
        timeout("chromium host exit", chromium_host.wait())
            .await
            .unwrap()
            .success()
    );
    daemon.stop().await;
}

#[tokio::test]
async fn replies_over_one_mebibyte_reach_the_browser_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    let (mut host, mut browser) = spawn_native_host(dir.path(), &[CHROMIUM_ORIGIN]);
    browser.hello("extension/chromium").await;

    let big = "x".repeat(3 * 1024 * 1024);
    browser
        .send_json(&json!({"jsonrpc": "2.0", "id": 9, "method": "ping", "params": {"blob": big}}))
        .await;
    let mut reassembler = Reassembler::default();
    let whole = loop {
        let frame = browser.read_frame().await.expect("a frame");
        assert!(
            frame.len() <= BROWSER_MAX_FRAME,
            "frame of {} bytes",
            frame.len()
        );
        let value: serde_json::Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(value["method"], "chunk", "large replies come as chunks");
        let chunk: ChunkParams = serde_json::from_value(value["params"].clone()).unwrap();
        if let Some(whole) = reassembler.add(chunk).unwrap() {
            break whole;
        }
    };
    let response: serde_json::Value = serde_json::from_slice(&whole).unwrap();
    assert_eq!(response["id"], 9);
    assert_eq!(
        response["result"]["blob"].as_str().unwrap().len(),
        big.len()
    );

    drop(browser);
    assert!(timeout("host exit", host.wait()).await.unwrap().success());
    daemon.stop().await;
}

#[tokio::test]
async fn bridges_started_at_once_start_exactly_one_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let mut bridges: Vec<_> = (0..4)
        .map(|_| spawn_native_host(dir.path(), &[CHROMIUM_ORIGIN]))
        .collect();
    let mut pids = Vec::new();
    for (_, browser) in &mut bridges {
        browser.hello("extension/chromium").await;
        let status = browser.call("status.get", json!({})).await.result.unwrap();
        pids.push(status["pid"].as_u64().unwrap());
    }
    pids.dedup();
    assert_eq!(pids.len(), 1, "one daemon serves every bridge: {pids:?}");

    // The bridges exit with the browser; the daemon they started keeps running.
    let (mut last_child, mut last) = bridges.pop().unwrap();
    last.call("events.subscribe", json!({"topics": ["clients.changed"]}))
        .await;
    for (mut child, browser) in bridges {
        drop(browser);
        assert!(
            timeout("bridge exit", child.wait())
                .await
                .unwrap()
                .success()
        );
    }
    // The daemon sees each bridge leave; the last one is still served.
    loop {
        let (_, event) = timeout("clients.changed", last.read_notification())
            .await
            .expect("an event");
        assert_eq!(event["data"]["connected"], false);
        if event["data"]["clients"] == 1 {
            break;
        }
    }
    let status = last.call("status.get", json!({})).await.result.unwrap();
    assert_eq!(status["clients"], 1);
    last.call("daemon.shutdown", json!({})).await;
    // The daemon closing the connection is reported to the browser, then the bridge ends.
    let (method, _) = timeout("bridge notice", last.read_notification())
        .await
        .expect("a notice");
    assert_eq!(method, "bridge.closed");
    // Until the browser closes the port the bridge still reads it: what the browser writes
    // meanwhile is not a broken pipe (which Chromium would report as garbage).
    for id in 0..64 {
        last.send_json(&json!({"jsonrpc": "2.0", "id": id, "method": "status.get", "params": {}}))
            .await;
    }
    assert!(
        last_child.try_wait().unwrap().is_none(),
        "the bridge waits for the browser to close the port"
    );
    drop(last);
    assert!(
        timeout("bridge exit", last_child.wait())
            .await
            .unwrap()
            .success()
    );
}

#[tokio::test]
async fn a_bridge_that_cannot_start_the_daemon_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("identity.json"), "{ broken").unwrap();
    let (mut host, mut browser) = spawn_native_host(dir.path(), &[CHROMIUM_ORIGIN]);
    let (method, params) = timeout("notice", browser.read_notification())
        .await
        .expect("a notice");
    assert_eq!(method, "bridge.error");
    let message = params["message"].as_str().unwrap();
    assert!(message.contains("identity.json"), "{message}");
    assert!(!timeout("host exit", host.wait()).await.unwrap().success());
}

#[tokio::test]
async fn a_bad_config_file_is_reported_to_the_browser() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{\"log\": {\"filter\": 3}}").unwrap();
    let (mut host, mut browser) = spawn_native_host(dir.path(), &[CHROMIUM_ORIGIN]);
    let (method, params) = timeout("notice", browser.read_notification())
        .await
        .expect("a notice");
    assert_eq!(method, "bridge.error");
    assert!(
        params["message"].as_str().unwrap().contains("config.json"),
        "{params}"
    );
    assert!(!timeout("host exit", host.wait()).await.unwrap().success());
}
