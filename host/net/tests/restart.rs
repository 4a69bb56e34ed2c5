//! Cross-process: the remote is `examples/net_peer` in its own process. It is killed and
//! started again with the same identity on the same ports; the local endpoint reconnects.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use allpeers_model::PeerId;
use allpeers_net::{Address, TransportKind};
use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

fn net_peer_binary() -> PathBuf {
    // Integration tests live in target/<profile>/deps; cargo builds examples beside them.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("examples").join("net_peer");
    assert!(
        bin.exists(),
        "{} is missing: build the examples (cargo test / nextest build them)",
        bin.display()
    );
    bin
}

struct Remote {
    child: Child,
    peer: PeerId,
    quic: SocketAddr,
    tcp: SocketAddr,
}

async fn spawn_remote(key: &std::path::Path, quic: &str, tcp: &str) -> Remote {
    let mut child = Command::new(net_peer_binary())
        .args(["--key", key.to_str().unwrap(), "--quic", quic, "--tcp", tcp])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next_line().await.unwrap().expect("READY line");
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(parts[0], "READY", "{line}");
    Remote {
        peer: parts[1].parse().unwrap(),
        quic: parts[2].parse().unwrap(),
        tcp: parts[3].parse().unwrap(),
        child,
    }
}

async fn reconnect_after_restart(t: TransportKind) {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("remote.key");
    let remote = spawn_remote(&key, "127.0.0.1:0", "127.0.0.1:0").await;
    let local = endpoint().await;
    let address = match t {
        TransportKind::Quic => Address::quic(remote.quic),
        TransportKind::Tcp => Address::tcp(remote.tcp),
    };
    local.add_peer_address(remote.peer, address);
    let reply: String = local
        .request(remote.peer, &ns("echo"), "before")
        .await
        .unwrap();
    assert_eq!(reply, "before");
    let first = local.connection(&remote.peer).unwrap();

    // Kill the remote outright (no goodbye), start it again with the same key and ports.
    let (peer, quic, tcp) = (remote.peer, remote.quic, remote.tcp);
    // Same ports, whichever transport this run uses.
    let mut child = remote.child;
    child.kill().await.unwrap();
    child.wait().await.unwrap();
    let again = spawn_remote(&key, &quic.to_string(), &tcp.to_string()).await;
    assert_eq!(again.peer, peer);

    let reply: String = local.request(peer, &ns("echo"), "after").await.unwrap();
    assert_eq!(reply, "after");
    let second = local.connection(&peer).unwrap();
    assert_ne!(first.id(), second.id(), "a new connection");
    assert!(first.is_closed());
    drop(again);
}
both_transports!(
    reconnects_after_the_remote_restarts,
    super::reconnect_after_restart
);
