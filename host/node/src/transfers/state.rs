//! The transfers area's state in the daemon: the running download manager and where downloads go by default.

use std::path::PathBuf;
use std::sync::Mutex;

use allpeers_transfer::manager::Manager;

pub struct Transfers {
    pub manager: Manager,
    /// Changed by `transfers.download_dir.set` (and kept in config.json).
    pub downloads: Mutex<PathBuf>,
    /// Whether torrents use the DHT node of discovery once it runs (`transfers.dht` on, `discovery.dht` on).
    pub shares_dht: bool,
}

impl Transfers {
    /// Where downloads go when none names a directory.
    pub fn downloads(&self) -> PathBuf {
        self.downloads.lock().expect("downloads lock").clone()
    }
}
