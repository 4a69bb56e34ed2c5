//! Bad input on the local API: each gets an error naming the problem; the daemon and its
//! other clients carry on.

use allpeers_model::api::{ErrorCode, encode_frame};
use allpeers_tests::*;
use serde_json::json;

#[tokio::test]
async fn malformed_frames_get_errors_and_the_session_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    let mut client = daemon.connect().await;

    // Before hello, nothing else is served.
    let early = client.call("status.get", json!({})).await;
    assert_eq!(error_code(&early), ErrorCode::HelloRequired.code());
    let wrong_version = client
        .call("hello", json!({"client": "t", "api_version": 99}))
        .await;
    assert_eq!(
        error_code(&wrong_version),
        ErrorCode::UnsupportedVersion.code()
    );
    client.hello("bad-input").await;

    client
        .send_raw(&encode_frame(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\xff\"}",
        ))
        .await;
    let utf8 = client.read_response().await.unwrap();
    assert_eq!(error_code(&utf8), ErrorCode::ParseError.code());
    assert!(utf8.error.unwrap().message.contains("UTF-8"));

    client
        .send_raw(&encode_frame(b"{\"jsonrpc\": \"2.0\", \"id\": "))
        .await;
    let json_err = client.read_response().await.unwrap();
    assert_eq!(error_code(&json_err), ErrorCode::ParseError.code());
    assert!(json_err.error.unwrap().message.contains("JSON"));

    client.send_raw(&encode_frame(b"[1,2,3]")).await;
    assert_eq!(
        error_code(&client.read_response().await.unwrap()),
        ErrorCode::InvalidRequest.code()
    );

    let unknown = client.call("files.explode", json!({})).await;
    assert_eq!(error_code(&unknown), ErrorCode::MethodNotFound.code());
    assert!(unknown.error.unwrap().message.contains("files.explode"));

    let bad_params = client
        .call("events.subscribe", json!({"topics": "all"}))
        .await;
    assert_eq!(error_code(&bad_params), ErrorCode::InvalidParams.code());
    assert!(bad_params.error.unwrap().message.contains("invalid params"));
    let bad_topic = client
        .call("events.subscribe", json!({"topics": ["nope"]}))
        .await;
    assert!(
        bad_topic
            .error
            .unwrap()
            .message
            .contains("unknown topic \"nope\"")
    );
    let bad_filter = client
        .call("log.set", json!({"filter": "flesh,x=loud"}))
        .await;
    assert_eq!(error_code(&bad_filter), ErrorCode::InvalidParams.code());

    // The same session still works.
    assert_eq!(
        client.call("ping", json!([1])).await.result.unwrap(),
        json!([1])
    );
    daemon.stop().await;
}

#[tokio::test]
async fn an_oversized_or_truncated_frame_closes_only_that_client() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    let mut bystander = daemon.client("bystander").await;

    // A length prefix of 4 GiB: refused from the header, before any allocation.
    let mut huge = daemon.client("huge").await;
    huge.send_raw(&u32::MAX.to_le_bytes()).await;
    let response = huge.read_response().await.expect("an error before closing");
    assert_eq!(error_code(&response), ErrorCode::FrameTooLarge.code());
    assert!(response.error.unwrap().message.contains("over the limit"));
    assert!(huge.read_frame().await.is_none(), "connection closed");

    // A frame cut short, then the client stops sending.
    let mut truncated = daemon.client("truncated").await;
    truncated
        .send_raw(&encode_frame(b"{\"jsonrpc\":\"2.0\"}")[..10])
        .await;
    tokio::io::AsyncWriteExt::shutdown(&mut truncated.writer)
        .await
        .unwrap();
    let response = truncated
        .read_response()
        .await
        .expect("an error before closing");
    assert_eq!(error_code(&response), ErrorCode::TruncatedFrame.code());

    // Garbage that happens to be a small length, then junk.
    let mut garbage = daemon.connect().await;
    garbage
        .send_raw(b"\x05\x00\x00\x00\x00\x01\x02\x03\x04")
        .await;
    assert_eq!(
        error_code(&garbage.read_response().await.unwrap()),
        ErrorCode::ParseError.code()
    );

    // Everyone else is served as before.
    assert_eq!(
        bystander
            .call("ping", json!({"ok": true}))
            .await
            .result
            .unwrap(),
        json!({"ok": true})
    );
    let status = bystander
        .call("status.get", json!({}))
        .await
        .result
        .unwrap();
    assert!(status["clients"].as_u64().unwrap() >= 1);
    daemon.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_does_not_stall_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    // Subscribes, then never reads: its events pile up until its queue is full.
    let mut sleeper = daemon.client("sleeper").await;
    sleeper
        .call("events.subscribe", json!({"topics": ["log.changed"]}))
        .await;
    let mut busy = daemon.client("busy").await;
    let blob = "y".repeat(64 * 1024);
    for i in 0..300 {
        // Large log.set calls produce events for the sleeper; pings keep us honest.
        let filter = if i % 2 == 0 { "flesh" } else { "marrow" };
        busy.call("log.set", json!({"filter": filter}))
            .await
            .result
            .expect("log.set works");
        busy.call("ping", json!({"blob": blob}))
            .await
            .result
            .expect("ping works");
    }
    drop(sleeper);
    daemon.stop().await;
}
