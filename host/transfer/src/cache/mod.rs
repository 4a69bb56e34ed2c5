//! The data cache: the content's files, the journal of pieces safely on disk, the disk thread, space accounting.
//!
//! For BitTorrent, content is addressed by its info-hash (the journal is bound to it) and every piece is verified
//! against the metainfo's SHA-1 before it is written; files a user shares are opened in place, never copied.

pub mod disk;
pub mod journal;
pub mod layout;
pub mod stamps;
pub mod storage;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the disk is full: the transfer is paused until space is freed")]
    DiskFull,
    #[error(
        "the transfer cache limit of {limit} bytes is reached ({used} used, {needed} more needed): paused"
    )]
    SpaceLimit { limit: u64, used: u64, needed: u64 },
    #[error("{}: expected {expected} bytes, found {found}", path.display())]
    WrongLength {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    #[error(transparent)]
    Path(#[from] layout::PathError),
}

impl CacheError {
    /// Errors that pause a transfer until the user frees space, rather than fail it.
    pub fn is_out_of_space(&self) -> bool {
        matches!(self, Self::DiskFull | Self::SpaceLimit { .. })
    }
}

/// Writes `path` whole or not at all: a temporary file beside it, synced, then renamed over it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}
