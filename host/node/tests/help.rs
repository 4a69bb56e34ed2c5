//! The binary's own smoke test (it also makes `cargo test --workspace` build `allpeers`,
//! which the cross-process tests in `tests/` run).

#[test]
fn help_lists_every_command() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_allpeers"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for command in [
        "daemon",
        "native-host",
        "install",
        "uninstall",
        "id",
        "status",
        "stop",
        "identity",
        "log",
        "call",
        "demo",
    ] {
        assert!(help.contains(command), "--help lacks {command}:\n{help}");
    }
}
