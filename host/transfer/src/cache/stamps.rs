//! What files shared in place looked like when they were last hashed whole (each file's length and
//! modification time), so that seeding a file that did not change since is not hashed again: not at
//! every daemon start, and not right after `transfers.seed` made its torrent (which hashed it).
//!
//! A change the stamps cannot see (a file rewritten with the same length and its old modification
//! time restored) is served as it is and caught by every downloader, who checks each piece's SHA-1.

use std::fs::{File, Metadata};
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::layout::Layout;

/// Bytes a stamps file may have: about 60 per file, and a torrent has at most
/// [`MAX_FILES`](super::layout::MAX_FILES) files.
const MAX_STAMPS_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamps(Vec<Stamp>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    len: u64,
    modified_s: u64,
    modified_ns: u32,
}

impl Stamps {
    /// The stamps of `layout`'s files under `root` now.
    pub fn read(root: &Path, layout: &Layout) -> std::io::Result<Stamps> {
        layout
            .files()
            .iter()
            .map(|entry| Stamp::of(&root.join(&entry.path)))
            .collect::<Result<_, _>>()
            .map(Stamps)
    }

    /// The stamps of one file (what a single-file torrent's layout reads).
    pub fn of_file(path: &Path) -> std::io::Result<Stamps> {
        Ok(Stamps(vec![Stamp::of(path)?]))
    }

    /// The stamps of one file already open (by its descriptor: no path is looked up again).
    pub fn of_open(file: &File) -> std::io::Result<Stamps> {
        Ok(Stamps(vec![Stamp::from_metadata(&file.metadata()?)?]))
    }

    /// The stamps saved at `path`; `None` when absent, unreadable or garbled (then the files are
    /// simply hashed again).
    pub fn load(path: &Path) -> Option<Stamps> {
        let meta = std::fs::metadata(path).ok()?;
        if meta.len() > MAX_STAMPS_BYTES {
            return None;
        }
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Saves the stamps whole or not at all.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        super::write_atomically(path, &serde_json::to_vec(self).expect("stamps serialize"))
    }
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Stamp> {
        Stamp::from_metadata(&std::fs::metadata(path)?)
    }

    fn from_metadata(meta: &Metadata) -> std::io::Result<Stamp> {
        let modified = meta
            .modified()?
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Stamp {
            len: meta.len(),
            modified_s: modified.as_secs(),
            modified_ns: modified.subsec_nanos(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn a_file_rewritten_or_resized_no_longer_matches_and_garbage_loads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("film.bin");
        std::fs::write(&file, b"0123456789").unwrap();
        let layout = Layout::new([(PathBuf::from("film.bin"), 10)]).unwrap();
        let stamps = Stamps::read(dir.path(), &layout).unwrap();
        assert_eq!(stamps, Stamps::of_file(&file).unwrap());

        let saved = dir.path().join("x.verified");
        stamps.save(&saved).unwrap();
        assert_eq!(Stamps::load(&saved), Some(stamps.clone()));

        // Same length, a later modification time.
        let later = std::fs::metadata(&file).unwrap().modified().unwrap()
            + std::time::Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_ne!(Stamps::read(dir.path(), &layout).unwrap(), stamps);
        std::fs::write(&file, b"01234567890").unwrap();
        assert_ne!(Stamps::read(dir.path(), &layout).unwrap(), stamps);

        std::fs::write(&saved, b"{not json").unwrap();
        assert_eq!(Stamps::load(&saved), None);
        assert_eq!(Stamps::load(&dir.path().join("absent")), None);
        assert!(Stamps::read(dir.path().join("nowhere").as_path(), &layout).is_err());
    }
}
