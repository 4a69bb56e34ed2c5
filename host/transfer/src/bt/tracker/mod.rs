//! Tracker announces: HTTP and HTTPS (BEP 3, compact peers BEP 23) and UDP (BEP 15), one request and answer for both, so
//! the session does not care which kind a torrent names.

use std::net::SocketAddr;
use std::time::Duration;

use crate::web::{WebClient, WebError};

pub mod http;
pub mod udp;

/// A tracker must answer within this time.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(15);
/// A response larger than this is junk: 1 MiB holds ~170 000 compact peers.
pub const MAX_RESPONSE_LEN: usize = 1024 * 1024;
/// Peers taken from one response.
pub const MAX_PEERS_PER_RESPONSE: usize = 1000;
/// Trackers announced to at once.
pub const MAX_TRACKERS_ANNOUNCED: usize = 8;
/// The tracker's interval is clamped into this range (a hostile tracker must not make us hammer it or go silent).
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("unsupported tracker URL {0:?} (http://, https:// and udp:// are)")]
    Url(String),
    #[error(transparent)]
    Web(#[from] WebError),
    #[error("tracker I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("the tracker did not answer in time")]
    Timeout,
    #[error("malformed tracker response: {0}")]
    Malformed(String),
    #[error("the tracker refused: {0}")]
    Failure(String),
    #[error("the tracker's host {0:?} has no address")]
    NoAddress(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceEvent {
    Started,
    Completed,
    Stopped,
}

#[derive(Debug, Clone)]
pub struct AnnounceRequest {
    pub url: String,
    pub info_hash: [u8; 20],
    pub peer_id: [u8; 20],
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Option<AnnounceEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceResponse {
    pub interval: Duration,
    pub peers: Vec<SocketAddr>,
}

/// Announces to the tracker `request.url` names (`http://`, `https://` or `udp://`).
pub async fn announce(
    request: &AnnounceRequest,
    web: &WebClient,
) -> Result<AnnounceResponse, TrackerError> {
    let scheme = request
        .url
        .split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("http" | "https") => http::announce(request, web).await,
        Some("udp") => udp::announce(request).await,
        _ => Err(TrackerError::Url(request.url.clone())),
    }
}
