//! The data dir lock: one daemon per data dir. An OS file lock (released by the kernel
//! when the process dies, so a crash never leaves a stale lock) on `daemon.lock`, which
//! also records the owner's pid for the error message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};

use anyhow::{Context, bail};

use crate::paths::NodePaths;

pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock or explains who holds it.
    pub fn acquire(paths: &NodePaths) -> anyhow::Result<DataDirLock> {
        let path = paths.lock();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut owner = String::new();
                let _ = file.read_to_string(&mut owner);
                let owner = owner.trim();
                bail!(
                    "another AllPeers daemon{} already owns the data dir {} (stop it with `allpeers stop`, or use another --data-dir)",
                    if owner.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {owner})")
                    },
                    paths.data_dir.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(DataDirLock { _file: file })
    }

    /// Whether a daemon holds the lock right now (without taking it for long).
    pub fn is_held(paths: &NodePaths) -> bool {
        match Self::acquire(paths) {
            Ok(lock) => {
                drop(lock);
                false
            }
            Err(_) => true,
        }
    }
}
