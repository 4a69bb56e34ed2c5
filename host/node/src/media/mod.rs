//! The `media` area: files on disk catalogued as File, Audio, Image, Video and Text
//! resources, described by sandboxed worker processes (`allpeers-media`).
//!
//! * [`catalog`] — the rules: the walk, new/changed/unchanged by modification time and
//!   size, the resource a description gives, vanished files.
//! * [`job`] — one `media.add` in the background: lookups, the pool, batched writes,
//!   `media.progress`.
//! * [`state`] — the worker pool (this binary's hidden `media-worker` mode) and the jobs.
//!
//! Methods: `media.add` (answers a job number at once) and `media.info`.

pub mod catalog;
pub mod job;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use allpeers_model::api::contract::{self, MediaAdd, MediaInfo, Method};
use allpeers_model::api::media::{self as api, AddResult, InfoParams, topics};
use allpeers_model::api::{ErrorCode, RpcError};
use allpeers_model::resource::Resource;
use serde_json::Value;

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
    let Some((job, permit)) = daemon.media.start_job() else {
        return Err(RpcError::new(
            ErrorCode::MediaBusy,
            "too many indexing jobs run at once; retry when one finishes",
        ));
    };
    let weak = Arc::downgrade(daemon);
    let cx = JobContext {
        store: daemon.store.clone(),
        extractor: daemon.media.extractor.clone(),
        report: Box::new(move |progress| {
            if let Some(daemon) = weak.upgrade() {
                daemon.publish(topics::MEDIA_PROGRESS, to_value(progress));
            }
        }),
    };
    let recursive = params.recursive.unwrap_or(false);
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
