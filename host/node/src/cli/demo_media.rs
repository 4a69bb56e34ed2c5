//! The demo's media part: alice catalogs a small folder made on the spot (a WAV tone, a PNG
//! gradient, a text note, and a truncated PNG), sees what the workers found, then adds the
//! folder again and sees every file skipped.

use std::path::Path;
use std::time::{Duration, Instant};

use allpeers_model::api::media::{self as api, AddResult, MediaProgress, MediaSummary, topics};
use allpeers_model::api::methods as m;
use allpeers_node::client::ApiClient;
use anyhow::Context;
use serde_json::{Value, json};

/// How long the demo waits for a job: four small files take well under a second.
const JOB_TIMEOUT: Duration = Duration::from_secs(15);

pub(super) async fn run(api: &ApiClient, dir: &Path) -> anyhow::Result<()> {
    println!("\n[8/16] Alice adds a folder to her catalog: sandboxed workers read each file");
    std::fs::create_dir_all(dir)?;
    let dir = std::fs::canonicalize(dir)?;
    std::fs::write(dir.join("tone.wav"), wav(8_000, 1.5))?;
    std::fs::write(dir.join("gradient.png"), png(96, 64))?;
    std::fs::write(
        dir.join("note.txt"),
        "Picnic on Saturday\nBring the blue blanket\n",
    )?;
    let broken = png(96, 64);
    std::fs::write(dir.join("broken.png"), &broken[..broken.len() / 2])?;
    api.call(
        m::EVENTS_SUBSCRIBE,
        json!({"topics": [topics::MEDIA_PROGRESS]}),
    )
    .await?;

    let (summary, ms) = add(api, &dir).await?;
    println!(
        "      first add: {} added ({} failed) in {ms:.0} ms",
        summary.added, summary.failed
    );
    for name in ["tone.wav", "gradient.png", "note.txt", "broken.png"] {
        let r = api
            .call(api::MEDIA_INFO, json!({"path": dir.join(name)}))
            .await?;
        println!("        {name:<13} {}", describe(&r));
    }
    let (again, ms) = add(api, &dir).await?;
    println!(
        "      added again: {} unchanged, {} described in {ms:.0} ms (modification time and size match)",
        again.unchanged,
        again.added + again.updated
    );
    // The folder stays watched: a change is described again without another add.
    let started = Instant::now();
    std::fs::write(
        dir.join("note.txt"),
        "Picnic on Saturday\nBring the blue blanket\nAnd the lemonade\n",
    )?;
    let summary = tokio::time::timeout(JOB_TIMEOUT, finished_job(api, None))
        .await
        .context("the watcher did not notice the change")??;
    let r = api
        .call(api::MEDIA_INFO, json!({"path": dir.join("note.txt")}))
        .await?;
    println!(
        "      watched: note.txt edited → described again by the watcher in {:.0} ms ({} updated; now {} lines)",
        started.elapsed().as_secs_f64() * 1e3,
        summary.updated,
        r["properties"]["lines"]
    );
    Ok(())
}

/// The summary of the next job to finish (`job`: that one only).
async fn finished_job(api: &ApiClient, job: Option<u64>) -> anyhow::Result<MediaSummary> {
    loop {
        let event = api
            .next_event()
            .await
            .context("the node closed the connection")?;
        if event.topic != topics::MEDIA_PROGRESS {
            continue;
        }
        let progress: MediaProgress = serde_json::from_value(event.data)?;
        if job.is_none_or(|j| j == progress.job) && progress.finished {
            return progress.summary.context("a finished job has a summary");
        }
    }
}

async fn add(api: &ApiClient, dir: &Path) -> anyhow::Result<(MediaSummary, f64)> {
    let started = Instant::now();
    let AddResult { job } = api
        .call_typed(api::MEDIA_ADD, json!({"paths": [dir]}))
        .await?;
    let summary = tokio::time::timeout(JOB_TIMEOUT, finished_job(api, Some(job)))
        .await
        .with_context(|| format!("the media job took over {JOB_TIMEOUT:?}"))??;
    Ok((summary, started.elapsed().as_secs_f64() * 1e3))
}

/// One line of what the catalog says of a file.
fn describe(r: &Value) -> String {
    let p = &r["properties"];
    let facts = match r["type"].as_str().unwrap_or("?") {
        "Audio" => format!(
            "{:.2} s, {} Hz, {} channel(s), {}",
            p["duration"].as_f64().unwrap_or(0.0),
            p["sampleRate"],
            p["channels"],
            p["codec"].as_str().unwrap_or("?")
        ),
        "Image" => format!(
            "{}x{} {}, thumbnail {} bytes",
            p["width"],
            p["height"],
            p["format"].as_str().unwrap_or("?"),
            p["thumbnail"].as_str().map_or(0, |b| b.len() / 4 * 3)
        ),
        "Text" => format!(
            "{} lines, {}: {:?}",
            p["lines"],
            p["encoding"].as_str().unwrap_or("?"),
            p["preview"]
                .as_str()
                .unwrap_or("")
                .lines()
                .next()
                .unwrap_or("")
        ),
        _ => format!("error: {}", r["meta"]["error"].as_str().unwrap_or("none")),
    };
    format!("{:<6} {facts}", r["type"].as_str().unwrap_or("?"))
}

/// A mono 16-bit PCM WAV of a 440 Hz tone.
fn wav(rate: u32, seconds: f64) -> Vec<u8> {
    let samples = (f64::from(rate) * seconds) as u32;
    let data_len = samples * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let t = f64::from(i) / f64::from(rate);
        let v = (t * 440.0 * std::f64::consts::TAU).sin() * 8000.0;
        out.extend_from_slice(&(v as i16).to_le_bytes());
    }
    out
}

/// An RGB gradient as a PNG with stored (uncompressed) deflate blocks: no encoder needed.
fn png(width: u32, height: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // filter: none
        for x in 0..width {
            raw.extend_from_slice(&[(x * 255 / width) as u8, (y * 255 / height) as u8, 160]);
        }
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(u16::MAX as usize).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    zlib.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, body) in [(b"IHDR", ihdr), (b"IDAT", zlib), (b"IEND", Vec::new())] {
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(&body);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn made_files_are_what_they_claim() {
        use allpeers_media::{Details, Options, extract_bytes};
        let options = Options::default();
        let Details::Audio(a) = extract_bytes(&wav(8_000, 1.5), &options).unwrap().details else {
            panic!("not audio")
        };
        assert!((a.duration.unwrap() - 1.5).abs() < 1e-3, "{a:?}");
        assert_eq!((a.sample_rate, a.channels), (Some(8_000), Some(1)));
        let Details::Image(i) = extract_bytes(&png(96, 64), &options).unwrap().details else {
            panic!("not an image")
        };
        assert_eq!((i.width, i.height), (96, 64));
        assert!(i.thumbnail.is_some());
    }
}
