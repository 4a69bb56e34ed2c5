//! The demo's shared files part: alice shares an album — a photo and a 100 MiB video — with bob and carol (a third
//! node, started here). The photo comes to both by itself (auto-download takes small files); bob fetches the video
//! with a progress bar, then carol fetches it from the private swarm of alice and bob, and the demo shows how many
//! bytes each gave her and that the file's BLAKE3 hash matches.

use std::path::Path;
use std::time::{Duration, Instant};

use allpeers_model::api::files::FILES_GET;
use allpeers_model::api::methods::{self as m, topics as core_topics};
use allpeers_model::api::shares::{self as sh, topics as share_topics};
use allpeers_model::api::transfers::{self as t, ProgressEvent, Transfer, topics};
use allpeers_model::resource::api as r;
use allpeers_node::client::ApiClient;
use allpeers_transfer::blob::ContentHash;
use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::demo::{Hub, Node, short, start_node, step, wait_event};
use super::transfers::{progress_line, size, state_word};

/// The video's length: large enough that the swarm has work to share out, small enough for a few seconds on loopback.
const VIDEO_LEN: usize = 100 * 1024 * 1024;
const PHOTO_LEN: usize = 2 * 1024 * 1024 + 4321;
/// A download of 100 MiB on a loaded CI machine takes seconds, not the 15 of a step.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);
/// Bob's download limit while he fetches the video, so there is progress to see and a pause to make.
const SHOW_LIMIT: u64 = 32 << 20;
/// Progress lines are printed at most this often (the bus sends one every 250 ms).
const PRINT_EVERY: Duration = Duration::from_millis(500);

/// `len` bytes, made fast: one MiB of xorshift output repeated, each copy stamped with its index in its first
/// word (so no two MiB are alike).
fn media_bytes(len: usize, seed: u64) -> Vec<u8> {
    const MIB: usize = 1 << 20;
    let mut state = seed | 1;
    let mut block = Vec::with_capacity(MIB);
    while block.len() < MIB {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        block.extend_from_slice(&state.to_le_bytes());
    }
    let mut bytes = Vec::with_capacity(len);
    for index in 0..len.div_ceil(MIB) as u64 {
        let start = bytes.len();
        bytes.extend_from_slice(&block[..MIB.min(len - start)]);
        let stamp = index.to_le_bytes();
        let end = (start + stamp.len()).min(bytes.len());
        bytes[start..end].copy_from_slice(&stamp[..end - start]);
    }
    bytes
}

/// A File resource linked to `path` on the sharer's disk, put in `list`.
async fn file_in(api: &ApiClient, list: &Value, path: &Path) -> anyhow::Result<Value> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let file = api
        .call(
            r::RESOURCES_CREATE,
            json!({"resource": {"type": "File", "properties": {"name": name, "title": name},
                "meta": {"path": path}}}),
        )
        .await?;
    api.call(r::LISTS_INSERT, json!({"list": list, "item": file["id"]}))
        .await?;
    Ok(file["id"].clone())
}

/// Carol: a third node, registered, alice's contact.
async fn carol_joins(exe: &Path, dir: &Path, hub: &Hub, alice: &Node) -> anyhow::Result<Node> {
    std::fs::create_dir_all(dir)?;
    let carol = start_node(exe, dir, hub, "carol").await?;
    carol
        .api
        .call(m::HUB_REGISTER, json!({"name": "carol"}))
        .await?;
    carol
        .api
        .call(
            m::EVENTS_SUBSCRIBE,
            json!({"topics": [share_topics::SHARE_RECEIVED, topics::TRANSFER_PROGRESS, topics::TRANSFER_CHANGED]}),
        )
        .await?;
    let alice_id = json!(alice.api.hello().peer_id);
    let carol_id = json!(carol.api.hello().peer_id);
    alice
        .api
        .call(m::CONTACTS_ADD, json!({"who": "carol@demo.hub"}))
        .await?;
    wait_event(&carol.api, core_topics::CONTACT_REQUEST, |d| {
        d["peer_id"] == alice_id
    })
    .await?;
    carol
        .api
        .call(m::CONTACTS_ACCEPT, json!({"peer": alice_id}))
        .await?;
    step("carol's acceptance", async {
        loop {
            let contacts = alice.api.call(m::CONTACTS_LIST, json!({})).await?;
            let accepted = contacts.as_array().is_some_and(|all| {
                all.iter()
                    .any(|c| c["peer_id"] == carol_id && c["state"] == "accepted")
            });
            if accepted {
                return anyhow::Ok(());
            }
            wait_event(&alice.api, core_topics::CONTACT_CHANGED, |_| true).await?;
        }
    })
    .await?;
    println!("      carol registers and is alice's contact now");
    Ok(carol)
}

/// Waits until `resource` has arrived on `api`'s node naming its content: its hash.
async fn until_hash(api: &ApiClient, resource: &Value) -> anyhow::Result<String> {
    step("the File with its hash", async {
        loop {
            if let Ok(got) = api.call(r::RESOURCES_GET, json!({"id": resource})).await
                && let Some(hash) = got["properties"]["hash"].as_str()
            {
                return Ok(hash.to_string());
            }
            api.next_event()
                .await
                .context("the node closed the connection")?;
        }
    })
    .await
}

/// Waits until a transfer named `name` is whole on `api`'s node.
async fn until_landed(api: &ApiClient, name: &str) -> anyhow::Result<Transfer> {
    step(name, async {
        loop {
            let all: Vec<Transfer> = api.call_typed(t::TRANSFERS_LIST, json!({})).await?;
            if let Some(done) = all
                .into_iter()
                .find(|x| x.name == name && x.progress.done_bytes == x.progress.total_bytes)
            {
                return Ok(done);
            }
            wait_event(api, topics::TRANSFER_CHANGED, |_| true).await?;
        }
    })
    .await
}

/// Fetches the File `resource` on `api`'s node, printing its progress bar, until it is whole; with `pause_at`, pauses
/// the download once that share of it is done and resumes it (the demo shows it goes on from there).
async fn fetch(
    api: &ApiClient,
    who: &str,
    resource: &Value,
    pause_at: Option<f64>,
) -> anyhow::Result<(Transfer, f64)> {
    let started = Instant::now();
    let added: Transfer = api
        .call_typed(FILES_GET, json!({"resource": resource}))
        .await?;
    let mut printed: Option<Instant> = None;
    let mut shown_done = None;
    let mut pause_at = pause_at;
    tokio::time::timeout(DOWNLOAD_TIMEOUT, async {
        loop {
            let event = api
                .next_event()
                .await
                .context("the node closed the connection")?;
            if event.topic == topics::TRANSFER_PROGRESS {
                let progress: ProgressEvent = serde_json::from_value(event.data)?;
                if progress.id != added.id {
                    continue;
                }
                let p = &progress.progress;
                // What is done moves a commit at a time: a line that would say the same again is left out.
                if shown_done != Some(p.done_bytes)
                    && printed.is_none_or(|at| at.elapsed() >= PRINT_EVERY)
                {
                    println!("      {who}: {}", progress_line(p));
                    printed = Some(Instant::now());
                    shown_done = Some(p.done_bytes);
                }
                if pause_at.is_some_and(|f| p.done_bytes as f64 >= f * p.total_bytes as f64) {
                    pause_at = None;
                    pause_and_resume(api, who, added.id).await?;
                }
            } else if event.topic == topics::TRANSFER_CHANGED && event.data["id"] == added.id {
                match event.data["state"].as_str() {
                    Some("seeding") => return anyhow::Ok(()),
                    Some("failed") => bail!("{who}'s download failed: {}", event.data["reason"]),
                    _ => {}
                }
            }
        }
    })
    .await
    .with_context(|| format!("{who}'s download took over {DOWNLOAD_TIMEOUT:?}"))??;
    let secs = started.elapsed().as_secs_f64();
    let done: Transfer = api
        .call_typed(t::TRANSFERS_GET, json!({"id": added.id}))
        .await?;
    if shown_done != Some(done.progress.done_bytes) {
        println!("      {who}: {}", progress_line(&done.progress));
    }
    Ok((done, secs))
}

/// Pauses transfer `id`, shows what it holds while paused, and resumes it.
async fn pause_and_resume(api: &ApiClient, who: &str, id: u64) -> anyhow::Result<()> {
    let paused: Transfer = api
        .call_typed(t::TRANSFERS_PAUSE, json!({"id": id}))
        .await?;
    let held = paused.progress.done_bytes;
    println!(
        "      {who} pauses: {} ({} of it verified and kept in the .part file)",
        state_word(paused.state),
        size(held)
    );
    api.call(t::TRANSFERS_RESUME, json!({"id": id})).await?;
    println!("      {who} resumes: from {} on", size(held));
    Ok(())
}

pub(super) async fn run(
    exe: &Path,
    dir: &Path,
    hub: &Hub,
    alice: &Node,
    bob: &Node,
) -> anyhow::Result<()> {
    println!(
        "\n[15/16] Shared files: alice shares a photo and a 100 MiB video with bob and carol; carol fetches from alice and bob at once"
    );
    let carol = carol_joins(exe, &dir.join("carol"), hub, alice).await?;
    let album_dir = alice.paths.data_dir.join("Lisbon");
    std::fs::create_dir_all(&album_dir)?;
    let photo_path = album_dir.join("tram.jpg");
    let video_path = album_dir.join("tram.mp4");
    let t0 = Instant::now();
    std::fs::write(&photo_path, media_bytes(PHOTO_LEN, 7))?;
    let video = media_bytes(VIDEO_LEN, 11);
    std::fs::write(&video_path, &video)?;
    println!(
        "      alice writes tram.jpg (2 MiB) and tram.mp4 (100 MiB) in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let album = alice
        .api
        .call(
            r::RESOURCES_CREATE,
            json!({"resource": {"type": "List", "properties": {"title": "Lisbon 2026"}}}),
        )
        .await?["id"]
        .clone();
    file_in(&alice.api, &album, &photo_path).await?;
    let video_id = file_in(&alice.api, &album, &video_path).await?;
    for node in [bob, &carol] {
        node.api
            .call(
                m::EVENTS_SUBSCRIBE,
                json!({"topics": [share_topics::SHARE_RECEIVED, topics::TRANSFER_PROGRESS, topics::TRANSFER_CHANGED]}),
            )
            .await?;
        node.api
            .call(r::RESOURCES_SUBSCRIBE, json!({"filter": {"id": video_id}}))
            .await?;
    }
    let members: Vec<Value> = [bob, &carol]
        .iter()
        .map(|n| json!({"peer": n.api.hello().peer_id, "level": "read"}))
        .collect();
    let t0 = Instant::now();
    let share = alice
        .api
        .call(
            sh::SHARES_CREATE,
            json!({"resource": album, "members": members}),
        )
        .await?;
    println!(
        "      alice shares \"Lisbon 2026\" with bob and carol ({:.1} s: each file hashed once, BLAKE3 in 16 KiB blocks)",
        t0.elapsed().as_secs_f64()
    );
    let mut hash = String::new();
    for (node, name) in [(bob, "bob"), (&carol, "carol")] {
        wait_event(&node.api, share_topics::SHARE_RECEIVED, |d| {
            d["share"] == share["id"]
        })
        .await?;
        node.api
            .call(sh::SHARES_ACCEPT, json!({"share": share["id"]}))
            .await?;
        hash = until_hash(&node.api, &video_id).await?;
        println!(
            "      {name} accepts: the video's File arrives, naming its content {}",
            short(&json!(hash))
        );
    }
    for (node, name) in [(bob, "bob"), (&carol, "carol")] {
        let photo = until_landed(&node.api, "tram.jpg").await?;
        println!(
            "      {name}: tram.jpg arrived by itself ({} bytes; files up to 20 MiB are fetched unasked)",
            photo.progress.total_bytes
        );
    }

    bob.api
        .call(t::NET_LIMITS_SET, json!({"down": SHOW_LIMIT, "up": null}))
        .await?;
    println!(
        "      bob fetches the video (limit {} MiB/s for the show; pause and resume half way)",
        SHOW_LIMIT >> 20
    );
    let (done, secs) = fetch(&bob.api, "bob", &video_id, Some(0.4)).await?;
    bob.api
        .call(t::NET_LIMITS_SET, json!({"down": null, "up": null}))
        .await?;
    let twice = done.progress.downloaded.saturating_sub(VIDEO_LEN as u64);
    println!(
        "      bob: the video in {secs:.1} s, {} received for {}: {} fetched twice across the pause; every block checked against the hash on arrival; bob serves it on",
        size(done.progress.downloaded),
        size(VIDEO_LEN as u64),
        if twice == 0 {
            "nothing".to_string()
        } else {
            size(twice)
        }
    );

    let (done, secs) = fetch(&carol.api, "carol", &video_id, None).await?;
    let names = [
        (json!(alice.api.hello().peer_id), "alice"),
        (json!(bob.api.hello().peer_id), "bob"),
    ];
    println!(
        "      carol: the video in {secs:.1} s ({:.0} MiB/s), from the private swarm of the share's members:",
        VIDEO_LEN as f64 / secs / (1 << 20) as f64
    );
    for source in done.sources.iter().flatten() {
        let name = names
            .iter()
            .find(|(id, _)| id.as_str() == Some(source.peer.as_str()))
            .map(|(_, n)| *n)
            .unwrap_or("?");
        println!(
            "        from {name}: {:.1} MiB ({:.0}%)",
            source.bytes as f64 / (1 << 20) as f64,
            100.0 * source.bytes as f64 / VIDEO_LEN as f64
        );
    }
    let landed = Path::new(&done.dir).join(&done.name);
    let got = std::fs::read(&landed).with_context(|| format!("{}", landed.display()))?;
    let of_copy = ContentHash::of(&got).to_hex();
    if of_copy != hash || got != video {
        bail!("carol's copy is not alice's video: BLAKE3 {of_copy}, the File says {hash}");
    }
    println!(
        "      carol's copy hashes to {} = the File's hash: verified, byte for byte alice's",
        short(&json!(of_copy))
    );
    let mut carol = carol;
    carol.api.call(m::DAEMON_SHUTDOWN, json!({})).await?;
    step("carol exit", async { Ok(carol.child.wait().await?) }).await?;
    Ok(())
}
