//! Where a file download's verified blocks land, whichever way they were fetched (HTTP from one source, the swarm
//! from several): the partial file, its tree nodes (so the blocks can be served on), the journal, and the counters
//! the download's progress is read from.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bao_tree::TreeNode;
use bao_tree::io::outboard::PreOrderOutboard;
use bytes::Bytes;

use tokio::sync::watch;

use super::http::Verified;
use super::partial::Written;
use super::{BLOCK_BYTES, CHUNK_BYTES, GATHER_BYTES};
use crate::bt::session::Progress;
use crate::cache::journal::Journal;
use crate::cache::storage::SpaceAccount;
use crate::swarm::geometry::PieceSet;

/// Verified bytes written between two syncs of the data and the journal, at most, and the longest time between two:
/// a sync per MiB halved the throughput (`benches/files.rs`); a crash refetches at most this much or this long.
const COMMIT_BYTES: u64 = 16 << 20;
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// Tree nodes gathered before they are written, at most (in bytes: 64 a node). A range's nodes arrive in the tree
/// file's own order (pre-order), about one per block; one write of 64 bytes per node cost a system call per block.
const NODES_BATCH: usize = 16 * 1024;
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// Verified, synced and journaled.
    pub done: AtomicU64,
    /// Encoded bytes received this run.
    pub received: AtomicU64,
    /// Verified blocks thrown away: another source's copy came first (the swarm's endgame).
    pub wasted: AtomicU64,
    pub hash_failures: AtomicU64,
    pub banned: AtomicU64,
    /// Verified bytes kept, by source.
    pub sources: Mutex<BTreeMap<String, u64>>,
    /// Sources with a connection open now, and how many each has (a swarm may hold several to one source).
    in_use: Mutex<BTreeMap<String, usize>>,
    pub decoders: Decoders,
}

/// Decoder threads under way at most (one per body: a swarm's requests, or the one-to-one body).
const MAX_DECODERS: u32 = 1 << 16;

/// The decoder threads under way, each holding a permit until it ends. An attempt cut short (a pause) leaves its
/// decoder threads to land what they were given; the pause waits for them, so all of it is journaled before a
/// resume looks for what is missing (otherwise the resume may ask for it again).
#[derive(Debug)]
pub(super) struct Decoders(Arc<tokio::sync::Semaphore>);

impl Default for Decoders {
    fn default() -> Self {
        Decoders(Arc::new(tokio::sync::Semaphore::new(MAX_DECODERS as usize)))
    }
}

impl Decoders {
    /// A permit for a decoder thread: moved into its sink, so it is given back when the thread ends.
    pub fn start(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.0
            .clone()
            .try_acquire_owned()
            .expect("fewer decoder threads than permits")
    }

    /// Returns once no decoder thread is under way.
    pub async fn all_ended(&self) {
        let _ = self.0.acquire_many(MAX_DECODERS).await;
    }
}

/// Counts a source as in use until dropped.
pub(super) struct InUse {
    counters: Arc<Counters>,
    source: String,
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut in_use = self.counters.in_use.lock().expect("in use");
        if let Some(count) = in_use.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                in_use.remove(&self.source);
            }
        }
    }
}

impl Counters {
    /// Counts `source` as in use (for the progress line's peers) while the guard lives.
    pub fn using(counters: &Arc<Counters>, source: &str) -> InUse {
        *counters
            .in_use
            .lock()
            .expect("in use")
            .entry(source.to_string())
            .or_default() += 1;
        InUse {
            counters: counters.clone(),
            source: source.to_string(),
        }
    }

    /// How many sources have a connection open now.
    pub fn sources_in_use(&self) -> u32 {
        u32::try_from(self.in_use.lock().expect("in use").len()).unwrap_or(u32::MAX)
    }

    pub fn kept_from(&self, source: &str, bytes: u64) {
        *self
            .sources
            .lock()
            .expect("sources")
            .entry(source.to_string())
            .or_default() += bytes;
    }
}

/// The verified blocks on their way to disk: the partial file, its tree, the journal and what it records.
pub(super) struct Landing {
    pub(super) file: File,
    /// The tree nodes received, kept so the blocks written can be served on.
    pub(super) outboard: PreOrderOutboard<File>,
    /// Blocks written and verified (their nodes saved first): what others may fetch from us.
    pub(super) written: Arc<Written>,
    /// Tree nodes received and not yet written: contiguous in the tree file from byte `nodes_at`. Written when a
    /// chunk's last block lands (others are offered whole chunks only), when the batch is full, and at a commit.
    pub(super) nodes: Vec<u8>,
    pub(super) nodes_at: u64,
    /// Tree nodes written since the last sync: the tree file is synced with the data before the journal names the
    /// blocks, since a resumed download serves journaled blocks on with their nodes (lost ones would be zeros).
    pub(super) nodes_unsynced: bool,
    /// Verified blocks not yet written (see [`GATHER_BYTES`]).
    pub(super) held: Held,
    /// Blocks written whose tree nodes are still in `nodes`: served on once those are written.
    pub(super) unsaved: Vec<u32>,
    pub(super) journal: Journal,
    pub done: PieceSet,
    /// Written and verified, not yet synced and journaled (a block may be listed twice until then).
    pub(super) pending: Vec<u32>,
    pub(super) pending_bytes: u64,
    pub(super) last_commit: Instant,
    pub(super) size: u64,
    pub(super) counters: Arc<Counters>,
    /// The byte limit all downloads share (torrents too): each write takes its bytes first.
    pub(super) space: Arc<SpaceAccount>,
    /// The download's progress, held as long as the landing lives: the channel closes (and
    /// `FileHandle::ended` returns) only once the decoder thread of an attempt cut short has let go of it too.
    pub(super) _progress: Arc<watch::Sender<Progress>>,
}

impl Drop for Landing {
    /// A download stopped or cut short keeps what it wrote: synced and journaled here, so the next start resumes
    /// after it instead of fetching it again.
    fn drop(&mut self) {
        if let Err(error) = self.commit() {
            allpeers_log::marrow!(%error, "files: blocks written before the download stopped were not journaled");
        }
    }
}

/// Verified blocks adjacent in the file, from byte `at`, `len` bytes together, waiting to be written at once.
#[derive(Default)]
pub(super) struct Held {
    blocks: Vec<Bytes>,
    at: u64,
    len: u64,
}

impl Held {
    /// Holds the block at `offset`, which must follow those held (a block that does not is refused: write those
    /// first).
    pub fn hold(&mut self, offset: u64, data: Bytes) -> Result<(), Bytes> {
        if self.blocks.is_empty() {
            self.at = offset;
        } else if offset != self.at + self.len {
            return Err(data);
        }
        self.len += data.len() as u64;
        self.blocks.push(data);
        Ok(())
    }

    /// The bytes held, as the file's range they cover.
    pub fn range(&self) -> std::ops::Range<u64> {
        self.at..self.at + self.len
    }
}

/// [`Landing::commit`] on a blocking thread: it syncs the file, which may take long on a busy disk.
pub(super) async fn commit_apart(landing: &Arc<Mutex<Landing>>) -> std::io::Result<u64> {
    let landing = landing.clone();
    tokio::task::spawn_blocking(move || landing.lock().expect("landing").commit())
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
}

impl Landing {
    /// Lands what a verified body yields at once: a tree node is gathered for the tree file, a block written.
    pub fn land(&mut self, item: Verified) -> std::io::Result<()> {
        self.gather(item)?;
        self.flush().map(|_| ())
    }

    /// Lands what a verified body yields, a block perhaps later: adjacent blocks are held and written together (up to
    /// [`GATHER_BYTES`], or when the next is not adjacent, or at the commit interval, or at [`Landing::commit`]).
    /// Returns the bytes of blocks written by this call: what a source is credited with (a block our disk refused is
    /// not the source's).
    pub fn gather(&mut self, item: Verified) -> std::io::Result<u64> {
        let (offset, data) = match item {
            Verified::Parent(node, pair) => return self.node(node, pair).map(|_| 0),
            Verified::Block { offset, data } => (offset, data),
        };
        let mut written = 0;
        if !self.held.blocks.is_empty() && offset != self.held.at + self.held.len {
            written += self.flush()?;
        }
        if self.held.blocks.is_empty() {
            self.held.at = offset;
        }
        self.held.len += data.len() as u64;
        self.held.blocks.push(data);
        if self.held.len >= GATHER_BYTES
            || self.held.at + self.held.len == self.size
            || self.last_commit.elapsed() >= COMMIT_INTERVAL
        {
            written += self.flush()?;
        }
        Ok(written)
    }

    /// Gathers a tree node for the tree file.
    fn node(
        &mut self,
        node: TreeNode,
        (left, right): (blake3::Hash, blake3::Hash),
    ) -> std::io::Result<()> {
        // As bao-tree's `PreOrderOutboard::save`: a node with no place in the file is not kept.
        let Some(at) = self.outboard.tree.pre_order_offset(node).map(|n| n * 64) else {
            return Ok(());
        };
        if !self.nodes.is_empty() && at != self.nodes_at + self.nodes.len() as u64
            || self.nodes.len() >= NODES_BATCH
        {
            self.save_nodes()?;
        }
        if self.nodes.is_empty() {
            self.nodes_at = at;
        }
        self.nodes.extend_from_slice(left.as_bytes());
        self.nodes.extend_from_slice(right.as_bytes());
        Ok(())
    }

    /// Writes the tree nodes gathered, then offers the blocks that waited on them.
    fn save_nodes(&mut self) -> std::io::Result<()> {
        if !self.nodes.is_empty() {
            self.outboard
                .data
                .write_all_at(&self.nodes, self.nodes_at)?;
            self.nodes.clear();
            self.nodes_unsynced = true;
        }
        if !self.unsaved.is_empty() {
            self.written.offer(self.unsaved.drain(..));
        }
        Ok(())
    }

    /// Writes the blocks held, with one `pwritev` (more only if the kernel takes part of them); returns their bytes.
    fn flush(&mut self) -> std::io::Result<u64> {
        let held = std::mem::take(&mut self.held);
        self.write(held)
    }

    /// Writes blocks held elsewhere (a swarm request's, gathered apart from the other requests under way), as
    /// [`Landing::flush`] does its own; returns their bytes.
    pub fn write(&mut self, held: Held) -> std::io::Result<u64> {
        let Held { blocks, at, len } = held;
        if blocks.is_empty() {
            return Ok(0);
        }
        self.space
            .reserve(len)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::StorageFull, e.to_string()))?;
        let mut slices: Vec<std::io::IoSlice<'_>> =
            blocks.iter().map(|b| std::io::IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        let mut done = 0u64;
        while !rest.is_empty() {
            let n = match rustix::io::pwritev(&self.file, rest, at + done) {
                Ok(0) => Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => Ok(n),
                Err(errno) => Err(std::io::Error::from(errno)),
            }
            .inspect_err(|_| self.space.release(len))?;
            done += n as u64;
            std::io::IoSlice::advance_slices(&mut rest, n);
        }
        start_writeback(&self.file, at, len);
        self.written(at, len)?;
        Ok(len)
    }

    /// Records `len` bytes of blocks written from `offset`: offered once their tree nodes are written, journaled at
    /// the next commit.
    fn written(&mut self, offset: u64, len: u64) -> std::io::Result<()> {
        let first = (offset / BLOCK_BYTES) as u32;
        let end = offset + len;
        let last = end.div_ceil(BLOCK_BYTES) as u32;
        self.unsaved.extend(first..last);
        if self.nodes.is_empty() || end.is_multiple_of(CHUNK_BYTES) || end == self.size {
            self.save_nodes()?;
        }
        // A block written twice (an endgame copy) is listed twice here and once in the journal.
        self.pending
            .extend((first..last).filter(|block| !self.done.contains(*block)));
        self.pending_bytes += len;
        if self.pending_bytes >= COMMIT_BYTES || self.last_commit.elapsed() >= COMMIT_INTERVAL {
            self.sync_and_journal()?;
        }
        Ok(())
    }

    /// Writes the blocks held and the tree nodes gathered, syncs the data written, then journals its blocks. Returns
    /// the bytes of the blocks that were held (see [`Landing::gather`]).
    pub fn commit(&mut self) -> std::io::Result<u64> {
        let written = self.flush()?;
        self.sync_and_journal()?;
        Ok(written)
    }

    fn sync_and_journal(&mut self) -> std::io::Result<()> {
        self.save_nodes()?;
        if self.pending.is_empty() {
            return Ok(());
        }
        self.pending.sort_unstable();
        self.pending.dedup();
        self.file.sync_data()?;
        if std::mem::take(&mut self.nodes_unsynced) {
            self.outboard.data.sync_data()?;
        }
        self.journal
            .record(&self.pending)
            .map_err(std::io::Error::other)?;
        for block in self.pending.drain(..) {
            self.done.insert(block);
        }
        self.pending_bytes = 0;
        self.last_commit = Instant::now();
        self.counters
            .done
            .store(done_bytes(&self.done, self.size), Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn first_missing(&self) -> Option<u32> {
        (0..self.done.len()).find(|b| !self.done.contains(*b))
    }
}

/// Starts writing `len` bytes from `at` to the disk without waiting: the disk writes while the network brings the
/// next bytes, and the commit's sync finds little left to do. Left to the kernel, the data waited in the page cache
/// for the sync, which then wrote it all while the download stood still: a 256 MiB download with its syncs took
/// the time of the transfer plus the time of the disk (`docs/benchmarks.md`, "The disk under the bulk row"). On
/// Linux `POSIX_FADV_DONTNEED` starts the range's writeback (and drops only its pages already clean); elsewhere
/// nothing is done.
fn start_writeback(file: &std::fs::File, at: u64, len: u64) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = rustix::fs::fadvise(
        file,
        at,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::DontNeed,
    );
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (file, at, len);
}

pub(super) fn done_bytes(done: &PieceSet, size: u64) -> u64 {
    done.iter()
        .map(|b| BLOCK_BYTES.min(size - u64::from(b) * BLOCK_BYTES))
        .sum()
}
