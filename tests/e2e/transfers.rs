//! Downloads and uploads through real `allpeers daemon` processes on loopback: a download from a real aria2c seeder
//! is paused, survives a daemon restart (its own limits and the global ones too) and resumes to the exact bytes
//! (fetching only what was missing); bad torrents and unsupported sources get the area's codes and the daemon lives
//! on; a .torrent comes by URL; a magnet is listed (paused, resumed, cancelled) while its metadata is asked for; one daemon seeds a file in place (`allpeers seed`) and another downloads it with `allpeers get`;
//! a daemon given a magnet link with nothing but its info-hash finds the seeding daemon through the DHT alone (a
//! `mainline` testnet in this process on 127.0.0.1, never the public DHT).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use allpeers_tests::social::{Client, wait_event};
use allpeers_tests::*;
use allpeers_transfer::bt::create::create_torrent;
use allpeers_transfer::bt::dht::{DhtNodeConfig, MainlineDht};
use allpeers_transfer::testing::{aria2c_seeder, content, wait_announced};
use base64::Engine as _;
use serde_json::{Value, json};

/// Not a multiple of the piece length, so the last piece is short.
const FILE_LEN: usize = 8 * 1024 * 1024 + 4321;
/// A whole test's budget (each finishes in a few seconds on loopback).
const DEADLINE: Duration = Duration::from_secs(60);
/// The download's limit before the pause: 8 MiB take about 4 s, so the pause lands part-way.
const SLOW: u64 = 2 * 1024 * 1024;
/// The download's own upload limit, given on `transfers.add`.
const UP_LIMIT: u64 = 300_000;
const TOPICS: &[&str] = &["transfer.added", "transfer.progress", "transfer.changed"];

/// Loopback only, no trackers and no DHT: peers are given directly.
fn configure(data_dir: &Path) {
    std::fs::create_dir_all(data_dir).unwrap();
    let config = json!({
        "net": {"quic": "127.0.0.1:0", "tcp": "127.0.0.1:0"},
        "transfers": {"listen": "127.0.0.1:0", "use_trackers": false, "dht": {"enabled": false}},
    });
    std::fs::write(data_dir.join("config.json"), config.to_string()).unwrap();
}

async fn ok(client: &mut Client, method: &str, params: Value) -> Value {
    let response = client.call(method, params).await;
    response
        .result
        .unwrap_or_else(|| panic!("{method}: {:?}", response.error))
}

async fn subscribed(daemon: &Daemon) -> Client {
    let mut client = daemon.client("transfers-test").await;
    ok(&mut client, "events.subscribe", json!({"topics": TOPICS})).await;
    client
}

fn id_of(v: &Value) -> u64 {
    v["id"].as_u64().expect("an id")
}

#[tokio::test]
async fn a_download_from_aria2c_pauses_survives_a_restart_and_resumes_exactly() {
    tokio::time::timeout(DEADLINE, async {
        let work = tempfile::tempdir().unwrap();
        let source = work.path().join("source");
        std::fs::create_dir_all(&source).unwrap();
        let data = content(FILE_LEN, 7);
        std::fs::write(source.join("movie.bin"), &data).unwrap();
        let (torrent, _) = create_torrent(&source.join("movie.bin"), &[]).unwrap();
        let torrent_path = work.path().join("movie.torrent");
        std::fs::write(&torrent_path, &torrent).unwrap();
        // Our torrent maker's output is accepted by a real client: aria2c seeds from it.
        let (_seeder, port) = aria2c_seeder(&source, &torrent_path);

        let node = work.path().join("node");
        configure(&node);
        let out = work.path().join("out");
        let daemon = Daemon::start(&node).await;
        let mut client = subscribed(&daemon).await;
        ok(&mut client, "net.limits.set", json!({"down": SLOW})).await;
        let added = ok(
            &mut client,
            "transfers.add",
            json!({"torrent": torrent_path, "dir": out, "peers": [format!("127.0.0.1:{port}")], "limits": {"up": UP_LIMIT}}),
        )
        .await;
        let id = id_of(&added);
        assert_eq!(added["limits"], json!({"down": null, "up": UP_LIMIT}));
        assert_eq!(added["progress"]["total_bytes"], FILE_LEN as u64);
        assert_eq!(added["name"], "movie.bin");
        let part = wait_event(&mut client, "transfer.progress", |d| {
            d["id"] == id && d["progress"]["done_bytes"].as_u64() > Some(0)
        })
        .await;
        let done_before = part["progress"]["done_bytes"].as_u64().unwrap();
        assert!(done_before < FILE_LEN as u64, "paused part-way: {part}");
        let paused = ok(&mut client, "transfers.pause", json!({"id": id})).await;
        assert_eq!(paused["state"], "paused", "{paused}");
        drop(client);
        daemon.stop().await;

        // The daemon comes back with the transfer still paused; resumed, it completes from its journal.
        let daemon = Daemon::start(&node).await;
        let mut client = subscribed(&daemon).await;
        let list = ok(&mut client, "transfers.list", json!({})).await;
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list[0]["id"], id);
        assert_eq!(list[0]["state"], "paused");
        assert_eq!(
            ok(&mut client, "net.limits.get", json!({})).await,
            json!({"down": SLOW, "up": null}),
            "the limits set outlive a restart"
        );
        assert_eq!(list[0]["limits"], json!({"down": null, "up": UP_LIMIT}));
        ok(&mut client, "net.limits.set", json!({})).await;
        ok(&mut client, "transfers.resume", json!({"id": id})).await;
        wait_event(&mut client, "transfer.changed", |d| {
            d["id"] == id && d["state"] == "seeding"
        })
        .await;
        let done = ok(&mut client, "transfers.get", json!({"id": id})).await;
        assert_eq!(done["progress"]["done_bytes"], FILE_LEN as u64);
        let fetched = done["progress"]["downloaded"].as_u64().unwrap();
        assert!(
            fetched <= (FILE_LEN as u64) - done_before,
            "fetched {fetched} after the restart, but {done_before} were already on disk"
        );
        assert!(
            std::fs::read(out.join("movie.bin")).unwrap() == data,
            "the download differs from the source"
        );
        daemon.stop().await;
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test]
async fn bad_torrents_and_sources_get_clear_errors() {
    tokio::time::timeout(DEADLINE, async {
        let work = tempfile::tempdir().unwrap();
        let node = work.path().join("node");
        configure(&node);
        let daemon = Daemon::start(&node).await;
        let mut client = daemon.client("transfers-test").await;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let mut traversal =
            b"d4:infod6:lengthi10e4:name2:..12:piece lengthi16384e6:pieces20:".to_vec();
        traversal.extend_from_slice(&[0; 20]);
        traversal.extend_from_slice(b"ee");
        let cases: Vec<(&str, Value, i32, &str)> = vec![
            (
                "transfers.add",
                json!({"torrent": b64(b"d4:infoi3ee")}),
                -32051,
                "malformed",
            ),
            (
                "transfers.add",
                json!({"torrent": b64(&traversal)}),
                -32051,
                "unsafe file path",
            ),
            (
                "transfers.add",
                json!({"torrent": "not base64!"}),
                -32051,
                "neither an absolute path nor base64",
            ),
            (
                "transfers.add",
                json!({"torrent": "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567"}),
                -32056,
                "no peer to ask",
            ),
            (
                "transfers.add",
                json!({"torrent": "magnet:?xt=urn:btih:0123"}),
                -32051,
                "not a magnet link",
            ),
            (
                "transfers.add",
                json!({"torrent": "ftp://example.com/a.torrent"}),
                -32052,
                "ftp://",
            ),
            (
                "transfers.add",
                json!({"torrent": "http://127.0.0.1:9/a.torrent"}),
                -32057,
                "cannot connect",
            ),
            (
                "transfers.add",
                json!({"torrent": "/nonexistent/x.torrent"}),
                -32054,
                "/nonexistent/x.torrent",
            ),
            (
                "transfers.add",
                json!({"torrent": b64(b"d4:infoi3ee"), "bogus": 1}),
                -32602,
                "bogus",
            ),
            ("transfers.get", json!({"id": 999}), -32050, "999"),
            ("transfers.pause", json!({"id": 999}), -32050, "999"),
            ("transfers.cancel", json!({"id": 999}), -32050, "999"),
            (
                "transfers.seed",
                json!({"path": "/nonexistent/file"}),
                -32054,
                "/nonexistent/file",
            ),
            (
                "transfers.seed",
                json!({"path": "relative/file"}),
                -32602,
                "absolute",
            ),
        ];
        for (method, params, code, says) in cases {
            let response = client.call(method, params.clone()).await;
            assert_eq!(error_code(&response), code, "{method} {params}");
            let message = &response.error.as_ref().unwrap().message;
            assert!(
                message.contains(says),
                "{method}: {message:?} should say {says:?}"
            );
        }
        // Sharing a file twice is one transfer; adding its torrent again is refused, naming it.
        let file = work.path().join("song.flac");
        std::fs::write(&file, content(100_000, 3)).unwrap();
        let first = ok(&mut client, "transfers.seed", json!({"path": file})).await;
        let again = ok(&mut client, "transfers.seed", json!({"path": file})).await;
        assert_eq!(first["transfer"]["id"], again["transfer"]["id"]);
        assert_eq!(first["transfer"]["state"], "seeding", "{first}");
        let duplicate = client
            .call("transfers.add", json!({"torrent": first["torrent"]}))
            .await;
        assert_eq!(error_code(&duplicate), -32053);
        // So is its magnet link, before any peer is asked.
        let magnet = format!(
            "magnet:?xt=urn:btih:{}&x.pe=127.0.0.1:9",
            first["transfer"]["info_hash"].as_str().unwrap()
        );
        let duplicate = client
            .call("transfers.add", json!({"torrent": magnet}))
            .await;
        assert_eq!(error_code(&duplicate), -32053);
        // A folder is one torrent of its files, seeded in place; an empty folder is refused.
        let album = work.path().join("album");
        std::fs::create_dir_all(album.join("day 2")).unwrap();
        std::fs::write(album.join("a.jpg"), content(70_000, 4)).unwrap();
        std::fs::write(album.join("day 2/b.jpg"), content(50_000, 5)).unwrap();
        let folder = ok(&mut client, "transfers.seed", json!({"path": album})).await;
        assert_eq!(folder["transfer"]["name"], "album");
        assert_eq!(folder["transfer"]["state"], "seeding", "{folder}");
        assert_eq!(folder["transfer"]["progress"]["total_bytes"], 120_000);
        std::fs::create_dir(work.path().join("hollow")).unwrap();
        let hollow = client
            .call(
                "transfers.seed",
                json!({"path": work.path().join("hollow")}),
            )
            .await;
        assert_eq!(error_code(&hollow), -32054, "{hollow:?}");
        ok(
            &mut client,
            "transfers.cancel",
            json!({"id": id_of(&folder["transfer"])}),
        )
        .await;
        // Cancelling a seed with delete_files never deletes the user's own file.
        let id = id_of(&first["transfer"]);
        ok(
            &mut client,
            "transfers.cancel",
            json!({"id": id, "delete_files": true}),
        )
        .await;
        assert!(file.exists(), "a file seeded in place was deleted");
        // Its .torrent by URL: fetched over HTTP from a server on loopback (404 for any other path).
        let torrent = base64::engine::general_purpose::STANDARD
            .decode(first["torrent"].as_str().unwrap())
            .unwrap();
        let url = serve_once(torrent).await;
        let missing = client
            .call("transfers.add", json!({"torrent": format!("{url}.gone")}))
            .await;
        assert_eq!(error_code(&missing), -32057, "{missing:?}");
        assert!(
            missing.error.as_ref().unwrap().message.contains("404"),
            "{missing:?}"
        );
        let by_url = ok(
            &mut client,
            "transfers.add",
            json!({"torrent": url, "paused": true}),
        )
        .await;
        assert_eq!(by_url["info_hash"], first["transfer"]["info_hash"]);
        assert_eq!(by_url["name"], "song.flac");
        ok(
            &mut client,
            "transfers.cancel",
            json!({"id": id_of(&by_url)}),
        )
        .await;
        // A magnet is listed at once while its metadata is asked for (its only peer here never answers), and
        // pause and cancel work meanwhile.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let magnet = format!(
            "magnet:?xt=urn:btih:{}&dn=waiting&x.pe={}",
            "ab".repeat(20),
            silent.local_addr().unwrap()
        );
        let listed = ok(&mut client, "transfers.add", json!({"torrent": magnet})).await;
        assert_eq!(listed["state"], "fetching_metadata", "{listed}");
        assert_eq!(listed["name"], "waiting");
        assert_eq!(listed["progress"]["total_bytes"], 0);
        let id = id_of(&listed);
        let got = ok(&mut client, "transfers.get", json!({"id": id})).await;
        assert_eq!(got["state"], "fetching_metadata");
        let paused = ok(&mut client, "transfers.pause", json!({"id": id})).await;
        assert_eq!(paused["state"], "paused");
        let resumed = ok(&mut client, "transfers.resume", json!({"id": id})).await;
        assert_eq!(resumed["state"], "fetching_metadata");
        ok(&mut client, "transfers.cancel", json!({"id": id})).await;
        assert_eq!(
            ok(&mut client, "transfers.list", json!({})).await,
            json!([])
        );
        daemon.stop().await;
    })
    .await
    .expect("the test finished in time");
}

#[tokio::test]
async fn a_daemon_seeds_a_file_to_another_daemon_through_the_cli() {
    tokio::time::timeout(DEADLINE, async {
        let work = tempfile::tempdir().unwrap();
        let (alice_dir, bob_dir) = (work.path().join("alice"), work.path().join("bob"));
        configure(&alice_dir);
        configure(&bob_dir);
        let alice = Daemon::start(&alice_dir).await;
        let bob = Daemon::start(&bob_dir).await;
        let mut alice_client = subscribed(&alice).await;
        let file = work.path().join("clip.bin");
        let data = content(FILE_LEN, 11);
        std::fs::write(&file, &data).unwrap();
        let torrent = work.path().join("clip.torrent");

        let seeded = timeout(
            "allpeers seed",
            allpeers(&alice_dir)
                .arg("seed")
                .arg(&file)
                .arg("--torrent-out")
                .arg(&torrent)
                .output(),
        )
        .await
        .unwrap();
        let said = String::from_utf8_lossy(&seeded.stdout);
        assert!(
            seeded.status.success(),
            "{said} {}",
            String::from_utf8_lossy(&seeded.stderr)
        );
        assert!(said.contains("seeding clip.bin"), "{said}");
        // Sharing the same file again answers the same transfer, and tells the port.
        let again = ok(&mut alice_client, "transfers.seed", json!({"path": file})).await;
        let port = again["listen"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        let alice_id = id_of(&again["transfer"]);

        let out = work.path().join("bob-out");
        let got = timeout(
            "allpeers get",
            allpeers(&bob_dir)
                .arg("get")
                .arg(&torrent)
                .arg("--dir")
                .arg(&out)
                .arg("--peer")
                .arg(format!("127.0.0.1:{port}"))
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
        assert!(said.contains("done: 8.0 MiB"), "{said}");
        assert!(
            std::fs::read(out.join("clip.bin")).unwrap() == data,
            "bob's copy differs"
        );

        // Alice's upload monitor saw every byte go out.
        wait_event(&mut alice_client, "transfer.progress", |d| {
            d["id"] == alice_id && d["progress"]["uploaded"].as_u64() >= Some(FILE_LEN as u64)
        })
        .await;
        let listed = timeout(
            "allpeers transfers",
            allpeers(&bob_dir).arg("transfers").output(),
        )
        .await
        .unwrap();
        let said = String::from_utf8_lossy(&listed.stdout);
        assert!(
            said.contains("seeding") && said.contains("clip.bin"),
            "{said}"
        );

        // Carol has only a magnet link naming alice: the metadata comes from alice (BEP 9), then the file.
        let carol_dir = work.path().join("carol");
        configure(&carol_dir);
        let carol = Daemon::start(&carol_dir).await;
        let magnet = format!(
            "magnet:?xt=urn:btih:{}&dn=clip.bin&x.pe=127.0.0.1:{port}",
            again["transfer"]["info_hash"].as_str().unwrap()
        );
        let carol_out = work.path().join("carol-out");
        let got = timeout(
            "allpeers get (magnet)",
            allpeers(&carol_dir)
                .arg("get")
                .arg(&magnet)
                .arg("--dir")
                .arg(&carol_out)
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
        assert!(
            std::fs::read(carol_out.join("clip.bin")).unwrap() == data,
            "carol's copy differs"
        );
        carol.stop().await;
        alice.stop().await;
        bob.stop().await;
    })
    .await
    .expect("the test finished in time");
}

/// `config.json` for a daemon on loopback with no trackers, whose DHT joins only through `bootstrap` (a testnet on
/// 127.0.0.1): a node of the transfers area's own (`transfers.dht`), or discovery's node shared with transfers
/// (`discovery.dht`; `transfers.dht` then only says the DHT is on).
fn configure_dht(data_dir: &Path, bootstrap: &[String], through_discovery: bool) {
    std::fs::create_dir_all(data_dir).unwrap();
    let dht = json!({"enabled": true, "bootstrap": bootstrap, "bind": "127.0.0.1"});
    let mut config = json!({
        "net": {"quic": "127.0.0.1:0", "tcp": "127.0.0.1:0"},
        "transfers": {"listen": "127.0.0.1:0", "use_trackers": false, "dht": dht},
    });
    if through_discovery {
        config["transfers"]["dht"] = json!({"enabled": true});
        config["discovery"] = json!({"dht": dht});
    }
    std::fs::write(data_dir.join("config.json"), config.to_string()).unwrap();
}

/// The daemon's DHT wiring end to end, both ways a daemon runs its DHT: alice seeds a file with a DHT node of the
/// transfers area's own (`transfers.dht.bootstrap`), bob's transfers use the node discovery runs
/// (`discovery.dht.bootstrap`). Bob is given a magnet link with only the info-hash — no tracker, no `x.pe`, no peer
/// — and finds alice through the DHT alone: her announce, his lookup, the metadata from her (ut_metadata), then the
/// file, to the exact bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_magnet_with_only_its_info_hash_is_found_between_daemons_through_the_dht() {
    tokio::time::timeout(DEADLINE, async {
        // Enough server nodes that discovery's record (BEP 44) is stored: its publish is bob's "DHT up" event.
        let testnet = tokio::task::spawn_blocking(|| mainline::Testnet::builder(10).build())
            .await
            .unwrap()
            .expect("a loopback DHT testnet");
        let work = tempfile::tempdir().unwrap();
        let (alice_dir, bob_dir) = (work.path().join("alice"), work.path().join("bob"));
        configure_dht(&alice_dir, &testnet.bootstrap, false);
        configure_dht(&bob_dir, &testnet.bootstrap, true);
        let alice = Daemon::start(&alice_dir).await;
        let bob = Daemon::start(&bob_dir).await;
        let mut bob_client = bob.client("transfers-test").await;
        let mut topics = TOPICS.to_vec();
        topics.push("net.changed");
        ok(
            &mut bob_client,
            "events.subscribe",
            json!({"topics": topics}),
        )
        .await;

        // Alice seeds in place; her transfer is looked up and announced on the DHT at once.
        let file = work.path().join("trackless.bin");
        let data = content(FILE_LEN, 13);
        std::fs::write(&file, &data).unwrap();
        let mut alice_client = alice.client("transfers-test").await;
        let seeded = ok(&mut alice_client, "transfers.seed", json!({"path": file})).await;
        assert_eq!(seeded["transfer"]["state"], "seeding", "{seeded}");
        let info_hash_hex = seeded["transfer"]["info_hash"]
            .as_str()
            .unwrap()
            .to_string();
        let alice_port: u16 = seeded["listen"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let mut info_hash = [0u8; 20];
        for (i, byte) in info_hash.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&info_hash_hex[2 * i..2 * i + 2], 16).unwrap();
        }
        // Seen from a third node: alice's announce is on the DHT (her BitTorrent port, her loopback address).
        let observer = MainlineDht::new(DhtNodeConfig {
            bootstrap: Some(testnet.bootstrap.clone()),
            bind: Some(Ipv4Addr::LOCALHOST),
            port: None,
        });
        let alice_peer = SocketAddr::from((Ipv4Addr::LOCALHOST, alice_port));
        wait_announced(&observer, info_hash, alice_peer, DEADLINE).await;
        // Bob's discovery node is up (its first record published), so his transfers have it from the start.
        let status = ok(&mut bob_client, "net.status", json!({})).await;
        if status["discovery"]["dht"]["last_publish_ms"].is_null() {
            wait_event(&mut bob_client, "net.changed", |d| {
                d["dht_published"]["at_ms"].is_u64()
            })
            .await;
        }

        let out = work.path().join("bob-out");
        let added = ok(
            &mut bob_client,
            "transfers.add",
            json!({"torrent": format!("magnet:?xt=urn:btih:{info_hash_hex}"), "dir": out}),
        )
        .await;
        let id = id_of(&added);
        wait_event(&mut bob_client, "transfer.changed", |d| {
            d["id"] == id && d["state"] == "seeding"
        })
        .await;
        assert!(
            std::fs::read(out.join("trackless.bin")).unwrap() == data,
            "bob's copy differs from alice's file"
        );
        let done = ok(&mut bob_client, "transfers.get", json!({"id": id})).await;
        assert_eq!(
            done["name"], "trackless.bin",
            "named by the fetched metadata"
        );
        let progress = &done["progress"];
        assert_eq!(progress["done_bytes"], FILE_LEN as u64);
        let sources = &progress["peer_sources"];
        assert!(sources["dht"].as_u64() >= Some(1), "{sources}");
        assert_eq!(
            (&sources["given"], &sources["tracker"]),
            (&json!(0), &json!(0)),
            "{sources}"
        );
        bob.stop().await;
        alice.stop().await;
    })
    .await
    .expect("the test finished in time");
}

/// Serves `body` at `/a.torrent` over HTTP on loopback (404 elsewhere), for as many requests as come; its URL.
async fn serve_once(body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/a.torrent", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && socket.read_exact(&mut byte).await.is_ok() {
                head.push(byte[0]);
            }
            let response = if head.starts_with(b"GET /a.torrent ") {
                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                    .into_bytes();
                r.extend_from_slice(&body);
                r
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
            };
            let _ = socket.write_all(&response).await;
        }
    });
    url
}
