//! The `allpeers` command line, run as a user would.

use allpeers_tests::*;

async fn run(
    data_dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut command = allpeers(data_dir);
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    timeout("allpeers", command.output()).await.unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn id_is_created_once_and_stays() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), &["id"], &[]).await;
    assert!(first.status.success(), "{first:?}");
    let id = stdout(&first).trim().to_string();
    assert!(id.starts_with("ap") && id.len() == 58, "{id}");
    assert_eq!(stdout(&run(dir.path(), &["id"], &[]).await).trim(), id);
    // The daemon uses the same identity.
    let daemon = Daemon::start(dir.path()).await;
    let status = run(dir.path(), &["status", "--json"], &[]).await;
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["identity"]["peer_id"], id.as_str());
    assert_eq!(
        stdout(&run(dir.path(), &["id"], &[]).await).trim(),
        id,
        "id works while the daemon runs"
    );
    let stop = run(dir.path(), &["stop"], &[]).await;
    assert!(stop.status.success());
    drop(daemon);
}

#[tokio::test]
async fn status_says_when_no_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["status"], &[]).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(stdout(&out).contains("not running"));
    let stop = run(dir.path(), &["stop"], &[]).await;
    assert!(!stop.status.success(), "stop starts nothing");
    assert!(String::from_utf8_lossy(&stop.stderr).contains("daemon is not running"));
}

#[tokio::test]
async fn commands_start_the_daemon_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let call = run(dir.path(), &["call", "status.get"], &[]).await;
    assert!(call.status.success(), "{call:?}");
    let json: serde_json::Value = serde_json::from_slice(&call.stdout).unwrap();
    assert!(json["pid"].as_u64().is_some());
    // The daemon runs on after the command: a second one reaches the same.
    let again = run(dir.path(), &["call", "status.get"], &[]).await;
    let json2: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(json["pid"], json2["pid"]);
    let stop = run(dir.path(), &["stop"], &[]).await;
    assert!(stop.status.success());
}

#[tokio::test]
async fn identity_backup_restores_on_another_data_dir() {
    let home = tempfile::tempdir().unwrap();
    let original = tempfile::tempdir().unwrap();
    let restored = tempfile::tempdir().unwrap();
    let backup = home.path().join("me.allpeers-identity");
    let id = stdout(&run(original.path(), &["id"], &[]).await)
        .trim()
        .to_string();

    let no_pass = run(
        original.path(),
        &["identity", "export", backup.to_str().unwrap()],
        &[],
    )
    .await;
    assert!(!no_pass.status.success(), "a backup needs a passphrase");
    let export = run(
        original.path(),
        &["identity", "export", backup.to_str().unwrap()],
        &[("ALLPEERS_BACKUP_PASSPHRASE", "pw")],
    )
    .await;
    assert!(export.status.success(), "{export:?}");
    assert!(
        !std::fs::read_to_string(&backup)
            .unwrap()
            .contains("\"plain\"")
    );

    let wrong = run(
        restored.path(),
        &["identity", "import", backup.to_str().unwrap()],
        &[("ALLPEERS_BACKUP_PASSPHRASE", "nope")],
    )
    .await;
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong passphrase"));

    // A data dir that already has another identity needs --force.
    let other = stdout(&run(restored.path(), &["id"], &[]).await)
        .trim()
        .to_string();
    assert_ne!(other, id);
    let refused = run(
        restored.path(),
        &["identity", "import", backup.to_str().unwrap()],
        &[("ALLPEERS_BACKUP_PASSPHRASE", "pw")],
    )
    .await;
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--force"));
    let forced = run(
        restored.path(),
        &["identity", "import", "--force", backup.to_str().unwrap()],
        &[("ALLPEERS_BACKUP_PASSPHRASE", "pw")],
    )
    .await;
    assert!(forced.status.success(), "{forced:?}");
    assert_eq!(stdout(&run(restored.path(), &["id"], &[]).await).trim(), id);

    // The restored identity is sealed with the backup's passphrase and opens with it.
    let daemon = Daemon::start_with(restored.path(), &[("ALLPEERS_PASSPHRASE", "pw")]).await;
    let mut client = daemon.client("t").await;
    let info = client
        .call("identity.get", serde_json::json!({}))
        .await
        .result
        .unwrap();
    assert_eq!(info["locked"], false);
    assert_eq!(info["peer_id"], id.as_str());
    // Importing while the daemon runs is refused.
    let busy = run(
        restored.path(),
        &["identity", "import", "--force", backup.to_str().unwrap()],
        &[("ALLPEERS_BACKUP_PASSPHRASE", "pw")],
    )
    .await;
    assert!(String::from_utf8_lossy(&busy.stderr).contains("stop the daemon"));
    daemon.stop().await;
}

#[tokio::test]
async fn install_writes_manifests_a_browser_can_launch() {
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = timeout(
        "install",
        allpeers(data.path())
            .arg("install")
            .env("HOME", home.path())
            .output(),
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let manifest_path = home
        .path()
        .join(".config/chromium/NativeMessagingHosts/net.allpeers.host.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert!(
        home.path()
            .join(".mozilla/native-messaging-hosts/net.allpeers.host.json")
            .exists()
    );
    assert!(
        home.path()
            .join(".config/google-chrome/NativeMessagingHosts/net.allpeers.host.json")
            .exists()
    );

    // Launch what the manifest names, the way Chromium does, and talk to it.
    let host_path = manifest["path"].as_str().unwrap();
    let mut child = tokio::process::Command::new(host_path)
        .arg(CHROMIUM_ORIGIN)
        .env_remove("ALLPEERS_DATA_DIR")
        .env("HOME", home.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut browser = RawClient::new(child.stdout.take().unwrap(), child.stdin.take().unwrap());
    browser.hello("extension/chromium").await;
    let status = browser
        .call("status.get", serde_json::json!({}))
        .await
        .result
        .unwrap();
    assert_eq!(
        status["data_dir"],
        data.path().canonicalize().unwrap().display().to_string(),
        "the launcher carries the data dir"
    );
    browser.call("daemon.shutdown", serde_json::json!({})).await;

    let out = timeout(
        "uninstall",
        allpeers(data.path())
            .arg("uninstall")
            .env("HOME", home.path())
            .output(),
    )
    .await
    .unwrap();
    assert!(out.status.success());
    assert!(!manifest_path.exists());
}

#[tokio::test]
async fn resources_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path()).await;
    let created = run(
        dir.path(),
        &[
            "resource",
            "create",
            r#"{"type":"Link","properties":{"url":"https://example.org/","title":"Example page"}}"#,
        ],
        &[],
    )
    .await;
    assert!(created.status.success(), "{created:?}");
    let table = stdout(&created);
    assert!(
        table.starts_with("ID") && table.contains("Link") && table.contains("Example page"),
        "{table}"
    );

    // ESC cannot even be stored (not an XML character); C1 controls such as CSI can, and
    // are not printed raw.
    let esc = run(dir.path(), &["resource", "create", "{\"type\":\"Link\",\"properties\":{\"url\":\"https://x/\",\"title\":\"\\u001b[31mred\"}}"], &[]).await;
    assert!(
        String::from_utf8_lossy(&esc.stderr).contains("properties.title"),
        "{esc:?}"
    );
    let hostile = run(dir.path(), &["resource", "create", "{\"type\":\"Link\",\"properties\":{\"url\":\"https://x/\",\"title\":\"\\u009b31mred\"}}"], &[]).await;
    assert!(hostile.status.success(), "{hostile:?}");
    assert!(
        !stdout(&hostile).contains('\u{9b}'),
        "terminal controls are not printed"
    );

    let query = run(
        dir.path(),
        &[
            "--json",
            "query",
            r#"{"type":"Link","sort":[{"prop":"title"}]}"#,
        ],
        &[],
    )
    .await;
    let json: serde_json::Value = serde_json::from_slice(&query.stdout).unwrap();
    assert_eq!(json["resources"].as_array().unwrap().len(), 2);
    let count = run(
        dir.path(),
        &["query", "--count", r#"{"type":"Resource"}"#],
        &[],
    )
    .await;
    assert_eq!(stdout(&count).trim(), "2");

    let schemas = run(dir.path(), &["schema", "list"], &[]).await;
    assert!(stdout(&schemas).contains("Image"));
    let bad = run(dir.path(), &["query", r#"{"type":"Nope"}"#], &[]).await;
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("Nope"),
        "{bad:?}"
    );
    daemon.stop().await;
}
