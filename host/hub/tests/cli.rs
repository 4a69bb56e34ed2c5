//! The `allpeers-hub` command line: help, bad configuration.

use std::process::Command;

fn hub() -> Command {
    Command::new(env!("CARGO_BIN_EXE_allpeers-hub"))
}

#[test]
fn help_reads_well() {
    let out = hub().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "meeting point",
        "--config",
        "--data-dir",
        "--relay-tap",
        "Examples:",
        "SIGTERM",
    ] {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
}

#[test]
fn bad_configuration_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (r#"{ "nmae": "x" }"#, "unknown field `nmae`"),
        (r#"{ "watch_policy": "everyone" }"#, "watch_policy"),
        (r#"{ "name": "bad name!" }"#, "not a hub name"),
        (r#"{ "quic": null, "tcp": null }"#, "listen on nothing"),
        (r#"{ "advertise": ["udp://1.2.3.4:5"] }"#, "quic or tcp"),
        ("not json", "config"),
    ];
    for (i, (json, expect)) in cases.iter().enumerate() {
        let config = dir.path().join(format!("c{i}.json"));
        std::fs::write(&config, json).unwrap();
        let data = dir.path().join(format!("d{i}"));
        let mut cmd = hub();
        cmd.args([
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        if !json.contains("null") {
            cmd.args(["--quic", "127.0.0.1:0", "--tcp", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // A bad config exits at once; bound the wait.
        let mut status = None;
        for _ in 0..200 {
            if let Some(s) = child.try_wait().unwrap() {
                status = Some(s);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let Some(status) = status else {
            let _ = child.kill();
            panic!("the hub started with config {json:?}");
        };
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!status.success(), "{json:?} accepted");
        assert!(
            err.contains(expect),
            "{json:?}: stderr lacks {expect:?}:\n{err}"
        );
    }
}
