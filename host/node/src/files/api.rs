//! `files.get`: a shared File's content fetched from the members of its share, as a transfer; `files.import_*`:
//! a file's bytes brought in from a client in chunks ([`super::imports`]).

use std::sync::Arc;

use allpeers_model::api::contract::{self as c, parse_params};
use allpeers_model::api::files as api;
use allpeers_model::api::{ErrorCode, RpcError};
use allpeers_transfer::blob::FileSpec;
use allpeers_transfer::manager::AddFile;
use allpeers_transfer::throttle::Limits;
use serde_json::Value;

use super::rules::{self, FILE_TYPE};
use crate::daemon::area::Area;
use crate::daemon::rpc::{app_error, to_value};
use crate::daemon::state::Daemon;
use crate::transfers::{api as transfers_api, convert};

pub const AREA: Area = Area {
    name: "files",
    methods: api::METHODS,
    handle: |call| Box::pin(handle(call.daemon, call.method, call.params)),
    slow: &[],
};

async fn handle(daemon: &Arc<Daemon>, method: &str, params: Value) -> Result<Value, RpcError> {
    match method {
        api::FILES_GET => get(daemon, parse_params::<c::FilesGet>(params)?)
            .await
            .map(to_value),
        api::FILES_IMPORT_START => {
            let p = parse_params::<c::FilesImportStart>(params)?;
            let dir = imports_dir(daemon);
            let d = daemon.clone();
            blocking(move || d.imports.start(&dir, &p.name, p.size))
                .await
                .map(to_value)
        }
        api::FILES_IMPORT_WRITE => {
            let p = parse_params::<c::FilesImportWrite>(params)?;
            let d = daemon.clone();
            blocking(move || d.imports.write(p.import, p.offset, &p.data))
                .await
                .map(to_value)
        }
        api::FILES_IMPORT_CANCEL => {
            let p = parse_params::<c::FilesImportCancel>(params)?;
            let d = daemon.clone();
            blocking(move || Ok(d.imports.cancel(p.import)))
                .await
                .map(to_value)
        }
        api::FILES_AUTO_DOWNLOAD_GET => {
            parse_params::<c::FilesAutoDownloadGet>(params)?;
            Ok(to_value(daemon.files_auto.get(daemon)))
        }
        api::FILES_AUTO_DOWNLOAD_SET => {
            let p = parse_params::<c::FilesAutoDownloadSet>(params)?;
            let d = daemon.clone();
            blocking(move || d.files_auto.set(&d, p))
                .await
                .map(to_value)
        }
        _ => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("unknown method \"{method}\""),
        )),
    }
}

/// The imports folder: `Imported` in the download directory (the configured one once transfers run).
fn imports_dir(daemon: &Daemon) -> std::path::PathBuf {
    let downloads = match daemon.transfers.get() {
        Some(Ok(t)) => t.downloads(),
        _ => daemon.paths.downloads(),
    };
    downloads.join(super::imports::FOLDER)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RpcError> + Send + 'static,
) -> Result<T, RpcError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(crate::daemon::rpc::internal)?
}

fn not_shared(why: impl Into<String>) -> RpcError {
    app_error(ErrorCode::FileNotShared.code(), why)
}

pub(super) async fn get(
    daemon: &Arc<Daemon>,
    p: api::GetFileParams,
) -> Result<allpeers_model::api::transfers::Transfer, RpcError> {
    let transfers = transfers_api::running(daemon)?;
    let dir = match &p.dir {
        Some(dir) => transfers_api::absolute(dir, "dir")?,
        None => transfers.downloads(),
    };
    let id = p.resource.clone();
    let resource = daemon
        .on_store(move |store| {
            Ok(store
                .get(&id)?
                .filter(|r| store.registry().is_a(&r.type_name, FILE_TYPE)))
        })
        .await?
        .ok_or_else(|| not_shared(format!("{} is not a File here", p.resource)))?;
    let facts = rules::facts(&resource).ok_or_else(|| {
        not_shared(format!(
            "{} names no content (no hash and size): it was not shared from a file on disk",
            p.resource
        ))
    })?;
    if daemon.shares.lock().share_of(&resource.id).is_none() {
        return Err(not_shared(format!("no share holds {}", p.resource)));
    }
    let sources = super::sources::of(daemon, &facts.hash);
    if sources.is_empty() {
        return Err(app_error(
            ErrorCode::FileNoSource.code(),
            "no other member of a share naming it may hold it",
        ));
    }
    let add = AddFile {
        spec: FileSpec {
            hash: facts.hash,
            size: facts.size,
            name: facts.name,
            sources: sources.iter().map(ToString::to_string).collect(),
        },
        dir,
        priority: 0,
        limits: Limits::default(),
        paused: p.paused,
    };
    let id = transfers
        .manager
        .add_file(add)
        .await
        .map_err(convert::manager_error)?;
    allpeers_log::flesh!(id, resource = %resource.id, hash = %facts.hash, "files: fetching a shared file");
    transfers_api::get(transfers, id)
}
