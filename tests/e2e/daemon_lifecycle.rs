//! The daemon's life: one per data dir, clear errors on a corrupt key or data dir, sealed
//! identities, signals, socket permissions.

use std::os::unix::fs::PermissionsExt;

use allpeers_model::api::ErrorCode;
use allpeers_tests::*;
use serde_json::json;

#[tokio::test]
async fn a_second_daemon_on_the_same_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    let second = timeout("second daemon", allpeers(dir.path()).arg("daemon").output())
        .await
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already owns the data dir"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", daemon.child.id().unwrap())),
        "{stderr}"
    );
    // The first one is unaffected.
    let mut client = daemon.client("check").await;
    assert!(client.call("status.get", json!({})).await.result.is_some());
    daemon.stop().await;
}

#[tokio::test]
async fn socket_is_private_and_removed_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path()).await;
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let runtime_dir = daemon.socket.parent().unwrap();
    assert_eq!(
        std::fs::metadata(runtime_dir).unwrap().permissions().mode() & 0o077,
        0
    );
    let key_mode = std::fs::metadata(dir.path().join("identity.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);

    let pid = daemon.child.id().unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = timeout("exit after SIGTERM", daemon.child.wait())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(!daemon.socket.exists(), "socket removed");
    // The next start finds a clean data dir and the same identity.
    let again = Daemon::start(dir.path()).await;
    again.stop().await;
}

#[tokio::test]
async fn a_stale_socket_from_a_killed_daemon_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(dir.path()).await;
    let peer_id = daemon
        .client("a")
        .await
        .call("identity.get", json!({}))
        .await
        .result
        .unwrap()["peer_id"]
        .clone();
    daemon.child.start_kill().unwrap();
    timeout("killed", daemon.child.wait()).await.unwrap();
    assert!(
        daemon.socket.exists(),
        "SIGKILL leaves the socket file behind"
    );
    let restarted = Daemon::start(dir.path()).await;
    let info = restarted
        .client("b")
        .await
        .call("identity.get", json!({}))
        .await
        .result
        .unwrap();
    assert_eq!(info["peer_id"], peer_id, "same identity after a crash");
    restarted.stop().await;
}

#[tokio::test]
async fn corrupt_key_file_and_data_dir_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("identity.json"),
        "{\"format\":\"allpeers-identity\",\"version\":1}",
    )
    .unwrap();
    let out = timeout("daemon", allpeers(dir.path()).arg("daemon").output())
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("identity.json") && stderr.contains("unreadable"),
        "{stderr}"
    );

    let file = tempfile::NamedTempFile::new().unwrap();
    let out = timeout("daemon", allpeers(file.path()).arg("daemon").output())
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot create") && stderr.contains(&file.path().display().to_string()),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_sealed_identity_starts_locked_and_unlocks_with_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let first = Daemon::start_with(dir.path(), &[("ALLPEERS_PASSPHRASE", "open sesame")]).await;
    let info = first
        .client("a")
        .await
        .call("identity.get", json!({}))
        .await
        .result
        .unwrap();
    assert_eq!(info["sealed"], true);
    assert_eq!(info["locked"], false);
    first.stop().await;
    let key_file = std::fs::read_to_string(dir.path().join("identity.json")).unwrap();
    assert!(
        key_file.contains("\"sealed\"") && !key_file.contains("\"secret\""),
        "{key_file}"
    );

    let daemon = Daemon::start(dir.path()).await;
    let mut client = daemon.client("b").await;
    let locked = client.call("identity.get", json!({})).await.result.unwrap();
    assert_eq!(locked["locked"], true);
    assert_eq!(
        locked["peer_id"], info["peer_id"],
        "the PeerId is known while locked"
    );
    // Without the key the node cannot authenticate to peers, so it stays offline.
    let offline = client.call("net.status", json!({})).await.result.unwrap();
    assert_eq!(offline["running"], false);
    assert!(offline["reason"].as_str().unwrap().contains("locked"));
    client
        .call("events.subscribe", json!({"topics": ["identity.changed"]}))
        .await;
    let wrong = client
        .call("identity.unlock", json!({"passphrase": "open barley"}))
        .await;
    assert_eq!(error_code(&wrong), ErrorCode::WrongPassphrase.code());
    let unlocked = client
        .call("identity.unlock", json!({"passphrase": "open sesame"}))
        .await
        .result
        .unwrap();
    assert_eq!(unlocked["locked"], false);
    let (_, event) = timeout("event", client.read_notification()).await.unwrap();
    assert_eq!(event["topic"], "identity.changed");
    let online = client.call("net.status", json!({})).await.result.unwrap();
    assert_eq!(online["running"], true, "unlocking starts the endpoint");
    daemon.stop().await;
}

#[tokio::test]
async fn a_backup_is_restored_over_the_local_api_only_with_consent_to_replace() {
    let (original, other) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = Daemon::start(original.path()).await;
    let mut client = first.client("a").await;
    let backup = client
        .call("identity.export", json!({"passphrase": "backup words"}))
        .await
        .result
        .unwrap();
    first.stop().await;
    let (id, file) = (backup["peer_id"].clone(), backup["file"].clone());

    let daemon = Daemon::start(other.path()).await;
    let mut client = daemon.client("b").await;
    let own = client.call("identity.get", json!({})).await.result.unwrap()["peer_id"].clone();
    assert_ne!(own, id);
    // Bad input: each refused with its own code, nothing written.
    for (params, code) in [
        (json!({"file": "{not json"}), ErrorCode::BadBackup),
        (
            json!({"file": "{\"format\":\"other\"}"}),
            ErrorCode::BadBackup,
        ),
        (json!({"file": " ".repeat(70_000)}), ErrorCode::BadBackup),
        (json!({"file": file}), ErrorCode::InvalidParams),
        (
            json!({"file": file, "passphrase": "wrong words"}),
            ErrorCode::WrongPassphrase,
        ),
    ] {
        let response = client.call("identity.restore", params.clone()).await;
        assert_eq!(
            error_code(&response),
            code.code(),
            "{params:.80}: {response:?}"
        );
    }
    // A different identity is replaced only when asked to; the refusal names the current one.
    let refused = client
        .call(
            "identity.restore",
            json!({"file": file, "passphrase": "backup words"}),
        )
        .await;
    assert_eq!(error_code(&refused), ErrorCode::IdentityExists.code());
    assert_eq!(
        refused.error.as_ref().unwrap().data.as_ref().unwrap()["peer_id"],
        own
    );
    let key_path = other.path().join("identity.json");
    assert!(
        std::fs::read_to_string(&key_path)
            .unwrap()
            .contains(own.as_str().unwrap())
    );
    let restored = client
        .call(
            "identity.restore",
            json!({"file": file, "passphrase": "backup words", "replace": true}),
        )
        .await
        .result
        .unwrap();
    assert_eq!(restored["peer_id"], id);
    assert_eq!(restored["sealed"], true);
    assert_eq!(restored["restart_needed"], true);
    let kept = std::path::PathBuf::from(restored["replaced"].as_str().unwrap());
    assert!(
        std::fs::read_to_string(&kept)
            .unwrap()
            .contains(own.as_str().unwrap())
    );
    // The running daemon keeps its key until it restarts.
    let running = client.call("identity.get", json!({})).await.result.unwrap();
    assert_eq!(running["peer_id"], own);
    daemon.stop().await;

    // The next start has the restored identity, sealed with the backup's passphrase.
    let daemon = Daemon::start(other.path()).await;
    let mut client = daemon.client("c").await;
    let locked = client.call("identity.get", json!({})).await.result.unwrap();
    assert_eq!(
        (locked["peer_id"].clone(), locked["locked"].clone()),
        (id.clone(), json!(true))
    );
    let unlocked = client
        .call("identity.unlock", json!({"passphrase": "backup words"}))
        .await
        .result
        .unwrap();
    assert_eq!(unlocked["locked"], false);
    // Restoring the identity it has is no change.
    let same = client
        .call(
            "identity.restore",
            json!({"file": file, "passphrase": "backup words"}),
        )
        .await
        .result
        .unwrap();
    assert_eq!(same["restart_needed"], false);
    assert!(same.get("replaced").is_none());
    daemon.stop().await;
}

#[tokio::test]
async fn the_peer_endpoint_listens_where_configured_and_reports_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    let mut client = daemon.client("net").await;
    let status = client.call("net.status", json!({})).await.result.unwrap();
    assert_eq!(status["running"], true);
    let listening = status["listening"].as_array().unwrap();
    assert_eq!(listening.len(), 2, "{status}");
    for address in listening {
        assert!(
            address["addr"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{status}"
        );
    }
    assert_eq!(status["connections"], json!([]));
    daemon.stop().await;

    // A port that cannot be had leaves the local API serving and says why.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        dir.path().join("config.json"),
        format!(r#"{{"net": {{"quic": null, "tcp": "127.0.0.1:{port}"}}}}"#),
    )
    .unwrap();
    let daemon = Daemon::start(dir.path()).await;
    let mut client = daemon.client("net").await;
    let status = client.call("net.status", json!({})).await.result.unwrap();
    assert_eq!(status["running"], false);
    assert!(!status["reason"].as_str().unwrap().is_empty(), "{status}");
    daemon.stop().await;
}
