//! Media benchmark, side by side in one run on the same files (numbers in docs/benchmarks.md,
//! section "Media"):
//!
//! 1. thumbnails (longest side 256) of 12-megapixel JPEGs: ours (in process, and through the
//!    worker pool) against `vipsthumbnail` and ImageMagick `convert -thumbnail`, each tool as a
//!    process per file (how people run them) and vipsthumbnail also in one batch; peak
//!    memory of each (GNU time's maximum resident set size, one file);
//! 2. metadata of a mixed folder (photos, songs, videos, text): ours through the pool against
//!    `ffprobe` / `identify` per file — files per second, and the pool's overhead per file;
//! 3. audio probe: ours in process against `ffprobe` per file.
//!
//! Each per-file figure is the fastest of [`ROUNDS`] rounds.
//! `cargo bench -p allpeers-media --bench media`; `MEDIA_BENCH_JPEGS` (12) and
//! `MEDIA_BENCH_MIXED` (200) set the sizes, `MEDIA_BENCH_CONVERT` ImageMagick's binary;
//! `media --ours FILE...` times only ours, in process (to compare two builds of the decoder). Needs ffmpeg, ImageMagick, exiv2, libvips-tools
//! and GNU time; a missing baseline is reported and skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use allpeers_media::{Extractor, ExtractorConfig, Options};

const WITH_THUMBNAIL: Options = Options {
    thumbnail: true,
    exact_duration: false,
};
const METADATA_ONLY: Options = Options {
    thumbnail: false,
    exact_duration: false,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // Child mode: one thumbnail in a fresh process, for GNU time's peak memory.
    if args.get(1).map(String::as_str) == Some("--thumbnail-one") {
        let info =
            allpeers_media::extract_path(Path::new(&args[2]), &WITH_THUMBNAIL).expect("thumbnail");
        assert!(matches!(info.details, allpeers_media::Details::Image(_)));
        return;
    }
    // Ours alone, in process, on the files given (for comparing two builds of the decoder quickly):
    // the fastest of `MEDIA_BENCH_ROUNDS` (20) rounds, ms per file.
    if args.get(1).map(String::as_str) == Some("--ours") {
        let files: Vec<PathBuf> = args[2..].iter().map(PathBuf::from).collect();
        let rounds = env_number("MEDIA_BENCH_ROUNDS", 20);
        let best = (0..rounds)
            .map(|_| {
                per_file(&files, |f| {
                    allpeers_media::extract_path(f, &WITH_THUMBNAIL).is_ok()
                })
                .expect("every thumbnail made")
            })
            .min()
            .expect("one round");
        println!("{:.2} ms/file", ms(best));
        return;
    }
    let jpegs: usize = env_number("MEDIA_BENCH_JPEGS", 12);
    let mixed: usize = env_number("MEDIA_BENCH_MIXED", 200);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("media-bench");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("media benchmark: {jpegs} JPEGs of 4000x3000, a mixed folder of {mixed} files");

    let photos = make_photos(&dir, jpegs);
    thumbnails(&runtime, &photos, &out);
    let folder = make_mixed(&dir, mixed);
    metadata(&runtime, &folder);
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn must(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// GNU time's maximum resident set size of one run, in MiB.
fn peak_mib(program: &str, args: &[&str]) -> Option<f64> {
    if !Path::new("/usr/bin/time").exists() {
        return None;
    }
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M", program])
        .args(args)
        .output()
        .ok()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kib: f64 = stderr.lines().last()?.trim().parse().ok()?;
    Some(kib / 1024.0)
}

fn make_photos(dir: &Path, count: usize) -> Vec<PathBuf> {
    let base = dir.join("base-12mp.jpg");
    if !base.exists() {
        let started = Instant::now();
        must(
            "convert",
            &[
                "-size",
                "4000x3000",
                "-seed",
                "7",
                "plasma:",
                "-quality",
                "90",
                base.to_str().unwrap(),
            ],
        );
        must(
            "exiv2",
            &["-M", "set Exif.Image.Orientation 6", base.to_str().unwrap()],
        );
        println!(
            "  made the 12 MP JPEG in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    (0..count)
        .map(|i| {
            let path = dir.join(format!("photo-{i:03}.jpg"));
            if !path.exists() {
                std::fs::copy(&base, &path).unwrap();
            }
            path
        })
        .collect()
}

/// Rounds per measurement; the fastest is kept, since on a shared machine the noise only
/// ever adds time.
const ROUNDS: usize = 3;

fn per_file(files: &[PathBuf], mut each: impl FnMut(&Path) -> bool) -> Option<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for f in files {
            if !each(f) {
                return None;
            }
        }
        best = best.min(started.elapsed() / files.len().max(1) as u32);
    }
    Some(best)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn pool(workers: usize) -> Arc<Extractor> {
    let mut config = ExtractorConfig::new(env!("CARGO_BIN_EXE_allpeers-media-worker"));
    config.workers = workers;
    Arc::new(Extractor::new(config))
}

fn thumbnails(runtime: &tokio::runtime::Runtime, photos: &[PathBuf], out: &Path) {
    println!(
        "\n## thumbnails, 256 px, {} x 12 MP JPEG (per file, sequential)",
        photos.len()
    );
    let ours = per_file(photos, |f| {
        allpeers_media::extract_path(f, &WITH_THUMBNAIL).is_ok()
    })
    .unwrap();
    let one_worker = pool(1);
    let ours_pool = (0..ROUNDS)
        .map(|_| {
            runtime.block_on(async {
                let started = Instant::now();
                for f in photos {
                    one_worker.extract(f, WITH_THUMBNAIL).await.unwrap();
                }
                started.elapsed() / photos.len() as u32
            })
        })
        .min()
        .unwrap();
    // What `allpeers add` does with a folder of photos: a worker per core, all files queued.
    let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
    let all_workers = pool(cores);
    let ours_all = (0..ROUNDS)
        .map(|_| {
            runtime.block_on(async {
                let started = Instant::now();
                let mut tasks = tokio::task::JoinSet::new();
                for f in photos {
                    let (f, workers) = (f.clone(), all_workers.clone());
                    tasks.spawn(async move { workers.extract(&f, WITH_THUMBNAIL).await.is_ok() });
                }
                while let Some(done) = tasks.join_next().await {
                    assert!(done.unwrap(), "every thumbnail made");
                }
                started.elapsed() / photos.len() as u32
            })
        })
        .min()
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let first = photos[0].to_str().unwrap();
    let ours_peak = peak_mib(exe.to_str().unwrap(), &["--thumbnail-one", first]);
    println!(
        "  {:<34} {:>9} {:>9} {:>10}",
        "", "ms/file", "ratio", "peak MiB"
    );
    let row = |name: &str, d: Option<Duration>, peak: Option<f64>| match d {
        Some(d) => println!(
            "  {name:<34} {:>9.1} {:>8.2}x {:>10}",
            ms(d),
            d.as_secs_f64() / ours.as_secs_f64(),
            peak.map_or("-".to_owned(), |p| format!("{p:.0}"))
        ),
        None => println!("  {name:<34} skipped (tool missing)"),
    };
    row("allpeers-media (in process)", Some(ours), ours_peak);
    row("allpeers-media (worker pool, 1)", Some(ours_pool), None);
    row(
        &format!("allpeers-media (pool, {cores} workers, all)"),
        Some(ours_all),
        None,
    );

    let vips = have("vipsthumbnail").then(|| {
        per_file(photos, |f| {
            run(
                "vipsthumbnail",
                &[
                    f.to_str().unwrap(),
                    "-s",
                    "256",
                    "-o",
                    &format!("{}/%s-vips.jpg", out.display()),
                ],
            )
        })
    });
    let vips_peak = peak_mib(
        "vipsthumbnail",
        &[
            first,
            "-s",
            "256",
            "-o",
            &format!("{}/%s-vips.jpg", out.display()),
        ],
    );
    row(
        "vipsthumbnail (process per file)",
        vips.flatten(),
        vips_peak,
    );
    if have("vipsthumbnail") {
        let mut args: Vec<String> = photos.iter().map(|p| p.display().to_string()).collect();
        args.extend([
            "-s".into(),
            "256".into(),
            "-o".into(),
            format!("{}/%s-vipsb.jpg", out.display()),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let batch = (0..ROUNDS)
            .map(|_| {
                let started = Instant::now();
                run("vipsthumbnail", &args).then(|| started.elapsed() / photos.len() as u32)
            })
            .min()
            .flatten();
        row("vipsthumbnail (one batch process)", batch, None);
    }
    let target = out.join("convert.jpg");
    // `MEDIA_BENCH_CONVERT` names ImageMagick's binary where `convert` on the PATH is a
    // wrapper (one machine here has a script in /usr/local/bin that adds a Python start).
    let convert_bin = std::env::var("MEDIA_BENCH_CONVERT").unwrap_or_else(|_| "convert".into());
    let convert_bin = convert_bin.as_str();
    let convert = have(convert_bin).then(|| {
        per_file(photos, |f| {
            run(
                convert_bin,
                &[
                    f.to_str().unwrap(),
                    "-thumbnail",
                    "256x256",
                    target.to_str().unwrap(),
                ],
            )
        })
    });
    let convert_peak = peak_mib(
        convert_bin,
        &[first, "-thumbnail", "256x256", target.to_str().unwrap()],
    );
    row(
        "convert -thumbnail (process per file)",
        convert.flatten(),
        convert_peak,
    );
    println!("  (ratio: the tool's time over ours in process; > 1 means we are faster)");
}

/// A folder of photos (1600x1200 with EXIF), songs (MP3, FLAC, Ogg), videos (MP4, WebM) and
/// text, copies of eight originals made by real encoders.
fn make_mixed(dir: &Path, count: usize) -> Vec<PathBuf> {
    let originals = dir.join("originals");
    std::fs::create_dir_all(&originals).unwrap();
    let make = |name: &str, f: &dyn Fn(&str)| {
        let path = originals.join(name);
        if !path.exists() {
            f(path.to_str().unwrap());
        }
        path
    };
    let ff = |args: &[&str], out: &str| {
        let mut all = vec!["-hide_banner", "-loglevel", "error", "-y"];
        all.extend_from_slice(args);
        all.push(out);
        must("ffmpeg", &all);
    };
    let tone = [
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-t",
        "30",
        "-ac",
        "2",
        "-metadata",
        "title=Tone",
    ];
    let clip = [
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x360:rate=25",
        "-t",
        "5",
    ];
    let sources = [
        make("photo.jpg", &|p| {
            must(
                "convert",
                &["-size", "1600x1200", "-seed", "3", "plasma:", p],
            );
            must(
                "exiv2",
                &[
                    "-M",
                    "set Exif.Photo.DateTimeOriginal 2024:05:17 10:30:00",
                    p,
                ],
            );
        }),
        make("photo.png", &|p| {
            must("convert", &["-size", "800x600", "gradient:red-blue", p])
        }),
        make("song.mp3", &|p| {
            ff(
                &[&tone[..], &["-c:a", "libmp3lame", "-b:a", "192k"]].concat(),
                p,
            )
        }),
        make("song.flac", &|p| {
            ff(&[&tone[..], &["-c:a", "flac"]].concat(), p)
        }),
        make("song.ogg", &|p| {
            ff(&[&tone[..], &["-c:a", "libvorbis"]].concat(), p)
        }),
        make("clip.mp4", &|p| {
            ff(
                &[&clip[..], &["-c:v", "libx264", "-preset", "ultrafast"]].concat(),
                p,
            )
        }),
        make("clip.webm", &|p| {
            ff(
                &[
                    &clip[..],
                    &[
                        "-c:v",
                        "libvpx-vp9",
                        "-deadline",
                        "realtime",
                        "-cpu-used",
                        "8",
                    ],
                ]
                .concat(),
                p,
            )
        }),
        make("notes.txt", &|p| {
            std::fs::write(p, "line\n".repeat(2000)).unwrap()
        }),
    ];
    let folder = dir.join(format!("mixed-{count}"));
    std::fs::create_dir_all(&folder).unwrap();
    (0..count)
        .map(|i| {
            let source = &sources[i % sources.len()];
            let path = folder.join(format!(
                "{i:04}-{}",
                source.file_name().unwrap().to_str().unwrap()
            ));
            if !path.exists() {
                std::fs::copy(source, &path).unwrap();
            }
            path
        })
        .collect()
}

fn metadata(runtime: &tokio::runtime::Runtime, files: &[PathBuf]) {
    let n = files.len();
    println!("\n## metadata of a mixed folder, {n} files (photos, songs, videos, text)");
    let in_process = per_file(files, |f| {
        allpeers_media::extract_path(f, &METADATA_ONLY).is_ok()
    })
    .unwrap();
    let one_worker = pool(1);
    let through_one = (0..ROUNDS)
        .map(|_| {
            runtime.block_on(async {
                let started = Instant::now();
                for f in files {
                    one_worker.extract(f, METADATA_ONLY).await.unwrap();
                }
                started.elapsed() / n as u32
            })
        })
        .min()
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
    let parallel = |options: Options| {
        let workers = pool(cores);
        runtime.block_on(async {
            let started = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for f in files {
                let (f, workers) = (f.clone(), workers.clone());
                tasks.spawn(async move { workers.extract(&f, options).await.is_ok() });
            }
            let mut ok = 0;
            while let Some(r) = tasks.join_next().await {
                ok += usize::from(r.unwrap());
            }
            assert_eq!(ok, n, "every file described");
            started.elapsed()
        })
    };
    let pool_meta = parallel(METADATA_ONLY);
    let pool_thumb = parallel(WITH_THUMBNAIL);
    let baseline = (have("ffprobe") && have("identify")).then(|| {
        per_file(files, |f| {
            let name = f.to_str().unwrap();
            if name.ends_with(".jpg") || name.ends_with(".png") {
                run("identify", &[name])
            } else if name.ends_with(".txt") {
                // Neither tool reads text; `file` is what people use.
                run("file", &["--mime", name])
            } else {
                run(
                    "ffprobe",
                    &[
                        "-v",
                        "quiet",
                        "-print_format",
                        "json",
                        "-show_format",
                        "-show_streams",
                        name,
                    ],
                )
            }
        })
    });
    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    println!("  {:<44} {:>10} {:>9}", "", "files/s", "ratio");
    let ours_rate = rate(pool_meta);
    println!(
        "  {:<44} {:>10.0} {:>9}",
        format!("allpeers-media pool, {cores} workers, metadata"),
        ours_rate,
        "1.00x"
    );
    println!(
        "  {:<44} {:>10.0}",
        format!("allpeers-media pool, {cores} workers, + thumbnails"),
        rate(pool_thumb)
    );
    println!(
        "  {:<44} {:>10.0}",
        "allpeers-media in process, sequential",
        1.0 / in_process.as_secs_f64()
    );
    match baseline.flatten() {
        Some(per) => {
            let base_rate = 1.0 / per.as_secs_f64();
            println!(
                "  {:<44} {:>10.0} {:>8.1}x",
                "ffprobe / identify / file, process per file",
                base_rate,
                ours_rate / base_rate
            );
        }
        None => println!("  ffprobe / identify: skipped (tool missing)"),
    }
    println!(
        "  worker pool overhead: {:.3} ms per file (1 worker, sequential, minus in process)",
        ms(through_one.saturating_sub(in_process))
    );

    let songs: Vec<PathBuf> = files
        .iter()
        .filter(|f| {
            let n = f.to_str().unwrap();
            n.ends_with(".mp3") || n.ends_with(".flac") || n.ends_with(".ogg")
        })
        .cloned()
        .collect();
    println!(
        "\n## audio probe, {} songs of 30 s (MP3, FLAC, Ogg Vorbis), per file",
        songs.len()
    );
    let ours = per_file(&songs, |f| {
        allpeers_media::extract_path(f, &METADATA_ONLY).is_ok()
    })
    .unwrap();
    println!(
        "  allpeers-media in process        {:>8.3} ms/file",
        ms(ours)
    );
    if have("ffprobe") {
        let ffprobe = per_file(&songs, |f| {
            run(
                "ffprobe",
                &[
                    "-v",
                    "quiet",
                    "-print_format",
                    "json",
                    "-show_format",
                    "-show_streams",
                    f.to_str().unwrap(),
                ],
            )
        })
        .unwrap();
        println!(
            "  ffprobe, process per file        {:>8.3} ms/file   ({:.0}x ours)",
            ms(ffprobe),
            ffprobe.as_secs_f64() / ours.as_secs_f64()
        );
    }
}
