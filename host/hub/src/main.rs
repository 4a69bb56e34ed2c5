//! `allpeers-hub`: runs a hub. See `allpeers-hub --help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use allpeers_hub::{Hub, HubConfig};
use anyhow::Context as _;
use clap::Parser;

/// An AllPeers hub: the meeting point where peers register `name@hub`, look each other up,
/// keep a presence line open and, when nothing else works, relay end-to-end encrypted
/// traffic.
///
/// Settings come from the JSON config file (every field optional), then from the flags
/// below, which win. At start the hub prints one JSON line on stdout with its PeerId and
/// addresses (give the PeerId and an address to peers: they pin the key). SIGTERM or
/// Ctrl-C shuts it down cleanly.
#[derive(Debug, Parser)]
#[command(name = "allpeers-hub", version, about, long_about, after_help = EXAMPLES)]
struct Args {
    /// JSON config file (see docs/architecture-hub.md for every field).
    #[arg(short, long, env = "ALLPEERS_HUB_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the hub's key (hub.key) and state (hub.db).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The hub's name: peers register as name@<this>.
    #[arg(long)]
    name: Option<String>,
    /// UDP address for QUIC (e.g. 0.0.0.0:7700).
    #[arg(long)]
    quic: Option<SocketAddr>,
    /// TCP address for TLS over TCP, the transport proxied peers use (e.g. 0.0.0.0:7700).
    #[arg(long)]
    tcp: Option<SocketAddr>,
    /// Turn QUIC off.
    #[arg(long)]
    no_quic: bool,
    /// Turn TCP off.
    #[arg(long)]
    no_tcp: bool,
    /// Address to give out as this hub's (quic://ip:port or tcp://ip:port); repeatable.
    #[arg(long)]
    advertise: Vec<String>,
    /// Who may see whose presence: "mutual" (both asked) or "open".
    #[arg(long)]
    watch_policy: Option<String>,
    /// Seconds a presence line may stay silent before the peer counts as offline.
    #[arg(long)]
    presence_timeout: Option<u64>,
    /// Relays one peer may be part of at once.
    #[arg(long)]
    relay_max_concurrent: Option<usize>,
    /// Bytes one peer may send through relays per hour.
    #[arg(long)]
    relay_max_bytes: Option<u64>,
    /// Bytes per second per relay direction.
    #[arg(long)]
    relay_rate: Option<u64>,
    /// Debug: append every relayed byte to this file.
    #[arg(long)]
    relay_tap: Option<PathBuf>,
    /// STUN server address IP1:P1 (a specific IP; port 0: any free port).
    #[arg(long)]
    stun_primary: Option<SocketAddr>,
    /// STUN alternate address IP2:P2 (another IP and port): turns on RFC 5780 NAT discovery.
    #[arg(long, requires = "stun_primary")]
    stun_alternate: Option<SocketAddr>,
    /// STUN packets per second one source IP may send.
    #[arg(long)]
    stun_rate: Option<u32>,
    /// Turn the TCP reachability probe off.
    #[arg(long)]
    no_probe: bool,
    /// Keep the state in this PostgreSQL database (libpq-style connection string) instead
    /// of SQLite, shared with the hub's other instances.
    #[arg(long, requires = "instance")]
    postgres: Option<String>,
    /// This process's name among the hub's instances (with --postgres).
    #[arg(long)]
    instance: Option<String>,
    /// Log directory (default <data-dir>/logs).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Log filter in the seed's levels: skin, marrow, flesh, bone (e.g. "flesh,allpeers_net=bone").
    #[arg(long)]
    log: Option<String>,
    /// Also log to stderr.
    #[arg(long)]
    log_stderr: bool,
}

const EXAMPLES: &str = "Examples:
  allpeers-hub --data-dir /var/lib/allpeers-hub --name hub.example.org --quic 0.0.0.0:7700 --tcp 0.0.0.0:7700
  allpeers-hub --config /etc/allpeers-hub.json --log-stderr
  allpeers-hub --postgres 'host=10.0.0.5 user=hub dbname=hub' --instance hub-a --name hub.example.org
  allpeers-hub --stun-primary 203.0.113.10:3478 --stun-alternate 203.0.113.11:3479";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => HubConfig::load(path)?,
        None => HubConfig::default(),
    };
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.name {
        config.name = v;
    }
    if let Some(v) = args.quic {
        config.quic = Some(v);
    }
    if let Some(v) = args.tcp {
        config.tcp = Some(v);
    }
    if args.no_quic {
        config.quic = None;
    }
    if args.no_tcp {
        config.tcp = None;
    }
    if !args.advertise.is_empty() {
        config.advertise = args.advertise;
    }
    if let Some(v) = args.watch_policy {
        config.watch_policy = v;
    }
    if let Some(v) = args.presence_timeout {
        config.presence_timeout_secs = v;
    }
    if let Some(v) = args.relay_max_concurrent {
        config.relay.max_concurrent_per_peer = v;
    }
    if let Some(v) = args.relay_max_bytes {
        config.relay.max_bytes_per_hour = v;
    }
    if let Some(v) = args.relay_rate {
        config.relay.rate_bytes_per_sec = Some(v);
    }
    if let Some(v) = args.relay_tap {
        config.relay.tap = Some(v);
    }
    if let Some(primary) = args.stun_primary {
        let stun = config.stun.get_or_insert_with(Default::default);
        stun.primary = primary;
        if args.stun_alternate.is_some() {
            stun.alternate = args.stun_alternate;
        }
    }
    if let (Some(rate), Some(stun)) = (args.stun_rate, config.stun.as_mut()) {
        stun.per_source_per_sec = rate;
        stun.per_source_burst = rate.saturating_mul(2);
    }
    if args.no_probe {
        config.probe.enabled = false;
    }
    if let Some(url) = args.postgres {
        let mut pg = match config.backend {
            allpeers_hub::config::Backend::Postgres(pg) => pg,
            allpeers_hub::config::Backend::Sqlite => Default::default(),
        };
        pg.url = url;
        config.backend = allpeers_hub::config::Backend::Postgres(pg);
    }
    if let (Some(id), allpeers_hub::config::Backend::Postgres(pg)) =
        (args.instance, &mut config.backend)
    {
        pg.instance = id;
    }
    if let Some(v) = args.log_dir {
        config.log_dir = Some(v);
    }
    if let Some(v) = args.log {
        config.log_filter = Some(v);
    }
    config.log_stderr |= args.log_stderr;
    if config.quic.is_none() && config.tcp.is_none() {
        anyhow::bail!("both QUIC and TCP are off: the hub would listen on nothing");
    }

    let mut log = allpeers_log::LogConfig::new(
        config
            .log_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("logs")),
        "hub",
    );
    if let Some(f) = &config.log_filter {
        log.filter = f.clone();
    }
    log.stderr = config.log_stderr;
    let _log = allpeers_log::init(&log).context("logging")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(config))
}

async fn run(config: HubConfig) -> anyhow::Result<()> {
    let name = config.name.clone();
    let hub = Hub::start(config).await?;
    let addrs = hub.endpoint.local_addresses();
    let quic = addrs
        .iter()
        .find(|a| a.transport == allpeers_net::TransportKind::Quic)
        .map(|a| a.addr.to_string());
    let tcp = addrs
        .iter()
        .find(|a| a.transport == allpeers_net::TransportKind::Tcp)
        .map(|a| a.addr.to_string());
    let ready = serde_json::json!({
        "event": "ready",
        "peer_id": hub.endpoint.peer_id().to_string(),
        "name": name,
        "quic": quic,
        "tcp": tcp,
        "mail_http": hub.mail.as_ref().map(|m| m.http_addr().to_string()),
        "stun": hub.stun.as_ref().map(|s| s.addresses().iter().map(|a| a.to_string()).collect::<Vec<_>>()),
    });
    {
        // Not println!: a closed stdout must not stop the hub.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{ready}").and_then(|_| out.flush());
    }
    allpeers_log::flesh!(peer = %hub.endpoint.peer_id(), ?quic, ?tcp, "hub {name} ready");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    allpeers_log::flesh!(online = hub.core.online_count(), "shutting down");
    hub.shutdown().await;
    allpeers_log::flesh!("stopped");
    Ok(())
}
