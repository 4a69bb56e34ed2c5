//! Content addressed by BLAKE3 with verified streaming (the Bao tree, through `bao-tree`, as iroh-blobs uses it):
//! files shared inside AllPeers, served one-to-one over HTTP and fetched so that every block is checked as it
//! arrives, from any source.
//!
//! - [`outboards`]: the data cache's side of a shared file — its Bao tree (the "outboard") computed once, kept by
//!   hash with the file's length and modification time, the file itself referenced in place; a file that changed or
//!   vanished is noticed before a byte is served.
//! - [`verify`]: the Bao decoder of a body, fed its buffers as they come: every block and tree node verified
//!   against the hash, a block inside one buffer handed on without a copy.
//! - [`http`]: HTTP/1 one-to-one over any byte stream (a peer stream): `GET` with `Range`, `ETag` = the hash, `HEAD`
//!   for the size; bodies are Bao-encoded ranges (the tree nodes a range needs, then its data, block by block).
//! - [`download`]: one file fetched into the download folder: blocks verified against the hash as they arrive,
//!   synced, then recorded in the journal, so a crash resumes from what was verified. One source: HTTP from the
//!   first block missing; several: the private swarm ([`swarm`]).
//! - [`sources`]: the private swarm's rules, with no I/O — which source holds which chunks, which chunk to ask
//!   whom (the swarm core's picker), what a lying, failing or vanished source costs.
//! - [`swarm`]: the private swarm's driver: a worker per source asks for chunks over HTTP ranges, verified block
//!   by block, while the node serves what it holds so far ([`partial`]) to the other members.
//! - [`partial`]: downloads under way as sources — the blocks landed so far and their tree nodes.
//! - [`landing`]: where a download's verified blocks land (partial file, tree nodes, journal) and its counters,
//!   whichever way they came.
//!
//! What a download is (`FileSpec`), how a peer is reached (`Dial`) and what fails (`DownloadError`) are here, shared
//! by [`download`] and [`swarm`].

pub mod download;
pub mod http;
pub mod landing;
pub mod outboards;
pub mod partial;
pub mod sources;
pub mod swarm;
pub mod verify;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bao_tree::BlockSize;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::cache::journal::JournalError;

/// Blocks of 16 KiB: the unit a tree leaf covers, a verified write and a journal record (the outboard is 64 bytes per
/// block, 0.4% of the content).
pub const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(4);
pub const BLOCK_BYTES: u64 = 16 * 1024;
/// The private swarm's chunk: the unit a request asks for and a holder announces (16 blocks). Large enough that a
/// request's round trip is small beside its transfer, small enough that a downloader holds something to serve
/// others after a fraction of a second.
pub const CHUNK_BYTES: u64 = 256 * 1024;
/// Verified blocks, adjacent in the file, that the landing holds to write with one `pwritev`, at most (in bytes): a
/// `pwrite` per 16 KiB block paid the system call and the file system's per-call work 64 times a MiB. They lie in the
/// body's buffers between the tree nodes, so they are written from where they are, not gathered by a copy.
///
/// A quarter MiB, not more: the page cache takes folios the size of a write, and on a VM whose balloon reports free
/// memory back to the host, large folios come from memory the host has taken back, slow to touch again. Writing
/// 512 MiB here 10 times, the copies ran 10-20x slower in 4 of 10 runs with 1 MiB writes, 1 of 10 with 256 KiB, none
/// with 16 KiB (docs/benchmarks.md); 256 KiB still saves 15 system calls in 16.
pub const GATHER_BYTES: u64 = 256 * 1024;
pub const BLOCKS_PER_CHUNK: u64 = CHUNK_BYTES / BLOCK_BYTES;

/// The chunks of a file of `size` bytes.
pub fn chunk_count(size: u64) -> u32 {
    size.div_ceil(CHUNK_BYTES) as u32
}

/// The chunks whose every block is in `blocks` (a file of `size` bytes).
pub fn whole_chunks(
    blocks: &crate::swarm::geometry::PieceSet,
    size: u64,
) -> crate::swarm::geometry::PieceSet {
    let mut chunks = crate::swarm::geometry::PieceSet::new(chunk_count(size));
    let block_count = size.div_ceil(BLOCK_BYTES);
    for chunk in 0..chunks.len() {
        let first = u64::from(chunk) * BLOCKS_PER_CHUNK;
        let end = (first + BLOCKS_PER_CHUNK).min(block_count);
        if (first..end).all(|b| blocks.contains(b as u32)) {
            chunks.insert(chunk);
        }
    }
    chunks
}

/// A file's content hash: the BLAKE3 root of its bytes (the Bao tree's root, whatever the block size).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// 64 hex digits, either case; anything else is `None`.
    pub fn parse(text: &str) -> Option<ContentHash> {
        if text.len() != 64 {
            return None;
        }
        blake3::Hash::from_hex(text)
            .ok()
            .map(|h| ContentHash(*h.as_bytes()))
    }

    pub fn of(bytes: &[u8]) -> ContentHash {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }

    fn blake3(&self) -> blake3::Hash {
        blake3::Hash::from_bytes(self.0)
    }
}

impl From<blake3::Hash> for ContentHash {
    fn from(hash: blake3::Hash) -> Self {
        ContentHash(*hash.as_bytes())
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.to_hex())
    }
}

impl Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        ContentHash::parse(&text)
            .ok_or_else(|| serde::de::Error::custom("not a BLAKE3 hash (64 hex digits)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_print_and_parse_as_64_hex_digits_and_nothing_else_parses() {
        let hash = ContentHash::of(b"hello");
        assert_eq!(ContentHash::parse(&hash.to_hex()), Some(hash));
        assert_eq!(
            ContentHash::parse(&hash.to_hex().to_uppercase()),
            Some(hash)
        );
        assert_eq!(ContentHash::parse("abc"), None);
        assert_eq!(ContentHash::parse(&"g".repeat(64)), None);
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(serde_json::from_str::<ContentHash>(&json).unwrap(), hash);
        assert!(serde_json::from_str::<ContentHash>("\"00\"").is_err());
    }
}

/// A file to fetch: what the File resource says of it, and who holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    pub hash: ContentHash,
    pub size: u64,
    /// The file name to land under (made safe: one path component).
    pub name: String,
    /// Peers that may hold it (peer ids as text): one is asked over HTTP (the next if it fails); several make a
    /// swarm.
    pub sources: Vec<String>,
}

/// A stream to a peer, for HTTP.
pub trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Opens a stream of the files service to a peer (the node's endpoint; a pipe in tests).
pub type Dial = Arc<dyn Fn(String) -> BoxFuture<std::io::Result<Box<dyn PeerIo>>> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the file is too large ({0} bytes)")]
    TooLarge(u64),
    #[error("not a usable file name: {0}")]
    Name(String),
    #[error("no source could give it: {0}")]
    NoSource(String),
    /// The disk is full, or downloads wrote what their byte limit allows: the download pauses with this reason,
    /// as a torrent does, keeping what it has; a resume tries again.
    #[error("{0}")]
    OutOfSpace(String),
}

impl DownloadError {
    /// An I/O error at `path`; out of space when the disk (or the byte limit) said so.
    pub fn io(path: PathBuf, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::StorageFull {
            DownloadError::OutOfSpace(format!("{}: {source}", path.display()))
        } else {
            DownloadError::Io { path, source }
        }
    }

    pub fn is_out_of_space(&self) -> bool {
        matches!(self, DownloadError::OutOfSpace(_))
    }
}
