//! The node's peer-to-peer endpoint in the daemon: started once the identity is unlocked,
//! its network status and connections on the local API (`net.status`, `net.changed`), and
//! connectivity discovery through the home hub (STUN, NAT type, TCP reachability), redone
//! when the hub line comes up again or the interface addresses change.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use allpeers_model::api::methods::topics;
use allpeers_net::connectivity::monitor::{ConnectivityMonitor, MonitorConfig, MonitorState};
use allpeers_net::hub::HubClient;
use allpeers_net::status::StatusMonitor;
use allpeers_net::{Endpoint, EndpointConfig, EndpointEvent, Identity};
use serde_json::{Value, json};

use super::state::Daemon;

/// How often interface addresses are re-read (no portable change notification).
const STATUS_POLL: Duration = Duration::from_secs(5);

/// The endpoint and what watches it.
pub struct Network {
    pub endpoint: Endpoint,
    pub status: Arc<StatusMonitor>,
    pub connectivity: Connectivity,
}

/// Connectivity discovery through the home hub (started with the hub client).
#[derive(Default)]
pub struct Connectivity {
    monitor: OnceLock<ConnectivityMonitor>,
}

impl Connectivity {
    /// Our UDP mapping as STUN last reported it (for the discovery record).
    pub fn udp_mapped(&self) -> Option<SocketAddr> {
        self.monitor.get()?.current().last?.udp_mapped
    }

    /// `net.status`'s `connectivity` object: `state` (`unknown`, `checking`, `done`) and the
    /// last report's fields.
    fn json(&self) -> Value {
        let Some(monitor) = self.monitor.get() else {
            return json!({
                "state": "unknown",
                "reason": "no home hub is configured: discovery needs one",
            });
        };
        let MonitorState { checking, last, .. } = monitor.current();
        let mut value = match &last {
            Some(report) => serde_json::to_value(report).unwrap_or_else(|_| json!({})),
            None => json!({}),
        };
        value["state"] = json!(match (checking, &last) {
            (true, _) => "checking",
            (false, Some(_)) => "done",
            (false, None) => "unknown",
        });
        if last.is_none() && !checking {
            value["reason"] = json!("not checked yet (waiting for the hub line)");
        }
        value
    }
}

/// Starts the connectivity monitor and publishes each new report as a `net.changed` event
/// (`{"connectivity": report}`).
fn start_discovery(daemon: &Arc<Daemon>, network: &Network, hub: HubClient) {
    let monitor = ConnectivityMonitor::start(
        network.endpoint.clone(),
        hub,
        &network.status,
        MonitorConfig::default(),
    );
    let mut changes = monitor.watch();
    if network.connectivity.monitor.set(monitor).is_err() {
        return;
    }
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
        super::letters::namespace(),
        super::letters::LetterService::new(daemon),
    );
    let hub_endpoint = endpoint.clone();
    if daemon
        .network
        .set(Network {
            endpoint,
            status,
            connectivity: Connectivity::default(),
        })
        .is_err()
    {
        anyhow::bail!("the endpoint is already running");
    }
    if let Some(section) = &daemon.hub_config {
        super::hub::start(daemon, hub_endpoint.clone(), section).await?;
        if let (Some(hub), Some(network)) = (daemon.hub.get(), daemon.network.get()) {
            start_discovery(daemon, network, hub.clone());
        }
    }
    start_connector(daemon, hub_endpoint);
    super::social::start(daemon).await;
    super::discovery::start(daemon);
    Ok(())
}

/// The connector: with the hub it signals, punches and relays; without, it dials what it
/// knows. It answers other peers' signals under the same agreement as relays.
fn start_connector(daemon: &Arc<Daemon>, endpoint: allpeers_net::Endpoint) {
    use allpeers_net::connector::{Connector, ConnectorConfig};
    use allpeers_net::hub::{AcceptAll, RefuseAll, RelayPolicy};
    let policy: Arc<dyn RelayPolicy> = match daemon.hub_config.as_ref() {
        Some(h) if h.accept_relays == "none" => Arc::new(RefuseAll),
        _ => Arc::new(AcceptAll),
    };
    let connectivity = daemon
        .network
        .get()
        .and_then(|n| n.connectivity.monitor.get().map(|m| m.watch()));
    let connector = Connector::start(
        endpoint,
        daemon.hub.get().cloned(),
        connectivity,
        policy,
        ConnectorConfig::default(),
    );
    let _ = daemon.connector.set(connector);
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
            let why = daemon
                .connector
                .get()
                .and_then(|k| k.report(&c.remote_peer()))
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
        "hub": super::hub::status(daemon),
        "connectivity": network.connectivity.json(),
        "discovery": super::discovery::status(daemon),
    })
}
