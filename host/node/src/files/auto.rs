//! Auto-download: shared files fetched by themselves when they arrive in a share, as each share's policy says —
//! `off`, `small` (files of at most the size the user set; the default) or `all` — so a shared album fills in.
//!
//! The setting is kept in `auto-download.json` in the transfers' state directory. After every commit that stored
//! ops (the shares area wakes us) and when the setting changes, the shares we hold are swept: each File whose
//! content we neither serve (our own) nor have a transfer for is fetched with `files.get`'s rules. A file fetched
//! by itself and then cancelled by the user is not fetched again: what was fetched by itself is kept in
//! `auto-downloaded.json` beside the setting, so a restart does not undo the cancel.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use allpeers_model::api::files::{
    AutoDownload, AutoDownloadPolicy, GetFileParams, SetAutoDownloadParams,
};
use allpeers_model::api::{ErrorCode, RpcError};
use allpeers_transfer::blob::ContentHash;
use allpeers_transfer::manager::ContentKey;

use super::policy::{AutoDownloads, Setting, candidates};
use crate::daemon::state::Daemon;

/// The file the setting is kept in, in the transfers' state directory.
const FILE: &str = "auto-download.json";
/// The setting's file at most (a policy per share: far below this).
const MAX_FILE_BYTES: u64 = 4 << 20;
/// Commits arriving together are swept once: the sweep waits this long after a wake-up.
const SETTLE: Duration = Duration::from_millis(200);

/// The content fetched by itself (hashes), in the same directory.
const STARTED_FILE: &str = "auto-downloaded.json";
/// That file at most: 67 bytes a hash, so over 200,000 files.
const MAX_STARTED_BYTES: u64 = 16 << 20;

/// What was fetched by itself before; nothing if the file is missing, too large or unreadable (then a cancelled
/// file may come back once, as before the file was kept).
fn load_started(path: &Path) -> HashSet<ContentHash> {
    let read = || -> Option<HashSet<ContentHash>> {
        if std::fs::metadata(path).ok()?.len() > MAX_STARTED_BYTES {
            return None;
        }
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    };
    read().unwrap_or_default()
}

fn save_started(path: &Path, started: &HashSet<ContentHash>) -> std::io::Result<()> {
    let mut sorted: Vec<&ContentHash> = started.iter().collect();
    sorted.sort();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    allpeers_transfer::cache::write_atomically(
        path,
        &serde_json::to_vec(&sorted).expect("serialises"),
    )
}

fn path(daemon: &Daemon) -> PathBuf {
    daemon.paths.transfers().join(FILE)
}

fn load(daemon: &Daemon) -> Setting {
    let path = path(daemon);
    let read = || -> Option<Setting> {
        if std::fs::metadata(&path).ok()?.len() > MAX_FILE_BYTES {
            return None;
        }
        serde_json::from_slice(&std::fs::read(&path).ok()?).ok()
    };
    read().unwrap_or_default()
}

impl AutoDownloads {
    fn setting(&self, daemon: &Daemon) -> Setting {
        self.setting
            .lock()
            .expect("auto-download")
            .get_or_insert_with(|| load(daemon))
            .clone()
    }

    pub fn get(&self, daemon: &Daemon) -> AutoDownload {
        self.setting(daemon).view()
    }

    /// Changes the setting and keeps it. Blocking file I/O.
    pub fn set(&self, daemon: &Daemon, p: SetAutoDownloadParams) -> Result<AutoDownload, RpcError> {
        let invalid = |m: &str| RpcError::new(ErrorCode::InvalidParams, m.to_string());
        if p.share.is_some() != p.policy.is_some() {
            return Err(invalid("`share` and `policy` go together"));
        }
        if p.share.is_none() && p.max_bytes.is_none() {
            return Err(invalid(
                "nothing to set: `share` and `policy`, or `max_bytes`",
            ));
        }
        if let Some(share) = &p.share {
            let known = daemon
                .shares
                .lock()
                .records
                .keys()
                .any(|id| crate::shares::rules::share_text(id) == *share);
            if !known {
                return Err(app_share_unknown(share));
            }
        }
        let mut guard = self.setting.lock().expect("auto-download");
        let mut setting = guard.get_or_insert_with(|| load(daemon)).clone();
        if let (Some(share), Some(policy)) = (p.share, p.policy) {
            if policy == AutoDownloadPolicy::default() {
                setting.shares.remove(&share);
            } else {
                setting.shares.insert(share, policy);
            }
        }
        if let Some(max_bytes) = p.max_bytes {
            setting.max_bytes = max_bytes;
        }
        let bytes = serde_json::to_vec_pretty(&setting).expect("serialises");
        let file = path(daemon);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(crate::daemon::rpc::internal)?;
        }
        allpeers_transfer::cache::write_atomically(&file, &bytes)
            .map_err(crate::daemon::rpc::internal)?;
        let view = setting.view();
        *guard = Some(setting);
        drop(guard);
        self.wake();
        Ok(view)
    }
}

fn app_share_unknown(share: &str) -> RpcError {
    crate::daemon::rpc::app_error(ErrorCode::ShareNotFound.code(), format!("no share {share}"))
}

/// Sweeps the shares whenever woken, until the daemon stops (a first sweep at start).
pub fn start(daemon: &Arc<Daemon>) {
    let weak = Arc::downgrade(daemon);
    let shutdown = daemon.shutdown.clone();
    daemon.files_auto.wake();
    tokio::spawn(async move {
        loop {
            let Some(daemon) = weak.upgrade() else { return };
            let woken = async {
                daemon.files_auto.wake.notified().await;
                tokio::time::sleep(SETTLE).await;
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = woken => {}
            }
            sweep(&daemon).await;
            // The same commits may have changed who holds the files under way.
            super::sources::refresh(&daemon).await;
        }
    });
}

async fn sweep(daemon: &Arc<Daemon>) {
    let Some(Ok(transfers)) = daemon.transfers.get() else {
        return;
    };
    let setting = daemon.files_auto.setting(daemon);
    let found: Vec<(String, ContentHash)> = {
        let inner = daemon.shares.lock();
        inner
            .replicas
            .iter()
            .flat_map(|(share, replica)| {
                let policy = setting.policy(&crate::shares::rules::share_text(share));
                candidates(replica, policy, setting.max_bytes)
            })
            .collect()
    };
    if found.is_empty() {
        return;
    }
    let mut known: HashSet<ContentHash> = transfers
        .manager
        .list()
        .into_iter()
        .filter_map(|t| match t.content {
            ContentKey::Blake3(hash) => Some(hash),
            ContentKey::InfoHash(_) => None,
        })
        .collect();
    let started_path = daemon.paths.transfers().join(STARTED_FILE);
    let loaded = daemon.files_auto.started.lock().expect("started").is_some();
    if !loaded {
        let path = started_path.clone();
        let started = tokio::task::spawn_blocking(move || load_started(&path))
            .await
            .unwrap_or_default();
        let mut kept = daemon.files_auto.started.lock().expect("started");
        if kept.is_none() {
            *kept = Some(started);
        }
    }
    known.extend(
        daemon
            .files_auto
            .started
            .lock()
            .expect("started")
            .iter()
            .flatten(),
    );
    let mut added = false;
    let Ok(outboards) = super::service::outboards(daemon) else {
        return;
    };
    for (resource, hash) in found {
        if known.contains(&hash) {
            continue;
        }
        // Our own file (we shared it, or fetched it before): nothing to fetch.
        let ours = outboards.clone();
        let serves = tokio::task::spawn_blocking(move || ours.serves(&hash))
            .await
            .unwrap_or(true);
        if serves {
            known.insert(hash);
            continue;
        }
        let params = GetFileParams {
            resource: resource.clone(),
            dir: None,
            paused: false,
        };
        match super::api::get(daemon, params).await {
            Ok(transfer) => {
                allpeers_log::flesh!(%resource, id = transfer.id, "files: fetching a shared file by itself");
            }
            Err(e) => {
                allpeers_log::bone!(%resource, "files: not fetched by itself: {}", e.message)
            }
        }
        known.insert(hash);
        daemon
            .files_auto
            .started
            .lock()
            .expect("started")
            .get_or_insert_with(HashSet::new)
            .insert(hash);
        added = true;
    }
    if added {
        let started = daemon
            .files_auto
            .started
            .lock()
            .expect("started")
            .clone()
            .unwrap_or_default();
        let saved =
            tokio::task::spawn_blocking(move || save_started(&started_path, &started)).await;
        if let Ok(Err(error)) = saved {
            allpeers_log::bone!(%error, "files: what was fetched by itself is not kept: a cancel may not outlive a restart");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_fetched_by_itself_is_kept_and_a_bad_file_reads_as_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transfers").join(STARTED_FILE);
        assert!(load_started(&path).is_empty());
        let started: HashSet<ContentHash> =
            [ContentHash::of(b"rome"), ContentHash::of(b"pisa")].into();
        save_started(&path, &started).unwrap();
        assert_eq!(load_started(&path), started);
        std::fs::write(&path, b"[\"not a hash\"]").unwrap();
        assert!(load_started(&path).is_empty());
    }
}
