//! The `transfers.*` and `net.limits.*` methods over the download manager.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use allpeers_model::api::contract::{self as c, NoParams, parse_params};
use allpeers_model::api::transfers::{
    self as t, AddTransferParams, CancelParams, SeedParams, SeedResult, SetLimitsParams,
    SetPriorityParams, TransferIdParams,
};
use allpeers_model::api::{ErrorCode, RpcError};
use allpeers_transfer::bt::create::{create_torrent, stamps_of};
use allpeers_transfer::bt::metainfo::{MAX_TORRENT_LEN, Torrent};
use allpeers_transfer::manager::{AddMagnet, AddTransfer, ContentKey, TransferId};
use allpeers_transfer::throttle::Limits;
use allpeers_transfer::web::Bounds;
use base64::Engine as _;
use serde_json::Value;

use super::convert::{self, Source};
use super::state::Transfers;
use crate::daemon::area::Area;
use crate::daemon::rpc::to_value;
use crate::daemon::state::Daemon;

pub const AREA: Area = Area {
    name: "transfers",
    methods: t::METHODS,
    handle: |call| Box::pin(handle(call.daemon, call.method, call.params)),
    // Both read a file and hash or verify it: a large file takes seconds; a URL is fetched.
    slow: &[t::TRANSFERS_ADD, t::TRANSFERS_SEED],
};

/// A .torrent named by URL must have come by then (redirects included).
const URL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The running manager, or why there is none.
pub fn running(daemon: &Daemon) -> Result<&Transfers, RpcError> {
    match daemon.transfers.get() {
        Some(Ok(transfers)) => Ok(transfers),
        Some(Err(why)) => Err(RpcError::new(
            ErrorCode::TransferFailed,
            format!("the transfers engine did not start: {why}"),
        )),
        None => Err(RpcError::new(
            ErrorCode::TransferFailed,
            "the transfers engine is still starting",
        )),
    }
}

async fn handle(daemon: &Arc<Daemon>, method: &str, params: Value) -> Result<Value, RpcError> {
    let transfers = running(daemon)?;
    match method {
        t::TRANSFERS_ADD => Ok(to_value(
            add(transfers, parse_params::<c::TransfersAdd>(params)?).await?,
        )),
        t::TRANSFERS_LIST => {
            parse_params::<c::TransfersList>(params)?;
            let list: Vec<t::Transfer> = transfers
                .manager
                .list()
                .iter()
                .map(convert::transfer)
                .collect();
            Ok(to_value(list))
        }
        t::TRANSFERS_GET => {
            let TransferIdParams { id } = parse_params::<c::TransfersGet>(params)?;
            Ok(to_value(get(transfers, id)?))
        }
        t::TRANSFERS_PAUSE => {
            let TransferIdParams { id } = parse_params::<c::TransfersPause>(params)?;
            transfers
                .manager
                .pause(id)
                .await
                .map_err(convert::manager_error)?;
            Ok(to_value(get(transfers, id)?))
        }
        t::TRANSFERS_RESUME => {
            let TransferIdParams { id } = parse_params::<c::TransfersResume>(params)?;
            transfers
                .manager
                .resume(id)
                .await
                .map_err(convert::manager_error)?;
            Ok(to_value(get(transfers, id)?))
        }
        t::TRANSFERS_CANCEL => {
            let CancelParams { id, delete_files } = parse_params::<c::TransfersCancel>(params)?;
            transfers
                .manager
                .cancel(id, delete_files)
                .await
                .map_err(convert::manager_error)?;
            Ok(to_value(TransferIdParams { id }))
        }
        t::TRANSFERS_DOWNLOAD_DIR_GET => {
            let NoParams {} = parse_params::<c::TransfersDownloadDirGet>(params)?;
            Ok(to_value(t::DownloadDir {
                dir: transfers.downloads().display().to_string(),
            }))
        }
        t::TRANSFERS_DOWNLOAD_DIR_SET => {
            let t::DownloadDir { dir } = parse_params::<c::TransfersDownloadDirSet>(params)?;
            set_download_dir(daemon, transfers, &dir).await
        }
        t::TRANSFERS_SET_PRIORITY => {
            let SetPriorityParams { id, priority } =
                parse_params::<c::TransfersSetPriority>(params)?;
            if !t::PRIORITY_RANGE.contains(&priority) {
                return Err(RpcError::new(
                    ErrorCode::InvalidParams,
                    "priority must be between -1000 and 1000",
                ));
            }
            transfers
                .manager
                .set_priority(id, priority)
                .await
                .map_err(convert::manager_error)?;
            Ok(to_value(get(transfers, id)?))
        }
        t::TRANSFERS_SET_LIMITS => {
            let SetLimitsParams { id, limits } = parse_params::<c::TransfersSetLimits>(params)?;
            transfers
                .manager
                .set_limits(Some(id), convert::limits_from_api(limits))
                .map_err(convert::manager_error)?;
            Ok(to_value(get(transfers, id)?))
        }
        t::TRANSFERS_UPLOADS => {
            parse_params::<c::TransfersUploads>(params)?;
            let uploads: Vec<t::Upload> = transfers
                .manager
                .uploads()
                .await
                .iter()
                .map(|(id, peer)| convert::upload(*id, peer))
                .collect();
            Ok(to_value(uploads))
        }
        t::TRANSFERS_SEED => Ok(to_value(
            seed(transfers, parse_params::<c::TransfersSeed>(params)?).await?,
        )),
        t::NET_LIMITS_GET => {
            let NoParams {} = parse_params::<c::NetLimitsGet>(params)?;
            Ok(to_value(convert::limits_to_api(
                transfers.manager.engine().global_limits(),
            )))
        }
        t::NET_LIMITS_SET => {
            let limits = convert::limits_from_api(parse_params::<c::NetLimitsSet>(params)?);
            transfers
                .manager
                .set_limits(None, limits)
                .map_err(convert::manager_error)?;
            allpeers_log::flesh!(down = ?limits.down, up = ?limits.up, "transfers: global limits set");
            Ok(to_value(convert::limits_to_api(limits)))
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("unknown method \"{other}\""),
        )),
    }
}

/// Checks and makes the new download directory (absolute, ≤ 4096 bytes, a directory we can create files in),
/// keeps it in config.json and uses it from now on.
async fn set_download_dir(
    daemon: &Arc<Daemon>,
    transfers: &Transfers,
    dir: &str,
) -> Result<Value, RpcError> {
    if dir.len() > 4096 {
        return Err(RpcError::new(
            ErrorCode::InvalidParams,
            "dir: at most 4096 bytes",
        ));
    }
    let dir = absolute(dir, "dir")?;
    let config = daemon.paths.config();
    let checked = dir.clone();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        std::fs::create_dir_all(&checked)
            .map_err(|e| format!("cannot make {}: {e}", checked.display()))?;
        // Writable: a file made and removed.
        let probe = checked.join(".allpeers-write-test");
        std::fs::write(&probe, b"")
            .map_err(|e| format!("cannot write in {}: {e}", checked.display()))?;
        let _ = std::fs::remove_file(&probe);
        crate::config::NodeConfig::update(&config, |c| {
            let shown = checked.display().to_string();
            match c.get_mut("transfers").and_then(Value::as_object_mut) {
                Some(t) => {
                    t.insert("download_dir".into(), shown.into());
                }
                None => c["transfers"] = serde_json::json!({ "download_dir": shown }),
            }
        })
        .map_err(|e| format!("{e:#}"))
    })
    .await
    .map_err(crate::daemon::rpc::internal)?
    .map_err(|e| RpcError::new(ErrorCode::InvalidParams, e))?;
    *transfers.downloads.lock().expect("downloads lock") = dir.clone();
    allpeers_log::flesh!(dir = %dir.display(), "transfers: a new download directory");
    Ok(to_value(t::DownloadDir {
        dir: dir.display().to_string(),
    }))
}

pub fn get(transfers: &Transfers, id: TransferId) -> Result<t::Transfer, RpcError> {
    transfers
        .manager
        .get(id)
        .map(|info| convert::transfer(&info))
        .ok_or_else(|| convert::not_found(id))
}

pub fn absolute(path: &str, field: &str) -> Result<PathBuf, RpcError> {
    let path = PathBuf::from(path);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(RpcError::new(
            ErrorCode::InvalidParams,
            format!("`{field}` must be an absolute path"),
        ))
    }
}

/// Reads a .torrent the daemon can see, refusing anything larger than a torrent can be before reading it.
async fn read_torrent(path: &Path) -> Result<Vec<u8>, RpcError> {
    let unreadable = |e: std::io::Error| {
        RpcError::new(ErrorCode::Unreadable, format!("{}: {e}", path.display()))
    };
    let len = tokio::fs::metadata(path).await.map_err(unreadable)?.len();
    if len > MAX_TORRENT_LEN as u64 {
        return Err(RpcError::new(
            ErrorCode::BadTorrent,
            format!(
                "{} is {len} bytes: larger than any torrent ({MAX_TORRENT_LEN})",
                path.display()
            ),
        ));
    }
    tokio::fs::read(path).await.map_err(unreadable)
}

/// The transfer already made of this torrent.
fn exists(transfers: &Transfers, info_hash: &[u8; 20]) -> Option<t::Transfer> {
    transfers
        .manager
        .list()
        .iter()
        .find(|info| info.content == ContentKey::InfoHash(*info_hash))
        .map(convert::transfer)
}

/// `TransferExists`, naming the transfer, if there is one of this torrent.
fn refuse_existing(transfers: &Transfers, info_hash: &[u8; 20]) -> Result<(), RpcError> {
    match exists(transfers, info_hash) {
        Some(existing) => Err(RpcError::new(
            ErrorCode::TransferExists,
            format!("{} is already transfer {}", existing.name, existing.id),
        )),
        None => Ok(()),
    }
}

async fn add(transfers: &Transfers, params: AddTransferParams) -> Result<t::Transfer, RpcError> {
    let dir = match &params.dir {
        Some(dir) => absolute(dir, "dir")?,
        None => transfers.downloads(),
    };
    let bytes = match convert::source(&params.torrent)? {
        Source::Path(path) => read_torrent(&path).await?,
        Source::Bytes(bytes) => bytes,
        Source::Url(url) => transfers
            .manager
            .engine()
            .web()
            .get(
                &url,
                Bounds {
                    max_len: MAX_TORRENT_LEN,
                    timeout: URL_TIMEOUT,
                },
            )
            .await
            .map_err(|e| convert::web_error(&url, e))?
            .to_vec(),
        Source::Magnet(link) => {
            // Refused before it is listed: a duplicate, or a link nobody can be asked about.
            refuse_existing(transfers, &link.info_hash)?;
            let engine = transfers.manager.engine();
            // With discovery's DHT shared, the DHT counts before its node is up: the fetch waits and retries.
            let dht = engine.has_dht() || transfers.shares_dht;
            convert::askable(&link, engine.uses_trackers(), dht)?;
            let id = transfers
                .manager
                .add_magnet(AddMagnet {
                    link: params.torrent.clone(),
                    dir,
                    peers: params.peers,
                    priority: params.priority,
                    sequential: params.sequential,
                    limits: convert::limits_from_api(params.limits),
                    paused: params.paused,
                })
                .await
                .map_err(convert::manager_error)?;
            allpeers_log::flesh!(id, name = ?link.name, "transfers: a magnet added; its metadata is asked for");
            return get(transfers, id);
        }
    };
    let torrent = Torrent::from_bytes(&bytes)
        .map_err(|e| RpcError::new(ErrorCode::BadTorrent, e.to_string()))?;
    refuse_existing(transfers, &torrent.info_hash)?;
    let id = transfers
        .manager
        .add(AddTransfer {
            torrent: bytes,
            dir,
            peers: params.peers,
            priority: params.priority,
            sequential: params.sequential,
            limits: convert::limits_from_api(params.limits),
            paused: params.paused,
            seed_in_place: false,
        })
        .await
        .map_err(convert::manager_error)?;
    allpeers_log::flesh!(id, name = %torrent.name, "transfers: added");
    get(transfers, id)
}

/// Makes the file's torrent (hashing it once on the blocking pool, the only time: see `Stamps`) and seeds it in place. Sharing the same file
/// again answers the transfer that already seeds it.
async fn seed(transfers: &Transfers, params: SeedParams) -> Result<SeedResult, RpcError> {
    let path = absolute(&params.path, "path")?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| RpcError::new(ErrorCode::InvalidParams, "`path` names no file"))?;
    let trackers = params.trackers.clone();
    let (bytes, torrent, stamps) = tokio::task::spawn_blocking(move || {
        // Taken before hashing: if the file changes meanwhile, the manager hashes it again.
        let stamps = stamps_of(&path).ok();
        create_torrent(&path, &trackers).map(|(bytes, torrent)| (bytes, torrent, stamps))
    })
    .await
    .map_err(crate::daemon::rpc::internal)?
    .map_err(convert::create_error)?;
    let transfer = match exists(transfers, &torrent.info_hash) {
        Some(existing) => existing,
        None => {
            // Making the torrent hashed the file whole: seeding it need not hash it again.
            if let Some(stamps) = stamps {
                transfers
                    .manager
                    .engine()
                    .vouch(&torrent.info_hash, &stamps);
            }
            let id = transfers
                .manager
                .add(AddTransfer {
                    torrent: bytes.clone(),
                    dir,
                    peers: params.peers,
                    priority: 0,
                    sequential: false,
                    limits: Limits::default(),
                    paused: false,
                    seed_in_place: true,
                })
                .await
                .map_err(convert::manager_error)?;
            allpeers_log::flesh!(id, name = %torrent.name, "transfers: seeding in place");
            get(transfers, id)?
        }
    };
    Ok(SeedResult {
        transfer,
        torrent: base64::engine::general_purpose::STANDARD.encode(&bytes),
        listen: transfers.manager.engine().listen_addr(),
    })
}
