//! One torrent's session: an actor that owns the swarm core (picker, choker, assembler, per-peer pipelines) and
//! turns peer messages, disk completions and timer ticks into requests, uploads and progress. Connections run in
//! their own tasks ([`super::peer`]); pieces go to the disk thread ([`crate::cache::disk`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::connection::Connection;
use super::metainfo::Torrent;
use super::mse::Encryption;
use super::peer::{self, PEER_EVENT_QUEUE, PeerCommand, PeerContext, PeerEvent};
use super::tracker::{self, AnnounceEvent, AnnounceRequest, AnnounceResponse};
use super::wire::{METADATA_PIECE_LEN, MetadataMessage, OutMessage, PeerHandshake, PeerMessage};
use crate::cache::disk::{DiskEvent, DiskWriter, WriteJob};
use crate::cache::journal::Journal;
use crate::cache::storage::{SpaceAccount, Storage};
use crate::swarm::PeerKey;
use crate::swarm::assembler::{AssembledPiece, PieceAssembler, sha1_of};
use crate::swarm::choker::{ChokeDecision, Choker};
use crate::swarm::geometry::{Block, PieceSet};
use crate::swarm::picker::{Arrival, PickMode, Picker};
use crate::swarm::pipeline::{OUR_REQQ, RequestPipeline};
use crate::swarm::rate::RateMeter;
use crate::throttle::{Limits, Throttle, Throttles};
use crate::web::WebClient;

/// How often rates, timeouts, the choker and progress are looked at.
pub const TICK: Duration = Duration::from_secs(1);
/// Verified pieces waiting for the disk thread to write them, in bytes: past this we stop requesting, so a slow disk
/// throttles the download instead of filling memory. Writes go to the page cache and group commits are synced on a
/// thread of their own, so the queue drains in milliseconds on a working disk; it fills only when the writer waits
/// for the sync thread or the disk is slow, and then every MiB of room is a MiB of peak memory (measured when the
/// disk thread still synced itself: peak RSS rose with this queue one for one) while buying only milliseconds.
pub const MAX_DISK_QUEUE_BYTES: u64 = 4 * 1024 * 1024;
/// Buffers of unfinished pieces held in memory, in bytes: past this we stop starting new requests. Room for the
/// pieces a few peers' pipelines span at once.
pub const MAX_ASSEMBLY_BYTES: u64 = 32 * 1024 * 1024;
/// Bad pieces (sent whole) or bad blocks (found by comparison with the good copy) before a peer is banned.
pub const MAX_HASH_STRIKES: u32 = 3;
/// Connections per torrent.
pub const DEFAULT_MAX_PEERS: usize = 50;
/// First wait before dialing a peer again; doubles up to [`MAX_REDIAL_DELAY`].
const REDIAL_DELAY: Duration = Duration::from_secs(2);
/// Addresses kept to dial, from trackers and peer exchange.
pub const MAX_KNOWN_PEERS: usize = 2000;
/// A peer is told of our other peers at most this often (BEP 11: once a minute); the first time just after its
/// handshake.
pub const PEX_INTERVAL: Duration = Duration::from_secs(60);
/// Addresses in one `ut_pex` list (BEP 11).
const PEX_MAX_LIST: usize = 50;
const MAX_REDIAL_DELAY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub peer_id: [u8; 20],
    /// Port peers can reach us on (told to trackers and in the extension handshake).
    pub listen_port: Option<u16>,
    pub rng_seed: u64,
    pub upload_slots: usize,
    pub pick_mode: PickMode,
    pub max_peers: usize,
    /// Announce to the torrent's trackers.
    pub use_trackers: bool,
    pub web: WebClient,
    /// The global throttle and this torrent's, in that order.
    pub throttles: Throttles,
    /// Whether peers are dialed encrypted (MSE).
    pub encryption: Encryption,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferState {
    Downloading,
    Seeding,
    /// Stopped by the user or for lack of space (the message says which); resumable.
    Paused(String),
    Failed(String),
}

/// What one peer does for us and takes from us (the upload monitor reads `uploaded` / `up_rate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    pub addr: SocketAddr,
    pub client: Option<String>,
    pub downloaded: u64,
    pub uploaded: u64,
    pub down_rate: u64,
    pub up_rate: u64,
    /// The connection is RC4-encrypted (MSE).
    pub encrypted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub state: TransferState,
    pub total_bytes: u64,
    /// Bytes verified and on disk.
    pub done_bytes: u64,
    pub pieces_done: u32,
    pub pieces_total: u32,
    /// Payload bytes received, duplicates and failed pieces included.
    pub downloaded: u64,
    pub uploaded: u64,
    /// Received bytes thrown away: duplicates, unrequested blocks, pieces that failed their hash.
    pub wasted: u64,
    pub hash_failures: u32,
    /// Peers banned for sending data that failed verification.
    pub banned_peers: u32,
    pub down_rate: u64,
    pub up_rate: u64,
    pub eta: Option<Duration>,
    pub peers: Vec<PeerStats>,
    /// A file download's sources with a connection open now (a torrent lists its peers in `peers` instead).
    pub sources: u32,
    /// Where the addresses we know came from, each counted once (under the source that named it first).
    pub peer_sources: PeerSources,
}

/// Addresses learned per source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerSources {
    /// Given when the torrent was added, or by the magnet link.
    pub given: u32,
    pub tracker: u32,
    /// The Mainline DHT (BEP 5).
    pub dht: u32,
    /// Peer exchange (BEP 11).
    pub pex: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerSource {
    Given,
    Tracker,
    Dht,
    Pex,
}

impl PeerSources {
    fn count(&mut self, source: PeerSource) {
        let counter = match source {
            PeerSource::Given => &mut self.given,
            PeerSource::Tracker => &mut self.tracker,
            PeerSource::Dht => &mut self.dht,
            PeerSource::Pex => &mut self.pex,
        };
        *counter += 1;
    }
}

#[derive(Debug)]
pub enum SessionCommand {
    AddPeers(Vec<SocketAddr>),
    /// Peers a DHT lookup found ([`super::dht`]).
    DhtPeers(Vec<SocketAddr>),
    Incoming {
        connection: Connection,
        addr: SocketAddr,
        handshake: PeerHandshake,
    },
    Pause,
    Resume,
    Stop,
    /// Every connected peer's numbers as of now (the upload monitor), not as of the last published progress.
    Peers(tokio::sync::oneshot::Sender<Vec<PeerStats>>),
}

/// The running session's handle: commands in, progress out. Dropping every handle stops the session.
#[derive(Debug, Clone)]
pub struct TorrentHandle {
    pub info_hash: [u8; 20],
    throttle: Arc<Throttle>,
    commands: mpsc::Sender<SessionCommand>,
    progress: watch::Receiver<Progress>,
}

impl TorrentHandle {
    pub async fn command(&self, command: SessionCommand) -> bool {
        self.commands.send(command).await.is_ok()
    }

    /// Waits until the session has ended, its queued pieces written, synced and journaled.
    pub async fn ended(&self) {
        let mut progress = self.progress.clone();
        while progress.changed().await.is_ok() {}
    }

    /// This torrent's own upload and download limits (the global ones apply too).
    pub fn set_limits(&self, limits: Limits) {
        self.throttle.set(limits);
    }

    pub fn limits(&self) -> Limits {
        self.throttle.limits()
    }

    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    /// The connected peers' numbers measured now; none once the session has ended.
    pub async fn peers(&self) -> Vec<PeerStats> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if !self.command(SessionCommand::Peers(reply)).await {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// A handle that does not keep the session running, for helpers that live as long as it does.
    pub(crate) fn downgrade(&self) -> WeakTorrentHandle {
        WeakTorrentHandle {
            commands: self.commands.downgrade(),
            progress: self.progress.clone(),
        }
    }

    /// A receiver that sees every progress update (at most one per [`TICK`], plus state changes).
    pub fn watch(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Waits until the download is complete (seeding), or failed / the session ended.
    pub async fn wait_complete(&self) -> Result<(), TransferState> {
        let mut progress = self.progress.clone();
        loop {
            match progress.borrow_and_update().state.clone() {
                TransferState::Seeding => return Ok(()),
                TransferState::Failed(reason) => return Err(TransferState::Failed(reason)),
                _ => {}
            }
            if progress.changed().await.is_err() {
                return Err(TransferState::Failed("the session ended".into()));
            }
        }
    }
}

/// A [`TorrentHandle`] that does not keep its session running.
#[derive(Debug, Clone)]
pub(crate) struct WeakTorrentHandle {
    commands: mpsc::WeakSender<SessionCommand>,
    progress: watch::Receiver<Progress>,
}

impl WeakTorrentHandle {
    /// False once the session has ended.
    pub(crate) async fn command(&self, command: SessionCommand) -> bool {
        match self.commands.upgrade() {
            Some(commands) => commands.send(command).await.is_ok(),
            None => false,
        }
    }

    pub(crate) fn state(&self) -> TransferState {
        self.progress.borrow().state.clone()
    }

    /// Waits `wait`; false as soon as the session ends.
    pub(crate) async fn wait(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                changed = self.progress.changed() => if changed.is_err() { return false },
                _ = tokio::time::sleep_until(deadline) => return true,
            }
        }
    }
}

struct Peer {
    addr: SocketAddr,
    client: Option<String>,
    encrypted: bool,
    commands: mpsc::UnboundedSender<PeerCommand>,
    has: PieceSet,
    pipeline: RequestPipeline,
    am_interested: bool,
    peer_choking: bool,
    upload: RateMeter,
    downloaded: u64,
    strikes: u32,
    /// The id the peer wants `ut_metadata` messages sent with, if it speaks BEP 9.
    ut_metadata: Option<u8>,
    /// Metadata pieces sent to this peer: bounded, since a peer needs each piece once.
    metadata_sent: u32,
    /// The id the peer wants `ut_pex` messages sent with, if it exchanges peers (never for a private torrent).
    ut_pex: Option<u8>,
    /// Where others can dial this peer: the address we dialed, or its IP and the port its extension handshake names.
    listen: Option<SocketAddr>,
    /// The addresses our `ut_pex` messages told this peer of, and when the next may go.
    pex_told: HashSet<SocketAddr>,
    next_pex: Instant,
}

impl Peer {
    fn send(&self, message: OutMessage) {
        let _ = self.commands.send(PeerCommand::Send(message));
    }
}

struct KnownAddr {
    next_dial: Instant,
    delay: Duration,
    connected: bool,
}

pub(crate) struct Session {
    torrent: Arc<Torrent>,
    options: SessionOptions,
    state: TransferState,
    picker: Picker,
    choker: Choker,
    assembler: PieceAssembler,
    /// Pieces written (in the page cache at least; the journal follows at the next sync): what we announce and serve.
    written: PieceSet,
    peers: BTreeMap<PeerKey, Peer>,
    known: HashMap<SocketAddr, KnownAddr>,
    peer_sources: PeerSources,
    banned: HashSet<SocketAddr>,
    /// Who sent each block of the pieces being assembled (keys are never reused, so a departed peer's stay valid).
    senders: HashMap<u32, Vec<Option<PeerKey>>>,
    /// Pieces that failed with blocks from several peers: each block's sender and SHA-1, compared with the good
    /// copy once the piece verifies, so exactly the peers that sent bad blocks are struck (libtorrent's smart ban).
    suspects: HashMap<u32, Vec<(PeerKey, [u8; 20])>>,
    next_key: u64,
    disk: Option<DiskWriter>,
    /// Verified pieces queued for the disk thread and not yet written, in bytes.
    disk_queue_bytes: u64,
    /// Pieces written and not yet durable, in bytes: the download is complete only once they are synced.
    unsynced_bytes: u64,
    down_rate: RateMeter,
    up_rate: RateMeter,
    downloaded: u64,
    uploaded: u64,
    wasted: u64,
    hash_failures: u32,
    next_announce: Instant,
    announce_interval: Duration,
    announced_started: bool,
    peer_context: PeerContext,
    tracker_answers: mpsc::Sender<AnnounceResponse>,
    progress: watch::Sender<Progress>,
}

/// Starts a session over `content`.
/// A torrent's data: what it is, where it lives, what of it is on disk.
pub(crate) struct Content {
    pub torrent: Arc<Torrent>,
    pub storage: Arc<Storage>,
    pub have: PieceSet,
    /// `None` when seeding files in place (nothing is written).
    pub journal: Option<Journal>,
}

pub(crate) fn spawn(
    content: Content,
    space: Arc<SpaceAccount>,
    options: SessionOptions,
    throttle: Arc<Throttle>,
    initial_peers: Vec<SocketAddr>,
) -> TorrentHandle {
    let Content {
        torrent,
        storage,
        have,
        journal,
    } = content;
    let now = Instant::now();
    let (peer_events, peer_rx) = mpsc::channel(PEER_EVENT_QUEUE);
    let (tracker_answers, tracker_rx) = mpsc::channel(tracker::MAX_TRACKERS_ANNOUNCED);
    let (disk_tx, disk_rx) = mpsc::unbounded_channel();
    let disk = journal.map(|journal| DiskWriter::spawn(storage.clone(), journal, space, disk_tx));
    let mut picker = Picker::new(torrent.geometry, have.clone(), options.rng_seed);
    picker.set_mode(options.pick_mode);
    let mut choker = Choker::new(options.upload_slots, now, options.rng_seed ^ 0x5eed);
    let state = if picker.is_complete() {
        TransferState::Seeding
    } else {
        TransferState::Downloading
    };
    choker.set_seeding(state == TransferState::Seeding);
    let (progress, progress_rx) = watch::channel(Progress {
        state: state.clone(),
        total_bytes: torrent.geometry.total_len(),
        done_bytes: 0,
        pieces_done: 0,
        pieces_total: torrent.geometry.piece_count(),
        downloaded: 0,
        uploaded: 0,
        wasted: 0,
        hash_failures: 0,
        banned_peers: 0,
        sources: 0,
        down_rate: 0,
        up_rate: 0,
        eta: None,
        peers: Vec::new(),
        peer_sources: PeerSources::default(),
    });
    let (commands, command_rx) = mpsc::channel(64);
    let peer_context = PeerContext {
        info_hash: torrent.info_hash,
        our_id: options.peer_id,
        storage: storage.clone(),
        throttles: options.throttles.clone(),
        events: peer_events,
        encryption: options.encryption,
    };
    let mut session = Session {
        assembler: PieceAssembler::new(torrent.geometry),
        torrent: torrent.clone(),
        options,
        state,
        picker,
        choker,
        written: have,
        peers: BTreeMap::new(),
        known: HashMap::new(),
        peer_sources: PeerSources::default(),
        banned: HashSet::new(),
        senders: HashMap::new(),
        suspects: HashMap::new(),
        next_key: 0,
        disk,
        disk_queue_bytes: 0,
        unsynced_bytes: 0,
        down_rate: RateMeter::new(now),
        up_rate: RateMeter::new(now),
        downloaded: 0,
        uploaded: 0,
        wasted: 0,
        hash_failures: 0,
        next_announce: now,
        announce_interval: tracker::MIN_INTERVAL,
        announced_started: false,
        peer_context,
        tracker_answers,
        progress,
    };
    session.add_peers(initial_peers, PeerSource::Given, now);
    session.publish(now);
    tokio::spawn(session.run(command_rx, peer_rx, tracker_rx, disk_rx));
    TorrentHandle {
        info_hash: torrent.info_hash,
        throttle,
        commands,
        progress: progress_rx,
    }
}

impl Session {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<SessionCommand>,
        mut peer_events: mpsc::Receiver<PeerEvent>,
        mut tracker_answers: mpsc::Receiver<AnnounceResponse>,
        mut disk_events: mpsc::UnboundedReceiver<DiskEvent>,
    ) {
        let mut next_tick = Instant::now() + TICK;
        let has_disk = self.disk.is_some();
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None | Some(SessionCommand::Stop) => break,
                    Some(command) => self.on_command(command, Instant::now()),
                },
                Some(event) = peer_events.recv() => self.on_peer_event(event, Instant::now()),
                Some(event) = disk_events.recv(), if has_disk => self.on_disk(event, Instant::now()),
                Some(answer) = tracker_answers.recv() => {
                    let now = Instant::now();
                    self.announce_interval = answer.interval;
                    self.next_announce = now + answer.interval;
                    self.add_peers(answer.peers, PeerSource::Tracker, now);
                }
                _ = tokio::time::sleep_until(next_tick.into()) => {
                    let now = Instant::now();
                    self.on_tick(now);
                    next_tick = now + TICK;
                }
            }
        }
        for peer in self.peers.values() {
            let _ = peer.commands.send(PeerCommand::Close);
        }
        if self.options.use_trackers && self.announced_started {
            self.announce(Some(AnnounceEvent::Stopped));
        }
        // Dropping the disk writer lets it store what is queued; its threads are joined off the runtime's workers,
        // and before the progress channel closes, so whoever waits for the end (`TorrentHandle::ended`) finds the
        // journal complete.
        if let Some(disk) = self.disk.take() {
            let _ = tokio::task::spawn_blocking(move || drop(disk)).await;
        }
    }

    fn is_active(&self) -> bool {
        matches!(
            self.state,
            TransferState::Downloading | TransferState::Seeding
        )
    }

    fn on_command(&mut self, command: SessionCommand, now: Instant) {
        match command {
            SessionCommand::AddPeers(addrs) => self.add_peers(addrs, PeerSource::Given, now),
            SessionCommand::DhtPeers(addrs) => self.add_peers(addrs, PeerSource::Dht, now),
            SessionCommand::Incoming {
                connection,
                addr,
                handshake,
            } => {
                if !self.is_active()
                    || self.banned.contains(&addr)
                    || self.peers.len() >= self.options.max_peers
                {
                    return;
                }
                let key = self.new_key();
                tokio::spawn(peer::accept(
                    key,
                    addr,
                    connection,
                    handshake,
                    self.peer_context.clone(),
                ));
            }
            SessionCommand::Pause => self.pause("paused by the user".into(), now),
            SessionCommand::Resume => {
                if matches!(self.state, TransferState::Paused(_)) {
                    self.state = self.active_state();
                    for known in self.known.values_mut() {
                        known.next_dial = now;
                        known.delay = REDIAL_DELAY;
                    }
                    self.dial_due(now);
                    self.publish(now);
                }
            }
            SessionCommand::Stop => {}
            SessionCommand::Peers(reply) => {
                let _ = reply.send(self.peer_stats(now));
            }
        }
    }

    fn active_state(&self) -> TransferState {
        if self.picker.is_complete() && self.disk_queue_bytes == 0 && self.unsynced_bytes == 0 {
            TransferState::Seeding
        } else {
            TransferState::Downloading
        }
    }

    /// Stops exchanging data: every connection is closed (they are dialed again on resume).
    fn pause(&mut self, reason: String, now: Instant) {
        self.state = TransferState::Paused(reason);
        self.assembler.release_spare();
        for peer in self.peers.values() {
            let _ = peer.commands.send(PeerCommand::Close);
        }
        self.publish(now);
    }

    fn new_key(&mut self) -> PeerKey {
        self.next_key += 1;
        PeerKey(self.next_key)
    }

    fn add_peers(&mut self, addrs: Vec<SocketAddr>, source: PeerSource, now: Instant) {
        for addr in addrs {
            // Bounded: trackers and peer exchange may name thousands; the first ones are plenty to dial.
            if self.known.len() >= MAX_KNOWN_PEERS && !self.known.contains_key(&addr) {
                break;
            }
            if self.banned.contains(&addr) {
                continue;
            }
            self.known.entry(addr).or_insert_with(|| {
                self.peer_sources.count(source);
                KnownAddr {
                    next_dial: now,
                    delay: REDIAL_DELAY,
                    connected: false,
                }
            });
        }
        self.dial_due(now);
    }

    fn dial_due(&mut self, now: Instant) {
        if !self.is_active() {
            return;
        }
        let mut due: Vec<SocketAddr> = self
            .known
            .iter()
            .filter(|(addr, k)| !k.connected && k.next_dial <= now && !self.banned.contains(addr))
            .map(|(addr, _)| *addr)
            .collect();
        due.sort();
        for addr in due {
            if self.peers.len() + self.dialing() >= self.options.max_peers {
                break;
            }
            let known = self.known.get_mut(&addr).expect("known");
            known.connected = true;
            let key = self.new_key();
            tokio::spawn(peer::connect(key, addr, self.peer_context.clone()));
        }
    }

    fn dialing(&self) -> usize {
        let connected: HashSet<SocketAddr> = self.peers.values().map(|p| p.addr).collect();
        self.known
            .iter()
            .filter(|(addr, k)| k.connected && !connected.contains(addr))
            .count()
    }

    fn on_peer_event(&mut self, event: PeerEvent, now: Instant) {
        match event {
            PeerEvent::Ready {
                key,
                addr,
                handshake,
                encrypted,
                commands,
            } => self.on_ready(key, addr, handshake, encrypted, commands, now),
            PeerEvent::Messages { key, messages } => {
                for message in messages {
                    if !self.peers.contains_key(&key) {
                        return;
                    }
                    self.on_message(key, message, now);
                }
                self.fill_requests(key, now);
            }
            PeerEvent::Uploaded { key, bytes } => {
                self.uploaded += bytes;
                self.up_rate.record(bytes, now);
                self.choker.sent_to(key, bytes);
                if let Some(peer) = self.peers.get_mut(&key) {
                    peer.upload.record(bytes, now);
                }
            }
            PeerEvent::Closed { key, error } => self.on_closed(key, error, now),
        }
    }

    fn on_ready(
        &mut self,
        key: PeerKey,
        addr: SocketAddr,
        handshake: PeerHandshake,
        encrypted: bool,
        commands: mpsc::UnboundedSender<PeerCommand>,
        now: Instant,
    ) {
        let duplicate = self.peers.values().any(|p| p.addr == addr);
        if handshake.peer_id == self.options.peer_id || duplicate || !self.is_active() {
            let _ = commands.send(PeerCommand::Close);
            return;
        }
        allpeers_log::bone!(%addr, encrypted, "transfer: peer connected");
        let peer = Peer {
            addr,
            client: None,
            encrypted,
            commands,
            has: PieceSet::new(self.torrent.geometry.piece_count()),
            pipeline: RequestPipeline::new(now),
            am_interested: false,
            peer_choking: true,
            upload: RateMeter::new(now),
            downloaded: 0,
            strikes: 0,
            ut_metadata: None,
            metadata_sent: 0,
            ut_pex: None,
            // Dialed by us: its address is where it listens.
            listen: self
                .known
                .get(&addr)
                .is_some_and(|k| k.connected)
                .then_some(addr),
            pex_told: HashSet::new(),
            next_pex: now,
        };
        if handshake.supports_extended {
            peer.send(OutMessage::ExtendedHandshake {
                reqq: OUR_REQQ,
                port: self.options.listen_port,
                metadata_size: Some(self.torrent.info_bytes.len() as u32),
                pex: !self.torrent.private,
            });
        }
        if !self.written.is_empty() {
            peer.send(OutMessage::Bitfield(bytes::Bytes::copy_from_slice(
                self.written.as_wire(),
            )));
        }
        self.peers.insert(key, peer);
        self.choker.peer_connected(key);
    }

    fn close_peer(&mut self, key: PeerKey, why: &str) {
        if let Some(peer) = self.peers.get(&key) {
            allpeers_log::flesh!(addr = %peer.addr, why, "transfer: dropping a peer");
            let _ = peer.commands.send(PeerCommand::Close);
        }
    }

    fn on_closed(&mut self, key: PeerKey, error: Option<peer::PeerError>, now: Instant) {
        let Some(peer) = self.peers.remove(&key) else {
            // A dial that never became a peer.
            self.redial_later(None, now);
            return;
        };
        if let Some(error) = error {
            allpeers_log::bone!(addr = %peer.addr, %error, "transfer: peer connection ended");
        }
        self.picker.peer_gone(key, &peer.has);
        self.choker.peer_gone(key);
        self.redial_later(Some(peer.addr), now);
    }

    /// Marks a dialed address free to dial again after a backoff.
    fn redial_later(&mut self, addr: Option<SocketAddr>, now: Instant) {
        let connected: HashSet<SocketAddr> = self.peers.values().map(|p| p.addr).collect();
        for (known_addr, known) in self.known.iter_mut() {
            let ended = match addr {
                Some(addr) => *known_addr == addr,
                None => known.connected && !connected.contains(known_addr),
            };
            if ended && known.connected {
                known.connected = false;
                known.next_dial = now + known.delay;
                known.delay = (known.delay * 2).min(MAX_REDIAL_DELAY);
            }
        }
    }

    fn on_message(&mut self, key: PeerKey, message: PeerMessage, now: Instant) {
        let count = self.torrent.geometry.piece_count();
        let active = self.is_active();
        let peer = self.peers.get_mut(&key).expect("checked by the caller");
        match message {
            PeerMessage::KeepAlive | PeerMessage::Extended(_) | PeerMessage::Unknown(_) => {}
            PeerMessage::ExtendedHandshake {
                reqq,
                client,
                ut_metadata,
                metadata_size: _,
                ut_pex,
                listen_port,
            } => {
                if let Some(reqq) = reqq {
                    peer.pipeline.set_peer_reqq(reqq);
                }
                peer.client = client;
                peer.ut_metadata = ut_metadata;
                // BEP 27: no peer exchange for a private torrent.
                peer.ut_pex = ut_pex.filter(|_| !self.torrent.private);
                if let Some(port) = listen_port {
                    peer.listen = Some(SocketAddr::new(peer.addr.ip(), port));
                }
            }
            PeerMessage::Pex { added } => {
                if !self.torrent.private {
                    allpeers_log::bone!(from = %peer.addr, peers = added.len(), "transfer: peers exchanged");
                    self.add_peers(added, PeerSource::Pex, now);
                }
            }
            PeerMessage::Metadata(message) => {
                let info = &self.torrent.info_bytes;
                if let (MetadataMessage::Request(piece), Some(peer_id)) =
                    (message, peer.ut_metadata)
                {
                    let pieces = info.len().div_ceil(METADATA_PIECE_LEN) as u32;
                    let start = piece as usize * METADATA_PIECE_LEN;
                    let message = if piece < pieces && peer.metadata_sent < 4 * pieces {
                        peer.metadata_sent += 1;
                        MetadataMessage::Data {
                            piece,
                            total_size: info.len() as u32,
                            data: info.slice(start..(start + METADATA_PIECE_LEN).min(info.len())),
                        }
                    } else {
                        MetadataMessage::Reject(piece)
                    };
                    peer.send(OutMessage::Metadata { peer_id, message });
                }
            }
            PeerMessage::Bitfield(bits) => {
                // BEP 3 puts the bitfield first, but aria2c sends a fresh one later (seen when it completes): a later
                // bitfield replaces what the peer said before.
                let Some(has) = PieceSet::from_wire(&bits, count) else {
                    return self
                        .close_peer(key, "bitfield of the wrong length or with spare bits set");
                };
                if has.is_full() && self.state == TransferState::Seeding {
                    // Two seeders have nothing to exchange; do not dial this one again either.
                    let addr = peer.addr;
                    self.known.remove(&addr);
                    return self.close_peer(key, "both sides are seeding");
                }
                self.picker.peer_lost_set(&peer.has);
                self.picker.peer_has_set(&has);
                peer.has = has;
                let wants = self.picker.wants_any_of(&peer.has);
                self.set_interest(key, wants);
            }
            PeerMessage::Have(piece) => {
                if piece >= count {
                    return self.close_peer(key, "have for a piece past the end");
                }
                if peer.has.insert(piece) {
                    self.picker.peer_has_piece(piece);
                    if self.picker.is_needed(piece) {
                        self.set_interest(key, true);
                    }
                }
            }
            PeerMessage::Choke => {
                peer.peer_choking = true;
                for block in peer.pipeline.drain() {
                    self.picker.release(key, block);
                }
            }
            PeerMessage::Unchoke => {
                allpeers_log::bone!(addr = %peer.addr, "transfer: unchoked by the peer");
                peer.peer_choking = false;
            }
            PeerMessage::Interested | PeerMessage::NotInterested => {
                let decisions = self
                    .choker
                    .interested(key, message == PeerMessage::Interested);
                self.apply_choke(decisions);
            }
            PeerMessage::Request(block) => {
                if !self.torrent.geometry.is_valid_request(block) {
                    return self.close_peer(key, "request out of bounds");
                }
                if self.choker.is_unchoked(key) && self.written.contains(block.piece) && active {
                    let _ = peer.commands.send(PeerCommand::Upload(block));
                }
            }
            PeerMessage::Cancel(_) => {}
            PeerMessage::Piece { block, data } => self.on_block(key, block, data, now),
        }
    }

    fn set_interest(&mut self, key: PeerKey, interested: bool) {
        if let Some(peer) = self.peers.get_mut(&key)
            && peer.am_interested != interested
        {
            peer.am_interested = interested;
            peer.send(if interested {
                OutMessage::Interested
            } else {
                OutMessage::NotInterested
            });
        }
    }

    fn apply_choke(&mut self, decisions: Vec<ChokeDecision>) {
        for decision in decisions {
            let (key, message) = match decision {
                ChokeDecision::Unchoke(key) => (key, OutMessage::Unchoke),
                ChokeDecision::Choke(key) => (key, OutMessage::Choke),
            };
            if let Some(peer) = self.peers.get(&key) {
                peer.send(message);
            }
        }
    }

    fn on_block(&mut self, key: PeerKey, block: Block, data: bytes::Bytes, now: Instant) {
        let len = data.len() as u64;
        self.downloaded += len;
        self.down_rate.record(len, now);
        self.choker.received_from(key, len);
        let peer = self.peers.get_mut(&key).expect("checked by the caller");
        peer.downloaded += len;
        peer.pipeline.arrived(block, now);
        match self.picker.block_arrived(key, block) {
            Arrival::Fresh { cancels } => {
                for (other, block) in cancels {
                    if let Some(other) = self.peers.get_mut(&other) {
                        other.pipeline.cancelled(block);
                        other.send(OutMessage::Cancel(block));
                    }
                }
                let blocks = self.torrent.geometry.blocks_in_piece(block.piece) as usize;
                let senders = self
                    .senders
                    .entry(block.piece)
                    .or_insert_with(|| vec![None; blocks]);
                senders[block.index() as usize] = Some(key);
                let expected = self.torrent.piece_hashes[block.piece as usize];
                if let Some(piece) = self.assembler.add(block, &data, &expected) {
                    self.on_piece_assembled(piece, now);
                }
            }
            Arrival::Duplicate | Arrival::Unrequested => self.wasted += len,
        }
    }

    fn on_piece_assembled(&mut self, piece: AssembledPiece, now: Instant) {
        let senders: Vec<PeerKey> = self
            .senders
            .remove(&piece.piece)
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect();
        let size = u64::from(self.torrent.geometry.piece_size(piece.piece));
        if piece.hash_ok {
            if let Some(suspects) = self.suspects.remove(&piece.piece) {
                for ((sender, hash), good) in suspects.into_iter().zip(piece.blocks()) {
                    if hash != sha1_of(&[good]) {
                        self.strike(sender);
                    }
                }
            }
            self.picker.piece_verified(piece.piece);
            self.disk_queue_bytes += size;
            let job = WriteJob {
                piece: piece.piece,
                data: piece.data,
            };
            if !self.disk.as_ref().is_some_and(|disk| disk.write(job)) {
                self.state = TransferState::Failed("the disk thread stopped".into());
                self.publish(now);
            }
            return;
        }
        self.hash_failures += 1;
        self.wasted += size;
        self.picker.piece_failed(piece.piece);
        allpeers_log::marrow!(piece = piece.piece, "transfer: piece failed its hash");
        let first = senders.first().copied();
        let blocks = piece.blocks().count();
        if senders.len() == blocks && senders.iter().all(|s| Some(*s) == first) {
            // One peer sent the whole piece: it sent the bad data.
            if let Some(sender) = first {
                self.strike(sender);
            }
        } else if senders.len() == blocks {
            let hashes = piece.blocks().map(|b| sha1_of(&[b]));
            self.suspects
                .insert(piece.piece, senders.into_iter().zip(hashes).collect());
        }
    }

    /// A peer sent data that failed verification: banned after [`MAX_HASH_STRIKES`].
    fn strike(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.strikes += 1;
        if peer.strikes >= MAX_HASH_STRIKES {
            let addr = peer.addr;
            self.banned.insert(addr);
            self.known.remove(&addr);
            self.close_peer(key, "sent too many blocks that failed verification");
        }
    }

    fn on_disk(&mut self, event: DiskEvent, now: Instant) {
        let size = |piece| u64::from(self.torrent.geometry.piece_size(piece));
        match event {
            DiskEvent::Written { pieces, buffers } => {
                self.assembler.recycle(buffers);
                for piece in pieces {
                    self.disk_queue_bytes -= size(piece);
                    self.unsynced_bytes += size(piece);
                    self.written.insert(piece);
                }
                // The last pieces are synced at once: no more writes will come to fill a group commit.
                if self.picker.is_complete()
                    && self.disk_queue_bytes == 0
                    && let Some(disk) = &self.disk
                {
                    disk.sync();
                }
            }
            DiskEvent::Durable { pieces } => {
                // Announced once durable: a peer that sees us complete may drop us (seeds leave seeds), and that
                // should not happen before the download is complete on our side too.
                for piece in pieces {
                    self.unsynced_bytes -= size(piece);
                    for peer in self.peers.values() {
                        peer.send(OutMessage::Have(piece));
                    }
                }
                if self.state == TransferState::Downloading
                    && self.active_state() == TransferState::Seeding
                {
                    self.on_complete(now);
                }
            }
            DiskEvent::Failed { pieces, error } | DiskEvent::Lost { pieces, error } => {
                for piece in pieces {
                    if self.written.remove(piece) {
                        self.unsynced_bytes -= size(piece);
                    } else {
                        self.disk_queue_bytes -= size(piece);
                    }
                    self.picker.piece_lost(piece);
                }
                allpeers_log::skin!(%error, "transfer: storing pieces failed");
                if error.is_out_of_space() {
                    self.pause(error.to_string(), now);
                } else {
                    self.state = TransferState::Failed(error.to_string());
                    self.pause_connections();
                    self.publish(now);
                }
            }
        }
    }

    fn pause_connections(&self) {
        for peer in self.peers.values() {
            let _ = peer.commands.send(PeerCommand::Close);
        }
    }

    fn on_complete(&mut self, now: Instant) {
        allpeers_log::flesh!(name = %self.torrent.name, "transfer: download complete, seeding");
        self.state = TransferState::Seeding;
        self.choker.set_seeding(true);
        self.assembler.release_spare();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for key in keys {
            self.set_interest(key, false);
        }
        if self.options.use_trackers {
            self.announce(Some(AnnounceEvent::Completed));
        }
        self.publish(now);
    }

    fn fill_requests(&mut self, key: PeerKey, now: Instant) {
        if self.state != TransferState::Downloading
            || self.disk_queue_bytes >= MAX_DISK_QUEUE_BYTES
            || self.assembler.buffered_bytes() >= MAX_ASSEMBLY_BYTES
        {
            return;
        }
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.peer_choking || !peer.am_interested {
            return;
        }
        let room = peer.pipeline.room(now);
        if room == 0 {
            return;
        }
        for block in self.picker.pick(key, &peer.has, room) {
            peer.pipeline.sent(block, now);
            peer.send(OutMessage::Request(block));
        }
    }

    fn on_tick(&mut self, now: Instant) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for &key in &keys {
            let peer = self.peers.get_mut(&key).expect("listed");
            for block in peer.pipeline.expire(now) {
                self.picker.release(key, block);
            }
        }
        let decisions = self.choker.handle_timeout(now);
        self.apply_choke(decisions);
        for key in keys {
            self.fill_requests(key, now);
        }
        self.exchange_peers(now);
        if self.is_active() {
            self.dial_due(now);
            if self.options.use_trackers
                && now >= self.next_announce
                && !self.torrent.trackers.is_empty()
            {
                let event = (!self.announced_started).then_some(AnnounceEvent::Started);
                self.announced_started = true;
                self.next_announce = now + self.announce_interval;
                self.announce(event);
            }
        }
        self.publish(now);
    }

    /// Tells each peer that exchanges peers which of ours it can dial (and which are gone since), once a minute.
    fn exchange_peers(&mut self, now: Instant) {
        if self.torrent.private {
            return;
        }
        let dialable: Vec<(PeerKey, SocketAddr)> = self
            .peers
            .iter()
            .filter_map(|(key, p)| Some((*key, p.listen?)))
            .collect();
        for (key, peer) in self.peers.iter_mut() {
            let Some(peer_id) = peer.ut_pex else {
                continue;
            };
            if now < peer.next_pex {
                continue;
            }
            peer.next_pex = now + PEX_INTERVAL;
            let current: HashSet<SocketAddr> = dialable
                .iter()
                .filter(|(other, _)| other != key)
                .map(|(_, addr)| *addr)
                .collect();
            let mut added: Vec<SocketAddr> = current.difference(&peer.pex_told).copied().collect();
            let mut dropped: Vec<SocketAddr> =
                peer.pex_told.difference(&current).copied().collect();
            added.sort();
            dropped.sort();
            added.truncate(PEX_MAX_LIST);
            dropped.truncate(PEX_MAX_LIST);
            if added.is_empty() && dropped.is_empty() {
                continue;
            }
            peer.pex_told.extend(added.iter().copied());
            for gone in &dropped {
                peer.pex_told.remove(gone);
            }
            peer.send(OutMessage::Pex {
                peer_id,
                added,
                dropped,
            });
        }
    }

    fn announce(&self, event: Option<AnnounceEvent>) {
        let left = self.torrent.geometry.total_len() - self.done_bytes();
        for url in self
            .torrent
            .trackers
            .iter()
            .take(tracker::MAX_TRACKERS_ANNOUNCED)
        {
            let request = AnnounceRequest {
                url: url.clone(),
                info_hash: self.torrent.info_hash,
                peer_id: self.options.peer_id,
                port: self.options.listen_port.unwrap_or(0),
                uploaded: self.uploaded,
                downloaded: self.downloaded,
                left,
                event,
            };
            let answers = self.tracker_answers.clone();
            let web = self.options.web.clone();
            tokio::spawn(async move {
                match tracker::announce(&request, &web).await {
                    Ok(response) => {
                        let _ = answers.send(response).await;
                    }
                    Err(error) => {
                        allpeers_log::marrow!(url = %request.url, %error, "transfer: tracker announce failed")
                    }
                }
            });
        }
    }

    fn done_bytes(&self) -> u64 {
        self.written
            .iter()
            .map(|p| u64::from(self.torrent.geometry.piece_size(p)))
            .sum()
    }

    fn peer_stats(&mut self, now: Instant) -> Vec<PeerStats> {
        self.peers
            .values_mut()
            .map(|p| PeerStats {
                addr: p.addr,
                client: p.client.clone(),
                downloaded: p.downloaded,
                uploaded: p.upload.total(),
                down_rate: p.pipeline.rate(now),
                up_rate: p.upload.rate(now),
                encrypted: p.encrypted,
            })
            .collect()
    }

    fn publish(&mut self, now: Instant) {
        let done_bytes = self.done_bytes();
        let down_rate = self.down_rate.rate(now);
        let remaining = self.torrent.geometry.total_len() - done_bytes;
        let eta = (self.state == TransferState::Downloading && down_rate > 0)
            .then(|| Duration::from_secs(remaining / down_rate));
        let peers = self.peer_stats(now);
        let progress = Progress {
            state: self.state.clone(),
            total_bytes: self.torrent.geometry.total_len(),
            done_bytes,
            pieces_done: self.written.count(),
            pieces_total: self.torrent.geometry.piece_count(),
            downloaded: self.downloaded,
            uploaded: self.uploaded,
            wasted: self.wasted,
            hash_failures: self.hash_failures,
            banned_peers: self.banned.len() as u32,
            sources: 0,
            down_rate,
            up_rate: self.up_rate.rate(now),
            eta,
            peers,
            peer_sources: self.peer_sources,
        };
        self.progress.send_replace(progress);
    }
}
