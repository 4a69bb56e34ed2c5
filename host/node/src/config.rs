//! `config.json` in the data dir: settings that outlive a run. Optional; every field has a
//! default, and an unreadable file is a clear error naming it rather than silently ignored.

use std::path::Path;

use allpeers_transfer::bt::mse::Encryption;
use anyhow::Context;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub log: LogSection,
    pub net: NetSection,
    /// The home hub; none: the node works without one (direct connections only).
    pub hub: Option<HubSection>,
    /// Finding peers without a hub: the Mainline DHT and LAN multicast. Both off by
    /// default: each tells others (the whole DHT, everyone on the LAN) our PeerId and
    /// addresses, which is the user's choice to make.
    pub discovery: DiscoverySection,
    /// Downloads and uploads (BitTorrent).
    pub transfers: TransfersSection,
}

/// The download manager and its BitTorrent engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransfersSection {
    /// Where downloads go when `transfers.add` names no directory; absent: `<data dir>/downloads`.
    pub download_dir: Option<std::path::PathBuf>,
    /// The BitTorrent listener (default: every interface, a port the OS picks).
    pub listen: std::net::SocketAddr,
    /// Downloads running at once; the rest wait in the queue.
    pub max_active: usize,
    /// Global limits in bytes per second (absent: none) until `net.limits.set` changes them; what it sets is
    /// kept (in the transfer state dir) and wins over these from then on.
    pub down_limit: Option<u64>,
    pub up_limit: Option<u64>,
    /// Bytes all downloads together may write (absent: no limit); past it a download pauses.
    pub space_limit: Option<u64>,
    /// Announce to the trackers torrents name.
    pub use_trackers: bool,
    /// BitTorrent's Message Stream Encryption: `"off"` (plain only), `"prefer"` (encrypted first, plain when the
    /// peer does not speak it; both accepted) or `"require"` (RC4 only, both ways).
    pub encryption: Encryption,
    /// Find peers of torrents that are not private, and of magnet links, on the Mainline DHT (BEP 5).
    pub dht: TransfersDhtSection,
    /// PEM files of extra CA certificates trusted, besides Mozilla's roots, for https trackers and .torrent URLs
    /// (a private tracker whose certificate an own CA signed).
    pub ca_roots: Vec<std::path::PathBuf>,
}

/// The BitTorrent DHT: the node's own DHT node when `discovery.dht` runs one (shared, not a second), otherwise one
/// for transfers alone, started when a torrent first needs it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransfersDhtSection {
    pub enabled: bool,
    /// `host:port` of the nodes to join through (absent: the public Mainline bootstrap nodes). Not used while
    /// `discovery.dht` runs: its node and bootstrap serve both.
    pub bootstrap: Option<Vec<String>>,
    /// The IPv4 address the DHT socket binds (absent: every interface).
    pub bind: Option<std::net::Ipv4Addr>,
    /// The UDP port (absent: one the OS picks).
    pub port: Option<u16>,
}

impl Default for TransfersDhtSection {
    fn default() -> Self {
        TransfersDhtSection {
            enabled: true,
            bootstrap: None,
            bind: None,
            port: None,
        }
    }
}

impl Default for TransfersSection {
    fn default() -> Self {
        TransfersSection {
            download_dir: None,
            listen: std::net::SocketAddr::from(([0, 0, 0, 0], 0)),
            max_active: 3,
            down_limit: None,
            up_limit: None,
            space_limit: None,
            use_trackers: true,
            encryption: Default::default(),
            dht: TransfersDhtSection::default(),
            ca_roots: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoverySection {
    pub dht: DhtSection,
    pub lan: LanSection,
}

/// Our signed address record on the BitTorrent Mainline DHT (BEP 44), and lookups there
/// when the hub cannot resolve a peer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DhtSection {
    pub enabled: bool,
    /// `host:port` of the nodes to join through; absent: the public Mainline bootstrap
    /// nodes.
    pub bootstrap: Option<Vec<String>>,
    /// The IPv4 address the DHT socket binds (absent: every interface).
    pub bind: Option<std::net::Ipv4Addr>,
}

/// Signed announcements by UDP multicast on the local network.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LanSection {
    pub enabled: bool,
    /// The multicast group (default 239.255.70.80) and port (default 41730).
    pub group: std::net::Ipv4Addr,
    pub port: u16,
    /// The interface to use, by its IPv4 address (default 0.0.0.0: the kernel's choice).
    pub interface: std::net::Ipv4Addr,
}

impl Default for LanSection {
    fn default() -> Self {
        LanSection {
            enabled: false,
            group: allpeers_discovery::lan::DEFAULT_GROUP,
            port: allpeers_discovery::lan::DEFAULT_PORT,
            interface: std::net::Ipv4Addr::UNSPECIFIED,
        }
    }
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

/// Where the peer endpoint listens. `"tcp": null` turns the TCP listener off (dialling TCP
/// still works); `"quic": null` turns QUIC off altogether (no UDP socket: the node neither
/// listens nor dials over QUIC, and reaches the hub and peers over TCP only). Default: every
/// interface, ports chosen by the OS.
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

    /// Changes `config.json` through `change` on its JSON (a missing file is `{}`), keeping everything else as it
    /// is. The result must still be a valid config, or nothing is written; written to a temporary file and
    /// renamed over the old one, so a crash leaves one or the other.
    pub fn update(path: &Path, change: impl FnOnce(&mut serde_json::Value)) -> anyhow::Result<()> {
        let mut value = match std::fs::metadata(path) {
            Ok(meta) => {
                anyhow::ensure!(
                    meta.len() <= MAX_CONFIG_LEN,
                    "{} is not a config file",
                    path.display()
                );
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not valid JSON", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        anyhow::ensure!(value.is_object(), "{} is not a JSON object", path.display());
        change(&mut value);
        NodeConfig::deserialize(&value).context("the changed config would not be valid")?;
        let tmp = path.with_extension("json.new");
        let text = serde_json::to_string_pretty(&value).expect("JSON serialises");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
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
    fn an_update_keeps_the_rest_and_refuses_an_invalid_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        NodeConfig::update(&path, |v| {
            v["transfers"] = serde_json::json!({"max_active": 2})
        })
        .unwrap();
        NodeConfig::update(&path, |v| v["transfers"]["download_dir"] = "/d".into()).unwrap();
        let c = NodeConfig::load(&path).unwrap();
        assert_eq!(c.transfers.max_active, 2);
        assert_eq!(c.transfers.download_dir.as_deref(), Some(Path::new("/d")));
        assert!(NodeConfig::update(&path, |v| v["nonsense"] = 1.into()).is_err());
        assert_eq!(NodeConfig::load(&path).unwrap().transfers.max_active, 2);
    }

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
        let discovery = NodeConfig::load(&path).unwrap().discovery;
        assert!(
            !discovery.dht.enabled && !discovery.lan.enabled,
            "off by default"
        );
        std::fs::write(
            &path,
            r#"{"discovery": {"dht": {"enabled": true, "bootstrap": ["127.0.0.1:6881"]},
                              "lan": {"enabled": true, "group": "239.255.1.2"}}}"#,
        )
        .unwrap();
        let discovery = NodeConfig::load(&path).unwrap().discovery;
        assert_eq!(
            discovery.dht.bootstrap.as_deref(),
            Some(&["127.0.0.1:6881".to_string()][..])
        );
        assert_eq!(discovery.lan.group, std::net::Ipv4Addr::new(239, 255, 1, 2));
        assert_eq!(discovery.lan.port, allpeers_discovery::lan::DEFAULT_PORT);
        std::fs::write(
            &path,
            r#"{"transfers": {"listen": "127.0.0.1:6881", "down_limit": 1000000}}"#,
        )
        .unwrap();
        let transfers = NodeConfig::load(&path).unwrap().transfers;
        assert_eq!(transfers.listen, "127.0.0.1:6881".parse().unwrap());
        assert_eq!(transfers.down_limit, Some(1_000_000));
        assert!(transfers.use_trackers && transfers.max_active == 3);
        assert_eq!(transfers.encryption, Encryption::Prefer);
        std::fs::write(&path, r#"{"transfers": {"encryption": "require"}}"#).unwrap();
        let transfers = NodeConfig::load(&path).unwrap().transfers;
        assert_eq!(transfers.encryption, Encryption::Require);
        std::fs::write(&path, r#"{"transfers": {"encryption": "sometimes"}}"#).unwrap();
        assert!(NodeConfig::load(&path).is_err());
        assert!(transfers.dht.enabled && transfers.dht.bootstrap.is_none());
        std::fs::write(
            &path,
            r#"{"transfers": {"dht": {"bootstrap": ["127.0.0.1:6881"], "bind": "127.0.0.1", "port": 6882}}}"#,
        )
        .unwrap();
        let dht = NodeConfig::load(&path).unwrap().transfers.dht;
        assert!(dht.enabled);
        assert_eq!(dht.bootstrap, Some(vec!["127.0.0.1:6881".to_string()]));
        assert_eq!(
            (dht.bind, dht.port),
            (Some(std::net::Ipv4Addr::LOCALHOST), Some(6882))
        );
        std::fs::write(&path, r#"{"log": {"filtr": "bone"}}"#).unwrap();
        let err = format!("{:#}", NodeConfig::load(&path).unwrap_err());
        assert!(
            err.contains("config.json") && err.contains("filtr"),
            "{err}"
        );
    }
}
