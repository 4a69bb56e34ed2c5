//! The download manager, one for every protocol (BitTorrent for now): a queue with priorities and a cap on active
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

use crate::bt::engine::{Engine, EngineConfig, EngineError, Target};
use crate::bt::metainfo::{MetainfoError, Torrent};
use crate::bt::session::{PeerStats, Progress, SessionCommand, TorrentHandle, TransferState};
use crate::cache::write_atomically;
use crate::throttle::Limits;

pub type TransferId = u64;

/// Events buffered for a slow subscriber before it misses some (it then sees `Lagged` and reads `list`).
pub const EVENT_QUEUE: usize = 1024;
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
    #[error("no transfer {0}")]
    Unknown(TransferId),
    #[error("the transfer list at {}: {source}", path.display())]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
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
}

impl ManagerConfig {
    pub fn new(engine: EngineConfig) -> Self {
        Self {
            engine,
            max_active: 3,
            max_attempts: 5,
            retry_delay: Duration::from_secs(5),
            global_limits: Limits::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Queued,
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
    /// The .torrent file's bytes (magnets and URLs come later).
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

#[derive(Debug, Clone)]
pub struct TransferInfo {
    pub id: TransferId,
    pub name: String,
    pub info_hash: [u8; 20],
    pub dir: PathBuf,
    /// The content's length (known before the transfer runs).
    pub total_bytes: u64,
    pub priority: i32,
    pub status: Status,
    pub limits: Limits,
    /// The latest progress, once the transfer has run.
    pub progress: Option<Progress>,
    pub seed_in_place: bool,
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
}

struct Entry {
    record: Record,
    torrent: Torrent,
    status: Status,
    attempts: u32,
    handle: Option<TorrentHandle>,
    progress: Option<Progress>,
}

impl Entry {
    fn info(&self) -> TransferInfo {
        TransferInfo {
            id: self.record.id,
            name: self.torrent.name.clone(),
            info_hash: self.torrent.info_hash,
            dir: self.record.dir.clone(),
            total_bytes: self.torrent.layout.total_len(),
            priority: self.record.priority,
            status: self.status.clone(),
            limits: self.record.limits,
            progress: self.progress.clone(),
            seed_in_place: self.record.seed_in_place,
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
            let bytes = std::fs::read(manager.torrent_path(record.id)).map_err(|source| {
                ManagerError::State {
                    path: manager.torrent_path(record.id),
                    source,
                }
            })?;
            let torrent = Torrent::from_bytes(&bytes)?;
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
                    torrent,
                    status,
                    attempts: 0,
                    handle: None,
                    progress: None,
                },
            );
        }
        manager.schedule().await;
        Ok(manager)
    }

    /// Stops every transfer (their data and journals stay: the next start resumes them).
    pub async fn shutdown(&self) {
        let hashes: Vec<[u8; 20]> = {
            let mut state = self.state.lock().expect("not poisoned");
            state
                .entries
                .values_mut()
                .filter_map(|e| e.handle.take().map(|h| h.info_hash))
                .collect()
        };
        for info_hash in hashes {
            self.engine.remove(&info_hash).await;
        }
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
        let (id, info) = {
            let mut state = self.state.lock().expect("not poisoned");
            if state
                .entries
                .values()
                .any(|e| e.torrent.info_hash == torrent.info_hash)
            {
                return Err(EngineError::Duplicate.into());
            }
            let id = state.next_id;
            state.next_id += 1;
            let record = Record {
                id,
                dir: add.dir,
                peers: add.peers,
                priority: add.priority,
                sequential: add.sequential,
                limits: add.limits,
                paused: add.paused,
                seed_in_place: add.seed_in_place,
            };
            let status = if add.paused {
                Status::Paused("paused by the user".into())
            } else {
                Status::Queued
            };
            let entry = Entry {
                record,
                torrent,
                status,
                attempts: 0,
                handle: None,
                progress: None,
            };
            let info = entry.info();
            state.entries.insert(id, entry);
            (id, info)
        };
        let path = self.torrent_path(id);
        std::fs::write(&path, &add.torrent)
            .map_err(|source| ManagerError::State { path, source })?;
        self.save()?;
        let _ = self.events.send(TransferEvent::Added(info));
        self.schedule().await;
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

    /// Who downloads from us, fastest first, across every transfer.
    pub fn uploads(&self) -> Vec<(TransferId, PeerStats)> {
        let state = self.state.lock().expect("not poisoned");
        let mut uploads: Vec<(TransferId, PeerStats)> = state
            .entries
            .values()
            .flat_map(|e| {
                let peers = e
                    .progress
                    .as_ref()
                    .map(|p| p.peers.clone())
                    .unwrap_or_default();
                peers
                    .into_iter()
                    .filter(|p| p.uploaded > 0)
                    .map(move |p| (e.record.id, p))
            })
            .collect();
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
            entry.handle.clone()
        })?;
        if let Some(handle) = handle {
            handle.command(SessionCommand::Pause).await;
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
            } else {
                Status::Queued
            };
            entry.handle.clone()
        })?;
        if let Some(handle) = handle {
            handle.command(SessionCommand::Resume).await;
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
        self.engine.remove(&entry.torrent.info_hash).await;
        let _ = std::fs::remove_file(self.torrent_path(id));
        let _ = std::fs::remove_file(self.engine.stamps_path(&entry.torrent.info_hash));
        if delete_files && !entry.record.seed_in_place {
            for file in entry.torrent.layout.files() {
                let _ = std::fs::remove_file(entry.record.dir.join(&file.path));
            }
            let _ = std::fs::remove_file(self.engine.journal_path(&entry.torrent.info_hash));
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
                let state = self.state.lock().expect("not poisoned");
                let active = state
                    .entries
                    .values()
                    .filter(|e| {
                        !e.record.seed_in_place
                            && matches!(e.status, Status::Downloading | Status::Retrying { .. })
                    })
                    .count();
                let slot_free = active < self.config.max_active;
                state
                    .entries
                    .values()
                    .filter(|e| e.status == Status::Queued && (slot_free || e.record.seed_in_place))
                    .max_by(|a, b| {
                        a.record
                            .priority
                            .cmp(&b.record.priority)
                            .then(b.record.id.cmp(&a.record.id))
                    })
                    .map(|e| (e.record.clone(), e.torrent.clone()))
            };
            let Some((record, torrent)) = next else {
                return;
            };
            self.start_transfer(record, torrent).await;
        }
    }

    async fn start_transfer(&self, record: Record, torrent: Torrent) {
        let id = record.id;
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
        let result = self
            .engine
            .add(torrent, target, record.peers.clone(), record.limits)
            .await;
        let status = match result {
            Ok(handle) => {
                // Complete content (a file seeded in place, a finished download) seeds from the start.
                let status = if handle.progress().state == TransferState::Seeding {
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

    /// Forwards a running transfer's progress and reacts to its state: completion frees a queue slot, failure is
    /// retried with backoff, lack of space pauses.
    ///
    /// Boxed as `Send`: a retry starts the transfer again, which spawns a new watcher, and the compiler cannot see
    /// through that cycle on its own.
    fn watch(
        self,
        id: TransferId,
        handle: TorrentHandle,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(async move { self.watch_loop(id, handle).await })
    }

    async fn watch_loop(self, id: TransferId, handle: TorrentHandle) {
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
                    .is_none_or(|h| h.info_hash != handle.info_hash)
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
                (
                    changed,
                    status,
                    entry.attempts,
                    entry.record.clone(),
                    entry.torrent.clone(),
                )
            };
            let (changed, status, attempts, record, torrent) = reaction;
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
                        self.engine.remove(&handle.info_hash).await;
                        let delay = self.config.retry_delay
                            * 2u32.saturating_pow(attempts.saturating_sub(1));
                        tokio::time::sleep(delay).await;
                        self.start_transfer(record, torrent).await;
                        return;
                    }
                    Status::Failed(_) => {
                        self.engine.remove(&handle.info_hash).await;
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
