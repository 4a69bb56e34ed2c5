//! The disk thread: whole verified pieces in, durable pieces out. It takes every job queued since its last batch
//! and writes each run of adjacent pieces with one vectored `pwritev` (the pieces are then [`DiskEvent::Written`]:
//! in the page cache, readable, their memory free). Syncing is a group commit: the files are synced, and only then
//! the pieces recorded in the journal (and that synced), once [`SYNC_INTERVAL`] passed since the first unsynced
//! write or [`SYNC_BYTES`] gathered (a [`SyncPolicy`]), or when asked ([`DiskWriter::sync`]), or when the writer is dropped. So the
//! journal never names a piece whose data is not on disk, and a download pays a few syncs a second at most
//! instead of one per batch; a kill -9 costs at most the last interval's pieces, downloaded again on resume.
//!
//! The syncs run on a thread of their own, so writing goes on while a group is flushed: done inline, a 128 MiB
//! `fdatasync` stopped the writes, the disk queue filled and the network stalled behind it (a 1 GiB download took
//! 7.6 s instead of 3.6 s, and held twice the memory). At most [`SYNCS_QUEUED`] groups wait behind the one being
//! synced; then the writer waits too, which bounds what is written but not yet durable.

use std::io::IoSlice;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::CacheError;
use super::journal::Journal;
use super::storage::{SpaceAccount, Storage};

/// Bytes gathered into one write batch at most: what was queued while the last batch was written.
pub const MAX_BATCH_BYTES: u64 = 64 * 1024 * 1024;
/// Written pieces wait at most this long to be synced and journaled: what a crash may cost, and how stale the
/// journal may be.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Written bytes that trigger a sync before the interval: bounds the dirty data one sync must flush.
pub const SYNC_BYTES: u64 = 128 * 1024 * 1024;

/// When written pieces are synced and journaled: after `interval` or once `bytes` are written, whichever first.
#[derive(Debug, Clone, Copy)]
pub struct SyncPolicy {
    pub interval: Duration,
    pub bytes: u64,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self {
            interval: SYNC_INTERVAL,
            bytes: SYNC_BYTES,
        }
    }
}
/// Group commits queued behind the one being synced before the writer waits for the syncer.
pub const SYNCS_QUEUED: usize = 1;
/// `IOV_MAX` on Linux: the most buffers one `pwritev` takes.
const IOV_MAX: usize = 1024;

/// A verified piece to store.
#[derive(Debug)]
pub struct WriteJob {
    pub piece: u32,
    /// Handed back in [`DiskEvent::Written`] once written, for the next piece.
    pub data: Vec<u8>,
}

#[derive(Debug)]
enum Job {
    Write(WriteJob),
    Sync,
}

#[derive(Debug)]
pub enum DiskEvent {
    /// These pieces are written (in the page cache, readable), not yet durable; `buffers` are their bytes' buffers,
    /// free to be reused.
    Written {
        pieces: Vec<u32>,
        buffers: Vec<Vec<u8>>,
    },
    /// These written pieces are synced and journaled: a crash keeps them.
    Durable { pieces: Vec<u32> },
    /// These pieces were not written; the transfer should pause on [`CacheError::DiskFull`] / `SpaceLimit`.
    Failed { pieces: Vec<u32>, error: CacheError },
    /// These pieces were written but their sync failed: they are not on disk for sure and must be fetched again.
    Lost { pieces: Vec<u32>, error: CacheError },
}

/// Handle to the disk thread; dropping it lets the thread write and sync the queued jobs and exit.
#[derive(Debug)]
pub struct DiskWriter {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl DiskWriter {
    pub fn spawn(
        storage: Arc<Storage>,
        journal: Journal,
        space: Arc<SpaceAccount>,
        events: tokio::sync::mpsc::UnboundedSender<DiskEvent>,
    ) -> Self {
        Self::spawn_with(storage, journal, space, events, SyncPolicy::default())
    }

    pub fn spawn_with(
        storage: Arc<Storage>,
        journal: Journal,
        space: Arc<SpaceAccount>,
        events: tokio::sync::mpsc::UnboundedSender<DiskEvent>,
        policy: SyncPolicy,
    ) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (groups, synced) = mpsc::sync_channel::<SyncGroup>(SYNCS_QUEUED);
        let syncer = Syncer {
            storage: storage.clone(),
            journal,
            space: space.clone(),
            events: events.clone(),
        };
        let syncer = std::thread::Builder::new()
            .name("transfer-sync".into())
            .spawn(move || syncer.run(synced))
            .expect("spawn the sync thread");
        let thread = std::thread::Builder::new()
            .name("transfer-disk".into())
            .spawn(move || {
                DiskThread {
                    storage,
                    space,
                    events,
                    policy,
                    groups,
                    unsynced: Vec::new(),
                    unsynced_bytes: 0,
                    touched: Vec::new(),
                    sync_due: None,
                }
                .run(queue);
                // The thread's end dropped the group sender: the syncer finishes what it has and exits.
                let _ = syncer.join();
            })
            .expect("spawn the disk thread");
        Self {
            jobs: Some(jobs),
            thread: Some(thread),
        }
    }

    /// Queues a piece; false when the thread is gone.
    pub fn write(&self, job: WriteJob) -> bool {
        self.send(Job::Write(job))
    }

    /// Asks for the written pieces to be synced and journaled now (the download's last pieces: nothing follows to
    /// fill a group commit); false when the thread is gone.
    pub fn sync(&self) -> bool {
        self.send(Job::Sync)
    }

    fn send(&self, job: Job) -> bool {
        self.jobs
            .as_ref()
            .is_some_and(|jobs| jobs.send(job).is_ok())
    }
}

impl Drop for DiskWriter {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct DiskThread {
    storage: Arc<Storage>,
    space: Arc<SpaceAccount>,
    events: tokio::sync::mpsc::UnboundedSender<DiskEvent>,
    policy: SyncPolicy,
    /// Group commits to the sync thread.
    groups: mpsc::SyncSender<SyncGroup>,
    /// Written, not yet synced and journaled.
    unsynced: Vec<u32>,
    unsynced_bytes: u64,
    /// Files written to since the last sync.
    touched: Vec<usize>,
    /// When the oldest unsynced write must be synced.
    sync_due: Option<Instant>,
}

impl DiskThread {
    fn run(mut self, queue: mpsc::Receiver<Job>) {
        loop {
            let next = match self.sync_due {
                None => queue
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(due) => queue.recv_timeout(due.saturating_duration_since(Instant::now())),
            };
            let mut sync_now = false;
            let mut batch = Vec::new();
            match next {
                Ok(Job::Write(job)) => batch.push(job),
                Ok(Job::Sync) => sync_now = true,
                Err(mpsc::RecvTimeoutError::Timeout) => sync_now = true,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.commit();
                    return;
                }
            }
            let mut bytes: u64 = batch.iter().map(|job| job.data.len() as u64).sum();
            while bytes > 0 && bytes < MAX_BATCH_BYTES {
                match queue.try_recv() {
                    Ok(Job::Write(job)) => {
                        bytes += job.data.len() as u64;
                        batch.push(job);
                    }
                    Ok(Job::Sync) => sync_now = true,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.write(batch, bytes);
            }
            if sync_now
                || self.unsynced_bytes >= self.policy.bytes
                || self.sync_due.is_some_and(|due| Instant::now() >= due)
            {
                self.commit();
            }
        }
    }

    /// Writes a batch and reports it. A session that is gone is not an error: what it queued is still written
    /// and synced, so a stopped download resumes from it.
    fn write(&mut self, mut batch: Vec<WriteJob>, bytes: u64) {
        batch.sort_by_key(|job| job.piece);
        let pieces: Vec<u32> = batch.iter().map(|job| job.piece).collect();
        let event = match self.space.reserve(bytes).and_then(|()| {
            write_runs(&self.storage, &batch).inspect_err(|_| self.space.release(bytes))
        }) {
            Ok(touched) => {
                for file in touched {
                    if !self.touched.contains(&file) {
                        self.touched.push(file);
                    }
                }
                self.unsynced.extend_from_slice(&pieces);
                self.unsynced_bytes += bytes;
                self.sync_due
                    .get_or_insert_with(|| Instant::now() + self.policy.interval);
                DiskEvent::Written {
                    pieces,
                    buffers: batch.into_iter().map(|job| job.data).collect(),
                }
            }
            Err(error) => {
                allpeers_log::marrow!(%error, pieces = pieces.len(), "transfer: a batch of pieces was not stored");
                DiskEvent::Failed { pieces, error }
            }
        };
        let _ = self.events.send(event);
    }

    /// Hands the written pieces to the sync thread as one group commit.
    fn commit(&mut self) {
        self.sync_due = None;
        if self.unsynced.is_empty() {
            return;
        }
        let group = SyncGroup {
            files: std::mem::take(&mut self.touched),
            pieces: std::mem::take(&mut self.unsynced),
            bytes: std::mem::take(&mut self.unsynced_bytes),
        };
        if let Err(mpsc::SendError(group)) = self.groups.send(group) {
            // Only a panic ends the syncer early: these pieces cannot be made durable here.
            let error = CacheError::Io {
                path: group
                    .files
                    .first()
                    .map(|&file| self.storage.file(file).1)
                    .unwrap_or_default(),
                source: std::io::Error::other("the transfer's sync thread is gone"),
            };
            self.space.release(group.bytes);
            allpeers_log::marrow!(%error, pieces = group.pieces.len(), "transfer: written pieces could not be synced");
            let _ = self.events.send(DiskEvent::Lost {
                pieces: group.pieces,
                error,
            });
        }
    }
}

/// Written pieces to make durable together: the files they went to, synced before the pieces are journaled.
struct SyncGroup {
    files: Vec<usize>,
    pieces: Vec<u32>,
    bytes: u64,
}

/// The sync thread: owns the journal, so a piece is journaled only after its file's sync returned.
struct Syncer {
    storage: Arc<Storage>,
    journal: Journal,
    space: Arc<SpaceAccount>,
    events: tokio::sync::mpsc::UnboundedSender<DiskEvent>,
}

impl Syncer {
    fn run(mut self, groups: mpsc::Receiver<SyncGroup>) {
        for group in groups {
            self.commit(group);
        }
    }

    /// Syncs the group's files, then journals its pieces.
    fn commit(&mut self, group: SyncGroup) {
        let SyncGroup {
            files,
            pieces,
            bytes,
        } = group;
        let synced = files
            .into_iter()
            .try_for_each(|file| {
                let (handle, path) = self.storage.file(file);
                handle
                    .sync_data()
                    .map_err(|e| CacheError::Io { path, source: e })
            })
            .and_then(|()| self.journal.record(&pieces).map_err(CacheError::from));
        let event = match synced {
            Ok(()) => DiskEvent::Durable { pieces },
            Err(error) => {
                self.space.release(bytes);
                allpeers_log::marrow!(%error, pieces = pieces.len(), "transfer: written pieces could not be synced");
                DiskEvent::Lost { pieces, error }
            }
        };
        let _ = self.events.send(event);
    }
}

/// A run of content bytes going to one place in one file.
struct Run<'a> {
    file: usize,
    file_offset: u64,
    slices: Vec<IoSlice<'a>>,
    len: u64,
}

/// Writes the batch; returns the files touched.
fn write_runs(storage: &Storage, batch: &[WriteJob]) -> Result<Vec<usize>, CacheError> {
    let geometry = storage.geometry();
    let layout = storage.layout();
    let mut runs: Vec<Run<'_>> = Vec::new();
    for job in batch {
        let piece_offset = geometry.piece_offset(job.piece);
        let piece_len = job.data.len() as u64;
        // Cut the piece at file boundaries; adjacent pieces in one file extend the same run.
        let mut rest: &[u8] = &job.data;
        for segment in layout.segments(piece_offset, piece_len) {
            let extends = runs.last().is_some_and(|run| {
                run.file == segment.file && run.file_offset + run.len == segment.file_offset
            });
            if !extends {
                runs.push(Run {
                    file: segment.file,
                    file_offset: segment.file_offset,
                    slices: Vec::new(),
                    len: 0,
                });
            }
            let run = runs.last_mut().expect("pushed");
            let (part, after) = rest.split_at(segment.len as usize);
            run.slices.push(IoSlice::new(part));
            rest = after;
            run.len += segment.len;
        }
    }
    let mut touched = Vec::new();
    for run in runs {
        let (file, path) = storage.file(run.file);
        let mut offset = run.file_offset;
        for chunk in run.slices.chunks(IOV_MAX) {
            let mut slices: Vec<IoSlice<'_>> = chunk.to_vec();
            let mut rest: &mut [IoSlice<'_>] = &mut slices;
            while !rest.is_empty() {
                let n = rustix::io::pwritev(file, rest, offset).map_err(|e| {
                    let source = std::io::Error::from(e);
                    match source.kind() {
                        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
                            CacheError::DiskFull
                        }
                        _ => CacheError::Io {
                            path: path.clone(),
                            source,
                        },
                    }
                })?;
                if n == 0 {
                    return Err(CacheError::Io {
                        path,
                        source: std::io::ErrorKind::WriteZero.into(),
                    });
                }
                offset += n as u64;
                IoSlice::advance_slices(&mut rest, n);
            }
        }
        if !touched.contains(&run.file) {
            touched.push(run.file);
        }
    }
    Ok(touched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::layout::Layout;
    use crate::swarm::assembler::sha1_of;
    use crate::swarm::geometry::Geometry;

    fn content(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
            .collect()
    }

    fn job(data: &[u8], geometry: &Geometry, piece: u32) -> WriteJob {
        let start = geometry.piece_offset(piece) as usize;
        let piece_data = &data[start..start + geometry.piece_size(piece) as usize];
        WriteJob {
            piece,
            data: piece_data.to_vec(),
        }
    }

    #[tokio::test]
    async fn pieces_spanning_files_are_written_synced_and_journaled() {
        let dir = tempfile::tempdir().unwrap();
        let geometry = Geometry::new(5 * 32768 + 1000, 32768).unwrap();
        let layout = Layout::new([
            ("a/one".into(), 40_000),
            ("b".into(), 0),
            ("c/two".into(), 5 * 32768 + 1000 - 40_000),
        ])
        .unwrap();
        let data = content(geometry.total_len() as usize);
        let storage = Arc::new(Storage::create(dir.path(), layout, geometry).unwrap());
        let (journal, done) = Journal::open(&dir.path().join("journal"), [1; 20], 6).unwrap();
        assert!(done.is_empty());
        let space = Arc::new(SpaceAccount::new(None));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = DiskWriter::spawn(storage.clone(), journal, space.clone(), tx);
        for piece in [5, 0, 1, 3, 2, 4] {
            assert!(writer.write(job(&data, &geometry, piece)));
        }
        assert!(writer.sync());
        let (mut written, mut durable) = (Vec::new(), Vec::new());
        while durable.len() < 6 {
            match rx.recv().await.unwrap() {
                DiskEvent::Written { pieces, .. } => written.extend(pieces),
                DiskEvent::Durable { pieces } => {
                    assert!(
                        pieces.iter().all(|p| written.contains(p)),
                        "durable only after written"
                    );
                    durable.extend(pieces)
                }
                other => panic!("{other:?}"),
            }
        }
        drop(writer);
        let mut on_disk = std::fs::read(dir.path().join("a/one")).unwrap();
        on_disk.extend(std::fs::read(dir.path().join("c/two")).unwrap());
        assert!(on_disk == data);
        assert_eq!(space.used(), geometry.total_len());
        for piece in 0..6 {
            let start = geometry.piece_offset(piece) as usize;
            let expected = sha1_of(&[&data[start..start + geometry.piece_size(piece) as usize]]);
            assert!(storage.verify_piece(piece, &expected).unwrap());
        }
        let (_, done) = Journal::open(&dir.path().join("journal"), [1; 20], 6).unwrap();
        assert!(done.is_full());
    }

    #[tokio::test]
    async fn a_batch_past_the_space_limit_is_refused_and_not_journaled() {
        let dir = tempfile::tempdir().unwrap();
        let geometry = Geometry::new(4 * 16384, 16384).unwrap();
        let layout = Layout::new([("f".into(), 4 * 16384)]).unwrap();
        let data = content(4 * 16384);
        let storage = Arc::new(Storage::create(dir.path(), layout, geometry).unwrap());
        let (journal, _) = Journal::open(&dir.path().join("journal"), [1; 20], 4).unwrap();
        let space = Arc::new(SpaceAccount::new(Some(16384)));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = DiskWriter::spawn(storage, journal, space.clone(), tx);
        writer.write(job(&data, &geometry, 0));
        writer.sync();
        assert!(matches!(
            rx.recv().await.unwrap(),
            DiskEvent::Written { .. }
        ));
        assert!(matches!(
            rx.recv().await.unwrap(),
            DiskEvent::Durable { .. }
        ));
        writer.write(job(&data, &geometry, 1));
        match rx.recv().await.unwrap() {
            DiskEvent::Failed {
                pieces,
                error: CacheError::SpaceLimit { limit: 16384, .. },
            } => {
                assert_eq!(pieces, vec![1])
            }
            other => panic!("{other:?}"),
        }
        drop(writer);
        let (_, done) = Journal::open(&dir.path().join("journal"), [1; 20], 4).unwrap();
        assert_eq!(done.iter().collect::<Vec<_>>(), vec![0]);
        assert_eq!(space.used(), 16384);
    }

    #[tokio::test]
    async fn separate_batches_are_synced_and_journaled_in_one_group_commit() {
        let dir = tempfile::tempdir().unwrap();
        let geometry = Geometry::new(4 * 16384, 16384).unwrap();
        let layout = Layout::new([("f".into(), 4 * 16384)]).unwrap();
        let data = content(4 * 16384);
        let storage = Arc::new(Storage::create(dir.path(), layout, geometry).unwrap());
        let journal_path = dir.path().join("journal");
        let (journal, _) = Journal::open(&journal_path, [1; 20], 4).unwrap();
        let space = Arc::new(SpaceAccount::new(None));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let writer = DiskWriter::spawn(storage.clone(), journal, space, tx);
        let started = Instant::now();
        for piece in 0..3 {
            writer.write(job(&data, &geometry, piece));
            // Each piece is its own batch: written (and readable) before the next is queued.
            match rx.recv().await.unwrap() {
                DiskEvent::Written { pieces, .. } => assert_eq!(pieces, vec![piece]),
                other => panic!("{other:?}"),
            }
            let start = geometry.piece_offset(piece) as usize;
            let expected = sha1_of(&[&data[start..start + 16384]]);
            assert!(storage.verify_piece(piece, &expected).unwrap());
        }
        let journal_len = || std::fs::metadata(&journal_path).unwrap().len() as usize;
        if started.elapsed() < SYNC_INTERVAL {
            assert_eq!(
                journal_len(),
                crate::cache::journal::HEADER_LEN,
                "nothing journaled before the sync"
            );
        }
        let durable = tokio::time::timeout(SYNC_INTERVAL * 5, rx.recv())
            .await
            .expect("synced within the interval")
            .unwrap();
        match durable {
            DiskEvent::Durable { pieces } => assert_eq!(pieces, vec![0, 1, 2]),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            journal_len(),
            crate::cache::journal::HEADER_LEN + 3 * crate::cache::journal::RECORD_LEN
        );
        drop(writer);
    }

    #[tokio::test]
    async fn groups_queued_behind_a_running_sync_all_become_durable_in_order() {
        // A group commit per piece: the writer runs ahead of the sync thread and waits when SYNCS_QUEUED groups are
        // queued; every piece still ends written, then durable, and journaled once.
        let dir = tempfile::tempdir().unwrap();
        let pieces = 32u32;
        let geometry = Geometry::new(u64::from(pieces) * 16384, 16384).unwrap();
        let layout = Layout::new([("f".into(), u64::from(pieces) * 16384)]).unwrap();
        let data = content(pieces as usize * 16384);
        let storage = Arc::new(Storage::create(dir.path(), layout, geometry).unwrap());
        let journal_path = dir.path().join("journal");
        let (journal, _) = Journal::open(&journal_path, [1; 20], pieces).unwrap();
        let space = Arc::new(SpaceAccount::new(None));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let policy = SyncPolicy {
            interval: Duration::from_secs(3600),
            bytes: 1,
        };
        let writer = DiskWriter::spawn_with(storage.clone(), journal, space, tx, policy);
        for piece in 0..pieces {
            assert!(writer.write(job(&data, &geometry, piece)));
        }
        let (mut written, mut durable) = (Vec::new(), Vec::new());
        while durable.len() < pieces as usize {
            let event = tokio::time::timeout(Duration::from_secs(30), rx.recv())
                .await
                .expect("every group synced in time")
                .unwrap();
            match event {
                DiskEvent::Written { pieces, .. } => written.extend(pieces),
                DiskEvent::Durable { pieces } => {
                    assert!(pieces.iter().all(|p| written.contains(p)));
                    durable.extend(pieces);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(durable, (0..pieces).collect::<Vec<_>>(), "groups in order");
        drop(writer);
        let (_, journaled) = Journal::open(&journal_path, [1; 20], pieces).unwrap();
        assert_eq!(journaled.count(), pieces);
    }
}
