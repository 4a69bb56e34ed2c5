//! Shared files in the data cache: each file's Bao tree (its outboard), computed once and kept under the content
//! hash, beside a record of where the file is and what it looked like (length, modification time) when it was
//! hashed. The file itself is read in place, never copied.
//!
//! Before a file is served, its stamp is compared with the record's: a file changed or vanished since it was hashed
//! is refused under its old hash (its record dropped), so old content is never served as the new hash, nor the
//! reverse. A change the stamp cannot see (the same length and the old modification time restored) is sent as it is
//! and refused by the downloader, which verifies every block against the hash.
//!
//! Layout under the cache directory: `<hash>.obao` (the pre-order outboard), `<hash>.json` (the record), and
//! `paths/<BLAKE3 of the path>` holding the hash last computed for that path (so sharing an unchanged file again
//! does not hash it again).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use bao_tree::BaoTree;
use bao_tree::io::outboard::PreOrderOutboard;
use bao_tree::io::sync::CreateOutboard;
use serde::{Deserialize, Serialize};

use super::{BLOCK_SIZE, ContentHash};
use crate::cache::stamps::Stamps;
use crate::cache::write_atomically;
use crate::swarm::geometry::PieceSet;

/// A record's size at most (a path and a stamp).
const MAX_RECORD_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OutboardError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no shared file has hash {0}")]
    Unknown(ContentHash),
    #[error("{} changed or vanished since it was shared as {hash}", path.display())]
    Changed { path: PathBuf, hash: ContentHash },
}

/// What a shared file is: its hash and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFile {
    pub hash: ContentHash,
    pub size: u64,
}

/// What a download under way holds, as its source serves it.
pub struct Growing {
    /// The blocks it holds (16 KiB each).
    pub held: PieceSet,
    /// Changes when it holds more blocks; closed once the download is over.
    pub more: tokio::sync::watch::Receiver<u64>,
}

/// A file ready to serve: opened, with its tree (the outboard file), whole or in part.
pub struct Source {
    pub file: File,
    pub outboard: PreOrderOutboard<File>,
    pub size: u64,
    /// A download still under way, served as it grows; `None`: the whole file.
    pub growing: Option<Growing>,
    /// A file shared in place: its length and modification time when it was hashed. A body is cut short as soon
    /// as the file no longer has them (checked before each buffer is sent), so bytes written since never go out
    /// under the old hash — where the downloader would take an honest source for a tampering one.
    pub stamps: Option<Stamps>,
    /// Whether the asker may still have the file, asked before each buffer is sent (`None`: always): a body under
    /// way is cut short there once the share naming the asker is revoked or left, as a new request would be refused.
    pub allowed: Option<StillAllowed>,
}

impl Source {
    /// Whether it may still be sent as it is, as a fresh lookup would check (and the encoder does before each buffer):
    /// its asker still entitled, and the file still as it was hashed (stamps read from the open file). Blocking: the
    /// entitlement check may wait on a lock.
    pub fn still_servable(&self) -> std::io::Result<()> {
        if let Some(allowed) = &self.allowed
            && !allowed()
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the file is no longer shared with the asker",
            ));
        }
        if let Some(stamps) = &self.stamps
            && Stamps::of_open(&self.file)? != *stamps
        {
            return Err(std::io::Error::other(
                "the file changed while it was served",
            ));
        }
        Ok(())
    }
}

/// Asked before each buffer of a body is sent: whether its asker is still entitled (see [`Source::allowed`]). Called
/// on the encoder's blocking thread, thousands of times a second: it must be cheap when nothing changed.
pub type StillAllowed = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    path: PathBuf,
    size: u64,
    stamps: Stamps,
}

/// The outboards of the files this node shares.
#[derive(Debug, Clone)]
pub struct Outboards {
    dir: PathBuf,
}

impl Outboards {
    pub fn open(dir: &Path) -> Result<Outboards, OutboardError> {
        let paths = dir.join("paths");
        std::fs::create_dir_all(&paths).map_err(|source| OutboardError::Io {
            path: paths,
            source,
        })?;
        Ok(Outboards {
            dir: dir.to_path_buf(),
        })
    }

    /// Hashes the file at `path` and keeps its outboard; a file whose stamp has not changed since the last time is
    /// not read again. Blocking: a large file takes seconds.
    pub fn add_file(&self, path: &Path) -> Result<SharedFile, OutboardError> {
        let io = |source| OutboardError::Io {
            path: path.to_path_buf(),
            source,
        };
        let stamps = Stamps::of_file(path).map_err(io)?;
        if let Some(hash) = self.hash_of_path(path)
            && let Some(record) = self.record(&hash)
            && record.path == path
            && record.stamps == stamps
            && self.outboard_path(&hash).exists()
        {
            return Ok(SharedFile {
                hash,
                size: record.size,
            });
        }
        let file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let reader = BufReader::with_capacity(1 << 20, file);
        let outboard =
            PreOrderOutboard::<Vec<u8>>::create_sized(reader, size, BLOCK_SIZE).map_err(io)?;
        // Written while we read it: what we hashed may be neither the old nor the new content.
        if Stamps::of_file(path).map_err(io)? != stamps {
            return Err(io(std::io::Error::other(
                "the file changed while it was hashed: share it again when it is written",
            )));
        }
        let hash = ContentHash::from(outboard.root);
        let cache_io = |path: PathBuf| {
            move |source| OutboardError::Io {
                path: path.clone(),
                source,
            }
        };
        let outboard_path = self.outboard_path(&hash);
        write_atomically(&outboard_path, &outboard.data).map_err(cache_io(outboard_path))?;
        let record = Record {
            path: path.to_path_buf(),
            size,
            stamps,
        };
        let record_path = self.record_path(&hash);
        write_atomically(
            &record_path,
            &serde_json::to_vec(&record).expect("record serializes"),
        )
        .map_err(cache_io(record_path))?;
        let by_path = self.path_index(path);
        write_atomically(&by_path, hash.to_hex().as_bytes()).map_err(cache_io(by_path))?;
        Ok(SharedFile { hash, size })
    }

    /// The file shared as `hash`, opened, with its tree — if it is still what was hashed.
    pub fn open_source(&self, hash: &ContentHash) -> Result<Source, OutboardError> {
        let record = self.record(hash).ok_or(OutboardError::Unknown(*hash))?;
        let changed = || OutboardError::Changed {
            path: record.path.clone(),
            hash: *hash,
        };
        if Stamps::of_file(&record.path).ok().as_ref() != Some(&record.stamps) {
            self.forget(hash);
            return Err(changed());
        }
        let file = File::open(&record.path).map_err(|_| changed())?;
        let tree = BaoTree::new(record.size, BLOCK_SIZE);
        let outboard_path = self.outboard_path(hash);
        let data = File::open(&outboard_path).map_err(|source| OutboardError::Io {
            path: outboard_path.clone(),
            source,
        })?;
        let len = data
            .metadata()
            .map_err(|source| OutboardError::Io {
                path: outboard_path.clone(),
                source,
            })?
            .len();
        if len != tree.outboard_size() {
            self.forget(hash);
            return Err(OutboardError::Io {
                path: outboard_path,
                source: std::io::Error::other("the outboard has the wrong length"),
            });
        }
        Ok(Source {
            file,
            outboard: PreOrderOutboard {
                root: hash.blake3(),
                tree,
                data,
            },
            size: record.size,
            growing: None,
            stamps: Some(record.stamps),
            allowed: None,
        })
    }

    /// Whether `hash` is a file we share whose stamp still matches (cheap: no content is read).
    pub fn serves(&self, hash: &ContentHash) -> bool {
        self.record(hash)
            .is_some_and(|r| Stamps::of_file(&r.path).ok().as_ref() == Some(&r.stamps))
    }

    /// Drops what is kept for `hash` (the file itself is the user's and stays).
    pub fn forget(&self, hash: &ContentHash) {
        let _ = std::fs::remove_file(self.outboard_path(hash));
        let _ = std::fs::remove_file(self.record_path(hash));
    }

    fn record(&self, hash: &ContentHash) -> Option<Record> {
        let path = self.record_path(hash);
        if std::fs::metadata(&path).ok()?.len() > MAX_RECORD_BYTES {
            return None;
        }
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    fn hash_of_path(&self, path: &Path) -> Option<ContentHash> {
        let text = std::fs::read_to_string(self.path_index(path)).ok()?;
        ContentHash::parse(text.trim())
    }

    fn outboard_path(&self, hash: &ContentHash) -> PathBuf {
        self.dir.join(format!("{hash}.obao"))
    }

    fn record_path(&self, hash: &ContentHash) -> PathBuf {
        self.dir.join(format!("{hash}.json"))
    }

    fn path_index(&self, path: &Path) -> PathBuf {
        let key = blake3::hash(path.as_os_str().as_encoded_bytes());
        self.dir.join("paths").join(key.to_hex().as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_file_is_hashed_once_and_refused_under_its_old_hash_once_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let outboards = Outboards::open(&dir.path().join("cache")).unwrap();
        let path = dir.path().join("photo.jpg");
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();

        let shared = outboards.add_file(&path).unwrap();
        assert_eq!(shared.hash, ContentHash::of(&content));
        assert_eq!(shared.size, content.len() as u64);
        // Unchanged: the same hash, without reading it again (the outboard file is not rewritten).
        let outboard_written = std::fs::metadata(outboards.outboard_path(&shared.hash))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(outboards.add_file(&path).unwrap(), shared);
        assert_eq!(
            std::fs::metadata(outboards.outboard_path(&shared.hash))
                .unwrap()
                .modified()
                .unwrap(),
            outboard_written
        );
        let source = outboards.open_source(&shared.hash).unwrap();
        assert_eq!(source.size, content.len() as u64);
        assert!(outboards.serves(&shared.hash));

        // Rewritten (same length, a later time): the old hash is refused, the new content gets its own.
        let mut changed = content.clone();
        changed[5] ^= 1;
        std::fs::write(&path, &changed).unwrap();
        let later = std::fs::metadata(&path).unwrap().modified().unwrap() + Duration::from_secs(2);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(!outboards.serves(&shared.hash));
        assert!(matches!(
            outboards.open_source(&shared.hash),
            Err(OutboardError::Changed { .. })
        ));
        // Forgotten: now simply unknown.
        assert!(matches!(
            outboards.open_source(&shared.hash),
            Err(OutboardError::Unknown(_))
        ));
        let again = outboards.add_file(&path).unwrap();
        assert_eq!(again.hash, ContentHash::of(&changed));
        assert!(outboards.open_source(&again.hash).is_ok());

        // Vanished.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            outboards.open_source(&again.hash),
            Err(OutboardError::Changed { .. })
        ));
        assert!(outboards.add_file(&path).is_err());
    }

    #[test]
    fn an_empty_file_has_the_hash_of_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let outboards = Outboards::open(dir.path()).unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, b"").unwrap();
        let shared = outboards.add_file(&path).unwrap();
        assert_eq!(shared.hash, ContentHash::of(b""));
        assert_eq!(outboards.open_source(&shared.hash).unwrap().size, 0);
    }
}
