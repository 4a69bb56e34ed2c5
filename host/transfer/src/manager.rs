//! The download manager, one for every protocol (BitTorrent, and files shared inside AllPeers — one-to-one over
//! HTTP from one source, the private swarm from several: [`crate::blob::download`]): a queue with priorities and a cap on active
//! downloads, pause / resume / cancel, retries with backoff after a failure, the list persisted across restarts,
//! progress and status as a stream of [`TransferEvent`]s at a bounded rate, per-transfer and global limits, and an
//! upload monitor (who takes what from us, how fast).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::blob::ContentHash;
use crate::blob::download::{self, FileHandle};
use crate::blob::outboards::Outboards;
use crate::blob::partial::Partials;
use crate::blob::{Dial, FileSpec};
use crate::bt::engine::{Engine, EngineConfig, EngineError, Target};
use crate::bt::magnet::{MagnetError, MagnetLink};
use crate::bt::metadata::{self, MetadataError};
use crate::bt::metainfo::{MetainfoError, Torrent};
use crate::bt::session::{PeerStats, Progress, SessionCommand, TorrentHandle, TransferState};
use crate::cache::write_atomically;
use crate::throttle::Limits;

pub type TransferId = u64;

/// Events buffered for a slow subscriber before it misses some (it then sees `Lagged` and reads `list`).
pub const EVENT_QUEUE: usize = 1024;
/// How long [`Manager::uploads`] waits for one session's answer (a session busy with a large batch answers late).
pub const UPLOADS_TIMEOUT: Duration = Duration::from_secs(1);
/// The persisted list: one file in the state directory.
const STATE_FILE: &str = "transfers.json";
/// The global limits last set through [`Manager::set_limits`]: they outlive a restart and win
/// over the engine configuration's (the user changed them after writing the configuration).
const LIMITS_FILE: &str = "limits.json";

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Metainfo(#[from] MetainfoError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Magnet(#[from] MagnetError),
    #[error("no transfer {0}")]
    Unknown(TransferId),
    #[error("files cannot be fetched: the network is not running")]
    NoNetwork,
    #[error("transfer {0} is not a shared file")]
    NotAFile(TransferId),
    #[error("the transfer list at {}: {source}", path.display())]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct ManagerConfig {
    pub engine: EngineConfig,
    /// Downloads running at once; the rest wait in the queue (seeding ones do not count).
    pub max_active: usize,
    /// Restarts after a failure before giving up.
    pub max_attempts: u32,
    /// Wait before the first restart; doubles each time.
    pub retry_delay: Duration,
    /// The limits of all transfers together until [`Manager::set_limits`] changes them (what it sets is
    /// kept in the state dir and wins from then on).
    pub global_limits: Limits,
    /// Opens a stream of the files service to a peer: how shared files are fetched (none: they cannot be).
    pub dial: Option<Dial>,
    /// One attempt at a magnet link's metadata: peers found through a tracker need a few seconds; when it runs out
    /// the attempt fails and is retried with the same backoff as a failed download.
    pub metadata_timeout: Duration,
    /// Files downloads under way, served to other members while they run.
    pub partials: Partials,
    /// Where a whole downloaded file is added so the node serves it on (none: it is not).
    pub outboards: Option<Outboards>,
}

impl ManagerConfig {
    pub fn new(engine: EngineConfig) -> Self {
        Self {
            engine,
            max_active: 3,
            max_attempts: 5,
            retry_delay: Duration::from_secs(5),
            global_limits: Limits::default(),
            dial: None,
            metadata_timeout: Duration::from_secs(60),
            partials: Partials::default(),
            outboards: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Queued,
    /// A magnet link's torrent is asked of its peers and trackers (it holds a download slot).
    FetchingMetadata,
    Downloading,
    Seeding,
    /// By the user, or for lack of space (the reason says which).
    Paused(String),
    /// Restarting after a failure.
    Retrying {
        attempt: u32,
        error: String,
    },
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct AddTransfer {
    /// The .torrent file's bytes.
    pub torrent: Vec<u8>,
    pub dir: PathBuf,
    /// Peers to dial besides the trackers'.
    pub peers: Vec<SocketAddr>,
    /// Higher starts first.
    pub priority: i32,
    pub sequential: bool,
    pub limits: Limits,
    /// Add without starting.
    pub paused: bool,
    /// The files in `dir` are the user's own: verified, then seeded in place — never written, never deleted by
    /// [`Manager::cancel`].
    pub seed_in_place: bool,
}

/// A magnet link: listed at once, its torrent fetched from the link's peers and trackers when its turn comes, then
/// downloaded like a .torrent added with [`AddTransfer`].
#[derive(Debug, Clone)]
pub struct AddMagnet {
    /// The link as given (kept, so a restart before the metadata came asks again).
    pub link: String,
    pub dir: PathBuf,
    /// Peers to dial besides the link's own (`x.pe`) and the trackers'.
    pub peers: Vec<SocketAddr>,
    pub priority: i32,
    pub sequential: bool,
    pub limits: Limits,
    pub paused: bool,
}

/// A file shared inside AllPeers, to fetch from the peers that hold it.
#[derive(Debug, Clone)]
pub struct AddFile {
    pub spec: FileSpec,
    pub dir: PathBuf,
    pub priority: i32,
    pub limits: Limits,
    pub paused: bool,
}

/// What a transfer's content is named by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKey {
    /// A torrent's info-hash (SHA-1).
    InfoHash([u8; 20]),
    /// A shared file's BLAKE3 hash.
    Blake3(ContentHash),
}

impl ContentKey {
    pub fn to_hex(&self) -> String {
        match self {
            ContentKey::InfoHash(hash) => hash.iter().map(|b| format!("{b:02x}")).collect(),
            ContentKey::Blake3(hash) => hash.to_hex(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TransferInfo {
    pub id: TransferId,
    pub name: String,
    pub content: ContentKey,
    pub dir: PathBuf,
    /// The content's length (known before the transfer runs).
    pub total_bytes: u64,
    pub priority: i32,
    pub status: Status,
    pub limits: Limits,
    /// The latest progress, once the transfer has run.
    pub progress: Option<Progress>,
    pub seed_in_place: bool,
    /// A shared file's sources (peer ids) and the verified bytes each gave this run.
    pub sources: Vec<(String, u64)>,
}

#[derive(Debug, Clone)]
pub enum TransferEvent {
    Added(TransferInfo),
    /// At most once a second per running transfer.
    Progress {
        id: TransferId,
        progress: Progress,
    },
    Status {
        id: TransferId,
        status: Status,
    },
    Removed {
        id: TransferId,
    },
}

/// What is persisted of a transfer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: TransferId,
    dir: PathBuf,
    peers: Vec<SocketAddr>,
    priority: i32,
    sequential: bool,
    limits: Limits,
    paused: bool,
    /// Absent in lists written before seeding in place existed.
    #[serde(default)]
    seed_in_place: bool,
    /// A shared file (absent: a torrent, kept beside the list as `<id>.torrent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    file: Option<FileSpec>,
    /// A magnet link whose torrent has not come yet (once it has, it is `<id>.torrent` and this goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    magnet: Option<String>,
}

#[derive(Debug, Clone)]
enum Content {
    Torrent(Torrent),
    /// A torrent known by its info-hash only, until its metadata comes.
    Magnet(MagnetLink),
    File(FileSpec),
}

impl Content {
    fn key(&self) -> ContentKey {
        match self {
            Content::Torrent(t) => ContentKey::InfoHash(t.info_hash),
            Content::Magnet(link) => ContentKey::InfoHash(link.info_hash),
            Content::File(f) => ContentKey::Blake3(f.hash),
        }
    }
}

/// A running transfer's handle, whatever its protocol.
#[derive(Debug, Clone)]
enum Running {
    Torrent(TorrentHandle),
    File(FileHandle),
}

impl Running {
    fn key(&self) -> ContentKey {
        match self {
            Running::Torrent(h) => ContentKey::InfoHash(h.info_hash),
            Running::File(h) => ContentKey::Blake3(h.hash),
        }
    }

    fn progress(&self) -> Progress {
        match self {
            Running::Torrent(h) => h.progress(),
            Running::File(h) => h.progress(),
        }
    }

    fn watch(&self) -> tokio::sync::watch::Receiver<Progress> {
        match self {
            Running::Torrent(h) => h.watch(),
            Running::File(h) => h.watch(),
        }
    }

    async fn pause(&self) {
        match self {
            Running::Torrent(h) => {
                h.command(SessionCommand::Pause).await;
            }
            Running::File(h) => h.pause().await,
        }
    }

    async fn resume(&self) {
        match self {
            Running::Torrent(h) => {
                h.command(SessionCommand::Resume).await;
            }
            Running::File(h) => h.resume().await,
        }
    }

    fn set_limits(&self, limits: Limits) {
        match self {
            Running::Torrent(h) => h.set_limits(limits),
            Running::File(h) => h.set_limits(limits),
        }
    }
}

struct Entry {
    record: Record,
    content: Content,
    status: Status,
    attempts: u32,
    handle: Option<Running>,
    /// The task asking for a magnet's metadata, while it runs.
    fetching: Option<tokio::task::AbortHandle>,
    progress: Option<Progress>,
}

impl Entry {
    fn info(&self) -> TransferInfo {
        TransferInfo {
            id: self.record.id,
            name: match &self.content {
                Content::Torrent(t) => t.name.clone(),
                // The link's `dn`, or its hash: the torrent's own name is not known yet.
                Content::Magnet(link) => link
                    .name
                    .clone()
                    .unwrap_or_else(|| self.content.key().to_hex()),
                Content::File(f) => f.name.clone(),
            },
            content: self.content.key(),
            dir: self.record.dir.clone(),
            total_bytes: match &self.content {
                Content::Torrent(t) => t.layout.total_len(),
                Content::Magnet(_) => 0,
                Content::File(f) => f.size,
            },
            priority: self.record.priority,
            status: self.status.clone(),
            limits: self.record.limits,
            progress: self.progress.clone(),
            seed_in_place: self.record.seed_in_place,
            sources: match &self.handle {
                Some(Running::File(handle)) => handle.sources(),
                _ => vec![],
            },
        }
    }
}

struct State {
    entries: BTreeMap<TransferId, Entry>,
    next_id: TransferId,
}

/// The manager's handle; clones share one manager.
#[derive(Clone)]
pub struct Manager {
    engine: Engine,
    config: Arc<ManagerConfig>,
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<TransferEvent>,
}

impl Manager {
    /// Starts the engine and the transfers persisted in its state directory.
    pub async fn start(config: ManagerConfig) -> Result<Self, ManagerError> {
        let engine = Engine::start(config.engine.clone()).await?;
        let state_dir = config.engine.state_dir.clone();
        std::fs::create_dir_all(&state_dir).map_err(|source| ManagerError::State {
            path: state_dir.clone(),
            source,
        })?;
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        let manager = Self {
            engine,
            config: Arc::new(config),
            state: Arc::new(Mutex::new(State {
                entries: BTreeMap::new(),
                next_id: 1,
            })),
            events,
        };
        let limits = manager.load_limits()?;
        manager
            .engine
            .set_global_limits(limits.unwrap_or(manager.config.global_limits));
        for record in manager.load()? {
            let content = match (&record.file, &record.magnet) {
                (Some(spec), _) => Content::File(spec.clone()),
                (None, Some(link)) => Content::Magnet(MagnetLink::parse(link)?),
                (None, None) => {
                    let bytes =
                        std::fs::read(manager.torrent_path(record.id)).map_err(|source| {
                            ManagerError::State {
                                path: manager.torrent_path(record.id),
                                source,
                            }
                        })?;
                    Content::Torrent(Torrent::from_bytes(&bytes)?)
                }
            };
            let status = if record.paused {
                Status::Paused("paused by the user".into())
            } else {
                Status::Queued
            };
            let mut state = manager.state.lock().expect("not poisoned");
            state.next_id = state.next_id.max(record.id + 1);
            state.entries.insert(
                record.id,
                Entry {
                    record,
                    content,
                    status,
                    attempts: 0,
                    handle: None,
                    fetching: None,
                    progress: None,
                },
            );
        }
        manager.schedule().await;
        Ok(manager)
    }

    /// Stops every transfer (their data and journals stay: the next start resumes them).
    pub async fn shutdown(&self) {
        let handles: Vec<Running> = {
            let mut state = self.state.lock().expect("not poisoned");
            for fetching in state.entries.values_mut().filter_map(|e| e.fetching.take()) {
                fetching.abort();
            }
            state
                .entries
                .values_mut()
                .filter_map(|e| e.handle.take())
                .collect()
        };
        for handle in handles {
            self.stop(&handle).await;
        }
    }

    /// Stops a running transfer (its data and journal stay).
    async fn stop(&self, handle: &Running) {
        match handle {
            Running::Torrent(h) => self.engine.remove(&h.info_hash).await,
            Running::File(h) => h.stop().await,
        }
    }

    /// The files downloads under way, as sources for the files service.
    pub fn partials(&self) -> &Partials {
        &self.config.partials
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<TransferEvent> {
        self.events.subscribe()
    }

    pub async fn add(&self, add: AddTransfer) -> Result<TransferId, ManagerError> {
        let torrent = Torrent::from_bytes(&add.torrent)?;
        let record = Record {
            id: 0,
            dir: add.dir,
            peers: add.peers,
            priority: add.priority,
            sequential: add.sequential,
            limits: add.limits,
            paused: add.paused,
            seed_in_place: add.seed_in_place,
            file: None,
            magnet: None,
        };
        let id = self.insert(record, Content::Torrent(torrent))?;
        let path = self.torrent_path(id);
        std::fs::write(&path, &add.torrent)
            .map_err(|source| ManagerError::State { path, source })?;
        self.announce(id).await
    }

    /// Adds a magnet link: listed at once (its state [`Status::FetchingMetadata`] while its torrent is asked for),
    /// then downloaded. Its own peers (`x.pe`) are dialled for the content too: they had the metadata.
    pub async fn add_magnet(&self, add: AddMagnet) -> Result<TransferId, ManagerError> {
        let link = MagnetLink::parse(&add.link)?;
        let mut peers = add.peers;
        for peer in &link.peers {
            if !peers.contains(peer) {
                peers.push(*peer);
            }
        }
        let record = Record {
            id: 0,
            dir: add.dir,
            peers,
            priority: add.priority,
            sequential: add.sequential,
            limits: add.limits,
            paused: add.paused,
            seed_in_place: false,
            file: None,
            magnet: Some(add.link.trim().to_owned()),
        };
        let id = self.insert(record, Content::Magnet(link))?;
        self.announce(id).await
    }

    /// Adds a shared file to fetch from the peers that hold it.
    pub async fn add_file(&self, add: AddFile) -> Result<TransferId, ManagerError> {
        if self.config.dial.is_none() {
            return Err(ManagerError::NoNetwork);
        }
        let record = Record {
            id: 0,
            dir: add.dir,
            peers: vec![],
            priority: add.priority,
            sequential: true,
            limits: add.limits,
            paused: add.paused,
            seed_in_place: false,
            file: Some(add.spec.clone()),
            magnet: None,
        };
        let id = self.insert(record, Content::File(add.spec))?;
        self.announce(id).await
    }

    /// Saves the list with the new transfer, tells subscribers, starts it if a slot is free.
    async fn announce(&self, id: TransferId) -> Result<TransferId, ManagerError> {
        self.save()?;
        if let Some(info) = self.get(id) {
            let _ = self.events.send(TransferEvent::Added(info));
        }
        self.schedule().await;
        Ok(id)
    }

    /// Gives the transfer an id and lists it; the same content twice is refused.
    fn insert(&self, mut record: Record, content: Content) -> Result<TransferId, ManagerError> {
        let mut state = self.state.lock().expect("not poisoned");
        if state
            .entries
            .values()
            .any(|e| e.content.key() == content.key())
        {
            return Err(EngineError::Duplicate.into());
        }
        let id = state.next_id;
        state.next_id += 1;
        record.id = id;
        let status = if record.paused {
            Status::Paused("paused by the user".into())
        } else {
            Status::Queued
        };
        state.entries.insert(
            id,
            Entry {
                record,
                content,
                status,
                attempts: 0,
                handle: None,
                fetching: None,
                progress: None,
            },
        );
        Ok(id)
    }

    pub fn list(&self) -> Vec<TransferInfo> {
        self.state
            .lock()
            .expect("not poisoned")
            .entries
            .values()
            .map(Entry::info)
            .collect()
    }

    pub fn get(&self, id: TransferId) -> Option<TransferInfo> {
        self.state
            .lock()
            .expect("not poisoned")
            .entries
            .get(&id)
            .map(Entry::info)
    }

    /// Who downloads from us, fastest first, across every torrent downloading or seeding (a paused one sends
    /// nothing): each session is asked for its peers' numbers now (a session that does not answer within [`UPLOADS_TIMEOUT`] is left out), so a peer that left or
    /// a transfer that stopped is not listed from an older progress snapshot.
    pub async fn uploads(&self) -> Vec<(TransferId, PeerStats)> {
        let running: Vec<(TransferId, TorrentHandle)> = self
            .state
            .lock()
            .expect("not poisoned")
            .entries
            .values()
            .filter(|e| matches!(e.status, Status::Downloading | Status::Seeding))
            .filter_map(|e| match &e.handle {
                Some(Running::Torrent(handle)) => Some((e.record.id, handle.clone())),
                _ => None,
            })
            .collect();
        // Every session is asked at once: one busy session costs the list its timeout once,
        // not once per session behind it.
        let mut asked = tokio::task::JoinSet::new();
        for (id, handle) in running {
            asked.spawn(async move {
                let peers = tokio::time::timeout(UPLOADS_TIMEOUT, handle.peers())
                    .await
                    .unwrap_or_default();
                (id, peers)
            });
        }
        let mut uploads = Vec::new();
        while let Some(answer) = asked.join_next().await {
            let Ok((id, peers)) = answer else { continue };
            uploads.extend(
                peers
                    .into_iter()
                    .filter(|p| p.uploaded > 0)
                    .map(|p| (id, p)),
            );
        }
        uploads.sort_by(|a, b| {
            b.1.up_rate
                .cmp(&a.1.up_rate)
                .then(b.1.uploaded.cmp(&a.1.uploaded))
        });
        uploads
    }

    pub async fn pause(&self, id: TransferId) -> Result<(), ManagerError> {
        let handle = self.update(id, |entry| {
            entry.record.paused = true;
            entry.status = Status::Paused("paused by the user".into());
            // A metadata fetch stops; resuming asks again.
            if let Some(fetching) = entry.fetching.take() {
                fetching.abort();
            }
            entry.handle.clone()
        })?;
        if let Some(handle) = handle {
            handle.pause().await;
        }
        self.save()?;
        self.schedule().await;
        Ok(())
    }

    pub async fn resume(&self, id: TransferId) -> Result<(), ManagerError> {
        let handle = self.update(id, |entry| {
            entry.record.paused = false;
            entry.attempts = 0;
            entry.status = if entry.handle.is_some() {
                Status::Downloading
            } else if entry.fetching.is_some() {
                Status::FetchingMetadata
            } else {
                Status::Queued
            };
            entry.handle.clone()
        })?;
        if let Some(handle) = handle {
            handle.resume().await;
        }
        self.save()?;
        self.schedule().await;
        Ok(())
    }

    /// Stops and forgets a transfer; with `delete_files`, its downloaded files go too (a user's own files seeded in
    /// place always stay).
    pub async fn cancel(&self, id: TransferId, delete_files: bool) -> Result<(), ManagerError> {
        let entry = self
            .state
            .lock()
            .expect("not poisoned")
            .entries
            .remove(&id)
            .ok_or(ManagerError::Unknown(id))?;
        if let Some(fetching) = &entry.fetching {
            fetching.abort();
        }
        if let Some(handle) = &entry.handle {
            self.stop(handle).await;
        }
        match &entry.content {
            Content::Torrent(torrent) => {
                self.engine.remove(&torrent.info_hash).await;
                let _ = std::fs::remove_file(self.torrent_path(id));
                let _ = std::fs::remove_file(self.engine.stamps_path(&torrent.info_hash));
                if delete_files && !entry.record.seed_in_place {
                    for file in torrent.layout.files() {
                        let _ = std::fs::remove_file(entry.record.dir.join(&file.path));
                    }
                    let _ = std::fs::remove_file(self.engine.journal_path(&torrent.info_hash));
                }
            }
            // Nothing was written for it yet.
            Content::Magnet(_) => {}
            Content::File(spec) => {
                self.config.partials.remove(&spec.hash);
                let [journal, done, tree] =
                    download::state_files(&self.files_state_dir(), &spec.hash);
                let _ = std::fs::remove_file(tree);
                if delete_files {
                    if let Ok(landed) = std::fs::read(&done) {
                        let _ = std::fs::remove_file(String::from_utf8_lossy(&landed).as_ref());
                    }
                    if let Ok(part) = download::part_path(&entry.record.dir, &spec.name) {
                        let _ = std::fs::remove_file(part);
                    }
                    let _ = std::fs::remove_file(journal);
                }
                let _ = std::fs::remove_file(done);
            }
        }
        self.save()?;
        let _ = self.events.send(TransferEvent::Removed { id });
        self.schedule().await;
        Ok(())
    }

    /// Limits for one transfer (`Some(id)`) or for all together (`None`); both are kept across restarts.
    pub fn set_limits(&self, id: Option<TransferId>, limits: Limits) -> Result<(), ManagerError> {
        let Some(id) = id else {
            self.engine.set_global_limits(limits);
            let bytes = serde_json::to_vec(&limits).expect("limits serialize");
            return write_state(&self.limits_path(), &bytes);
        };
        if let Some(handle) = self.update(id, |entry| {
            entry.record.limits = limits;
            entry.handle.clone()
        })? {
            handle.set_limits(limits);
        }
        self.save()
    }

    /// Whom a shared file is fetched from, from now on (kept across restarts): a running download asks a new
    /// source at once and stops asking one no longer named. One waiting to retry, or given up (every source
    /// failed), starts again at once when a source is named that it did not have. Returns whether the sources
    /// changed.
    pub async fn set_file_sources(
        &self,
        id: TransferId,
        sources: Vec<String>,
    ) -> Result<bool, ManagerError> {
        let again = {
            let mut state = self.state.lock().expect("not poisoned");
            let entry = state
                .entries
                .get_mut(&id)
                .ok_or(ManagerError::Unknown(id))?;
            let Content::File(spec) = &mut entry.content else {
                return Err(ManagerError::NotAFile(id));
            };
            if spec.sources == sources {
                return Ok(false);
            }
            let newcomer = sources.iter().any(|s| !spec.sources.contains(s));
            spec.sources = sources.clone();
            if let Some(file) = &mut entry.record.file {
                file.sources = sources.clone();
            }
            if let Some(Running::File(handle)) = &entry.handle {
                handle.set_sources(sources);
            }
            let again =
                newcomer && matches!(entry.status, Status::Failed(_) | Status::Retrying { .. });
            if again {
                self.queue_again(entry);
            }
            again
        };
        self.save()?;
        if again {
            self.schedule().await;
        }
        Ok(true)
    }

    /// `source` is reachable again (it came online): every shared-file download it is a source of that waits to
    /// retry, or gave up, starts again now (its retries counted from zero), and one under way is told (a swarm asks
    /// it at once rather than after its rest). Returns the transfers started again.
    pub async fn source_back(&self, source: &str) -> Vec<TransferId> {
        let again: Vec<TransferId> = {
            let mut state = self.state.lock().expect("not poisoned");
            for entry in state.entries.values() {
                if let Some(Running::File(handle)) = &entry.handle
                    && matches!(&entry.content, Content::File(spec) if spec.sources.iter().any(|s| s == source))
                {
                    handle.source_online(source);
                }
            }
            state
                .entries
                .values_mut()
                .filter(|e| matches!(e.status, Status::Retrying { .. } | Status::Failed(_)))
                .filter(|e| matches!(&e.content, Content::File(spec) if spec.sources.iter().any(|s| s == source)))
                .map(|entry| {
                    self.queue_again(entry);
                    entry.record.id
                })
                .collect()
        };
        if !again.is_empty() {
            allpeers_log::flesh!(%source, transfers = ?again, "transfer: a source is back: its downloads start again");
            self.schedule().await;
        }
        again
    }

    /// Puts a download that waits to retry, or gave up, back in the queue with its retries counted from zero (the
    /// caller schedules; a backoff still running finds the status changed and does not start it).
    fn queue_again(&self, entry: &mut Entry) {
        entry.status = Status::Queued;
        entry.attempts = 0;
        let _ = self.events.send(TransferEvent::Status {
            id: entry.record.id,
            status: Status::Queued,
        });
    }

    /// A transfer's priority: which waiting transfer starts first when a download slot frees (kept across
    /// restarts). A running transfer keeps running; a queued one may start at once if it now comes first.
    pub async fn set_priority(&self, id: TransferId, priority: i32) -> Result<(), ManagerError> {
        self.update(id, |entry| entry.record.priority = priority)?;
        self.save()?;
        self.schedule().await;
        Ok(())
    }

    fn update<T>(
        &self,
        id: TransferId,
        change: impl FnOnce(&mut Entry) -> T,
    ) -> Result<T, ManagerError> {
        let mut state = self.state.lock().expect("not poisoned");
        let entry = state
            .entries
            .get_mut(&id)
            .ok_or(ManagerError::Unknown(id))?;
        let result = change(entry);
        let _ = self.events.send(TransferEvent::Status {
            id,
            status: entry.status.clone(),
        });
        Ok(result)
    }

    /// Starts queued transfers, highest priority first, while fewer than `max_active` download. Files seeded in
    /// place download nothing: they start at once and never take a slot.
    async fn schedule(&self) {
        loop {
            let next = {
                let mut state = self.state.lock().expect("not poisoned");
                let active = state
                    .entries
                    .values()
                    .filter(|e| {
                        !e.record.seed_in_place
                            && matches!(
                                e.status,
                                Status::FetchingMetadata
                                    | Status::Downloading
                                    | Status::Retrying { .. }
                            )
                    })
                    .count();
                let slot_free = active < self.config.max_active;
                let picked = state
                    .entries
                    .values_mut()
                    .filter(|e| e.status == Status::Queued && (slot_free || e.record.seed_in_place))
                    .max_by(|a, b| {
                        a.record
                            .priority
                            .cmp(&b.record.priority)
                            .then(b.record.id.cmp(&a.record.id))
                    });
                // Claimed under the lock, as it will start: another schedule running at the same time (a source
                // back, a transfer done) neither starts it a second time nor counts its slot free.
                picked.map(|e| {
                    e.status = match e.content {
                        Content::Magnet(_) => Status::FetchingMetadata,
                        Content::Torrent(_) | Content::File(_) => Status::Downloading,
                    };
                    (e.record.clone(), e.content.clone())
                })
            };
            let Some((record, content)) = next else {
                return;
            };
            self.start_transfer(record, content).await;
        }
    }

    async fn start_transfer(&self, record: Record, content: Content) {
        let id = record.id;
        let result = match content {
            Content::Magnet(link) => {
                self.fetch_metadata(id, link);
                return;
            }
            Content::Torrent(torrent) => {
                let target = if record.seed_in_place {
                    Target::SeedInPlace {
                        dir: record.dir.clone(),
                    }
                } else {
                    Target::Download {
                        dir: record.dir.clone(),
                        sequential: record.sequential,
                    }
                };
                self.engine
                    .add(torrent, target, record.peers.clone(), record.limits)
                    .await
                    .map(Running::Torrent)
                    .map_err(ManagerError::from)
            }
            Content::File(spec) => match &self.config.dial {
                Some(dial) => Ok(Running::File(download::start(
                    spec,
                    download::Target {
                        dir: record.dir.clone(),
                        state_dir: self.files_state_dir(),
                        partials: self.config.partials.clone(),
                        outboards: self.config.outboards.clone(),
                        space: self.engine.space().clone(),
                    },
                    dial.clone(),
                    self.engine.global_throttle(),
                    record.limits,
                ))),
                None => Err(ManagerError::NoNetwork),
            },
        };
        let status = match result {
            Ok(handle) => {
                // Complete content (a file seeded in place, a finished download) seeds from the start.
                let progress = handle.progress();
                let status = if progress.state == TransferState::Seeding {
                    Status::Seeding
                } else {
                    Status::Downloading
                };
                // The handle is recorded before the watcher starts: the watcher stops when it finds another.
                if let Some(entry) = self
                    .state
                    .lock()
                    .expect("not poisoned")
                    .entries
                    .get_mut(&id)
                {
                    entry.handle = Some(handle.clone());
                    entry.status = status.clone();
                    // Set now, not only by the watcher: whoever sees the status sees the progress that goes with it.
                    entry.progress = Some(progress);
                }
                tokio::spawn(self.clone().watch(id, handle));
                status
            }
            Err(error) => {
                allpeers_log::marrow!(id, %error, "transfer: cannot start");
                let status = Status::Failed(error.to_string());
                if let Some(entry) = self
                    .state
                    .lock()
                    .expect("not poisoned")
                    .entries
                    .get_mut(&id)
                {
                    entry.status = status.clone();
                }
                status
            }
        };
        let _ = self.events.send(TransferEvent::Status { id, status });
    }

    /// Asks the link's peers and trackers for its torrent on a task of its own, which pause and cancel abort.
    fn fetch_metadata(&self, id: TransferId, link: MagnetLink) {
        let options = self.engine.fetch_options(self.config.metadata_timeout);
        {
            let mut state = self.state.lock().expect("not poisoned");
            let Some(entry) = state.entries.get_mut(&id) else {
                return;
            };
            // Spawned under the lock: the task cannot finish before its handle is recorded.
            let manager = self.clone();
            let task = tokio::spawn(async move {
                let result = metadata::fetch(&link, &options).await;
                manager.metadata_came(id, result).await;
            });
            entry.fetching = Some(task.abort_handle());
            entry.status = Status::FetchingMetadata;
        }
        let _ = self.events.send(TransferEvent::Status {
            id,
            status: Status::FetchingMetadata,
        });
    }

    /// The end of a metadata fetch: the torrent is kept beside the list and downloaded at once (the fetch held the
    /// slot); a failure is retried with backoff like a failed download, then given up.
    async fn metadata_came(&self, id: TransferId, result: Result<Vec<u8>, MetadataError>) {
        let torrent = result.and_then(|bytes| {
            let torrent = Torrent::from_bytes(&bytes)?;
            Ok((bytes, torrent))
        });
        let next = {
            let mut state = self.state.lock().expect("not poisoned");
            let Some(entry) = state.entries.get_mut(&id) else {
                return;
            };
            // Paused or cancelled meanwhile (the abort came too late to stop this task): not ours to act on.
            if entry.fetching.as_ref().map(|task| task.id()) != tokio::task::try_id() {
                return;
            }
            entry.fetching = None;
            match torrent {
                Ok((bytes, torrent)) => {
                    let path = self.torrent_path(id);
                    if let Err(source) = write_atomically(&path, &bytes) {
                        Err(ManagerError::State { path, source }.to_string())
                    } else {
                        allpeers_log::flesh!(id, name = %torrent.name, "transfer: a magnet's metadata came");
                        entry.content = Content::Torrent(torrent);
                        entry.record.magnet = None;
                        entry.attempts = 0;
                        Ok((entry.record.clone(), entry.content.clone()))
                    }
                }
                Err(error) => Err(error.to_string()),
            }
            .map_err(|error| {
                entry.attempts += 1;
                entry.status = if entry.attempts <= self.config.max_attempts {
                    Status::Retrying {
                        attempt: entry.attempts,
                        error,
                    }
                } else {
                    Status::Failed(error)
                };
                (entry.status.clone(), entry.attempts)
            })
        };
        match next {
            Ok((record, content)) => {
                if let Err(error) = self.save() {
                    allpeers_log::marrow!(id, %error, "transfer: the list was not saved");
                }
                self.start_transfer(record, content).await;
            }
            Err((status, attempts)) => {
                allpeers_log::flesh!(id, ?status, "transfer: a magnet's metadata did not come");
                let _ = self.events.send(TransferEvent::Status {
                    id,
                    status: status.clone(),
                });
                if !matches!(status, Status::Retrying { .. }) {
                    self.schedule().await;
                    return;
                }
                let delay =
                    self.config.retry_delay * 2u32.saturating_pow(attempts.saturating_sub(1));
                tokio::time::sleep(delay).await;
                // Unless the user paused or cancelled it while it waited.
                if let Some((record, content)) = self.still_is(id, &status) {
                    self.start_transfer(record, content).await;
                }
            }
        }
    }

    /// Whether the transfer is still listed with `status` (a retry waiting out its backoff checks that the user did
    /// not pause or cancel it meanwhile).
    /// The transfer's record and content now, if it is still listed with `status` (a retry waiting out its backoff
    /// checks that the user did not pause or cancel it meanwhile, and starts with what changed meanwhile: a shared
    /// file's sources).
    fn still_is(&self, id: TransferId, status: &Status) -> Option<(Record, Content)> {
        self.state
            .lock()
            .expect("not poisoned")
            .entries
            .get(&id)
            .filter(|e| e.status == *status)
            .map(|e| (e.record.clone(), e.content.clone()))
    }

    /// Forwards a running transfer's progress and reacts to its state: completion frees a queue slot, failure is
    /// retried with backoff, lack of space pauses.
    ///
    /// Boxed as `Send`: a retry starts the transfer again, which spawns a new watcher, and the compiler cannot see
    /// through that cycle on its own.
    fn watch(
        self,
        id: TransferId,
        handle: Running,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move { self.watch_loop(id, handle).await })
    }

    async fn watch_loop(self, id: TransferId, handle: Running) {
        let mut progress = handle.watch();
        loop {
            let current = progress.borrow_and_update().clone();
            let reaction = {
                let mut state = self.state.lock().expect("not poisoned");
                let Some(entry) = state.entries.get_mut(&id) else {
                    return;
                };
                if entry
                    .handle
                    .as_ref()
                    .is_none_or(|h| h.key() != handle.key())
                {
                    return;
                }
                entry.progress = Some(current.clone());
                let status = match &current.state {
                    TransferState::Downloading if entry.record.paused => entry.status.clone(),
                    TransferState::Downloading => Status::Downloading,
                    TransferState::Seeding => Status::Seeding,
                    TransferState::Paused(reason) => Status::Paused(reason.clone()),
                    TransferState::Failed(error) if entry.attempts < self.config.max_attempts => {
                        entry.attempts += 1;
                        Status::Retrying {
                            attempt: entry.attempts,
                            error: error.clone(),
                        }
                    }
                    TransferState::Failed(error) => Status::Failed(error.clone()),
                };
                let changed = status != entry.status;
                entry.status = status.clone();
                if matches!(status, Status::Retrying { .. } | Status::Failed(_)) && changed {
                    entry.handle = None;
                }
                (changed, status, entry.attempts)
            };
            let (changed, status, attempts) = reaction;
            let _ = self.events.send(TransferEvent::Progress {
                id,
                progress: current,
            });
            if changed {
                let _ = self.events.send(TransferEvent::Status {
                    id,
                    status: status.clone(),
                });
                match status {
                    Status::Retrying { .. } => {
                        self.stop(&handle).await;
                        let delay = self.config.retry_delay
                            * 2u32.saturating_pow(attempts.saturating_sub(1));
                        tokio::time::sleep(delay).await;
                        // Unless the user paused or cancelled it while it waited.
                        if let Some((record, content)) = self.still_is(id, &status) {
                            self.start_transfer(record, content).await;
                        }
                        return;
                    }
                    Status::Failed(_) => {
                        self.stop(&handle).await;
                        self.schedule().await;
                        return;
                    }
                    Status::Seeding | Status::Paused(_) => self.schedule().await,
                    _ => {}
                }
            }
            if progress.changed().await.is_err() {
                return;
            }
        }
    }

    /// Where file downloads keep their journals and done markers.
    fn files_state_dir(&self) -> PathBuf {
        self.config.engine.state_dir.join("files")
    }

    fn torrent_path(&self, id: TransferId) -> PathBuf {
        self.config.engine.state_dir.join(format!("{id}.torrent"))
    }

    fn state_path(&self) -> PathBuf {
        self.config.engine.state_dir.join(STATE_FILE)
    }

    fn limits_path(&self) -> PathBuf {
        self.config.engine.state_dir.join(LIMITS_FILE)
    }

    fn load_limits(&self) -> Result<Option<Limits>, ManagerError> {
        read_state(&self.limits_path())
    }

    fn load(&self) -> Result<Vec<Record>, ManagerError> {
        Ok(read_state(&self.state_path())?.unwrap_or_default())
    }

    /// Writes the list atomically.
    fn save(&self) -> Result<(), ManagerError> {
        let records: Vec<Record> = self
            .state
            .lock()
            .expect("not poisoned")
            .entries
            .values()
            .map(|e| e.record.clone())
            .collect();
        let bytes = serde_json::to_vec_pretty(&records).expect("records serialize");
        write_state(&self.state_path(), &bytes)
    }
}

/// A JSON state file; `None` when it does not exist yet.
fn read_state<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, ManagerError> {
    let error = |source| ManagerError::State {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| error(e.into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(error(source)),
    }
}

fn write_state(path: &Path, bytes: &[u8]) -> Result<(), ManagerError> {
    write_atomically(path, bytes).map_err(|source| ManagerError::State {
        path: path.to_path_buf(),
        source,
    })
}
