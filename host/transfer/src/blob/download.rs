//! One shared file fetched into the download folder: one-to-one over HTTP when it has one source (the next asked
//! if one fails), from the private swarm when it has several ([`super::swarm`]: every source holding chunks at
//! once), both through the same landing.
//!
//! Every block is verified against the content hash before it is written; written blocks are synced, then recorded
//! in the journal (every 16 MiB or every second, whichever comes first), so `kill -9` loses at most what was not yet recorded and a restart resumes
//! from the first block missing. The data lands in `<name>.part` beside the final name and is renamed when whole; a
//! `<hash>.done` marker in the state directory then says where it went.
//!
//! A source whose bytes fail verification is dropped for the rest of the attempt (logged, counted in
//! `hash_failures`/`banned_peers`), and the next source is asked from the same block: bad bytes never reach the
//! file.
//!
//! While it runs, the download is a source itself ([`Partials`]): the tree nodes that come with the blocks are kept
//! in `<hash>.obao` in the state directory, and each block written is served to other members at once. Once whole,
//! the file is added to the shared files ([`Outboards`]), so the node goes on serving it.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, watch};

use bao_tree::BaoTree;
use bao_tree::io::outboard::PreOrderOutboard;

use super::http::{self, BodyEnd, FetchError, Verified};
use super::landing::{Counters, Landing, commit_apart, done_bytes};
use super::outboards::Outboards;
use super::partial::{Partial, Partials, Written};
use super::{BLOCK_BYTES, BLOCK_SIZE, ContentHash, Dial, DownloadError, FileSpec};
use crate::bt::session::{Progress, TransferState};
use crate::cache::journal::Journal;
use crate::cache::layout::safe_relative_path;
use crate::cache::storage::SpaceAccount;
use crate::swarm::geometry::{MAX_PIECES, PieceSet};
use crate::throttle::{Limits, Throttle, Throttles};

/// How often progress is published while bytes flow.
const TICK: Duration = Duration::from_millis(250);
/// Longest wait for a source to answer the request's head.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The pause before the sources are asked once more after a connection broke (see `Session::fetch_missing`).
const ASK_AGAIN_AFTER: Duration = Duration::from_millis(250);
/// Longest wait in [`FileHandle::stop`] for the download to end (its last blocks synced and journaled).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// News of sources come online a swarm has not read yet, at most (it reads them at once; a burst past this loses
/// only a nudge: those sources are asked after their rest, as before).
const ONLINE_QUEUE: usize = 16;

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
    counters: Arc<Counters>,
    /// Whom to fetch from: changed while it runs when members join or leave the share.
    sources: Arc<watch::Sender<Vec<String>>>,
    /// Sources that just came online: a swarm asks them at once instead of after their rest.
    online: broadcast::Sender<String>,
}

impl FileHandle {
    /// Pauses the download and returns once it is paused (bounded by [`STOP_TIMEOUT`]): what it received is then
    /// written and journaled, so a client told "paused" may stop the node and lose nothing.
    pub async fn pause(&self) {
        let mut progress = self.progress.clone();
        if self.commands.send(Command::Pause).await.is_err() {
            return;
        }
        // A download that is whole (or failed) stays as it is.
        let settled = progress.wait_for(|p| !matches!(p.state, TransferState::Downloading));
        if tokio::time::timeout(STOP_TIMEOUT, settled).await.is_err() {
            allpeers_log::marrow!(hash = %self.hash, "files: a download did not pause within {STOP_TIMEOUT:?}");
        }
    }

    pub async fn resume(&self) {
        let _ = self.commands.send(Command::Resume).await;
    }

    /// Ends the download (what it verified stays, for the next start) and waits, bounded, until it has: every
    /// block it wrote synced and journaled, its files let go. A start right after (the manager restarted) then
    /// resumes from all of it, and no writer of this run is left to append to the journal the next run reads.
    pub async fn stop(&self) {
        let _ = self.commands.send(Command::Stop).await;
        if tokio::time::timeout(STOP_TIMEOUT, self.ended())
            .await
            .is_err()
        {
            allpeers_log::marrow!(hash = %self.hash, "files: a download did not end within {STOP_TIMEOUT:?} of being stopped");
        }
    }

    /// Waits until the download has ended and let go of its files (see [`FileHandle::stop`]).
    pub async fn ended(&self) {
        let mut progress = self.progress.clone();
        while progress.changed().await.is_ok() {}
    }

    pub fn set_limits(&self, limits: Limits) {
        self.throttle.set(limits);
    }

    /// Whom to fetch from now on. The swarm starts asking a new source at once and stops asking one no longer
    /// named; a download fetching one-to-one moves to the swarm (from what it holds) once there are two.
    pub fn set_sources(&self, sources: Vec<String>) {
        self.sources.send_if_modified(|now| {
            let changed = *now != sources;
            *now = sources;
            changed
        });
    }

    /// `source` just came online (a swarm under way that waits on it asks it again now; nothing else changes).
    pub fn source_online(&self, source: &str) {
        let _ = self.online.send(source.to_string());
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// Each source's name and the verified bytes it gave this run.
    pub fn sources(&self) -> Vec<(String, u64)> {
        self.counters
            .sources
            .lock()
            .expect("sources")
            .iter()
            .map(|(name, bytes)| (name.clone(), *bytes))
            .collect()
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
    /// Where the journal, the tree and the done marker are kept.
    pub state_dir: PathBuf,
    /// Where the download registers as a source while it runs.
    pub partials: Partials,
    /// Where the whole file is added, to be served on (none: it is not).
    pub outboards: Option<Outboards>,
    /// The byte limit every download shares (the engine's: torrents take from it too).
    pub space: Arc<SpaceAccount>,
}

/// The paths of a download's journal, done marker and tree (removed when the transfer is cancelled).
pub fn state_files(state_dir: &Path, hash: &ContentHash) -> [PathBuf; 3] {
    [
        state_dir.join(format!("{hash}.journal")),
        state_dir.join(format!("{hash}.done")),
        state_dir.join(format!("{hash}.obao")),
    ]
}

/// The partial file's path for a download into `dir`.
pub fn part_path(dir: &Path, name: &str) -> Result<PathBuf, DownloadError> {
    Ok(dir.join(format!("{}.part", safe_name(name)?.display())))
}

fn safe_name(name: &str) -> Result<PathBuf, DownloadError> {
    safe_relative_path([name.as_bytes()]).map_err(|e| DownloadError::Name(e.to_string()))
}

/// How a download fetches its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Route {
    /// The manager's choice: one-to-one HTTP from one source, the swarm from several.
    #[default]
    Auto,
    /// The swarm even from one source: what the files bench measures as the swarm's own cost beside HTTP.
    Swarm,
}

/// Starts (or resumes) a download.
pub fn start(
    spec: FileSpec,
    target: Target,
    dial: Dial,
    global: Arc<Throttle>,
    limits: Limits,
) -> FileHandle {
    start_by(Route::Auto, spec, target, dial, global, limits)
}

/// Starts (or resumes) a download by the given route.
pub fn start_by(
    route: Route,
    spec: FileSpec,
    target: Target,
    dial: Dial,
    global: Arc<Throttle>,
    limits: Limits,
) -> FileHandle {
    let throttle = Arc::new(Throttle::new(limits));
    let (commands, rx) = mpsc::channel(8);
    let (progress_tx, progress) = watch::channel(initial(spec.size));
    let counters = Arc::new(Counters::default());
    let sources = Arc::new(watch::Sender::new(spec.sources.clone()));
    let (online, _) = broadcast::channel(ONLINE_QUEUE);
    let handle = FileHandle {
        hash: spec.hash,
        throttle: throttle.clone(),
        commands,
        progress,
        counters: counters.clone(),
        sources: sources.clone(),
        online: online.clone(),
    };
    let session = Session {
        route,
        sources,
        online,
        spec,
        target,
        dial,
        throttles: Throttles(vec![global, throttle]),
        counters,
        progress: Arc::new(progress_tx),
        landing: Mutex::new(None),
    };
    tokio::spawn(session.run(rx));
    handle
}

/// A download's progress before it runs.
fn initial(size: u64) -> Progress {
    Progress {
        state: TransferState::Downloading,
        total_bytes: size,
        done_bytes: 0,
        pieces_done: 0,
        pieces_total: blocks(size),
        downloaded: 0,
        uploaded: 0,
        wasted: 0,
        hash_failures: 0,
        banned_peers: 0,
        sources: 0,
        down_rate: 0,
        up_rate: 0,
        eta: None,
        peers: vec![],
        peer_sources: Default::default(),
    }
}

fn blocks(size: u64) -> u32 {
    size.div_ceil(BLOCK_BYTES).min(u64::from(u32::MAX)) as u32
}

struct Session {
    route: Route,
    /// The sources now (`spec.sources` when it started).
    sources: Arc<watch::Sender<Vec<String>>>,
    /// Sources that came online ([`FileHandle::source_online`]).
    online: broadcast::Sender<String>,
    spec: FileSpec,
    target: Target,
    dial: Dial,
    throttles: Throttles,
    counters: Arc<Counters>,
    progress: Arc<watch::Sender<Progress>>,
    /// Opened once per session: a decoder thread of an attempt cut short (a pause) may still hold it.
    landing: Mutex<Option<Arc<Mutex<Landing>>>>,
}

/// How fetching one-to-one ended well.
enum OneToOne {
    Whole,
    /// A second source was named: the swarm goes on.
    SecondSource,
}

enum Outcome {
    Complete,
    Paused,
    Stopped,
    /// No room on the disk or under the byte limit: paused with this reason, as a torrent is.
    OutOfSpace(String),
    Failed(String),
}

impl Session {
    async fn run(self, mut commands: mpsc::Receiver<Command>) {
        self.drive(&mut commands).await;
        // The landing syncs and journals what it holds as it goes (`Landing`'s drop): off the runtime's workers.
        let landing = self.landing.lock().expect("landing").take();
        let _ = tokio::task::spawn_blocking(move || drop(landing)).await;
    }

    async fn drive(&self, commands: &mut mpsc::Receiver<Command>) {
        // Why the download is paused, while it is.
        let mut paused: Option<String> = None;
        loop {
            if let Some(reason) = &paused {
                self.publish(TransferState::Paused(reason.clone()));
                match commands.recv().await {
                    Some(Command::Resume) => paused = None,
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
                Outcome::Paused => {
                    // What the attempt wrote is journaled now, not at the next commit: `done` (where a resume starts)
                    // counts journaled blocks only, so a resume refetched up to a commit's worth (16 MiB or 1 s).
                    // First its decoder threads land what they were given.
                    if tokio::time::timeout(STOP_TIMEOUT, self.counters.decoders.all_ended())
                        .await
                        .is_err()
                    {
                        allpeers_log::marrow!(hash = %self.spec.hash, "files: a paused download's decoding did not end within {STOP_TIMEOUT:?}");
                    }
                    let landing = self.landing.lock().expect("landing").clone();
                    if let Some(landing) = landing
                        && let Err(error) = commit_apart(&landing).await
                    {
                        allpeers_log::skin!(hash = %self.spec.hash, %error, "files: what a paused download wrote could not be journaled");
                    }
                    paused = Some("paused by the user".into());
                }
                Outcome::OutOfSpace(why) => {
                    allpeers_log::skin!(hash = %self.spec.hash, %why, "files: out of space: the download pauses");
                    paused = Some(why);
                }
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
            p.wasted = counters.wasted.load(Ordering::Relaxed);
            p.hash_failures = counters.hash_failures.load(Ordering::Relaxed) as u32;
            p.banned_peers = counters.banned.load(Ordering::Relaxed) as u32;
            p.sources = counters.sources_in_use();
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
                let wasted = counters.wasted.load(Ordering::Relaxed);
                let sources = counters.sources_in_use();
                progress.send_if_modified(|p| {
                    let before = (p.done_bytes, p.downloaded, p.down_rate, p.wasted, p.sources);
                    p.done_bytes = done;
                    p.wasted = wasted;
                    p.sources = sources;
                    p.pieces_done = blocks(done);
                    p.downloaded = received;
                    p.down_rate = rate;
                    p.eta = (rate > 0).then(|| Duration::from_secs((size - done) / rate));
                    before != (p.done_bytes, p.downloaded, p.down_rate, p.wasted, p.sources)
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
            Err(error) if error.is_out_of_space() => Outcome::OutOfSpace(error.to_string()),
            Err(error) => Outcome::Failed(error.to_string()),
        }
    }

    async fn fetch(&self) -> Result<(), DownloadError> {
        let spec = &self.spec;
        let [journal_path, done_path, tree_path] = state_files(&self.target.state_dir, &spec.hash);
        let final_path = self.target.dir.join(safe_name(&spec.name)?);
        if done_path.exists() {
            self.counters.done.store(spec.size, Ordering::Relaxed);
            if let Ok(landed) = std::fs::read(&done_path) {
                self.serve_on(PathBuf::from(String::from_utf8_lossy(&landed).into_owned()))
                    .await;
            }
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
            move |source| DownloadError::io(path, source)
        };
        std::fs::create_dir_all(&self.target.dir).map_err(io(&self.target.dir))?;
        std::fs::create_dir_all(&self.target.state_dir).map_err(io(&self.target.state_dir))?;
        let part = part_path(&self.target.dir, &spec.name)?;
        let opened = self.landing.lock().expect("landing").clone();
        let landing = match opened {
            Some(landing) => landing,
            None => {
                let landing = self.open_landing(&part, &journal_path, &tree_path)?;
                *self.landing.lock().expect("landing") = Some(landing.clone());
                landing
            }
        };
        let written = landing.lock().expect("landing").written.clone();
        self.target.partials.insert(
            spec.hash,
            Partial {
                part: part.clone(),
                outboard: tree_path.clone(),
                size: spec.size,
                blocks: written,
            },
        );
        let swarm = self.sources.borrow().len() > 1 || self.route == Route::Swarm;
        let by_swarm = || {
            super::swarm::fetch(
                spec,
                self.sources.subscribe(),
                self.online.subscribe(),
                &self.dial,
                &self.throttles,
                &landing,
                &self.counters,
            )
        };
        let fetched = if swarm && spec.size > 0 {
            by_swarm().await
        } else {
            match self.fetch_missing(&landing).await {
                Ok(OneToOne::SecondSource) => {
                    allpeers_log::flesh!(hash = %spec.hash, "files: a second source is named: the swarm goes on from what landed");
                    by_swarm().await
                }
                fetched => fetched.map(|_| ()),
            }
        };
        if let Err(error) = fetched {
            self.target.partials.remove(&spec.hash);
            return Err(error);
        }
        landing
            .lock()
            .expect("landing")
            .file
            .sync_all()
            .map_err(io(&part))?;
        let final_path = free_name(&final_path);
        std::fs::rename(&part, &final_path).map_err(io(&final_path))?;
        self.target.partials.remove(&spec.hash);
        crate::cache::write_atomically(&done_path, final_path.as_os_str().as_encoded_bytes())
            .map_err(io(&done_path))?;
        let _ = std::fs::remove_file(&journal_path);
        let _ = std::fs::remove_file(&tree_path);
        allpeers_log::flesh!(hash = %spec.hash, path = %final_path.display(), "files: downloaded and verified");
        self.serve_on(final_path).await;
        Ok(())
    }

    /// Adds the whole file to the shared files, so members may fetch it from us (its tree is computed again from
    /// the file on disk: cheap beside the download, and right whatever runs the partial tree came from).
    async fn serve_on(&self, path: PathBuf) {
        let Some(outboards) = self.target.outboards.clone() else {
            return;
        };
        let hash = self.spec.hash;
        let added = tokio::task::spawn_blocking(move || outboards.add_file(&path)).await;
        match added {
            Ok(Ok(shared)) if shared.hash == hash => {}
            Ok(Ok(shared)) => {
                allpeers_log::skin!(%hash, now = %shared.hash, "files: the downloaded file changed before it was served on")
            }
            Ok(Err(error)) => {
                allpeers_log::flesh!(%hash, %error, "files: the downloaded file is not served on")
            }
            Err(_) => {}
        }
    }

    fn open_landing(
        &self,
        part: &Path,
        journal_path: &Path,
        tree_path: &Path,
    ) -> Result<Arc<Mutex<Landing>>, DownloadError> {
        let spec = &self.spec;
        let io = |source| DownloadError::io(part.to_path_buf(), source);
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
        reserve_disk(&file, spec.size).map_err(io)?;
        // The tree nodes of the blocks journaled before, if they were kept: without them, those blocks are not
        // served on (a node we never received would be zeros, and the asker would drop us for it).
        let tree_io = |source| DownloadError::io(tree_path.to_path_buf(), source);
        let tree_kept = tree_path.exists();
        let tree = BaoTree::new(spec.size, BLOCK_SIZE);
        let tree_file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(tree_path)
            .map_err(tree_io)?;
        tree_file.set_len(tree.outboard_size()).map_err(tree_io)?;
        let written = if tree_kept {
            done.clone()
        } else {
            PieceSet::new(done.len())
        };
        self.counters
            .done
            .store(done_bytes(&done, spec.size), Ordering::Relaxed);
        Ok(Arc::new(Mutex::new(Landing {
            file,
            outboard: PreOrderOutboard {
                root: blake3::Hash::from_bytes(spec.hash.0),
                tree,
                data: tree_file,
            },
            written: Arc::new(Written::new(written)),
            nodes: Vec::new(),
            nodes_at: 0,
            nodes_unsynced: false,
            held: Default::default(),
            unsaved: Vec::new(),
            journal,
            done,
            pending: Vec::new(),
            pending_bytes: 0,
            last_commit: Instant::now(),
            size: spec.size,
            counters: self.counters.clone(),
            space: self.target.space.clone(),
            _progress: self.progress.clone(),
        })))
    }

    /// Asks each source in turn for everything from the first missing block, until the file is whole, a second
    /// source is named (the swarm then goes on from what landed: the body under way is stopped, and what it
    /// brought verified, written and journaled first) or none is (the download fails, keeping what landed).
    async fn fetch_missing(
        &self,
        landing: &Arc<Mutex<Landing>>,
    ) -> Result<OneToOne, DownloadError> {
        let spec = &self.spec;
        let mut banned: Vec<String> = Vec::new();
        let mut last_error = String::from("no sources");
        // Whether the sources were asked again after a connection that broke once it was up.
        let mut asked_again = false;
        loop {
            let Some(first) = landing.lock().expect("landing").first_missing() else {
                return Ok(OneToOne::Whole);
            };
            match self.sources.borrow().len() {
                // Withdrawn (we left the share, or its owner took the file out): as the swarm does.
                0 => {
                    return Err(DownloadError::NoSource(
                        "no source is named any more".into(),
                    ));
                }
                1 => {}
                _ => return Ok(OneToOne::SecondSource),
            }
            let start = u64::from(first) * BLOCK_BYTES;
            let before = self.counters.done.load(Ordering::Relaxed);
            let mut progressed = false;
            let mut broke = false;
            let candidates: Vec<String> = self
                .sources
                .borrow()
                .iter()
                .filter(|s| !banned.contains(s))
                .cloned()
                .collect();
            for source in candidates {
                match self.fetch_from(&source, start, landing).await {
                    Ok(BodyEnd::Whole) => {
                        progressed = true;
                        break;
                    }
                    // The sources changed under the body: what it brought is kept; look again.
                    Ok(BodyEnd::Stopped) => {
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
                    // Our disk, not the source: no other source would fare better.
                    Err(FetchError::Landing(error)) => {
                        return Err(DownloadError::io(
                            part_path(&self.target.dir, &spec.name)?,
                            error,
                        ));
                    }
                    Err(error) => {
                        allpeers_log::flesh!(hash = %spec.hash, peer = %source, %error, "files: a source failed");
                        broke |= error.is_connection_lost();
                        last_error = format!("{source}: {error}");
                    }
                }
                // Blocks verified before the failure are kept; the next source starts after them.
                if self.counters.done.load(Ordering::Relaxed) > before {
                    progressed = true;
                    break;
                }
            }
            if progressed {
                asked_again = false;
                continue;
            }
            // A connection that broke once it was up (most often one of two connections that formed at once, as a
            // peer comes back, closed under our stream) is no reason to wait out the manager's backoff: the sources
            // are asked once more, a moment later, before the attempt fails.
            if broke && !asked_again {
                asked_again = true;
                tokio::time::sleep(ASK_AGAIN_AFTER).await;
                continue;
            }
            return Err(DownloadError::NoSource(last_error));
        }
    }

    async fn fetch_from(
        &self,
        source: &str,
        start: u64,
        landing: &Arc<Mutex<Landing>>,
    ) -> Result<BodyEnd, FetchError> {
        let spec = &self.spec;
        let _in_use = Counters::using(&self.counters, source);
        let answer = async {
            let io = (self.dial)(source.to_string()).await?;
            http::get(io, spec.hash, spec.size, start).await
        };
        let fetch = tokio::time::timeout(ANSWER_TIMEOUT, answer)
            .await
            .map_err(|_| FetchError::Io(std::io::ErrorKind::TimedOut.into()))??;
        let sink_landing = landing.clone();
        let decoder = self.counters.decoders.start();
        let counters = self.counters.clone();
        let name = source.to_string();
        let mut sources = self.sources.subscribe();
        // A second source named (the swarm goes on) or none left (the download stops).
        let sources_changed = async move {
            if sources.wait_for(|s| s.len() != 1).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let result = fetch
            .receive_until(
                self.throttles.clone(),
                move |item| {
                    // Held as long as the decoder thread runs (see `Decoders`).
                    let _running = &decoder;
                    let block = match &item {
                        Verified::Block { data, .. } => data.len() as u64,
                        Verified::Parent(..) => 0,
                    };
                    counters.received.fetch_add(block, Ordering::Relaxed);
                    // Credited once written (adjacent blocks are written together): a block our disk refused is not the
                    // source's.
                    let written = sink_landing.lock().expect("landing").gather(item)?;
                    if written > 0 {
                        counters.kept_from(&name, written);
                    }
                    Ok(())
                },
                sources_changed,
            )
            .await;
        let committed = commit_apart(landing).await;
        if let Ok(written @ 1..) = committed {
            self.counters.kept_from(source, written);
        }
        let end = result?;
        committed.map(|_| end).map_err(FetchError::Landing)
    }
}

/// Takes the disk space the whole file needs at once (`fallocate`): a file that cannot fit pauses as it starts, the
/// disk left as it was, instead of filling it and failing part-way; the file system also lays the file out in one go
/// (the bulk row ran 2-5% faster). Space already held (a resumed download) is not asked again. Where the file system
/// cannot preallocate, nothing is reserved and the writes find out as they go (`StorageFull` pauses then too).
fn reserve_disk(file: &File, size: u64) -> std::io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::unix::fs::MetadataExt;
        let held = file.metadata()?.blocks() * 512;
        let needed = size.saturating_sub(held);
        // A file system that cannot say (or preallocate) is left to the writes.
        let Ok(disk) = rustix::fs::fstatvfs(file) else {
            return Ok(());
        };
        let free = disk.f_bavail.saturating_mul(disk.f_frsize);
        let out_of_space = || {
            std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!(
                    "not enough disk space: {} more needed, {} free",
                    mib(needed),
                    mib(free)
                ),
            )
        };
        if needed > free {
            return Err(out_of_space());
        }
        match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, size) {
            Err(rustix::io::Errno::NOSPC) => Err(out_of_space()),
            // Not supported here (or refused for another reason): the writes will tell.
            Ok(()) | Err(_) => Ok(()),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (file, size);
        Ok(())
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
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

    use std::sync::atomic::AtomicU64;

    use super::*;
    use crate::blob::PeerIo;
    use crate::blob::http::{Lookup, Refusal, StatusCode, serving as honest};
    use crate::blob::outboards::{Growing, Outboards};
    use crate::blob::partial::{Partials, Serving};

    fn content(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8)
            .collect()
    }

    /// Peers on pipes: each name serves through its own lookup.
    fn dial(peers: HashMap<String, Lookup>) -> Dial {
        dial_sending_at(peers, HashMap::new())
    }

    /// Peers on pipes, those named in `rates` sending at most that many bytes a second (all their connections
    /// together).
    fn dial_sending_at(peers: HashMap<String, Lookup>, rates: HashMap<String, u64>) -> Dial {
        let peers = Arc::new(peers);
        let throttles: Arc<HashMap<String, Arc<Throttle>>> = Arc::new(
            rates
                .into_iter()
                .map(|(name, up)| {
                    let limits = Limits {
                        down: None,
                        up: Some(up),
                    };
                    (name, Arc::new(Throttle::new(limits)))
                })
                .collect(),
        );
        Arc::new(move |peer: String| {
            let peers = peers.clone();
            let throttles = Throttles(throttles.get(&peer).cloned().into_iter().collect());
            Box::pin(async move {
                let lookup = peers
                    .get(&peer)
                    .cloned()
                    .ok_or_else(|| std::io::Error::other("no such peer"))?;
                let (ours, theirs) = tokio::io::duplex(1 << 20);
                tokio::spawn(async move {
                    let _ = http::serve(theirs, lookup, throttles).await;
                });
                Ok(Box::new(ours) as Box<dyn PeerIo>)
            })
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
            partials: Partials::default(),
            outboards: None,
            space: Arc::new(SpaceAccount::new(None)),
        }
    }

    #[tokio::test]
    async fn a_source_sending_bad_bytes_is_dropped_and_the_file_comes_whole_from_another() {
        let f = fixture(1_000_000, &["mallory", "alice"]);
        // Mallory serves the right tree over a copy with a byte of every block changed (the swarm may ask it for
        // any block).
        let tampered_path = f.dir.path().join("tampered.bin");
        let mut tampered = f.data.clone();
        for block in tampered.chunks_mut(BLOCK_BYTES as usize) {
            block[0] ^= 1;
        }
        std::fs::write(&tampered_path, &tampered).unwrap();
        let good = f.outboards.clone();
        let mallory: Lookup = Arc::new(move |hash| {
            let mut source = good
                .open_source(&hash)
                .map_err(|e| Refusal::new(StatusCode::NOT_FOUND, e.to_string()))?;
            source.file = File::open(&tampered_path).unwrap();
            // A tampering node runs its own code: no check of its file's stamps stops it.
            source.stamps = None;
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

    /// `f`'s download from honest `peers` (each sending at most its rate a second, if it has one), once it holds
    /// 256 KiB.
    async fn under_way(f: &Fixture, peers: &[(&str, Option<u64>)]) -> FileHandle {
        let lookups = peers
            .iter()
            .map(|(name, _)| (name.to_string(), honest(&f.outboards)))
            .collect();
        let rates = peers
            .iter()
            .filter_map(|(name, rate)| rate.map(|rate| (name.to_string(), rate)))
            .collect();
        let handle = start(
            f.spec.clone(),
            target(f.dir.path()),
            dial_sending_at(lookups, rates),
            Arc::new(Throttle::default()),
            Limits::default(),
        );
        let mut progress = handle.watch();
        tokio::time::timeout(
            Duration::from_secs(20),
            progress.wait_for(|p| p.done_bytes >= 256 * 1024),
        )
        .await
        .unwrap()
        .unwrap();
        handle
    }

    /// Waits until `handle` has landed `f` whole, checks its bytes, and says what each source gave.
    async fn landed_whole(f: &Fixture, handle: &FileHandle) -> HashMap<String, u64> {
        tokio::time::timeout(Duration::from_secs(20), handle.wait_complete())
            .await
            .unwrap()
            .unwrap();
        let landed = f.dir.path().join("Downloads").join("film.mkv");
        assert_eq!(std::fs::read(&landed).unwrap(), f.data);
        handle.sources().into_iter().collect()
    }

    #[tokio::test]
    async fn a_source_named_while_one_to_one_runs_moves_it_to_the_swarm_and_gives_bytes() {
        let f = fixture(4 * 1024 * 1024, &["alice"]);
        // Alice is slow: without carol the download would take 8 s.
        let handle = under_way(&f, &[("alice", Some(512 * 1024)), ("carol", None)]).await;
        handle.set_sources(vec!["alice".into(), "carol".into()]);
        let sources = landed_whole(&f, &handle).await;
        assert!(
            sources.get("alice").copied().unwrap_or(0) >= 256 * 1024,
            "{sources:?}"
        );
        assert!(
            sources.get("carol").copied().unwrap_or(0) >= 2 * 1024 * 1024,
            "the fast newcomer gave most of it: {sources:?}"
        );
        assert_eq!(sources.values().sum::<u64>(), f.data.len() as u64);
    }

    #[tokio::test]
    async fn a_swarm_asks_a_source_named_while_it_runs_at_once() {
        let f = fixture(4 * 1024 * 1024, &["alice", "bob"]);
        // Alice and bob are slow: 8 s for the file without carol.
        let slow = Some(256 * 1024);
        let handle = under_way(&f, &[("alice", slow), ("bob", slow), ("carol", None)]).await;
        handle.set_sources(vec!["alice".into(), "bob".into(), "carol".into()]);
        let sources = landed_whole(&f, &handle).await;
        assert!(
            sources.get("carol").copied().unwrap_or(0) >= 2 * 1024 * 1024,
            "the fast newcomer gave most of it: {sources:?}"
        );
    }

    /// Names no source any more; the download must fail within 3 s, saying so.
    async fn withdrawn_fails_at_once(handle: &FileHandle) {
        handle.set_sources(vec![]);
        let ended = tokio::time::timeout(Duration::from_secs(3), handle.wait_complete())
            .await
            .expect("ends at once");
        match ended {
            Err(TransferState::Failed(why)) => assert!(why.contains("no source is named"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_swarm_whose_sources_are_all_withdrawn_stops_asking_and_fails_at_once() {
        let f = fixture(4 * 1024 * 1024, &["alice", "bob"]);
        let slow = Some(256 * 1024);
        let handle = under_way(&f, &[("alice", slow), ("bob", slow)]).await;
        // Both would need 7 s more; withdrawn, the download ends within a second (the swarm's next look).
        withdrawn_fails_at_once(&handle).await;
        assert!(handle.progress().done_bytes < f.data.len() as u64);
    }

    /// A swarm source out of reach is dialled again after a backoff that grows to 5 s; told it came online
    /// (`FileHandle::source_online`, from its presence or its connection), the swarm dials it at once.
    #[tokio::test]
    async fn a_swarm_source_that_comes_online_is_dialled_at_once_not_after_its_backoff() {
        use std::sync::atomic::AtomicBool;

        let f = fixture(1_000_000, &["alice", "bob"]);
        // Bob holds nothing (a member who never fetched the file): he answers, so the swarm goes on waiting for alice.
        let nothing: Lookup = Arc::new(|_| Err(Refusal::new(StatusCode::NOT_FOUND, "not here")));
        let peers = dial(HashMap::from([
            ("alice".to_string(), honest(&f.outboards)),
            ("bob".to_string(), nothing),
        ]));
        let online = Arc::new(AtomicBool::new(false));
        let (dialled, mut alice_dials) = watch::channel(0u32);
        let dial: Dial = {
            let online = online.clone();
            Arc::new(move |peer: String| {
                if peer == "alice" {
                    dialled.send_modify(|n| *n += 1);
                    if !online.load(Ordering::SeqCst) {
                        return Box::pin(async { Err(std::io::Error::other("cannot reach")) });
                    }
                }
                peers(peer)
            })
        };
        let handle = start(
            f.spec.clone(),
            target(f.dir.path()),
            dial,
            Arc::new(Throttle::default()),
            Limits::default(),
        );
        // Eight failures in a row (two workers): each now waits 5 s, and the next dial is at least 2 s away.
        tokio::time::timeout(Duration::from_secs(30), alice_dials.wait_for(|n| *n >= 8))
            .await
            .expect("alice dialled eight times")
            .unwrap();
        let before = *alice_dials.borrow_and_update();
        online.store(true, Ordering::SeqCst);
        handle.source_online("alice");
        tokio::time::timeout(
            Duration::from_secs(1),
            alice_dials.wait_for(|n| *n > before),
        )
        .await
        .expect("dialled at once, not after its backoff")
        .unwrap();
        let sources = landed_whole(&f, &handle).await;
        assert_eq!(sources.get("alice"), Some(&(f.data.len() as u64)));
    }

    /// The same for a one-to-one download: its body is stopped, what it brought kept, and it fails at once.
    #[tokio::test]
    async fn a_one_to_one_download_whose_source_is_withdrawn_stops_and_fails_at_once() {
        let f = fixture(4 * 1024 * 1024, &["alice"]);
        let handle = under_way(&f, &[("alice", Some(256 * 1024))]).await;
        // Alice would need 15 s more; withdrawn, the body stops now.
        withdrawn_fails_at_once(&handle).await;
        let done = handle.progress().done_bytes;
        assert!(done > 0 && done < f.data.len() as u64, "{done}");
    }

    /// A connection that breaks once it is up (its other end closed after reading the request, or gone under the
    /// stream as the dial opened it — as a duplicate connection is closed) is not the download's end: its source
    /// is asked again a moment later.
    #[tokio::test]
    async fn a_connection_that_breaks_once_up_is_followed_by_a_second_ask_not_a_failure() {
        use tokio::io::AsyncReadExt;

        for http_broke in [true, false] {
            let f = fixture(1_000_000, &["alice"]);
            let lookup = honest(&f.outboards);
            let dials = Arc::new(AtomicU64::new(0));
            let counted = dials.clone();
            let dial: Dial = Arc::new(move |_peer: String| {
                let (lookup, first) = (lookup.clone(), counted.fetch_add(1, Ordering::SeqCst) == 0);
                Box::pin(async move {
                    if first && !http_broke {
                        let lost = std::io::ErrorKind::ConnectionAborted;
                        return Err(std::io::Error::new(lost, "stream: connection lost"));
                    }
                    let (ours, mut theirs) = tokio::io::duplex(1 << 20);
                    tokio::spawn(async move {
                        if first {
                            // Reads the request's first bytes, then the connection is gone.
                            let _ = theirs.read(&mut [0u8; 64]).await;
                        } else {
                            let _ = http::serve(theirs, lookup, Throttles(vec![])).await;
                        }
                    });
                    Ok(Box::new(ours) as Box<dyn PeerIo>)
                })
            });
            let handle = start(
                f.spec.clone(),
                target(f.dir.path()),
                dial,
                Arc::new(Throttle::default()),
                Limits::default(),
            );
            tokio::time::timeout(Duration::from_secs(10), handle.wait_complete())
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("http_broke {http_broke}: {e:?}"));
            assert_eq!(dials.load(Ordering::SeqCst), 2);
            let landed = f.dir.path().join("Downloads").join("film.mkv");
            assert_eq!(std::fs::read(&landed).unwrap(), f.data);
        }
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
            // The progress line counts the one source in use while it is.
            progress.wait_for(|p| p.done_bytes >= 1024 * 1024 && p.sources == 1),
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
        // Done: no source is in use any more.
        assert_eq!(second.progress().sources, 0);
        let fetched = second.progress().downloaded;
        assert!(
            fetched <= f.data.len() as u64 - 1024 * 1024,
            "fetched {fetched} again"
        );
    }

    /// `stop` returns once every block the download wrote is synced and journaled and its files are let go, so a
    /// start right after (the manager paused the file, then restarted) resumes from all of it and no writer of the
    /// stopped run races the next run's journal. Before, `stop` only sent the command: blocks written since the
    /// last group commit were never journaled, and a decoder thread could go on writing after `stop` returned.
    /// Repeated, since the stopped run's last writes race the stop.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_download_has_journaled_every_block_it_wrote_when_stop_returns() {
        // Large enough that four rounds of a throttled half MiB (and the throttle's burst) leave some to fetch.
        let f = fixture(16 * 1024 * 1024, &["alice"]);
        let peers = HashMap::from([("alice".to_string(), honest(&f.outboards))]);
        let target = target(f.dir.path());
        let (dir, state_dir) = (target.dir.clone(), target.state_dir.clone());
        let [journal_path, ..] = state_files(&state_dir, &f.spec.hash);
        let part = part_path(&dir, &f.spec.name).unwrap();
        let blocks = blocks(f.spec.size);
        let mut content_id = [0u8; 20];
        content_id.copy_from_slice(&f.spec.hash.0[..20]);
        let start_one = |limits| {
            start(
                f.spec.clone(),
                Target {
                    dir: dir.clone(),
                    state_dir: state_dir.clone(),
                    partials: Partials::default(),
                    outboards: None,
                    space: Arc::new(SpaceAccount::new(None)),
                },
                dial(peers.clone()),
                Arc::new(Throttle::default()),
                limits,
            )
        };
        let slow = Limits {
            down: Some(2 * 1024 * 1024),
            up: None,
        };
        let mut journaled_before = 0;
        for round in 0..4 {
            let handle = start_one(slow);
            let mut progress = handle.watch();
            // Paused part way by the user, as the manager does before it shuts down.
            tokio::time::timeout(
                Duration::from_secs(20),
                progress.wait_for(|p| p.downloaded >= 512 * 1024),
            )
            .await
            .unwrap()
            .unwrap();
            handle.pause().await;
            handle.stop().await;
            let (journal, done) = Journal::open(&journal_path, content_id, blocks).unwrap();
            drop(journal);
            let on_disk = std::fs::read(&part).unwrap();
            let written: Vec<u32> = (0..blocks)
                .filter(|&b| {
                    let start = (u64::from(b) * BLOCK_BYTES) as usize;
                    let end = (start + BLOCK_BYTES as usize).min(f.data.len());
                    on_disk[start..end] == f.data[start..end]
                })
                .collect();
            let unjournaled: Vec<u32> = written
                .iter()
                .copied()
                .filter(|&b| !done.contains(b))
                .collect();
            assert!(
                unjournaled.is_empty(),
                "round {round}: blocks written and not journaled when stop returned: {unjournaled:?}"
            );
            assert!(
                done.count() > journaled_before,
                "round {round}: resumed and went on"
            );
            journaled_before = done.count();
        }
        let last = start_one(Limits::default());
        tokio::time::timeout(Duration::from_secs(20), last.wait_complete())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            std::fs::read(dir.join("film.mkv")).unwrap(),
            f.data,
            "whole and right after four stops"
        );
    }

    /// Waits until `download` leaves `downloading`: it must be paused; its progress then, and the reason.
    async fn until_paused(download: &FileHandle) -> (Progress, String) {
        let mut progress = download.watch();
        let now = tokio::time::timeout(
            Duration::from_secs(20),
            progress.wait_for(|p| !matches!(p.state, TransferState::Downloading)),
        )
        .await
        .unwrap()
        .unwrap()
        .clone();
        match &now.state {
            TransferState::Paused(reason) => (now.clone(), reason.clone()),
            other => panic!("{other:?}"),
        }
    }

    /// Downloads share the byte limit torrents have: a file download reaching it pauses with the reason (as a
    /// torrent does), keeping what it wrote; once the limit is raised, a resume finishes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_download_reaching_the_byte_limit_pauses_and_resumes_when_raised() {
        let f = fixture(12 * 1024 * 1024, &["alice"]);
        let peers = HashMap::from([("alice".to_string(), honest(&f.outboards))]);
        let space = Arc::new(SpaceAccount::new(Some(4 * 1024 * 1024)));
        let download = start(
            f.spec.clone(),
            Target {
                space: space.clone(),
                ..target(f.dir.path())
            },
            dial(peers),
            Arc::new(Throttle::default()),
            Limits::default(),
        );
        let (paused, reason) = until_paused(&download).await;
        assert!(reason.contains("limit of 4194304 bytes"), "{reason}");
        assert!(
            paused.done_bytes <= 4 * 1024 * 1024,
            "{}",
            paused.done_bytes
        );
        assert_eq!(space.used(), paused.done_bytes, "what it wrote is counted");

        space.set_limit(None);
        download.resume().await;
        tokio::time::timeout(Duration::from_secs(20), download.wait_complete())
            .await
            .unwrap()
            .unwrap();
        let landed = f.dir.path().join("Downloads").join("film.mkv");
        assert_eq!(std::fs::read(&landed).unwrap(), f.data);
        assert_eq!(space.used(), f.data.len() as u64);
    }

    /// A file that cannot fit on its disk pauses as it starts, saying so, with the disk left as it was — not filled
    /// up by a download that would fail part-way. A real file system: a 4 MiB tmpfs (mounted here: needs root, as
    /// the network namespace tests do).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_larger_than_the_free_disk_pauses_at_once_and_fills_nothing() {
        let f = fixture(8 * 1024 * 1024, &["alice"]);
        let small = f.dir.path().join("small");
        std::fs::create_dir_all(&small).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
            .arg(&small)
            .status()
            .expect("mount");
        assert!(mounted.success(), "mounting a tmpfs needs root");
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount").arg(&self.0).status();
            }
        }
        let _unmount = Unmount(small.clone());
        let free = || {
            let disk = rustix::fs::statvfs(&small).unwrap();
            disk.f_bavail * disk.f_frsize
        };
        let free_before = free();
        let peers = HashMap::from([("alice".to_string(), honest(&f.outboards))]);
        let download = start(
            f.spec.clone(),
            Target {
                dir: small.join("Downloads"),
                ..target(f.dir.path())
            },
            dial(peers),
            Arc::new(Throttle::default()),
            Limits::default(),
        );
        let (paused, reason) = until_paused(&download).await;
        assert!(
            reason.contains("not enough disk space: 8.0 MiB more needed, 4.0 MiB free"),
            "{reason}"
        );
        assert_eq!(paused.downloaded, 0, "nothing asked of the source");
        assert_eq!(free(), free_before, "the disk is left as it was");
        download.stop().await;
    }

    /// A pause, then a resume, fetches nothing twice — one-to-one and from a swarm. Before, a resume started from the
    /// last commit of the journal (up to 16 MiB or 1 s back) and fetched again what the attempt had written since: a
    /// 1.5 MiB here, 7 MiB in the demo at 32 MiB/s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_download_paused_and_resumed_fetches_nothing_twice() {
        for sources in [vec!["alice"], vec!["alice", "carol"]] {
            let f = fixture(24 * 1024 * 1024, &[]);
            let carol = Partials::default();
            let peers = HashMap::from([
                ("alice".to_string(), honest(&f.outboards)),
                ("carol".to_string(), partial(&carol)),
            ]);
            let spec = FileSpec {
                sources: sources.iter().map(|s| s.to_string()).collect(),
                ..f.spec.clone()
            };
            let download = start(
                spec,
                target(f.dir.path()),
                dial(peers),
                Arc::new(Throttle::default()),
                Limits {
                    down: Some(8 * 1024 * 1024),
                    up: None,
                },
            );
            let mut progress = download.watch();
            tokio::time::timeout(
                Duration::from_secs(20),
                progress.wait_for(|p| p.done_bytes >= 10 * 1024 * 1024),
            )
            .await
            .unwrap()
            .unwrap();
            download.pause().await;
            // Paused when `pause` returns: what came is written and journaled by then.
            let paused = download.progress();
            assert!(
                matches!(paused.state, TransferState::Paused(_)),
                "{:?}",
                paused.state
            );
            download.resume().await;
            tokio::time::timeout(Duration::from_secs(30), download.wait_complete())
                .await
                .unwrap()
                .unwrap();
            let p = download.progress();
            assert!(
                // What a swarm's requests cut short had gathered and not written is lost: a quarter MiB each.
                p.downloaded
                    <= f.data.len() as u64
                        + crate::blob::sources::REQUESTS_PER_SOURCE as u64
                            * crate::blob::GATHER_BYTES,
                "{sources:?}: {} bytes received for {}",
                p.downloaded,
                f.data.len()
            );
        }
    }

    /// A lookup that serves what `partials` holds (a downloader serving on).
    fn partial(partials: &Partials) -> Lookup {
        let partials = partials.clone();
        Arc::new(move |hash| match partials.open_source(&hash) {
            Serving::Held(Ok(source)) => Ok(source),
            Serving::Held(Err(error)) => {
                Err(Refusal::new(StatusCode::NOT_FOUND, error.to_string()))
            }
            Serving::NothingYet(news) => Err(Refusal::not_yet("nothing yet", news)),
        })
    }

    fn swarm_target(dir: &Path, name: &str, partials: &Partials) -> Target {
        Target {
            dir: dir.join(name),
            state_dir: dir.join(format!("{name}-state")),
            partials: partials.clone(),
            outboards: None,
            space: Arc::new(SpaceAccount::new(None)),
        }
    }

    /// A share of many members: at most `MAX_ASKED` sources are asked at once; members holding nothing give their
    /// turn up, so the one holder, named last, is reached.
    #[tokio::test]
    async fn a_swarm_of_many_members_asks_a_bounded_few_at_once_and_reaches_the_holder_named_last()
    {
        use crate::blob::sources::MAX_ASKED;

        let f = fixture(2 * 1024 * 1024, &[]);
        let idle = Partials::default();
        let mut peers: HashMap<String, Lookup> = (0..MAX_ASKED + 4)
            .map(|i| (format!("idle{i}"), partial(&idle)))
            .collect();
        peers.insert("alice".into(), honest(&f.outboards));
        let mut names: Vec<String> = (0..MAX_ASKED + 4).map(|i| format!("idle{i}")).collect();
        names.push("alice".into());
        // Alice is slow (4 s for the file), so the sources asked are seen for a while.
        let rates = HashMap::from([("alice".to_string(), 512 * 1024)]);
        let handle = start(
            FileSpec {
                sources: names,
                ..f.spec.clone()
            },
            target(f.dir.path()),
            dial_sending_at(peers, rates),
            Arc::new(Throttle::default()),
            Limits::default(),
        );
        let mut progress = handle.watch();
        let mut most = 0;
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let p = progress.borrow_and_update().clone();
                most = most.max(p.sources);
                if p.state != TransferState::Downloading {
                    return;
                }
                if progress.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .unwrap();
        handle.wait_complete().await.unwrap();
        let landed = f.dir.path().join("Downloads").join("film.mkv");
        assert_eq!(std::fs::read(&landed).unwrap(), f.data);
        let sources: HashMap<String, u64> = handle.sources().into_iter().collect();
        assert_eq!(sources.get("alice"), Some(&(f.data.len() as u64)));
        assert!(most >= 2, "alice and some idle member at once: {most}");
        assert!(most as usize <= MAX_ASKED, "{most} sources asked at once");
    }

    #[tokio::test]
    async fn downloaders_in_a_swarm_fetch_from_each_other_as_soon_as_they_hold_chunks() {
        let f = fixture(4 * 1024 * 1024, &[]);
        let (bob, carol) = (Partials::default(), Partials::default());
        let peers = HashMap::from([
            ("alice".to_string(), honest(&f.outboards)),
            ("bob".to_string(), partial(&bob)),
            ("carol".to_string(), partial(&carol)),
        ]);
        // Alice's upload is slow: each downloader alone would take a second.
        let alice_sends = HashMap::from([("alice".to_string(), 4 << 20)]);
        let spec = |sources: [&str; 2]| FileSpec {
            sources: sources.iter().map(|s| s.to_string()).collect(),
            ..f.spec.clone()
        };
        let start_one = |name: &str, sources, partials: &Partials| {
            start(
                spec(sources),
                swarm_target(f.dir.path(), name, partials),
                dial_sending_at(peers.clone(), alice_sends.clone()),
                Arc::new(Throttle::default()),
                Limits::default(),
            )
        };
        let bob_download = start_one("bob", ["alice", "carol"], &bob);
        let carol_download = start_one("carol", ["alice", "bob"], &carol);
        for download in [&bob_download, &carol_download] {
            tokio::time::timeout(Duration::from_secs(30), download.wait_complete())
                .await
                .unwrap()
                .unwrap();
        }
        for (name, download, other) in [
            ("bob", &bob_download, "carol"),
            ("carol", &carol_download, "bob"),
        ] {
            let landed = f.dir.path().join(name).join("film.mkv");
            assert_eq!(std::fs::read(&landed).unwrap(), f.data, "{name}");
            let sources: HashMap<String, u64> = download.sources().into_iter().collect();
            assert_eq!(
                sources.values().sum::<u64>(),
                f.data.len() as u64,
                "{name}: {sources:?}"
            );
            assert!(
                sources.get(other).copied().unwrap_or(0) > 0,
                "{name} got nothing from {other}: {sources:?}"
            );
        }
        // Done: no longer served as a download under way.
        assert!(matches!(
            bob.open_source(&f.spec.hash),
            Serving::NothingYet(_)
        ));
    }

    #[tokio::test]
    async fn a_swarm_drops_a_tampering_and_a_lying_source_and_outlives_one_that_vanishes() {
        let f = fixture(3 * 1024 * 1024, &[]);
        // Mallory serves the right tree over a copy with every byte changed.
        let tampered_path = f.dir.path().join("tampered.bin");
        let tampered: Vec<u8> = f.data.iter().map(|b| b ^ 0x5a).collect();
        std::fs::write(&tampered_path, &tampered).unwrap();
        let good = f.outboards.clone();
        let mallory: Lookup = Arc::new(move |hash| {
            let mut source = good
                .open_source(&hash)
                .map_err(|e| Refusal::new(StatusCode::NOT_FOUND, e.to_string()))?;
            source.file = File::open(&tampered_path).unwrap();
            // A tampering node runs its own code: no check of its file's stamps stops it.
            source.stamps = None;
            Ok(source)
        });
        // The liar says it holds everything (its HEAD), then holds one block when asked for a range.
        let good = f.outboards.clone();
        let asked = Arc::new(AtomicU64::new(0));
        let liar: Lookup = Arc::new(move |hash| {
            let mut source = good
                .open_source(&hash)
                .map_err(|e| Refusal::new(StatusCode::NOT_FOUND, e.to_string()))?;
            if asked.fetch_add(1, Ordering::Relaxed) > 0 {
                let mut held = PieceSet::new(blocks(source.size));
                held.insert(0);
                // Its download is over (the sender is gone): nothing to wait for.
                source.growing = Some(Growing {
                    held,
                    more: watch::channel(0).1,
                });
            }
            Ok(source)
        });
        let mut peers = HashMap::from([
            ("mallory".to_string(), mallory),
            ("liar".to_string(), liar),
            ("alice".to_string(), honest(&f.outboards)),
        ]);
        // Vanishing: honest, but its first connection is cut after 30 ms, and it cannot be reached after that.
        let vanishing = honest(&f.outboards);
        let reached = Arc::new(AtomicU64::new(0));
        // Alice is slow (the whole file would take her 0.4 s): the others are asked too.
        let honest_dial = dial_sending_at(
            std::mem::take(&mut peers),
            HashMap::from([("alice".to_string(), 8 << 20)]),
        );
        let dial: Dial = Arc::new(move |peer: String| {
            if peer != "vanishing" {
                return honest_dial(peer);
            }
            let lookup = vanishing.clone();
            let first = reached.fetch_add(1, Ordering::Relaxed) == 0;
            Box::pin(async move {
                if !first {
                    return Err(std::io::Error::other("gone"));
                }
                let (ours, theirs) = tokio::io::duplex(1 << 20);
                let server = tokio::spawn(async move {
                    let _ = http::serve(theirs, lookup, Throttles(vec![])).await;
                });
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    server.abort();
                });
                Ok(Box::new(ours) as Box<dyn PeerIo>)
            })
        });
        let spec = FileSpec {
            sources: ["vanishing", "mallory", "liar", "alice"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ..f.spec.clone()
        };
        let handle = start(
            spec,
            swarm_target(f.dir.path(), "bob", &Partials::default()),
            dial,
            Arc::new(Throttle::default()),
            Limits::default(),
        );
        tokio::time::timeout(Duration::from_secs(30), handle.wait_complete())
            .await
            .unwrap()
            .unwrap();
        let landed = f.dir.path().join("bob").join("film.mkv");
        assert_eq!(std::fs::read(&landed).unwrap(), f.data);
        let progress = handle.progress();
        assert!(progress.hash_failures >= 1, "{progress:?}");
        assert_eq!(
            progress.banned_peers, 2,
            "mallory and the liar: {progress:?}"
        );
        let sources: HashMap<String, u64> = handle.sources().into_iter().collect();
        assert_eq!(sources.get("mallory"), None, "{sources:?}");
        assert_eq!(sources.get("liar"), None, "{sources:?}");
        assert_eq!(sources.values().sum::<u64>(), f.data.len() as u64);
    }

    /// `f`'s download from honest `sources` onto a disk that takes no writes (the partial file opened read-only):
    /// it fails at once with the disk's error, no source banned or credited, nothing counted as done.
    async fn fails_on_its_own_disk(sources: &[&str]) {
        let f = fixture(1_000_000, sources);
        let peers = sources
            .iter()
            .map(|s| (s.to_string(), honest(&f.outboards)))
            .collect();
        let counters = Arc::new(Counters::default());
        let session = Session {
            route: Route::Auto,
            sources: Arc::new(watch::Sender::new(f.spec.sources.clone())),
            online: broadcast::channel(ONLINE_QUEUE).0,
            spec: f.spec.clone(),
            target: target(f.dir.path()),
            dial: dial(peers),
            throttles: Throttles(vec![]),
            counters: counters.clone(),
            progress: Arc::new(watch::channel(initial(f.spec.size)).0),
            landing: Mutex::new(None),
        };
        let [journal, _, tree] = state_files(&session.target.state_dir, &f.spec.hash);
        std::fs::create_dir_all(&session.target.dir).unwrap();
        std::fs::create_dir_all(&session.target.state_dir).unwrap();
        let part = part_path(&session.target.dir, &f.spec.name).unwrap();
        let landing = session.open_landing(&part, &journal, &tree).unwrap();
        landing.lock().unwrap().file = File::open(&part).unwrap();
        *session.landing.lock().unwrap() = Some(landing);
        let failed = tokio::time::timeout(Duration::from_secs(10), session.fetch())
            .await
            .expect("a disk error ends the download at once, not after a stall");
        assert!(
            matches!(&failed, Err(DownloadError::Io { .. })),
            "{sources:?}: {failed:?}"
        );
        assert_eq!(counters.banned.load(Ordering::Relaxed), 0, "{sources:?}");
        assert_eq!(counters.hash_failures.load(Ordering::Relaxed), 0);
        assert_eq!(counters.done.load(Ordering::Relaxed), 0, "{sources:?}");
        assert!(
            counters.sources.lock().unwrap().is_empty(),
            "no source credited for a block that never landed: {sources:?}"
        );
    }

    #[tokio::test]
    async fn a_disk_that_refuses_a_block_fails_the_download_and_blames_no_source() {
        fails_on_its_own_disk(&["alice"]).await;
        fails_on_its_own_disk(&["alice", "bob"]).await;
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
