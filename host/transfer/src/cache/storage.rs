//! The content's files on disk: created sparse, read at any offset (seeding, verifying), and written only by the
//! disk thread ([`super::disk`]).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::CacheError;
use super::layout::Layout;
use crate::swarm::assembler::sha1_of;
use crate::swarm::geometry::{Block, Geometry};

#[derive(Debug)]
pub struct Storage {
    root: PathBuf,
    layout: Layout,
    geometry: Geometry,
    files: Vec<File>,
}

fn io_error(path: &Path, source: std::io::Error) -> CacheError {
    match source.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => CacheError::DiskFull,
        _ => CacheError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

impl Storage {
    /// Opens the files under `root` for download, creating missing ones (sparse, at their final length).
    pub fn create(root: &Path, layout: Layout, geometry: Geometry) -> Result<Self, CacheError> {
        let mut files = Vec::with_capacity(layout.files().len());
        for entry in layout.files() {
            let path = root.join(&entry.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io_error(&path, e))?;
            let len = file.metadata().map_err(|e| io_error(&path, e))?.len();
            if len != entry.len {
                file.set_len(entry.len).map_err(|e| io_error(&path, e))?;
            }
            files.push(file);
        }
        Ok(Self {
            root: root.to_path_buf(),
            layout,
            geometry,
            files,
        })
    }

    /// Opens existing files read-only, in place (a user's own files shared without a copy).
    pub fn open_in_place(
        root: &Path,
        layout: Layout,
        geometry: Geometry,
    ) -> Result<Self, CacheError> {
        let mut files = Vec::with_capacity(layout.files().len());
        for entry in layout.files() {
            let path = root.join(&entry.path);
            let file = File::open(&path).map_err(|e| io_error(&path, e))?;
            let len = file.metadata().map_err(|e| io_error(&path, e))?.len();
            if len != entry.len {
                return Err(CacheError::WrongLength {
                    path,
                    expected: entry.len,
                    found: len,
                });
            }
            files.push(file);
        }
        Ok(Self {
            root: root.to_path_buf(),
            layout,
            geometry,
            files,
        })
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub(super) fn file(&self, index: usize) -> (&File, PathBuf) {
        (
            &self.files[index],
            self.root.join(&self.layout.files()[index].path),
        )
    }

    /// Reads `buf.len()` bytes from content offset `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), CacheError> {
        let mut at = 0usize;
        for segment in self.layout.segments(offset, buf.len() as u64) {
            let (file, path) = self.file(segment.file);
            let end = at + segment.len as usize;
            file.read_exact_at(&mut buf[at..end], segment.file_offset)
                .map_err(|e| io_error(&path, e))?;
            at = end;
        }
        Ok(())
    }

    /// A block (or any in-bounds request) for uploading.
    pub fn read_block(&self, block: Block) -> Result<Bytes, CacheError> {
        let mut buf = vec![0; block.len as usize];
        self.read_at(
            self.geometry.piece_offset(block.piece) + u64::from(block.offset),
            &mut buf,
        )?;
        Ok(Bytes::from(buf))
    }

    /// Whether the piece on disk matches `expected` (resume without a journal; seeding in place).
    pub fn verify_piece(&self, piece: u32, expected: &[u8; 20]) -> Result<bool, CacheError> {
        let mut buf = vec![0; self.geometry.piece_size(piece) as usize];
        self.read_at(self.geometry.piece_offset(piece), &mut buf)?;
        Ok(&sha1_of(&[&buf]) == expected)
    }
}

/// Bytes the cache may hold, shared by every transfer: written bytes are reserved before the write.
#[derive(Debug)]
pub struct SpaceAccount {
    limit: AtomicU64,
    used: AtomicU64,
}

impl SpaceAccount {
    pub fn new(limit: Option<u64>) -> Self {
        Self {
            limit: AtomicU64::new(limit.unwrap_or(u64::MAX)),
            used: AtomicU64::new(0),
        }
    }

    pub fn set_limit(&self, limit: Option<u64>) {
        self.limit
            .store(limit.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget, or fails with [`CacheError::SpaceLimit`] and takes nothing.
    pub fn reserve(&self, bytes: u64) -> Result<(), CacheError> {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= limit)
            })
            .map(|_| ())
            .map_err(|used| CacheError::SpaceLimit {
                limit,
                used,
                needed: bytes,
            })
    }

    pub fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}
