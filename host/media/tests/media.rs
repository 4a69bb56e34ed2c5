//! Real media made at test time by real encoders (ffmpeg, sox, ImageMagick, exiv2 — installed
//! by tests/run.sh), described through a real worker pool, every asserted value checked
//! against what the encoder was told. Then hostile files: truncated, huge, hanging, crashing.
//!
//! Fixtures are generated once into `CARGO_TARGET_TMPDIR/media-fixtures` (atomically, by
//! rename, so parallel test processes share them) and reused by later runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use allpeers_media::audio::AudioInfo;
use allpeers_media::image::ImageInfo;
use allpeers_media::video::VideoInfo;
use allpeers_media::{
    Details, ExtractError, Extracted, Extractor, ExtractorConfig, MediaKind, Options,
    ThumbnailFormat,
};

/// Bumped when a recipe changes, so stale fixtures are not reused.
const FIXTURE_VERSION: u32 = 3;

fn fixtures_dir() -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("media-fixtures-v{FIXTURE_VERSION}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fixture `name`, made by `make(path)` the first time.
fn fixture(name: &str, make: impl FnOnce(&Path)) -> PathBuf {
    let path = fixtures_dir().join(name);
    if !path.exists() {
        let tmp = fixtures_dir().join(format!(".{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        make(&tmp);
        assert!(tmp.exists(), "recipe for {name} made no file");
        std::fs::rename(&tmp, &path).unwrap();
    }
    path
}

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

/// Three seconds of 440 Hz, stereo, 44.1 kHz, with the tags every audio test checks.
const TAGS: &[&str] = &[
    "-metadata",
    "title=Test Tone",
    "-metadata",
    "artist=AllPeers",
    "-metadata",
    "album=Fixtures",
    "-metadata",
    "track=7",
    "-metadata",
    "date=2021",
    "-metadata",
    "genre=Ambient",
];

fn tone(seconds: &str) -> Vec<&str> {
    vec![
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        seconds,
        "-ac",
        "2",
    ]
}

fn with<'a>(mut a: Vec<&'a str>, b: &[&'a str]) -> Vec<&'a str> {
    a.extend_from_slice(b);
    a
}

fn extractor() -> Extractor {
    extractor_with(Duration::from_secs(20))
}

fn extractor_with(deadline: Duration) -> Extractor {
    let mut config = ExtractorConfig::new(env!("CARGO_BIN_EXE_allpeers-media-worker"));
    config.workers = 2;
    config.deadline = deadline;
    Extractor::new(config)
}

async fn describe(path: &Path) -> Extracted {
    extractor()
        .extract(path, Options::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn audio(e: &Extracted) -> &AudioInfo {
    match &e.details {
        Details::Audio(a) => a,
        other => panic!("not audio: {other:?}"),
    }
}

fn image(e: &Extracted) -> &ImageInfo {
    match &e.details {
        Details::Image(i) => i,
        other => panic!("not an image: {other:?}"),
    }
}

fn video(e: &Extracted) -> &VideoInfo {
    match &e.details {
        Details::Video(v) => v,
        other => panic!("not a video: {other:?}"),
    }
}

fn close(actual: Option<f64>, expected: f64, tolerance: f64) -> bool {
    actual.is_some_and(|a| (a - expected).abs() <= tolerance)
}

fn assert_tags(a: &AudioInfo) {
    assert_eq!(a.tags.title.as_deref(), Some("Test Tone"), "{a:?}");
    assert_eq!(a.tags.artist.as_deref(), Some("AllPeers"));
    assert_eq!(a.tags.album.as_deref(), Some("Fixtures"));
    assert_eq!(a.tags.track, Some(7));
    assert_eq!(a.tags.year, Some(2021));
    assert_eq!(a.tags.genre.as_deref(), Some("Ambient"));
}

fn mp3() -> PathBuf {
    fixture("tone.mp3", |p| {
        ffmpeg(
            &with(
                with(tone("3"), &["-c:a", "libmp3lame", "-b:a", "128k"]),
                TAGS,
            ),
            p,
        )
    })
}

#[tokio::test]
async fn mp3_with_xing_header_tags_and_exact_duration() {
    let e = describe(&mp3()).await;
    assert_eq!(e.kind, MediaKind::Audio);
    let a = audio(&e);
    assert_eq!(
        (a.codec.as_str(), a.sample_rate, a.channels),
        ("MP3", Some(44100), Some(2))
    );
    assert!(!a.duration_estimated);
    // LAME's Info frame carries delay and padding: the duration is the 3 s that were encoded.
    assert!(close(a.duration, 3.0, 0.03), "{a:?}");
    let kbps = a.bit_rate.unwrap() / 1000;
    assert!(
        (120..=140).contains(&kbps),
        "{kbps} kbit/s for a 128 kbit/s encode"
    );
    assert_tags(a);
}

#[tokio::test]
async fn mp3_without_xing_is_estimated_and_a_packet_scan_gives_the_figure() {
    // VBR without the Xing frame: the bit rate of the first frame says nothing reliable.
    let path = fixture("noxing.mp3", |p| {
        ffmpeg(
            &with(
                tone("4"),
                &["-c:a", "libmp3lame", "-q:a", "6", "-write_xing", "0"],
            ),
            p,
        )
    });
    let pool = extractor();
    let e = pool.extract(&path, Options::default()).await.unwrap();
    let a = audio(&e);
    assert!(a.duration_estimated, "{a:?}");
    let exact = pool.exact_duration(&path).await.unwrap();
    // Every MPEG frame counted: 4 s plus the encoder's delay and padding (under two frames).
    assert!(
        (4.0..4.0 + 2.0 * 1152.0 / 44100.0 + 0.001).contains(&exact),
        "{exact}"
    );
}

#[tokio::test]
async fn flac_and_wav_from_sox() {
    let flac = fixture("tone.flac", |p| {
        run(
            "sox",
            &[
                "-n",
                "-r",
                "48000",
                "-c",
                "1",
                p.to_str().unwrap(),
                "synth",
                "2.5",
                "sine",
                "440",
            ],
        )
    });
    let wav = fixture("tone.wav", |p| {
        run(
            "sox",
            &[
                "-n",
                "-r",
                "44100",
                "-c",
                "2",
                "-b",
                "16",
                p.to_str().unwrap(),
                "synth",
                "3.25",
                "sine",
                "440",
            ],
        )
    });
    let pool = extractor();
    let f = pool.extract(&flac, Options::default()).await.unwrap();
    let a = audio(&f);
    assert_eq!(
        (a.codec.as_str(), a.sample_rate, a.channels),
        ("FLAC", Some(48000), Some(1))
    );
    assert!(
        close(a.duration, 2.5, 1e-6) && !a.duration_estimated,
        "{a:?}"
    );
    let w = pool.extract(&wav, Options::default()).await.unwrap();
    let a = audio(&w);
    assert_eq!(
        (a.codec.as_str(), a.sample_rate, a.channels),
        ("PCM", Some(44100), Some(2))
    );
    assert!(close(a.duration, 3.25, 1e-6), "{a:?}");
    // 16-bit stereo at 44.1 kHz is 1411.2 kbit/s.
    assert!(
        (1_400_000..=1_420_000).contains(&a.bit_rate.unwrap()),
        "{a:?}"
    );
}

#[tokio::test]
async fn ogg_vorbis_opus_and_m4a_with_tags() {
    let vorbis = fixture("tone.ogg", |p| {
        ffmpeg(&with(with(tone("2"), &["-c:a", "libvorbis"]), TAGS), p)
    });
    let opus = fixture("tone.opus", |p| {
        ffmpeg(&with(with(tone("2"), &["-c:a", "libopus"]), TAGS), p)
    });
    let m4a = fixture("tone.m4a", |p| {
        ffmpeg(&with(with(tone("2"), &["-c:a", "aac"]), TAGS), p)
    });
    let pool = extractor();
    for (path, codec, rate) in [
        (vorbis, "Vorbis", 44100),
        (opus, "Opus", 48000),
        (m4a, "AAC", 44100),
    ] {
        let e = pool.extract(&path, Options::default()).await.unwrap();
        assert_eq!(e.kind, MediaKind::Audio, "{}", path.display());
        let a = audio(&e);
        assert_eq!(
            (a.codec.as_str(), a.sample_rate, a.channels),
            (codec, Some(rate), Some(2)),
            "{a:?}"
        );
        // Priming samples (Opus pre-skip, AAC's 1024) may count: within 50 ms.
        assert!(close(a.duration, 2.0, 0.05), "{codec}: {a:?}");
        assert!(!a.duration_estimated);
        assert_tags(a);
    }
}

#[tokio::test]
async fn adts_aac_duration_is_estimated_then_exact() {
    let path = fixture("tone.aac", |p| {
        ffmpeg(&with(tone("2"), &["-c:a", "aac", "-f", "adts"]), p)
    });
    let pool = extractor();
    let e = pool.extract(&path, Options::default()).await.unwrap();
    let a = audio(&e);
    assert_eq!(a.codec, "AAC");
    assert!(a.duration_estimated, "{a:?}");
    let exact = pool.exact_duration(&path).await.unwrap();
    // 2 s plus AAC priming (1024 samples) and the last partial frame.
    assert!(
        (2.0..=2.0 + 3.0 * 1024.0 / 44100.0).contains(&exact),
        "{exact}"
    );
}

#[tokio::test]
async fn mp3_cover_art_becomes_the_thumbnail() {
    let cover = fixture("cover.png", |p| {
        run(
            "convert",
            &["-size", "600x400", "xc:orange", p.to_str().unwrap()],
        )
    });
    let source = mp3();
    let path = fixture("cover.mp3", |p| {
        ffmpeg(
            &[
                "-i",
                source.to_str().unwrap(),
                "-i",
                cover.to_str().unwrap(),
                "-map",
                "0",
                "-map",
                "1",
                "-c",
                "copy",
                "-id3v2_version",
                "3",
                "-metadata:s:v",
                "comment=Cover (front)",
            ],
            p,
        )
    });
    let e = describe(&path).await;
    let a = audio(&e);
    let thumb = a.cover.as_ref().expect("cover");
    assert_eq!(
        (thumb.width, thumb.height, thumb.format),
        (256, 171, ThumbnailFormat::Jpeg)
    );
    let pixel = ::image::load_from_memory(&thumb.bytes)
        .unwrap()
        .to_rgb8()
        .get_pixel(128, 85)
        .0;
    assert!(
        pixel[0] > 230 && (150..190).contains(&pixel[1]) && pixel[2] < 30,
        "orange, got {pixel:?}"
    );
    assert_tags(a);
}

/// 1600x1200, left half red, right half blue, EXIF written by exiv2: taken, camera,
/// orientation 6 (the camera was turned right: rotate 90° clockwise to view), GPS (Paris).
fn photo() -> PathBuf {
    fixture("photo.jpg", |p| {
        let path = p.to_str().unwrap();
        run(
            "convert",
            &[
                "-size",
                "800x1200",
                "xc:red",
                "-size",
                "800x1200",
                "xc:blue",
                "+append",
                "-quality",
                "90",
                &format!("jpg:{path}"),
            ],
        );
        run(
            "exiv2",
            &[
                "-M",
                "set Exif.Photo.DateTimeOriginal 2024:05:17 10:30:00",
                "-M",
                "set Exif.Image.Make Canon",
                "-M",
                "set Exif.Image.Model Canon EOS 5D",
                "-M",
                "set Exif.Image.Orientation 6",
                "-M",
                "set Exif.GPSInfo.GPSLatitudeRef N",
                "-M",
                "set Exif.GPSInfo.GPSLatitude 48/1 51/1 30/1",
                "-M",
                "set Exif.GPSInfo.GPSLongitudeRef E",
                "-M",
                "set Exif.GPSInfo.GPSLongitude 2/1 21/1 0/1",
                path,
            ],
        );
    })
}

#[tokio::test]
async fn jpeg_exif_and_an_oriented_thumbnail() {
    let e = describe(&photo()).await;
    assert_eq!(
        (e.kind, e.mime_type.as_str()),
        (MediaKind::Image, "image/jpeg")
    );
    let i = image(&e);
    assert_eq!(
        (i.width, i.height, i.format.as_str(), i.color_type.as_str()),
        (1600, 1200, "JPEG", "Rgb8")
    );
    assert_eq!(i.exif.taken.as_deref(), Some("2024-05-17T10:30:00"));
    assert_eq!(i.exif.camera.as_deref(), Some("Canon EOS 5D"));
    assert_eq!(i.exif.orientation, Some(6));
    let (lat, lon) = i.exif.gps.unwrap();
    assert!(
        (lat - 48.858_333).abs() < 1e-4 && (lon - 2.35).abs() < 1e-4,
        "{lat} {lon}"
    );
    let thumb = i.thumbnail.as_ref().unwrap();
    // Turned upright: portrait, and the left (red) half of the sensor is now on top.
    assert_eq!(
        (thumb.width, thumb.height, thumb.format),
        (192, 256, ThumbnailFormat::Jpeg)
    );
    let t = ::image::load_from_memory(&thumb.bytes).unwrap().to_rgb8();
    let (top, bottom) = (t.get_pixel(96, 20).0, t.get_pixel(96, 236).0);
    assert!(top[0] > 200 && top[2] < 60, "top should be red: {top:?}");
    assert!(
        bottom[2] > 200 && bottom[0] < 60,
        "bottom should be blue: {bottom:?}"
    );
}

#[tokio::test]
async fn png_gif_tiff_webp_progressive_jpeg() {
    let alpha = fixture("alpha.png", |p| {
        run(
            "convert",
            &[
                "-size",
                "300x100",
                "xc:none",
                "-fill",
                "red",
                "-draw",
                "rectangle 0,0 149,99",
                &format!("png32:{}", p.display()),
            ],
        )
    });
    let gif = fixture("plain.gif", |p| {
        run(
            "convert",
            &["-size", "320x240", "xc:green", p.to_str().unwrap()],
        )
    });
    let tiff = fixture("plain.tif", |p| {
        run(
            "convert",
            &[
                "-size",
                "200x100",
                "xc:blue",
                "-depth",
                "8",
                p.to_str().unwrap(),
            ],
        )
    });
    let progressive = fixture("progressive.jpg", |p| {
        run(
            "convert",
            &[
                "-size",
                "1000x500",
                "gradient:white-black",
                "-interlace",
                "Plane",
                p.to_str().unwrap(),
            ],
        )
    });
    let webp = fixture("plain.webp", |p| {
        let picture = ::image::RgbImage::from_pixel(500, 250, ::image::Rgb([255, 255, 0]));
        picture
            .save_with_format(p, ::image::ImageFormat::WebP)
            .unwrap();
    });
    let pool = extractor();
    let cases = [
        (
            alpha,
            "PNG",
            300,
            100,
            "Rgba8",
            (256, 85, ThumbnailFormat::WebP),
        ),
        (
            gif,
            "GIF",
            320,
            240,
            "Rgba8",
            (256, 192, ThumbnailFormat::WebP),
        ),
        (
            tiff,
            "TIFF",
            200,
            100,
            "Rgb8",
            (200, 100, ThumbnailFormat::Jpeg),
        ),
        (
            progressive,
            "JPEG",
            1000,
            500,
            "L8",
            (256, 128, ThumbnailFormat::Jpeg),
        ),
        (
            webp,
            "WebP",
            500,
            250,
            "Rgb8",
            (256, 128, ThumbnailFormat::Jpeg),
        ),
    ];
    for (path, format, w, h, color, (tw, th, tf)) in cases {
        let e = pool.extract(&path, Options::default()).await.unwrap();
        let i = image(&e);
        assert_eq!(
            (i.format.as_str(), i.width, i.height, i.color_type.as_str()),
            (format, w, h, color),
            "{}",
            path.display()
        );
        let t = i.thumbnail.as_ref().unwrap();
        assert_eq!(
            (t.width, t.height, t.format),
            (tw, th, tf),
            "{}",
            path.display()
        );
        let decoded = ::image::load_from_memory(&t.bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (tw, th));
    }
}

#[tokio::test]
async fn mp4_h264_aac_from_the_container() {
    let path = fixture("clip.mp4", |p| {
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440",
                "-t",
                "2",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "aac",
                "-metadata",
                "creation_time=2024-05-17T10:30:00Z",
            ],
            p,
        )
    });
    let e = describe(&path).await;
    assert_eq!(e.kind, MediaKind::Video);
    let v = video(&e);
    assert_eq!((v.width, v.height), (Some(320), Some(240)));
    assert_eq!(
        (v.video_codec.as_deref(), v.audio_codec.as_deref()),
        (Some("H.264"), Some("AAC"))
    );
    assert!(close(v.duration, 2.0, 0.05), "{v:?}");
    assert!(close(v.frame_rate, 25.0, 0.01), "{v:?}");
    assert_eq!(v.created.as_deref(), Some("2024-05-17T10:30:00Z"));
    assert!(v.poster.is_none());

    // The same clip with a 600x400 orange poster in its `covr` atom.
    let cover = fixture("cover.png", |p| {
        run(
            "convert",
            &["-size", "600x400", "xc:orange", p.to_str().unwrap()],
        )
    });
    let with_poster = fixture("poster.mp4", |p| {
        ffmpeg(
            &[
                "-i",
                path.to_str().unwrap(),
                "-i",
                cover.to_str().unwrap(),
                "-map",
                "0",
                "-map",
                "1",
                "-c",
                "copy",
                "-disposition:v:1",
                "attached_pic",
            ],
            p,
        )
    });
    let e = describe(&with_poster).await;
    let v = video(&e);
    assert_eq!(
        (v.width, v.height, v.video_codec.as_deref()),
        (Some(320), Some(240), Some("H.264"))
    );
    let poster = v.poster.as_ref().expect("poster");
    assert_eq!((poster.width, poster.height), (256, 171));
}

#[tokio::test]
async fn hevc_mov_and_matroska_and_webm() {
    let hevc = fixture("hevc.mp4", |p| {
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=30",
                "-t",
                "1",
                "-c:v",
                "libx265",
                "-preset",
                "ultrafast",
                "-x265-params",
                "log-level=none",
                "-tag:v",
                "hvc1",
            ],
            p,
        )
    });
    let mkv = fixture("clip.mkv", |p| {
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=640x360:rate=30",
                "-f",
                "lavfi",
                "-i",
                "sine",
                "-t",
                "1.5",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "flac",
            ],
            p,
        )
    });
    let webm = fixture("clip.webm", |p| {
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x180:rate=24",
                "-f",
                "lavfi",
                "-i",
                "sine",
                "-t",
                "1",
                "-c:v",
                "libvpx-vp9",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-c:a",
                "libopus",
            ],
            p,
        )
    });
    let pool = extractor();
    let cases = [
        (hevc, "MP4", 320, 240, "HEVC", None, 1.0, 30.0),
        (mkv, "Matroska", 640, 360, "H.264", Some("FLAC"), 1.5, 30.0),
        (webm, "WebM", 320, 180, "VP9", Some("Opus"), 1.0, 24.0),
    ];
    for (path, container, w, h, vc, ac, seconds, fps) in cases {
        let e = pool.extract(&path, Options::default()).await.unwrap();
        let v = video(&e);
        assert_eq!(
            (v.container.as_str(), v.width, v.height),
            (container, Some(w), Some(h)),
            "{v:?}"
        );
        assert_eq!(
            (v.video_codec.as_deref(), v.audio_codec.as_deref()),
            (Some(vc), ac),
            "{v:?}"
        );
        assert!(close(v.duration, seconds, 0.06), "{v:?}");
        if let Some(rate) = v.frame_rate {
            assert!((rate - fps).abs() < 0.01, "{v:?}");
        } else {
            assert_eq!(
                container, "WebM",
                "only WebM may omit the default frame duration: {v:?}"
            );
        }
    }
}

#[tokio::test]
async fn text_encodings() {
    let utf8 = fixture("utf8.txt", |p| {
        std::fs::write(p, "première\ndeuxième\ntroisième\n").unwrap()
    });
    let latin1 = fixture("latin1.txt", |p| {
        let (bytes, _, _) = encoding_rs::WINDOWS_1252
            .encode("Ça va très bien, merci. Déjà vu à la française.\nDeux\n");
        std::fs::write(p, bytes).unwrap()
    });
    let pool = extractor();
    let e = pool.extract(&utf8, Options::default()).await.unwrap();
    let Details::Text(t) = &e.details else {
        panic!("{e:?}")
    };
    assert_eq!(
        (t.encoding.as_str(), t.lines, t.preview.as_str()),
        ("UTF-8", 3, "première\ndeuxième\ntroisième\n")
    );
    let e = pool.extract(&latin1, Options::default()).await.unwrap();
    let Details::Text(t) = &e.details else {
        panic!("{e:?}")
    };
    assert_eq!((t.encoding.as_str(), t.lines), ("windows-1252", 2));
    assert!(t.preview.starts_with("Ça va très bien"));
}

fn truncated(name: &str, source: &Path, keep: f64) -> PathBuf {
    fixture(name, |p| {
        let bytes = std::fs::read(source).unwrap();
        std::fs::write(p, &bytes[..(bytes.len() as f64 * keep) as usize]).unwrap();
    })
}

#[tokio::test]
async fn hostile_files_cost_a_worker_at_most() {
    let pool = extractor_with(Duration::from_millis(1500));
    let good = photo();

    // A picture declaring 100000x100000 pixels in its 33-byte header.
    let huge = fixture("huge.png", |p| {
        std::fs::write(p, huge_png(100_000, 100_000)).unwrap()
    });
    let err = pool.extract(&huge, Options::default()).await.unwrap_err();
    assert!(matches!(err, ExtractError::TooLarge { .. }), "{err:?}");

    // A worker stuck in a loop: killed at the deadline; the next file gets a fresh worker.
    let hang = fixture("hang.bin", |p| {
        std::fs::write(p, b"ALLPEERS-TEST-HANG\n").unwrap()
    });
    assert_eq!(
        pool.extract(&hang, Options::default()).await.unwrap_err(),
        ExtractError::Deadline(1500)
    );
    assert_eq!(pool.restarts(), 1);
    assert_eq!(
        image(&pool.extract(&good, Options::default()).await.unwrap()).width,
        1600
    );

    // A worker that aborts (as on a failed allocation): a clear error, then a fresh worker.
    let abort = fixture("abort.bin", |p| {
        std::fs::write(p, b"ALLPEERS-TEST-ABORT\n").unwrap()
    });
    let err = pool.extract(&abort, Options::default()).await.unwrap_err();
    assert!(
        matches!(&err, ExtractError::WorkerDied(why) if why.contains("signal 6")),
        "{err:?}"
    );
    assert_eq!(pool.restarts(), 2);

    // A panic is caught inside the worker: an error, and the worker stays.
    let panic = fixture("panic.bin", |p| {
        std::fs::write(p, b"ALLPEERS-TEST-PANIC\n").unwrap()
    });
    let err = pool.extract(&panic, Options::default()).await.unwrap_err();
    assert_eq!(err, ExtractError::Panicked("test hook panic".to_owned()));
    assert_eq!(pool.restarts(), 2);
    assert_eq!(
        image(&pool.extract(&good, Options::default()).await.unwrap()).height,
        1200
    );

    // Truncated files of each kind: an error or what the intact part holds, never a lost worker.
    let flac = fixture("tone-trunc-src.flac", |p| {
        run(
            "sox",
            &[
                "-n",
                "-r",
                "44100",
                "-c",
                "1",
                p.to_str().unwrap(),
                "synth",
                "1",
                "sine",
                "440",
            ],
        )
    });
    let mp4 = fixture("trunc-src.mp4", |p| {
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=160x120:rate=10",
                "-t",
                "1",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
            ],
            p,
        )
    });
    let cases = [
        truncated("photo-half.jpg", &good, 0.5),
        truncated("photo-head.jpg", &good, 0.01),
        truncated("tone-half.mp3", &mp3(), 0.5),
        truncated("tone-head.mp3", &mp3(), 0.002),
        truncated("tone-half.flac", &flac, 0.5),
        truncated("clip-half.mp4", &mp4, 0.5),
        truncated("huge-head.png", &huge, 0.5),
    ];
    for path in &cases {
        match pool.extract(path, Options::default()).await {
            Ok(e) => assert_ne!(e.kind, MediaKind::Text, "{}: {e:?}", path.display()),
            Err(e) => assert!(
                matches!(
                    e,
                    ExtractError::Malformed { .. } | ExtractError::TooLarge { .. }
                ),
                "{}: {e:?}",
                path.display()
            ),
        }
    }
    // ffmpeg writes moov after mdat: half an MP4 has no index, which must be said.
    let err = pool
        .extract(&cases[5], Options::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ExtractError::Malformed { .. }), "{err:?}");
    assert_eq!(pool.restarts(), 2, "no truncated file may cost a worker");
}

/// Writes a PNG whose chunks Python's zlib compresses as a stream (so a bomb costs the
/// fixture little memory): `idat_zero_bytes` of zeros as the image data, and an optional zTXt
/// comment inflating to `ztxt_zero_bytes`.
const PNG_BOMB_PY: &str = r#"
import struct, sys, zlib
out, width, height, color_type, idat_rows, ztxt_bytes = sys.argv[1], *map(int, sys.argv[2:])
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
def zeros(total):
    z, step, parts = zlib.compressobj(9), 1 << 20, []
    while total > 0:
        parts.append(z.compress(bytes(min(step, total)))); total -= step
    parts.append(z.flush()); return b"".join(parts)
channels = {0: 1, 2: 3, 6: 4}[color_type]
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0))
if ztxt_bytes:
    png += chunk(b"zTXt", b"Comment\0\0" + zeros(ztxt_bytes))
png += chunk(b"IDAT", zeros(idat_rows * (1 + width * channels))) + chunk(b"IEND", b"")
open(out, "wb").write(png)
"#;

fn png_bomb(name: &str, width: u32, height: u32, idat_rows: u32, ztxt_bytes: u64) -> PathBuf {
    fixture(name, |p| {
        let args = [
            width.to_string(),
            height.to_string(),
            "0".to_owned(),
            idat_rows.to_string(),
            ztxt_bytes.to_string(),
        ];
        let mut all = vec!["-c", PNG_BOMB_PY, p.to_str().unwrap()];
        all.extend(args.iter().map(String::as_str));
        run("python3", &all);
    })
}

#[tokio::test]
async fn png_decompression_bombs() {
    let pool = extractor();
    // 144 megapixels of zeros deflate to under 200 KB: refused from the header.
    let pixels = png_bomb("bomb-pixels.png", 12_000, 12_000, 12_000, 0);
    assert!(std::fs::metadata(&pixels).unwrap().len() < 200 << 10);
    let err = pool.extract(&pixels, Options::default()).await.unwrap_err();
    assert!(matches!(err, ExtractError::TooLarge { .. }), "{err:?}");
    // A 64x64 picture with a comment inflating to 64 MB: the text is not inflated, the
    // picture is described.
    let text = png_bomb("bomb-ztxt.png", 64, 64, 64, 64 << 20);
    let e = pool.extract(&text, Options::default()).await.unwrap();
    let i = image(&e);
    assert_eq!((i.width, i.height, i.color_type.as_str()), (64, 64, "L8"));
    assert_eq!(
        i.thumbnail.as_ref().map(|t| (t.width, t.height)),
        Some((64, 64))
    );
    assert_eq!(pool.restarts(), 0);
}

/// A PNG signature and IHDR chunk declaring `width`x`height` RGB, and nothing else.
fn huge_png(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    let mut crc = !0u32;
    for &b in &ihdr {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    png.extend_from_slice(&(!crc).to_be_bytes());
    png
}

#[tokio::test]
async fn the_pool_shares_its_workers_between_concurrent_files() {
    let pool = std::sync::Arc::new(extractor());
    let files = [photo(), mp3(), photo(), mp3(), photo(), mp3()];
    let mut tasks = tokio::task::JoinSet::new();
    for path in files {
        let pool = pool.clone();
        tasks.spawn(async move {
            pool.extract(&path, Options::default())
                .await
                .map(|e| e.kind)
        });
    }
    let mut kinds = Vec::new();
    while let Some(kind) = tasks.join_next().await {
        kinds.push(kind.unwrap().unwrap());
    }
    assert_eq!(kinds.iter().filter(|k| **k == MediaKind::Image).count(), 3);
    assert_eq!(kinds.iter().filter(|k| **k == MediaKind::Audio).count(), 3);
    // Two slots: never more than two workers, and none lost.
    assert!(
        (1..=2).contains(&pool.workers_started()),
        "{}",
        pool.workers_started()
    );
    assert_eq!(pool.restarts(), 0);
}

#[tokio::test]
async fn a_path_need_not_be_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    std::fs::write(&path, "latin-1 name\n").unwrap();
    let e = extractor()
        .extract(&path, Options::default())
        .await
        .unwrap();
    assert_eq!(e.kind, MediaKind::Text);
}
