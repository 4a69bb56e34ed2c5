//! The hub's configuration: a JSON file, every field optional, overridden by flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use allpeers_net::{Address, TransportKind};
use serde::{Deserialize, Serialize};

/// Everything the hub reads from its config file (JSON). Unknown fields are an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubConfig {
    /// The hub's name, the part after `@` in `alice@hub.example`.
    pub name: String,
    /// Holds `hub.key` (the hub's Ed25519 identity) and `hub.db` (SQLite state).
    pub data_dir: PathBuf,
    /// UDP address for QUIC; null: no QUIC.
    pub quic: Option<SocketAddr>,
    /// TCP address for TLS over TCP (needed for proxied peers); null: no TCP.
    pub tcp: Option<SocketAddr>,
    /// Addresses given out in answers as "where this hub is" (`quic://ip:port`,
    /// `tcp://ip:port`); empty: the listening addresses.
    pub advertise: Vec<String>,
    /// Log directory (default: `<data_dir>/logs`) and filter (`flesh`, `bone`, ...).
    pub log_dir: Option<PathBuf>,
    pub log_filter: Option<String>,
    /// Also log to stderr.
    pub log_stderr: bool,
    /// Who may see whose presence: `mutual` (both watch each other) or `open`.
    pub watch_policy: String,
    /// Seconds a TLS handshake may take.
    pub handshake_timeout_secs: u64,
    /// TLS handshakes in progress at once on TCP.
    pub max_handshakes: usize,
    /// Streams of each kind a peer may have open at once on its QUIC connection to the hub
    /// (more wait); also the most the hub opens at once on one TCP connection. Small, because
    /// QUIC state per connection grows with it: a line needs one stream, a relay one more.
    pub max_concurrent_streams: u32,
    /// Seconds a presence line may stay silent (peers ping every second by default).
    pub presence_timeout_secs: u64,
    pub relay: RelayConfig,
    /// STUN server (RFC 5389; RFC 5780 with an alternate address); null: none.
    pub stun: Option<crate::stun::StunConfig>,
    /// TCP reachability probes for peers.
    pub probe: crate::probe::ProbeConfig,
    /// Offline letters: quotas and expiry.
    pub mailbox: crate::mailbox::MailboxConfig,
    /// Where the state lives: `"sqlite"` (files in `data_dir`, one process) or
    /// `{"postgres": {...}}` (several processes behind this name and key).
    pub backend: Backend,
    /// The e-mail gateway (SMTP server, sender, DKIM, unsubscribe listener, limits); null:
    /// no gateway (the `allpeers/hub-mail/1` namespace is not served).
    pub mail: Option<crate::mail::MailConfig>,
    /// Publish the hub's advertised addresses as a signed record under its own key on the
    /// Mainline DHT (BEP 44, the record nodes publish), so a node that knows this hub's key
    /// from a certificate finds where it is; null: not published.
    pub dht: Option<DhtConfig>,
}

/// `dht` in the hub config.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DhtConfig {
    /// `host:port` of the nodes to join through; absent: the public Mainline bootstrap nodes.
    pub bootstrap: Option<Vec<String>>,
    /// The IPv4 address the DHT socket binds (absent: every interface).
    pub bind: Option<std::net::Ipv4Addr>,
}

/// The state's backend ([`crate::store`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Backend {
    /// `hub.db` and `mail.sqlite` in the data dir: the embedded default.
    #[default]
    Sqlite,
    /// One PostgreSQL database shared by the hub's instances ([`crate::cluster`]).
    Postgres(PostgresConfig),
}

/// `backend.postgres` in the hub config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// libpq-style connection string: `host=10.0.0.5 port=5432 user=hub dbname=hub` or
    /// `postgresql://hub@10.0.0.5/hub`. No TLS: the database sits on a private network.
    pub url: String,
    /// This process's name in the cluster, unique among the instances (e.g. the host name).
    pub instance: String,
    /// Connections this process keeps to the database (plus one that listens).
    pub pool_size: usize,
    /// Milliseconds between heartbeats of this instance.
    pub heartbeat_ms: u64,
    /// Milliseconds without a heartbeat after which an instance counts as dead: its
    /// presence lines end and their watchers hear "offline".
    pub instance_timeout_ms: u64,
    /// Where the other instances reach this one for relays across instances
    /// (`quic://ip:port`, `tcp://ip:port`, on the instances' private network); empty: its
    /// listening addresses, an unspecified IP taken as loopback (instances on one machine).
    pub instance_addresses: Vec<String>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: String::new(),
            instance: String::new(),
            pool_size: 8,
            heartbeat_ms: 1000,
            instance_timeout_ms: 5000,
            instance_addresses: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    pub enabled: bool,
    /// Relays one peer may be part of at once.
    pub max_concurrent_per_peer: usize,
    /// Bytes one peer may push through relays per hour (both directions it sends).
    pub max_bytes_per_hour: u64,
    /// Bytes per second per relay direction; null: unlimited.
    pub rate_bytes_per_sec: Option<u64>,
    /// Debug tap: append every relayed byte to this file (to check it is ciphertext).
    pub tap: Option<PathBuf>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            enabled: true,
            max_concurrent_per_peer: 8,
            max_bytes_per_hour: 4 * 1024 * 1024 * 1024,
            rate_bytes_per_sec: None,
            tap: None,
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            name: "localhost".into(),
            data_dir: PathBuf::from("allpeers-hub-data"),
            quic: Some(SocketAddr::from(([0, 0, 0, 0], 7700))),
            tcp: Some(SocketAddr::from(([0, 0, 0, 0], 7700))),
            advertise: Vec::new(),
            log_dir: None,
            log_filter: None,
            log_stderr: false,
            watch_policy: "mutual".into(),
            handshake_timeout_secs: 10,
            max_handshakes: 512,
            max_concurrent_streams: 64,
            presence_timeout_secs: 5,
            relay: RelayConfig::default(),
            stun: None,
            probe: crate::probe::ProbeConfig::default(),
            mailbox: crate::mailbox::MailboxConfig::default(),
            backend: Backend::Sqlite,
            mail: None,
            dht: None,
        }
    }
}

impl HubConfig {
    pub fn load(path: &Path) -> anyhow::Result<HubConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
    }

    pub fn presence_timeout(&self) -> Duration {
        Duration::from_secs(self.presence_timeout_secs.max(1))
    }

    pub fn advertised(&self) -> anyhow::Result<Vec<Address>> {
        self.advertise.iter().map(|a| parse_address(a)).collect()
    }
}

/// Parses `quic://ip:port` or `tcp://ip:port`.
pub fn parse_address(text: &str) -> anyhow::Result<Address> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| anyhow::anyhow!("{text:?}: expected quic://ip:port or tcp://ip:port"))?;
    let addr: SocketAddr = rest.parse().map_err(|e| anyhow::anyhow!("{text:?}: {e}"))?;
    let transport = match scheme {
        "quic" => TransportKind::Quic,
        "tcp" => TransportKind::Tcp,
        _ => anyhow::bail!("{text:?}: the scheme is quic or tcp"),
    };
    Ok(Address { transport, addr })
}
