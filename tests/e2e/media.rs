//! The media catalog through a real daemon: a folder of real files made at test time by
//! ffmpeg, sox, ImageMagick and exiv2 is indexed in the background by the daemon's own
//! binary in worker mode; `media.info` shows what each encoder was told; adding the folder
//! again skips every file; a changed file is described again and a deleted one marked
//! missing; a corrupt file gets an error and the rest go on. The CLI's `add` and `info` too.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use allpeers_tests::*;
use serde_json::{Value, json};

type Client = RawClient<tokio::net::unix::OwnedReadHalf, tokio::net::unix::OwnedWriteHalf>;

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed (tests/run.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ffmpeg(args: &[&str], out: &Path) {
    let mut all = vec!["-hide_banner", "-loglevel", "error", "-y"];
    all.extend_from_slice(args);
    all.push(out.to_str().unwrap());
    run("ffmpeg", &all);
}

/// The folder: what each file is, as its encoder was told.
#[rustfmt::skip]
fn make_library(dir: &Path) {
    std::fs::create_dir_all(dir.join("photos")).unwrap();
    ffmpeg(
        &[
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "3", "-ac", "2",
            "-c:a", "libmp3lame", "-b:a", "128k",
            "-metadata", "title=Test Tone", "-metadata", "artist=AllPeers",
            "-metadata", "album=Fixtures", "-metadata", "track=7", "-metadata", "date=2021",
        ],
        &dir.join("song.mp3"),
    );
    // VBR without a Xing frame: the header gives an estimate, a packet scan the figure.
    std::fs::create_dir_all(dir.join("music")).unwrap();
    ffmpeg(
        &[
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "4", "-ac", "2",
            "-c:a", "libmp3lame", "-q:a", "6", "-write_xing", "0",
        ],
        &dir.join("music/noxing.mp3"),
    );
    run(
        "sox",
        &["-n", "-r", "48000", "-c", "1", dir.join("tone.flac").to_str().unwrap(), "synth", "2", "sine", "440"],
    );
    let photo = dir.join("photos/beach.jpg");
    run(
        "convert",
        &["-size", "320x240", "gradient:red-blue", "-quality", "90", &format!("jpg:{}", photo.display())],
    );
    run(
        "exiv2",
        &[
            "-M", "set Exif.Photo.DateTimeOriginal 2024:05:17 10:30:00",
            "-M", "set Exif.Image.Make Canon",
            "-M", "set Exif.Image.Model Canon EOS 5D",
            "-M", "set Exif.Image.Orientation 6",
            photo.to_str().unwrap(),
        ],
    );
    ffmpeg(
        &[
            "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-t", "1",
            "-c:v", "libx264", "-preset", "ultrafast",
            "-metadata", "creation_time=2024-05-17T10:30:00Z",
        ],
        &dir.join("clip.mp4"),
    );
    std::fs::write(dir.join("notes.txt"), "one\ntwo\nthree\n").unwrap();
    // A PNG by its magic bytes, garbage after: the decoder refuses it.
    let mut broken = b"\x89PNG\r\n\x1a\n".to_vec();
    broken.extend(std::iter::repeat_n(0xAB, 200));
    std::fs::write(dir.join("photos/broken.png"), broken).unwrap();
}

/// Adds `paths` (unwatched: this test rescans by hand) and waits for the job's last
/// `media.progress`; answers its summary and how many progress events came before it.
async fn add(client: &mut Client, paths: Value) -> (Value, usize) {
    let response = client
        .call(
            "media.add",
            json!({"paths": paths, "recursive": true, "watch": false}),
        )
        .await;
    let job = response.result.expect("media.add answers a job")["job"].clone();
    let mut before = 0;
    loop {
        let (_, params) = timeout("media.progress", client.read_notification())
            .await
            .expect("the daemon stays up");
        if params["topic"] != "media.progress" || params["data"]["job"] != job {
            continue;
        }
        let data = &params["data"];
        if data["finished"] == true {
            assert_eq!(data["done"], data["total"], "{data}");
            return (data["summary"].clone(), before);
        }
        before += 1;
    }
}

async fn info(client: &mut Client, path: &Path) -> Value {
    let response = client.call("media.info", json!({"path": path})).await;
    response
        .result
        .unwrap_or_else(|| panic!("media.info {}: {:?}", path.display(), response.error))
}

fn close(v: &Value, expected: f64, tolerance: f64) -> bool {
    v.as_f64()
        .is_some_and(|x| (x - expected).abs() <= tolerance)
}

#[tokio::test]
async fn a_folder_of_real_media_is_catalogued_skipped_when_unchanged_and_followed() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let lib = std::fs::canonicalize(files.path()).unwrap().join("library");
    make_library(&lib);
    let daemon = Daemon::start(data.path()).await;
    let mut client = daemon.client("media-test").await;
    client
        .call("events.subscribe", json!({"topics": ["media.progress"]}))
        .await
        .result
        .expect("media.progress is a topic");

    // First time: every file described; the corrupt one fails alone.
    let started = Instant::now();
    let (summary, before) = add(&mut client, json!([lib])).await;
    let first = started.elapsed();
    assert_eq!(
        summary,
        json!({"added": 7, "updated": 0, "unchanged": 0, "missing": 0, "failed": 1})
    );
    // A few per second at most, and at least one before the end.
    assert!(
        before >= 1 && before as f64 <= first.as_secs_f64() * 4.0 + 2.0,
        "{before} in {first:?}"
    );

    let song = info(&mut client, &lib.join("song.mp3")).await;
    assert_eq!(song["type"], "Audio");
    let p = &song["properties"];
    assert!(close(&p["duration"], 3.0, 0.06), "{p}");
    assert_eq!(p["durationEstimated"], false);
    assert_eq!(p["title"], "Test Tone");
    assert_eq!(p["artist"], "AllPeers");
    assert_eq!(p["album"], "Fixtures");
    assert_eq!(p["trackNumber"], 7);
    assert_eq!(p["year"], 2021);
    assert_eq!(
        (p["sampleRate"].clone(), p["channels"].clone()),
        (json!(44100), json!(2))
    );
    assert_eq!(p["mimeType"], "audio/mpeg");
    assert_eq!(song["meta"]["path"], lib.join("song.mp3").to_str().unwrap());

    // The estimate was replaced by the packet scan's figure before the job finished: every
    // MPEG frame counted, 4 s plus the encoder's delay and padding (under two frames).
    let noxing = info(&mut client, &lib.join("music/noxing.mp3")).await;
    let p = &noxing["properties"];
    assert_eq!(p["durationEstimated"], false, "{p}");
    assert!(
        close(
            &p["duration"],
            4.0 + 1152.0 / 44100.0,
            1152.0 / 44100.0 + 0.001
        ),
        "{p}"
    );

    let flac = info(&mut client, &lib.join("tone.flac")).await;
    let p = &flac["properties"];
    assert_eq!(flac["type"], "Audio");
    assert!(close(&p["duration"], 2.0, 0.001), "{p}");
    assert_eq!(
        (p["sampleRate"].clone(), p["channels"].clone()),
        (json!(48000), json!(1))
    );

    let photo = info(&mut client, &lib.join("photos/beach.jpg")).await;
    let p = &photo["properties"];
    assert_eq!(photo["type"], "Image");
    assert_eq!(
        (p["width"].clone(), p["height"].clone()),
        (json!(320), json!(240))
    );
    assert_eq!(p["taken"], "2024-05-17T10:30:00.000Z");
    assert_eq!(p["cameraModel"], "Canon EOS 5D");
    assert_eq!(p["orientation"], 6);
    assert!(
        p["thumbnail"].as_str().is_some_and(|t| t.len() > 100),
        "a thumbnail"
    );

    let clip = info(&mut client, &lib.join("clip.mp4")).await;
    let p = &clip["properties"];
    assert_eq!(clip["type"], "Video");
    assert_eq!(
        (p["width"].clone(), p["height"].clone()),
        (json!(160), json!(120))
    );
    assert!(close(&p["duration"], 1.0, 0.05), "{p}");
    assert!(close(&p["frameRate"], 25.0, 0.01), "{p}");
    assert_eq!(p["videoCodec"], "H.264");
    assert_eq!(p["recorded"], "2024-05-17T10:30:00.000Z");

    let notes = info(&mut client, &lib.join("notes.txt")).await;
    assert_eq!(notes["type"], "Text");
    assert_eq!(notes["properties"]["lines"], 3);
    // Every file's content hash (BLAKE3): what a share of it names, so it is shareable as catalogued.
    let notes_hash = |bytes: &[u8]| blake3::hash(bytes).to_hex().to_string();
    assert_eq!(
        notes["properties"]["hash"],
        notes_hash(&std::fs::read(lib.join("notes.txt")).unwrap()).as_str()
    );

    let broken = info(&mut client, &lib.join("photos/broken.png")).await;
    assert_eq!(broken["type"], "File");
    assert!(
        broken["meta"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{broken}"
    );

    // By id too.
    let by_id = client
        .call("media.info", json!({"id": song["id"]}))
        .await
        .result
        .unwrap();
    assert_eq!(by_id["id"], song["id"]);

    // Again: nothing to describe, and quicker.
    let started = Instant::now();
    let (summary, _) = add(&mut client, json!([lib])).await;
    let again = started.elapsed();
    assert_eq!(
        summary,
        json!({"added": 0, "updated": 0, "unchanged": 7, "missing": 0, "failed": 0})
    );
    assert!(again < first, "re-add {again:?} vs first {first:?}");

    // A changed file is described again, a deleted one marked missing.
    std::fs::write(lib.join("notes.txt"), "one\ntwo\nthree\nfour\nfive\n").unwrap();
    std::fs::remove_file(lib.join("clip.mp4")).unwrap();
    let (summary, _) = add(&mut client, json!([lib])).await;
    assert_eq!(
        summary,
        json!({"added": 0, "updated": 1, "unchanged": 5, "missing": 1, "failed": 0})
    );
    let notes = info(&mut client, &lib.join("notes.txt")).await;
    assert_eq!(notes["properties"]["lines"], 5);
    assert_eq!(
        notes["properties"]["hash"],
        notes_hash(b"one\ntwo\nthree\nfour\nfive\n").as_str(),
        "the new content's hash"
    );
    let gone = info(&mut client, &lib.join("clip.mp4")).await;
    assert_eq!(gone["meta"]["missing"], true);
    assert_eq!(gone["properties"]["width"], 160, "the description stays");

    // The errors of the media range.
    let relative = client
        .call("media.add", json!({"paths": ["library"]}))
        .await;
    assert_eq!(error_code(&relative), -32602);
    let nowhere = client
        .call("media.add", json!({"paths": [lib.join("nowhere")]}))
        .await;
    assert_eq!(error_code(&nowhere), -32060);
    let unknown = client
        .call("media.info", json!({"id": "file:nothing"}))
        .await;
    assert_eq!(error_code(&unknown), -32061);

    // The command line: add (everything unchanged) and info.
    let out = allpeers(data.path())
        .args(["add", "-r"])
        .arg(&lib)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("6 unchanged"),
        "{text}"
    );
    let out = allpeers(data.path())
        .arg("info")
        .arg(lib.join("song.mp3"))
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Test Tone") && text.contains("duration"),
        "{text}"
    );
    let out = allpeers(data.path())
        .args(["info", "--json"])
        .arg(lib.join("photos/beach.jpg"))
        .output()
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).expect("info --json is JSON");
    assert_eq!(json["properties"]["width"], 320);

    daemon.stop().await;
}

/// Waits (bounded) for the watcher's jobs until each path's catalogued state is as expected:
/// its `lines` (a Text), "missing", or "absent" (not catalogued).
async fn until_catalog(client: &mut Client, what: &str, expected: &[(&Path, &str)]) {
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if catalog_is(client, expected).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the watcher did not catch up: {what}"
        );
        // The next job to finish (the watcher's), or a second's look again.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            loop {
                match client.read_notification().await {
                    Some((_, p))
                        if p["topic"] == "media.progress" && p["data"]["finished"] == true =>
                    {
                        return;
                    }
                    Some(_) => continue,
                    None => panic!("the daemon went away"),
                }
            }
        })
        .await;
    }
}

/// A client of `daemon` that hears `media.progress`.
async fn progress_client(daemon: &Daemon) -> Client {
    let mut client = daemon.client("media-watch").await;
    client
        .call("events.subscribe", json!({"topics": ["media.progress"]}))
        .await
        .result
        .unwrap();
    client
}

async fn watched(client: &mut Client) -> Value {
    client
        .call("media.watched", json!({}))
        .await
        .result
        .expect("media.watched answers")
}

async fn catalog_is(client: &mut Client, expected: &[(&Path, &str)]) -> bool {
    for (path, want) in expected {
        let r = client.call("media.info", json!({"path": path})).await;
        let got = match &r.result {
            None => "absent".to_string(),
            Some(v) if v["meta"]["missing"] == true => "missing".to_string(),
            Some(v) => v["properties"]["lines"].to_string(),
        };
        if got != *want {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn a_watched_folder_follows_changes_and_catches_up_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let lib = std::fs::canonicalize(files.path()).unwrap().join("notes");
    std::fs::create_dir_all(lib.join("old")).unwrap();
    std::fs::write(lib.join("a.txt"), "1\n").unwrap();
    std::fs::write(lib.join("b.txt"), "1\n2\n").unwrap();
    std::fs::write(lib.join("old/c.txt"), "1\n2\n3\n").unwrap();

    let daemon = Daemon::start(data.path()).await;
    let mut client = progress_client(&daemon).await;
    client
        .call("media.add", json!({"paths": [lib], "recursive": true}))
        .await
        .result
        .expect("media.add watches by default");
    let (a, b, c) = (lib.join("a.txt"), lib.join("b.txt"), lib.join("old/c.txt"));
    until_catalog(&mut client, "first add", &[(&a, "1"), (&b, "2"), (&c, "3")]).await;
    assert_eq!(
        watched(&mut client).await,
        json!([{"path": lib, "recursive": true, "error": null}])
    );

    // Changed, new (also in a new sub-folder), deleted, and a folder deleted whole: no media.add.
    std::fs::write(&a, "1\n2\n3\n4\n").unwrap();
    let new = lib.join("new.txt");
    std::fs::write(&new, "1\n2\n3\n4\n5\n").unwrap();
    std::fs::create_dir(lib.join("later")).unwrap();
    let deep = lib.join("later/deep.txt");
    std::fs::write(&deep, "1\n2\n3\n4\n5\n6\n").unwrap();
    std::fs::remove_file(&b).unwrap();
    std::fs::remove_dir_all(lib.join("old")).unwrap();
    // A download in progress is left alone until it is renamed into place.
    std::fs::write(lib.join("film.mkv.part"), "partial").unwrap();
    until_catalog(
        &mut client,
        "live changes",
        &[
            (&a, "4"),
            (&new, "5"),
            (&deep, "6"),
            (&b, "missing"),
            (&c, "missing"),
        ],
    )
    .await;
    let part = client
        .call("media.info", json!({"path": lib.join("film.mkv.part")}))
        .await;
    assert_eq!(error_code(&part), -32061, "a .part file is not catalogued");

    // Down: a file changes and one comes back. Up again: the catch-up walk finds both.
    daemon.stop().await;
    std::fs::write(&new, "1\n").unwrap();
    std::fs::write(&b, "1\n2\n3\n").unwrap();
    let daemon = Daemon::start(data.path()).await;
    let mut client = progress_client(&daemon).await;
    until_catalog(&mut client, "catch-up at start", &[(&new, "1"), (&b, "3")]).await;

    // The command line lists it, then unwatches it: listed no more (its files stay catalogued).
    let out = allpeers(data.path()).arg("watched").output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains(&format!("{}  (with sub-folders)", lib.display())),
        "{text}"
    );
    let out = allpeers(data.path())
        .arg("unwatch")
        .arg(&lib)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = client
        .call("media.unwatch", json!({"path": lib}))
        .await
        .result
        .unwrap();
    assert_eq!(again, json!({"removed": false}));
    assert_eq!(watched(&mut client).await, json!([]));
    assert_eq!(info(&mut client, &a).await["properties"]["lines"], 4);

    // A single file is catalogued once unless asked: not watched.
    client
        .call("media.add", json!({"paths": [a]}))
        .await
        .result
        .unwrap();
    assert_eq!(watched(&mut client).await, json!([]));

    // Bounded: 257 folders at once are refused whole, and nothing of them is kept.
    let many: Vec<_> = (0..257)
        .map(|i| {
            let p = files.path().join(format!("d{i}"));
            std::fs::create_dir(&p).unwrap();
            std::fs::canonicalize(p).unwrap()
        })
        .collect();
    let refused = client.call("media.add", json!({"paths": many})).await;
    assert_eq!(error_code(&refused), -32063);
    assert_eq!(watched(&mut client).await, json!([]));
    daemon.stop().await;
}
