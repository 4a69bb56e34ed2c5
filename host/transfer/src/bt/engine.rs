//! The BitTorrent engine: one listening socket for every torrent (incoming handshakes routed by info-hash), the
//! shared space account, and adding torrents to download or to seed in place. Every torrent that is not private is
//! also looked up and announced on the DHT when the engine has one ([`super::dht`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rand::RngCore;
use tokio::net::TcpListener;

use super::connection;
use tokio::sync::watch;

use super::dht::{self, FinderSlot, PeerFinder};
use super::metadata::FetchOptions;
use super::metainfo::Torrent;
use super::mse::Encryption;
use super::session::{self, DEFAULT_MAX_PEERS, SessionCommand, SessionOptions, TorrentHandle};
use crate::cache::CacheError;
use crate::cache::journal::Journal;
use crate::cache::stamps::Stamps;
use crate::cache::storage::{SpaceAccount, Storage};
use crate::swarm::choker::DEFAULT_SLOTS;
use crate::swarm::geometry::PieceSet;
use crate::swarm::picker::PickMode;
use crate::throttle::{Limits, Throttle, Throttles};
use crate::web::WebClient;

/// How long removing a torrent waits for its session to write, sync and journal what it holds: a few group commits
/// on a slow disk.
const SESSION_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("the torrent is already added")]
    Duplicate,
    #[error("{bad} of {total} pieces of the shared files do not match the torrent")]
    NotComplete { bad: u32, total: u32 },
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub listen: SocketAddr,
    /// Where journals live (one per torrent, named by info-hash).
    pub state_dir: PathBuf,
    /// Bytes all downloads together may write; `None` for no limit.
    pub space_limit: Option<u64>,
    pub upload_slots: usize,
    pub max_peers: usize,
    pub use_trackers: bool,
    /// HTTP(S) trackers are asked through it (its roots decide which TLS certificates are trusted).
    pub web: WebClient,
    /// Message Stream Encryption for peer connections, both ways.
    pub encryption: Encryption,
    /// The Mainline DHT (BEP 5) to find peers on and announce to (`None`: none, until
    /// [`Engine::set_peer_finder`] hands one over).
    pub dht: Option<Arc<dyn PeerFinder>>,
}

impl EngineConfig {
    pub fn new(listen: SocketAddr, state_dir: PathBuf) -> Self {
        Self {
            listen,
            state_dir,
            space_limit: None,
            upload_slots: DEFAULT_SLOTS,
            max_peers: DEFAULT_MAX_PEERS,
            use_trackers: true,
            web: WebClient::default(),
            encryption: Encryption::default(),
            dht: None,
        }
    }
}

/// Where a torrent's files are.
#[derive(Debug, Clone)]
pub enum Target {
    /// Download into this directory (resuming from the journal).
    Download { dir: PathBuf, sequential: bool },
    /// Seed the user's own files from this directory, in place: verified once, never copied.
    SeedInPlace { dir: PathBuf },
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    peer_id: [u8; 20],
    listen_addr: SocketAddr,
    space: Arc<SpaceAccount>,
    throttle: Arc<Throttle>,
    dht: watch::Sender<Option<Arc<dyn PeerFinder>>>,
    torrents: Mutex<HashMap<[u8; 20], TorrentHandle>>,
}

/// Our peer id: Azureus style, `-AP0001-` then 12 random bytes.
fn new_peer_id() -> [u8; 20] {
    let mut id = *b"-AP0001-000000000000";
    rand::thread_rng().fill_bytes(&mut id[8..]);
    id
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Engine {
    /// Binds the listening socket and starts accepting peers.
    pub async fn start(config: EngineConfig) -> Result<Self, EngineError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| EngineError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let listen_addr = listener
            .local_addr()
            .map_err(|source| EngineError::Listen {
                addr: config.listen,
                source,
            })?;
        let inner = Arc::new(Inner {
            space: Arc::new(SpaceAccount::new(config.space_limit)),
            throttle: Arc::new(Throttle::default()),
            dht: watch::Sender::new(config.dht.clone()),
            config,
            peer_id: new_peer_id(),
            listen_addr,
            torrents: Mutex::new(HashMap::new()),
        });
        tokio::spawn(accept_loop(listener, Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen_addr
    }

    /// Our peer id on the wire and at trackers.
    pub fn peer_id(&self) -> [u8; 20] {
        self.inner.peer_id
    }

    /// How `.torrent` URLs and HTTP(S) trackers are fetched.
    pub fn web(&self) -> &WebClient {
        &self.inner.config.web
    }

    /// Whether trackers are announced to (off in tests and private setups: peers are given directly).
    pub fn uses_trackers(&self) -> bool {
        self.inner.config.use_trackers
    }

    /// Hands the engine a DHT (or takes it away): running torrents use it from their next lookup.
    pub fn set_peer_finder(&self, finder: Option<Arc<dyn PeerFinder>>) {
        self.inner.dht.send_replace(finder);
    }

    /// Whether the engine finds peers on a DHT now.
    pub fn has_dht(&self) -> bool {
        self.inner.dht.borrow().is_some()
    }

    fn finder_slot(&self) -> FinderSlot {
        self.inner.dht.subscribe()
    }

    /// What a magnet link's metadata fetch ([`crate::bt::metadata::fetch`]) says we are.
    pub fn fetch_options(&self, timeout: std::time::Duration) -> FetchOptions {
        FetchOptions {
            peer_id: self.inner.peer_id,
            port: self.inner.listen_addr.port(),
            timeout,
            use_trackers: self.inner.config.use_trackers,
            web: self.inner.config.web.clone(),
            encryption: self.inner.config.encryption,
            dht: self.inner.dht.borrow().clone(),
        }
    }

    /// The byte limit all downloads share: torrents and files (`blob::download::Target::space`).
    pub fn space(&self) -> &Arc<SpaceAccount> {
        &self.inner.space
    }

    /// Upload and download limits for every torrent together.
    pub fn set_global_limits(&self, limits: Limits) {
        self.inner.throttle.set(limits);
    }

    /// The limits of every transfer together, for the protocols beside BitTorrent.
    pub fn global_throttle(&self) -> Arc<Throttle> {
        self.inner.throttle.clone()
    }

    pub fn global_limits(&self) -> Limits {
        self.inner.throttle.limits()
    }

    /// Adds a torrent and starts it, dialing `peers` (and the trackers, when enabled).
    pub async fn add(
        &self,
        torrent: Torrent,
        target: Target,
        peers: Vec<SocketAddr>,
        limits: Limits,
    ) -> Result<TorrentHandle, EngineError> {
        if self
            .inner
            .torrents
            .lock()
            .expect("not poisoned")
            .contains_key(&torrent.info_hash)
        {
            return Err(EngineError::Duplicate);
        }
        let torrent = Arc::new(torrent);
        let geometry = torrent.geometry;
        let (storage, have, journal, pick_mode) = match target {
            Target::Download { dir, sequential } => {
                let storage = Storage::create(&dir, torrent.layout.clone(), geometry)?;
                std::fs::create_dir_all(&self.inner.config.state_dir).map_err(|source| {
                    CacheError::Io {
                        path: self.inner.config.state_dir.clone(),
                        source,
                    }
                })?;
                let journal_path = self.journal_path(&torrent.info_hash);
                let (journal, have) =
                    Journal::open(&journal_path, torrent.info_hash, geometry.piece_count())
                        .map_err(CacheError::from)?;
                let mode = if sequential {
                    PickMode::Sequential
                } else {
                    PickMode::RarestFirst
                };
                (storage, have, Some(journal), mode)
            }
            Target::SeedInPlace { dir } => {
                // Taken before hashing: a file that changes while it is hashed no longer matches.
                let stamps = Stamps::read(&dir, &torrent.layout).ok();
                let stamps_path = self.stamps_path(&torrent.info_hash);
                let storage = Storage::open_in_place(&dir, torrent.layout.clone(), geometry)?;
                let unchanged = stamps.is_some() && Stamps::load(&stamps_path) == stamps;
                let (storage, have) = if unchanged {
                    allpeers_log::flesh!(name = %torrent.name, "seeding in place: unchanged since hashed, not hashed again");
                    (storage, PieceSet::full(geometry.piece_count()))
                } else {
                    verify_all(storage, torrent.clone()).await?
                };
                if !have.is_full() {
                    return Err(EngineError::NotComplete {
                        bad: geometry.piece_count() - have.count(),
                        total: geometry.piece_count(),
                    });
                }
                if !unchanged && let Some(stamps) = stamps {
                    self.vouch(&torrent.info_hash, &stamps);
                }
                (storage, have, None, PickMode::RarestFirst)
            }
        };
        let throttle = Arc::new(Throttle::new(limits));
        let options = SessionOptions {
            peer_id: self.inner.peer_id,
            listen_port: Some(self.inner.listen_addr.port()),
            rng_seed: rand::thread_rng().next_u64(),
            upload_slots: self.inner.config.upload_slots,
            pick_mode,
            max_peers: self.inner.config.max_peers,
            use_trackers: self.inner.config.use_trackers,
            web: self.inner.config.web.clone(),
            throttles: Throttles(vec![self.inner.throttle.clone(), throttle.clone()]),
            encryption: self.inner.config.encryption,
        };
        let content = session::Content {
            torrent: torrent.clone(),
            storage: Arc::new(storage),
            have,
            journal,
        };
        let handle = session::spawn(content, self.inner.space.clone(), options, throttle, peers);
        // BEP 27: a private torrent's peers come from its trackers only.
        if !torrent.private {
            dht::spawn_lookups(self.finder_slot(), &handle, self.inner.listen_addr.port());
        }
        self.inner
            .torrents
            .lock()
            .expect("not poisoned")
            .insert(torrent.info_hash, handle.clone());
        Ok(handle)
    }

    /// Stops a torrent (its data and journal stay, so adding it again resumes).
    pub async fn remove(&self, info_hash: &[u8; 20]) {
        let handle = self
            .inner
            .torrents
            .lock()
            .expect("not poisoned")
            .remove(info_hash);
        if let Some(handle) = handle {
            handle.command(SessionCommand::Stop).await;
            // Its data and journal complete before it counts as removed: a restart right after finds them.
            if tokio::time::timeout(SESSION_STOP_TIMEOUT, handle.ended())
                .await
                .is_err()
            {
                allpeers_log::marrow!(
                    "transfer: a torrent's session did not end within {SESSION_STOP_TIMEOUT:?} of being stopped"
                );
            }
        }
    }

    /// Records that files shared in place were hashed whole and matched while they had these
    /// `stamps` (taken before hashing): seeding them again skips hashing while they match. Best
    /// effort: a failure to save means hashing again next time.
    pub fn vouch(&self, info_hash: &[u8; 20], stamps: &Stamps) {
        let path = self.stamps_path(info_hash);
        let saved =
            std::fs::create_dir_all(&self.inner.config.state_dir).and_then(|()| stamps.save(&path));
        if let Err(e) = saved {
            allpeers_log::skin!(path = %path.display(), "verified stamps not saved: {e}");
        }
    }

    /// Where the stamps of a torrent seeded in place live (see [`Engine::vouch`]).
    pub fn stamps_path(&self, info_hash: &[u8; 20]) -> PathBuf {
        self.inner
            .config
            .state_dir
            .join(format!("{}.verified", hex(info_hash)))
    }

    /// Where a torrent's journal lives.
    pub fn journal_path(&self, info_hash: &[u8; 20]) -> PathBuf {
        self.inner
            .config
            .state_dir
            .join(format!("{}.journal", hex(info_hash)))
    }
}

/// Hashes every piece of files shared in place (on a blocking thread).
async fn verify_all(
    storage: Storage,
    torrent: Arc<Torrent>,
) -> Result<(Storage, PieceSet), EngineError> {
    tokio::task::spawn_blocking(move || {
        let mut have = PieceSet::new(torrent.geometry.piece_count());
        for (piece, expected) in torrent.piece_hashes.iter().enumerate() {
            if storage.verify_piece(piece as u32, expected)? {
                have.insert(piece as u32);
            }
        }
        Ok((storage, have))
    })
    .await
    .expect("verification does not panic")
}

async fn accept_loop(listener: TcpListener, engine: std::sync::Weak<Inner>) {
    loop {
        let Ok((stream, addr)) = listener.accept().await else {
            continue;
        };
        let Some(inner) = engine.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            // An encrypted handshake names its torrent by a hash of its info-hash: it is looked for among ours.
            let torrents = || {
                let torrents = inner.torrents.lock().expect("not poisoned");
                torrents.keys().copied().collect::<Vec<_>>()
            };
            let (connection, handshake) = match connection::accept(
                stream,
                inner.config.encryption,
                torrents,
            )
            .await
            {
                Ok(accepted) => accepted,
                Err(error) => {
                    allpeers_log::bone!(%addr, %error, "transfer: an incoming peer was refused");
                    return;
                }
            };
            let handle = inner
                .torrents
                .lock()
                .expect("not poisoned")
                .get(&handshake.info_hash)
                .cloned();
            if let Some(handle) = handle {
                handle
                    .command(SessionCommand::Incoming {
                        connection,
                        addr,
                        handshake,
                    })
                    .await;
            }
        });
    }
}
