//! The disk thread: whole verified pieces in, durable pieces out. It takes every job queued since its last batch,
//! writes each run of adjacent pieces with one vectored `pwritev`, syncs the files, and only then records the pieces
//! in the journal (and syncs that), so the journal never names a piece whose data is not on disk.

use std::io::IoSlice;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use bytes::Bytes;

use super::CacheError;
use super::journal::Journal;
use super::storage::{SpaceAccount, Storage};

/// Bytes gathered into one batch at most: large enough for few syncs, small enough that pieces become durable soon.
pub const MAX_BATCH_BYTES: u64 = 64 * 1024 * 1024;
/// `IOV_MAX` on Linux: the most buffers one `pwritev` takes.
const IOV_MAX: usize = 1024;

/// A verified piece to store.
#[derive(Debug)]
pub struct WriteJob {
    pub piece: u32,
    pub blocks: Vec<Bytes>,
}

#[derive(Debug)]
pub enum DiskEvent {
    /// These pieces are on disk and journaled.
    Written { pieces: Vec<u32> },
    /// These pieces were not stored; the transfer should pause on [`CacheError::DiskFull`] / `SpaceLimit`.
    Failed { pieces: Vec<u32>, error: CacheError },
}

/// Handle to the disk thread; dropping it lets the thread finish the queued jobs and exit.
#[derive(Debug)]
pub struct DiskWriter {
    jobs: Option<mpsc::Sender<WriteJob>>,
    thread: Option<JoinHandle<()>>,
}

impl DiskWriter {
    pub fn spawn(
        storage: Arc<Storage>,
        journal: Journal,
        space: Arc<SpaceAccount>,
        events: tokio::sync::mpsc::UnboundedSender<DiskEvent>,
    ) -> Self {
        let (jobs, queue) = mpsc::channel::<WriteJob>();
        let thread = std::thread::Builder::new()
            .name("transfer-disk".into())
            .spawn(move || run(storage, journal, space, queue, events))
            .expect("spawn the disk thread");
        Self {
            jobs: Some(jobs),
            thread: Some(thread),
        }
    }

    /// Queues a piece; false when the thread is gone.
    pub fn write(&self, job: WriteJob) -> bool {
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

fn run(
    storage: Arc<Storage>,
    mut journal: Journal,
    space: Arc<SpaceAccount>,
    queue: mpsc::Receiver<WriteJob>,
    events: tokio::sync::mpsc::UnboundedSender<DiskEvent>,
) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        let mut bytes = batch_len(&batch[0]);
        while bytes < MAX_BATCH_BYTES {
            let Ok(job) = queue.try_recv() else { break };
            bytes += batch_len(&job);
            batch.push(job);
        }
        batch.sort_by_key(|job| job.piece);
        let pieces: Vec<u32> = batch.iter().map(|job| job.piece).collect();
        let event = match store_batch(&storage, &mut journal, &space, &batch, bytes) {
            Ok(()) => DiskEvent::Written { pieces },
            Err(error) => {
                allpeers_log::marrow!(%error, pieces = pieces.len(), "transfer: a batch of pieces was not stored");
                DiskEvent::Failed { pieces, error }
            }
        };
        if events.send(event).is_err() {
            return;
        }
    }
}

fn batch_len(job: &WriteJob) -> u64 {
    job.blocks.iter().map(|b| b.len() as u64).sum()
}

/// A run of content bytes going to one place in one file.
struct Run<'a> {
    file: usize,
    file_offset: u64,
    slices: Vec<IoSlice<'a>>,
    len: u64,
}

fn store_batch(
    storage: &Storage,
    journal: &mut Journal,
    space: &SpaceAccount,
    batch: &[WriteJob],
    bytes: u64,
) -> Result<(), CacheError> {
    space.reserve(bytes)?;
    let written = write_runs(storage, batch).and_then(|touched| {
        for file in touched {
            let (handle, path) = storage.file(file);
            handle
                .sync_data()
                .map_err(|e| CacheError::Io { path, source: e })?;
        }
        Ok(())
    });
    if let Err(error) = written {
        space.release(bytes);
        return Err(error);
    }
    let pieces: Vec<u32> = batch.iter().map(|job| job.piece).collect();
    journal.record(&pieces)?;
    Ok(())
}

/// Writes the batch; returns the files touched.
fn write_runs(storage: &Storage, batch: &[WriteJob]) -> Result<Vec<usize>, CacheError> {
    let geometry = storage.geometry();
    let layout = storage.layout();
    let mut runs: Vec<Run<'_>> = Vec::new();
    for job in batch {
        let piece_offset = geometry.piece_offset(job.piece);
        let piece_len: u64 = batch_len(job);
        // Walk the piece's file segments and its blocks together, cutting blocks at file boundaries.
        let mut blocks = job.blocks.iter().map(|b| &b[..]);
        let mut current: &[u8] = blocks.next().unwrap_or(&[]);
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
            let mut need = segment.len;
            while need > 0 {
                if current.is_empty() {
                    current = blocks.next().expect("blocks cover the piece");
                }
                let take = (current.len() as u64).min(need) as usize;
                run.slices.push(IoSlice::new(&current[..take]));
                current = &current[take..];
                need -= take as u64;
            }
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
    use crate::swarm::geometry::{BLOCK_LEN, Geometry};

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
            blocks: piece_data
                .chunks(BLOCK_LEN as usize)
                .map(Bytes::copy_from_slice)
                .collect(),
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
        let mut stored = Vec::new();
        while stored.len() < 6 {
            match rx.recv().await.unwrap() {
                DiskEvent::Written { pieces } => stored.extend(pieces),
                DiskEvent::Failed { error, .. } => panic!("{error}"),
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
        assert!(matches!(
            rx.recv().await.unwrap(),
            DiskEvent::Written { .. }
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
}
