//! Params and results of the files area: `files.get` fetches the content of a File resource shared with us.
//!
//! A File shared with `shares.create` carries `hash` (BLAKE3, 64 hex digits) and `size`; its content is fetched
//! from the share's members that hold it, every block verified against the hash, as a transfer (`transfers.*`
//! pause, resume and cancel it, `transfer.*` events report it).

use serde::{Deserialize, Serialize};

pub const FILES_GET: &str = "files.get";

/// Every method of the files area.
pub const METHODS: &[&str] = &[FILES_GET];

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn get_params_default_and_refuse_unknown_fields() {
        let p: GetFileParams = serde_json::from_value(json!({"resource": "file:1"})).unwrap();
        assert_eq!(p.dir, None);
        assert!(!p.paused);
        assert!(serde_json::from_value::<GetFileParams>(json!({"resource": "x", "y": 1})).is_err());
    }
}
