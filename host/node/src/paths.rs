//! Where the node keeps things: the data dir (XDG), the runtime dir holding the API socket,
//! and the files inside the data dir.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Overrides the data dir (same as `--data-dir`).
pub const ENV_DATA_DIR: &str = "ALLPEERS_DATA_DIR";
/// Overrides the API socket path.
pub const ENV_SOCKET: &str = "ALLPEERS_SOCKET";

/// The files of one node.
#[derive(Debug, Clone)]
pub struct NodePaths {
    pub data_dir: PathBuf,
    pub socket: PathBuf,
}

impl NodePaths {
    /// Resolves the data dir (explicit, else `$ALLPEERS_DATA_DIR` — clap fills that in —,
    /// else `~/.local/share/allpeers`), creating it 0700, and the socket path.
    pub fn resolve(data_dir: Option<&Path>) -> anyhow::Result<NodePaths> {
        let data_dir = match data_dir {
            Some(dir) => dir.to_path_buf(),
            None => directories::ProjectDirs::from("net", "allpeers", "allpeers")
                .context("cannot find the home directory; pass --data-dir")?
                .data_dir()
                .to_path_buf(),
        };
        create_private_dir(&data_dir)?;
        let data_dir = data_dir
            .canonicalize()
            .with_context(|| format!("cannot resolve data dir {}", data_dir.display()))?;
        let socket = match std::env::var_os(ENV_SOCKET) {
            Some(path) => PathBuf::from(path),
            None => runtime_dir()?.join(socket_name(&data_dir)),
        };
        Ok(NodePaths { data_dir, socket })
    }

    pub fn identity(&self) -> PathBuf {
        self.data_dir.join("identity.json")
    }

    pub fn lock(&self) -> PathBuf {
        self.data_dir.join("daemon.lock")
    }

    /// Held by whoever is starting the daemon, so two bridges launched at once start one.
    pub fn spawn_lock(&self) -> PathBuf {
        self.data_dir.join("spawn.lock")
    }

    pub fn logs(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    /// The resource store (SQLite; `-wal` and `-shm` files beside it).
    pub fn store(&self) -> PathBuf {
        self.data_dir.join("store.sqlite")
    }

    pub fn config(&self) -> PathBuf {
        self.data_dir.join("config.json")
    }

    /// The download manager's state: the transfer list, each transfer's .torrent and piece journal.
    pub fn transfers(&self) -> PathBuf {
        self.data_dir.join("transfers")
    }

    /// Where downloads go unless the config or the caller names another directory.
    pub fn downloads(&self) -> PathBuf {
        self.data_dir.join("downloads")
    }
}

/// One socket per data dir, so several nodes (tests, the demo) can run side by side. The
/// name is a hash of the data dir path: runtime-dir paths must stay under the 108-byte
/// limit of Unix socket addresses.
fn socket_name(data_dir: &Path) -> String {
    let hash = fnv1a_hex(data_dir.as_os_str().as_encoded_bytes());
    format!("node-{hash}.sock")
}

fn fnv1a_hex(bytes: &[u8]) -> String {
    // FNV-1a, 64 bit: not security relevant (the dir's permissions are), only unique enough.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// `$XDG_RUNTIME_DIR/allpeers`, else `/tmp/allpeers-<uid>`; 0700 and ours, or refused:
/// anyone who can write there could stand in for the daemon.
pub fn runtime_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(base) if !base.is_empty() => PathBuf::from(base).join("allpeers"),
        _ => std::env::temp_dir().join(format!("allpeers-{}", rustix::process::getuid().as_raw())),
    };
    create_private_dir(&dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&dir)?;
        if meta.uid() != rustix::process::getuid().as_raw() {
            bail!(
                "{} belongs to another user; refusing to put the API socket there",
                dir.display()
            );
        }
        if meta.mode() & 0o077 != 0 {
            bail!(
                "{} is accessible to other users (mode {:o}); refusing to put the API socket there",
                dir.display(),
                meta.mode() & 0o777
            );
        }
    }
    Ok(dir)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_data_dir_gets_its_own_short_socket() {
        let a = socket_name(Path::new("/home/a/.local/share/allpeers"));
        let b = socket_name(Path::new("/tmp/x"));
        assert_ne!(a, b);
        assert_eq!(a.len(), "node-".len() + 16 + ".sock".len());
    }
}
