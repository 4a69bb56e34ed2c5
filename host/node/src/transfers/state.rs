//! The transfers area's state in the daemon: the running download manager and where downloads go by default.

use std::path::PathBuf;

use allpeers_transfer::manager::Manager;

pub struct Transfers {
    pub manager: Manager,
    pub downloads: PathBuf,
}
