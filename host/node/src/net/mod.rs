//! The `net` area: the node's network, started once the identity is unlocked, as one value
//! ([`parts::Network`]: endpoint, hub line, connectivity discovery through the hub, the
//! connector, discovery without a hub); its status and connections on the local API
//! (`net.status`, `net.connect`, `net.changed` events).
//!
//! [`start`] is where the areas that live on the network are wired together: the letters
//! service and the hub's presence reports go to the social area through the sinks it
//! gives, so no area calls into another.

pub mod discovery;
pub mod parts;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use std::time::Duration;

use allpeers_hub_client::{AcceptAll, HubClient, PeerStatus, RefuseAll, RelayPolicy};
use allpeers_model::PeerId;
use allpeers_model::api::RpcError;
use allpeers_model::api::methods::{self as m, topics};
use allpeers_model::api::net::{PeerParams, SpeedtestParams, SpeedtestResult};
use allpeers_nat::connectivity::monitor::{ConnectivityMonitor, MonitorConfig};
use allpeers_nat::connector::{Connector, ConnectorConfig, HubRouter};
use allpeers_net::service::speed;
use allpeers_net::status::StatusMonitor;
use allpeers_net::{Endpoint, EndpointConfig, EndpointEvent, Identity};
use serde_json::{Value, json};

use crate::daemon::area::{Area, Call, Reply};
use crate::daemon::rpc::{codes, parse};
use crate::daemon::state::Daemon;
use crate::hub::foreign::ForeignHubs;
use crate::social::letters::{self, LetterService};
use parts::Network;

pub const AREA: Area = Area {
    name: "net",
    methods: &[m::NET_STATUS, m::NET_CONNECT, m::NET_SPEEDTEST],
    handle,
    slow: &[],
};

fn handle(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        match call.method {
            m::NET_CONNECT => {
                let p: PeerParams = parse(call.params)?;
                connect(call.daemon, p.peer).await
            }
            m::NET_SPEEDTEST => {
                let p: SpeedtestParams = parse(call.params)?;
                speedtest(call.daemon, p).await
            }
            _ => Ok(status(call.daemon)),
        }
    })
}

/// A presence change a hub reports: the social area keeps it; a peer coming online may be the source a shared
/// file's download waits for.
fn on_hub_presence(daemon: &Daemon, peer: PeerId, online: bool, status: PeerStatus) {
    crate::social::api::on_hub_presence(daemon, peer, online, status);
    if online {
        crate::files::sources::source_online(daemon, peer);
    }
}

/// Starts the network. A failure (e.g. a configured port in use) is logged and shown by
/// `net.status`; the local API keeps serving.
pub async fn go_online(daemon: &Arc<Daemon>, key: Identity) {
    if let Err(e) = start(daemon, key).await {
        allpeers_log::skin!("cannot start the peer endpoint: {e:#}");
        *daemon.net_error.lock().expect("net error lock") = Some(format!("{e:#}"));
    }
}

/// How often interface addresses are re-read (no portable change notification).
const STATUS_POLL: Duration = Duration::from_secs(5);

/// Starts the connectivity monitor and publishes each new report as a `net.changed` event
/// (`{"connectivity": report}`).
fn start_connectivity(
    daemon: &Arc<Daemon>,
    endpoint: &Endpoint,
    status: &Arc<StatusMonitor>,
    hub: HubClient,
) -> ConnectivityMonitor {
    let monitor =
        ConnectivityMonitor::start(endpoint.clone(), hub, status, MonitorConfig::default());
    let mut changes = monitor.watch();
    let weak = Arc::downgrade(daemon);
    let shutdown = daemon.shutdown.clone();
    tokio::spawn(async move {
        let mut published = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = changes.changed() => if changed.is_err() { break },
            }
            let (runs, report) = {
                let s = changes.borrow_and_update();
                (s.runs, s.last.clone())
            };
            if runs == published {
                continue;
            }
            published = runs;
            let Some(daemon) = weak.upgrade() else { break };
            daemon.publish(topics::NET_CHANGED, json!({"connectivity": report}));
        }
    });
    monitor
}

/// Where to listen, from `config.json` (`net.quic`, `net.tcp`).
pub fn endpoint_config(quic: Option<SocketAddr>, tcp: Option<SocketAddr>) -> EndpointConfig {
    EndpointConfig {
        quic,
        tcp,
        ..EndpointConfig::default()
    }
}

/// Binds the endpoint and starts forwarding its status and connection changes as
/// `net.changed` events.
pub async fn start(daemon: &Arc<Daemon>, identity: Identity) -> anyhow::Result<()> {
    let endpoint = Endpoint::bind(identity, daemon.net_config.clone()).await?;
    let status = StatusMonitor::new(endpoint.local_addresses());
    let poller = status.spawn_polling(STATUS_POLL);
    allpeers_log::flesh!(listening = ?endpoint.local_addresses(), "peer endpoint listening");

    let weak = Arc::downgrade(daemon);
    let mut status_events = status.subscribe();
    let mut endpoint_events = endpoint.events();
    let shutdown = daemon.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let data = tokio::select! {
                _ = shutdown.cancelled() => break,
                event = status_events.recv() => match event {
                    Ok(event) => json!({"status": event}),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                },
                event = endpoint_events.recv() => match event {
                    Ok(EndpointEvent::Connected { peer, transport, direction }) => {
                        json!({"connected": {"peer": peer, "transport": transport, "direction": direction}})
                    }
                    Ok(EndpointEvent::Disconnected { peer, reason }) => {
                        json!({"disconnected": {"peer": peer, "reason": reason}})
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                },
            };
            let Some(daemon) = weak.upgrade() else { break };
            daemon.publish(topics::NET_CHANGED, data);
        }
        poller.abort();
    });
    endpoint.register(
        letters::namespace(),
        LetterService::new(daemon, crate::social::api::letter_sink),
    );
    endpoint.register(speed::namespace(), speed::service());
    crate::files::service::register(daemon, &endpoint);
    // A hub that cannot start (a bad address in config.json) leaves the node online without
    // it; the error is kept for `net.status`'s log line.
    let hub = match &daemon.hub_config {
        Some(section) => crate::hub::start(daemon, endpoint.clone(), section, on_hub_presence)
            .await
            .inspect_err(|e| {
                allpeers_log::skin!("the hub client did not start: {e:#}");
                *daemon.net_error.lock().expect("net error lock") = Some(format!("{e:#}"));
            })
            .ok(),
        None => None,
    };
    let connectivity = hub
        .clone()
        .map(|hub| start_connectivity(daemon, &endpoint, &status, hub));
    let connector = start_connector(daemon, &endpoint, hub.clone(), connectivity.as_ref());
    let foreign = start_foreign_hubs(daemon, &endpoint, hub.as_ref(), &connector);
    if daemon
        .network
        .set(Network {
            endpoint,
            status,
            hub: hub.clone(),
            connectivity,
            connector,
            foreign,
            discovery: OnceLock::new(),
        })
        .is_err()
    {
        anyhow::bail!("the network is already running");
    }
    if let Some(hub) = hub {
        letters::spawn_mail_fetcher(daemon, hub, crate::social::api::letter_sink);
    }
    crate::social::api::start(daemon).await;
    crate::shares::service::start(daemon, crate::social::contacts::accepted);
    crate::files::sources::start(daemon);
    crate::mail::notices::start(daemon);
    discovery::start(daemon);
    Ok(())
}

/// The connector: with the hub it signals, punches and relays; without, it dials what it
/// knows. It answers other peers' signals under the same agreement as relays.
fn start_connector(
    daemon: &Daemon,
    endpoint: &Endpoint,
    hub: Option<HubClient>,
    connectivity: Option<&ConnectivityMonitor>,
) -> Connector {
    let policy: Arc<dyn RelayPolicy> = match daemon.hub_config.as_ref() {
        Some(h) if h.accept_relays == "none" => Arc::new(RefuseAll),
        _ => Arc::new(AcceptAll),
    };
    Connector::start(
        endpoint.clone(),
        hub,
        connectivity.map(|m| m.watch()),
        policy,
        ConnectorConfig::default(),
    )
}

/// Guest lines to contacts' home hubs: the connector routes connects to such contacts
/// through them and answers signals arriving on them; their presence reports are forwarded;
/// idle lines are closed.
fn start_foreign_hubs(
    daemon: &Arc<Daemon>,
    endpoint: &Endpoint,
    hub: Option<&HubClient>,
    connector: &Connector,
) -> Arc<ForeignHubs> {
    let foreign = ForeignHubs::new(endpoint.clone(), hub.map(HubClient::hub));
    let weak = Arc::downgrade(daemon);
    let answering = connector.clone();
    let home = hub.cloned();
    foreign.on_open(Box::new(move |client| {
        answering.listen_on(client.clone());
        if let Some(home) = &home {
            introduce_at_home(home.clone(), client.clone());
        }
        if let Some(daemon) = weak.upgrade() {
            crate::hub::forward_guest_events(&daemon, client, client.hub(), on_hub_presence);
        }
    }));
    connector.set_router(Arc::new(GuestRouter(Arc::downgrade(&foreign))));
    let sweeping = Arc::downgrade(&foreign);
    let shutdown = daemon.shutdown.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(crate::hub::foreign::IDLE / 3);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = every.tick() => {}
            }
            let Some(foreign) = sweeping.upgrade() else {
                break;
            };
            foreign.sweep().await;
        }
        if let Some(foreign) = sweeping.upgrade() {
            foreign.stop().await;
        }
    });
    foreign
}

/// How long a new guest line has to come up before its hub is introduced at home.
const INTRODUCE_WAIT: Duration = Duration::from_secs(30);

/// Once a guest line is up, hands our home hub that hub's own signed record (checked
/// against the key the line is pinned to), so our hub's other peers can find it by name or
/// key (`docs/architecture-hub.md`, "Other hubs in our hub's directory").
fn introduce_at_home(home: HubClient, guest: HubClient) {
    tokio::spawn(async move {
        if !guest.wait_online(INTRODUCE_WAIT).await {
            return;
        }
        let introduced = match guest.hub_record().await {
            Ok(record) => home.introduce_hub(&record).await,
            Err(e) => Err(e),
        };
        match introduced {
            Ok(()) => allpeers_log::flesh!(hub = ?guest.hub(), "hub introduced at home"),
            Err(e) => allpeers_log::flesh!(hub = ?guest.hub(), "hub not introduced at home: {e}"),
        }
    });
}

/// The connector's way to a contact homed at another hub: the guest line to that hub.
struct GuestRouter(std::sync::Weak<ForeignHubs>);

impl HubRouter for GuestRouter {
    fn hub_for(
        &self,
        peer: PeerId,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<HubClient>> + Send + '_>> {
        Box::pin(async move {
            let foreign = self.0.upgrade()?;
            match foreign.line_for(&peer).await? {
                Ok(client) => Some(client),
                Err(e) => {
                    allpeers_log::flesh!(?peer, "no guest line to the peer's hub: {e}");
                    None
                }
            }
        })
    }
}

/// Reaches a peer through the connector: directly, by callback, through a punched hole,
/// or relayed; says which path won, why, and every attempt with its time.
async fn connect(daemon: &Daemon, peer: PeerId) -> Result<Value, RpcError> {
    let connector = daemon.connector().ok_or_else(|| RpcError {
        code: codes::CONNECT_FAILED,
        message: "the node is offline: see net.status".into(),
        data: None,
    })?;
    match connector.connect(peer).await {
        Ok((conn, report)) => Ok(json!({
            "peer_id": peer,
            "path": conn.path(),
            "transport": conn.transport(),
            "why": report.why,
            "elapsed_ms": report.elapsed_ms,
            "local": report.local,
            "remote": report.remote,
            "attempts": report.attempts,
        })),
        Err(e) => Err(RpcError {
            code: codes::CONNECT_FAILED,
            message: e.to_string(),
            data: Some(json!({"attempts": e.attempts})),
        }),
    }
}

/// Bytes each way a speed test moves unless told.
const SPEEDTEST_BYTES: u64 = 16 << 20;

/// `net.speedtest`: throughput each way over the speed-test service of a peer.
async fn speedtest(daemon: &Daemon, p: SpeedtestParams) -> Result<Value, RpcError> {
    let endpoint = daemon
        .network
        .get()
        .map(|n| n.endpoint.clone())
        .ok_or_else(|| RpcError {
            code: codes::CONNECT_FAILED,
            message: "the node is offline: see net.status".into(),
            data: None,
        })?;
    let bytes = p
        .bytes
        .unwrap_or(SPEEDTEST_BYTES)
        .min(speed::MAX_TEST_BYTES);
    let result = speed::measure(&endpoint, p.peer, bytes, bytes)
        .await
        .map_err(|e| RpcError {
            code: codes::CONNECT_FAILED,
            message: format!("speed test with {}: {e}", p.peer),
            data: None,
        })?;
    allpeers_log::flesh!(peer = %p.peer, up = result.upload_rate, down = result.download_rate, "speed test");
    Ok(crate::daemon::rpc::to_value(SpeedtestResult {
        peer: p.peer,
        upload_bytes: result.upload_bytes,
        download_bytes: result.download_bytes,
        upload_rate: result.upload_rate,
        download_rate: result.download_rate,
        elapsed_ms: result.elapsed.as_millis() as u64,
    }))
}

/// `net.status`: online state, addresses, listening addresses and live connections.
pub fn status(daemon: &Daemon) -> Value {
    let Some(network) = daemon.network.get() else {
        let reason = daemon
            .net_error
            .lock()
            .expect("net error lock")
            .clone()
            .unwrap_or_else(|| "the identity is locked: unlock it to go online".into());
        return json!({"running": false, "reason": reason});
    };
    let status = network.status.current();
    let connections: Vec<Value> = network
        .endpoint
        .connections()
        .iter()
        .map(|c| {
            // How the connector made it, when it did (and the path still matches).
            let why = network
                .connector
                .report(&c.remote_peer())
                .filter(|r| r.path == c.path() && r.transport == c.transport())
                .map(|r| r.why);
            json!({
                "peer": c.remote_peer(),
                "transport": c.transport(),
                "direction": c.direction(),
                "path": c.path(),
                "why": why,
            })
        })
        .collect();
    json!({
        "running": true,
        "online": status.online,
        "addresses": status.addresses,
        "listening": status.listening,
        "connections": connections,
        "bulk": network.endpoint.bulk_stats(),
        "hub": crate::hub::status(daemon),
        "connectivity": network.connectivity_json(),
        "discovery": discovery::status(daemon),
    })
}
