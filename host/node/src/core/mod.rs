//! The `core` area: the daemon itself — `ping`, `status.get`, `identity.*`, `events.*`,
//! `log.*`, `daemon.shutdown`. (`hello` is the routing table's own: it lists the table.)

use std::sync::Arc;

use allpeers_model::api::methods::{self as m, topics};
use allpeers_model::api::{ErrorCode, RpcError};
use allpeers_net::IdentityError;
use serde_json::{Value, json};

use crate::daemon::area::{Area, Call, Reply};
use crate::daemon::rpc::{internal, parse, to_value};
use crate::daemon::state::Daemon;
use crate::identity::{PlaceError, Placed};

pub const AREA: Area = Area {
    name: "core",
    methods: &[
        m::PING,
        m::STATUS_GET,
        m::IDENTITY_GET,
        m::IDENTITY_UNLOCK,
        m::IDENTITY_SEAL,
        m::IDENTITY_EXPORT,
        m::IDENTITY_RESTORE,
        m::EVENTS_SUBSCRIBE,
        m::EVENTS_UNSUBSCRIBE,
        m::LOG_GET,
        m::LOG_SET,
        m::DAEMON_SHUTDOWN,
    ],
    handle,
    // Argon2 runs for tens of milliseconds.
    slow: &[
        m::IDENTITY_UNLOCK,
        m::IDENTITY_SEAL,
        m::IDENTITY_EXPORT,
        m::IDENTITY_RESTORE,
    ],
};

fn handle(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            daemon,
            session,
            method,
            params,
        } = call;
        match method {
            m::PING => Ok(params),
            m::STATUS_GET => Ok(to_value(m::StatusResult {
                version: env!("CARGO_PKG_VERSION").into(),
                pid: std::process::id(),
                uptime_ms: daemon.started.elapsed().as_millis() as u64,
                data_dir: daemon.paths.data_dir.display().to_string(),
                socket: daemon.paths.socket.display().to_string(),
                clients: daemon.clients(),
                identity: daemon.identity_info(),
            })),
            m::IDENTITY_GET => Ok(to_value(daemon.identity_info())),
            m::IDENTITY_UNLOCK => unlock(daemon, parse(params)?).await,
            m::IDENTITY_SEAL => seal(daemon, parse(params)?).await,
            m::IDENTITY_EXPORT => export(daemon, parse(params)?).await,
            m::IDENTITY_RESTORE => restore(daemon, parse(params)?).await,
            m::EVENTS_SUBSCRIBE => {
                let p: m::SubscribeParams = parse(params)?;
                check_topics(&p.topics)?;
                let topics = session.topics();
                topics.send_modify(|set| set.extend(p.topics));
                Ok(to_value(m::SubscribeResult {
                    topics: topics.borrow().iter().cloned().collect(),
                }))
            }
            m::EVENTS_UNSUBSCRIBE => {
                let p: m::SubscribeParams = parse(params)?;
                let topics = session.topics();
                topics.send_modify(|set| set.retain(|t| !p.topics.contains(t)));
                Ok(to_value(m::SubscribeResult {
                    topics: topics.borrow().iter().cloned().collect(),
                }))
            }
            m::LOG_GET => {
                let log = log(daemon)?;
                Ok(to_value(m::LogInfo {
                    filter: log.filter(),
                    dir: log.dir().display().to_string(),
                }))
            }
            m::LOG_SET => {
                let p: m::LogSetParams = parse(params)?;
                let log = log(daemon)?;
                log.set_filter(&p.filter)
                    .map_err(|e| RpcError::new(ErrorCode::InvalidParams, e.to_string()))?;
                let info = m::LogInfo {
                    filter: log.filter(),
                    dir: log.dir().display().to_string(),
                };
                daemon.publish(topics::LOG_CHANGED, to_value(&info));
                Ok(to_value(info))
            }
            m::DAEMON_SHUTDOWN => {
                allpeers_log::flesh!(client = session.client_name(), "shutdown requested");
                daemon.shutdown.cancel();
                Ok(json!({"stopping": true}))
            }
            other => Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("unknown method \"{other}\""),
            )),
        }
    })
}

fn log(daemon: &Daemon) -> Result<&allpeers_log::LogHandle, RpcError> {
    daemon
        .log
        .as_ref()
        .ok_or_else(|| RpcError::new(ErrorCode::Internal, "logging is not set up"))
}

async fn unlock(daemon: &Arc<Daemon>, params: m::UnlockParams) -> Result<Value, RpcError> {
    let file = {
        let identity = daemon.identity.lock().expect("identity lock");
        if identity.key.is_some() {
            return Ok(to_value(identity.info()));
        }
        identity.file.clone()
    };
    let path = daemon.paths.identity().display().to_string();
    // Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let opened = tokio::task::spawn_blocking(move || file.open(Some(&params.passphrase), &path))
        .await
        .map_err(internal)?;
    match opened {
        Ok(key) => {
            daemon.identity.lock().expect("identity lock").key = Some(key.clone());
            crate::net::go_online(daemon, key).await;
            let info = daemon.identity_info();
            daemon.publish(topics::IDENTITY_CHANGED, to_value(&info));
            Ok(to_value(info))
        }
        Err(IdentityError::WrongPassphrase) => Err(RpcError::new(
            ErrorCode::WrongPassphrase,
            "wrong passphrase",
        )),
        Err(e) => Err(internal(e)),
    }
}

fn check_passphrase(passphrase: &str) -> Result<(), RpcError> {
    if m::PASSPHRASE_CHARS.contains(&passphrase.chars().count()) {
        return Ok(());
    }
    Err(RpcError::new(
        ErrorCode::InvalidParams,
        "passphrase: 8 to 1024 characters",
    ))
}

/// The unlocked key, or why there is none.
fn unlocked_key(
    daemon: &Daemon,
) -> Result<(allpeers_net::KeyFile, allpeers_net::Identity), RpcError> {
    let identity = daemon.identity.lock().expect("identity lock");
    let key = identity.key.clone().ok_or_else(|| {
        RpcError::new(
            ErrorCode::InvalidParams,
            "the identity is locked: unlock it first",
        )
    })?;
    Ok((identity.file.clone(), key))
}

/// Seals a plain identity file with a passphrase (the key in memory stays as it is).
async fn seal(daemon: &Arc<Daemon>, params: m::SealParams) -> Result<Value, RpcError> {
    check_passphrase(&params.passphrase)?;
    let (file, key) = unlocked_key(daemon)?;
    if file.is_sealed() {
        return Err(RpcError::new(
            ErrorCode::InvalidParams,
            "the identity is sealed already",
        ));
    }
    let path = daemon.paths.identity();
    let sealed = tokio::task::spawn_blocking(move || {
        let sealed = allpeers_net::KeyFile::new(&key, Some(&params.passphrase));
        sealed.write(&path).map(|()| sealed)
    })
    .await
    .map_err(internal)?
    .map_err(internal)?;
    daemon.identity.lock().expect("identity lock").file = sealed;
    allpeers_log::flesh!("identity: sealed with a passphrase");
    let info = daemon.identity_info();
    daemon.publish(topics::IDENTITY_CHANGED, to_value(&info));
    Ok(to_value(info))
}

/// A backup of the identity: the sealed file as it is, or the plain key sealed with the backup's passphrase.
async fn export(daemon: &Arc<Daemon>, params: m::ExportParams) -> Result<Value, RpcError> {
    let file = daemon.identity.lock().expect("identity lock").file.clone();
    let backup = if file.is_sealed() {
        file
    } else {
        let passphrase = params.passphrase.ok_or_else(|| {
            RpcError::new(
                ErrorCode::InvalidParams,
                "passphrase: a backup of a plain identity needs one",
            )
        })?;
        check_passphrase(&passphrase)?;
        let (_, key) = unlocked_key(daemon)?;
        tokio::task::spawn_blocking(move || allpeers_net::KeyFile::new(&key, Some(&passphrase)))
            .await
            .map_err(internal)?
    };
    allpeers_log::flesh!("identity: a backup was exported");
    Ok(to_value(m::IdentityBackup {
        peer_id: backup.peer_id,
        file: serde_json::to_string_pretty(&backup).map_err(internal)?,
    }))
}

/// Makes a backup the identity from the next start, once it opens with its passphrase. The running daemon keeps
/// the key it has: the endpoint, the hub's registration and every session are bound to it, so the client restarts
/// the daemon (`daemon.shutdown`) to use the restored one.
async fn restore(daemon: &Arc<Daemon>, params: m::RestoreParams) -> Result<Value, RpcError> {
    let bad = |reason: String| RpcError::new(ErrorCode::BadBackup, reason);
    if params.file.len() > m::MAX_BACKUP_BYTES {
        return Err(bad(format!(
            "{} bytes is far too large for an identity backup (at most {})",
            params.file.len(),
            m::MAX_BACKUP_BYTES
        )));
    }
    let backup = allpeers_net::KeyFile::parse(params.file.as_bytes(), "the backup").map_err(
        |e| match e {
            IdentityError::Corrupt { reason, .. } => {
                bad(format!("not an identity backup: {reason}"))
            }
            other => internal(other),
        },
    )?;
    if backup.is_sealed() && params.passphrase.is_none() {
        return Err(RpcError::new(
            ErrorCode::InvalidParams,
            "passphrase: the backup is sealed with one",
        ));
    }
    let checked = backup.clone();
    let passphrase = params.passphrase;
    tokio::task::spawn_blocking(move || checked.open(passphrase.as_deref(), "the backup"))
        .await
        .map_err(internal)?
        .map_err(|e| match e {
            IdentityError::WrongPassphrase => RpcError::new(
                ErrorCode::WrongPassphrase,
                "wrong passphrase: it does not open the backup",
            ),
            IdentityError::Corrupt { reason, .. } => {
                bad(format!("the backup does not open: {reason}"))
            }
            other => internal(other),
        })?;
    let replace = params.replace.unwrap_or(false);
    let paths = daemon.paths.clone();
    let placed = {
        let backup = backup.clone();
        tokio::task::spawn_blocking(move || crate::identity::put_in_place(&paths, &backup, replace))
            .await
            .map_err(internal)?
    };
    let replaced = match placed {
        Ok(Placed::Same | Placed::New) => None,
        Ok(Placed::Replaced(kept)) => Some(kept.display().to_string()),
        Err(PlaceError::Different(current)) => {
            let current = current.map(|p| p.to_string());
            return Err(RpcError::new(
                ErrorCode::IdentityExists,
                format!(
                    "this node has another identity ({}); restoring the backup replaces it (it is kept as a file): confirm with replace",
                    current.as_deref().unwrap_or("unreadable")
                ),
            )
            .with_data(json!({ "peer_id": current })));
        }
        Err(PlaceError::Io(e)) => return Err(internal(e)),
    };
    let running = daemon.identity_info().peer_id;
    let restart_needed = running != backup.peer_id;
    allpeers_log::flesh!(peer_id = %backup.peer_id, restart_needed, "identity: a backup was restored");
    Ok(to_value(m::RestoreResult {
        peer_id: backup.peer_id,
        sealed: backup.is_sealed(),
        restart_needed,
        replaced,
    }))
}

fn check_topics(requested: &[String]) -> Result<(), RpcError> {
    for topic in requested {
        if !topics::ALL.contains(&topic.as_str()) {
            return Err(RpcError::new(
                ErrorCode::InvalidParams,
                format!(
                    "unknown topic \"{topic}\"; topics are: {}",
                    topics::ALL.join(", ")
                ),
            ));
        }
    }
    Ok(())
}
