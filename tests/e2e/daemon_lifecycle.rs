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
    daemon.stop().await;
}
