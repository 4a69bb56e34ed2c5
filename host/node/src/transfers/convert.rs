//! The transfers area's rules, with no I/O: the engine's types to the API's and back, where a `.torrent` comes
//! from, the engine's errors as the area's codes (`-32050…`), and which events go out.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use allpeers_model::api::transfers::{
    self as api, ChangedEvent, ProgressEvent, TransferIdParams, TransferProgress, TransferState,
    topics,
};
use allpeers_model::api::{ErrorCode, RpcError};
use allpeers_transfer::bt::create::CreateError;
use allpeers_transfer::bt::engine::EngineError;
use allpeers_transfer::bt::magnet::MagnetLink;
use allpeers_transfer::bt::metadata::MetadataError;
use allpeers_transfer::bt::session::{PeerStats, Progress, TransferState as SessionState};
use allpeers_transfer::manager::{
    ContentKey, ManagerError, Status, TransferEvent, TransferId, TransferInfo,
};
use allpeers_transfer::throttle::Limits;
use allpeers_transfer::web::WebError;
use base64::Engine as _;
use serde_json::Value;

/// `transfer.progress` events per transfer at most this often: a client redraws a bar, it does not need more, and a
/// busy daemon with many transfers must not flood slow clients.
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Where `transfers.add`'s `torrent` says the .torrent is.
#[derive(Debug, PartialEq, Eq)]
pub enum Source {
    Path(std::path::PathBuf),
    Bytes(Vec<u8>),
    /// The metadata is fetched from the link's peers first.
    Magnet(MagnetLink),
    /// An `http://` or `https://` URL of the .torrent.
    Url(String),
}

/// An absolute path, base64 of the file (a .torrent starts with `d`, so its base64 starts with `Z`, never `/`), a
/// magnet link, or the http(s) URL of the file. Other URLs are named and refused.
pub fn source(torrent: &str) -> Result<Source, RpcError> {
    let torrent = torrent.trim();
    let lower = torrent.to_ascii_lowercase();
    if lower.starts_with("magnet:") {
        return MagnetLink::parse(torrent)
            .map(Source::Magnet)
            .map_err(|e| RpcError::new(ErrorCode::BadTorrent, e.to_string()));
    }
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(Source::Url(torrent.to_owned()));
    }
    if let Some((scheme, _)) = torrent.split_once("://") {
        return Err(RpcError::new(
            ErrorCode::UnsupportedSource,
            format!(
                "{scheme}:// URLs are not fetched: give an http(s) URL, the file (a path or its bytes in base64) or a magnet link"
            ),
        ));
    }
    if torrent.starts_with('/') {
        return Ok(Source::Path(torrent.into()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(torrent)
        .map(Source::Bytes)
        .map_err(|e| {
            RpcError::new(
                ErrorCode::BadTorrent,
                format!("`torrent` is neither an absolute path nor base64 ({e})"),
            )
        })
}

pub fn limits_to_api(limits: Limits) -> api::Limits {
    api::Limits {
        down: limits.down,
        up: limits.up,
    }
}

pub fn limits_from_api(limits: api::Limits) -> Limits {
    Limits {
        down: limits.down,
        up: limits.up,
    }
}

pub fn state(status: &Status) -> (TransferState, Option<String>) {
    match status {
        Status::Queued => (TransferState::Queued, None),
        Status::FetchingMetadata => (TransferState::FetchingMetadata, None),
        Status::Downloading => (TransferState::Downloading, None),
        Status::Seeding => (TransferState::Seeding, None),
        Status::Paused(reason) => (TransferState::Paused, Some(reason.clone())),
        Status::Retrying { attempt, error } => (
            TransferState::Retrying,
            Some(format!("attempt {attempt} after: {error}")),
        ),
        Status::Failed(error) => (TransferState::Failed, Some(error.clone())),
    }
}

/// A transfer's numbers; before it has run this start, what is known without it (its length).
pub fn progress(progress: Option<&Progress>, total_bytes: u64) -> TransferProgress {
    match progress {
        Some(p) => TransferProgress {
            total_bytes: p.total_bytes,
            done_bytes: p.done_bytes,
            downloaded: p.downloaded,
            uploaded: p.uploaded,
            down_rate: p.down_rate,
            up_rate: p.up_rate,
            // A torrent's peers are listed; a file download counts the sources it has open.
            peers: u32::try_from(p.peers.len())
                .unwrap_or(u32::MAX)
                .max(p.sources),
            // Rounded up: bytes still to come never read as "0 s left".
            eta_secs: p.eta.map(|eta| eta.as_secs_f64().ceil() as u64),
            peer_sources: api::PeerSources {
                given: p.peer_sources.given,
                tracker: p.peer_sources.tracker,
                dht: p.peer_sources.dht,
                pex: p.peer_sources.pex,
            },
        },
        None => TransferProgress {
            total_bytes,
            done_bytes: 0,
            downloaded: 0,
            uploaded: 0,
            down_rate: 0,
            up_rate: 0,
            peers: 0,
            eta_secs: None,
            peer_sources: api::PeerSources::default(),
        },
    }
}

pub fn transfer(info: &TransferInfo) -> api::Transfer {
    let (state, reason) = state(&info.status);
    api::Transfer {
        id: info.id,
        kind: match info.content {
            ContentKey::InfoHash(_) => api::TransferKind::Torrent,
            ContentKey::Blake3(_) => api::TransferKind::File,
        },
        name: info.name.clone(),
        info_hash: info.content.to_hex(),
        dir: info.dir.display().to_string(),
        state,
        reason,
        priority: info.priority,
        seed_in_place: info.seed_in_place,
        limits: limits_to_api(info.limits),
        progress: progress(info.progress.as_ref(), info.total_bytes),
        sources: (!info.sources.is_empty()).then(|| {
            info.sources
                .iter()
                .map(|(peer, bytes)| api::TransferSource {
                    peer: peer.clone(),
                    bytes: *bytes,
                })
                .collect()
        }),
    }
}

pub fn upload(id: TransferId, peer: &PeerStats) -> api::Upload {
    api::Upload {
        id,
        addr: peer.addr,
        client: peer.client.clone(),
        uploaded: peer.uploaded,
        up_rate: peer.up_rate,
    }
}

pub fn not_found(id: TransferId) -> RpcError {
    RpcError::new(ErrorCode::TransferNotFound, format!("no transfer {id}"))
}

/// The manager's errors as the area's codes; the message is the engine's, which names the problem.
pub fn manager_error(error: ManagerError) -> RpcError {
    let code = match &error {
        ManagerError::Unknown(id) => return not_found(*id),
        ManagerError::Metainfo(_) | ManagerError::Magnet(_) => ErrorCode::BadTorrent,
        ManagerError::Engine(EngineError::Duplicate) => ErrorCode::TransferExists,
        ManagerError::Engine(_)
        | ManagerError::State { .. }
        | ManagerError::NoNetwork
        | ManagerError::NotAFile(_) => ErrorCode::TransferFailed,
    };
    RpcError::new(code, error.to_string())
}

/// A magnet link someone can be asked about: it names a peer (`x.pe`), or a tracker while trackers are used, or the
/// DHT is on. Otherwise nobody could send its metadata, and it is refused instead of listed.
pub fn askable(link: &MagnetLink, use_trackers: bool, dht: bool) -> Result<(), RpcError> {
    if link.peers.is_empty() && (link.trackers.is_empty() || !use_trackers) && !dht {
        return Err(RpcError::new(
            ErrorCode::NoMetadata,
            MetadataError::NoPeers.to_string(),
        ));
    }
    Ok(())
}

pub fn web_error(url: &str, error: WebError) -> RpcError {
    RpcError::new(ErrorCode::FetchFailed, format!("{url}: {error}"))
}

pub fn create_error(error: CreateError) -> RpcError {
    let code = match &error {
        CreateError::Metainfo(_)
        | CreateError::BadName { .. }
        | CreateError::Layout { .. }
        | CreateError::TooManyFiles(_) => ErrorCode::BadTorrent,
        CreateError::Read { .. } | CreateError::NotAFile(_) | CreateError::Empty(_) => {
            ErrorCode::Unreadable
        }
    };
    RpcError::new(code, error.to_string())
}

/// Decides which manager events reach the bus, as what: progress at most every [`PROGRESS_INTERVAL`] per transfer
/// (but always when its state moved, so a client sees the last numbers of a finished download), and a state change
/// only when the state (or its reason) is new.
fn to<T: serde::Serialize>(data: T) -> Value {
    serde_json::to_value(data).expect("API events serialise")
}

#[derive(Default)]
pub struct EventGate {
    progress: HashMap<TransferId, (Instant, SessionState)>,
    states: HashMap<TransferId, (TransferState, Option<String>)>,
}

impl EventGate {
    pub fn pass(&mut self, event: TransferEvent) -> Option<(&'static str, Value)> {
        self.pass_at(event, Instant::now())
    }

    fn pass_at(&mut self, event: TransferEvent, now: Instant) -> Option<(&'static str, Value)> {
        match event {
            TransferEvent::Added(info) => {
                self.states.insert(info.id, state(&info.status));
                Some((topics::TRANSFER_ADDED, to(transfer(&info))))
            }
            TransferEvent::Progress { id, progress: p } => {
                let due = match self.progress.get(&id) {
                    Some((at, last)) => {
                        now.duration_since(*at) >= PROGRESS_INTERVAL || *last != p.state
                    }
                    None => true,
                };
                if !due {
                    return None;
                }
                self.progress.insert(id, (now, p.state.clone()));
                let data = ProgressEvent {
                    id,
                    progress: progress(Some(&p), p.total_bytes),
                };
                Some((topics::TRANSFER_PROGRESS, to(data)))
            }
            TransferEvent::Status { id, status } => {
                let (state, reason) = state(&status);
                if self.states.get(&id) == Some(&(state, reason.clone())) {
                    return None;
                }
                self.states.insert(id, (state, reason.clone()));
                Some((
                    topics::TRANSFER_CHANGED,
                    to(ChangedEvent { id, state, reason }),
                ))
            }
            TransferEvent::Removed { id } => {
                self.progress.remove(&id);
                self.states.remove(&id);
                Some((topics::TRANSFER_REMOVED, to(TransferIdParams { id })))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionState as Session;

    fn sample(state: Session, done: u64) -> Progress {
        Progress {
            state,
            total_bytes: 100,
            done_bytes: done,
            pieces_done: 0,
            pieces_total: 1,
            downloaded: done,
            uploaded: 0,
            wasted: 0,
            hash_failures: 0,
            banned_peers: 0,
            sources: 0,
            down_rate: 10,
            up_rate: 0,
            eta: Some(Duration::from_millis(5500)),
            peers: vec![],
            peer_sources: Default::default(),
        }
    }

    #[test]
    fn sources_are_paths_base64_magnets_or_refused() {
        assert_eq!(
            source("/tmp/a.torrent").unwrap(),
            Source::Path("/tmp/a.torrent".into())
        );
        assert_eq!(source("ZDg6").unwrap(), Source::Bytes(b"d8:".to_vec()));
        let Source::Magnet(link) = source(
            " magnet:?xt=urn:btih:c9e15763f722f23e98a29decdfae341b98d53056&x.pe=127.0.0.1:1 ",
        )
        .unwrap() else {
            panic!("a magnet link")
        };
        assert_eq!(link.peers, vec!["127.0.0.1:1".parse().unwrap()]);
        assert_eq!(
            source("magnet:?xt=urn:btih:00").unwrap_err().kind(),
            Some(ErrorCode::BadTorrent),
            "a malformed link names what is wrong"
        );
        assert_eq!(
            source(" HTTPS://x/a.torrent").unwrap(),
            Source::Url("HTTPS://x/a.torrent".into())
        );
        assert_eq!(
            source("ftp://x/a.torrent").unwrap_err().kind(),
            Some(ErrorCode::UnsupportedSource)
        );
        assert_eq!(
            source("relative/a.torrent").unwrap_err().kind(),
            Some(ErrorCode::BadTorrent)
        );
    }

    #[test]
    fn progress_is_at_most_every_interval_unless_the_state_moves() {
        let mut gate = EventGate::default();
        let t0 = Instant::now();
        let event = |state, done| TransferEvent::Progress {
            id: 1,
            progress: sample(state, done),
        };
        let (topic, data) = gate.pass_at(event(Session::Downloading, 10), t0).unwrap();
        assert_eq!(topic, topics::TRANSFER_PROGRESS);
        // 5.5 s left, said as 6: never less than what is left.
        assert_eq!(data["progress"]["eta_secs"], 6);
        assert!(
            gate.pass_at(
                event(Session::Downloading, 20),
                t0 + Duration::from_millis(100)
            )
            .is_none()
        );
        assert!(
            gate.pass_at(
                event(Session::Seeding, 100),
                t0 + Duration::from_millis(150)
            )
            .is_some(),
            "the last numbers of a finished download go out"
        );
        assert!(
            gate.pass_at(event(Session::Seeding, 100), t0 + PROGRESS_INTERVAL * 2)
                .is_some()
        );
    }

    #[test]
    fn a_state_goes_out_once_and_removal_forgets_it() {
        let mut gate = EventGate::default();
        let paused = || TransferEvent::Status {
            id: 2,
            status: Status::Paused("paused by the user".into()),
        };
        let (topic, data) = gate.pass(paused()).unwrap();
        assert_eq!(topic, topics::TRANSFER_CHANGED);
        assert_eq!(data["state"], "paused");
        assert_eq!(data["reason"], "paused by the user");
        assert!(gate.pass(paused()).is_none());
        assert_eq!(
            gate.pass(TransferEvent::Removed { id: 2 }).unwrap().0,
            topics::TRANSFER_REMOVED
        );
        assert!(gate.pass(paused()).is_some());
    }

    #[test]
    fn errors_get_the_areas_codes() {
        assert_eq!(
            manager_error(ManagerError::Unknown(7)).kind(),
            Some(ErrorCode::TransferNotFound)
        );
        assert_eq!(
            manager_error(ManagerError::Engine(EngineError::Duplicate)).kind(),
            Some(ErrorCode::TransferExists)
        );
        let bad = allpeers_transfer::bt::metainfo::Torrent::from_bytes(b"junk").unwrap_err();
        assert_eq!(
            manager_error(bad.into()).kind(),
            Some(ErrorCode::BadTorrent)
        );
    }
}
