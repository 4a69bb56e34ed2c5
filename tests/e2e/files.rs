//! Files shared between real daemons (a real hub, real nodes on loopback), one-to-one over HTTP on a peer stream:
//! alice shares a file from disk with bob; its File resource arrives with its hash and size; bob fetches it with
//! `files.get`, every block verified, and the bytes land in his folder. Carol, a peer no share names, is refused
//! (403); dave, a member speaking HTTP himself, gets the size from `HEAD` and 416 for a range past the end. When the
//! file changes on disk, its old hash is refused (410) and alice's node shares the new content under its new hash,
//! which bob then fetches with `allpeers get`. The speed test runs through `net.speedtest` and `allpeers speedtest`.
//!
//! A tampering source: alice's file is changed behind the stamp's back (same length, the old modification time
//! restored); bob's download refuses the block that fails verification and never lands the bad bytes.
//!
//! Crash safety, over the bulk path: bob's node has no QUIC and no listener, so it reaches alice only by dialling her
//! TCP listener, and his download takes a TCP+TLS connection of its own (`Endpoint::open_bulk_stream`, no yamux) —
//! both nodes' `net.status` `bulk` counters show the body went that way, not over a stream of the connection. Killed
//! -9 part-way through, bob resumes after a restart from the blocks he had verified, over a new bulk connection, and
//! ends with the exact bytes.
//!
//! The private swarm: alice shares a file with bob, carol and dave, her upload limited; the three download at once,
//! each from every member, and each gets bytes from another downloader (serving what they hold while they fetch
//! the rest). A peer no share names is refused by a downloader too. Sources follow the shares while a download runs:
//! a holder whose own share names the file joins a download under way.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use allpeers_net::transport::{RecvStream, SendStream};
use allpeers_net::{Endpoint, EndpointConfig, Identity, Namespace};
use allpeers_tests::social::*;
use allpeers_tests::*;
use allpeers_transfer::blob::ContentHash;
use allpeers_transfer::blob::http::{self, FetchError, Verified};
use serde_json::{Value, json};

const FILE_TOPICS: &[&str] = &[
    "share.received",
    "share.changed",
    "sync.progress",
    "transfer.added",
    "transfer.progress",
    "transfer.changed",
    "transfer.removed",
];

fn content(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

async fn subscribe(node: &mut Node, resource: &str) {
    node.call("events.subscribe", json!({"topics": FILE_TOPICS}))
        .await;
    node.call("resources.subscribe", json!({"filter": {"id": resource}}))
        .await;
}

/// Files arrive by themselves only when asked for (`files.get`): a test that asks races no auto-download.
async fn fetch_only_when_asked(node: &mut Node) {
    node.call("files.auto_download.set", json!({"max_bytes": 0}))
        .await;
}

/// A File resource linked to `path` on alice's disk.
async fn file_resource(node: &mut Node, path: &Path) -> String {
    let name = path.file_name().unwrap().to_str().unwrap();
    let r = node
        .call(
            "resources.create",
            json!({"resource": {"type": "File", "properties": {"name": name, "title": name},
                "meta": {"path": path.to_str().unwrap()}}}),
        )
        .await;
    r["id"].as_str().unwrap().to_string()
}

/// Shares `resource` with `members` (read) and has each accept it.
async fn share(alice: &mut Node, resource: &str, members: &mut [&mut Node]) -> String {
    let peers: Vec<Value> = members
        .iter()
        .map(|m| json!({"peer": m.id, "level": "read"}))
        .collect();
    let share = alice
        .call(
            "shares.create",
            json!({"resource": resource, "members": peers}),
        )
        .await;
    let id = share["id"].as_str().unwrap().to_string();
    for member in members.iter_mut() {
        wait_event(&mut member.client, "share.received", |d| d["share"] == id).await;
        member.call("shares.accept", json!({"share": id})).await;
    }
    id
}

/// Waits (on events) until `node` holds `resource` naming content other than `not`: its hash and size.
async fn until_hash(node: &mut Node, resource: &str, not: Option<&str>) -> (String, u64) {
    timeout("the File with its hash", async {
        loop {
            let r = node
                .client
                .call("resources.get", json!({"id": resource}))
                .await;
            if let Some(r) = r.result {
                let hash = r["properties"]["hash"].as_str().map(str::to_string);
                if let Some(hash) = hash.filter(|h| Some(h.as_str()) != not) {
                    return (hash, r["properties"]["size"].as_u64().unwrap());
                }
            }
            node.client.read_notification().await.expect("an event");
        }
    })
    .await
}

/// Waits until transfer `id` is whole (or fails: a panic naming why).
async fn until_done(node: &mut Node, id: u64) {
    let got = wait_event(&mut node.client, "transfer.changed", |d| {
        d["id"] == id && (d["state"] == "seeding" || d["state"] == "failed")
    })
    .await;
    assert_eq!(got["state"], "seeding", "{got}");
}

async fn get_file(node: &mut Node, resource: &str, dir: &Path) -> Value {
    node.call(
        "files.get",
        json!({"resource": resource, "dir": dir.to_str().unwrap()}),
    )
    .await
}

/// A bare endpoint (not a daemon) that speaks the files service's HTTP to one node itself.
struct Asker {
    endpoint: Endpoint,
    node: allpeers_model::PeerId,
}

impl Asker {
    async fn new(node: &mut Node) -> Asker {
        let endpoint = Endpoint::bind(Identity::generate(), EndpointConfig::loopback())
            .await
            .unwrap();
        let node_id = node.id.parse().unwrap();
        endpoint.add_peer_address(node_id, node.quic_address().await);
        Asker {
            endpoint,
            node: node_id,
        }
    }

    async fn stream(&self) -> tokio::io::Join<RecvStream, SendStream> {
        let ns = Namespace::allpeers("files", 1).unwrap();
        let (send, recv) = self.endpoint.open_stream(self.node, &ns).await.unwrap();
        tokio::io::join(recv, send)
    }

    async fn get(&self, hash: ContentHash, size: u64, start: u64) -> Result<Vec<u8>, FetchError> {
        let fetch = http::get(self.stream().await, hash, size, start).await?;
        let got = std::sync::Arc::new(std::sync::Mutex::new(vec![0u8; size as usize]));
        let sink = got.clone();
        fetch
            .receive(
                allpeers_transfer::throttle::Throttles(vec![]),
                move |item| {
                    if let Verified::Block { offset, data } = item {
                        sink.lock().unwrap()[offset as usize..offset as usize + data.len()]
                            .copy_from_slice(&data);
                    }
                    Ok(())
                },
            )
            .await?;
        Ok(std::mem::take(&mut *got.lock().unwrap()))
    }
}

fn landed(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[tokio::test]
async fn a_shared_file_reaches_a_member_verified_and_no_one_else() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = Node::start(&hub, "bob").await;
    befriend(&mut alice, &mut bob, "bob@hub.test").await;
    fetch_only_when_asked(&mut bob).await;

    let files = tempfile::tempdir().unwrap();
    let photo = files.path().join("photo.jpg");
    let bytes = content(3 * 1024 * 1024 + 12_345, 1);
    std::fs::write(&photo, &bytes).unwrap();
    let resource = file_resource(&mut alice, &photo).await;
    let dave = Asker::new(&mut alice).await;
    for node in [&mut alice, &mut bob] {
        subscribe(node, &resource).await;
    }
    // Dave is named by the share (he never accepts: membership is the grant); carol is not.
    let share_id = {
        let peers = json!([{"peer": bob.id, "level": "read"},
            {"peer": dave.endpoint.peer_id().to_string(), "level": "read"}]);
        let share = alice
            .call(
                "shares.create",
                json!({"resource": resource, "members": peers}),
            )
            .await;
        share["id"].as_str().unwrap().to_string()
    };
    wait_event(&mut bob.client, "share.received", |d| {
        d["share"] == share_id
    })
    .await;
    bob.call("shares.accept", json!({"share": share_id})).await;

    let (hash, size) = until_hash(&mut bob, &resource, None).await;
    assert_eq!(hash, blake3::hash(&bytes).to_hex().as_str());
    assert_eq!(size, bytes.len() as u64);

    // Bob fetches it: verified, whole, in his folder.
    let downloads = bob.dir.path().join("Downloads");
    let transfer = get_file(&mut bob, &resource, &downloads).await;
    assert_eq!(transfer["kind"], "file");
    assert_eq!(transfer["info_hash"], hash);
    let id = transfer["id"].as_u64().unwrap();
    until_done(&mut bob, id).await;
    assert_eq!(
        std::fs::read(landed(&downloads, "photo.jpg")).unwrap(),
        bytes
    );
    // Asking again for the same content is refused as a duplicate.
    let again = bob
        .client
        .call(
            "files.get",
            json!({"resource": resource, "dir": downloads.to_str().unwrap()}),
        )
        .await;
    assert_eq!(error_code(&again), -32053);

    // Carol: no share names her.
    let carol = Asker::new(&mut alice).await;
    let hash = ContentHash::parse(&hash).unwrap();
    assert!(matches!(
        carol.get(hash, size, 0).await,
        Err(FetchError::Refused(_))
    ));
    assert!(matches!(
        http::head(carol.stream().await, hash).await,
        Err(FetchError::Refused(_))
    ));
    // Dave, a member: HEAD gives the size, a range from the middle verifies, a range past the end is 416.
    assert_eq!(http::head(dave.stream().await, hash).await.unwrap(), size);
    let start = 64 * 1024;
    let got = dave.get(hash, size, start).await.unwrap();
    assert_eq!(got[start as usize..], bytes[start as usize..]);
    assert!(matches!(
        dave.get(hash, size, size.div_ceil(16384) * 16384).await,
        Err(FetchError::RangeNotSatisfiable)
    ));
    // A File that names no content cannot be fetched.
    let bare = bob
        .call(
            "resources.create",
            json!({"resource": {"type": "File", "properties": {"name": "x"}}}),
        )
        .await;
    let refused = bob
        .client
        .call("files.get", json!({"resource": bare["id"]}))
        .await;
    assert_eq!(error_code(&refused), -32090);

    // The file changes on disk: the old hash is refused, and the new content is shared under its own.
    let changed = content(2 * 1024 * 1024, 2);
    std::fs::write(&photo, &changed).unwrap();
    assert!(matches!(
        dave.get(hash, size, 0).await,
        Err(FetchError::Changed(_))
    ));
    let (new_hash, new_size) = until_hash(&mut bob, &resource, Some(&hash.to_hex())).await;
    assert_eq!(new_hash, blake3::hash(&changed).to_hex().as_str());
    assert_eq!(new_size, changed.len() as u64);
    // This time through the CLI, which waits until the file is whole.
    let second = bob.dir.path().join("Second");
    let got = timeout(
        "allpeers get",
        allpeers(bob.dir.path())
            .arg("get")
            .arg(&resource)
            .arg("--dir")
            .arg(&second)
            .output(),
    )
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&got.stdout);
    assert!(
        got.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(
        std::fs::read(landed(&second, "photo.jpg")).unwrap(),
        changed
    );

    // The speed test, through the API and the CLI (bob names alice as his contact).
    let measured = alice
        .call("net.speedtest", json!({"peer": bob.id, "bytes": 1 << 20}))
        .await;
    assert_eq!(measured["download_bytes"], 1 << 20);
    assert!(
        measured["download_rate"].as_f64().unwrap() > 0.0,
        "{measured}"
    );
    let speed = timeout(
        "allpeers speedtest",
        allpeers(bob.dir.path())
            .args(["speedtest", "alice", "--bytes", "1M"])
            .output(),
    )
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&speed.stdout);
    assert!(
        speed.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&speed.stderr)
    );
    assert!(said.contains("up ") && said.contains("down "), "{said}");
    bob.stop().await;
    alice.stop().await;
}

/// Alice and bob, contacts on one hub; a file of `len` bytes alice shares with bob, its hash known on bob's side.
struct Shared {
    alice: Node,
    bob: Node,
    path: PathBuf,
    bytes: Vec<u8>,
    resource: String,
    /// The share's id.
    share: String,
    _hub: HubProcess,
    _dirs: [tempfile::TempDir; 2],
}

async fn alice_shares_with_bob(name: &str, len: usize, seed: u32) -> Shared {
    alice_shares_with(name, len, seed, None).await
}

/// The same, bob's node with `bob_net` as its config's `net` section (default: QUIC and TCP on loopback).
async fn alice_shares_with(name: &str, len: usize, seed: u32, bob_net: Option<Value>) -> Shared {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = match bob_net {
        None => Node::start(&hub, "bob").await,
        Some(net) => {
            let dir = tempfile::tempdir().unwrap();
            hub.node_config_net(dir.path(), net);
            Node::start_in(dir, "bob").await
        }
    };
    befriend(&mut alice, &mut bob, "bob@hub.test").await;
    fetch_only_when_asked(&mut bob).await;
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join(name);
    let bytes = content(len, seed);
    std::fs::write(&path, &bytes).unwrap();
    let resource = file_resource(&mut alice, &path).await;
    for node in [&mut alice, &mut bob] {
        subscribe(node, &resource).await;
    }
    let share = share(&mut alice, &resource, &mut [&mut bob]).await;
    until_hash(&mut bob, &resource, None).await;
    Shared {
        alice,
        bob,
        path,
        bytes,
        resource,
        share,
        _hub: hub,
        _dirs: [hub_dir, files],
    }
}

#[tokio::test]
async fn bytes_that_fail_verification_never_land() {
    let Shared {
        mut alice,
        mut bob,
        path: video,
        bytes,
        resource,
        _hub,
        _dirs,
        ..
    } = alice_shares_with_bob("video.mp4", 2 * 1024 * 1024, 3).await;

    // Tampered behind the stamp's back: one byte in the second MiB, the old modification time restored. Alice's
    // node cannot tell; bob's must.
    let modified: SystemTime = std::fs::metadata(&video).unwrap().modified().unwrap();
    let mut tampered = bytes.clone();
    tampered[1_500_000] ^= 0x40;
    std::fs::write(&video, &tampered).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&video)
        .unwrap()
        .set_modified(modified)
        .unwrap();

    let downloads = bob.dir.path().join("Downloads");
    let transfer = get_file(&mut bob, &resource, &downloads).await;
    let id = transfer["id"].as_u64().unwrap();
    let failed = wait_event(&mut bob.client, "transfer.changed", |d| {
        d["id"] == id
            && (d["state"] == "retrying" || d["state"] == "failed" || d["state"] == "seeding")
    })
    .await;
    assert_ne!(failed["state"], "seeding", "{failed}");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("failed verification"),
        "{failed}"
    );
    assert!(!landed(&downloads, "video.mp4").exists());
    // What was written is the good prefix only: nothing at or after the bad block's start.
    let part = std::fs::read(downloads.join("video.mp4.part")).unwrap();
    let bad_block = 1_500_000 / 16384 * 16384;
    assert_eq!(part[..bad_block], bytes[..bad_block]);
    assert!(part[bad_block..].iter().all(|b| *b == 0));
    bob.stop().await;
    alice.stop().await;
}

/// What `node`'s bulk connections carried (`net.status`'s `bulk`).
async fn bulk(node: &mut Node) -> Value {
    node.call("net.status", json!({})).await["bulk"].clone()
}

fn count(bulk: &Value, what: &str) -> u64 {
    bulk[what]
        .as_u64()
        .unwrap_or_else(|| panic!("{what} in {bulk}"))
}

#[tokio::test]
async fn a_download_over_its_own_tcp_connection_killed_9_resumes_from_what_it_verified() {
    // Bob: no QUIC, no listener — every connection between the two is bob's dial of alice's TCP listener.
    let Shared {
        mut alice,
        mut bob,
        bytes,
        resource,
        _hub,
        _dirs,
        ..
    } = alice_shares_with(
        "film.mkv",
        8 * 1024 * 1024,
        4,
        Some(json!({"quic": null, "tcp": null})),
    )
    .await;
    let len = bytes.len() as u64;

    // Slow (2 MiB/s) so the kill lands part-way.
    let downloads = bob.dir.path().join("Downloads");
    let transfer = bob
        .call(
            "files.get",
            json!({"resource": resource, "dir": downloads.to_str().unwrap(), "paused": true}),
        )
        .await;
    let id = transfer["id"].as_u64().unwrap();
    bob.call(
        "transfers.set_limits",
        json!({"id": id, "limits": {"down": 2 * 1024 * 1024, "up": null}}),
    )
    .await;
    bob.call("transfers.resume", json!({"id": id})).await;
    let before = wait_event(&mut bob.client, "transfer.progress", |d| {
        d["id"] == id && d["progress"]["done_bytes"].as_u64().unwrap() >= 2 * 1024 * 1024
    })
    .await;
    let verified_before = before["progress"]["done_bytes"].as_u64().unwrap();
    // The body so far came on a connection of its own: bob dialled one, and it carried at least what he verified.
    let first = bulk(&mut bob).await;
    assert!(count(&first, "dialled") >= 1, "{first}");
    assert!(
        count(&first, "bytes_received") >= verified_before,
        "{first}"
    );
    let mut daemon = bob.daemon.take().unwrap();
    daemon.child.kill().await.expect("killed");

    bob.restart("bob").await;
    bob.call("events.subscribe", json!({"topics": FILE_TOPICS}))
        .await;
    let listed = bob.call("transfers.get", json!({"id": id})).await;
    assert_eq!(listed["kind"], "file");
    bob.call(
        "transfers.set_limits",
        json!({"id": id, "limits": {"down": null, "up": null}}),
    )
    .await;
    // Resumed at start, it may have finished before the subscription: then no event comes.
    if listed["state"] != "seeding" {
        until_done(&mut bob, id).await;
    }
    assert_eq!(
        std::fs::read(landed(&downloads, "film.mkv")).unwrap(),
        bytes
    );
    // Resumed, not restarted: this run fetched less than the whole file (what was verified before the kill stayed).
    let after = bob.call("transfers.get", json!({"id": id})).await;
    let fetched_after = after["progress"]["downloaded"].as_u64().unwrap();
    assert!(
        fetched_after + verified_before / 2 <= bytes.len() as u64,
        "fetched {fetched_after} after the restart, {verified_before} verified before"
    );
    // The rest, too, over a new bulk connection: the restarted node's counters hold at least what it fetched, and
    // alice's hold both connections and at least every byte of the file (the Bao tree besides).
    let second = bulk(&mut bob).await;
    assert!(count(&second, "dialled") >= 1, "{second}");
    assert!(
        count(&second, "bytes_received") >= fetched_after,
        "{second}"
    );
    let served = bulk(&mut alice).await;
    assert!(count(&served, "accepted") >= 2, "{served}");
    assert!(count(&served, "bytes_sent") >= len, "{served}");
    bob.stop().await;
    alice.stop().await;
}

/// A catalogued file that is shared and watched: when it changes on alice's disk, her node's watcher describes it
/// again as a shared edit, so bob gets the new description and the new content's hash without anyone asking.
#[tokio::test]
async fn a_watched_shared_file_that_changes_reaches_members_with_its_new_hash() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = Node::start(&hub, "bob").await;
    befriend(&mut alice, &mut bob, "bob@hub.test").await;
    fetch_only_when_asked(&mut bob).await;
    let files = tempfile::tempdir().unwrap();
    let folder = std::fs::canonicalize(files.path()).unwrap();
    let notes = folder.join("notes.txt");
    std::fs::write(&notes, "one\n").unwrap();

    alice
        .call("events.subscribe", json!({"topics": ["media.progress"]}))
        .await;
    alice
        .call("media.add", json!({"paths": [folder], "recursive": true}))
        .await;
    wait_event(&mut alice.client, "media.progress", |d| {
        d["finished"] == true
    })
    .await;
    let resource = alice.call("media.info", json!({"path": notes})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    for node in [&mut alice, &mut bob] {
        subscribe(node, &resource).await;
    }
    share(&mut alice, &resource, &mut [&mut bob]).await;
    let (first, _) = until_hash(&mut bob, &resource, None).await;
    assert_eq!(first, blake3::hash(b"one\n").to_hex().as_str());

    std::fs::write(&notes, "one\ntwo\n").unwrap();
    let (second, size) = until_hash(&mut bob, &resource, Some(&first)).await;
    assert_eq!(second, blake3::hash(b"one\ntwo\n").to_hex().as_str());
    assert_eq!(size, 8);
    let seen = bob.call("resources.get", json!({"id": resource})).await;
    assert_eq!(
        seen["properties"]["lines"], 2,
        "the new description: {seen}"
    );
    drop(hub);
}

/// One seeder and three downloaders, real daemons: every downloader gets bytes from a non-seeder, every byte
/// verified; a peer no share names is refused by a downloader as by the seeder.
#[tokio::test]
async fn a_private_swarm_of_one_seeder_and_three_downloaders_serves_itself() {
    let started = std::time::Instant::now();
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = Node::start(&hub, "bob").await;
    let mut carol = Node::start(&hub, "carol").await;
    let mut dave = Node::start(&hub, "dave").await;
    befriend(&mut alice, &mut bob, "bob@hub.test").await;
    befriend(&mut alice, &mut carol, "carol@hub.test").await;
    befriend(&mut alice, &mut dave, "dave@hub.test").await;
    for node in [&mut bob, &mut carol, &mut dave] {
        fetch_only_when_asked(node).await;
    }

    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("holiday.mp4");
    let bytes = content(6 * 1024 * 1024 + 4321, 5);
    std::fs::write(&path, &bytes).unwrap();
    let resource = file_resource(&mut alice, &path).await;
    for node in [&mut alice, &mut bob, &mut carol, &mut dave] {
        subscribe(node, &resource).await;
    }
    share(
        &mut alice,
        &resource,
        &mut [&mut bob, &mut carol, &mut dave],
    )
    .await;
    for node in [&mut bob, &mut carol, &mut dave] {
        until_hash(node, &resource, None).await;
    }
    // Alice sends at 3 MiB/s: alone she would need 6 s for the three; each chunk she sends once is spread by the
    // downloaders among themselves.
    alice
        .call(
            "net.limits.set",
            json!({"down": null, "up": 3 * 1024 * 1024}),
        )
        .await;

    let fetching = std::time::Instant::now();
    let mut ids = Vec::new();
    for node in [&mut bob, &mut carol, &mut dave] {
        let downloads = node.dir.path().join("Downloads");
        let transfer = get_file(node, &resource, &downloads).await;
        ids.push(transfer["id"].as_u64().unwrap());
    }
    let names = [(&bob.id, "bob"), (&carol.id, "carol"), (&dave.id, "dave")];
    let names: std::collections::HashMap<String, &str> =
        names.iter().map(|(id, n)| (id.to_string(), *n)).collect();
    let mut report = Vec::new();
    for (node, id) in [&mut bob, &mut carol, &mut dave].into_iter().zip(ids) {
        until_done(node, id).await;
        let downloads = node.dir.path().join("Downloads");
        assert_eq!(
            std::fs::read(landed(&downloads, "holiday.mp4")).unwrap(),
            bytes
        );
        let transfer = node.call("transfers.get", json!({"id": id})).await;
        let sources = transfer["sources"].as_array().expect("sources").clone();
        let from: Vec<(String, u64)> = sources
            .iter()
            .map(|s| {
                let peer = s["peer"].as_str().unwrap();
                let name = if peer == alice.id {
                    "alice"
                } else {
                    names[peer]
                };
                (name.to_string(), s["bytes"].as_u64().unwrap())
            })
            .collect();
        let total: u64 = from.iter().map(|(_, b)| b).sum();
        let me = names[&node.id];
        assert_eq!(total, bytes.len() as u64, "{me}: {from:?}");
        assert!(
            from.iter().any(|(name, b)| *name != "alice" && *b > 0),
            "{me} got nothing from another downloader: {from:?}"
        );
        report.push(format!("{me}: {from:?}"));
    }
    let took = fetching.elapsed();
    eprintln!(
        "swarm of 3 downloaders, {} bytes: {took:?}; {}",
        bytes.len(),
        report.join("; ")
    );

    // Eve: no share names her. Bob, a downloader serving on, refuses her as alice does.
    let hash = ContentHash::parse(&blake3::hash(&bytes).to_hex()).unwrap();
    for node in [&mut bob, &mut alice] {
        let eve = Asker::new(node).await;
        assert!(matches!(
            eve.get(hash, bytes.len() as u64, 0).await,
            Err(FetchError::Refused(_))
        ));
    }
    for node in [&mut alice, &mut bob, &mut carol, &mut dave] {
        node.stop().await;
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    drop(hub);
}

/// Sources follow the shares while a download runs: bob fetches alice's film from alice alone (her upload slow);
/// carol, who has the same film, shares it with bob in a share of her own; bob's download under way takes her in
/// at once (one-to-one becomes the swarm, from what had landed) and gets most of the rest from her, every byte
/// verified. Without her, alice alone would need 16 s.
#[tokio::test]
async fn a_download_takes_in_a_holder_whose_share_names_the_file_while_it_runs() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = Node::start(&hub, "bob").await;
    let mut carol = Node::start(&hub, "carol").await;
    befriend(&mut alice, &mut bob, "bob@hub.test").await;
    befriend(&mut carol, &mut bob, "bob@hub.test").await;
    fetch_only_when_asked(&mut bob).await;

    let bytes = content(16 * 1024 * 1024 + 777, 8);
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("film.mkv");
    std::fs::write(&path, &bytes).unwrap();
    let resource = file_resource(&mut alice, &path).await;
    subscribe(&mut bob, &resource).await;
    share(&mut alice, &resource, &mut [&mut bob]).await;
    until_hash(&mut bob, &resource, None).await;
    alice
        .call("net.limits.set", json!({"down": null, "up": 1024 * 1024}))
        .await;

    let downloads = bob.dir.path().join("Downloads");
    let transfer = get_file(&mut bob, &resource, &downloads).await;
    let id = transfer["id"].as_u64().unwrap();
    wait_event(&mut bob.client, "transfer.progress", |d| {
        d["id"] == id && d["progress"]["done_bytes"].as_u64().unwrap() > 0
    })
    .await;

    // Carol's own copy, shared with bob in a share of hers.
    let carol_files = tempfile::tempdir().unwrap();
    let carol_path = carol_files.path().join("film (carol).mkv");
    std::fs::write(&carol_path, &bytes).unwrap();
    let carol_resource = file_resource(&mut carol, &carol_path).await;
    share(&mut carol, &carol_resource, &mut [&mut bob]).await;
    let joined = std::time::Instant::now();
    until_done(&mut bob, id).await;
    let after = joined.elapsed();
    assert_eq!(
        std::fs::read(landed(&downloads, "film.mkv")).unwrap(),
        bytes
    );
    let transfer = bob.call("transfers.get", json!({"id": id})).await;
    let from = |peer: &str| -> u64 {
        transfer["sources"]
            .as_array()
            .expect("sources")
            .iter()
            .filter(|s| s["peer"] == peer)
            .map(|s| s["bytes"].as_u64().unwrap())
            .sum()
    };
    let (from_alice, from_carol) = (from(&alice.id), from(&carol.id));
    eprintln!("after carol joined: {after:?}; from alice {from_alice}, from carol {from_carol}");
    assert_eq!(from_alice + from_carol, bytes.len() as u64, "{transfer}");
    assert!(from_alice > 0, "{transfer}");
    assert!(
        from_carol > bytes.len() as u64 / 2,
        "carol gave most of it: {transfer}"
    );
    for node in [&mut alice, &mut bob, &mut carol] {
        node.stop().await;
    }
    drop(hub);
}

/// A source coming online starts a download waiting for it again at once: alice shares a file with bob and goes
/// offline; bob's download finds nobody and waits to retry (the manager's backoff, 5 s at first); alice comes back,
/// bob's node hears from the hub that she is online and starts the download again at once — through the queue,
/// which the backoff's own retry never passes — and that attempt completes (the connector finds her new ports),
/// every byte verified.
#[tokio::test]
async fn a_download_waiting_for_its_source_starts_again_when_the_source_comes_online() {
    let Shared {
        mut alice,
        mut bob,
        bytes,
        resource,
        _hub,
        _dirs,
        ..
    } = alice_shares_with_bob("film.mkv", 4 * 1024 * 1024 + 9, 12).await;
    alice.stop().await;
    let downloads = bob.dir.path().join("Downloads");
    let transfer = get_file(&mut bob, &resource, &downloads).await;
    let id = transfer["id"].as_u64().unwrap();
    // The first wait is 5 s: alice's return (tens of milliseconds) comes well inside it.
    wait_event(&mut bob.client, "transfer.changed", |d| {
        d["id"] == id && d["state"] == "retrying"
    })
    .await;
    let back = std::time::Instant::now();
    alice.restart("alice").await;
    wait_event(&mut bob.client, "transfer.changed", |d| {
        d["id"] == id && d["state"] == "queued"
    })
    .await;
    // Through the connector (her new addresses asked of the hub), not the addresses bob remembered: the attempt
    // started by her return is the one that succeeds.
    let mut states = Vec::new();
    while !matches!(
        states.last().map(String::as_str),
        Some("seeding" | "failed")
    ) {
        let changed = wait_event(&mut bob.client, "transfer.changed", |d| d["id"] == id).await;
        states.push(changed["state"].as_str().unwrap_or_default().to_string());
    }
    eprintln!("after alice's return: {states:?} in {:?}", back.elapsed());
    assert_eq!(states, ["downloading", "seeding"]);
    assert_eq!(
        std::fs::read(landed(&downloads, "film.mkv")).unwrap(),
        bytes
    );
    bob.stop().await;
    alice.stop().await;
}

/// Entitlement holds for a body under way too: alice revokes dave (a bare endpoint, a member by the share: he never
/// learns of the revocation himself) while she sends him a 16 MiB body at 1 MiB/s, and she stops sending there (the
/// next buffer is not sent), not at the end of the file.
#[tokio::test]
async fn a_member_revoked_mid_download_gets_no_more_bytes() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let bytes = content(16 * 1024 * 1024 + 3, 31);
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("rushes.mkv");
    std::fs::write(&path, &bytes).unwrap();
    let resource = file_resource(&mut alice, &path).await;
    let dave = Asker::new(&mut alice).await;
    let members = json!([{"peer": dave.endpoint.peer_id().to_string(), "level": "read"}]);
    let share = alice
        .call(
            "shares.create",
            json!({"resource": resource, "members": members}),
        )
        .await;
    let (hash, size) = until_hash(&mut alice, &resource, None).await;
    let hash = ContentHash::parse(&hash).unwrap();
    alice
        .call("net.limits.set", json!({"down": null, "up": 1024 * 1024}))
        .await;

    let fetch = http::get(dave.stream().await, hash, size, 0).await.unwrap();
    let (counted, mut received) = tokio::sync::watch::channel(0u64);
    let body = fetch.receive(
        allpeers_transfer::throttle::Throttles(vec![]),
        move |item| {
            if let Verified::Block { data, .. } = item {
                counted.send_modify(|n| *n += data.len() as u64);
            }
            Ok(())
        },
    );
    let revoke = async {
        timeout("dave's first bytes", received.wait_for(|n| *n > 0))
            .await
            .unwrap();
        let revoke = json!({"share": share["id"], "peer": dave.endpoint.peer_id().to_string()});
        alice.call("shares.revoke", revoke).await;
    };
    // The rest of the body would take ~15 s more.
    let (ended, ()) = timeout("the body cut short", async { tokio::join!(body, revoke) }).await;
    assert!(ended.is_err(), "the body went on to its end");
    let got = *received.borrow();
    eprintln!("dave stopped at {got} of {size} bytes");
    assert!(got < size / 2, "{got} of {size}");
    alice.stop().await;
}

/// Bob leaves the share while he downloads its file from alice: his download names no source any more and stops
/// (`a_one_to_one_download_whose_source_is_withdrawn_stops_and_fails_at_once` covers that side alone), and alice,
/// told of the leave, sends him no further buffer; what he verified is kept.
#[tokio::test]
async fn leaving_a_share_stops_the_download_of_its_file() {
    let Shared {
        mut alice,
        mut bob,
        bytes,
        resource,
        share,
        _hub,
        _dirs,
        ..
    } = alice_shares_with_bob("rushes.mkv", 16 * 1024 * 1024 + 5, 33).await;
    alice
        .call("net.limits.set", json!({"down": null, "up": 1024 * 1024}))
        .await;
    let downloads = bob.dir.path().join("Downloads");
    let transfer = get_file(&mut bob, &resource, &downloads).await;
    let id = transfer["id"].as_u64().unwrap();
    wait_event(&mut bob.client, "transfer.progress", |d| {
        d["id"] == id && d["progress"]["done_bytes"].as_u64().unwrap() > 0
    })
    .await;
    bob.call("shares.leave", json!({"share": share})).await;
    let ended = wait_event(&mut bob.client, "transfer.changed", |d| {
        d["id"] == id
            && ["retrying", "failed", "seeding"].contains(&d["state"].as_str().unwrap_or(""))
    })
    .await;
    assert_ne!(ended["state"], "seeding", "{ended}");
    let why = ended["reason"].as_str().unwrap_or_default();
    assert!(why.contains("no source is named"), "{ended}");
    let got = bob.call("transfers.get", json!({"id": id})).await;
    let done = got["progress"]["done_bytes"].as_u64().unwrap();
    assert!(done > 0 && done < bytes.len() as u64 / 2, "{got}");
    assert!(!landed(&downloads, "rushes.mkv").exists());
    bob.stop().await;
    alice.stop().await;
}

/// A download waiting for a source that is not a contact: the hub gives us the presence of contacts only, but a share member
/// coming back dials every member to reconcile the shares, and that connection says it is online. Alice shares a
/// file with bob and carol (contacts of hers, not of each other); bob fetches it whole; alice and bob go offline;
/// carol's download waits to retry; bob comes back and carol's download starts again at once, from bob.
#[tokio::test]
async fn a_download_waiting_for_a_member_who_is_not_a_contact_starts_again_when_it_connects() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = Node::start(&hub, "bob").await;
    let mut carol = Node::start(&hub, "carol").await;
    befriend(&mut alice, &mut bob, "bob@hub.test").await;
    befriend(&mut alice, &mut carol, "carol@hub.test").await;
    for node in [&mut bob, &mut carol] {
        fetch_only_when_asked(node).await;
    }
    let bytes = content(3 * 1024 * 1024 + 5, 21);
    let files = tempfile::tempdir().unwrap();
    let path = files.path().join("concert.mkv");
    std::fs::write(&path, &bytes).unwrap();
    let resource = file_resource(&mut alice, &path).await;
    for node in [&mut bob, &mut carol] {
        subscribe(node, &resource).await;
    }
    share(&mut alice, &resource, &mut [&mut bob, &mut carol]).await;
    for node in [&mut bob, &mut carol] {
        until_hash(node, &resource, None).await;
    }
    let bob_downloads = bob.dir.path().join("Downloads");
    let transfer = get_file(&mut bob, &resource, &bob_downloads).await;
    until_done(&mut bob, transfer["id"].as_u64().unwrap()).await;
    alice.stop().await;
    bob.stop().await;

    let downloads = carol.dir.path().join("Downloads");
    let transfer = get_file(&mut carol, &resource, &downloads).await;
    let id = transfer["id"].as_u64().unwrap();
    // The second failure: the manager's next retry is 10 s away, far beyond bob's return.
    wait_event(&mut carol.client, "transfer.changed", |d| {
        d["id"] == id
            && d["state"] == "retrying"
            && d["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("attempt 2 "))
    })
    .await;
    let waiting = std::time::Instant::now();
    bob.restart("bob").await;
    // Queued again by bob's connection, or started by the retry (which goes straight to downloading).
    let restarted = wait_event(&mut carol.client, "transfer.changed", |d| {
        d["id"] == id && (d["state"] == "queued" || d["state"] == "downloading")
    })
    .await;
    let again = waiting.elapsed();
    eprintln!(
        "carol's download {} again {again:?} into a 10 s wait",
        restarted["state"]
    );
    assert!(
        again < std::time::Duration::from_secs(9),
        "started by bob's connection, not by the retry 10 s later ({again:?})"
    );
    until_done(&mut carol, id).await;
    assert_eq!(
        std::fs::read(landed(&downloads, "concert.mkv")).unwrap(),
        bytes
    );
    let transfer = carol.call("transfers.get", json!({"id": id})).await;
    let from_bob: u64 = transfer["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .filter(|s| s["peer"] == bob.id.as_str())
        .map(|s| s["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(from_bob, bytes.len() as u64, "{transfer}");
    carol.stop().await;
    bob.stop().await;
}

/// Auto-download: alice shares an album (two photos and a video) with bob; under bob's default policy (`small`,
/// set to 1 MiB from the CLI) the photos arrive by themselves and the video does not, until bob sets the share's
/// policy to `all`.
#[tokio::test]
async fn a_shared_album_fills_in_by_itself_as_its_policy_says() {
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = HubProcess::start(hub_dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = Node::start(&hub, "bob").await;
    befriend(&mut alice, &mut bob, "bob@hub.test").await;

    let set = timeout(
        "allpeers autodownload --max 1M",
        allpeers(bob.dir.path())
            .args(["autodownload", "--max", "1M"])
            .output(),
    )
    .await
    .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    assert!(
        String::from_utf8_lossy(&set.stdout).contains("1.0 MiB"),
        "{}",
        String::from_utf8_lossy(&set.stdout)
    );

    let album = alice
        .call(
            "resources.create",
            json!({"resource": {"type": "List", "properties": {"title": "Holiday 2026"}}}),
        )
        .await;
    let album = album["id"].as_str().unwrap().to_string();
    let files = tempfile::tempdir().unwrap();
    let mut contents = Vec::new();
    for (name, len) in [
        ("rome.jpg", 150_000),
        ("pisa.jpg", 90_000),
        ("florence.mp4", 3 << 20),
    ] {
        let path = files.path().join(name);
        let bytes = content(len, len as u32);
        std::fs::write(&path, &bytes).unwrap();
        let item = file_resource(&mut alice, &path).await;
        alice
            .call("lists.insert", json!({"list": album, "item": item}))
            .await;
        contents.push((name, bytes));
    }
    bob.call("events.subscribe", json!({"topics": FILE_TOPICS}))
        .await;
    let share_id = share(&mut alice, &album, &mut [&mut bob]).await;
    let downloads = bob.call("transfers.download_dir.get", json!({})).await["dir"]
        .as_str()
        .unwrap()
        .to_string();
    let downloads = PathBuf::from(downloads);

    // The two photos come by themselves, nobody asked.
    let mut done = std::collections::HashSet::new();
    timeout("the photos, by themselves", async {
        while done.len() < 2 {
            let d = wait_event(&mut bob.client, "transfer.changed", |d| {
                d["state"] == "seeding"
            })
            .await;
            done.insert(d["id"].as_u64().unwrap());
        }
    })
    .await;
    for (name, bytes) in &contents[..2] {
        assert_eq!(
            &std::fs::read(landed(&downloads, name)).unwrap(),
            bytes,
            "{name}"
        );
    }
    let listed = bob.call("transfers.list", json!({})).await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        2,
        "not the video: {listed}"
    );

    // Everything, for this share: the video follows.
    let setting = bob
        .call(
            "files.auto_download.set",
            json!({"share": share_id, "policy": "all"}),
        )
        .await;
    assert_eq!(setting["shares"][0]["policy"], "all", "{setting}");
    assert_eq!(setting["max_bytes"], 1 << 20);
    wait_event(&mut bob.client, "transfer.changed", |d| {
        d["state"] == "seeding" && !done.contains(&d["id"].as_u64().unwrap())
    })
    .await;
    assert_eq!(
        std::fs::read(landed(&downloads, "florence.mp4")).unwrap(),
        contents[2].1
    );
    // A share we do not hold cannot have a policy.
    let refused = bob
        .client
        .call(
            "files.auto_download.set",
            json!({"share": "00".repeat(32), "policy": "all"}),
        )
        .await;
    assert_eq!(error_code(&refused), -32041);
    bob.stop().await;
    alice.stop().await;
    drop(hub);
}
