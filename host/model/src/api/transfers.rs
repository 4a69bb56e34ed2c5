//! Params, results and events of downloads and uploads: `transfers.*`, the global limits `net.limits.*`, and the
//! events `transfer.added`, `transfer.progress`, `transfer.changed`, `transfer.removed`.
//!
//! The transfer crate keeps its own richer types (per-peer statistics, piece counts); these are what crosses the
//! local API. Byte counts are bytes, rates bytes per second.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub const TRANSFERS_ADD: &str = "transfers.add";
pub const TRANSFERS_LIST: &str = "transfers.list";
pub const TRANSFERS_GET: &str = "transfers.get";
pub const TRANSFERS_PAUSE: &str = "transfers.pause";
pub const TRANSFERS_RESUME: &str = "transfers.resume";
pub const TRANSFERS_CANCEL: &str = "transfers.cancel";
pub const TRANSFERS_SET_LIMITS: &str = "transfers.set_limits";
pub const TRANSFERS_SET_PRIORITY: &str = "transfers.set_priority";
pub const TRANSFERS_DOWNLOAD_DIR_GET: &str = "transfers.download_dir.get";
pub const TRANSFERS_DOWNLOAD_DIR_SET: &str = "transfers.download_dir.set";
pub const TRANSFERS_UPLOADS: &str = "transfers.uploads";
pub const TRANSFERS_SEED: &str = "transfers.seed";
pub const NET_LIMITS_GET: &str = "net.limits.get";
pub const NET_LIMITS_SET: &str = "net.limits.set";

/// Every method of the transfers area.
pub const METHODS: &[&str] = &[
    TRANSFERS_ADD,
    TRANSFERS_LIST,
    TRANSFERS_GET,
    TRANSFERS_PAUSE,
    TRANSFERS_RESUME,
    TRANSFERS_CANCEL,
    TRANSFERS_SET_LIMITS,
    TRANSFERS_SET_PRIORITY,
    TRANSFERS_DOWNLOAD_DIR_GET,
    TRANSFERS_DOWNLOAD_DIR_SET,
    TRANSFERS_UPLOADS,
    TRANSFERS_SEED,
    NET_LIMITS_GET,
    NET_LIMITS_SET,
];

/// The transfers area's event topics.
pub mod topics {
    /// A transfer was added (by any client, or restored at start): the transfer.
    pub const TRANSFER_ADDED: &str = "transfer.added";
    /// A running transfer's bytes, rates, peers and ETA; at most one per 250 ms per transfer.
    pub const TRANSFER_PROGRESS: &str = "transfer.progress";
    /// A transfer's state changed (queued, fetching_metadata, downloading, seeding, paused, retrying, failed).
    pub const TRANSFER_CHANGED: &str = "transfer.changed";
    /// A transfer was cancelled: its id.
    pub const TRANSFER_REMOVED: &str = "transfer.removed";

    pub const ALL: &[&str] = &[
        TRANSFER_ADDED,
        TRANSFER_PROGRESS,
        TRANSFER_CHANGED,
        TRANSFER_REMOVED,
    ];
}

/// `transfers.add`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct AddTransferParams {
    /// The .torrent: an absolute path the daemon can read, the file's bytes in base64, or a magnet link (listed at
    /// once in state `fetching_metadata` while its metadata is asked of the link's peers and trackers), or the
    /// `http://` / `https://` URL of the file (fetched before the call answers: at most 16 MiB, 30 s, 5 redirects;
    /// `FetchFailed` says why not). Other URLs are refused with `UnsupportedSource`.
    pub torrent: String,
    /// Where the files go (absolute); absent: the configured download directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Peers to dial besides the torrent's trackers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<SocketAddr>,
    /// Add without starting.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(as = "Option<bool>", optional))]
    pub paused: bool,
    /// Fetch pieces in order (for playing while downloading).
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(as = "Option<bool>", optional))]
    pub sequential: bool,
    /// Higher starts first when downloads queue.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(as = "Option<i32>", optional))]
    pub priority: i32,
    /// This transfer's own limits (the global ones apply too); absent: none of its own.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(as = "Option<Limits>", optional))]
    pub limits: Limits,
}

/// `transfers.seed`'s params: share a file from disk, in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SeedParams {
    /// The file or folder (absolute path); it is hashed once and never copied. A folder is one torrent of the
    /// regular files under it (hidden entries, links and empty files left out).
    pub path: String,
    /// Trackers to put in the torrent (none: peers dial us directly).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trackers: Vec<String>,
    /// Peers to offer it to at once (e.g. a leecher waiting for it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<SocketAddr>,
}

/// `transfers.seed`'s result: the transfer and the torrent to give others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SeedResult {
    pub transfer: Transfer,
    /// The .torrent's bytes, base64.
    pub torrent: String,
    /// Where peers reach this node's BitTorrent listener (`ip:port`; an unspecified ip means every interface).
    pub listen: SocketAddr,
}

/// `{"id": …}`: the params of `transfers.get`, `.pause`, `.resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct TransferIdParams {
    pub id: u64,
}

/// `transfers.cancel`'s params.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct CancelParams {
    pub id: u64,
    /// Delete the downloaded files too (a file seeded in place is never deleted).
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(as = "Option<bool>", optional))]
    pub delete_files: bool,
}

/// Upload and download limits in bytes per second; `null` for no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default)]
    pub down: Option<u64>,
    #[serde(default)]
    pub up: Option<u64>,
}

/// `transfers.set_limits`'s params: one transfer's limits (the global ones apply too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SetLimitsParams {
    pub id: u64,
    pub limits: Limits,
}

/// `transfers.set_priority`'s params: the transfer and its new priority (higher starts first when transfers
/// wait for a download slot; -1000…1000).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SetPriorityParams {
    pub id: u64,
    pub priority: i32,
}

/// Where downloads go when none names a directory: `transfers.download_dir.get`'s result and `.set`'s params and
/// result (an absolute path, at most 4096 bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct DownloadDir {
    pub dir: String,
}

/// The bounds of a transfer's priority.
pub const PRIORITY_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;

/// Where a transfer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum TransferState {
    /// Waiting for a free download slot.
    Queued,
    /// A magnet link's torrent is being asked of its peers and trackers (`name` is the link's `dn` or the
    /// info-hash, `total_bytes` 0 until it comes); then `downloading`. Pause and cancel work meanwhile.
    #[serde(rename = "fetching_metadata")]
    FetchingMetadata,
    Downloading,
    /// Complete, serving others.
    Seeding,
    /// By the user, or for lack of space (`reason` says which).
    Paused,
    /// Restarting after a failure (`reason`: the failure).
    Retrying,
    /// Given up (`reason`).
    Failed,
}

/// What a transfer fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum TransferKind {
    /// A torrent (`transfers.add`, `transfers.seed`).
    Torrent,
    /// A file shared inside AllPeers (`files.get`), fetched from the members that hold it.
    File,
}

/// A transfer as `transfers.list` / `transfers.get` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Transfer {
    pub id: u64,
    pub kind: TransferKind,
    pub name: String,
    /// Hex: a torrent's info-hash (SHA-1), a file's BLAKE3 hash.
    pub info_hash: String,
    /// Where the files are.
    pub dir: String,
    pub state: TransferState,
    /// Why it is paused, retrying or failed.
    pub reason: Option<String>,
    pub priority: i32,
    /// A user's own file, seeded where it is.
    pub seed_in_place: bool,
    pub limits: Limits,
    pub progress: TransferProgress,
    /// A shared file's sources this run (peer ids) and the verified bytes each gave: the private swarm's members
    /// that served it. Absent for torrents and before the transfer runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub sources: Option<Vec<TransferSource>>,
}

/// One source of a shared file's transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TransferSource {
    pub peer: String,
    /// Verified bytes it gave this run.
    pub bytes: u64,
}

/// A transfer's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct TransferProgress {
    pub total_bytes: u64,
    /// Verified and on disk.
    pub done_bytes: u64,
    /// Payload received and sent since the transfer started this run.
    pub downloaded: u64,
    pub uploaded: u64,
    pub down_rate: u64,
    pub up_rate: u64,
    /// Connected peers.
    pub peers: u32,
    /// Seconds left at the current rate, rounded up; null when unknown or done.
    pub eta_secs: Option<u64>,
    /// Where the peer addresses known this run came from (torrents; all zero for shared files).
    #[serde(default)]
    pub peer_sources: PeerSources,
}

/// A torrent's peer addresses learned this run, per source; each address counts once, under the source that named
/// it first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct PeerSources {
    /// Given with `transfers.add` (`peers`) or by the magnet link (`x.pe`).
    pub given: u32,
    pub tracker: u32,
    /// The Mainline DHT (BEP 5).
    pub dht: u32,
    /// Peer exchange (BEP 11).
    pub pex: u32,
}

/// `transfer.progress`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ProgressEvent {
    pub id: u64,
    pub progress: TransferProgress,
}

/// `transfer.changed`'s data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ChangedEvent {
    pub id: u64,
    pub state: TransferState,
    pub reason: Option<String>,
}

/// One peer taking data from us (the upload monitor), fastest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Upload {
    /// The transfer it takes from.
    pub id: u64,
    pub addr: SocketAddr,
    /// Its BitTorrent client, when it said.
    pub client: Option<String>,
    pub uploaded: u64,
    pub up_rate: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn add_params_default_and_refuse_unknown_fields() {
        let p: AddTransferParams =
            serde_json::from_value(json!({"torrent": "/a.torrent"})).unwrap();
        assert_eq!(p.dir, None);
        assert!(p.peers.is_empty() && !p.paused && p.priority == 0);
        assert!(
            serde_json::from_value::<AddTransferParams>(json!({"torrent": "x", "dri": "/"}))
                .is_err()
        );
        let limits: Limits = serde_json::from_value(json!({"down": 1000})).unwrap();
        assert_eq!(
            limits,
            Limits {
                down: Some(1000),
                up: None
            }
        );
    }

    #[test]
    fn states_are_lowercase_words() {
        assert_eq!(
            serde_json::to_value(TransferState::Seeding).unwrap(),
            json!("seeding")
        );
    }
}
