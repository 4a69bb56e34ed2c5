//! Params and results of the files area: `files.get` fetches the content of a File resource shared with us.
//!
//! A File shared with `shares.create` carries `hash` (BLAKE3, 64 hex digits) and `size`; its content is fetched
//! from the share's members that hold it, every block verified against the hash, as a transfer (`transfers.*`
//! pause, resume and cancel it, `transfer.*` events report it). One source is fetched over HTTP; several make a
//! private swarm (every member holding the file or part of it serves it at once, downloaders serving each other).
//!
//! Auto-download (`files.auto_download.get` / `.set`): per share, `off`, `small` (files of at most `max_bytes`,
//! the default) or `all`; a File that arrives in a share is then fetched by itself, so a shared album fills in.

use serde::{Deserialize, Serialize};

pub const FILES_GET: &str = "files.get";
pub const FILES_IMPORT_START: &str = "files.import_start";
pub const FILES_IMPORT_WRITE: &str = "files.import_write";
pub const FILES_IMPORT_CANCEL: &str = "files.import_cancel";
pub const FILES_AUTO_DOWNLOAD_GET: &str = "files.auto_download.get";
pub const FILES_AUTO_DOWNLOAD_SET: &str = "files.auto_download.set";

/// Every method of the files area.
pub const METHODS: &[&str] = &[
    FILES_GET,
    FILES_IMPORT_START,
    FILES_IMPORT_WRITE,
    FILES_IMPORT_CANCEL,
    FILES_AUTO_DOWNLOAD_GET,
    FILES_AUTO_DOWNLOAD_SET,
];

/// The size under which `small` fetches a shared file by itself, until the user sets another (20 MiB: photos and
/// documents, not films).
pub const DEFAULT_AUTO_DOWNLOAD_MAX_BYTES: u64 = 20 << 20;

/// The largest file an import takes (4 GiB).
pub const MAX_IMPORT_BYTES: u64 = 4 << 30;
/// The most bytes one `files.import_write` carries (before base64: 768 KiB, so a chunk stays under the 1 MiB a
/// native-messaging frame may hold).
pub const MAX_IMPORT_CHUNK: usize = 768 << 10;
/// Imports open at once (each is a `.part` file until its last byte came).
pub const MAX_OPEN_IMPORTS: usize = 16;
/// The longest name an imported file may have, in bytes.
pub const MAX_IMPORT_NAME: usize = 255;

/// `files.get`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct GetFileParams {
    /// The File resource's id (or of a type extending File: Image, Audio, Video, Text).
    pub resource: String,
    /// Where the file goes (absolute); absent: the configured download directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Add without starting.
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(as = "Option<bool>", optional))]
    pub paused: bool,
}

/// `files.import_start`'s params: the file's name (a plain name: no path separators, not hidden, no control
/// characters, at most 255 bytes) and its size in bytes (at most [`MAX_IMPORT_BYTES`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ImportStartParams {
    pub name: String,
    pub size: u64,
}

/// `files.import_write`'s params: the next bytes of an import (`offset` = the bytes received so far), base64, at
/// most [`MAX_IMPORT_CHUNK`] of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ImportWriteParams {
    pub import: u64,
    pub offset: u64,
    pub data: String,
}

/// `files.import_cancel`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ImportIdParams {
    pub import: u64,
}

/// Where an import stands: `path` (absolute) is set once every byte is in and the file has its final name (a
/// file already there is never replaced: `name (1).ext`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ImportStatus {
    pub import: u64,
    pub received: u64,
    pub size: u64,
    pub path: Option<String>,
}

/// Which shared files a node fetches by itself when they arrive in a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum AutoDownloadPolicy {
    /// Only what the user asks for (`files.get`).
    Off,
    /// Files of at most `max_bytes` (the default).
    #[default]
    Small,
    /// Every file.
    All,
}

/// One share's policy (shares not listed have the default, `small`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ShareAutoDownload {
    pub share: String,
    pub policy: AutoDownloadPolicy,
}

/// `files.auto_download.get`'s answer (and `.set`'s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct AutoDownload {
    /// What `small` means: files of at most this many bytes.
    pub max_bytes: u64,
    /// Shares whose policy is not the default.
    pub shares: Vec<ShareAutoDownload>,
}

/// `files.auto_download.set`'s params: a share's policy (both `share` and `policy`), the size `small` means, or
/// both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SetAutoDownloadParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub share: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub policy: Option<AutoDownloadPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub max_bytes: Option<u64>,
}

/// Why `name` cannot be an imported file's name (`None`: it can).
pub fn import_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.trim() != name {
        return Some("the name is empty or starts or ends with spaces");
    }
    if name.len() > MAX_IMPORT_NAME {
        return Some("the name is longer than 255 bytes");
    }
    if name.starts_with('.') {
        return Some("hidden names (starting with a dot) are not imported");
    }
    if name.contains(['/', '\\']) {
        return Some("the name holds a path separator");
    }
    if name.chars().any(|c| c.is_control()) {
        return Some("the name holds a control character");
    }
    if name.to_ascii_lowercase().ends_with(".part") {
        return Some("the name ends in .part (what unfinished imports are called)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn import_names_are_plain() {
        for good in ["a.jpg", "Holiday 2026 (1).png", "été.JPG", "ñ"] {
            assert_eq!(import_name_problem(good), None, "{good}");
        }
        let long = "x".repeat(256);
        for bad in [
            "",
            " a",
            "a ",
            ".hidden",
            "..",
            "a/b",
            "a\\b",
            "../x",
            "a\nb",
            "a\u{0}b",
            "x.part",
            long.as_str(),
        ] {
            assert!(import_name_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn get_params_default_and_refuse_unknown_fields() {
        let p: GetFileParams = serde_json::from_value(json!({"resource": "file:1"})).unwrap();
        assert_eq!(p.dir, None);
        assert!(!p.paused);
        assert!(serde_json::from_value::<GetFileParams>(json!({"resource": "x", "y": 1})).is_err());
    }
}
