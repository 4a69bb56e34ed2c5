//! The `allpeers/files/1` service and the daemon's glue around shared files' content.
//!
//! Each raw stream a peer opens carries HTTP/1 (`allpeers_transfer::blob::http`); every request is checked against
//! the shares we hold (a non-member is answered 403 and logged), then against the data cache (a file changed or
//! vanished on disk is answered 410, and hashed again so its resource names the new content), then against the
//! downloads under way (a member downloading a file serves the blocks it holds: the private swarm).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use allpeers_model::PeerId;
use allpeers_model::api::{ErrorCode, RpcError};
use allpeers_model::resource::{Patch, Resource};
use allpeers_net::Endpoint;
use allpeers_net::service::{Namespace, ServiceFn};
use allpeers_transfer::blob::ContentHash;
use allpeers_transfer::blob::http::StatusCode;
use allpeers_transfer::blob::http::{self, Lookup, Refusal};
use allpeers_transfer::blob::outboards::{OutboardError, Outboards, StillAllowed};
use allpeers_transfer::blob::partial::Serving;
use allpeers_transfer::blob::{Dial, PeerIo};
use allpeers_transfer::throttle::Throttles;
use serde_json::json;

use super::rules::{self, FILE_TYPE};
use crate::daemon::rpc::app_error;
use crate::daemon::state::Daemon;

pub fn namespace() -> Namespace {
    Namespace::allpeers("files", 1).expect("valid")
}

/// The data cache's outboards of the files we share.
pub fn outboards(daemon: &Daemon) -> Result<Outboards, OutboardError> {
    Outboards::open(&daemon.paths.transfers().join("outboards"))
}

/// Serves shared files to the peers entitled to them.
pub fn register(daemon: &Arc<Daemon>, endpoint: &Endpoint) {
    let weak = Arc::downgrade(daemon);
    let runtime = tokio::runtime::Handle::current();
    let service = ServiceFn::new().on_stream(move |ctx, send, recv| {
        let lookup = lookup(weak.clone(), ctx.peer, runtime.clone());
        // Files served count against the node's upload limit, as torrents do.
        let throttles = Throttles(
            weak.upgrade()
                .and_then(|d| match d.transfers.get() {
                    Some(Ok(t)) => Some(t.manager.engine().global_throttle()),
                    _ => None,
                })
                .into_iter()
                .collect(),
        );
        async move {
            if let Err(error) = http::serve(tokio::io::join(recv, send), lookup, throttles).await {
                allpeers_log::bone!(peer = %ctx.peer, %error, "files: an HTTP stream ended");
            }
        }
    });
    endpoint.register(namespace(), service);
}

/// How requests from `peer` are answered: entitlement first, then the file as hashed.
fn lookup(daemon: Weak<Daemon>, peer: PeerId, runtime: tokio::runtime::Handle) -> Lookup {
    Arc::new(move |hash: ContentHash| {
        let daemon = daemon
            .upgrade()
            .ok_or_else(|| Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
        if !entitled(&daemon, &peer, &hash) {
            allpeers_log::skin!(%peer, %hash, "files: refused a peer no share of that file names");
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "no share of this file names you",
            ));
        }
        let outboards = outboards(&daemon)
            .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let allowed = still_allowed(&daemon, peer, hash);
        match outboards.open_source(&hash) {
            Ok(mut source) => {
                allpeers_log::bone!(%peer, %hash, "files: serving");
                source.allowed = Some(allowed);
                Ok(source)
            }
            Err(error @ OutboardError::Changed { .. }) => {
                allpeers_log::flesh!(%peer, %error, "files: refused: the file changed");
                let daemon = daemon.clone();
                runtime.spawn(async move { rehash(&daemon, hash).await });
                Err(Refusal::new(StatusCode::GONE, error.to_string()))
            }
            Err(error @ OutboardError::Unknown(_)) => {
                // Not a file we share whole: perhaps one we are downloading, served from what it holds.
                let partial = match daemon.transfers.get() {
                    Some(Ok(transfers)) => transfers.manager.partials().open_source(&hash),
                    _ => return Err(Refusal::new(StatusCode::NOT_FOUND, error.to_string())),
                };
                match partial {
                    Serving::Held(Ok(mut source)) => {
                        allpeers_log::bone!(%peer, %hash, "files: serving what we hold so far");
                        source.allowed = Some(allowed);
                        Ok(source)
                    }
                    Serving::Held(Err(error)) => {
                        allpeers_log::flesh!(%hash, %error, "files: cannot serve a download under way");
                        Err(Refusal::new(StatusCode::NOT_FOUND, error.to_string()))
                    }
                    // A member asking may wait until we hold some.
                    Serving::NothingYet(news) => Err(Refusal::not_yet(error.to_string(), news)),
                }
            }
            Err(error) => {
                allpeers_log::skin!(%hash, %error, "files: cannot serve");
                Err(Refusal::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot read the file",
                ))
            }
        }
    })
}

/// Whether a share we hold names `peer` and holds a resource with the content `hash`.
fn entitled(daemon: &Daemon, peer: &PeerId, hash: &ContentHash) -> bool {
    daemon.file_hashes.lock().expect("file hashes").entitled(
        &daemon.shares.lock().replicas,
        peer,
        hash,
    )
}

/// Asked before each buffer of a body for `peer` is sent: entitlement is looked at again only when the shares
/// changed since (an atomic read otherwise), so a revoked member's download under way stops there — nothing sent
/// to a peer that it is no longer shared with — and a body costs no lock on the shares while they do not change.
fn still_allowed(daemon: &Arc<Daemon>, peer: PeerId, hash: ContentHash) -> StillAllowed {
    let daemon = Arc::downgrade(daemon);
    let seen = AtomicU64::new(daemon.upgrade().map_or(0, |d| d.files_auto.changes()));
    // A `false` ends the body: it is not asked again.
    Arc::new(move || {
        let Some(daemon) = daemon.upgrade() else {
            return false;
        };
        let changes = daemon.files_auto.changes();
        if seen.swap(changes, Ordering::Relaxed) == changes {
            return true;
        }
        let still = entitled(&daemon, &peer, &hash);
        if !still {
            allpeers_log::skin!(%peer, %hash, "files: a body cut short: no share of that file names the peer any more");
        }
        still
    })
}

/// Longest wait for the connector to reach a peer a download asks (a relay may take a few round trips).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the download manager reaches a peer's files service.
pub fn dial(daemon: Weak<Daemon>) -> Dial {
    Arc::new(move |peer: String| {
        let daemon = daemon.clone();
        Box::pin(async move {
            let peer: PeerId = peer.parse().map_err(std::io::Error::other)?;
            let daemon = daemon
                .upgrade()
                .ok_or_else(|| std::io::Error::other("shutting down"))?;
            let network = daemon
                .network
                .get()
                .ok_or_else(|| std::io::Error::other("the node is offline"))?;
            let endpoint = network.endpoint.clone();
            // No connection yet: the connector reaches the peer as chat and shares do (its addresses asked of the
            // hub afresh, a hole punched or a relay where needed). Dialling the addresses we remember instead
            // waited out a dead one when the peer had come back on new ports, and never reached one behind a NAT.
            if endpoint.connection(&peer).is_none() {
                let connector = network.connector.clone();
                tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(peer))
                    .await
                    .map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting timed out")
                    })?
                    .map_err(std::io::Error::other)?;
            }
            // A connection of its own where it can be (no yamux copies on the bulk path). A connection that went
            // away under the stream (a duplicate closed as the peer came back) is replaced by the live one, as the
            // endpoint does for any exchange; if that fails too, the download asks again itself.
            let namespace = namespace();
            let (send, recv) = endpoint
                .retry_when_connection_lost(peer, "a files stream", || {
                    endpoint.open_bulk_stream(peer, &namespace)
                })
                .await
                .map_err(|e| {
                    let kind = if e.is_connection_lost() {
                        std::io::ErrorKind::ConnectionAborted
                    } else {
                        std::io::ErrorKind::Other
                    };
                    std::io::Error::new(kind, e)
                })?;
            Ok(Box::new(tokio::io::join(recv, send)) as Box<dyn PeerIo>)
        })
    })
}

/// Hashes the files a share will name (the resource itself if it is a File, or a List's File items) and writes
/// each one's `hash` and `size` before the share is created, so the members know what to fetch. Files with no
/// link to disk (`path`) are left as they are.
pub async fn hash_for_share(daemon: &Arc<Daemon>, root: &str) -> Result<(), RpcError> {
    let root = root.to_string();
    let files: Vec<Resource> = daemon
        .on_store(move |store| {
            let Some(r) = store.get(&root)? else {
                return Ok(vec![]);
            };
            let registry = store.registry();
            if registry.is_a(&r.type_name, FILE_TYPE) {
                return Ok(vec![r]);
            }
            if !registry.is_a(&r.type_name, allpeers_store::LIST_TYPE) {
                return Ok(vec![]);
            }
            let mut files = Vec::new();
            for item in store.list_items(&r.id)?.items {
                if let Some(item) = store.get(&item)?
                    && store.registry().is_a(&item.type_name, FILE_TYPE)
                {
                    files.push(item);
                }
            }
            Ok(files)
        })
        .await?;
    for file in files {
        let Some(path) = file.meta.get("path").and_then(|p| p.as_str()) else {
            continue;
        };
        let patch = hash_patch(daemon, &file, path.into()).await?;
        if let Some(patch) = patch {
            let id = file.id.clone();
            daemon
                .on_store(move |store| store.update(&id, &patch).map(|_| ()))
                .await?;
        }
    }
    Ok(())
}

/// The patch that makes `file` name the content at `path` now (`None`: it already does).
async fn hash_patch(
    daemon: &Arc<Daemon>,
    file: &Resource,
    path: std::path::PathBuf,
) -> Result<Option<Patch>, RpcError> {
    let outboards = outboards(daemon).map_err(unreadable)?;
    let shared = tokio::task::spawn_blocking(move || outboards.add_file(&path))
        .await
        .map_err(crate::daemon::rpc::internal)?
        .map_err(unreadable)?;
    let facts = rules::facts(file);
    if facts.is_some_and(|f| f.hash == shared.hash && f.size == shared.size) {
        return Ok(None);
    }
    Ok(Some(
        Patch::default()
            .set("hash", shared.hash.to_hex())
            .set("size", shared.size as i64),
    ))
}

fn unreadable(error: impl std::fmt::Display) -> RpcError {
    app_error(ErrorCode::FileUnreadable.code(), error.to_string())
}

/// A shared file changed on disk: hashes it again and updates each shared resource that named the old content, as
/// a shared edit (signed ops to the members), so they fetch the new content under its new hash.
async fn rehash(daemon: &Arc<Daemon>, old: ContentHash) {
    let hex = old.to_hex();
    let ids: Vec<String> = {
        let inner = daemon.shares.lock();
        inner
            .replicas
            .values()
            .flat_map(|r| rules::resources_with_hash(r, &hex).collect::<Vec<_>>())
            .collect()
    };
    for id in ids {
        let lookup = id.clone();
        let Ok(Some(file)) = daemon.on_store(move |store| store.get(&lookup)).await else {
            continue;
        };
        let Some(path) = file.meta.get("path").and_then(|p| p.as_str()) else {
            continue;
        };
        match hash_patch(daemon, &file, path.into()).await {
            Ok(Some(patch)) => {
                let params = json!({"id": id, "patch": patch});
                // Through the daemon's write hook (the shares area's), as any local write to a shared resource.
                let Some(hook) = daemon.write_hook.get() else {
                    continue;
                };
                let written = hook(
                    daemon,
                    allpeers_model::resource::api::RESOURCES_UPDATE,
                    &params,
                )
                .await;
                match written {
                    Some(Ok(_)) => {
                        allpeers_log::flesh!(%id, "files: a shared file changed: its new content is shared")
                    }
                    Some(Err(e)) => {
                        allpeers_log::skin!(%id, "files: the new hash was not shared: {}", e.message)
                    }
                    None => {}
                }
            }
            Ok(None) => {}
            Err(e) => {
                allpeers_log::flesh!(%id, "files: a changed file cannot be hashed again: {}", e.message)
            }
        }
    }
}
