//! The catalog's rules, apart from the daemon: which files a `media.add` covers (a bounded
//! walk), whether a catalogued file is new, changed or unchanged (modification time and
//! size), and the File, Audio, Image, Video or Text resource that describes it.
//!
//! A file's resource id is derived from its path (`file:` + a hash of the path), so the
//! catalog finds a file's resource without a query and adding a folder twice never makes
//! two resources for one file. The link to the disk lives in the resource's local metadata
//! (`path`, `mtime`, `missing`, `error`), which is never replicated.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use allpeers_media::{Details, ExtractError, Extracted, MediaKind, Thumbnail};
use allpeers_model::resource::{Patch, Resource, Value, parse_date};

/// Files one `media.add` catalogues at most: the walk's list lives in memory, and a job
/// past this size is a mistake (a home directory added whole) better stopped early.
pub const MAX_FILES_PER_JOB: usize = 200_000;
/// Folders deeper than this are not entered: no real library nests so deep, a bind-mount
/// loop does.
pub const MAX_DEPTH: usize = 64;

/// Properties the catalog owns: on re-description, those the new description lacks are
/// removed (a file that lost its tags loses them in the catalog too).
const BASE_PROPS: &[&str] = &["id", "type", "owner", "created", "modified"];

/// A file on disk as the walk saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFile {
    pub path: PathBuf,
    pub size: u64,
    /// Modification time, Unix milliseconds.
    pub mtime_ms: i64,
}

impl DiskFile {
    /// `None` for a non-UTF-8 path, which the catalog cannot record faithfully.
    fn from_meta(path: &Path, meta: &std::fs::Metadata) -> Option<DiskFile> {
        path.to_str()?;
        let mtime_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        Some(DiskFile {
            path: path.to_path_buf(),
            size: meta.len(),
            mtime_ms,
        })
    }

    pub fn id(&self) -> String {
        file_id(&self.path)
    }
}

/// The resource id of the file at `path`.
pub fn file_id(path: &Path) -> String {
    let hash = blake3::hash(path.as_os_str().as_encoded_bytes());
    format!("file:{}", &hash.to_hex()[..32])
}

/// What a walk found.
#[derive(Debug, Default)]
pub struct Walk {
    pub files: Vec<DiskFile>,
    /// The folders given (not their sub-folders): where vanished files are looked for.
    pub folders: Vec<PathBuf>,
    /// Entries skipped: unreadable, non-UTF-8 names, symlinks inside folders, too deep.
    pub skipped: u64,
    /// The walk stopped at [`MAX_FILES_PER_JOB`].
    pub truncated: bool,
    /// Paths given that no longer exist (the watcher names a file or folder that vanished):
    /// what was catalogued there is missing.
    pub gone: Vec<PathBuf>,
}

/// Lists the files under `roots` (files as they are, folders' files; sub-folders too when
/// `recursive`). Symlinks inside folders are not followed (a link cannot loop the walk or
/// lead it out of the folder); each file is listed once.
pub fn walk(roots: &[PathBuf], recursive: bool) -> Walk {
    let mut out = Walk::default();
    let mut seen = HashSet::new();
    for root in roots {
        match std::fs::metadata(root) {
            Ok(meta) if meta.is_dir() => {
                out.folders.push(root.clone());
                walk_dir(root, recursive, 0, &mut out, &mut seen);
            }
            Ok(meta) if meta.is_file() => match DiskFile::from_meta(root, &meta) {
                Some(file) if seen.insert(file.path.clone()) => out.files.push(file),
                Some(_) => {}
                None => out.skipped += 1,
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.gone.push(root.clone()),
            _ => out.skipped += 1,
        }
        if out.truncated {
            break;
        }
    }
    out
}

fn walk_dir(
    dir: &Path,
    recursive: bool,
    depth: usize,
    out: &mut Walk,
    seen: &mut HashSet<PathBuf>,
) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        out.skipped += 1;
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    // Sorted, so progress and tests see the same order every time.
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if out.files.len() >= MAX_FILES_PER_JOB {
            out.truncated = true;
            return;
        }
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            out.skipped += 1;
            continue;
        };
        if kind.is_dir() {
            if !recursive {
                continue;
            }
            if depth + 1 >= MAX_DEPTH {
                out.skipped += 1;
                continue;
            }
            walk_dir(&path, recursive, depth + 1, out, seen);
            if out.truncated {
                return;
            }
        } else if kind.is_file() {
            match entry
                .metadata()
                .ok()
                .and_then(|m| DiskFile::from_meta(&path, &m))
            {
                Some(file) if seen.insert(file.path.clone()) => out.files.push(file),
                Some(_) => {}
                None => out.skipped += 1,
            }
        } else {
            out.skipped += 1;
        }
    }
}

/// Whether `path` belongs to `folder` as a walk of it sees it.
pub fn in_folder(folder: &Path, path: &Path, recursive: bool) -> bool {
    if recursive {
        path.starts_with(folder) && path != folder
    } else {
        path.parent() == Some(folder)
    }
}

/// What to do with a file the walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not catalogued yet: describe it.
    New,
    /// Catalogued, but its size or modification time changed, or it had vanished: describe
    /// it again.
    Changed,
    /// As catalogued: nothing to do.
    Unchanged,
}

pub fn decide(existing: Option<&Resource>, file: &DiskFile) -> Decision {
    let Some(old) = existing else {
        return Decision::New;
    };
    let same_mtime = old.meta.get("mtime") == Some(&Value::Date(file.mtime_ms));
    let same_size = old.get("size") == Some(&Value::Integer(file.size as i64));
    let missing = old.meta.get("missing") == Some(&Value::Bool(true));
    if same_mtime && same_size && !missing {
        Decision::Unchanged
    } else {
        Decision::Changed
    }
}

/// The resource type a description gives.
pub fn type_name(kind: MediaKind) -> &'static str {
    match kind {
        MediaKind::Audio => "Audio",
        MediaKind::Image => "Image",
        MediaKind::Video => "Video",
        MediaKind::Text => "Text",
        MediaKind::File => "File",
    }
}

/// The file's content hash (BLAKE3, hex): the `hash` a share of the file names and a download verifies (the files
/// area's content address, the root of its Bao tree). Reads the whole file: run it on a blocking thread.
pub fn content_hash(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// The resource describing `file`: its type and properties from the extraction, or a plain
/// File with the `error` in its local metadata when the file could not be described.
pub fn describe(file: &DiskFile, outcome: Result<Extracted, ExtractError>) -> Resource {
    let name = file
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let path = file.path.to_string_lossy().into_owned();
    let extracted = match outcome {
        Ok(extracted) => extracted,
        Err(e) => {
            return Resource::new("File")
                .with_id(&file.id())
                .with("name", name.clone())
                .with("title", name)
                .with("size", file.size as i64)
                .with_meta("path", path)
                .with_meta("mtime", Value::Date(file.mtime_ms))
                .with_meta("error", e.to_string());
        }
    };
    let mut r = Resource::new(type_name(extracted.kind))
        .with_id(&file.id())
        .with("name", name.clone())
        .with("size", file.size as i64)
        .with("mimeType", extracted.mime_type)
        .with_meta("path", path)
        .with_meta("mtime", Value::Date(file.mtime_ms));
    let mut title = name;
    match extracted.details {
        Details::Audio(a) => {
            set(&mut r, "duration", a.duration.map(Value::Decimal));
            set(
                &mut r,
                "durationEstimated",
                a.duration.map(|_| Value::Bool(a.duration_estimated)),
            );
            set(&mut r, "codec", Some(Value::String(a.codec)));
            set(
                &mut r,
                "sampleRate",
                a.sample_rate.map(|n| Value::Integer(n.into())),
            );
            set(
                &mut r,
                "channels",
                a.channels.map(|n| Value::Integer(n.into())),
            );
            set(
                &mut r,
                "bitRate",
                a.bit_rate.map(|n| Value::Integer(n.into())),
            );
            set(&mut r, "artist", a.tags.artist.map(Value::String));
            set(&mut r, "album", a.tags.album.map(Value::String));
            set(&mut r, "genre", a.tags.genre.map(Value::String));
            set(
                &mut r,
                "year",
                a.tags.year.map(|n| Value::Integer(n.into())),
            );
            set(
                &mut r,
                "trackNumber",
                a.tags.track.map(|n| Value::Integer(n.into())),
            );
            set(&mut r, "thumbnail", a.cover.map(thumbnail));
            if let Some(t) = a.tags.title {
                title = t;
            }
        }
        Details::Image(i) => {
            set(&mut r, "width", Some(Value::Integer(i.width.into())));
            set(&mut r, "height", Some(Value::Integer(i.height.into())));
            set(&mut r, "format", Some(Value::String(i.format)));
            set(&mut r, "colorType", Some(Value::String(i.color_type)));
            // EXIF dates carry no zone: recorded as if UTC, which keeps the wall-clock
            // figures the camera showed.
            let taken = i.exif.taken.and_then(|t| parse_date(&format!("{t}Z")));
            set(&mut r, "taken", taken.map(Value::Date));
            set(&mut r, "cameraModel", i.exif.camera.map(Value::String));
            set(
                &mut r,
                "orientation",
                i.exif.orientation.map(|n| Value::Integer(n.into())),
            );
            set(
                &mut r,
                "latitude",
                i.exif.gps.map(|(lat, _)| Value::Decimal(lat)),
            );
            set(
                &mut r,
                "longitude",
                i.exif.gps.map(|(_, lon)| Value::Decimal(lon)),
            );
            set(&mut r, "thumbnail", i.thumbnail.map(thumbnail));
        }
        Details::Video(v) => {
            set(&mut r, "duration", v.duration.map(Value::Decimal));
            set(&mut r, "width", v.width.map(|n| Value::Integer(n.into())));
            set(&mut r, "height", v.height.map(|n| Value::Integer(n.into())));
            set(&mut r, "videoCodec", v.video_codec.map(Value::String));
            set(&mut r, "audioCodec", v.audio_codec.map(Value::String));
            set(&mut r, "frameRate", v.frame_rate.map(Value::Decimal));
            let recorded = v.created.as_deref().and_then(parse_date);
            set(&mut r, "recorded", recorded.map(Value::Date));
            set(&mut r, "thumbnail", v.poster.map(thumbnail));
        }
        Details::Text(t) => {
            set(&mut r, "encoding", Some(Value::String(t.encoding)));
            set(&mut r, "lines", Some(Value::Integer(t.lines as i64)));
            set(&mut r, "preview", Some(Value::String(t.preview)));
        }
        Details::File => {}
    }
    r.with("title", title)
}

/// Sets `key` when the description has a value for it.
fn set(r: &mut Resource, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        r.properties.insert(key.to_owned(), v);
    }
}

fn thumbnail(t: Thumbnail) -> Value {
    Value::Binary(t.bytes)
}

/// The patch turning the catalogued `old` into the fresh description `new` (same type):
/// every new value set, every value the new description lacks removed, and the link's
/// `missing` and `error` cleared unless set anew. The user's own metadata (a rating) stays.
pub fn patch(old: &Resource, new: &Resource) -> Patch {
    let mut p = Patch::default();
    for key in old.properties.keys() {
        if !BASE_PROPS.contains(&key.as_str()) && !new.properties.contains_key(key) {
            p.properties.insert(key.clone(), Value::Null);
        }
    }
    for (key, value) in &new.properties {
        p.properties.insert(key.clone(), value.clone());
    }
    for key in ["missing", "error"] {
        if old.meta.contains_key(key) && !new.meta.contains_key(key) {
            p.meta.insert(key.to_owned(), Value::Null);
        }
    }
    for (key, value) in &new.meta {
        p.meta.insert(key.clone(), value.clone());
    }
    p
}

/// Marks a catalogued file as vanished from disk (its description stays).
pub fn missing_patch() -> Patch {
    Patch::default().set_meta("missing", true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_content_hash_is_the_files_areas_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.bin");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(
            super::content_hash(&path).unwrap(),
            allpeers_transfer::blob::ContentHash::of(&bytes).to_hex()
        );
        assert!(super::content_hash(&dir.path().join("gone")).is_err());
    }

    use super::*;
    use allpeers_media::text::TextInfo;

    fn file(path: &str, size: u64, mtime_ms: i64) -> DiskFile {
        DiskFile {
            path: PathBuf::from(path),
            size,
            mtime_ms,
        }
    }

    fn text(preview: &str) -> Extracted {
        Extracted {
            kind: MediaKind::Text,
            mime_type: "text/plain".into(),
            format_name: "Plain Text".into(),
            details: Details::Text(TextInfo {
                encoding: "UTF-8".into(),
                bom: false,
                lines: 2,
                lines_exact: true,
                preview: preview.into(),
            }),
        }
    }

    #[test]
    fn ids_are_stable_per_path_and_valid() {
        let a = file_id(Path::new("/music/a.mp3"));
        assert_eq!(a, file_id(Path::new("/music/a.mp3")));
        assert_ne!(a, file_id(Path::new("/music/b.mp3")));
        assert!(allpeers_model::resource::is_valid_id(&a), "{a}");
    }

    #[test]
    fn decisions_follow_mtime_size_and_missing() {
        let f = file("/d/a.txt", 10, 1_000);
        assert_eq!(decide(None, &f), Decision::New);
        let old = describe(&f, Ok(text("hi")));
        assert_eq!(decide(Some(&old), &f), Decision::Unchanged);
        assert_eq!(
            decide(Some(&old), &file("/d/a.txt", 11, 1_000)),
            Decision::Changed
        );
        assert_eq!(
            decide(Some(&old), &file("/d/a.txt", 10, 2_000)),
            Decision::Changed
        );
        let mut gone = old.clone();
        gone.apply(&missing_patch());
        assert_eq!(decide(Some(&gone), &f), Decision::Changed);
    }

    #[test]
    fn a_failed_file_is_a_plain_file_with_its_error() {
        let f = file("/d/bad.png", 5, 1);
        let r = describe(
            &f,
            Err(ExtractError::Malformed {
                format: "PNG".into(),
                reason: "truncated".into(),
            }),
        );
        assert_eq!(r.type_name, "File");
        assert_eq!(r.get("name"), Some(&Value::String("bad.png".into())));
        assert!(r.meta["error"].as_str().unwrap().contains("truncated"));
        assert_eq!(r.meta["path"], Value::String("/d/bad.png".into()));
    }

    #[test]
    fn the_patch_removes_what_is_gone_and_clears_the_error() {
        let f = file("/d/a.txt", 5, 1);
        let mut old = describe(&f, Ok(text("old"))).with("encoding", "latin1");
        old.meta
            .insert("error".into(), Value::String("was bad".into()));
        old.meta.insert("rating".into(), Value::Integer(5));
        let mut new = describe(&f, Ok(text("new")));
        new.properties.remove("encoding");
        let p = patch(&old, &new);
        assert_eq!(p.properties["encoding"], Value::Null);
        assert_eq!(p.properties["preview"], Value::String("new".into()));
        assert_eq!(p.meta["error"], Value::Null);
        assert!(!p.meta.contains_key("rating"), "the user's metadata stays");
        assert!(!p.properties.contains_key("owner"));
    }

    #[test]
    fn walks_list_files_once_skip_links_and_respect_recursion() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.txt"), "a").unwrap();
        std::fs::create_dir(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/b.txt"), "b").unwrap();
        std::os::unix::fs::symlink(root, root.join("sub/loop")).unwrap();
        let flat = walk(&[root.to_path_buf()], false);
        assert_eq!(flat.files.len(), 1);
        let deep = walk(&[root.to_path_buf(), root.join("a.txt")], true);
        let names: Vec<_> = deep.files.iter().map(|f| f.path.clone()).collect();
        assert_eq!(names, vec![root.join("a.txt"), root.join("sub/b.txt")]);
        assert_eq!(deep.skipped, 1, "the symlink");
        assert_eq!(deep.folders, vec![root.to_path_buf()]);
        assert!(in_folder(root, &root.join("sub/b.txt"), true));
        assert!(!in_folder(root, &root.join("sub/b.txt"), false));
    }
}
