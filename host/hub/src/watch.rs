//! Who may watch whose presence: the hook the chat/contacts rules plug into.

use allpeers_model::PeerId;

/// Decides whether `watcher` may be told when `target` comes and goes. `mutual` says
/// whether `target` also asked to watch `watcher` (both have each other as contacts).
/// Called under the presence lock: keep it quick and non-blocking.
pub trait WatchPolicy: Send + Sync + 'static {
    fn may_watch(&self, watcher: &PeerId, target: &PeerId, mutual: bool) -> bool;
}

/// The default: presence is shown only between peers who both asked for each other, so a
/// stranger who learns a PeerId cannot track when its owner is online.
pub struct MutualWatch;
impl WatchPolicy for MutualWatch {
    fn may_watch(&self, _watcher: &PeerId, _target: &PeerId, mutual: bool) -> bool {
        mutual
    }
}

/// Anyone may watch anyone (public hubs for testing, open communities).
pub struct OpenWatch;
impl WatchPolicy for OpenWatch {
    fn may_watch(&self, _watcher: &PeerId, _target: &PeerId, _mutual: bool) -> bool {
        true
    }
}

/// The policy named in the config (`mutual` or `open`).
pub fn by_name(name: &str) -> Option<std::sync::Arc<dyn WatchPolicy>> {
    match name {
        "mutual" => Some(std::sync::Arc::new(MutualWatch)),
        "open" => Some(std::sync::Arc::new(OpenWatch)),
        _ => None,
    }
}
