//! Params, results and events of the media methods (`media.add`, `media.info`) and the
//! `media.progress` event.
//!
//! `media.add` catalogues files and folders: each file becomes a File resource (Audio,
//! Image, Video or Text when its content says so) whose local metadata links it to the
//! file on disk (`path`, `mtime`, `missing`, `error`). The work runs in the background as a
//! job; `media.progress` reports on it. Folders added stay watched (unless `watch` is
//! false; single files only when `watch` is true): a file that changes is described again and one that vanishes is marked missing,
//! as it happens, in jobs of their own. `media.watched` lists the watched paths and
//! `media.unwatch` stops watching one (its files stay catalogued).

use serde::{Deserialize, Serialize};

pub const MEDIA_ADD: &str = "media.add";
pub const MEDIA_INFO: &str = "media.info";
pub const MEDIA_WATCHED: &str = "media.watched";
pub const MEDIA_UNWATCH: &str = "media.unwatch";

/// Every media method.
pub const METHODS: &[&str] = &[MEDIA_ADD, MEDIA_INFO, MEDIA_WATCHED, MEDIA_UNWATCH];

/// Event topics.
pub mod topics {
    /// An indexing job advanced or finished: [`super::MediaProgress`].
    pub const MEDIA_PROGRESS: &str = "media.progress";
}

/// `media.add`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct AddMediaParams {
    /// Absolute paths of files and folders.
    pub paths: Vec<String>,
    /// Descend into sub-folders (otherwise a folder's own files only).
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub recursive: Option<bool>,
    /// Keep the paths up to date as files change or vanish. Default: folders yes, single
    /// files no (`true` watches the files given too; `false` nothing).
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub watch: Option<bool>,
}

/// A path the catalog keeps up to date (`media.watched`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct WatchedPath {
    /// Absolute and canonical: a folder or a single file.
    pub path: String,
    /// Its sub-folders are watched too.
    pub recursive: bool,
    /// Why it is not watched now (the path is gone, or the system's limit on watches was
    /// reached); `null` while it is.
    pub error: Option<String>,
}

/// `media.unwatch`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct UnwatchParams {
    /// A path as `media.watched` lists it, or as given to `media.add`.
    pub path: String,
}

/// `media.unwatch`'s result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UnwatchResult {
    /// False when the path was not watched.
    pub removed: bool,
}

/// `media.add`'s result: the job that indexes in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct AddResult {
    pub job: u64,
}

/// `media.info`'s params: exactly one of `path` (absolute) and `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct InfoParams {
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub path: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub id: Option<String>,
}

/// What a finished job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MediaSummary {
    /// Files seen for the first time.
    pub added: u64,
    /// Files whose size or modification time changed: described again.
    pub updated: u64,
    /// Files unchanged since the last time: skipped.
    pub unchanged: u64,
    /// Catalogued files no longer on disk: marked `missing`.
    pub missing: u64,
    /// Files that could not be described (also counted as added or updated): catalogued
    /// as plain Files with an `error` in their local metadata.
    pub failed: u64,
}

/// `media.progress`: a job's progress, at most a few times a second, and once when it ends
/// (`finished`, with its `summary`). Jobs the watcher starts report the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct MediaProgress {
    pub job: u64,
    /// Files handled so far.
    pub done: u64,
    /// Files found (grows while folders are walked).
    pub total: u64,
    /// The file handled last.
    pub current: Option<String>,
    pub finished: bool,
    /// Set once the job has finished.
    pub summary: Option<MediaSummary>,
}
