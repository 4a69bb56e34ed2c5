//! The demo's transfers part: alice shares an 8 MiB file in place, bob downloads it by BitTorrent from her node on
//! loopback, with progress lines, and every byte is compared; then a folder, which bob gets from a magnet link alone.

use std::time::Instant;

use allpeers_model::api::methods as m;
use allpeers_model::api::transfers::{self as t, ProgressEvent, SeedResult, Transfer, topics};
use anyhow::{Context, bail};
use serde_json::json;

use super::demo::{Node, step, wait_event};
use super::transfers::progress_line;

/// The file alice shares.
const FILE_LEN: usize = 8 * 1024 * 1024;
/// Bob's download limit during the demo, so the progress is there to see (8 MiB take about two seconds).
const DEMO_DOWN_LIMIT: u64 = 4 * 1024 * 1024;

/// Incompressible bytes, different in every 8-byte word (xorshift).
fn file_bytes() -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut bytes = Vec::with_capacity(FILE_LEN);
    while bytes.len() < FILE_LEN {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes
}

pub(super) async fn run(alice: &Node, bob: &Node) -> anyhow::Result<()> {
    println!(
        "\n[14/16] Files by swarming: alice shares an 8 MiB file and a folder, bob downloads them (BitTorrent on loopback)"
    );
    let shared = alice.paths.data_dir.join("shared");
    std::fs::create_dir_all(&shared)?;
    let file = shared.join("holiday.mp4");
    let bytes = file_bytes();
    std::fs::write(&file, &bytes)?;
    alice
        .api
        .call(
            m::EVENTS_SUBSCRIBE,
            json!({"topics": [topics::TRANSFER_PROGRESS]}),
        )
        .await?;
    let seeded: SeedResult = step("transfers.seed", async {
        Ok(alice
            .api
            .call_typed(t::TRANSFERS_SEED, json!({"path": file}))
            .await?)
    })
    .await?;
    let alice_peer = format!("127.0.0.1:{}", seeded.listen.port());
    println!(
        "      alice: seeding {} in place (hashed once, never copied) as transfer {}, port {}",
        seeded.transfer.name,
        seeded.transfer.id,
        seeded.listen.port()
    );
    bob.api
        .call(
            m::EVENTS_SUBSCRIBE,
            json!({"topics": [topics::TRANSFER_PROGRESS, topics::TRANSFER_CHANGED]}),
        )
        .await?;
    bob.api
        .call(t::NET_LIMITS_SET, json!({"down": DEMO_DOWN_LIMIT}))
        .await?;
    let started = Instant::now();
    let added: Transfer = bob
        .api
        .call_typed(
            t::TRANSFERS_ADD,
            json!({"torrent": seeded.torrent, "peers": [alice_peer]}),
        )
        .await?;
    println!(
        "      bob: added the torrent (limit {} MiB/s for the show), downloading to {}",
        DEMO_DOWN_LIMIT >> 20,
        added.dir
    );
    step("the download", async {
        loop {
            let event = bob
                .api
                .next_event()
                .await
                .context("bob's node closed the connection")?;
            if event.topic == topics::TRANSFER_PROGRESS {
                let progress: ProgressEvent = serde_json::from_value(event.data)?;
                if progress.id == added.id {
                    println!("      bob: {}", progress_line(&progress.progress));
                }
            } else if event.topic == topics::TRANSFER_CHANGED && event.data["id"] == added.id {
                match event.data["state"].as_str() {
                    Some("seeding") => return anyhow::Ok(()),
                    Some("failed") => bail!("the download failed: {}", event.data["reason"]),
                    _ => {}
                }
            }
        }
    })
    .await?;
    let elapsed = started.elapsed();
    bob.api
        .call(t::NET_LIMITS_SET, json!({"down": null}))
        .await?;
    let got = std::fs::read(std::path::Path::new(&added.dir).join(&added.name))?;
    if got != bytes {
        bail!("bob's copy differs from alice's file");
    }
    println!(
        "      bob: complete in {:.1} s, every byte equal to alice's (each piece checked against the torrent's SHA-1 on arrival); bob now seeds it too",
        elapsed.as_secs_f64()
    );
    // Alice's numbers come with her session's next tick (once a second).
    let id = seeded.transfer.id;
    let event = wait_event(&alice.api, topics::TRANSFER_PROGRESS, |d| {
        d["id"] == id && d["progress"]["uploaded"].as_u64() >= Some(FILE_LEN as u64)
    })
    .await?;
    println!(
        "      alice's upload monitor: {} MiB sent for transfer {id}",
        event.data["progress"]["uploaded"].as_u64().unwrap_or(0) >> 20
    );
    magnet_of_a_folder(alice, bob, &shared, &alice_peer).await
}

/// Alice seeds a folder as one torrent; bob is given only its magnet link.
async fn magnet_of_a_folder(
    alice: &Node,
    bob: &Node,
    shared: &std::path::Path,
    alice_peer: &str,
) -> anyhow::Result<()> {
    let album = shared.join("album");
    std::fs::create_dir_all(album.join("day 2"))?;
    let photos: Vec<(&str, Vec<u8>)> = vec![
        ("beach.jpg", file_bytes()[..300_000].to_vec()),
        ("dunes.jpg", file_bytes()[300_000..520_000].to_vec()),
        ("day 2/harbour.jpg", file_bytes()[520_000..900_000].to_vec()),
    ];
    for (name, bytes) in &photos {
        std::fs::write(album.join(name), bytes)?;
    }
    let folder: SeedResult = alice
        .api
        .call_typed(t::TRANSFERS_SEED, json!({"path": album}))
        .await?;
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&dn=album&x.pe={alice_peer}",
        folder.transfer.info_hash
    );
    println!(
        "      alice: seeding the folder album/ ({} files) as one torrent; bob gets only its magnet link:\n        {magnet}",
        photos.len()
    );
    let started = Instant::now();
    let added: Transfer = step("transfers.add (magnet)", async {
        Ok(bob
            .api
            .call_typed(t::TRANSFERS_ADD, json!({"torrent": magnet}))
            .await?)
    })
    .await?;
    println!(
        "      bob: listed at once as transfer {} (state {}) while its metadata is asked of alice (BEP 9)",
        added.id,
        json!(added.state)
    );
    let id = added.id;
    wait_event(&bob.api, topics::TRANSFER_CHANGED, |d| {
        d["id"] == id && d["state"] == "seeding"
    })
    .await?;
    let added: Transfer = bob
        .api
        .call_typed(t::TRANSFERS_GET, json!({"id": id}))
        .await?;
    println!(
        "      bob: the metadata named it {}, {} bytes",
        added.name, added.progress.total_bytes
    );
    for (name, bytes) in &photos {
        let got = std::fs::read(std::path::Path::new(&added.dir).join("album").join(name))?;
        if got != *bytes {
            bail!("bob's {name} differs from alice's");
        }
    }
    println!(
        "      bob: the album complete {} ms after he pasted the link, every file equal to alice's",
        started.elapsed().as_millis()
    );
    Ok(())
}
