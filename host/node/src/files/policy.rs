//! The auto-download policy: per share `off`, `small` (files of at most the size the user set; the default) or
//! `all`; which files of a share it fetches; and the state the daemon holds for it. The daemon glue (the setting's
//! file, the API, the sweep) is `auto`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use allpeers_model::api::files::{
    AutoDownload, AutoDownloadPolicy, DEFAULT_AUTO_DOWNLOAD_MAX_BYTES, ShareAutoDownload,
};
use allpeers_replica::Replica;
use allpeers_transfer::blob::ContentHash;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Setting {
    pub(super) max_bytes: u64,
    pub(super) shares: BTreeMap<String, AutoDownloadPolicy>,
}

impl Default for Setting {
    fn default() -> Self {
        Setting {
            max_bytes: DEFAULT_AUTO_DOWNLOAD_MAX_BYTES,
            shares: BTreeMap::new(),
        }
    }
}

impl Setting {
    pub(super) fn policy(&self, share: &str) -> AutoDownloadPolicy {
        self.shares.get(share).copied().unwrap_or_default()
    }

    pub(super) fn view(&self) -> AutoDownload {
        AutoDownload {
            max_bytes: self.max_bytes,
            shares: self
                .shares
                .iter()
                .map(|(share, policy)| ShareAutoDownload {
                    share: share.clone(),
                    policy: *policy,
                })
                .collect(),
        }
    }
}

/// Whether a file of `size` bytes is fetched by itself under `policy`.
pub fn wanted(policy: AutoDownloadPolicy, max_bytes: u64, size: u64) -> bool {
    match policy {
        AutoDownloadPolicy::Off => false,
        AutoDownloadPolicy::Small => size <= max_bytes,
        AutoDownloadPolicy::All => true,
    }
}

/// The resources of `replica` naming content (`hash` and `size`) that `policy` fetches by itself.
pub fn candidates(
    replica: &Replica,
    policy: AutoDownloadPolicy,
    max_bytes: u64,
) -> Vec<(String, ContentHash)> {
    replica
        .state()
        .resource_ids()
        .filter_map(|id| {
            let view = replica.resource(id)?;
            let properties = view.get("properties")?;
            let hash = ContentHash::parse(properties.get("hash")?.as_str()?)?;
            let size = properties.get("size")?.as_u64()?;
            wanted(policy, max_bytes, size).then(|| (id.to_string(), hash))
        })
        .collect()
}

/// The daemon's auto-download state.
#[derive(Default)]
pub struct AutoDownloads {
    pub(super) setting: Mutex<Option<Setting>>,
    pub(super) wake: Notify,
    /// Content fetched by itself, loaded from its file at the first sweep (a user's cancel is not undone, across
    /// restarts too).
    pub(super) started: Mutex<Option<HashSet<ContentHash>>>,
    /// Bumped at every wake: the shares changed (ops stored, a share left). A body being served checks who may
    /// have it again only when this moved.
    changes: AtomicU64,
}

impl AutoDownloads {
    /// A commit stored ops (or a share was left): sweep soon.
    pub fn wake(&self) {
        self.changes.fetch_add(1, Ordering::Release);
        self.wake.notify_one();
    }

    /// How many times the shares changed (see [`AutoDownloads::wake`]).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_policy_fetches_what_it_says_and_small_is_the_default() {
        assert_eq!(AutoDownloadPolicy::default(), AutoDownloadPolicy::Small);
        assert!(!wanted(AutoDownloadPolicy::Off, 100, 1));
        assert!(wanted(AutoDownloadPolicy::Small, 100, 100));
        assert!(!wanted(AutoDownloadPolicy::Small, 100, 101));
        assert!(wanted(AutoDownloadPolicy::All, 100, u64::MAX));
        let mut setting = Setting::default();
        assert_eq!(setting.max_bytes, DEFAULT_AUTO_DOWNLOAD_MAX_BYTES);
        setting.shares.insert("s".into(), AutoDownloadPolicy::Off);
        assert_eq!(setting.policy("s"), AutoDownloadPolicy::Off);
        assert_eq!(setting.policy("t"), AutoDownloadPolicy::Small);
        assert_eq!(setting.view().shares.len(), 1);
    }
}
