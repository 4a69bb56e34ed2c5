//! The node's peer-to-peer endpoint in the daemon: started once the identity is unlocked,
//! its network status and connections on the local API (`net.status`, `net.changed`), and
//! connectivity discovery through the home hub (STUN, NAT type, TCP reachability), redone
//! when the hub line comes up again or the interface addresses change.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use allpeers_model::api::methods::topics;
use allpeers_net::connectivity::{self, ConnectivityReport, DiscoveryConfig};
use allpeers_net::hub::{HubClient, HubEvent, HubState};
use allpeers_net::status::StatusMonitor;
use allpeers_net::{Endpoint, EndpointConfig, EndpointEvent, Identity};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::state::Daemon;

/// How often interface addresses are re-read (no portable change notification).
const STATUS_POLL: Duration = Duration::from_secs(5);

/// Least time between two connectivity checks (the hub rate-limits TCP probes).
const RECHECK_MIN: Duration = Duration::from_secs(15);
/// A check is redone this often even when nothing seems to change.
const RECHECK_EVERY: Duration = Duration::from_secs(30 * 60);

/// The endpoint and what watches it.
pub struct Network {
    pub endpoint: Endpoint,
    pub status: Arc<StatusMonitor>,
    pub connectivity: Arc<Connectivity>,
}

/// The last connectivity report, for `net.status`.
#[derive(Default)]
pub struct Connectivity {
    checking: AtomicBool,
    last: Mutex<Option<ConnectivityReport>>,
}

impl Connectivity {
    /// `net.status`'s `connectivity` object: `state` (`unknown`, `checking`, `done`) and the
    /// last report's fields.
    fn json(&self, has_hub: bool) -> Value {
        let checking = self.checking.load(Ordering::Relaxed);
        let last = self.last.lock().expect("connectivity lock").clone();
        let mut value = match &last {
            Some(report) => serde_json::to_value(report).unwrap_or_else(|_| json!({})),
            None => json!({}),
        };
        let state = match (checking, &last) {
            (true, _) => "checking",
            (false, Some(_)) => "done",
            (false, None) => "unknown",
        };
        value["state"] = json!(state);
        if last.is_none() && !checking {
            value["reason"] = json!(if has_hub {
                "not checked yet (waiting for the hub line)"
            } else {
                "no home hub is configured: discovery needs one"
            });
        }
        value
    }
}

/// Runs discovery when the hub line comes up, when interface addresses change, and every
/// [`RECHECK_EVERY`]; never more often than [`RECHECK_MIN`]. Each report is also published
/// as a `net.changed` event (`{"connectivity": report}`).
fn spawn_discovery(
    daemon: &Arc<Daemon>,
    hub: HubClient,
    endpoint: Endpoint,
    status: Arc<StatusMonitor>,
    state: Arc<Connectivity>,
) {
    let weak = Arc::downgrade(daemon);
    let shutdown = daemon.shutdown.clone();
    let mut hub_events = hub.events();
    let mut status_events = status.subscribe();
    tokio::spawn(async move {
        let mut due = (hub.state() == HubState::Online).then(Instant::now);
        let mut last_run: Option<Instant> = None;
        loop {
            let at = due.map(|d| match last_run {
                Some(l) => d.max(l + RECHECK_MIN),
                None => d,
            });
            let timer = async {
                match at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = hub_events.recv() => match event {
                    Ok(HubEvent::Online { .. }) => due = Some(Instant::now()),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
                event = status_events.recv() => match event {
                    Ok(_) => due = Some(Instant::now()),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
                _ = timer => {
                    last_run = Some(Instant::now());
                    due = Some(Instant::now() + RECHECK_EVERY);
                    if hub.state() != HubState::Online {
                        // The next Online event brings it back.
                        due = None;
                        continue;
                    }
                    state.checking.store(true, Ordering::Relaxed);
                    let report = connectivity::discover(
                        &endpoint,
                        hub.hub(),
                        hub.status().observed,
                        &DiscoveryConfig::default(),
                    )
                    .await;
                    allpeers_log::flesh!(
                        nat_type = ?report.nat_type,
                        mapped = ?report.udp_mapped,
                        tcp_reachable = ?report.tcp.as_ref().map(|t| t.reachable),
                        errors = ?report.errors,
                        "connectivity checked in {} ms",
                        report.duration_ms
                    );
                    let data = json!({"connectivity": report});
                    *state.last.lock().expect("connectivity lock") = Some(report);
                    state.checking.store(false, Ordering::Relaxed);
                    let Some(daemon) = weak.upgrade() else { break };
                    daemon.publish(topics::NET_CHANGED, data);
                }
            }
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
    let hub_endpoint = endpoint.clone();
    let connectivity = Arc::new(Connectivity::default());
    let (discovery_endpoint, discovery_status) = (endpoint.clone(), status.clone());
    if daemon
        .network
        .set(Network {
            endpoint,
            status,
            connectivity: connectivity.clone(),
        })
        .is_err()
    {
        anyhow::bail!("the endpoint is already running");
    }
    if let Some(section) = &daemon.hub_config {
        super::hub::start(daemon, hub_endpoint, section).await?;
        if let Some(hub) = daemon.hub.get() {
            spawn_discovery(
                daemon,
                hub.clone(),
                discovery_endpoint,
                discovery_status,
                connectivity,
            );
        }
    }
    Ok(())
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
            json!({
                "peer": c.remote_peer(),
                "transport": c.transport(),
                "direction": c.direction(),
                "path": c.path(),
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
        "connectivity": network.connectivity.json(daemon.hub.get().is_some()),
    })
}
