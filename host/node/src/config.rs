//! `config.json` in the data dir: settings that outlive a run. Optional; every field has a
//! default, and an unreadable file is a clear error naming it rather than silently ignored.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub log: LogSection,
    pub net: NetSection,
    /// The home hub; none: the node works without one (direct connections only).
    pub hub: Option<HubSection>,
}

/// The home hub: its PeerId (pinned: the TLS handshake must prove it) and addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSection {
    pub peer_id: String,
    /// `quic://ip:port`, `tcp://ip:port`, tried in order.
    pub addresses: Vec<String>,
    /// `http://[user:pass@]ip:port` or `socks5://…`: reach the hub (and relays) through it.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Relay offers to take: "all" or "none" (by contact once contacts exist).
    #[serde(default = "accept_all")]
    pub accept_relays: String,
}

fn accept_all() -> String {
    "all".into()
}

/// Where the peer endpoint listens. `null` turns a transport's listener off (dialling out
/// still works). Default: every interface, ports chosen by the OS.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetSection {
    pub quic: Option<std::net::SocketAddr>,
    pub tcp: Option<std::net::SocketAddr>,
}

impl Default for NetSection {
    fn default() -> Self {
        let any = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        NetSection {
            quic: Some(any),
            tcp: Some(any),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// Levels, e.g. `"flesh,allpeers_net=bone"`; `ALLPEERS_LOG` overrides it.
    pub filter: Option<String>,
    pub max_file_bytes: usize,
    pub max_files: usize,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            filter: None,
            max_file_bytes: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// A config file is small; refuse anything that is clearly not one.
const MAX_CONFIG_LEN: u64 = 1024 * 1024;

impl NodeConfig {
    pub fn load(path: &Path) -> anyhow::Result<NodeConfig> {
        let len = match std::fs::metadata(path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(NodeConfig::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        anyhow::ensure!(
            len <= MAX_CONFIG_LEN,
            "{} is {len} bytes: not a config file",
            path.display()
        );
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid config", path.display()))
    }

    /// The logging setup for a process of this node: `name` picks the file.
    pub fn log_config(&self, logs_dir: &Path, name: &str) -> allpeers_log::LogConfig {
        let mut config = allpeers_log::LogConfig::new(logs_dir, name);
        if std::env::var_os(allpeers_log::ENV_FILTER).is_none()
            && let Some(filter) = &self.log.filter
        {
            config.filter = filter.clone();
        }
        config.max_file_bytes = self.log.max_file_bytes;
        config.max_files = self.log.max_files;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults_and_bad_files_name_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        assert_eq!(NodeConfig::load(&path).unwrap().log.max_files, 5);
        std::fs::write(&path, r#"{"log": {"filter": "bone", "max_files": 2}}"#).unwrap();
        let config = NodeConfig::load(&path).unwrap();
        assert_eq!(config.log.filter.as_deref(), Some("bone"));
        assert_eq!(config.log.max_files, 2);
        assert_eq!(config.log.max_file_bytes, 10 * 1024 * 1024);
        std::fs::write(&path, r#"{"net": {"quic": "127.0.0.1:4433", "tcp": null}}"#).unwrap();
        let net = NodeConfig::load(&path).unwrap().net;
        assert_eq!(net.quic, Some("127.0.0.1:4433".parse().unwrap()));
        assert_eq!(net.tcp, None);
        std::fs::write(&path, r#"{"log": {"filtr": "bone"}}"#).unwrap();
        let err = format!("{:#}", NodeConfig::load(&path).unwrap_err());
        assert!(
            err.contains("config.json") && err.contains("filtr"),
            "{err}"
        );
    }
}
