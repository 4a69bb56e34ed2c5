//! One shared file fetched into the download folder, one-to-one over HTTP from the peers that hold it, one at a
//! time (the private swarm will fetch from several at once through the same landing).
//!
//! Every block is verified against the content hash before it is written; written blocks are synced, then recorded
//! in the journal (every 16 MiB or every second, whichever comes first), so `kill -9` loses at most what was not yet recorded and a restart resumes
//! from the first block missing. The data lands in `<name>.part` beside the final name and is renamed when whole; a
//! `<hash>.done` marker in the state directory then says where it went.
//!
//! A source whose bytes fail verification is dropped for the rest of the attempt (logged, counted in
//! `hash_failures`/`banned_peers`), and the next source is asked from the same block: bad bytes never reach the
//! file.

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};

use super::http::{self, FetchError};
use super::{BLOCK_BYTES, ContentHash};
use crate::bt::session::{Progress, TransferState};
use crate::cache::journal::{Journal, JournalError};
use crate::cache::layout::safe_relative_path;
use crate::swarm::geometry::{MAX_PIECES, PieceSet};
use crate::throttle::{Limits, Throttle, Throttles};

/// Verified bytes written between two syncs of the data and the journal, at most, and the longest time between two:
/// a sync per MiB halved the throughput (`benches/files.rs`); a crash refetches at most this much or this long.
const COMMIT_BYTES: u64 = 16 << 20;
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// How often progress is published while bytes flow.
const TICK: Duration = Duration::from_millis(250);
/// Longest wait for a source to answer the request's head.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// A file to fetch: what the File resource says of it, and who holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSpec {
    pub hash: ContentHash,
    pub size: u64,
    /// The file name to land under (made safe: one path component).
    pub name: String,
    /// Peers that hold it (peer ids as text), asked in order.
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
}

#[derive(Debug)]
enum Command {
    Pause,
    Resume,
    Stop,
}

/// The running download's handle: commands in, progress out. Dropping every handle stops the download.
#[derive(Debug, Clone)]
pub struct FileHandle {
    pub hash: ContentHash,
    throttle: Arc<Throttle>,
    commands: mpsc::Sender<Command>,
    progress: watch::Receiver<Progress>,
}

impl FileHandle {
    pub async fn pause(&self) {
        let _ = self.commands.send(Command::Pause).await;
    }

    pub async fn resume(&self) {
        let _ = self.commands.send(Command::Resume).await;
    }

    /// Ends the download (what it verified stays, for the next start).
    pub async fn stop(&self) {
        let _ = self.commands.send(Command::Stop).await;
    }

    pub fn set_limits(&self, limits: Limits) {
        self.throttle.set(limits);
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Waits until the file is whole, or failed / the download ended.
    pub async fn wait_complete(&self) -> Result<(), TransferState> {
        let mut progress = self.progress.clone();
        loop {
            match progress.borrow_and_update().state.clone() {
                TransferState::Seeding => return Ok(()),
                TransferState::Failed(reason) => return Err(TransferState::Failed(reason)),
                _ => {}
            }
            if progress.changed().await.is_err() {
                return Err(TransferState::Failed("the download ended".into()));
            }
        }
    }
}

/// Where a download lands and what it knows.
pub struct Target {
    /// The download folder.
    pub dir: PathBuf,
    /// Where the journal and the done marker are kept.
    pub state_dir: PathBuf,
}

/// The paths of a download's journal and done marker (removed when the transfer is cancelled).
pub fn state_files(state_dir: &Path, hash: &ContentHash) -> [PathBuf; 2] {
    [
        state_dir.join(format!("{hash}.journal")),
        state_dir.join(format!("{hash}.done")),
    ]
}

/// The partial file's path for a download into `dir`.
pub fn part_path(dir: &Path, name: &str) -> Result<PathBuf, DownloadError> {
    Ok(dir.join(format!("{}.part", safe_name(name)?.display())))
}

fn safe_name(name: &str) -> Result<PathBuf, DownloadError> {
    safe_relative_path([name.as_bytes()]).map_err(|e| DownloadError::Name(e.to_string()))
}

/// Starts (or resumes) a download.
pub fn start(
    spec: FileSpec,
    target: Target,
    dial: Dial,
    global: Arc<Throttle>,
    limits: Limits,
) -> FileHandle {
    let throttle = Arc::new(Throttle::new(limits));
    let (commands, rx) = mpsc::channel(8);
    let initial = Progress {
        state: TransferState::Downloading,
        total_bytes: spec.size,
        done_bytes: 0,
        pieces_done: 0,
        pieces_total: blocks(spec.size),
        downloaded: 0,
        uploaded: 0,
        wasted: 0,
        hash_failures: 0,
        banned_peers: 0,
        down_rate: 0,
        up_rate: 0,
        eta: None,
        peers: vec![],
    };
    let (progress_tx, progress) = watch::channel(initial);
    let handle = FileHandle {
        hash: spec.hash,
        throttle: throttle.clone(),
        commands,
        progress,
    };
    let session = Session {
        spec,
        target,
        dial,
        throttles: Throttles(vec![global, throttle]),
        counters: Arc::new(Counters::default()),
        progress: Arc::new(progress_tx),
        landing: Mutex::new(None),
    };
    tokio::spawn(session.run(rx));
    handle
}

fn blocks(size: u64) -> u32 {
    size.div_ceil(BLOCK_BYTES).min(u64::from(u32::MAX)) as u32
}

#[derive(Default)]
struct Counters {
    /// Verified, synced and journaled.
    done: AtomicU64,
    /// Encoded bytes received this run.
    received: AtomicU64,
    hash_failures: AtomicU64,
    banned: AtomicU64,
}

struct Session {
    spec: FileSpec,
    target: Target,
    dial: Dial,
    throttles: Throttles,
    counters: Arc<Counters>,
    progress: Arc<watch::Sender<Progress>>,
    /// Opened once per session: a decoder thread of an attempt cut short (a pause) may still hold it.
    landing: Mutex<Option<Arc<Mutex<Landing>>>>,
}

/// The verified blocks on their way to disk: the partial file, the journal and what it records.
struct Landing {
    file: File,
    journal: Journal,
    done: PieceSet,
    /// Written and verified, not yet synced and journaled.
    pending: Vec<u32>,
    pending_bytes: u64,
    last_commit: Instant,
    size: u64,
    counters: Arc<Counters>,
}

impl Landing {
    fn write(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(bytes, offset)?;
        let first = (offset / BLOCK_BYTES) as u32;
        let last = (offset + bytes.len() as u64).div_ceil(BLOCK_BYTES) as u32;
        for block in first..last {
            if !self.done.contains(block) && !self.pending.contains(&block) {
                self.pending.push(block);
            }
        }
        self.pending_bytes += bytes.len() as u64;
        if self.pending_bytes >= COMMIT_BYTES || self.last_commit.elapsed() >= COMMIT_INTERVAL {
            self.commit()?;
        }
        Ok(())
    }

    /// Syncs the data written, then journals its blocks.
    fn commit(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.sync_data()?;
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

    fn first_missing(&self) -> Option<u32> {
        (0..self.done.len()).find(|b| !self.done.contains(*b))
    }
}

fn done_bytes(done: &PieceSet, size: u64) -> u64 {
    done.iter()
        .map(|b| BLOCK_BYTES.min(size - u64::from(b) * BLOCK_BYTES))
        .sum()
}

enum Outcome {
    Complete,
    Paused,
    Stopped,
    Failed(String),
}

impl Session {
    async fn run(self, mut commands: mpsc::Receiver<Command>) {
        let mut paused = false;
        loop {
            if paused {
                self.publish(TransferState::Paused("paused by the user".into()));
                match commands.recv().await {
                    Some(Command::Resume) => paused = false,
                    Some(Command::Pause) => {}
                    Some(Command::Stop) | None => return,
                }
                continue;
            }
            self.publish(TransferState::Downloading);
            let outcome = tokio::select! {
                outcome = self.attempt() => outcome,
                command = commands.recv() => match command {
                    Some(Command::Pause) => Outcome::Paused,
                    Some(Command::Resume) => continue,
                    Some(Command::Stop) | None => Outcome::Stopped,
                },
            };
            match outcome {
                Outcome::Complete => {
                    self.publish(TransferState::Seeding);
                    // Stay until stopped: the manager reads the final progress.
                    while !matches!(commands.recv().await, Some(Command::Stop) | None) {}
                    return;
                }
                Outcome::Paused => paused = true,
                Outcome::Stopped => return,
                Outcome::Failed(why) => {
                    self.publish(TransferState::Failed(why));
                    while !matches!(commands.recv().await, Some(Command::Stop) | None) {}
                    return;
                }
            }
        }
    }

    fn publish(&self, state: TransferState) {
        let counters = &self.counters;
        let done = counters.done.load(Ordering::Relaxed);
        self.progress.send_modify(|p| {
            p.state = state;
            p.done_bytes = done;
            p.pieces_done = blocks(done);
            p.downloaded = counters.received.load(Ordering::Relaxed);
            p.hash_failures = counters.hash_failures.load(Ordering::Relaxed) as u32;
            p.banned_peers = counters.banned.load(Ordering::Relaxed) as u32;
            if !matches!(p.state, TransferState::Downloading) {
                p.down_rate = 0;
                p.eta = None;
            }
        });
    }

    /// Publishes progress every [`TICK`] while `work` runs.
    async fn ticking<T>(&self, work: impl Future<Output = T>) -> T {
        let counters = self.counters.clone();
        let progress = self.progress.clone();
        let size = self.spec.size;
        let ticker = async move {
            let mut last = (Instant::now(), counters.received.load(Ordering::Relaxed));
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let now = Instant::now();
                let received = counters.received.load(Ordering::Relaxed);
                let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
                let rate = ((received - last.1) as f64 / secs) as u64;
                last = (now, received);
                let done = counters.done.load(Ordering::Relaxed);
                progress.send_if_modified(|p| {
                    let before = (p.done_bytes, p.downloaded, p.down_rate);
                    p.done_bytes = done;
                    p.pieces_done = blocks(done);
                    p.downloaded = received;
                    p.down_rate = rate;
                    p.eta = (rate > 0).then(|| Duration::from_secs((size - done) / rate));
                    before != (p.done_bytes, p.downloaded, p.down_rate)
                });
            }
        };
        tokio::select! {
            result = work => result,
            () = ticker => unreachable!("the ticker never ends"),
        }
    }

    async fn attempt(&self) -> Outcome {
        match self.ticking(self.fetch()).await {
            Ok(()) => Outcome::Complete,
            Err(error) => Outcome::Failed(error.to_string()),
        }
    }

    async fn fetch(&self) -> Result<(), DownloadError> {
        let spec = &self.spec;
        let [journal_path, done_path] = state_files(&self.target.state_dir, &spec.hash);
        let final_path = self.target.dir.join(safe_name(&spec.name)?);
        if done_path.exists() {
            self.counters.done.store(spec.size, Ordering::Relaxed);
            return Ok(());
        }
        if spec.size > u64::from(MAX_PIECES) * BLOCK_BYTES {
            return Err(DownloadError::TooLarge(spec.size));
        }
        // Nothing to fetch, and only one hash fits it.
        if spec.size == 0 && spec.hash != ContentHash::of(b"") {
            return Err(DownloadError::NoSource(
                "an empty file cannot have this hash".into(),
            ));
        }
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DownloadError::Io { path, source }
        };
        std::fs::create_dir_all(&self.target.dir).map_err(io(&self.target.dir))?;
        std::fs::create_dir_all(&self.target.state_dir).map_err(io(&self.target.state_dir))?;
        let part = part_path(&self.target.dir, &spec.name)?;
        let opened = self.landing.lock().expect("landing").clone();
        let landing = match opened {
            Some(landing) => landing,
            None => {
                let landing = self.open_landing(&part, &journal_path)?;
                *self.landing.lock().expect("landing") = Some(landing.clone());
                landing
            }
        };
        self.fetch_missing(&landing).await?;
        landing
            .lock()
            .expect("landing")
            .file
            .sync_all()
            .map_err(io(&part))?;
        let final_path = free_name(&final_path);
        std::fs::rename(&part, &final_path).map_err(io(&final_path))?;
        crate::cache::write_atomically(&done_path, final_path.as_os_str().as_encoded_bytes())
            .map_err(io(&done_path))?;
        let _ = std::fs::remove_file(&journal_path);
        allpeers_log::flesh!(hash = %spec.hash, path = %final_path.display(), "files: downloaded and verified");
        Ok(())
    }

    fn open_landing(
        &self,
        part: &Path,
        journal_path: &Path,
    ) -> Result<Arc<Mutex<Landing>>, DownloadError> {
        let spec = &self.spec;
        let io = |source| DownloadError::Io {
            path: part.to_path_buf(),
            source,
        };
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(part)
            .map_err(io)?;
        // The journal is bound to the content: the first 160 bits of its hash.
        let mut content = [0u8; 20];
        content.copy_from_slice(&spec.hash.0[..20]);
        let (journal, done) = match Journal::open(journal_path, content, blocks(spec.size)) {
            Ok(opened) => opened,
            Err(error) => {
                allpeers_log::marrow!(hash = %spec.hash, %error, "files: the journal is unusable: starting over");
                let _ = std::fs::remove_file(journal_path);
                Journal::open(journal_path, content, blocks(spec.size))?
            }
        };
        // The partial file is shorter than its journal says (removed or cut by hand): start over, journal included.
        let len = file.metadata().map_err(io)?.len();
        let (journal, done) = if !done.is_empty() && len < spec.size {
            drop(journal);
            let _ = std::fs::remove_file(journal_path);
            Journal::open(journal_path, content, blocks(spec.size))?
        } else {
            (journal, done)
        };
        file.set_len(spec.size).map_err(io)?;
        self.counters
            .done
            .store(done_bytes(&done, spec.size), Ordering::Relaxed);
        Ok(Arc::new(Mutex::new(Landing {
            file,
            journal,
            done,
            pending: Vec::new(),
            pending_bytes: 0,
            last_commit: Instant::now(),
            size: spec.size,
            counters: self.counters.clone(),
        })))
    }

    /// Asks each source in turn for everything from the first missing block, until the file is whole.
    async fn fetch_missing(&self, landing: &Arc<Mutex<Landing>>) -> Result<(), DownloadError> {
        let spec = &self.spec;
        let mut banned: Vec<String> = Vec::new();
        let mut last_error = String::from("no sources");
        loop {
            let Some(first) = landing.lock().expect("landing").first_missing() else {
                return Ok(());
            };
            let start = u64::from(first) * BLOCK_BYTES;
            let before = self.counters.done.load(Ordering::Relaxed);
            let mut progressed = false;
            let candidates: Vec<&String> = spec
                .sources
                .iter()
                .filter(|s| !banned.contains(s))
                .collect();
            for source in candidates {
                match self.fetch_from(source, start, landing).await {
                    Ok(()) => {
                        progressed = true;
                        break;
                    }
                    Err(FetchError::Verification { offset }) => {
                        allpeers_log::skin!(hash = %spec.hash, peer = %source, offset, "files: a source sent bytes that failed verification: dropped");
                        self.counters.hash_failures.fetch_add(1, Ordering::Relaxed);
                        self.counters.banned.fetch_add(1, Ordering::Relaxed);
                        banned.push(source.clone());
                        last_error = format!("{source}: {}", FetchError::Verification { offset });
                    }
                    Err(error) => {
                        allpeers_log::flesh!(hash = %spec.hash, peer = %source, %error, "files: a source failed");
                        last_error = format!("{source}: {error}");
                    }
                }
                // Blocks verified before the failure are kept; the next source starts after them.
                if self.counters.done.load(Ordering::Relaxed) > before {
                    progressed = true;
                    break;
                }
            }
            if !progressed {
                return Err(DownloadError::NoSource(last_error));
            }
        }
    }

    async fn fetch_from(
        &self,
        source: &str,
        start: u64,
        landing: &Arc<Mutex<Landing>>,
    ) -> Result<(), FetchError> {
        let spec = &self.spec;
        let answer = async {
            let io = (self.dial)(source.to_string()).await?;
            http::get(io, spec.hash, spec.size, start).await
        };
        let fetch = tokio::time::timeout(ANSWER_TIMEOUT, answer)
            .await
            .map_err(|_| FetchError::Io(std::io::ErrorKind::TimedOut.into()))??;
        let sink_landing = landing.clone();
        let counters = self.counters.clone();
        let result = fetch
            .receive(self.throttles.clone(), move |offset, bytes| {
                counters
                    .received
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                sink_landing.lock().expect("landing").write(offset, bytes)
            })
            .await;
        let committed = landing.lock().expect("landing").commit();
        result?;
        committed?;
        Ok(())
    }
}

/// `path`, or `name (1).ext`, `name (2).ext`… if it is taken: a download never replaces a file already there.
fn free_name(path: &Path) -> PathBuf {
    if !path.exists() {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let extension = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (1..)
        .map(|n| path.with_file_name(format!("{stem} ({n}){extension}")))
        .find(|p| !p.exists())
        .expect("some free name")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::blob::http::{Lookup, Refusal, StatusCode};
    use crate::blob::outboards::Outboards;

    fn content(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
            .collect()
    }

    /// Peers on pipes: each name serves through its own lookup.
    fn dial(peers: HashMap<String, Lookup>) -> Dial {
        let peers = Arc::new(peers);
        Arc::new(move |peer: String| {
            let peers = peers.clone();
            Box::pin(async move {
                let lookup = peers
                    .get(&peer)
                    .cloned()
                    .ok_or_else(|| std::io::Error::other("no such peer"))?;
                let (ours, theirs) = tokio::io::duplex(1 << 20);
                tokio::spawn(async move {
                    let _ = http::serve(theirs, lookup).await;
                });
                Ok(Box::new(ours) as Box<dyn PeerIo>)
            })
        })
    }

    fn honest(outboards: &Outboards) -> Lookup {
        let outboards = outboards.clone();
        Arc::new(move |hash| {
            outboards
                .open_source(&hash)
                .map_err(|e| Refusal::new(StatusCode::NOT_FOUND, e.to_string()))
        })
    }

    struct Fixture {
        dir: tempfile::TempDir,
        data: Vec<u8>,
        outboards: Outboards,
        spec: FileSpec,
    }

    fn fixture(len: usize, sources: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let data = content(len);
        let path = dir.path().join("shared.bin");
        std::fs::write(&path, &data).unwrap();
        let outboards = Outboards::open(&dir.path().join("outboards")).unwrap();
        let shared = outboards.add_file(&path).unwrap();
        let spec = FileSpec {
            hash: shared.hash,
            size: shared.size,
            name: "film.mkv".into(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
        };
        Fixture {
            dir,
            data,
            outboards,
            spec,
        }
    }

    fn target(dir: &Path) -> Target {
        Target {
            dir: dir.join("Downloads"),
            state_dir: dir.join("state"),
        }
    }

    #[tokio::test]
    async fn a_source_sending_bad_bytes_is_dropped_and_the_file_comes_whole_from_another() {
        let f = fixture(1_000_000, &["mallory", "alice"]);
        // Mallory serves the right tree over a copy with one byte changed.
        let tampered_path = f.dir.path().join("tampered.bin");
        let mut tampered = f.data.clone();
        tampered[700_000] ^= 1;
        std::fs::write(&tampered_path, &tampered).unwrap();
        let good = f.outboards.clone();
        let mallory: Lookup = Arc::new(move |hash| {
            let mut source = good
                .open_source(&hash)
                .map_err(|e| Refusal::new(StatusCode::NOT_FOUND, e.to_string()))?;
            source.file = File::open(&tampered_path).unwrap();
            Ok(source)
        });
        let peers = HashMap::from([
            ("mallory".to_string(), mallory),
            ("alice".to_string(), honest(&f.outboards)),
        ]);
        let handle = start(
            f.spec.clone(),
            target(f.dir.path()),
            dial(peers),
            Arc::new(Throttle::default()),
            Limits::default(),
        );
        tokio::time::timeout(Duration::from_secs(20), handle.wait_complete())
            .await
            .unwrap()
            .unwrap();
        let landed = f.dir.path().join("Downloads").join("film.mkv");
        assert_eq!(std::fs::read(&landed).unwrap(), f.data);
        let progress = handle.progress();
        assert_eq!(progress.hash_failures, 1);
        assert_eq!(progress.banned_peers, 1);
        assert_eq!(progress.done_bytes, f.data.len() as u64);
        assert!(
            !f.dir
                .path()
                .join("Downloads")
                .join("film.mkv.part")
                .exists()
        );
        handle.stop().await;

        // Started again (a restart after completion): complete at once, nothing fetched.
        let again = start(
            f.spec.clone(),
            target(f.dir.path()),
            dial(HashMap::new()),
            Arc::new(Throttle::default()),
            Limits::default(),
        );
        tokio::time::timeout(Duration::from_secs(5), again.wait_complete())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.progress().downloaded, 0);
    }

    #[tokio::test]
    async fn a_download_stopped_part_way_resumes_from_its_journal() {
        let f = fixture(3 * 1024 * 1024, &["alice"]);
        let peers = HashMap::from([("alice".to_string(), honest(&f.outboards))]);
        let slow = Limits {
            down: Some(1024 * 1024),
            up: None,
        };
        let first = start(
            f.spec.clone(),
            target(f.dir.path()),
            dial(peers.clone()),
            Arc::new(Throttle::default()),
            slow,
        );
        let mut progress = first.watch();
        tokio::time::timeout(
            Duration::from_secs(20),
            progress.wait_for(|p| p.done_bytes >= 1024 * 1024),
        )
        .await
        .unwrap()
        .unwrap();
        first.stop().await;
        drop(first);
        // What a crash leaves: whatever the journal recorded.
        let second = start(
            f.spec.clone(),
            target(f.dir.path()),
            dial(peers),
            Arc::new(Throttle::default()),
            Limits::default(),
        );
        tokio::time::timeout(Duration::from_secs(20), second.wait_complete())
            .await
            .unwrap()
            .unwrap();
        let landed = f.dir.path().join("Downloads").join("film.mkv");
        assert_eq!(std::fs::read(&landed).unwrap(), f.data);
        let fetched = second.progress().downloaded;
        assert!(
            fetched <= f.data.len() as u64 - 1024 * 1024,
            "fetched {fetched} again"
        );
    }

    #[tokio::test]
    async fn no_source_is_a_failure_that_names_why() {
        let f = fixture(100_000, &["nobody"]);
        let handle = start(
            f.spec.clone(),
            target(f.dir.path()),
            dial(HashMap::new()),
            Arc::new(Throttle::default()),
            Limits::default(),
        );
        let failed = tokio::time::timeout(Duration::from_secs(5), handle.wait_complete())
            .await
            .unwrap();
        assert!(matches!(failed, Err(TransferState::Failed(why)) if why.contains("no such peer")));
    }
}
