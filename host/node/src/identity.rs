//! The node's identity in its data dir: created on first run, opened with the passphrase
//! when sealed, exported and imported as backups.

use std::path::{Path, PathBuf};

use allpeers_model::PeerId;
use allpeers_model::api::methods::IdentityInfo;
use allpeers_net::{Identity, IdentityError, KeyFile};
use anyhow::{Context, bail};

use crate::paths::NodePaths;

/// Passphrase of the identity in the data dir (for the daemon and non-interactive use).
pub const ENV_PASSPHRASE: &str = "ALLPEERS_PASSPHRASE";
/// Passphrase of a backup file for `identity export` / `identity import`.
pub const ENV_BACKUP_PASSPHRASE: &str = "ALLPEERS_BACKUP_PASSPHRASE";

/// The identity as the daemon holds it: the file always, the key once unlocked.
pub struct NodeIdentity {
    pub file: KeyFile,
    pub key: Option<Identity>,
}

impl NodeIdentity {
    pub fn info(&self) -> IdentityInfo {
        IdentityInfo {
            peer_id: self.file.peer_id,
            locked: self.key.is_none(),
            sealed: self.file.is_sealed(),
            certificate_sha256: self
                .key
                .as_ref()
                .and_then(|k| k.certificate().ok())
                .map(|c| c.sha256_hex()),
        }
    }
}

/// Reads the identity, creating one on first run. Callers hold the data dir lock, so two
/// processes never both create one.
pub fn load_or_create(paths: &NodePaths, passphrase: Option<&str>) -> anyhow::Result<NodeIdentity> {
    let path = paths.identity();
    match KeyFile::read(&path) {
        Ok(file) => {
            let key = match file.open(passphrase, &path.display().to_string()) {
                Ok(key) => Some(key),
                Err(IdentityError::PassphraseRequired) => None,
                Err(e) => return Err(e.into()),
            };
            Ok(NodeIdentity { file, key })
        }
        Err(IdentityError::NotFound(_)) => {
            let key = Identity::generate();
            let file = KeyFile::new(&key, passphrase);
            file.write(&path)?;
            tracing::info!(peer_id = %key.peer_id(), sealed = passphrase.is_some(), "created a new identity");
            Ok(NodeIdentity {
                file,
                key: Some(key),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes a backup of the identity to `target`. A plain identity is sealed with
/// `backup_passphrase` (required unless `allow_plain`); a sealed one is copied as it is.
pub fn export(
    paths: &NodePaths,
    target: &Path,
    backup_passphrase: Option<&str>,
    allow_plain: bool,
) -> anyhow::Result<KeyFile> {
    let path = paths.identity();
    let file = KeyFile::read(&path)?;
    if target.exists() {
        bail!("{} exists; refusing to overwrite it", target.display());
    }
    let backup = if file.is_sealed() {
        file
    } else {
        let identity = file.open(None, &path.display().to_string())?;
        match backup_passphrase {
            Some(p) => KeyFile::new(&identity, Some(p)),
            None if allow_plain => file,
            None => bail!(
                "a backup needs a passphrase ({ENV_BACKUP_PASSPHRASE} or the prompt), or --no-passphrase"
            ),
        }
    };
    backup.write(target)?;
    Ok(backup)
}

/// Replaces the identity in the data dir with a backup, after checking that it opens. The
/// old identity is kept beside it as `identity.json.replaced-<unix time>`. The caller holds
/// the data dir lock (no daemon is running).
pub fn import(
    paths: &NodePaths,
    source: &Path,
    backup_passphrase: Option<&str>,
    force: bool,
) -> anyhow::Result<KeyFile> {
    let backup = KeyFile::read(source)?;
    backup
        .open(backup_passphrase, &source.display().to_string())
        .context("the backup does not open")?;
    match put_in_place(paths, &backup, force) {
        Err(PlaceError::Different(current)) => bail!(
            "this data dir already has an identity ({}); pass --force to replace it (the old one is kept as a file beside it)",
            current
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unreadable".into())
        ),
        Err(e) => Err(e.into()),
        Ok(_) => Ok(backup),
    }
}

/// What [`put_in_place`] did.
#[derive(Debug, PartialEq)]
pub enum Placed {
    /// The data dir holds that identity already: nothing written.
    Same,
    /// Written where there was none.
    New,
    /// Written; the previous identity was kept in this file.
    Replaced(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    /// The data dir holds another identity (`None`: one that cannot be read) and replacing it was not asked for.
    #[error("the data dir holds another identity")]
    Different(Option<PeerId>),
    #[error(transparent)]
    Io(#[from] anyhow::Error),
}

/// Makes `backup` (already checked to open) the data dir's identity. A different identity there is replaced only
/// when `replace`, and kept beside it as `identity.json.replaced-<unix time>`.
pub fn put_in_place(
    paths: &NodePaths,
    backup: &KeyFile,
    replace: bool,
) -> Result<Placed, PlaceError> {
    let path = paths.identity();
    let mut placed = Placed::New;
    if path.exists() {
        let current = KeyFile::read(&path).ok().map(|f| f.peer_id);
        if current == Some(backup.peer_id) {
            return Ok(Placed::Same);
        }
        if !replace {
            return Err(PlaceError::Different(current));
        }
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let kept = paths
            .data_dir
            .join(format!("identity.json.replaced-{stamp}"));
        std::fs::rename(&path, &kept)
            .with_context(|| format!("cannot keep the old identity as {}", kept.display()))?;
        placed = Placed::Replaced(kept);
    }
    backup.write(&path).map_err(anyhow::Error::from)?;
    Ok(placed)
}
