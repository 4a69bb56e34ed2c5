//! The `media` area: files on disk catalogued as File, Audio, Image, Video and Text
//! resources, described by sandboxed worker processes (`allpeers-media`).
//!
//! * [`catalog`] — the rules: the walk, new/changed/unchanged by modification time and
//!   size, the resource a description gives, vanished files.
//! * [`job`] — one `media.add` in the background: lookups, the pool, batched writes,
//!   `media.progress`.
//! * [`state`] — the worker pool (this binary's hidden `media-worker` mode) and the jobs.
//! * [`watch`] — keeping added paths up to date as files change or vanish.
//!
//! Methods: `media.add` (answers a job number at once), `media.info`, `media.watched` and
//! `media.unwatch`.

pub mod catalog;
pub mod job;
pub mod state;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use allpeers_model::api::contract::{self, MediaAdd, MediaInfo, MediaUnwatch, Method};
use allpeers_model::api::media::{self as api, AddResult, InfoParams, UnwatchResult, topics};
use allpeers_model::api::{ErrorCode, RpcError};
use allpeers_model::resource::Resource;
use allpeers_model::resource::api::RESOURCES_UPDATE;
use serde_json::Value;

use allpeers_store::watched::{MAX_WATCHED, WatchedRow};

use crate::daemon::area::Area;
use crate::daemon::rpc::to_value;
use crate::daemon::state::Daemon;
use job::JobContext;

pub const AREA: Area = Area {
    name: "media",
    methods: api::METHODS,
    handle: |call| Box::pin(handle(call.daemon, call.method, call.params)),
    slow: &[],
};

/// Paths one `media.add` names at most (each may be a folder of many files).
const MAX_PATHS: usize = 1000;

/// The types the catalog writes.
const CATALOG_TYPES: &[&str] = &["File", "Audio", "Image", "Video", "Text"];

async fn handle(daemon: &Arc<Daemon>, method: &str, params: Value) -> Result<Value, RpcError> {
    match method {
        api::MEDIA_ADD => add(daemon, contract::parse_params::<MediaAdd>(params)?)
            .await
            .map(to_value),
        api::MEDIA_INFO => info(daemon, contract::parse_params::<MediaInfo>(params)?)
            .await
            .map(to_value),
        api::MEDIA_WATCHED => Ok(to_value(daemon.media.watching.list())),
        api::MEDIA_UNWATCH => unwatch(daemon, contract::parse_params::<MediaUnwatch>(params)?)
            .await
            .map(to_value),
        _ => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("unknown method \"{method}\""),
        )),
    }
}

fn absolute(path: &str) -> Result<&Path, RpcError> {
    let p = Path::new(path);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(RpcError::new(
            ErrorCode::InvalidParams,
            format!("\"{path}\" is not an absolute path"),
        ))
    }
}

/// Checks the paths, then indexes them in the background; answers the job's number.
async fn add(
    daemon: &Arc<Daemon>,
    params: <MediaAdd as Method>::Params,
) -> Result<AddResult, RpcError> {
    if params.paths.is_empty() || params.paths.len() > MAX_PATHS {
        return Err(RpcError::new(
            ErrorCode::InvalidParams,
            format!("give 1 to {MAX_PATHS} paths"),
        ));
    }
    let mut roots: Vec<PathBuf> = Vec::with_capacity(params.paths.len());
    for path in &params.paths {
        let canonical = tokio::fs::canonicalize(absolute(path)?)
            .await
            .map_err(|e| RpcError::new(ErrorCode::MediaPathNotFound, format!("{path}: {e}")))?;
        roots.push(canonical);
    }
    let recursive = params.recursive.unwrap_or(false);
    // Folders are kept up to date unless asked not to; files added one by one only when asked
    // (a batch of single files, such as a drop's imports, is catalogued once).
    let watched: Vec<PathBuf> = match params.watch {
        Some(false) => Vec::new(),
        Some(true) => roots.clone(),
        None => roots.iter().filter(|r| r.is_dir()).cloned().collect(),
    };
    if !watched.is_empty() {
        keep_watched(daemon, &watched, recursive).await?;
    }
    let Some((job, permit)) = daemon.media.start_job() else {
        return Err(RpcError::new(
            ErrorCode::MediaBusy,
            "too many indexing jobs run at once; retry when one finishes",
        ));
    };
    let cx = job_context(daemon);
    let shutdown = daemon.shutdown.clone();
    tokio::spawn(async move {
        let _slot = permit;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = job::run(cx, job, roots, recursive) => {}
        }
    });
    Ok(AddResult { job })
}

/// What a job needs of the daemon; its progress goes out as `media.progress`.
fn job_context(daemon: &Arc<Daemon>) -> JobContext {
    let weak = Arc::downgrade(daemon);
    let (shared, update) = (weak.clone(), weak.clone());
    JobContext {
        store: daemon.store.clone(),
        extractor: daemon.media.extractor.clone(),
        report: Box::new(move |progress| {
            if let Some(daemon) = weak.upgrade() {
                daemon.publish(topics::MEDIA_PROGRESS, to_value(progress));
            }
        }),
        is_shared: Box::new(move |id| {
            shared
                .upgrade()
                .is_some_and(|d| d.shares.lock().share_of(id).is_some())
        }),
        shared_update: Box::new(move |id, patch| {
            let daemon = update.upgrade();
            Box::pin(async move {
                let daemon = daemon.ok_or("the daemon is stopping")?;
                let hook = daemon.write_hook.get().ok_or("no write hook")?;
                let params = serde_json::json!({"id": id, "patch": patch});
                match hook(&daemon, RESOURCES_UPDATE, &params).await {
                    Some(Ok(_)) => Ok(()),
                    Some(Err(e)) => Err(e.message),
                    // No longer shared meanwhile: an ordinary write.
                    None => daemon
                        .on_store(move |s| s.update(&id, &patch))
                        .await
                        .map(|_| ())
                        .map_err(|e| e.message),
                }
            })
        }),
    }
}

/// Keeps `roots` in the store's watched paths and watches them; all or none of them.
async fn keep_watched(
    daemon: &Arc<Daemon>,
    roots: &[PathBuf],
    recursive: bool,
) -> Result<(), RpcError> {
    let rows: Vec<WatchedRow> = roots
        .iter()
        .map(|r| WatchedRow {
            path: r.to_string_lossy().into_owned(),
            recursive,
            added_at: allpeers_model::hlc::now_ms(),
        })
        .collect();
    let kept = daemon
        .on_store(move |s| {
            let known: std::collections::HashSet<String> =
                s.watched()?.into_iter().map(|r| r.path).collect();
            let new = rows.iter().filter(|r| !known.contains(&r.path)).count();
            if known.len() + new > MAX_WATCHED {
                return Ok(false);
            }
            for row in &rows {
                s.put_watched(row)?;
            }
            Ok(true)
        })
        .await?;
    if !kept {
        return Err(RpcError::new(
            ErrorCode::TooManyWatched,
            format!(
                "the catalog already keeps {MAX_WATCHED} paths up to date; unwatch one or add with \"watch\": false"
            ),
        ));
    }
    daemon.media.watching.add(
        roots
            .iter()
            .map(|path| watch::Root {
                is_dir: path.is_dir(),
                path: path.clone(),
                recursive,
            })
            .collect(),
    );
    Ok(())
}

/// Stops keeping a path up to date; its files stay catalogued.
async fn unwatch(
    daemon: &Arc<Daemon>,
    params: <MediaUnwatch as Method>::Params,
) -> Result<UnwatchResult, RpcError> {
    let given = absolute(&params.path)?.to_path_buf();
    // A vanished path is still found by the name it had.
    let path = tokio::fs::canonicalize(&given).await.unwrap_or(given);
    let text = path.to_string_lossy().into_owned();
    let stored = daemon.on_store(move |s| s.remove_watched(&text)).await?;
    let watched = daemon.media.watching.remove(&path);
    Ok(UnwatchResult {
        removed: stored || watched,
    })
}

/// Loads the watched paths and keeps them up to date until shutdown, in the background: a
/// large library's watches (one per folder) are placed after the daemon is ready, not before.
/// Each path is walked once first, for what changed while the node was not running.
pub fn start(daemon: &Arc<Daemon>) {
    let weak = Arc::downgrade(daemon);
    let watching = daemon.media.watching.clone();
    let shutdown = daemon.shutdown.clone();
    let store = daemon.store.clone();
    tokio::spawn(async move {
        let read = tokio::task::spawn_blocking(move || {
            let rows = store.lock().expect("store lock").watched();
            rows.map(|rows| watching.load(rows)).map(|()| watching)
        })
        .await;
        let watching = match read {
            Ok(Ok(watching)) => watching,
            Ok(Err(e)) => {
                allpeers_log::marrow!(error = %e, "watched paths not read: nothing is watched");
                return;
            }
            Err(e) => {
                allpeers_log::marrow!(error = %e, "watched paths not loaded: nothing is watched");
                return;
            }
        };
        watch::run_loop(watching, shutdown, move |paths, recursive| {
            let weak = weak.clone();
            async move {
                let Some(daemon) = weak.upgrade() else { return };
                let (job, _slot) = daemon.media.wait_job().await;
                let cx = job_context(&daemon);
                drop(daemon);
                job::run(cx, job, paths, recursive).await;
            }
        })
        .await;
    });
}

/// A catalogued file's resource, by path or id.
async fn info(daemon: &Daemon, params: InfoParams) -> Result<Resource, RpcError> {
    let (id, named) = match (params.path, params.id) {
        (Some(path), None) => {
            let given = absolute(&path)?.to_path_buf();
            // A vanished file is still found by the path it had.
            let canonical = tokio::fs::canonicalize(&given).await.unwrap_or(given);
            (catalog::file_id(&canonical), path)
        }
        (None, Some(id)) => (id.clone(), id),
        _ => {
            return Err(RpcError::new(
                ErrorCode::InvalidParams,
                "give exactly one of \"path\" and \"id\"",
            ));
        }
    };
    let found = daemon.on_store(move |s| s.get(&id)).await?;
    match found {
        Some(r) if CATALOG_TYPES.contains(&r.type_name.as_str()) && r.meta.contains_key("path") => {
            Ok(r)
        }
        _ => Err(RpcError::new(
            ErrorCode::NotCatalogued,
            format!("{named} is not a catalogued file (add it with media.add)"),
        )),
    }
}
